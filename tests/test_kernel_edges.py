"""Shapes and options that stress the kernels' edges (partial vectors, single rows, ragged lengths,
projections, both directions), compared with the NumPy reference. CI also runs this file under
AddressSanitizer and UndefinedBehaviorSanitizer, where any out-of-bounds access fails the run."""
import numpy as np
import pytest

import fastrnn

CASES = [
    # (cell, T, B, D, H, extra)
    ("RNN", 1, 1, 1, 1, {}),
    ("LSTM", 1, 1, 1, 1, {}),
    ("GRU", 1, 1, 1, 1, {}),
    ("RNN", 3, 7, 5, 17, {"nonlinearity": "relu", "bidirectional": True}),
    ("LSTM", 4, 9, 3, 33, {"num_layers": 2, "bidirectional": True}),
    ("GRU", 5, 13, 2, 65, {"bias": False}),
    ("LSTM", 6, 5, 4, 19, {"proj_size": 7, "bidirectional": True}),
    ("LSTM", 3, 2, 3, 70, {"proj_size": 1}),
    ("GRU", 7, 8, 129, 9, {"num_layers": 2}),
    # one row and W_hh of at least 2^18 elements: every step is a gemv on the unpacked weights
    ("RNN", 5, 1, 3, 512, {}),
    ("LSTM", 4, 1, 2, 256, {"bidirectional": True}),
    ("GRU", 3, 1, 5, 300, {"num_layers": 2}),
]


def _layers(cell, D, H, dtype, extra):
    fast = getattr(fastrnn, cell)(D, H, dtype=dtype, seed=3, **extra)
    ref = getattr(fastrnn.reference, cell)(D, H, dtype=dtype, seed=3, **extra)
    return fast, ref


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ragged", [False, True])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-T{c[1]}-B{c[2]}-D{c[3]}-H{c[4]}-{sorted(c[5])}")
def test_edges_match_reference(case, ragged, dtype):
    cell, T, B, D, H, extra = case
    rng = np.random.default_rng(T * 1000 + B)
    fast, ref = _layers(cell, D, H, dtype, extra)
    x = rng.standard_normal((T, B, D))
    lengths = rng.integers(1, T + 1, size=B) if ragged else None
    if ragged:
        lengths[0] = T  # a full-length row and (usually) short ones in the same batch
    outs = []
    for layer in (fast, ref):
        y, hn = layer(x, lengths=lengths)
        dy = np.cos(np.arange(y.size)).reshape(y.shape)
        dhn = tuple(np.sin(np.arange(s.size)).reshape(s.shape) for s in hn) if cell == "LSTM" else np.sin(np.arange(hn.size)).reshape(hn.shape)
        dx, dhx = layer.backward(dy, dhn)
        outs.append((y, hn, dx, dhx, {k: v.copy() for k, v in layer.grads.items()}))
    tol = dict(rtol=2e-4, atol=2e-5) if dtype == np.float32 else dict(rtol=1e-9, atol=1e-11)
    (y1, hn1, dx1, dhx1, g1), (y2, hn2, dx2, dhx2, g2) = outs
    np.testing.assert_allclose(y1, y2, **tol)
    np.testing.assert_allclose(dx1, dx2, **tol)
    for a, b in zip(np.atleast_1d(hn1) if cell != "LSTM" else hn1, np.atleast_1d(hn2) if cell != "LSTM" else hn2):
        np.testing.assert_allclose(a, b, **tol)
    for a, b in zip(dhx1 if cell == "LSTM" else (dhx1,), dhx2 if cell == "LSTM" else (dhx2,)):
        np.testing.assert_allclose(a, b, **tol)
    for k in g1:
        np.testing.assert_allclose(g1[k], g2[k], err_msg=k, **tol)
    if ragged:  # outputs past each sequence's end are exactly zero
        pad = np.arange(T)[:, None] >= lengths[None, :]
        assert np.all(y1[pad] == 0)


