// Runs row_dot_product (csrc/row_dot.h) over many shapes and strides, float and double, and checks:
//  * each output against the dot product in long double, within (k + lanes) rounding units of sum |x w|;
//  * that every row of X, multiplied alone, gives the same bits as inside the batch (the property that
//    lets a streamed step equal one call: the blocking never changes an output's order of summation);
//  * that nothing outside the m x n outputs of y is written (y's padding keeps its sentinel).
// The last shapes have W of 2 MB or more, where a single row reads W row after row (the same bits).
// Built once per vector width by tests/test_row_dot.py: the machine running the tests dispatches to one
// ISA build only, and this is how the other widths' butterflies and tails get checked.
#include <math.h>
#include <sched.h>  // loop_support.h
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utility>
#if defined(__AVX__)
#include <immintrin.h>  // simd.h uses intrinsics on AVX builds (csrc/isa_build.h includes it for the kernels)
#endif

namespace {
#include "simd.h"
#include "loop_support.h"  // the thread split and walk_range that row_dot_product uses
#include "row_dot.h"
}

#include "check_random.h"  // uniform(): the same inputs on every run

template <typename T> int64_t check(int64_t m, int64_t n, int64_t k, int64_t pad) {
    const int64_t ldx = k + pad, ldw = k + 2 * pad, ldy = n + pad;
    T *x = (T *)malloc(sizeof(T) * m * ldx), *w = (T *)malloc(sizeof(T) * n * ldw);
    T *y = (T *)malloc(sizeof(T) * m * ldy), *y1 = (T *)malloc(sizeof(T) * ldy);
    for (int64_t i = 0; i < m * ldx; ++i) x[i] = (T)uniform();
    for (int64_t i = 0; i < n * ldw; ++i) w[i] = (T)uniform();
    const T sentinel = (T)12345.0;
    for (int64_t i = 0; i < m * ldy; ++i) y[i] = sentinel;
    row_dot_product<T>(m, n, k, x, ldx, w, ldw, y, ldy, 1);
    int64_t bad = 0;
    const long double unit = sizeof(T) == 4 ? 0x1p-24L : 0x1p-53L;
    for (int64_t i = 0; i < m; ++i) {
        for (int64_t j = 0; j < n; ++j) {
            long double exact = 0, magnitude = 0;
            for (int64_t q = 0; q < k; ++q) {
                exact += (long double)x[i * ldx + q] * w[j * ldw + q];
                magnitude += fabsl((long double)x[i * ldx + q] * w[j * ldw + q]);
            }
            if (fabsl(y[i * ldy + j] - exact) > (k + Simd<T>::lanes) * unit * magnitude) {
                if (bad < 5) printf("m=%lld n=%lld k=%lld: y[%lld][%lld] = %.17Lg, want %.17Lg\n", (long long)m,
                                    (long long)n, (long long)k, (long long)i, (long long)j, (long double)y[i * ldy + j],
                                    exact);
                ++bad;
            }
        }
        for (int64_t j = n; j < ldy && i < m; ++j) bad += y[i * ldy + j] != sentinel;
        for (int64_t j = 0; j < ldy; ++j) y1[j] = sentinel;
        row_dot_product<T>(1, n, k, x + i * ldx, ldx, w, ldw, y1, ldy, 1);
        bad += memcmp(y1, y + i * ldy, sizeof(T) * n) != 0;
    }
    free(x);
    free(w);
    free(y);
    free(y1);
    return bad;
}

int main() {
    const int64_t ms[] = {1, 2, 3, 4, 5, 7, 9, 33};
    const int64_t ns[] = {1, 3, 4, 5, 16, 17, 63, 64, 100, 130};
    const int64_t ks[] = {1, 2, 3, 7, 8, 15, 16, 17, 31, 33, 100, 257};
    int64_t bad = 0, cases = 0;
    for (int64_t m : ms)
        for (int64_t n : ns)
            for (int64_t k : ks)
                for (int64_t pad : {0, 3}) {
                    bad += check<float>(m, n, k, pad) + check<double>(m, n, k, pad);
                    cases += 2;
                }
    // W of kRowDotStreamBytes or more: single rows read W row after row (BY_ROW), rows in blocks do not
    for (int64_t m : {1, 5})
        for (int64_t n : {1000, 1030})
            for (int64_t k : {515, 600}) {
                bad += check<float>(m, n, k, 3) + check<double>(m, n, k / 2, 3);
                cases += 2;
            }
    printf("%lld cases, %lld mismatched\n", (long long)cases, (long long)bad);
    return bad != 0;
}
