"""The forward's two ways to the input projection x W_ih^T (csrc/layer_forward.h):
fused into each step's items (the default, with four or more rows while W_ih and W_hh fit the cache
together) or one product before the loop (big weights, short sequences, 1-3 rows): row_dot.h's up to
32 rows, then W_ih's panels packed one at a time (AVX-512 build) or OpenBLAS's sgemm (the others).
Small test shapes with four or more rows take the fused way, so here the switch
`_kernels.set_fused_input(False)` forces the other way and the compiled-vs-reference checks run on it;
and both ways must agree, with each still bit-identical across thread counts.
"""
import contextlib

import numpy as np
import pytest

import fastrnn
from fastrnn import _kernels

from _helpers import (MODES, assert_all_close, assert_all_equal, forward_backward, loss_grads, make_layer,
                      make_lengths, num_threads, random_hx, random_x)
from test_compiled_vs_reference import COMBOS, PROJ_CASES, SHAPES, TOL, _compare

DTYPES = (np.float32, np.float64)


@contextlib.contextmanager
def input_projection(fused, panels=True):
    """The forward's input projection fused (True) or one product before the loop (False) inside the
    block, past 32 rows on W_ih's panels (panels=True, AVX-512 build) or by OpenBLAS; the defaults after it."""
    _kernels.set_fused_input(fused)
    _kernels.set_panel_input(panels)
    try:
        yield
    finally:
        _kernels.set_fused_input(True)
        _kernels.set_panel_input(True)


WAYS = {"fused": dict(fused=True), "panels": dict(fused=False), "blas": dict(fused=False, panels=False)}


@pytest.fixture(params=["panels", "blas"])
def gemm_input(request):
    """The input projection as one product before the loop (W_ih's panels, or OpenBLAS), for a test."""
    assert _kernels.fused_input() and _kernels.panel_input()  # the defaults
    with input_projection(**WAYS[request.param]):
        yield


def test_switch_round_trips():
    assert _kernels.fused_input() and _kernels.panel_input()
    with input_projection(False):
        assert not _kernels.fused_input() and _kernels.panel_input()
    with input_projection(False, panels=False):
        assert not _kernels.fused_input() and not _kernels.panel_input()
    assert _kernels.fused_input() and _kernels.panel_input()


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("mode", MODES)
def test_gemm_input_shapes(mode, shape, dtype, gemm_input):
    _compare(mode, dtype, 2, *SHAPES[shape], seed=list(SHAPES).index(shape))


@pytest.mark.parametrize("combo", [c for c in COMBOS if not COMBOS[c].get("eval")])
@pytest.mark.parametrize("mode", MODES)
def test_gemm_input_layer_options(mode, combo, gemm_input):
    _compare(mode, np.float32, 2, 7, 4, 5, 6, seed=100 + list(COMBOS).index(combo), **COMBOS[combo])


@pytest.mark.parametrize("case", list(PROJ_CASES))
def test_gemm_input_lstm_proj_size(case, gemm_input):
    shape, proj, kwargs = PROJ_CASES[case]
    _compare("lstm", np.float64, 2, *shape, seed=list(PROJ_CASES).index(case), proj_size=proj, **kwargs)


def _run_both_ways(mode, dtype, T, B, IN, H, threads, unfused="panels", **kwargs):
    """forward + backward (and a no_grad forward) with the fused input projection and the unfused one
    (WAYS[unfused])."""
    rng = np.random.default_rng(11)
    use_lengths = kwargs.pop("use_lengths", False)
    layer = make_layer(fastrnn, mode, IN, H, dtype=dtype, seed=6, **kwargs)
    x = random_x(rng, layer, T, B)
    hx = random_hx(rng, layer, B)
    lengths = make_lengths(rng, B, T) if use_lengths else None
    dy, dhn = loss_grads(rng, layer, T, B)
    results = []
    for way in ("fused", unfused):
        with input_projection(**WAYS[way]), num_threads(threads):
            out = forward_backward(layer, x, hx, lengths, dy, dhn)
            with fastrnn.no_grad():
                out["y_no_grad"] = np.array(layer.forward(x, hx, lengths)[0])
        results.append(out)
    return results


BOTH_WAYS = {  # (T, B, IN, H, layer kwargs)
    "medium": (12, 24, 40, 70, {}),
    "ragged_bidir": (9, 13, 33, 20, {"bidirectional": True, "use_lengths": True}),
    "stacked": (6, 5, 17, 31, {"num_layers": 2, "batch_first": True}),
    "wide_input": (5, 4, 300, 16, {}),
}


@pytest.mark.parametrize("unfused", ["panels", "blas"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("shape", list(BOTH_WAYS))
@pytest.mark.parametrize("mode", MODES)
def test_fused_and_gemm_input_agree(mode, shape, dtype, unfused):
    T, B, IN, H, kwargs = BOTH_WAYS[shape]
    fused, gemm = _run_both_ways(mode, dtype, T, B, IN, H, 2, unfused, **dict(kwargs))
    assert_all_close(fused, gemm, context=f"{mode} {shape}", **TOL[dtype])
    # the tape the fused forward recorded gives the same inference output as no tape
    np.testing.assert_allclose(fused["y_no_grad"], fused["y"], **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("shape", ["medium", "ragged_bidir"])  # over 32 (valid) rows
@pytest.mark.parametrize("mode", MODES)
def test_panel_input_projection_gives_the_fused_bits(mode, shape, dtype):
    """Past 32 rows the AVX-512 build's unfused projection runs the fused way's micro-kernel on W_ih's panels,
    summing each output in the same order: the same bits, gradients included. The AVX2 and baseline builds
    use OpenBLAS's sgemm there, which agrees to rounding."""
    T, B, IN, H, kwargs = BOTH_WAYS[shape]
    fused, unfused = _run_both_ways(mode, dtype, T, B, IN, H, 2, "panels", **dict(kwargs))
    if _kernels.isa() == "avx512":
        assert_all_equal(unfused, fused, context=f"{mode} {shape}")
    else:
        assert_all_close(fused, unfused, context=f"{mode} {shape}", **TOL[dtype])


@pytest.mark.parametrize("way", list(WAYS))
@pytest.mark.parametrize("mode", MODES)
def test_each_way_bit_identical_across_thread_counts(mode, way):
    T, B, IN, H = 10, 33, 40, 70
    rng = np.random.default_rng(3)
    layer = make_layer(fastrnn, mode, IN, H, dtype=np.float32, seed=8, bidirectional=True)
    x = random_x(rng, layer, T, B)
    hx = random_hx(rng, layer, B)
    lengths = make_lengths(rng, B, T)
    dy, dhn = loss_grads(rng, layer, T, B)
    outs = []
    for n in (1, 2):
        with input_projection(**WAYS[way]), num_threads(n):
            outs.append(forward_backward(layer, x, hx, lengths, dy, dhn))
    assert_all_equal(outs[1], outs[0], context=f"{mode} {way}")
