"""The variants against torch autograd on an independent torch implementation of the same equations
(fastrnn.bench.variants.TorchLoop: F.layer_norm, torch's own sigmoid/tanh, autograd for the backward),
with the masks fastrnn drew: y, h_n, dx and every parameter gradient."""
import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import fastrnn  # noqa: E402
from fastrnn.bench import variants  # noqa: E402

CASES = [("lstm", dict(layer_norm=True)), ("lstm", dict(peephole=True)), ("lstm", dict(recurrent_dropout=0.4)),
         ("lstm", dict(zoneout=0.3)), ("lstm", dict(layer_norm=True, peephole=True, recurrent_dropout=0.3, zoneout=0.2)),
         ("gru", dict(layer_norm=True)), ("gru", dict(reset_after=False)), ("gru", dict(recurrent_dropout=0.4)),
         ("gru", dict(zoneout=0.3)), ("gru", dict(reset_after=False, recurrent_dropout=0.3, zoneout=0.2)),
         ("gru", dict(layer_norm=True, recurrent_dropout=0.3, zoneout=0.2))]


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("cell,options", CASES, ids=[f"{c}-{'-'.join(o)}" for c, o in CASES])
def test_matches_torch_autograd(cell, options, train):
    T, B, D, H = 6, 3, 5, 7
    cls = fastrnn.LSTM if cell == "lstm" else fastrnn.GRU
    layer = cls(D, H, dtype=np.float64, seed=4, **options).train(train)
    rng = np.random.default_rng(0)
    for key in layer.params:
        layer.params[key] = layer.params[key] + rng.normal(size=layer.params[key].shape) * 0.2
    x = rng.normal(size=(T, B, D))
    dy = rng.normal(size=(T, B, H))

    state = copy.deepcopy(layer._variant_rng.bit_generator.state)
    call = layer._variant_call(0, 0, T, B)  # the masks the next forward will draw
    layer._variant_rng.bit_generator.state = state
    y, _ = layer(x)
    dx, _ = layer.backward(dy)

    loop = variants.TorchLoop(cell, options, layer.state_dict(), dtype=torch.float64, fused_cell=False)
    masks = tuple(None if m is None else torch.from_numpy(m) for m in (call["rd_mask"], call["zh"], call["zc"]))
    x_t = torch.from_numpy(x).requires_grad_(True)
    y_t = loop(x_t, masks=masks if train else None, train=train)
    (y_t * torch.from_numpy(dy)).sum().backward()

    np.testing.assert_allclose(y, y_t.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dx, x_t.grad.numpy(), rtol=1e-9, atol=1e-11)
    for key, grad in layer.grads.items():
        np.testing.assert_allclose(grad, loop.p[key[:-3]].grad.numpy(), rtol=1e-9, atol=1e-11, err_msg=key)


def test_bench_variant_rows_are_listed(capsys):
    from fastrnn.__main__ import main

    assert main(["bench", "--rows", "variants", "--list"]) == 0
    out = capsys.readouterr().out.split()
    assert "variants/lstm/layer_norm" in out and "variants/gru/reset_after=False" in out
