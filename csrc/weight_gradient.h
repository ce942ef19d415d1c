// The GEMMs after the backward loop on the micro-kernel of recurrent_gemm.h instead of OpenBLAS:
//   weight gradients  C (M, N) += A^T B, summed over the K valid (t, b) rows: A = dG (K, M), B = x or h_{t-1};
//   input gradient    C (K, N) (+)= A W, A = dG (K, M) and W = W_ih (M, N), in up to two parts of A's columns
//                     (the GRU's [dr dz] in the tape's gates and dn in aux).
// Included inside kernels_isa.cpp's per-ISA namespace (after recurrent_gemm.h and loop_support.h).
//
// Weight gradients: for each chunk of kc rows k, A's columns are packed R at a time ([k][R] in slots of 8)
// and B's columns 4 vectors at a time ([k][64]), the 6 x 4 vector micro-kernel runs on the two, and each
// element of C gets the chunk's sum added, chunks in ascending k. dx: W is packed by columns once and the
// forward's panel_accumulate runs on dG's rows. Each element of C is computed by the same code in the same
// order whatever thread owns it: results are bit-identical for any thread count.
// Against OpenBLAS's sgemm (SkylakeX kernels, which pack both operands of every call), Zen 5, alternating
// runs: alone, 1 thread, dW 1.00-1.09x and dx 1.06-1.14x (RNN medium's shapes, K = 6400: OpenBLAS 146-186
// GF/s, these 155-202); 2 threads 1.05-1.16x and 1.09-1.27x. In a training step (forward + backward) the
// three products are 30-40% of the time: 1 thread 1.01-1.04x (LSTM large 0.98-1.02x), 2 threads 1.03-1.06x.

constexpr int kGradVectors = 4;                           // columns of C per block: 4 vectors
constexpr int kGradRows = kAccumulators / kGradVectors;   // rows of C per block: 6 (AVX-512), 3 (AVX2)
constexpr int kGradRowStride = (kGradRows + 7) / 8 * 8;  // packed A: R values per k in slots of 8 (32 bytes: no store crosses a line)
constexpr int64_t kGradChunk = 128;                       // rows k per chunk: a chunk of B (128 x 64 floats) stays in L1
constexpr int64_t kGradPanelRows = 64 * kGradRows;        // columns of A packed at a time (rows of C): 256 KB of L2

// acc[r][n] += sum over k < kc of a_block[k][r] * b_chunk[k][n]: R rows of C from a packed block of A's
// columns against a packed chunk of B.
template <typename T, int R, int NV>
inline void transposed_accumulate(const T *a_block, int64_t kc, const T *b_chunk, vec_t<T> (&acc)[R][NV]) {
    typedef vec_t<T> V;
    const int L = Simd<T>::lanes;
    for (int64_t k = 0; k < kc; ++k) {
        const T *w_row = b_chunk + k * NV * L, *a_row = a_block + k * kGradRowStride;
        V w[NV];
        for (int n = 0; n < NV; ++n) w[n] = load(w_row + n * L);
        for (int r = 0; r < R; ++r) {
            const V x = splat(a_row[r]);
            for (int n = 0; n < NV; ++n) acc[r][n] += x * w[n];
        }
    }
}

// out[k][0 .. width) = b[k * ldb + n0 + 0 .. width) for k < kc, zeros past column N.
template <typename T>
void pack_column_chunk(T *out, const T *b, int64_t ldb, int64_t kc, int64_t n0, int64_t N, int width) {
    const int L = Simd<T>::lanes;
    for (int64_t k = 0; k < kc; ++k)
        for (int v = 0; v < width; v += L) {
            const int64_t c = n0 + v;
            store(out + k * width + v, c + L <= N ? load(b + k * ldb + c) : c < N ? load_n(b + k * ldb + c, (int)(N - c)) : vec_t<T>{});
        }
}

// Columns i0 .. i1 of a (kc rows, stride lda) as blocks of R columns: block j at out + j * kc * R, [k][r],
// zeros past i1 (a last, partial block).
template <typename T, int R, int S>
void pack_row_block_chunk(T *out, const T *a, int64_t lda, int64_t kc, int64_t i0, int64_t i1) {
    for (int64_t k0 = 0; k0 < kc; k0 += 16) {  // 16 rows of A at a time stay in L1 while every block takes its part
        const int64_t k1 = imin(kc, k0 + 16);
        for (int64_t k = k1; k < imin(kc, k1 + 16); ++k)  // the next 16 rows, from memory: A is read once
            for (int64_t i = i0; i < i1; i += 64 / sizeof(T)) __builtin_prefetch(a + k * lda + i);
        for (int64_t i = i0, j = 0; i < i1; i += R, ++j)
            for (int64_t k = k0; k < k1; ++k) {
                const T *src = a + k * lda + i;
                T *dst = out + (j * kc + k) * S;
                if (i + S <= i1)  // S values at once (the slots past R take the next block's, unread)
                    __builtin_memcpy(dst, src, S * sizeof(T));
                else if (i + R <= i1)
                    for (int r = 0; r < R; ++r) dst[r] = src[r];
                else
                    for (int r = 0; r < R; ++r) dst[r] = i + r < i1 ? src[r] : T(0);
            }
    }
}

// IN a (K, M) with row stride lda, b (K, N) with row stride ldb; IN/OUT c (M, N) with row stride ldc:
// c += a^T b. Threads share C's row blocks out in contiguous runs. For each chunk of kc rows k, a thread
// packs its columns of A (kGradPanelRows at a time, so the packed block stays in L2) and, for each
// block of C's columns, that block of B; every element of C gets the chunk's sum added, chunks in order.
template <typename T>
int transposed_product_add(int64_t M, int64_t N, int64_t K, const T *a, int64_t lda, const T *b, int64_t ldb, T *c,
                           int64_t ldc, int num_threads) {
    constexpr int R = kGradRows, NV = kGradVectors;
    const int L = Simd<T>::lanes, width = NV * L;
    if (M <= 0 || N <= 0 || K <= 0) return FASTRNN_OK;
    const int64_t n_row_blocks = (M + R - 1) / R;
    const int nt = num_threads > 1 && n_row_blocks > 1 && 2.0 * (double)M * (double)N * (double)K >= 4e6 ? num_threads : 1;
    const int64_t a_size = kGradChunk * kGradPanelRows / R * kGradRowStride, b_size = kGradChunk * width;
    Buffer<T> scratch;
    if (!scratch.allocate(nt * (a_size + b_size))) return FASTRNN_ERR_NOMEM;
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        int tid, nth;
        current_thread(tid, nth);
        T *a_packed = scratch.data + tid * (a_size + b_size), *b_packed = a_packed + a_size;
        int64_t begin, end;
        thread_range(n_row_blocks, tid, nth, begin, end);
        for (int64_t k0 = 0; k0 < K; k0 += kGradChunk) {
            const int64_t kc = imin(kGradChunk, K - k0);
            for (int64_t p0 = begin * R; p0 < end * R && p0 < M; p0 += kGradPanelRows) {
                const int64_t p1 = imin(imin(p0 + kGradPanelRows, end * R), M);
                pack_row_block_chunk<T, R, kGradRowStride>(a_packed, a + k0 * lda, lda, kc, p0, p1);
                for (int64_t n0 = 0; n0 < N; n0 += width) {
                    pack_column_chunk(b_packed, b + k0 * ldb, ldb, kc, n0, N, width);
                    for (int64_t i0 = p0; i0 < p1; i0 += R) {
                        vec_t<T> acc[R][NV] = {};
                        transposed_accumulate<T, R, NV>(a_packed + (i0 - p0) / R * kc * kGradRowStride, kc, b_packed, acc);
                        for (int r = 0; r < R && i0 + r < p1; ++r)
                            for (int n = 0; n < NV && n0 + n * L < N; ++n) {
                                T *dst = c + (i0 + r) * ldc + n0 + n * L;
                                const int nl = (int)imin(L, N - (n0 + n * L));
                                store_n(dst, load_n(dst, nl) + acc[r][n], nl);
                            }
                    }
                }
            }
        }
    }
    return FASTRNN_OK;
}

