// Jordan (output-recurrent) network, forward and backward side by side (fastrnn.h documents the ABI):
//   h_t = act(W_ih x_t + W_oh y_{t-1} + b_h),   o_t = W_ho h_t + b_o,   y_{t-1} the fed-back output.
// Included inside jordan_isa.cpp's per-ISA namespace (after simd.h, blas.h, loop_support.h).
//
// Work plan:
//   teacher forcing: every fed value is known, so the steps are independent: pre = X W_ih^T + Y W_oh^T
//     + b_h, act, and O = H W_ho^T + b_o are GEMMs over all T*B rows (forward_rows); backward is
//     dPre = (dO W_ho) * act'(h) and dX = dPre W_ih over all rows (backward_rows), then the weight and
//     bias gradients as sums over all rows (backward_reductions). No time loop at all.
//   free running / scheduled sampling: X W_ih^T + b_h is still one pass before the loop; each step does
//     y_{t-1} W_oh^T and h_t W_ho^T on B rows (small BLAS calls) and builds the next fed value.
//     Backward (soft feedback only) walks back through time carrying dL/do_{t-1} += J_f^T (dPre_t W_oh)
//     where own[t]; dX and the weight gradients are again passes over all rows after the loop.
// Threads: each pass over all rows is ONE OpenMP region over row tiles (or gradient blocks) fixed by the
// shape, every tile running single-threaded BLAS and the vector activations; each element is always
// computed by the same calls, so results are bit-identical for any thread count.

inline int64_t imax(int64_t a, int64_t b) { return a > b ? a : b; }

// Rows x width elementwise passes run threaded only when there is enough work to pay for the fork and
// join: OpenMP's join waits for every thread, and when another process holds a core that wait is a
// scheduler time slice (milliseconds), far more than a small pass costs on one thread.
inline bool worth_threads(int64_t elements, int num_threads) { return num_threads > 1 && elements >= (1 << 18); }

// IN/OUT v (rows, width): v = act(v).
template <typename T, bool Relu> void activate_rows(T *v, int64_t rows, int64_t width, int num_threads) {
    const int L = Simd<T>::lanes;
#pragma omp parallel for num_threads(num_threads) schedule(static) if (worth_threads(rows * width, num_threads))
    for (int64_t r = 0; r < rows; ++r) {
        T *row = v + r * width;
        for (int64_t j = 0; j < width; j += L) {
            const int nl = (int)imin(L, width - j);
            vec_t<T> pre = load_n(row + j, nl);
            store_n(row + j, Relu ? vrelu(pre) : vtanh(pre), nl);
        }
    }
}

// IN h (rows, width) the saved activations; IN/OUT d (rows, width): dL/dh -> dL/dpre (1 - h^2, or h > 0).
template <typename T, bool Relu> void activation_backward_rows(T *d, const T *h, int64_t rows, int64_t width,
                                                              int num_threads) {
    const int L = Simd<T>::lanes;
#pragma omp parallel for num_threads(num_threads) schedule(static) if (worth_threads(rows * width, num_threads))
    for (int64_t r = 0; r < rows; ++r) {
        for (int64_t j = 0; j < width; j += L) {
            const int nl = (int)imin(L, width - j);
            const vec_t<T> hv = load_n(h + r * width + j, nl), dv = load_n(d + r * width + j, nl);
            store_n(d + r * width + j, Relu ? (hv > 0 ? dv : vec_t<T>{}) : dv * (1 - hv * hv), nl);
        }
    }
}

// OUT v (rows, width) = the bias broadcast to every row, or zeros (the GEMMs then add with beta = 1).
template <typename T> void fill_bias_rows(T *v, const T *bias, int64_t rows, int64_t width, int num_threads) {
#pragma omp parallel for num_threads(num_threads) schedule(static) if (worth_threads(rows * width, num_threads))
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t j = 0; j < width; ++j) v[r * width + j] = bias ? bias[j] : T(0);
}

// ADD INTO sum (width): the column sums of d (rows, width, row stride ld), summed over the rows in
// order (column blocks of 64 in registers): the same bits wherever it runs.
template <typename T> void add_column_sums_serial(T *sum, const T *d, int64_t rows, int64_t width, int64_t ld) {
    const int64_t block = 64;
    for (int64_t j0 = 0; j0 < width; j0 += block) {
        const int64_t j1 = imin(width, j0 + block);
        T acc[64];
        for (int64_t j = j0; j < j1; ++j) acc[j - j0] = T(0);
        for (int64_t r = 0; r < rows; ++r)
            for (int64_t j = j0; j < j1; ++j) acc[j - j0] += d[r * ld + j];
        for (int64_t j = j0; j < j1; ++j) sum[j] += acc[j - j0];
    }
}

