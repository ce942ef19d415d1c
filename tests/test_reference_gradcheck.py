"""The NumPy reference against central finite differences, in float64 (DESIGN.md section 6).

loss = sum(y * w) + sum(h_n * v) (+ sum(c_n * u) for LSTM) with random w, v, u; the analytic
gradient is ``backward(w, v)`` (``(v, u)`` for LSTM). Every entry of every parameter, of x and of
the initial state(s) is perturbed.
"""
import numpy as np
import pytest

import fastrnn
from fastrnn import reference

from _helpers import (MODES, cell_shape, flatten_state, is_lstm, loss_grads, loss_value, make_layer, make_lengths,
                      random_hx, random_x, state_shape)

EPS = 1e-6
RTOL = 1e-5
ATOL = 1e-7

T, B, IN, H = 4, 3, 3, 2

CONFIGS = {
    "basic": {},
    "two_layers": {"num_layers": 2},
    "bidirectional": {"bidirectional": True},
    "lengths": {"lengths": True},
    "two_layers_bidir_lengths_batch_first": {"num_layers": 2, "bidirectional": True, "lengths": True,
                                             "batch_first": True},
    "batch_first": {"batch_first": True},
    "no_bias_two_layers_bidir": {"bias": False, "num_layers": 2, "bidirectional": True},
    "hx_none": {"hx_none": True, "num_layers": 2},
    "dropout_eval_mode": {"num_layers": 2, "dropout": 0.5, "eval": True},
}


def _loss(layer, x, hx, lengths, dy, dhn):
    with fastrnn.no_grad():
        y, hn = layer.forward(x, hx, lengths)
    return loss_value(layer, y, hn, dy, dhn)


def _fd(f, arr):
    """Central differences of the scalar f() with respect to every entry of ``arr`` (perturbed in place)."""
    grad = np.zeros(arr.shape)
    for idx in np.ndindex(arr.shape):
        old = arr[idx]
        arr[idx] = old + EPS
        plus = f()
        arr[idx] = old - EPS
        minus = f()
        arr[idx] = old
        grad[idx] = (plus - minus) / (2 * EPS)
    return grad


def _check(name, analytic, numeric):
    assert analytic.shape == numeric.shape, name
    assert np.all(np.isfinite(analytic)), name
    np.testing.assert_allclose(analytic, numeric, rtol=RTOL, atol=ATOL, err_msg=name)


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("mode", MODES)
def test_gradients_match_finite_differences(mode, config):
    _gradcheck(mode, CONFIGS[config], H, np.random.default_rng([MODES.index(mode), list(CONFIGS).index(config)]))


PROJ_CONFIGS = {
    "basic": {},
    "two_layers_bidir_lengths_batch_first": {"num_layers": 2, "bidirectional": True, "lengths": True,
                                             "batch_first": True},
    "no_bias_hx_none": {"bias": False, "hx_none": True, "num_layers": 2},
}


@pytest.mark.parametrize("config", list(PROJ_CONFIGS))
def test_lstm_proj_size_gradients(config):
    """torch's projected LSTM (proj_size < hidden_size): h_t = W_hr (o * tanh(c_t)), weight_hr_l*."""
    cfg = dict(PROJ_CONFIGS[config], proj_size=2)
    _gradcheck("lstm", cfg, 3, np.random.default_rng([9, list(PROJ_CONFIGS).index(config)]))


