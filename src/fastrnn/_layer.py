"""The layer object shared by the compiled engine and the NumPy reference.

Layering (top to bottom):
    RNN / LSTM / GRU        argument checks, parameters, stacking, directions, dropout   (this file)
    _forward_direction      one layer, one direction over the whole sequence            (subclass)
        compiled: fastrnn.layers -> fastrnn._kernels (Cython, GIL released) -> csrc/ (C++, OpenMP)
        reference: fastrnn.reference (NumPy, written straight from the equations)

Everything a user can get wrong is checked here, before any compiled code runs.
"""
import threading
from collections import OrderedDict

import numpy as np

from . import _validation as V
from ._grad_mode import is_grad_enabled

GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}
_DTYPES = (np.float32, np.float64)

# Recurrent variants beyond torch.nn (issue 8): short name (the kernels' argument) -> key prefix.
# Keys are torch-style: prefix + "_l{layer}" + direction suffix, e.g. weight_ci_l0, layernorm_cell_bias_l1_reverse.
VARIANT_PARAMS = {
    "ln_gates_weight": "layernorm_gates_weight", "ln_gates_bias": "layernorm_gates_bias",  # (2, G*H): [input, recurrent]
    "ln_cell_weight": "layernorm_cell_weight", "ln_cell_bias": "layernorm_cell_bias",      # (H,), LSTM only
    "w_ci": "weight_ci", "w_cf": "weight_cf", "w_co": "weight_co",                         # (H,), peephole LSTM
}
LAYER_NORM_EPS = 1e-5


def _probability(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name} must be a number in [0, 1), got {type(value).__name__}")
    if not 0.0 <= float(value) < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value}")
    return float(value)


def _flag(value, name):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def _positive_int(value, name, minimum=1):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _aligned_empty(size, dtype, alignment=64):
    """A 1-D array of size elements whose data starts on a cache line: the kernels load whole 64-byte
    vectors (NumPy aligns to 16 bytes only)."""
    itemsize = np.dtype(dtype).itemsize
    raw = np.empty(size * itemsize + alignment, np.uint8)
    start = -raw.ctypes.data % alignment
    return raw[start:start + size * itemsize].view(dtype)


def _aligned_copy(value, dtype):
    """A C-contiguous copy of value on a cache line: the kernels read each weight row with whole-vector
    loads, and with NumPy's 16-byte alignment a one-row product ran about 15% slower."""
    value = np.asarray(value, dtype=dtype)
    out = _aligned_empty(value.size, dtype).reshape(value.shape)
    out[...] = value
    return out


class _Arrays(OrderedDict):
    """``params`` / ``grads``: the live arrays the kernels read and write. Replacing an entry goes
    through a check (same shape, converted to the layer's dtype, C-contiguous), so the kernels can
    trust every array here without re-checking it on each call."""

    def __init__(self, dtype, items=()):
        super().__init__()
        self._dtype = dtype
        for key, value in items:
            super().__setitem__(key, _aligned_copy(value, dtype))

    def __setitem__(self, key, value):
        if key not in self:
            raise KeyError(f"{key!r} is not a parameter of this layer (keys: {list(self)})")
        arr = np.asarray(value)
        if arr.dtype.kind not in "fiu":
            raise TypeError(f"{key} must hold real numbers, got dtype {arr.dtype}")
        if arr.shape != self[key].shape:
            raise ValueError(f"{key} must have shape {self[key].shape}, got {arr.shape}")
        super().__setitem__(key, np.ascontiguousarray(arr, dtype=self._dtype))

    def __delitem__(self, key):
        raise TypeError("parameters cannot be deleted")

    def __reduce__(self):  # copy / pickle: rebuilt through __init__ (aligned copies), not item by item
        return type(self), (self._dtype, list(self.items()))


class _TapePool:
    """The tape arrays of the last finished backward, handed out again to the next forward that asks for
    the same shapes. A training loop then records its tape (tens of MB) into the same memory every step:
    fresh arrays made the OS fault in and zero new pages each step, about a tenth of a CharLM training
    step (perf). Holds at most one tape's arrays; a forward that finds nothing to reuse allocates."""

    def __init__(self):
        self._free = {}

    def empty(self, shape, dtype):
        stack = self._free.get((shape, dtype))
        return stack.pop() if stack else np.empty(shape, dtype)

    def refill(self, arrays):
        self._free = {}
        for arr in arrays:
            self._free.setdefault((arr.shape, arr.dtype), []).append(arr)


