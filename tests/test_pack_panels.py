"""The weight packing of csrc/recurrent_gemm.h (pack_row_panels, a transpose by register tiles, and
pack_column_panels, a copy by vectors) at every vector width the wheel ships: baseline (16 bytes), AVX2
(32) and AVX-512 (64). The other tests run the one ISA build this CPU dispatches to; this one compiles
tests/native/pack_panels_check.cpp per width and checks every panel element against the documented
layout."""

import pathlib

import pytest

from _helpers import VECTOR_WIDTH_FLAGS, run_native_check

SOURCE = pathlib.Path(__file__).resolve().parent / "native" / "pack_panels_check.cpp"


@pytest.mark.parametrize("vector_bytes", sorted(VECTOR_WIDTH_FLAGS))
def test_packed_panels_match_layout(vector_bytes, tmp_path):
    assert "0 mismatched" in run_native_check(SOURCE, vector_bytes, tmp_path, ["-O2", "-std=c++17"])
