"""GEMM ablation: fastrnn's fused recurrent step against the library alternative on the same shapes.

Per (cell, shape, T), inference forward, five implementations (pytest-benchmark group = one row):
    fastrnn      the compiled layer (packed W_hh, the step's matmul fused with the gates; the input
                 projection fused into the steps too while W_ih and W_hh fit the cache together)
    fastrnn_panel_input the same layer with the input projection unfused, before the loop: row_dot.h's
                 products up to 32 rows, then (AVX-512 build) W_ih's panels packed one at a time and the
                 steps' micro-kernel; OpenBLAS's sgemm on the other builds
    fastrnn_gemm_input  the same layer with the input projection as one OpenBLAS GEMM before the loop
                 (row_dot.h's products up to 32 rows)
    blas_numpy   one BLAS GEMM for the input projection, then per step a BLAS GEMM h W_hh^T and the
                 gates as in-place NumPy ufuncs (benchmarks/_unfused.py; checked equal to fastrnn)
    blas_gemm    the same GEMMs without the gate math: the floor of any per-step-BLAS design
T = 1 shows the per-call overhead (the streaming case), larger T the per-step cost.
test_weight_gradients times a training step with the backward's weight gradients and dx on the kernels'
own micro-kernel (fastrnn) and on OpenBLAS's sgemm (fastrnn_blas_gradients). Both sides get
the same thread count (fastrnn's, and NumPy's BLAS; NumPy's ufuncs are single-threaded).
"""
import numpy as np
import pytest

import fastrnn
from fastrnn import _kernels
from fastrnn.bench import machine
from fastrnn.bench.grid import Case

from _unfused import UnfusedForward

SHAPES = {"medium": (64, 128, 256), "large": (64, 512, 512), "db-b1": (1, 512, 512), "db-b4": (4, 512, 512)}
STEPS = (1, 10, 100)


def _layer(cell, D, H):
    if cell == "lstm":
        return fastrnn.LSTM(D, H, seed=0)
    if cell == "gru":
        return fastrnn.GRU(D, H, seed=0)
    return fastrnn.RNN(D, H, seed=0)


@pytest.fixture
def numpy_threads(threads):
    previous = machine.set_numpy_blas_threads(threads)
    yield
    if previous is not None:
        machine.set_numpy_blas_threads(previous)


@pytest.mark.parametrize("impl", ["fastrnn", "fastrnn_panel_input", "fastrnn_gemm_input", "blas_numpy", "blas_gemm"])
@pytest.mark.parametrize("T", STEPS)
@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_recurrent_step(benchmark, cell, shape, T, impl, threads, numpy_threads, rng):
    B, D, H = SHAPES[shape]
    layer = _layer(cell, D, H)
    fastrnn.set_num_threads(threads)
    x = rng.uniform(-1, 1, (T, B, D)).astype(np.float32)
    h0 = np.zeros((1, B, H), np.float32)
    hx = (h0, h0) if cell == "lstm" else h0
    unfused = UnfusedForward(cell, layer.params, T, B, D, H, gemm_only=impl == "blas_gemm")

    with fastrnn.no_grad():  # the comparison is only fair if both compute the same thing
        y_ref, _ = layer(x, hx)
    if impl == "blas_numpy":
        np.testing.assert_allclose(unfused(x, h0[0], h0[0] if cell == "lstm" else None)[0], y_ref, atol=1e-4)

    def run_fastrnn():
        with fastrnn.no_grad():
            return layer(x, hx)

    def unfused_input(panels):
        def run():
            _kernels.set_fused_input(False)
            _kernels.set_panel_input(panels)
            try:
                return run_fastrnn()
            finally:
                _kernels.set_fused_input(True)
                _kernels.set_panel_input(True)
        return run

    c0 = h0[0] if cell == "lstm" else None
    run = {"fastrnn": run_fastrnn, "fastrnn_panel_input": unfused_input(True),
           "fastrnn_gemm_input": unfused_input(False)}.get(impl, lambda: unfused(x, h0[0], c0))
    benchmark.group = f"ablation {cell} {shape} (B,D,H)={SHAPES[shape]} T={T} t={threads}"
    flops = Case(cell, "inference", shape, T, B, D, H).flops
    benchmark.extra_info["flops"] = flops
    benchmark(run)
    if benchmark.stats:  # (None under --benchmark-disable)
        benchmark.extra_info["gflops"] = flops / benchmark.stats.stats.median / 1e9


# The backward's products after the loop (csrc/weight_gradient.h): dW_ih, dW_hh and dx on the kernels' own
# micro-kernel (the default: AVX-512 build, float32) against OpenBLAS's sgemm, in a whole training step
# (forward + backward), with the same thread count. The other builds use sgemm either way.
@pytest.mark.parametrize("impl", ["fastrnn", "fastrnn_blas_gradients"])
@pytest.mark.parametrize("shape", ["medium", "large"])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_weight_gradients(benchmark, cell, shape, impl, threads, rng):
    B, D, H = SHAPES[shape]
    T = 100 if shape == "medium" else 50
    layer = _layer(cell, D, H)
    fastrnn.set_num_threads(threads)
    x = rng.uniform(-1, 1, (T, B, D)).astype(np.float32)
    dy = rng.uniform(-1, 1, (T, B, H)).astype(np.float32)

    def step():
        _kernels.set_panel_gradients(impl == "fastrnn")
        try:
            layer.zero_grad()
            layer(x)
            return layer.backward(dy)
        finally:
            _kernels.set_panel_gradients(True)

    benchmark.group = f"weight gradients {cell} {shape} (T,B,D,H)=({T},{B},{D},{H}) t={threads}"
    flops = Case(cell, "training", shape, T, B, D, H).flops
    benchmark.extra_info["flops"] = flops
    benchmark(step)
    if benchmark.stats:
        benchmark.extra_info["gflops"] = flops / benchmark.stats.stats.median / 1e9
