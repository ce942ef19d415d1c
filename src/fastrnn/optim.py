"""Optimizers (SGD, Adam) and global gradient-norm clipping.

They work on anything with ``params`` and ``grads`` dicts (fastrnn layers, ``fastrnn.nn`` modules,
``fastrnn.models``), or a list of such, and update the parameter arrays IN PLACE: the arrays a
layer's kernels read are the ones changed. The formulas are torch.optim's, so runs can be compared
step for step.

    opt = Adam(model, lr=2e-3)
    model.zero_grad(); ...forward/backward...; clip_grad_norm(model, 1.0); opt.step()
"""
from collections import OrderedDict
from collections.abc import Mapping

import numpy as np

__all__ = ["SGD", "Adam", "clip_grad_norm"]


def _sources(modules, name="modules"):
    """A module (anything with params and grads) or a list/tuple of them, as a list."""
    items = list(modules) if isinstance(modules, (list, tuple)) else [modules]
    if not items:
        raise ValueError(f"{name} must not be empty")
    for i, m in enumerate(items):
        if not (hasattr(m, "params") and hasattr(m, "grads")):
            raise TypeError(f"{name}[{i}] must have .params and .grads (a layer, module or model), "
                            f"got {type(m).__name__}")
    return items


def _named_pairs(sources):
    """(key, param, grad) over every parameter; keys get an 'i.' prefix when there are several sources.
    Read afresh on every step, so a parameter array replaced in a layer is still the one updated."""
    several = len(sources) > 1
    for i, src in enumerate(sources):
        params, grads = src.params, src.grads
        for key, p in params.items():
            yield (f"{i}.{key}" if several else key), p, grads[key]


def _check_hyper(value, name, low=0.0, high=None, low_open=False):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    value = float(value)
    bad_low = value <= low if low_open else value < low
    if bad_low or (high is not None and value >= high) or not np.isfinite(value):
        bounds = f"{'(' if low_open else '['}{low}, {high if high is not None else 'inf'})"
        raise ValueError(f"{name} must be in {bounds}, got {value}")
    return value


class Optimizer:
    """Base: holds the sources and per-parameter state buffers (created up front, so state_dict is complete)."""

    _buffers = ()  # names of the per-parameter state arrays

    def __init__(self, modules, lr):
        self._sources = _sources(modules)
        self.lr = _check_hyper(lr, "lr", low_open=True)
        self.state = OrderedDict()
        for key, p, _ in _named_pairs(self._sources):
            self.state[key] = {b: np.zeros_like(p) for b in self._buffers}
        self.steps = 0

    def zero_grad(self):
        for _, _, g in _named_pairs(self._sources):
            g.fill(0)

    def step(self):
        for key, p, g in _named_pairs(self._sources):
            state = self.state.get(key)
            if state is None or any(buf.shape != p.shape for buf in state.values()):
                raise RuntimeError(f"parameter {key} is not the one this optimizer was built for "
                                   "(new key or new shape): build a new optimizer")
            self._update(p, g, state)
        self.steps += 1

    def _update(self, p, g, state):
        raise NotImplementedError

    # --- checkpoints: flat {name: array}, so they go into the same .npz as the model
    def state_dict(self):
        out = OrderedDict(steps=np.array(self.steps, np.int64))
        for key, bufs in self.state.items():
            for b, arr in bufs.items():
                out[f"{b}.{key}"] = arr.copy()
        return out

    def load_state_dict(self, state_dict):
        """Every key and shape is checked before anything is written."""
        expected = self.state_dict()
        keys = set(state_dict.keys())
        missing, extra = sorted(set(expected) - keys), sorted(keys - set(expected))
        if missing or extra:
            raise KeyError(f"optimizer load_state_dict: missing keys {missing}, unexpected keys {extra}")
        for name, target in expected.items():
            arr = np.asarray(state_dict[name])
            if arr.shape != target.shape or arr.dtype.kind not in "fiu":
                raise ValueError(f"optimizer load_state_dict: {name} must be a real array of shape "
                                 f"{target.shape}, got dtype {arr.dtype}, shape {arr.shape}")
        self.steps = int(state_dict["steps"])
        for key, bufs in self.state.items():
            for b, arr in bufs.items():
                arr[...] = state_dict[f"{b}.{key}"]


