"""API behaviour and argument checks (DESIGN.md section 1), on both engines unless a test says otherwise."""
import numpy as np
import pytest

import fastrnn
from fastrnn import reference

from _helpers import (ENGINES, MODES, assert_all_close, copy_weights, flatten_state, forward_backward, is_lstm,
                      loss_grads, make_layer, output_shape, random_hx, random_x, state_shape)

T, B, IN, H = 5, 3, 4, 6


@pytest.fixture(params=list(ENGINES))
def ns(request):
    return ENGINES[request.param]


def _layer(ns, mode="lstm", **kwargs):
    kwargs.setdefault("seed", 0)
    return make_layer(ns, mode, IN, H, **kwargs)


def _inputs(layer, seed=0, steps=T, batch=B):
    rng = np.random.default_rng(seed)
    return random_x(rng, layer, steps, batch), random_hx(rng, layer, batch)


NAMED = lambda name: rf"(?<![A-Za-z_]){name}(?![A-Za-z_])"  # noqa: E731  the argument's name as a word


# ----------------------------------------------------------------------------- x
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape", [(T, B), (T, B, IN, 1), (T * B * IN,), (T, B, IN + 1), (T, B, 1)],
                         ids=["rank2", "rank4", "rank1", "in_plus_1", "in_1"])
def test_bad_x_shape_raises_value_error_naming_x(ns, mode, shape):
    layer = _layer(ns, mode)
    with pytest.raises(ValueError, match=NAMED("x")):
        layer.forward(np.zeros(shape, np.float32))


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("shape", [(0, B, IN), (T, 0, IN), (0, 0, IN)])
def test_empty_x_raises_value_error_naming_x(ns, shape, batch_first):
    layer = _layer(ns, batch_first=batch_first)
    with pytest.raises(ValueError, match=NAMED("x")):
        layer.forward(np.zeros(shape, np.float32))


def test_scalar_x_raises(ns):
    with pytest.raises(ValueError, match=NAMED("x")):
        _layer(ns).forward(np.float32(1.0))


@pytest.mark.parametrize("bad", [
    np.zeros((T, B, IN), np.complex64),
    np.zeros((T, B, IN), np.complex128),
    np.zeros((T, B, IN), dtype=object),
    np.full((T, B, IN), "a"),
    np.zeros((T, B, IN), dtype=bool),
    np.zeros((T, B, IN), dtype="datetime64[s]"),
], ids=["complex64", "complex128", "object", "str", "bool", "datetime"])
def test_non_real_x_raises_type_error(ns, bad):
    with pytest.raises(TypeError, match=NAMED("x")):
        _layer(ns).forward(bad)


def test_ragged_list_x_raises_naming_x(ns):
    ragged = [[[0.0] * IN] * B, [[0.0] * IN] * (B - 1)]
    with pytest.raises((ValueError, TypeError), match=NAMED("x")):
        _layer(ns).forward(ragged)


def test_integer_x_is_converted(ns):
    layer = _layer(ns, "gru", dtype=np.float64)
    xi = np.arange(T * B * IN).reshape(T, B, IN) % 3 - 1
    y_int, _ = layer.forward(xi)
    y_float, _ = layer.forward(xi.astype(np.float64))
    assert y_int.dtype == np.float64
    assert np.array_equal(y_int, y_float)


# ----------------------------------------------------------------------------- hx
@pytest.mark.parametrize("mode", MODES)
def test_bad_hx_shape_raises_value_error_naming_hx(ns, mode):
    layer = _layer(ns, mode, num_layers=2)
    x, hx = _inputs(layer)
    wrong = [(1, B, H), (2, B + 1, H), (2, B, H + 1), (2, B), (4, B, H)]
    for shape in wrong:
        bad = np.zeros(shape, np.float32)
        with pytest.raises(ValueError, match="hx"):
            layer.forward(x, (bad, hx[1]) if is_lstm(layer) else bad)
        if is_lstm(layer):
            with pytest.raises(ValueError, match="hx|c0"):
                layer.forward(x, (hx[0], bad))


@pytest.mark.parametrize("bad", ["array", "triple", "single_in_tuple", "string"])
def test_lstm_hx_must_be_a_pair(ns, bad):
    layer = _layer(ns, "lstm")
    x, (h0, c0) = _inputs(layer)
    value = {"array": h0, "triple": (h0, c0, c0), "single_in_tuple": (h0,), "string": "h0"}[bad]
    with pytest.raises(TypeError, match="hx"):
        layer.forward(x, value)


@pytest.mark.parametrize("mode", ["rnn_tanh", "gru"])
def test_rnn_gru_hx_tuple_rejected(ns, mode):
    layer = _layer(ns, mode)
    x, h0 = _inputs(layer)
    with pytest.raises((TypeError, ValueError), match="hx"):
        layer.forward(x, (h0, h0))


@pytest.mark.parametrize("mode", ["rnn_relu", "lstm"])
def test_non_numeric_hx_raises_type_error(ns, mode):
    layer = _layer(ns, mode)
    x, _ = _inputs(layer)
    bad = np.zeros(state_shape(layer, B), np.complex128)
    with pytest.raises(TypeError, match="hx"):
        layer.forward(x, (bad, bad) if is_lstm(layer) else bad)


# ----------------------------------------------------------------------------- lengths
@pytest.mark.parametrize("lengths, error", [
    ([0, 2, 3], ValueError),
    ([1, T + 1, 2], ValueError),
    ([-1, 2, 3], ValueError),
    ([1, 2], ValueError),
    ([1, 2, 3, 4], ValueError),
    ([[1, 2, 3]], ValueError),
    ([1.5, 2, 3], TypeError),
    (["a", "b", "c"], TypeError),
    ([1 + 0j, 2, 3], TypeError),
], ids=["zero", "too_long", "negative", "too_few", "too_many", "2d", "fraction", "strings", "complex"])
def test_bad_lengths(ns, lengths, error):
    layer = _layer(ns, "gru")
    x, hx = _inputs(layer)
    with pytest.raises(error, match="lengths"):
        layer.forward(x, hx, lengths)


