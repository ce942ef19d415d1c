"""The Jordan (output-recurrent) network, fastrnn.JordanRNN (issue 9).

- the NumPy reference against central finite differences in float64, in all three modes (teacher
  forcing, free running, scheduled sampling) x tanh/relu x linear/softmax output, with lengths,
  batch_first, no bias and every softmax feedback;
- the compiled engine against the reference (float32/64, threads 1/2, lengths, batch_first, odd shapes,
  B=1, T=1), and bit-identical across thread counts;
- teacher-forced backward (GEMMs, no time loop) against the step-by-step BPTT kernel with nothing fed back;
- the API: shapes, state dicts, no_grad, gradient accumulation, reproducible sampling, clear errors.
"""
import numpy as np
import pytest

import fastrnn
from fastrnn import reference
from fastrnn._jordan_layer import _JordanTape

ENGINES = {"compiled": fastrnn, "reference": reference}
MODES = ("teacher", "free", "scheduled")
EPS = 1e-6


def make(ns, I=3, H=4, O=3, **kwargs):
    kwargs.setdefault("seed", 7)
    return ns.JordanRNN(I, H, O, **kwargs)


def draw(layer, T, B, seed=0, batch_first=False):
    """x, targets, y0, d_outputs, feed_own for a layer (time-major unless batch_first)."""
    rng = np.random.default_rng(seed)
    I, O = layer.input_size, layer.output_size
    x = rng.standard_normal((T, B, I))
    targets = rng.standard_normal((T, B, O))
    if layer.output == "softmax":
        targets = np.eye(O)[rng.integers(0, O, size=(T, B))]
    y0 = rng.standard_normal((B, O)) * 0.5
    dout = rng.standard_normal((T, B, O))
    own = rng.random((T, B)) < 0.5
    if batch_first:
        x, targets, dout, own = x.transpose(1, 0, 2), targets.transpose(1, 0, 2), dout.transpose(1, 0, 2), own.T
    return x, targets, y0, dout, own


def run(layer, mode, x, targets, y0, own, lengths=None, sample_seed=3):
    if layer.feedback == "sample":  # the same draws on every call (finite differences, engine comparisons)
        layer._sampling_rng = np.random.default_rng(sample_seed)
    if mode == "teacher":
        return layer.forward(x, targets, lengths, y0=y0)
    if mode == "free":
        return layer.forward(x, None, lengths, y0=y0)
    return layer.forward(x, targets, lengths, y0=y0, feed_own=own)


def forward_backward(layer, mode, x, targets, y0, dout, own, lengths=None):
    layer.zero_grad()
    out = run(layer, mode, x, targets, y0, own, lengths)
    dx, dy0 = layer.backward(dout)
    return [out, dx, dy0] + [layer.grads[k].copy() for k in layer.grads]


