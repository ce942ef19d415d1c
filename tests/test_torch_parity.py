"""fastrnn (compiled, and the NumPy reference) against torch.nn.RNN/LSTM/GRU with weights copied through
state_dict: outputs, final states, dx, dhx and every parameter gradient.

Variable lengths on the torch side go through pack_padded_sequence(enforce_sorted=False) and
pad_packed_sequence(total_length=T), which is the documented meaning of ``lengths``.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import fastrnn  # noqa: E402
from fastrnn import reference  # noqa: E402

from _helpers import MODES, assert_all_close, flatten_state, make_layer  # noqa: E402

T, B, IN, H = 5, 4, 3, 4
LENGTHS = np.array([5, 1, 3, 2])  # unsorted, holds 1 and T

ENGINES = {  # id: (namespace, dtype)
    "compiled-f64": (fastrnn, np.float64),
    "compiled-f32": (fastrnn, np.float32),
    "reference-f64": (reference, np.float64),
}
TOL = {np.float64: dict(rtol=1e-9, atol=1e-10), np.float32: dict(rtol=1e-4, atol=1e-5)}


pytestmark = pytest.mark.usefixtures("torch_single_thread")


def torch_module(mode, num_layers, bidirectional, batch_first, bias, dtype, seed, proj_size=0):
    torch.manual_seed(seed)
    kwargs = dict(num_layers=num_layers, bias=bias, batch_first=batch_first, bidirectional=bidirectional)
    if proj_size:
        kwargs["proj_size"] = proj_size
    if mode.startswith("rnn_"):
        module = torch.nn.RNN(IN, H, nonlinearity=mode[4:], **kwargs)
    else:
        module = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[mode](IN, H, **kwargs)
    return module.to(torch.float64 if dtype == np.float64 else torch.float32)


def run_torch(module, mode, x, hx, lengths, w, v, u, batch_first):
    """Forward + backward of sum(y*w) + sum(hn*v) (+ sum(cn*u)); everything as NumPy, keyed like
    _helpers.forward_backward."""
    xt = torch.tensor(x, requires_grad=True)
    states = [torch.tensor(s, requires_grad=True) for s in (hx if mode == "lstm" else (hx,))]
    torch_hx = tuple(states) if mode == "lstm" else states[0]
    if lengths is not None:
        packed = torch.nn.utils.rnn.pack_padded_sequence(xt, torch.as_tensor(lengths, dtype=torch.int64),
                                                         batch_first=batch_first, enforce_sorted=False)
        out, hn = module(packed, torch_hx)
        y, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=batch_first, total_length=x.shape[1 if batch_first else 0])
    else:
        y, hn = module(xt, torch_hx)
    if mode == "lstm":
        loss = (y * torch.tensor(w)).sum() + (hn[0] * torch.tensor(v)).sum() + (hn[1] * torch.tensor(u)).sum()
    else:
        loss = (y * torch.tensor(w)).sum() + (hn * torch.tensor(v)).sum()
    module.zero_grad()
    loss.backward()
    out = {"y": y.detach().numpy()}
    if mode == "lstm":
        out.update(hn_h=hn[0].detach().numpy(), hn_c=hn[1].detach().numpy(),
                   dhx_h=states[0].grad.numpy(), dhx_c=states[1].grad.numpy())
    else:
        out.update(hn_h=hn.detach().numpy(), dhx_h=states[0].grad.numpy())
    out["dx"] = xt.grad.numpy()
    for name, p in module.named_parameters():
        out["grad:" + name] = p.grad.numpy().copy()
    return out


def run_fastrnn(layer, x, hx, lengths, w, v, u, pass_hx=True):
    layer.zero_grad()
    y, hn = layer.forward(x, hx if pass_hx else None, lengths)
    out = {"y": y}
    out.update(flatten_state(layer, "hn", hn))
    dx, dhx = layer.backward(w, (v, u) if u is not None else v)
    out["dx"] = dx
    out.update(flatten_state(layer, "dhx", dhx))
    out.update({"grad:" + k: g.copy() for k, g in layer.grads.items()})
    return out


def compare(engine, mode, num_layers, bidirectional, use_lengths, batch_first, bias=True, hx_zero=False,
            seed=0, proj_size=0):
    ns, dtype = ENGINES[engine]
    module = torch_module(mode, num_layers, bidirectional, batch_first, bias, dtype, seed, proj_size)
    extra = {"proj_size": proj_size} if proj_size else {}
    layer = make_layer(ns, mode, IN, H, num_layers=num_layers, bidirectional=bidirectional,
                       batch_first=batch_first, bias=bias, dtype=dtype, seed=seed + 1000, **extra)
    torch_state = {k: v.detach().numpy() for k, v in module.state_dict().items()}
    assert list(torch_state) == list(layer.state_dict())
    layer.load_state_dict(torch_state)

    rng = np.random.default_rng(seed)
    D = 2 if bidirectional else 1
    x = rng.standard_normal((B, T, IN) if batch_first else (T, B, IN)).astype(dtype)
    P = proj_size or H
    shapes = [(num_layers * D, B, P), (num_layers * D, B, H)][:2 if mode == "lstm" else 1]  # h, c
    if hx_zero:
        hx = tuple(np.zeros(shape, dtype) for shape in shapes)
    else:
        hx = tuple((rng.standard_normal(shape) * 0.5).astype(dtype) for shape in shapes)
    hx = hx if mode == "lstm" else hx[0]
    lengths = LENGTHS if use_lengths else None
    w = rng.standard_normal((B, T, D * P) if batch_first else (T, B, D * P)).astype(dtype)
    v = rng.standard_normal(shapes[0]).astype(dtype)
    u = rng.standard_normal(shapes[1]).astype(dtype) if mode == "lstm" else None

    expected = run_torch(module, mode, x, hx, lengths, w, v, u, batch_first)
    actual = run_fastrnn(layer, x, hx, lengths, w, v, u, pass_hx=not hx_zero)
    if use_lengths:  # torch's padded outputs are zero; so must ours be
        steps = np.arange(T)[None, :] if batch_first else np.arange(T)[:, None]
        lens = lengths[:, None] if batch_first else lengths[None, :]
        assert np.all(actual["y"][steps >= lens] == 0)
    assert_all_close(actual, expected, context=f"{engine} {mode}", **TOL[dtype])


@pytest.mark.parametrize("batch_first", [False, True], ids=["time_major", "batch_first"])
@pytest.mark.parametrize("use_lengths", [False, True], ids=["padded", "lengths"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bidir"])
@pytest.mark.parametrize("num_layers", [1, 3], ids=["L1", "L3"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("engine", list(ENGINES))
def test_matches_torch(engine, mode, num_layers, bidirectional, use_lengths, batch_first):
    compare(engine, mode, num_layers, bidirectional, use_lengths, batch_first,
            seed=num_layers * 8 + bidirectional * 4 + use_lengths * 2 + batch_first)


@pytest.mark.parametrize("batch_first", [False, True], ids=["time_major", "batch_first"])
@pytest.mark.parametrize("use_lengths", [False, True], ids=["padded", "lengths"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bidir"])
@pytest.mark.parametrize("num_layers", [1, 3], ids=["L1", "L3"])
@pytest.mark.parametrize("engine", list(ENGINES))
@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")
def test_lstm_proj_size_matches_torch(engine, num_layers, bidirectional, use_lengths, batch_first):
    compare(engine, "lstm", num_layers, bidirectional, use_lengths, batch_first, proj_size=2,
            seed=50 + num_layers * 8 + bidirectional * 4 + use_lengths * 2 + batch_first)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("engine", list(ENGINES))
def test_matches_torch_without_bias(engine, mode):
    compare(engine, mode, 2, True, True, False, bias=False, seed=77)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("engine", list(ENGINES))
def test_hx_none_is_zero_state(engine, mode):
    """hx=None on our side == explicit zeros on torch's, dhx included (the gradient w.r.t. that zero state)."""
    compare(engine, mode, 2, True, True, True, hx_zero=True, seed=78)