def test_lengths_error_leaves_no_tape(ns):
    layer = _layer(ns, "gru")
    x, hx = _inputs(layer)
    with pytest.raises(ValueError):
        layer.forward(x, hx, [0, 1, 1])
    with pytest.raises(RuntimeError):
        layer.backward(None)


# ----------------------------------------------------------------------------- backward misuse
@pytest.mark.parametrize("mode", MODES)
def test_backward_before_forward_twice_and_after_no_grad(ns, mode):
    layer = _layer(ns, mode)
    x, hx = _inputs(layer)
    with pytest.raises(RuntimeError):
        layer.backward(None)
    y, _ = layer.forward(x, hx)
    layer.backward(np.ones_like(y))
    with pytest.raises(RuntimeError):
        layer.backward(np.ones_like(y))
    with fastrnn.no_grad():
        assert not fastrnn.is_grad_enabled()
        layer.forward(x, hx)
    assert fastrnn.is_grad_enabled()
    with pytest.raises(RuntimeError):
        layer.backward(np.ones_like(y))
    # a tape from before no_grad does not survive a no_grad forward either
    layer.forward(x, hx)
    with fastrnn.no_grad():
        layer.forward(x, hx)
    with pytest.raises(RuntimeError):
        layer.backward(np.ones_like(y))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("batch_first", [False, True])
def test_wrong_dy_shape_raises_naming_dy(ns, mode, batch_first):
    layer = _layer(ns, mode, batch_first=batch_first, bidirectional=True)
    x, hx = _inputs(layer)
    y, _ = layer.forward(x, hx)
    for shape in [y.shape[:2] + (H,), (y.shape[0] + 1,) + y.shape[1:], y.shape[::-1], y.shape[:2]]:
        with pytest.raises(ValueError, match=NAMED("dy")):
            layer.backward(np.zeros(shape, np.float32))
    if not batch_first:  # (T, B, .) given to a batch_first layer, (B, T, .) to a time-major one
        with pytest.raises(ValueError, match=NAMED("dy")):
            layer.backward(np.zeros((B, T, 2 * H), np.float32))
    with pytest.raises(TypeError, match=NAMED("dy")):
        layer.backward(np.zeros(y.shape, np.complex64))
    # a rejected dy does not consume the tape: a correct backward still works and matches a fresh one
    dx, _ = layer.backward(np.ones(y.shape))
    fresh = copy_weights(_layer(ns, mode, batch_first=batch_first, bidirectional=True, seed=9), layer)
    fresh.forward(x, hx)
    dx_fresh, _ = fresh.backward(np.ones(y.shape))
    np.testing.assert_allclose(dx, dx_fresh, rtol=1e-6)


@pytest.mark.parametrize("mode", MODES)
def test_wrong_dhn_shape_raises_naming_dhn(ns, mode):
    layer = _layer(ns, mode, num_layers=2)
    x, hx = _inputs(layer)
    layer.forward(x, hx)
    bad = np.zeros((1, B, H), np.float32)
    good = np.zeros(state_shape(layer, B), np.float32)
    with pytest.raises(ValueError, match="dhn"):
        layer.backward(None, (bad, good) if is_lstm(layer) else bad)
    if is_lstm(layer):
        with pytest.raises(ValueError, match="dhn"):
            layer.backward(None, (good, bad))
        with pytest.raises(TypeError, match="dhn"):
            layer.backward(None, good)


# ----------------------------------------------------------------------------- constructor
@pytest.mark.parametrize("cls", ["RNN", "LSTM", "GRU"])
@pytest.mark.parametrize("kwargs, error", [
    (dict(hidden_size=0), ValueError),
    (dict(hidden_size=-3), ValueError),
    (dict(input_size=0), ValueError),
    (dict(num_layers=0), ValueError),
    (dict(hidden_size=2.5), TypeError),
    (dict(hidden_size="4"), TypeError),
    (dict(dropout=1.5), ValueError),
    (dict(dropout=1.0), ValueError),
    (dict(dropout=-0.1), ValueError),
    (dict(dropout="0.1"), TypeError),
    (dict(dtype=np.int32), TypeError),
    (dict(dtype=np.float16), TypeError),
    (dict(dtype=np.complex128), TypeError),
    (dict(dtype="not a dtype"), TypeError),
], ids=lambda v: str(v) if not isinstance(v, type) else v.__name__)
def test_bad_constructor_arguments(ns, cls, kwargs, error):
    args = dict(input_size=3, hidden_size=4)
    args.update(kwargs)
    with pytest.raises(error):
        getattr(ns, cls)(**args)


@pytest.mark.parametrize("nonlinearity", ["sigmoid", "Tanh", None, ""])
def test_bad_nonlinearity(ns, nonlinearity):
    with pytest.raises(ValueError, match="nonlinearity"):
        ns.RNN(3, 4, nonlinearity=nonlinearity)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, "float32", "float64", np.dtype(np.float64)])
def test_dtype_spellings(ns, dtype):
    layer = ns.GRU(3, 4, dtype=dtype)
    assert all(p.dtype == np.dtype(dtype) for p in layer.params.values())
    y, hn = layer.forward(np.ones((2, 1, 3)))
    assert y.dtype == np.dtype(dtype) and hn.dtype == np.dtype(dtype)
    assert all(g.dtype == np.dtype(dtype) for g in layer.grads.values())


