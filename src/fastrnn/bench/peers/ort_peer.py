"""ONNX Runtime on the torch module exported to ONNX (inference rows only: ORT runs no backward).

The legacy TorchScript exporter (dynamo=False) is tried first: it emits ONNX's own RNN/LSTM/GRU
operators, which ORT runs with its fused kernels (the strongest version of this peer); the dynamo
exporter is the fallback.
"""
import io
import warnings

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

    def run(self):
        out = self.session.run(None, self.feeds)
        if self.case.kind == "stream":  # the state comes back in
            self.feeds["h0"] = out[1]
            if self.lstm:
                self.feeds["c0"] = out[2]
        return out

    def outputs(self):
        self._reset_state()
        out = self.session.run(None, self.feeds)
        result = {"y": out[0], "hn": out[1]}
        if self.lstm:
            result["cn"] = out[2]
        return result
