"""Train a tiny LSTM to predict the next value of a noisy sine wave; prints the loss falling.

    python examples/quickstart.py
"""
import numpy as np

import fastrnn

rng = np.random.default_rng(0)
T, B, H = 50, 32, 32
lstm = fastrnn.LSTM(1, H, seed=0)
w_out = rng.uniform(-0.1, 0.1, size=(H, 1)).astype(np.float32)  # linear read-out, trained by hand
lr = 1.0

for step in range(301):
    phase = rng.uniform(0, 2 * np.pi, size=(1, B, 1))
    t = np.arange(T + 1).reshape(-1, 1, 1) * 0.2
    wave = (np.sin(t + phase) + 0.05 * rng.standard_normal((T + 1, B, 1))).astype(np.float32)
    x, target = wave[:-1], wave[1:]

    y, _ = lstm(x)                       # (T, B, H)
    pred = y @ w_out                     # (T, B, 1)
    err = pred - target
    loss = float(np.mean(err ** 2))

    d_pred = 2 * err / err.size
    grad_w_out = y.reshape(-1, H).T @ d_pred.reshape(-1, 1)
    lstm.zero_grad()
    lstm.backward(d_pred @ w_out.T)      # BPTT; parameter gradients land in lstm.grads
    for name, param in lstm.params.items():
        param -= lr * lstm.grads[name]
    w_out -= lr * grad_w_out
    if step % 50 == 0:
        print(f"step {step:3d}  mse {loss:.4f}")
