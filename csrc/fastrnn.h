/* fastrnn's C ABI: one layer, one direction, the whole sequence, forward and backward (BPTT).
 *
 * Gate layout (torch's): weights stack the gates in rows, G = 1 (RNN), 4 (LSTM: i, f, g, o),
 * 3 (GRU: r, z, n). Shapes below use T steps, B batch rows, I input features, H hidden units, P the state
 * size (P = proj_size for an LSTM with a projection, h_t = W_hr (o * tanh c_t); otherwise P = H).
 * All arrays are C-contiguous unless a leading dimension (ld*) is given. Nothing here is checked:
 * the Python layer validates every argument before calling. No argument may alias another, except
 * that the tape written by forward is read (and overwritten) by backward.
 *
 * Variable lengths: lengths[b] in 1..T, or lengths == NULL for all T. Row b is processed at steps
 * s = 0..lengths[b]-1, at time s (forward direction) or lengths[b]-1-s (reverse direction).
 *
 * Returns FASTRNN_OK, or a status the caller turns into an exception.
 */
#ifndef FASTRNN_H
#define FASTRNN_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum fastrnn_cell { FASTRNN_RNN_TANH = 0, FASTRNN_RNN_RELU = 1, FASTRNN_LSTM = 2, FASTRNN_GRU = 3 };
enum fastrnn_dtype { FASTRNN_FLOAT32 = 0, FASTRNN_FLOAT64 = 1 };
enum fastrnn_status { FASTRNN_OK = 0, FASTRNN_ERR_NOMEM = 1, FASTRNN_ERR_ARGUMENT = 2 };

typedef struct {
    int cell;               /* enum fastrnn_cell */
    int dtype;              /* enum fastrnn_dtype: every array below holds this type */
    int64_t steps, batch, input_size, hidden_size;
    int64_t proj_size;      /* 0: none; LSTM only */
    int reverse;            /* 1: the reverse direction of a bidirectional layer */
    const int64_t *lengths; /* IN (B) or NULL */
    const void *x;          /* IN (T, B, I) */
    const void *h0;         /* IN (B, P) */
    const void *c0;         /* IN (B, H), LSTM only */
    const void *w_ih;       /* IN (G*H, I) */
    const void *w_hh;       /* IN (G*H, P) */
    const void *w_hr;       /* IN (P, H) when proj_size > 0, else unused */
    const void *b_ih;       /* IN (G*H) or NULL */
    const void *b_hh;       /* IN (G*H) or NULL */
    void *y;                /* OUT (T, B, ldy): columns 0..P-1 of each row; zero past each length */
    int64_t ldy;
    void *hn;               /* OUT (B, P): state after each row's last step */
    void *cn;               /* OUT (B, H), LSTM only */
    /* The tape for backward; gates == NULL means inference (no tape is written). Zero past each length.
     * gates:  (T, B, G*H) the gate activations (RNN: h_t itself)
     * h_prev: (T, B, P)   the state each step read
     * aux:    LSTM (T, B, 2H) [c_{t-1}, tanh(c_t)]; GRU (T, B, H) W_hn h_{t-1} + b_hn; RNN unused */
    void *gates, *h_prev, *aux;
    int num_threads;
    /* Token input (an embedding feeding the first layer, DESIGN.md section 4): when tokens != NULL, step t
     * of row b reads the input projection W_ih x_t from row tokens[t, b] of token_table instead of
     * multiplying x by W_ih, and x and w_ih are not read. tokens (T, B) in 0..V-1 (read only within
     * lengths); token_table (V, G*H) = embedding W_ih^T, made by the caller (a V x E x G*H product, far
     * smaller than the T*B x I x G*H one it replaces). input_size is then the embedding size E. */
    const int64_t *tokens;
    const void *token_table;
    /* Weights packed beforehand by fastrnn_pack_weight (an inference snapshot, fastrnn.freeze): W_ih with
     * k = I and W_hh with k = P, both or neither (NULL: packed on each call). They must hold exactly w_ih's
     * and w_hh's values. With them every product runs on the packed panels (no GEMM beforehand, no
     * matrix-vector path), so results do not depend on T. Not with tokens. */
    const void *packed_w_ih, *packed_w_hh;
} fastrnn_forward_args;

