"""The adding problem (Hochreiter & Schmidhuber, 1997): the vanishing gradient, measured.

Each input is T steps of (value, marker): values uniform in [0, 1], exactly two markers set, one in
each half of the sequence. The target is the sum of the two marked values. Predicting the mean (1.0)
gives MSE 1/6 = 0.167; getting below that means carrying a value across up to T steps. LSTM and GRU
learn it at T=100; a tanh RNN's gradient vanishes over that distance and it stays near 0.167.

    python examples/adding_problem.py                      # LSTM, GRU and tanh RNN, 5,000 steps each
    python examples/adding_problem.py --cell gru --steps 2000

Settings (the issue's): T=100, batch 64, 128 units, Adam 1e-3, global gradient clip 1.0;
test MSE on 2,000 fixed held-out sequences.
"""
import argparse
import time

import numpy as np

import fastrnn
from fastrnn.models import Forecaster
from fastrnn.nn import MSELoss
from fastrnn.optim import Adam, clip_grad_norm
from fastrnn.training import limit_numpy_blas_threads


def adding_batch(rng, batch, steps):
    """x (batch, steps, 2), y (batch, 1)."""
    values = rng.random((batch, steps))
    markers = np.zeros((batch, steps))
    half = steps // 2
    first = rng.integers(0, half, batch)
    second = rng.integers(half, steps, batch)
    rows = np.arange(batch)
    markers[rows, first] = markers[rows, second] = 1.0
    x = np.stack([values, markers], axis=-1).astype(np.float32)
    y = (values[rows, first] + values[rows, second])[:, None].astype(np.float32)
    return x, y


def run(cell, args):
    rng = np.random.default_rng(args.seed)
    x_test, y_test = adding_batch(np.random.default_rng(10_000 + args.seed), 2000, args.T)
    model = Forecaster(input_size=2, hidden_size=args.hidden, output_size=1, cell=cell, seed=args.seed)
    opt, loss = Adam(model, lr=args.lr), MSELoss()
    solved_at, test_mse, start = None, float("nan"), time.perf_counter()
    for step in range(1, args.steps + 1):
        x, y = adding_batch(rng, args.batch, args.T)
        model.zero_grad()
        loss.forward(model.forward(x), y)
        model.backward(loss.backward())
        clip_grad_norm(model, args.clip)
        opt.step()
        if step % args.eval_every == 0 or step == args.steps:
            test_mse = float(np.mean((model.predict(x_test) - y_test) ** 2))
            print(f"  {cell:4s} step {step:5d}  test MSE {test_mse:.4f}  ({time.perf_counter() - start:.0f} s)",
                  flush=True)
            if solved_at is None and test_mse < 0.01:
                solved_at = step
                if args.stop_when_solved:
                    break
    return test_mse, solved_at, step, time.perf_counter() - start


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cell", choices=("lstm", "gru", "rnn", "all"), default="all")
    p.add_argument("--steps", type=int, default=5000, help="training steps per cell (default 5000)")
    p.add_argument("--T", type=int, default=100, help="sequence length (default 100)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--clip", type=float, default=1.0)
    p.add_argument("--eval-every", type=int, default=250)
    p.add_argument("--stop-when-solved", action="store_true", help="stop a cell once test MSE < 0.01")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    limit_numpy_blas_threads(1)  # NumPy's BLAS threads would otherwise compete with fastrnn's
    print(f"adding problem, T={args.T}, batch {args.batch}, {args.hidden} units, Adam {args.lr}, clip {args.clip}; "
          f"{fastrnn.get_num_threads()} threads; predicting the mean scores 0.167")
    cells = ("lstm", "gru", "rnn") if args.cell == "all" else (args.cell,)
    results = {cell: run(cell, args) for cell in cells}
    print()
    for cell, (mse, solved, steps, seconds) in results.items():
        reached = f"MSE < 0.01 at step {solved}" if solved else "never below 0.01"
        print(f"{cell:4s}: {reached}; test MSE {mse:.4f} after {steps} steps ({steps / seconds:.1f} steps/s)")
    print("test MSE: " + ", ".join(f"{cell} {results[cell][0]:.4f}" for cell in cells))


if __name__ == "__main__":
    main()
