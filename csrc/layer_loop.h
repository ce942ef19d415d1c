// The whole time loop of one layer and one direction, forward and backward (BPTT), for any cell.
// Included inside kernels_isa.cpp's per-ISA namespace, after simd.h, the cells, recurrent_gemm.h, blas.h.
//
// Work plan (DESIGN.md section 4):
//   forward:  gates = x W_ih^T                      one GEMM over all T*B rows (OpenBLAS)
//             for each step: h_{t-1} W_hh^T fused with bias, gate nonlinearities and state update,
//             split into items (block of rows x panel of hidden units) shared out among OpenMP threads
//   backward: for each step (reversed): dG_{t+1} W_hh fused with the cell's backward elementwise
//             then dW_ih += dG^T x, dW_hh += dG^T h_prev, dx = dG W_ih: one GEMM each over all rows
// Rows are visited longest-first, so at step s the active rows (lengths > s) are a prefix and padded
// steps cost nothing in the loop. Every output element is computed by the same code in the same
// order whichever thread owns it: results are bit-identical for any thread count.

template <typename T> struct Buffer {  // aligned scratch memory, freed on scope exit
    T *data = nullptr;
    bool allocate(int64_t count) {
        size_t bytes = ((size_t)(count > 0 ? count : 1) * sizeof(T) + 63) / 64 * 64;
        data = (T *)aligned_alloc(64, bytes);
        return data != nullptr;
    }
    ~Buffer() { free(data); }
};

inline int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }

constexpr int kMaxBlockRows = 4;    // rows per micro-kernel call (forward: R x G accumulators)
constexpr int kBackwardVectors = 2; // unit vectors per backward panel (R x 2 accumulators)

// Rows ordered by length, longest first (stable), and how many are active at each step.
struct RowOrder {
    Buffer<int64_t> lengths, perm, active;  // lengths (B), perm (B), active (T + 1): active[s + 1] for s = -1..T-1
    bool build(const int64_t *given, int64_t T, int64_t B) {
        if (!lengths.allocate(B) || !perm.allocate(B) || !active.allocate(T + 1)) return false;
        for (int64_t b = 0; b < B; ++b) lengths.data[b] = given ? given[b] : T;
        // counting sort by length, descending, stable
        Buffer<int64_t> count;
        if (!count.allocate(T + 2)) return false;
        for (int64_t i = 0; i <= T + 1; ++i) count.data[i] = 0;
        for (int64_t b = 0; b < B; ++b) count.data[T - lengths.data[b]]++;
        int64_t start = 0;
        for (int64_t i = 0; i <= T + 1; ++i) { int64_t c = count.data[i]; count.data[i] = start; start += c; }
        for (int64_t b = 0; b < B; ++b) perm.data[count.data[T - lengths.data[b]]++] = b;
        active.data[0] = B;
        for (int64_t s = 0; s < T; ++s) {
            int64_t n = active.data[s];  // lengths only shrink along perm
            while (n > 0 && lengths.data[perm.data[n - 1]] <= s) --n;
            active.data[s + 1] = n;
        }
        return true;
    }
    int64_t active_rows(int64_t s) const { return active.data[s + 1]; }
};

// Split n_items among threads in contiguous ranges (panel-major items keep each thread on the same
// slice of W_hh across steps, so it stays in that core's cache).
inline void thread_range(int64_t n_items, int tid, int nth, int64_t &begin, int64_t &end) {
    begin = n_items * tid / nth;
    end = n_items * (tid + 1) / nth;
}

inline void current_thread(int &tid, int &nth) {
#ifdef _OPENMP
    tid = omp_get_thread_num();
    nth = omp_get_num_threads();
#else
    tid = 0;
    nth = 1;
#endif
}

