# cython: language_level=3, boundscheck=False, wraparound=False
"""The only Cython in fastrnn: array checks are already done (fastrnn._layer / fastrnn.layers);
this fills the C argument structs, releases the GIL, calls C and turns a status into an exception."""
cimport cython
cimport numpy as cnp
import numpy as np
from libc.stdint cimport int64_t
from libc.string cimport memset
from cpython cimport pythread
from cpython.dict cimport PyDict_Check, PyDict_GetItem, PyDict_SetItem
from cpython.ref cimport PyObject

from ._grad_mode import _state as _grad_state  # LayerCall reads it (gradient mode is per thread)

cnp.import_array()

cdef extern from "Python.h":
    object PyObject_GenericGetDict(object o, void *context)  # the instance's __dict__, no attribute lookup

cdef object _MISSING = object()


cdef inline object _dict_item(d, key):
    """d[key] by the dict's own lookup (d a dict, subclasses included), or _MISSING: on a subclass of dict
    (such as params, an OrderedDict subclass) ``[]`` goes through a Python-level __getitem__ call, about
    60 ns, and the streaming step makes several a call."""
    cdef PyObject *found = PyDict_GetItem(d, key)
    return _MISSING if found is NULL else <object>found

cdef extern from "fastrnn.h" nogil:
    ctypedef struct fastrnn_forward_args:
        int cell, dtype
        int64_t steps, batch, input_size, hidden_size, proj_size
        int reverse
        const int64_t *lengths
        const void *x
        const void *h0
        const void *c0
        const void *w_ih
        const void *w_hh
        const void *w_hr
        const void *b_ih
        const void *b_hh
        void *y
        int64_t ldy
        void *hn
        void *cn
        void *gates
        void *h_prev
        void *aux
        int num_threads
        const int64_t *tokens
        const void *token_table
        const void *packed_w_ih
        const void *packed_w_hh
    ctypedef struct fastrnn_backward_args:
        int cell, dtype
        int64_t steps, batch, input_size, hidden_size, proj_size
        int reverse
        const int64_t *lengths
        const void *x
        const void *w_ih
        const void *w_hh
        const void *w_hr
        const void *dy
        int64_t ldy
        const void *dhn
        const void *dcn
        void *gates
        void *h_prev
        void *aux
        void *dx
        int accumulate_dx
        void *dh0
        void *dc0
        void *dw_ih
        void *dw_hh
        void *dw_hr
        void *db_ih
        void *db_hh
        int num_threads
        const int64_t *tokens
        void *d_table
    ctypedef struct fastrnn_variant_args:
        int cell, dtype
        int64_t steps, batch, input_size, hidden_size
        int reverse, layer_norm, peephole, reset_after
        const int64_t *lengths
        const void *x
        const void *w_ih
        const void *w_hh
        const void *b_ih
        const void *b_hh
        const void *ln_gates_weight
        const void *ln_gates_bias
        const void *ln_cell_weight
        const void *ln_cell_bias
        const void *w_ci
        const void *w_cf
        const void *w_co
        const void *rd_mask
        const void *zoneout_h
        const void *zoneout_c
        double zoneout
        void *tape
        const void *h0
        const void *c0
        void *y
        int64_t ldy
        void *hn
        void *cn
        const void *dy
        const void *dhn
        const void *dcn
        void *dx
        int accumulate_dx
        void *dh0
        void *dc0
        void *dw_ih
        void *dw_hh
        void *db_ih
        void *db_hh
        void *dln_gates_weight
        void *dln_gates_bias
        void *dln_cell_weight
        void *dln_cell_bias
        void *dw_ci
        void *dw_cf
        void *dw_co
        int num_threads
    int64_t fastrnn_variant_tape_width(int cell, int64_t hidden_size, int layer_norm)
    int fastrnn_variant_forward(const fastrnn_variant_args *args)
    int fastrnn_variant_backward(const fastrnn_variant_args *args)
    int fastrnn_forward(const fastrnn_forward_args *args)
    int fastrnn_backward(const fastrnn_backward_args *args)
    int64_t fastrnn_packed_weight_size(int cell, int dtype, int64_t hidden_size, int64_t k)
    int fastrnn_pack_weight(int cell, int dtype, int64_t hidden_size, int64_t k, const void *w, void *out)
    int fastrnn_gemm(int dtype, int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, double alpha,
                     const void *a, int64_t lda, const void *b, int64_t ldb, double beta, void *c, int64_t ldc,
                     int num_threads)
    int fastrnn_default_num_threads()
    const char *fastrnn_isa()
    int fastrnn_has_openmp()
    void fastrnn_set_fused_input(int enabled)
    int fastrnn_fused_input()
    void fastrnn_set_panel_input(int enabled)
    int fastrnn_panel_input()
    void fastrnn_set_panel_gradients(int enabled)
    int fastrnn_panel_gradients()
    int64_t fastrnn_l2_cache_bytes()
    int FASTRNN_OK, FASTRNN_ERR_NOMEM

