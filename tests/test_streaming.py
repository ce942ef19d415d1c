"""Streaming steps (issue 4): one step at a time, the returned state fed into the next call.

The compiled layers take a fast path for this call (layers._CompiledLayer._fast_forward): x and hx already
arrays of the layer's dtype, shape and layout, no lengths. These tests hold it to the general path: the
same numbers, parameters read fresh on every call, and the same errors for anything it does not take."""
import numpy as np
import pytest

import fastrnn

STEPS = 200
MODES = ("rnn_tanh", "rnn_relu", "lstm", "gru")


def make(mode, dtype, **kwargs):
    if mode.startswith("rnn"):
        return fastrnn.RNN(5, 7, nonlinearity=mode[4:], dtype=dtype, seed=3, **kwargs)
    return {"lstm": fastrnn.LSTM, "gru": fastrnn.GRU}[mode](5, 7, dtype=dtype, seed=3, **kwargs)


def general_only(layer):
    """The same layer with the fast path switched off (every call takes the general path)."""
    layer._fast_forward = lambda x, hx: None
    return layer


def counting(layer):
    """Count the calls the fast path takes (returns something for)."""
    taken = []
    fast = layer._fast_forward

    def wrapped(x, hx):
        out = fast(x, hx)
        if out is not None:
            taken.append(1)
        return out

    layer._fast_forward = wrapped
    return taken


def random_state(rng, layer, batch, dtype):
    n = layer.num_layers * layer.num_directions
    h = (0.5 * rng.standard_normal((n, batch, layer.output_size))).astype(dtype)
    if isinstance(layer, fastrnn.LSTM):
        return h, (0.5 * rng.standard_normal((n, batch, layer.hidden_size))).astype(dtype)
    return h


def stream(layer, x, hx):
    """Feed x one step at a time, the returned state into the next call; y stacked, final state."""
    ys = []
    for t in range(x.shape[0]):
        y, hx = layer(x[t:t + 1], hx)
        ys.append(y)
    return np.concatenate(ys), hx


def states(hn):
    return hn if isinstance(hn, tuple) else (hn,)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("with_hx", [False, True])
@pytest.mark.parametrize("grad", [False, True])
def test_stream_matches_one_call(mode, dtype, batch, with_hx, grad):
    rng = np.random.default_rng(7)
    layer = make(mode, dtype)
    taken = counting(layer)
    x = rng.standard_normal((STEPS, batch, 5)).astype(dtype)
    hx = random_state(rng, layer, batch, dtype) if with_hx else None
    if grad:
        y_s, hn_s = stream(layer, x, hx)
    else:
        with fastrnn.no_grad():
            y_s, hn_s = stream(layer, x, hx)
    assert len(taken) == STEPS  # every step took the fast path
    # one call over the whole sequence (general path, no_grad) gives the same numbers, to rounding: a
    # step reads the weights as they lie (csrc/row_dot.h), a long call from packed panels, and the two
    # sum each product in different orders (bit for bit: the snapshot, tests/test_frozen.py)
    reference = general_only(make(mode, dtype))
    with fastrnn.no_grad():
        y_all, hn_all = reference(x, hx)
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(y_s, y_all, **tol)
    for a, b in zip(states(hn_s), states(hn_all)):
        np.testing.assert_allclose(a, b, **tol)
    # stepping through the general path gives the same bits (the same kernel call)
    y_g, hn_g = stream(general_only(make(mode, dtype)), x, hx)
    np.testing.assert_array_equal(y_s, y_g)
    for a, b in zip(states(hn_s), states(hn_g)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kwargs", [{}, {"num_layers": 2}, {"bidirectional": True}, {"batch_first": True},
                                    {"num_layers": 2, "bidirectional": True, "bias": False},
                                    {"num_layers": 3, "dropout": 0.4}])  # the same dropout draws
