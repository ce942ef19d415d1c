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

// Weight matrices from this many elements (1 MB of float) are packed by all threads; smaller ones stay on
// one (with 2^16, a medium RNN forward at 2 threads measured about 2% slower).
constexpr int64_t kParallelPackElements = 1 << 18;
constexpr int kPackPrefetchTiles = 4;  // pack_row_panels: prefetch distance along each weight row, in tiles

template <typename T, int U> inline int64_t row_panel_count(int64_t N) {
    return (N + U * Simd<T>::lanes - 1) / (U * Simd<T>::lanes);
}
template <typename T, int U> inline int64_t row_panel_size(int64_t G, int64_t K) { return K * G * U * Simd<T>::lanes; }

// The transpose of an L x L tile held as L vectors (L = lanes): log2(L) rounds of two-vector shuffles;
// the round with block size w swaps, inside every 2w x 2w block, the top-right and bottom-left w x w blocks.
template <typename T> struct TileTranspose {
    typedef vec_t<T> V;
    typedef typename Simd<T>::ivec M;  // shuffle indices: 0..L-1 pick from a, L..2L-1 from b
    static constexpr int L = Simd<T>::lanes;
    static constexpr int rounds = L == 16 ? 4 : L == 8 ? 3 : L == 4 ? 2 : 1;
    M top[rounds], bottom[rounds];  // made once: the compiler does not fold index vectors built in a loop

    TileTranspose() {
        for (int r = 0, w = L / 2; r < rounds; ++r, w /= 2)
            for (int l = 0; l < L; ++l) {
                top[r][l] = (l & w) ? L + l - w : l;     // row i:     its left blocks, then row i+w's left blocks
                bottom[r][l] = (l & w) ? L + l : l + w;  // row i + w: row i's right blocks, then its right blocks
            }
    }
    inline void operator()(V (&v)[L]) const {  // unrolled, so the tile stays in registers
#pragma GCC unroll 4
        for (int r = 0, w = L / 2; r < rounds; ++r, w /= 2)
#pragma GCC unroll 16
            for (int i = 0; i < L; ++i)
                if (!(i & w)) {
                    const V a = v[i], b = v[i + w];
                    v[i] = __builtin_shuffle(a, b, top[r]);
                    v[i + w] = __builtin_shuffle(a, b, bottom[r]);
                }
    }
};

// IN w (G*N, K); OUT out: panel p of pack_row_panels (row_panel_size elements)
// A transpose by L x L tiles: L weight rows are read a vector at a time (whole cache lines), turned in
// registers and stored as L panel rows.
template <typename T, int U>
void pack_row_panel(T *out, const T *w, int64_t G, int64_t N, int64_t K, int64_t p, const TileTranspose<T> &transpose) {
    typedef vec_t<T> V;
    const int L = Simd<T>::lanes;
    const int64_t width = U * L;
    for (int64_t g = 0; g < G; ++g)
        for (int u = 0; u < U; ++u) {
            const int64_t unit0 = p * width + u * L;  // the tile's first unit (row of w within gate g)
            const int rows = N - unit0 < L ? (N - unit0 > 0 ? (int)(N - unit0) : 0) : L;  // units past N: zeros
            const T *src = w + (g * N + unit0) * K;
            for (int64_t k0 = 0; k0 < K; k0 += L) {
                const int nk = K - k0 < L ? (int)(K - k0) : L;
                V tile[Simd<T>::lanes];
                if (nk == L && rows == L) {
#pragma GCC unroll 16
                    for (int l = 0; l < L; ++l) {
                        // L row streams at once, from memory when the weights are cold (db-b4 LSTM,
                        // 1 thread: ~3% faster with it)
                        __builtin_prefetch(src + l * K + k0 + kPackPrefetchTiles * L);
                        tile[l] = load(src + l * K + k0);
                    }
                } else {
                    for (int l = 0; l < L; ++l) tile[l] = l < rows ? load_n(src + l * K + k0, nk) : V{};
                }
                transpose(tile);
#pragma GCC unroll 16
                for (int k = 0; k < nk; ++k) store(out + ((k0 + k) * G + g) * width + u * L, tile[k]);  // [k][g][u]
            }
        }
}

