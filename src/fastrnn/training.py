"""Training over long streams (truncated BPTT) and whole-model checkpoints.

Truncated BPTT: a long stream is cut into ``batch_size`` parallel streams, walked ``seq_len`` steps
at a time. The final state of one chunk is the initial state of the next (the model keeps its
memory across chunks), but backward stops at the chunk boundary: the gradient with respect to the
initial state is dropped. With NumPy arrays as the state there is nothing to "detach": the next
forward simply receives the previous ``hn`` as ``hx``.

Checkpoints: one ``.npz`` with the model's parameters (``model.<key>``), optionally the optimizer's
state (``optim.<key>``) and a JSON header (model class, its constructor arguments, your metadata).
It is written to a temporary file in the same folder and renamed over the target (``os.replace``),
so a crash mid-save leaves the previous checkpoint intact and never a partial file.
"""
import ctypes
import glob
import json
import os
import stat
import tempfile

import numpy as np

from ._grad_mode import no_grad
from .optim import clip_grad_norm

__all__ = ["StreamBatches", "RandomWindows", "TruncatedBPTT", "stream_loss", "pad_sequences",
           "save_model", "load_model", "read_meta", "limit_numpy_blas_threads"]

FORMAT = "fastrnn-checkpoint"
VERSION = 1
_META_KEY = "__meta__"