CELLS = {"rnn_tanh": 0, "rnn_relu": 1, "lstm": 2, "gru": 3}

cdef int _num_threads = max(1, fastrnn_default_num_threads())


def set_num_threads(int n):
    global _num_threads
    _num_threads = n


def get_num_threads():
    return _num_threads


def isa():
    """The instruction-set build the kernels run: 'avx512', 'avx2' or 'baseline'."""
    return fastrnn_isa().decode()


def has_openmp():
    return bool(fastrnn_has_openmp())


def set_fused_input(bint enabled):
    """Let the forward fuse the input projection into its steps (True, the default) or make it do one
    GEMM before the loop (False). Process-wide; for tests and the GEMM ablation benchmark."""
    fastrnn_set_fused_input(enabled)


def fused_input():
    return bool(fastrnn_fused_input())


def set_panel_input(bint enabled):
    """Let an unfused input projection past 32 rows run on W_ih's panels, packed as it goes (True, the
    default; the AVX-512 build only), or make it OpenBLAS's sgemm (False). Process-wide; for tests and the
    GEMM ablation benchmark."""
    fastrnn_set_panel_input(enabled)


def panel_input():
    return bool(fastrnn_panel_input())


def set_panel_gradients(bint enabled):
    """Let the backward's weight gradients and dx run on the kernels' own micro-kernel (True, the default;
    the AVX-512 build, float32) or make them OpenBLAS's sgemm (False). Process-wide; for tests and the
    GEMM ablation benchmark."""
    fastrnn_set_panel_gradients(enabled)


def panel_gradients():
    return bool(fastrnn_panel_gradients())


def l2_cache_bytes():
    """One core's L2 in bytes as the kernels see it (the system's figure, or 1 MB when it gives none):
    the forward fuses its input projection into the steps with few rows only while the packed weights
    fit in half of it."""
    return fastrnn_l2_cache_bytes()


def packed_weight_size(str mode, dtype, int64_t hidden_size, int64_t k):
    """Elements of a (G*H, k) weight of this cell packed by pack_weight."""
    return fastrnn_packed_weight_size(CELLS[mode], 1 if np.dtype(dtype).itemsize == 8 else 0, hidden_size, k)


def pack_weight(str mode, cnp.ndarray w, int64_t hidden_size, cnp.ndarray out):
    """out (1-D, packed_weight_size elements, w's dtype) = w (G*H, k), C-contiguous, in the forward kernels'
    packed layout (fastrnn.h: packed_w_ih / packed_w_hh)."""
    if w.ndim != 2 or out.ndim != 1:
        raise ValueError("pack_weight: w must be a C-contiguous (G*H, k) float array and out a matching buffer")
    cdef int64_t k = w.shape[1]
    cdef int dtype = _dtype_code(w)
    if (not w.flags.c_contiguous or w.dtype != out.dtype or w.dtype.char not in "fd" or
            w.shape[0] % hidden_size or not out.flags.c_contiguous or
            out.shape[0] != fastrnn_packed_weight_size(CELLS[mode], dtype, hidden_size, k)):
        raise ValueError("pack_weight: w must be a C-contiguous (G*H, k) float array and out a matching buffer")
    cdef int status, cell = CELLS[mode]
    with nogil:
        status = fastrnn_pack_weight(cell, dtype, hidden_size, k, cnp.PyArray_DATA(w), cnp.PyArray_DATA(out))
    if status != FASTRNN_OK:
        _raise(status, "pack_weight")


cdef inline void *_data(object arr):
    return NULL if arr is None else cnp.PyArray_DATA(<cnp.ndarray>arr)


cdef tuple _sizes(cnp.ndarray x, w_ih, bint tokens):
    """(steps, batch, input_size) of x (T, B, I), or of token ids x (T, B) with input_size from w_ih (G*H, E)."""
    return x.shape[0], x.shape[1], (w_ih.shape[1] if tokens else x.shape[2])


cdef int _dtype_code(cnp.ndarray arr):
    return 1 if arr.dtype.itemsize == 8 else 0


