// Backward (BPTT) over the whole sequence, one layer and one direction, for any cell.
// Included inside kernels_isa.cpp's per-ISA namespace; its twin is layer_forward.h.
//
// Work plan (DESIGN.md section 4), steps in reverse order of processing:
//   phase 1: dh_t = dy_t + dG_{t+1} W_hh (+ the GRU's direct path), items over state units;
//            without a projection the cell's backward elementwise follows in the same item.
//   phase 2 (LSTM with proj_size only): d(o * tanh c_t) = dh_t W_hr, then the cell's backward.
//   after the loop: dW_ih += dG^T x, dW_hh += dG^T h_prev (, dW_hr += dh^T h_raw), dx = dG W_ih,
//   one GEMM each over all valid rows, and the bias gradients as column sums in a fixed order; with
//   token input, the input-side gradient rows are summed per token into d_table instead of dW_ih and dx.
// The tape is in RowOrder's packed layout (valid rows only); dy and dx are (T, B, .) as the user sees them.
// The forward tape's gates (and GRU's aux) are overwritten in place with the gate gradients.

// Register blocking: BackwardRows<NB> rows x NB vectors of accumulators, NB = 4 (wide panels) or 2 (when
// wide panels would leave too few items to share among the threads, e.g. small hidden sizes); at most 6
// rows (AVX-512: 6 x 4 and 6 x 2; AVX2: 3 x 4 and 6 x 2).
template <int NB> constexpr int BackwardRows = kAccumulators / NB < 6 ? kAccumulators / NB : 6;

