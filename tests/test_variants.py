"""The recurrent variants beyond torch.nn (issue 8): layer_norm, peephole, recurrent_dropout, zoneout and
reset_after=False.

- the NumPy reference against central finite differences in float64 (every parameter, the new ones
  included, x and the initial state), in train mode with the masks held fixed, and in eval mode;
- the compiled kernels against the reference for every variant x dtype x threads {1, 2} x (one layer, eval;
  two layers, bidirectional, lengths, inter-layer dropout, train mode; batch_first without bias);
- option checks, parameter names and init, eval determinism, train-mode reproducibility from the seed,
  and what each variant reduces to (recurrent dropout in eval mode, zero peepholes are the plain LSTM).
"""
import copy

import numpy as np
import pytest

import fastrnn
from fastrnn import reference

from _helpers import (assert_all_close, assert_all_equal, forward_backward, is_lstm, loss_grads, loss_value,
                      make_lengths, num_threads, random_hx, random_x)

VARIANTS = {
    "lstm": {
        "peephole": dict(peephole=True),
        "layer_norm": dict(layer_norm=True),
        "zoneout": dict(zoneout=0.3),
        "recurrent_dropout": dict(recurrent_dropout=0.4),
        "all": dict(layer_norm=True, peephole=True, zoneout=0.2, recurrent_dropout=0.3),
    },
    "gru": {
        "reset_before": dict(reset_after=False),
        "layer_norm": dict(layer_norm=True),
        "zoneout": dict(zoneout=0.3),
        "recurrent_dropout": dict(recurrent_dropout=0.4),
        "reset_before_zoneout_dropout": dict(reset_after=False, zoneout=0.2, recurrent_dropout=0.3),
        "layer_norm_zoneout_dropout": dict(layer_norm=True, zoneout=0.2, recurrent_dropout=0.3),
    },
}
CASES = [(mode, name) for mode in VARIANTS for name in VARIANTS[mode]]


def build(ns, mode, name, input_size, hidden_size, perturb_rng=None, **kwargs):
    cls = {"lstm": ns.LSTM, "gru": ns.GRU}[mode]
    layer = cls(input_size, hidden_size, **VARIANTS[mode][name], **kwargs)
    if perturb_rng is not None:  # move LN gains/biases and peepholes off their initial values
        for key in layer.params:
            layer.params[key] = layer.params[key] + perturb_rng.normal(size=layer.params[key].shape) * 0.2
    return layer


class FixedMasks:
    """Replays the layer's mask generators (variants and inter-layer dropout) from one state, so every
    forward draws the same masks."""

    def __init__(self, layer):
        self.layer = layer
        self.states = [copy.deepcopy(g.bit_generator.state) for g in (layer._variant_rng, layer._dropout_rng)]

    def __call__(self):
        for g, state in zip((self.layer._variant_rng, self.layer._dropout_rng), self.states):
            g.bit_generator.state = copy.deepcopy(state)


# ----------------------------------------------------------------------------- reference gradcheck
EPS, RTOL, ATOL = 1e-6, 1e-5, 1e-7
GRADCHECK_CONFIGS = {
    "basic_train": dict(train=True),
    "eval": dict(train=False),
    "two_layers_bidir_lengths_dropout_train": dict(train=True, num_layers=2, bidirectional=True, lengths=True,
                                                   dropout=0.3),
}


def _fd(f, arr):
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


