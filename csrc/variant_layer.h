// The recurrent variants beyond torch.nn (issue 8), forward and backward side by side: layer-normalised
// LSTM/GRU, peephole LSTM, recurrent (variational) dropout, zoneout and the original GRU (reset before
// the matmul). Included inside kernels_isa.cpp's per-ISA namespace (after simd.h, blas.h, loop_support.h).
// The default layers never come here: they keep the fused loops of layer_forward.h / layer_backward.h.
//
// Equations (fastrnn._layer.VARIANTS_DOC has them in full; fastrnn.reference implements them in NumPy):
//   h' = h_{t-1} * m                      m: recurrent dropout mask (B, H), or 1
//   A_x = x_t W_ih^T,  A_h = h' W_rec^T   W_rec = W_hh, or its r and z rows for the original GRU
//   P_x = LN_0(A_x) + b_ih, P_h = LN_1(A_h) + b_hh   (LN_k over all G*H columns, or the identity)
//   LSTM: i = s(P_i + w_ci c), f = s(P_f + w_cf c), g = tanh(P_g), c~ = f c + i g, o = s(P_o + w_co c~),
//         h~ = o tanh(LN_c(c~))            (P_* = P_x + P_h of that gate; peephole terms optional)
//   GRU:  r = s(P_xr + P_hr), z = s(P_xz + P_hz), n = tanh(P_xn + r * P_hn)      (torch's, reset after)
//         n = tanh(P_xn + (r * h') W_hn^T + b_hn)                               (original, reset before)
//         h~ = (1 - z) n + z h_{t-1}
//   zoneout: h_t = k_h h_{t-1} + (1 - k_h) h~, c_t = k_c c_{t-1} + (1 - k_c) c~; k masks (T, B, H) or a constant.
//
// Work plan: A_x is one GEMM over all T*B rows before the loop. Each step: one product for A_h (a second
// one for the original GRU's (r * h') W_hn^T) over W_hh packed once per call (RecurrentProduct), then the
// elementwise part row by row; one OpenMP region for the whole loop, each thread owning a range of rows
// and a range of the product's items, steps separated by StepBarrier (loop_support.h).
// Backward runs the steps in reverse with the mirror-image GEMMs (dA_h W_rec) and leaves the weight
// gradients, dx and the vector-parameter gradients to GEMMs and column sums over all T*B rows after the
// loop. Each output element is computed by the same code in the same order whichever thread owns it:
// results are bit-identical for any thread count. Padded (t, b) rows of the tape and of every
// gradient buffer are zero, so the after-loop GEMMs can run over all T*B rows.
//
// Tape, one row of VariantLayout::width per (t, b) (fastrnn_variant_tape_width gives the width):
//   act (G*H)   activations (LSTM i, f, g, o; GRU r, z, n)
//   hd  (H)     h' (the input of the recurrent GEMM)
//   prev (H)    LSTM c_{t-1}; GRU h_{t-1}
//   e1  (H)     LSTM c~; GRU P_hn (torch's) or (r * h') W_hn^T + b_hn (original)
//   e2  (H)     LSTM tanh(LN_c(c~)); GRU r * h' (original only)
//   with layer_norm: xhat (G*H), hhat (G*H), chat (H) the normalised A_x, A_h, c~; rstd (4) their 1/std

constexpr double kLayerNormEps = 1e-5;

struct VariantLayout {
    int64_t act, hd, prev, e1, e2, xhat, hhat, chat, rstd, width;
    VariantLayout(int64_t H, int64_t G, bool layer_norm) {
        const int64_t GH = G * H;
        act = 0; hd = GH; prev = GH + H; e1 = GH + 2 * H; e2 = GH + 3 * H;
        xhat = GH + 4 * H; hhat = xhat + GH; chat = hhat + GH; rstd = chat + H;
        width = layer_norm ? rstd + 4 : GH + 4 * H;
    }
};

template <typename T> inline T hsum(vec_t<T> v) {
    T s = 0;
    for (int i = 0; i < Simd<T>::lanes; ++i) s += v[i];
    return s;
}

// IN a (n); OUT a_hat (n) = (a - mean) / sqrt(var + eps); returns 1 / sqrt(var + eps).
template <typename T> T normalize_row(const T *a, int64_t n, T *a_hat) {
    typedef vec_t<T> V;
    const int L = Simd<T>::lanes;
    V acc = {};
    for (int64_t j = 0; j < n; j += L) acc += load_n(a + j, (int)imin(L, n - j));
    const T mean = hsum<T>(acc) / T(n);
    V acc2 = {};
    for (int64_t j = 0; j < n; j += L) {
        const int nl = (int)imin(L, n - j);
        V d = load_n(a + j, nl) - mean;
        for (int i = nl; i < L; ++i) d[i] = 0;
        acc2 += d * d;
    }
    const T rstd = T(1) / __builtin_sqrt(hsum<T>(acc2) / T(n) + T(kLayerNormEps));
    for (int64_t j = 0; j < n; j += L) {
        const int nl = (int)imin(L, n - j);
        store_n(a_hat + j, (load_n(a + j, nl) - mean) * rstd, nl);
    }
    return rstd;
}

