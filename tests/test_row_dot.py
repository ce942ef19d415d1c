"""The few-row product of csrc/row_dot.h (Y = X W^T from W as it lies; the direct steps and the input
projection of calls with few rows) at every vector width the wheel ships: baseline (16 bytes), AVX2 (32) and
AVX-512 (64). The other tests run the one ISA build this CPU dispatches to; this one compiles
tests/native/row_dot_check.cpp per width and checks each output against long double, that a row of X gives
the same bits alone as in a batch, and that nothing past the outputs is written."""

import pathlib

import pytest

from _helpers import VECTOR_WIDTH_FLAGS, run_native_check

SOURCE = pathlib.Path(__file__).resolve().parent / "native" / "row_dot_check.cpp"


@pytest.mark.parametrize("vector_bytes", sorted(VECTOR_WIDTH_FLAGS))
def test_row_dot_product(vector_bytes, tmp_path):
    # The kernels' flags (CMakeLists.txt): GNU mode, so the compiler fuses multiply-adds as it does there.
    assert " 0 mismatched" in run_native_check(SOURCE, vector_bytes, tmp_path, ["-O2", "-std=gnu++17"])
