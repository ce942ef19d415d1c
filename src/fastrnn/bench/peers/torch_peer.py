"""torch.nn with the same weights: RNN/LSTM/GRU modules (PackedSequence for variable lengths) and,
for streaming steps, RNNCell/LSTMCell/GRUCell as a second column."""
import torch

from . import Peer, Unavailable

_MODULES = {"rnn": torch.nn.RNN, "rnn_relu": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}
_CELLS = {"rnn": torch.nn.RNNCell, "rnn_relu": torch.nn.RNNCell, "lstm": torch.nn.LSTMCell, "gru": torch.nn.GRUCell}


def make_module(case, weights, classes=_MODULES, key_suffix="_l0"):
    """A float32 torch module (or cell) of the case's cell, loaded with the shared weights (torch's
    module keys end in _l0, its cells' keys have no suffix)."""
    kwargs = {"nonlinearity": "relu" if case.cell == "rnn_relu" else "tanh"} if case.cell.startswith("rnn") else {}
    module = classes[case.cell](case.D, case.H, **kwargs)
    state = {k + key_suffix: torch.from_numpy(weights[k + "_l0"].copy()) for k in
             ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
    module.load_state_dict(state)
    return module


class TorchPeer(Peer):
    name, label = "torch", "torch"

    def __init__(self, case, work):
        super().__init__(case, work)
        self.module = make_module(case, work.weights)
        self.x = torch.from_numpy(work.x)
        self.dy = torch.from_numpy(work.dy)
        self.lengths = None if work.lengths is None else torch.from_numpy(work.lengths)
        self.hx = self._initial_state()
        if case.mode == "training":
            self.x.requires_grad_(True)
            self.run = self._train
        elif case.kind == "stream":
            self.run = self._step
        else:
            self.run = self._infer

    def _initial_state(self):
        h0 = torch.from_numpy(self.work.h0)
        return (h0, torch.from_numpy(self.work.c0)) if self.case.cell == "lstm" else h0

    def set_threads(self, n):
        torch.set_num_threads(n)

    def _forward(self):
        if self.lengths is None:
            return self.module(self.x, self.hx)
        # what a torch user does with a right-padded batch: pack, run, pad back
        packed = torch.nn.utils.rnn.pack_padded_sequence(self.x, self.lengths, enforce_sorted=False)
        out, hn = self.module(packed, self.hx)
        y, _ = torch.nn.utils.rnn.pad_packed_sequence(out, total_length=self.case.T)
        return y, hn

    def _infer(self):
        with torch.inference_mode():
            return self._forward()

    def _train(self):
        self.x.grad = None  # fastrnn returns a fresh dx too (parameter gradients accumulate in both)
        y, hn = self._forward()
        y.backward(self.dy)
        return y, hn

    def _step(self):  # inside timing_context's inference_mode
        _, self.hx = self.module(self.x, self.hx)

    def timing_context(self):
        return torch.inference_mode() if self.case.kind == "stream" else super().timing_context()

    def outputs(self):
        self.hx = self._initial_state()
        if self.case.mode == "inference":
            return _numpy_outputs(*self._infer())
        self.module.zero_grad()
        out = _numpy_outputs(*self._train())
        out["dx"] = self.x.grad.numpy().copy()
        out.update({f"grad.{k}": p.grad.numpy().copy() for k, p in self.module.named_parameters()})
        return out


class TorchCellPeer(Peer):
    """torch's cells, the usual way to run one step at a time in torch (no weight reordering per call)."""

    name, label = "torch_cell", "torch cell"

    def __init__(self, case, work):
        super().__init__(case, work)
        if case.kind != "stream":
            raise Unavailable("cells are benchmarked on streaming steps only")
        self.cell = make_module(case, work.weights, _CELLS, key_suffix="")
        self.x = torch.from_numpy(work.x[0])  # (B, D)
        self.hx = self._initial_state()

    def _initial_state(self):
        h0 = torch.from_numpy(self.work.h0[0])
        return (h0, torch.from_numpy(self.work.c0[0])) if self.case.cell == "lstm" else h0

    def set_threads(self, n):
        torch.set_num_threads(n)

    def run(self):  # inside timing_context's inference_mode
        self.hx = self.cell(self.x, self.hx)

    def timing_context(self):
        return torch.inference_mode()

    def outputs(self):
        with torch.inference_mode():
            hx = self.cell(self.x, self._initial_state())
        h = hx[0] if isinstance(hx, tuple) else hx
        out = {"y": h.numpy()[None], "hn": h.numpy()[None]}
        if isinstance(hx, tuple):
            out["cn"] = hx[1].numpy()[None]
        return out


def _numpy_outputs(y, hn):
    if isinstance(hn, tuple):
        return {"y": y.detach().numpy(), "hn": hn[0].detach().numpy(), "cn": hn[1].detach().numpy()}
    return {"y": y.detach().numpy(), "hn": hn.detach().numpy()}