def test_fast_path_matches_general_path(mode, kwargs):
    rng = np.random.default_rng(1)
    fast, slow = make(mode, np.float32, **kwargs), general_only(make(mode, np.float32, **kwargs))
    taken = counting(fast)
    hx = random_state(rng, fast, 3, np.float32)
    # batch_first: one step, so the time-major view of (B, 1, I) is contiguous (more steps: general path)
    x = rng.standard_normal((4, 3, 5) if not fast.batch_first else (3, 1, 5)).astype(np.float32)
    for layer in (fast, slow):
        layer.zero_grad()
    outs = []
    for layer in (fast, slow):
        y, hn = layer(x, hx)
        dy = np.ones_like(y)
        dx, dhx = layer.backward(dy, None)
        outs.append((y, *states(hn), dx, *states(dhx), *layer.grads.values()))
    assert taken == [1]
    for a, b in zip(*outs):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("mode", MODES)
def test_in_place_parameter_changes_are_seen(mode):
    rng = np.random.default_rng(2)
    layer, twin = make(mode, np.float32), general_only(make(mode, np.float32))
    taken = counting(layer)
    x = rng.standard_normal((1, 1, 5)).astype(np.float32)
    hx = hx_twin = None
    with fastrnn.no_grad():
        for step in range(6):
            for target in (layer, twin):  # the same in-place change to both, between steps
                target.params["weight_hh_l0"] *= 0.9
                target.params["bias_ih_l0"] += 0.01 * step
                target.params["weight_ih_l0"][0, 0] = step
            y, hx = layer(x, hx)
            y_twin, hx_twin = twin(x, hx_twin)
            np.testing.assert_array_equal(y, y_twin)
        # a replaced array (checked by params.__setitem__) is read too
        for target in (layer, twin):
            target.params["weight_hh_l0"] = np.zeros_like(target.params["weight_hh_l0"])
        y, _ = layer(x, hx)
        y_twin, _ = twin(x, hx_twin)
        np.testing.assert_array_equal(y, y_twin)
    assert len(taken) == 7


def bad_calls(layer):
    """(x, hx) pairs with something wrong, each close to a streaming call."""
    B, n, P = 2, layer.num_layers * layer.num_directions, layer.output_size
    dt = layer.dtype
    x = np.zeros((1, B, layer.input_size), dt)
    h = np.zeros((n, B, P), dt)
    lstm = isinstance(layer, fastrnn.LSTM)
    good = (h, h.copy()) if lstm else h

    def hx_with(value):
        return (value, h.copy()) if lstm else value

    yield x[:, :, :-1], good                          # wrong input_size
    yield x[0], good                                  # wrong rank
    yield np.zeros((0, B, layer.input_size), dt), None  # no time step
    yield np.zeros((1, 0, layer.input_size), dt), None  # no sequence
    yield x.astype(np.complex64), good                # not real
    yield x.astype(bool), good                        # not numbers
    yield x, hx_with(np.zeros((n, B + 1, P), dt))     # state for another batch
    yield x, hx_with(np.zeros((n, B, P + 1), dt))     # wrong state size
    yield x, hx_with(np.zeros((B, P), dt))            # wrong state rank
    yield x, hx_with(np.zeros((n, B, P), np.complex128))  # complex state
    yield x, hx_with("state")                         # not an array
    yield x, (h, h)[:1] if lstm else (h,)             # tuple of the wrong length / a tuple for RNN and GRU
    if lstm:
        yield x, h                                    # one array for an LSTM
        yield x, (h, np.zeros((n, B, P + 1), dt))     # wrong c0
        yield x, [h, h.copy(), h]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("grad", [False, True])
def test_bad_inputs_raise_the_same_errors(mode, grad):
    layer, slow = make(mode, np.float32), general_only(make(mode, np.float32))
    for x, hx in bad_calls(layer):
        errors = []
        for target in (layer, slow):
            with pytest.raises((ValueError, TypeError)) as info:
                if grad:
                    target(x, hx)
                else:
                    with fastrnn.no_grad():
                        target(x, hx)
            errors.append((type(info.value), str(info.value)))
        assert errors[0] == errors[1]