# ----------------------------------------------------------------------------- reference vs finite differences
GRAD_CONFIGS = [
    dict(nonlinearity=nl, output=out) for nl in ("tanh", "relu") for out in ("linear", "softmax")
] + [
    dict(output="softmax", feedback="argmax"),
    dict(output="softmax", feedback="sample"),
    dict(bias=False),
    dict(batch_first=True, lengths=True),
    dict(output="softmax", lengths=True),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("config", GRAD_CONFIGS, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_reference_gradients_match_finite_differences(mode, config):
    config = dict(config)
    use_lengths = config.pop("lengths", False)
    layer = make(reference, dtype=np.float64, **config)
    T, B = 4, 3
    x, targets, y0, dout, own = draw(layer, T, B, seed=1, batch_first=layer.batch_first)
    lengths = np.array([4, 2, 3]) if use_lengths else None
    analytic = forward_backward(layer, mode, x, targets, y0, dout, own, lengths)
    dx, dy0, grads = analytic[1], analytic[2], dict(zip(layer.grads, analytic[3:]))

    def loss():
        with fastrnn.no_grad():
            return float(np.sum(run(layer, mode, x, targets, y0, own, lengths) * dout))

    def numeric(arr):
        g = np.zeros(arr.shape)
        for idx in np.ndindex(arr.shape):
            old = arr[idx]
            arr[idx] = old + EPS
            plus = loss()
            arr[idx] = old - EPS
            minus = loss()
            arr[idx] = old
            g[idx] = (plus - minus) / (2 * EPS)
        return g

    for name, p in layer.params.items():
        np.testing.assert_allclose(grads[name], numeric(p), rtol=1e-5, atol=1e-7, err_msg=name)
    np.testing.assert_allclose(dx, numeric(x), rtol=1e-5, atol=1e-7, err_msg="dx")
    np.testing.assert_allclose(dy0, numeric(y0), rtol=1e-5, atol=1e-7, err_msg="dy0")
    if use_lengths:  # padded steps: zero outputs, no gradient
        padded = np.arange(T)[:, None] >= lengths[None, :]
        if layer.batch_first:
            padded = padded.T
        assert np.all(analytic[0][padded] == 0) and np.all(dx[padded] == 0)


# ----------------------------------------------------------------------------- compiled vs reference
def compare_engines(mode, T, B, I, H, O, dtype, threads, lengths=None, seed=0, **kwargs):
    fastrnn.set_num_threads(threads)
    layers = [make(ns, I, H, O, dtype=dtype, **kwargs) for ns in (fastrnn, reference)]
    x, targets, y0, dout, own = draw(layers[0], T, B, seed=seed, batch_first=layers[0].batch_first)
    results = [forward_backward(layer, mode, x, targets, y0, dout, own, lengths) for layer in layers]
    tol = 1e-4 if dtype == np.float32 else 1e-10
    names = ["out", "dx", "dy0"] + list(layers[0].grads)
    for name, a, b in zip(names, *results):
        assert a.dtype == np.dtype(dtype), name
        scale = max(1.0, float(np.max(np.abs(b))))
        np.testing.assert_allclose(a, b, rtol=0, atol=tol * scale, err_msg=name)
    return results[0]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("output", ["linear", "softmax"])
def test_compiled_matches_reference(output, nonlinearity, mode, dtype, threads):
    compare_engines(mode, 9, 5, 7, 13, 5, dtype, threads, nonlinearity=nonlinearity, output=output)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape", [(1, 1, 1, 1, 1), (1, 4, 3, 5, 2), (6, 1, 3, 5, 2), (5, 3, 17, 33, 9),
                                   (40, 70, 16, 48, 8)], ids=str)
def test_compiled_matches_reference_odd_shapes(mode, shape):
    for dtype in (np.float32, np.float64):
        compare_engines(mode, *shape, dtype, 2)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("batch_first", [False, True])
def test_compiled_matches_reference_with_lengths(mode, batch_first):
    lengths = np.array([6, 1, 4, 6, 2])
    for dtype in (np.float32, np.float64):
        for output in ("linear", "softmax"):
            out = compare_engines(mode, 6, 5, 3, 7, 4, dtype, 2, lengths=lengths, batch_first=batch_first,
                                  output=output)[0]
            padded = np.arange(6)[:, None] >= lengths[None, :]
            assert np.all((out.transpose(1, 0, 2) if batch_first else out)[padded] == 0)


@pytest.mark.parametrize("mode", ["free", "scheduled"])
@pytest.mark.parametrize("feedback", ["argmax", "sample"])
def test_compiled_matches_reference_hard_feedback(mode, feedback):
    compare_engines(mode, 8, 4, 3, 6, 5, np.float64, 2, output="softmax", feedback=feedback)


def test_compiled_no_bias_matches_reference():
    for mode in MODES:
        compare_engines(mode, 5, 3, 4, 6, 3, np.float64, 1, bias=False)


