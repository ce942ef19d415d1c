"""fastrnn.freeze(layer): an inference snapshot of a compiled layer, its weights packed once."""

from . import _kernels
from ._grad_mode import no_grad
from ._layer import _aligned_empty
from .layers import _CompiledLayer

# what a snapshot tells about itself (read from its private copy of the layer)
_SHOWN = ("input_size", "hidden_size", "num_layers", "bias", "batch_first", "bidirectional", "dtype", "proj_size",
          "output_size", "num_directions", "gate_size", "nonlinearity", "dropout")


def freeze(layer):
    """An inference snapshot of a fastrnn.RNN, LSTM or GRU: see FrozenLayer."""
    return FrozenLayer(layer)


class FrozenLayer(_kernels.FastCall):
    """An inference snapshot of a fastrnn.RNN, LSTM or GRU (``fastrnn.freeze(layer)``): its own copy of the
    weights, packed once into the kernels' layout.

    A layer packs its weights on every call, because ``layer.params`` are live arrays that may change in
    place between calls; for a model that is only served, that packing is up to a fifth of a short call
    (25 steps of a 512-unit LSTM with 4 rows, 1 thread). Like an ONNX Runtime session, a snapshot does not
    see later changes to the layer: freeze again after training. Its weights are read-only.

    Calls take what the layer's calls take, ``snapshot(x, hx=None, lengths=None)``, and return the same
    ``(y, hn)``, always without a tape and without dropout (evaluation mode). Every product runs on the
    packed weights, so results do not depend on the sequence length or the thread count: a sequence
    streamed one step per call equals one call over it, bit for bit. They may differ from the layer's own
    results in the last bits (the layer's products run in other orders: BLAS, or csrc/row_dot.h's
    products from the unpacked weights)."""

    def __init__(self, layer):
        if not isinstance(layer, _CompiledLayer):
            raise TypeError(f"freeze takes a fastrnn.RNN, LSTM or GRU, got {type(layer).__name__}")
        if layer.variant:
            raise ValueError("freeze does not take the variants (layer_norm, peephole, recurrent_dropout, "
                             "zoneout, reset_after=False)")
        options = dict(num_layers=layer.num_layers, bias=layer.bias, batch_first=layer.batch_first,
                       dropout=layer.dropout, bidirectional=layer.bidirectional, dtype=layer.dtype)
        if layer._mode.startswith("rnn_"):
            options["nonlinearity"] = layer.nonlinearity
        if layer.proj_size:
            options["proj_size"] = layer.proj_size
        own = type(layer)(layer.input_size, layer.hidden_size, **options)
        own.load_state_dict(layer.state_dict())
        own.eval()
        packed = {}
        for keys in own._weight_keys.values():
            w_ih, w_hh = own.params[keys[0]], own.params[keys[1]]
            pair = []
            for w in (w_ih, w_hh):
                out = _aligned_empty(_kernels.packed_weight_size(own._mode, own.dtype, own.hidden_size, w.shape[1]),
                                     own.dtype)
                _kernels.pack_weight(own._mode, w, own.hidden_size, out)
                out.flags.writeable = False
                pair.append(out)
            packed[id(w_hh)] = tuple(pair)
        for w in own.params.values():
            w.flags.writeable = False  # the packed copies must stay theirs
        own._packed = packed  # before the first call builds the streaming plan
        self._layer = own
        self._params = own.params
        plan = own._build_plan()
        self._step = plan[-1] if plan[0] else None  # the streaming step in C, on the packed weights

    # __call__(x, hx=None, lengths=None) -> (y, hn) as the layer's forward gives them, from the snapshot's
    # weights, with no tape: _kernels.FastCall's, which takes streaming steps in C and the rest here.
    def _general_call(self, x, hx, lengths):
        with no_grad():
            return self._layer.forward(x, hx, lengths)

    forward = _kernels.FastCall.__call__

    def __reduce__(self):  # copy / pickle: a snapshot of the copied layer, packed anew (the panels are
        return FrozenLayer, (self._layer,)  # found by id() of W_hh and must stay on a cache line)

    def state_dict(self):
        """Copies of the snapshot's weights, keyed like torch (as the layer's state_dict)."""
        return self._layer.state_dict()

    def __getattr__(self, name):
        if name in _SHOWN:
            return getattr(self._layer, name)
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def __repr__(self):
        return f"fastrnn.freeze({self._layer!r})"
