// The sequential product of each step, h_{t-1} W_hh^T (forward) and dG_t W_hh (backward), as a
// register-blocked micro-kernel over W_hh packed once per call into cache-resident panels.
// Included inside kernels_isa.cpp's per-ISA namespace; L = Simd<T>::lanes hidden units per vector.
//
// Forward panel p (units p*L .. p*L+L-1), H rows of G vectors:   [k][g][l] = W_hh[g*H + p*L + l][k]
// Backward panel q (units q*NB*L ..), G*H rows of NB vectors:    [k][u*L + l] = W_hh[k][q*NB*L + u*L + l]
// Units past H are packed as zeros, so every load is a full vector and the padding contributes 0.

template <typename T> inline int64_t forward_panel_count(int64_t H) { return (H + Simd<T>::lanes - 1) / Simd<T>::lanes; }
template <typename T> inline int64_t forward_panel_size(int64_t G, int64_t H) { return H * G * Simd<T>::lanes; }

// IN w_hh (G*H, H); OUT panels (forward_panel_count * forward_panel_size)
template <typename T> void pack_forward_panels(T *panels, const T *w_hh, int64_t G, int64_t H) {
    const int L = Simd<T>::lanes;
    const int64_t count = forward_panel_count<T>(H);
    for (int64_t p = 0; p < count; ++p) {
        T *out = panels + p * forward_panel_size<T>(G, H);
        for (int64_t k = 0; k < H; ++k)
            for (int64_t g = 0; g < G; ++g)
                for (int l = 0; l < L; ++l) {
                    const int64_t unit = p * L + l;
                    *out++ = unit < H ? w_hh[(g * H + unit) * H + k] : T(0);
                }
    }
}

template <typename T, int NB> inline int64_t backward_panel_count(int64_t H) {
    return (H + NB * Simd<T>::lanes - 1) / (NB * Simd<T>::lanes);
}
template <typename T, int NB> inline int64_t backward_panel_size(int64_t GH) { return GH * NB * Simd<T>::lanes; }

// IN w_hh (G*H, H); OUT panels (backward_panel_count * backward_panel_size)
template <typename T, int NB> void pack_backward_panels(T *panels, const T *w_hh, int64_t GH, int64_t H) {
    const int64_t width = NB * Simd<T>::lanes;
    const int64_t count = backward_panel_count<T, NB>(H);
    for (int64_t q = 0; q < count; ++q) {
        T *out = panels + q * backward_panel_size<T, NB>(GH);
        for (int64_t k = 0; k < GH; ++k)
            for (int64_t u = 0; u < width; ++u) {
                const int64_t unit = q * width + u;
                *out++ = unit < H ? w_hh[k * H + unit] : T(0);
            }
    }
}

// acc[r][n] = sum_k a_rows[r][k] * panel[k][n]   (R rows of A, NV vectors of panel columns)
// Each output lane is summed in the same order (k ascending) whatever the blocking or thread, which
// is what makes results bit-identical across thread counts.
template <typename T, int R, int NV>
inline void panel_product(const T *const *a_rows, int64_t K, const T *panel, vec_t<T> (&acc)[R][NV]) {
    typedef vec_t<T> V;
    const int L = Simd<T>::lanes;
    for (int r = 0; r < R; ++r)
        for (int n = 0; n < NV; ++n) acc[r][n] = V{};
    for (int64_t k = 0; k < K; ++k) {
        const T *w_row = panel + k * NV * L;
        V w[NV];
        for (int n = 0; n < NV; ++n) w[n] = load(w_row + n * L);
        for (int r = 0; r < R; ++r) {
            const V a = splat(a_rows[r][k]);
            for (int n = 0; n < NV; ++n) acc[r][n] += a * w[n];
        }
    }
}
