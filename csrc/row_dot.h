// Y = X W^T for a few rows of X, from W as it lies (row-major, n x k): each output is the dot product of
// a row of X with a row of W. Included inside kernels_isa.cpp's per-ISA namespace (after simd.h and
// loop_support.h).
//
// layer_forward.h uses it for the products where packing W would not pay: the steps of the direct
// (unpacked) path, h W_hh^T with one or a few rows, and the input projection x W_ih^T of a call with few
// rows. OpenBLAS packs all of W on every sgemm call, which costs about as much as the product when X has
// few rows, and its sgemv reads W no faster (1 thread, float, AVX-512, W 64-byte aligned; rows of X x W):
//   4 x (2048 x 512): 284 -> 80 us     25 x (2048 x 512): 732 -> 510 us     32 x (2048 x 512): 834 -> 765 us
//   1 x (128 x 128): 0.71 -> 0.63 us   1 x (512 x 128): 2.7 -> 2.6 us       1 x (2048 x 512): 50 -> 45 us
// (one row of a 16 MB W, read from memory: 240 -> 235 us; with 64 rows of X OpenBLAS catches up).
//
// Each output is summed in one fixed order: lane l of its vector accumulator takes k = l, l + L, l + 2L, ...
// by explicit multiply-adds (vfma; the compiler fused some and not others in the tail) and the tail
// through zero-padded loads, then its L lanes are added by a butterfly (lane l with l + L/2,
// then l + L/4, ...). The blocking, the thread and the number of rows never change that order, so a row of
// X gives the same bits alone or with others: a streamed step and one call over the sequence agree.

constexpr int64_t kRowDotMaxRows = 32;             // rows of X up to which these products replace OpenBLAS
constexpr double kRowDotParallelWork = 1 << 18;    // m * n * k from which threads share the rows of W
constexpr double kRowDotStreamBytes = 1 << 21;     // a W of this size or more is read row after row (below)
// Rows of W read side by side there: each is a chain of dependent multiply-adds, one vector per FMA
// latency. With AVX-512's 64-byte vectors one chain kept up with the L3; with AVX2's it could not (Zen 3,
// 1 thread: 1 x (2048 x 512) 107-114 us with one chain, 82-103 with 2, 69-91 with 4, 100-210 with all 8;
// 1 x (4096 x 512) 235, 178, 156-190, 427).
constexpr int kByRowStreams = FASTRNN_VEC_BYTES == 64 ? 1 : 4;
// AVX-512: a one-row block with W under kRowDotStreamBytes is read row after row as well, with x held in
// registers kByRowChunk vectors at a time (row_dot_block, CHUNKED). Zen 5, 1 thread, two products of one row
// against W, against the interleaved loop: 512 x 128 4.9 -> 3.9 us, 128 x 128 1.15 -> 0.92, 768 x 256
// 17.0 -> 14.2 (k = 64 or 72, less than a chunk: 0.98x); a streaming LSTM step (128 units) 6.2 -> 5.6 us.
// Past 2 MB the chunks were faster alone (2048 x 512 from L3: 1.06-1.08x) but slower inside the layer's
// gemv steps (db-b1 LSTM 1.38 -> 1.55 ms), so W is streamed there as above. The AVX2 build timed on the same
// Zen 5 was 0.88-1.24x with 2, 4 or 8 vectors of x, so it keeps the choices measured on Zen 3.
constexpr bool kByRowChunked = FASTRNN_VEC_BYTES == 64;
constexpr int kByRowChunk = 8;

// Lane l of butterfly round with blocks of W lanes: before the round a vector holds L / W accumulators'
// partial sums, W lanes each; the round adds lane o and lane o + W/2 of every block (LOW picks the first,
// HIGH the second), taking the blocks of two vectors, so each accumulator's lanes pair up the same way
// whichever accumulators share its vector.
template <int L, int W, bool HIGH> constexpr int butterfly_lane(int l) {
    return (l / (L / 2)) * L + ((l % (L / 2)) / (W / 2)) * W + (HIGH ? W / 2 : 0) + l % (W / 2);
}
template <typename T, int W, bool HIGH, int... Ls>
constexpr typename Simd<T>::ivec butterfly_mask(std::integer_sequence<int, Ls...>) {
    return typename Simd<T>::ivec{butterfly_lane<Simd<T>::lanes, W, HIGH>(Ls)...};
}
template <typename T, int W> inline void butterfly_round(vec_t<T> *acc, int n) {
    constexpr int L = Simd<T>::lanes;
    constexpr typename Simd<T>::ivec low = butterfly_mask<T, W, false>(std::make_integer_sequence<int, L>{});
    constexpr typename Simd<T>::ivec high = butterfly_mask<T, W, true>(std::make_integer_sequence<int, L>{});
    for (int i = 0; i < n / 2; ++i)
        acc[i] = __builtin_shuffle(acc[2 * i], acc[2 * i + 1], low) + __builtin_shuffle(acc[2 * i], acc[2 * i + 1], high);
}