cdef inline void _set_forward_arrays(fastrnn_forward_args *a, h0, c0, w_ih, w_hh, b_ih, b_hh, y, int64_t ldy,
                                     hn, cn, packed):
    """The arrays both forward() and StreamStep.run() hand the kernel (None -> NULL); packed: (W_ih, W_hh)
    packed by pack_weight, or None."""
    a.h0 = _data(h0)
    a.c0 = _data(c0)
    a.w_ih = _data(w_ih)
    a.w_hh = _data(w_hh)
    a.b_ih = _data(b_ih)
    a.b_hh = _data(b_hh)
    a.y = _data(y)
    a.ldy = ldy
    a.hn = _data(hn)
    a.cn = _data(cn)
    a.num_threads = _num_threads
    a.packed_w_ih = NULL if packed is None else _data(packed[0])
    a.packed_w_hh = NULL if packed is None else _data(packed[1])


cdef int _run_forward(fastrnn_forward_args *a) except -1:
    """The forward kernel on filled arguments, without the GIL; a status other than OK raises."""
    cdef int status
    with nogil:
        status = fastrnn_forward(a)
    if status != FASTRNN_OK:
        _raise(status, "forward")
    return 0


cdef _raise(int status, str what):
    if status == FASTRNN_ERR_NOMEM:
        raise MemoryError(f"fastrnn {what}: could not allocate the kernel's workspace")
    raise RuntimeError(f"fastrnn {what}: kernel returned status {status}")


def forward(str mode, cnp.ndarray x, h0, c0, w_ih, w_hh, w_hr, b_ih, b_hh, lengths, bint reverse,
            int64_t hidden_size, cnp.ndarray y, int64_t ldy, hn, cn, gates, h_prev, aux, token_table=None,
            packed=None):
    """y is a (T, B, P) view whose (t, b) rows are ldy elements apart; everything else C-contiguous.
    P = y.shape[2] is the state size: hidden_size, or the projection size when w_hr is given.
    With token_table (V, G*H), x is the (T, B) int64 token ids instead of the input (fastrnn.h).
    packed: (W_ih, W_hh) packed by pack_weight from exactly these weights, or None."""
    cdef fastrnn_forward_args a
    a.cell = CELLS[mode]
    a.dtype = _dtype_code(y)
    a.steps, a.batch, a.input_size = _sizes(x, w_ih, token_table is not None)
    a.tokens = <const int64_t *>_data(None if token_table is None else x)
    a.token_table = _data(token_table)
    a.hidden_size = hidden_size
    a.proj_size = 0 if w_hr is None else y.shape[2]
    a.reverse = reverse
    a.lengths = <const int64_t *>_data(lengths)
    a.x = NULL if token_table is not None else _data(x)
    _set_forward_arrays(&a, h0, c0, w_ih, w_hh, b_ih, b_hh, y, ldy, hn, cn, packed)
    a.w_hr = _data(w_hr)
    a.gates = _data(gates)
    a.h_prev = _data(h_prev)
    a.aux = _data(aux)
    _run_forward(&a)


def backward(str mode, bint reverse, lengths, cnp.ndarray x, w_ih, w_hh, w_hr, int64_t hidden_size,
             cnp.ndarray dy, int64_t ldy, dhn, dcn, gates, h_prev, aux, cnp.ndarray dx, bint accumulate_dx, dh0, dc0,
             dw_ih, dw_hh, dw_hr, db_ih, db_hh, d_table=None):
    """With d_table (V, G*H), x is forward's (T, B) int64 token ids: d_table is added into, and dx and
    dw_ih are left to the caller (fastrnn.h)."""
    cdef fastrnn_backward_args a
    cdef int status
    a.cell = CELLS[mode]
    a.dtype = _dtype_code(dy)
    a.steps, a.batch, a.input_size = _sizes(x, w_ih, d_table is not None)
    a.tokens = <const int64_t *>_data(None if d_table is None else x)
    a.d_table = _data(d_table)
    if d_table is not None:
        dx = None
    a.hidden_size = hidden_size
    a.proj_size = 0 if w_hr is None else dy.shape[2]
    a.reverse = reverse
    a.lengths = <const int64_t *>_data(lengths)
    a.x = NULL if d_table is not None else _data(x)
    a.w_ih = _data(w_ih)
    a.w_hh = _data(w_hh)
    a.w_hr = _data(w_hr)
    a.dy = _data(dy)
    a.ldy = ldy
    a.dhn = _data(dhn)
    a.dcn = _data(dcn)
    a.gates = _data(gates)
    a.h_prev = _data(h_prev)
    a.aux = _data(aux)
    a.dx = _data(dx)
    a.accumulate_dx = accumulate_dx
    a.dh0 = _data(dh0)
    a.dc0 = _data(dc0)
    a.dw_ih = _data(dw_ih)
    a.dw_hh = _data(dw_hh)
    a.dw_hr = _data(dw_hr)
    a.db_ih = _data(db_ih)
    a.db_hh = _data(db_hh)
    a.num_threads = _num_threads
    with nogil:
        status = fastrnn_backward(&a)
    if status != FASTRNN_OK:
        _raise(status, "backward")


