"""pytest-benchmark suite over the `fastrnn bench` grid: `pytest benchmarks/ --benchmark-only`.

Not part of CI (which runs `pytest tests`; pyproject's testpaths is tests/). Options:
    --bench-threads 1,2   thread counts (default 1,2)
    --bench-quick         the quick grid of `fastrnn bench --quick`
    --bench-rows PATTERN  like `fastrnn bench --rows`, comma-separated glob patterns
Run as `env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE pytest benchmarks/ --benchmark-only` on a
machine that sets those (they halve OpenBLAS's speed).
"""
import numpy as np
import pytest

import fastrnn
from fastrnn.bench import grid, machine


def pytest_addoption(parser):
    group = parser.getgroup("fastrnn benchmarks")
    group.addoption("--bench-threads", default="1,2", help="comma-separated thread counts")
    group.addoption("--bench-quick", action="store_true", help="the quick grid")
    group.addoption("--bench-rows", default="", help="comma-separated glob patterns on cell/size/mode")


def pytest_configure(config):
    for warning in machine.environment_warnings():
        print(warning)


def selected_cases(config):
    cases = grid.quick_grid() if config.getoption("--bench-quick") else grid.full_grid()
    return grid.select(cases, [p for p in config.getoption("--bench-rows").split(",") if p])


def pytest_generate_tests(metafunc):
    if "threads" in metafunc.fixturenames:
        threads = [int(t) for t in metafunc.config.getoption("--bench-threads").split(",") if t]
        metafunc.parametrize("threads", threads, ids=[f"t{t}" for t in threads])
    if "case" in metafunc.fixturenames:
        cases = selected_cases(metafunc.config)
        metafunc.parametrize("case", cases, ids=[c.name for c in cases])


@pytest.fixture(autouse=True)
def _restore_threads():
    previous = fastrnn.get_num_threads()
    yield
    fastrnn.set_num_threads(previous)


@pytest.fixture
def rng():
    return np.random.default_rng(0)
