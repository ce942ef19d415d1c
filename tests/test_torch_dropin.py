"""fastrnn.torch: the drop-in torch.nn.RNN/LSTM/GRU modules.

Each fastrnn.torch module is held against the torch.nn module with the same weights: outputs, final states,
and the gradients of a random linear loss with respect to the input, the initial state and every parameter
(float32 and float64; layers, directions, batch_first, PackedSequence with unsorted lengths, hx, proj_size,
unbatched input). Plus gradcheck in float64, the fallbacks, and training under DDP (gloo, two processes)
and torch.compile.
"""
import copy
import io
import os
import pickle
import re
import subprocess
import sys
import textwrap

import pytest

torch = pytest.importorskip("torch")

import fastrnn  # noqa: E402
import fastrnn.torch as frt  # noqa: E402
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence  # noqa: E402

T, B, IN, H = 5, 4, 3, 4
LENGTHS = [5, 1, 3, 2]  # unsorted, holds 1 and T
MODES = ("rnn_tanh", "rnn_relu", "lstm", "gru")
DTYPES = {"f64": torch.float64, "f32": torch.float32}
TOL = {torch.float64: dict(rtol=1e-9, atol=1e-10), torch.float32: dict(rtol=1e-4, atol=2e-5)}


pytestmark = pytest.mark.usefixtures("torch_single_thread")


def make_pair(mode, dtype=torch.float64, seed=0, input_size=IN, hidden_size=H, **kwargs):
    """(fastrnn.torch module, torch.nn module) with the same weights."""
    extra = {"nonlinearity": mode[4:]} if mode.startswith("rnn_") else {}
    fast_cls, torch_cls = {"lstm": (frt.LSTM, torch.nn.LSTM), "gru": (frt.GRU, torch.nn.GRU)}.get(
        mode, (frt.RNN, torch.nn.RNN))
    torch.manual_seed(seed)
    fast = fast_cls(input_size, hidden_size, dtype=dtype, **extra, **kwargs)
    ref = torch_cls(input_size, hidden_size, dtype=dtype, **extra, **kwargs)
    ref.load_state_dict(fast.state_dict())
    return fast, ref


def draw_inputs(module, mode, hx, seed, batched=True):
    g = torch.Generator().manual_seed(seed)
    dt = module.weight_ih_l0.dtype
    D = 2 if module.bidirectional else 1
    P = module.proj_size or module.hidden_size
    x_shape = (B, T, IN) if module.batch_first else (T, B, IN)
    h_shape, c_shape = (module.num_layers * D, B, P), (module.num_layers * D, B, module.hidden_size)
    if not batched:
        x_shape, h_shape, c_shape = (T, IN), h_shape[::2], c_shape[::2]
    x = torch.randn(x_shape, generator=g, dtype=dt)
    if not hx:
        return x, None
    h0 = torch.randn(h_shape, generator=g, dtype=dt) * 0.5
    return x, ((h0, torch.randn(c_shape, generator=g, dtype=dt) * 0.5) if mode == "lstm" else h0)


def run(module, x, hx, lengths=None, loss_seed=1):
    """Forward + backward of a random linear function of (output, h_n[, c_n]); everything returned as a
    flat dict of tensors (outputs, input/state gradients, parameter gradients)."""
    x = x.clone().requires_grad_()
    states = None if hx is None else [s.clone().requires_grad_() for s in (hx if isinstance(hx, tuple) else (hx,))]
    hx_arg = None if states is None else (tuple(states) if isinstance(hx, tuple) else states[0])
    packed = lengths is not None
    inp = pack_padded_sequence(x, torch.tensor(lengths), batch_first=module.batch_first, enforce_sorted=False) if packed else x
    module.zero_grad()
    out, hn = module(inp, hx_arg)
    y = out.data if packed else out
    hn = hn if isinstance(hn, tuple) else (hn,)
    g = torch.Generator().manual_seed(loss_seed)
    loss = sum((t * torch.randn(t.shape, generator=g, dtype=t.dtype)).sum() for t in (y, *hn))
    loss.backward()
    result = {"y": y, **{f"hn{i}": t for i, t in enumerate(hn)}, "dx": x.grad}
    if packed:
        result.update(batch_sizes=out.batch_sizes, sorted_indices=out.sorted_indices,
                      unsorted_indices=out.unsorted_indices)
    for i, s in enumerate(states or ()):
        result[f"dhx{i}"] = s.grad
    result.update({"grad:" + k: p.grad for k, p in module.named_parameters()})
    return result


