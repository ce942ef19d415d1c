"""The pieces around the recurrent layers: Embedding, Linear (per time step), the losses, and the
Module base that the models in ``fastrnn.models`` are built from.

Same conventions as the layers (DESIGN.md §1): ``forward`` keeps a tape unless ``fastrnn.no_grad()``
is active, ``backward`` uses it once, ADDS parameter gradients into ``grads`` (same keys as
``params``, the live arrays) and returns the gradient with respect to the input.

    emb, rnn, head = Embedding(V, E), fastrnn.LSTM(E, H, batch_first=True), Linear(H, V)
    logits = head(rnn(emb(tokens))[0])            # tokens (B, T) -> logits (B, T, V)
    loss = ce.forward(logits, targets, mask)      # mean over the unmasked positions
    dy = head.backward(ce.backward()); emb.backward(rnn.backward(dy)[0])
"""
from collections import OrderedDict

import numpy as np

from . import _kernels
from . import _validation as V
from ._grad_mode import is_grad_enabled

__all__ = ["Module", "Embedding", "Linear", "CrossEntropyLoss", "MSELoss"]


def _matmul(a, b, trans_a=False, trans_b=False, out=None, accumulate=False):
    """op(a) @ op(b) on fastrnn's threads (the kernels' GEMM tiling) rather than NumPy's BLAS pool,
    which would spin against them on the same cores; into ``out`` (added when ``accumulate``)."""
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    m = a.shape[1] if trans_a else a.shape[0]
    n = b.shape[0] if trans_b else b.shape[1]
    for arr, name in ((a, "a"), (b, "b")):
        V.check_blas_size(arr.shape[0], arr.shape[1], name)
    if out is None:
        out = np.empty((m, n), a.dtype)
    _kernels.gemm(a, b, out, trans_a, trans_b, 1.0, 1.0 if accumulate else 0.0)
    return out


def _size(value, name):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


def _int_array(value, name):
    arr = np.asarray(value)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integers, got dtype {arr.dtype}")
    return arr


def _no_tape(owner):
    return RuntimeError(f"{owner}.backward needs a forward pass that recorded a tape: call forward first "
                        "(outside no_grad); each forward allows one backward")


class Module:
    """Anything trainable: ``params`` and ``grads`` map the same keys to live arrays.

    A leaf (Embedding, Linear) fills ``_params`` / ``_grads``; a model registers children with
    ``_add(name, child)`` (children may be fastrnn layers too: they follow the same protocol), and
    its ``params`` are the children's, keyed ``"<child>.<key>"`` like torch's state dicts.
    """

    def __init__(self, dtype=np.float32):
        self.dtype = V.float_dtype(dtype)
        self.training = True
        self._params = OrderedDict()
        self._grads = OrderedDict()
        self._children = OrderedDict()

    def _add_param(self, name, value):
        self._params[name] = np.ascontiguousarray(value, dtype=self.dtype)
        self._grads[name] = np.zeros_like(self._params[name])

    def _add(self, name, child):
        self._children[name] = child
        setattr(self, name, child)
        return child

    def _collect(self, which):
        if not self._children:
            return getattr(self, "_" + which)
        out = OrderedDict(getattr(self, "_" + which))
        for name, child in self._children.items():
            for key, arr in getattr(child, which).items():
                out[f"{name}.{key}"] = arr
        return out

    @property
    def params(self):
        """Live parameter arrays (optimizers update them in place)."""
        return self._collect("params")

    @property
    def grads(self):
        """Live gradient arrays, same keys as ``params``; backward adds into them."""
        return self._collect("grads")

    def zero_grad(self):
        for g in self.grads.values():
            g.fill(0)

    def num_parameters(self):
        return int(sum(p.size for p in self.params.values()))

    def train(self, mode=True):
        self.training = bool(mode)
        for child in self._children.values():
            child.train(mode)
        return self

    def eval(self):
        return self.train(False)

    def state_dict(self):
        return OrderedDict((k, v.copy()) for k, v in self.params.items())

    def load_state_dict(self, state_dict):
        """Copy weights in, in place; every key, shape and dtype is checked before anything is written."""
        V.load_arrays_in_place(self.params, state_dict)

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def __getstate__(self):
        """copy / deepcopy / pickle: without the last forward's tape, like the layers, so a model's copy
        raises on a backward before its own forward instead of adding its head's gradients first."""
        state = self.__dict__.copy()
        if "_tape" in state:
            state["_tape"] = None
        return state


