// Forward over the whole sequence, one layer and one direction, for any cell.
// Included inside kernels_isa.cpp's per-ISA namespace (after the cells, recurrent_gemm.h, blas.h,
// row_dot.h, loop_support.h); its twin is layer_backward.h.
//
// Work plan (DESIGN.md section 4):
//   x W_ih^T: fused into phase 1 while W_ih and W_hh fit the cache together (fused_input below); else
//     one GEMM over all valid (t, b) rows before the loop (padded ones are skipped; up to kRowDotMaxRows
//     rows, row_dot.h's product instead). With token input the loop reads each row's x W_ih^T from
//     token_table instead.
//   each step, phase 1: h_{t-1} W_hh^T (and x_t W_ih^T when fused) with the biases, the gate
//     nonlinearities and the state update; items = (block of rows) x (panel of hidden units, all gates
//     of a unit in one item).
//   each step, phase 2 (LSTM with proj_size only): h_t = (o * tanh c_t) W_hr^T.
// Rows are visited longest-first, so at step s the active rows (lengths > s) are a prefix, and the tape
// holds only valid rows (RowOrder's packed layout): padded steps cost nothing. Each output element is computed by the same code in the same order
// whichever thread owns it: results are bit-identical for any thread count.
//
// Sizes: H cell units, P state size (P = H unless LSTM with proj_size), G gates.

template <class Cell> struct ForwardBlocking {  // R rows x G*U vectors of accumulators, R * G * U <= kAccumulators
    static constexpr int U = Cell::G == 1 ? kAccumulators / 6 : 1;  // AVX-512: RNN 6 x 4, LSTM 6 x 4, GRU 8 x 3
    static constexpr int R = kAccumulators / (Cell::G * U);          // AVX2: RNN 6 x 2, LSTM 3 x 4, GRU 4 x 3
};
constexpr int kProjectionVectors = 4;  // phase 2: kProjectionRows x 4 vectors of state units
constexpr int64_t kGemvMinWeights = 1 << 18;  // W_hh elements (1 MB of float) from which B = 1 steps stay direct
constexpr int kProjectionRows = kAccumulators / kProjectionVectors;
constexpr double kFusedInputMaxBytes = 16 << 20;  // W_ih and W_hh together, for the fused input projection
constexpr int64_t kFusedInputMinBatch = 4;          // and at least this many rows,
constexpr int64_t kFusedInputL3Batch = 64;          // or this many when the weights do not fit half the L2
// An unfused input projection beyond kRowDotMaxRows rows runs on W_ih's panels, packed one at a time
// (panel_input_projection), where the micro-kernel has 24 accumulators (AVX-512). The AVX2 build, timed on
// a Zen 4 against OpenBLAS's AVX-512 sgemm, was 0.93-1.07x; not measured on an AVX2 machine, so it keeps sgemm.
constexpr bool kPanelInputProjection = kAccumulators >= 24;
// and up to this many rows: measured faster at 100-800 rows (1.03-1.11x), slower at 6400 (B = 64, T = 100,
// D = H = 512, unfused: 1.06-1.16x sgemm's time, where OpenBLAS's blocking of the rows pays off). Passes
// over 1008 rows at a time only tied sgemm there (0.87-1.01x) and lost at D = 128 (1.07-1.14x).
constexpr int64_t kPanelInputMaxRows = 1024;