def gemm(cnp.ndarray a, cnp.ndarray b, cnp.ndarray c, bint trans_a=False, bint trans_b=False, double alpha=1.0,
         double beta=0.0):
    """c = alpha op(a) op(b) + beta c with fastrnn's threads (csrc/blas.h's tiling): 2-D C-contiguous
    arrays of one dtype, float32 or float64. Sizes must fit OpenBLAS's 32-bit indices (the caller checks)."""
    for name, arr in (("a", a), ("b", b), ("c", c)):
        if arr.ndim != 2 or not arr.flags.c_contiguous:
            raise ValueError(f"gemm: {name} must be a 2-D C-contiguous array")
        if arr.dtype != c.dtype or arr.dtype.char not in "fd":
            raise TypeError(f"gemm: a, b and c must all be float32 or all float64, got {name} {arr.dtype}")
    if not c.flags.writeable:
        raise ValueError("gemm: c must be writeable")
    cdef int64_t m = a.shape[1] if trans_a else a.shape[0]
    cdef int64_t k = a.shape[0] if trans_a else a.shape[1]
    cdef int64_t kb = b.shape[1] if trans_b else b.shape[0]
    cdef int64_t n = b.shape[0] if trans_b else b.shape[1]
    if k != kb or c.shape[0] != m or c.shape[1] != n:
        raise ValueError(f"gemm: shapes do not match: op(a) ({m}, {k}), op(b) ({kb}, {n}), c ({c.shape[0]}, {c.shape[1]})")
    cdef int dtype = _dtype_code(c)
    cdef int64_t lda = max(1, a.shape[1]), ldb = max(1, b.shape[1]), ldc = max(1, c.shape[1])  # BLAS wants >= 1
    cdef const void *pa = cnp.PyArray_DATA(a)
    cdef const void *pb = cnp.PyArray_DATA(b)
    cdef void *pc = cnp.PyArray_DATA(c)
    with nogil:
        fastrnn_gemm(dtype, trans_a, trans_b, m, n, k, alpha, pa, lda, pb, ldb, beta, pc, ldc, _num_threads)
# =====================================================================================================
# Jordan (output-recurrent) network (issue 9): csrc/jordan.h through the fastrnn_jordan_* entry points.
# The caller (fastrnn.jordan) allocates every array, C-contiguous and of the layer's dtype.
# =====================================================================================================
from libc.stdint cimport uint8_t

cdef extern from "fastrnn.h" nogil:
    ctypedef struct fastrnn_jordan_forward_args:
        int dtype, relu, output, feedback, teacher_forcing
        int64_t steps, batch, input_size, hidden_size, output_size
        const void *x
        const void *targets
        const uint8_t *own
        const void *uniforms
        const void *y0
        const void *w_ih
        const void *w_oh
        const void *b_h
        const void *w_ho
        const void *b_o
        void *out
        void *h
        void *y_prev
        void *probs
        int num_threads
    ctypedef struct fastrnn_jordan_backward_args:
        int dtype, relu, output, through_own
        int64_t steps, batch, input_size, hidden_size, output_size
        const void *x
        const void *w_ih
        const void *w_oh
        const void *w_ho
        const void *h
        const void *y_prev
        const void *probs
        const uint8_t *own
        void *d_out
        void *d_pre
        void *dx
        void *dy0
        void *dw_ih
        void *dw_oh
        void *dw_ho
        void *db_h
        void *db_o
        int num_threads
    int fastrnn_jordan_forward(const fastrnn_jordan_forward_args *args)
    int fastrnn_jordan_backward(const fastrnn_jordan_backward_args *args)

JORDAN_OUTPUTS = {"linear": 0, "softmax": 1}
JORDAN_FEEDBACKS = {"soft": 0, "sample": 1, "argmax": 2}


