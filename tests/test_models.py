"""fastrnn.models: shapes, full-model gradients by finite differences (float64), tiny learning checks,
sampling and decoding, checkpoints of every model, and the `fastrnn train` / `fastrnn demo` commands."""
import numpy as np
import pytest

import fastrnn
from fastrnn import nn, optim, training
from fastrnn.__main__ import main
from fastrnn.models import CharLM, Forecaster, Seq2Seq, SequenceClassifier, sliding_windows, teacher_forcing


@pytest.fixture(autouse=True)
def _one_thread():
    fastrnn.set_num_threads(1)  # tiny shapes: faster and steady on a busy machine (conftest restores it)


def check_model_gradients(model, loss_fn, rng, entries_per_param=3, eps=1e-6, rtol=1e-5):
    """loss_fn(model) runs forward + loss and returns (value, dout); compare model.grads with central
    differences at a few random entries of every parameter (model in float64)."""
    model.zero_grad()
    _, dout = loss_fn(model)
    model.backward(dout)
    grads = {k: v.copy() for k, v in model.grads.items()}
    for key, p in model.params.items():
        flat = p.reshape(-1)
        for i in rng.choice(flat.size, min(entries_per_param, flat.size), replace=False):
            old = flat[i]
            flat[i] = old + eps
            up = loss_fn(model)[0]
            flat[i] = old - eps
            down = loss_fn(model)[0]
            flat[i] = old
            numeric = (up - down) / (2 * eps)
            assert grads[key].reshape(-1)[i] == pytest.approx(numeric, rel=rtol, abs=1e-8), f"{key}[{i}]"


def _weighted(out, w):
    return float(np.sum(out * w)), w


def train_steps(model, batch_fn, loss, steps, lr=1e-2, clip=1.0):
    opt = optim.Adam(model, lr=lr)
    history = []
    for step in range(steps):
        inputs, targets, kwargs, loss_kwargs = batch_fn(step)
        model.zero_grad()
        out = model.forward(*inputs, **kwargs)
        if isinstance(out, tuple):
            out = out[0]
        history.append(loss.forward(out, targets, **loss_kwargs))
        model.backward(loss.backward())
        optim.clip_grad_norm(model, clip)
        opt.step()
    return history


# ----------------------------------------------------------------------------- CharLM
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_charlm_shapes_and_gradients(cell):
    rng = np.random.default_rng(0)
    model = CharLM("abcdef", 4, 5, num_layers=2, cell=cell, dtype=np.float64, seed=1)
    tokens = rng.integers(0, 6, (3, 7))
    logits, state = model(tokens)
    assert logits.shape == (3, 7, 6)
    h = state[0] if cell == "lstm" else state
    assert h.shape == (2, 3, 5)
    w = rng.standard_normal(logits.shape)
    check_model_gradients(model, lambda m: _weighted(m.forward(tokens, state)[0], w), rng)


def test_charlm_learns_a_repetitive_text():
    text = "the cat sat on the mat. " * 40
    model = CharLM("".join(sorted(set(text))), 16, 32, seed=0)
    ids = model.encode(text)
    batches = training.StreamBatches(ids, 8, 20)
    trainer = training.TruncatedBPTT(model, nn.CrossEntropyLoss(), optim.Adam(model, 1e-2), batches, clip=1.0)
    losses = [trainer.step() for _ in range(150)]
    assert losses[0] > 2.0  # about log(11) at the start
    assert np.mean(losses[-10:]) < 0.3, losses[-10:]
    # greedy generation reproduces the pattern
    assert model.sample("the cat ", 16, temperature=0) == "sat on the mat. "


def test_charlm_sample_is_deterministic_for_a_seed():
    model = CharLM("abcdefgh ", 8, 16, seed=3)
    a = model.sample("ab", 40, temperature=1.0, seed=11)
    b = model.sample("ab", 40, temperature=1.0, seed=11)
    c = model.sample("ab", 40, temperature=1.0, seed=12)
    assert a == b and a != c
    assert len(a) == 40 and set(a) <= set(model.vocab)
    assert model.sample("ab", 0) == ""
    assert model.training  # sampling switched to eval and back