// IN o (O); OUT p (O) = softmax(o) (max subtracted: no overflow).
template <typename T> void softmax_row(T *p, const T *o, int64_t O) {
    T m = o[0];
    for (int64_t k = 1; k < O; ++k) m = o[k] > m ? o[k] : m;
    T s = 0;
    for (int64_t k = 0; k < O; ++k) { p[k] = std::exp(o[k] - m); s += p[k]; }
    const T inv = T(1) / s;
    for (int64_t k = 0; k < O; ++k) p[k] *= inv;
}

// The value fed back from one output row: IN o (O), u (the row's uniform, "sample" only);
// OUT p (O) softmax(o) (softmax only), y (O) = f(o).
template <typename T> void fed_back_row(T *y, T *p, const T *o, int64_t O, int output, int feedback, T u) {
    if (output == FASTRNN_JORDAN_LINEAR) {
        for (int64_t k = 0; k < O; ++k) y[k] = o[k];
        return;
    }
    softmax_row(p, o, O);
    if (feedback == FASTRNN_JORDAN_SOFT) {
        for (int64_t k = 0; k < O; ++k) y[k] = p[k];
        return;
    }
    int64_t chosen = 0;
    if (feedback == FASTRNN_JORDAN_ARGMAX) {  // the first maximum
        for (int64_t k = 1; k < O; ++k) chosen = o[k] > o[chosen] ? k : chosen;
    } else {  // inverse CDF: the first k with u < p_0 + ... + p_k (the last class if rounding leaves u above)
        T c = 0;
        chosen = O - 1;
        for (int64_t k = 0; k < O; ++k) {
            c += p[k];
            if (u < c) { chosen = k; break; }
        }
    }
    for (int64_t k = 0; k < O; ++k) y[k] = T(k == chosen);
}

// Row tiles of a pass over all T*B rows, as parallel_gemm's: at most 16, at least 16 rows each, decided
// by the shape alone, so every row is computed by the same calls whatever the thread count.
struct RowTiles {
    int64_t rows, tile, count;
    explicit RowTiles(int64_t n) : rows(n) {
        tile = (n + 15) / 16;
        tile = (tile + 15) / 16 * 16;
        count = (n + tile - 1) / tile;
    }
    int64_t begin(int64_t i) const { return i * tile; }
    int64_t size(int64_t i) const { return imin(tile, rows - i * tile); }
};

// One fork/join per phase: OpenMP's join waits for every thread, a scheduler time slice whenever another
// process holds a core, so the row-local work of a phase (GEMMs, bias, activation) runs in one region.
inline bool worth_threads_flops(double flops, int64_t n_items, int num_threads) {
    return num_threads > 1 && n_items > 1 && flops >= 4e6;
}

// Forward, all rows at once (teacher forcing) or the input projection only (step loop).
// IN x (rows, I), y_prev (rows, O) when full; OUT h (rows, H) = act(pre) (full) or pre without W_oh y
// (projection only), out (rows, O) when full.
template <typename T, bool Relu> void forward_rows(const fastrnn_jordan_forward_args &a, int64_t rows, bool full) {
    const int64_t I = a.input_size, H = a.hidden_size, O = a.output_size;
    const T *x = (const T *)a.x, *w_ih = (const T *)a.w_ih, *w_oh = (const T *)a.w_oh, *w_ho = (const T *)a.w_ho;
    const T *y_prev = (const T *)a.y_prev, *b_h = (const T *)a.b_h, *b_o = (const T *)a.b_o;
    T *h = (T *)a.h, *out = (T *)a.out;
    const RowTiles tiles(rows);
    const double flops = 2.0 * (double)rows * (double)H * (double)(full ? I + 2 * O : I);
#pragma omp parallel for num_threads(a.num_threads) schedule(static) if (worth_threads_flops(flops, tiles.count, a.num_threads))
    for (int64_t i = 0; i < tiles.count; ++i) {
        const int64_t r0 = tiles.begin(i), n = tiles.size(i);
        T *ht = h + r0 * H;
        fill_bias_rows(ht, b_h, n, H, 1);
        gemm(false, true, n, H, I, T(1), x + r0 * I, I, w_ih, I, T(1), ht, H);
        if (!full) continue;
        gemm(false, true, n, H, O, T(1), y_prev + r0 * O, O, w_oh, O, T(1), ht, H);
        activate_rows<T, Relu>(ht, n, H, 1);
        fill_bias_rows(out + r0 * O, b_o, n, O, 1);
        gemm(false, true, n, O, H, T(1), ht, H, w_ho, H, T(1), out + r0 * O, O);
    }
}