def jordan_forward(bint relu, str output, str feedback, bint teacher_forcing, cnp.ndarray x, targets, own,
                   uniforms, y0, w_ih, w_oh, b_h, w_ho, b_o, cnp.ndarray out, cnp.ndarray h, y_prev, probs):
    """x (T, B, I), out (T, B, O), h (T, B, H), y_prev (T, B, O) (IN under teacher forcing); own uint8."""
    cdef fastrnn_jordan_forward_args a
    cdef int status
    a.dtype = _dtype_code(x)
    a.relu = relu
    a.output = JORDAN_OUTPUTS[output]
    a.feedback = JORDAN_FEEDBACKS[feedback]
    a.teacher_forcing = teacher_forcing
    a.steps, a.batch, a.input_size = x.shape[0], x.shape[1], x.shape[2]
    a.hidden_size, a.output_size = h.shape[2], out.shape[2]
    a.x = _data(x)
    a.targets = _data(targets)
    a.own = <const uint8_t *>_data(own)
    a.uniforms = _data(uniforms)
    a.y0 = _data(y0)
    a.w_ih = _data(w_ih)
    a.w_oh = _data(w_oh)
    a.b_h = _data(b_h)
    a.w_ho = _data(w_ho)
    a.b_o = _data(b_o)
    a.out = _data(out)
    a.h = _data(h)
    a.y_prev = _data(y_prev)
    a.probs = _data(probs)
    a.num_threads = _num_threads
    with nogil:
        status = fastrnn_jordan_forward(&a)
    if status != FASTRNN_OK:
        _raise(status, "jordan_forward")


def jordan_backward(bint relu, str output, bint through_own, cnp.ndarray x, w_ih, w_oh, w_ho, h, y_prev, probs,
                    own, cnp.ndarray d_out, cnp.ndarray d_pre, dx, dy0, dw_ih, dw_oh, dw_ho, db_h, db_o):
    cdef fastrnn_jordan_backward_args a
    cdef int status
    a.dtype = _dtype_code(x)
    a.relu = relu
    a.output = JORDAN_OUTPUTS[output]
    a.through_own = through_own
    a.steps, a.batch, a.input_size = x.shape[0], x.shape[1], x.shape[2]
    a.hidden_size, a.output_size = d_pre.shape[2], d_out.shape[2]
    a.x = _data(x)
    a.w_ih = _data(w_ih)
    a.w_oh = _data(w_oh)
    a.w_ho = _data(w_ho)
    a.h = _data(h)
    a.y_prev = _data(y_prev)
    a.probs = _data(probs)
    a.own = <const uint8_t *>_data(own)
    a.d_out = _data(d_out)
    a.d_pre = _data(d_pre)
    a.dx = _data(dx)
    a.dy0 = _data(dy0)
    a.dw_ih = _data(dw_ih)
    a.dw_oh = _data(dw_oh)
    a.dw_ho = _data(dw_ho)
    a.db_h = _data(db_h)
    a.db_o = _data(db_o)
    a.num_threads = _num_threads
    with nogil:
        status = fastrnn_jordan_backward(&a)
    if status != FASTRNN_OK:
        _raise(status, "jordan_backward")


# ------------------------------------------------------------------ variants (issue 8)
def variant_tape_width(str mode, int64_t hidden_size, bint layer_norm):
    return fastrnn_variant_tape_width(CELLS[mode], hidden_size, layer_norm)


cdef void _variant_common(fastrnn_variant_args *a, str mode, cnp.ndarray x, int64_t hidden_size, bint reverse,
                          lengths, dict v, weights, tape):
    w_ih, w_hh, b_ih, b_hh = weights
    p = v["params"]
    memset(a, 0, sizeof(fastrnn_variant_args))
    a.cell = CELLS[mode]
    a.dtype = _dtype_code(x)
    a.steps, a.batch, a.input_size = x.shape[0], x.shape[1], x.shape[2]
    a.hidden_size = hidden_size
    a.reverse = reverse
    a.layer_norm = v["layer_norm"]
    a.peephole = v["peephole"]
    a.reset_after = v["reset_after"]
    a.lengths = <const int64_t *>_data(lengths)
    a.x = _data(x)
    a.w_ih = _data(w_ih)
    a.w_hh = _data(w_hh)
    a.b_ih = _data(b_ih)
    a.b_hh = _data(b_hh)
    a.ln_gates_weight = _data(p.get("ln_gates_weight"))
    a.ln_gates_bias = _data(p.get("ln_gates_bias"))
    a.ln_cell_weight = _data(p.get("ln_cell_weight"))
    a.ln_cell_bias = _data(p.get("ln_cell_bias"))
    a.w_ci = _data(p.get("w_ci"))
    a.w_cf = _data(p.get("w_cf"))
    a.w_co = _data(p.get("w_co"))
    a.rd_mask = _data(v["rd_mask"])
    a.zoneout_h = _data(v["zh"])
    a.zoneout_c = _data(v["zc"])
    a.zoneout = v["zoneout"]
    a.tape = _data(tape)
    a.num_threads = _num_threads


