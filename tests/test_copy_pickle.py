"""copy.copy, copy.deepcopy and pickle of layers, snapshots and models (torch.nn modules allow all three).

A copy keeps the parameters, gradients, options and random state; it gets a lock of its own and no tape
(a tape, a streaming plan and packed panels belong to the object that made them)."""
import copy
import pickle
import threading

import numpy as np
import pytest

import fastrnn
from fastrnn import reference
from fastrnn.models import CharLM


def pickled(obj):
    return pickle.loads(pickle.dumps(obj))


COPIES = {"deepcopy": copy.deepcopy, "pickle": pickled}
rng = np.random.default_rng(5)
X = rng.standard_normal((6, 3, 5)).astype(np.float32)
X1 = X[:1, :1]  # a streaming step


def layers():
    return {
        "rnn_relu": fastrnn.RNN(5, 7, nonlinearity="relu", seed=1),
        "lstm_proj_2layer": fastrnn.LSTM(5, 7, num_layers=2, proj_size=3, seed=2),
        "gru_bidirectional": fastrnn.GRU(5, 7, bidirectional=True, seed=3),
        "lstm_layer_norm": fastrnn.LSTM(5, 7, layer_norm=True, seed=4),
        "gru_float64": fastrnn.GRU(5, 7, dtype=np.float64, seed=5),
        "reference_lstm": reference.LSTM(5, 7, seed=6),
    }


def out(layer, x):
    with fastrnn.no_grad():
        y, _ = layer(x.astype(layer.dtype))
    return y


@pytest.mark.parametrize("how", COPIES)
@pytest.mark.parametrize("name", list(layers()))
def test_layer_copy_is_equal_and_independent(how, name):
    layer = layers()[name]
    layer(X.astype(layer.dtype))  # a tape, a plan and a shortcut exist now
    out(layer, X1)
    for g in layer.grads.values():
        g.fill(0.5)
    clone = COPIES[how](layer)
    assert type(clone) is type(layer) and repr(clone) == repr(layer)
    assert clone._tape is None and layer._tape is None  # (the no_grad call above dropped the layer's)
    assert clone._lock is not layer._lock
    for key in layer.params:
        assert clone.params[key] is not layer.params[key]
        np.testing.assert_array_equal(clone.params[key], layer.params[key])
        np.testing.assert_array_equal(clone.grads[key], layer.grads[key])
        assert clone.params[key].ctypes.data % 64 == 0  # the kernels' alignment survives the copy
    for x in (X, X1):
        np.testing.assert_array_equal(out(clone, x), out(layer, x))
    next(iter(clone.params.values()))[...] += 1.0  # in place, on the copy only
    assert not np.array_equal(out(clone, X), out(layer, X))
    with pytest.raises(KeyError):  # the copy's params are the checked _Arrays
        clone.params["no_such_weight"] = np.zeros(1)


@pytest.mark.parametrize("how", COPIES)
def test_copy_trains_and_keeps_the_random_state(how):
    """Dropout masks come from the layer's own generator: a copy draws the same next masks."""
    layer = fastrnn.LSTM(5, 7, num_layers=2, dropout=0.5, seed=9)
    layer(X)  # advance the generator
    clone = COPIES[how](layer)
    with pytest.raises(RuntimeError, match="needs a forward"):
        clone.backward(np.ones((6, 3, 7), np.float32))
    results = []
    for m in (layer, clone):
        m.zero_grad()
        y, _ = m(X)
        m.backward(np.ones_like(y))
        results.append((y, {k: g.copy() for k, g in m.grads.items()}))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    for k in results[0][1]:
        np.testing.assert_array_equal(results[0][1][k], results[1][1][k])


def test_shallow_copy_shares_parameters_not_the_lock():
    layer = fastrnn.GRU(5, 7, seed=0)
    clone = copy.copy(layer)
    assert clone.params is layer.params and clone._lock is not layer._lock
    np.testing.assert_array_equal(out(clone, X), out(layer, X))


def test_copy_while_another_thread_holds_the_lock():
    layer = fastrnn.RNN(5, 7, seed=0)
    held, done = threading.Event(), threading.Event()

    def hold():
        with layer._lock:
            held.set()
            done.wait()

    t = threading.Thread(target=hold)
    t.start()
    held.wait()
    clone = copy.deepcopy(layer)
    assert clone._lock.acquire(blocking=False)  # the copy's lock is its own, and free
    clone._lock.release()
    done.set()
    t.join()


@pytest.mark.parametrize("how", COPIES)
def test_snapshot_copy_is_packed_anew(how):
    layer = fastrnn.LSTM(5, 7, num_layers=2, bidirectional=True, seed=0)
    snap = fastrnn.freeze(layer)
    clone = COPIES[how](snap)
    assert type(clone) is fastrnn.FrozenLayer and clone._layer is not snap._layer
    for x in (X, X1):
        np.testing.assert_array_equal(out(clone, x), out(snap, x))
    with pytest.raises(ValueError):  # still read-only
        next(iter(clone._layer.params.values()))[...] = 0


@pytest.mark.parametrize("how", COPIES)
@pytest.mark.parametrize("make", [fastrnn.JordanRNN, reference.JordanRNN], ids=["compiled", "reference"])
def test_jordan_copy(how, make):
    net = make(5, 7, 3, seed=0)
    clone = COPIES[how](net)
    assert clone._lock is not net._lock and clone._tape is None
    with fastrnn.no_grad():
        np.testing.assert_array_equal(clone(X)[0], net(X)[0])


@pytest.mark.parametrize("how", COPIES)
def test_model_copy(how):
    """A model (layers inside fastrnn.nn containers) copies whole: the best-model checkpoint idiom."""
    model = CharLM("abcdefgh", embed_dim=8, hidden_size=16, seed=0)
    clone = COPIES[how](model)
    assert clone.sample("abc", 20, seed=1) == model.sample("abc", 20, seed=1)


@pytest.mark.parametrize("how", COPIES)
def test_model_copy_has_no_tape(how):
    """A copy taken after a training forward holds no tape anywhere: its backward raises before any
    gradient changes (the head's tape, copied, would have added into the head's gradients first)."""
    model = CharLM("abcdefgh", embed_dim=8, hidden_size=16, seed=0)
    tokens = np.array([[0, 1, 2, 3], [4, 5, 6, 7]])
    logits, _ = model(tokens)
    clone = COPIES[how](model)
    before = {k: g.copy() for k, g in clone.grads.items()}
    with pytest.raises(RuntimeError, match="forward"):
        clone.backward(np.ones_like(logits))
    for k, g in clone.grads.items():
        np.testing.assert_array_equal(g, before[k])
    model.backward(np.ones_like(logits))  # the original keeps its tape