// LN's backward. IN d_out (n) gradient w.r.t. LN's output, gain (n), a_hat (n), rstd;
// OUT d_a (n) = rstd (d_hat - mean(d_hat) - a_hat mean(d_hat a_hat)), d_hat = d_out * gain.
template <typename T> void normalize_row_backward(const T *d_out, const T *gain, const T *a_hat, T rstd, int64_t n, T *d_a) {
    typedef vec_t<T> V;
    const int L = Simd<T>::lanes;
    V s1 = {}, s2 = {};
    for (int64_t j = 0; j < n; j += L) {
        const int nl = (int)imin(L, n - j);
        const V dh = load_n(d_out + j, nl) * load_n(gain + j, nl);
        s1 += dh;
        s2 += dh * load_n(a_hat + j, nl);
    }
    const T m1 = hsum<T>(s1) / T(n), m2 = hsum<T>(s2) / T(n);
    for (int64_t j = 0; j < n; j += L) {
        const int nl = (int)imin(L, n - j);
        const V dh = load_n(d_out + j, nl) * load_n(gain + j, nl);
        store_n(d_a + j, rstd * (dh - m1 - load_n(a_hat + j, nl) * m2), nl);
    }
}

// out[c] += sum over rows of a[r][c] (* b[r][c] when b is given), rows in order: a fixed order, so
// bit-identical for any thread count.
template <typename T>
void add_column_products(T *out, const T *a, int64_t lda, const T *b, int64_t ldb, int64_t rows, int64_t cols, int nt) {
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1 && rows * cols > 65536)
    for (int64_t c0 = 0; c0 < cols; c0 += 64) {
        const int64_t c1 = imin(cols, c0 + 64);
        T acc[64] = {};
        for (int64_t r = 0; r < rows; ++r) {
            if (b) for (int64_t c = c0; c < c1; ++c) acc[c - c0] += a[r * lda + c] * b[r * ldb + c];
            else for (int64_t c = c0; c < c1; ++c) acc[c - c0] += a[r * lda + c];
        }
        for (int64_t c = c0; c < c1; ++c) out[c] += acc[c - c0];
    }
}

// IN/OUT m (T*B, width): the rows (t, b) with t >= lengths[b] set to zero (none without lengths).
template <typename T> void zero_padded_rows(T *m, int64_t width, const int64_t *lengths, int64_t T_steps, int64_t B) {
    if (!lengths) return;
    for (int64_t b = 0; b < B; ++b)
        for (int64_t t = lengths[b]; t < T_steps; ++t)
            for (int64_t k = 0; k < width; ++k) m[(t * B + b) * width + k] = T(0);
}

// The per-step recurrent products, out (M, N) = a (M, K) W, with W packed once per call into the column
// panels of recurrent_gemm.h (cache-resident, no per-step packing as a BLAS call would do). Items are
// (block of rows) x (panel) and every output lane sums k in ascending order, whatever the thread:
// bit-identical for any thread count. Short sequences (T <= 2) call BLAS instead: packing would cost more.
constexpr int kVariantVectors = 4, kVariantRows = kAccumulators / kVariantVectors;

template <typename T> struct RecurrentProduct {
    Buffer<T> panels;
    const T *w = nullptr;  // the unpacked weight, for the BLAS path
    bool transposed = false, packed = false;
    int64_t K = 0, N = 0, n_panels = 0;

    // W = w^T with w (N, K) (forward: W_hh^T), or W = w with w (K, N) (backward: W_hh).
    bool prepare(const T *w_, int64_t K_, int64_t N_, bool transposed_, bool pack) {
        w = w_; K = K_; N = N_; transposed = transposed_; packed = pack;
        if (!pack) return true;
        n_panels = column_panel_count<T, kVariantVectors>(N);
        if (!panels.allocate(n_panels * column_panel_size<T, kVariantVectors>(K))) return false;
        if (transposed) pack_row_panels<T, kVariantVectors>(panels.data, w, 1, N, K);
        else pack_column_panels<T, kVariantVectors>(panels.data, w, K, N);
        return true;
    }

    // This thread's share (tid of nth) of the items; the caller puts a barrier after it. Unpacked, the
    // whole product is one BLAS call on thread 0 (the loop then runs on one thread: variant_loop_threads).
    void items(T *out, int64_t ldo, const T *a, int64_t lda, int64_t M, int tid, int nth) const {
        if (!packed) {
            if (tid == 0) gemm(false, transposed, M, N, K, T(1), a, lda, w, transposed ? K : N, T(0), out, ldo);
            return;
        }
        const int L = Simd<T>::lanes, R = kVariantRows, NV = kVariantVectors;
        const int64_t n_blocks = (M + R - 1) / R;
        int64_t begin, end;
        thread_range(n_blocks * n_panels, tid, nth, begin, end);  // panel-major: a thread keeps its slice of W
        for (int64_t i = begin; i < end; ++i) {
            const int64_t q = i / n_blocks, r0 = (i % n_blocks) * R;
            dispatch_rows<kVariantRows>(imin(R, M - r0), [&](auto rows_c) {
                constexpr int RR = decltype(rows_c)::value;
                const T *rows[RR];
                for (int r = 0; r < RR; ++r) rows[r] = a + (r0 + r) * lda;
                vec_t<T> acc[RR][kVariantVectors];
                panel_product<T, RR, kVariantVectors>(rows, K, panels.data + q * column_panel_size<T, kVariantVectors>(K), acc);
                for (int u = 0; u < NV; ++u) {
                    const int64_t j = (q * NV + u) * L;
                    if (j >= N) break;
                    for (int r = 0; r < RR; ++r) store_n(out + (r0 + r) * ldo + j, acc[r][u], (int)imin(L, N - j));
                }
            });
        }
    }
};