def variant_forward(str mode, cnp.ndarray x, h0, c0, weights, lengths, bint reverse, int64_t hidden_size, dict v,
                    cnp.ndarray y, int64_t ldy, hn, cn, tape):
    """weights (w_ih, w_hh, b_ih, b_hh); v: the variant call (fastrnn._layer._variant_call); everything
    C-contiguous except y, a (T, B, H) view with rows ldy apart; tape (T*B, variant_tape_width) or None."""
    cdef fastrnn_variant_args a
    cdef int status
    _variant_common(&a, mode, x, hidden_size, reverse, lengths, v, weights, tape)
    a.h0 = _data(h0)
    a.c0 = _data(c0)
    a.y = _data(y)
    a.ldy = ldy
    a.hn = _data(hn)
    a.cn = _data(cn)
    with nogil:
        status = fastrnn_variant_forward(&a)
    if status != FASTRNN_OK:
        _raise(status, "variant forward")


def variant_backward(str mode, cnp.ndarray x, weights, lengths, bint reverse, int64_t hidden_size, dict v, tape,
                     cnp.ndarray dy, int64_t ldy, dhn, dcn, cnp.ndarray dx, bint accumulate_dx, dh0, dc0, grads,
                     dict vgrads):
    """grads (dw_ih, dw_hh, db_ih, db_hh) and vgrads (short variant name -> array) are ADDED into."""
    cdef fastrnn_variant_args a
    cdef int status
    _variant_common(&a, mode, x, hidden_size, reverse, lengths, v, weights, tape)
    a.dy = _data(dy)
    a.ldy = ldy
    a.dhn = _data(dhn)
    a.dcn = _data(dcn)
    a.dx = _data(dx)
    a.accumulate_dx = accumulate_dx
    a.dh0 = _data(dh0)
    a.dc0 = _data(dc0)
    a.dw_ih, a.dw_hh, a.db_ih, a.db_hh = _data(grads[0]), _data(grads[1]), _data(grads[2]), _data(grads[3])
    a.dln_gates_weight = _data(vgrads.get("ln_gates_weight"))
    a.dln_gates_bias = _data(vgrads.get("ln_gates_bias"))
    a.dln_cell_weight = _data(vgrads.get("ln_cell_weight"))
    a.dln_cell_bias = _data(vgrads.get("ln_cell_bias"))
    a.dw_ci = _data(vgrads.get("w_ci"))
    a.dw_cf = _data(vgrads.get("w_cf"))
    a.dw_co = _data(vgrads.get("w_co"))
    with nogil:
        status = fastrnn_variant_backward(&a)
    if status != FASTRNN_OK:
        _raise(status, "variant backward")


cdef inline bint _exact_state(object arr, int type_num, int64_t n0, int64_t n1, int64_t n2):
    """arr is an ndarray of exactly this dtype and shape, C-contiguous (layers._exact)."""
    if type(arr) is not cnp.ndarray:
        return False
    cdef cnp.ndarray a = <cnp.ndarray>arr
    return (cnp.PyArray_TYPE(a) == type_num and cnp.PyArray_NDIM(a) == 3 and a.shape[0] == n0 and
            a.shape[1] == n1 and a.shape[2] == n2 and cnp.PyArray_IS_C_CONTIGUOUS(a))