def assert_same(actual, expected, dtype, context=""):
    assert list(actual) == list(expected), context
    for key in expected:
        a, e = actual[key], expected[key]
        assert a is not None and e is not None, f"{context} {key}: missing"
        assert a.shape == e.shape and a.dtype == e.dtype, f"{context} {key}: {a.shape}/{a.dtype} vs {e.shape}/{e.dtype}"
        if a.dtype in (torch.int64, torch.int32):
            assert torch.equal(a, e), f"{context} {key}"
        else:
            torch.testing.assert_close(a.detach(), e.detach(), **TOL[dtype], msg=lambda m: f"{context} {key}: {m}")


CONFIGS = {  # id: (constructor kwargs, forward kwargs)
    "L1": (dict(), dict(hx=False)),
    "L1-hx": (dict(), dict(hx=True)),
    "L2-bidir-batch_first-hx": (dict(num_layers=2, bidirectional=True, batch_first=True), dict(hx=True)),
    "L2-bidir-packed-hx": (dict(num_layers=2, bidirectional=True), dict(hx=True, lengths=LENGTHS)),
    "L2-packed-batch_first": (dict(num_layers=2, batch_first=True), dict(hx=False, lengths=LENGTHS)),
    "L2-bidir-nobias": (dict(num_layers=2, bidirectional=True, bias=False), dict(hx=True)),
    "unbatched-hx": (dict(num_layers=2, bidirectional=True), dict(hx=True, batched=False)),
}


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("mode", MODES)
def test_matches_torch_nn(mode, dtype, config):
    ctor, fwd = CONFIGS[config]
    dt = DTYPES[dtype]
    fast, ref = make_pair(mode, dt, seed=len(config), **ctor)
    x, hx = draw_inputs(fast, mode, fwd["hx"], seed=3, batched=fwd.get("batched", True))
    expected = run(ref, x, hx, fwd.get("lengths"))
    actual = run(fast, x, hx, fwd.get("lengths"))
    assert_same(actual, expected, dt, f"{mode} {dtype} {config}")


@pytest.mark.parametrize("config", ["L1-hx", "L2-bidir-batch_first-hx", "L2-bidir-packed-hx", "unbatched-hx"])
@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")
def test_lstm_proj_size_matches_torch_nn(dtype, config):
    ctor, fwd = CONFIGS[config]
    dt = DTYPES[dtype]
    fast, ref = make_pair("lstm", dt, seed=7, proj_size=2, **ctor)
    x, hx = draw_inputs(fast, "lstm", fwd["hx"], seed=4, batched=fwd.get("batched", True))
    assert_same(run(fast, x, hx, fwd.get("lengths")), run(ref, x, hx, fwd.get("lengths")), dt, config)


