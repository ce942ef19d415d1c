"""The NumPy reference: the same layers as the compiled engine, written straight from the equations.

It is the oracle for tests and the baseline for benchmarks, so it favours plain, readable NumPy over
speed. Gate order and formulas are torch's (DESIGN.md section 2):

    RNN   h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)
    LSTM  [i, f, g, o] = [s, s, tanh, s](W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)   (s = sigmoid)
          c_t = f * c_{t-1} + i * g,   h_t = o * tanh(c_t)   (with proj_size: h_t = W_hr (o * tanh(c_t)))
    GRU   r, z = s(W_i{r,z} x_t + b_i{r,z} + W_h{r,z} h_{t-1} + b_h{r,z})
          n = tanh(W_in x_t + b_in + r * (W_hn h_{t-1} + b_hn)),   h_t = (1 - z) * n + z * h_{t-1}

Variable lengths: row b is processed at steps s = 0 .. len_b - 1, at time s (forward direction) or
len_b - 1 - s (reverse direction); outside that range its state is held and its output is zero.
"""
import numpy as np

from ._layer import RecurrentLayer, make_layer_classes

__all__ = ["RNN", "LSTM", "GRU", "JordanRNN"]


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _step_times(step, lengths, reverse, steps, batch):
    """For processing step ``step``: which rows are active and the time index each reads."""
    if lengths is None:
        lengths = np.full(batch, steps)
    active = step < lengths
    times = np.where(reverse, lengths - 1 - step, step)
    return active, np.clip(times, 0, steps - 1)


def _cell_forward(mode, x_t, h, c, w_ih, w_hh, b_ih, b_hh, w_hr):
    """One time step for all rows. Returns (h_new, c_new, saved) where saved is what backward needs."""
    H = w_hh.shape[0] // {"lstm": 4, "gru": 3}.get(mode, 1)
    gx = x_t @ w_ih.T + (b_ih if b_ih is not None else 0)
    gh = h @ w_hh.T + (b_hh if b_hh is not None else 0)
    if mode in ("rnn_tanh", "rnn_relu"):
        pre = gx + gh
        h_new = np.tanh(pre) if mode == "rnn_tanh" else np.maximum(pre, 0)
        return h_new, None, {"h": h_new}
    if mode == "lstm":
        pre = gx + gh
        i, f = sigmoid(pre[:, :H]), sigmoid(pre[:, H:2 * H])
        g, o = np.tanh(pre[:, 2 * H:3 * H]), sigmoid(pre[:, 3 * H:])
        c_new = f * c + i * g
        tanh_c = np.tanh(c_new)
        h_raw = o * tanh_c
        h_new = h_raw if w_hr is None else h_raw @ w_hr.T
        return h_new, c_new, {"i": i, "f": f, "g": g, "o": o, "c_prev": c, "tanh_c": tanh_c, "h_raw": h_raw}
    # gru
    r = sigmoid(gx[:, :H] + gh[:, :H])
    z = sigmoid(gx[:, H:2 * H] + gh[:, H:2 * H])
    hn_lin = gh[:, 2 * H:]  # W_hn h + b_hn, kept for the reset gate's gradient
    n = np.tanh(gx[:, 2 * H:] + r * hn_lin)
    return (1 - z) * n + z * h, None, {"r": r, "z": z, "n": n, "hn_lin": hn_lin}


