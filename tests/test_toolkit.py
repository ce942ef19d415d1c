"""The training toolkit: fastrnn.nn (gradients by finite differences), fastrnn.optim (against hand-computed
updates and torch.optim), clip_grad_norm, truncated BPTT, and atomic checkpoints."""
import os

import numpy as np
import pytest

import fastrnn
from fastrnn import nn, optim, training
from fastrnn.models import CharLM


@pytest.fixture(autouse=True)
def _one_thread():
    # tiny shapes: one thread is faster and immune to a busy machine; conftest restores the count
    fastrnn.set_num_threads(1)


def numeric_grad(f, arr, eps=1e-6, entries=None):
    """Central differences of the scalar f() with respect to arr (changed in place and restored)."""
    flat = arr.reshape(-1)
    idx = range(flat.size) if entries is None else entries
    out = {}
    for i in idx:
        old = flat[i]
        flat[i] = old + eps
        up = f()
        flat[i] = old - eps
        down = f()
        flat[i] = old
        out[i] = (up - down) / (2 * eps)
    return out


def assert_grad_matches(analytic, f, arr, rtol=1e-6, atol=1e-8):
    num = numeric_grad(f, arr)
    got = analytic.reshape(-1)
    for i, value in num.items():
        assert got[i] == pytest.approx(value, rel=rtol, abs=atol), f"entry {i}"


# ----------------------------------------------------------------------------- Embedding
def test_embedding_gradient_sums_repeated_indices():
    rng = np.random.default_rng(0)
    emb = nn.Embedding(5, 3, dtype=np.float64, seed=1)
    idx = np.array([[0, 2, 2], [4, 2, 0]])
    w = rng.standard_normal((2, 3, 3))
    out = emb(idx)
    assert out.shape == (2, 3, 3) and out.dtype == np.float64
    assert emb.backward(w) is None
    f = lambda: float(np.sum(emb.forward(idx) * w))  # noqa: E731
    assert_grad_matches(emb.grads["weight"].copy(), f, emb.params["weight"])
    assert np.all(emb.grads["weight"][[1, 3]] == 0)


def test_embedding_checks_indices_and_tape():
    emb = nn.Embedding(4, 2, seed=0)
    with pytest.raises(ValueError, match="indices"):
        emb(np.array([0, 4]))
    with pytest.raises(ValueError, match="indices"):
        emb(np.array([-1]))
    with pytest.raises(TypeError, match="indices"):
        emb(np.array([0.5]))
    with pytest.raises(RuntimeError, match="forward"):
        emb.backward(np.zeros((1, 2)))
    with fastrnn.no_grad():
        emb(np.array([1]))
    with pytest.raises(RuntimeError):
        emb.backward(np.zeros((1, 2)))
    emb(np.array([1, 2]))
    with pytest.raises(ValueError, match="dout"):
        emb.backward(np.zeros((3, 2)))


# ----------------------------------------------------------------------------- Linear
def test_linear_gradients_per_time_step():
    rng = np.random.default_rng(1)
    lin = nn.Linear(4, 3, dtype=np.float64, seed=2)
    x = rng.standard_normal((2, 5, 4))
    w = rng.standard_normal((2, 5, 3))
    y = lin(x)
    assert y.shape == (2, 5, 3)
    np.testing.assert_allclose(y, x @ lin.params["weight"].T + lin.params["bias"])
    dx = lin.backward(w)
    f = lambda: float(np.sum(lin.forward(x) * w))  # noqa: E731
    assert_grad_matches(dx, f, x)
    assert_grad_matches(lin.grads["weight"].copy(), f, lin.params["weight"])
    assert_grad_matches(lin.grads["bias"].copy(), f, lin.params["bias"])


def test_linear_adds_into_grads_and_zero_grad_clears():
    lin = nn.Linear(3, 2, seed=0)
    x = np.ones((4, 3), np.float32)
    lin(x)
    lin.backward(np.ones((4, 2), np.float32))
    once = lin.grads["weight"].copy()
    lin(x)
    lin.backward(np.ones((4, 2), np.float32))
    np.testing.assert_allclose(lin.grads["weight"], 2 * once)
    lin.zero_grad()
    assert not lin.grads["weight"].any() and not lin.grads["bias"].any()


def test_linear_without_bias_and_bad_input():
    lin = nn.Linear(3, 2, bias=False)
    assert list(lin.params) == ["weight"]
    with pytest.raises(ValueError, match="x"):
        lin(np.zeros((2, 4)))
    with pytest.raises(TypeError, match="in_features"):
        nn.Linear(3.0, 2)
    with pytest.raises(ValueError, match="out_features"):
        nn.Linear(3, 0)