// ---------------------------------------------------------------------------------------------- forward
template <typename T, class Cell> struct ForwardLoop {
    typedef vec_t<T> V;
    static constexpr int G = Cell::G;
    static constexpr int AUXN = Cell::AUX > 0 ? Cell::AUX : 1;
    int64_t B, H, GH, Hp, ldy;
    bool reverse, tape;
    const RowOrder *order;
    const T *panels, *bias_x, *bias_hn;  // bias_x (G, Hp), bias_hn (Hp): zero-padded to Hp units
    T *gates, *h_prev, *aux, *y, *c_state;
    T *h_state[2];                       // step s reads h_state[s & 1], writes h_state[(s + 1) & 1]

    int64_t time_of(int64_t s, int64_t b) const { return reverse ? order->lengths.data[b] - 1 - s : s; }

    template <int R> void block(int64_t s, const int64_t *rows, int64_t p) const {
        const int L = Simd<T>::lanes;
        const T *h_in = h_state[s & 1];
        T *h_out = h_state[(s + 1) & 1];
        const T *a[R];
        for (int r = 0; r < R; ++r) a[r] = h_in + rows[r] * H;
        V acc[R][G];
        panel_product<T, R, G>(a, H, panels + p * forward_panel_size<T>(G, H), acc);
        const int64_t j = p * L;
        const int nl = (int)imin(L, H - j);
        V bx[G];
        for (int g = 0; g < G; ++g) bx[g] = load(bias_x + g * Hp + j);
        const V b_hn = Cell::has_direct_path ? load(bias_hn + j) : V{};
        for (int r = 0; r < R; ++r) {
            const int64_t b = rows[r], row = time_of(s, b) * B + b;
            T *gate_row = gates + row * GH;
            V x_part[G], act[G], aux_v[AUXN] = {}, h_new, c = {};
            for (int g = 0; g < G; ++g) x_part[g] = load_n(gate_row + g * H + j, nl) + bx[g];
            const V hp = load_n(h_in + b * H + j, nl);
            if (Cell::has_cell_state) c = load_n(c_state + b * H + j, nl);
            Cell::forward(x_part, acc[r], b_hn, hp, c, h_new, act, aux_v);
            store_n(h_out + b * H + j, h_new, nl);
            if (Cell::has_cell_state) store_n(c_state + b * H + j, c, nl);
            store_n(y + row * ldy + j, h_new, nl);
            if (tape) {
                for (int g = 0; g < G; ++g) store_n(gate_row + g * H + j, act[g], nl);
                store_n(h_prev + row * H + j, hp, nl);
                for (int k = 0; k < Cell::AUX; ++k) store_n(aux + row * Cell::AUX * H + k * H + j, aux_v[k], nl);
            }
        }
    }

    void item(int64_t s, int64_t rows_begin, int64_t n_rows, int64_t p) const {
        const int64_t *rows = order->perm.data + rows_begin;
        switch (n_rows) {
            case 1: block<1>(s, rows, p); break;
            case 2: block<2>(s, rows, p); break;
            case 3: block<3>(s, rows, p); break;
            default: block<4>(s, rows, p); break;
        }
    }

    void run(int64_t T_steps, int num_threads) const {
        const int64_t n_panels = forward_panel_count<T>(H);
#pragma omp parallel num_threads(num_threads)
        {
            int tid, nth;
            current_thread(tid, nth);
            for (int64_t s = 0; s < T_steps; ++s) {
                const int64_t n_rows = order->active_rows(s);
                const int64_t n_blocks = (n_rows + kMaxBlockRows - 1) / kMaxBlockRows;
                int64_t begin, end;
                thread_range(n_blocks * n_panels, tid, nth, begin, end);
                for (int64_t i = begin; i < end; ++i) {
                    const int64_t p = i / n_blocks, blk = i % n_blocks;
                    const int64_t r0 = blk * kMaxBlockRows;
                    item(s, r0, imin(kMaxBlockRows, n_rows - r0), p);
                }
#pragma omp barrier
            }
        }
    }
};

// Zero the rows (t, b) past each sequence's end in a (T, B, width) array with row stride ld.
template <typename T> void zero_padding(T *base, int64_t ld, int64_t width, const RowOrder &order, int64_t T_steps,
                                        int64_t B) {
    for (int64_t b = 0; b < B; ++b)
        for (int64_t t = order.lengths.data[b]; t < T_steps; ++t)
            for (int64_t k = 0; k < width; ++k) base[(t * B + b) * ld + k] = T(0);
}

