"""Small helpers shared by the test files: build layers, draw inputs, run forward + backward, compare.

Every helper takes the namespace to build from (``fastrnn`` for the compiled engine,
``fastrnn.reference`` for the NumPy oracle), so the same test body can run on either.
"""
import contextlib

import numpy as np

import fastrnn
from fastrnn import reference

MODES = ("rnn_tanh", "rnn_relu", "lstm", "gru")
ENGINES = {"compiled": fastrnn, "reference": reference}


def make_layer(ns, mode, input_size, hidden_size, **kwargs):
    """``ns.RNN/LSTM/GRU`` for a mode name: 'rnn_tanh', 'rnn_relu', 'lstm' or 'gru'."""
    if mode.startswith("rnn_"):
        return ns.RNN(input_size, hidden_size, nonlinearity=mode[4:], **kwargs)
    cls = {"lstm": ns.LSTM, "gru": ns.GRU}[mode]
    return cls(input_size, hidden_size, **kwargs)


def is_lstm(layer):
    return type(layer).__name__ == "LSTM"


def h_size(layer):
    """Size of h and of each direction's slice of y: an LSTM's proj_size when set, else hidden_size."""
    return getattr(layer, "proj_size", 0) or layer.hidden_size


def state_shape(layer, batch):
    """Shape of h0 / h_n (for LSTM, c0 / c_n have ``cell_shape``)."""
    return (layer.num_layers * (2 if layer.bidirectional else 1), batch, h_size(layer))


def cell_shape(layer, batch):
    return (layer.num_layers * (2 if layer.bidirectional else 1), batch, layer.hidden_size)


def output_shape(layer, steps, batch):
    features = h_size(layer) * (2 if layer.bidirectional else 1)
    return (batch, steps, features) if layer.batch_first else (steps, batch, features)


def input_shape(layer, steps, batch):
    return (batch, steps, layer.input_size) if layer.batch_first else (steps, batch, layer.input_size)


def copy_weights(dst, src):
    """Give ``dst`` exactly ``src``'s weights (through the public state_dict API)."""
    dst.load_state_dict(src.state_dict())
    return dst


def random_x(rng, layer, steps, batch, scale=1.0, dtype=None):
    x = rng.standard_normal(input_shape(layer, steps, batch)) * scale
    return x.astype(dtype or layer.dtype)


def random_hx(rng, layer, batch, scale=0.5, dtype=None):
    dt = dtype or layer.dtype
    h = (rng.standard_normal(state_shape(layer, batch)) * scale).astype(dt)
    if is_lstm(layer):
        return h, (rng.standard_normal(cell_shape(layer, batch)) * scale).astype(dt)
    return h


def make_lengths(rng, batch, steps):
    """B lengths in 1..T, unsorted, holding both a length of 1 and the full length when B >= 2."""
    lengths = rng.integers(1, steps + 1, size=batch)
    if batch >= 2:
        lengths[0] = 1
        lengths[min(2, batch - 1)] = steps
    else:
        lengths[0] = max(1, steps - 1)
    return lengths.astype(np.int64)


def loss_grads(rng, layer, steps, batch, dtype=None):
    """Random (dy, dhn) = (w, v) or (w, (v, u)): the gradients of sum(y*w) + sum(hn*v) (+ sum(cn*u))."""
    dt = dtype or layer.dtype
    w = rng.standard_normal(output_shape(layer, steps, batch)).astype(dt)
    v = rng.standard_normal(state_shape(layer, batch)).astype(dt)
    if is_lstm(layer):
        return w, (v, rng.standard_normal(cell_shape(layer, batch)).astype(dt))
    return w, v


def loss_value(layer, y, hn, dy, dhn):
    total = np.sum(y * dy)
    if is_lstm(layer):
        return total + np.sum(hn[0] * dhn[0]) + np.sum(hn[1] * dhn[1])
    return total + np.sum(hn * dhn)


def flatten_state(layer, prefix, value):
    if is_lstm(layer):
        return {prefix + "_h": value[0], prefix + "_c": value[1]}
    return {prefix + "_h": value}