// IN w (G*N, K); OUT panels (row_panel_count * row_panel_size)
// Threads share the panels out (a copy: no effect on the bits).
template <typename T, int U>
void pack_row_panels(T *panels, const T *w, int64_t G, int64_t N, int64_t K, int num_threads = 1) {
    const int64_t count = row_panel_count<T, U>(N);
    const TileTranspose<T> transpose;
#pragma omp parallel for num_threads(num_threads) schedule(static) if (num_threads > 1 && count > 1 && G * N * K >= kParallelPackElements)
    for (int64_t p = 0; p < count; ++p)
        pack_row_panel<T, U>(panels + p * row_panel_size<T, U>(G, K), w, G, N, K, p, transpose);
}

template <typename T, int NB> inline int64_t column_panel_count(int64_t N) {
    return (N + NB * Simd<T>::lanes - 1) / (NB * Simd<T>::lanes);
}
template <typename T, int NB> inline int64_t column_panel_size(int64_t K) { return K * NB * Simd<T>::lanes; }

// IN w (K, N) with row stride ldw (N when 0); OUT panels (column_panel_count * column_panel_size)
// A copy by whole vectors: each weight row is read in order and its slices go to the panels (one output
// stream per panel). Threads share the rows out for big matrices (a copy: no effect on the bits).
template <typename T, int NB>
void pack_column_panels(T *panels, const T *w, int64_t K, int64_t N, int num_threads = 1, int64_t ldw = 0) {
    typedef vec_t<T> V;
    const int L = Simd<T>::lanes;
    const int64_t width = NB * L;
    const int64_t count = column_panel_count<T, NB>(N), size = column_panel_size<T, NB>(K);
    const int64_t full = N / L;  // vectors of the row that lie inside N
#pragma omp parallel for num_threads(num_threads) schedule(static) if (num_threads > 1 && K * N >= kParallelPackElements)
    for (int64_t k = 0; k < K; ++k) {
        const T *src = w + k * (ldw ? ldw : N);
        for (int64_t v = 0; v < count * NB; ++v) {  // vector v of the row: panel v / NB, slot v % NB
            T *dst = panels + (v / NB) * size + k * width + (v % NB) * L;
            const int64_t c = v * L;
            store(dst, v < full ? load(src + c) : (c < N ? load_n(src + c, (int)(N - c)) : V{}));  // zeros past N
        }
    }
}

// acc[r][n] += sum over k in [k0, k1) of a[r][k * AS] * panel[k][n], k ascending: the loop of panel_product,
// of the longer product's tail in panel_product_pair (inlined into both, so acc stays in registers) and, with
// AS > 1 (A packed [k][AS]), of the weight gradients (weight_gradient.h).
template <typename T, int R, int NV, int AS = 1>
__attribute__((always_inline)) inline void panel_accumulate(const T *const *a, int64_t k0, int64_t k1,
                                                            const T *panel, vec_t<T> (&acc)[R][NV]) {
    typedef vec_t<T> V;
    const int L = Simd<T>::lanes;
    for (int64_t k = k0; k < k1; ++k) {
        const T *w_row = panel + k * NV * L;
        V w[NV];
        for (int n = 0; n < NV; ++n) w[n] = load(w_row + n * L);
        for (int r = 0; r < R; ++r) {
            const V x = splat(a[r][k * AS]);
            for (int n = 0; n < NV; ++n) acc[r][n] += x * w[n];
        }
    }
}

// acc[r][n] = sum_k a_rows[r][k] * panel[k][n]   (R rows of A, NV vectors of panel columns)
// Each output lane is summed in the same order (k ascending) whatever the blocking or thread, which
// is what makes results bit-identical across thread counts.
template <typename T, int R, int NV>
inline void panel_product(const T *const *a_rows, int64_t K, const T *panel, vec_t<T> (&out)[R][NV]) {
    typedef vec_t<T> V;
    V acc[R][NV];  // local, so the accumulators live in registers for the whole k loop
    const T *a[R];
    for (int r = 0; r < R; ++r) {
        a[r] = a_rows[r];
        for (int n = 0; n < NV; ++n) acc[r][n] = V{};
    }
    panel_accumulate<T, R, NV>(a, 0, K, panel, acc);
    for (int r = 0; r < R; ++r)
        for (int n = 0; n < NV; ++n) out[r][n] = acc[r][n];
}