template <typename T, class Cell> struct ForwardLoop {
    typedef vec_t<T> V;
    static constexpr int G = Cell::G;
    static constexpr int U = ForwardBlocking<Cell>::U;
    static constexpr int RMAX = ForwardBlocking<Cell>::R;
    static constexpr int AUXN = Cell::AUX > 0 ? Cell::AUX : 1;
    int64_t B, H, P, GH, Hp, ldy;
    bool reverse, tape, projected;
    const RowOrder *order;
    const T *panels, *proj_panels, *bias_x, *bias_hn;  // bias_x (G, Hp), bias_hn (Hp): zero-padded to Hp
    const T *w_hh;                                     // (G*H, P), for the direct (unpacked) path
    const T *x, *in_panels;                            // fused input: x (T, B, I) and W_ih packed like W_hh
    int64_t I;
    bool fused_input;                                  // x W_ih^T per item from in_panels (no GEMM beforehand)
    T *hh;                                             // (B, G*H): h_{t-1} W_hh^T, direct path only
    bool direct;                                       // a step or two, or gemv_steps: W_hh read as it lies, no packing
    bool gemv_steps;                                   // direct, B = 1 and big weights: each product is a matrix-vector one
    T *gates, *h_prev, *aux, *y, *c_state, *h_raw;    // h_raw (B, H): o * tanh(c_t) before projection
    const int64_t *tokens;                            // token input: x W_ih^T of (t, b) is token_table's row
    const T *token_table;                             // tokens[t * B + b] (NULL: it is the row of gates)
    T *h_state[2];                                    // (B, P) each: step s reads [s & 1], writes [(s+1) & 1]

    int64_t time_of(int64_t s, int64_t b) const { return reverse ? order->lengths.data[b] - 1 - s : s; }
    // Every other step visits its items backwards (run_items), so consecutive steps meet in the L2
    // (Xeon, 2 MB of L2, 1 thread, a snapshot with its input projection before the loop: db-b4 LSTM
    // 7.1 -> 5.6 ms, GRU 6.7 -> 5.7; the medium and large rows within noise).
    static bool backwards(int64_t s) { return s & 1; }

    // The state h_t of row b is final: publish it (next state, output, tape).
    void emit_state(int64_t s, int64_t b, int64_t j, int nl, V h_new) const {
        const int64_t t = time_of(s, b);
        store_n(h_state[(s + 1) & 1] + b * P + j, h_new, nl);
        store_n(y + (t * B + b) * ldy + j, h_new, nl);
        if (tape) store_n(h_prev + order->packed(t, b) * P + j, load_n(h_state[s & 1] + b * P + j, nl), nl);
    }

    // Phase 1 for rows x units p*U*L .. (all gates).
    template <int R> void cell_block(int64_t s, const int64_t *rows, int64_t p) const {
        const int L = Simd<T>::lanes;
        const T *h_in = h_state[s & 1];
        V acc[R][G * U], x_acc[R][G * U];
        const T *a[R], *xa[R];  // each row's h_{t-1}, and its x_t when fused
        for (int r = 0; r < R; ++r) {
            a[r] = h_in + rows[r] * P;
            if (fused_input) xa[r] = x + (time_of(s, rows[r]) * B + rows[r]) * I;
        }
        const T *h_panel = direct ? nullptr : panels + p * row_panel_size<T, U>(G, P);
        const T *x_panel = fused_input ? in_panels + p * row_panel_size<T, U>(G, I) : nullptr;
        if (direct) {
            for (int r = 0; r < R; ++r)
                for (int g = 0; g < G; ++g)
                    for (int u = 0; u < U; ++u) {
                        const int64_t j = (p * U + u) * L;
                        acc[r][g * U + u] = j < H ? load_n(hh + rows[r] * GH + g * H + j, (int)imin(L, H - j)) : V{};
                    }
        } else if (fused_input && 2 * R * G * U <= kAccumulators) {
            // few rows: both products in one pass (twice the chains of multiply-adds, the same bits)
            panel_product_pair<T, R, G * U>(a, P, h_panel, acc, xa, I, x_panel, x_acc);
        } else {
            panel_product<T, R, G * U>(a, P, h_panel, acc);
            if (fused_input) panel_product<T, R, G * U>(xa, I, x_panel, x_acc);
        }
        for (int u = 0; u < U; ++u) {
            const int64_t j = (p * U + u) * L;
            if (j >= H) break;
            const int nl = (int)imin(L, H - j);
            V bx[G];
            for (int g = 0; g < G; ++g) bx[g] = load(bias_x + g * Hp + j);
            const V b_hn = Cell::has_direct_path ? load(bias_hn + j) : V{};
            for (int r = 0; r < R; ++r) {
                const int64_t b = rows[r], t = time_of(s, b), row = order->packed(t, b);
                T *gate_row = tape ? gates + row * GH : nullptr;  // (gates is NULL for token input without tape)
                // x W_ih^T of this row when not fused (gates is NULL when fused without a tape)
                const T *x_row = fused_input ? nullptr
                                 : tokens   ? token_table + tokens[t * B + b] * GH
                                            : gates + row * GH;
                V x_part[G], h_part[G], act[G], aux_v[AUXN] = {}, h_new, c = {}, hp = {};
                for (int g = 0; g < G; ++g) {
                    x_part[g] = (fused_input ? x_acc[r][g * U + u] : load_n(x_row + g * H + j, nl)) + bx[g];
                    h_part[g] = acc[r][g * U + u];
                }
                // This row's lines two panels on (in the step's direction): the item order (row blocks,
                // then panels) visits a row's units a panel at a time, with the rows pages apart, which the
                // hardware prefetcher does not follow (LSTM medium, 1 thread: forward with tape 58.8 -> 55.0 ms).
                const int64_t j_ahead = backwards(s) ? j - 2 * U * L : j + 2 * U * L;
                if (j_ahead >= 0 && j_ahead < H) {
                    if (tape) {
                        for (int g = 0; g < G; ++g) __builtin_prefetch(gate_row + g * H + j_ahead, 1);
                        for (int k = 0; k < Cell::AUX; ++k)
                            __builtin_prefetch(aux + (row * Cell::AUX + k) * H + j_ahead, 1);
                        if (!projected) __builtin_prefetch(h_prev + row * P + j_ahead, 1);
                    }
                    if (!projected) __builtin_prefetch(y + (t * B + b) * ldy + j_ahead, 1);
                    if (!fused_input)
                        for (int g = 0; g < G; ++g) __builtin_prefetch(x_row + g * H + j_ahead, 0);
                }
                if (Cell::has_direct_path) hp = load_n(h_in + b * P + j, nl);
                if (Cell::has_cell_state) c = load_n(c_state + b * H + j, nl);
                Cell::forward(x_part, h_part, b_hn, hp, c, h_new, act, aux_v);
                if (Cell::has_cell_state) store_n(c_state + b * H + j, c, nl);
                if (projected) store_n(h_raw + b * H + j, h_new, nl);
                else emit_state(s, b, j, nl, h_new);
                if (tape) {
                    for (int g = 0; g < G; ++g) store_n(gate_row + g * H + j, act[g], nl);
                    for (int k = 0; k < Cell::AUX; ++k) store_n(aux + row * Cell::AUX * H + k * H + j, aux_v[k], nl);
                }
            }
        }
    }

    // Phase 2 (projection) for rows x state units p*4*L ..
    template <int R> void projection_block(int64_t s, const int64_t *rows, int64_t p) const {
        const int L = Simd<T>::lanes, NV = kProjectionVectors;
        const T *a[R];
        for (int r = 0; r < R; ++r) a[r] = h_raw + rows[r] * H;
        V acc[R][NV];
        panel_product<T, R, NV>(a, H, proj_panels + p * row_panel_size<T, NV>(1, H), acc);
        for (int u = 0; u < NV; ++u) {
            const int64_t j = (p * NV + u) * L;
            if (j >= P) break;
            for (int r = 0; r < R; ++r) emit_state(s, rows[r], j, (int)imin(L, P - j), acc[r][u]);
        }
    }

    void run(int64_t T_steps, int num_threads) const {
        const int64_t n_panels = row_panel_count<T, U>(H);
        const int64_t n_proj_panels = row_panel_count<T, kProjectionVectors>(P);
        const int64_t *perm = order->perm.data;
        if (direct) {  // no packing: the product per step straight from W_hh (row_dot.h), then the cells
            for (int64_t s = 0; s < T_steps; ++s) {
                if (B <= kRowDotMaxRows)
                    row_dot_product(B, GH, P, h_state[s & 1], P, w_hh, P, hh, GH, num_threads, backwards(s));
                else gemm(false, true, B, GH, P, T(1), h_state[s & 1], P, w_hh, P, T(0), hh, GH);
                run_items<RMAX>(order->active_rows(s), n_panels, 0, 1, [&](int64_t r0, int64_t n, int64_t p) {
                    dispatch_rows<RMAX>(n, [&](auto r) { cell_block<decltype(r)::value>(s, perm + r0, p); });
                }, backwards(s));  // (the direction cell_block prefetches in)
            }
            return;
        }
        step_region(num_threads, [&](int tid, int nth, StepBarrier &barrier) {
            for (int64_t s = 0; s < T_steps; ++s) {
                const int64_t n_rows = order->active_rows(s);
                run_items<RMAX>(n_rows, n_panels, tid, nth, [&](int64_t r0, int64_t n, int64_t p) {
                    dispatch_rows<RMAX>(n, [&](auto r) { cell_block<decltype(r)::value>(s, perm + r0, p); });
                }, backwards(s));
                if (projected) {
                    barrier.wait();
                    run_items<kProjectionRows>(n_rows, n_proj_panels, tid, nth, [&](int64_t r0, int64_t n, int64_t p) {
                        dispatch_rows<kProjectionRows>(n, [&](auto r) { projection_block<decltype(r)::value>(s, perm + r0, p); });
                    });
                }
                barrier.wait();
            }
        });
    }
};

