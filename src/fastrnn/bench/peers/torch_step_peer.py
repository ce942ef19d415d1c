"""A whole torch training step -- forward, loss, backward, optimizer step -- with the recurrent layer
being either fastrnn's drop-in module (``fastrnn.torch``, the "fastrnn" column) or ``torch.nn``'s
(the "torch" column). Same weights, same input, same loss, same optimizer: the row shows what a torch
user gains by changing one import.

The loss is the mean squared error of y against a fixed random target and the optimizer is plain
SGD, so the step costs what the recurrent layer costs plus a few elementwise passes over y.
"""
import numpy as np
import torch

from . import Peer
from .torch_peer import _MODULES, _numpy_outputs


def _make_module(case, weights, drop_in):
    if drop_in:
        import fastrnn.torch as frt

        classes = {"rnn": frt.RNN, "rnn_relu": frt.RNN, "lstm": frt.LSTM, "gru": frt.GRU}
    else:
        classes = _MODULES
    kwargs = {"nonlinearity": "relu" if case.cell == "rnn_relu" else "tanh"} if case.cell.startswith("rnn") else {}
    module = classes[case.cell](case.D, case.H, **kwargs)
    module.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in weights.items()})
    return module


class TorchStepPeer(Peer):
    name, label = "torch", "torch"
    drop_in = False

    def __init__(self, case, work):
        super().__init__(case, work)
        self.module = _make_module(case, work.weights, self.drop_in)
        self.optimizer = torch.optim.SGD(self.module.parameters(), lr=1e-3)
        self.x = torch.from_numpy(work.x)
        target = np.random.default_rng(1).uniform(-1, 1, size=work.dy.shape).astype(np.float32)
        self.target = torch.from_numpy(target)

    def set_threads(self, n):
        torch.set_num_threads(n)
        if self.drop_in:
            import fastrnn

            fastrnn.set_num_threads(n)

    def _step(self):
        self.optimizer.zero_grad()
        y, hn = self.module(self.x)
        loss = torch.nn.functional.mse_loss(y, self.target)
        loss.backward()
        return y, hn

    def run(self):
        self._step()
        self.optimizer.step()

    def outputs(self):
        """y, h_n and the parameter gradients of one step from the shared initial weights."""
        self.module.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in self.work.weights.items()})
        out = _numpy_outputs(*self._step())
        out.update({f"grad.{k}": p.grad.numpy().copy() for k, p in self.module.named_parameters()})
        return out


class DropinStepPeer(TorchStepPeer):
    name, label = "fastrnn", "fastrnn.torch"
    drop_in = True