# ----------------------------------------------------------------------------- losses
def test_cross_entropy_value_and_gradient_with_mask():
    rng = np.random.default_rng(2)
    logits = rng.standard_normal((3, 4, 5))
    targets = rng.integers(0, 5, (3, 4))
    mask = rng.random((3, 4)) < 0.7
    mask[0, 0] = True
    targets[~mask] = -1  # padding may hold anything
    ce = nn.CrossEntropyLoss()
    loss = ce.forward(logits, targets, mask)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    t = np.where(mask, targets, 0)
    expected = -(np.take_along_axis(logp, t[..., None], -1)[..., 0] * mask).sum() / mask.sum()
    assert loss == pytest.approx(expected, rel=1e-12)
    d = ce.backward()
    assert np.all(d[~mask] == 0)
    assert_grad_matches(d, lambda: nn.CrossEntropyLoss().forward(logits, targets, mask), logits)


def test_cross_entropy_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    logits = rng.standard_normal((6, 7)).astype(np.float32) * 3
    targets = rng.integers(0, 7, 6)
    ce = nn.CrossEntropyLoss()
    loss = ce.forward(logits, targets)
    tl = torch.tensor(logits, requires_grad=True)
    ref = torch.nn.functional.cross_entropy(tl, torch.tensor(targets))
    ref.backward()
    assert loss == pytest.approx(ref.item(), rel=1e-5)
    np.testing.assert_allclose(ce.backward(), tl.grad.numpy(), rtol=1e-5, atol=1e-7)


def test_cross_entropy_sum_reduction_and_errors():
    logits = np.zeros((2, 3), np.float32)
    assert nn.CrossEntropyLoss("sum").forward(logits, [0, 1]) == pytest.approx(2 * np.log(3), rel=1e-6)
    ce = nn.CrossEntropyLoss()
    with pytest.raises(ValueError, match="targets"):
        ce.forward(logits, [0, 3])
    with pytest.raises(ValueError, match="targets"):
        ce.forward(logits, [0, 1, 2])
    with pytest.raises(TypeError, match="targets"):
        ce.forward(logits, [0.0, 1.0])
    with pytest.raises(ValueError, match="mask"):
        ce.forward(logits, [0, 1], mask=[True, False, True])
    with pytest.raises(ValueError, match="reduction"):
        nn.CrossEntropyLoss("avg")
    with pytest.raises(RuntimeError):
        ce.backward()
    # an all-masked batch gives 0, not a division by zero
    assert ce.forward(logits, [0, 1], mask=[False, False]) == 0.0
    assert not ce.backward().any()


def test_mse_value_and_gradient():
    rng = np.random.default_rng(4)
    pred, target = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    mask = np.array([1, 0, 1, 1], bool)[:, None]
    mse = nn.MSELoss()
    assert mse.forward(pred, target) == pytest.approx(np.mean((pred - target) ** 2))
    assert_grad_matches(mse.backward(), lambda: nn.MSELoss().forward(pred, target), pred)
    value = mse.forward(pred, target, mask)
    assert value == pytest.approx(np.sum(((pred - target) ** 2)[[0, 2, 3]]) / 9)
    assert_grad_matches(mse.backward(), lambda: nn.MSELoss().forward(pred, target, mask), pred)
    with pytest.raises(ValueError, match="target"):
        mse.forward(pred, target[:2])


# ----------------------------------------------------------------------------- Module state
def test_module_state_dict_round_trip_and_checks():
    a, b = CharLM("abc", 4, 5, seed=0), CharLM("abc", 4, 5, seed=1)
    assert set(a.params) == {"embedding.weight", "rnn.weight_ih_l0", "rnn.weight_hh_l0", "rnn.bias_ih_l0",
                             "rnn.bias_hh_l0", "head.weight", "head.bias"}
    b.load_state_dict(a.state_dict())
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])
    sd = a.state_dict()
    del sd["head.bias"]
    with pytest.raises(KeyError, match="head.bias"):
        b.load_state_dict(sd)
    sd = a.state_dict()
    sd["head.weight"] = sd["head.weight"][:, :2]
    before = b.params["embedding.weight"].copy()
    with pytest.raises(ValueError, match="head.weight"):
        b.load_state_dict(sd)
    np.testing.assert_array_equal(b.params["embedding.weight"], before)  # nothing written