def test_packed_output_is_torchs_packed_sequence():
    """Same data order, batch_sizes and index permutations as torch's PackedSequence; unpacks the same."""
    fast, ref = make_pair("gru", num_layers=2, bidirectional=True)
    x, _ = draw_inputs(fast, "gru", False, seed=5)
    packed = pack_padded_sequence(x, torch.tensor(LENGTHS), enforce_sorted=False)
    with torch.no_grad():
        out, hn = fast(packed)
        out_ref, hn_ref = ref(packed)
    for name in ("data", "batch_sizes", "sorted_indices", "unsorted_indices"):
        torch.testing.assert_close(getattr(out, name), getattr(out_ref, name), rtol=1e-12, atol=1e-12)
    padded, lengths = pad_packed_sequence(out, total_length=T)
    padded_ref, _ = pad_packed_sequence(out_ref, total_length=T)
    torch.testing.assert_close(padded, padded_ref)
    assert lengths.tolist() == LENGTHS
    torch.testing.assert_close(hn, hn_ref)
    # enforce_sorted=True (no permutation stored) and batch_first
    sorted_lengths = sorted(LENGTHS, reverse=True)
    fast.batch_first = ref.batch_first = True
    packed = pack_padded_sequence(x.transpose(0, 1), torch.tensor(sorted_lengths), batch_first=True)
    assert packed.sorted_indices is None
    with torch.no_grad():
        (out, hn), (out_ref, hn_ref) = fast(packed), ref(packed)
    assert out.sorted_indices is None and out.unsorted_indices is None
    torch.testing.assert_close(out.data, out_ref.data)
    torch.testing.assert_close(hn, hn_ref)


