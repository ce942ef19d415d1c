"""``fastrnn bench``: time fastrnn against torch, ONNX Runtime, Keras and the NumPy reference.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE fastrnn bench --json out.json \\
        --markdown BENCHMARKS.md --plot benchmarks/speedup.png
    fastrnn bench --quick --rows lstm,stream --threads 2      # a subset, under a minute
    fastrnn bench --from-json out.json --markdown BENCHMARKS.md --plot benchmarks/speedup.png
    fastrnn bench --rows variants --threads 2   # layer_norm, peephole, ... vs a torch loop (bench/variants.py)

The work is done by fastrnn.bench (see its docstring); this module parses arguments and prints.
"""
import datetime
import importlib.metadata
import importlib.util
import os
import platform
import shlex
import sys
import time

QUICK = dict(min_sample_s=0.003, min_rounds=3, max_rounds=6, budget_s=0.25, reference_limit_s=0.5)
FULL = dict(min_sample_s=0.02, min_rounds=3, max_rounds=25, budget_s=3.0, reference_limit_s=2.0)
OPTIONAL = {"torch": "torch", "onnxruntime": "onnxruntime", "keras": "tensorflow"}  # engine -> package


def add_bench_arguments(parser):
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts (default: 1,2)")
    parser.add_argument("--quick", action="store_true", help="a smaller grid and fewer repeats: under a minute")
    parser.add_argument("--rows", action="append", default=[],
                        help="only rows whose name (cell/size/mode, e.g. lstm/large/training) contains one "
                             "of these comma-separated glob patterns, e.g. --rows lstm,gru/stream; --rows jordan "
                             "runs the Jordan network group instead (teacher forcing vs Elman BPTT)")
    parser.add_argument("--engines", default=None,
                        help="comma-separated engines to run (default: all of fastrnn,fastrnn_frozen,reference,"
                             "torch,torch_cell,onnxruntime,keras that are installed; fastrnn_frozen is "
                             "fastrnn.freeze, on inference rows)")
    parser.add_argument("--json", metavar="PATH", help="write every row (and the machine's details) as JSON")
    parser.add_argument("--markdown", metavar="PATH",
                        help="write the tables into PATH between its generated-section markers (e.g. BENCHMARKS.md)")
    parser.add_argument("--plot", metavar="PNG", help="plot fastrnn's speed-up over torch per row (needs matplotlib)")
    parser.add_argument("--memory", action="store_true",
                        help="also measure peak memory of a training step for fastrnn and torch (subprocesses)")
    parser.add_argument("--budget", type=float, default=None, help="seconds of timing per row (all engines)")
    parser.add_argument("--wait-idle", type=float, default=0.0, metavar="SECONDS",
                        help="on a shared machine: before each row, wait up to SECONDS for other processes to "
                             "go quiet (rows timed while others ran are noted either way)")
    parser.add_argument("--from-json", metavar="PATH[,PATH...]",
                        help="do not run: print/write/plot the rows of JSON file(s) (several, e.g. one run per "
                             "thread count, are merged)")
    parser.add_argument("--list", action="store_true", help="list the selected rows and exit")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _threads(text):
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        values = ()
    if not values or min(values) < 1:
        raise SystemExit(f"--threads must be comma-separated positive integers, got {text!r}")
    return values


def _cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(package):
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _command_line(timed=True):
    """This command as typed; a timed run shows the environment it ran in (see machine.SLOW_OPENBLAS_VARS)."""
    from .bench.machine import SLOW_OPENBLAS_VARS

    args = " ".join(shlex.quote(a) for a in sys.argv[1:])
    ran_unset = timed and not any(v in os.environ for v in SLOW_OPENBLAS_VARS)
    unset = "env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE " if ran_unset else ""
    return f"{unset}fastrnn {args}"


def _progress(total, enabled):
    """(step, close): step(label) is called before each row, close() after the last."""
    if not enabled:
        return None, lambda: None
    try:
        from tqdm import tqdm
    except ImportError:  # a plain line per row
        count = [0]

        def step(label):
            count[0] += 1
            print(f"[{count[0]}/{total}] {label}", file=sys.stderr, flush=True)

        return step, lambda: None
    bar = tqdm(total=total, unit="row", file=sys.stderr, dynamic_ncols=True)
    started = [False]

    def step(label):  # the previous row is done when the next one starts
        if started[0]:
            bar.update(1)
        started[0] = True
        bar.set_postfix_str(label)

    def close():
        if started[0]:
            bar.update(1)
        bar.close()

    return step, close


