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


def round_robin(runners, min_sample_s=0.01, min_rounds=3, max_rounds=25, budget_s=3.0, warm=(), settle_s=0.005):
    """Time each of ``runners`` (name -> zero-argument callable); returns name -> Timing.
    Engines named in ``warm`` have already run once (no warm-up call needed).

    Between samples the process sleeps ``settle_s``: each engine has its own thread pool (fastrnn's
    OpenMP, torch's OpenMP, OpenBLAS's, ORT's), whose idle threads spin for a moment after a call;
    on a machine with few cores they would steal the next engine's cores."""
    timings, caps = {}, {}
    for name, fn in runners.items():
        calls, per_call = _calibrate(fn, min_sample_s, name in warm)
        timings[name] = Timing(calls)
        if calls == 1:  # its calibration call (after the warm-up) is a full sample: do not waste it
            timings[name].samples.append(per_call)
        share = budget_s / max(1, len(runners))  # an even share of the budget for each engine
        caps[name] = max(min_rounds, min(max_rounds, int(share / max(per_call * calls, 1e-9))))
    start = time.perf_counter()
    gc_was_enabled = gc.isenabled()
    gc.disable()  # a collection inside one engine's sample would be charged to that engine
    try:
        for round_ in range(max_rounds):
            if round_ >= min_rounds and time.perf_counter() - start > budget_s:
                break
            for name, fn in runners.items():
                timing = timings[name]
                if len(timing.samples) >= caps[name]:
                    continue
                time.sleep(settle_s)
                t0 = time.perf_counter()
                for _ in range(timing.calls_per_sample):
                    fn()
                timing.samples.append((time.perf_counter() - t0) / timing.calls_per_sample)
            gc.collect()  # between rounds, charged to no one
    finally:
        if gc_was_enabled:
            gc.enable()
    return timings