class _Tape:
    """What one forward pass leaves for backward."""

    def __init__(self, lengths, shape, batch_first, hx_given):
        self.lengths = lengths
        self.shape = shape  # (T, B, input_size) in time-major order
        self.batch_first = batch_first
        self.hx_given = hx_given
        self.layers = []  # per layer: list of per-direction tapes
        self.dropout_masks = []  # per layer >= 1: mask applied to that layer's input (or None)
        self.embedding = None  # token input (_forward_embedded): a private copy of the embedding weight


class _DropsPlan:
    """An attribute the compiled layers' streaming plan (layers._CompiledLayer._build_plan) is built from:
    assigning it on an instance stores the value as usual and drops the plan, so the next call rebuilds it.
    It defines only __set__, so reading the attribute goes straight to the instance's __dict__ (full speed)."""

    def __set_name__(self, owner, name):
        self.name = name

    def __set__(self, obj, value):
        d = obj.__dict__
        d[self.name] = value
        d.pop("_plan", None)
        d.pop("_shortcut", None)


class ParameterHolder:
    """What every layer with ``params`` / ``grads`` (_Arrays) and a ``training`` flag offers."""

    # copy.copy / copy.deepcopy / pickle leave these out and _init_transients makes them anew: a lock
    # cannot be copied, and a tape or a plan belongs to the object that recorded it (as torch, a copy
    # keeps parameters, gradients, options and random state, not the last forward).
    _TRANSIENT = ()

    def _init_transients(self):
        pass

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k not in self._TRANSIENT}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._init_transients()

    def zero_grad(self):
        for g in self.grads.values():
            g.fill(0)

    def state_dict(self):
        return OrderedDict((k, v.copy()) for k, v in self.params.items())

    def load_state_dict(self, state_dict):
        """Load (torch-keyed) weights; every key, shape and dtype is checked before anything is written."""
        V.load_arrays_in_place(self.params, state_dict)

    def train(self, mode=True):
        self.training = bool(mode)
        return self

    def eval(self):
        return self.train(False)