// IN a1 (K, M1) and a2 (K, M2) (a2 may be NULL, M2 = 0) with row strides lda1, lda2; w (M1 + M2, N) row-major;
// OUT c (K, N) with row stride ldc: c = [a1 a2] w, or c += [a1 a2] w when accumulate.
// W is packed by columns once (pack_column_panels); items are (column panel, block of rows), panel major.
template <typename T>
int rows_times_weight(int64_t K, int64_t N, const T *a1, int64_t lda1, int64_t M1, const T *a2, int64_t lda2,
                      int64_t M2, const T *w, T *c, int64_t ldc, bool accumulate, int num_threads) {
    constexpr int R = kGradRows, NV = kGradVectors;
    const int L = Simd<T>::lanes;
    if (K <= 0 || N <= 0) return FASTRNN_OK;
    const int64_t M = M1 + M2, n_panels = column_panel_count<T, NV>(N), panel_size = column_panel_size<T, NV>(M);
    const int64_t n_row_blocks = (K + R - 1) / R, n_items = n_panels * n_row_blocks;
    const int nt = num_threads > 1 && n_items > 1 && 2.0 * (double)M * (double)N * (double)K >= 4e6 ? num_threads : 1;
    Buffer<T> panels;
    if (!panels.allocate(n_panels * panel_size)) return FASTRNN_ERR_NOMEM;
    pack_column_panels<T, NV>(panels.data, w, M, N, nt);
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        int tid, nth;
        current_thread(tid, nth);
        int64_t begin, end;
        thread_range(n_items, tid, nth, begin, end);
        for (int64_t item = begin; item < end; ++item) {
            const int64_t q = item / n_row_blocks, r0 = item % n_row_blocks * R;
            const T *panel = panels.data + q * panel_size;
            dispatch_rows<R>(imin(R, K - r0), [&](auto rows) {
                constexpr int RR = decltype(rows)::value;
                const T *p1[RR], *p2[RR];
                for (int r = 0; r < RR; ++r) {
                    p1[r] = a1 + (r0 + r) * lda1;
                    p2[r] = a2 ? a2 + (r0 + r) * lda2 : nullptr;
                }
                vec_t<T> acc[RR][NV] = {};
                panel_accumulate<T, RR, NV>(p1, 0, M1, panel, acc);
                if (M2 > 0) panel_accumulate<T, RR, NV>(p2, 0, M2, panel + M1 * NV * L, acc);
                for (int r = 0; r < RR; ++r)
                    for (int n = 0; n < NV && (q * NV + n) * L < N; ++n) {
                        T *dst = c + (r0 + r) * ldc + (q * NV + n) * L;
                        const int nl = (int)imin(L, N - (q * NV + n) * L);
                        store_n(dst, accumulate ? load_n(dst, nl) + acc[r][n] : acc[r][n], nl);
                    }
            });
        }
    }
    return FASTRNN_OK;
}

// The AVX2 build keeps sgemm: built for AVX2 (3 x 4 vectors) and timed on the Zen 5 against OpenBLAS's
// Haswell kernels (OPENBLAS_CORETYPE=Haswell), 1 thread, dW ran 0.93-0.97x and dx 0.99-1.03x. float64 keeps
// OpenBLAS's dgemm (not measured).
template <typename T> inline bool panel_gradients() {
    return kAccumulators >= 24 && std::is_same<T, float>::value && fastrnn_panel_gradients();
}

// c (M, N) += a^T b: a weight gradient summed over all K rows.
template <typename T>
int weight_gradient_add(int64_t M, int64_t N, int64_t K, const T *a, int64_t lda, const T *b, int64_t ldb, T *c,
                        int64_t ldc, int num_threads) {
    if (panel_gradients<T>()) return transposed_product_add(M, N, K, a, lda, b, ldb, c, ldc, num_threads);
    parallel_gemm(true, false, M, N, K, T(1), a, lda, b, ldb, T(1), c, ldc, num_threads);
    return FASTRNN_OK;
}

// c (K, N) = [a1 a2] w, or c += [a1 a2] w when accumulate: the input gradient (a2: the GRU's dn, or NULL).
template <typename T>
int input_gradient(int64_t K, int64_t N, const T *a1, int64_t lda1, int64_t M1, const T *a2, int64_t lda2, int64_t M2,
                   const T *w, T *c, int64_t ldc, bool accumulate, int num_threads) {
    if (panel_gradients<T>()) return rows_times_weight(K, N, a1, lda1, M1, a2, lda2, M2, w, c, ldc, accumulate, num_threads);
    parallel_gemm(false, false, K, N, M1, T(1), a1, lda1, w, N, accumulate ? T(1) : T(0), c, ldc, num_threads);
    if (M2 > 0) parallel_gemm(false, false, K, N, M2, T(1), a2, lda2, w + M1 * N, N, T(1), c, ldc, num_threads);
    return FASTRNN_OK;
}
