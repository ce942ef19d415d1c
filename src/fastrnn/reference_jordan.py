"""The NumPy reference of the Jordan network (fastrnn.reference.JordanRNN), straight from the equations:

    h_t = act(W_ih x_t + W_oh y_{t-1} + b_h),   o_t = W_ho h_t + b_o
    y_{t-1} = y0 (t = 0); target_{t-1} or f(o_{t-1}) (t >= 1), chosen per (t, b) by the own-output mask

One step at a time, forward and backward, for every mode (teacher forcing is the mask of all False).
f is the identity (linear output), softmax (feedback "soft"), a one-hot sample from the softmax
(feedback "sample", drawn by inverse CDF: the first class k with u < p_0 + ... + p_k, u the step's
uniform) or a one-hot argmax (first maximum). Only the soft feedbacks pass gradient back.
"""
import numpy as np

from ._jordan_layer import JordanLayer, make_jordan_class

__all__ = ["JordanRNN", "softmax", "fed_back_output"]


def softmax(o):
    e = np.exp(o - o.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def fed_back_output(output, feedback, o, uniforms=None):
    """f(o) for a (B, O) block of outputs; returns (y, probs), probs = softmax(o) (None for linear)."""
    if output == "linear":
        return o, None
    probs = softmax(o)
    if feedback == "soft":
        return probs, probs
    O = o.shape[-1]
    if feedback == "argmax":
        k = np.argmax(o, axis=-1)
    else:
        k = np.minimum((np.cumsum(probs, axis=-1) <= uniforms[:, None]).sum(axis=-1), O - 1)
    return np.eye(O, dtype=o.dtype)[k], probs


class _ReferenceJordan(JordanLayer):
    def _act(self, pre):
        return np.tanh(pre) if self.nonlinearity == "tanh" else np.maximum(pre, 0)

    def _act_grad(self, h):
        return 1 - h * h if self.nonlinearity == "tanh" else (h > 0).astype(h.dtype)

    def _run_forward(self, x, feed, own, uniforms, y0, weights, keep_tape):
        w_ih, w_oh, b_h, w_ho, b_o = weights
        T, B, _ = x.shape
        H, O = self.hidden_size, self.output_size
        out = np.zeros((T, B, O), self.dtype)
        h_all = np.zeros((T, B, H), self.dtype)
        y_prev = np.zeros((T, B, O), self.dtype)
        probs = np.zeros((T, B, O), self.dtype) if self.output == "softmax" else None
        y_own = None
        for t in range(T):
            if t == 0:
                y_in = y0
            elif own is None:  # teacher forcing: feed[t] = target_{t-1}
                y_in = feed[t]
            elif feed is None:  # free running
                y_in = y_own
            else:  # scheduled sampling: feed holds the targets
                y_in = np.where(own[t][:, None], y_own, feed[t - 1])
            pre = x[t] @ w_ih.T + y_in @ w_oh.T + (b_h if b_h is not None else 0)
            h = self._act(pre)
            o = h @ w_ho.T + (b_o if b_o is not None else 0)
            h_all[t], y_prev[t], out[t] = h, y_in, o
            if own is not None:
                y_own, p = fed_back_output(self.output, self.feedback, o, None if uniforms is None else uniforms[t])
                if probs is not None:
                    probs[t] = p
        saved = {"h": h_all, "y_prev": y_prev, "probs": probs} if keep_tape else None
        return out, saved

    def _run_backward(self, tape, d_out, grads):
        g_ih, g_oh, g_bh, g_ho, g_bo = grads
        w_ih, w_oh, _, w_ho, _ = tape.weights
        x, own, saved = tape.x, tape.own, tape.saved
        h_all, y_prev, probs = saved["h"], saved["y_prev"], saved["probs"]
        T, B, _ = x.shape
        through_own = own is not None and self.feedback == "soft"
        d_o = d_out.copy()
        d_pre = np.zeros_like(h_all)
        dy0 = np.zeros((B, self.output_size), self.dtype)
        for t in reversed(range(T)):
            d_pre[t] = (d_o[t] @ w_ho) * self._act_grad(h_all[t])
            d_fed = d_pre[t] @ w_oh  # dL/dy_{t-1}
            if t == 0:
                dy0 = d_fed
            elif through_own:  # back into o_{t-1} where the model's own output was fed
                g = d_fed * own[t][:, None]
                if self.output == "linear":
                    d_o[t - 1] += g
                else:
                    p = probs[t - 1]
                    d_o[t - 1] += p * (g - (p * g).sum(axis=1, keepdims=True))
        dx = np.zeros_like(x)
        for t in range(T):
            g_ih += d_pre[t].T @ x[t]
            g_oh += d_pre[t].T @ y_prev[t]
            g_ho += d_o[t].T @ h_all[t]
            if g_bh is not None:
                g_bh += d_pre[t].sum(axis=0)
                g_bo += d_o[t].sum(axis=0)
            dx[t] = d_pre[t] @ w_ih
        return dx, dy0


JordanRNN = make_jordan_class(_ReferenceJordan, "fastrnn.reference")
