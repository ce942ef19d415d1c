// The GEMMs after the backward loop on the micro-kernel of recurrent_gemm.h instead of OpenBLAS:
//   weight gradients  C (M, N) += A^T B, summed over the K valid (t, b) rows: A = dG (K, M), B = x or h_{t-1};
//   input gradient    C (K, N) (+)= A W, A = dG (K, M) and W = W_ih (M, N), in up to two parts of A's columns
//                     (the GRU's [dr dz] in the tape's gates and dn in aux).
// Included inside kernels_isa.cpp's per-ISA namespace (after recurrent_gemm.h and loop_support.h).
//
// Weight gradients: for each chunk of kc rows k, A's columns are packed R at a time ([k][R] in slots of 8)
// and B's columns 4 vectors at a time ([k][64]), the 6 x 4 vector micro-kernel runs on the two, and each
// element of C gets the chunk's sum added, chunks in ascending k. dx: each thread packs the column panels of W
// its items need (a chunk of W's rows at a time) and the forward's panel_accumulate runs on dG's rows; both
// are panel_accumulate's k loop. Each element of C is computed by the same code in the same
// order whatever thread owns it: results are bit-identical for any thread count.
// Against OpenBLAS's sgemm (SkylakeX kernels, which pack both operands of every call), Zen 5, alternating
// runs: alone, 1 thread, dW 1.00-1.09x and dx 1.06-1.14x (RNN medium's shapes, K = 6400: OpenBLAS 146-186
// GF/s, these 155-202); 2 threads 1.05-1.16x and 1.09-1.27x. In a training step (forward + backward), where
// the three products are 30-40% of the time, alternating the two ways call by call: 1 thread 1.00-1.06x,
// 2 threads 0.96-1.04x (medium, large and DeepBench's training rows).

constexpr int kGradVectors = 4;                           // columns of C per block: 4 vectors
constexpr int kGradRows = kAccumulators / kGradVectors;   // rows of C per block: 6 (AVX-512), 3 (AVX2)
constexpr int kGradRowStride = (kGradRows + 7) / 8 * 8;  // packed A: R values per k in slots of 8 (32 bytes: no store crosses a line)
// Rows k per chunk: 128, so a block of B's chunk (128 x 64 floats) stays in L1, while C fits in half the L2;
// a bigger C goes through the cache once per chunk, so it gets chunks of 512 (DeepBench's training LSTM,
// C 16 MB, K = 800, 1 thread: 0.96x sgemm's time with 128). A is packed kGradPackedA values at a time (256 KB).
constexpr int64_t kGradChunk = 128, kGradBigChunk = 512, kGradPackedA = 1 << 16;
constexpr int64_t kGradWeightChunk = 1024;  // dx: rows of W per chunk when W's panel outgrows half the L2

// Columns i0 .. i1 of a (kc rows, stride lda) as blocks of R columns: block j at out + j * kc * S, [k][S] with
// the first R slots used (zeros past i1: a last, partial block).
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
                else  // the last block or two
                    for (int r = 0; r < R; ++r) dst[r] = i + r < i1 ? src[r] : T(0);
            }
    }
}

// c[r][col0 + n * L ..] for r < rows (the block's rows inside C) and the vectors inside N: acc[r][n], added
// to what c holds when add (masked at the last column).
template <typename T, int R, int NV>
inline void store_block(T *c, int64_t ldc, int rows, int64_t col0, int64_t N, const vec_t<T> (&acc)[R][NV], bool add) {
    const int L = Simd<T>::lanes;
    for (int r = 0; r < rows; ++r)
        for (int n = 0; n < NV && col0 + n * L < N; ++n) {
            T *dst = c + r * ldc + col0 + n * L;
            const int nl = (int)imin(L, N - (col0 + n * L));
            store_n(dst, add ? load_n(dst, nl) + acc[r][n] : acc[r][n], nl);
        }
}

