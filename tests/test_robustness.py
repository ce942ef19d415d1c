"""Never crash, never corrupt: random shapes against the reference, junk through every entry point
(in a subprocess, so a segfault fails the test instead of killing the run), threads, determinism,
numerics at the edges."""
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastrnn

CELLS = ["RNN", "LSTM", "GRU"]


def _run(layer, x, lengths=None, seed=0):
    y, hn = layer(x, lengths=lengths)
    rng = np.random.default_rng(seed)
    dy = rng.standard_normal(y.shape)
    dhn = tuple(rng.standard_normal(s.shape) for s in hn) if isinstance(hn, tuple) else rng.standard_normal(hn.shape)
    dx, dhx = layer.backward(dy, dhn)
    flat = [y, dx] + (list(hn) if isinstance(hn, tuple) else [hn]) + (list(dhx) if isinstance(dhx, tuple) else [dhx])
    return flat + [layer.grads[k].copy() for k in layer.grads]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cell=st.sampled_from(CELLS), T=st.integers(1, 6), B=st.integers(1, 6), D=st.integers(1, 9),
       H=st.integers(1, 20), layers=st.integers(1, 2), bidirectional=st.booleans(), ragged=st.booleans(),
       batch_first=st.booleans(), bias=st.booleans(), proj=st.integers(0, 3), seed=st.integers(0, 2**16))
def test_random_configurations_match_reference(cell, T, B, D, H, layers, bidirectional, ragged, batch_first,
                                               bias, proj, seed):
    extra = {"proj_size": proj} if cell == "LSTM" and 0 < proj < H else {}
    kw = dict(num_layers=layers, bidirectional=bidirectional, batch_first=batch_first, bias=bias,
              dtype=np.float64, seed=seed, **extra)
    fast, ref = getattr(fastrnn, cell)(D, H, **kw), getattr(fastrnn.reference, cell)(D, H, **kw)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((B, T, D) if batch_first else (T, B, D))
    lengths = rng.integers(1, T + 1, size=B) if ragged else None
    for a, b in zip(_run(fast, x, lengths, seed), _run(ref, x, lengths, seed)):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-11)


JUNK_SCRIPT = textwrap.dedent("""
    import numpy as np, fastrnn
    junk = [None, 3, "abc", b"xx", [1, [2, 3]], object(), np.array(["a"]), np.zeros((2, 2), complex),
            np.zeros((2, 3, 4), bool), np.zeros((0, 2, 3)), np.zeros((2, 0, 3)), np.zeros((5, 2, 3)),
            np.zeros((5, 2, 4)), np.full((2, 2, 3), np.nan), np.zeros((2, 2, 3), object), np.zeros(3),
            np.zeros((1, 1, 1, 3)), -1, 2**40, np.array([1.5, 2.5]), np.array([-1, 2]), np.array([0, 1]),
            np.array([9, 1]), (np.zeros((1, 2, 4)),), (np.zeros((1, 2, 4)), np.zeros((1, 2, 5)))]
    ok = 0
    for cls in (fastrnn.RNN, fastrnn.LSTM, fastrnn.GRU, fastrnn.reference.LSTM):
        for kw in ({}, {"bidirectional": True, "num_layers": 2}):
            layer = cls(3, 4, **kw)
            for j in junk:
                for call in (lambda: layer(j), lambda: layer(np.zeros((2, 2, 3)), j),
                             lambda: layer(np.zeros((2, 2, 3)), None, j), lambda: layer.backward(j),
                             lambda: layer.load_state_dict(j), lambda: layer.load_state_dict({"weight_ih_l0": j})):
                    try:
                        layer(np.zeros((2, 2, 3)))
                        call()
                        ok += 1
                    except (ValueError, TypeError, KeyError, RuntimeError):
                        ok += 1
    for cls in (fastrnn.RNN, fastrnn.LSTM, fastrnn.GRU):  # inference snapshots (fastrnn.freeze)
        for kw in ({}, {"bidirectional": True, "num_layers": 2}):
            snap = fastrnn.freeze(cls(3, 4, **kw))
            for j in junk:
                for call in (lambda: snap(j), lambda: snap(np.zeros((2, 2, 3)), j),
                             lambda: snap(np.zeros((1, 2, 3), np.float32), j),
                             lambda: snap(np.zeros((2, 2, 3)), None, j), lambda: fastrnn.freeze(j)):
                    try:
                        snap(np.zeros((2, 2, 3)))
                        call()
                        ok += 1
                    except (ValueError, TypeError, KeyError, RuntimeError):
                        ok += 1
    for bad in (dict(input_size=0, hidden_size=2), dict(input_size=2, hidden_size=-1),
                dict(input_size=2, hidden_size=2, num_layers=0), dict(input_size=2, hidden_size=2, dropout=2),
                dict(input_size=2, hidden_size=2, dtype=np.int8), dict(input_size="a", hidden_size=2),
                dict(input_size=2, hidden_size=2, proj_size=5)):
        try:
            fastrnn.LSTM(**bad)
        except (ValueError, TypeError):
            ok += 1
    for n in (0, -3, 1.5, "2"):
        try:
            fastrnn.set_num_threads(n)
        except (ValueError, TypeError):
            ok += 1
    print("CLEAN", ok)
""")


