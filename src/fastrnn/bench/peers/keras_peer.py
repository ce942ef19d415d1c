"""Keras 3 on TensorFlow, when importable, with the same weights converted to Keras's layout.

Keras takes batch-major input (B, T, D); the transposed copy is made once, outside the timing.
TensorFlow fixes its thread pools when its runtime starts, so this peer runs at the first thread
count it is given and is unavailable at any other (run `fastrnn bench --threads N` once per N to
time it at each).
"""
import os

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's C++ log (its graph optimiser's non-fatal errors too)
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
import tensorflow as tf  # noqa: E402
import keras  # noqa: E402

tf.get_logger().setLevel("ERROR")  # one tf.function per case reads as "retracing" to TensorFlow

from . import Peer, Unavailable  # noqa: E402

_threads = None  # the count TensorFlow was started with


def _configure_threads(n):
    global _threads
    if _threads is None:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(n)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError as exc:  # the runtime was already started elsewhere
            raise Unavailable(f"TensorFlow's threads are already fixed ({exc})") from None
        _threads = n
    elif n != _threads:
        raise Unavailable(f"TensorFlow's threads are fixed at {_threads} for this process", quiet=True)


def keras_weights(case, weights):
    """torch-keyed weights -> the layer's [kernel, recurrent_kernel, bias]."""
    w_ih, w_hh = weights["weight_ih_l0"], weights["weight_hh_l0"]
    b_ih, b_hh = weights["bias_ih_l0"], weights["bias_hh_l0"]
    if case.cell == "gru":  # torch's rows [r, z, n] -> Keras's [z, r, h]; reset_after keeps two biases
        H = case.H
        perm = np.r_[H:2 * H, 0:H, 2 * H:3 * H]
        return [w_ih[perm].T.copy(), w_hh[perm].T.copy(), np.stack([b_ih[perm], b_hh[perm]])]
    # RNN and LSTM ([i, f, g, o] is Keras's [i, f, c, o]) have one bias: the sum of torch's two
    return [w_ih.T.copy(), w_hh.T.copy(), b_ih + b_hh]


class KerasPeer(Peer):
    name, label = "keras", "Keras"

    def __init__(self, case, work):
        super().__init__(case, work)
        self.built = False

    def _build(self):
        case, work = self.case, self.work
        kwargs = dict(return_sequences=True, return_state=True)
        if case.cell.startswith("rnn"):
            layer = keras.layers.SimpleRNN(case.H, activation="relu" if case.cell == "rnn_relu" else "tanh", **kwargs)
        elif case.cell == "lstm":
            layer = keras.layers.LSTM(case.H, **kwargs)
        else:
            layer = keras.layers.GRU(case.H, reset_after=True, **kwargs)
        layer.build((case.B, case.T, case.D))
        layer.set_weights(keras_weights(case, work.weights))
        self.layer = layer
        self.x = tf.constant(np.ascontiguousarray(work.x.transpose(1, 0, 2)))
        self.mask = None
        if work.lengths is not None:
            self.mask = tf.constant(np.arange(case.T)[None, :] < work.lengths[:, None])
        self.state0 = self._initial_state()
        self.state = self.state0
        self._infer_fn = tf.function(self._infer_graph)
        self._train_fn = tf.function(self._train_graph)
        self.built = True

    def _initial_state(self):
        states = [tf.constant(self.work.h0[0])]
        if self.case.cell == "lstm":
            states.append(tf.constant(self.work.c0[0]))
        return states

    def _infer_graph(self, x, states):
        outs = self.layer(x, initial_state=states, mask=self.mask)
        return outs[0], outs[1:]

    def _train_graph(self, x, states):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y, new_states = self._infer_graph(x, states)
            # Keras repeats the last output past a sequence's end; torch and fastrnn output zeros there
            y_masked = y if self.mask is None else y * tf.cast(self.mask, y.dtype)[:, :, None]
            loss = tf.reduce_sum(y_masked)  # its gradient wrt y is dy = ones
        # all gradients are returned, so that tf.function cannot prune the weight gradients away
        grads = tape.gradient(loss, [x] + list(self.layer.trainable_variables))
        return y_masked, new_states, grads

    def set_threads(self, n):
        _configure_threads(n)
        if not self.built:
            self._build()

    def run(self):
        if self.case.mode == "training":
            return self._train_fn(self.x, self.state0)
        y, states = self._infer_fn(self.x, self.state)
        if self.case.kind == "stream":
            self.state = list(states)
        return y

    def outputs(self):
        self.state = self.state0
        if self.case.mode == "training":
            y, states, grads = self._train_fn(self.x, self.state0)
            dx = grads[0]
        else:
            y, states = self._infer_fn(self.x, self.state0)
            if self.mask is not None:
                y = y * tf.cast(self.mask, y.dtype)[:, :, None]
        out = {"y": np.asarray(y).transpose(1, 0, 2), "hn": np.asarray(states[0])[None]}
        if self.case.cell == "lstm":
            out["cn"] = np.asarray(states[1])[None]
        if self.case.mode == "training":
            out["dx"] = np.asarray(dx).transpose(1, 0, 2)
        return out