# ----------------------------------------------------------------------------- optimizers
class _Params:
    """The minimal optimizer target: params and grads dicts."""

    def __init__(self, **arrays):
        self.params = {k: np.array(v, np.float64) for k, v in arrays.items()}
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}


def test_sgd_momentum_weight_decay_by_hand():
    m = _Params(w=[1.0, -2.0])
    opt = optim.SGD(m, lr=0.1, momentum=0.9, weight_decay=0.01)
    p, buf = np.array([1.0, -2.0]), np.zeros(2)
    for g in ([0.5, 1.0], [-1.0, 0.25], [0.0, 2.0]):
        m.grads["w"][...] = g
        opt.step()
        d = np.array(g) + 0.01 * p
        buf = 0.9 * buf + d
        p = p - 0.1 * buf
        np.testing.assert_allclose(m.params["w"], p, rtol=1e-12)
    np.testing.assert_array_equal(m.grads["w"], [0.0, 2.0])  # the gradient itself is left alone


def test_adam_by_hand():
    m = _Params(w=[0.5, -1.5, 2.0])
    opt = optim.Adam(m, lr=0.01, betas=(0.8, 0.9), eps=1e-6)
    p, mom, vel = np.array([0.5, -1.5, 2.0]), np.zeros(3), np.zeros(3)
    for n, g in enumerate(([1.0, -2.0, 0.1], [0.3, 0.0, -4.0], [2.0, 1.0, 1.0]), start=1):
        m.grads["w"][...] = g
        opt.step()
        g = np.array(g)
        mom = 0.8 * mom + 0.2 * g
        vel = 0.9 * vel + 0.1 * g * g
        p = p - 0.01 * (mom / (1 - 0.8 ** n)) / (np.sqrt(vel / (1 - 0.9 ** n)) + 1e-6)
        np.testing.assert_allclose(m.params["w"], p, rtol=1e-12)


@pytest.mark.parametrize("kind", ["sgd", "sgd_nesterov", "adam", "adam_wd"])
def test_optimizers_match_torch(kind):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    layer = fastrnn.GRU(3, 4, dtype=np.float64, seed=0)
    tparams = {k: torch.tensor(v.copy(), requires_grad=True) for k, v in layer.params.items()}
    if kind.startswith("sgd"):
        nesterov = kind == "sgd_nesterov"
        opt = optim.SGD(layer, lr=0.05, momentum=0.9, weight_decay=1e-3, nesterov=nesterov)
        topt = torch.optim.SGD(tparams.values(), lr=0.05, momentum=0.9, weight_decay=1e-3, nesterov=nesterov)
    else:
        wd = 0.01 if kind == "adam_wd" else 0.0
        opt = optim.Adam(layer, lr=0.01, weight_decay=wd)
        topt = torch.optim.Adam(tparams.values(), lr=0.01, weight_decay=wd)
    for _ in range(5):
        for k in layer.params:
            g = rng.standard_normal(layer.params[k].shape)
            layer.grads[k][...] = g
            tparams[k].grad = torch.tensor(g)
        opt.step()
        topt.step()
    for k, v in layer.params.items():
        np.testing.assert_allclose(v, tparams[k].detach().numpy(), rtol=1e-10, atol=1e-12)


def test_optimizer_updates_in_place_and_checks_arguments():
    lstm = fastrnn.LSTM(2, 3, seed=0)
    arrays = {k: v for k, v in lstm.params.items()}
    opt = optim.Adam([lstm, nn.Linear(3, 1)], lr=1e-2)
    for g in lstm.grads.values():
        g.fill(1.0)
    before = {k: v.copy() for k, v in lstm.params.items()}
    opt.step()
    for k, v in lstm.params.items():
        assert v is arrays[k]  # the arrays the kernels read are the ones updated
        assert not np.array_equal(v, before[k])
    with pytest.raises(ValueError, match="lr"):
        optim.SGD(lstm, lr=0.0)
    with pytest.raises(ValueError, match="momentum"):
        optim.SGD(lstm, lr=0.1, momentum=1.5)
    with pytest.raises(TypeError, match="modules"):
        optim.Adam({"w": np.zeros(2)})
    with pytest.raises(TypeError, match="betas"):
        optim.Adam(lstm, betas=0.9)