cdef class StreamStep:
    """The inference call of a one-layer, one-direction, time-major compiled layer without options beyond
    torch.nn's (layers._CompiledLayer._fast_forward), in C: a streaming step costs a few microseconds,
    and the Python version of these checks and allocations was about half of one with small weights.
    run() makes exactly the checks of the Python fast path and returns None for any call it does not
    take (the Python paths then take it, and raise what they raise)."""
    cdef int cell, type_num, dtype_code
    cdef int64_t input_size, hidden_size, max_rows
    cdef bint lstm
    cdef object k_ih, k_hh, k_bih, k_bhh, packed, weights

    def __init__(self, str mode, dtype, int64_t input_size, int64_t hidden_size, int64_t max_rows, keys,
                 packed=None, weights=None):
        """keys: of (w_ih, w_hh, b_ih, b_hh) in the params given to run(); packed: as forward's, and weights:
        those four arrays themselves, for an inference snapshot, whose weights never change (run() then
        ignores its params)."""
        self.cell = CELLS[mode]
        self.type_num = np.dtype(dtype).num
        self.dtype_code = 1 if self.type_num == cnp.NPY_FLOAT64 else 0
        self.input_size, self.hidden_size, self.max_rows = input_size, hidden_size, max_rows
        self.lstm = mode == "lstm"
        self.k_ih, self.k_hh, self.k_bih, self.k_bhh = keys
        self.packed = packed
        self.weights = weights

    cpdef run(self, x, hx, params):
        """(y, hn) of the layer for x (T, B, input_size) and hx (None, or arrays of the state's exact shape,
        dtype and layout), or None."""
        if type(x) is not cnp.ndarray:
            return None
        cdef cnp.ndarray xa = <cnp.ndarray>x
        if cnp.PyArray_TYPE(xa) != self.type_num or cnp.PyArray_NDIM(xa) != 3:
            return None
        cdef int64_t T = xa.shape[0], B = xa.shape[1], H = self.hidden_size
        if (xa.shape[2] != self.input_size or T == 0 or B == 0 or T * B > self.max_rows or
                not cnp.PyArray_IS_C_CONTIGUOUS(xa)):
            return None
        cdef cnp.npy_intp state_shape[3]
        state_shape[0] = 1
        state_shape[1] = B
        state_shape[2] = H
        if hx is None:
            h0 = cnp.PyArray_ZEROS(3, state_shape, self.type_num, 0)
            c0 = cnp.PyArray_ZEROS(3, state_shape, self.type_num, 0) if self.lstm else None
        elif self.lstm:
            if type(hx) is not tuple or len(<tuple>hx) != 2:
                return None
            h0, c0 = hx
            if not (_exact_state(h0, self.type_num, 1, B, H) and _exact_state(c0, self.type_num, 1, B, H)):
                return None
        elif _exact_state(hx, self.type_num, 1, B, H):
            h0, c0 = hx, None
        else:
            return None
        if self.weights is not None:
            w_ih, w_hh, b_ih, b_hh = self.weights
        else:
            if not PyDict_Check(params):
                return None
            w_ih, w_hh = _dict_item(params, self.k_ih), _dict_item(params, self.k_hh)
            b_ih = None if self.k_bih is None else _dict_item(params, self.k_bih)
            b_hh = None if self.k_bhh is None else _dict_item(params, self.k_bhh)
            if w_ih is _MISSING or w_hh is _MISSING or b_ih is _MISSING or b_hh is _MISSING:
                return None
        cdef cnp.npy_intp y_shape[3]
        y_shape[0] = T
        y_shape[1] = B
        y_shape[2] = H
        y = cnp.PyArray_EMPTY(3, y_shape, self.type_num, 0)
        hn = cnp.PyArray_EMPTY(3, state_shape, self.type_num, 0)
        cn = cnp.PyArray_EMPTY(3, state_shape, self.type_num, 0) if self.lstm else None
        cdef fastrnn_forward_args a
        memset(&a, 0, sizeof(a))
        a.cell = self.cell
        a.dtype = self.dtype_code
        a.steps, a.batch, a.input_size, a.hidden_size = T, B, self.input_size, H
        a.x = cnp.PyArray_DATA(xa)
        _set_forward_arrays(&a, h0, c0, w_ih, w_hh, b_ih, b_hh, y, H, hn, cn, self.packed)
        _run_forward(&a)
        return y, ((hn, cn) if self.lstm else hn)