def _cell_backward(mode, saved, h_prev, dh, dc, w_hr):
    """Gradients of one step. Returns (d_gx, d_gh, dh_prev_direct, dc_prev): d_gx and d_gh are the
    gradients with respect to the input and recurrent pre-activations (gx, gh above). For a projected
    LSTM, dh is first taken back through h_t = h_raw W_hr^T."""
    if mode == "rnn_tanh":
        d_pre = dh * (1 - saved["h"] ** 2)
        return d_pre, d_pre, 0, None
    if mode == "rnn_relu":
        d_pre = dh * (saved["h"] > 0)
        return d_pre, d_pre, 0, None
    if mode == "lstm":
        i, f, g, o, tanh_c = saved["i"], saved["f"], saved["g"], saved["o"], saved["tanh_c"]
        if w_hr is not None:
            dh = dh @ w_hr
        d_o = dh * tanh_c
        dc = dc + dh * o * (1 - tanh_c ** 2)
        d_i, d_f, d_g = dc * g, dc * saved["c_prev"], dc * i
        d_pre = np.concatenate([d_i * i * (1 - i), d_f * f * (1 - f), d_g * (1 - g ** 2), d_o * o * (1 - o)], axis=1)
        return d_pre, d_pre, 0, dc * f
    r, z, n, hn_lin = saved["r"], saved["z"], saved["n"], saved["hn_lin"]
    d_n = dh * (1 - z) * (1 - n ** 2)
    d_z = dh * (h_prev - n) * z * (1 - z)
    d_r = d_n * hn_lin * r * (1 - r)
    d_gx = np.concatenate([d_r, d_z, d_n], axis=1)
    d_gh = np.concatenate([d_r, d_z, d_n * r], axis=1)
    return d_gx, d_gh, dh * z, None


class _ReferenceLayer(RecurrentLayer):
    def _forward_direction(self, x, h0, c0, weights, lengths, reverse, y_out, hn_out, cn_out, keep_tape):
        w_ih, w_hh, b_ih, b_hh, w_hr = weights
        T, B, _ = x.shape
        h, c = h0.copy(), (c0.copy() if c0 is not None else None)
        y_out[...] = 0
        steps = []
        for s in range(T):
            active, times = _step_times(s, lengths, reverse, T, B)
            x_t = x[times, np.arange(B)]
            h_new, c_new, saved = _cell_forward(self._mode, x_t, h, c, w_ih, w_hh, b_ih, b_hh, w_hr)
            steps.append((active, times, x_t, h, saved))
            h = np.where(active[:, None], h_new, h)
            if c is not None:
                c = np.where(active[:, None], c_new, c)
            y_out[times[active], np.arange(B)[active]] = h[active]
        tape = {"steps": steps, "w_ih": w_ih.copy(), "w_hh": w_hh.copy(), "x_shape": x.shape,
                "w_hr": None if w_hr is None else w_hr.copy()} if keep_tape else None
        hn_out[...] = h
        if cn_out is not None:
            cn_out[...] = c
        return tape

    def _backward_direction(self, tape, dy, dhn, dcn, grads, dx_out, accumulate, dh0_out, dc0_out):
        g_ih, g_hh, g_bih, g_bhh, g_hr = grads
        w_ih, w_hh, w_hr = tape["w_ih"], tape["w_hh"], tape["w_hr"]
        T, B, _ = tape["x_shape"]
        dx = np.zeros(tape["x_shape"], dx_out.dtype)
        dh = dhn.copy()
        dc = dcn.copy() if dcn is not None else None
        for active, times, x_t, h_prev, saved in reversed(tape["steps"]):
            rows = active[:, None]
            dh_step = dh + np.where(rows, dy[times, np.arange(B)], 0)
            d_gx, d_gh, dh_direct, dc_prev = _cell_backward(self._mode, saved, h_prev, dh_step, dc, w_hr)
            d_gx, d_gh = d_gx * rows, d_gh * rows  # inactive rows contribute nothing
            if w_hr is not None:
                g_hr += (dh_step * rows).T @ saved["h_raw"]
            g_ih += d_gx.T @ x_t
            g_hh += d_gh.T @ h_prev
            if g_bih is not None:
                g_bih += d_gx.sum(axis=0)
                g_bhh += d_gh.sum(axis=0)
            dx[times[active], np.arange(B)[active]] = (d_gx @ w_ih)[active]
            dh = np.where(rows, d_gh @ w_hh + dh_direct, dh)
            if dc is not None:
                dc = np.where(rows, dc_prev, dc)
        if accumulate:
            dx_out += dx
        else:
            dx_out[...] = dx
        dh0_out[...] = dh
        if dc0_out is not None:
            dc0_out[...] = dc


RNN, LSTM, GRU = make_layer_classes(_ReferenceLayer, "fastrnn.reference")

from .reference_jordan import JordanRNN  # noqa: E402  (the output-recurrent network, its own file)