@pytest.mark.parametrize("config", list(GRADCHECK_CONFIGS))
@pytest.mark.parametrize("mode,name", CASES)
def test_reference_gradcheck(mode, name, config):
    cfg = dict(GRADCHECK_CONFIGS[config])
    rng = np.random.default_rng(7)
    T, B, IN, H = 4, 3, 3, 3  # H >= 3: LN of the cell over 2 units is near-singular (finite differences suffer)
    train, use_lengths = cfg.pop("train"), cfg.pop("lengths", False)
    layer = build(reference, mode, name, IN, H, perturb_rng=rng, dtype=np.float64, seed=3, **cfg).train(train)
    x = random_x(rng, layer, T, B)
    hx = random_hx(rng, layer, B)
    lengths = make_lengths(rng, B, T) if use_lengths else None
    dy, dhn = loss_grads(rng, layer, T, B)
    replay = FixedMasks(layer)

    def loss():
        replay()
        with fastrnn.no_grad():
            y, hn = layer.forward(x, hx, lengths)
        return loss_value(layer, y, hn, dy, dhn)

    replay()
    layer.zero_grad()
    layer.forward(x, hx, lengths)
    dx, dhx = layer.backward(dy, dhn)
    checks = [("x", dx, x)]
    if is_lstm(layer):
        checks += [("h0", dhx[0], hx[0]), ("c0", dhx[1], hx[1])]
    else:
        checks += [("h0", dhx, hx)]
    checks += [(key, layer.grads[key], layer.params[key]) for key in layer.params]
    for key, analytic, arr in checks:
        np.testing.assert_allclose(analytic, _fd(loss, arr), rtol=RTOL, atol=ATOL, err_msg=f"{mode} {name} {key}")


# ----------------------------------------------------------------------------- compiled vs reference
COMPARE_CONFIGS = {
    "basic_eval": dict(train=False),
    "two_layers_bidir_lengths_dropout_train": dict(train=True, num_layers=2, bidirectional=True, lengths=True, dropout=0.3),
    "batch_first_no_bias_train": dict(train=True, batch_first=True, bias=False),
}
TOL = {np.float32: 3e-4, np.float64: 1e-9}