// What forward and backward share: sizes, options, parameters, masks.
template <typename T> struct VariantCommon {
    typedef vec_t<T> V;
    int64_t T_steps, B, I, H, G, GH, GR;  // GR: columns of the recurrent GEMM (G*H, or 2H for the original GRU)
    bool lstm, layer_norm, peephole, reset_before, zone, tape_mode, reverse;
    VariantLayout lay;
    const int64_t *lengths;
    const T *ln_w, *ln_b, *lnc_w, *lnc_b, *w_ci, *w_cf, *w_co, *rd, *zh, *zc;
    T zconst;
    T *tape, *scratch_rows;
    Buffer<T> bias_x, bias_h, bias_hn;  // (G*H), (GR), (H): zero where there is no bias
    int nt;

    VariantCommon(const fastrnn_variant_args &a)
        : lay(a.hidden_size, a.cell == FASTRNN_LSTM ? 4 : 3, a.layer_norm != 0) {
        T_steps = a.steps; B = a.batch; I = a.input_size; H = a.hidden_size;
        lstm = a.cell == FASTRNN_LSTM;
        G = lstm ? 4 : 3; GH = G * H;
        layer_norm = a.layer_norm != 0; peephole = lstm && a.peephole != 0;
        reset_before = !lstm && a.reset_after == 0;
        GR = reset_before ? 2 * H : GH;
        reverse = a.reverse != 0;
        lengths = a.lengths;
        ln_w = (const T *)a.ln_gates_weight; ln_b = (const T *)a.ln_gates_bias;
        lnc_w = (const T *)a.ln_cell_weight; lnc_b = (const T *)a.ln_cell_bias;
        w_ci = (const T *)a.w_ci; w_cf = (const T *)a.w_cf; w_co = (const T *)a.w_co;
        rd = (const T *)a.rd_mask; zh = (const T *)a.zoneout_h; zc = (const T *)a.zoneout_c;
        zconst = (T)a.zoneout;
        zone = zh != nullptr || a.zoneout > 0;
        tape = (T *)a.tape; tape_mode = tape != nullptr;
        scratch_rows = nullptr;
        nt = a.num_threads;
    }

    bool allocate_biases(const fastrnn_variant_args &a) {
        if (!bias_x.allocate(GH) || !bias_h.allocate(GR) || !bias_hn.allocate(H)) return false;
        const T *b_ih = (const T *)a.b_ih, *b_hh = (const T *)a.b_hh;
        for (int64_t k = 0; k < GH; ++k) bias_x.data[k] = b_ih ? b_ih[k] : T(0);
        for (int64_t k = 0; k < GR; ++k) bias_h.data[k] = b_hh ? b_hh[k] : T(0);
        for (int64_t k = 0; k < H; ++k) bias_hn.data[k] = b_hh ? b_hh[2 * H + k] : T(0);
        return true;
    }

    int64_t length(int64_t b) const { return lengths ? lengths[b] : T_steps; }
    int64_t time_of(int64_t s, int64_t b) const { return reverse ? length(b) - 1 - s : s; }
    T *row_of(int64_t t, int64_t b) const { return tape_mode ? tape + (t * B + b) * lay.width : scratch_rows + b * lay.width; }
    // zoneout keep factors of row (t, b), units j..j+nl (zero when there is no zoneout)
    V keep_h(int64_t t, int64_t b, int64_t j, int nl) const {
        return zh ? load_n(zh + (t * B + b) * H + j, nl) : splat<T>(zone ? zconst : T(0));
    }
    V keep_c(int64_t t, int64_t b, int64_t j, int nl) const {
        return zc ? load_n(zc + (t * B + b) * H + j, nl) : splat<T>(zone ? zconst : T(0));
    }
};