template <typename T, class Cell> int layer_forward(const fastrnn_forward_args &a) {
    const int G = Cell::G, L = Simd<T>::lanes;
    const int64_t T_steps = a.steps, B = a.batch, I = a.input_size, H = a.hidden_size, GH = G * H;
    const int64_t n_panels = forward_panel_count<T>(H), Hp = n_panels * L;
    const bool tape = a.gates != nullptr;

    RowOrder order;
    Buffer<T> panels, bias_x, bias_hn, h_state, c_state, scratch_gates;
    if (!order.build(a.lengths, T_steps, B) || !panels.allocate(n_panels * forward_panel_size<T>(G, H)) ||
        !bias_x.allocate(G * Hp) || !bias_hn.allocate(Hp) || !h_state.allocate(2 * B * H) ||
        !c_state.allocate(B * H) || (!tape && !scratch_gates.allocate(T_steps * B * GH)))
        return FASTRNN_ERR_NOMEM;
    T *gates = tape ? (T *)a.gates : scratch_gates.data;

    // Input projection for every step at once.
    parallel_gemm(false, true, T_steps * B, GH, I, T(1), (const T *)a.x, I, (const T *)a.w_ih, I, T(0), gates, GH,
                  a.num_threads);

    pack_forward_panels(panels.data, (const T *)a.w_hh, G, H);
    const T *b_ih = (const T *)a.b_ih, *b_hh = (const T *)a.b_hh;
    for (int g = 0; g < G; ++g)
        for (int64_t j = 0; j < Hp; ++j) {
            T v = 0;
            if (j < H) {
                if (b_ih) v += b_ih[g * H + j];
                if (b_hh && !(Cell::has_direct_path && g == G - 1)) v += b_hh[g * H + j];  // GRU: b_hn stays inside r*(.)
            }
            bias_x.data[g * Hp + j] = v;
        }
    for (int64_t j = 0; j < Hp; ++j) bias_hn.data[j] = (b_hh && j < H && Cell::has_direct_path) ? b_hh[(G - 1) * H + j] : T(0);
    __builtin_memcpy(h_state.data, a.h0, B * H * sizeof(T));
    if (Cell::has_cell_state) __builtin_memcpy(c_state.data, a.c0, B * H * sizeof(T));

    ForwardLoop<T, Cell> loop;
    loop.B = B; loop.H = H; loop.GH = GH; loop.Hp = Hp; loop.ldy = a.ldy;
    loop.reverse = a.reverse != 0; loop.tape = tape; loop.order = &order;
    loop.panels = panels.data; loop.bias_x = bias_x.data; loop.bias_hn = bias_hn.data;
    loop.gates = gates; loop.h_prev = (T *)a.h_prev; loop.aux = (T *)a.aux; loop.y = (T *)a.y;
    loop.c_state = c_state.data;
    loop.h_state[0] = h_state.data; loop.h_state[1] = h_state.data + B * H;
    loop.run(T_steps, a.num_threads);

    T *hn = (T *)a.hn;
    for (int64_t b = 0; b < B; ++b)  // row b last wrote h_state[lengths[b] & 1]
        __builtin_memcpy(hn + b * H, loop.h_state[order.lengths.data[b] & 1] + b * H, H * sizeof(T));
    if (Cell::has_cell_state) __builtin_memcpy(a.cn, c_state.data, B * H * sizeof(T));
    zero_padding((T *)a.y, a.ldy, H, order, T_steps, B);
    if (tape) {
        zero_padding(gates, GH, GH, order, T_steps, B);
        zero_padding((T *)a.h_prev, H, H, order, T_steps, B);
        if (Cell::AUX) zero_padding((T *)a.aux, Cell::AUX * H, Cell::AUX * H, order, T_steps, B);
    }
    return FASTRNN_OK;
}

