"""The compiled Jordan network, fastrnn.JordanRNN: one kernel call per forward and per backward (the whole
sequence in C++, GIL released; csrc/jordan.h). This file allocates the outputs and the tape."""
import numpy as np

from . import _kernels
from ._jordan_layer import JordanLayer, make_jordan_class


class _CompiledJordan(JordanLayer):
    def _run_forward(self, x, feed, own, uniforms, y0, weights, keep_tape):
        w_ih, w_oh, b_h, w_ho, b_o = weights  # checked when assigned: contiguous, the layer's dtype
        T, B, _ = x.shape
        H, O = self.hidden_size, self.output_size
        teacher = feed is not None and own is None
        out = np.empty((T, B, O), self.dtype)
        h = np.empty((T, B, H), self.dtype)
        y_prev = feed if teacher else np.empty((T, B, O), self.dtype)  # feed is private (built by the caller)
        probs = np.empty((T, B, O), self.dtype) if self.output == "softmax" and not teacher else None
        own_u8 = None if own is None else np.ascontiguousarray(own, dtype=np.uint8)
        if uniforms is not None:
            uniforms = np.ascontiguousarray(uniforms, dtype=self.dtype)
        _kernels.jordan_forward(self.nonlinearity == "relu", self.output, self.feedback, teacher, x,
                                None if teacher else feed, own_u8, uniforms, y0, w_ih, w_oh, b_h, w_ho, b_o,
                                out, h, y_prev, probs)
        saved = {"h": h, "y_prev": y_prev, "probs": probs} if keep_tape else None
        return out, saved

    def _run_backward(self, tape, d_out, grads):
        g_ih, g_oh, g_bh, g_ho, g_bo = grads
        w_ih, w_oh, _, w_ho, _ = tape.weights
        x, saved = tape.x, tape.saved
        T, B, I = x.shape
        through_own = tape.own is not None and self.feedback == "soft"
        own_u8 = np.ascontiguousarray(tape.own, dtype=np.uint8) if through_own else None
        d_pre = np.empty((T, B, self.hidden_size), self.dtype)
        dx = np.empty((T, B, I), self.dtype)
        dy0 = np.empty((B, self.output_size), self.dtype)
        _kernels.jordan_backward(self.nonlinearity == "relu", self.output, through_own, x, w_ih, w_oh, w_ho,
                                 saved["h"], saved["y_prev"], saved["probs"] if through_own else None, own_u8,
                                 d_out, d_pre, dx, dy0, g_ih, g_oh, g_ho, g_bh, g_bo)
        return dx, dy0


JordanRNN = make_jordan_class(_CompiledJordan, "fastrnn")
