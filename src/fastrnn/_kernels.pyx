# cython: language_level=3, boundscheck=False, wraparound=False
"""The only Cython in fastrnn: array checks are already done (fastrnn._layer / fastrnn.layers);
this fills the C argument structs, releases the GIL, calls C and turns a status into an exception."""
cimport numpy as cnp
from libc.stdint cimport int64_t

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
    int fastrnn_forward(const fastrnn_forward_args *args)
    int fastrnn_backward(const fastrnn_backward_args *args)
    int fastrnn_gemm(int dtype, int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, double alpha,
                     const void *a, int64_t lda, const void *b, int64_t ldb, double beta, void *c, int64_t ldc,
                     int num_threads)
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
