"""How many threads the compiled kernels use (OpenMP inside each step, OpenBLAS for the big GEMMs)."""
from . import _kernels


def set_num_threads(n):
    """Use ``n`` threads in every kernel from now on (n >= 1)."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"n must be an int, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    _kernels.set_num_threads(n)


def get_num_threads():
    """The thread count in use: by default what OpenMP would use (OMP_NUM_THREADS is honoured)."""
    return _kernels.get_num_threads()