def _meta(args, settings, missing, warnings):
    from . import _kernels
    from .bench import machine

    versions = {"fastrnn": _version("fastrnn"), "numpy": _version("numpy")}
    versions.update({p: _version(p) for p in ("torch", "onnxruntime", "tensorflow", "keras")})
    return {
        "command": _command_line(), "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "cpu": _cpu_name(), "cores": os.cpu_count(), "caches": machine.cache_sizes(), "isa": _kernels.isa(),
        "quick": args.quick,
        "threads": list(settings.threads), "versions": versions, "missing": missing,
        "openblas_core": machine.openblas_corename(),
        "warnings": warnings,
    }


def _output(meta, rows, args):
    from .bench import report

    print("\n".join(report.header_lines(meta)))
    for threads in sorted({r["threads"] for r in rows}, reverse=True):
        print(f"\n{threads} thread{'s' if threads > 1 else ''}:")
        print(report.text_table([r for r in rows if r["threads"] == threads]))
    if args.json:
        report.write_json(args.json, meta, rows)
        print(f"\nwrote {args.json}")
    if args.plot:
        from .bench.plot import plot_speedup

        try:
            plot_speedup(rows, args.plot)
            print(f"wrote {args.plot}")
        except (ImportError, ValueError) as exc:
            print(f"no plot: {exc}", file=sys.stderr)
    if args.markdown:
        plot_ref = os.path.relpath(args.plot, os.path.dirname(os.path.abspath(args.markdown))) if args.plot else None
        report.update_markdown(args.markdown, report.markdown_section(meta, rows, plot_ref))
        print(f"wrote {args.markdown}")


def run_bench(args):
    from .bench import report

    if args.from_json:
        paths = args.from_json.split(",")
        meta, rows = report.read_json(paths)
        if len(paths) > 1:  # the runs' commands, then the one that merged them
            meta["command"] += "\n" + _command_line(timed=False)
        _output(meta, rows, args)
        return 0

    if any(p.startswith("variants") for arg in args.rows for p in arg.split(",")):  # issue 8's rows
        from .bench.variants import run_variants
        return run_variants(args)
    from .bench import grid, jordan, machine
    from .bench.peers import ENGINES

    patterns = [p for arg in args.rows for p in arg.split(",") if p]
    if jordan.select(patterns):  # issue 9's row group: --rows jordan
        return jordan.run_from_cli(args, patterns)
    from .bench.runner import Settings, run

    cases = grid.select(grid.quick_grid() if args.quick else grid.full_grid(), patterns)
    if args.list:
        print("\n".join(c.name for c in cases))
        return 0
    if not cases:
        raise SystemExit("no row matches --rows " + ",".join(args.rows))
    warnings = machine.environment_warnings()
    for warning in warnings:
        print(warning, file=sys.stderr)
    engines = tuple(ENGINES) if args.engines is None else tuple(e.strip() for e in args.engines.split(","))
    unknown = set(engines) - set(ENGINES)
    if unknown:
        raise SystemExit(f"unknown engine(s) {sorted(unknown)}; known: {', '.join(ENGINES)}")
    missing = [pkg for eng, pkg in OPTIONAL.items() if eng in engines and importlib.util.find_spec(pkg) is None]
    timing = dict(QUICK if args.quick else FULL)
    if args.budget is not None:
        timing["budget_s"] = args.budget
    settings = Settings(threads=_threads(args.threads), engines=engines, memory=args.memory,
                        wait_idle_s=args.wait_idle, **timing)

    if "keras" in engines and "tensorflow" not in missing and len(settings.threads) > 1:
        warnings.append(f"note: Keras is timed at {settings.threads[0]} thread(s) only (TensorFlow fixes its "
                        "thread pools when it starts; run once per thread count and merge with --from-json)")
    meta = _meta(args, settings, missing, warnings)
    t0 = time.perf_counter()
    for n in settings.threads:  # the machine's sgemm rate at each thread count, before anything else runs
        settings.sgemm_gflops[n] = machine.openblas_sgemm_rate(n, repeats=5 if args.quick else 15)
    meta["sgemm_gflops"] = {str(n): r for n, r in settings.sgemm_gflops.items()}
    if "torch" in engines and "torch" not in missing:
        meta["torch_mm_gflops"] = {str(n): machine.torch_mm_rate(n, repeats=5 if args.quick else 15)
                                   for n in settings.threads}

    step, close = _progress(len(cases) * len(settings.threads), not args.no_progress)
    try:
        rows = list(run(cases, settings, step))
    finally:
        close()
    meta["seconds"] = round(time.perf_counter() - t0, 1)
    _output(meta, rows, args)
    mismatches = [r["name"] for r in rows if r["check"]["ok"].get("fastrnn") is False]
    if mismatches:
        print(f"\nMISMATCH: fastrnn's outputs differ from the oracle on {len(mismatches)} row(s)", file=sys.stderr)
        return 1
    return 0
