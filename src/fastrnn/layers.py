"""The compiled layers: fastrnn.RNN, fastrnn.LSTM, fastrnn.GRU.

Each direction of each layer is one call into the kernels (the whole time loop in C++, GIL released);
this file only allocates the outputs and the tape and hands them over.
"""
import numpy as np

from . import _kernels
from . import _validation as V
from ._grad_mode import _state as _grad_state
from ._layer import RecurrentLayer, _Tape, make_layer_classes

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


def _with_row_stride(view):
    """(view, its row stride), or a C-contiguous copy and its width when the kernels cannot address it."""
    ld = _row_stride(view)
    if ld is None:
        view = np.ascontiguousarray(view)
        ld = view.shape[2]
    return view, ld


def _exact(arr, shape, dtype):
    """arr is already what the general path's state check would make of it, unchanged: an ndarray of
    exactly this shape and dtype, C-contiguous."""
    return type(arr) is np.ndarray and arr.dtype == dtype and arr.shape == shape and arr.flags.c_contiguous


class _CompiledLayer(_kernels.LayerCall, RecurrentLayer):
    _skips_input_grad = True  # the backward kernel takes dx = NULL
    _lock_type = _kernels.LayerLock  # reentrant like threading.RLock; the call in C takes it without a Python call
    # an inference snapshot's weights packed once (fastrnn.freeze): id(w_hh) -> (packed W_ih, packed W_hh)
    _packed = None

    def _packed_weights(self, w_hh):
        """(packed W_ih, packed W_hh) of the direction whose W_hh this is, for an inference snapshot; None
        for a live layer (the kernels pack on each call)."""
        return None if self._packed is None else self._packed[id(w_hh)]

    @property
    def _accepts_tokens(self):
        return not self.variant

    def _forward_direction(self, x, h0, c0, weights, lengths, reverse, y_out, hn_out, cn_out, keep_tape,
                           variant=None, token_table=None):
        if variant is not None:
            return self._variant_forward_direction(x, h0, c0, weights, lengths, reverse, y_out, hn_out, cn_out,
                                                   keep_tape, variant)
        ldy = _row_stride(y_out)
        assert ldy is not None and x.flags.c_contiguous and (x.dtype == self.dtype or token_table is not None)
        return self._run_direction(x, h0, c0, weights, lengths, reverse, y_out, ldy, hn_out, cn_out, keep_tape,
                                   token_table)

    def _run_direction(self, x, h0, c0, weights, lengths, reverse, y_out, ldy, hn_out, cn_out, keep_tape,
                       token_table=None):
        """_forward_direction once y_out's row stride ldy is known and x checked (C-contiguous, layer dtype).
        With token_table, x is the (T, B) int64 token ids (_forward_embedded)."""
        w_ih, w_hh, b_ih, b_hh, w_hr = weights  # checked when assigned (_layer._Arrays): contiguous, right dtype
        T, B = x.shape[:2]
        H, P = self.hidden_size, self.output_size
        gates = h_prev = aux = None
        if keep_tape:  # the kernels keep only valid (t, b) rows, packed (see csrc/loop_support.h)
            rows = T * B if lengths is None else int(lengths.sum())
            empty = self._tape_pool.empty
            gates = empty((rows, self.gate_size), self.dtype)
            h_prev = empty((rows, P), self.dtype)
            aux_width = _AUX_WIDTH[self._mode]
            aux = empty((rows, aux_width * H), self.dtype) if aux_width else None
        _kernels.forward(self._mode, x, h0, c0, w_ih, w_hh, w_hr, b_ih, b_hh, lengths, reverse,
                         H, y_out, ldy, hn_out, cn_out, gates, h_prev, aux, token_table, self._packed_weights(w_hh))
        if not keep_tape:
            return None
        # backward must see the weights as they are now, whatever the caller changes in between (torch
        # raises in that case; we keep private copies, cheap next to the step's work; x is already ours)
        return (x, w_ih.copy(), w_hh.copy(), None if w_hr is None else w_hr.copy(), lengths, reverse,
                gates, h_prev, aux)

    # ------------------------------------------------------------- fast path (streaming steps, issue 4)
    def _build_plan(self):
        """What _fast_forward needs that does not change between calls: options, sizes and, per layer and
        direction, (state index, weight keys, reverse, first column of y). Keys only: the live arrays are
        read on each call. Rebuilt whenever one of the attributes it comes from is assigned (_layer._DropsPlan)."""
        if self.variant:
            return (False,)
        D, P = self.num_directions, self.output_size
        widest = max(self.gate_size, self.input_size, P * D)
        # the largest T*B that _time_major_input's check_blas_size accepts (0: none, let the general path say so)
        max_rows = 0 if widest > V.BLAS_INT_MAX else min(V.BLAS_INT_MAX, 2**62 // widest)
        layers = tuple(tuple((layer * D + d, self._weight_keys[layer, d], bool(d), d * P) for d in range(D))
                       for layer in range(self.num_layers))
        single = layers[0][0][1] if len(layers) == 1 and D == 1 else None  # the keys of the only direction
        # the streaming step in C (time-major, no projection)
        stream = None
        if single is not None and single[4] is None and not self.batch_first:
            packed = weights = None
            if self._packed is not None:  # an inference snapshot's: its weights never change
                packed = self._packed_weights(self.params[single[1]])
                weights = tuple(None if k is None else self.params[k] for k in single[:4])
            stream = _kernels.StreamStep(self._mode, self.dtype, self.input_size, self.hidden_size, max_rows,
                                         single[:4], packed, weights)
        return (True, self.dtype, self.batch_first, self.input_size, max_rows, self.num_layers * D, P,
                self.hidden_size, D, self._mode == "lstm", layers, single, stream)

    def _fast_forward(self, x, hx):
        """RecurrentLayer._forward for x a C-contiguous ndarray of the layer's dtype and hx None or ndarray(s)
        of exactly the state's shape, dtype and layout: the same checks, no conversions. Returns None
        (the general path then runs, and raises what it raises) for anything else."""
        plan = self._plan
        if plan is None:
            plan = self._plan = self._build_plan()
            if plan[0] and type(self) in _OWN_CLASSES:  # a user's subclass may override forward: no shortcut
                self._shortcut = plan[-1]
        if not plan[0]:  # a variant layer
            return None
        _, dt, batch_first, input_size, max_rows, n_states, P, H, D, lstm, layers, single, stream = plan
        if stream is not None and not _grad_state.enabled:
            out = stream.run(x, hx, self.params)
            if out is not None:
                self._tape = None
                return out
        if x.dtype != dt or x.ndim != 3:
            return None
        if batch_first:
            x = x.transpose(1, 0, 2)
        T, B, I = x.shape
        if I != input_size or not T or not B or T * B > max_rows or not x.flags.c_contiguous:
            return None
        h_shape = (n_states, B, P)
        if hx is None:
            h0_all = np.zeros(h_shape, dt)
            c0_all = np.zeros((n_states, B, H), dt) if lstm else None
        elif lstm:
            if type(hx) is not tuple or len(hx) != 2:
                return None
            h0_all, c0_all = hx
            if not (_exact(h0_all, h_shape, dt) and _exact(c0_all, (n_states, B, H), dt)):
                return None
        elif _exact(hx, h_shape, dt):
            h0_all, c0_all = hx, None
        else:
            return None

        keep_tape = _grad_state.enabled
        params = self.params
        hn_all = np.empty(h_shape, dt)
        cn_all = np.empty((n_states, B, H), dt) if lstm else None
        if single is not None and not keep_tape:  # one layer, one direction, inference: the streaming step
            k_ih, k_hh, k_bih, k_bhh, k_hr = single
            y = np.empty((T, B, P), dt)
            # the kernels read only the data pointers of states: the (1, B, P) arrays serve as (B, P)
            _kernels.forward(self._mode, x, h0_all, c0_all, params[k_ih], params[k_hh],
                             None if k_hr is None else params[k_hr], None if k_bih is None else params[k_bih],
                             None if k_bhh is None else params[k_bhh], None, False, H, y, P, hn_all, cn_all,
                             None, None, None, None, self._packed_weights(params[k_hh]))
            self._tape = None
            return (y.transpose(1, 0, 2) if batch_first else y), ((hn_all, cn_all) if lstm else hn_all)

        if keep_tape:  # a private x, as in the general path (x is the caller's array here)
            x = x.copy()
        tape = _Tape(None, x.shape, batch_first, hx is not None) if keep_tape else None
        mode, width = self._mode, P * D
        layer_input = x
        for layer, directions in enumerate(layers):
            mask = None
            if layer > 0 and self.training and self.dropout > 0:  # same draws, same order as the general path
                keep = 1.0 - self.dropout
                mask = (self._dropout_rng.random(layer_input.shape) < keep).astype(dt) / dt.type(keep)
                layer_input = layer_input * mask
            y = np.empty((T, B, width), dt)
            direction_tapes = []
            for idx, keys, reverse, col in directions:
                k_ih, k_hh, k_bih, k_bhh, k_hr = keys
                weights = (params[k_ih], params[k_hh], None if k_bih is None else params[k_bih],
                           None if k_bhh is None else params[k_bhh], None if k_hr is None else params[k_hr])
                h0, hn = h0_all[idx], hn_all[idx]
                c0, cn = (c0_all[idx], cn_all[idx]) if lstm else (None, None)
                y_out = y if D == 1 else y[:, :, col:col + P]
                if keep_tape:
                    direction_tapes.append(self._run_direction(layer_input, h0, c0, weights, None, reverse, y_out,
                                                               width, hn, cn, True))
                else:
                    w_ih, w_hh, b_ih, b_hh, w_hr = weights
                    _kernels.forward(mode, layer_input, h0, c0, w_ih, w_hh, w_hr, b_ih, b_hh, None, reverse,
                                     H, y_out, width, hn, cn, None, None, None, None, self._packed_weights(w_hh))
            if tape is not None:
                tape.layers.append(direction_tapes)
                if layer > 0:
                    tape.dropout_masks.append(mask)
            layer_input = y
        self._tape = tape
        y = layer_input.transpose(1, 0, 2) if batch_first else layer_input
        return y, ((hn_all, cn_all) if lstm else hn_all)

    def _tape_buffers(self, direction_tape):
        """gates, h_prev, aux (default path) or the variant tape: written in full by every forward."""
        if len(direction_tape) == 9 and isinstance(direction_tape[7], dict):  # the variant tape
            return (direction_tape[8],)
        return tuple(buf for buf in direction_tape[6:9] if buf is not None)

    # ------------------------------------------------------------- token input (_forward_embedded)
    def _token_table(self, embedding, direction):
        """(V, G*H): embedding W_ih^T for layer 0, one direction: each token's input projection."""
        w_ih = self.params[self._weight_keys[0, direction][0]]
        table = np.empty((embedding.shape[0], self.gate_size), self.dtype)
        _kernels.gemm(embedding, w_ih, table, False, True)
        return table

    def _backward_embedded(self, tape, dy, dhn_all, dcn_all, dh0_all, dc0_all, input_grad):
        """Layer 0's backward for token input: each direction's kernel adds its rows' input-projection
        gradients into a per-token table D (V, G*H); then dW_ih += D^T embedding and, when input_grad,
        d_embedding = sum over directions of D W_ih. Returns d_embedding (V, input_size) or None."""
        H, lstm = self.output_size, dcn_all is not None
        embedding = tape.embedding
        d_embedding = np.zeros(embedding.shape, self.dtype) if input_grad else None
        for d in range(self.num_directions):
            d_table = np.zeros((embedding.shape[0], self.gate_size), self.dtype)
            grads = self._weights(self.grads, 0, d)
            direction_tape = tape.layers[0][d]
            self._backward_direction(direction_tape, dy[:, :, d * H:(d + 1) * H], dhn_all[d],
                                     dcn_all[d] if lstm else None, grads, None, False, dh0_all[d],
                                     dc0_all[d] if lstm else None, d_table=d_table)
            _kernels.gemm(d_table, embedding, grads[0], True, False, 1.0, 1.0)
            if input_grad:  # the forward's W_ih (the tape's private copy)
                _kernels.gemm(d_table, direction_tape[1], d_embedding, False, False, 1.0, 1.0)
        return d_embedding

    def _backward_direction(self, tape, dy, dhn, dcn, grads, dx_out, accumulate, dh0_out, dc0_out,
                            variant_grads=None, d_table=None):
        if variant_grads is not None:
            return self._variant_backward_direction(tape, dy, dhn, dcn, grads, dx_out, accumulate, dh0_out, dc0_out,
                                                    variant_grads)
        x, w_ih, w_hh, w_hr, lengths, reverse, gates, h_prev, aux = tape
        g_ih, g_hh, g_bih, g_bhh, g_hr = grads
        dy, ldy = _with_row_stride(dy)
        _kernels.backward(self._mode, reverse, lengths, x, w_ih, w_hh, w_hr, self.hidden_size, dy, ldy, dhn, dcn,
                          gates, h_prev, aux, dx_out, accumulate, dh0_out, dc0_out, g_ih, g_hh, g_hr, g_bih, g_bhh,
                          d_table)


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
            tape = self._tape_pool.empty((T * B, width), self.dtype)
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
        dy, ldy = _with_row_stride(dy)
        # the biases' values are not needed by backward, only whether they exist (b_ih/b_hh may be None)
        _kernels.variant_backward(self._mode, x, (w_ih, w_hh, b_ih, b_hh), lengths, reverse, self.hidden_size,
                                  variant, tape_rows, dy, ldy, dhn, dcn, dx_out, accumulate, dh0_out, dc0_out,
                                  (g_ih, g_hh, g_bih, g_bhh), variant_grads)


RNN, LSTM, GRU = make_layer_classes(_CompiledLayer, "fastrnn")
_OWN_CLASSES = (RNN, LSTM, GRU)  # whose forward is the library's: their calls may take the shortcut in C