@pytest.mark.parametrize("mode", MODES)
def test_inputs_off_the_fast_path_still_work(mode):
    """Other dtypes, layouts and array-likes take the general path and give the same numbers."""
    rng = np.random.default_rng(4)
    layer = make(mode, np.float32)
    taken = counting(layer)
    x = rng.standard_normal((3, 2, 5)).astype(np.float32)
    hx = random_state(rng, layer, 2, np.float32)
    with fastrnn.no_grad():
        y, hn = layer(x, hx)
        assert taken == [1]
        hx64 = tuple(a.astype(np.float64) for a in hx) if isinstance(hx, tuple) else hx.astype(np.float64)
        fortran = np.asfortranarray(x)
        for x_in, hx_in in ((x.astype(np.float64), hx), (x, hx64), (fortran, hx), (x.tolist(), hx),
                            (x, list(hx) if isinstance(hx, tuple) else hx.tolist())):
            y2, hn2 = layer(x_in, hx_in)
            np.testing.assert_array_equal(y, y2)
            for a, b in zip(states(hn), states(hn2)):
                np.testing.assert_array_equal(a, b)
    assert taken == [1]  # none of those took the fast path


@pytest.mark.parametrize("cls", [fastrnn.LSTM, fastrnn.GRU])
def test_variant_layers_take_the_general_path(cls):
    layer = cls(5, 7, seed=0, layer_norm=True)
    taken = counting(layer)
    with fastrnn.no_grad():
        y, _ = layer(np.ones((2, 1, 5), np.float32))
    assert taken == [] and y.shape == (2, 1, 7)


def test_no_grad_nests_and_decorates():
    @fastrnn.no_grad()
    def inside(depth):
        assert not fastrnn.is_grad_enabled()
        if depth:
            inside(depth - 1)
        assert not fastrnn.is_grad_enabled()

    inside(3)
    assert fastrnn.is_grad_enabled()
    with fastrnn.no_grad():
        with fastrnn.no_grad():
            pass
        assert not fastrnn.is_grad_enabled()
    assert fastrnn.is_grad_enabled()


def test_plan_follows_attribute_changes():
    layer = fastrnn.GRU(5, 7, seed=0)
    x = np.zeros((1, 1, 5), np.float32)
    with fastrnn.no_grad():
        layer(x)
        assert layer._plan is not None
        layer.bias = layer.bias  # any attribute the plan is built from drops it
        assert layer._plan is None
        layer(x)
        assert layer._plan is not None


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("steps", [12, 40])  # 40: more rows than the input projection's few-row bound
@pytest.mark.parametrize("big", [False, True])
def test_stream_matches_one_call_with_gemv_steps(mode, steps, big):
    """One row and big weights (W_hh of 2^18 elements or more): both the streamed steps and the long
    call take the matrix-vector path, and both input projections read W_ih as it lies (csrc/row_dot.h),
    so they agree bit for bit whatever the length. big: W_ih and W_hh over 2 MB each, which a single row
    reads row after row, while the long call's input projection takes 4 rows of x at a time."""
    rng = np.random.default_rng(1)
    hidden = ({"lstm": 384, "gru": 420}.get(mode, 768) if big else {"lstm": 256, "gru": 300}.get(mode, 512))
    inputs = hidden if big else 5
    kwargs = dict(dtype=np.float32, seed=3)
    layer = (fastrnn.RNN(inputs, hidden, nonlinearity=mode[4:], **kwargs) if mode.startswith("rnn_")
             else {"lstm": fastrnn.LSTM, "gru": fastrnn.GRU}[mode](inputs, hidden, **kwargs))
    x = rng.standard_normal((steps, 1, inputs)).astype(np.float32)
    with fastrnn.no_grad():
        y_s, hn_s = stream(layer, x, None)
        y_all, hn_all = layer(x)
    np.testing.assert_array_equal(y_s, y_all)
    for a, b in zip(states(hn_s), states(hn_all)):
        np.testing.assert_array_equal(a, b)