class SGD(Optimizer):
    """torch.optim.SGD: g += weight_decay*p; buf = momentum*buf + g; p -= lr*(g + momentum*buf if nesterov else buf)."""

    def __init__(self, modules, lr, momentum=0.0, weight_decay=0.0, nesterov=False):
        self.momentum = _check_hyper(momentum, "momentum", high=1.0)
        self.weight_decay = _check_hyper(weight_decay, "weight_decay")
        self.nesterov = bool(nesterov)
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0")
        self._buffers = ("momentum_buffer",) if self.momentum else ()
        super().__init__(modules, lr)

    def _update(self, p, g, state):
        t = p.dtype.type
        if self.weight_decay:
            g = g + t(self.weight_decay) * p  # a new array: the gradient itself stays as backward left it
        if self.momentum:
            buf = state["momentum_buffer"]
            buf *= t(self.momentum)
            buf += g  # first step: buf was 0, so buf = g, as torch
            g = g + t(self.momentum) * buf if self.nesterov else buf
        p -= t(self.lr) * g


class Adam(Optimizer):
    """torch.optim.Adam (weight_decay is L2 added to the gradient, as torch's Adam, not AdamW)."""

    _buffers = ("exp_avg", "exp_avg_sq")

    def __init__(self, modules, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        try:
            b1, b2 = betas
        except (TypeError, ValueError):
            raise TypeError(f"betas must be a pair (beta1, beta2), got {betas!r}") from None
        self.beta1 = _check_hyper(b1, "betas[0]", high=1.0)
        self.beta2 = _check_hyper(b2, "betas[1]", high=1.0)
        self.eps = _check_hyper(eps, "eps")
        self.weight_decay = _check_hyper(weight_decay, "weight_decay")
        super().__init__(modules, lr)

    def step(self):
        # bias corrections depend on the step count, which every parameter shares
        n = self.steps + 1
        self._step_size = self.lr / (1 - self.beta1 ** n)
        self._sqrt_bc2 = np.sqrt(1 - self.beta2 ** n)
        super().step()

    def _update(self, p, g, state):
        t = p.dtype.type
        if self.weight_decay:
            g = g + t(self.weight_decay) * p
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m *= t(self.beta1)
        m += t(1 - self.beta1) * g
        v *= t(self.beta2)
        v += t(1 - self.beta2) * (g * g)
        denom = np.sqrt(v)
        denom /= t(self._sqrt_bc2)
        denom += t(self.eps)
        np.divide(m, denom, out=denom)
        denom *= t(self._step_size)
        p -= denom


def _grad_arrays(obj, name):
    """Gradient arrays of a module, a dict of arrays, or a list/tuple mixing them."""
    if hasattr(obj, "grads"):
        return list(obj.grads.values())
    if isinstance(obj, Mapping):
        out = []
        for key, g in obj.items():
            if not isinstance(g, np.ndarray) or g.dtype.kind != "f":
                raise TypeError(f"{name}[{key!r}] must be a float ndarray (updated in place), "
                                f"got {type(g).__name__}")
            out.append(g)
        return out
    if isinstance(obj, (list, tuple)):
        return [g for i, item in enumerate(obj) for g in _grad_arrays(item, f"{name}[{i}]")]
    raise TypeError(f"{name} must be a module (with .grads), a dict of gradient arrays, or a list of them; "
                    f"got {type(obj).__name__}")


def clip_grad_norm(modules_or_grad_dicts, max_norm):
    """Scale all gradients together so their global L2 norm is at most ``max_norm`` (torch's
    clip_grad_norm_: coefficient max_norm / (norm + 1e-6), applied only when below 1).

    Returns the norm before clipping (inf or nan if a gradient holds them; they are then left as they are).
    """
    max_norm = _check_hyper(max_norm, "max_norm", low_open=True)
    grads = _grad_arrays(modules_or_grad_dicts, "modules_or_grad_dicts")
    # one BLAS dot per array (blocked sums in the gradient's dtype, as torch), added up in float64
    total = float(np.sqrt(sum(float(np.dot(g.ravel(), g.ravel())) for g in grads)))
    if not np.isfinite(total):
        return total
    coef = max_norm / (total + 1e-6)
    if coef < 1.0:
        for g in grads:
            g *= g.dtype.type(coef)
    return total
