"""The weight packing of csrc/recurrent_gemm.h (pack_row_panels, a transpose by register tiles, and
pack_column_panels, a copy by vectors) at every vector width the wheel ships: baseline (16 bytes), AVX2
(32) and AVX-512 (64). The other tests run the one ISA build this CPU dispatches to; this one compiles
tests/native/pack_panels_check.cpp per width and checks every panel element against the documented
layout; and the one-pass pair of panel products against the products alone."""

import pathlib

import pytest

from _helpers import VECTOR_WIDTH_FLAGS, run_native_check

SOURCE = pathlib.Path(__file__).resolve().parent / "native" / "pack_panels_check.cpp"


@pytest.mark.parametrize("vector_bytes", sorted(VECTOR_WIDTH_FLAGS))
def test_packed_panels_match_layout(vector_bytes, tmp_path):
    assert " 0 mismatched" in run_native_check(SOURCE, vector_bytes, tmp_path, ["-O2", "-std=c++17"])


PAIR_SOURCE = pathlib.Path(__file__).resolve().parent / "native" / "panel_pair_check.cpp"


@pytest.mark.parametrize("vector_bytes", sorted(VECTOR_WIDTH_FLAGS))
def test_panel_product_pair_gives_each_products_bits(vector_bytes, tmp_path):
    """The snapshot's fused streaming step runs x W_ih^T and h W_hh^T in one pass over k
    (panel_product_pair); each output must keep the bits panel_product gives it alone. GNU mode, as the
    kernels are built (CMakeLists.txt), so multiply-adds are contracted as they are there."""
    assert " 0 mismatched" in run_native_check(PAIR_SOURCE, vector_bytes, tmp_path, ["-O2", "-std=gnu++17"])