def _positive(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return int(value)


# ----------------------------------------------------------------------------- truncated BPTT
class StreamBatches:
    """One long token (or value) stream as ``batch_size`` contiguous parallel streams.

    Chunk i of an epoch is (inputs, targets), each (batch_size, seq_len) (plus the stream's trailing
    axes), targets being the inputs shifted by one step. Row b of chunk i+1 continues row b of chunk i.
    With ``max_shift`` > 0 each epoch starts the streams a random 0..max_shift items later (fixed by
    ``seed`` and the epoch number), so chunk boundaries fall at new places every epoch.
    """

    carries_state = True

    def __init__(self, stream, batch_size, seq_len, max_shift=0, seed=0):
        self._stream = np.asarray(stream)
        self.batch_size = _positive(batch_size, "batch_size")
        self.seq_len = _positive(seq_len, "seq_len")
        if isinstance(max_shift, bool) or not isinstance(max_shift, (int, np.integer)) or max_shift < 0:
            raise ValueError(f"max_shift must be an int >= 0, got {max_shift!r}")
        self.max_shift, self.seed = int(max_shift), seed
        # -1: the last input still needs a target; the shift must fit in every epoch
        self._per_row = (len(self._stream) - 1 - self.max_shift) // self.batch_size
        self.num_chunks = max(self._per_row, 0) // self.seq_len
        if self.num_chunks < 1:
            raise ValueError(f"stream of length {len(self._stream)} is too short for batch_size={batch_size} x "
                             f"seq_len={seq_len} (needs more than {batch_size * seq_len + self.max_shift} items)")
        self.start_epoch(0)

    def start_epoch(self, epoch):
        """Cut the streams for this epoch (its shift depends only on seed and epoch: resumable)."""
        shift = 0
        if self.max_shift:
            shift = int(np.random.default_rng([self.seed, epoch]).integers(0, self.max_shift + 1))
        n, shape = self.batch_size * self._per_row, (self.batch_size, self._per_row) + self._stream.shape[1:]
        self._inputs = self._stream[shift:shift + n].reshape(shape)
        self._targets = self._stream[shift + 1:shift + n + 1].reshape(shape)

    def __len__(self):
        return self.num_chunks

    def chunk(self, i):
        s = slice(i * self.seq_len, (i + 1) * self.seq_len)
        return self._inputs[:, s], self._targets[:, s]


class RandomWindows:
    """``batch_size`` windows of ``seq_len`` + 1 items at random places of the stream for every chunk;
    each starts from a zero state (nothing is carried). Chunk i of epoch e is fixed by (seed, e, i), so a
    resumed run draws what the uninterrupted one would have. An epoch is as many chunks as StreamBatches
    would cut. On a small corpus this trained better per step than contiguous streams (pydoc_data.topics,
    LSTM 256, 2,000 steps: 1.74 against 1.75-1.76 held-out bits/char): consecutive batches are less alike.
    """

    carries_state = False

    def __init__(self, stream, batch_size, seq_len, seed=0):
        self._stream = np.asarray(stream)
        self.batch_size = _positive(batch_size, "batch_size")
        self.seq_len = _positive(seq_len, "seq_len")
        self.seed, self._epoch = seed, 0
        self._starts = len(self._stream) - self.seq_len  # windows of seq_len + 1 items fit at 0.._starts-1
        self.num_chunks = (len(self._stream) - 1) // (self.batch_size * self.seq_len)
        if self._starts < 1 or self.num_chunks < 1:
            raise ValueError(f"stream of length {len(self._stream)} is too short for batch_size={batch_size} x "
                             f"seq_len={seq_len} (needs more than {batch_size * seq_len} items)")

    def start_epoch(self, epoch):
        self._epoch = epoch

    def __len__(self):
        return self.num_chunks

    def chunk(self, i):
        starts = np.random.default_rng([self.seed, self._epoch, i]).integers(0, self._starts, self.batch_size)
        windows = self._stream[starts[:, None] + np.arange(self.seq_len + 1)]
        return windows[:, :-1], windows[:, 1:]


class TruncatedBPTT:
    """Step-by-step trainer over ``StreamBatches`` (carrying the state from chunk to chunk) or
    ``RandomWindows`` (each chunk from a zero state); backpropagation stops at each chunk's start.

    The model needs ``forward(inputs, state) -> (outputs, state)``, ``backward(doutputs)`` and
    ``zero_grad()`` (CharLM has them); ``loss`` needs ``forward(outputs, targets) -> float`` and
    ``backward() -> doutputs`` (``fastrnn.nn.CrossEntropyLoss``, ``MSELoss``). Each epoch starts
    the streams again from a zero state. ``step()`` returns the chunk's loss; ``last_grad_norm``
    holds the gradient norm before clipping (when ``clip`` is set).
    """

    def __init__(self, model, loss, optimizer, batches, clip=None):
        self.model, self.loss, self.optimizer, self.batches = model, loss, optimizer, batches
        self.clip = clip
        self.steps = 0  # chunks trained so far; set it to resume (the state restarts from zero)
        self.state = None
        self.last_grad_norm = None

    def step(self):
        i = self.steps % len(self.batches)
        if i == 0:  # a new epoch: the streams start over
            self.state = None
            self.batches.start_epoch(self.steps // len(self.batches))
        inputs, targets = self.batches.chunk(i)
        self.model.zero_grad()
        outputs, state = self.model.forward(inputs, self.state)
        value = self.loss.forward(outputs, targets)
        self.model.backward(self.loss.backward())  # the gradient w.r.t. the carried-in state is dropped
        if self.clip is not None:
            self.last_grad_norm = clip_grad_norm(self.model, self.clip)
        self.optimizer.step()
        self.state = state if self.batches.carries_state else None
        self.steps += 1
        return value


def stream_loss(model, loss, stream, num_streams=16, seq_len=256):
    """Mean loss of a model over a whole stream, without a tape: the stream is cut into ``num_streams``
    contiguous parts (fewer when it is short) run side by side, state carried chunk to chunk, and
    every position but each part's first is scored. ``loss`` must support reduction='sum'."""
    if getattr(loss, "reduction", None) != "sum":
        raise ValueError("loss must sum over positions (e.g. CrossEntropyLoss(reduction='sum'))")
    stream = np.asarray(stream)
    num_streams = max(1, min(_positive(num_streams, "num_streams"), (len(stream) - 1) // 2))
    per_row = (len(stream) - 1) // num_streams
    if per_row < 1:
        raise ValueError(f"stream of length {len(stream)} is too short to score")
    inputs = stream[:num_streams * per_row].reshape((num_streams, per_row) + stream.shape[1:])
    targets = stream[1:num_streams * per_row + 1].reshape(inputs.shape)
    total, count, state = 0.0, 0, None
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            for start in range(0, per_row, seq_len):
                s = slice(start, start + seq_len)
                outputs, state = model.forward(inputs[:, s], state)
                total += loss.forward(outputs, targets[:, s])
                count += targets[:, s].size
    finally:
        model.train(was_training)
    return total / count


def pad_sequences(seqs, pad=0, dtype=np.int64):
    """List of 1-D sequences -> (padded (B, T_max) right-padded with ``pad``, lengths (B,))."""
    seqs = [np.asarray(s) for s in seqs]
    if not seqs or any(s.ndim != 1 or len(s) == 0 for s in seqs):
        raise ValueError("seqs must be a non-empty list of non-empty 1-D sequences")
    lengths = np.array([len(s) for s in seqs], np.int64)
    out = np.full((len(seqs), lengths.max()), pad, dtype)
    for i, s in enumerate(seqs):
        out[i, :len(s)] = s
    return out, lengths


# ----------------------------------------------------------------------------- checkpoints
def save_model(path, model, optimizer=None, meta=None):
    """Write model (and optimizer) to one .npz atomically. ``meta``: any JSON-serialisable dict
    (training step, loss history...), returned by ``read_meta``."""
    header = {"format": FORMAT, "version": VERSION, "model_class": type(model).__name__,
              "model_config": getattr(model, "config", None), "meta": meta if meta is not None else {},
              "has_optimizer": optimizer is not None}
    try:
        header_json = json.dumps(header)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"meta must be JSON-serialisable: {exc}") from None
    arrays = {f"model.{k}": np.asarray(v) for k, v in model.params.items()}
    if optimizer is not None:
        arrays.update({f"optim.{k}": np.asarray(v) for k, v in optimizer.state_dict().items()})
    arrays[_META_KEY] = np.array(header_json)

    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)  # a file object: savez adds no '.npz' to the name
            f.flush()
            os.fsync(f.fileno())  # the bytes are on disk before the rename makes them the checkpoint
        # mkstemp creates the file private (0600): give it the mode of the file it replaces, or 0644
        os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode) if os.path.exists(path) else 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def _open(path):
    path = os.fspath(path)
    try:
        data = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise
    except Exception as exc:
        raise ValueError(f"{path} is not a readable .npz checkpoint: {exc}") from None
    if not hasattr(data, "files") or _META_KEY not in data.files:
        raise ValueError(f"{path} is not a fastrnn checkpoint (no {_META_KEY} entry)")
    try:
        header = json.loads(str(data[_META_KEY]))
    except ValueError as exc:
        raise ValueError(f"{path}: unreadable header: {exc}") from None
    if header.get("format") != FORMAT or header.get("version") != VERSION:
        raise ValueError(f"{path}: unsupported checkpoint format {header.get('format')!r} "
                         f"version {header.get('version')!r} (expected {FORMAT!r} version {VERSION})")
    return data, header


def read_meta(path):
    """The header of a checkpoint: {'model_class', 'model_config', 'meta', 'has_optimizer', ...}."""
    data, header = _open(path)
    data.close()
    return header


def _check_group(data, prefix, expected, what, problems):
    """Compare the file's '<prefix>.*' arrays with ``expected`` {key: array}; note every mismatch."""
    stored = {name[len(prefix) + 1:] for name in data.files if name.startswith(prefix + ".")}
    for key in sorted(set(expected) - stored):
        problems.append(f"{what} key {key!r} is missing from the file")
    for key in sorted(stored - set(expected)):
        problems.append(f"file has {what} key {key!r}, which the {what} does not have")
    loaded = {}
    for key in sorted(set(expected) & stored):
        arr, want = data[f"{prefix}.{key}"], np.asarray(expected[key])
        if arr.shape != want.shape:
            problems.append(f"{what} key {key!r} has shape {arr.shape} in the file, expected {want.shape}")
        elif arr.dtype != want.dtype:
            problems.append(f"{what} key {key!r} has dtype {arr.dtype} in the file, expected {want.dtype}")
        else:
            loaded[key] = arr
    return loaded


def load_model(path, model=None, optimizer=None):
    """Load a checkpoint into ``model`` (and ``optimizer``), or build the model from the file's header
    when ``model`` is None (any class in ``fastrnn.models``). Every key, shape and dtype is checked
    before anything is written; a mismatch raises ValueError listing each problem. Returns the model."""
    data, header = _open(path)
    with data:
        if model is None:
            from . import models
            from .nn import Module
            cls = getattr(models, str(header.get("model_class")), None)
            config = header.get("model_config")
            if not (isinstance(cls, type) and issubclass(cls, Module)) or not isinstance(config, dict):
                raise ValueError(f"{path}: cannot rebuild a {header.get('model_class')!r}; pass model=")
            model = cls(**config)
        problems = []
        params = _check_group(data, "model", model.params, "model", problems)
        opt_state = None
        if optimizer is not None:
            if not header.get("has_optimizer"):
                problems.append("the file holds no optimizer state")
            else:
                opt_state = _check_group(data, "optim", optimizer.state_dict(), "optimizer", problems)
        if problems:
            raise ValueError(f"{path}: cannot load into {type(model).__name__}:\n  " + "\n  ".join(problems))
        model.load_state_dict(params)
        if optimizer is not None:
            optimizer.load_state_dict(opt_state)
    return model


# ----------------------------------------------------------------------------- threads
def limit_numpy_blas_threads(n=1):
    """Set the thread count of NumPy's own BLAS (not the one fastrnn's kernels use); True on success.

    A training loop alternates fastrnn's kernels (OpenMP threads) with NumPy matmuls (the output layer,
    the embedding, the optimizer). NumPy's OpenBLAS keeps its threads spinning for a while after each
    call, so on a machine with few cores the two thread pools take turns stealing each other's cores;
    measured on 2 cores, one LSTM training step ran ~2.5x slower. The NumPy-side matmuls here are
    small, so one thread loses little. Best effort: only NumPy wheels built on scipy-openblas are known.
    """
    import numpy
    folder = os.path.join(os.path.dirname(os.path.dirname(numpy.__file__)), "numpy.libs")
    for path in glob.glob(os.path.join(folder, "*openblas*")):
        try:
            lib = ctypes.CDLL(path)  # already loaded by NumPy: this returns the same library
        except OSError:
            continue
        for symbol in ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
                       "openblas_set_num_threads64_", "openblas_set_num_threads"):
            setter = getattr(lib, symbol, None)
            if setter is not None:
                setter(int(n))
                return True
    return False