def forward_backward(layer, x, hx=None, lengths=None, dy=None, dhn=None):
    """Zero grads, forward, backward; everything that came out, as a flat dict of copies."""
    layer.zero_grad()
    y, hn = layer.forward(x, hx, lengths)
    out = {"y": np.array(y)}
    out.update({k: np.array(v) for k, v in flatten_state(layer, "hn", hn).items()})
    dx, dhx = layer.backward(dy, dhn)
    out["dx"] = np.array(dx)
    out.update({k: np.array(v) for k, v in flatten_state(layer, "dhx", dhx).items()})
    out.update({"grad:" + k: np.array(v) for k, v in layer.grads.items()})
    return out


def assert_all_close(actual, expected, rtol, atol, scale_atol=True, context=""):
    """Compare two dicts of arrays key by key. With ``scale_atol`` the absolute tolerance grows with
    the largest magnitude in the expected array (round-off is relative to the terms summed)."""
    assert set(actual) == set(expected), (sorted(actual), sorted(expected))
    for key in expected:
        a, e = np.asarray(actual[key]), np.asarray(expected[key])
        assert a.shape == e.shape, f"{context} {key}: shape {a.shape} != {e.shape}"
        assert np.all(np.isfinite(a)), f"{context} {key}: non-finite values"
        tol = atol * max(1.0, float(np.max(np.abs(e)))) if (scale_atol and e.size) else atol
        np.testing.assert_allclose(a.astype(np.float64), e.astype(np.float64), rtol=rtol, atol=tol,
                                   err_msg=f"{context} {key}")


def assert_all_equal(actual, expected, context=""):
    assert set(actual) == set(expected)
    for key in expected:
        assert np.array_equal(actual[key], expected[key]), f"{context} {key}: not bit-identical"


@contextlib.contextmanager
def num_threads(n):
    old = fastrnn.get_num_threads()
    fastrnn.set_num_threads(n)
    try:
        yield
    finally:
        fastrnn.set_num_threads(old)


# --------------------------------------------------------------- native builds of csrc/ headers
# The compiler flags of each vector width the wheel ships (CMakeLists.txt's add_isa_build): baseline,
# AVX2, AVX-512. Tests that compile a csrc/ header per width (test_pack_panels.py, test_row_dot.py,
# test_activations.py) check the widths this CPU does not dispatch to.
VECTOR_WIDTH_FLAGS = {16: [], 32: ["-mavx2", "-mfma"],
                      64: ["-mavx512f", "-mavx512vl", "-mavx512dq", "-mavx512bw", "-mavx2", "-mfma"]}


def cpu_runs_vector_width(vector_bytes):
    """Whether this CPU can run a build of that vector width (Linux's /proc/cpuinfo flags)."""
    import pathlib

    cpuinfo = pathlib.Path("/proc/cpuinfo")
    flags = cpuinfo.read_text() if cpuinfo.exists() else ""
    return {16: True, 32: " avx2 " in flags and " fma " in flags, 64: " avx512bw " in flags}[vector_bytes]


def native_compiler():
    """The C++ compiler on PATH (the test is skipped without one)."""
    import shutil

    import pytest

    compiler = shutil.which("c++") or shutil.which("g++")
    if compiler is None:
        pytest.skip("no C++ compiler on PATH")
    return compiler


def build_native(compiler, source, vector_bytes, exe, flags):
    """Compile a tests/native/ program against csrc/ for one vector width; flags: optimisation and
    language mode (the kernels' GNU mode where the bits depend on the compiler fusing multiply-adds)."""
    import pathlib
    import subprocess

    csrc = pathlib.Path(__file__).resolve().parent.parent / "csrc"
    subprocess.run([compiler, *flags, f"-I{csrc}", f"-DFASTRNN_VEC_BYTES={vector_bytes}",
                    *VECTOR_WIDTH_FLAGS[vector_bytes], str(source), "-o", str(exe)], check=True, capture_output=True)
    return exe


def run_native_check(source, vector_bytes, folder, flags):
    """Build and run a per-width check program that exits non-zero on a mismatch; its standard output.
    Skipped without a compiler, or where this CPU cannot run the width."""
    import subprocess

    import pytest

    compiler = native_compiler()
    if not cpu_runs_vector_width(vector_bytes):
        pytest.skip(f"this CPU cannot run the {vector_bytes}-byte build")
    exe = build_native(compiler, source, vector_bytes, folder / f"{source.stem}_{vector_bytes}", flags)
    result = subprocess.run([str(exe)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout
