"""Every engine on every row of the grid, one benchmark each, grouped by row and thread count so that
pytest-benchmark's table puts the engines of one row side by side. (`fastrnn bench` is the tool for
alternating, same-moment comparisons; this suite is for tracking one engine over time, e.g. with
--benchmark-save / --benchmark-compare.)"""
import pytest

from fastrnn.bench import peers
from fastrnn.bench.runner import Settings, _reference_predicted_s, engines_for
from fastrnn.bench.workload import make_workload

ENGINES = list(peers.ENGINES)
_workloads = {}


def _workload(case):
    if case not in _workloads:
        _workloads.clear()  # one case's data at a time (the large rows hold tens of MB)
        _workloads[case] = make_workload(case)
    return _workloads[case]


@pytest.mark.parametrize("engine", ENGINES)
def test_grid(benchmark, case, engine, threads):
    if engine not in engines_for(case, Settings()):
        pytest.skip(f"{engine} does not run {case.name}")
    if engine == "reference" and _reference_predicted_s(case) > 2.0:
        pytest.skip("the NumPy reference would take over 2 s per call")
    try:
        peer = peers.build(engine, case, _workload(case))
        peer.set_threads(threads)
    except peers.Unavailable as exc:
        pytest.skip(f"{engine}: {exc}")
    benchmark.group = f"{case.name} t={threads}"
    benchmark.extra_info.update(flops=case.flops, shape=case.shape)
    with peer.timing_context():  # as fastrnn bench times a row (one no_grad block around streaming steps)
        peer.run()  # warm-up (first-call allocations, packed weights, lazy initialisation)
        benchmark(peer.run)
    if benchmark.stats:  # (None under --benchmark-disable, where each engine runs once as a smoke test)
        benchmark.extra_info["gflops"] = case.flops / benchmark.stats.stats.median / 1e9
