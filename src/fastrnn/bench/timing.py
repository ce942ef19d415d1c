"""Round-robin timing: engines take turns (fastrnn, reference, torch, ...; repeated), so slow drifts
of a noisy, shared machine hit every engine alike; each engine's median is its time.

A call shorter than ``min_sample_s`` is repeated inside one sample (streaming steps take microseconds);
an engine whose single call is slow is sampled fewer times (but at least ``min_rounds``), so the
NumPy reference cannot eat the row's time budget.
"""
import gc
import math
import time
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Timing:
    calls_per_sample: int
    samples: list = field(default_factory=list)  # seconds per call, one entry per sample

    @property
    def median(self):
        return float(np.median(self.samples))

    @property
    def min(self):
        return float(np.min(self.samples))


def _calibrate(fn, min_sample_s, warm):
    """Calls per sample so that one sample lasts about min_sample_s; also the single-call time."""
    if not warm:
        fn()  # warm-up: first-call allocations, caches, lazy initialisation
    calls, t0 = 0, time.perf_counter()
    while True:  # at least 1 ms of calls: one tiny call is too short to time
        fn()
        calls += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= 1e-3:
            break
    per_call = elapsed / calls
    return max(1, math.ceil(min_sample_s / per_call)), per_call


SETTLE_S = 0.005          # sleep before each sample (round_robin says why)
OPENBLAS_SETTLE_S = 0.15  # after an engine that ran OpenBLAS on several threads: its idle threads spin ~0.1 s


def settle_for(threads):
    """Seconds to sleep between two engines' samples at this thread count when any of them may leave
    OpenBLAS threads spinning (with one thread OpenBLAS starts none)."""
    return SETTLE_S if threads == 1 else OPENBLAS_SETTLE_S


def round_robin(runners, min_sample_s=0.01, min_rounds=3, max_rounds=25, budget_s=3.0, warm=(),
                settle_s=SETTLE_S, settle_after=None):
    """Time each of ``runners`` (name -> zero-argument callable); returns name -> Timing.
    Engines named in ``warm`` have already run once (no warm-up call needed). ``budget_s`` counts the
    timed calls, not the sleeps between them.

    Before each sample the process sleeps ``settle_s``, or ``settle_after[name]`` after a sample of
    engine ``name`` when that is longer: each engine has its own thread pool (fastrnn's OpenMP, torch's
    OpenMP, the two OpenBLAS builds of NumPy and fastrnn, ONNX Runtime's, TensorFlow's), whose idle
    threads spin after a call; on a machine with few cores they steal the next engine's cores. OpenBLAS's
    spin for 2^28 clock ticks (OPENBLAS_THREAD_TIMEOUT's default: about 0.1 s), and with 2 threads on
    2 cores that doubled torch's times right after the NumPy reference (2026-12-01: LSTM medium
    inference 29 -> 56-69 ms, RNN large 22 -> 45-50 ms); the runner gives those engines OPENBLAS_SETTLE_S."""
    timings, caps = {}, {}
    for name, fn in runners.items():
        calls, per_call = _calibrate(fn, min_sample_s, name in warm)
        timings[name] = Timing(calls)
        if calls == 1:  # its calibration call (after the warm-up) is a full sample: do not waste it
            timings[name].samples.append(per_call)
        share = budget_s / max(1, len(runners))  # an even share of the budget for each engine
        caps[name] = max(min_rounds, min(max_rounds, int(share / max(per_call * calls, 1e-9))))
    timed = 0.0  # seconds inside samples
    settle_after = settle_after or {}
    previous = None  # the engine of the last sample
    gc_was_enabled = gc.isenabled()
    gc.disable()  # a collection inside one engine's sample would be charged to that engine
    try:
        for round_ in range(max_rounds):
            if round_ >= min_rounds and timed > budget_s:
                break
            for name, fn in runners.items():
                timing = timings[name]
                if len(timing.samples) >= caps[name]:
                    continue
                time.sleep(max(settle_s, settle_after.get(previous, 0.0)))
                previous = name
                t0 = time.perf_counter()
                for _ in range(timing.calls_per_sample):
                    fn()
                elapsed = time.perf_counter() - t0
                timed += elapsed
                timing.samples.append(elapsed / timing.calls_per_sample)
            gc.collect()  # between rounds, charged to no one
    finally:
        if gc_was_enabled:
            gc.enable()
    return timings
