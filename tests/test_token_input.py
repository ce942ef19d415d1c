"""Token input (the first layer reads each token's input projection from a per-token table) and the
tape pool (a training loop reuses its tape memory).

The oracle for _forward_embedded is the plain path on the same layer: forward(embedding[tokens]) and
backward, with the embedding's gradient summed from dx. Both must agree on every output and gradient.
"""
import numpy as np
import pytest

import fastrnn
from fastrnn.nn import CrossEntropyLoss, Embedding
from fastrnn.optim import Adam
from fastrnn.models import CharLM, Seq2Seq, SequenceClassifier
from fastrnn.models._common import embed_and_run

from _helpers import (MODES, assert_all_close, assert_all_equal, flatten_state, loss_grads, make_layer,
                      make_lengths, num_threads, random_hx)

TOL = {np.float64: dict(rtol=1e-10, atol=1e-11), np.float32: dict(rtol=2e-4, atol=2e-5)}


def _plain(layer, tokens, embedding, hx, lengths, dy, dhn):
    """Forward on embedding[tokens], backward, and the embedding gradient summed from dx."""
    layer.zero_grad()
    y, hn = layer.forward(embedding[tokens], hx, lengths)
    out = {"y": np.array(y), **{k: np.array(v) for k, v in flatten_state(layer, "hn", hn).items()}}
    dx, dhx = layer.backward(dy, dhn)
    d_embedding = np.zeros_like(embedding, dtype=np.float64)
    np.add.at(d_embedding, tokens, dx.astype(np.float64))
    out["d_embedding"] = d_embedding
    out.update({k: np.array(v) for k, v in flatten_state(layer, "dhx", dhx).items()})
    out.update({"grad:" + k: np.array(v) for k, v in layer.grads.items()})
    return out


def _embedded(layer, tokens, embedding, hx, lengths, dy, dhn):
    layer.zero_grad()
    y, hn = layer._forward_embedded(tokens, embedding, hx, lengths)
    out = {"y": np.array(y), **{k: np.array(v) for k, v in flatten_state(layer, "hn", hn).items()}}
    d_embedding, dhx = layer.backward(dy, dhn)
    out["d_embedding"] = np.array(d_embedding, dtype=np.float64)
    out.update({k: np.array(v) for k, v in flatten_state(layer, "dhx", dhx).items()})
    out.update({"grad:" + k: np.array(v) for k, v in layer.grads.items()})
    return out


CASES = {  # T, B, E, H, V, layer kwargs, lengths, hx
    "plain": (7, 5, 6, 9, 11, {}, False, False),
    "lengths_hx": (9, 6, 5, 17, 4, {}, True, True),
    "bidirectional": (6, 4, 8, 16, 13, {"bidirectional": True}, True, False),
    "stacked_batch_first": (5, 3, 4, 10, 7, {"num_layers": 2, "batch_first": True}, False, True),
    "one_step": (1, 2, 3, 20, 5, {}, False, False),
    "simd_edges": (4, 7, 3, 33, 6, {"bidirectional": True, "num_layers": 2}, True, True),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("mode", MODES)
def test_token_input_matches_the_plain_path(mode, case, dtype):
    T, B, E, H, V, kwargs, use_lengths, use_hx = CASES[case]
    rng = np.random.default_rng(7)
    layer = make_layer(fastrnn, mode, E, H, dtype=dtype, seed=3, **kwargs)
    embedding = rng.standard_normal((V, E)).astype(dtype)
    shape = (B, T) if layer.batch_first else (T, B)
    tokens = rng.integers(0, V, size=shape)
    lengths = make_lengths(rng, B, T) if use_lengths else None
    hx = random_hx(rng, layer, B) if use_hx else None
    dy, dhn = loss_grads(rng, layer, T, B)
    expected = _plain(layer, tokens, embedding, hx, lengths, dy, dhn)
    actual = _embedded(layer, tokens, embedding, hx, lengths, dy, dhn)
    assert_all_close(actual, expected, **TOL[dtype], context=f"{mode} {case}")


@pytest.mark.parametrize("mode", MODES)
def test_token_input_with_lstm_projection_and_inference(mode):
    rng = np.random.default_rng(1)
    kwargs = {"proj_size": 5} if mode == "lstm" else {}
    layer = make_layer(fastrnn, mode, 4, 12, dtype=np.float64, seed=2, **kwargs)
    embedding = rng.standard_normal((9, 4))
    tokens = rng.integers(0, 9, size=(6, 3))
    with fastrnn.no_grad():  # inference: no tape, the kernel reads the table directly
        y_plain, hn_plain = layer.forward(embedding[tokens])
        y_tok, hn_tok = layer._forward_embedded(tokens, embedding)
    np.testing.assert_allclose(y_tok, y_plain, rtol=1e-12, atol=1e-13)
    for a, b in zip(flatten_state(layer, "h", hn_tok).values(), flatten_state(layer, "h", hn_plain).values()):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)
    dy, dhn = loss_grads(rng, layer, 6, 3)
    assert_all_close(_embedded(layer, tokens, embedding, None, None, dy, dhn),
                     _plain(layer, tokens, embedding, None, None, dy, dhn), **TOL[np.float64])


