"""How many threads the compiled kernels use (OpenMP inside each step, OpenBLAS for the big GEMMs)."""
import numbers

import numpy as np

from . import _kernels


def set_num_threads(n):
    """Use ``n`` threads in every kernel from now on (n >= 1)."""
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, numbers.Integral):
        raise TypeError(f"n must be an int, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    _kernels.set_num_threads(int(n))


def get_num_threads():
    """The thread count in use: by default what OpenMP would use (OMP_NUM_THREADS is honoured)."""
    return _kernels.get_num_threads()