template <typename T, bool Relu> int jordan_forward(const fastrnn_jordan_forward_args &a) {
    const int64_t TS = a.steps, B = a.batch, H = a.hidden_size, O = a.output_size, rows = TS * B;
    const int nt = a.num_threads;
    const T *w_oh = (const T *)a.w_oh, *w_ho = (const T *)a.w_ho;
    T *h = (T *)a.h, *out = (T *)a.out, *y_prev = (T *)a.y_prev;

    if (a.teacher_forcing) {  // all fed values known: three GEMMs over all rows, no time loop
        forward_rows<T, Relu>(a, rows, true);
        return FASTRNN_OK;
    }
    forward_rows<T, Relu>(a, rows, false);  // X W_ih^T + b_h for every step at once

    const T *targets = (const T *)a.targets, *uniforms = (const T *)a.uniforms, *b_o = (const T *)a.b_o;
    const uint8_t *own = a.own;
    Buffer<T> own_y, scratch_probs;  // own_y (B, O): f(o_{t-1}); probs scratch when none is given
    if (!own_y.allocate(B * O) || (!a.probs && !scratch_probs.allocate(B * O))) return FASTRNN_ERR_NOMEM;
    for (int64_t t = 0; t < TS; ++t) {
        T *yp = y_prev + t * B * O, *ht = h + t * B * H, *ot = out + t * B * O;
        T *pt = a.probs ? (T *)a.probs + t * B * O : scratch_probs.data;
        for (int64_t b = 0; b < B; ++b) {
            const T *src = t == 0 ? (const T *)a.y0 + b * O
                           : (!targets || !own || own[t * B + b]) ? own_y.data + b * O
                           : targets + ((t - 1) * B + b) * O;
            __builtin_memcpy(yp + b * O, src, O * sizeof(T));
        }
        parallel_gemm(false, true, B, H, O, T(1), yp, O, w_oh, O, T(1), ht, H, nt);
        activate_rows<T, Relu>(ht, B, H, nt);
        fill_bias_rows(ot, b_o, B, O, 1);
        parallel_gemm(false, true, B, O, H, T(1), ht, H, w_ho, H, T(1), ot, O, nt);
        for (int64_t b = 0; b < B; ++b)
            fed_back_row(own_y.data + b * O, pt + b * O, ot + b * O, O, a.output, a.feedback,
                         uniforms ? uniforms[t * B + b] : T(0));
    }
    return FASTRNN_OK;
}

// Backward's row-local phase: IN d_o (rows, O), h (rows, H); OUT d_pre (rows, H) unless given
// (with_d_pre false: already computed by the BPTT loop), dx (rows, I).
template <typename T, bool Relu> void backward_rows(const fastrnn_jordan_backward_args &a, int64_t rows, bool with_d_pre) {
    const int64_t I = a.input_size, H = a.hidden_size, O = a.output_size;
    const T *w_ih = (const T *)a.w_ih, *w_ho = (const T *)a.w_ho, *h = (const T *)a.h, *d_o = (const T *)a.d_out;
    T *d_pre = (T *)a.d_pre, *dx = (T *)a.dx;
    const RowTiles tiles(rows);
    const double flops = 2.0 * (double)rows * (double)H * (double)(with_d_pre ? I + O : I);
#pragma omp parallel for num_threads(a.num_threads) schedule(static) if (worth_threads_flops(flops, tiles.count, a.num_threads))
    for (int64_t i = 0; i < tiles.count; ++i) {
        const int64_t r0 = tiles.begin(i), n = tiles.size(i);
        if (with_d_pre) {
            gemm(false, false, n, H, O, T(1), d_o + r0 * O, O, w_ho, H, T(0), d_pre + r0 * H, H);
            activation_backward_rows<T, Relu>(d_pre + r0 * H, h + r0 * H, n, H, 1);
        }
        gemm(false, false, n, I, H, T(1), d_pre + r0 * H, H, w_ih, I, T(0), dx + r0 * I, I);
    }
}