// --------------------------------------------------------------------------------------------- backward
template <typename T, class Cell> struct BackwardLoop {
    typedef vec_t<T> V;
    static constexpr int G = Cell::G;
    static constexpr int NB = kBackwardVectors;
    static constexpr int AUXN = Cell::AUX > 0 ? Cell::AUX : 1;
    int64_t B, H, GH, ldy;
    bool reverse;
    const RowOrder *order;
    const T *panels, *zero_row, *dy, *dhn, *h_prev;
    T *gates, *aux, *dc_state, *dh_carry, *dh0;

    int64_t time_of(int64_t s, int64_t b) const { return reverse ? order->lengths.data[b] - 1 - s : s; }

    // Step s (s = -1: the final pass that only forms dh0 from step 0's gate gradients).
    template <int R> void block(int64_t s, const int64_t *rows, int64_t q) const {
        const int L = Simd<T>::lanes;
        const T *a[R];
        bool has_next[R];
        for (int r = 0; r < R; ++r) {
            const int64_t b = rows[r];
            has_next[r] = s + 1 < order->lengths.data[b];
            a[r] = has_next[r] ? gates + (time_of(s + 1, b) * B + b) * GH : zero_row;
        }
        V acc[R][NB];
        panel_product<T, R, NB>(a, GH, panels + q * backward_panel_size<T, NB>(GH), acc);
        for (int u = 0; u < NB; ++u) {
            const int64_t j = (q * NB + u) * L;
            if (j >= H) break;
            const int nl = (int)imin(L, H - j);
            for (int r = 0; r < R; ++r) {
                const int64_t b = rows[r];
                V dh;
                if (has_next[r]) {
                    dh = acc[r][u];
                    if (Cell::has_direct_path) dh += load_n(dh_carry + b * H + j, nl);
                } else {
                    dh = load_n(dhn + b * H + j, nl);
                }
                if (s < 0) { store_n(dh0 + b * H + j, dh, nl); continue; }
                const int64_t row = time_of(s, b) * B + b;
                dh += load_n(dy + row * ldy + j, nl);
                T *gate_row = gates + row * GH;
                V act[G], aux_v[AUXN] = {}, dc = {}, hp = {}, dh_direct = {};
                for (int g = 0; g < G; ++g) act[g] = load_n(gate_row + g * H + j, nl);
                for (int k = 0; k < Cell::AUX; ++k) aux_v[k] = load_n(aux + row * Cell::AUX * H + k * H + j, nl);
                if (Cell::has_cell_state) dc = load_n(dc_state + b * H + j, nl);
                if (Cell::has_direct_path) hp = load_n(h_prev + row * H + j, nl);
                Cell::backward(dh, dc, act, aux_v, hp, dh_direct);
                for (int g = 0; g < G; ++g) store_n(gate_row + g * H + j, act[g], nl);
                for (int k = 0; k < Cell::AUX; ++k) store_n(aux + row * Cell::AUX * H + k * H + j, aux_v[k], nl);
                if (Cell::has_cell_state) store_n(dc_state + b * H + j, dc, nl);
                if (Cell::has_direct_path) store_n(dh_carry + b * H + j, dh_direct, nl);
            }
        }
    }

    void item(int64_t s, int64_t rows_begin, int64_t n_rows, int64_t q) const {
        const int64_t *rows = order->perm.data + rows_begin;
        switch (n_rows) {
            case 1: block<1>(s, rows, q); break;
            case 2: block<2>(s, rows, q); break;
            case 3: block<3>(s, rows, q); break;
            default: block<4>(s, rows, q); break;
        }
    }

    void run(int64_t T_steps, int num_threads) const {
        const int64_t n_panels = backward_panel_count<T, NB>(H);
#pragma omp parallel num_threads(num_threads)
        {
            int tid, nth;
            current_thread(tid, nth);
            for (int64_t s = T_steps - 1; s >= -1; --s) {
                const int64_t n_rows = order->active_rows(s);
                const int64_t n_blocks = (n_rows + kMaxBlockRows - 1) / kMaxBlockRows;
                int64_t begin, end;
                thread_range(n_blocks * n_panels, tid, nth, begin, end);
                for (int64_t i = begin; i < end; ++i) {
                    const int64_t q = i / n_blocks, blk = i % n_blocks;
                    const int64_t r0 = blk * kMaxBlockRows;
                    item(s, r0, imin(kMaxBlockRows, n_rows - r0), q);
                }
#pragma omp barrier
            }
        }
    }
};

// out[c] += sum over rows of m[row][c], rows in order (fixed order: bit-identical for any thread count).
template <typename T> void add_column_sums(T *out, const T *m, int64_t rows, int64_t cols, int64_t ld, int num_threads) {
#pragma omp parallel for num_threads(num_threads) schedule(static)
    for (int64_t c0 = 0; c0 < cols; c0 += 64) {
        const int64_t c1 = imin(cols, c0 + 64);
        T acc[64] = {};
        for (int64_t r = 0; r < rows; ++r)
            for (int64_t c = c0; c < c1; ++c) acc[c - c0] += m[r * ld + c];
        for (int64_t c = c0; c < c1; ++c) out[c] += acc[c - c0];
    }
}

