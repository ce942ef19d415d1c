// The large GEMMs (input projection, weight gradients, dx) go to OpenBLAS (scipy-openblas32: 32-bit
// indices, symbols prefixed scipy_), except where the kernels' own micro-kernel measured faster: the AVX-512
// build's float32 input projection past 32 rows (layer_forward.h) and its weight gradients and dx
// (weight_gradient.h). The Python layer refuses sizes a 32-bit index cannot address.
// Row-major, C = alpha * op(A) op(B) + beta * C.
//
// OpenBLAS runs single-threaded (fastrnn.cpp sets it once): its own thread pool would spin against
// our OpenMP threads on the same cores. parallel_gemm splits C into tiles that depend only on the
// shape, never on the thread count, and OpenMP threads share the tiles out: each C element is always
// computed by the same call, so results are bit-identical for any thread count.
// (cblas.h is included by kernels_isa.cpp, outside the per-ISA namespace)

inline void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                 int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
    scipy_cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
                      (blasint)m, (blasint)n, (blasint)k, alpha, a, (blasint)lda, b, (blasint)ldb, beta, c,
                      (blasint)ldc);
}

inline void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, double alpha, const double *a,
                 int64_t lda, const double *b, int64_t ldb, double beta, double *c, int64_t ldc) {
    scipy_cblas_dgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
                      (blasint)m, (blasint)n, (blasint)k, alpha, a, (blasint)lda, b, (blasint)ldb, beta, c,
                      (blasint)ldc);
}

// Tiles of C along its longer side: a power of two of them (1 to 16, so 2, 4, 8 or 16 threads get equal
// shares), each at least 128 rows or columns, 256 from 1024 on. Each tile repacks the other operand: with
// 128-row tiles, OpenBLAS's copy routines took ~10% of a 1-thread LSTM medium training step, and 256
// made that step ~3% faster. A small product is one call.
inline int64_t gemm_tile(int64_t extent) {
    const int64_t min_tile = extent >= 1024 ? 256 : 128;
    int64_t n_tiles = 1;
    while (n_tiles < 16 && extent / (2 * n_tiles) >= min_tile) n_tiles *= 2;
    return ((extent + n_tiles - 1) / n_tiles + 15) / 16 * 16;
}

template <typename T>
void parallel_gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T *a, int64_t lda,
                   const T *b, int64_t ldb, T beta, T *c, int64_t ldc, int num_threads) {
    if (m <= 0 || n <= 0) return;
    if (2.0 * (double)m * (double)n * (double)k < 4e6) {  // small (decided by shape alone): one call
        gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    const bool split_rows = m >= n;
    const int64_t extent = split_rows ? m : n;
    const int64_t tile = gemm_tile(extent);
    const int64_t n_tiles = (extent + tile - 1) / tile;
#pragma omp parallel for num_threads(num_threads) schedule(static) if (n_tiles > 1 && num_threads > 1)
    for (int64_t i = 0; i < n_tiles; ++i) {
        const int64_t start = i * tile, size = (start + tile <= extent) ? tile : extent - start;
        if (split_rows) {  // rows [start, start+size) of C: rows of op(A)
            const T *a_tile = trans_a ? a + start : a + start * lda;
            gemm(trans_a, trans_b, size, n, k, alpha, a_tile, lda, b, ldb, beta, c + start * ldc, ldc);
        } else {           // columns [start, start+size) of C: columns of op(B)
            const T *b_tile = trans_b ? b + start * ldb : b + start;
            gemm(trans_a, trans_b, m, size, k, alpha, a, lda, b_tile, ldb, beta, c + start, ldc);
        }
    }
}
