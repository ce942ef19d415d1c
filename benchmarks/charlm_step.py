"""Steps per second of issue 5's CharLM training step, fastrnn against the same model in torch,
measured side by side in one process (alternating steps).

The step: embedding 64 -> one LSTM layer of 256 -> linear over a 103-character vocabulary, batch 32 x
100 characters, cross-entropy, backward, global gradient clipping at 1.0, Adam at 2e-3 -- in fastrnn
(fastrnn.models.CharLM, fastrnn.nn.CrossEntropyLoss, fastrnn.optim) and in torch (nn.Embedding,
nn.LSTM, nn.Linear, F.cross_entropy, clip_grad_norm_, optim.Adam), with the same weights.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/charlm_step.py --threads 1,2
"""
import argparse
import time

import numpy as np

import fastrnn
from fastrnn.bench.timing import settle_for
from fastrnn.models import CharLM
from fastrnn.nn import CrossEntropyLoss
from fastrnn.optim import Adam, clip_grad_norm
from fastrnn.training import limit_numpy_blas_threads

VOCAB = "".join(chr(32 + i) for i in range(103))
B, T = 32, 100


def fastrnn_step(model, loss, optimizer):
    def step(tokens, targets):
        model.zero_grad()
        logits, _ = model.forward(tokens)
        value = loss.forward(logits, targets)
        model.backward(loss.backward())
        clip_grad_norm(model, 1.0)
        optimizer.step()
        return value
    return step


def torch_step(model_fr):
    import torch

    class TorchCharLM(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = torch.nn.Embedding(len(VOCAB), 64)
            self.rnn = torch.nn.LSTM(64, 256, batch_first=True)
            self.head = torch.nn.Linear(256, len(VOCAB))

        def forward(self, tokens):
            y, _ = self.rnn(self.embedding(tokens))
            return self.head(y)

    model = TorchCharLM()
    state = {"embedding.weight": model_fr.embedding.params["weight"], "head.weight": model_fr.head.params["weight"],
             "head.bias": model_fr.head.params["bias"]}
    state.update({f"rnn.{k}": v for k, v in model_fr.rnn.state_dict().items()})
    model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()})
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)

    def step(tokens, targets):
        optimizer.zero_grad()
        logits = model(torch.from_numpy(tokens))
        value = torch.nn.functional.cross_entropy(logits.reshape(-1, len(VOCAB)), torch.from_numpy(targets).reshape(-1))
        value.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        return value.item()
    return step, torch


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per engine and thread count")
    args = parser.parse_args()
    limit_numpy_blas_threads(1)
    rng = np.random.default_rng(0)
    batches = [rng.integers(0, len(VOCAB), size=(B, T + 1)) for _ in range(8)]
    model = CharLM(VOCAB, 64, 256, seed=0)
    engines = {"fastrnn": fastrnn_step(model, CrossEntropyLoss(), Adam(model, lr=2e-3))}
    try:
        engines["torch"], torch = torch_step(model)
    except ImportError:
        torch = None
        print("torch is not installed: fastrnn only")
    first = {name: step(batches[0][:, :-1], batches[0][:, 1:]) for name, step in engines.items()}
    print("first-step loss (same weights, same batch): " + ", ".join(f"{k} {v:.5f}" for k, v in first.items()))
    for threads in [int(t) for t in args.threads.split(",")]:
        fastrnn.set_num_threads(threads)
        if torch is not None:
            torch.set_num_threads(threads)
        times = {name: [] for name in engines}
        for i in range(args.steps + 3):
            batch = batches[i % len(batches)]
            for name, step in engines.items():
                t0 = time.perf_counter()
                step(batch[:, :-1], batch[:, 1:])
                if i >= 3:  # warm-up steps are not counted
                    times[name].append(time.perf_counter() - t0)
                time.sleep(settle_for(threads))  # the other engine's idle threads stop spinning
        rates = {name: 1 / np.median(t) for name, t in times.items()}
        line = ", ".join(f"{name} {rate:.1f} steps/s ({1e3 / rate:.1f} ms; fastest step {1e3 * min(times[name]):.1f} ms)"
                         for name, rate in rates.items())
        ratio = f"; fastrnn / torch = {rates['fastrnn'] / rates['torch']:.2f}" if "torch" in rates else ""
        print(f"{threads} thread(s): {line}{ratio}")


if __name__ == "__main__":
    main()