def test_charlm_sample_carries_the_state():
    """Generating one character per call with the state carried equals one forward over the whole text."""
    model = CharLM("abcd", 4, 8, dtype=np.float64, seed=2)
    out = model.sample("abca", 12, temperature=0)
    full = "abca" + out
    with fastrnn.no_grad():
        logits, _ = model.forward(model.encode(full)[None, :-1])
    assert model.decode(np.argmax(logits[0, 3:], axis=-1)) == out


def test_charlm_argument_errors():
    with pytest.raises(ValueError, match="vocab"):
        CharLM("aab")
    with pytest.raises(ValueError, match="cell"):
        CharLM("ab", cell="transformer")
    model = CharLM("ab", 2, 3)
    with pytest.raises(ValueError, match="'z'"):
        model.encode("abz")
    with pytest.raises(ValueError, match="prompt"):
        model.sample("", 5)
    with pytest.raises(ValueError, match="temperature"):
        model.sample("a", 5, temperature=-1)
    with pytest.raises(ValueError, match="tokens"):
        model.forward(np.array([[0, 2]]))


# ----------------------------------------------------------------------------- SequenceClassifier
@pytest.mark.parametrize("cell,bidirectional", [("lstm", True), ("gru", False), ("rnn", True)])
def test_classifier_gradients_with_lengths(cell, bidirectional):
    rng = np.random.default_rng(1)
    model = SequenceClassifier(3, 5, input_size=2, num_layers=2, cell=cell, bidirectional=bidirectional,
                               dtype=np.float64, seed=0)
    x = rng.standard_normal((4, 6, 2))
    lengths = np.array([6, 2, 4, 1])
    logits = model(x, lengths)
    assert logits.shape == (4, 3)
    w = rng.standard_normal((4, 3))
    check_model_gradients(model, lambda m: _weighted(m.forward(x, lengths), w), rng)
    # and the input gradient, for the real-valued inputs
    model.zero_grad()
    model.forward(x, lengths)
    dx = model.backward(w)
    assert dx.shape == x.shape and np.all(dx[1, 2:] == 0)
    i = (2, 1, 0)
    x2 = x.copy()
    x2[i] += 1e-6
    up = _weighted(model.forward(x2, lengths), w)[0]
    x2[i] -= 2e-6
    down = _weighted(model.forward(x2, lengths), w)[0]
    assert dx[i] == pytest.approx((up - down) / 2e-6, rel=1e-5)


def test_classifier_ignores_padding_and_uses_both_directions():
    rng = np.random.default_rng(2)
    model = SequenceClassifier(2, 4, vocab_size=7, embed_dim=3, bidirectional=True, seed=0)
    tokens = rng.integers(1, 7, (3, 5))
    lengths = np.array([5, 3, 2])
    a = model(tokens, lengths)
    tokens2 = tokens.copy()
    tokens2[1, 3:] = 0
    tokens2[2, 2:] = 6
    np.testing.assert_allclose(model(tokens2, lengths), a, rtol=1e-6)
    # sequence 2 alone, unpadded, gives the same logits
    np.testing.assert_allclose(model(tokens[2:3, :2]), a[2:3], rtol=1e-5, atol=1e-6)
    assert model.head.in_features == 8


def test_classifier_learns_which_token_comes_first():
    rng = np.random.default_rng(3)
    model = SequenceClassifier(2, 16, vocab_size=5, embed_dim=8, seed=0)

    def batch(step):
        tokens = rng.integers(2, 5, (32, 8))
        labels = rng.integers(0, 2, 32)
        tokens[:, 0] = labels  # the class is the first token; the classifier must remember it
        lengths = rng.integers(3, 9, 32)
        return (tokens,), labels, {"lengths": lengths}, {}

    losses = train_steps(model, batch, nn.CrossEntropyLoss(), 120, lr=2e-2)
    assert np.mean(losses[-10:]) < 0.2 * np.mean(losses[:5])
    (tokens,), labels, kw, _ = batch(0)
    assert np.mean(model.predict(tokens, kw["lengths"]) == labels) > 0.95


def test_classifier_argument_errors():
    with pytest.raises(ValueError, match="input_size"):
        SequenceClassifier(2, 4)
    with pytest.raises(ValueError, match="input_size"):
        SequenceClassifier(2, 4, input_size=3, vocab_size=5)
    model = SequenceClassifier(2, 4, input_size=3)
    with pytest.raises(ValueError, match="lengths"):
        model(np.zeros((2, 4, 3)), lengths=[5, 1])


