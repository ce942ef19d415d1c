"""The compiled layers: fastrnn.RNN, fastrnn.LSTM, fastrnn.GRU.

Each direction of each layer is one call into the kernels (the whole time loop in C++, GIL released);
this file only allocates the outputs and the tape and hands them over.
"""
import numpy as np

from . import _kernels
from ._layer import GATES, RecurrentLayer, make_layer_classes

_AUX_WIDTH = {"rnn_tanh": 0, "rnn_relu": 0, "lstm": 2, "gru": 1}  # extra tape columns, in units of H


def _row_stride(view):
    """Elements between consecutive (t, b) rows of a (T, B, H) view, or None when the kernels cannot
    address it (they need unit stride along H and rows evenly spaced). Strides of length-1 axes are
    meaningless in NumPy (a transposed (1, T, H) array may report anything), so they are not read."""
    T, B, H = view.shape
    item = view.itemsize
    if H > 1 and view.strides[2] != item:
        return None
    if B > 1:
        stride = view.strides[1]
        if T > 1 and view.strides[0] != B * stride:
            return None
    else:
        stride = view.strides[0] if T > 1 else H * item
    if stride % item or stride < H * item:
        return None
    return stride // item


class _CompiledLayer(RecurrentLayer):
    _skips_input_grad = True  # the backward kernel takes dx = NULL
    def _forward_direction(self, x, h0, c0, weights, lengths, reverse, y_out, hn_out, cn_out, keep_tape,
                           variant=None):
        if variant is not None:
            return self._variant_forward_direction(x, h0, c0, weights, lengths, reverse, y_out, hn_out, cn_out,
                                                   keep_tape, variant)
        w_ih, w_hh, b_ih, b_hh, w_hr = weights  # checked when assigned (_layer._Arrays): contiguous, right dtype
        T, B, _ = x.shape
        H, P = self.hidden_size, self.output_size
        ldy = _row_stride(y_out)
        assert ldy is not None and x.flags.c_contiguous and x.dtype == self.dtype
        gates = h_prev = aux = None
        if keep_tape:  # the kernels keep only valid (t, b) rows, packed (see csrc/loop_support.h)
            rows = T * B if lengths is None else int(lengths.sum())
            gates = np.empty((rows, self.gate_size), self.dtype)
            h_prev = np.empty((rows, P), self.dtype)
            aux_width = _AUX_WIDTH[self._mode]
            aux = np.empty((rows, aux_width * H), self.dtype) if aux_width else None
        _kernels.forward(self._mode, x, h0, c0, w_ih, w_hh, w_hr, b_ih, b_hh, lengths, reverse,
                         H, y_out, ldy, hn_out, cn_out, gates, h_prev, aux)
        if not keep_tape:
            return None
        # backward must see the weights as they are now, whatever the caller changes in between (torch
        # raises in that case; we keep private copies, cheap next to the step's work; x is already ours)
        return (x, w_ih.copy(), w_hh.copy(), None if w_hr is None else w_hr.copy(), lengths, reverse,
                gates, h_prev, aux)

    def _backward_direction(self, tape, dy, dhn, dcn, grads, dx_out, accumulate, dh0_out, dc0_out,
                            variant_grads=None):
        if variant_grads is not None:
            return self._variant_backward_direction(tape, dy, dhn, dcn, grads, dx_out, accumulate, dh0_out, dc0_out,
                                                    variant_grads)
        x, w_ih, w_hh, w_hr, lengths, reverse, gates, h_prev, aux = tape
        g_ih, g_hh, g_bih, g_bhh, g_hr = grads
        ldy = _row_stride(dy)
        if ldy is None:
            dy = np.ascontiguousarray(dy)
            ldy = dy.shape[2]
        _kernels.backward(self._mode, reverse, lengths, x, w_ih, w_hh, w_hr, self.hidden_size, dy, ldy, dhn, dcn,
                          gates, h_prev, aux, dx_out, accumulate, dh0_out, dc0_out, g_ih, g_hh, g_hr, g_bih, g_bhh)


    # ------------------------------------------------------------- variants (csrc/variant_layer.h)
    def _variant_forward_direction(self, x, h0, c0, weights, lengths, reverse, y_out, hn_out, cn_out, keep_tape,
                                   variant):
        w_ih, w_hh, b_ih, b_hh, _ = weights
        T, B, _ = x.shape
        H = self.hidden_size
        ldy = _row_stride(y_out)
        assert ldy is not None and x.flags.c_contiguous and x.dtype == self.dtype
        tape = None
        if keep_tape:
            width = _kernels.variant_tape_width(self._mode, H, variant["layer_norm"])
            tape = np.empty((T * B, width), self.dtype)
        _kernels.variant_forward(self._mode, x, h0, c0, (w_ih, w_hh, b_ih, b_hh), lengths, reverse, H, variant,
                                 y_out, ldy, hn_out, cn_out, tape)
        if not keep_tape:
            return None
        # private copies of the weights and parameters, as above; the masks are the call's own
        variant = dict(variant, params={k: v.copy() for k, v in variant["params"].items()})
        return (x, w_ih.copy(), w_hh.copy(), b_ih, b_hh, lengths, reverse, variant, tape)

    def _variant_backward_direction(self, tape, dy, dhn, dcn, grads, dx_out, accumulate, dh0_out, dc0_out,
                                    variant_grads):
        x, w_ih, w_hh, b_ih, b_hh, lengths, reverse, variant, tape_rows = tape
        g_ih, g_hh, g_bih, g_bhh, _ = grads
        ldy = _row_stride(dy)
        if ldy is None:
            dy = np.ascontiguousarray(dy)
            ldy = dy.shape[2]
        # the biases' values are not needed by backward, only whether they exist (b_ih/b_hh may be None)
        _kernels.variant_backward(self._mode, x, (w_ih, w_hh, b_ih, b_hh), lengths, reverse, self.hidden_size,
                                  variant, tape_rows, dy, ldy, dhn, dcn, dx_out, accumulate, dh0_out, dc0_out,
                                  (g_ih, g_hh, g_bih, g_bhh), variant_grads)


RNN, LSTM, GRU = make_layer_classes(_CompiledLayer, "fastrnn")