class Embedding(Module):
    """Lookup table: integer indices of any shape (...) -> vectors (..., embedding_dim).

    weight (num_embeddings, embedding_dim), initialised N(0, 1) like torch.
    """

    def __init__(self, num_embeddings, embedding_dim, dtype=np.float32, seed=None):
        super().__init__(dtype)
        self.num_embeddings = _size(num_embeddings, "num_embeddings")
        self.embedding_dim = _size(embedding_dim, "embedding_dim")
        rng = np.random.default_rng(seed)
        self._add_param("weight", rng.standard_normal((self.num_embeddings, self.embedding_dim)))
        self._tape = None

    def forward(self, indices):
        """indices (...) ints in [0, num_embeddings) -> (..., embedding_dim)."""
        idx = _int_array(indices, "indices")
        if idx.size and (idx.min() < 0 or idx.max() >= self.num_embeddings):
            raise ValueError(f"indices must lie in 0..{self.num_embeddings - 1}, "
                             f"got values from {idx.min()} to {idx.max()}")
        self._tape = idx if is_grad_enabled() else None
        return self._params["weight"][idx]

    def backward(self, dout):
        """dout (..., embedding_dim). Adds into grads['weight']; returns None (indices have no gradient)."""
        idx, self._tape = self._tape, None
        if idx is None:
            raise _no_tape("Embedding")
        dout = V.as_real_array(dout, "dout", self.dtype)
        V.check_shape(dout, idx.shape + (self.embedding_dim,), "dout")
        flat = idx.reshape(-1)
        if flat.size == 0:
            return None
        # the same token sits at many positions: sum its rows first (sorting groups them; ~8x faster
        # than np.add.at, and the summation order is fixed), then add each distinct row once
        order = np.argsort(flat, kind="stable")
        tokens = flat[order]
        starts = np.flatnonzero(np.r_[True, tokens[1:] != tokens[:-1]])
        sums = np.add.reduceat(dout.reshape(-1, self.embedding_dim)[order], starts, axis=0)
        self._grads["weight"][tokens[starts]] += sums
        return None


class Linear(Module):
    """y = x W^T + b over the last axis, so (B, T, in) -> (B, T, out) applies it at every time step.

    weight (out_features, in_features), bias (out_features,), both uniform(+-1/sqrt(in_features)) like torch.
    """

    def __init__(self, in_features, out_features, bias=True, dtype=np.float32, seed=None):
        super().__init__(dtype)
        self.in_features = _size(in_features, "in_features")
        self.out_features = _size(out_features, "out_features")
        rng = np.random.default_rng(seed)
        bound = 1.0 / np.sqrt(self.in_features)
        self._add_param("weight", rng.uniform(-bound, bound, (self.out_features, self.in_features)))
        if bias:
            self._add_param("bias", rng.uniform(-bound, bound, self.out_features))
        self._tape = None

    def forward(self, x):
        """x (..., in_features) -> (..., out_features)."""
        x = V.as_real_array(x, "x", self.dtype)
        if x.ndim < 1 or x.shape[-1] != self.in_features:
            raise ValueError(f"x must have in_features={self.in_features} in its last axis, got shape {x.shape}")
        x2 = np.ascontiguousarray(x.reshape(-1, self.in_features))
        y2 = _matmul(x2, self._params["weight"], trans_b=True)
        if "bias" in self._params:
            y2 += self._params["bias"]
        self._tape = x2 if is_grad_enabled() else None
        self._lead_shape = x.shape[:-1]
        return y2.reshape(x.shape[:-1] + (self.out_features,))

    def backward(self, dy):
        """dy (..., out_features). Adds into grads; returns dx (..., in_features)."""
        x2, self._tape = self._tape, None
        if x2 is None:
            raise _no_tape("Linear")
        dy = V.as_real_array(dy, "dy", self.dtype)
        V.check_shape(dy, self._lead_shape + (self.out_features,), "dy")
        dy2 = np.ascontiguousarray(dy.reshape(-1, self.out_features))
        _matmul(dy2, x2, trans_a=True, out=self._grads["weight"], accumulate=True)
        if "bias" in self._grads:
            self._grads["bias"] += dy2.sum(axis=0)
        return _matmul(dy2, self._params["weight"]).reshape(self._lead_shape + (self.in_features,))


def _check_mask(mask, shape, name="mask"):
    """A mask of ``shape`` (bool or 0/1 numbers) as float64 weights, or None."""
    if mask is None:
        return None
    m = np.asarray(mask)
    if m.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be bool or numeric, got dtype {m.dtype}")
    try:
        return np.broadcast_to(m, shape).astype(np.float64)
    except ValueError:
        raise ValueError(f"{name} must have shape {shape} (or broadcast to it), got {m.shape}") from None


