"""fastrnn.torch: drop-in ``torch.nn.RNN`` / ``LSTM`` / ``GRU`` whose forward and BPTT run fastrnn's kernels.

    import fastrnn.torch as frt
    lstm = frt.LSTM(input_size, hidden_size, num_layers=2, batch_first=True)   # was torch.nn.LSTM
    out, (h_n, c_n) = lstm(x)                                                   # same call, same results
    loss.backward()                                                             # BPTT in fastrnn's kernels

Each class IS a subclass of its ``torch.nn`` counterpart: the constructor, the ``nn.Parameter``s (names,
shapes, initialisation), ``state_dict``/``load_state_dict`` (both ways with ``torch.nn`` modules),
``repr``, ``.to()``, pickling and the call signature (tensor or ``PackedSequence`` input, ``hx``,
unbatched 2-D input) are torch's own. Only the computation differs.

Layering:
    LSTM / GRU / RNN (this file)    torch's argument handling and checks; PackedSequence <-> padded + lengths
    _FastRNNFunction                a torch.autograd.Function: tensors <-> NumPy views; each call's fastrnn
                                    tape lives in its autograd node (several forwards may precede a backward)
    fastrnn.LSTM / GRU / RNN        the NumPy API (time-major, ``lengths``) over the compiled kernels

The fast path runs for CPU float32/float64 tensors. Everything else -- CUDA or other devices, float16,
bfloat16, input and weight dtypes that differ, autocast, TorchScript, ``torch.jit.trace``/ONNX export,
torch.func transforms, code traced by ``torch.compile``/``torch.export`` -- runs the inherited
``torch.nn`` implementation with the same Parameters (so it is never wrong, only not faster).

Differences from ``torch.nn`` (documented in docs/torch_dropin.md):
  * dropout masks (train mode, num_layers > 1) are drawn by fastrnn from a seed that each call takes from
    torch's default generator: same distribution as torch's masks, different values; reproducible under
    torch.manual_seed, and restored with torch's RNG state (torch.utils.checkpoint recomputes the same masks);
  * no double backward (gradients of gradients); ``retain_graph=True`` works (the tape is copied for
    that backward, since the kernels reuse its memory for gate gradients);
  * ``torch.compile`` graph-breaks around these modules (as it does for torch.nn's) and runs them eagerly
    (fullgraph=True therefore fails); the rest of a model compiles as usual.
"""
import copy
import functools
import sys
import threading

import numpy as np

try:
    import torch
except ImportError as error:  # torch is an optional dependency of fastrnn
    raise ImportError("fastrnn.torch needs PyTorch: pip install 'fastrnn[torch]' (or pip install torch)") from error
from torch.autograd.function import once_differentiable
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from . import _grad_mode
from . import layers as _layers

__all__ = ["RNN", "LSTM", "GRU"]

_FAST_DTYPES = {torch.float32: np.float32, torch.float64: np.float64}
_PLAIN_TENSOR_TYPES = (torch.Tensor, torch.nn.Parameter)
_is_compiling = getattr(torch.compiler, "is_compiling", lambda: False)  # torch < 2.3 has none
_functorch_wrapped = getattr(getattr(torch._C, "_functorch", None), "is_functorch_wrapped_tensor", None)


_keep_graph = getattr(getattr(torch._C, "_autograd", None), "_get_current_graph_task_keep_graph", None)


def _graph_kept():
    """Whether the running backward was called with retain_graph=True (True when torch cannot say)."""
    if _keep_graph is None:
        return True
    try:
        return bool(_keep_graph())
    except RuntimeError:
        return True


def _autocast_enabled():
    any_enabled = getattr(torch._C, "_is_any_autocast_enabled", None)
    if any_enabled is not None:
        return any_enabled()
    return torch.is_autocast_enabled() or torch.is_autocast_cpu_enabled()


def _plain_cpu_float(t):
    """A tensor the kernels can read through a NumPy view: a plain strided CPU float32/float64 tensor
    (no tensor subclass such as FakeTensor/DTensor, no torch.func wrapper)."""
    return (type(t) in _PLAIN_TENSOR_TYPES and t.device.type == "cpu" and t.layout == torch.strided
            and t.dtype in _FAST_DTYPES and not t.is_nested and not (_functorch_wrapped and _functorch_wrapped(t)))


def _as_numpy(t):
    """A NumPy view of a tensor's memory (no copy); fastrnn copies only when the layout needs it."""
    if t is None:
        return None
    t = t.detach()
    if t.is_neg():
        t = t.resolve_neg()
    return t.numpy()


