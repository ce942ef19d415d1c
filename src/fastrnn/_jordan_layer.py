"""The Jordan (output-recurrent) network shared by the compiled engine and the NumPy reference.

    h_t = act(W_ih x_t + W_oh y_{t-1} + b_h)      act = tanh or relu
    o_t = W_ho h_t + b_o                           the outputs (logits when output="softmax")

The only recurrence runs from the previous step's fed-back output ``y_{t-1}`` into the hidden layer.
What is fed back at step t >= 1 is chosen per (t, b):

    teacher forcing     y_{t-1} = target_{t-1}      every step independent: parallel over time, no BPTT
    free running        y_{t-1} = f(o_{t-1})        open loop, the model's own output
    scheduled sampling  own output with probability p, else the target (a fresh Bernoulli(p) per (t, b))

and y_{-1} = y0 (zeros unless given) at t = 0. ``f`` is the identity for output="linear"; for
output="softmax" it is set by ``feedback``: "soft" (the probabilities softmax(o), differentiable),
"sample" (a one-hot draw from softmax(o)) or "argmax" (one-hot of the largest logit); gradients do not
flow through a sample or an argmax. Where the model's own soft output was fed back, backward runs BPTT
through that path (o_{t-1} -> y_{t-1} -> h_t); everywhere else the steps are independent.

Layering (as for the Elman layers, _layer.py):
    JordanRNN                  argument checks, parameters, modes, lengths, tape      (this file)
    _run_forward/_run_backward one whole sequence on (T, B, .) arrays                 (subclass)
        compiled: fastrnn.jordan -> fastrnn._kernels (GIL released) -> csrc/jordan.h (C++, BLAS, OpenMP)
        reference: fastrnn.reference_jordan (NumPy, straight from the equations)

Parameters (torch-style names and init, uniform(+-1/sqrt(hidden_size)) from ``seed``): weight_ih (H, I),
weight_oh (H, O), bias_h (H,), weight_ho (O, H), bias_o (O,) (no biases with bias=False). ``train()`` /
``eval()`` exist for symmetry with the other layers; nothing depends on them (there is no dropout, and
the feeding regime is chosen per call).

Variable lengths: padded inputs and targets are zeroed before the kernels run (whatever they held,
NaN included), the whole padded batch is computed, outputs past each length are set to zero and
their gradients are ignored; padded steps come after every valid one, so they never reach a valid
step (the network is causal).
"""
import threading

import numpy as np

from . import _validation as V
from ._grad_mode import is_grad_enabled
from ._layer import ParameterHolder, _Arrays, _positive_int

ACTIVATIONS = ("tanh", "relu")
OUTPUTS = ("linear", "softmax")
FEEDBACKS = ("soft", "sample", "argmax")


class _JordanTape:
    """What one forward leaves for backward (time-major arrays)."""

    def __init__(self, **fields):
        self.__dict__.update(fields)


