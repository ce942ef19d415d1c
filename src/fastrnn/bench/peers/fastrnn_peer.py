"""fastrnn and its NumPy reference: the same API, so one adapter serves both."""
import numpy as np

import fastrnn
from fastrnn import reference

from ..machine import set_numpy_blas_threads
from ..workload import make_layer
from . import Peer


class FastrnnPeer(Peer):
    name, label = "fastrnn", "fastrnn"
    namespace = fastrnn

    def __init__(self, case, work):
        super().__init__(case, work)
        self.layer = make_layer(self.namespace, case)
        self.layer.load_state_dict(work.weights)
        self.hx = self._initial_state()
        self.run = {"inference": self._infer, "training": self._train}[case.mode]
        if case.kind == "stream":
            self.run = self._step

    def _initial_state(self):
        w = self.work
        return (w.h0, w.c0) if self.case.cell == "lstm" else w.h0

    def set_threads(self, n):
        fastrnn.set_num_threads(n)

    # hx is passed as zeros rather than None: torch gets the same, and both engines do the same work
    def _infer(self):
        with fastrnn.no_grad():
            return self.layer(self.work.x, self.hx, self.work.lengths)

    def _train(self):
        y, hn = self.layer(self.work.x, self.hx, self.work.lengths)
        return y, hn, self.layer.backward(self.work.dy)

    def _step(self):  # inside timing_context's no_grad
        _, self.hx = self.layer(self.work.x, self.hx)

    def timing_context(self):
        return fastrnn.no_grad() if self.case.kind == "stream" else super().timing_context()

    def outputs(self):
        self.hx = self._initial_state()
        if self.case.kind == "stream":
            with fastrnn.no_grad():
                y, hn = self.layer(self.work.x, self.hx)
            return _state_outputs(y, hn)
        if self.case.mode == "inference":
            return _state_outputs(*self._infer())
        self.layer.zero_grad()
        y, hn, (dx, _) = self._train()
        out = _state_outputs(y, hn)
        out["dx"] = dx
        out.update({f"grad.{k}": v.copy() for k, v in self.layer.grads.items()})
        return out


class FrozenPeer(FastrnnPeer):
    """fastrnn.freeze(layer): the inference snapshot, weights packed once (as an ONNX Runtime session's)."""
    name, label = "fastrnn_frozen", "fastrnn.freeze"

    def __init__(self, case, work):
        super().__init__(case, work)
        self.layer = fastrnn.freeze(self.layer)


class ReferencePeer(FastrnnPeer):
    name, label = "reference", "NumPy ref"
    namespace = reference

    def set_threads(self, n):
        set_numpy_blas_threads(n)  # the reference's time is NumPy's BLAS, which has its own thread pool


def _state_outputs(y, hn):
    if isinstance(hn, tuple):
        return {"y": np.asarray(y), "hn": hn[0], "cn": hn[1]}
    return {"y": np.asarray(y), "hn": hn}