def _reduction(value):
    if value not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {value!r}")
    return value


class CrossEntropyLoss:
    """Softmax cross-entropy (in nats) over the last axis of logits, with an optional mask.

    forward(logits (..., C), targets (...) ints, mask (...) or None) -> float: the mean of
    -log softmax(logits)[target] over the positions where mask is true (padding contributes
    nothing, and its targets are never read), or their sum with reduction='sum'.
    backward(grad=1.0) -> dlogits (..., C).
    """

    def __init__(self, reduction="mean"):
        self.reduction = _reduction(reduction)
        self._tape = None

    def __call__(self, logits, targets, mask=None):
        return self.forward(logits, targets, mask)

    def forward(self, logits, targets, mask=None):
        logits = np.asarray(logits)
        if logits.dtype.kind != "f" or logits.ndim < 1:
            raise TypeError(f"logits must be a float array (..., num_classes), got dtype {logits.dtype}, "
                            f"shape {logits.shape}")
        C = logits.shape[-1]
        targets = _int_array(targets, "targets")
        V.check_shape(targets, logits.shape[:-1], "targets")
        weights = _check_mask(mask, targets.shape)
        t = targets.reshape(-1)
        w = None if weights is None else weights.reshape(-1)
        if w is not None:
            t = np.where(w != 0, t, 0)  # padded targets may hold anything (e.g. -1): never index with them
        live = t if w is None else t[w != 0]
        if live.size and (live.min() < 0 or live.max() >= C):
            raise ValueError(f"targets must lie in 0..{C - 1} where mask is set, "
                             f"got values from {live.min()} to {live.max()}")
        z = logits.reshape(-1, C)
        shifted = z - z.max(axis=1, keepdims=True)  # log-sum-exp trick: exp never overflows
        exp = np.exp(shifted)
        sum_exp = exp.sum(axis=1, keepdims=True)
        rows = np.arange(z.shape[0])
        nll = np.log(sum_exp[:, 0]).astype(np.float64) - shifted[rows, t]
        count = float(z.shape[0]) if w is None else float(w.sum())
        scale = 1.0 if self.reduction == "sum" else 1.0 / max(count, 1.0)
        total = float(nll.sum()) if w is None else float(nll @ w)
        if is_grad_enabled():
            self._tape = (exp / sum_exp, t, w, scale, logits.shape)
        return total * scale

    def backward(self, grad=1.0):
        """d loss / d logits (softmax - one_hot, times the mask, over the count when mean)."""
        if self._tape is None:
            raise _no_tape("CrossEntropyLoss")
        probs, t, w, scale, shape = self._tape
        self._tape = None
        probs[np.arange(probs.shape[0]), t] -= 1
        factor = grad * scale
        if w is None:
            probs *= probs.dtype.type(factor)
        else:
            probs *= (w * factor).astype(probs.dtype)[:, None]
        return probs.reshape(shape)


class MSELoss:
    """Mean squared error: forward(pred, target, mask=None) -> float; backward(grad=1.0) -> dpred.

    With a mask (broadcast to pred's shape) the mean runs over the unmasked elements only.
    """

    def __init__(self, reduction="mean"):
        self.reduction = _reduction(reduction)
        self._tape = None

    def __call__(self, pred, target, mask=None):
        return self.forward(pred, target, mask)

    def forward(self, pred, target, mask=None):
        pred = np.asarray(pred)
        if pred.dtype.kind != "f":
            raise TypeError(f"pred must be a float array, got dtype {pred.dtype}")
        target = V.as_real_array(target, "target", pred.dtype)
        V.check_shape(target, pred.shape, "target")
        weights = _check_mask(mask, pred.shape)
        diff = pred - target
        sq = diff.astype(np.float64) ** 2
        if weights is None:
            total, count = float(sq.sum()), float(sq.size)
        else:
            total, count = float((sq * weights).sum()), float(weights.sum())
        scale = 1.0 if self.reduction == "sum" else 1.0 / max(count, 1.0)
        if is_grad_enabled():
            self._tape = (diff, weights, scale)
        return total * scale

    def backward(self, grad=1.0):
        if self._tape is None:
            raise _no_tape("MSELoss")
        diff, weights, scale = self._tape
        self._tape = None
        d = diff * diff.dtype.type(2.0 * grad * scale)
        if weights is not None:
            d *= weights.astype(diff.dtype)
        return d