def test_optimizer_state_dict_round_trip():
    m = _Params(w=[1.0, 2.0])
    opt = optim.Adam(m, lr=0.1)
    m.grads["w"][...] = [1.0, -1.0]
    opt.step()
    sd = opt.state_dict()
    assert set(sd) == {"steps", "exp_avg.w", "exp_avg_sq.w"}
    other = optim.Adam(_Params(w=[0.0, 0.0]), lr=0.1)
    other.load_state_dict(sd)
    assert other.steps == 1
    np.testing.assert_array_equal(other.state["w"]["exp_avg"], opt.state["w"]["exp_avg"])
    with pytest.raises(KeyError, match="exp_avg_sq.w"):
        other.load_state_dict({"steps": 1, "exp_avg.w": np.zeros(2)})


# ----------------------------------------------------------------------------- clip_grad_norm
def test_clip_grad_norm_scales_to_max_norm():
    a, b = _Params(w=[0.0, 0.0]), {"v": np.array([0.0, 0.0, 0.0])}
    a.grads["w"][...] = [3.0, 0.0]
    b["v"][...] = [0.0, 4.0, 0.0]
    norm = optim.clip_grad_norm([a, b], 1.0)
    assert norm == pytest.approx(5.0)
    total = np.sqrt(np.sum(a.grads["w"] ** 2) + np.sum(b["v"] ** 2))
    assert total == pytest.approx(1.0, rel=1e-5)
    np.testing.assert_allclose(a.grads["w"], [0.6, 0.0], rtol=1e-5)
    # below the limit: untouched
    assert optim.clip_grad_norm(b, 10.0) == pytest.approx(0.8, rel=1e-5)
    np.testing.assert_allclose(b["v"], [0.0, 0.8, 0.0], rtol=1e-5)


def test_clip_grad_norm_matches_torch():
    torch = pytest.importorskip("torch")
    layer = fastrnn.LSTM(3, 5, num_layers=2, seed=0)
    rng = np.random.default_rng(6)
    tgrads = []
    for g in layer.grads.values():
        g[...] = rng.standard_normal(g.shape)
        t = torch.zeros(g.shape, requires_grad=True)
        t.grad = torch.tensor(g.copy())
        tgrads.append(t)
    norm = optim.clip_grad_norm(layer, 2.0)
    tnorm = torch.nn.utils.clip_grad_norm_(tgrads, 2.0)
    assert norm == pytest.approx(tnorm.item(), rel=1e-5)
    for g, t in zip(layer.grads.values(), tgrads):
        np.testing.assert_allclose(g, t.grad.numpy(), rtol=1e-5, atol=1e-7)


def test_clip_grad_norm_bad_arguments():
    with pytest.raises(ValueError, match="max_norm"):
        optim.clip_grad_norm({"w": np.ones(2)}, 0.0)
    with pytest.raises(TypeError, match="modules_or_grad_dicts"):
        optim.clip_grad_norm(3, 1.0)
    with pytest.raises(TypeError, match="modules_or_grad_dicts"):
        optim.clip_grad_norm({"w": [1.0, 2.0]}, 1.0)


# ----------------------------------------------------------------------------- truncated BPTT
def test_stream_batches_rows_continue_across_chunks():
    stream = np.arange(103)
    sb = training.StreamBatches(stream, batch_size=4, seq_len=5)
    assert len(sb) == 5  # 25 items per row (102 // 4), 5 chunks of 5
    x0, y0 = sb.chunk(0)
    x1, _ = sb.chunk(1)
    assert x0.shape == (4, 5)
    np.testing.assert_array_equal(y0, x0 + 1)
    np.testing.assert_array_equal(x1[:, 0], x0[:, -1] + 1)
    np.testing.assert_array_equal(x0[:, 0], [0, 25, 50, 75])
    with pytest.raises(ValueError, match="too short"):
        training.StreamBatches(np.arange(10), batch_size=4, seq_len=5)


def test_stream_batches_shift_moves_chunk_boundaries_per_epoch():
    stream = np.arange(200)
    sb = training.StreamBatches(stream, batch_size=2, seq_len=10, max_shift=9, seed=3)
    assert len(sb) == 9  # (200 - 1 - 9) // 2 = 95 items per row: 9 chunks in every epoch
    starts = []
    for epoch in range(6):
        sb.start_epoch(epoch)
        x0, y0 = sb.chunk(0)
        x1, _ = sb.chunk(len(sb) - 1)
        np.testing.assert_array_equal(y0, x0 + 1)
        assert x1.shape == (2, 10) and x1[1, -1] + 1 < 200
        starts.append(int(x0[0, 0]))
    assert len(set(starts)) > 1 and all(0 <= s <= 9 for s in starts)
    again = training.StreamBatches(stream, 2, 10, max_shift=9, seed=3)
    again.start_epoch(4)
    sb.start_epoch(4)
    np.testing.assert_array_equal(again.chunk(0)[0], sb.chunk(0)[0])  # resumable: the shift depends on the epoch
    with pytest.raises(ValueError, match="max_shift"):
        training.StreamBatches(stream, 2, 10, max_shift=-1)