@pytest.mark.parametrize("mode", MODES)
def test_results_bit_identical_across_thread_counts(mode):
    layer = make(fastrnn, 32, 96, 16)
    x, targets, y0, dout, own = draw(layer, 30, 64)
    results = []
    for threads in (1, 2, 3):
        fastrnn.set_num_threads(threads)
        results.append(forward_backward(layer, mode, x, targets, y0, dout, own))
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert np.array_equal(a, b)


# ----------------------------------------------------------------------------- teacher forcing == p = 0
@pytest.mark.parametrize("ns", ENGINES.values(), ids=ENGINES.keys())
@pytest.mark.parametrize("output", ["linear", "softmax"])
def test_teacher_forcing_equals_scheduled_sampling_with_p_zero(ns, output):
    layer = make(ns, 4, 6, 3, output=output, dtype=np.float64)
    x, targets, y0, dout, own = draw(layer, 5, 3)
    a = forward_backward(layer, "teacher", x, targets, y0, dout, own)
    layer.zero_grad()
    out = layer.forward(x, targets, y0=y0, p=0.0)
    b = [out, *layer.backward(dout)] + [layer.grads[k].copy() for k in layer.grads]
    layer.zero_grad()
    out = layer.forward(x, targets, y0=y0, feed_own=np.zeros((5, 3), bool))
    c = [out, *layer.backward(dout)] + [layer.grads[k].copy() for k in layer.grads]
    for u, v, w in zip(a, b, c):
        np.testing.assert_array_equal(u, v)
        np.testing.assert_array_equal(u, w)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("output", ["linear", "softmax"])
def test_teacher_forced_gemm_path_equals_step_loop_with_nothing_fed_back(dtype, output):
    """The parallel path (three GEMMs forward, no time loop backward) against the step-by-step kernels
    run with targets everywhere (an all-False own mask, which the public API turns into teacher forcing)."""
    layer = make(fastrnn, 5, 9, 4, output=output, dtype=dtype)
    T, B = 7, 3
    x, targets, y0, dout, _ = draw(layer, T, B)
    parallel = forward_backward(layer, "teacher", x, targets, y0, dout, None)

    xs = np.ascontiguousarray(x, dtype=dtype)
    tg = np.ascontiguousarray(targets, dtype=dtype)
    y0s = np.ascontiguousarray(y0, dtype=dtype)
    own = np.zeros((T, B), bool)
    weights = layer._weights(layer.params)
    out, saved = layer._run_forward(xs, tg, own, None, y0s, weights, True)
    layer.zero_grad()
    tape = _JordanTape(x=xs, weights=weights, own=own, padded=None, batch_first=False, saved=saved)
    dx, dy0 = layer._run_backward(tape, np.array(dout, dtype=dtype), layer._weights(layer.grads))
    stepped = [out, dx, dy0] + [layer.grads[k].copy() for k in layer.grads]
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for a, b in zip(parallel, stepped):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