// panel_product that also prefetches (for writing) the n_lines cache lines at lines[], one after each of
// n_lines + 1 equal segments of the k loop: the misses of lines the caller will touch next overlap the
// multiply-adds, a few at a time. Issued as one burst instead they filled the miss queue and gained nothing
// (the backward's step loop, below). The same sums in the same order: the same bits as panel_product.
template <typename T, int R, int NV>
inline void panel_product_prefetching(const T *const *a_rows, int64_t K, const T *panel, vec_t<T> (&out)[R][NV],
                                      const T *const *lines, int n_lines) {
    typedef vec_t<T> V;
    V acc[R][NV];
    const T *a[R];
    for (int r = 0; r < R; ++r) {
        a[r] = a_rows[r];
        for (int n = 0; n < NV; ++n) acc[r][n] = V{};
    }
    const int64_t segment = K / (n_lines + 1) > 1 ? K / (n_lines + 1) : 1;
    int64_t k = 0;
    int i = 0;
    for (; i < n_lines && k + segment <= K; ++i, k += segment) {
        panel_accumulate<T, R, NV>(a, k, k + segment, panel, acc);
        __builtin_prefetch(lines[i], 1, 3);
    }
    panel_accumulate<T, R, NV>(a, k, K, panel, acc);
    for (; i < n_lines; ++i) __builtin_prefetch(lines[i], 1, 3);
    for (int r = 0; r < R; ++r)
        for (int n = 0; n < NV; ++n) out[r][n] = acc[r][n];
}

// panel_product twice in one pass over k: out_a from (a_rows, Ka, panel_a) and out_b from (b_rows, Kb, panel_b),
// each output summed in the same order as panel_product gives it alone (the same bits). With few rows
// panel_product runs R * NV chains of dependent multiply-adds, fewer than the FMA units' latency times their
// number (LSTM, one row: 4 chains of 4-cycle FMAs on two units, half their rate); the pair runs twice as many.
template <typename T, int R, int NV>
inline void panel_product_pair(const T *const *a_rows, int64_t Ka, const T *panel_a, vec_t<T> (&out_a)[R][NV],
                               const T *const *b_rows, int64_t Kb, const T *panel_b, vec_t<T> (&out_b)[R][NV]) {
    typedef vec_t<T> V;
    const int L = Simd<T>::lanes;
    V acc_a[R][NV], acc_b[R][NV];
    const T *a[R], *b[R];
    for (int r = 0; r < R; ++r) {
        a[r] = a_rows[r];
        b[r] = b_rows[r];
        for (int n = 0; n < NV; ++n) acc_a[r][n] = acc_b[r][n] = V{};
    }
    const int64_t K = Ka < Kb ? Ka : Kb;
    for (int64_t k = 0; k < K; ++k) {
        const T *wa_row = panel_a + k * NV * L, *wb_row = panel_b + k * NV * L;
        V wa[NV], wb[NV];
        for (int n = 0; n < NV; ++n) {
            wa[n] = load(wa_row + n * L);
            wb[n] = load(wb_row + n * L);
        }
        for (int r = 0; r < R; ++r) {
            const V xa = splat(a[r][k]), xb = splat(b[r][k]);
            for (int n = 0; n < NV; ++n) {
                acc_a[r][n] += xa * wa[n];
                acc_b[r][n] += xb * wb[n];
            }
        }
    }
    panel_accumulate<T, R, NV>(a, K, Ka, panel_a, acc_a);  // the longer of the two goes on alone
    panel_accumulate<T, R, NV>(b, K, Kb, panel_b, acc_b);
    for (int r = 0; r < R; ++r)
        for (int n = 0; n < NV; ++n) {
            out_a[r][n] = acc_a[r][n];
            out_b[r][n] = acc_b[r][n];
        }
}
