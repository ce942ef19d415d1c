"""The float activations of csrc/simd.h (vexp, vsigmoid, vtanh) at every vector width the wheel ships:
baseline (16 bytes), AVX2 (32) and AVX-512 (64; its tanh reads a table of polynomials that
tools/tanh_table.py fits, the others compute tanh from exp). The other tests run the one ISA build this CPU
dispatches to; this one compiles tests/native/activations_dump.cpp per width, with the kernels' flags,
over about a million inputs (a stride through all float bit patterns, and runs around every point where
exp's rounding of x * log2(e) can tie)."""

import pathlib
import subprocess

import numpy as np
import pytest

from _helpers import VECTOR_WIDTH_FLAGS, build_native, cpu_runs_vector_width, native_compiler

ROOT = pathlib.Path(__file__).resolve().parent.parent
SOURCE = ROOT / "tests" / "native" / "activations_dump.cpp"


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    """vector_bytes -> (x, exp, sigmoid, tanh), for the widths this machine can build and run."""
    compiler = native_compiler()
    folder = tmp_path_factory.mktemp("activations")
    results = {}
    for vector_bytes in sorted(VECTOR_WIDTH_FLAGS):
        if not cpu_runs_vector_width(vector_bytes):
            continue
        exe, dump = folder / f"activations_{vector_bytes}", folder / f"activations_{vector_bytes}.bin"
        # The kernels' flags (CMakeLists.txt): GNU mode, so the compiler fuses multiply-adds as it does there.
        build_native(compiler, SOURCE, vector_bytes, exe, ["-O3", "-std=gnu++17", "-fno-math-errno"])
        subprocess.run([str(exe), str(dump)], check=True, capture_output=True)
        values = np.fromfile(dump, np.float32)
        results[vector_bytes] = values.reshape(4, values.size // 4)
    return results


@pytest.mark.parametrize("vector_bytes", sorted(VECTOR_WIDTH_FLAGS))
def test_activations_are_accurate(outputs, vector_bytes):
    if vector_bytes not in outputs:
        pytest.skip(f"this CPU cannot run the {vector_bytes}-byte build")
    with np.errstate(invalid="ignore"):  # (the inputs include signalling NaNs)
        x, got_exp, got_sigmoid, got_tanh = outputs[vector_bytes].astype(np.float64)
    finite = np.isfinite(x)
    with np.errstate(over="ignore"):
        expected = {"exp": np.exp(x), "sigmoid": 1 / (1 + np.exp(-x)), "tanh": np.tanh(x)}
    for name, got in (("exp", got_exp), ("sigmoid", got_sigmoid), ("tanh", got_tanh)):
        want = expected[name]
        # Normal float32 results, and exp inside its clamp.
        checked = finite & (np.abs(want) > np.finfo(np.float32).tiny) & (np.abs(want) < 1e38)
        ulps = np.abs(got[checked] - want[checked]) / np.spacing(np.abs(want[checked]).astype(np.float32))
        assert ulps.max() <= 2.0, f"{name}: {ulps.max():.2f} ulp at x = {x[checked][np.argmax(ulps)]!r}"
        assert np.isnan(got[np.isnan(x)]).all(), f"{name} does not propagate NaN"
    inf = np.isinf(x)
    assert np.array_equal(got_tanh[inf], np.sign(x[inf]))
    assert (np.abs(got_tanh[~np.isnan(x)]) <= 1).all()
    tiny = np.abs(x) < 2.0 ** -13  # tanh(x) rounds to x there (subnormals included)
    assert np.array_equal(got_tanh[tiny], x[tiny])
    assert np.array_equal(got_sigmoid[inf & (x > 0)], np.ones(np.count_nonzero(inf & (x > 0))))
    assert (got_sigmoid[inf & (x < 0)] < 1e-37).all()
    assert np.isfinite(got_exp[inf]).all()  # exp clamps its argument: no inf reaches a cell


def test_avx2_and_avx512_give_the_same_bits_for_exp_and_sigmoid(outputs):
    """Both fuse multiply-adds and round n = x * log2(e) by one instruction; AVX-512's scalef by 2^n must
    give what the AVX2 build's exponent bits give. (tanh is another function on each: AVX-512 reads a table
    of polynomials, AVX2 goes through exp; each is held to float64 above.)"""
    if 32 not in outputs or 64 not in outputs:
        pytest.skip("this CPU cannot run both the AVX2 and the AVX-512 build")
    avx2, avx512 = outputs[32], outputs[64]
    assert np.array_equal(avx2[0], avx512[0], equal_nan=True)  # the same inputs
    for k, name in ((1, "exp"), (2, "sigmoid")):
        same = (avx2[k] == avx512[k]) | (np.isnan(avx2[k]) & np.isnan(avx512[k]))
        assert same.all(), f"{name} differs at {np.count_nonzero(~same)} inputs, e.g. x = {avx2[0][~same][0]!r}"