class _SpyModel:
    """Records the state each forward receives; its 'state' is a counter of chunks seen."""

    def __init__(self):
        self.seen, self.training, self.params, self.grads = [], True, {}, {}

    def forward(self, x, state):
        self.seen.append(state)
        return np.zeros(x.shape + (2,)), (0 if state is None else state) + 1

    def backward(self, d):
        pass

    def zero_grad(self):
        pass


class _NoOpt:
    def step(self):
        pass


def test_truncated_bptt_carries_state_and_restarts_each_epoch():
    spy = _SpyModel()
    trainer = training.TruncatedBPTT(spy, nn.CrossEntropyLoss(), _NoOpt(),
                                     training.StreamBatches(np.zeros(31, np.int64), 2, 5))
    for _ in range(7):  # 3 chunks per epoch
        trainer.step()
    assert spy.seen == [None, 1, 2, None, 1, 2, None]


def test_random_windows_are_reproducible_and_carry_no_state():
    stream = np.arange(500)
    rw = training.RandomWindows(stream, batch_size=3, seq_len=8, seed=1)
    assert len(rw) == 499 // 24
    x, y = rw.chunk(5)
    assert x.shape == (3, 8)
    np.testing.assert_array_equal(y, x + 1)
    np.testing.assert_array_equal(np.diff(x, axis=1), 1)  # each window is contiguous
    np.testing.assert_array_equal(training.RandomWindows(stream, 3, 8, seed=1).chunk(5)[0], x)
    assert not np.array_equal(rw.chunk(6)[0], x)
    spy = _SpyModel()
    windows = training.RandomWindows(np.zeros(50, np.int64), 2, 5)
    trainer = training.TruncatedBPTT(spy, nn.CrossEntropyLoss(), _NoOpt(), windows)
    for _ in range(4):
        trainer.step()
    assert spy.seen == [None] * 4
    with pytest.raises(ValueError, match="too short"):
        training.RandomWindows(np.arange(10), 2, 5)


def test_truncated_bptt_gradient_stops_at_the_chunk_boundary():
    """The gradient of chunk 2 equals that of a fresh forward from chunk 1's final state held constant."""
    text = "abcabcabd" * 8
    model = CharLM("abcd", 4, 6, dtype=np.float64, seed=0)
    ids = model.encode(text)
    batches = training.StreamBatches(ids, 2, 6)
    trainer = training.TruncatedBPTT(model, nn.CrossEntropyLoss(), _NoOpt(), batches)
    trainer.step()
    state = tuple(s.copy() for s in trainer.state)
    trainer.step()
    got = {k: v.copy() for k, v in model.grads.items()}
    model.zero_grad()
    x, y = batches.chunk(1)
    ce = nn.CrossEntropyLoss()
    logits, _ = model.forward(x, state)
    ce.forward(logits, y)
    model.backward(ce.backward())
    for k in got:
        np.testing.assert_allclose(got[k], model.grads[k], rtol=1e-12)


def test_stream_loss_scores_every_position_once():
    model = CharLM("xyz", 3, 4, dtype=np.float64, seed=0)
    ids = model.encode("xyzzyx" * 10)
    value = training.stream_loss(model, nn.CrossEntropyLoss("sum"), ids, num_streams=1, seq_len=7)
    with fastrnn.no_grad():
        logits, _ = model.forward(ids[None, :-1])
    expected = nn.CrossEntropyLoss().forward(logits, ids[None, 1:])
    assert value == pytest.approx(expected, rel=1e-10)
    with pytest.raises(ValueError, match="reduction"):
        training.stream_loss(model, nn.CrossEntropyLoss(), ids)


def test_pad_sequences():
    padded, lengths = training.pad_sequences([[1, 2, 3], [4], [5, 6]], pad=0)
    np.testing.assert_array_equal(padded, [[1, 2, 3], [4, 0, 0], [5, 6, 0]])
    np.testing.assert_array_equal(lengths, [3, 1, 2])
    with pytest.raises(ValueError, match="seqs"):
        training.pad_sequences([[1], []])


