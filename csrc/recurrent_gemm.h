// The sequential product of each step, h_{t-1} W_hh^T (forward) and dG_t W_hh (backward), as a
// register-blocked micro-kernel over W_hh packed once per call into cache-resident panels.
// Included inside kernels_isa.cpp's per-ISA namespace; L = Simd<T>::lanes hidden units per vector.
//
// Two packings of a weight matrix, both made once per call:
//  * by rows, for y = x W^T with W (G*N, K) holding G gates of N units each (forward: W_hh, W_hr).
//    Panel p covers units p*U*L .. p*U*L+U*L-1 of every gate: K rows of G*U vectors,
//    [k][g][u*L + l] = W[g*N + p*U*L + u*L + l][k]
//  * by columns, for y = x W with W (K, N) (backward: dG W_hh, dh W_hr).
//    Panel q covers columns q*NB*L ..: K rows of NB vectors, [k][u*L + l] = W[k][q*NB*L + u*L + l]
// Units past N are packed as zeros, so every load is a full vector and the padding contributes 0.

template <typename T, int U> inline int64_t row_panel_count(int64_t N) {
    return (N + U * Simd<T>::lanes - 1) / (U * Simd<T>::lanes);
}
template <typename T, int U> inline int64_t row_panel_size(int64_t G, int64_t K) { return K * G * U * Simd<T>::lanes; }

// IN w (G*N, K); OUT panels (row_panel_count * row_panel_size)
// A transpose, in blocks of KB values of k: each weight row is read in order, and the block of the
// panel it fills (KB x G x width values, 16 KB for float) stays in L1 until complete. (Walking the panel
// in output order instead read G*width rows at once, one value each: 2 ms for a 4 MB W_hh.)
template <typename T, int U> void pack_row_panels(T *panels, const T *w, int64_t G, int64_t N, int64_t K) {
    const int64_t width = U * Simd<T>::lanes, KB = 64;
    const int64_t count = row_panel_count<T, U>(N);
    for (int64_t p = 0; p < count; ++p) {
        T *out = panels + p * row_panel_size<T, U>(G, K);
        for (int64_t k0 = 0; k0 < K; k0 += KB) {
            const int64_t k1 = k0 + KB < K ? k0 + KB : K;
            for (int64_t g = 0; g < G; ++g)
                for (int64_t u = 0; u < width; ++u) {
                    const int64_t unit = p * width + u;
                    T *dst = out + (k0 * G + g) * width + u;  // [k][g][u], k from k0
                    const T *src = unit < N ? w + (g * N + unit) * K : nullptr;
                    for (int64_t k = k0; k < k1; ++k) dst[(k - k0) * G * width] = src ? src[k] : T(0);
                }
        }
    }
}

template <typename T, int NB> inline int64_t column_panel_count(int64_t N) {
    return (N + NB * Simd<T>::lanes - 1) / (NB * Simd<T>::lanes);
}
template <typename T, int NB> inline int64_t column_panel_size(int64_t K) { return K * NB * Simd<T>::lanes; }

// IN w (K, N); OUT panels (column_panel_count * column_panel_size)
template <typename T, int NB> void pack_column_panels(T *panels, const T *w, int64_t K, int64_t N) {
    const int64_t width = NB * Simd<T>::lanes;
    const int64_t count = column_panel_count<T, NB>(N);
    for (int64_t q = 0; q < count; ++q) {
        T *out = panels + q * column_panel_size<T, NB>(K);
        for (int64_t k = 0; k < K; ++k)
            for (int64_t u = 0; u < width; ++u) {
                const int64_t unit = q * width + u;
                *out++ = unit < N ? w[k * N + unit] : T(0);
            }
    }
}

// acc[r][n] = sum_k a_rows[r][k] * panel[k][n]   (R rows of A, NV vectors of panel columns)
// Each output lane is summed in the same order (k ascending) whatever the blocking or thread, which
// is what makes results bit-identical across thread counts.
template <typename T, int R, int NV>
inline void panel_product(const T *const *a_rows, int64_t K, const T *panel, vec_t<T> (&out)[R][NV]) {
    typedef vec_t<T> V;
    const int L = Simd<T>::lanes;
    V acc[R][NV];  // local, so the accumulators live in registers for the whole k loop
    const T *a[R];
    for (int r = 0; r < R; ++r) {
        a[r] = a_rows[r];
        for (int n = 0; n < NV; ++n) acc[r][n] = V{};
    }
    for (int64_t k = 0; k < K; ++k) {
        const T *w_row = panel + k * NV * L;
        V w[NV];
        for (int n = 0; n < NV; ++n) w[n] = load(w_row + n * L);
        for (int r = 0; r < R; ++r) {
            const V x = splat(a[r][k]);
            for (int n = 0; n < NV; ++n) acc[r][n] += x * w[n];
        }
    }
    for (int r = 0; r < R; ++r)
        for (int n = 0; n < NV; ++n) out[r][n] = acc[r][n];
}