@pytest.mark.parametrize("mode", MODES + ("lstm-proj",))
def test_gradcheck_float64(mode):
    """torch.autograd.gradcheck through the module (every parameter, x and hx are inputs), packed input with
    unsorted lengths, two bidirectional layers; includes gradcheck's undefined-output-gradient checks."""
    extra = dict(proj_size=1) if mode == "lstm-proj" else {}
    mode = mode.split("-")[0]
    torch.manual_seed(0)
    fast, _ = make_pair(mode, torch.float64, input_size=2, hidden_size=2, num_layers=2, bidirectional=True, **extra)
    names = [n for n, _ in fast.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in fast.parameters()]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 3, 2, generator=g, dtype=torch.float64, requires_grad=True)
    P = extra.get("proj_size", 2)
    h0 = torch.randn(4, 3, P, generator=g, dtype=torch.float64, requires_grad=True)
    c0 = torch.randn(4, 3, 2, generator=g, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([2, 3, 1])

    def f(x, h0, c0, *weights):
        packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
        hx = (h0, c0) if mode == "lstm" else h0
        out, hn = torch.func.functional_call(fast, dict(zip(names, weights)), (packed, hx))
        return (out.data, *(hn if mode == "lstm" else (hn,)))

    assert torch.autograd.gradcheck(f, (x, h0, c0, *params), eps=1e-6, atol=1e-6, rtol=1e-5)


def test_gradcheck_float64_batch_first_no_hx():
    fast, _ = make_pair("lstm", torch.float64, input_size=2, hidden_size=3, batch_first=True)
    names = [n for n, _ in fast.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in fast.parameters()]
    x = torch.randn(2, 4, 2, dtype=torch.float64, requires_grad=True)

    def f(x, *weights):
        out, (h, c) = torch.func.functional_call(fast, dict(zip(names, weights)), (x,))
        return out, h, c

    assert torch.autograd.gradcheck(f, (x, *params), eps=1e-6, atol=1e-6, rtol=1e-5)


def test_is_a_torch_module_with_torch_parameters_and_init():
    torch.manual_seed(3)
    fast = frt.LSTM(IN, H, num_layers=2, bidirectional=True, proj_size=2)
    torch.manual_seed(3)
    ref = torch.nn.LSTM(IN, H, num_layers=2, bidirectional=True, proj_size=2)
    assert isinstance(fast, torch.nn.LSTM) and isinstance(frt.GRU(2, 2), torch.nn.GRU)
    assert isinstance(frt.RNN(2, 2, nonlinearity="relu"), torch.nn.RNN)
    assert all(isinstance(p, torch.nn.Parameter) for p in fast.parameters())
    sd, sd_ref = fast.state_dict(), ref.state_dict()
    assert list(sd) == list(sd_ref)
    for k in sd:  # same names, shapes and (same seed) values: torch's own initialisation
        assert torch.equal(sd[k], sd_ref[k]), k
    ref2 = torch.nn.LSTM(IN, H, num_layers=2, bidirectional=True, proj_size=2)
    ref2.load_state_dict(fast.state_dict())  # both ways
    fast.load_state_dict(ref2.state_dict())
    assert repr(fast) == repr(ref)


def test_optimizer_updates_reach_the_kernels():
    """Parameters are read on every call: in-place optimizer steps (and load_state_dict) take effect."""
    fast, ref = make_pair("gru", torch.float64, num_layers=2)
    opt_fast = torch.optim.SGD(fast.parameters(), lr=0.1, momentum=0.9)
    opt_ref = torch.optim.SGD(ref.parameters(), lr=0.1, momentum=0.9)
    x, _ = draw_inputs(fast, "gru", False, seed=9)
    for _ in range(4):
        for module, opt in ((fast, opt_fast), (ref, opt_ref)):
            opt.zero_grad()
            y, h = module(x)
            (y.square().mean() + h.sum()).backward()
            opt.step()
    for (k, p), q in zip(fast.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-9, atol=1e-10, msg=k)
    with torch.no_grad():
        fast.weight_hh_l1.mul_(0.5)
        ref.weight_hh_l1.mul_(0.5)
        torch.testing.assert_close(fast(x)[0], ref(x)[0])


def test_several_forwards_before_one_backward():
    """Each call keeps its own tape in the autograd graph (truncated BPTT, shared encoders, tied modules)."""
    results = []
    for module in make_pair("lstm", torch.float64, num_layers=2):
        x, _ = draw_inputs(module, "lstm", False, seed=11)
        x = x.clone().requires_grad_()
        module.zero_grad()
        y1, state = module(x)
        y2, state = module(y1[..., :IN].flip(0), state)  # the second call sees the first call's output
        y3, _ = module(x * 2)
        (y1.sum() + (y2 * y2).sum() + state[1].sum() + y3.mean()).backward()
        results.append([x.grad] + [p.grad for p in module.parameters()])
    for a, e in zip(*results):
        torch.testing.assert_close(a, e)


def test_only_some_outputs_used():
    """Outputs that get no gradient (None in backward) count as zeros, as in torch."""
    for use in ("y", "h", "c"):
        grads = []
        for module in make_pair("lstm", torch.float64):
            x, hx = draw_inputs(module, "lstm", True, seed=12)
            module.zero_grad()
            y, (h, c) = module(x, hx)
            {"y": y, "h": h, "c": c}[use].sum().backward()
            grads.append([p.grad for p in module.parameters()])
        for a, e in zip(*grads):
            torch.testing.assert_close(a, e, msg=use)


def test_inference_paths_keep_no_graph():
    fast, ref = make_pair("gru", torch.float32, num_layers=2, bidirectional=True)
    x, hx = draw_inputs(fast, "gru", True, seed=13)
    for context in (torch.no_grad, torch.inference_mode):
        with context():
            y, h = fast(x, hx)
            y_ref, h_ref = ref(x, hx)
        assert y.grad_fn is None and not y.requires_grad
        torch.testing.assert_close(y, y_ref, **TOL[torch.float32])
        torch.testing.assert_close(h, h_ref, **TOL[torch.float32])
    # parameters that do not require grad, input that does not: still no graph
    for p in fast.parameters():
        p.requires_grad_(False)
    assert fast(x)[0].grad_fn is None
    # an input that requires grad still gets its gradient through frozen weights
    xg = x.clone().requires_grad_()
    fast(xg)[0].sum().backward()
    xr = x.clone().requires_grad_()
    ref(xr)[0].sum().backward()
    torch.testing.assert_close(xg.grad, xr.grad, **TOL[torch.float32])


def test_fastrnn_no_grad_does_not_break_torch_autograd():
    fast, ref = make_pair("rnn_tanh", torch.float64)
    x, _ = draw_inputs(fast, "rnn_tanh", False, seed=14)
    with fastrnn.no_grad():
        fast(x)[0].sum().backward()
    ref(x)[0].sum().backward()
    torch.testing.assert_close(fast.weight_hh_l0.grad, ref.weight_hh_l0.grad)


def test_retain_graph_and_second_backward():
    grads = []
    for module in make_pair("lstm", torch.float64, num_layers=2, bidirectional=True):
        x, _ = draw_inputs(module, "lstm", False, seed=15)
        y, (h, c) = module(x)
        loss = (y * y).sum() + c.sum()
        loss.backward(retain_graph=True)
        loss.backward()  # accumulates: twice the gradient
        grads.append([p.grad for p in module.parameters()])
        with pytest.raises(RuntimeError, match="second time"):
            loss.backward()
    for a, e in zip(*grads):
        torch.testing.assert_close(a, e)


def test_dropout_in_train_mode_only_and_follows_torchs_rng():
    fast, ref = make_pair("lstm", torch.float64, num_layers=3, dropout=0.5)
    x, _ = draw_inputs(fast, "lstm", False, seed=16)
    fast.eval(), ref.eval()
    torch.testing.assert_close(fast(x)[0], ref(x)[0])  # eval: no dropout, same as torch
    fast.train()
    y1, y2 = fast(x)[0], fast(x)[0]
    assert not torch.allclose(y1, y2)  # a fresh mask per call
    torch.manual_seed(5)
    ya = fast(x)[0]
    torch.manual_seed(5)
    torch.testing.assert_close(fast(x)[0], ya, rtol=0, atol=0)  # reproducible under torch.manual_seed
    with torch.random.fork_rng():
        yb = fast(x)[0]
    torch.testing.assert_close(fast(x)[0], yb, rtol=0, atol=0)


def test_checkpoint_recomputes_the_same_dropout_masks():
    """torch.utils.checkpoint (reentrant: forward without grad, recomputed in backward) restores torch's
    RNG state, and with it fastrnn's masks: the gradient is that of the forward that ran."""
    from torch.utils.checkpoint import checkpoint

    fast, _ = make_pair("gru", torch.float64, num_layers=3, dropout=0.5)
    x, _ = draw_inputs(fast, "gru", False, seed=21)
    grads = []
    for use_checkpoint in (False, True):
        fast.zero_grad()
        xg = x.clone().requires_grad_()
        torch.manual_seed(3)
        if use_checkpoint:
            y = checkpoint(lambda inp: fast(inp)[0], xg, use_reentrant=True)
        else:
            y = fast(xg)[0]
        (y * y).sum().backward()
        grads.append([xg.grad] + [p.grad for p in fast.parameters()])
    for a, e in zip(*grads):
        torch.testing.assert_close(a, e, rtol=0, atol=0)


def test_dropout_gradient_is_that_of_the_masked_forward():
    """gradcheck in train mode with dropout: torch's generator is reseeded before every call, so each
    evaluation draws the same masks and the function is deterministic."""
    fast, _ = make_pair("gru", torch.float64, input_size=2, hidden_size=2, num_layers=3, dropout=0.4)
    names = [n for n, _ in fast.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in fast.parameters()]
    x = torch.randn(3, 2, 2, dtype=torch.float64, requires_grad=True)

    def f(x, *weights):
        torch.manual_seed(0)  # the masks' seed comes from torch's generator
        return torch.func.functional_call(fast, dict(zip(names, weights)), (x,))

    assert not torch.equal(f(x, *params)[0], fast.eval()(x)[0])  # the mask is on
    fast.train()
    assert torch.autograd.gradcheck(f, (x, *params), eps=1e-6, atol=1e-6, rtol=1e-5)


def test_falls_back_to_torch_nn_for_other_dtypes():
    """bfloat16/float16 run torch.nn's implementation with the same parameters (same results as torch.nn)."""
    for dt in (torch.bfloat16, torch.float16):
        fast, ref = make_pair("gru", torch.float32, num_layers=2)
        fast, ref = fast.to(dt), ref.to(dt)
        x, _ = draw_inputs(fast, "gru", False, seed=18)
        try:
            expected = ref(x)
        except RuntimeError:  # this torch build has no CPU kernel for this dtype: nothing to compare
            continue
        actual = fast(x)
        assert torch.equal(actual[0], expected[0]) and torch.equal(actual[1], expected[1])
    # autocast: torch's implementation decides the precision, as with torch.nn
    fast, ref = make_pair("lstm", torch.float32)
    x, _ = draw_inputs(fast, "lstm", False, seed=18)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        try:
            expected = ref(x)[0]
        except RuntimeError as refused:  # no bf16 LSTM on this CPU (oneDNN needs AVX-512 BF16): fastrnn refuses alike
            with pytest.raises(RuntimeError, match=re.escape(str(refused)[:40])):
                fast(x)
        else:
            actual = fast(x)[0]
            assert actual.dtype == expected.dtype and torch.equal(actual, expected)
    # another device (meta: shapes only): torch's implementation
    meta = frt.GRU(IN, H, num_layers=2, device="meta")
    y, h = meta(torch.empty(T, B, IN, device="meta"))
    assert y.device.type == "meta" and y.shape == (T, B, H) and h.shape == (2, B, H)


def test_errors_are_torchs():
    fast, ref = make_pair("lstm", torch.float32, num_layers=2)
    for bad in (torch.randn(T, B, IN + 1), torch.randn(T, B, IN, dtype=torch.float64), torch.randn(2, T, B, IN)):
        with pytest.raises((RuntimeError, ValueError)) as caught_ref:
            ref(bad)
        with pytest.raises(type(caught_ref.value), match=None) as caught:
            fast(bad)
        assert str(caught.value) == str(caught_ref.value)
    x = torch.randn(T, B, IN)
    bad_hx = (torch.zeros(2, B + 1, H), torch.zeros(2, B + 1, H))
    with pytest.raises(RuntimeError) as caught_ref:
        ref(x, bad_hx)
    with pytest.raises(RuntimeError) as caught:
        fast(x, bad_hx)
    assert str(caught.value) == str(caught_ref.value)


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::torch.jit.TracerWarning")
def test_jit_trace_uses_torchs_path():
    fast, ref = make_pair("gru", torch.float32)
    x, _ = draw_inputs(fast, "gru", False, seed=19)
    traced = torch.jit.trace(fast, (x,), check_trace=False)
    torch.testing.assert_close(traced(x * 2)[0], ref(x * 2)[0], **TOL[torch.float32])


def test_copy_and_pickle():
    fast, _ = make_pair("lstm", torch.float32, num_layers=2)
    x, _ = draw_inputs(fast, "lstm", False, seed=20)
    y = fast(x)[0]
    for clone in (copy.deepcopy(fast), pickle.loads(pickle.dumps(fast))):
        assert type(clone) is frt.LSTM
        torch.testing.assert_close(clone(x)[0], y)
    buffer = io.BytesIO()
    torch.save(fast, buffer)
    buffer.seek(0)
    torch.testing.assert_close(torch.load(buffer, weights_only=False)(x)[0], y)


def test_importing_fastrnn_does_not_import_torch():
    code = "import sys, fastrnn; assert 'torch' not in sys.modules, 'fastrnn imported torch'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_torch_compile_runs_the_module_eagerly(monkeypatch):
    """torch.compile graph-breaks around the recurrent module (dynamo does the same for torch.nn's) and the
    kernels run eagerly inside the compiled model; the rest of the model compiles."""
    pytest.importorskip("torch._dynamo")
    calls = []
    original = frt._Call.forward

    def counting(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(frt._Call, "forward", counting)

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = frt.LSTM(IN, H, batch_first=True)
            self.head = torch.nn.Linear(H, 1)

        def forward(self, x):
            y, (h, c) = self.rnn(x)
            return self.head(torch.tanh(y[:, -1]))

    torch.manual_seed(0)
    model = Model()
    x = torch.randn(B, T, IN)
    torch._dynamo.reset()
    compiled = torch.compile(model, backend="eager")
    out = compiled(x)  # the module's first call is a compiled one
    out.sum().backward()
    assert calls, "the compiled model did not run fastrnn's kernels"
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    expected = model(x)
    expected.sum().backward()
    torch.testing.assert_close(out, expected)
    for p, g in zip(model.parameters(), grads):
        torch.testing.assert_close(p.grad, g)
    torch._dynamo.reset()


DDP_WORKER = textwrap.dedent("""
    import os, sys, torch, torch.distributed as dist
    import fastrnn.torch as frt
    rank, world, init_file, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    torch.set_num_threads(1)
    calls = [0]
    original = frt._Call.forward
    def counting(self, *args, **kwargs):
        calls[0] += 1
        return original(self, *args, **kwargs)
    frt._Call.forward = counting
    dist.init_process_group("gloo", init_method="file://" + init_file, rank=rank, world_size=world)

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = frt.GRU(3, 8, num_layers=2, batch_first=True)
            self.head = torch.nn.Linear(8, 1)
        def forward(self, x):
            y, h = self.rnn(x)
            return self.head(y[:, -1])

    torch.manual_seed(rank)  # a different start on each rank: DDP must broadcast rank 0's parameters
    model = torch.nn.parallel.DistributedDataParallel(Model())
    opt = torch.optim.Adam(model.parameters(), lr=0.03)
    g = torch.Generator().manual_seed(100 + rank)  # each rank its own shard of the data
    x = torch.randn(16, 6, 3, generator=g)
    target = 0.2 * x.sum(dim=(1, 2)).unsqueeze(1)
    losses = []
    for step in range(15):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    torch.save({"losses": losses, "calls": calls[0],
                "params": {k: v.detach().clone() for k, v in model.module.state_dict().items()}}, out)
    dist.barrier()
    dist.destroy_process_group()
    # Leave without interpreter finalization. torch's backward stashes a Python object (a contextvars
    # context) in the thread-local state that each gloo allreduce work captures; when a gloo worker
    # thread frees its last work after finalization has begun, taking the GIL exits that thread through a
    # noexcept destructor and the process aborts ("terminate called without an active exception"; core
    # dump: ProcessGroupGloo::runLoop -> ~AsyncWork -> ~ThreadLocalState -> SafePyObject decref). A torch
    # teardown race (4 aborts in about 120 runs of this worker here), not what this test checks.
    sys.stdout.flush()
    os._exit(0)
""")


def test_trains_under_distributed_data_parallel_gloo(tmp_path):
    pytest.importorskip("torch.distributed")
    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    script = tmp_path / "ddp_worker.py"
    script.write_text(DDP_WORKER)
    init_file = tmp_path / "ddp_init"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    procs = [subprocess.Popen([sys.executable, str(script), str(rank), "2", str(init_file), str(tmp_path / f"r{rank}.pt")],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for rank in range(2)]
    outputs = []
    try:
        for proc in procs:
            # generous: two torch imports on a busy 2-core machine
            outputs.append(proc.communicate(timeout=300)[0].decode(errors="replace"))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    for rank, proc in enumerate(procs):
        assert proc.returncode == 0, f"rank {rank} failed:\n{outputs[rank]}"
    results = [torch.load(tmp_path / f"r{rank}.pt") for rank in range(2)]
    assert all(r["calls"] > 0 for r in results)
    for key, value in results[0]["params"].items():
        assert torch.equal(value, results[1]["params"][key]), f"ranks disagree on {key}"
    for r in results:
        assert r["losses"][-1] < 0.7 * r["losses"][0], r["losses"]