def c_step(layer):
    """The layer's streaming step in C (layers._CompiledLayer._build_plan), or None where it has none."""
    plan = layer._build_plan()
    return plan[-1] if plan[0] else None


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("with_hx", [False, True])
def test_c_stream_step_equals_the_general_path(mode, dtype, with_hx):
    rng = np.random.default_rng(5)
    layer, slow = make(mode, dtype), general_only(make(mode, dtype))
    step = c_step(layer)
    assert step is not None
    for T, B in ((1, 1), (1, 3), (4, 2)):
        x = rng.standard_normal((T, B, 5)).astype(dtype)
        hx = random_state(rng, layer, B, dtype) if with_hx else None
        y, hn = step.run(x, hx, layer.params)
        with fastrnn.no_grad():
            y_slow, hn_slow = slow(x, hx)
        assert y.dtype == dtype and y.flags.c_contiguous
        np.testing.assert_array_equal(y, y_slow)
        for a, b in zip(states(hn), states(hn_slow)):
            assert a.dtype == dtype
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("mode", MODES)
def test_c_stream_step_declines_what_it_does_not_take(mode):
    """run() returns None (the Python paths then take the call) for anything but exact arrays."""
    rng = np.random.default_rng(6)
    layer = make(mode, np.float32)
    step = c_step(layer)
    for x, hx in bad_calls(layer):
        assert step.run(x, hx, layer.params) is None
    x = rng.standard_normal((3, 2, 5)).astype(np.float32)
    hx = random_state(rng, layer, 2, np.float32)
    hx64 = tuple(a.astype(np.float64) for a in hx) if isinstance(hx, tuple) else hx.astype(np.float64)
    hx_list = list(hx) if isinstance(hx, tuple) else hx.tolist()
    hx_strided = tuple(a[:, ::-1] for a in hx) if isinstance(hx, tuple) else hx[:, ::-1]
    for x_in, hx_in in ((x.astype(np.float64), hx), (x, hx64), (np.asfortranarray(x), hx), (x.tolist(), hx),
                        (x[:, ::-1], hx), (x, hx_list), (x, hx_strided)):
        assert step.run(x_in, hx_in, layer.params) is None
    assert step.run(x, hx, layer.params) is not None


def test_c_stream_step_only_for_one_time_major_layer_without_projection():
    assert c_step(fastrnn.LSTM(5, 7)) is not None
    assert c_step(fastrnn.RNN(5, 7, nonlinearity="relu", bias=False, dtype=np.float64)) is not None
    for layer in (fastrnn.LSTM(5, 7, num_layers=2), fastrnn.GRU(5, 7, bidirectional=True),
                  fastrnn.RNN(5, 7, batch_first=True), fastrnn.LSTM(5, 7, proj_size=3),
                  fastrnn.GRU(5, 7, layer_norm=True)):
        assert c_step(layer) is None