// IN a (K, M) with row stride lda, b (K, N) with row stride ldb; IN/OUT c (M, N) with row stride ldc:
// c += a^T b. Threads share C's row blocks out in contiguous runs. For each chunk of kc rows k, a thread
// packs B's columns by whole vectors (pack_column_panels: kc x 64 per block of C's columns) and its columns
// of A (kGradPackedA values at a time, so the packed block stays in L2); every element of C gets the chunk's sum
// added, chunks in order.
template <typename T>
int transposed_product_add(int64_t M, int64_t N, int64_t K, const T *a, int64_t lda, const T *b, int64_t ldb, T *c,
                           int64_t ldc, int num_threads) {
    constexpr int R = kGradRows, NV = kGradVectors, S = kGradRowStride;
    const int L = Simd<T>::lanes, width = NV * L;
    if (M <= 0 || N <= 0 || K <= 0) return FASTRNN_OK;
    const int64_t n_row_blocks = (M + R - 1) / R, n_col_blocks = column_panel_count<T, NV>(N);
    const int nt = num_threads > 1 && n_row_blocks > 1 && 2.0 * (double)M * (double)N * (double)K >= 4e6 ? num_threads : 1;
    const int64_t chunk = (double)M * (double)N * sizeof(T) > 0.5 * (double)fastrnn_l2_cache_bytes() ? kGradBigChunk : kGradChunk;
    const int64_t panel_rows = kGradPackedA / (chunk * S) * R;  // columns of A packed at a time
    const int64_t a_size = chunk * panel_rows / R * S, b_size = n_col_blocks * chunk * width;
    Buffer<T> scratch;
    if (!scratch.allocate(nt * (a_size + b_size))) return FASTRNN_ERR_NOMEM;
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        int tid, nth;
        current_thread(tid, nth);
        T *a_packed = scratch.data + tid * (a_size + b_size), *b_packed = a_packed + a_size;
        int64_t begin, end;
        thread_range(n_row_blocks, tid, nth, begin, end);
        for (int64_t k0 = 0; k0 < K && begin < end; k0 += chunk) {
            const int64_t kc = imin(chunk, K - k0), i_end = imin(end * R, M);
            pack_column_panels<T, NV>(b_packed, b + k0 * ldb, kc, N, 1, ldb);  // block q at q * kc * width
            for (int64_t p0 = begin * R; p0 < i_end; p0 += panel_rows) {
                const int64_t p1 = imin(p0 + panel_rows, i_end);
                pack_row_block_chunk<T, R, S>(a_packed, a + k0 * lda, lda, kc, p0, p1);
                for (int64_t q = 0; q < n_col_blocks; ++q)
                    for (int64_t i0 = p0; i0 < p1; i0 += R) {
                        const T *a_block = a_packed + (i0 - p0) / R * kc * S, *rows[R];
                        for (int r = 0; r < R; ++r) rows[r] = a_block + r;
                        vec_t<T> acc[R][NV] = {};
                        panel_accumulate<T, R, NV, S>(rows, 0, kc, b_packed + q * kc * width, acc);
                        store_block<T, R, NV>(c + i0 * ldc, ldc, (int)imin(R, p1 - i0), q * width, N, acc, true);
                    }
            }
        }
    }
    return FASTRNN_OK;
}

// IN a1 (K, M1) and a2 (K, M2) (a2 may be NULL, M2 = 0) with row strides lda1, lda2; w (M1 + M2, N) row-major;
// OUT c (K, N) with row stride ldc: c = [a1 a2] w, or c += [a1 a2] w when accumulate.
// Items are (column panel, block of rows), panel major, each thread keeping its items for every chunk of
// W's rows; a thread packs each panel's chunk of W (pack_column_panels) when its items reach it, into a
// buffer of its own that stays in L2 (a packed copy of all of W, 16 MB for DeepBench's training LSTM, was
// a fresh mapping on every call: 4096 page faults).
template <typename T>
int rows_times_weight(int64_t K, int64_t N, const T *a1, int64_t lda1, int64_t M1, const T *a2, int64_t lda2,
                      int64_t M2, const T *w, T *c, int64_t ldc, bool accumulate, int num_threads) {
    constexpr int R = kGradRows, NV = kGradVectors;
    const int L = Simd<T>::lanes;
    if (K <= 0 || N <= 0) return FASTRNN_OK;
    const int64_t M = M1 + M2, width = NV * L, n_panels = column_panel_count<T, NV>(N);
    const int64_t n_row_blocks = (K + R - 1) / R, n_items = n_panels * n_row_blocks;
    const int nt = num_threads > 1 && n_items > 1 && 2.0 * (double)M * (double)N * (double)K >= 4e6 ? num_threads : 1;
    // W's panel for one block of columns is M x 64: past half the L2 it would come from the L3 for every
    // block of rows, so the sum over W's rows goes in chunks (DeepBench's training LSTM: M = 4096, 1 MB).
    const int64_t chunk = (double)M * width * sizeof(T) > 0.5 * (double)fastrnn_l2_cache_bytes() ? kGradWeightChunk : M;
    Buffer<T> scratch;
    if (!scratch.allocate(nt * chunk * width)) return FASTRNN_ERR_NOMEM;
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        int tid, nth;
        current_thread(tid, nth);
        T *panel_chunk = scratch.data + tid * chunk * width;
        int64_t begin, end;
        thread_range(n_items, tid, nth, begin, end);
        for (int64_t k0 = 0; k0 < M; k0 += chunk) {  // chunks of W's rows, each summed into c in order
            const int64_t k1 = imin(M, k0 + chunk);
            const bool add = accumulate || k0 > 0;
            const int64_t m = k0 > M1 ? k0 : imin(M1, k1);  // the chunk's rows k0 .. m of W are a1's, m .. k1 a2's
            int64_t packed = -1;
            for (int64_t item = begin; item < end; ++item) {
                const int64_t q = item / n_row_blocks, r0 = item % n_row_blocks * R;
                if (q != packed) {  // rows k0 .. k1 of W, columns of panel q
                    pack_column_panels<T, NV>(panel_chunk, w + k0 * N + q * width, k1 - k0, imin(width, N - q * width), 1, N);
                    packed = q;
                }
                dispatch_rows<R>(imin(R, K - r0), [&](auto rows) {
                    constexpr int RR = decltype(rows)::value;
                    const T *p1[RR], *p2[RR];
                    for (int r = 0; r < RR; ++r) {
                        p1[r] = a1 + (r0 + r) * lda1 + k0;
                        p2[r] = k1 > m ? a2 + (r0 + r) * lda2 + (m - M1) : nullptr;
                    }
                    vec_t<T> acc[RR][NV] = {};
                    if (m > k0) panel_accumulate<T, RR, NV>(p1, 0, m - k0, panel_chunk, acc);
                    if (k1 > m) panel_accumulate<T, RR, NV>(p2, 0, k1 - m, panel_chunk + (m - k0) * width, acc);
                    store_block<T, RR, NV>(c + r0 * ldc, ldc, RR, q * width, N, acc, add);
                });
            }
        }
    }
    return FASTRNN_OK;
}

