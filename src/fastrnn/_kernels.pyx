# cython: language_level=3, boundscheck=False, wraparound=False
"""The only Cython in fastrnn: array checks are already done (fastrnn._layer / fastrnn.layers);
this fills the C argument structs, releases the GIL, calls C and turns a status into an exception."""
cimport numpy as cnp
from libc.stdint cimport int64_t
from libc.string cimport memset

cnp.import_array()

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
    int fastrnn_default_num_threads()
    const char *fastrnn_isa()
    int fastrnn_has_openmp()
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


cdef inline void *_data(object arr):
    return NULL if arr is None else cnp.PyArray_DATA(<cnp.ndarray>arr)


cdef int _dtype_code(cnp.ndarray arr):
    return 1 if arr.dtype.itemsize == 8 else 0


cdef _raise(int status, str what):
    if status == FASTRNN_ERR_NOMEM:
        raise MemoryError(f"fastrnn {what}: could not allocate the kernel's workspace")
    raise RuntimeError(f"fastrnn {what}: kernel returned status {status}")


def forward(str mode, cnp.ndarray x, h0, c0, w_ih, w_hh, w_hr, b_ih, b_hh, lengths, bint reverse,
            int64_t hidden_size, cnp.ndarray y, int64_t ldy, hn, cn, gates, h_prev, aux):
    """y is a (T, B, P) view whose (t, b) rows are ldy elements apart; everything else C-contiguous.
    P = y.shape[2] is the state size: hidden_size, or the projection size when w_hr is given."""
    cdef fastrnn_forward_args a
    cdef int status
    a.cell = CELLS[mode]
    a.dtype = _dtype_code(x)
    a.steps, a.batch, a.input_size = x.shape[0], x.shape[1], x.shape[2]
    a.hidden_size = hidden_size
    a.proj_size = 0 if w_hr is None else y.shape[2]
    a.reverse = reverse
    a.lengths = <const int64_t *>_data(lengths)
    a.x = _data(x)
    a.h0 = _data(h0)
    a.c0 = _data(c0)
    a.w_ih = _data(w_ih)
    a.w_hh = _data(w_hh)
    a.w_hr = _data(w_hr)
    a.b_ih = _data(b_ih)
    a.b_hh = _data(b_hh)
    a.y = _data(y)
    a.ldy = ldy
    a.hn = _data(hn)
    a.cn = _data(cn)
    a.gates = _data(gates)
    a.h_prev = _data(h_prev)
    a.aux = _data(aux)
    a.num_threads = _num_threads
    with nogil:
        status = fastrnn_forward(&a)
    if status != FASTRNN_OK:
        _raise(status, "forward")


def backward(str mode, bint reverse, lengths, cnp.ndarray x, w_ih, w_hh, w_hr, int64_t hidden_size,
             cnp.ndarray dy, int64_t ldy, dhn, dcn, gates, h_prev, aux, cnp.ndarray dx, bint accumulate_dx, dh0, dc0,
             dw_ih, dw_hh, dw_hr, db_ih, db_hh):
    cdef fastrnn_backward_args a
    cdef int status
    a.cell = CELLS[mode]
    a.dtype = _dtype_code(x)
    a.steps, a.batch, a.input_size = x.shape[0], x.shape[1], x.shape[2]
    a.hidden_size = hidden_size
    a.proj_size = 0 if w_hr is None else dy.shape[2]
    a.reverse = reverse
    a.lengths = <const int64_t *>_data(lengths)
    a.x = _data(x)
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
