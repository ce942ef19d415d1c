"""The weight packing of csrc/recurrent_gemm.h (pack_row_panels, a transpose by register tiles, and
pack_column_panels, a copy by vectors) at every vector width the wheel ships: baseline (16 bytes), AVX2
(32) and AVX-512 (64). The other tests run the one ISA build this CPU dispatches to; this one compiles
tests/native/pack_panels_check.cpp per width and checks every panel element against the documented
layout."""

import pathlib
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
SOURCE = ROOT / "tests" / "native" / "pack_panels_check.cpp"
FLAGS = {16: [], 32: ["-mavx2", "-mfma"], 64: ["-mavx512f", "-mavx512vl", "-mavx512dq", "-mavx512bw", "-mavx2", "-mfma"]}


def _cpu_runs(vector_bytes):
    cpuinfo = pathlib.Path("/proc/cpuinfo")
    flags = cpuinfo.read_text() if cpuinfo.exists() else ""
    return {16: True, 32: " avx2 " in flags and " fma " in flags, 64: " avx512bw " in flags}[vector_bytes]


@pytest.mark.parametrize("vector_bytes", sorted(FLAGS))
def test_packed_panels_match_layout(vector_bytes, tmp_path):
    compiler = shutil.which("c++") or shutil.which("g++")
    if compiler is None:
        pytest.skip("no C++ compiler on PATH")
    if not _cpu_runs(vector_bytes):
        pytest.skip(f"this CPU cannot run the {vector_bytes}-byte build")
    exe = tmp_path / f"pack_check_{vector_bytes}"
    subprocess.run([compiler, "-O2", "-std=c++17", f"-I{ROOT / 'csrc'}", f"-DFASTRNN_VEC_BYTES={vector_bytes}",
                    *FLAGS[vector_bytes], str(SOURCE), "-o", str(exe)], check=True, capture_output=True)
    result = subprocess.run([str(exe)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 mismatched" in result.stdout
