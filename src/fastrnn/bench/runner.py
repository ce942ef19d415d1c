"""One row = one case at one thread count: build every engine from the same weights, check that
their outputs agree, time them round-robin, and turn the medians into the row's numbers."""
import contextlib
import time
from dataclasses import dataclass, field

import numpy as np

from . import peers
from .peers import PEERS, Unavailable
from .machine import OtherLoad, wait_for_quiet
from .timing import round_robin, settle_for
from .workload import make_workload


@dataclass
class Settings:
    threads: tuple = (1, 2)
    engines: tuple = tuple(peers.ENGINES)   # the engines to try (a missing package only empties a column)
    sgemm_gflops: dict = field(default_factory=dict)  # threads -> the machine's OpenBLAS sgemm GF/s
    min_sample_s: float = 0.01
    min_rounds: int = 3
    max_rounds: int = 25
    budget_s: float = 3.0          # per row, for all engines together (min_rounds always run)
    reference_limit_s: float = 2.0  # the NumPy reference is not timed on rows where one run takes longer
    tolerance: float = 1e-3        # max |a - b| / max(1, max |b|) allowed between engines (float32)
    memory: bool = False           # also measure a training step's peak memory (subprocesses)
    wait_idle_s: float = 0.0       # before each row, wait up to this long for other processes to go quiet
    busy_cores: float = 0.3        # other processes' CPU use (cores) above which a row is noted as disturbed


def engines_for(case, settings):
    if case.kind == "torch_step":
        return [n for n in ("fastrnn", "torch") if n in settings.engines]
    names = ["fastrnn", "reference", "torch"]
    if case.mode == "inference":
        names.insert(1, "fastrnn_frozen")
    if case.kind == "stream":
        names.append("torch_cell")
    if case.mode == "inference" and case.lengths is None:
        names.append("onnxruntime")
    names.append("keras")
    return [n for n in names if n in settings.engines]


# The reference's time is about NumPy's per-step overhead plus its GEMMs at ~30 GF/s (measured here,
# one thread); rows predicted well beyond the limit are skipped without running it at all.
def _reference_predicted_s(case):
    return case.flops / 30e9 + case.T * (1.5e-4 if case.mode == "training" else 8e-5)


def build_engines(case, settings, notes):
    """name -> adapter for every engine that can serve the case; reasons for the others go to notes."""
    work = make_workload(case)
    built = {}
    for name in engines_for(case, settings):
        if name == "reference" and _reference_predicted_s(case) > 3 * settings.reference_limit_s:
            notes.append(f"reference not run (one run would take about {_reference_predicted_s(case):.0f} s)")
            continue
        try:
            built[name] = peers.build(name, case, work)
        except Unavailable as exc:
            if "not installed" not in str(exc):  # missing packages are listed once, in the header
                notes.append(f"{name}: {exc}")
        except Exception as exc:  # noqa: BLE001 - a broken peer must not stop the benchmark
            notes.append(f"{name}: failed to build ({type(exc).__name__}: {exc})"[:200])
    return built


def compare(out, oracle):
    """(max abs diff, scaled error) over the arrays both engines return."""
    abs_diff, scaled = 0.0, 0.0
    for key in out.keys() & oracle.keys():
        a, b = np.asarray(out[key], np.float64), np.asarray(oracle[key], np.float64)
        if a.shape != b.shape:
            return float("inf"), float("inf")
        d = float(np.max(np.abs(a - b))) if a.size else 0.0
        if not np.isfinite(d):  # NaN would slip through max() and <=
            return float("inf"), float("inf")
        abs_diff = max(abs_diff, d)
        scaled = max(scaled, d / max(1.0, float(np.max(np.abs(b))) if b.size else 1.0))
    return abs_diff, scaled


