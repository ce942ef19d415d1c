"""fastrnn.freeze(layer): an inference snapshot with its weights packed once (csrc/layer_forward.h's
prepacked path). It must give the layer's results, not see later changes to the layer, and stay
bit-identical between a streamed sequence and one call over it, and across thread counts."""
import numpy as np
import pytest

import fastrnn
from fastrnn import _kernels

from _helpers import MODES, make_layer, make_lengths, num_threads, random_hx, random_x

TOL = {np.float32: dict(rtol=2e-5, atol=2e-6), np.float64: dict(rtol=1e-12, atol=1e-13)}

OPTIONS = {
    "plain": {},
    "two_layers": dict(num_layers=2),
    "bidirectional": dict(bidirectional=True),
    "batch_first_no_bias": dict(batch_first=True, bias=False),
    "stacked_bidir_dropout": dict(num_layers=3, bidirectional=True, dropout=0.5),  # the snapshot never drops
}


def states(hn):
    return hn if isinstance(hn, tuple) else (hn,)


def layer_eval_output(layer, x, hx, lengths):
    """The layer's own inference result (evaluation mode, no tape), leaving its mode as it was."""
    training = layer.training
    layer.eval()
    with fastrnn.no_grad():
        out = layer(x, hx, lengths)
    layer.train(training)
    return out