template <typename T, class Cell> int layer_backward(const fastrnn_backward_args &a) {
    const int G = Cell::G;
    const int NB = kBackwardVectors;
    const int64_t T_steps = a.steps, B = a.batch, I = a.input_size, H = a.hidden_size, GH = G * H;
    const int64_t rows = T_steps * B;

    RowOrder order;
    Buffer<T> panels, zero_row, dc_state, dh_carry;
    if (!order.build(a.lengths, T_steps, B) ||
        !panels.allocate(backward_panel_count<T, NB>(H) * backward_panel_size<T, NB>(GH)) ||
        !zero_row.allocate(GH) || !dc_state.allocate(B * H) || !dh_carry.allocate(B * H))
        return FASTRNN_ERR_NOMEM;
    pack_backward_panels<T, NB>(panels.data, (const T *)a.w_hh, GH, H);
    for (int64_t k = 0; k < GH; ++k) zero_row.data[k] = 0;
    for (int64_t k = 0; k < B * H; ++k) dh_carry.data[k] = 0;
    if (Cell::has_cell_state) __builtin_memcpy(dc_state.data, a.dcn, B * H * sizeof(T));

    BackwardLoop<T, Cell> loop;
    loop.B = B; loop.H = H; loop.GH = GH; loop.ldy = a.ldy;
    loop.reverse = a.reverse != 0; loop.order = &order;
    loop.panels = panels.data; loop.zero_row = zero_row.data;
    loop.dy = (const T *)a.dy; loop.dhn = (const T *)a.dhn; loop.h_prev = (const T *)a.h_prev;
    loop.gates = (T *)a.gates; loop.aux = (T *)a.aux; loop.dc_state = dc_state.data;
    loop.dh_carry = dh_carry.data; loop.dh0 = (T *)a.dh0;
    loop.run(T_steps, a.num_threads);
    if (Cell::has_cell_state) __builtin_memcpy(a.dc0, dc_state.data, B * H * sizeof(T));

    // gates now holds the gradients w.r.t. the rows of W_hh; for GRU the input-side n gradient is in aux.
    const T *d_hh = (const T *)a.gates;
    const T *x = (const T *)a.x, *w_ih = (const T *)a.w_ih;
    T *dw_ih = (T *)a.dw_ih, *dx = (T *)a.dx;
    const T beta_dx = a.accumulate_dx ? T(1) : T(0);
    const int nt = a.num_threads;
    parallel_gemm(true, false, GH, H, rows, T(1), d_hh, GH, (const T *)a.h_prev, H, T(1), (T *)a.dw_hh, H, nt);
    if (a.db_hh) add_column_sums((T *)a.db_hh, d_hh, rows, GH, GH, a.num_threads);
    if (Cell::has_direct_path) {  // GRU: [dr, dz] shared, n differs between the input and recurrent sides
        const int64_t H2 = GH - H;
        const T *d_n = (const T *)a.aux;
        parallel_gemm(true, false, H2, I, rows, T(1), d_hh, GH, x, I, T(1), dw_ih, I, nt);
        parallel_gemm(true, false, H, I, rows, T(1), d_n, H, x, I, T(1), dw_ih + H2 * I, I, nt);
        if (a.db_ih) {
            add_column_sums((T *)a.db_ih, d_hh, rows, H2, GH, a.num_threads);
            add_column_sums((T *)a.db_ih + H2, d_n, rows, H, H, a.num_threads);
        }
        parallel_gemm(false, false, rows, I, H2, T(1), d_hh, GH, w_ih, I, beta_dx, dx, I, nt);
        parallel_gemm(false, false, rows, I, H, T(1), d_n, H, w_ih + H2 * I, I, T(1), dx, I, nt);
    } else {
        parallel_gemm(true, false, GH, I, rows, T(1), d_hh, GH, x, I, T(1), dw_ih, I, nt);
        if (a.db_ih) add_column_sums((T *)a.db_ih, d_hh, rows, GH, GH, a.num_threads);
        parallel_gemm(false, false, rows, I, GH, T(1), d_hh, GH, w_ih, I, beta_dx, dx, I, nt);
    }
    return FASTRNN_OK;
}