typedef struct {
    int cell, dtype;
    int64_t steps, batch, input_size, hidden_size, proj_size;
    int reverse;
    const int64_t *lengths; /* IN (B) or NULL: as in forward */
    const void *x;          /* IN (T, B, I): forward's input, zero past each length */
    const void *w_ih;       /* IN (G*H, I) */
    const void *w_hh;       /* IN (G*H, P) */
    const void *w_hr;       /* IN (P, H) when proj_size > 0 */
    const void *dy;         /* IN (T, B, ldy): gradient of the loss w.r.t. y; read only within lengths */
    int64_t ldy;
    const void *dhn;        /* IN (B, P) */
    const void *dcn;        /* IN (B, H), LSTM only */
    void *gates, *h_prev, *aux; /* IN forward's tape; gates and aux are overwritten with gate gradients */
    void *dx;               /* OUT (T, B, I): overwritten, or added into when accumulate_dx; NULL: not wanted */
    int accumulate_dx;
    void *dh0;              /* OUT (B, P) */
    void *dc0;              /* OUT (B, H), LSTM only */
    void *dw_ih, *dw_hh;    /* ADDED INTO (G*H, I), (G*H, P) */
    void *dw_hr;            /* ADDED INTO (P, H) when proj_size > 0 */
    void *db_ih, *db_hh;    /* ADDED INTO (G*H) each, or NULL */
    int num_threads;
    /* Token input (as in forward): when tokens != NULL, x, w_ih, dx and dw_ih are not used; instead each
     * valid row's gradient w.r.t. its input projection is ADDED INTO row tokens[t, b] of d_table (V, G*H),
     * rows in a fixed order. The caller forms dw_ih += d_table^T embedding and d_embedding += d_table w_ih. */
    const int64_t *tokens;
    void *d_table;
} fastrnn_backward_args;

int fastrnn_forward(const fastrnn_forward_args *args);
int fastrnn_backward(const fastrnn_backward_args *args);

/* A (G*H, k) weight matrix of this cell in the forward kernels' packed layout (for packed_w_ih / packed_w_hh):
 * its size in elements, and the packing. The layout belongs to the ISA build this process runs. */
int64_t fastrnn_packed_weight_size(int cell, int dtype, int64_t hidden_size, int64_t k);
int fastrnn_pack_weight(int cell, int dtype, int64_t hidden_size, int64_t k, const void *w, void *out);

/* C (m, n) = alpha op(A) op(B) + beta C, row-major, op = transpose when trans_*: OpenBLAS on tiles of C
 * shared among num_threads OpenMP threads, tiles chosen by shape alone (bit-identical for any thread
 * count). For the models' dense layers, so they use fastrnn's threads rather than a second pool. */
int fastrnn_gemm(int dtype, int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, double alpha,
                 const void *a, int64_t lda, const void *b, int64_t ldb, double beta, void *c, int64_t ldc,
                 int num_threads);

/* The recurrent variants beyond torch.nn (issue 8; equations in csrc/variant_layer.h), LSTM and GRU only,
 * no projection. One struct for both calls: forward reads the inputs and writes the outputs and the tape;
 * backward reads the inputs, the tape and the gradients in, and writes or adds into the gradients out.
 * G = 4 (LSTM) or 3 (GRU); lengths and the direction as above. */
