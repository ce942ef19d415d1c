// panel_product_pair (csrc/recurrent_gemm.h) against two panel_product calls: every output must have the
// same bits, for several row counts, panel widths and pairs of lengths (the longer product goes on alone).
// Built once per vector width by tests/test_pack_panels.py in GNU mode, as the kernels are, so the compiler
// contracts multiply-adds as it does there.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if defined(__AVX__)
#include <immintrin.h>  // simd.h uses intrinsics on AVX builds (csrc/isa_build.h includes it for the kernels)
#endif

namespace {
#include "simd.h"
#include "recurrent_gemm.h"
}

#include "check_random.h"  // uniform(): the same inputs on every run

template <typename T> T *random_array(int64_t n) {
    T *a = (T *)aligned_alloc(64, (sizeof(T) * n + 63) / 64 * 64);
    for (int64_t i = 0; i < n; ++i) a[i] = (T)uniform();
    return a;
}

template <typename T, int R, int NV> int64_t count_mismatches(int64_t Ka, int64_t Kb) {
    typedef vec_t<T> V;
    const int L = Simd<T>::lanes;
    T *xa = random_array<T>(R * Ka), *xb = random_array<T>(R * Kb);
    T *pa = random_array<T>(Ka * NV * L), *pb = random_array<T>(Kb * NV * L);
    const T *a[R], *b[R];
    for (int r = 0; r < R; ++r) {
        a[r] = xa + r * Ka;
        b[r] = xb + r * Kb;
    }
    V alone_a[R][NV], alone_b[R][NV], pair_a[R][NV], pair_b[R][NV];
    panel_product<T, R, NV>(a, Ka, pa, alone_a);
    panel_product<T, R, NV>(b, Kb, pb, alone_b);
    panel_product_pair<T, R, NV>(a, Ka, pa, pair_a, b, Kb, pb, pair_b);
    int64_t bad = 0;
    for (int r = 0; r < R; ++r)
        for (int n = 0; n < NV; ++n) {
            bad += memcmp(&alone_a[r][n], &pair_a[r][n], sizeof(V)) != 0;
            bad += memcmp(&alone_b[r][n], &pair_b[r][n], sizeof(V)) != 0;
        }
    free(xa);
    free(xb);
    free(pa);
    free(pb);
    return bad;
}

template <typename T> int64_t check_all(int64_t Ka, int64_t Kb) {
    return count_mismatches<T, 1, 1>(Ka, Kb) + count_mismatches<T, 1, 3>(Ka, Kb) +
           count_mismatches<T, 1, 4>(Ka, Kb) + count_mismatches<T, 2, 3>(Ka, Kb) +
           count_mismatches<T, 3, 4>(Ka, Kb) + count_mismatches<T, 4, 3>(Ka, Kb);
}

int main() {
    const int64_t lengths[][2] = {{1, 1}, {5, 5}, {128, 64}, {17, 300}, {1, 2}, {256, 128}, {33, 33}};
    int64_t bad = 0;
    for (const auto &k : lengths) bad += check_all<float>(k[0], k[1]) + check_all<double>(k[0], k[1]);
    printf("vector bytes %d: %lld mismatched pair outputs\n", FASTRNN_VEC_BYTES, (long long)bad);
    return bad != 0;
}