class _enable_fastrnn_grad:
    """fastrnn records a tape while torch needs gradients, even inside a user's ``fastrnn.no_grad()``."""

    def __enter__(self):
        self._previous = _grad_mode.is_grad_enabled()
        _grad_mode._state.enabled = True

    def __exit__(self, *exc):
        _grad_mode._state.enabled = self._previous


class _Engine:
    """Per-module state that is not a Parameter: the internal fastrnn layers (one per dtype) and a lock.
    Not copied by pickle/deepcopy (a copy starts empty and builds its own layers on first use)."""

    def __init__(self):
        self.layers = {}
        self.lock = threading.Lock()

    def __reduce__(self):
        return (_Engine, ())


_ENGINE_LOCK = threading.Lock()


class _Call:
    """One forward call's view of the internal layer: which weights, which lengths, which mode."""

    def __init__(self, engine, layer, names, lengths, is_lstm, training, dropout, dropout_seed):
        self.engine, self.layer, self.names = engine, layer, names
        self.lengths, self.is_lstm, self.training, self.dropout = lengths, is_lstm, training, dropout
        self.dropout_seed = dropout_seed

    def forward(self, x, h0, c0, weights, keep_tape):
        """x (T, B, In) time-major tensor; h0/c0 tensors or None. Returns (y, h_n, c_n or None) as
        tensors sharing memory with fastrnn's output arrays, and the tape (None unless keep_tape)."""
        layer = self.layer
        x_np = _as_numpy(x)
        hx = None if h0 is None else ((_as_numpy(h0), _as_numpy(c0)) if self.is_lstm else _as_numpy(h0))
        with self.engine.lock:
            for name, w in zip(self.names, weights):  # the values as of this call (optimizer steps included)
                layer.params[name] = _as_numpy(w)  # checked; shares memory when contiguous
            layer.dropout = self.dropout
            layer.train(self.training)
            if self.dropout_seed is not None:
                layer._dropout_rng = np.random.default_rng(self.dropout_seed)
            if keep_tape:
                with _enable_fastrnn_grad():
                    y, hn = layer.forward(x_np, hx, self.lengths)
            else:
                with _grad_mode.no_grad():
                    y, hn = layer.forward(x_np, hx, self.lengths)
            # the tape belongs to this call's autograd node, not to the layer (the module may run again
            # before this graph's backward: truncated BPTT, shared encoders, several micro-batches)
            tape, layer._tape = layer._tape, None
        h, c = hn if self.is_lstm else (hn, None)
        return torch.from_numpy(y), torch.from_numpy(h), None if c is None else torch.from_numpy(c), tape

    def backward(self, tape, dy, dh, dc, input_grad=True):
        """BPTT through one forward's tape. Returns tensors dx (None when not ``input_grad``), dh0, dc0
        (None unless LSTM) and the parameter gradients in ``names`` order (fresh arrays, handed to torch
        without a copy)."""
        layer = self.layer
        dhn = (None if dh is None and dc is None else (_as_numpy(dh), _as_numpy(dc))) if self.is_lstm else _as_numpy(dh)
        with self.engine.lock:
            for name in self.names:
                layer.grads[name] = np.zeros(layer.grads[name].shape, layer.dtype)
            layer._tape = tape
            try:
                dx, dhx = layer.backward(_as_numpy(dy), dhn, input_grad=input_grad)
            finally:
                layer._tape = None
            grads = [torch.from_numpy(layer.grads[name]) for name in self.names]
        dh0, dc0 = dhx if self.is_lstm else (dhx, None)
        return (None if dx is None else torch.from_numpy(dx), torch.from_numpy(dh0),
                None if dc0 is None else torch.from_numpy(dc0), grads)


class _FastRNNFunction(torch.autograd.Function):
    """(x (T, B, In), h0, c0, *weights) -> (y, h_n[, c_n]) through fastrnn; backward is fastrnn's BPTT."""

    @staticmethod
    def forward(ctx, call, x, h0, c0, *weights):
        y, h, c, tape = call.forward(x, h0, c0, weights, keep_tape=True)
        ctx.call, ctx.tape = call, tape
        ctx.hx_given = h0 is not None
        ctx.set_materialize_grads(False)  # a None output gradient reaches fastrnn as None (= zeros)
        return (y, h, c) if call.is_lstm else (y, h)

    @staticmethod
    @once_differentiable
    def backward(ctx, dy, dh, dc=None):
        tape = ctx.tape
        if tape is None:
            raise RuntimeError(
                "fastrnn.torch: trying to backward through a recurrent layer's graph a second time, but the "
                "saved tape was consumed by the first backward; specify retain_graph=True on the first one")
        if _graph_kept():
            tape = copy.deepcopy(tape)  # the kernels overwrite the tape with gate gradients: keep the original
        else:
            ctx.tape = None  # freed with this backward, like torch's saved tensors
        # x's gradient only when torch wants it (an input that is data, not a layer's output, needs none)
        dx, dh0, dc0, grads = ctx.call.backward(tape, dy, dh, dc, input_grad=ctx.needs_input_grad[1])
        if not ctx.hx_given:
            dh0 = dc0 = None
        return (None, dx, dh0, dc0, *grads)


