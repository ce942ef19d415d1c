"""ONNX Runtime on the torch module exported to ONNX (inference rows only: ORT runs no backward).

The legacy TorchScript exporter (dynamo=False) is tried first: it emits ONNX's own RNN/LSTM/GRU
operators, which ORT runs with its fused kernels (the strongest version of this peer); the dynamo
exporter is the fallback.

Timed calls go through an IOBinding: inputs bound once as OrtValues, outputs written into buffers
allocated once, a streaming step's state passed back by swapping two bindings. That is ORT's fastest
way to be called from Python: a streaming step takes 6.1 / 12.9 / 10.7 us (RNN / LSTM / GRU, D = H = 128,
1 thread) against 10.3 / 19.0 / 15.6 us through ``session.run`` with NumPy feeds.
"""
import io
import warnings

import numpy as np
import onnxruntime
import torch

from . import Peer, Unavailable
from .torch_peer import make_module


class _StateInOut(torch.nn.Module):
    """The layer with its state as plain inputs and outputs (ONNX has no tuples)."""

    def __init__(self, module, lstm):
        super().__init__()
        self.module, self.lstm = module, lstm

    def forward(self, x, h0, c0=None):
        if self.lstm:
            y, (hn, cn) = self.module(x, (h0, c0))
            return y, hn, cn
        return self.module(x, h0)


def export(case, work):
    """The case's model as ONNX bytes (inputs x, h0[, c0]; outputs y, hn[, cn])."""
    lstm = case.cell == "lstm"
    model = _StateInOut(make_module(case, work.weights), lstm).eval()
    args = (torch.from_numpy(work.x), torch.from_numpy(work.h0))
    names_in, names_out = ["x", "h0"], ["y", "hn"]
    if lstm:
        args += (torch.from_numpy(work.c0),)
        names_in.append("c0")
        names_out.append("cn")
    errors = []
    for dynamo in (False, True):
        buf = io.BytesIO()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the exporters' deprecation and batch-size notes
                torch.onnx.export(model, args, buf, dynamo=dynamo, input_names=names_in,
                                  output_names=names_out)
            return buf.getvalue()
        except Exception as exc:  # noqa: BLE001 - any exporter failure leaves the other to try
            errors.append(f"{'dynamo' if dynamo else 'legacy'}: {type(exc).__name__}: {exc}"[:200])
    raise Unavailable("export failed (" + "; ".join(errors) + ")")


class OrtPeer(Peer):
    name, label = "onnxruntime", "ONNX RT"

    def __init__(self, case, work):
        super().__init__(case, work)
        if case.mode != "inference":
            raise Unavailable("ONNX Runtime runs inference only")
        if case.lengths is not None:
            raise Unavailable("variable lengths are not exported")
        self.model = export(case, work)
        self.sessions = {}
        self.session = None
        self.lstm = case.cell == "lstm"
        self.bindings, self._turn = [], 0
        self._reset_state()

    def _reset_state(self):
        self.feeds = {"x": self.work.x, "h0": self.work.h0}
        if self.lstm:
            self.feeds["c0"] = self.work.c0

    def set_threads(self, n):
        if n not in self.sessions:
            opts = onnxruntime.SessionOptions()
            opts.intra_op_num_threads = n
            opts.inter_op_num_threads = 1
            self.sessions[n] = onnxruntime.InferenceSession(self.model, opts, providers=["CPUExecutionProvider"])
        self.session = self.sessions[n]
        self._bind()

    def _bind(self):
        """The session's IOBindings. A streaming step has two, which swap the state buffers (binding i
        reads state i and writes state 1 - i, so each call's state feeds the next); other rows have one,
        writing into output buffers of its own."""
        self._reset_state()
        first = self.session.run(None, self.feeds)  # y, hn (, cn): their shapes and dtypes
        names_in = ["h0", "c0"] if self.lstm else ["h0"]
        stream = self.case.kind == "stream"
        states = [[self.feeds[name].copy() for name in names_in] for _ in range(2 if stream else 1)]
        outputs = [np.empty_like(out) for out in first]
        value = onnxruntime.OrtValue.ortvalue_from_numpy  # wraps the array without a copy
        self._buffers = (states, outputs)  # the OrtValues do not keep their arrays alive
        self.bindings = []
        for i in range(len(states)):
            binding = self.session.io_binding()
            binding.bind_ortvalue_input("x", value(self.work.x))
            binding.bind_ortvalue_output("y", value(outputs[0]))
            for k, name in enumerate(names_in):
                binding.bind_ortvalue_input(name, value(states[i][k]))
                binding.bind_ortvalue_output(("hn", "cn")[k], value(states[1 - i][k] if stream else outputs[1 + k]))
            self.bindings.append(binding)
        self._turn = 0

    def run(self):
        binding = self.bindings[self._turn]
        self.session.run_with_iobinding(binding)
        self._turn = (self._turn + 1) % len(self.bindings)
        return binding

    def outputs(self):
        self._reset_state()
        out = self.session.run(None, self.feeds)
        result = {"y": out[0], "hn": out[1]}
        if self.lstm:
            result["cn"] = out[2]
        return result
