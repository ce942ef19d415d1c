"""The backward's products after the loop (csrc/weight_gradient.h): the weight gradients dG^T x, dG^T h
(and dh^T h_raw with proj_size) and dx = dG W_ih, on the kernels' own micro-kernel (AVX-512 build,
float32: the default) or OpenBLAS's sgemm (`_kernels.set_panel_gradients(False)`, and every other build).
Both must agree with each other to rounding, and the micro-kernel way must stay bit-identical across
thread counts. The shapes put row counts across the 128-row chunks, gate widths off the 6-row blocks and
input/state widths off the 64-column blocks, all past the size from which the micro-kernel is used, and
some big enough for the products to be threaded.
"""
import contextlib

import numpy as np
import pytest

import fastrnn
from fastrnn import _kernels

from _helpers import (MODES, assert_all_close, assert_all_equal, forward_backward, loss_grads, make_layer,
                      make_lengths, num_threads, random_hx, random_x)
from test_compiled_vs_reference import TOL

SHAPES = {  # (T, B, IN, H, layer kwargs); every product past csrc/weight_gradient.h's 2e7 flops
    "chunks": (45, 20, 100, 130, {}),             # 900 rows: seven chunks of 128 and a part
    "threaded": (20, 40, 130, 120, {}),           # products past the threading threshold
    "ragged_bidir": (40, 40, 100, 140, {"bidirectional": True, "use_lengths": True}),
    "stacked_batch_first": (30, 30, 70, 150, {"num_layers": 2, "batch_first": True}),
    "big_c": (20, 40, 300, 200, {}),              # LSTM/GRU dW over half the L2: chunks of 512 rows (800 = 512 + 288)
    "big_w": (10, 20, 70, 700, {}),               # dx: W's rows summed in chunks of 1024 (GRU: one straddles dr|dz and dn)
    "one_input": (40, 6, 1, 8, {}),               # too small (and one input column): OpenBLAS either way
}


@contextlib.contextmanager
def panel_gradients(enabled):
    _kernels.set_panel_gradients(enabled)
    try:
        yield
    finally:
        _kernels.set_panel_gradients(True)


def test_switch_round_trips():
    assert _kernels.panel_gradients()  # the default
    with panel_gradients(False):
        assert not _kernels.panel_gradients()
    assert _kernels.panel_gradients()


def _problem(mode, T, B, IN, H, seed, **kwargs):
    rng = np.random.default_rng(seed)
    use_lengths = kwargs.pop("use_lengths", False)
    layer = make_layer(fastrnn, mode, IN, H, dtype=np.float32, seed=seed, **kwargs)
    x = random_x(rng, layer, T, B)
    hx = random_hx(rng, layer, B)
    lengths = make_lengths(rng, B, T) if use_lengths else None
    dy, dhn = loss_grads(rng, layer, T, B)
    return layer, (x, hx, lengths, dy, dhn)


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("mode", MODES)
def test_micro_kernel_and_blas_gradients_agree(mode, shape):
    T, B, IN, H, kwargs = SHAPES[shape]
    layer, args = _problem(mode, T, B, IN, H, seed=list(SHAPES).index(shape), **dict(kwargs))
    outs = {}
    for enabled in (True, False):
        with panel_gradients(enabled), num_threads(2):
            outs[enabled] = forward_backward(layer, *args)
    assert_all_close(outs[True], outs[False], context=f"{mode} {shape}", **TOL[np.float32])


@pytest.mark.parametrize("proj", [5, 70])
def test_lstm_proj_size_gradients_agree(proj):
    layer, args = _problem("lstm", 50, 30, 70, 100, seed=proj, proj_size=proj)
    outs = {}
    for enabled in (True, False):
        with panel_gradients(enabled):
            outs[enabled] = forward_backward(layer, *args)
    assert_all_close(outs[True], outs[False], context=f"proj {proj}", **TOL[np.float32])


@pytest.mark.parametrize("mode", MODES)
def test_micro_kernel_gradients_bit_identical_across_thread_counts(mode):
    layer, args = _problem(mode, 40, 30, 130, 120, seed=4, bidirectional=True, use_lengths=True)
    outs = []
    for n in (1, 2, 3):
        with num_threads(n):
            outs.append(forward_backward(layer, *args))
    assert_all_equal(outs[1], outs[0], context=f"{mode} 2 threads")
    assert_all_equal(outs[2], outs[0], context=f"{mode} 3 threads")


def test_gradients_accumulate_across_backward_calls():
    """dW += dG^T x adds to what the parameter gradients already hold (no zero_grad between calls)."""
    layer, (x, hx, lengths, dy, dhn) = _problem("gru", 40, 25, 70, 100, seed=9)
    layer.zero_grad()
    layer.forward(x, hx, lengths)
    layer.backward(dy, dhn)
    once = {k: v.copy() for k, v in layer.grads.items()}
    layer.forward(x, hx, lengths)
    layer.backward(dy, dhn)
    for k, v in layer.grads.items():
        np.testing.assert_allclose(v, 2 * once[k], rtol=1e-5, atol=1e-6 * max(1.0, np.abs(once[k]).max()), err_msg=k)
