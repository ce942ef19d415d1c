"""Peak memory of one training step, per engine, each in a fresh subprocess.

In one long-lived process, memory freed by earlier rows stays in the allocator's heap and hides what a
step needs. So each (engine, case) runs alone: build the model and the inputs, note the resident
set size, reset the kernel's peak counter (Linux /proc/self/clear_refs), run ONE forward + backward
and read the peak (VmHWM). The result is the peak growth of the resident set over the step: the
tape, the gradients, the temporaries, and whatever the engine initialises on first use.

    python -m fastrnn.bench.memory '{"engine": "torch", "threads": 2, "case": {...}}'
"""
import json
import subprocess
import sys
from dataclasses import asdict

from .grid import Case


def _status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"{field} not in /proc/self/status")


def _reset_peak():
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current resident size (Linux >= 4.0)


def measure_here(engine, case, threads):
    """In this (fresh) process: MiB of resident-set growth at the peak of one training step."""
    from . import peers
    from .workload import make_workload

    peer = peers.build(engine, case, make_workload(case))
    peer.set_threads(threads)
    baseline = _status_kib("VmRSS")
    _reset_peak()
    peer.run()
    return (_status_kib("VmHWM") - baseline) / 1024


def measure(engine, case, threads, timeout=300):
    """Run measure_here in a subprocess; MiB, or None when it cannot be measured."""
    request = json.dumps({"engine": engine, "threads": threads, "case": asdict(case)})
    try:
        done = subprocess.run([sys.executable, "-m", "fastrnn.bench.memory", request],
                              capture_output=True, text=True, timeout=timeout)
        return json.loads(done.stdout.strip().splitlines()[-1])["peak_mib"] if done.returncode == 0 else None
    except (subprocess.TimeoutExpired, ValueError, IndexError, KeyError):
        return None


def _main():
    request = json.loads(sys.argv[1])
    spec = request["case"]
    if spec.get("lengths") is not None:
        spec["lengths"] = tuple(spec["lengths"])
    print(json.dumps({"peak_mib": measure_here(request["engine"], Case(**spec), request["threads"])}))


if __name__ == "__main__":
    _main()