@pytest.mark.parametrize("mode", MODES)
def test_token_input_is_bit_identical_across_thread_counts(mode):
    rng = np.random.default_rng(4)
    layer = make_layer(fastrnn, mode, 16, 70, dtype=np.float32, seed=1, bidirectional=True)
    embedding = rng.standard_normal((30, 16)).astype(np.float32)
    tokens = rng.integers(0, 30, size=(12, 40))
    lengths = make_lengths(rng, 40, 12)
    dy, dhn = loss_grads(rng, layer, 12, 40)
    results = {}
    for n in (1, 2):
        with num_threads(n):
            results[n] = _embedded(layer, tokens, embedding, None, lengths, dy, dhn)
    assert_all_equal(results[2], results[1], context=mode)


def test_backward_without_input_grad_still_adds_the_weight_gradients():
    rng = np.random.default_rng(0)
    layer = fastrnn.GRU(5, 8, dtype=np.float64, seed=0)
    embedding = rng.standard_normal((6, 5))
    tokens = rng.integers(0, 6, size=(4, 3))
    dy = rng.standard_normal((4, 3, 8))
    layer._forward_embedded(tokens, embedding)
    d_embedding, _ = layer.backward(dy, input_grad=False)
    assert d_embedding is None
    grads = {k: v.copy() for k, v in layer.grads.items()}
    expected = _plain(layer, tokens, embedding, None, None, dy, None)
    for k, v in grads.items():
        np.testing.assert_allclose(v, expected["grad:" + k], rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("tokens, embedding, message", [
    (np.array([[0, 1], [2, 9]]), np.zeros((9, 4)), "tokens must lie in 0..8"),
    (np.array([[0, -1]]), np.zeros((3, 4)), "tokens must lie in 0..2"),
    (np.zeros((2, 2)), np.zeros((3, 4)), "tokens must be a 2-D array of integer ids"),
    (np.zeros(3, np.int64), np.zeros((3, 4)), "tokens must be a 2-D array of integer ids"),
    (np.zeros((0, 2), np.int64), np.zeros((3, 4)), "at least one time step"),
    (np.zeros((2, 2), np.int64), np.zeros((3, 5)), "embedding must have shape"),
    (np.zeros((2, 2), np.int64), np.zeros(4), "embedding must have shape"),
])
def test_bad_token_input_is_refused_by_name(tokens, embedding, message):
    layer = fastrnn.LSTM(4, 6)
    with pytest.raises(ValueError, match=message):
        layer._forward_embedded(tokens, embedding)
    assert layer._tape is None  # nothing recorded


def test_variant_layers_do_not_take_token_input_and_models_fall_back():
    layer = fastrnn.LSTM(4, 6, layer_norm=True)
    with pytest.raises(TypeError, match="does not take token input"):
        layer._forward_embedded(np.zeros((2, 2), np.int64), np.zeros((3, 4), np.float32))
    embedding = Embedding(3, 4, seed=0)
    (y, _), fused = embed_and_run(embedding, layer, np.zeros((2, 5), np.int64))
    assert not fused and y.shape == (2, 5, 6)


def test_models_fuse_only_when_the_table_is_cheaper():
    embedding = Embedding(50, 4, seed=0)
    layer = fastrnn.LSTM(4, 6, batch_first=True)
    assert embed_and_run(embedding, layer, np.zeros((8, 10), np.int64))[1]  # 80 positions > 50 tokens
    assert not embed_and_run(embedding, layer, np.zeros((1, 1), np.int64))[1]  # a streaming step


def _without_token_input(layer):
    """Make a model's layer refuse token input (the models then take the plain path); same class name."""
    layer.__class__ = type(type(layer).__name__, (type(layer),), {"_accepts_tokens": False})


def _training_steps(model, make_batch, loss_fn, steps):
    opt = Adam(model, lr=1e-2)
    losses = []
    for i in range(steps):
        model.zero_grad()
        losses.append(loss_fn(model, *make_batch(i)))
        opt.step()
    return losses, model.state_dict()


def test_charlm_fused_training_matches_the_unfused_model():
    """The same CharLM trained for a few steps with and without token input ends with the same weights."""
    vocab = "abcdefgh"
    rng = np.random.default_rng(0)
    data = [rng.integers(0, 8, size=(4, 13)) for _ in range(3)]
    loss = CrossEntropyLoss()

    def step(model, batch):
        logits, _ = model.forward(batch[:, :-1])
        value = loss.forward(logits, batch[:, 1:])
        model.backward(loss.backward())
        return value

    fused = CharLM(vocab, 5, 12, num_layers=2, cell="gru", dtype=np.float64, seed=1)
    plain = CharLM(vocab, 5, 12, num_layers=2, cell="gru", dtype=np.float64, seed=1)
    _without_token_input(plain.rnn)
    results = [_training_steps(m, lambda i: (data[i % 3],), step, 4) for m in (fused, plain)]
    assert fused._fused and not plain._fused
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-10)
    for k in results[1][1]:
        np.testing.assert_allclose(results[0][1][k], results[1][1][k], rtol=1e-9, atol=1e-11, err_msg=k)