// ------------------------------------------------------------------------------------------- forward
template <typename T> struct VariantForward : VariantCommon<T> {
    typedef vec_t<T> V;
    using VariantCommon<T>::VariantCommon;
    const T *ax;                                  // (T*B, G*H): x W_ih^T
    T *h, *c, *hd_step, *ah_step, *rhd_step, *ahn_step, *y;  // (B,H) (B,H) (B,H) (B,GR) (B,H) (B,H); y (T,B,ldy)
    int64_t ldy;

    // Up to the GEMM that needs r (original GRU) or the whole step (all others).
    void phase_a(int64_t t, int64_t b) const {
        const int L = Simd<T>::lanes;
        const int64_t H = this->H, GH = this->GH, GR = this->GR;
        const VariantLayout &lay = this->lay;
        T *row = this->row_of(t, b);
        T *px = row + lay.act, *ph = ah_step + b * GR;
        const T *a_x = ax + (t * this->B + b) * GH;
        __builtin_memcpy(row + lay.hd, hd_step + b * H, H * sizeof(T));
        __builtin_memcpy(row + lay.prev, (this->lstm ? c : h) + b * H, H * sizeof(T));
        if (this->layer_norm) {  // P = gain * a_hat + beta + bias, input and recurrent side each
            row[lay.rstd] = normalize_row(a_x, GH, row + lay.xhat);
            row[lay.rstd + 1] = normalize_row(ph, GR, row + lay.hhat);
            for (int64_t k = 0; k < GH; ++k) px[k] = this->ln_w[k] * row[lay.xhat + k] + this->ln_b[k] + this->bias_x.data[k];
            for (int64_t k = 0; k < GR; ++k)
                ph[k] = this->ln_w[GH + k] * row[lay.hhat + k] + this->ln_b[GH + k] + this->bias_h.data[k];
        } else {
            for (int64_t k = 0; k < GH; ++k) px[k] = a_x[k] + this->bias_x.data[k];
            for (int64_t k = 0; k < GR; ++k) ph[k] += this->bias_h.data[k];
        }
        if (this->lstm) {
            for (int64_t j = 0; j < H; j += L) {
                const int nl = (int)imin(L, H - j);
                const V cp = load_n(row + lay.prev + j, nl);
                V pi = load_n(px + j, nl) + load_n(ph + j, nl), pf = load_n(px + H + j, nl) + load_n(ph + H + j, nl);
                V pg = load_n(px + 2 * H + j, nl) + load_n(ph + 2 * H + j, nl);
                V po = load_n(px + 3 * H + j, nl) + load_n(ph + 3 * H + j, nl);
                if (this->peephole) { pi += load_n(this->w_ci + j, nl) * cp; pf += load_n(this->w_cf + j, nl) * cp; }
                const V i = vsigmoid(pi), f = vsigmoid(pf), g = vtanh(pg);
                const V cc = f * cp + i * g;
                if (this->peephole) po += load_n(this->w_co + j, nl) * cc;
                const V o = vsigmoid(po);
                store_n(row + j, i, nl); store_n(row + H + j, f, nl); store_n(row + 2 * H + j, g, nl);
                store_n(row + 3 * H + j, o, nl); store_n(row + lay.e1 + j, cc, nl);
            }
            if (this->layer_norm) row[lay.rstd + 2] = normalize_row(row + lay.e1, H, row + lay.chat);
            for (int64_t j = 0; j < H; j += L) {
                const int nl = (int)imin(L, H - j);
                const V cc = load_n(row + lay.e1 + j, nl);
                const V cn = this->layer_norm ? load_n(this->lnc_w + j, nl) * load_n(row + lay.chat + j, nl) +
                                                    load_n(this->lnc_b + j, nl)
                                              : cc;
                const V tc = vtanh(cn);
                store_n(row + lay.e2 + j, tc, nl);
                V h_new = load_n(row + 3 * H + j, nl) * tc, c_new = cc;
                if (this->zone) {
                    const V kh = this->keep_h(t, b, j, nl), kc = this->keep_c(t, b, j, nl);
                    h_new = kh * load_n(h + b * H + j, nl) + (1 - kh) * h_new;
                    c_new = kc * load_n(row + lay.prev + j, nl) + (1 - kc) * cc;
                }
                emit(t, b, j, nl, h_new);
                store_n(c + b * H + j, c_new, nl);
            }
            return;
        }
        for (int64_t j = 0; j < H; j += L) {  // GRU
            const int nl = (int)imin(L, H - j);
            const V r = vsigmoid(load_n(px + j, nl) + load_n(ph + j, nl));
            const V z = vsigmoid(load_n(px + H + j, nl) + load_n(ph + H + j, nl));
            store_n(row + j, r, nl); store_n(row + H + j, z, nl);
            if (this->reset_before) {
                const V rhd = r * load_n(row + lay.hd + j, nl);
                store_n(rhd_step + b * H + j, rhd, nl);
                store_n(row + lay.e2 + j, rhd, nl);
                continue;
            }
            const V hn = load_n(ph + 2 * H + j, nl);
            const V n = vtanh(load_n(px + 2 * H + j, nl) + r * hn);
            store_n(row + 2 * H + j, n, nl);
            store_n(row + lay.e1 + j, hn, nl);
            gru_output(t, b, j, nl, z, n);
        }
    }

    // The original GRU, after ahn_step = (r * h') W_hn^T.
    void phase_b(int64_t t, int64_t b) const {
        const int L = Simd<T>::lanes;
        const int64_t H = this->H;
        const VariantLayout &lay = this->lay;
        T *row = this->row_of(t, b);
        for (int64_t j = 0; j < H; j += L) {
            const int nl = (int)imin(L, H - j);
            const V hn = load_n(ahn_step + b * H + j, nl) + load_n(this->bias_hn.data + j, nl);
            const V n = vtanh(load_n(row + 2 * H + j, nl) + hn);  // act's n slot still holds P_xn
            store_n(row + 2 * H + j, n, nl);
            store_n(row + lay.e1 + j, hn, nl);
            gru_output(t, b, j, nl, load_n(row + H + j, nl), n);
        }
    }

    void gru_output(int64_t t, int64_t b, int64_t j, int nl, V z, V n) const {
        const V hp = load_n(row_prev(t, b) + j, nl);
        V h_new = n + z * (hp - n);
        if (this->zone) {
            const V kh = this->keep_h(t, b, j, nl);
            h_new = kh * hp + (1 - kh) * h_new;
        }
        emit(t, b, j, nl, h_new);
    }
    const T *row_prev(int64_t t, int64_t b) const { return this->row_of(t, b) + this->lay.prev; }

    void emit(int64_t t, int64_t b, int64_t j, int nl, V h_new) const {
        store_n(h + b * this->H + j, h_new, nl);
        store_n(y + (t * this->B + b) * ldy + j, h_new, nl);
    }

    void set_hd(int64_t b) const {  // h' of row b for the next product
        const int64_t H = this->H;
        for (int64_t j = 0; j < H; ++j) hd_step[b * H + j] = this->rd ? h[b * H + j] * this->rd[b * H + j] : h[b * H + j];
    }

    // rec: h' W_rec^T; rec_n: (r * h') W_hn^T (original GRU). One parallel region for the whole sequence,
    // steps separated by StepBarrier (loop_support.h); each thread owns a fixed range of rows.
    void run(const RecurrentProduct<T> &rec, const RecurrentProduct<T> &rec_n, int num_threads) {
        const int64_t B = this->B, H = this->H, GR = this->GR;
        for (int64_t b = 0; b < B; ++b) set_hd(b);
        step_region(num_threads, [&](int tid, int nth, StepBarrier &barrier) {
            int64_t b0, b1;
            thread_range(B, tid, nth, b0, b1);
            for (int64_t s = 0; s < this->T_steps; ++s) {
                rec.items(ah_step, GR, hd_step, H, B, tid, nth);
                barrier.wait();
                for (int64_t b = b0; b < b1; ++b)
                    if (s < this->length(b)) phase_a(this->time_of(s, b), b);
                if (this->reset_before) {
                    barrier.wait();
                    rec_n.items(ahn_step, H, rhd_step, H, B, tid, nth);
                    barrier.wait();
                    for (int64_t b = b0; b < b1; ++b)
                        if (s < this->length(b)) phase_b(this->time_of(s, b), b);
                }
                for (int64_t b = b0; b < b1; ++b) set_hd(b);
                barrier.wait();
            }
        });
    }
};