# The call in C (_kernels.LayerCall): once a layer has its plan, a streaming call with gradients off goes
# from layer(x, hx) straight to the C step. Nothing is patched on these layers (an instance hook turns the
# shortcut off); the calls that miss it are counted through the class's forward, which they all go to.
def forward_calls(monkeypatch):
    """Calls that went to forward (not the shortcut), for every layer class."""
    calls = []
    plain = fastrnn.layers._CompiledLayer.forward

    def counted(self, x, hx=None, lengths=None):
        calls.append(1)
        return plain(self, x, hx, lengths)

    monkeypatch.setattr(fastrnn.layers._CompiledLayer, "forward", counted)
    return calls


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("with_hx", [False, True])
def test_call_shortcut_equals_the_general_path(monkeypatch, mode, dtype, batch, with_hx):
    rng = np.random.default_rng(8)
    layer, slow = make(mode, dtype), general_only(make(mode, dtype))
    calls = forward_calls(monkeypatch)
    x = rng.standard_normal((40, batch, 5)).astype(dtype)
    hx = random_state(rng, layer, batch, dtype) if with_hx else None
    with fastrnn.no_grad():
        y_s, hn_s = stream(layer, x, hx)
        before = len(calls)
        y_g, hn_g = stream(slow, x, hx)
    assert before == 1  # the first call builds the plan; the other 39 took the shortcut
    assert layer._tape is None
    np.testing.assert_array_equal(y_s, y_g)
    for a, b in zip(states(hn_s), states(hn_g)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("mode", MODES)
def test_call_shortcut_sees_parameter_changes_and_refuses_what_forward_refuses(mode):
    rng = np.random.default_rng(9)
    layer, twin = make(mode, np.float32), general_only(make(mode, np.float32))
    x = rng.standard_normal((1, 2, 5)).astype(np.float32)
    hx = hx_twin = None
    with fastrnn.no_grad():
        for step in range(4):
            for target in (layer, twin):  # in place, and a replaced array
                target.params["weight_hh_l0"] *= 0.9
                target.params["bias_hh_l0"] = target.params["bias_hh_l0"] + 0.01 * step
            y, hx = layer(x, hx)
            y_twin, hx_twin = twin(x, hx_twin)
            np.testing.assert_array_equal(y, y_twin)
        assert layer._shortcut is not None
        for x_bad, hx_bad in bad_calls(layer):
            errors = []
            for target in (layer, twin):
                with pytest.raises((ValueError, TypeError)) as info:
                    target(x_bad, hx_bad)
                errors.append((type(info.value), str(info.value)))
            assert errors[0] == errors[1]


@pytest.mark.parametrize("mode", MODES)
def test_call_shortcut_leaves_training_calls_to_forward(monkeypatch, mode):
    """With gradients on the call keeps a tape (forward's path): backward works after a streaming step."""
    rng = np.random.default_rng(10)
    layer, slow = make(mode, np.float32), general_only(make(mode, np.float32))
    x = rng.standard_normal((1, 1, 5)).astype(np.float32)
    with fastrnn.no_grad():
        layer(x)  # the plan and its shortcut
    calls = forward_calls(monkeypatch)
    outs = []
    for target in (layer, slow):
        y, _ = target(x)
        outs.append((y, *target.backward(np.ones_like(y))[:1]))
    assert calls == [1, 1]
    for a, b in zip(*outs):
        np.testing.assert_array_equal(a, b)
    layer(x)  # a tape again
    with fastrnn.no_grad():
        layer(x)  # a shortcut step drops it, as any no_grad call does
    assert len(calls) == 3
    with pytest.raises(RuntimeError):
        layer.backward(np.ones((1, 1, 7), np.float32))


def test_call_shortcut_steps_aside_for_overridden_forward():
    x = np.zeros((1, 1, 5), np.float32)

    class Doubled(fastrnn.GRU):  # a user's subclass: its forward is what the call runs
        def forward(self, x, hx=None, lengths=None):
            y, hn = super().forward(x, hx, lengths)
            return 2 * y, hn

    plain, doubled = fastrnn.GRU(5, 7, seed=3), Doubled(5, 7, seed=3)
    with fastrnn.no_grad():
        for _ in range(3):
            np.testing.assert_array_equal(doubled(x + 1)[0], 2 * plain(x + 1)[0])
        assert plain._shortcut is not None and doubled._shortcut is None
        plain.forward = lambda x, hx=None, lengths=None: "patched"  # an instance's forward, set after the plan
        assert plain(x) == "patched"
        del plain.forward
        assert plain(x)[0].shape == (1, 1, 7)


def test_call_shortcut_follows_attribute_changes():
    rng = np.random.default_rng(11)
    layer, slow = fastrnn.LSTM(5, 7, seed=3), general_only(fastrnn.LSTM(5, 7, seed=3))
    x = rng.standard_normal((1, 3, 5)).astype(np.float32)
    with fastrnn.no_grad():
        layer(x)
        assert layer._shortcut is not None
        layer.batch_first = slow.batch_first = True  # x is now read as (B=1, T=3, I): no streaming step
        assert layer._shortcut is None
        np.testing.assert_array_equal(layer(x)[0], slow(x)[0])
        assert layer._shortcut is None  # a batch_first layer has no C step


def test_call_shortcut_reads_params_of_any_mapping(monkeypatch):
    """The step in C reads ``params`` with the dict's own lookup; ``params`` replaced by a mapping that is not
    a dict goes through forward instead, with the same result."""
    import types

    layer = fastrnn.GRU(5, 7, seed=3)
    x = np.ones((1, 1, 5), np.float32)
    with fastrnn.no_grad():
        expected = layer(x)[0]
        calls = forward_calls(monkeypatch)
        layer.params = types.MappingProxyType(dict(layer.params))
        np.testing.assert_array_equal(layer(x)[0], expected)
        assert calls == [1]
        layer.params = dict(layer.params)  # a plain dict: the shortcut again
        np.testing.assert_array_equal(layer(x)[0], expected)
        assert calls == [1] and layer._shortcut is not None


def test_call_shortcut_holds_the_layer_lock(monkeypatch):
    """Forward and backward of one layer run one at a time (_layer.RecurrentLayer._lock): so does a step.
    Another thread holds the layer's lock while this one makes a shortcut call: the call ends only after
    that thread lets go (it holds on for a second, far longer than a step takes without the lock)."""
    import threading
    import time

    calls = forward_calls(monkeypatch)
    layer = fastrnn.RNN(5, 7, seed=0)
    x = np.zeros((1, 1, 5), np.float32)
    events, holding = [], threading.Event()

    def hold():
        with layer._lock:
            holding.set()
            time.sleep(1.0)
            events.append("released")

    with fastrnn.no_grad():
        layer(x)  # builds the plan and the shortcut
        del calls[:]
        holder = threading.Thread(target=hold)
        holder.start()
        holding.wait()
        layer(x)
        events.append("stepped")
    holder.join()
    assert calls == [] and events == ["released", "stepped"]


def test_call_with_another_lock_type_goes_through_forward():
    """A ``_lock`` of another type (a hook, a user's wrapper) is honoured: the call takes the Python path,
    which holds it around the forward."""
    import threading

    class Recording:
        def __init__(self):
            self.lock, self.held, self.events = threading.RLock(), 0, []

        def acquire(self, *args):
            self.lock.acquire(*args)
            self.held += 1
            self.events.append("acquire")
            return True

        def release(self):
            self.events.append(("release", layer._tape is None))
            self.held -= 1
            self.lock.release()

        __enter__ = acquire

        def __exit__(self, *exc):
            self.release()

    layer = fastrnn.RNN(5, 7, seed=0)
    x = np.zeros((1, 1, 5), np.float32)
    with fastrnn.no_grad():
        layer(x)
        layer._lock = Recording()
        layer(x)
    assert layer._lock.events == ["acquire", ("release", True)] and layer._lock.held == 0


@pytest.mark.parametrize("mode", MODES)
def test_one_layer_streamed_from_two_threads(mode):
    """Two Python threads stream their own sequences through one layer at once (the shortcut, under the
    layer's lock; gradient mode is per thread): each gets what it gets alone."""
    import threading

    rng = np.random.default_rng(12)
    layer = make(mode, np.float32)
    xs = [rng.standard_normal((150, 2, 5)).astype(np.float32) for _ in range(2)]
    with fastrnn.no_grad():
        serial = [stream(layer, x, None) for x in xs]
    results = [None, None]

    def work(i):
        with fastrnn.no_grad():
            results[i] = stream(layer, xs[i], None)

    threads = [threading.Thread(target=work, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert layer._shortcut is not None
    for (y, hn), (y_ref, hn_ref) in zip(results, serial):
        np.testing.assert_array_equal(y, y_ref)
        for a, b in zip(states(hn), states(hn_ref)):
            np.testing.assert_array_equal(a, b)