def _lazy_dynamo_disable(fn):
    """torch.compiler.disable(fn), importing torch._dynamo (about a second) only on the first call."""
    disabled = None

    @functools.wraps(fn)
    def inner(*args, **kwargs):
        nonlocal disabled
        if disabled is None:
            disabled = torch.compiler.disable(fn)
        return disabled(*args, **kwargs)

    return inner


class _FastRNNMixin:
    """The fast forward shared by RNN, LSTM and GRU (mixed in before the torch.nn class)."""

    def forward(self, input, hx=None):  # noqa: A002  (torch's name)
        # torch.compile / torch.export can only be tracing when torch._dynamo is loaded; then the kernels'
        # path (NumPy views, an opaque autograd.Function) runs with dynamo off, as a graph break: without
        # that, dynamo compiles helper frames on their own and constant-folds is_compiling() into them
        if "torch._dynamo" in sys.modules:
            return _forward_outside_dynamo(self, input, hx)
        return self._fastrnn_dispatch(input, hx)

    def _fastrnn_dispatch(self, input, hx):
        if not self._fastrnn_accepts(input, hx):
            return super().forward(input, hx)
        return self._fastrnn_forward(input, hx)

    # ------------------------------------------------------------------ when the kernels can run
    def _fastrnn_accepts(self, input, hx):
        if torch.jit.is_scripting() or torch.jit.is_tracing() or _is_compiling():
            return False  # torch's implementation is the traceable one
        packed = isinstance(input, PackedSequence)
        data = input.data if packed else input
        if not isinstance(data, torch.Tensor) or not _plain_cpu_float(data):
            return False
        if data.dim() not in ((2,) if packed else (2, 3)) or data.numel() == 0:
            return False  # torch raises its own error (or handles empty input)
        if self.input_size < 1 or self.hidden_size < 1 or (self.training and self.num_layers > 1 and self.dropout >= 1):
            return False
        self._update_flat_weights()
        if any(not isinstance(w, torch.Tensor) or not _plain_cpu_float(w) or w.dtype != data.dtype
               for w in self._flat_weights):
            return False  # torch raises the dtype mismatch, or runs what the kernels cannot
        if hx is not None:
            if self.mode == "LSTM":
                if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                    return False
                states = hx
            else:
                states = (hx,)
            state_dim = 3 if packed or data.dim() == 3 else 2
            if any(not isinstance(s, torch.Tensor) or not _plain_cpu_float(s) or s.dtype != data.dtype
                   or s.dim() != state_dim for s in states):
                return False
        return not _autocast_enabled()

    # ------------------------------------------------------------------ the fast path
    def _fastrnn_forward(self, input, hx):
        is_lstm = self.mode == "LSTM"
        packed = isinstance(input, PackedSequence)
        if packed:
            data, batch_sizes, sorted_indices, unsorted_indices = input
            self.check_input(data, batch_sizes)
            if hx is not None:
                self.check_forward_args(data, hx, batch_sizes)
            # padded, in the caller's batch order (hx is in that order too: no permutation needed)
            x, lengths = pad_packed_sequence(input)
            lengths_np = lengths.numpy()
            batched = True
        else:
            batched = input.dim() == 3
            batch_dim = 0 if self.batch_first else 1
            x = input if batched else input.unsqueeze(batch_dim)
            if hx is not None and not batched:
                hx = (hx[0].unsqueeze(1), hx[1].unsqueeze(1)) if is_lstm else hx.unsqueeze(1)
            if hx is None:
                self.check_input(x, None)
            else:
                self.check_forward_args(x, hx, None)
            if self.batch_first:
                x = x.transpose(0, 1)
            lengths_np = None

        h0, c0 = (None, None) if hx is None else (tuple(hx) if is_lstm else (hx, None))
        weights = list(self._flat_weights)
        dropout_seed = None
        if self.training and self.dropout > 0 and self.num_layers > 1:
            # the masks follow torch's RNG state (manual_seed, fork_rng, checkpoint's recomputation)
            dropout_seed = int(torch.randint(0, 2**62, (), dtype=torch.int64).item())
        call = _Call(self._fastrnn_engine(), self._fastrnn_layer(_FAST_DTYPES[x.dtype]),
                     list(self._flat_weights_names), lengths_np, is_lstm, self.training, float(self.dropout),
                     dropout_seed)
        inputs = (x, h0, c0, *weights)
        if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in inputs):
            outputs = _FastRNNFunction.apply(call, *inputs)
            y, h = outputs[0], outputs[1]
            c = outputs[2] if is_lstm else None
        else:
            y, h, c, _ = call.forward(x, h0, c0, weights, keep_tape=False)

        hidden = (h, c) if is_lstm else h
        if packed:
            if sorted_indices is not None:  # pack in the input's order, so .data lines up with torch's
                y, lengths = y.index_select(1, sorted_indices), lengths.index_select(0, sorted_indices)
            out_data = pack_padded_sequence(y, lengths, enforce_sorted=True).data
            return PackedSequence(out_data, batch_sizes, sorted_indices, unsorted_indices), hidden
        if self.batch_first:
            y = y.transpose(0, 1)  # the same (non-contiguous) strides torch.nn returns
        if not batched:
            y = y.squeeze(batch_dim)
            hidden = (h.squeeze(1), c.squeeze(1)) if is_lstm else h.squeeze(1)
        return y, hidden

    # ------------------------------------------------------------------ internal fastrnn layers
    def _fastrnn_engine(self):
        engine = self.__dict__.get("_fastrnn_engine_state")
        if engine is None:
            with _ENGINE_LOCK:
                engine = self.__dict__.get("_fastrnn_engine_state")
                if engine is None:
                    engine = self.__dict__["_fastrnn_engine_state"] = _Engine()
        return engine

    def _fastrnn_layer(self, np_dtype):
        """The fastrnn layer computing for this module in this dtype (its params are set on every call)."""
        engine = self._fastrnn_engine()
        nonlinearity = {"RNN_TANH": "tanh", "RNN_RELU": "relu"}.get(self.mode)
        key = (np.dtype(np_dtype).name, self.mode, self.input_size, self.hidden_size, self.num_layers,
               bool(self.bias), bool(self.bidirectional), int(self.proj_size))
        with engine.lock:
            layer = engine.layers.get(key)
            if layer is None:
                kwargs = dict(num_layers=self.num_layers, bias=bool(self.bias), batch_first=False,
                              bidirectional=bool(self.bidirectional), dtype=np_dtype, seed=0)
                if self.mode == "LSTM":
                    layer = _layers.LSTM(self.input_size, self.hidden_size, proj_size=int(self.proj_size), **kwargs)
                elif self.mode == "GRU":
                    layer = _layers.GRU(self.input_size, self.hidden_size, **kwargs)
                else:
                    layer = _layers.RNN(self.input_size, self.hidden_size, nonlinearity=nonlinearity, **kwargs)
                engine.layers = {k: v for k, v in engine.layers.items() if k[0] != key[0]}  # drop stale configs
                engine.layers[key] = layer
        return layer


_forward_outside_dynamo = _lazy_dynamo_disable(_FastRNNMixin._fastrnn_dispatch)

_FALLBACK_NOTE = """

    fastrnn drop-in: forward and backward run fastrnn's compiled kernels for CPU float32/float64 tensors
    (dense or PackedSequence input). Anything else (CUDA/other devices, float16/bfloat16, autocast,
    TorchScript, jit tracing/ONNX export, torch.func transforms, code traced by torch.compile) falls back
    to the inherited torch.nn implementation with the same Parameters. Dropout masks are fastrnn's (drawn
    from a seed taken from torch's generator); no double backward (create_graph=True through these modules).
"""


class RNN(_FastRNNMixin, torch.nn.RNN):
    __doc__ = "torch.nn.RNN (Elman, tanh or relu) computed by fastrnn." + _FALLBACK_NOTE


class LSTM(_FastRNNMixin, torch.nn.LSTM):
    __doc__ = "torch.nn.LSTM (proj_size included) computed by fastrnn." + _FALLBACK_NOTE


class GRU(_FastRNNMixin, torch.nn.GRU):
    __doc__ = "torch.nn.GRU computed by fastrnn." + _FALLBACK_NOTE