class RecurrentLayer(ParameterHolder):
    """Base of RNN, LSTM and GRU. Subclasses set ``_mode`` and the two direction kernels."""

    _mode = None  # the cell (a class attribute of LSTM and GRU; set once by RNN.__init__)
    _plan = None  # compiled layers: what their fast path precomputes (no values, only keys and sizes)
    _shortcut = None  # compiled layers: the plan's streaming step, taken by the call in C (_kernels.LayerCall)
    _lock_type = staticmethod(threading.RLock)  # compiled layers: _kernels.LayerLock, which LayerCall takes in C
    input_size = _DropsPlan()
    hidden_size = _DropsPlan()
    proj_size = _DropsPlan()
    num_layers = _DropsPlan()
    bidirectional = _DropsPlan()
    bias = _DropsPlan()
    dtype = _DropsPlan()
    variant = _DropsPlan()
    batch_first = _DropsPlan()
    _weight_keys = _DropsPlan()

    _TRANSIENT = ("_lock", "_tape", "_tape_pool", "_plan", "_shortcut", "_packed")

    def _init_transients(self):
        self._tape = None
        self._tape_pool = _TapePool()
        # forward and backward of one layer run one at a time (they share the tape and add into grads);
        # different layers run concurrently, the kernels release the GIL
        self._lock = self._lock_type()

    def train(self, mode=True):
        """Training mode (dropout on), or evaluation mode with ``mode=False`` (as ``eval()``). Entering
        evaluation also frees the recycled tape memory (tens of MB for a CharLM layer), which only the
        next training step would reuse."""
        if not mode:
            self._tape_pool = _TapePool()
        return super().train(mode)

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, dtype=np.float32, seed=None, proj_size=0,
                 layer_norm=False, peephole=False, recurrent_dropout=0.0, zoneout=0.0, reset_after=True):
        self.input_size = _positive_int(input_size, "input_size")
        self.hidden_size = _positive_int(hidden_size, "hidden_size")
        self.proj_size = _positive_int(proj_size, "proj_size", minimum=0)
        if self.proj_size and self._mode != "lstm":
            raise ValueError("proj_size is only supported by LSTM")
        if self.proj_size >= self.hidden_size:
            raise ValueError(f"proj_size must be smaller than hidden_size ({self.hidden_size}), got {self.proj_size}")
        self.num_layers = _positive_int(num_layers, "num_layers")
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        self.bidirectional = bool(bidirectional)
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float, np.floating, np.integer)):
            raise TypeError(f"dropout must be a number in [0, 1), got {type(dropout).__name__}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.dropout = float(dropout)
        self._set_variants(layer_norm, peephole, recurrent_dropout, zoneout, reset_after)
        self.dtype = V.float_dtype(dtype)
        self.training = True
        self._init_transients()

        # the first two children are what spawn(2) gave before the variants existed: same weights, same dropout
        init_seq, dropout_seq, variant_seq = np.random.SeedSequence(seed).spawn(3)
        self._dropout_rng = np.random.default_rng(dropout_seq)
        self._variant_rng = np.random.default_rng(variant_seq)  # recurrent dropout and zoneout masks
        init_rng = np.random.default_rng(init_seq)
        bound = 1.0 / np.sqrt(self.hidden_size)
        shapes = list(self._param_shapes())
        self.params = _Arrays(self.dtype, ((name, init_rng.uniform(-bound, bound, size=shape).astype(self.dtype))
                                           for name, shape in shapes))
        for name in self.params:  # layer norm: gain 1, bias 0 (peepholes keep the uniform init)
            if name.startswith("layernorm_"):
                self.params[name][...] = 1 if "_weight_" in name else 0
        self.grads = _Arrays(self.dtype, ((name, np.zeros(shape, self.dtype)) for name, shape in shapes))
        # per (layer, direction): the keys of (w_ih, w_hh, b_ih, b_hh, w_hr), None where absent
        self._weight_keys = {}
        for layer in range(self.num_layers):
            for d, sfx in enumerate(self._suffixes()):
                keys = (f"weight_ih_l{layer}{sfx}", f"weight_hh_l{layer}{sfx}", f"bias_ih_l{layer}{sfx}",
                        f"bias_hh_l{layer}{sfx}", f"weight_hr_l{layer}{sfx}")
                self._weight_keys[layer, d] = tuple(k if k in self.params else None for k in keys)
        # per (layer, direction): short variant name -> key, for the variant parameters this layer has
        self._variant_keys = {
            (layer, d): {short: f"{prefix}_l{layer}{sfx}" for short, prefix in VARIANT_PARAMS.items()
                         if f"{prefix}_l{layer}{sfx}" in self.params}
            for layer in range(self.num_layers) for d, sfx in enumerate(self._suffixes())}

    def _set_variants(self, layer_norm, peephole, recurrent_dropout, zoneout, reset_after):
        """Check the variant options (issue 8) against the cell and each other."""
        self.layer_norm = _flag(layer_norm, "layer_norm")
        self.peephole = _flag(peephole, "peephole")
        self.reset_after = _flag(reset_after, "reset_after")
        self.recurrent_dropout = _probability(recurrent_dropout, "recurrent_dropout")
        self.zoneout = _probability(zoneout, "zoneout")
        gated = self._mode in ("lstm", "gru")
        for name, used in (("layer_norm", self.layer_norm), ("recurrent_dropout", self.recurrent_dropout > 0),
                           ("zoneout", self.zoneout > 0)):
            if used and not gated:
                raise ValueError(f"{name} is only supported by LSTM and GRU, not {type(self).__name__}")
        if self.peephole and self._mode != "lstm":
            raise ValueError("peephole is only supported by LSTM")
        if not self.reset_after and self._mode != "gru":
            raise ValueError("reset_after=False is only supported by GRU")
        if self.layer_norm and not self.reset_after:
            raise ValueError("layer_norm=True cannot be combined with reset_after=False (the reset gate would "
                             "act inside the normalised recurrent product)")
        self.variant = (self.layer_norm or self.peephole or not self.reset_after or self.recurrent_dropout > 0
                        or self.zoneout > 0)
        if self.variant and self.proj_size:
            raise ValueError("proj_size cannot be combined with layer_norm, peephole, recurrent_dropout or zoneout")

    # ----------------------------------------------------------------- parameters
    @property
    def num_directions(self):
        return 2 if self.bidirectional else 1

    @property
    def output_size(self):
        """Size of h (and of each direction's slice of y): proj_size when set, else hidden_size."""
        return self.proj_size or self.hidden_size

    @property
    def gate_size(self):
        return GATES[self._mode] * self.hidden_size

    def _suffixes(self):
        return ("", "_reverse") if self.bidirectional else ("",)

    def _param_shapes(self):
        G, H, P = self.gate_size, self.hidden_size, self.output_size
        for layer in range(self.num_layers):
            layer_input = self.input_size if layer == 0 else P * self.num_directions
            for sfx in self._suffixes():
                yield f"weight_ih_l{layer}{sfx}", (G, layer_input)
                yield f"weight_hh_l{layer}{sfx}", (G, P)
                if self.bias:
                    yield f"bias_ih_l{layer}{sfx}", (G,)
                    yield f"bias_hh_l{layer}{sfx}", (G,)
                if self.proj_size:
                    yield f"weight_hr_l{layer}{sfx}", (P, H)
        # the variants' parameters after all the plain ones: the plain weights of a seed are the same with or
        # without a variant
        for layer in range(self.num_layers):
            for sfx in self._suffixes():
                if self.peephole:
                    for gate in "ifo":
                        yield f"weight_c{gate}_l{layer}{sfx}", (H,)
                if self.layer_norm:
                    yield f"layernorm_gates_weight_l{layer}{sfx}", (2, G)
                    yield f"layernorm_gates_bias_l{layer}{sfx}", (2, G)
                    if self._mode == "lstm":
                        yield f"layernorm_cell_weight_l{layer}{sfx}", (H,)
                        yield f"layernorm_cell_bias_l{layer}{sfx}", (H,)

    def _weights(self, store, layer, direction):
        """(w_ih, w_hh, b_ih, b_hh, w_hr) of one layer and direction from params or grads; None where absent."""
        return tuple(None if k is None else store[k] for k in self._weight_keys[layer, direction])

    def _variant_arrays(self, store, layer, direction):
        """Short variant name -> array of params or grads, for one layer and direction."""
        return {short: store[key] for short, key in self._variant_keys[layer, direction].items()}

    def _variant_call(self, layer, direction, steps, batch):
        """What one direction's forward needs beyond the plain layer: options, parameters and, in train
        mode, freshly drawn masks (kept on the tape, so backward reuses them).

        rd_mask (B, H): 0 or 1/(1-p), multiplies h_{t-1} where it enters the recurrent product, the same at
        every step. zh, zc (T, B, H): 1 where a unit keeps its previous value (probability p), else 0; in
        eval mode (or p = 0) they are None and ``zoneout`` is the constant used in their place."""
        H, dt = self.hidden_size, self.dtype
        rd_mask = zh = zc = None
        if self.training and self.recurrent_dropout > 0:
            keep = 1.0 - self.recurrent_dropout
            rd_mask = (self._variant_rng.random((batch, H), dtype=np.float32) < keep).astype(dt) / dt.type(keep)
        if self.training and self.zoneout > 0:  # (float32 draws: half the time of float64 ones, plenty for p)
            zh = (self._variant_rng.random((steps, batch, H), dtype=np.float32) < self.zoneout).astype(dt)
            if self._mode == "lstm":
                zc = (self._variant_rng.random((steps, batch, H), dtype=np.float32) < self.zoneout).astype(dt)
        return {"layer_norm": self.layer_norm, "peephole": self.peephole, "reset_after": self.reset_after,
                "params": self._variant_arrays(self.params, layer, direction), "rd_mask": rd_mask,
                "zoneout": 0.0 if zh is not None else self.zoneout, "zh": zh, "zc": zc}

    # ----------------------------------------------------------------- forward
    def __call__(self, x, hx=None, lengths=None):
        return self.forward(x, hx, lengths)

    def _state_shape(self, batch, cell=False):
        """(num_layers * D, B, size) of h (size = output_size) or, with cell=True, of the LSTM's c."""
        size = self.hidden_size if cell else self.output_size
        return (self.num_layers * self.num_directions, batch, size)

    def _check_state(self, value, batch, name, cell=False):
        arr = V.as_real_array(value, name, self.dtype)
        V.check_shape(arr, self._state_shape(batch, cell), name)
        return arr

    def _parse_hx(self, hx, batch):
        if hx is None:
            h0 = np.zeros(self._state_shape(batch), self.dtype)
            return (h0, np.zeros(self._state_shape(batch, True), self.dtype)) if self._mode == "lstm" else (h0, None)
        if self._mode == "lstm":
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise TypeError("hx for an LSTM must be a tuple (h0, c0) or None")
            return (self._check_state(hx[0], batch, "hx[0] (h0)"),
                    self._check_state(hx[1], batch, "hx[1] (c0)", cell=True))
        if isinstance(hx, tuple):
            raise TypeError(f"hx for {type(self).__name__} must be one array, not a tuple")
        return self._check_state(hx, batch, "hx"), None

    def _time_major_input(self, x):
        """x as a C-contiguous (T, B, input_size) array of the layer's dtype; every check comes before
        any copy (a huge strided view is refused, not materialised)."""
        arr = V.real_array(x, "x")
        layout = "(batch, seq_len, input_size)" if self.batch_first else "(seq_len, batch, input_size)"
        V.check_rank(arr, 3, "x", layout)
        if arr.shape[2] != self.input_size:
            raise ValueError(f"x must have input_size={self.input_size} features in its last axis, got shape {arr.shape}")
        if self.batch_first:
            arr = arr.transpose(1, 0, 2)
        if 0 in arr.shape:
            raise ValueError(f"x must have at least one time step and one sequence, got shape {arr.shape}")
        T, B, _ = arr.shape
        widest = max(self.gate_size, self.input_size, self.output_size * self.num_directions)
        V.check_blas_size(T * B, widest, "x (seq_len * batch rows)")
        return np.ascontiguousarray(arr, dtype=self.dtype)

    def forward(self, x, hx=None, lengths=None):
        """Run the whole stack. Returns (y, hn); hn is (h_n, c_n) for LSTM."""
        with self._lock:
            if lengths is None and type(x) is np.ndarray:  # the common call, without generic conversions
                out = self._fast_forward(x, hx)
                if out is not None:
                    return out
            return self._forward(x, hx, lengths)

    # Whether _forward_embedded is available (the compiled default path: the kernels read the input
    # projection from a per-token table).
    _accepts_tokens = False

    def _forward_embedded(self, tokens, embedding, hx=None, lengths=None):
        """forward(embedding[tokens], hx, lengths) without forming embedding[tokens] or multiplying it by
        W_ih: the first layer reads each step's input projection from the table embedding W_ih^T (V x G*H),
        and its backward adds into a per-token table rather than forming dx and dW_ih over all T*B rows.
        tokens (T, B) (or (B, T) when batch_first) ints in [0, V); embedding (V, input_size). The following
        backward returns (d_embedding (V, input_size), dhx): the gradient w.r.t. the embedding weight."""
        if not self._accepts_tokens:
            raise TypeError(f"{type(self).__name__} with these options does not take token input")
        with self._lock:
            return self._forward(tokens, hx, lengths, embedding)

    def _token_input(self, tokens, embedding):
        """The checked (T, B) int64 tokens and the (V, input_size) embedding of _forward_embedded."""
        emb = V.as_real_array(embedding, "embedding", self.dtype)
        if emb.ndim != 2 or emb.shape[1] != self.input_size or emb.shape[0] == 0:
            raise ValueError(f"embedding must have shape (num_embeddings, input_size={self.input_size}), "
                             f"got {emb.shape}")
        idx = np.asarray(tokens)
        if idx.ndim != 2 or idx.dtype.kind not in "iu":
            raise ValueError(f"tokens must be a 2-D array of integer ids, got shape {idx.shape}, dtype {idx.dtype}")
        if 0 in idx.shape:
            raise ValueError(f"tokens must have at least one time step and one sequence, got shape {idx.shape}")
        if idx.min() < 0 or idx.max() >= emb.shape[0]:
            raise ValueError(f"tokens must lie in 0..{emb.shape[0] - 1}, got values from {idx.min()} to {idx.max()}")
        if self.batch_first:
            idx = idx.T
        widest = max(self.gate_size, self.input_size, self.output_size * self.num_directions, emb.shape[0])
        V.check_blas_size(idx.size, widest, "tokens (seq_len * batch rows)")
        return np.ascontiguousarray(idx, dtype=np.int64), np.ascontiguousarray(emb)

    def _fast_forward(self, x, hx):
        """The common call (x and hx already arrays of the right dtype, shape and layout, no lengths) without
        the generic conversions, or None to take the general path. Subclasses may implement it; it must
        accept only what the general path would accept unchanged, and never raise for bad input."""
        return None

    def _forward(self, x, hx, lengths, embedding=None):
        given = x
        if embedding is None:
            x = self._time_major_input(x)
        else:  # token input: x holds the ids
            x, embedding = self._token_input(x, embedding)
        T, B = x.shape[:2]
        h0_all, c0_all = self._parse_hx(hx, B)
        if lengths is not None:
            lengths = V.as_lengths(lengths, B, T)
            if np.all(lengths == T):
                lengths = None
        keep_tape = is_grad_enabled()
        if lengths is not None or (keep_tape and np.may_share_memory(x, given)):
            # a private x: backward must see x as it is now, whatever the caller changes in between,
            # and padded steps must not reach any sum, whatever they hold (NaN included)
            x = x.copy()
        if lengths is not None:
            x[np.arange(T)[:, None] >= lengths[None, :]] = 0

        tape = _Tape(lengths, (T, B, self.input_size), self.batch_first, hx is not None) if keep_tape else None
        if tape is not None and embedding is not None:
            tape.embedding = embedding.copy()
        H, D = self.output_size, self.num_directions
        hn_all = np.empty(self._state_shape(B), self.dtype)
        cn_all = np.empty(self._state_shape(B, True), self.dtype) if self._mode == "lstm" else None
        layer_input = x
        for layer in range(self.num_layers):
            mask = None
            if layer > 0 and self.training and self.dropout > 0:
                keep = 1.0 - self.dropout
                mask = (self._dropout_rng.random(layer_input.shape) < keep).astype(self.dtype) / self.dtype.type(keep)
                layer_input = layer_input * mask
            y = np.empty((T, B, H * D), self.dtype)
            direction_tapes = []
            for d in range(D):
                idx = layer * D + d
                lstm = cn_all is not None
                extra = {"variant": self._variant_call(layer, d, T, B)} if self.variant else {}
                if layer == 0 and embedding is not None:
                    extra["token_table"] = self._token_table(embedding, d)
                direction_tapes.append(self._forward_direction(
                    layer_input, h0_all[idx], c0_all[idx] if lstm else None, self._weights(self.params, layer, d),
                    lengths, bool(d), y[:, :, d * H:(d + 1) * H], hn_all[idx], cn_all[idx] if lstm else None,
                    keep_tape, **extra))
            if tape is not None:
                tape.layers.append(direction_tapes)
                if layer > 0:
                    tape.dropout_masks.append(mask)
            layer_input = y
        self._tape = tape
        y = layer_input.transpose(1, 0, 2) if self.batch_first else layer_input
        return y, ((hn_all, cn_all) if self._mode == "lstm" else hn_all)

    # ----------------------------------------------------------------- backward
    def backward(self, dy=None, dhn=None, *, input_grad=True):
        """BPTT through the most recent forward. Adds parameter gradients into ``grads``; returns (dx, dhx).

        ``input_grad=False``: the caller needs no gradient with respect to x (torch's
        ``needs_input_grad``); dx is returned as None and the kernels skip its GEMM."""
        with self._lock:
            return self._backward(dy, dhn, bool(input_grad))

    # Layers whose first-layer backward can leave dx out (the compiled default path); others compute it.
    _skips_input_grad = False

    def _backward(self, dy, dhn, input_grad=True):
        tape = self._tape
        if tape is None:
            raise RuntimeError(
                "backward needs a forward pass that recorded a tape: call forward first (outside no_grad); "
                "each forward allows one backward")
        T, B, _ = tape.shape
        H, D = self.output_size, self.num_directions
        if dy is None:
            dy_tm = np.zeros((T, B, H * D), self.dtype)
        else:
            dy_arr = V.as_real_array(dy, "dy", self.dtype)
            expected = (B, T, H * D) if tape.batch_first else (T, B, H * D)
            V.check_shape(dy_arr, expected, "dy")
            dy_tm = np.ascontiguousarray(dy_arr.transpose(1, 0, 2)) if tape.batch_first else dy_arr
        dhn_all, dcn_all = self._parse_dhn(dhn, B)
        self._tape = None  # a second backward needs a new forward
        # Several kernel calls add into grads one after the other: if a later one fails (out of memory),
        # put the gradients back as they were, so the layer is never left half-updated. (The tape stays
        # consumed: the kernels reuse its gate memory for gradients.) The copy is the size of the
        # parameters, small next to the BPTT it guards; one kernel call fails before it adds anything.
        saved = {k: v.copy() for k, v in self.grads.items()} if self.num_layers * D > 1 else None
        try:
            dx, dhx = self._backward_layers(tape, dy_tm, dhn_all, dcn_all, input_grad)
            self._tape_pool.refill(buf for directions in tape.layers for direction_tape in directions
                                   for buf in self._tape_buffers(direction_tape))
            return (dx if input_grad else None), dhx
        except BaseException:
            if saved is not None:
                for k, v in saved.items():
                    np.copyto(self.grads[k], v)
            raise

    def _backward_layers(self, tape, dy_tm, dhn_all, dcn_all, input_grad=True):
        T, B, _ = tape.shape
        H, D = self.output_size, self.num_directions
        dh0_all = np.empty(self._state_shape(B), self.dtype)
        dc0_all = np.empty(self._state_shape(B, True), self.dtype) if self._mode == "lstm" else None
        grad_out = dy_tm
        for layer in reversed(range(self.num_layers)):
            if layer == 0 and tape.embedding is not None:
                grad_out = self._backward_embedded(tape, grad_out, dhn_all, dcn_all, dh0_all, dc0_all, input_grad)
                break
            in_features = tape.shape[2] if layer == 0 else H * D
            skip_dx = layer == 0 and not input_grad and self._skips_input_grad and not self.variant
            dx = None if skip_dx else np.empty((T, B, in_features), self.dtype)
            for d in range(D):
                idx = layer * D + d
                lstm = dcn_all is not None
                extra = {"variant_grads": self._variant_arrays(self.grads, layer, d)} if self.variant else {}
                self._backward_direction(
                    tape.layers[layer][d], grad_out[:, :, d * H:(d + 1) * H], dhn_all[idx],
                    dcn_all[idx] if lstm else None, self._weights(self.grads, layer, d), dx, d > 0,
                    dh0_all[idx], dc0_all[idx] if lstm else None, **extra)
            if layer > 0 and tape.dropout_masks[layer - 1] is not None:
                dx *= tape.dropout_masks[layer - 1]
            grad_out = dx
        transpose = tape.batch_first and grad_out is not None and tape.embedding is None
        dx = grad_out.transpose(1, 0, 2) if transpose else grad_out
        return dx, ((dh0_all, dc0_all) if self._mode == "lstm" else dh0_all)

    def _parse_dhn(self, dhn, batch):
        if dhn is None:
            dh = np.zeros(self._state_shape(batch), self.dtype)
            return dh, (np.zeros(self._state_shape(batch, True), self.dtype) if self._mode == "lstm" else None)
        if self._mode == "lstm":
            if not isinstance(dhn, (tuple, list)) or len(dhn) != 2:
                raise TypeError("dhn for an LSTM must be a tuple (dh_n, dc_n) or None")
            dh = np.zeros(self._state_shape(batch), self.dtype) if dhn[0] is None else self._check_state(dhn[0], batch, "dhn[0] (dh_n)")
            dc = (np.zeros(self._state_shape(batch, True), self.dtype) if dhn[1] is None
                  else self._check_state(dhn[1], batch, "dhn[1] (dc_n)", cell=True))
            return dh, dc
        return self._check_state(dhn, batch, "dhn"), None

    # ----------------------------------------------------------------- per direction (subclasses)
    def _forward_direction(self, x, h0, c0, weights, lengths, reverse, y_out, hn_out, cn_out, keep_tape):
        """One layer, one direction.

        x (T, B, In) C-contiguous; h0 (B, P), c0 (B, H) (None unless LSTM); weights (w_ih, w_hh, b_ih,
        b_hh, w_hr), biases and w_hr may be None; lengths int64 (B,) or None. Writes y_out (T, B, P), a
        view (zeros past each length), hn_out (B, P) and cn_out (B, H) (None unless LSTM), C-contiguous.
        P = output_size. Returns the direction's tape, or None unless keep_tape.
        variant (only when a variant option is set): see _variant_call.
        """
        raise NotImplementedError

    def _tape_buffers(self, direction_tape):
        """The arrays of a consumed direction tape that the next forward may overwrite (see _TapePool)."""
        return ()

    def _backward_direction(self, tape, dy, dhn, dcn, grads, dx_out, accumulate, dh0_out, dc0_out):
        """BPTT for one direction. dy (T, B, P) view; dhn (B, P), dcn (B, H); grads: arrays to ADD into,
        as weights; dx_out (T, B, In) is overwritten, or added into when ``accumulate``; writes dh0_out
        (B, P) and dc0_out (B, H) (None unless LSTM), C-contiguous. variant_grads (only when a variant
        option is set): short variant name -> gradient array to ADD into."""
        raise NotImplementedError

    def __repr__(self):
        extra = f", nonlinearity={self._mode[4:]!r}" if self._mode.startswith("rnn") else ""
        if self.proj_size:
            extra += f", proj_size={self.proj_size}"
        for name, default in (("layer_norm", False), ("peephole", False), ("recurrent_dropout", 0.0),
                              ("zoneout", 0.0), ("reset_after", True)):
            if getattr(self, name) != default:
                extra += f", {name}={getattr(self, name)}"
        return (f"{type(self).__module__}.{type(self).__name__}({self.input_size}, {self.hidden_size}, "
                f"num_layers={self.num_layers}{extra}, bias={self.bias}, batch_first={self.batch_first}, "
                f"dropout={self.dropout}, bidirectional={self.bidirectional}, dtype={self.dtype.name})")


VARIANTS_DOC = """Variants beyond torch.nn (keyword options; every combination works, except layer_norm with
reset_after=False and any of them with proj_size). With h' = h_{t-1} * m (recurrent dropout mask m, else
h' = h_{t-1}), A_x = W_ih x_t and A_h = W_hh h':

layer_norm=True (Ba et al. 2016, as haste's LayerNormLSTM): the two gate pre-activations are normalised
    separately over all G*H gates, LN_k(a) = gamma_k * (a - mean(a)) / sqrt(var(a) + 1e-5) + beta_k with
    gamma, beta = layernorm_gates_{weight,bias} (2, G*H) (row 0: input side, row 1: recurrent side), then the
    biases b_ih, b_hh are added as usual; LSTM also normalises the cell, h_t = o * tanh(LN_c(c_t)) with
    layernorm_cell_{weight,bias} (H,). c_t itself is carried unnormalised.
peephole=True (LSTM; Gers & Schmidhuber 2000, oneDNN's peephole LSTM): i = s(. + w_ci * c_{t-1}),
    f = s(. + w_cf * c_{t-1}), o = s(. + w_co * c_t), keys weight_c{i,f,o} (H,).
recurrent_dropout=p (Gal & Ghahramani 2016): in train mode one mask m per sequence and unit, 0 or 1/(1-p),
    the same at every step, multiplies h_{t-1} where it enters W_hh (GRU: not the z * h_{t-1} path).
zoneout=p (Krueger et al. 2016): in train mode each unit keeps its previous value with probability p,
    h_t = z_h * h_{t-1} + (1 - z_h) * h~_t (LSTM also c_t, with its own mask), z ~ Bernoulli(p) per step,
    row and unit; in eval mode the expectation, z = p. y_t is the zoned-out h_t.
reset_after=False (GRU; Cho et al. 2014, Keras): n = tanh(W_in x_t + b_in + W_hn (r * h') + b_hn).
Masks come from the layer's seeded generator (seed=...), so runs are reproducible.
"""


def make_layer_classes(base, namespace_module):
    """The three public classes over one engine base (compiled or reference): RNN, LSTM, GRU."""

    class RNN(base):
        __doc__ = f"Elman RNN, h_t = act(W_ih x_t + b_ih + W_hh h_(t-1) + b_hh), act tanh or relu ({namespace_module})."

        def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True,
                     batch_first=False, dropout=0.0, bidirectional=False, dtype=np.float32, seed=None, **variants):
            # variants are LSTM/GRU options; accepted here only to refuse them with a clear ValueError
            if nonlinearity not in ("tanh", "relu"):
                raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
            self._mode = "rnn_" + nonlinearity
            self.nonlinearity = nonlinearity
            super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                             bidirectional, dtype, seed, **variants)

    class LSTM(base):
        __doc__ = (f"LSTM with torch's gate order [i, f, g, o] ({namespace_module}); proj_size > 0 gives "
                   "torch's projected LSTM, h_t = W_hr (o * tanh(c_t)).\n\n" + VARIANTS_DOC)
        _mode = "lstm"

        def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                     bidirectional=False, dtype=np.float32, seed=None, proj_size=0, layer_norm=False,
                     peephole=False, recurrent_dropout=0.0, zoneout=0.0):
            super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                             bidirectional, dtype, seed, proj_size, layer_norm=layer_norm, peephole=peephole,
                             recurrent_dropout=recurrent_dropout, zoneout=zoneout)

    class GRU(base):
        __doc__ = (f"GRU with torch's gate order [r, z, n], reset applied after the matmul ({namespace_module}); "
                   "reset_after=False gives the original GRU (Cho et al. 2014, Keras' default), "
                   "n = tanh(W_in x + b_in + W_hn (r * h_{t-1}) + b_hn).\n\n" + VARIANTS_DOC)
        _mode = "gru"

        def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                     bidirectional=False, dtype=np.float32, seed=None, layer_norm=False, recurrent_dropout=0.0,
                     zoneout=0.0, reset_after=True):
            super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                             bidirectional, dtype, seed, layer_norm=layer_norm, recurrent_dropout=recurrent_dropout,
                             zoneout=zoneout, reset_after=reset_after)

    for cls in (RNN, LSTM, GRU):
        cls.__module__ = namespace_module
        cls.__qualname__ = cls.__name__
    return RNN, LSTM, GRU