typedef struct {
    int cell, dtype;
    int64_t steps, batch, input_size, hidden_size;
    int reverse;
    int layer_norm;         /* 1: LN of both gate pre-activations (and of the LSTM's cell) */
    int peephole;           /* 1: peephole LSTM */
    int reset_after;        /* GRU: 1 torch's (reset after the matmul), 0 the original */
    const int64_t *lengths; /* IN (B) or NULL */
    const void *x;          /* IN (T, B, I), zero past each length */
    const void *w_ih, *w_hh;                       /* IN (G*H, I), (G*H, H) */
    const void *b_ih, *b_hh;                       /* IN (G*H) each, or NULL */
    const void *ln_gates_weight, *ln_gates_bias;   /* IN (2, G*H): rows input side, recurrent side; layer_norm */
    const void *ln_cell_weight, *ln_cell_bias;     /* IN (H): LSTM with layer_norm */
    const void *w_ci, *w_cf, *w_co;                /* IN (H): peephole */
    const void *rd_mask;    /* IN (B, H) recurrent dropout mask, or NULL */
    const void *zoneout_h, *zoneout_c; /* IN (T, B, H) zoneout keep masks (c: LSTM), or NULL: use `zoneout` */
    double zoneout;         /* the keep factor when the masks are NULL (0: no zoneout) */
    void *tape;             /* forward OUT / backward IN (T*B, fastrnn_variant_tape_width): NULL = inference */
    /* forward */
    const void *h0, *c0;    /* IN (B, H) */
    void *y;                /* OUT (T, B, ldy): columns 0..H-1; zero past each length */
    int64_t ldy;            /* row stride of y (forward) or dy (backward) */
    void *hn, *cn;          /* OUT (B, H) */
    /* backward */
    const void *dy;         /* IN (T, B, ldy) */
    const void *dhn, *dcn;  /* IN (B, H) */
    void *dx;               /* OUT (T, B, I): overwritten, or added into when accumulate_dx */
    int accumulate_dx;
    void *dh0, *dc0;        /* OUT (B, H) */
    void *dw_ih, *dw_hh, *db_ih, *db_hh;           /* ADDED INTO, shapes as the weights (biases may be NULL) */
    void *dln_gates_weight, *dln_gates_bias, *dln_cell_weight, *dln_cell_bias, *dw_ci, *dw_cf, *dw_co; /* ADDED INTO */
    int num_threads;
} fastrnn_variant_args;

/* Elements per (t, b) row of the variant tape. */
int64_t fastrnn_variant_tape_width(int cell, int64_t hidden_size, int layer_norm);
int fastrnn_variant_forward(const fastrnn_variant_args *args);
int fastrnn_variant_backward(const fastrnn_variant_args *args);

/* Threads: OpenMP inside each step, OpenBLAS for the large GEMMs. */
int fastrnn_default_num_threads(void);
/* Which instruction-set build the kernels dispatch to: "avx512", "avx2" or "baseline". */
const char *fastrnn_isa(void);
/* 1 when built with OpenMP. */
int fastrnn_has_openmp(void);
/* Whether the forward may fuse the input projection into its steps (1, the default) or must do it as
   one GEMM before the loop (0): a process-wide switch for tests and the GEMM ablation benchmark. */
void fastrnn_set_fused_input(int enabled);
int fastrnn_fused_input(void);
/* Whether an unfused input projection past 32 rows may run on W_ih's panels packed as it goes (1, the
   default; AVX-512 build only) or must be OpenBLAS's sgemm (0): the same kind of switch. */
void fastrnn_set_panel_input(int enabled);
int fastrnn_panel_input(void);
/* Whether the backward's weight gradients (dW = dG^T x, dG^T h) and dx = dG W_ih may run on the kernels'
   own micro-kernel (1, the default; AVX-512 build, float32 only) or must be OpenBLAS's sgemm (0): the same kind
   of switch. */
void fastrnn_set_panel_gradients(int enabled);
int fastrnn_panel_gradients(void);
/* One core's L2 cache in bytes, as the system reports it (1 MB when it does not): the forward fuses its
   input projection with few rows only while the packed weights fit in half of it. */
int64_t fastrnn_l2_cache_bytes(void);

