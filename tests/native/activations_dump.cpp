// Writes vexp, vsigmoid and vtanh of csrc/simd.h (float) for a fixed set of inputs to a binary file:
// the inputs, then the three results, N floats each. Built once per vector width by
// tests/test_activations.py with the kernels' flags, which compares the widths with each other and with
// float64 NumPy.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if defined(__AVX__)
#include <immintrin.h>  // simd.h uses intrinsics on AVX builds (csrc/isa_build.h includes it for the kernels)
#endif

namespace {
#include "simd.h"
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s OUTPUT\n", argv[0]);
        return 2;
    }
    typedef Simd<float>::vec V;
    const int L = Simd<float>::lanes;
    // Every 4099th float bit pattern (both signs: all exponents, NaNs, infinities, subnormals), then a dense
    // run around each integer and half-integer of x * log2(e) in the exp's range, where rounding n can tie,
    // then runs around the edges of the AVX-512 tanh's intervals (the smallest floats at the edge 0).
    const int64_t n_sparse = (int64_t)(((uint64_t)1 << 32) / 4099);
    const int64_t n_dense = 2 * 256 * 64;
    const int64_t n_edges = 2 * 33 * 64;  // around each interval edge k * 0.3 of the AVX-512 tanh's table
    const int64_t N = (n_sparse + n_dense + n_edges + L - 1) / L * L;
    float *x = (float *)calloc(4 * N, sizeof(float));
    if (x == NULL) return 1;
    for (int64_t i = 0; i < n_sparse; ++i) {
        const uint32_t bits = (uint32_t)(i * 4099);
        memcpy(&x[i], &bits, sizeof bits);
    }
    for (int64_t i = 0; i < n_dense; ++i) {
        const int64_t half_units = i / 64 - 256;  // (n - 128) * 2 + {0, 1}: from -128 to 127.5
        float center = (float)((double)half_units * 0.5 * 0.69314718055994530942);
        uint32_t bits;
        memcpy(&bits, &center, sizeof bits);
        bits += (uint32_t)(i % 64) - 32;  // 32 floats either side
        memcpy(&x[n_sparse + i], &bits, sizeof bits);
    }
    for (int64_t i = 0; i < n_edges; ++i) {
        const int64_t edge = (i / 64) % 33, sign = i / (33 * 64);  // edges 0, 0.3, ..., 9.6; both signs
        float center = (float)(edge * 0.3) * (sign ? -1.0f : 1.0f);
        uint32_t bits;
        memcpy(&bits, &center, sizeof bits);
        bits = edge == 0 ? (uint32_t)(i % 64) | (uint32_t)(sign << 31) : bits + (uint32_t)(i % 64) - 32;
        memcpy(&x[n_sparse + n_dense + i], &bits, sizeof bits);
    }
    float *e = x + N, *s = x + 2 * N, *t = x + 3 * N;
    for (int64_t i = 0; i < N; i += L) {
        V v;
        memcpy(&v, x + i, sizeof v);
        V ev = vexp(v), sv = vsigmoid(v), tv = vtanh(v);
        memcpy(e + i, &ev, sizeof ev);
        memcpy(s + i, &sv, sizeof sv);
        memcpy(t + i, &tv, sizeof tv);
    }
    FILE *f = fopen(argv[1], "wb");
    if (f == NULL || fwrite(x, sizeof(float), 4 * N, f) != (size_t)(4 * N) || fclose(f) != 0) return 1;
    printf("%lld inputs\n", (long long)N);
    return 0;
}
