"""Jordan vs Elman networks on the same sequence task: teacher-forced training, free-running evaluation,
with and without scheduled sampling (issue 9: "the classic trade-off, measured").

The task: identify a noisy nonlinear first-order system from its input. The input x_t is a smooth
random signal; the system's output is

    s_t = 0.97 s_{t-1} + 0.25 tanh(2 x_t) - 0.1 s_{t-1}^3,     observed as y_t = s_t + noise (sd 0.2)

and a model must produce y_1..y_T from x_1..x_T alone (open loop, as when the system is simulated).
All networks have the same hidden size H and see the previous output in one way or another:

    jordan, teacher forcing   fastrnn.JordanRNN trained on y_{t-1} = the true previous output: every
                              step independent, no BPTT; evaluated free running (its own outputs fed back)
    jordan, scheduled         the same, but each step feeds back the model's own output with probability
                              p, ramped linearly from 0 to --p-max over training (BPTT through those steps)
    elman + y, teacher forc.  fastrnn.RNN over [x_t, y_{t-1}] and a linear head (BPTT through the hidden
                              state), y_{t-1} the true previous output; evaluated free running
    elman + y, scheduled      the same with scheduled sampling (own outputs from a no-grad pass, fed as
                              constants: no gradient through the fed-back value, as in Bengio et al. 2015)
    elman (x only)            fastrnn.RNN over x_t alone: nothing fed back, so training and evaluation
                              run the same way (no mismatch), at the price of BPTT through every step

Printed: the open-loop (free-running) RMSE on held-out sequences, the one-step (teacher-forced) RMSE,
and the training time of each; plotted (matplotlib, optional): the open-loop error against the horizon
(against the noise-free output) and one held-out sequence.

    python examples/jordan_vs_elman.py [--quick] [--hidden 32 --epochs 100 --threads 1 --plot jordan_vs_elman.png]
"""
import argparse
import time

import numpy as np

import fastrnn
from fastrnn.nn import Linear
from fastrnn.optim import Adam, clip_grad_norm
from fastrnn.training import limit_numpy_blas_threads

NOISE = 0.2


def make_data(n, steps, seed):
    """x (T, n, 1) inputs, y (T, n, 1) noisy observed outputs, s (T, n, 1) the noise-free outputs."""
    rng = np.random.default_rng(seed)
    x = np.zeros((steps, n, 1))
    s = np.zeros((steps, n, 1))
    u, state = rng.standard_normal((n, 1)), np.zeros((n, 1))
    for t in range(steps):
        u = 0.9 * u + 0.45 * rng.standard_normal((n, 1))
        state = 0.97 * state + 0.25 * np.tanh(2 * u) - 0.1 * state ** 3
        x[t], s[t] = u, state
    y = s + NOISE * rng.standard_normal(s.shape)
    return x.astype(np.float32), y.astype(np.float32), s.astype(np.float32)


def shifted(y):
    """y_{t-1} at each step t (zeros at t = 0: the system starts at rest)."""
    return np.concatenate([np.zeros_like(y[:1]), y[:-1]])


# ----------------------------------------------------------------------------- the models
class Jordan:
    def __init__(self, hidden, seed):
        self.net = fastrnn.JordanRNN(1, hidden, 1, seed=seed)
        self.modules = [self.net]

    def train_step(self, x, y, p):
        out = self.net.forward(x, y, p=p)  # p = 0: teacher forcing (parallel over time, no BPTT)
        self.net.backward(2 * (out - y) / out.size)
        return out

    def free_run(self, x):
        with fastrnn.no_grad():
            return self.net.forward(x)

    def one_step(self, x, y):
        with fastrnn.no_grad():
            return self.net.forward(x, y)


class Elman:
    """fastrnn.RNN + a linear head; with ``feedback`` the previous output is a second input feature."""

    def __init__(self, hidden, seed, feedback=True):
        self.feedback = feedback
        self.rnn = fastrnn.RNN(2 if feedback else 1, hidden, seed=seed)
        self.head = Linear(hidden, 1, seed=seed + 1)
        self.modules = [self.rnn, self.head]
        self.rng = np.random.default_rng(seed + 2)

    def _inputs(self, x, fed):
        return np.concatenate([x, fed], axis=2) if self.feedback else x

    def train_step(self, x, y, p):
        fed = shifted(y)
        if self.feedback and p > 0:  # scheduled sampling: own outputs (from a no-grad pass) where drawn
            own = self.rng.random(y.shape[:2]) < p
            own[0] = False
            fed = self._run_mixed(x, y, own)
        h, _ = self.rnn.forward(self._inputs(x, fed))
        out = self.head.forward(h)
        self.rnn.backward(self.head.backward(2 * (out - y) / out.size))
        return out

    def _run_mixed(self, x, y, own):
        """The fed values when step t reads the model's own previous output where own[t] (a step loop)."""
        T, B, _ = x.shape
        fed = np.zeros_like(y)
        hx, prev = np.zeros((1, B, self.rnn.hidden_size), np.float32), np.zeros((B, 1), np.float32)
        with fastrnn.no_grad():
            for t in range(T):
                if t > 0:
                    fed[t] = np.where(own[t][:, None], prev, y[t - 1])
                h, hx = self.rnn.forward(self._inputs(x[t:t + 1], fed[t:t + 1]), hx)
                prev = self.head.forward(h[0])
        return fed

    def free_run(self, x):
        if not self.feedback:
            return self.one_step(x, None)
        T, B, _ = x.shape
        out = np.zeros((T, B, 1), np.float32)
        hx, prev = np.zeros((1, B, self.rnn.hidden_size), np.float32), np.zeros((B, 1), np.float32)
        with fastrnn.no_grad():
            for t in range(T):
                h, hx = self.rnn.forward(self._inputs(x[t:t + 1], prev[None]), hx)
                out[t] = prev = self.head.forward(h[0])
        return out

    def one_step(self, x, y):
        with fastrnn.no_grad():
            h, _ = self.rnn.forward(self._inputs(x, shifted(y)) if self.feedback else x)
            return self.head.forward(h)