template <typename T, class Cell, int NB> struct BackwardLoop {
    typedef vec_t<T> V;
    static constexpr int G = Cell::G;
    static constexpr int AUXN = Cell::AUX > 0 ? Cell::AUX : 1;
    int64_t B, H, P, GH, ldy;
    bool reverse, projected;
    const RowOrder *order;
    const T *panels, *proj_panels, *zero_row, *dy, *dhn, *h_prev;
    T *gates, *aux, *dc_state, *dh_carry, *dh0, *dh_state;  // dh_state (T, B, P): dh_t, projected LSTM only

    int64_t time_of(int64_t s, int64_t b) const { return reverse ? order->lengths.data[b] - 1 - s : s; }

    // The cell's backward for row b, units j..j+nl, given dh (w.r.t. the cell's output at step s).
    void cell_backward(int64_t s, int64_t b, int64_t j, int nl, V dh) const {
        const int64_t row = order->packed(time_of(s, b), b);
        T *gate_row = gates + row * GH;
        V act[G], aux_v[AUXN] = {}, dc = {}, hp = {}, dh_direct = {};
        for (int g = 0; g < G; ++g) act[g] = load_n(gate_row + g * H + j, nl);
        for (int k = 0; k < Cell::AUX; ++k) aux_v[k] = load_n(aux + row * Cell::AUX * H + k * H + j, nl);
        if (Cell::has_cell_state) dc = load_n(dc_state + b * H + j, nl);
        if (Cell::has_direct_path) hp = load_n(h_prev + row * P + j, nl);
        Cell::backward(dh, dc, act, aux_v, hp, dh_direct);
        for (int g = 0; g < G; ++g) store_n(gate_row + g * H + j, act[g], nl);
        for (int k = 0; k < Cell::AUX; ++k) store_n(aux + row * Cell::AUX * H + k * H + j, aux_v[k], nl);
        if (Cell::has_cell_state) store_n(dc_state + b * H + j, dc, nl);
        if (Cell::has_direct_path) store_n(dh_carry + b * H + j, dh_direct, nl);
    }

    // The lines that rows' cell units j0 .. j0 + NB*L (below n_units) read at step s - 1, the next one
    // processed: dy's (dy_lines) and the tape's (cell_lines: the gates, aux, the GRU's h_prev). Written at
    // the forward's step s - 1, long before, they come from memory past the medium size; prefetched during
    // this item's product (panel_product_prefetching) the loop's cell work stops waiting on them. Zen 5,
    // 1 thread, alternating runs: RNN medium's backward loop 6.05 -> 4.72 ms (4.14 without any cell work),
    // large 10.3 -> 8.1; a training step RNN medium 1.03-1.05x, large 1.02-1.04x, GRU/LSTM medium 1.02-1.04x.
    int next_step_lines(int64_t s, const int64_t *rows, int R, int64_t j0, int64_t n_units, bool dy_lines,
                        bool cell_lines, const T **lines) const {
        const int L = Simd<T>::lanes;
        int n = 0;
        for (int r = 0; r < R; ++r) {
            const int64_t b = rows[r], t = time_of(s - 1, b), row = order->packed(t, b);
            for (int64_t j = j0; j < j0 + NB * L && j < n_units; j += L) {
                if (dy_lines) lines[n++] = dy + (t * B + b) * ldy + j;
                if (!cell_lines) continue;
                for (int g = 0; g < G; ++g) lines[n++] = gates + row * GH + g * H + j;
                for (int k = 0; k < Cell::AUX; ++k) lines[n++] = aux + (row * Cell::AUX + k) * H + j;
                if (Cell::has_direct_path) lines[n++] = h_prev + row * P + j;
            }
        }
        return n;
    }
    static constexpr int kLinesPerUnit = 1 + G + Cell::AUX + (Cell::has_direct_path ? 1 : 0);

    // Phase 1 at step s (s = -1: the final pass that only forms dh0 from step 0's gate gradients),
    // rows x state units q*NB*L ..
    template <int R> void state_block(int64_t s, const int64_t *rows, int64_t q) const {
        const int L = Simd<T>::lanes;
        const T *a[R];
        bool has_next[R];
        for (int r = 0; r < R; ++r) {
            const int64_t b = rows[r];
            has_next[r] = s + 1 < order->lengths.data[b];
            a[r] = has_next[r] ? gates + order->packed(time_of(s + 1, b), b) * GH : zero_row;
        }
        V acc[R][NB];
        const T *panel = panels + q * column_panel_size<T, NB>(GH);
        if (s >= 1) {  // (after step 0 comes the pass s = -1, which reads neither dy nor the tape)
            const T *lines[R * NB * kLinesPerUnit];
            const int n = next_step_lines(s, rows, R, q * NB * L, P, true, !projected, lines);
            panel_product_prefetching<T, R, NB>(a, GH, panel, acc, lines, n);
        } else {
            panel_product<T, R, NB>(a, GH, panel, acc);
        }
        for (int u = 0; u < NB; ++u) {
            const int64_t j = (q * NB + u) * L;
            if (j >= P) break;
            const int nl = (int)imin(L, P - j);
            for (int r = 0; r < R; ++r) {
                const int64_t b = rows[r];
                V dh;
                if (has_next[r]) {
                    dh = acc[r][u];
                    if (Cell::has_direct_path) dh += load_n(dh_carry + b * H + j, nl);
                } else {
                    dh = load_n(dhn + b * P + j, nl);
                }
                if (s < 0) { store_n(dh0 + b * P + j, dh, nl); continue; }
                const int64_t t = time_of(s, b);
                dh += load_n(dy + (t * B + b) * ldy + j, nl);
                if (projected) store_n(dh_state + order->packed(t, b) * P + j, dh, nl);
                else cell_backward(s, b, j, nl, dh);
            }
        }
    }

    // Phase 2 (projection): d(o * tanh c_t) = dh_t W_hr for rows x cell units q*NB*L .., then the cell.
    template <int R> void projection_block(int64_t s, const int64_t *rows, int64_t q) const {
        const int L = Simd<T>::lanes;
        const T *a[R];
        for (int r = 0; r < R; ++r) a[r] = dh_state + order->packed(time_of(s, rows[r]), rows[r]) * P;
        V acc[R][NB];
        const T *lines[R * NB * kLinesPerUnit];
        const int n = s >= 1 ? next_step_lines(s, rows, R, q * NB * L, H, false, true, lines) : 0;
        panel_product_prefetching<T, R, NB>(a, P, proj_panels + q * column_panel_size<T, NB>(P), acc, lines, n);
        for (int u = 0; u < NB; ++u) {
            const int64_t j = (q * NB + u) * L;
            if (j >= H) break;
            for (int r = 0; r < R; ++r) cell_backward(s, rows[r], j, (int)imin(L, H - j), acc[r][u]);
        }
    }

    void run(int64_t T_steps, int num_threads) const {
        const int64_t n_panels = column_panel_count<T, NB>(P), n_proj_panels = column_panel_count<T, NB>(H);
        const int64_t *perm = order->perm.data;
        step_region(num_threads, [&](int tid, int nth, StepBarrier &barrier) {
            for (int64_t s = T_steps - 1; s >= -1; --s) {
                const int64_t n_rows = order->active_rows(s);
                run_items<BackwardRows<NB>>(n_rows, n_panels, tid, nth, [&](int64_t r0, int64_t n, int64_t q) {
                    dispatch_rows<BackwardRows<NB>>(n, [&](auto r) { state_block<decltype(r)::value>(s, perm + r0, q); });
                }, s & 1);  // alternate directions, as the forward loop does
                if (projected && s >= 0) {
                    barrier.wait();
                    run_items<BackwardRows<NB>>(n_rows, n_proj_panels, tid, nth, [&](int64_t r0, int64_t n, int64_t q) {
                        dispatch_rows<BackwardRows<NB>>(n, [&](auto r) { projection_block<decltype(r)::value>(s, perm + r0, q); });
                    });
                }
                barrier.wait();
            }
        });
    }
};