/* ===================================================================================================
 * Jordan (output-recurrent) network: one layer, the whole sequence (csrc/jordan.h, issue 9).
 *
 *   h_t = act(W_ih x_t + W_oh y_{t-1} + b_h),   o_t = W_ho h_t + b_o,   act = tanh or relu
 *
 * y_{t-1} is the fed-back output: y0 at t = 0; for t >= 1 the target (teacher forcing) or the model's
 * own f(o_{t-1}) (free running), chosen per (t, b) by `own` (scheduled sampling). f is the identity
 * (linear output) or, for a softmax output, the probabilities ("soft"), a one-hot sample or a one-hot
 * argmax. Shapes: T steps, B batch rows, I inputs, H hidden units, O outputs; C-contiguous, no aliasing.
 * Lengths are handled by the caller (padded steps zeroed before, outputs zeroed after): the network is
 * causal, so padded steps never reach a valid one.
 * =================================================================================================== */
enum fastrnn_jordan_output { FASTRNN_JORDAN_LINEAR = 0, FASTRNN_JORDAN_SOFTMAX = 1 };
enum fastrnn_jordan_feedback { FASTRNN_JORDAN_SOFT = 0, FASTRNN_JORDAN_SAMPLE = 1, FASTRNN_JORDAN_ARGMAX = 2 };

typedef struct {
    int dtype;              /* enum fastrnn_dtype */
    int relu;               /* 0: tanh, 1: relu */
    int output;             /* enum fastrnn_jordan_output */
    int feedback;           /* enum fastrnn_jordan_feedback (softmax only) */
    int teacher_forcing;    /* 1: y_prev is IN (every fed value known): parallel over time, no step loop */
    int64_t steps, batch, input_size, hidden_size, output_size;
    const void *x;          /* IN (T, B, I) */
    const void *targets;    /* IN (T, B, O) or NULL (free running); step t >= 1 reads targets[t-1] where !own */
    const uint8_t *own;     /* IN (T, B) or NULL (= all 1): 1 feeds the model's own output back at step t */
    const void *uniforms;   /* IN (T, B): uniforms[t, b] draws the sample fed back from o_t ("sample" only) */
    const void *y0;         /* IN (B, O) */
    const void *w_ih;       /* IN (H, I) */
    const void *w_oh;       /* IN (H, O) */
    const void *b_h;        /* IN (H) or NULL */
    const void *w_ho;       /* IN (O, H) */
    const void *b_o;        /* IN (O) or NULL */
    void *out;              /* OUT (T, B, O): o_t */
    void *h;                /* OUT (T, B, H): h_t (the tape, or scratch) */
    void *y_prev;           /* OUT (T, B, O): the value fed at each step (IN when teacher_forcing) */
    void *probs;            /* OUT (T, B, O): softmax(o_t) when output is softmax and not teacher_forcing, else unused */
    int num_threads;
} fastrnn_jordan_forward_args;

typedef struct {
    int dtype, relu, output;
    int through_own;        /* 1: BPTT through the fed-back soft outputs where own[t, b]; 0: no step loop */
    int64_t steps, batch, input_size, hidden_size, output_size;
    const void *x;          /* IN (T, B, I) */
    const void *w_ih, *w_oh, *w_ho;  /* IN as in forward */
    const void *h, *y_prev, *probs;  /* IN forward's tape (probs: softmax and through_own only) */
    const uint8_t *own;     /* IN (T, B) when through_own */
    void *d_out;            /* IN (T, B, O) dL/do given; OUT the total dL/do (with the fed-back path) */
    void *d_pre;            /* OUT (T, B, H): dL/d(pre-activation), scratch for the caller */
    void *dx;               /* OUT (T, B, I) */
    void *dy0;              /* OUT (B, O) */
    void *dw_ih, *dw_oh, *dw_ho;  /* ADDED INTO (H, I), (H, O), (O, H) */
    void *db_h, *db_o;      /* ADDED INTO (H), (O), or NULL */
    int num_threads;
} fastrnn_jordan_backward_args;

int fastrnn_jordan_forward(const fastrnn_jordan_forward_args *args);
int fastrnn_jordan_backward(const fastrnn_jordan_backward_args *args);
/* ============================================== end of Jordan ====================================== */

#ifdef __cplusplus
}
#endif
#endif