// The input projection on W_ih's panels: gates (n_rows, G*H) = x_rows W_ih^T by the step loop's micro-kernel,
// so the same bits as the fused way. From in_panels (W_ih packed beforehand), or, with in_panels null, from
// w_ih itself: each thread packs one panel at a time into its scratch_panels slot (row_panel_size elements
// per thread), which stays in L2 while every row block reads it, so no packed copy of W_ih goes through the
// L3. Against OpenBLAS's sgemm (which packs both operands, and runs below its peak with 100 rows), Zen 4,
// alternating runs, 1 thread: db-b4 LSTM 5.95 -> 5.78 ms, GRU 4.30 -> 3.96, RNN 1.26 -> 1.17; LSTM
// (25,32,1024,1024) 146 -> 138, ReLU (50,16,1760,1760) 123 -> 110; 2 threads 1.00-1.05x; training 1.01-1.05x
// (one GRU run 0.97x). Packing all of W_ih first and then projecting was slower than sgemm (0.92-0.96x on
// db-b4): the packed copy made the call's data outgrow the L3 share this VM gets.
template <typename T, class Cell>
void panel_input_projection(int64_t n_rows, int64_t H, int64_t I, const T *x_rows, const T *in_panels, const T *w_ih,
                            T *scratch_panels, T *gates, int num_threads) {
    constexpr int G = Cell::G, U = ForwardBlocking<Cell>::U, RMAX = ForwardBlocking<Cell>::R, L = Simd<T>::lanes;
    const int64_t n_panels = row_panel_count<T, U>(H), n_blocks = (n_rows + RMAX - 1) / RMAX, GH = G * H;
    const int64_t panel_size = row_panel_size<T, U>(G, I);
    auto block_product = [&](const T *panel, int64_t p, int64_t r0) {
        dispatch_rows<RMAX>(imin(RMAX, n_rows - r0), [&](auto rows) {
            constexpr int R = decltype(rows)::value;
            const T *a[R];
            for (int i = 0; i < R; ++i) a[i] = x_rows + (r0 + i) * I;
            vec_t<T> acc[R][G * U];
            panel_product<T, R, G * U>(a, I, panel, acc);
            for (int g = 0; g < G; ++g)
                for (int u = 0; u < U; ++u) {
                    const int64_t j = (p * U + u) * L;
                    if (j >= H) continue;
                    for (int i = 0; i < R; ++i)
                        store_n(gates + (r0 + i) * GH + g * H + j, acc[i][g * U + u], (int)imin(L, H - j));
                }
        });
    };
    const bool threaded = num_threads > 1 && 2.0 * (double)n_rows * (double)GH * (double)I >= 4e5;
    if (!in_panels) {  // packed as it goes: the items are whole panels
        const TileTranspose<T> transpose;
#pragma omp parallel for num_threads(num_threads) schedule(static) if (threaded && n_panels > 1)
        for (int64_t p = 0; p < n_panels; ++p) {
            T *panel = scratch_panels + omp_get_thread_num() * panel_size;
            pack_row_panel<T, U>(panel, w_ih, G, H, I, p, transpose);
            for (int64_t r0 = 0; r0 < n_rows; r0 += RMAX) block_product(panel, p, r0);
        }
        return;
    }
    const int64_t n_items = n_panels * n_blocks;
    auto item_product = [&](int64_t item) {
        const int64_t p = item / n_blocks;
        block_product(in_panels + p * panel_size, p, item % n_blocks * RMAX);
    };
    if (threaded && n_items > 1) {
#pragma omp parallel for num_threads(num_threads) schedule(static)
        for (int64_t item = 0; item < n_items; ++item) item_product(item);
    } else {  // (no OpenMP region for a streaming step: entering one costs about a microsecond)
        for (int64_t item = 0; item < n_items; ++item) item_product(item);
    }
}