def _gradcheck(mode, cfg, hidden, rng):
    cfg = dict(cfg)
    use_lengths = cfg.pop("lengths", False)
    hx_none = cfg.pop("hx_none", False)
    eval_mode = cfg.pop("eval", False)
    layer = make_layer(reference, mode, IN, hidden, dtype=np.float64, seed=11, **cfg)
    if eval_mode:
        layer.eval()
    x = random_x(rng, layer, T, B)
    hx = None if hx_none else random_hx(rng, layer, B)
    lengths = make_lengths(rng, B, T) if use_lengths else None
    if use_lengths:
        assert 1 in lengths and T in lengths
    dy, dhn = loss_grads(rng, layer, T, B)

    layer.zero_grad()
    y, hn = layer.forward(x, hx, lengths)
    dx, dhx = layer.backward(dy, dhn)
    grads = {k: v.copy() for k, v in layer.grads.items()}
    # the loss must depend on every output (a vacuous check would pass trivially)
    assert np.abs(y).max() > 0

    f = lambda: _loss(layer, x, hx_fd, lengths, dy, dhn)  # noqa: E731

    # initial state: for hx=None the gradient is with respect to that zero state
    if hx_none:
        shape = state_shape(layer, B)
        hx_fd = (np.zeros(shape), np.zeros(cell_shape(layer, B))) if is_lstm(layer) else np.zeros(shape)
    else:
        hx_fd = tuple(a.copy() for a in hx) if is_lstm(layer) else hx.copy()
    states = (hx_fd if is_lstm(layer) else (hx_fd,))
    analytic_states = flatten_state(layer, "dhx", dhx)
    for arr, (key, analytic) in zip(states, analytic_states.items()):
        _check(key, analytic, _fd(f, arr))

    _check("dx", dx, _fd(f, x))
    if use_lengths:  # padded input never reaches the loss
        steps = np.arange(T)[None, :] if layer.batch_first else np.arange(T)[:, None]
        lens = lengths[:, None] if layer.batch_first else lengths[None, :]
        assert np.all(dx[steps >= lens] == 0)

    for key, param in layer.params.items():
        _check("grad:" + key, grads[key], _fd(f, param))


@pytest.mark.parametrize("mode", MODES)
def test_lengths_gradient_support(mode):
    """With lengths, dx is zero exactly at the padded steps (a row of length 1 only has step 0)."""
    rng = np.random.default_rng(3)
    layer = make_layer(reference, mode, IN, H, dtype=np.float64, seed=1)
    x = random_x(rng, layer, T, B)
    lengths = np.array([1, T, 2])
    dy, dhn = loss_grads(rng, layer, T, B)
    layer.forward(x, None, lengths)
    dx, _ = layer.backward(dy, dhn)
    assert np.all(dx[1:, 0] == 0) and np.any(dx[0, 0] != 0)
    assert np.any(dx[T - 1, 1] != 0)
    assert np.all(dx[2:, 2] == 0)


@pytest.mark.parametrize("mode", MODES)
def test_dropout_train_mode_gradient(mode):
    """Train-mode dropout: the mask is drawn per forward from the layer's seed, so every evaluation of
    the loss uses a fresh layer built with the same seed (hence the same mask on its first forward)."""
    rng = np.random.default_rng(5)
    p, seed, L, D = 0.4, 2024, 2, True
    kwargs = dict(num_layers=L, bidirectional=D, dropout=p, dtype=np.float64, seed=seed)
    proto = make_layer(reference, mode, IN, H, **kwargs)
    weights = proto.state_dict()
    x = random_x(rng, proto, T, B)
    hx = random_hx(rng, proto, B)
    dy, dhn = loss_grads(rng, proto, T, B)

    def fresh():
        layer = make_layer(reference, mode, IN, H, **kwargs)
        layer.load_state_dict(weights)
        return layer

    layer = fresh()
    y, hn = layer.forward(x, hx)
    dx, dhx = layer.backward(dy, dhn)
    grads = {k: v.copy() for k, v in layer.grads.items()}

    # dropout is really active in this set-up: eval mode gives other outputs, the same seed the same ones
    y_eval, _ = fresh().eval().forward(x, hx)
    assert not np.allclose(y, y_eval)
    y_again, _ = fresh().forward(x, hx)
    assert np.array_equal(y, y_again)

    f = lambda: loss_value(proto, *fresh().forward(x, hx), dy, dhn)  # noqa: E731
    _check("dx", dx, _fd(f, x))
    for arr, (key, analytic) in zip(hx if is_lstm(proto) else (hx,), flatten_state(proto, "dhx", dhx).items()):
        _check(key, analytic, _fd(f, arr))
    for key in weights:
        _check("grad:" + key, grads[key], _fd(f, weights[key]))
