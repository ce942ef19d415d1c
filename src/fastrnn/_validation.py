"""Argument checks shared by every layer: nothing reaches compiled code unchecked.

Each check names the argument, what was expected and what came, and raises
ValueError (wrong shape or value) or TypeError (wrong kind of data).
"""
import numpy as np

BLAS_INT_MAX = 2**31 - 1  # scipy-openblas32 indexes with 32-bit integers


def real_array(value, name):
    """np.asarray(value), refusing anything that is not real numbers (no copy, no conversion yet)."""
    try:
        arr = np.asarray(value)
    except Exception as exc:  # ragged lists and the like
        raise TypeError(f"{name} must be a numeric array-like, got {type(value).__name__}: {exc}") from None
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{name} must hold real numbers (float or int), got dtype {arr.dtype}")
    return arr


def as_real_array(value, name, dtype):
    """Convert an array-like to a C-contiguous array of ``dtype`` (copying only when needed)."""
    return np.ascontiguousarray(real_array(value, name), dtype=dtype)


def check_shape(arr, expected, name):
    if arr.shape != tuple(expected):
        raise ValueError(f"{name} must have shape {tuple(expected)}, got {arr.shape}")


def check_rank(arr, rank, name, meaning):
    if arr.ndim != rank:
        raise ValueError(f"{name} must be {rank}-D {meaning}, got shape {arr.shape}")


def as_lengths(lengths, batch, steps):
    """Validate per-sequence lengths: B integers, each in 1..T; returns int64 or None when all are T."""
    arr = np.asarray(lengths)
    if arr.dtype.kind == "f" and arr.size and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
        arr = arr.astype(np.int64)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"lengths must be integers, got dtype {arr.dtype}")
    if arr.shape != (batch,):
        raise ValueError(f"lengths must have shape ({batch},) (one per sequence), got {arr.shape}")
    if batch and (arr.min() < 1 or arr.max() > steps):
        raise ValueError(
            f"lengths must lie in 1..{steps} (the padded sequence length), "
            f"got values from {arr.min()} to {arr.max()}"
        )
    return np.ascontiguousarray(arr, dtype=np.int64)


def check_blas_size(rows, cols, name):
    """The GEMMs index with 32-bit integers: refuse sizes they cannot address."""
    if rows > BLAS_INT_MAX or cols > BLAS_INT_MAX or rows * cols > 2**62:
        raise ValueError(
            f"{name} is too large: {rows} x {cols} elements exceeds what the BLAS can index"
        )


def load_arrays_in_place(targets, state_dict):
    """load_state_dict's core: every key, shape and dtype of ``state_dict`` is checked against
    ``targets`` (name -> live array) before anything is written, then the values are copied in place
    (optimizers hold these arrays), cast to each target's dtype."""
    try:
        keys = set(state_dict.keys())
    except AttributeError:
        raise TypeError(f"state_dict must be a mapping, got {type(state_dict).__name__}") from None
    missing, extra = sorted(set(targets) - keys), sorted(keys - set(targets))
    if missing or extra:
        raise KeyError(f"load_state_dict: missing keys {missing}, unexpected keys {extra}")
    converted = {}
    for name, target in targets.items():
        arr = np.asarray(state_dict[name])
        if arr.dtype.kind not in "fiu":
            raise TypeError(f"load_state_dict: {name} must hold real numbers, got dtype {arr.dtype}")
        if arr.shape != target.shape:
            raise ValueError(f"load_state_dict: {name} must have shape {target.shape}, got {arr.shape}")
        converted[name] = arr
    for name, arr in converted.items():
        targets[name][...] = arr


def float_dtype(dtype):
    """``dtype`` as a NumPy dtype, which must be float32 or float64 (the dtypes the kernels run)."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be float32 or float64, got {dtype!r}") from None
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"dtype must be float32 or float64, got {dt}")
    return dt