// Backward's reductions over all rows, as independent items in one region: blocks of hidden units of
// dW_ih, dW_oh, dW_ho and db_h, then db_o and dy0 = dPre_0 W_oh. Each item is one fixed computation.
template <typename T> void backward_reductions(const fastrnn_jordan_backward_args &a, int64_t rows) {
    const int64_t B = a.batch, I = a.input_size, H = a.hidden_size, O = a.output_size;
    const T *x = (const T *)a.x, *w_oh = (const T *)a.w_oh, *h = (const T *)a.h, *y_prev = (const T *)a.y_prev;
    const T *d_o = (const T *)a.d_out, *d_pre = (const T *)a.d_pre;
    T *dw_ih = (T *)a.dw_ih, *dw_oh = (T *)a.dw_oh, *dw_ho = (T *)a.dw_ho, *db_h = (T *)a.db_h, *db_o = (T *)a.db_o;
    const int64_t block = imin(H, imax(16, ((H + 7) / 8 + 15) / 16 * 16));  // about 8 blocks of 16k units
    const int64_t n_blocks = (H + block - 1) / block, n_items = 4 * n_blocks + 2;
    const double flops = 2.0 * (double)rows * (double)H * (double)(I + 2 * O);
#pragma omp parallel for num_threads(a.num_threads) schedule(dynamic, 1) if (worth_threads_flops(flops, n_items, a.num_threads))
    for (int64_t item = 0; item < n_items; ++item) {
        const int64_t kind = item < 4 * n_blocks ? item / n_blocks : 4 + (item - 4 * n_blocks);
        const int64_t j0 = (item % n_blocks) * block, nj = imin(block, H - j0);
        switch (kind) {
            case 0: gemm(true, false, nj, I, rows, T(1), d_pre + j0, H, x, I, T(1), dw_ih + j0 * I, I); break;
            case 1: gemm(true, false, nj, O, rows, T(1), d_pre + j0, H, y_prev, O, T(1), dw_oh + j0 * O, O); break;
            case 2: gemm(true, false, O, nj, rows, T(1), d_o, O, h + j0, H, T(1), dw_ho + j0, H); break;
            case 3: if (db_h) add_column_sums_serial(db_h + j0, d_pre + j0, rows, nj, H); break;
            case 4: if (db_o) add_column_sums_serial(db_o, d_o, rows, O, O); break;
            default: gemm(false, false, B, O, H, T(1), d_pre, H, w_oh, O, T(0), (T *)a.dy0, O); break;
        }
    }
}

template <typename T, bool Relu> int jordan_backward(const fastrnn_jordan_backward_args &a) {
    const int64_t TS = a.steps, B = a.batch, H = a.hidden_size, O = a.output_size, rows = TS * B;
    const int nt = a.num_threads;
    const T *w_oh = (const T *)a.w_oh, *w_ho = (const T *)a.w_ho, *h = (const T *)a.h, *probs = (const T *)a.probs;
    T *d_o = (T *)a.d_out, *d_pre = (T *)a.d_pre;

    if (a.through_own) {  // BPTT through the fed-back outputs: dL/do_{t-1} += J_f^T (dPre_t W_oh) where own[t]
        Buffer<T> d_fed;
        if (!d_fed.allocate(B * O)) return FASTRNN_ERR_NOMEM;
        for (int64_t t = TS - 1; t >= 0; --t) {
            T *dp = d_pre + t * B * H;
            parallel_gemm(false, false, B, H, O, T(1), d_o + t * B * O, O, w_ho, H, T(0), dp, H, nt);
            activation_backward_rows<T, Relu>(dp, h + t * B * H, B, H, nt);
            if (t == 0) break;
            parallel_gemm(false, false, B, O, H, T(1), dp, H, w_oh, O, T(0), d_fed.data, O, nt);
            for (int64_t b = 0; b < B; ++b) {
                if (!a.own[t * B + b]) continue;
                const T *g = d_fed.data + b * O;
                T *dst = d_o + ((t - 1) * B + b) * O;
                if (a.output == FASTRNN_JORDAN_LINEAR) {
                    for (int64_t k = 0; k < O; ++k) dst[k] += g[k];
                } else {  // softmax Jacobian: p * (g - <p, g>)
                    const T *p = probs + ((t - 1) * B + b) * O;
                    T dot = 0;
                    for (int64_t k = 0; k < O; ++k) dot += p[k] * g[k];
                    for (int64_t k = 0; k < O; ++k) dst[k] += p[k] * (g[k] - dot);
                }
            }
        }
    }
    // the steps are independent once dL/do is complete: dPre = (dO W_ho) * act'(h) (unless the loop made
    // it) and dX = dPre W_ih row by row, then the weight gradients as sums over all rows
    backward_rows<T, Relu>(a, rows, !a.through_own);
    backward_reductions<T>(a, rows);
    return FASTRNN_OK;
}