def test_classifier_and_seq2seq_fused_gradients_match_unfused():
    rng = np.random.default_rng(2)
    for build, run in (
        (lambda: SequenceClassifier(3, 10, vocab_size=6, embed_dim=4, bidirectional=True, dtype=np.float64, seed=0),
         lambda m: m.forward(rng_tokens, lengths)),
        (lambda: Seq2Seq(6, 6, embed_dim=4, hidden_size=10, dtype=np.float64, seed=0),
         lambda m: m.forward(rng_tokens, rng_tokens, lengths)),
    ):
        rng_tokens = rng.integers(0, 6, size=(5, 7))
        lengths = np.array([7, 3, 5, 1, 7])
        models = [build(), build()]
        for cls_attr in ("rnn", "encoder", "decoder"):
            if hasattr(models[1], cls_attr):
                _without_token_input(getattr(models[1], cls_attr))
        grads = []
        for m in models:
            m.zero_grad()
            out = run(m)
            m.backward(np.ones_like(out) / out.size)
            grads.append({k: v.copy() for k, v in m.grads.items()})
        for k in grads[1]:
            np.testing.assert_allclose(grads[0][k], grads[1][k], rtol=1e-9, atol=1e-12, err_msg=k)


# ---------------------------------------------------------------------------------------- tape pool
@pytest.mark.parametrize("mode", MODES)
def test_tape_memory_is_reused_and_results_stay_right(mode):
    """After a backward the next forward records into the same tape arrays; every step still equals a
    fresh layer's (nothing left over from the previous step leaks in)."""
    rng = np.random.default_rng(3)
    layer = make_layer(fastrnn, mode, 5, 11, dtype=np.float64, seed=0, num_layers=2)
    fresh = make_layer(fastrnn, mode, 5, 11, dtype=np.float64, seed=0, num_layers=2)
    seen = None
    reused = 0
    for step in range(4):
        x = rng.standard_normal((6, 4, 5))
        lengths = None if step < 2 else np.array([6, 2, 4, 1])
        dy = rng.standard_normal((6, 4, 11))
        layer.zero_grad()
        y, _ = layer.forward(x, None, lengths)
        ids = {id(a) for d in layer._tape.layers for t in d for a in layer._tape_buffers(t)}
        if step in (1, 3):  # the previous step's tape had these shapes: its arrays come back
            assert ids == seen
            reused += 1
        dx, _ = layer.backward(dy)
        seen = ids
        fresh.load_state_dict(layer.state_dict())
        fresh.zero_grad()
        y_ref, _ = fresh.forward(x, None, lengths)
        dx_ref, _ = fresh.backward(dy)
        np.testing.assert_array_equal(y, y_ref)
        np.testing.assert_array_equal(dx, dx_ref)
        for k in layer.grads:
            np.testing.assert_array_equal(layer.grads[k], fresh.grads[k])
    assert reused == 2


@pytest.mark.parametrize("via", ["eval", "train(False)", "model.eval"])
def test_eval_frees_the_recycled_tape(via):
    """eval() (or train(False), also through a model) drops the pooled tape arrays; training afterwards
    allocates afresh and still gives the same results."""
    rng = np.random.default_rng(4)
    model = CharLM("abcdefg", embed_dim=4, hidden_size=9, dtype=np.float64, seed=0)
    layer = model.rnn
    x = rng.standard_normal((5, 3, 4))
    dy = rng.standard_normal((5, 3, 9))
    layer.forward(x)
    layer.backward(dy)
    pooled = [a for arrays in layer._tape_pool._free.values() for a in arrays]  # held: their ids stay unique
    assert pooled  # a finished backward leaves its tape to the pool
    {"eval": layer.eval, "train(False)": lambda: layer.train(False), "model.eval": model.eval}[via]()
    assert not layer.training and layer._tape_pool._free == {}
    layer.train()
    layer.zero_grad()
    y, _ = layer.forward(x)
    recorded = [a for d in layer._tape.layers for t in d for a in layer._tape_buffers(t)]
    assert not any(a is b for a in recorded for b in pooled)
    dx, _ = layer.backward(dy)
    fresh = CharLM("abcdefg", embed_dim=4, hidden_size=9, dtype=np.float64, seed=0).rnn
    y_ref, _ = fresh.forward(x)
    dx_ref, _ = fresh.backward(dy)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(dx, dx_ref)


def test_pooled_tape_is_not_handed_out_while_a_tape_is_alive():
    """Two forwards without a backward in between get different tape arrays (only a consumed tape is
    recycled)."""
    layer = fastrnn.LSTM(3, 4, seed=0)
    x = np.ones((2, 2, 3), np.float32)
    layer.forward(x)
    layer.backward(np.ones((2, 2, 4), np.float32))
    layer.forward(x)
    first = layer._tape
    layer.forward(x)  # the first tape is dropped unconsumed: not recycled
    second = layer._tape
    ids = lambda tape: {id(a) for d in tape.layers for t in d for a in layer._tape_buffers(t)}  # noqa: E731
    assert not ids(first) & ids(second)
