"""fastrnn: compiled CPU kernels for Elman RNN, LSTM and GRU, forward and BPTT, behind a NumPy API
(and the output-recurrent Jordan network, fastrnn.JordanRNN).

    import fastrnn
    lstm = fastrnn.LSTM(input_size, hidden_size)
    y, (hn, cn) = lstm(x)              # x: (seq_len, batch, input_size)
    dx, (dh0, dc0) = lstm.backward(dy)  # parameter gradients are added into lstm.grads

``fastrnn.reference`` holds the same classes in pure NumPy (the oracle for tests and benchmarks).
"""
import scipy_openblas32  # noqa: F401  (loads the BLAS the kernels link, before they load)

from . import reference
from ._grad_mode import is_grad_enabled, no_grad
from .frozen import FrozenLayer, freeze
from .jordan import JordanRNN
from .layers import GRU, LSTM, RNN
from .threads import get_num_threads, set_num_threads

__version__ = "0.1.0"
__all__ = ["RNN", "LSTM", "GRU", "JordanRNN", "freeze", "FrozenLayer", "no_grad", "is_grad_enabled",
           "set_num_threads", "get_num_threads", "reference", "__version__"]