def test_limit_numpy_blas_threads_is_best_effort():
    assert training.limit_numpy_blas_threads(1) in (True, False)


# ----------------------------------------------------------------------------- checkpoints
def _trained_pair(seed=0, hidden=5, dtype=np.float32):
    model = CharLM("abcde", 3, hidden, dtype=dtype, seed=seed)
    opt = optim.Adam(model, lr=0.01)
    for g in model.grads.values():
        g.fill(0.5)
    opt.step()
    return model, opt


def test_save_load_round_trip(tmp_path):
    model, opt = _trained_pair()
    path = tmp_path / "model.npz"
    training.save_model(path, model, opt, meta={"step": 7, "history": [1.5, 1.25]})
    assert os.listdir(tmp_path) == ["model.npz"]  # no temporary file left behind
    fresh, fresh_opt = CharLM("abcde", 3, 5, seed=9), None
    fresh_opt = optim.Adam(fresh, lr=0.01)
    training.load_model(path, fresh, fresh_opt)
    for k in model.params:
        np.testing.assert_array_equal(model.params[k], fresh.params[k])
    assert fresh_opt.steps == 1
    np.testing.assert_array_equal(fresh_opt.state["head.weight"]["exp_avg_sq"], opt.state["head.weight"]["exp_avg_sq"])
    header = training.read_meta(path)
    assert header["meta"] == {"step": 7, "history": [1.5, 1.25]} and header["model_class"] == "CharLM"
    rebuilt = training.load_model(path)  # built from the stored config
    assert isinstance(rebuilt, CharLM) and rebuilt.vocab == "abcde"
    np.testing.assert_array_equal(rebuilt.params["rnn.weight_hh_l0"], model.params["rnn.weight_hh_l0"])


def test_load_names_wrong_shape_dtype_and_keys(tmp_path):
    model, _ = _trained_pair()
    path = tmp_path / "m.npz"
    training.save_model(path, model)
    bigger = CharLM("abcde", 3, 6, seed=0)
    with pytest.raises(ValueError, match=r"rnn.weight_hh_l0.*shape \(20, 5\).*expected \(24, 6\)"):
        training.load_model(path, bigger)
    wide = CharLM("abcde", 3, 5, dtype=np.float64, seed=0)
    with pytest.raises(ValueError, match=r"head.weight.*dtype float32.*expected float64"):
        training.load_model(path, wide)
    gru = CharLM("abcde", 3, 5, cell="gru", seed=0)
    with pytest.raises(ValueError, match=r"weight_ih_l0.*shape"):
        training.load_model(path, gru)
    two = CharLM("abcde", 3, 5, num_layers=2, seed=0)
    with pytest.raises(ValueError, match=r"rnn.weight_ih_l1' is missing"):
        training.load_model(path, two)
    with pytest.raises(ValueError, match="no optimizer state"):
        training.load_model(path, CharLM("abcde", 3, 5), optim.Adam(CharLM("abcde", 3, 5)))
    before = bigger.params["head.bias"].copy()
    np.testing.assert_array_equal(bigger.params["head.bias"], before)


def test_load_rejects_files_that_are_not_checkpoints(tmp_path):
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="junk.npz"):
        training.load_model(junk, CharLM("ab", 2, 2))
    plain = tmp_path / "plain.npz"
    np.savez(plain, w=np.zeros(2))
    with pytest.raises(ValueError, match="not a fastrnn checkpoint"):
        training.read_meta(plain)
    with pytest.raises(FileNotFoundError):
        training.load_model(tmp_path / "missing.npz", CharLM("ab", 2, 2))


def test_failed_save_leaves_the_old_file_and_no_partial_file(tmp_path, monkeypatch):
    model, opt = _trained_pair()
    path = tmp_path / "ckpt.npz"
    training.save_model(path, model, opt)
    original = path.read_bytes()

    def crash(f, **arrays):
        f.write(b"PK\x03\x04 half a zip")
        raise OSError("disk full")

    monkeypatch.setattr(training.np, "savez", crash)
    with pytest.raises(OSError, match="disk full"):
        training.save_model(path, model, opt)
    assert path.read_bytes() == original
    assert os.listdir(tmp_path) == ["ckpt.npz"]
    monkeypatch.undo()
    with pytest.raises(TypeError, match="meta"):
        training.save_model(tmp_path / "other.npz", model, meta={"bad": object()})
    assert sorted(os.listdir(tmp_path)) == ["ckpt.npz"]