// The AVX2 build keeps sgemm: built for AVX2 (3 x 4 vectors) and timed on the Zen 5 against OpenBLAS's
// Haswell kernels (OPENBLAS_CORETYPE=Haswell), 1 thread, dW ran 0.93-0.97x and dx 0.99-1.03x. float64 keeps
// OpenBLAS's dgemm (not measured).
// Products under kGradMinFlops, or with fewer than a block of columns (N < 4 vectors, e.g. the small rows'
// 32 inputs), stay with sgemm: there the packing and the zero-padded columns cost more than they save
// (1 thread, K = 800: N = 32 0.47-0.78x, M = N = 64 0.66-0.96x; from about 2e7 flops even: M = 192 or
// 256 and N = 64, 0.91-1.15x). The small rows (50, 16, 32, 64) had run 0.82-0.87x slower at 1 thread with
// every product here (LSTM 0.55x at 2).
constexpr double kGradMinFlops = 2e7;
template <typename T> inline bool panel_gradients(int64_t M, int64_t N, int64_t K) {
    return kAccumulators >= 24 && std::is_same<T, float>::value && fastrnn_panel_gradients() &&
           N >= kGradVectors * Simd<T>::lanes && 2.0 * (double)M * (double)N * (double)K >= kGradMinFlops;
}

// c (M, N) += a^T b: a weight gradient summed over all K rows. (The micro-kernel's scratch is allocated
// before it writes anything, so when that fails sgemm does the product: these never fail.)
template <typename T>
void weight_gradient_add(int64_t M, int64_t N, int64_t K, const T *a, int64_t lda, const T *b, int64_t ldb, T *c,
                         int64_t ldc, int num_threads) {
    if (panel_gradients<T>(M, N, K) && transposed_product_add(M, N, K, a, lda, b, ldb, c, ldc, num_threads) == FASTRNN_OK)
        return;
    parallel_gemm(true, false, M, N, K, T(1), a, lda, b, ldb, T(1), c, ldc, num_threads);
}

// c (K, N) = [a1 a2] w, or c += [a1 a2] w when accumulate: the input gradient (a2: the GRU's dn, or NULL).
template <typename T>
void input_gradient(int64_t K, int64_t N, const T *a1, int64_t lda1, int64_t M1, const T *a2, int64_t lda2, int64_t M2,
                    const T *w, T *c, int64_t ldc, bool accumulate, int num_threads) {
    if (panel_gradients<T>(M1 + M2, N, K) &&
        rows_times_weight(K, N, a1, lda1, M1, a2, lda2, M2, w, c, ldc, accumulate, num_threads) == FASTRNN_OK)
        return;
    parallel_gemm(false, false, K, N, M1, T(1), a1, lda1, w, N, accumulate ? T(1) : T(0), c, ldc, num_threads);
    if (M2 > 0) parallel_gemm(false, false, K, N, M2, T(1), a2, lda2, w + M1 * N, N, T(1), c, ldc, num_threads);
}