class JordanLayer(ParameterHolder):
    """Base of the compiled and the reference JordanRNN; subclasses run the sequence."""

    _TRANSIENT = ("_lock", "_tape")

    def _init_transients(self):
        self._tape = None
        self._lock = threading.RLock()  # forward and backward of one layer run one at a time

    def __init__(self, input_size, hidden_size, output_size, nonlinearity="tanh", output="linear",
                 feedback="soft", bias=True, batch_first=False, dtype=np.float32, seed=None):
        self.input_size = _positive_int(input_size, "input_size")
        self.hidden_size = _positive_int(hidden_size, "hidden_size")
        self.output_size = _positive_int(output_size, "output_size")
        if nonlinearity not in ACTIVATIONS:
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        if output not in OUTPUTS:
            raise ValueError(f"output must be 'linear' or 'softmax', got {output!r}")
        if feedback not in FEEDBACKS:
            raise ValueError(f"feedback must be one of {FEEDBACKS}, got {feedback!r}")
        if output == "linear" and feedback != "soft":
            raise ValueError(f"feedback={feedback!r} needs output='softmax' (a linear output is fed back as it is)")
        self.nonlinearity, self.output, self.feedback = nonlinearity, output, feedback
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        self.dtype = V.float_dtype(dtype)
        self.training = True
        self._init_transients()

        init_seq, sampling_seq = np.random.SeedSequence(seed).spawn(2)
        self._sampling_rng = np.random.default_rng(sampling_seq)  # scheduled-sampling masks, softmax samples
        init_rng = np.random.default_rng(init_seq)
        shapes = list(self._param_shapes())
        # torch's Linear/RNN init: uniform(+-1/sqrt(fan)), fan = H for the hidden layer's rows and
        # for the output layer (whose input is h)
        bound = 1.0 / np.sqrt(self.hidden_size)
        self.params = _Arrays(self.dtype, ((name, init_rng.uniform(-bound, bound, size=shape).astype(self.dtype))
                                           for name, shape in shapes))
        self.grads = _Arrays(self.dtype, ((name, np.zeros(shape, self.dtype)) for name, shape in shapes))

    # ----------------------------------------------------------------- parameters
    def _param_shapes(self):
        I, H, O = self.input_size, self.hidden_size, self.output_size
        yield "weight_ih", (H, I)
        yield "weight_oh", (H, O)
        if self.bias:
            yield "bias_h", (H,)
        yield "weight_ho", (O, H)
        if self.bias:
            yield "bias_o", (O,)

    def _weights(self, store):
        """(w_ih, w_oh, b_h, w_ho, b_o) from params or grads; biases None without bias."""
        return tuple(store.get(k) for k in ("weight_ih", "weight_oh", "bias_h", "weight_ho", "bias_o"))

    # ----------------------------------------------------------------- argument checks
    def _time_major(self, arr):
        return arr.transpose(1, 0, *range(2, arr.ndim)) if self.batch_first else arr

    def _input(self, x):
        arr = V.real_array(x, "x")
        layout = "(batch, seq_len, input_size)" if self.batch_first else "(seq_len, batch, input_size)"
        V.check_rank(arr, 3, "x", layout)
        if arr.shape[2] != self.input_size:
            raise ValueError(f"x must have input_size={self.input_size} features in its last axis, got shape {arr.shape}")
        arr = self._time_major(arr)
        if 0 in arr.shape:
            raise ValueError(f"x must have at least one time step and one sequence, got shape {arr.shape}")
        T, B, _ = arr.shape
        V.check_blas_size(T * B, max(self.input_size, self.hidden_size, self.output_size), "x (seq_len * batch rows)")
        return arr

    def _targets(self, targets, T, B):
        """Targets as a private (T, B, O) time-major array of the layer's dtype. Softmax layers also take
        class indices, (T, B) integers in 0..O-1 (batch-major (B, T) with batch_first), made one-hot."""
        O = self.output_size
        arr = V.real_array(targets, "teacher_forcing")
        expected = (B, T, O) if self.batch_first else (T, B, O)
        if self.output == "softmax" and arr.ndim == 2:
            if arr.dtype.kind not in "iu":
                raise TypeError(f"teacher_forcing class indices must be integers, got dtype {arr.dtype}")
            V.check_shape(arr, expected[:2], "teacher_forcing (class indices)")
            if arr.size and (arr.min() < 0 or arr.max() >= O):
                raise ValueError(f"teacher_forcing class indices must lie in 0..{O - 1}, "
                                 f"got values from {arr.min()} to {arr.max()}")
            idx = self._time_major(arr)
            return np.eye(O, dtype=self.dtype)[idx]
        if arr.ndim != 3:
            what = " or (seq_len, batch) class indices" if self.output == "softmax" else ""
            raise ValueError(f"teacher_forcing must have shape {expected}{what}, got {arr.shape}")
        V.check_shape(arr, expected, "teacher_forcing")
        return np.array(self._time_major(arr), dtype=self.dtype, order="C")  # always a private copy

    def _probability(self, p):
        if isinstance(p, (bool, np.bool_)) or not isinstance(p, (int, float, np.integer, np.floating)):
            raise TypeError(f"p must be a number in [0, 1], got {type(p).__name__}")
        if not 0.0 <= float(p) <= 1.0:
            raise ValueError(f"p must lie in [0, 1], got {p}")
        return float(p)

    def _own_mask(self, feed_own, T, B):
        arr = np.asarray(feed_own)
        if arr.dtype.kind not in "biu":
            raise TypeError(f"feed_own must be a boolean (or 0/1) array, got dtype {arr.dtype}")
        expected = (B, T) if self.batch_first else (T, B)
        V.check_shape(arr, expected, "feed_own")
        return np.ascontiguousarray(self._time_major(arr) != 0)

    # ----------------------------------------------------------------- forward
    def __call__(self, x, teacher_forcing=None, lengths=None, **kwargs):
        return self.forward(x, teacher_forcing, lengths, **kwargs)

    def forward(self, x, teacher_forcing=None, lengths=None, *, p=None, feed_own=None, y0=None):
        """Run the whole sequence; returns the outputs o, (T, B, output_size) ((B, T, O) with batch_first).

        x                (T, B, input_size)
        teacher_forcing  None: free running (the model's own outputs are fed back, open loop).
                         Targets (T, B, output_size) (for softmax also (T, B) class indices): the
                         targets are fed back shifted by one step, y_{t-1} = target_{t-1}; the last
                         step's target is never fed back.
        lengths          (B,) ints in 1..T: outputs past each length are zero and get no gradient.
        p                scheduled sampling: with targets, feed back the model's own output instead of
                         the target with probability p, drawn per (t, b) (default 0: pure teacher
                         forcing, parallel over time). Without targets only p=1 (the default) is allowed.
        feed_own         (T, B) booleans: where to feed back the model's own output (overrides p; its
                         t = 0 row is ignored: step 0 always reads y0). Needs targets.
        y0               (B, output_size): the fed-back output before step 0 (default zeros).

        Random draws (the Bernoulli(p) mask, softmax samples) come from the layer's generator, seeded
        by ``seed``: the same seed and call sequence give the same results.
        """
        with self._lock:
            return self._forward(x, teacher_forcing, lengths, p, feed_own, y0)

    def _forward(self, x, teacher_forcing, lengths, p, feed_own, y0):
        given = x
        x = self._input(x)
        T, B, _ = x.shape
        O = self.output_size
        targets = None if teacher_forcing is None else self._targets(teacher_forcing, T, B)
        if targets is None:
            if feed_own is not None:
                raise ValueError("feed_own needs teacher_forcing targets (without them every step is free running)")
            if p is not None and self._probability(p) != 1.0:
                raise ValueError(f"p={p} < 1 needs teacher_forcing targets to feed back (free running is p=1)")
        if lengths is not None:
            lengths = V.as_lengths(lengths, B, T)
            if np.all(lengths == T):
                lengths = None
        if y0 is None:
            y0 = np.zeros((B, O), self.dtype)
        else:
            y0 = V.as_real_array(y0, "y0", self.dtype)
            V.check_shape(y0, (B, O), "y0")

        # where the model's own output is fed back: None = nowhere (teacher forcing, parallel over time)
        if targets is None:
            own = np.ones((T, B), bool)
        elif feed_own is not None:
            own = self._own_mask(feed_own, T, B)
        else:
            prob = 0.0 if p is None else self._probability(p)
            own = self._sampling_rng.random((T, B)) < prob if prob > 0 else None
        if own is not None:
            own[0] = False  # step 0 reads y0
            if targets is not None and not own.any():
                own = None
        uniforms = None
        if self.feedback == "sample" and (own is not None):
            uniforms = self._sampling_rng.random((T, B)).astype(self.dtype)

        keep_tape = is_grad_enabled()
        padded = None
        if lengths is not None:
            padded = np.arange(T)[:, None] >= lengths[None, :]
        if padded is not None or (keep_tape and np.may_share_memory(x, given)) or not x.flags.c_contiguous \
                or x.dtype != self.dtype:
            x = np.array(x, dtype=self.dtype, order="C")  # private: backward sees x as it is now
        if padded is not None:
            x[padded] = 0
            if targets is not None:
                targets[padded] = 0
        if targets is not None and own is None and T > 0:
            feed = np.empty((T, B, O), self.dtype)  # teacher forcing: the fed values are known up front
            feed[0] = y0
            feed[1:] = targets[:-1]
            targets = feed

        weights = self._weights(self.params)
        out, saved = self._run_forward(x, targets, own, uniforms, y0, weights, keep_tape)
        if padded is not None:
            out[padded] = 0
            if saved is not None:
                for name in ("h", "y_prev", "probs"):
                    if saved.get(name) is not None:
                        saved[name][padded] = 0
        self._tape = None
        if keep_tape:
            self._tape = _JordanTape(x=x, weights=tuple(None if w is None else w.copy() for w in weights),
                                     own=own, padded=padded, batch_first=self.batch_first, saved=saved)
        return out.transpose(1, 0, 2) if self.batch_first else out

    # ----------------------------------------------------------------- backward
    def backward(self, d_outputs=None):
        """Gradients through the most recent forward. Takes dL/do (the outputs' shape; None = zeros),
        ADDS the parameter gradients into ``grads`` and returns (dx, dy0): dL/dx and dL/dy0.

        Teacher forcing: every step is independent, so backward is a handful of GEMMs over all
        (t, b) at once (no time loop). Where the model's own soft output was fed back (free running,
        scheduled sampling), the gradient also flows back through it (BPTT). Gradients with respect
        to the targets are not computed."""
        with self._lock:
            return self._backward(d_outputs)

    def _backward(self, d_outputs):
        tape = self._tape
        if tape is None:
            raise RuntimeError(
                "backward needs a forward pass that recorded a tape: call forward first (outside no_grad); "
                "each forward allows one backward")
        T, B, _ = tape.x.shape
        O = self.output_size
        if d_outputs is None:
            d_out = np.zeros((T, B, O), self.dtype)
        else:
            arr = V.as_real_array(d_outputs, "d_outputs", self.dtype)
            V.check_shape(arr, (B, T, O) if tape.batch_first else (T, B, O), "d_outputs")
            d_out = np.array(arr.transpose(1, 0, 2) if tape.batch_first else arr, order="C")  # private copy
        self._tape = None
        if tape.padded is not None:
            d_out[tape.padded] = 0
        dx, dy0 = self._run_backward(tape, d_out, self._weights(self.grads))
        return (dx.transpose(1, 0, 2) if tape.batch_first else dx), dy0

    # ----------------------------------------------------------------- engine (subclasses)
    def _run_forward(self, x, feed, own, uniforms, y0, weights, keep_tape):
        """x (T, B, I) C-contiguous; feed: None (free running), the (T, B, O) fed values when own is None
        (teacher forcing: feed[t] = y_{t-1}), else the (T, B, O) targets; own (T, B) bool or None;
        uniforms (T, B) for feedback="sample"; y0 (B, O). Returns (out (T, B, O), saved dict or None)."""
        raise NotImplementedError

    def _run_backward(self, tape, d_out, grads):
        """d_out (T, B, O) private, zero past lengths; grads: arrays to ADD into. Returns (dx, dy0)."""
        raise NotImplementedError

    def __repr__(self):
        return (f"{type(self).__module__}.{type(self).__name__}({self.input_size}, {self.hidden_size}, "
                f"{self.output_size}, nonlinearity={self.nonlinearity!r}, output={self.output!r}, "
                f"feedback={self.feedback!r}, bias={self.bias}, batch_first={self.batch_first}, "
                f"dtype={self.dtype.name})")


def make_jordan_class(base, namespace_module):
    class JordanRNN(base):
        __doc__ = (f"Jordan (output-recurrent) network ({namespace_module}): h_t = act(W_ih x_t + W_oh y_(t-1) + b_h), "
                   "o_t = W_ho h_t + b_o, y the fed-back output (targets under teacher forcing, the model's own "
                   "output when free running, a Bernoulli(p) mix of both with scheduled sampling). "
                   "See fastrnn._jordan_layer for the full contract.")

    JordanRNN.__module__ = namespace_module
    JordanRNN.__qualname__ = "JordanRNN"
    return JordanRNN