// out[c] += sum over rows of m[row][c], rows in order (fixed order: bit-identical for any thread count);
// out2 (may be NULL) gets the same sums: the two biases of a gate share their gradient, and one pass over
// the (rows, cols) gate gradients, tens of MB from memory, serves both.
template <typename T>
void add_column_sums(T *out, const T *m, int64_t rows, int64_t cols, int64_t ld, int num_threads, T *out2 = nullptr) {
#pragma omp parallel for num_threads(num_threads) schedule(static)
    for (int64_t c0 = 0; c0 < cols; c0 += 64) {
        const int64_t c1 = imin(cols, c0 + 64);
        T acc[64] = {};
        for (int64_t r = 0; r < rows; ++r)
            for (int64_t c = c0; c < c1; ++c) acc[c - c0] += m[r * ld + c];
        for (int64_t c = c0; c < c1; ++c) out[c] += acc[c - c0];
        if (out2)
            for (int64_t c = c0; c < c1; ++c) out2[c] += acc[c - c0];
    }
}

// Token input: d_table[tokens[t, b]][c] += m[packed row of (t, b)][c] for the valid rows, in (t, then perm) order
// for every column, whatever the thread count (threads own column blocks).
template <typename T> void add_rows_by_token(T *d_table, int64_t ld_table, const T *m, int64_t ld, int64_t cols,
                                             const int64_t *tokens, const RowOrder &order, int64_t T_steps,
                                             int64_t B, int num_threads) {
#pragma omp parallel for num_threads(num_threads) schedule(static)
    for (int64_t c0 = 0; c0 < cols; c0 += 64) {
        const int64_t c1 = imin(cols, c0 + 64);
        for (int64_t t = 0; t < T_steps; ++t)
            for (int64_t i = 0; i < order.active_rows(t); ++i) {
                T *dst = d_table + tokens[t * B + order.perm.data[i]] * ld_table;
                const T *src = m + (order.offset.data[t] + i) * ld;
                for (int64_t c = c0; c < c1; ++c) dst[c] += src[c];
            }
    }
}