// Rounds W, W/2, ..., 2 over the first n accumulators (halving them each round).
template <typename T, int W> inline void butterfly_rounds(vec_t<T> *acc, int n) {
    butterfly_round<T, W>(acc, n);
    if constexpr (W > 2) butterfly_rounds<T, W / 2>(acc, n / 2);
}

// acc[0..L-1] -> a vector whose lane i is the sum of acc[i]'s lanes (acc is overwritten).
template <typename T> inline vec_t<T> lane_sums(vec_t<T> *acc) {
    butterfly_rounds<T, Simd<T>::lanes>(acc, Simd<T>::lanes);
    return acc[0];
}

// y[r][c] for rows r < rows of x and c < cols of w (R x N accumulators, summed L at a time). FULL: rows = R
// and cols = N, rows addressed from x and w directly (the common case; an array of row pointers made
// the one-row product of 128 x 128 take 0.9 us instead of 0.56). Otherwise rows past rows / cols repeat
// the last one and their sums are dropped.
// BY_ROW (one row of X, FULL): W's N rows are read one after the other rather than a vector of each in
// turn. Each accumulator sees the same products in the same order, so the bits are the same; a W beyond
// L2 streams faster in one sequence than in N interleaved ones (1 x (2048 x 512), 4 MB from L3: 51 ->
// 45 us; 1 x (4096 x 1024), 16 MB: 355 -> 235 us), while a W in L2 was read faster interleaved on a Zen 4
// (1 x (512 x 128): 2.4 us against 3.0; the two tie near 1.5 MB). With kByRowChunk vectors of x held in
// registers the rows are read one after the other across each chunk of k, and x is loaded once per chunk
// rather than once per vector of W (CHUNKED): on AVX-512 that beats the interleaved loop in L2 (above).
template <typename T, int R, int N, bool FULL, bool BY_ROW = false, bool CHUNKED = false>
inline void row_dot_block(const T *x, int64_t ldx, int rows, const T *w, int64_t ldw, int cols, int64_t k, T *y,
                          int64_t ldy) {
    typedef vec_t<T> V;
    constexpr int L = Simd<T>::lanes, A = (R * N + L - 1) / L * L;
    auto x_at = [&](int r) { return (FULL || r < rows ? r : rows - 1) * ldx; };  // offsets of the rows used
    auto w_at = [&](int c) { return (FULL || c < cols ? c : cols - 1) * ldw; };
    V acc[A];  // (loops over it fully unrolled, so it lives in registers)
#pragma GCC unroll 64
    for (int a = 0; a < A; ++a) acc[a] = V{};
    const int64_t full = k / L * L;
    if constexpr (BY_ROW && CHUNKED) {
        static_assert(R == 1 && FULL, "row after row: one row of X, a full block");
        constexpr int XV = kByRowChunk;
        int64_t i0 = 0;
        for (; i0 + XV * L <= full; i0 += XV * L) {
            V xv[XV];
#pragma GCC unroll 16
            for (int v = 0; v < XV; ++v) xv[v] = load(x + i0 + v * L);
#pragma GCC unroll 16
            for (int c = 0; c < N; ++c)
#pragma GCC unroll 16
                for (int v = 0; v < XV; ++v) acc[c] = vfma(xv[v], load(w + c * ldw + i0 + v * L), acc[c]);
        }
        for (int64_t i = i0; i < full; i += L) {  // the last full vectors, fewer than a chunk
            const V xv = load(x + i);
#pragma GCC unroll 16
            for (int c = 0; c < N; ++c) acc[c] = vfma(xv, load(w + c * ldw + i), acc[c]);
        }
    } else if constexpr (BY_ROW) {
        constexpr int S = N < kByRowStreams ? N : kByRowStreams;
        static_assert(R == 1 && FULL && N % S == 0, "row after row: one row of X, a full block");
#pragma GCC unroll 16
        for (int c0 = 0; c0 < N; c0 += S)
            for (int64_t i = 0; i < full; i += L)
#pragma GCC unroll 4
                for (int c = c0; c < c0 + S; ++c) acc[c] = vfma(load(x + i), load(w + c * ldw + i), acc[c]);
    } else
    for (int64_t i = 0; i < full; i += L) {
        V xv[R];
#pragma GCC unroll 4
        for (int r = 0; r < R; ++r) xv[r] = load(x + x_at(r) + i);
#pragma GCC unroll 16
        for (int c = 0; c < N; ++c) {
            const V wv = load(w + w_at(c) + i);
#pragma GCC unroll 4
            for (int r = 0; r < R; ++r) acc[r * N + c] = vfma(xv[r], wv, acc[r * N + c]);
        }
    }
    if (full < k) {  // zeros past k add nothing and leave every other lane's order as it is
        const int tail = (int)(k - full);
        V xv[R];
#pragma GCC unroll 4
        for (int r = 0; r < R; ++r) xv[r] = load_n(x + x_at(r) + full, tail);
#pragma GCC unroll 16
        for (int c = 0; c < N; ++c) {
            const V wv = load_n(w + w_at(c) + full, tail);
#pragma GCC unroll 4
            for (int r = 0; r < R; ++r) acc[r * N + c] = vfma(xv[r], wv, acc[r * N + c]);
        }
    }
#pragma GCC unroll 16
    for (int g = 0; g < A; g += L) {
        const V sums = lane_sums<T>(acc + g);
        if (R == 1 && N == L && FULL) {
            store(y, sums);
            continue;
        }
        T s[L];
        store(s, sums);
        for (int i = 0; i < L && g + i < R * N; ++i) {
            const int r = (g + i) / N, c = (g + i) % N;
            if (r < rows && c < cols) y[r * ldy + c] = s[i];
        }
    }
}

