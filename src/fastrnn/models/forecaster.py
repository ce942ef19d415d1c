"""One-step-ahead regression: a window of the past -> stacked LSTM/GRU/RNN -> final state -> linear."""
import numpy as np

from .._grad_mode import no_grad
from .. import _validation as V
from ..nn import Linear, Module
from ._common import child_seeds, final_hidden, final_hidden_grad, make_recurrent


def sliding_windows(series, window, horizon=1):
    """series (N,) or (N, F) -> inputs (N - window - horizon + 1, window, F), targets (same count, F):
    each target is the value ``horizon`` steps after its window's last value."""
    s = np.asarray(series)
    if s.dtype.kind not in "fiu":
        raise TypeError(f"series must hold real numbers, got dtype {s.dtype}")
    if s.ndim == 1:
        s = s[:, None]
    if s.ndim != 2:
        raise ValueError(f"series must be 1-D (N,) or 2-D (N, features), got shape {s.shape}")
    for name, value in (("window", window), ("horizon", horizon)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    count = len(s) - window - horizon + 1
    if count < 1:
        raise ValueError(f"series of length {len(s)} is too short for window={window} and horizon={horizon}")
    idx = np.arange(window)[None, :] + np.arange(count)[:, None]
    return s[idx], s[window + horizon - 1:window + horizon - 1 + count]


class Forecaster(Module):
    """Regression from a sequence to a vector, read from the last layer's final state.

    forward(windows (B, W, input_size), or (B, W) when input_size is 1) -> (B, output_size);
    backward(dpred) -> dwindows. ``predict`` runs in eval mode without a tape.
    """

    def __init__(self, input_size=1, hidden_size=64, output_size=None, num_layers=1, cell="lstm", dropout=0.0,
                 dtype=np.float32, seed=None):
        super().__init__(dtype)
        output_size = input_size if output_size is None else output_size
        self.input_size = input_size
        self.config = dict(input_size=input_size, hidden_size=hidden_size, output_size=output_size,
                           num_layers=num_layers, cell=cell, dropout=dropout, dtype=self.dtype.name)
        s_rnn, s_head = child_seeds(seed, 2)
        self._add("rnn", make_recurrent(cell, input_size, hidden_size, num_layers, dropout, dtype=dtype, seed=s_rnn))
        self._add("head", Linear(hidden_size, output_size, dtype=dtype, seed=s_head))

    def _as_windows(self, windows):
        x = V.as_real_array(windows, "windows", self.dtype)
        if x.ndim == 2 and self.input_size == 1:
            x = x[:, :, None]
        V.check_rank(x, 3, "windows", "(batch, window, input_size)")
        return x

    def forward(self, windows):
        x = self._as_windows(windows)
        self._squeeze = np.ndim(windows) == 2
        _, hn = self.rnn(x)
        return self.head(final_hidden(self.rnn, hn))

    def backward(self, dpred):
        dh = self.head.backward(dpred)
        dx, _ = self.rnn.backward(None, final_hidden_grad(self.rnn, dh, dh.shape[0]))
        return dx[:, :, 0] if self._squeeze else dx

    def predict(self, windows, batch_size=1024):
        windows = np.asarray(windows)
        was_training = self.training
        self.eval()
        try:
            with no_grad():
                out = [self.forward(windows[i:i + batch_size]) for i in range(0, len(windows), batch_size)]
        finally:
            self.train(was_training)
        return np.concatenate(out)
