"""What the machine offers: environment warnings, BLAS thread control, and the sgemm rate that the
"% of sgemm" column divides by (OpenBLAS's sgemm, the library fastrnn's own big GEMMs call)."""
import ctypes
import os
import time

import numpy as np

# OpenBLAS reads these when it loads; set, they pick a slower kernel and blocking (about half speed here)
SLOW_OPENBLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def environment_warnings():
    warnings = []
    found = [f"{v}={os.environ[v]}" for v in SLOW_OPENBLAS_VARS if v in os.environ]
    if found:
        warnings.append(f"WARNING: {' '.join(found)} is set: OpenBLAS (fastrnn's GEMMs, NumPy, the sgemm rate) "
                        "may run at about half speed. It cannot be undone once the library is loaded; run as "
                        "`env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE fastrnn bench ...`")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if load > 0.5 * (os.cpu_count() or 1):
        warnings.append(f"WARNING: load average {load:.1f} on {os.cpu_count()} cores: other processes are busy, "
                        "and multi-threaded timings suffer most (threads wait for each other at every step)")
    return warnings


def _openblas32():
    """fastrnn's OpenBLAS (scipy-openblas32): the same library instance the kernels call."""
    import scipy_openblas32

    lib = ctypes.CDLL(os.path.join(scipy_openblas32.get_lib_dir(), f"lib{scipy_openblas32.get_library()}.so"))
    lib.scipy_openblas_get_corename.restype = ctypes.c_char_p
    return lib


def cache_sizes():
    """{"L2": bytes, "L3": bytes}: one core's L2 as the kernels see it (their fused-input choice depends
    on it, csrc/layer_forward.h) and the L3 from Linux's sysfs when it says."""
    from .. import _kernels

    sizes = {"L2": _kernels.l2_cache_bytes()}
    try:
        for index in sorted(os.listdir("/sys/devices/system/cpu/cpu0/cache")):
            path = f"/sys/devices/system/cpu/cpu0/cache/{index}"
            with open(f"{path}/level") as f:
                level = f.read().strip()
            if level == "3":
                with open(f"{path}/size") as f:
                    size = f.read().strip()  # e.g. "307200K"
                units = {"K": 2**10, "M": 2**20, "G": 2**30}
                sizes["L3"] = int(size[:-1]) * units[size[-1]] if size[-1] in units else int(size)
    except (OSError, ValueError):
        pass
    return sizes


def openblas_corename():
    try:
        return _openblas32().scipy_openblas_get_corename().decode()
    except (OSError, AttributeError, ImportError):
        return "?"


def openblas_sgemm_rate(threads, n=1024, repeats=15):
    """GF/s of OpenBLAS's sgemm C = A B at n^3 with ``threads`` threads (median of ``repeats``)."""
    lib = _openblas32()
    a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    b, c = a.copy(), np.empty_like(a)
    ptr = ctypes.c_void_p
    args = (101, 111, 111, n, n, n, ctypes.c_float(1.0), ptr(a.ctypes.data), n, ptr(b.ctypes.data), n,
            ctypes.c_float(0.0), ptr(c.ctypes.data), n)  # row-major, no transposes
    previous = lib.scipy_openblas_get_num_threads()
    lib.scipy_openblas_set_num_threads(threads)
    try:
        times = []
        for _ in range(repeats + 2):
            t0 = time.perf_counter()
            lib.scipy_cblas_sgemm(*args)
            times.append(time.perf_counter() - t0)
    finally:
        # fastrnn runs this library single-threaded inside its own OpenMP threads (csrc/fastrnn.cpp)
        lib.scipy_openblas_set_num_threads(previous)
    return 2 * n**3 / np.median(times[2:]) / 1e9


def torch_mm_rate(threads, n=1024, repeats=15):
    """GF/s of torch.mm at n^3 (torch's own BLAS/oneDNN), or None without torch."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    a = torch.randn(n, n)
    b = a.clone()
    times = []
    for _ in range(repeats + 2):
        t0 = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / np.median(times[2:]) / 1e9


def _numpy_openblas():
    """NumPy's own OpenBLAS (a different library from the one fastrnn links), or None."""
    try:
        with open("/proc/self/maps") as f:  # Linux: the libraries this process has loaded
            paths = sorted({line.split()[-1] for line in f if "openblas64" in line and line.rstrip().endswith(".so")})
    except OSError:
        return None
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        if hasattr(lib, "scipy_openblas_set_num_threads64_") and hasattr(lib, "scipy_openblas_get_num_threads64_"):
            return lib
    return None


def set_numpy_blas_threads(n):
    """Give NumPy's BLAS n threads; returns the previous count, or None when it cannot be found."""
    lib = _numpy_openblas()
    if lib is None:
        return None
    previous = lib.scipy_openblas_get_num_threads64_()
    lib.scipy_openblas_set_num_threads64_(n)
    return previous


class OtherLoad:
    """CPU used by OTHER processes (in cores) between start() and stop(): all CPUs' busy time from
    /proc/stat minus this process's own CPU time. On a shared machine it says which rows were timed
    while something else ran. None where /proc/stat is missing."""

    def _sample(self):
        try:
            with open("/proc/stat") as f:
                fields = [int(v) for v in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        ticks = os.sysconf("SC_CLK_TCK")
        own = os.times()
        return time.perf_counter(), (sum(fields[:8]) - idle) / ticks, own.user + own.system

    def start(self):
        self._start = self._sample()
        return self

    def stop(self):
        end = self._sample()
        if self._start is None or end is None or end[0] <= self._start[0]:
            return None
        wall, busy, own = (e - s for e, s in zip(end, self._start))
        return max(0.0, (busy - own) / wall)


def wait_for_quiet(max_wait_s, threshold_cores=0.3, probe_s=1.0):
    """Sleep until other processes use under ``threshold_cores`` (probed over ``probe_s``), at most
    ``max_wait_s``; returns the last probe's load."""
    deadline = time.perf_counter() + max_wait_s
    while True:
        probe = OtherLoad().start()
        time.sleep(probe_s)
        load = probe.stop()
        if load is None or load < threshold_cores or time.perf_counter() >= deadline:
            return load