# ----------------------------------------------------------------------------- semantics
@pytest.mark.parametrize("ns", ENGINES.values(), ids=ENGINES.keys())
def test_free_running_equals_p_one_and_feeds_own_outputs(ns):
    layer = make(ns, 3, 5, 2, dtype=np.float64)
    x, targets, y0, _, _ = draw(layer, 6, 2)
    free = layer.forward(x, y0=y0)
    np.testing.assert_array_equal(layer.forward(x, targets, y0=y0, p=1.0), free)
    # step by step: h_t = tanh(W_ih x_t + W_oh o_{t-1} + b_h), o_t = W_ho h_t + b_o
    p = layer.params
    y = y0
    for t in range(6):
        h = np.tanh(x[t] @ p["weight_ih"].T + y @ p["weight_oh"].T + p["bias_h"])
        y = h @ p["weight_ho"].T + p["bias_o"]
        np.testing.assert_allclose(free[t], y, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("ns", ENGINES.values(), ids=ENGINES.keys())
def test_teacher_forcing_feeds_previous_target(ns):
    layer = make(ns, 3, 5, 2, dtype=np.float64)
    x, targets, y0, _, _ = draw(layer, 4, 2)
    out = layer.forward(x, targets, y0=y0)
    p = layer.params
    for t in range(4):
        y_prev = y0 if t == 0 else targets[t - 1]
        h = np.tanh(x[t] @ p["weight_ih"].T + y_prev @ p["weight_oh"].T + p["bias_h"])
        np.testing.assert_allclose(out[t], h @ p["weight_ho"].T + p["bias_o"], rtol=1e-12, atol=1e-12)
    # the last target is never fed back
    changed = targets.copy()
    changed[-1] += 5
    np.testing.assert_array_equal(layer.forward(x, changed, y0=y0), out)


@pytest.mark.parametrize("ns", ENGINES.values(), ids=ENGINES.keys())
def test_scheduled_sampling_is_seeded_and_in_between(ns):
    def outputs(seed):
        layer = make(ns, 3, 5, 2, seed=seed, dtype=np.float64)
        x, targets, y0, _, _ = draw(layer, 20, 8)
        return [layer.forward(x, targets, p=0.5) for _ in range(2)], layer.forward(x, targets), layer.forward(x)

    (a1, a2), teacher, free = outputs(5)
    (b1, b2), _, _ = outputs(5)
    np.testing.assert_array_equal(a1, b1)
    np.testing.assert_array_equal(a2, b2)
    assert not np.array_equal(a1, a2)  # a fresh mask per call
    assert not np.array_equal(a1, teacher) and not np.array_equal(a1, free)
    np.testing.assert_array_equal(a1[0], teacher[0])  # step 0 always reads y0


@pytest.mark.parametrize("ns", ENGINES.values(), ids=ENGINES.keys())
def test_softmax_class_index_targets_equal_one_hot(ns):
    layer = make(ns, 3, 5, 4, output="softmax", dtype=np.float64)
    rng = np.random.default_rng(0)
    x, idx = rng.standard_normal((5, 3, 3)), rng.integers(0, 4, size=(5, 3))
    np.testing.assert_array_equal(layer.forward(x, idx), layer.forward(x, np.eye(4)[idx]))
    layer_bf = make(ns, 3, 5, 4, output="softmax", dtype=np.float64, batch_first=True)
    np.testing.assert_array_equal(layer_bf.forward(x.transpose(1, 0, 2), idx.T),
                                  layer.forward(x, idx).transpose(1, 0, 2))


@pytest.mark.parametrize("ns", ENGINES.values(), ids=ENGINES.keys())
@pytest.mark.parametrize("mode", MODES)
def test_padded_nan_inputs_and_targets_do_not_leak(ns, mode):
    layer = make(ns, 3, 5, 2, dtype=np.float64)
    x, targets, y0, dout, own = draw(layer, 6, 3)
    lengths = np.array([6, 2, 4])
    clean = forward_backward(layer, mode, x, targets, y0, dout, own, lengths)
    padded = np.arange(6)[:, None] >= lengths[None, :]
    x2, t2, d2 = x.copy(), targets.copy(), dout.copy()
    x2[padded], t2[padded], d2[padded] = np.nan, np.nan, np.nan
    dirty = forward_backward(layer, mode, x2, t2, y0, d2, own, lengths)
    for a, b in zip(clean, dirty):
        np.testing.assert_array_equal(a, b)
    # a sequence's valid outputs do not depend on what the longer ones do after it ends
    short = forward_backward(layer, mode, x[:2], targets[:2], y0, dout[:2], own[:2], np.minimum(lengths, 2))
    np.testing.assert_allclose(short[0][:, 1], clean[0][:2, 1], rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------- the layer API
@pytest.mark.parametrize("ns", ENGINES.values(), ids=ENGINES.keys())
def test_state_dict_init_and_load(ns):
    layer = make(ns, 3, 16, 2)
    sd = layer.state_dict()
    assert list(sd) == ["weight_ih", "weight_oh", "bias_h", "weight_ho", "bias_o"]
    assert [v.shape for v in sd.values()] == [(16, 3), (16, 2), (16,), (2, 16), (2,)]
    assert all(v.dtype == np.float32 for v in sd.values())
    assert all(np.abs(v).max() <= 0.25 for v in sd.values())  # uniform(+-1/sqrt(H))
    assert list(make(ns, 3, 16, 2, bias=False).state_dict()) == ["weight_ih", "weight_oh", "weight_ho"]
    other = make(ns, 3, 16, 2, seed=99)
    assert not np.array_equal(other.params["weight_ih"], layer.params["weight_ih"])
    other.load_state_dict(sd)
    for k in sd:
        np.testing.assert_array_equal(other.params[k], sd[k])
    with pytest.raises(KeyError, match="bias_o"):
        other.load_state_dict({k: v for k, v in sd.items() if k != "bias_o"})
    with pytest.raises(ValueError, match="weight_oh"):
        other.load_state_dict({**sd, "weight_oh": np.zeros((2, 16))})


@pytest.mark.parametrize("ns", ENGINES.values(), ids=ENGINES.keys())
def test_grads_accumulate_no_grad_and_one_backward(ns):
    layer = make(ns)
    x, targets, y0, dout, own = draw(layer, 4, 2)
    layer.forward(x, targets)
    layer.backward(dout)
    first = {k: v.copy() for k, v in layer.grads.items()}
    layer.forward(x, targets)
    layer.backward(dout)
    for k in first:
        np.testing.assert_allclose(layer.grads[k], 2 * first[k], rtol=1e-5, atol=1e-6)
    with pytest.raises(RuntimeError, match="forward"):
        layer.backward(dout)
    with fastrnn.no_grad():
        out = layer.forward(x, targets)
    np.testing.assert_array_equal(out, layer.forward(x, targets))
    with fastrnn.no_grad():
        layer.forward(x, targets)
    with pytest.raises(RuntimeError, match="forward"):
        layer.backward(dout)
    layer.zero_grad()
    assert all(not v.any() for v in layer.grads.values())
    layer.forward(x)
    dx, dy0 = layer.backward(None)  # None = zero gradient
    assert not dx.any() and not dy0.any() and all(not v.any() for v in layer.grads.values())
    assert layer.train() is layer and layer.training and not layer.eval().training


@pytest.mark.parametrize("ns", ENGINES.values(), ids=ENGINES.keys())
def test_batch_first_is_a_transpose_and_inputs_are_not_written(ns):
    tm, bf = make(ns), make(ns, batch_first=True)
    x, targets, y0, dout, own = draw(tm, 5, 3)
    keep = x.copy(), targets.copy()
    a = forward_backward(tm, "scheduled", x, targets, y0, dout, own)
    b = forward_backward(bf, "scheduled", x.transpose(1, 0, 2), targets.transpose(1, 0, 2), y0,
                         dout.transpose(1, 0, 2), own.T)
    assert b[0].shape == (3, 5, 3) and b[1].shape == (3, 5, 3)
    np.testing.assert_array_equal(a[0], b[0].transpose(1, 0, 2))
    np.testing.assert_array_equal(a[1], b[1].transpose(1, 0, 2))
    for u, v in zip(a[2:], b[2:]):
        np.testing.assert_array_equal(u, v)
    np.testing.assert_array_equal(x, keep[0])
    np.testing.assert_array_equal(targets, keep[1])


def test_exports_and_repr():
    assert fastrnn.JordanRNN.__module__ == "fastrnn" and reference.JordanRNN.__module__ == "fastrnn.reference"
    assert "JordanRNN" in fastrnn.__all__ and "JordanRNN" in reference.__all__
    assert "output='softmax'" in repr(fastrnn.JordanRNN(2, 3, 4, output="softmax"))


BAD_CONSTRUCTOR = [
    (dict(input_size=0), ValueError, "input_size"),
    (dict(hidden_size=2.5), TypeError, "hidden_size"),
    (dict(output_size=-1), ValueError, "output_size"),
    (dict(nonlinearity="sigmoid"), ValueError, "nonlinearity"),
    (dict(output="tanh"), ValueError, "output"),
    (dict(output="softmax", feedback="mode"), ValueError, "feedback"),
    (dict(feedback="sample"), ValueError, "feedback"),
    (dict(dtype=np.int32), TypeError, "dtype"),
]


@pytest.mark.parametrize("ns", ENGINES.values(), ids=ENGINES.keys())
@pytest.mark.parametrize("kwargs,error,match", BAD_CONSTRUCTOR, ids=lambda v: str(v)[:30])
def test_bad_constructor_arguments(ns, kwargs, error, match):
    args = dict(input_size=3, hidden_size=4, output_size=2)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        ns.JordanRNN(**args)


@pytest.mark.parametrize("ns", ENGINES.values(), ids=ENGINES.keys())
def test_bad_forward_arguments_raise_naming_the_argument(ns):
    layer = make(ns, 3, 4, 2)
    soft = make(ns, 3, 4, 2, output="softmax")
    x = np.zeros((5, 2, 3))
    tg = np.zeros((5, 2, 2))
    cases = [
        (lambda: layer.forward(np.zeros((5, 3))), ValueError, "x must be 3-D"),
        (lambda: layer.forward(np.zeros((5, 2, 4))), ValueError, "input_size=3"),
        (lambda: layer.forward(np.zeros((0, 2, 3))), ValueError, "at least one"),
        (lambda: layer.forward(np.array([["a"]])), TypeError, "x must hold real"),
        (lambda: layer.forward(x, np.zeros((5, 2, 3))), ValueError, "teacher_forcing must have shape"),
        (lambda: layer.forward(x, np.zeros((5, 2), int)), ValueError, "teacher_forcing"),
        (lambda: soft.forward(x, np.full((5, 2), 2)), ValueError, "class indices must lie in 0..1"),
        (lambda: soft.forward(x, np.zeros((5, 2))), TypeError, "class indices must be integers"),
        (lambda: soft.forward(x, np.zeros((2, 5), int)), ValueError, r"shape \(5, 2\)"),
        (lambda: layer.forward(x, tg, p=1.5), ValueError, "p must lie in"),
        (lambda: layer.forward(x, tg, p="half"), TypeError, "p must be a number"),
        (lambda: layer.forward(x, p=0.5), ValueError, "p=0.5 < 1 needs teacher_forcing"),
        (lambda: layer.forward(x, feed_own=np.ones((5, 2), bool)), ValueError, "feed_own needs"),
        (lambda: layer.forward(x, tg, feed_own=np.ones((2, 5), bool)), ValueError, "feed_own must have shape"),
        (lambda: layer.forward(x, tg, feed_own=np.ones((5, 2))), TypeError, "feed_own must be a boolean"),
        (lambda: layer.forward(x, y0=np.zeros((2, 3))), ValueError, "y0 must have shape"),
        (lambda: layer.forward(x, lengths=[6, 1]), ValueError, "lengths must lie in"),
        (lambda: layer.forward(x, lengths=[1]), ValueError, "lengths must have shape"),
    ]
    for call, error, match in cases:
        with pytest.raises(error, match=match):
            call()
    layer.forward(x, tg)
    with pytest.raises(ValueError, match="d_outputs must have shape"):
        layer.backward(np.zeros((5, 2, 3)))


# ----------------------------------------------------------------------------- random configurations, junk
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mode=st.sampled_from(MODES), T=st.integers(1, 7), B=st.integers(1, 6), I=st.integers(1, 9),
       H=st.integers(1, 20), O=st.integers(1, 6), nonlinearity=st.sampled_from(["tanh", "relu"]),
       output=st.sampled_from(["linear", "softmax"]), ragged=st.booleans(), batch_first=st.booleans(),
       bias=st.booleans(), threads=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_random_configurations_match_reference(mode, T, B, I, H, O, nonlinearity, output, ragged, batch_first,
                                               bias, threads, seed):
    lengths = np.random.default_rng(seed).integers(1, T + 1, size=B) if ragged else None
    compare_engines(mode, T, B, I, H, O, np.float64, threads, lengths=lengths, seed=seed,
                    nonlinearity=nonlinearity, output=output, batch_first=batch_first, bias=bias)


JUNK_SCRIPT = """
import numpy as np, fastrnn
junk = [None, 3, "abc", [1, [2, 3]], object(), np.array(["a"]), np.zeros((2, 2), complex),
        np.zeros((2, 3, 4), bool), np.zeros((0, 2, 3)), np.zeros((2, 0, 3)), np.zeros((5, 2, 3)),
        np.zeros((5, 2, 2)), np.full((2, 2, 3), np.nan), np.zeros((2, 2, 3), object), np.zeros(3),
        np.zeros((1, 1, 1, 3)), -1, 2**40, np.nan, 1.5, np.array([1.5, 2.5]), np.array([-1, 2]),
        np.array([9, 1]), np.ones((2, 2), bool), np.full((2, 2), 7), np.zeros((2, 2), np.uint8)]
ok = 0
for cls in (fastrnn.JordanRNN, fastrnn.reference.JordanRNN):
    for kw in ({}, {"output": "softmax", "feedback": "sample"}, {"batch_first": True, "bias": False}):
        layer = cls(3, 4, 2, **kw)
        x, tg = np.zeros((2, 2, 3)), np.zeros((2, 2, 2))
        for j in junk:
            for call in (lambda: layer(j), lambda: layer(x, j), lambda: layer(x, tg, j),
                         lambda: layer(x, tg, p=j), lambda: layer(x, tg, feed_own=j), lambda: layer(x, y0=j),
                         lambda: layer(x, None, j), lambda: layer.backward(j), lambda: layer.load_state_dict(j),
                         lambda: layer.load_state_dict({**layer.state_dict(), "weight_oh": j})):
                try:
                    out = call()
                except (ValueError, TypeError, KeyError, RuntimeError):
                    pass
                ok += 1
print("survived", ok)
"""


def test_junk_through_every_entry_point_never_crashes():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", JUNK_SCRIPT], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "survived" in done.stdout


# ----------------------------------------------------------------------------- fastrnn bench --rows jordan
def test_bench_jordan_rows_run_and_check(monkeypatch, capsys):
    from fastrnn.__main__ import main
    from fastrnn.bench import jordan, machine

    monkeypatch.setitem(jordan.SHAPES, "tiny", (3, 2, 4, 5, 3))
    previous = machine.set_numpy_blas_threads(1)
    try:
        for mode in ("training", "inference"):
            result = jordan.measure(f"jordan/tiny/{mode}", 1, quick=True)
            assert all(v > 0 for v in result["ms"].values())
            assert ("jordan-tf" if mode == "training" else "jordan-free") in result["ms"]
            assert all(v < 1e-4 for v in result["check"].values())  # vs torch, when installed
        assert "jordan-tf" in jordan.text_table([result, jordan.measure("jordan/tiny/training", 1, quick=True)])
        assert main(["bench", "--rows", "jordan", "--list"]) == 0
        assert "jordan/medium/training" in capsys.readouterr().out
    finally:
        if previous is not None:
            machine.set_numpy_blas_threads(previous)


# ----------------------------------------------------------------------------- the example
def test_jordan_vs_elman_example_runs_quick(tmp_path):
    import os
    import subprocess
    import sys

    example = os.path.join(os.path.dirname(__file__), "..", "examples", "jordan_vs_elman.py")
    done = subprocess.run([sys.executable, example, "--quick", "--plot", str(tmp_path / "plot.png")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith(("jordan ", "elman "))]
    assert len(lines) == 5
    for line in lines:
        assert np.isfinite(float(line.split()[-4]))  # the open-loop RMSE column