# ----------------------------------------------------------------------------- state_dict
def _expected_keys_and_shapes(mode, In, Hs, L, bidir, bias):
    G = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}[mode] * Hs
    out = []
    for k in range(L):
        for sfx in (("", "_reverse") if bidir else ("",)):
            width = In if k == 0 else Hs * (2 if bidir else 1)
            out += [(f"weight_ih_l{k}{sfx}", (G, width)), (f"weight_hh_l{k}{sfx}", (G, Hs))]
            if bias:
                out += [(f"bias_ih_l{k}{sfx}", (G,)), (f"bias_hh_l{k}{sfx}", (G,))]
    return out


STATE_CONFIGS = [(1, False, True), (2, True, True), (3, False, False), (2, True, False)]


@pytest.mark.parametrize("config", STATE_CONFIGS, ids=lambda c: f"L{c[0]}-bidir{c[1]}-bias{c[2]}")
@pytest.mark.parametrize("mode", MODES)
def test_state_dict_keys_and_shapes(ns, mode, config):
    L, bidir, bias = config
    layer = make_layer(ns, mode, 3, 5, num_layers=L, bidirectional=bidir, bias=bias)
    sd = layer.state_dict()
    assert [(k, v.shape) for k, v in sd.items()] == _expected_keys_and_shapes(mode, 3, 5, L, bidir, bias)
    assert list(layer.params) == list(sd) == list(layer.grads)
    for k in sd:
        assert layer.grads[k].shape == sd[k].shape
        assert np.array_equal(sd[k], layer.params[k])
    # copies: changing the state_dict does not touch the layer
    for v in sd.values():
        v += 1
    assert all(not np.array_equal(sd[k], layer.params[k]) for k in sd)

    torch = pytest.importorskip("torch")
    kwargs = dict(num_layers=L, bidirectional=bidir, bias=bias)
    if mode.startswith("rnn_"):
        module = torch.nn.RNN(3, 5, nonlinearity=mode[4:], **kwargs)
    else:
        module = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[mode](3, 5, **kwargs)
    assert [(k, tuple(v.shape)) for k, v in module.state_dict().items()] == \
           [(k, v.shape) for k, v in layer.state_dict().items()]


def _changed_state(layer):
    return {k: v + 0.25 for k, v in layer.state_dict().items()}


@pytest.mark.parametrize("mode", ["rnn_tanh", "lstm"])
def test_load_state_dict_errors_leave_params_unchanged(ns, mode):
    layer = _layer(ns, mode, num_layers=2, bidirectional=True)
    before = layer.state_dict()
    live = dict(layer.params)
    keys = list(before)
    last = keys[-1]

    def check_unchanged():
        for k in keys:
            assert layer.params[k] is live[k], "params arrays must stay the same objects"
            assert np.array_equal(layer.params[k], before[k]), f"{k} changed by a failed load"

    missing = _changed_state(layer)
    del missing[last]
    with pytest.raises(KeyError, match=last):
        layer.load_state_dict(missing)
    check_unchanged()

    extra = _changed_state(layer)
    extra["weight_ih_l7"] = np.zeros((4, 4))
    with pytest.raises(KeyError, match="weight_ih_l7"):
        layer.load_state_dict(extra)
    check_unchanged()

    for bad_shape in [before[last].shape + (1,), before[last].shape[:-1] + (before[last].shape[-1] + 1,), ()]:
        wrong = _changed_state(layer)
        wrong[last] = np.zeros(bad_shape)
        with pytest.raises(ValueError, match=last):
            layer.load_state_dict(wrong)
        check_unchanged()

    transposed = _changed_state(layer)
    transposed["weight_ih_l1"] = transposed["weight_ih_l1"].T
    with pytest.raises(ValueError, match="weight_ih_l1"):
        layer.load_state_dict(transposed)
    check_unchanged()

    for bad_value in [np.full(before[last].shape, "x"), before[last].astype(np.complex128),
                      np.full(before[last].shape, None, dtype=object)]:
        wrong = _changed_state(layer)
        wrong[last] = bad_value
        with pytest.raises(TypeError, match=last):
            layer.load_state_dict(wrong)
        check_unchanged()

    with pytest.raises(TypeError):
        layer.load_state_dict([("weight_ih_l0", before["weight_ih_l0"])])
    check_unchanged()

    # and a correct load writes everything, into the same arrays
    good = _changed_state(layer)
    layer.load_state_dict(good)
    for k in keys:
        assert layer.params[k] is live[k]
        np.testing.assert_array_equal(layer.params[k], good[k].astype(layer.dtype))


def test_load_state_dict_accepts_array_likes(ns):
    layer = _layer(ns, "gru", dtype=np.float64)
    sd = layer.state_dict()
    as_lists = {k: v.tolist() for k, v in sd.items()}
    other = _layer(ns, "gru", dtype=np.float64, seed=3)
    other.load_state_dict(as_lists)
    for k in sd:
        assert np.array_equal(other.params[k], sd[k])
    # float32 values into a float64 layer and back
    f32 = _layer(ns, "gru", dtype=np.float32, seed=4)
    f32.load_state_dict(sd)
    for k in sd:
        assert f32.params[k].dtype == np.float32
        np.testing.assert_array_equal(f32.params[k], sd[k].astype(np.float32))


