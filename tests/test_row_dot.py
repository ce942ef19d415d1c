"""The few-row product of csrc/row_dot.h (Y = X W^T from W as it lies; the direct steps and the input
projection of calls with few rows) at every vector width the wheel ships: baseline (16 bytes), AVX2 (32) and
AVX-512 (64). The other tests run the one ISA build this CPU dispatches to; this one compiles
tests/native/row_dot_check.cpp per width and checks each output against long double, that a row of X gives
the same bits alone as in a batch, and that nothing past the outputs is written."""

import pathlib
import shutil
import subprocess

import pytest

from _helpers import VECTOR_WIDTH_FLAGS, cpu_runs_vector_width

ROOT = pathlib.Path(__file__).resolve().parent.parent
SOURCE = ROOT / "tests" / "native" / "row_dot_check.cpp"


@pytest.mark.parametrize("vector_bytes", sorted(VECTOR_WIDTH_FLAGS))
def test_row_dot_product(vector_bytes, tmp_path):
    compiler = shutil.which("c++") or shutil.which("g++")
    if compiler is None:
        pytest.skip("no C++ compiler on PATH")
    if not cpu_runs_vector_width(vector_bytes):
        pytest.skip(f"this CPU cannot run the {vector_bytes}-byte build")
    exe = tmp_path / f"row_dot_check_{vector_bytes}"
    # The kernels' flags (CMakeLists.txt): GNU mode, so the compiler fuses multiply-adds as it does there.
    subprocess.run([compiler, "-O2", "-std=gnu++17", f"-I{ROOT / 'csrc'}", f"-DFASTRNN_VEC_BYTES={vector_bytes}",
                    *VECTOR_WIDTH_FLAGS[vector_bytes], str(SOURCE), "-o", str(exe)], check=True, capture_output=True)
    result = subprocess.run([str(exe)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert " 0 mismatched" in result.stdout