template <typename T, class Cell> int layer_forward(const fastrnn_forward_args &a) {
    const int G = Cell::G, L = Simd<T>::lanes, U = ForwardBlocking<Cell>::U, NP = kProjectionVectors;
    const int64_t T_steps = a.steps, B = a.batch, I = a.input_size, H = a.hidden_size, GH = G * H;
    const bool projected = a.proj_size > 0;
    const int64_t P = projected ? a.proj_size : H;
    const int64_t n_panels = row_panel_count<T, U>(H), Hp = n_panels * U * L;
    const bool tape = a.gates != nullptr;
    // Direct (unpacked) steps: for a step or two packing W_hh costs more than it saves; with one row and
    // big weights each step is a matrix-vector product bound by reading W_hh, which needs no packing. Their
    // products read W_hh as it lies (row_dot.h; OpenBLAS's sgemm beyond kRowDotMaxRows rows), and so does
    // the input projection of a call with few rows (db-b1, 1 thread: LSTM 2.6 -> 2.1 ms, GRU 1.85 -> 1.5,
    // RNN 0.56 -> 0.42 against OpenBLAS's gemv and sgemm). The choice depends on the shape alone;
    // streamed steps and one call agree bit for bit on the gemv path, whatever T (tests/test_streaming.py),
    // and to rounding elsewhere (a long call's products run on the packed panels, in another order).
    // Weights packed beforehand (fastrnn.freeze): every product on the panels, whatever T and B.
    const bool prepacked = a.packed_w_hh != nullptr;
    const bool gemv_steps = !prepacked && B == 1 && GH * P >= kGemvMinWeights && !projected;
    const bool direct = !prepacked && ((T_steps <= 2 && !projected) || gemv_steps);
    const int64_t *tokens = a.tokens;  // token input: the loop reads x W_ih^T from token_table, no GEMM here
    // Fused input: each item computes its x W_ih^T from W_ih packed like W_hh, next to the recurrent product,
    // instead of one GEMM before the loop: the (T*B, G*H) pre-activations never go through memory, and the
    // micro-kernel runs nearer the FMA peak than OpenBLAS on these shapes (1 thread, medium: LSTM 59.7 ->
    // 54.3 ms, GRU 41.9 -> 39.6). Both packed weights are read every step, so only while they stay in the
    // last-level cache (LSTM 1024, 32 MB of panels: 14% slower fused), and only with enough rows to use
    // each weight several times per read: with 1-3 rows the steps are bound by reading the panels, and
    // reading W_ih's too made them slower (1 thread, T = 100, H = 128: LSTM B = 1 0.45 -> 0.55 ms fused,
    // B = 3 1.00 -> 1.03; B = 4 1.20 -> 1.14; at 2 threads B = 1 0.39 -> 0.55). Panels past half the L2
    // come from the L3 every step, at the L3's rate, which is a core's share of a mesh on some machines:
    // there, fused, 4 to 32 rows were slower (Xeon, 2 MB of L2, 1 thread: db-b4 LSTM 11.5 -> 7.9 ms
    // unfused, B = 16 0.93x, B = 32 0.95x; B = 64 1.00-1.05x fused), so they need kFusedInputL3Batch rows
    // (on the EPYC, 1 MB of L2 and a faster L3, db-b4 LSTM had been 1.10x faster fused at T = 100).
    // With weights packed beforehand both ways give the same bits, and a single step is fused whatever
    // its size (one pass over the panels, no pre-activation buffer: a streaming step).
    const double fused_bytes = (double)GH * (double)(I + P) * sizeof(T);
    const bool fused_input = !direct && !tokens && fastrnn_fused_input() &&
                             ((prepacked && T_steps == 1) ||
                              (B >= kFusedInputMinBatch && fused_bytes <= kFusedInputMaxBytes &&
                               (B >= kFusedInputL3Batch || fused_bytes <= 0.5 * (double)fastrnn_l2_cache_bytes())));

    const bool panel_input = kPanelInputProjection && !fused_input && !prepacked && !tokens && !direct &&
                             T_steps * B > kRowDotMaxRows && T_steps * B <= kPanelInputMaxRows && fastrnn_panel_input();
    RowOrder order;
    Buffer<T> panels, in_panels, proj_panels, bias_x, bias_hn, h_state, c_state, h_raw, scratch_gates, hh;
    if (!order.build(a.lengths, T_steps, B) ||
        !panels.allocate(direct || prepacked ? 1 : n_panels * row_panel_size<T, U>(G, P)) ||
        (direct && !hh.allocate(B * GH)) ||
        (fused_input && !prepacked && !in_panels.allocate(n_panels * row_panel_size<T, U>(G, I))) ||
        (panel_input && !in_panels.allocate(a.num_threads * row_panel_size<T, U>(G, I))) ||
        !bias_x.allocate(G * Hp) || !bias_hn.allocate(Hp) || !h_state.allocate(2 * B * P) || !c_state.allocate(B * H) ||
        (!tape && !tokens && !fused_input && !scratch_gates.allocate(order.n_packed * GH)) ||
        (projected && (!proj_panels.allocate(row_panel_count<T, NP>(P) * row_panel_size<T, NP>(1, H)) ||
                       !h_raw.allocate(B * H))))
        return FASTRNN_ERR_NOMEM;
    T *gates = tape ? (T *)a.gates : scratch_gates.data;
    const int nt = a.num_threads;

    // Input projection for every valid step at once.
    if (!tokens && !fused_input) {
        const T *x_rows = (const T *)a.x;
        Buffer<T> x_packed;
        if (order.ragged) {
            if (!x_packed.allocate(order.n_packed * I)) return FASTRNN_ERR_NOMEM;
            gather_rows(x_packed.data, x_rows, I, order, T_steps, B);
            x_rows = x_packed.data;
        }
        if (prepacked)
            panel_input_projection<T, Cell>(order.n_packed, H, I, x_rows, (const T *)a.packed_w_ih, nullptr, nullptr,
                                            gates, nt);
        else if (order.n_packed <= kRowDotMaxRows || gemv_steps)  // gemv steps: a streamed step gives the same bits
            row_dot_product(order.n_packed, GH, I, x_rows, I, (const T *)a.w_ih, I, gates, GH, nt);
        else if (panel_input)
            panel_input_projection<T, Cell>(order.n_packed, H, I, x_rows, nullptr, (const T *)a.w_ih, in_panels.data,
                                            gates, nt);
        else
            parallel_gemm(false, true, order.n_packed, GH, I, T(1), x_rows, I, (const T *)a.w_ih, I, T(0), gates, GH, nt);
    }

    if (!direct && !prepacked) pack_row_panels<T, U>(panels.data, (const T *)a.w_hh, G, H, P, nt);
    if (fused_input && !prepacked) pack_row_panels<T, U>(in_panels.data, (const T *)a.w_ih, G, H, I, nt);
    if (projected) pack_row_panels<T, NP>(proj_panels.data, (const T *)a.w_hr, 1, P, H, nt);
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
    __builtin_memcpy(h_state.data, a.h0, B * P * sizeof(T));
    if (Cell::has_cell_state) __builtin_memcpy(c_state.data, a.c0, B * H * sizeof(T));

    ForwardLoop<T, Cell> loop;
    loop.B = B; loop.H = H; loop.P = P; loop.GH = GH; loop.Hp = Hp; loop.ldy = a.ldy;
    loop.reverse = a.reverse != 0; loop.tape = tape; loop.projected = projected; loop.order = &order;
    loop.panels = prepacked ? (const T *)a.packed_w_hh : panels.data; loop.proj_panels = proj_panels.data;
    loop.w_hh = (const T *)a.w_hh; loop.hh = hh.data; loop.direct = direct; loop.gemv_steps = gemv_steps;
    loop.x = (const T *)a.x; loop.I = I; loop.fused_input = fused_input;
    loop.in_panels = prepacked ? (const T *)a.packed_w_ih : in_panels.data;
    loop.tokens = tokens; loop.token_table = (const T *)a.token_table;
    loop.bias_x = bias_x.data; loop.bias_hn = bias_hn.data;
    loop.gates = gates; loop.h_prev = (T *)a.h_prev; loop.aux = (T *)a.aux; loop.y = (T *)a.y;
    loop.c_state = c_state.data; loop.h_raw = h_raw.data;
    loop.h_state[0] = h_state.data; loop.h_state[1] = h_state.data + B * P;
    loop.run(T_steps, loop_threads(nt, B, GH, P));

    T *hn = (T *)a.hn;
    for (int64_t b = 0; b < B; ++b)  // row b last wrote h_state[lengths[b] & 1]
        __builtin_memcpy(hn + b * P, loop.h_state[order.lengths.data[b] & 1] + b * P, P * sizeof(T));
    if (Cell::has_cell_state) __builtin_memcpy(a.cn, c_state.data, B * H * sizeof(T));
    zero_padding((T *)a.y, a.ldy, P, order, T_steps, B);
    return FASTRNN_OK;
}