# ----------------------------------------------------------------------------- live params and grads
@pytest.mark.parametrize("mode", MODES)
def test_in_place_param_change_reaches_next_forward(ns, mode):
    layer = _layer(ns, mode, dtype=np.float64, bidirectional=True)
    x, hx = _inputs(layer)
    y1, _ = layer.forward(x, hx)
    y1_again, _ = layer.forward(x, hx)  # the engine may cache packed weights after this
    assert np.array_equal(y1, y1_again)
    for key in ("weight_hh_l0", "weight_ih_l0_reverse", "bias_hh_l0"):
        layer.params[key] *= 0.5
        layer.params[key] += 0.01
        y2, _ = layer.forward(x, hx)
        assert not np.allclose(y1, y2), f"changing {key} in place did not change the output"
        # and the new output is the right one
        ref = copy_weights(make_layer(reference, mode, IN, H, dtype=np.float64, bidirectional=True), layer)
        y_ref, _ = ref.forward(x, hx)
        np.testing.assert_allclose(y2, y_ref, rtol=1e-9, atol=1e-12)
        y1 = y2


@pytest.mark.parametrize("mode", MODES)
def test_in_place_param_change_reaches_backward(ns, mode):
    """An optimizer step (in place) between two training steps: the next backward uses the new weights."""
    layer = _layer(ns, mode, dtype=np.float64)
    x, hx = _inputs(layer)
    dy, dhn = loss_grads(np.random.default_rng(1), layer, T, B)
    forward_backward(layer, x, hx, None, dy, dhn)
    for k, p in layer.params.items():
        p -= 0.1 * layer.grads[k]
    out = forward_backward(layer, x, hx, None, dy, dhn)
    ref = copy_weights(make_layer(reference, mode, IN, H, dtype=np.float64), layer)
    assert_all_close(out, forward_backward(ref, x, hx, None, dy, dhn), rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("mode", MODES)
def test_grads_accumulate_and_zero_grad_clears(ns, mode):
    layer = _layer(ns, mode, dtype=np.float64, num_layers=2, bidirectional=True)
    x, hx = _inputs(layer)
    dy, dhn = loss_grads(np.random.default_rng(2), layer, T, B)
    live = dict(layer.grads)
    assert all(np.all(g == 0) for g in layer.grads.values())
    layer.forward(x, hx)
    dx1, dhx1 = layer.backward(dy, dhn)
    once = {k: g.copy() for k, g in layer.grads.items()}
    assert all(np.any(g != 0) for g in once.values())
    layer.forward(x, hx)
    dx2, dhx2 = layer.backward(dy, dhn)
    for k, g in layer.grads.items():
        assert g is live[k]
        np.testing.assert_allclose(g, 2 * once[k], rtol=1e-12, atol=1e-14)
    # dx and dhx are not accumulated
    np.testing.assert_allclose(dx2, dx1, rtol=1e-12, atol=1e-14)
    layer.zero_grad()
    for k, g in layer.grads.items():
        assert g is live[k] and np.all(g == 0)


@pytest.mark.parametrize("mode", MODES)
def test_backward_with_no_gradients_gives_zeros(ns, mode):
    layer = _layer(ns, mode, num_layers=2, bidirectional=True)
    x, hx = _inputs(layer)
    layer.forward(x, hx)
    dx, dhx = layer.backward(None, None)
    assert dx.shape == x.shape and np.all(dx == 0)
    for v in flatten_state(layer, "dhx", dhx).values():
        assert v.shape == state_shape(layer, B) and np.all(v == 0)
    assert all(np.all(g == 0) for g in layer.grads.values())


@pytest.mark.parametrize("mode", MODES)
def test_dy_none_equals_zero_dy_and_dhn_none_equals_zero_dhn(ns, mode):
    layer = _layer(ns, mode, dtype=np.float64, num_layers=2)
    x, hx = _inputs(layer)
    dy, dhn = loss_grads(np.random.default_rng(4), layer, T, B)
    zero_dhn = tuple(np.zeros_like(a) for a in dhn) if is_lstm(layer) else np.zeros_like(dhn)
    assert_all_close(forward_backward(layer, x, hx, None, None, dhn),
                     forward_backward(layer, x, hx, None, np.zeros_like(dy), dhn), rtol=0, atol=0)
    assert_all_close(forward_backward(layer, x, hx, None, dy, None),
                     forward_backward(layer, x, hx, None, dy, zero_dhn), rtol=0, atol=0)


# ----------------------------------------------------------------------------- shapes, no_grad, call
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_output_shapes_and_call(ns, mode, batch_first, bidirectional):
    layer = _layer(ns, mode, num_layers=2, batch_first=batch_first, bidirectional=bidirectional)
    x, hx = _inputs(layer)
    y, hn = layer(x, hx)
    assert y.shape == output_shape(layer, T, B) and y.dtype == np.float32
    if is_lstm(layer):
        assert isinstance(hn, tuple) and len(hn) == 2
    for v in flatten_state(layer, "hn", hn).values():
        assert v.shape == state_shape(layer, B)
    y2, hn2 = layer.forward(x, hx)
    assert np.array_equal(y, y2)
    dx, dhx = layer.backward(np.ones_like(y))
    assert dx.shape == x.shape
    if is_lstm(layer):
        assert isinstance(dhx, tuple) and len(dhx) == 2
    # hn of the top layer is y at the last step (forward) / first step (reverse)
    y_tm = y.transpose(1, 0, 2) if batch_first else y
    h_last = flatten_state(layer, "hn", hn)["hn_h"]
    D = 2 if bidirectional else 1
    np.testing.assert_allclose(h_last[(layer.num_layers - 1) * D], y_tm[-1, :, :H], rtol=1e-6)
    if bidirectional:
        np.testing.assert_allclose(h_last[-1], y_tm[0, :, H:], rtol=1e-6)


def test_batch_first_is_a_transpose(ns):
    for mode in MODES:
        tm = _layer(ns, mode, dtype=np.float64, num_layers=2, bidirectional=True)
        bf = copy_weights(_layer(ns, mode, dtype=np.float64, num_layers=2, bidirectional=True, batch_first=True), tm)
        x, hx = _inputs(tm)
        lengths = [T, 1, 3]
        dy, dhn = loss_grads(np.random.default_rng(0), tm, T, B)
        out_tm = forward_backward(tm, x, hx, lengths, dy, dhn)
        out_bf = forward_backward(bf, x.transpose(1, 0, 2), hx, lengths, dy.transpose(1, 0, 2), dhn)
        for key in ("y", "dx"):
            out_bf[key] = out_bf[key].transpose(1, 0, 2)
        assert_all_close(out_bf, out_tm, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("mode", MODES)
def test_no_grad_forward_gives_same_outputs(ns, mode):
    layer = _layer(ns, mode, num_layers=2, bidirectional=True)
    x, hx = _inputs(layer)
    lengths = [2, T, 1]
    y, hn = layer.forward(x, hx, lengths)
    with fastrnn.no_grad():
        y_ng, hn_ng = layer.forward(x, hx, lengths)
    np.testing.assert_allclose(y_ng, y, rtol=1e-6, atol=1e-7)
    for a, b in zip(flatten_state(layer, "hn", hn_ng).values(), flatten_state(layer, "hn", hn).values()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_no_grad_restores_mode_after_exception():
    with pytest.raises(ZeroDivisionError):
        with fastrnn.no_grad():
            1 / 0
    assert fastrnn.is_grad_enabled()
    with fastrnn.no_grad():
        with fastrnn.no_grad():
            pass
        assert not fastrnn.is_grad_enabled()
    assert fastrnn.is_grad_enabled()


# ----------------------------------------------------------------------------- lengths semantics
@pytest.mark.parametrize("mode", MODES)
def test_lengths_mean_separate_shorter_sequences(ns, mode):
    """Each row of a batch with lengths computes what that row alone, cut to its length, computes:
    y (zero past the end), hn, dx, dhx; and the batch's grads are the sum of the rows' grads."""
    layer = _layer(ns, mode, dtype=np.float64, num_layers=2, bidirectional=True)
    rng = np.random.default_rng(5)
    x, hx = _inputs(layer, seed=5)
    lengths = np.array([3, T, 1])
    dy, dhn = loss_grads(rng, layer, T, B)
    batch = forward_backward(layer, x, hx, lengths, dy, dhn)
    grads_sum = {k: 0 for k in layer.params}
    for b, n in enumerate(lengths):
        hx_b = tuple(a[:, b:b + 1] for a in hx) if is_lstm(layer) else hx[:, b:b + 1]
        dhn_b = tuple(a[:, b:b + 1] for a in dhn) if is_lstm(layer) else dhn[:, b:b + 1]
        alone = forward_backward(layer, x[:n, b:b + 1], hx_b, None, dy[:n, b:b + 1], dhn_b)
        np.testing.assert_allclose(batch["y"][:n, b], alone["y"][:, 0], rtol=1e-10, atol=1e-12)
        assert np.all(batch["y"][n:, b] == 0)
        np.testing.assert_allclose(batch["dx"][:n, b], alone["dx"][:, 0], rtol=1e-10, atol=1e-12)
        assert np.all(batch["dx"][n:, b] == 0)
        for key in alone:
            if key.startswith(("hn", "dhx")):
                np.testing.assert_allclose(batch[key][:, b], alone[key][:, 0], rtol=1e-10, atol=1e-12, err_msg=key)
            elif key.startswith("grad:"):
                grads_sum[key[5:]] = grads_sum[key[5:]] + alone[key]
    for k, g in grads_sum.items():
        np.testing.assert_allclose(batch["grad:" + k], g, rtol=1e-9, atol=1e-11, err_msg=k)


@pytest.mark.parametrize("mode", MODES)
def test_padding_and_dy_past_the_end_are_ignored(ns, mode):
    layer = _layer(ns, mode, dtype=np.float64, bidirectional=True, num_layers=2, batch_first=True)
    x, hx = _inputs(layer, seed=6)
    lengths = np.array([2, 1, T])
    dy, dhn = loss_grads(np.random.default_rng(6), layer, T, B)
    clean = forward_backward(layer, x, hx, lengths, dy, dhn)
    pad = np.arange(T)[None, :] >= lengths[:, None]  # (B, T) in batch_first layout
    x_noisy, dy_noisy = x.copy(), dy.copy()
    x_noisy[pad] = np.nan
    dy_noisy[pad] = 1e3
    noisy = forward_backward(layer, x_noisy, hx, lengths, dy_noisy, dhn)
    assert_all_close(noisy, clean, rtol=0, atol=0)


@pytest.mark.parametrize("mode", MODES)
def test_full_lengths_equal_no_lengths(ns, mode):
    layer = _layer(ns, mode, bidirectional=True)
    x, hx = _inputs(layer)
    dy, dhn = loss_grads(np.random.default_rng(7), layer, T, B)
    a = forward_backward(layer, x, hx, np.full(B, T), dy, dhn)
    b = forward_backward(layer, x, hx, None, dy, dhn)
    assert_all_close(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("lengths", [[1, 2, 3], (1, 2, 3), np.array([1, 2, 3], np.int32),
                                     np.array([1, 2, 3], np.uint8)],
                         ids=["list", "tuple", "int32", "uint8"])
def test_lengths_array_likes(ns, lengths):
    layer = _layer(ns, "gru")
    x, hx = _inputs(layer)
    y1, h1 = layer.forward(x, hx, lengths)
    y2, h2 = layer.forward(x, hx, np.array([1, 2, 3], np.int64))
    assert np.array_equal(y1, y2) and np.array_equal(h1, h2)


# ----------------------------------------------------------------------------- dropout, train / eval
@pytest.mark.parametrize("mode", MODES)
def test_dropout_train_vs_eval(ns, mode):
    x, hx = _inputs(_layer(ns, mode, num_layers=3))
    plain = _layer(ns, mode, num_layers=3, seed=1)
    drop = copy_weights(_layer(ns, mode, num_layers=3, dropout=0.5, seed=2), plain)
    y_plain, _ = plain.forward(x, hx)
    assert drop.training
    y_train, _ = drop.forward(x, hx)
    assert not np.allclose(y_train, y_plain)
    y_train2, _ = drop.forward(x, hx)
    assert not np.array_equal(y_train2, y_train), "each forward must draw a new mask"
    assert drop.eval() is drop and not drop.training
    y_eval, _ = drop.forward(x, hx)
    np.testing.assert_array_equal(y_eval, y_plain)
    drop.train()
    assert drop.training
    y_train3, _ = drop.forward(x, hx)
    assert not np.allclose(y_train3, y_plain)
    drop.train(False)
    assert not drop.training


@pytest.mark.parametrize("mode", MODES)
def test_dropout_same_seed_same_masks(ns, mode):
    x, hx = _inputs(_layer(ns, mode, num_layers=2))
    a = _layer(ns, mode, num_layers=2, dropout=0.3, seed=123)
    b = _layer(ns, mode, num_layers=2, dropout=0.3, seed=123)
    c = copy_weights(_layer(ns, mode, num_layers=2, dropout=0.3, seed=124), a)
    for k in a.params:
        assert np.array_equal(a.params[k], b.params[k])
    for _ in range(2):
        ya, _ = a.forward(x, hx)
        yb, _ = b.forward(x, hx)
        yc, _ = c.forward(x, hx)
        assert np.array_equal(ya, yb)
        assert not np.allclose(ya, yc)


@pytest.mark.parametrize("mode", MODES)
def test_dropout_zero_or_single_layer_is_identity(ns, mode):
    x, hx = _inputs(_layer(ns, mode, num_layers=2))
    p0 = _layer(ns, mode, num_layers=2, dropout=0.0)
    y_train, _ = p0.forward(x, hx)
    y_eval, _ = p0.eval().forward(x, hx)
    assert np.array_equal(y_train, y_eval)
    single = _layer(ns, mode, num_layers=1, dropout=0.5)  # dropout only between layers
    xs, hxs = _inputs(single)
    y_train, _ = single.forward(xs, hxs)
    y_eval, _ = single.eval().forward(xs, hxs)
    assert np.array_equal(y_train, y_eval)


def test_dropout_is_inverted_dropout_on_layer_inputs_only(ns):
    """Recover the mask from a 2-layer tanh RNN's outputs: layer 2's pre-activation is
    W_ih (m * y1_t) + W_hh y2_(t-1) + b, so m * y1_t = W_ih^-1 (atanh(y2_t) - W_hh y2_(t-1) - b).
    Every mask value must be 0 or 1/(1-p); the recurrent connection is never dropped."""
    p, Hs, steps, batch = 0.4, 4, 6, 5
    layer = ns.RNN(Hs, Hs, num_layers=2, dropout=p, dtype=np.float64, seed=8)
    rng = np.random.default_rng(8)
    x = rng.standard_normal((steps, batch, Hs)) * 0.5
    first = copy_weights(reference.RNN(Hs, Hs, dtype=np.float64), _sub_layer(layer, 0))
    y1, _ = first.forward(x)

    def recovered_mask(y2):
        prev = np.concatenate([np.zeros((1, batch, Hs)), y2[:-1]])
        P = layer.params
        a = np.arctanh(y2) - prev @ P["weight_hh_l1"].T - P["bias_ih_l1"] - P["bias_hh_l1"]
        masked = np.linalg.solve(P["weight_ih_l1"], a.reshape(-1, Hs).T).T.reshape(a.shape)
        ok = np.abs(y1) > 1e-2
        return masked[ok] / y1[ok]

    m_train = recovered_mask(layer.forward(x)[0])
    keep = 1 / (1 - p)
    is_zero, is_keep = np.abs(m_train) < 1e-6, np.abs(m_train - keep) < 1e-6
    assert np.all(is_zero | is_keep), np.sort(m_train)
    assert 0.15 < is_zero.mean() < 0.65
    m_eval = recovered_mask(layer.eval().forward(x)[0])
    np.testing.assert_allclose(m_eval, 1.0, atol=1e-6)


def _sub_layer(layer, k):
    """A single-layer reference holding layer k's (forward-direction) weights, for building expectations."""
    class _View:
        def state_dict(self):
            return {name.replace(f"_l{k}", "_l0"): v.copy() for name, v in layer.params.items()
                    if name.endswith(f"_l{k}")}
    return _View()


# ----------------------------------------------------------------------------- threads
def test_threads_api():
    n0 = fastrnn.get_num_threads()
    assert isinstance(n0, int) and n0 >= 1
    for bad in (0, -1):
        with pytest.raises(ValueError):
            fastrnn.set_num_threads(bad)
    for bad in (1.5, "2", None, True):
        with pytest.raises(TypeError):
            fastrnn.set_num_threads(bad)
    assert fastrnn.get_num_threads() == n0
    fastrnn.set_num_threads(1)
    assert fastrnn.get_num_threads() == 1
    fastrnn.set_num_threads(2)
    assert fastrnn.get_num_threads() == 2
    layer = fastrnn.LSTM(3, 4, seed=0)
    y2, _ = layer.forward(np.ones((4, 2, 3)))
    fastrnn.set_num_threads(1)
    y1, _ = layer.forward(np.ones((4, 2, 3)))
    np.testing.assert_allclose(y2, y1, rtol=1e-6)


# ----------------------------------------------------------------------------- input layouts
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_input_layouts_give_same_results_and_are_not_modified(ns, mode, dtype):
    layer = _layer(ns, mode, dtype=dtype, num_layers=2, bidirectional=True)
    x, hx = _inputs(layer)
    lengths = np.array([T, 2, 1])
    dy, dhn = loss_grads(np.random.default_rng(3), layer, T, B)
    base = forward_backward(layer, x, hx, lengths, dy, dhn)

    def variants(a):
        big = np.zeros((a.shape[0], a.shape[1] * 2, a.shape[2] * 3), a.dtype)
        strided = big[:, ::2, ::3]
        strided[...] = a
        assert not strided.flags.c_contiguous
        fortran = np.asfortranarray(a)
        readonly = a.copy()
        readonly.setflags(write=False)
        other_dtype = a.astype(np.longdouble)  # another float dtype holding exactly the same values
        return {"strided": strided, "fortran": fortran, "readonly": readonly, "list": a.tolist(),
                "roundtrip_dtype": other_dtype, "negative_strides": a[::-1].copy()[::-1]}

    def state_variants(s):
        if is_lstm(layer):
            vh, vc = variants(s[0]), variants(s[1])
            return {k: (vh[k], vc[k]) for k in vh}
        return variants(s)

    def snapshot(v):
        if isinstance(v, tuple):
            return tuple(snapshot(a) for a in v)
        return np.array(v, copy=True)

    xs, hxs, dys, dhns = variants(x), state_variants(hx), variants(dy), state_variants(dhn)
    for kind in xs:
        args = (xs[kind], hxs[kind], lengths.tolist() if kind == "list" else lengths, dys[kind], dhns[kind])
        before = [snapshot(a) for a in args]
        out = forward_backward(layer, *args)
        assert_all_close(out, base, rtol=0, atol=0, context=kind)
        for a, b in zip(args, before):  # no input was modified
            if isinstance(a, tuple):
                for aa, bb in zip(a, b):
                    assert np.array_equal(np.asarray(aa), bb), kind
            else:
                assert np.array_equal(np.asarray(a), b), kind


def test_float64_input_to_float32_layer_is_converted(ns):
    layer = _layer(ns, "lstm", dtype=np.float32)
    x, hx = _inputs(layer)
    x64 = x.astype(np.float64) + 1e-12  # rounds back to x in float32
    y, _ = layer.forward(x64, hx)
    y_ref, _ = layer.forward(x, hx)
    assert y.dtype == np.float32
    assert np.array_equal(y, y_ref)


def test_outputs_do_not_alias_inputs_or_params(ns):
    layer = _layer(ns, "rnn_tanh", dtype=np.float64)
    x, hx = _inputs(layer)
    y, hn = layer.forward(x, hx)
    params = [p for p in layer.params.values()] + [g for g in layer.grads.values()]
    for out in (y, hn):
        for a in [x, hx] + params:
            assert not np.shares_memory(out, a)
    dx, dhx = layer.backward(np.ones_like(y))
    for out in (dx, dhx):
        for a in [x, hx, y, hn] + params:
            assert not np.shares_memory(out, a)


def test_engines_are_distinct_classes():
    assert fastrnn.LSTM is not reference.LSTM
    assert fastrnn.RNN is not reference.RNN and fastrnn.GRU is not reference.GRU
    for name in ("RNN", "LSTM", "GRU", "no_grad", "is_grad_enabled", "set_num_threads", "get_num_threads",
                 "reference", "__version__"):
        assert hasattr(fastrnn, name)


# ----------------------------------------------------------------------------- the tape belongs to its forward
def _backward_or_raise(layer, dy):
    try:
        return layer.backward(dy)
    except RuntimeError:
        return None


@pytest.mark.parametrize("mode", MODES)
def test_backward_is_not_changed_by_modifying_x_after_forward(ns, mode):
    """backward is BPTT through the most recent forward: writing into the caller's x between forward and
    backward must not change the gradients (a RuntimeError, as torch gives, is acceptable too)."""
    layer = _layer(ns, mode, dtype=np.float64)
    x, hx = _inputs(layer)
    dy, _ = loss_grads(np.random.default_rng(0), layer, T, B)
    expected = forward_backward(layer, x.copy(), hx, None, dy, None)
    layer.zero_grad()
    layer.forward(x, hx)  # C-contiguous, the layer's dtype: the layer may keep a reference to it
    x *= 3.0
    out = _backward_or_raise(layer, dy)
    if out is not None:
        np.testing.assert_allclose(out[0], expected["dx"], rtol=1e-12, atol=1e-14)
        for k, g in layer.grads.items():
            np.testing.assert_allclose(g, expected["grad:" + k], rtol=1e-12, atol=1e-14, err_msg=k)


@pytest.mark.parametrize("mode", MODES)
def test_backward_is_not_changed_by_modifying_params_after_forward(ns, mode):
    """Same for an in-place change of the live params between forward and backward: either the
    gradients of the forward that ran, or a RuntimeError; never a mix of old and new weights."""
    layer = _layer(ns, mode, dtype=np.float64)
    x, hx = _inputs(layer)
    dy, _ = loss_grads(np.random.default_rng(0), layer, T, B)
    expected = forward_backward(layer, x, hx, None, dy, None)
    layer.zero_grad()
    layer.forward(x, hx)
    saved = layer.state_dict()
    for p in layer.params.values():
        p *= 2.0
    out = _backward_or_raise(layer, dy)
    layer.load_state_dict(saved)
    if out is not None:
        np.testing.assert_allclose(out[0], expected["dx"], rtol=1e-12, atol=1e-14)
        for k, g in layer.grads.items():
            np.testing.assert_allclose(g, expected["grad:" + k], rtol=1e-12, atol=1e-14, err_msg=k)


def test_returned_outputs_can_be_modified_before_backward(ns):
    """y and hn belong to the caller: writing into them does not change backward."""
    for mode in MODES:
        layer = _layer(ns, mode, dtype=np.float64, num_layers=2, bidirectional=True)
        x, hx = _inputs(layer)
        dy, dhn = loss_grads(np.random.default_rng(1), layer, T, B)
        expected = forward_backward(layer, x, hx, None, dy, dhn)
        layer.zero_grad()
        y, hn = layer.forward(x, hx)
        y[...] = 7.0
        for v in flatten_state(layer, "hn", hn).values():
            v[...] = -7.0
        dx, dhx = layer.backward(dy, dhn)
        np.testing.assert_allclose(dx, expected["dx"], rtol=1e-12, atol=1e-14)
        for k, g in layer.grads.items():
            np.testing.assert_allclose(g, expected["grad:" + k], rtol=1e-12, atol=1e-14, err_msg=k)


# ----------------------------------------------------------------------------- threads: environment, Python threads
def test_omp_num_threads_is_honoured():
    import subprocess
    import sys
    import os
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", "import fastrnn; print(fastrnn.get_num_threads())"],
                         env=env, capture_output=True, text=True, timeout=120, cwd=os.path.dirname(__file__))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "1"


def test_concurrent_python_threads_give_serial_results():
    """The kernels release the GIL: layers used from several Python threads at once stay correct."""
    from concurrent.futures import ThreadPoolExecutor
    rng = np.random.default_rng(0)
    jobs = []
    for i, mode in enumerate(MODES * 2):
        layer = make_layer(fastrnn, mode, 16, 24, num_layers=2, bidirectional=True, seed=i)
        x, hx = random_x(rng, layer, 30, 8), random_hx(rng, layer, 8)
        dy, dhn = loss_grads(rng, layer, 30, 8)
        jobs.append((layer, x, hx, dy, dhn))

    def run(job):
        layer, x, hx, dy, dhn = job
        return [forward_backward(layer, x, hx, None, dy, dhn) for _ in range(3)]

    serial = [run(j) for j in jobs]
    with ThreadPoolExecutor(4) as pool:
        parallel = list(pool.map(run, jobs))
    for s, p in zip(serial, parallel):
        for a, b in zip(s, p):
            assert_all_close(b, a, rtol=0, atol=0)


def test_batch_of_one_long_batch_first_sequence_does_not_crash():
    """No input may crash the process (DESIGN.md section 1). Run in a child process so that a crash is
    reported as a failure instead of killing the test session."""
    import os
    import subprocess
    import sys
    script = (
        "import numpy as np, fastrnn\n"
        "for cls in (fastrnn.RNN, fastrnn.GRU):\n"
        "    layer = cls(4, 64, batch_first=True, seed=0)\n"
        "    y, _ = layer.forward(np.ones((1, 3000, 4), np.float32))\n"
        "    dx, _ = layer.backward(np.ones((1, 3000, 64), np.float32))\n"
        "    assert np.all(np.isfinite(dx)), 'non-finite dx'\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                         cwd=os.path.dirname(__file__))
    assert out.returncode == 0 and out.stdout.strip() == "ok", (out.returncode, out.stderr[-2000:])


# ----------------------------------------------------------------------------- LSTM proj_size
@pytest.mark.parametrize("kwargs, error", [
    (dict(proj_size=4), ValueError),      # must be < hidden_size
    (dict(proj_size=9), ValueError),
    (dict(proj_size=-1), ValueError),
    (dict(proj_size=1.5), TypeError),
], ids=["equal_hidden", "above_hidden", "negative", "float"])
def test_lstm_proj_size_bad_values(ns, kwargs, error):
    with pytest.raises(error, match="proj_size"):
        ns.LSTM(3, 4, **kwargs)


@pytest.mark.parametrize("cls", ["RNN", "GRU"])
def test_proj_size_only_for_lstm(ns, cls):
    with pytest.raises((TypeError, ValueError)):
        getattr(ns, cls)(3, 4, proj_size=2)


@pytest.mark.parametrize("config", [(1, False, True), (2, True, True), (3, True, False)],
                         ids=lambda c: f"L{c[0]}-bidir{c[1]}-bias{c[2]}")
def test_lstm_proj_size_shapes_and_state_dict(ns, config):
    L, bidir, bias = config
    P, Hs = 2, 5
    layer = ns.LSTM(3, Hs, num_layers=L, bidirectional=bidir, bias=bias, proj_size=P, seed=0)
    D = 2 if bidir else 1
    x = np.random.default_rng(0).standard_normal((4, 2, 3))
    y, (hn, cn) = layer.forward(x)
    assert y.shape == (4, 2, D * P) and hn.shape == (L * D, 2, P) and cn.shape == (L * D, 2, Hs)
    dx, (dh0, dc0) = layer.backward(np.ones_like(y), (np.ones_like(hn), np.ones_like(cn)))
    assert dx.shape == x.shape and dh0.shape == hn.shape and dc0.shape == cn.shape
    # a c0 in place of h0 (or the other way round) is refused, naming hx
    with pytest.raises(ValueError, match="hx"):
        layer.forward(x, (cn, cn))
    with pytest.raises(ValueError, match="hx"):
        layer.forward(x, (hn, hn))
    torch = pytest.importorskip("torch")
    module = torch.nn.LSTM(3, Hs, num_layers=L, bidirectional=bidir, bias=bias, proj_size=P)
    assert [(k, tuple(v.shape)) for k, v in module.state_dict().items()] == \
           [(k, v.shape) for k, v in layer.state_dict().items()]