def _run(ns, mode, name, dtype, config, threads, T=7, B=5, IN=4, H=9):
    cfg = dict(COMPARE_CONFIGS[config])
    rng = np.random.default_rng(11)
    train, use_lengths = cfg.pop("train"), cfg.pop("lengths", False)
    layer = build(ns, mode, name, IN, H, perturb_rng=rng, dtype=dtype, seed=5, **cfg).train(train)
    x = random_x(rng, layer, T, B)
    hx = random_hx(rng, layer, B)
    lengths = make_lengths(rng, B, T) if use_lengths else None
    dy, dhn = loss_grads(rng, layer, T, B)
    with num_threads(threads):
        return forward_backward(layer, x, hx, lengths, dy, dhn)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("config", list(COMPARE_CONFIGS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("mode,name", CASES)
def test_compiled_matches_reference(mode, name, dtype, config, threads):
    compiled = _run(fastrnn, mode, name, dtype, config, threads)
    expected = _run(reference, mode, name, dtype, config, threads)
    assert_all_close(compiled, expected, rtol=TOL[dtype], atol=TOL[dtype], context=f"{mode} {name} {config}")


@pytest.mark.parametrize("mode,name", CASES)
def test_compiled_bit_identical_across_threads(mode, name):
    # big enough that the per-step GEMMs are tiled and the rows are shared among threads
    runs = [_run(fastrnn, mode, name, np.float32, "two_layers_bidir_lengths_dropout_train", n, T=5, B=24, IN=16, H=70)
            for n in (1, 2, 3)]
    assert_all_equal(runs[1], runs[0])
    assert_all_equal(runs[2], runs[0])


@pytest.mark.parametrize("mode,name", CASES)
def test_larger_shapes_match_reference(mode, name):
    # several SIMD vectors per row, odd sizes: tails of every vector loop
    a = _run(fastrnn, mode, name, np.float64, "two_layers_bidir_lengths_dropout_train", 2, T=6, B=9, IN=13, H=37)
    b = _run(reference, mode, name, np.float64, "two_layers_bidir_lengths_dropout_train", 2, T=6, B=9, IN=13, H=37)
    assert_all_close(a, b, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("mode,name", CASES)
def test_inference_path_matches_training_forward(mode, name):
    """Under no_grad the kernels keep no tape (a per-step scratch instead): the same outputs."""
    rng = np.random.default_rng(2)
    layer = build(fastrnn, mode, name, 5, 12, perturb_rng=rng, seed=1, num_layers=2, bidirectional=True).eval()
    x = random_x(rng, layer, 6, 4)
    lengths = [6, 2, 5, 1]
    y, hn = layer(x, lengths=lengths)
    with fastrnn.no_grad():
        y2, hn2 = layer(x, lengths=lengths)
    np.testing.assert_array_equal(y, y2)
    for a, b in zip(hn if is_lstm(layer) else (hn,), hn2 if is_lstm(layer) else (hn2,)):
        np.testing.assert_array_equal(a, b)
    assert np.all(y[2:, 1] == 0) and np.all(y[1:, 3] == 0)  # padded steps: zero outputs


# ----------------------------------------------------------------------------- semantics
@pytest.mark.parametrize("ns", [fastrnn, reference], ids=["compiled", "reference"])
@pytest.mark.parametrize("mode,name", CASES)
def test_eval_mode_is_deterministic(ns, mode, name):
    layer = build(ns, mode, name, 3, 6, seed=0).eval()
    x = np.random.default_rng(0).normal(size=(5, 2, 3)).astype(np.float32)
    y1, _ = layer(x)
    y2, _ = layer(x)
    np.testing.assert_array_equal(y1, y2)


@pytest.mark.parametrize("ns", [fastrnn, reference], ids=["compiled", "reference"])
@pytest.mark.parametrize("mode,name", [c for c in CASES if "zoneout" in c[1] or "dropout" in c[1]])
def test_train_mode_masks_reproducible_from_seed(ns, mode, name):
    x = np.random.default_rng(0).normal(size=(5, 3, 4)).astype(np.float32)
    a, b, c = (build(ns, mode, name, 4, 8, seed=s) for s in (42, 42, 43))
    c.load_state_dict(a.state_dict())
    ya, yb, yc = a(x)[0], b(x)[0], c(x)[0]
    np.testing.assert_array_equal(ya, yb)          # same seed: same masks
    assert not np.array_equal(ya, yc)              # another seed, same weights: other masks
    assert not np.array_equal(ya, a(x)[0])         # each forward draws new masks
    a.eval()
    y_eval, _ = a(x)
    np.testing.assert_array_equal(y_eval, a(x)[0])


def test_compiled_and_reference_draw_the_same_masks():
    x = np.random.default_rng(0).normal(size=(6, 3, 4))
    layers = [ns.LSTM(4, 5, recurrent_dropout=0.5, zoneout=0.5, dtype=np.float64, seed=9) for ns in (fastrnn, reference)]
    for _ in range(2):
        y_c, y_r = (layer(x)[0] for layer in layers)
        np.testing.assert_allclose(y_c, y_r, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("mode", ["lstm", "gru"])
def test_recurrent_dropout_off_in_eval_is_the_plain_layer(mode):
    cls = {"lstm": fastrnn.LSTM, "gru": fastrnn.GRU}[mode]
    variant = cls(4, 7, num_layers=2, recurrent_dropout=0.5, seed=1, dtype=np.float64).eval()
    plain = cls(4, 7, num_layers=2, seed=1, dtype=np.float64).eval()
    assert variant.state_dict().keys() == plain.state_dict().keys()
    plain.load_state_dict(variant.state_dict())
    x = np.random.default_rng(0).normal(size=(5, 3, 4))
    np.testing.assert_allclose(variant(x)[0], plain(x)[0], rtol=1e-12, atol=1e-13)


def test_zero_peepholes_are_the_plain_lstm():
    peep = fastrnn.LSTM(4, 7, peephole=True, seed=1, dtype=np.float64)
    for gate in "ifo":
        peep.params[f"weight_c{gate}_l0"][...] = 0
    plain = fastrnn.LSTM(4, 7, seed=1, dtype=np.float64)
    plain.load_state_dict({k: v for k, v in peep.state_dict().items() if not k.startswith("weight_c")})
    x = np.random.default_rng(0).normal(size=(5, 3, 4))
    np.testing.assert_allclose(peep(x)[0], plain(x)[0], rtol=1e-12, atol=1e-13)


def test_zoneout_eval_is_the_expectation():
    """One step from h0 in eval mode: h_1 = p h_0 + (1 - p) h~_1, h~_1 from the plain cell."""
    p = 0.25
    zone = reference.GRU(3, 4, zoneout=p, seed=2, dtype=np.float64).eval()
    plain = reference.GRU(3, 4, seed=2, dtype=np.float64)
    plain.load_state_dict(zone.state_dict())
    rng = np.random.default_rng(1)
    x, h0 = rng.normal(size=(1, 2, 3)), rng.normal(size=(1, 2, 4))
    np.testing.assert_allclose(zone(x, h0)[0], p * h0 + (1 - p) * plain(x, h0)[0], rtol=1e-12)


def test_parameter_names_shapes_and_init():
    lstm = fastrnn.LSTM(3, 5, num_layers=2, bidirectional=True, layer_norm=True, peephole=True)
    for sfx in ("_l0", "_l1_reverse"):
        for gate in "ifo":
            assert lstm.params[f"weight_c{gate}{sfx}"].shape == (5,)
            assert np.all(np.abs(lstm.params[f"weight_c{gate}{sfx}"]) <= 1 / np.sqrt(5))
        assert lstm.params[f"layernorm_gates_weight{sfx}"].shape == (2, 20)
        assert np.all(lstm.params[f"layernorm_gates_weight{sfx}"] == 1)
        assert np.all(lstm.params[f"layernorm_gates_bias{sfx}"] == 0)
        assert np.all(lstm.params[f"layernorm_cell_weight{sfx}"] == 1)
        assert np.all(lstm.params[f"layernorm_cell_bias{sfx}"] == 0)
    assert set(lstm.grads) == set(lstm.state_dict()) == set(lstm.params)
    gru = fastrnn.GRU(3, 5, layer_norm=True)
    assert gru.params["layernorm_gates_weight_l0"].shape == (2, 15)
    assert "layernorm_cell_weight_l0" not in gru.params
    # the plain weights are drawn exactly as without the variant
    plain = fastrnn.LSTM(3, 5, num_layers=2, bidirectional=True, seed=4)
    peep = fastrnn.LSTM(3, 5, num_layers=2, bidirectional=True, seed=4, peephole=True, layer_norm=True)
    for key in plain.params:
        np.testing.assert_array_equal(plain.params[key], peep.params[key])
    assert "peephole=True" in repr(peep)


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(cls="LSTM", zoneout=1.0), ValueError, "zoneout must be in"),
    (dict(cls="LSTM", zoneout=-0.1), ValueError, "zoneout must be in"),
    (dict(cls="GRU", recurrent_dropout=1.5), ValueError, "recurrent_dropout must be in"),
    (dict(cls="GRU", recurrent_dropout="0.5"), TypeError, "recurrent_dropout must be a number"),
    (dict(cls="LSTM", layer_norm=1), TypeError, "layer_norm must be True or False"),
    (dict(cls="RNN", layer_norm=True), ValueError, "only supported by LSTM and GRU"),
    (dict(cls="RNN", zoneout=0.1), ValueError, "only supported by LSTM and GRU"),
    (dict(cls="RNN", recurrent_dropout=0.1), ValueError, "only supported by LSTM and GRU"),
    (dict(cls="RNN", peephole=True), ValueError, "peephole is only supported by LSTM"),
    (dict(cls="RNN", reset_after=False), ValueError, "reset_after=False is only supported by GRU"),
    (dict(cls="GRU", layer_norm=True, reset_after=False), ValueError, "cannot be combined with reset_after=False"),
    (dict(cls="LSTM", proj_size=2, peephole=True), ValueError, "proj_size cannot be combined"),
    (dict(cls="LSTM", proj_size=2, zoneout=0.1), ValueError, "proj_size cannot be combined"),
])
@pytest.mark.parametrize("ns", [fastrnn, reference], ids=["compiled", "reference"])
def test_bad_options(ns, kwargs, exc, match):
    kwargs = dict(kwargs)
    cls = getattr(ns, kwargs.pop("cls"))
    with pytest.raises(exc, match=match):
        cls(3, 4, **kwargs)


@pytest.mark.parametrize("ns", [fastrnn, reference], ids=["compiled", "reference"])
def test_unknown_options_are_type_errors(ns):
    with pytest.raises(TypeError):
        ns.LSTM(3, 4, reset_after=False)  # not an LSTM option
    with pytest.raises(TypeError):
        ns.GRU(3, 4, peephole=True)       # not a GRU option


def test_second_backward_raises_and_no_grad_keeps_no_tape():
    layer = fastrnn.LSTM(3, 4, layer_norm=True, zoneout=0.2)
    x = np.ones((3, 2, 3), np.float32)
    layer(x)
    layer.backward(np.ones((3, 2, 4), np.float32))
    with pytest.raises(RuntimeError):
        layer.backward(np.ones((3, 2, 4), np.float32))
    with fastrnn.no_grad():
        layer(x)
    with pytest.raises(RuntimeError):
        layer.backward(np.ones((3, 2, 4), np.float32))


@pytest.mark.parametrize("mode,name", CASES)
def test_nan_and_large_inputs_do_not_crash(mode, name):
    layer = build(fastrnn, mode, name, 3, 5, seed=0)
    x = np.full((4, 2, 3), 1e30, np.float32)
    x[1, 0, 0] = np.nan
    y, _ = layer(x)
    layer.backward(np.ones_like(y))
    assert np.isnan(y[1:, 0]).any() and np.all(np.isfinite(y[:, 1]))


@pytest.mark.parametrize("steps", [1, 2, 3])
@pytest.mark.parametrize("mode,name", CASES)
def test_short_sequences_match_reference(mode, name, steps):
    # T <= 2 takes the per-step BLAS products, longer sequences the packed ones
    for config in ("basic_eval", "two_layers_bidir_lengths_dropout_train"):
        a = _run(fastrnn, mode, name, np.float64, config, 2, T=steps, B=4, IN=3, H=10)
        b = _run(reference, mode, name, np.float64, config, 2, T=steps, B=4, IN=3, H=10)
        assert_all_close(a, b, rtol=1e-9, atol=1e-9, context=f"T={steps} {config}")


# ----------------------------------------------------------------------------- random configurations
try:
    from hypothesis import HealthCheck, given, settings, strategies as st
except ImportError:  # hypothesis is a test extra
    given = None

if given is None:
    @pytest.mark.skip(reason="hypothesis is not installed")
    def test_random_variant_configurations():
        pass
else:
    @settings(max_examples=120, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(lstm=st.booleans(), layer_norm=st.booleans(), peephole=st.booleans(), reset_after=st.booleans(),
           recurrent_dropout=st.sampled_from([0.0, 0.3]), zoneout=st.sampled_from([0.0, 0.4]),
           train=st.booleans(), dtype=st.sampled_from([np.float32, np.float64]), threads=st.sampled_from([1, 2, 3]),
           T=st.integers(1, 9), B=st.integers(1, 8), IN=st.integers(1, 12), H=st.integers(1, 40),
           num_layers=st.integers(1, 2), bidirectional=st.booleans(), batch_first=st.booleans(), bias=st.booleans(),
           use_lengths=st.booleans(), hx_none=st.booleans(), seed=st.integers(0, 2**16))
    def test_random_variant_configurations(lstm, layer_norm, peephole, reset_after, recurrent_dropout, zoneout,
                                           train, dtype, threads, T, B, IN, H, num_layers, bidirectional,
                                           batch_first, bias, use_lengths, hx_none, seed):
        """Random combinations of variant options, shapes and layer options: compiled == reference."""
        options = dict(layer_norm=layer_norm, recurrent_dropout=recurrent_dropout, zoneout=zoneout)
        if lstm:
            options["peephole"] = peephole
        else:
            options["reset_after"] = reset_after or layer_norm  # the one combination that is refused
        results = []
        for ns in (fastrnn, reference):
            cls = ns.LSTM if lstm else ns.GRU
            layer = cls(IN, H, num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first,
                        bias=bias, dtype=dtype, seed=seed, dropout=0.2 if num_layers > 1 else 0.0, **options)
            layer.train(train)
            data = np.random.default_rng(seed + 1)
            x = random_x(data, layer, T, B)
            hx = None if hx_none else random_hx(data, layer, B)
            lengths = make_lengths(data, B, T) if use_lengths else None
            dy, dhn = loss_grads(data, layer, T, B)
            with num_threads(threads):
                results.append(forward_backward(layer, x, hx, lengths, dy, dhn))
        assert_all_close(results[0], results[1], rtol=TOL[dtype], atol=TOL[dtype], context=str(options))
