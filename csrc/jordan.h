// Jordan (output-recurrent) network, forward and backward side by side (fastrnn.h documents the ABI):
//   h_t = act(W_ih x_t + W_oh y_{t-1} + b_h),   o_t = W_ho h_t + b_o,   y_{t-1} the fed-back output.
// Included inside jordan_isa.cpp's per-ISA namespace (after simd.h, blas.h, loop_support.h).
//
// Work plan:
//   teacher forcing: every fed value is known, so the steps are independent: pre = X W_ih^T + Y W_oh^T
//     + b_h and O = H W_ho^T + b_o are three GEMMs over all T*B rows; backward is four more (dH = dO W_ho,
//     the three weight gradients) plus dX. No time loop at all.
//   free running / scheduled sampling: X W_ih^T + b_h is still one GEMM before the loop; each step does
//     y_{t-1} W_oh^T and h_t W_ho^T on B rows (small BLAS calls) and builds the next fed value.
//     Backward (soft feedback only) walks back through time carrying dL/do_{t-1} += J_f^T (dPre_t W_oh)
//     where own[t]; the weight gradients are again single GEMMs after the loop.
// The elementwise work is split among threads by rows; each element is computed by the same vector code
// wherever it lands, and the GEMM tiles and bias sums depend only on the shape: results are
// bit-identical for any thread count.

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

// ADD INTO sum (width): the column sums of d (rows, width). Threads own column blocks, each summed over
// the rows in order: the same bits for any thread count.
template <typename T> void add_column_sums(T *sum, const T *d, int64_t rows, int64_t width, int num_threads) {
    const int64_t block = 64, n_blocks = (width + block - 1) / block;
#pragma omp parallel for num_threads(num_threads) schedule(static) if (n_blocks > 1 && worth_threads(rows * width, num_threads))
    for (int64_t cb = 0; cb < n_blocks; ++cb) {
        const int64_t j0 = cb * block, j1 = imin(width, j0 + block);
        T acc[64];
        for (int64_t j = j0; j < j1; ++j) acc[j - j0] = T(0);
        for (int64_t r = 0; r < rows; ++r)
            for (int64_t j = j0; j < j1; ++j) acc[j - j0] += d[r * width + j];
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

template <typename T, bool Relu> int jordan_forward(const fastrnn_jordan_forward_args &a) {
    const int64_t TS = a.steps, B = a.batch, I = a.input_size, H = a.hidden_size, O = a.output_size, rows = TS * B;
    const int nt = a.num_threads;
    const T *x = (const T *)a.x, *w_ih = (const T *)a.w_ih, *w_oh = (const T *)a.w_oh, *w_ho = (const T *)a.w_ho;
    T *h = (T *)a.h, *out = (T *)a.out, *y_prev = (T *)a.y_prev;

    // pre = X W_ih^T + b_h for every step at once (h holds the pre-activations until act)
    fill_bias_rows(h, (const T *)a.b_h, rows, H, nt);
    parallel_gemm(false, true, rows, H, I, T(1), x, I, w_ih, I, T(1), h, H, nt);

    if (a.teacher_forcing) {  // all fed values known: two more GEMMs over all rows, no time loop
        parallel_gemm(false, true, rows, H, O, T(1), y_prev, O, w_oh, O, T(1), h, H, nt);
        activate_rows<T, Relu>(h, rows, H, nt);
        fill_bias_rows(out, (const T *)a.b_o, rows, O, nt);
        parallel_gemm(false, true, rows, O, H, T(1), h, H, w_ho, H, T(1), out, O, nt);
        return FASTRNN_OK;
    }

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

template <typename T, bool Relu> int jordan_backward(const fastrnn_jordan_backward_args &a) {
    const int64_t TS = a.steps, B = a.batch, I = a.input_size, H = a.hidden_size, O = a.output_size, rows = TS * B;
    const int nt = a.num_threads;
    const T *x = (const T *)a.x, *w_ih = (const T *)a.w_ih, *w_oh = (const T *)a.w_oh, *w_ho = (const T *)a.w_ho;
    const T *h = (const T *)a.h, *y_prev = (const T *)a.y_prev, *probs = (const T *)a.probs;
    T *d_o = (T *)a.d_out, *d_pre = (T *)a.d_pre;

    if (!a.through_own) {  // the steps are independent: dPre = (dO W_ho) * act'(h) over all rows at once
        parallel_gemm(false, false, rows, H, O, T(1), d_o, O, w_ho, H, T(0), d_pre, H, nt);
        activation_backward_rows<T, Relu>(d_pre, h, rows, H, nt);
    } else {  // BPTT through the fed-back outputs: dL/do_{t-1} += J_f^T (dPre_t W_oh) where own[t]
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
    // dL/dy0 = dPre_0 W_oh; the rest are single GEMMs over all rows
    parallel_gemm(false, false, B, O, H, T(1), d_pre, H, w_oh, O, T(0), (T *)a.dy0, O, nt);
    parallel_gemm(true, false, H, I, rows, T(1), d_pre, H, x, I, T(1), (T *)a.dw_ih, I, nt);
    parallel_gemm(true, false, H, O, rows, T(1), d_pre, H, y_prev, O, T(1), (T *)a.dw_oh, O, nt);
    parallel_gemm(true, false, O, H, rows, T(1), d_o, O, h, H, T(1), (T *)a.dw_ho, H, nt);
    if (a.db_h) add_column_sums((T *)a.db_h, d_pre, rows, H, nt);
    if (a.db_o) add_column_sums((T *)a.db_o, d_o, rows, O, nt);
    parallel_gemm(false, false, rows, I, H, T(1), d_pre, H, w_ih, I, T(0), (T *)a.dx, I, nt);
    return FASTRNN_OK;
}
