"""The benchmark grid of issue 4: which (cell, mode, shape) cases exist, and their flop counts.

Flops follow DESIGN.md section 4: one forward of one layer is 2*T*B*G*H*(D+H) with G gates
(1 RNN, 4 LSTM, 3 GRU); training (forward + backward) counts as 3x the forward. With variable
lengths, T*B becomes the number of valid (t, b) steps, sum(lengths).
"""
import fnmatch
from dataclasses import dataclass, field

import numpy as np

GATES = {"rnn": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}
CELLS = ("rnn", "lstm", "gru")  # "rnn" is the tanh RNN; "rnn_relu" appears in one DeepBench row
MODES = ("inference", "training")

# name -> (T, B, D, H)
SIZES = {
    "small": (50, 16, 32, 64),
    "medium": (100, 64, 128, 256),
    "large": (50, 64, 512, 512),
}
# DeepBench's RNN list (input size = hidden size)
DEEPBENCH_INFERENCE = {"db-b1": (25, 1, 512, 512), "db-b4": (25, 4, 512, 512)}
DEEPBENCH_TRAINING = {"db-train": (25, 32, 1024, 1024)}
DEEPBENCH_RELU_TRAINING = {"db-relu": (50, 16, 1760, 1760)}
STREAM = (1, 1, 128, 128)  # one streaming step, state passed in and out


@dataclass(frozen=True)
class Case:
    """One benchmark case. ``kind`` is 'padded' (plain batch), 'varlen' (lengths in [T/2, T]),
    'stream' (T=1, B=1 calls chained through the returned state) or 'torch_step' (a torch training
    step -- forward, MSE loss, backward, SGD step -- with fastrnn.torch's module against torch.nn's)."""

    cell: str
    mode: str
    size: str
    T: int
    B: int
    D: int
    H: int
    kind: str = "padded"
    lengths: tuple = field(default=None, compare=False)

    @property
    def name(self):
        return f"{self.cell}/{self.size}/{self.mode}"

    @property
    def shape(self):
        return (self.T, self.B, self.D, self.H)

    @property
    def gates(self):
        return GATES[self.cell]

    @property
    def steps(self):
        """Valid (t, b) steps: T*B, or sum(lengths) with variable lengths."""
        return int(sum(self.lengths)) if self.lengths is not None else self.T * self.B

    @property
    def flops(self):
        forward = 2 * self.steps * self.gates * self.H * (self.D + self.H)
        return forward * (3 if self.mode == "training" else 1)


def varlen_lengths(T, B, seed=0):
    """Lengths drawn uniformly from [T/2, T] (fixed seed: every engine and every run sees the same)."""
    rng = np.random.default_rng(seed)
    return tuple(int(v) for v in rng.integers(T // 2, T + 1, size=B))


def half_lengths(T, B):
    """Lengths spread evenly over 1..T, adding up to about half of T*B: with padded steps free, the
    row should take about half the time of the full batch (issue 3)."""
    return tuple(int(v) for v in np.rint(np.linspace(1, T, B)))


def full_grid():
    cases = []
    for cell in CELLS:
        for mode in MODES:
            for size, shape in SIZES.items():
                cases.append(Case(cell, mode, size, *shape))
        for size, shape in DEEPBENCH_INFERENCE.items():
            cases.append(Case(cell, "inference", size, *shape))
        for size, shape in DEEPBENCH_TRAINING.items():
            cases.append(Case(cell, "training", size, *shape))
        T, B, D, H = SIZES["medium"]
        for mode in MODES:
            cases.append(Case(cell, mode, "varlen", T, B, D, H, kind="varlen", lengths=varlen_lengths(T, B)))
            cases.append(Case(cell, mode, "halflen", T, B, D, H, kind="varlen", lengths=half_lengths(T, B)))
        cases.append(Case(cell, "inference", "stream", *STREAM, kind="stream"))
        cases.append(Case(cell, "training", "torch-step", *SIZES["medium"], kind="torch_step"))
    for size, shape in DEEPBENCH_RELU_TRAINING.items():
        cases.append(Case("rnn_relu", "training", size, *shape))
    return cases


def quick_grid():
    """A subset that runs within a minute: small rows, medium inference, the streaming steps and one
    variable-length row (inference: torch's packed training path alone would take seconds)."""
    full = full_grid()
    cases = [c for c in full if c.size in ("small", "stream") or (c.size == "medium" and c.mode == "inference")]
    cases += [c for c in full if c.name == "lstm/varlen/inference"]
    return cases


def select(cases, patterns):
    """Keep the cases whose name ('cell/size/mode') contains any of the glob patterns, e.g.
    'lstm', 'gru/large', 'stream', '*/db-*/training'."""
    if not patterns:
        return list(cases)
    return [c for c in cases if any(fnmatch.fnmatchcase(c.name, f"*{p}*") for p in patterns)]
