"""Forecast next month's sunspot number with an LSTM, against the persistence baseline (next = last).

Data: the monthly mean sunspot numbers 1749-2009 that ship inside statsmodels
(statsmodels/datasets/sunspots/src/sunspots_monthly.dat; pip install statsmodels): nothing is
downloaded. The first 80% of the months train, the last 20% test, in time order. The model is
chosen without looking at the test set: the last 20% of the training months validate, and the
weights of the epoch with the best validation error are kept. Prints the test MAE of the model and of
persistence last, and plots the forecasts against the truth (needs matplotlib).

    python examples/sunspots.py [--window 36 --hidden 32 --epochs 40 --plot sunspots.png]
"""
import argparse
import os
import re
import time

import numpy as np

from fastrnn.models import Forecaster, sliding_windows
from fastrnn.nn import MSELoss
from fastrnn.optim import Adam, clip_grad_norm
from fastrnn.training import limit_numpy_blas_threads

SCALE = 100.0  # sunspot numbers run 0..250: bring them near 1 for the network


def load_monthly_sunspots():
    try:
        import statsmodels
    except ImportError:
        raise SystemExit("this example reads the sunspot data shipped with statsmodels: pip install statsmodels")
    path = os.path.join(os.path.dirname(statsmodels.__file__), "datasets", "sunspots", "src", "sunspots_monthly.dat")
    values = []
    with open(path) as f:
        for line in f:  # "1749    58.0  62.6 ..." : a year, then up to 12 monthly means
            if re.match(r"^\d{4}\s", line):
                values.extend(float(v) for v in line.split()[1:13])
    return np.array(values)


def mae_of(model, x, y):
    return float(np.mean(np.abs(model.predict(x) - y))) * SCALE


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--window", type=int, default=36, help="months of history per forecast (default 36)")
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--cell", choices=("lstm", "gru", "rnn"), default="lstm")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--plot", default="sunspots.png", help="forecast plot ('' = none)")
    args = p.parse_args()
    limit_numpy_blas_threads(1)

    series = load_monthly_sunspots()
    scaled = (series / SCALE).astype(np.float32)
    x, y = sliding_windows(scaled, args.window)  # x[i] = months i..i+W-1, y[i] = month i+W
    target_month = np.arange(len(y)) + args.window
    n_train = int(len(series) * 0.8)
    n_fit = int(n_train * 0.8)  # the rest of the training months validate (model selection)
    fit = target_month < n_fit
    val = (target_month >= n_fit) & (target_month < n_train)
    test = target_month >= n_train  # test windows may reach back into training months; targets never do
    print(f"{len(series):,} months ({len(series) // 12} years); fit {fit.sum()}, validate {val.sum()}, "
          f"test {test.sum()} forecasts")

    model = Forecaster(1, args.hidden, cell=args.cell, seed=args.seed)
    opt, mse = Adam(model, lr=args.lr), MSELoss()
    rng = np.random.default_rng(args.seed)
    xf, yf = x[fit], y[fit]
    best = (np.inf, None, 0)
    start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        order = rng.permutation(len(xf))
        for i in range(0, len(order), args.batch):
            idx = order[i:i + args.batch]
            model.zero_grad()
            mse.forward(model.forward(xf[idx]), yf[idx])
            model.backward(mse.backward())
            clip_grad_norm(model, 1.0)
            opt.step()
        val_mae = mae_of(model, x[val], y[val])
        if val_mae < best[0]:
            best = (val_mae, model.state_dict(), epoch)
        if epoch % 5 == 0 or epoch == 1:
            print(f"epoch {epoch:3d}  validation MAE {val_mae:.2f}  ({time.perf_counter() - start:.0f} s)", flush=True)
    model.load_state_dict(best[1])

    persistence_val = float(np.mean(np.abs(x[val][:, -1] - y[val]))) * SCALE
    pred = model.predict(x[test])[:, 0] * SCALE
    truth = y[test][:, 0] * SCALE
    last = x[test][:, -1, 0] * SCALE
    test_mae, persistence = float(np.mean(np.abs(pred - truth))), float(np.mean(np.abs(last - truth)))
    print(f"kept epoch {best[2]} (validation MAE {best[0]:.2f}; persistence on validation {persistence_val:.2f})")
    if args.plot:
        plot(args.plot, series, n_train, target_month[test], pred)
    print(f"test MAE: LSTM {test_mae:.2f}, persistence {persistence:.2f} "
          f"({100 * (1 - test_mae / persistence):.1f}% below persistence)")


def plot(path, series, n_train, months, pred):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: skipping the plot (pip install matplotlib)")
        return
    years = 1749 + np.arange(len(series)) / 12
    fig, ax = plt.subplots(figsize=(10, 4))
    ax.plot(years[n_train - 120:], series[n_train - 120:], color="0.6", lw=0.8, label="monthly sunspot number")
    ax.plot(years[months], pred, color="tab:red", lw=0.9, label="one-month-ahead forecast")
    ax.axvline(years[n_train], color="k", ls=":", lw=0.8)
    ax.set_xlabel("year")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"plot: {path}")


if __name__ == "__main__":
    main()