def test_padding_content_is_ignored():
    """Whatever the padded steps hold (NaN included), outputs and gradients are the same."""
    T, B, D, H = 6, 4, 3, 8
    rng = np.random.default_rng(0)
    lengths = np.array([6, 2, 4, 1])
    x = rng.standard_normal((T, B, D))
    pad = np.arange(T)[:, None] >= lengths[None, :]
    x_nan = x.copy()
    x_nan[pad] = np.nan
    results = []
    for xi in (x, x_nan):
        layer = fastrnn.GRU(D, H, dtype=np.float64, seed=1, bidirectional=True)
        y, hn = layer(xi, lengths=lengths)
        dx, dh0 = layer.backward(np.ones_like(y))
        results.append((y, hn, dx, dh0, layer.grads["weight_ih_l0"].copy()))
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("trans_a, trans_b", [(False, False), (False, True), (True, False), (True, True)])
@pytest.mark.parametrize("m, n, k", [(1, 1, 1), (3, 4, 5), (0, 3, 4), (3, 4, 0), (700, 103, 257)])
def test_gemm_matches_numpy_for_any_thread_count(dtype, trans_a, trans_b, m, n, k):
    from fastrnn import _kernels

    rng = np.random.default_rng(m + n + k)
    a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(dtype)
    c0 = rng.standard_normal((m, n)).astype(dtype)
    expected = (a.T if trans_a else a) @ (b.T if trans_b else b) + c0
    results = []
    for threads in (1, 2, 3):
        fastrnn.set_num_threads(threads)
        c = c0.copy()
        _kernels.gemm(a, b, c, trans_a, trans_b, 1.0, 1.0)
        results.append(c)
    np.testing.assert_allclose(results[0], expected, rtol=1e-4 if dtype == np.float32 else 1e-12, atol=1e-4)
    for c in results[1:]:
        np.testing.assert_array_equal(c, results[0])  # tiles depend on the shape alone


def test_gemm_refuses_bad_arguments():
    from fastrnn import _kernels

    ok = np.ones((2, 3))
    with pytest.raises(ValueError, match="shapes"):
        _kernels.gemm(ok, ok, np.ones((2, 2)))
    with pytest.raises(TypeError, match="float32 or all float64"):
        _kernels.gemm(ok.astype(np.float32), ok.T.copy(), np.ones((2, 2)))
    with pytest.raises(ValueError, match="C-contiguous"):
        _kernels.gemm(ok, np.ones((3, 4))[:, ::2], np.ones((2, 2)))
    with pytest.raises(ValueError, match="2-D"):
        _kernels.gemm(np.ones(3), ok, ok)
    readonly = np.ones((2, 2))
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        _kernels.gemm(ok, ok.T.copy(), readonly)


@pytest.mark.parametrize("namespace", [fastrnn, fastrnn.reference], ids=["compiled", "reference"])
@pytest.mark.parametrize("cell, extra", [("RNN", {}), ("LSTM", {"num_layers": 2, "bidirectional": True}),
                                         ("GRU", {"bidirectional": True}), ("LSTM", {"proj_size": 3})])
@pytest.mark.parametrize("ragged", [False, True])
def test_backward_without_input_grad_gives_the_same_parameter_gradients(namespace, cell, extra, ragged):
    T, B, D, H = 5, 4, 3, 6
    rng = np.random.default_rng(7)
    x = rng.standard_normal((T, B, D))
    lengths = np.array([5, 1, 3, 5]) if ragged else None
    results = []
    for input_grad in (True, False):
        layer = getattr(namespace, cell)(D, H, dtype=np.float64, seed=1, **extra)
        y, _ = layer(x, None, lengths)
        dy = np.random.default_rng(8).standard_normal(y.shape)
        dx, dhx = layer.backward(dy, input_grad=input_grad)
        results.append((dx, dhx, {k: v.copy() for k, v in layer.grads.items()}))
    (dx, dhx, grads), (dx_none, dhx2, grads2) = results
    assert dx is not None and dx_none is None
    for a, b in zip(dhx if isinstance(dhx, tuple) else (dhx,), dhx2 if isinstance(dhx2, tuple) else (dhx2,)):
        np.testing.assert_array_equal(a, b)
    for k in grads:
        np.testing.assert_array_equal(grads[k], grads2[k], err_msg=k)
