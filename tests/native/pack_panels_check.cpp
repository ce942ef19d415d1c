// Packs weight matrices of many shapes with pack_row_panels and pack_column_panels and compares every
// panel element with the layouts recurrent_gemm.h documents (by rows: [k][g][u] = W[g*N + unit][k]; by
// columns: [k][u] = W[k][unit]; zeros past N). Built once per vector
// width by tests/test_pack_panels.py: the machine running the tests dispatches to one ISA build only,
// and this is how the other widths' register transposes get checked.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#if defined(__AVX__)
#include <immintrin.h>  // simd.h uses intrinsics on AVX builds (csrc/isa_build.h includes it for the kernels)
#endif

namespace {
#include "simd.h"
#include "recurrent_gemm.h"
}

template <typename T, int U> int64_t count_mismatches(int64_t G, int64_t N, int64_t K) {
    T *w = (T *)malloc(sizeof(T) * G * N * K);
    for (int64_t i = 0; i < G * N * K; ++i) w[i] = (T)(i + 1);  // every element distinct
    const int64_t count = row_panel_count<T, U>(N), size = row_panel_size<T, U>(G, K);
    const int64_t width = U * Simd<T>::lanes;
    T *panels = (T *)malloc(sizeof(T) * count * size);
    pack_row_panels<T, U>(panels, w, G, N, K);
    int64_t bad = 0;
    for (int64_t p = 0; p < count; ++p)
        for (int64_t k = 0; k < K; ++k)
            for (int64_t g = 0; g < G; ++g)
                for (int64_t u = 0; u < width; ++u) {
                    const int64_t unit = p * width + u;
                    const T want = unit < N ? w[(g * N + unit) * K + k] : T(0);
                    bad += panels[p * size + (k * G + g) * width + u] != want;
                }
    free(w);
    free(panels);
    return bad;
}

template <typename T, int NB> int64_t count_column_mismatches(int64_t K, int64_t N) {
    T *w = (T *)malloc(sizeof(T) * K * N);
    for (int64_t i = 0; i < K * N; ++i) w[i] = (T)(i + 1);
    const int64_t count = column_panel_count<T, NB>(N), size = column_panel_size<T, NB>(K);
    const int64_t width = NB * Simd<T>::lanes;
    T *panels = (T *)malloc(sizeof(T) * count * size);
    pack_column_panels<T, NB>(panels, w, K, N);
    int64_t bad = 0;
    for (int64_t q = 0; q < count; ++q)
        for (int64_t k = 0; k < K; ++k)
            for (int64_t u = 0; u < width; ++u) {
                const int64_t unit = q * width + u;
                bad += panels[q * size + k * width + u] != (unit < N ? w[k * N + unit] : T(0));
            }
    free(w);
    free(panels);
    return bad;
}

int main() {
    const int64_t shapes[][3] = {{4, 64, 64}, {4, 7, 5}, {3, 300, 129}, {1, 512, 512}, {1, 33, 17},
                                 {4, 1, 1}, {2, 100, 3}, {3, 16, 16}, {1, 65, 31}};
    int64_t bad = 0;
    for (const auto &s : shapes) {
        bad += count_mismatches<float, 1>(s[0], s[1], s[2]) + count_mismatches<float, 4>(s[0], s[1], s[2]);
        bad += count_mismatches<double, 1>(s[0], s[1], s[2]) + count_mismatches<double, 4>(s[0], s[1], s[2]);
        const int64_t K = s[0] * s[1], N = s[2];  // the same sizes as (K, N) matrices
        bad += count_column_mismatches<float, 2>(K, N) + count_column_mismatches<float, 4>(K, N);
        bad += count_column_mismatches<double, 2>(K, N) + count_column_mismatches<double, 4>(K, N);
    }
    printf("vector bytes %d: %lld mismatched panel elements\n", FASTRNN_VEC_BYTES, (long long)bad);
    return bad != 0;
}