@cython.final
cdef class LayerLock:
    """A compiled layer's reentrant lock (its ``_lock``): forward and backward of one layer run one at a time.
    threading.RLock's semantics, but LayerCall takes it with C calls: calling an RLock's acquire() and
    release() by name took about 0.11 us of each streaming call (8 units: 1.36 -> 1.21 us a call).

    The algorithm of the fastrlock package: every change of _owner / _count happens with the GIL held, so
    an uncontended acquire is a few stores; the OS lock is used only once a second thread has to wait. That
    thread takes the OS lock on the owner's behalf (_os_locked), then blocks on it with the GIL released;
    the owner's last release hands it over."""
    cdef pythread.PyThread_type_lock _os_lock
    cdef unsigned long _owner
    cdef int _count      # the owner's depth (0: free)
    cdef int _waiting    # threads blocked on _os_lock
    cdef bint _os_locked

    def __cinit__(self):
        self._os_lock = pythread.PyThread_allocate_lock()
        if self._os_lock is NULL:
            raise MemoryError("could not allocate a lock")

    def __dealloc__(self):
        if self._os_lock is not NULL:
            if self._os_locked:
                pythread.PyThread_release_lock(self._os_lock)
            pythread.PyThread_free_lock(self._os_lock)

    cdef inline bint take(self, bint blocking) noexcept:
        cdef unsigned long me = pythread.PyThread_get_thread_ident()
        if self._count:
            if self._owner == me:
                self._count += 1
                return True
        elif not self._waiting:
            self._owner, self._count = me, 1
            return True
        return self._wait(me, blocking)

    cdef bint _wait(self, unsigned long me, bint blocking) noexcept:
        cdef int got
        cdef int mode = pythread.WAIT_LOCK if blocking else pythread.NOWAIT_LOCK
        if not self._os_locked and not self._waiting:  # the owner runs without the OS lock: take it for them
            if not pythread.PyThread_acquire_lock(self._os_lock, mode):
                return False
            self._os_locked = True
        self._waiting += 1
        with nogil:
            got = pythread.PyThread_acquire_lock(self._os_lock, mode)
        self._waiting -= 1
        if not got:
            return False
        self._os_locked = True
        self._owner, self._count = me, 1
        return True

    cdef inline void give(self) noexcept:
        self._count -= 1
        if self._count == 0 and self._os_locked:  # a thread waits: hand the OS lock over
            self._os_locked = False
            pythread.PyThread_release_lock(self._os_lock)

    def acquire(self, bint blocking=True):
        return self.take(blocking)

    def release(self):
        if not self._count or self._owner != pythread.PyThread_get_thread_ident():
            raise RuntimeError("cannot release un-acquired lock")
        self.give()

    def __enter__(self):
        return self.take(True)

    def __exit__(self, *exc):
        self.release()
        return False

    def __repr__(self):
        return f"<fastrnn layer lock, {'held ' + str(self._count) + ' deep' if self._count else 'free'}>"


@cython.auto_pickle(False)  # a layer pickles as the Python object it is (its __dict__), as before
cdef class LayerCall:
    """The base of layers._CompiledLayer, for its call in C: with gradients off and no lengths, a call the
    layer's streaming step takes goes from the call straight to StreamStep.run under the layer's lock,
    without the Python frames of __call__, forward and _fast_forward (about 0.8 us of a 6 us GRU step);
    anything else goes to self.forward. The step is the layer's ``_shortcut``: set with its plan
    (layers._CompiledLayer._fast_forward) for the library's own classes only, dropped with the plan; a
    ``forward`` or ``_fast_forward`` set on the instance (a hook) turns the shortcut off. The attributes
    it needs (_shortcut, _lock, params, _tape) are read from and written to the instance's __dict__
    itself: through attribute lookups they took about 0.2 us a call (8 units)."""

    def __call__(self, x, hx=None, lengths=None):
        if lengths is None and not _grad_state.enabled:
            d = PyObject_GenericGetDict(self, NULL)
            step = _dict_item(d, "_shortcut")
            if (type(step) is StreamStep and _dict_item(d, "forward") is _MISSING
                    and _dict_item(d, "_fast_forward") is _MISSING):
                lock = _dict_item(d, "_lock")
                if type(lock) is not LayerLock:
                    return self.forward(x, hx, lengths)
                (<LayerLock>lock).take(True)
                try:
                    out = (<StreamStep>step).run(x, hx, _dict_item(d, "params"))  # (not a dict: None back)
                    if out is not None:
                        if _dict_item(d, "_tape") is not None:
                            PyDict_SetItem(d, "_tape", None)
                        return out
                finally:
                    (<LayerLock>lock).give()
        return self.forward(x, hx, lengths)


cdef class FastCall:
    """The base of fastrnn.FrozenLayer, for its call in C: a call the snapshot's streaming step takes (no
    lengths; arrays of the right dtype, shape and layout) goes straight to StreamStep.run, without a Python
    frame (about 0.3 us of a 4.7 us GRU step); any other call goes to the subclass's _general_call."""
    cdef public object _step, _params

    def __call__(self, x, hx=None, lengths=None):
        if lengths is None and self._step is not None:
            out = (<StreamStep>self._step).run(x, hx, self._params)
            if out is not None:
                return out
        return self._general_call(x, hx, lengths)