def train(model, data, args, scheduled, progress):
    x, y = data
    opt = Adam(model.modules, lr=args.lr)
    rng = np.random.default_rng(args.seed)
    n_batches = x.shape[1] // args.batch
    start = time.perf_counter()
    for epoch in range(args.epochs):
        # scheduled sampling: p grows linearly from 0 (pure teacher forcing) to p_max at the last epoch
        p = args.p_max * epoch / max(1, args.epochs - 1) if scheduled else 0.0
        order = rng.permutation(x.shape[1])
        for i in range(n_batches):
            idx = order[i * args.batch:(i + 1) * args.batch]
            for m in model.modules:
                m.zero_grad()
            model.train_step(x[:, idx], y[:, idx], p)
            clip_grad_norm(model.modules, 1.0)
            opt.step()
        progress()
    return time.perf_counter() - start


def rmse(a, b, axis=None):
    return np.sqrt(np.mean((a - b) ** 2, axis=axis))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hidden", type=int, default=32, help="hidden units of every network (default 32)")
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--steps", type=int, default=100, help="sequence length T (default 100)")
    ap.add_argument("--train", type=int, default=256, help="training sequences (default 256)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--p-max", type=float, default=0.75, help="scheduled sampling's final p (default 0.75)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--plot", default="jordan_vs_elman.png", help="figure to write ('' = none)")
    ap.add_argument("--threads", type=int, default=1,
                    help="fastrnn threads (default 1: these networks are small, and a second thread only waits "
                         "for the first when another process holds a core)")
    ap.add_argument("--quick", action="store_true", help="a few seconds: fewer epochs and sequences")
    args = ap.parse_args()
    if args.quick:
        args.epochs, args.train, args.steps = 6, 64, 50
    limit_numpy_blas_threads(1)
    fastrnn.set_num_threads(args.threads)

    train_data = make_data(args.train, args.steps, args.seed)[:2]
    x_test, y_test, s_test = make_data(128, args.steps, args.seed + 1000)
    configs = [
        ("jordan", "teacher forcing", lambda: Jordan(args.hidden, args.seed), False),
        ("jordan", "scheduled sampling", lambda: Jordan(args.hidden, args.seed), True),
        ("elman + y", "teacher forcing", lambda: Elman(args.hidden, args.seed), False),
        ("elman + y", "scheduled sampling", lambda: Elman(args.hidden, args.seed), True),
        ("elman (x only)", "BPTT, nothing fed back", lambda: Elman(args.hidden, args.seed, feedback=False), False),
    ]
    try:
        from tqdm import tqdm

        bar = tqdm(total=len(configs) * args.epochs, unit="epoch", leave=False)
        progress, close = (lambda: bar.update(1)), bar.close
    except ImportError:
        progress, close = (lambda: None), (lambda: None)

    results = []
    for name, regime, build, scheduled in configs:
        model = build()
        seconds = train(model, train_data, args, scheduled, progress)
        free = model.free_run(x_test)
        results.append(dict(name=name, regime=regime, seconds=seconds, free=free,
                            open_loop=float(rmse(free, y_test)), open_loop_clean=float(rmse(free, s_test)),
                            one_step=float(rmse(model.one_step(x_test, y_test), y_test))))
    close()

    print(f"\nH={args.hidden}, {args.train} training sequences of T={args.steps}, {args.epochs} epochs; "
          f"128 held-out sequences; observation noise sd {NOISE} (the best possible RMSE against y).")
    print(f"scheduled sampling: p ramps linearly 0 -> {args.p_max} over the epochs\n")
    header = f"{'network':<16}{'training':<26}{'open-loop RMSE':>15}{'(vs clean s)':>14}{'one-step RMSE':>15}{'train s':>9}"
    print(header)
    print("-" * len(header))
    for r in results:
        print(f"{r['name']:<16}{r['regime']:<26}{r['open_loop']:>15.4f}{r['open_loop_clean']:>14.4f}"
              f"{r['one_step']:>15.4f}{r['seconds']:>9.1f}")
    print("\nopen-loop: the model runs on x alone, feeding back its own outputs; one-step: it is given the true "
          "previous output at every step (its training regime under teacher forcing).")

    if args.plot:
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            print("matplotlib is not installed: no plot (pip install matplotlib)")
            return
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.2))
        horizon = np.arange(1, args.steps + 1)
        for r in results:
            label = f"{r['name']}, {r['regime']}"
            ax1.plot(horizon, rmse(r["free"], s_test, axis=(1, 2)), label=label)
            ax2.plot(horizon, r["free"][:, 0, 0], label=label, lw=1)
        ax2.plot(horizon, y_test[:, 0, 0], "k.", ms=3, label="observed y")
        ax1.set(xlabel="time step (open loop)", ylabel="RMSE against the noise-free output s",
                title="Open-loop error over 128 held-out sequences")
        ax2.set(xlabel="time step", ylabel="output", title="One held-out sequence, free running")
        ax1.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