# ----------------------------------------------------------------------------- Seq2Seq
def test_seq2seq_teacher_forcing_layout():
    dec_in, dec_out, mask = teacher_forcing([[5, 6], [7]], bos_id=1, eos_id=2)
    np.testing.assert_array_equal(dec_in, [[1, 5, 6], [1, 7, 0]])
    np.testing.assert_array_equal(dec_out, [[5, 6, 2], [7, 2, 0]])
    np.testing.assert_array_equal(mask, [[1, 1, 1], [1, 1, 0]])


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_seq2seq_gradients_reach_the_encoder(cell):
    rng = np.random.default_rng(4)
    model = Seq2Seq(6, 5, embed_dim=3, hidden_size=4, num_layers=2, cell=cell, dtype=np.float64, seed=0)
    src = rng.integers(0, 6, (3, 5))
    src_lengths = np.array([5, 2, 3])
    dec_in = rng.integers(0, 5, (3, 4))
    logits = model(src, dec_in, src_lengths)
    assert logits.shape == (3, 4, 5)
    w = rng.standard_normal(logits.shape)
    check_model_gradients(model, lambda m: _weighted(m.forward(src, dec_in, src_lengths), w), rng)
    assert np.abs(model.grads["encoder.weight_hh_l0"]).sum() > 0


def test_seq2seq_learns_to_reverse_and_decodes_greedily():
    rng = np.random.default_rng(5)
    PAD, BOS, EOS, V = 0, 1, 2, 8  # digits are tokens 3..7
    model = Seq2Seq(V, V, embed_dim=16, hidden_size=48, bos_id=BOS, eos_id=EOS, seed=0)

    def make(n):
        seqs = [rng.integers(3, V, rng.integers(2, 5)) for _ in range(n)]
        src, lengths = training.pad_sequences(seqs, pad=PAD)
        return src, lengths, [s[::-1] for s in seqs]

    ce = nn.CrossEntropyLoss()
    opt = optim.Adam(model, lr=1e-2)
    first = last = None
    for step in range(300):
        src, lengths, targets = make(32)
        dec_in, dec_out, mask = teacher_forcing(targets, BOS, EOS, PAD)
        model.zero_grad()
        loss = ce.forward(model(src, dec_in, lengths), dec_out, mask)
        model.backward(ce.backward())
        optim.clip_grad_norm(model, 1.0)
        opt.step()
        first = loss if first is None else first
        last = loss
    assert last < 0.25 * first
    src, lengths, targets = make(100)
    decoded = model.greedy_decode(src, lengths, max_len=8)
    accuracy = np.mean([d == list(t) for d, t in zip(decoded, targets)])
    assert accuracy > 0.7, accuracy


def test_seq2seq_greedy_decode_stops_at_eos_or_max_len():
    model = Seq2Seq(4, 4, embed_dim=2, hidden_size=3, bos_id=1, eos_id=2, seed=0)
    model.head.params["bias"][...] = [0, 0, 100, 0]  # always eos
    assert model.greedy_decode(np.array([[3, 3], [0, 1]]), max_len=5) == [[], []]
    model.head.params["bias"][...] = [0, 0, 0, 100]  # never eos
    assert model.greedy_decode(np.array([[3, 3]]), max_len=5) == [[3] * 5]
    with pytest.raises(ValueError, match="eos_id"):
        Seq2Seq(4, 4, eos_id=4)


# ----------------------------------------------------------------------------- Forecaster
def test_sliding_windows():
    x, y = sliding_windows(np.arange(6.0), 3)
    np.testing.assert_array_equal(x[..., 0], [[0, 1, 2], [1, 2, 3], [2, 3, 4]])
    np.testing.assert_array_equal(y[:, 0], [3, 4, 5])
    x, y = sliding_windows(np.arange(12.0).reshape(6, 2), 2, horizon=2)
    assert x.shape == (3, 2, 2) and y.shape == (3, 2)
    np.testing.assert_array_equal(y[0], [6, 7])
    with pytest.raises(ValueError, match="too short"):
        sliding_windows(np.arange(3.0), 3)
    with pytest.raises(ValueError, match="window"):
        sliding_windows(np.arange(3.0), 0)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_forecaster_gradients(cell):
    rng = np.random.default_rng(6)
    model = Forecaster(2, 5, output_size=3, num_layers=2, cell=cell, dtype=np.float64, seed=0)
    x = rng.standard_normal((4, 6, 2))
    pred = model(x)
    assert pred.shape == (4, 3)
    w = rng.standard_normal(pred.shape)
    check_model_gradients(model, lambda m: _weighted(m.forward(x), w), rng)
    model.forward(x)
    assert model.backward(w).shape == x.shape


