"""The data every engine of one case shares: weights (torch's keys and shapes), input, state, dy.

Built deterministically from the case, so a subprocess (bench.memory) rebuilds exactly the same.
"""
from dataclasses import dataclass

import numpy as np


@dataclass
class Workload:
    weights: dict        # torch-keyed float32 arrays (weight_ih_l0 (G*H, D), weight_hh_l0, bias_ih_l0, bias_hh_l0)
    x: np.ndarray        # (T, B, D) float32, time-major; zero past each sequence's length
    h0: np.ndarray       # (1, B, H): zeros, or a random state for streaming steps
    c0: np.ndarray       # (1, B, H) for LSTM, else None
    dy: np.ndarray       # (T, B, H) ones: the gradient of sum(y)
    lengths: np.ndarray  # (B,) int64, or None


def make_workload(case, seed=0):
    import fastrnn  # the layer's own initialiser gives torch's distribution, uniform(+-1/sqrt(H))

    rng = np.random.default_rng(seed)
    layer = make_layer(fastrnn, case, seed=seed)
    x = rng.uniform(-1, 1, size=(case.T, case.B, case.D)).astype(np.float32)
    lengths = None
    if case.lengths is not None:
        lengths = np.asarray(case.lengths, dtype=np.int64)
        x[np.arange(case.T)[:, None] >= lengths[None, :]] = 0
    state_shape = (1, case.B, case.H)
    if case.kind == "stream":  # a state from somewhere mid-sequence
        h0 = rng.uniform(-0.5, 0.5, size=state_shape).astype(np.float32)
        c0 = rng.uniform(-0.5, 0.5, size=state_shape).astype(np.float32) if case.cell == "lstm" else None
    else:
        h0 = np.zeros(state_shape, np.float32)
        c0 = np.zeros(state_shape, np.float32) if case.cell == "lstm" else None
    dy = np.ones((case.T, case.B, case.H), np.float32)
    return Workload(layer.state_dict(), x, h0, c0, dy, lengths)


def make_layer(namespace, case, seed=None):
    """``namespace.RNN/LSTM/GRU`` for the case's cell; namespace is fastrnn or fastrnn.reference."""
    if case.cell in ("rnn", "rnn_relu"):
        nonlinearity = "relu" if case.cell == "rnn_relu" else "tanh"
        return namespace.RNN(case.D, case.H, nonlinearity=nonlinearity, seed=seed)
    cls = {"lstm": namespace.LSTM, "gru": namespace.GRU}[case.cell]
    return cls(case.D, case.H, seed=seed)