template <typename T, int R, int N>
inline void row_dot_any(const T *x, int64_t ldx, int rows, const T *w, int64_t ldw, int cols, int64_t k, T *y,
                        int64_t ldy) {
    if (rows == R && cols == N) row_dot_block<T, R, N, true>(x, ldx, rows, w, ldw, cols, k, y, ldy);
    else row_dot_block<T, R, N, false>(x, ldx, rows, w, ldw, cols, k, y, ldy);
}

// The tile size for splitting `extent` rows: at most 16 tiles, at least min_tile each, multiples of 16. It
// depends on the shape alone, never on the thread count.
inline int64_t shape_tile(int64_t extent, int64_t min_tile) {
    const int64_t tile = (extent + 15) / 16;
    return tile < min_tile ? min_tile : (tile + 15) / 16 * 16;
}

// IN x (m, k) with row stride ldx, w (n, k) with row stride ldw; OUT y (m, n) with row stride ldy.
// Threads share tiles of W's rows chosen by the shape alone (shape_tile, at least 64 rows);
// each output is computed whole by one thread. backwards: each thread takes its tiles last to first
// (loop_support.h, walk_range).
template <typename T>
void row_dot_product(int64_t m, int64_t n, int64_t k, const T *x, int64_t ldx, const T *w, int64_t ldw, T *y,
                     int64_t ldy, int num_threads, bool backwards = false) {
    // blocks: one row of X x L rows of W, or RB x NB (4 x 2 where 16 accumulators would spill: AVX2 on
    // Zen 3, 4 x 512 against 2048 x 512: 41 -> 48 GF/s)
    constexpr int L = Simd<T>::lanes, RB = 4, NB = kAccumulators >= 16 ? 4 : 2;
    if (m <= 0 || n <= 0) return;
    const int64_t tile = shape_tile(n, 64), n_tiles = (n + tile - 1) / tile;
    const bool streamed = (double)n * (double)k * sizeof(T) >= kRowDotStreamBytes;  // same bits either way
    const bool chunked = kByRowChunked && !streamed, by_row = chunked || streamed;
    auto run_tile = [&](int64_t t) {
        const int64_t end = (t + 1) * tile < n ? (t + 1) * tile : n;
        int64_t i0 = 0;
        for (; i0 + 1 < m; i0 += RB) {  // blocks of 2-4 rows of X against NB rows of W (W's block stays in L1)
            const int rows = (int)(m - i0 < RB ? m - i0 : RB);
            for (int64_t j = t * tile; j < end; j += NB) {
                const int cols = (int)(end - j < NB ? end - j : NB);
                T *out = y + i0 * ldy + j;
                const T *xi = x + i0 * ldx, *wj = w + j * ldw;
                if (rows == 4) row_dot_any<T, 4, NB>(xi, ldx, rows, wj, ldw, cols, k, out, ldy);
                else if (rows == 3) row_dot_any<T, 3, NB>(xi, ldx, rows, wj, ldw, cols, k, out, ldy);
                else row_dot_any<T, 2, NB>(xi, ldx, rows, wj, ldw, cols, k, out, ldy);
            }
        }
        if (i0 < m)  // a single row of X (m = 1, or the last of an odd count): L rows of W at a time
            for (int64_t j = t * tile; j < end; j += L) {
                const int cols = (int)(end - j < L ? end - j : L);
                const T *xi = x + i0 * ldx, *wj = w + j * ldw;
                T *out = y + i0 * ldy + j;
                if (cols == L && chunked) row_dot_block<T, 1, L, true, true, true>(xi, ldx, 1, wj, ldw, cols, k, out, ldy);
                else if (cols == L && by_row) row_dot_block<T, 1, L, true, true>(xi, ldx, 1, wj, ldw, cols, k, out, ldy);
                else row_dot_any<T, 1, L>(xi, ldx, 1, wj, ldw, cols, k, out, ldy);
            }
    };
    if (num_threads > 1 && n_tiles > 1 && (double)m * (double)n * (double)k >= kRowDotParallelWork) {
#pragma omp parallel num_threads(num_threads)
        {
            int tid, nth;
            int64_t begin, end;
            current_thread(tid, nth);
            thread_range(n_tiles, tid, nth, begin, end);  // contiguous: the same tiles every step
            walk_range(begin, end, backwards, run_tile);
        }
    } else {  // (a streaming step enters no OpenMP region: entering one costs about a microsecond)
        walk_range(0, n_tiles, backwards, run_tile);
    }
}