@pytest.mark.parametrize("mode", MODES)
def test_torch_loads_our_weights(mode):
    """Weights go both ways: a torch module loading our state_dict computes our outputs."""
    layer = make_layer(fastrnn, mode, IN, H, num_layers=2, bidirectional=True, dtype=np.float64, seed=5)
    module = torch_module(mode, 2, True, False, True, np.float64, 0)
    module.load_state_dict({k: torch.tensor(v) for k, v in layer.state_dict().items()})
    x = np.random.default_rng(1).standard_normal((T, B, IN))
    y, _ = layer.forward(x)
    with torch.no_grad():
        y_torch, _ = module(torch.tensor(x))
    np.testing.assert_allclose(y, y_torch.numpy(), **TOL[np.float64])


@pytest.mark.parametrize("mode", MODES)
def test_default_init_distribution_like_torch(mode):
    """Initialisation is uniform(-1/sqrt(H), 1/sqrt(H)) like torch: same bound, and the values fill it."""
    Hbig = 25
    layer = make_layer(fastrnn, mode, 6, Hbig, num_layers=2, bidirectional=True, seed=0)
    bound = 1 / np.sqrt(Hbig)
    all_values = np.concatenate([p.ravel() for p in layer.params.values()])
    assert np.all(np.abs(all_values) <= bound + 1e-7)
    assert all_values.max() > 0.9 * bound and all_values.min() < -0.9 * bound
    assert abs(all_values.mean()) < 0.1 * bound