def test_forecaster_learns_a_sine_wave():
    t = np.arange(600) * 0.15
    series = (np.sin(t) + 0.5 * np.sin(0.31 * t)).astype(np.float32)
    x, y = sliding_windows(series, 16)
    model = Forecaster(1, 16, seed=0)
    rng = np.random.default_rng(7)

    def batch(step):
        idx = rng.integers(0, len(x), 32)
        return (x[idx, :, 0],), y[idx], {}, {}

    losses = train_steps(model, batch, nn.MSELoss(), 250, lr=1e-2)
    mse = float(np.mean((model.predict(x[:, :, 0]) - y) ** 2))
    persistence = float(np.mean((x[:, -1] - y) ** 2))
    assert losses[-1] < 0.1 * losses[0]
    assert mse < 0.5 * persistence, (mse, persistence)


# ----------------------------------------------------------------------------- checkpoints of each model
@pytest.mark.parametrize("build,inputs", [
    (lambda: SequenceClassifier(3, 4, vocab_size=6, bidirectional=True, seed=1), lambda: (np.array([[1, 2, 3]]),)),
    (lambda: Seq2Seq(5, 6, hidden_size=4, seed=1), lambda: (np.array([[1, 2]]), np.array([[1, 3, 4]]))),
    (lambda: Forecaster(2, 4, num_layers=2, cell="gru", seed=1), lambda: (np.ones((2, 3, 2)),)),
], ids=["classifier", "seq2seq", "forecaster"])
def test_every_model_round_trips_through_a_checkpoint(tmp_path, build, inputs):
    model = build()
    training.save_model(tmp_path / "m.npz", model)
    rebuilt = training.load_model(tmp_path / "m.npz")
    assert type(rebuilt) is type(model)
    with fastrnn.no_grad():
        a, b = model(*inputs()), rebuilt(*inputs())
    np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------------------------- command line
def test_cli_train_charlm_saves_and_resumes(tmp_path, capsys):
    text = tmp_path / "t.txt"
    text.write_text("abcd efgh, ijkl mnop. " * 40, encoding="utf-8")
    ckpt = tmp_path / "c.npz"
    argv = ["train", "charlm", "--text", str(text), "--steps", "4", "--hidden", "8", "--embed", "4",
            "--batch", "4", "--seq-len", "10", "--eval-every", "2", "--checkpoint", str(ckpt), "--plot", "",
            "--sample-chars", "20"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "held-out bits per character" in out and "temperature 0.8" in out
    assert training.read_meta(ckpt)["meta"]["step"] == 4
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "resuming from" in out and "after 8 steps" in out
    header = training.read_meta(ckpt)
    assert header["meta"]["step"] == 8 and len(header["meta"]["history"]["loss"]) == 8


def test_cli_reports_bad_arguments(tmp_path):
    with pytest.raises(SystemExit, match="cannot read --text"):
        main(["train", "charlm", "--text", str(tmp_path / "missing.txt")])
    short = tmp_path / "short.txt"
    short.write_text("tiny", encoding="utf-8")
    with pytest.raises(SystemExit, match="too short"):
        main(["train", "charlm", "--text", str(short)])


def test_cli_demo_runs_briefly(tmp_path, capsys):
    png = tmp_path / "loss.png"
    assert main(["demo", "--steps", "2", "--hidden", "8", "--embed", "4", "--batch", "4", "--seq-len", "20",
                 "--eval-every", "0", "--sample-chars", "10", "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "pydoc_data.topics" in out and "held-out bits per character" in out
    pytest.importorskip("matplotlib")
    assert png.exists() and png.stat().st_size > 1000