template <typename T, class Cell, int NB> int layer_backward_blocked(const fastrnn_backward_args &a) {
    const int G = Cell::G;
    const int64_t T_steps = a.steps, B = a.batch, I = a.input_size, H = a.hidden_size, GH = G * H;
    const bool projected = a.proj_size > 0;
    const int64_t P = projected ? a.proj_size : H;
    const int nt = a.num_threads;

    RowOrder order;
    Buffer<T> panels, proj_panels, zero_row, dc_state, dh_carry, dh_state, h_raw;
    if (!order.build(a.lengths, T_steps, B)) return FASTRNN_ERR_NOMEM;
    const int64_t rows = order.n_packed;
    if (!panels.allocate(column_panel_count<T, NB>(P) * column_panel_size<T, NB>(GH)) ||
        !zero_row.allocate(GH) || !dc_state.allocate(B * H) || !dh_carry.allocate(B * H) ||
        (projected && (!proj_panels.allocate(column_panel_count<T, NB>(H) * column_panel_size<T, NB>(P)) ||
                       !dh_state.allocate(rows * P) || !h_raw.allocate(rows * H))))
        return FASTRNN_ERR_NOMEM;
    pack_column_panels<T, NB>(panels.data, (const T *)a.w_hh, GH, P, nt);
    for (int64_t k = 0; k < GH; ++k) zero_row.data[k] = 0;
    for (int64_t k = 0; k < B * H; ++k) dh_carry.data[k] = 0;
    if (Cell::has_cell_state) __builtin_memcpy(dc_state.data, a.dcn, B * H * sizeof(T));
    if (projected) {  // h_raw = o * tanh(c_t) from the tape, before the loop overwrites o with its gradient
        pack_column_panels<T, NB>(proj_panels.data, (const T *)a.w_hr, P, H, nt);
        const T *g = (const T *)a.gates, *aux = (const T *)a.aux;
        for (int64_t row = 0; row < rows; ++row)
            for (int64_t j = 0; j < H; ++j) h_raw.data[row * H + j] = g[row * GH + 3 * H + j] * aux[row * 2 * H + H + j];
    }

    BackwardLoop<T, Cell, NB> loop;
    loop.B = B; loop.H = H; loop.P = P; loop.GH = GH; loop.ldy = a.ldy;
    loop.reverse = a.reverse != 0; loop.projected = projected; loop.order = &order;
    loop.panels = panels.data; loop.proj_panels = proj_panels.data; loop.zero_row = zero_row.data;
    loop.dy = (const T *)a.dy; loop.dhn = (const T *)a.dhn; loop.h_prev = (const T *)a.h_prev;
    loop.gates = (T *)a.gates; loop.aux = (T *)a.aux; loop.dc_state = dc_state.data;
    loop.dh_carry = dh_carry.data; loop.dh0 = (T *)a.dh0; loop.dh_state = dh_state.data;
    loop.run(T_steps, loop_threads(nt, B, GH, P));
    if (Cell::has_cell_state) __builtin_memcpy(a.dc0, dc_state.data, B * H * sizeof(T));

    // gates now holds the gradients w.r.t. the rows of W_hh; for GRU the input-side n gradient is in aux.
    const T *d_hh = (const T *)a.gates;
    const T *x = (const T *)a.x, *w_ih = (const T *)a.w_ih;
    T *dw_ih = (T *)a.dw_ih, *dx = (T *)a.dx;
    T beta_dx = a.accumulate_dx ? T(1) : T(0);
    const bool want_dx = a.dx != nullptr;  // NULL: the caller needs no input gradient (one GEMM saved)
    weight_gradient_add(GH, P, rows, d_hh, GH, (const T *)a.h_prev, P, (T *)a.dw_hh, P, nt);
    if (projected) weight_gradient_add(P, H, rows, (const T *)dh_state.data, P, (const T *)h_raw.data, H, (T *)a.dw_hr, H, nt);
    // db_hh and db_ih: d_hh's column sums, for both (all gates; the GRU's r and z) in one pass; the GRU's
    // n columns differ (db_hh from d_hh, db_ih from aux)
    const int64_t shared_cols = Cell::has_direct_path ? GH - H : GH;
    T *db_hh = (T *)a.db_hh, *db_ih = (T *)a.db_ih;
    if (db_hh || db_ih) add_column_sums(db_hh ? db_hh : db_ih, d_hh, rows, shared_cols, GH, nt, db_hh ? db_ih : nullptr);
    if (Cell::has_direct_path) {
        if (db_hh) add_column_sums(db_hh + shared_cols, d_hh + shared_cols, rows, H, GH, nt);
        if (db_ih) add_column_sums(db_ih + shared_cols, (const T *)a.aux, rows, H, H, nt);
    }
    if (a.tokens) {  // token input: the input-side gradient rows go to d_table; dw_ih and dx are the caller's
        T *d_table = (T *)a.d_table;
        if (Cell::has_direct_path) {  // GRU: [dr, dz] from gates, dn from aux
            const int64_t H2 = GH - H;
            add_rows_by_token(d_table, GH, d_hh, GH, H2, a.tokens, order, T_steps, B, nt);
            add_rows_by_token(d_table + H2, GH, (const T *)a.aux, H, H, a.tokens, order, T_steps, B, nt);
        } else {
            add_rows_by_token(d_table, GH, d_hh, GH, GH, a.tokens, order, T_steps, B, nt);
        }
        return FASTRNN_OK;
    }
    Buffer<T> x_packed, dx_packed;
    if (order.ragged) {  // the GEMMs see only valid rows: gather x, compute dx packed, scatter it at the end
        if (!x_packed.allocate(rows * I) || (want_dx && !dx_packed.allocate(rows * I))) return FASTRNN_ERR_NOMEM;
        gather_rows(x_packed.data, x, I, order, T_steps, B);
        x = x_packed.data;
        dx = dx_packed.data;
        beta_dx = T(0);
    }
    // The GRU's input side: [dr, dz] shared with the recurrent side (the gates' first 2H columns), dn in aux.
    const int64_t H1 = Cell::has_direct_path ? GH - H : GH, H2 = GH - H1;
    const T *d_n = Cell::has_direct_path ? (const T *)a.aux : nullptr;
    weight_gradient_add(H1, I, rows, d_hh, GH, x, I, dw_ih, I, nt);
    if (H2 > 0) weight_gradient_add(H2, I, rows, d_n, H, x, I, dw_ih + H1 * I, I, nt);
    if (want_dx) input_gradient(rows, I, d_hh, GH, H1, d_n, H, H2, w_ih, dx, I, beta_dx != T(0), nt);
    if (want_dx && order.ragged) scatter_rows((T *)a.dx, dx, I, order, T_steps, B, a.accumulate_dx != 0);
    return FASTRNN_OK;
}

template <typename T, class Cell> int layer_backward(const fastrnn_backward_args &a) {
    const int64_t P = a.proj_size > 0 ? a.proj_size : a.hidden_size;
    const int64_t row_blocks = (a.batch + BackwardRows<4> - 1) / BackwardRows<4>;
    const bool enough_wide_items = column_panel_count<T, 4>(P) * row_blocks >= 4 * (int64_t)a.num_threads;
    return enough_wide_items ? layer_backward_blocked<T, Cell, 4>(a) : layer_backward_blocked<T, Cell, 2>(a);
}
