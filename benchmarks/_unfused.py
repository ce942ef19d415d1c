"""The library alternative to fastrnn's fused recurrent step, for the GEMM ablation.

Same forward math as fastrnn (torch's gate order), written the way one would without a fused kernel:
the input projection X W_ih^T as ONE BLAS GEMM over all T*B rows (as fastrnn does too), then per step
one BLAS GEMM h W_hh^T (NumPy matmul into a preallocated buffer) followed by the gate nonlinearities
and the state update as in-place NumPy ufuncs. No allocation inside the time loop.

``gemm_only=True`` keeps the GEMMs (same shapes, same count) and drops the gate math: not an RNN any
more, but the floor of any design that leaves the recurrent product to a BLAS call per step.
"""
import numpy as np

GATES = {"rnn": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}


def _sigmoid_(a):
    np.negative(a, out=a)
    np.exp(a, out=a)
    a += 1
    np.reciprocal(a, out=a)


class UnfusedForward:
    def __init__(self, cell, weights, T, B, D, H, gemm_only=False):
        self.cell, self.T, self.B, self.H, self.gemm_only = cell, T, B, H, gemm_only
        G = GATES[cell]
        self.w_ih_t = weights["weight_ih_l0"].T  # views: BLAS takes the transpose flag, no copy
        self.w_hh_t = weights["weight_hh_l0"].T
        self.b_ih, self.b_hh = weights["bias_ih_l0"], weights["bias_hh_l0"]
        self.b_x = self.b_ih if cell == "gru" else self.b_ih + self.b_hh  # GRU's b_hn stays inside r * (.)
        self.gx = np.empty((T * B, G * H), np.float32)
        self.gh = np.empty((B, G * H), np.float32)
        self.tmp = np.empty((B, H), np.float32)
        self.y = np.empty((T, B, H), np.float32)
        self.c = np.empty((B, H), np.float32)

    def __call__(self, x, h0, c0=None):
        T, B, H = self.T, self.B, self.H
        np.matmul(x.reshape(T * B, -1), self.w_ih_t, out=self.gx)
        self.gx += self.b_x
        gx = self.gx.reshape(T, B, -1)
        h = h0
        if c0 is not None:
            self.c[...] = c0
        for t in range(T):
            gh, out = self.gh, self.y[t]
            np.matmul(h, self.w_hh_t, out=gh)
            if self.gemm_only:  # h stays h0: without the gates the values would overflow to inf/NaN
                continue
            if self.cell == "gru":
                self._gru(gx[t], gh, h, out)
            else:
                gh += gx[t]
                if self.cell == "lstm":
                    self._lstm(gh, out)
                elif self.cell == "rnn":
                    np.tanh(gh, out=out)
                else:
                    np.maximum(gh, 0, out=out)
            h = out
        return self.y, h

    def _lstm(self, g, h_out):
        H = self.H
        _sigmoid_(g[:, :2 * H])           # i, f
        np.tanh(g[:, 2 * H:3 * H], out=g[:, 2 * H:3 * H])
        _sigmoid_(g[:, 3 * H:])           # o
        self.c *= g[:, H:2 * H]
        np.multiply(g[:, :H], g[:, 2 * H:3 * H], out=self.tmp)
        self.c += self.tmp
        np.tanh(self.c, out=self.tmp)
        np.multiply(g[:, 3 * H:], self.tmp, out=h_out)

    def _gru(self, gx, gh, h, h_out):
        H = self.H
        gh += self.b_hh
        rz = gh[:, :2 * H]
        rz += gx[:, :2 * H]
        _sigmoid_(rz)
        n = gh[:, 2 * H:]
        n *= rz[:, :H]                    # r * (W_hn h + b_hn)
        n += gx[:, 2 * H:]
        np.tanh(n, out=n)
        np.subtract(h, n, out=h_out)      # h_t = n + z * (h - n)
        h_out *= rz[:, H:]
        h_out += n