def measure_row(case, threads, engines, settings, case_notes):
    notes = list(case_notes)
    active = {}
    for name, peer in engines.items():
        try:
            peer.set_threads(threads)
            active[name] = peer
        except Unavailable as exc:
            if not exc.quiet:
                notes.append(f"{name}: {exc}")

    # correctness first: a fast but wrong kernel must not hide behind its time
    outputs, first_call_s = {}, {}
    for name, peer in list(active.items()):
        t0 = time.perf_counter()
        try:
            outputs[name] = peer.outputs()
        except Exception as exc:  # noqa: BLE001
            notes.append(f"{name}: failed ({type(exc).__name__}: {exc})"[:200])
            del active[name]
            continue
        first_call_s[name] = time.perf_counter() - t0
    oracle = "torch" if "torch" in outputs else "reference" if "reference" in outputs else None
    check = {"oracle": oracle, "max_abs_diff": {}, "ok": {}}
    if oracle:
        for name, out in outputs.items():
            if name != oracle:
                abs_diff, scaled = compare(out, outputs[oracle])
                check["max_abs_diff"][name] = abs_diff
                check["ok"][name] = bool(scaled <= settings.tolerance)
                if not check["ok"][name]:
                    notes.append(f"MISMATCH: {name} vs {oracle}: max |diff| {abs_diff:.3g}")

    if "reference" in active and first_call_s["reference"] > settings.reference_limit_s:
        notes.append(f"reference not timed (one run took {first_call_s['reference']:.1f} s)")
        del active["reference"]

    if settings.wait_idle_s:
        wait_for_quiet(settings.wait_idle_s, settings.busy_cores)
    other = OtherLoad().start()
    with contextlib.ExitStack() as contexts:  # e.g. one no_grad block around a streaming row's steps
        for peer in active.values():
            contexts.enter_context(peer.timing_context())
        # fastrnn's GEMMs and the NumPy reference run on OpenBLAS, whose idle threads spin for ~0.1 s
        spinning = {n: settle_for(threads) for n in ("fastrnn", "reference")}
        timings = round_robin({n: p.run for n, p in active.items()}, settings.min_sample_s, settings.min_rounds,
                              settings.max_rounds, settings.budget_s, warm=set(active), settle_after=spinning)
    other_load = other.stop()
    if other_load is not None and other_load > settings.busy_cores:
        notes.append(f"other processes used {other_load:.1f} cores while this row was timed")
    row = make_row(case, threads, timings, check, notes, settings)
    row["other_load_cores"] = other_load
    return row


def make_row(case, threads, timings, check, notes, settings):
    ms = {name: t.median * 1e3 for name, t in timings.items()}
    row = {
        "name": case.name, "cell": case.cell, "mode": case.mode, "size": case.size, "kind": case.kind,
        "T": case.T, "B": case.B, "D": case.D, "H": case.H, "threads": threads,
        "lengths": None if case.lengths is None else {"min": min(case.lengths), "max": max(case.lengths),
                                                     "sum": sum(case.lengths)},
        "flops": case.flops,
        "ms": ms,
        "ms_min": {name: t.min * 1e3 for name, t in timings.items()},
        "samples": {name: len(t.samples) for name, t in timings.items()},
        "calls_per_sample": {name: t.calls_per_sample for name, t in timings.items()},
        "check": check,
        "notes": notes,
    }
    fast = ms.get("fastrnn")
    peer_ms = {n: v for n, v in ms.items() if n in PEERS}
    best = min(peer_ms, key=peer_ms.get) if peer_ms else None
    sgemm = settings.sgemm_gflops.get(threads)
    row.update({
        "gflops": case.flops / (fast * 1e6) if fast else None,
        "best_peer": best,
        "speedup_vs_best_peer": peer_ms[best] / fast if fast and best else None,
        "speedup_vs_torch": ms["torch"] / fast if fast and "torch" in ms else None,
        "speedup_vs_reference": ms["reference"] / fast if fast and "reference" in ms else None,
        "sgemm_gflops": sgemm,
    })
    row["pct_sgemm"] = 100 * row["gflops"] / sgemm if row["gflops"] and sgemm else None
    frozen = ms.get("fastrnn_frozen")
    row["frozen_vs_best_peer"] = peer_ms[best] / frozen if frozen and best else None
    return row


def run(cases, settings, progress=None):
    """Every case at every thread count; yields rows as they complete."""
    from . import memory

    for case in cases:
        case_notes = []
        engines = build_engines(case, settings, case_notes)
        mem = None
        if settings.memory and case.mode == "training":
            mem = {name: memory.measure(name, case, max(settings.threads)) for name in ("fastrnn", "torch")
                   if name in engines}
        for threads in settings.threads:
            if progress:
                progress(f"{case.name} t={threads}")
            row = measure_row(case, threads, engines, settings, case_notes)
            row["memory_mib"] = mem
            yield row
        del engines