def assert_outputs(a, b, exact=False, **tol):
    (ya, ha), (yb, hb) = a, b
    for u, v in zip((ya, *states(ha)), (yb, *states(hb))):
        assert u.shape == v.shape and u.dtype == v.dtype
        if exact:
            np.testing.assert_array_equal(u, v)
        else:
            np.testing.assert_allclose(u, v, **tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("options", list(OPTIONS))
@pytest.mark.parametrize("mode", MODES)
def test_snapshot_gives_the_layers_results(mode, options, dtype):
    rng = np.random.default_rng(1)
    layer = make_layer(fastrnn, mode, 6, 9, dtype=dtype, seed=2, **OPTIONS[options])
    frozen = fastrnn.freeze(layer)
    for T, B, ragged, with_hx in ((7, 5, False, True), (4, 1, False, False), (6, 4, True, True), (1, 3, False, True)):
        x = random_x(rng, layer, T, B)
        hx = random_hx(rng, layer, B) if with_hx else None
        lengths = make_lengths(rng, B, T) if ragged else None
        assert_outputs(frozen(x, hx, lengths), layer_eval_output(layer, x, hx, lengths), **TOL[dtype])
    assert layer.training  # freezing does not touch the layer


@pytest.mark.parametrize("case", ["proj", "proj_bidir_lengths"])
def test_snapshot_of_a_projected_lstm(case):
    rng = np.random.default_rng(3)
    kwargs = dict(proj_size=4) if case == "proj" else dict(proj_size=3, bidirectional=True, num_layers=2)
    layer = fastrnn.LSTM(5, 11, seed=4, dtype=np.float64, **kwargs)
    frozen = fastrnn.freeze(layer)
    x, hx = random_x(rng, layer, 6, 4), random_hx(rng, layer, 4)
    lengths = make_lengths(rng, 4, 6) if case != "proj" else None
    assert_outputs(frozen(x, hx, lengths), layer_eval_output(layer, x, hx, lengths), **TOL[np.float64])


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape", [(1, 100, 100), (1, 40, 520), (3, 300, 200), (5, 30, 40)])  # (B, input_size, hidden_size)
def test_streamed_snapshot_equals_one_call_bit_for_bit(mode, shape):
    """Every product runs on the packed panels whatever T is, including weights past the sizes where the
    layer switches to BLAS's matrix-vector path and K-blocked GEMMs."""
    B, I, H = shape
    rng = np.random.default_rng(5)
    layer = make_layer(fastrnn, mode, I, H, seed=6)
    frozen = fastrnn.freeze(layer)
    x, hx = random_x(rng, layer, 9, B), random_hx(rng, layer, B)
    y_all, hn_all = frozen(x, hx)
    ys, state = [], hx
    for t in range(x.shape[0]):
        y, state = frozen(x[t:t + 1], state)
        ys.append(y)
    assert_outputs((np.concatenate(ys), state), (y_all, hn_all), exact=True)
    assert_outputs((y_all, hn_all), layer_eval_output(layer, x, hx, None), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("mode", MODES)
def test_snapshot_bit_identical_across_thread_counts(mode):
    rng = np.random.default_rng(7)
    layer = make_layer(fastrnn, mode, 40, 70, seed=8, bidirectional=True, num_layers=2)
    frozen = fastrnn.freeze(layer)
    for T, B in ((10, 33), (25, 1), (12, 4)):
        x, hx = random_x(rng, layer, T, B), random_hx(rng, layer, B)
        lengths = make_lengths(rng, B, T) if B > 1 else None
        outs = []
        for n in (1, 2):
            with num_threads(n):
                outs.append(frozen(x, hx, lengths))
        assert_outputs(outs[1], outs[0], exact=True)


@pytest.mark.parametrize("mode", MODES)
def test_snapshot_does_not_see_later_changes(mode):
    rng = np.random.default_rng(9)
    layer = make_layer(fastrnn, mode, 5, 8, seed=10)
    frozen = fastrnn.freeze(layer)
    x, hx = random_x(rng, layer, 4, 2), random_hx(rng, layer, 2)
    before = frozen(x, hx)
    for arr in layer.params.values():  # in place, and by replacement
        arr *= 0.5
    layer.params["weight_hh_l0"] = np.zeros_like(layer.params["weight_hh_l0"])
    copies = frozen.state_dict()
    for arr in copies.values():  # copies: changing them changes nothing either
        arr[...] = 0
    assert_outputs(frozen(x, hx), before, exact=True)
    # and a new snapshot sees the layer as it is now
    assert_outputs(fastrnn.freeze(layer)(x, hx), layer_eval_output(layer, x, hx, None), **TOL[np.float32])


def test_snapshot_weights_are_read_only():
    frozen = fastrnn.freeze(fastrnn.GRU(3, 4, seed=0))
    for arr in frozen._params.values():
        with pytest.raises(ValueError, match="read-only"):
            arr[...] = 0
    for pair in frozen._layer._packed.values():
        for arr in pair:
            assert not arr.flags.writeable


def test_snapshot_attributes_and_repr():
    layer = fastrnn.LSTM(5, 7, num_layers=2, bidirectional=True, proj_size=3, batch_first=True, seed=0)
    frozen = fastrnn.freeze(layer)
    assert isinstance(frozen, fastrnn.FrozenLayer)
    for name in ("input_size", "hidden_size", "num_layers", "bidirectional", "proj_size", "batch_first",
                 "output_size", "num_directions", "dtype", "bias"):
        assert getattr(frozen, name) == getattr(layer, name)
    assert repr(frozen) == f"fastrnn.freeze({layer!r})"
    assert fastrnn.FrozenLayer.forward is fastrnn.FrozenLayer.__call__  # forward is the call, as on a layer
    with pytest.raises(AttributeError):
        frozen.params  # noqa: B018 - the snapshot does not hand out its live arrays
    assert set(frozen.state_dict()) == set(layer.state_dict())
    assert fastrnn.freeze(fastrnn.RNN(2, 3, nonlinearity="relu")).nonlinearity == "relu"


def test_freeze_refuses_what_it_cannot_snapshot():
    with pytest.raises(TypeError, match="fastrnn.RNN, LSTM or GRU"):
        fastrnn.freeze(fastrnn.reference.LSTM(3, 4))
    with pytest.raises(TypeError, match="fastrnn.RNN, LSTM or GRU"):
        fastrnn.freeze("lstm")
    with pytest.raises(TypeError, match="fastrnn.RNN, LSTM or GRU"):
        fastrnn.freeze(fastrnn.JordanRNN(3, 4, 2))
    with pytest.raises(ValueError, match="variants"):
        fastrnn.freeze(fastrnn.LSTM(3, 4, layer_norm=True))


@pytest.mark.parametrize("mode", MODES)
def test_snapshot_raises_the_layers_errors(mode):
    layer = make_layer(fastrnn, mode, 5, 7, seed=0)
    frozen = fastrnn.freeze(layer)
    good_x = np.zeros((2, 3, 5), np.float32)
    for x, hx, lengths in ((good_x[:, :, :4], None, None), (good_x[0], None, None), ("text", None, None),
                           (good_x, np.zeros((1, 2, 7), np.float32), None), (good_x, None, [2, 2, 9])):
        errors = []
        for target in (frozen, layer):
            with pytest.raises((ValueError, TypeError)) as info:
                with fastrnn.no_grad():
                    target(x, hx, lengths)
            errors.append((type(info.value), str(info.value)))
        assert errors[0] == errors[1]


def test_pack_weight_checks_its_buffers():
    w = np.ones((8, 3), np.float32)
    size = _kernels.packed_weight_size("lstm", np.float32, 2, 3)
    _kernels.pack_weight("lstm", w, 2, np.empty(size, np.float32))
    for out in (np.empty(size - 1, np.float32), np.empty(size, np.float64), np.empty((size, 1), np.float32)):
        with pytest.raises(ValueError, match="pack_weight"):
            _kernels.pack_weight("lstm", w, 2, out)
    with pytest.raises(ValueError, match="pack_weight"):
        _kernels.pack_weight("lstm", np.ones(8, np.float32), 2, np.empty(size, np.float32))


def test_one_snapshot_called_from_two_threads():
    """Calls share nothing but the read-only weights: two threads get the serial results."""
    import threading

    rng = np.random.default_rng(11)
    frozen = fastrnn.freeze(fastrnn.LSTM(6, 20, seed=12))
    inputs = [(rng.standard_normal((T, 3, 6)).astype(np.float32), None) for T in (1, 5, 1, 8) * 5]
    serial = [frozen(x, hx) for x, hx in inputs]
    results = [None] * len(inputs)

    def work(part):
        for i in range(part, len(inputs), 2):
            results[i] = frozen(*inputs[i])

    threads = [threading.Thread(target=work, args=(p,)) for p in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got, want in zip(results, serial):
        assert_outputs(got, want, exact=True)