def test_junk_through_every_entry_point_raises_cleanly():
    """Only clean exceptions; run in a subprocess so a crash is a failure, not a dead test run."""
    proc = subprocess.run([sys.executable, "-c", JUNK_SCRIPT], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"process died (code {proc.returncode}):\n{proc.stderr[-3000:]}"
    assert "CLEAN" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-2000:]


@pytest.mark.parametrize("cell", CELLS)
def test_bit_identical_across_thread_counts_and_runs(cell):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((12, 27, 19)).astype(np.float32)
    lengths = rng.integers(1, 13, size=27)
    previous = fastrnn.get_num_threads()
    results = []
    try:
        for n in (1, 2, 3, 2):
            fastrnn.set_num_threads(n)
            layer = getattr(fastrnn, cell)(19, 37, num_layers=2, bidirectional=True, seed=5)
            results.append(_run(layer, x, lengths))
    finally:
        fastrnn.set_num_threads(previous)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert np.array_equal(a, b)


def test_two_python_threads_on_different_layers_match_serial():
    rng = np.random.default_rng(2)
    xs = [rng.standard_normal((30, 8, 16)).astype(np.float32) for _ in range(2)]
    make = [lambda: fastrnn.LSTM(16, 32, seed=1), lambda: fastrnn.GRU(16, 32, seed=2)]
    serial = [_run(make[i](), xs[i]) for i in range(2)]
    parallel = [None, None]

    def work(i):
        layer = make[i]()
        for _ in range(5):
            layer.zero_grad()
            parallel[i] = _run(layer, xs[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(2):
        for a, b in zip(serial[i], parallel[i]):
            assert np.array_equal(a, b)


def test_two_python_threads_on_one_layer_are_serialised():
    """Calls on one layer from two threads run one at a time: every result is a valid one."""
    layer = fastrnn.GRU(8, 16, seed=3)
    x = np.random.default_rng(3).standard_normal((20, 4, 8)).astype(np.float32)
    expected = _run(fastrnn.GRU(8, 16, seed=3), x)
    errors = []

    def work():
        for _ in range(10):
            with layer._lock:  # forward+backward as one unit, as a training loop would hold it
                layer.zero_grad()
                got = _run(layer, x)
            if not all(np.array_equal(a, b) for a, b in zip(got, expected)):
                errors.append("mismatch")

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


@pytest.mark.parametrize("cell", CELLS)
def test_nan_and_inf_propagate_without_crashing(cell):
    layer = getattr(fastrnn, cell)(3, 5, seed=0)
    x = np.zeros((4, 2, 3), np.float32)
    x[1, 0, 0] = np.nan
    x[2, 1, 1] = np.inf
    y, _ = layer(x)
    assert np.isnan(y[1:, 0]).all()  # NaN reaches every later step of its sequence
    assert np.isfinite(y[0]).all() and np.isfinite(y[:2, 1]).all()  # and nothing else before it


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("scale", [1e4, -1e4])
def test_large_preactivations_saturate_cleanly(cell, scale):
    kw = {"nonlinearity": "tanh"} if cell == "RNN" else {}
    layer = getattr(fastrnn, cell)(2, 6, seed=0, **kw)
    y, _ = layer(np.full((5, 3, 2), scale, np.float32))
    assert np.isfinite(y).all() and np.abs(y).max() <= 1.0
    dx, _ = layer.backward(np.ones_like(y))
    assert np.isfinite(dx).all()


@pytest.mark.parametrize("cell", CELLS)
def test_ten_thousand_steps_run_cleanly(cell):
    layer = getattr(fastrnn, cell)(4, 16, seed=0)
    x = np.random.default_rng(0).standard_normal((10_000, 2, 4)).astype(np.float32)
    y, _ = layer(x)
    dx, _ = layer.backward(np.ones_like(y))
    assert np.isfinite(y).all() and np.isfinite(dx).all()
    assert all(np.isfinite(g).all() for g in layer.grads.values())


def test_memory_mapped_and_readonly_inputs(tmp_path):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((6, 3, 5)).astype(np.float32)
    path = tmp_path / "x.npy"
    np.save(path, x)
    mm = np.load(path, mmap_mode="r")
    layer = fastrnn.LSTM(5, 7, seed=0)
    y_ref, _ = layer(x)
    y_mm, _ = layer(mm)
    np.testing.assert_array_equal(y_ref, y_mm)
    ro = x.copy()
    ro.flags.writeable = False
    y_ro, _ = layer(ro[::-1][::-1])
    np.testing.assert_array_equal(y_ref, y_ro)
    rev = np.ascontiguousarray(x[::-1])[::-1]  # negative strides
    y_rev, _ = layer(rev)
    np.testing.assert_array_equal(y_ref, y_rev)
    np.testing.assert_array_equal(np.load(path), x)  # nothing written into what we were given


def test_failed_forward_keeps_previous_tape():
    layer = fastrnn.GRU(3, 4, seed=0)
    x = np.ones((2, 2, 3))
    y, _ = layer(x)
    with pytest.raises(ValueError, match="x"):
        layer(np.ones((2, 2, 5)))
    dx, _ = layer.backward(np.ones_like(y))  # the bad call changed nothing
    assert dx.shape == x.shape


def test_backward_failing_midway_leaves_gradients_as_they_were(monkeypatch):
    layer = fastrnn.LSTM(3, 4, num_layers=2, bidirectional=True, seed=0)
    x = np.random.default_rng(0).standard_normal((5, 2, 3))
    y, _ = layer(x)
    layer.backward(np.ones_like(y))  # gradients that are not zero
    before = {k: v.copy() for k, v in layer.grads.items()}
    y, _ = layer(x)
    real, calls = type(layer)._backward_direction, []

    def fail_on_third_call(self, *args):
        calls.append(1)
        if len(calls) == 3:  # the upper layer's two directions have added their gradients by now
            raise MemoryError("simulated: out of memory in the kernel")
        return real(self, *args)

    monkeypatch.setattr(type(layer), "_backward_direction", fail_on_third_call)
    with pytest.raises(MemoryError):
        layer.backward(np.ones_like(y))
    for k, v in layer.grads.items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)
    with pytest.raises(RuntimeError, match="forward"):  # the tape is consumed: a new forward is needed
        layer.backward(np.ones_like(y))


def test_huge_sizes_are_refused_not_wrapped():
    layer = fastrnn.RNN(1, 1)
    x = np.lib.stride_tricks.as_strided(np.zeros(1, np.float32), shape=(2**16, 2**16, 1), strides=(0, 0, 4))
    with pytest.raises((ValueError, MemoryError)):
        layer(x)