// Threads for a time loop: one when the products are BLAS calls (short sequences) or a step is too
// small to share (loop_threads); results do not depend on it.
inline int variant_loop_threads(int requested, bool packed, int64_t batch, int64_t gate_cols, int64_t hidden) {
    return packed ? loop_threads(requested, batch, gate_cols, hidden) : 1;
}

template <typename T> int variant_forward(const fastrnn_variant_args &a) {
    VariantForward<T> f(a);
    const int64_t T_steps = a.steps, B = a.batch, I = a.input_size, H = a.hidden_size, GH = f.GH, GR = f.GR;
    Buffer<T> ax, h, c, hd_step, ah_step, rhd_step, ahn_step, scratch_rows;
    if (!f.allocate_biases(a) || !ax.allocate(T_steps * B * GH) || !h.allocate(B * H) || !c.allocate(B * H) ||
        !hd_step.allocate(B * H) || !ah_step.allocate(B * GR) || !rhd_step.allocate(B * H) || !ahn_step.allocate(B * H) ||
        (!f.tape_mode && !scratch_rows.allocate(B * f.lay.width)))
        return FASTRNN_ERR_NOMEM;
    f.scratch_rows = scratch_rows.data;
    for (int64_t k = 0; k < B * H; ++k) rhd_step.data[k] = T(0);
    if (f.tape_mode) zero_padded_rows(f.tape, f.lay.width, a.lengths, T_steps, B);  // they take part in backward's GEMMs
    parallel_gemm(false, true, T_steps * B, GH, I, T(1), (const T *)a.x, I, (const T *)a.w_ih, I, T(0), ax.data, GH, a.num_threads);
    __builtin_memcpy(h.data, a.h0, B * H * sizeof(T));
    if (f.lstm) __builtin_memcpy(c.data, a.c0, B * H * sizeof(T));
    f.ax = ax.data; f.h = h.data; f.c = c.data; f.hd_step = hd_step.data; f.ah_step = ah_step.data;
    f.rhd_step = rhd_step.data; f.ahn_step = ahn_step.data; f.y = (T *)a.y; f.ldy = a.ldy;
    const T *w_hh = (const T *)a.w_hh;
    const bool pack = T_steps > 2;
    RecurrentProduct<T> rec, rec_n;
    if (!rec.prepare(w_hh, H, GR, true, pack) || (f.reset_before && !rec_n.prepare(w_hh + 2 * H * H, H, H, true, pack)))
        return FASTRNN_ERR_NOMEM;
    f.run(rec, rec_n, variant_loop_threads(a.num_threads, pack, B, GR, H));
    __builtin_memcpy(a.hn, h.data, B * H * sizeof(T));
    if (f.lstm) __builtin_memcpy(a.cn, c.data, B * H * sizeof(T));
    T *y = (T *)a.y;
    for (int64_t b = 0; b < B; ++b)
        for (int64_t t = f.length(b); t < T_steps; ++t)
            for (int64_t k = 0; k < H; ++k) y[(t * B + b) * a.ldy + k] = T(0);
    return FASTRNN_OK;
}

// ------------------------------------------------------------------------------------------ backward
template <typename T> struct VariantBackward : VariantCommon<T> {
    typedef vec_t<T> V;
    using VariantCommon<T>::VariantCommon;
    const T *dy, *w_hh;
    int64_t ldy;
    // (T*B, .) gradient buffers, zero on padded rows: d_px/d_ph w.r.t. P_x, P_h; d_ax/d_ah w.r.t. A_x, A_h
    // (the same arrays as d_px/d_ph without layer_norm); d_cn w.r.t. LN_c's output (LSTM with layer_norm)
    T *d_px, *d_ph, *d_ax, *d_ah, *d_cn;
    T *dh_carry, *dc_carry, *dh_step, *dc_ln, *dah_step, *dahn_step, *drhd_step, *dhd_step;  // (B, .) each
    bool contiguous_steps;  // no lengths: every row of a step has the same time index

    void phase_1(int64_t t, int64_t b) const {
        const int L = Simd<T>::lanes;
        const int64_t H = this->H, GH = this->GH, GR = this->GR, B = this->B;
        const VariantLayout &lay = this->lay;
        const T *row = this->row_of(t, b);
        const int64_t r_ = t * B + b;
        T *px = d_px + r_ * GH, *ph = d_ph + r_ * GR, *dh = dh_step + b * H;
        for (int64_t j = 0; j < H; ++j) dh[j] = dh_carry[b * H + j] + dy[r_ * ldy + j];
        if (this->lstm) {
            if (this->layer_norm) {
                T *dcn = d_cn + r_ * H;
                for (int64_t j = 0; j < H; j += L) {
                    const int nl = (int)imin(L, H - j);
                    const V dhc = load_n(dh + j, nl) * (1 - this->keep_h(t, b, j, nl));
                    const V tc = load_n(row + lay.e2 + j, nl);
                    store_n(dcn + j, dhc * load_n(row + 3 * H + j, nl) * (1 - tc * tc), nl);
                }
                normalize_row_backward(dcn, this->lnc_w, row + lay.chat, row[lay.rstd + 2], H, dc_ln + b * H);
            }
            for (int64_t j = 0; j < H; j += L) {
                const int nl = (int)imin(L, H - j);
                const V dhv = load_n(dh + j, nl), kh = this->keep_h(t, b, j, nl), kc = this->keep_c(t, b, j, nl);
                const V dhc = dhv * (1 - kh), dc = load_n(dc_carry + b * H + j, nl);
                const V i = load_n(row + j, nl), f = load_n(row + H + j, nl), g = load_n(row + 2 * H + j, nl);
                const V o = load_n(row + 3 * H + j, nl), tc = load_n(row + lay.e2 + j, nl);
                const V cp = load_n(row + lay.prev + j, nl);
                V dcc = dc * (1 - kc) + (this->layer_norm ? load_n(dc_ln + b * H + j, nl) : dhc * o * (1 - tc * tc));
                const V da_o = dhc * tc * o * (1 - o);
                if (this->peephole) dcc += da_o * load_n(this->w_co + j, nl);
                const V da_i = dcc * g * i * (1 - i), da_f = dcc * cp * f * (1 - f), da_g = dcc * i * (1 - g * g);
                V dcp = dc * kc + dcc * f;
                if (this->peephole) dcp += da_i * load_n(this->w_ci + j, nl) + da_f * load_n(this->w_cf + j, nl);
                store_n(px + j, da_i, nl); store_n(px + H + j, da_f, nl);
                store_n(px + 2 * H + j, da_g, nl); store_n(px + 3 * H + j, da_o, nl);
                store_n(dc_carry + b * H + j, dcp, nl);
                store_n(dh_carry + b * H + j, dhv * kh, nl);
            }
            // (the LSTM's recurrent-side gradient is the same array: d_ph == d_px)
        } else {
            for (int64_t j = 0; j < H; j += L) {
                const int nl = (int)imin(L, H - j);
                const V dhv = load_n(dh + j, nl), kh = this->keep_h(t, b, j, nl), dhc = dhv * (1 - kh);
                const V r = load_n(row + j, nl), z = load_n(row + H + j, nl), n = load_n(row + 2 * H + j, nl);
                const V hp = load_n(row + lay.prev + j, nl), hn = load_n(row + lay.e1 + j, nl);
                const V da_n = dhc * (1 - z) * (1 - n * n), da_z = dhc * (hp - n) * z * (1 - z);
                store_n(px + H + j, da_z, nl); store_n(px + 2 * H + j, da_n, nl);
                store_n(ph + H + j, da_z, nl);
                store_n(dh_carry + b * H + j, dhv * kh + dhc * z, nl);
                if (this->reset_before) {
                    store_n(dahn_step + b * H + j, da_n, nl);
                } else {
                    const V da_r = da_n * hn * r * (1 - r);
                    store_n(px + j, da_r, nl); store_n(ph + j, da_r, nl); store_n(ph + 2 * H + j, da_n * r, nl);
                }
            }
        }
        if (this->reset_before) return;  // r's gradient needs (dA_hn W_hn): phase_1b
        if (this->layer_norm) {
            normalize_row_backward(px, this->ln_w, row + lay.xhat, row[lay.rstd], GH, d_ax + r_ * GH);
            normalize_row_backward(ph, this->ln_w + GH, row + lay.hhat, row[lay.rstd + 1], GR, d_ah + r_ * GR);
        }
        if (!contiguous_steps) __builtin_memcpy(dah_step + b * GR, d_ah + r_ * GR, GR * sizeof(T));
    }

    // The original GRU, after drhd_step = dA_hn W_hn: r's gradient and the path through r * h'.
    void phase_1b(int64_t t, int64_t b) const {
        const int L = Simd<T>::lanes;
        const int64_t H = this->H, GH = this->GH, GR = this->GR;
        const T *row = this->row_of(t, b);
        const int64_t r_ = t * this->B + b;
        T *px = d_px + r_ * GH, *ph = d_ph + r_ * GR;
        for (int64_t j = 0; j < H; j += L) {
            const int nl = (int)imin(L, H - j);
            const V drhd = load_n(drhd_step + b * H + j, nl), r = load_n(row + j, nl);
            const V da_r = drhd * load_n(row + this->lay.hd + j, nl) * r * (1 - r);
            store_n(px + j, da_r, nl); store_n(ph + j, da_r, nl);
            V d_hd = drhd * r;
            if (this->rd) d_hd *= load_n(this->rd + b * H + j, nl);
            store_n(dh_carry + b * H + j, load_n(dh_carry + b * H + j, nl) + d_hd, nl);
        }
        if (!contiguous_steps) __builtin_memcpy(dah_step + b * GR, ph, GR * sizeof(T));
    }

    // rec: dA_h W_rec; rec_n: dA_hn W_hn (original GRU). One parallel region, as forward's run.
    void run(const RecurrentProduct<T> &rec, const RecurrentProduct<T> &rec_n, int num_threads) {
        const int64_t B = this->B, H = this->H, GR = this->GR;
        step_region(num_threads, [&](int tid, int nth, StepBarrier &barrier) {
            int64_t b0, b1;
            thread_range(B, tid, nth, b0, b1);
            for (int64_t s = this->T_steps - 1; s >= 0; --s) {
                for (int64_t b = b0; b < b1; ++b)
                    if (s < this->length(b)) phase_1(this->time_of(s, b), b);
                barrier.wait();
                if (this->reset_before) {
                    rec_n.items(drhd_step, H, dahn_step, H, B, tid, nth);
                    barrier.wait();
                    for (int64_t b = b0; b < b1; ++b)
                        if (s < this->length(b)) phase_1b(this->time_of(s, b), b);
                    barrier.wait();
                }
                // without lengths, step s's rows of d_ah are the B consecutive rows of one time: read them in place
                const T *dah = contiguous_steps ? d_ah + this->time_of(s, 0) * B * GR : dah_step;
                rec.items(dhd_step, H, dah, GR, B, tid, nth);
                barrier.wait();
                for (int64_t b = b0; b < b1; ++b) {  // the same rows as this thread's phase_1: no barrier before it
                    if (s >= this->length(b)) continue;
                    for (int64_t j = 0; j < H; ++j)
                        dh_carry[b * H + j] += this->rd ? dhd_step[b * H + j] * this->rd[b * H + j] : dhd_step[b * H + j];
                }
            }
        });
    }
};

template <typename T> int variant_backward(const fastrnn_variant_args &a) {
    VariantBackward<T> k(a);
    const int64_t T_steps = a.steps, B = a.batch, I = a.input_size, H = a.hidden_size, GH = k.GH, GR = k.GR;
    const int64_t rows = T_steps * B, W = k.lay.width;
    const int nt = a.num_threads;
    Buffer<T> d_px, d_ph, d_ax, d_ah, d_cn, dh_carry, dc_carry, dh_step, dc_ln, dah_step, dahn_step, drhd_step, dhd_step;
    const bool ln = k.layer_norm;
    if (!k.allocate_biases(a) || !d_px.allocate(rows * GH) || (!k.lstm && !d_ph.allocate(rows * GR)) ||
        (ln && (!d_ax.allocate(rows * GH) || !d_ah.allocate(rows * GR) || !d_cn.allocate(rows * H))) ||
        !dh_carry.allocate(B * H) || !dc_carry.allocate(B * H) || !dh_step.allocate(B * H) || !dc_ln.allocate(B * H) ||
        !dah_step.allocate(B * GR) || !dahn_step.allocate(B * H) || !drhd_step.allocate(B * H) || !dhd_step.allocate(B * H))
        return FASTRNN_ERR_NOMEM;
    // padded rows must read as zero in the after-loop GEMMs (the loop writes every column of each valid row)
    zero_padded_rows(d_px.data, GH, a.lengths, T_steps, B);
    if (!k.lstm) zero_padded_rows(d_ph.data, GR, a.lengths, T_steps, B);
    if (ln) {
        zero_padded_rows(d_ax.data, GH, a.lengths, T_steps, B);
        zero_padded_rows(d_ah.data, GR, a.lengths, T_steps, B);
        zero_padded_rows(d_cn.data, H, a.lengths, T_steps, B);
    }
    for (int64_t q = 0; q < B * GR; ++q) dah_step.data[q] = T(0);  // rows not yet started contribute nothing
    for (int64_t q = 0; q < B * H; ++q) dahn_step.data[q] = T(0);
    __builtin_memcpy(dh_carry.data, a.dhn, B * H * sizeof(T));
    if (k.lstm) __builtin_memcpy(dc_carry.data, a.dcn, B * H * sizeof(T));
    k.dy = (const T *)a.dy; k.ldy = a.ldy; k.w_hh = (const T *)a.w_hh;
    k.d_px = d_px.data; k.d_ph = k.lstm ? d_px.data : d_ph.data;  // LSTM: dP_h = dP_x (both are dP)
    k.d_ax = ln ? d_ax.data : k.d_px; k.d_ah = ln ? d_ah.data : k.d_ph;
    k.contiguous_steps = a.lengths == nullptr;
    k.d_cn = d_cn.data; k.dh_carry = dh_carry.data; k.dc_carry = dc_carry.data; k.dh_step = dh_step.data;
    k.dc_ln = dc_ln.data; k.dah_step = dah_step.data; k.dahn_step = dahn_step.data; k.drhd_step = drhd_step.data;
    k.dhd_step = dhd_step.data;
    const bool pack = T_steps > 2;
    RecurrentProduct<T> rec, rec_n;
    if (!rec.prepare(k.w_hh, GR, H, false, pack) || (k.reset_before && !rec_n.prepare(k.w_hh + 2 * H * H, H, H, false, pack)))
        return FASTRNN_ERR_NOMEM;
    k.run(rec, rec_n, variant_loop_threads(nt, pack, B, GR, H));
    __builtin_memcpy(a.dh0, dh_carry.data, B * H * sizeof(T));
    if (k.lstm) __builtin_memcpy(a.dc0, dc_carry.data, B * H * sizeof(T));

    // Everything that does not depend on the recurrence: one GEMM or column sum over all T*B rows.
    const T *tape = k.tape, *x = (const T *)a.x, *w_ih = (const T *)a.w_ih;
    const VariantLayout &lay = k.lay;
    parallel_gemm(true, false, GH, I, rows, T(1), k.d_ax, GH, x, I, T(1), (T *)a.dw_ih, I, nt);
    parallel_gemm(false, false, rows, I, GH, T(1), k.d_ax, GH, w_ih, I, a.accumulate_dx ? T(1) : T(0), (T *)a.dx, I, nt);
    parallel_gemm(true, false, GR, H, rows, T(1), k.d_ah, GR, tape + lay.hd, W, T(1), (T *)a.dw_hh, H, nt);
    if (k.reset_before)  // W_hn acts on r * h'; its gradient is dA_hn = the input side's n column
        parallel_gemm(true, false, H, H, rows, T(1), d_px.data + 2 * H, GH, tape + lay.e2, W, T(1),
                      (T *)a.dw_hh + 2 * H * H, H, nt);
    if (a.db_ih) add_column_products((T *)a.db_ih, d_px.data, GH, (const T *)nullptr, 0, rows, GH, nt);
    if (a.db_hh) {
        add_column_products((T *)a.db_hh, k.d_ph, GR, (const T *)nullptr, 0, rows, GR, nt);
        if (k.reset_before) add_column_products((T *)a.db_hh + 2 * H, d_px.data + 2 * H, GH, (const T *)nullptr, 0, rows, H, nt);
    }
    if (ln) {
        T *dg = (T *)a.dln_gates_weight, *dbeta = (T *)a.dln_gates_bias;
        add_column_products(dg, d_px.data, GH, tape + lay.xhat, W, rows, GH, nt);
        add_column_products(dbeta, d_px.data, GH, (const T *)nullptr, 0, rows, GH, nt);
        add_column_products(dg + GH, k.d_ph, GR, tape + lay.hhat, W, rows, GR, nt);
        add_column_products(dbeta + GH, k.d_ph, GR, (const T *)nullptr, 0, rows, GR, nt);
        if (k.lstm) {
            add_column_products((T *)a.dln_cell_weight, d_cn.data, H, tape + lay.chat, W, rows, H, nt);
            add_column_products((T *)a.dln_cell_bias, d_cn.data, H, (const T *)nullptr, 0, rows, H, nt);
        }
    }
    if (k.peephole) {
        add_column_products((T *)a.dw_ci, d_px.data, GH, tape + lay.prev, W, rows, H, nt);
        add_column_products((T *)a.dw_cf, d_px.data + H, GH, tape + lay.prev, W, rows, H, nt);
        add_column_products((T *)a.dw_co, d_px.data + 3 * H, GH, tape + lay.e1, W, rows, H, nt);
    }
    return FASTRNN_OK;
}
