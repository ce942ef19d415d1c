"""``fastrnn bench --rows jordan``: one training step of a Jordan network under teacher forcing (every
step independent: GEMMs over all T*B rows, no BPTT) next to BPTT through a same-sized Elman network
(input -> H hidden units -> O outputs, the same parameter count but for W_oh (H, O) vs W_hh (H, H)).

Engines, each a forward + backward of sum(o) (d_outputs = ones) on the same x:
    jordan-tf        fastrnn.JordanRNN, teacher_forcing=targets
    jordan-ss        fastrnn.JordanRNN, scheduled sampling p=0.25 (BPTT through the fed-back outputs)
    jordan-tf torch  the same teacher-forced math in torch (three Linear GEMMs over all rows, autograd)
    elman            fastrnn.RNN + an output layer (NumPy GEMMs, one BLAS thread), BPTT
    elman torch      torch.nn.RNN + torch.nn.Linear, BPTT
and, for inference, jordan free running (no_grad) against elman forward.

Self-contained: it shares only the round-robin timing (bench.timing) with the main grid.
"""
import sys
import time

import numpy as np

# name -> (T, B, D, H, O)
SHAPES = {"medium": (100, 64, 32, 256, 32), "small": (50, 16, 32, 64, 8)}
ROWS = [f"jordan/{size}/{mode}" for size in SHAPES for mode in ("training", "inference")]


def select(patterns):
    """The Jordan rows that --rows selects: only patterns that name the group ('jordan', 'jordan/small',
    'jordan*training') count, so the main grid's selections ('lstm', 'training') never land here."""
    import fnmatch

    return [r for r in ROWS if any("jordan" in p and fnmatch.fnmatchcase(r, f"*{p}*") for p in patterns)]


class _Work:
    def __init__(self, T, B, D, H, O, seed=0):
        import fastrnn

        rng = np.random.default_rng(seed)
        self.x = rng.uniform(-1, 1, size=(T, B, D)).astype(np.float32)
        self.targets = rng.uniform(-1, 1, size=(T, B, O)).astype(np.float32)
        self.d_out = np.ones((T, B, O), np.float32)
        self.jordan = fastrnn.JordanRNN(D, H, O, seed=seed)
        self.elman = fastrnn.RNN(D, H, seed=seed)
        head = fastrnn.JordanRNN(D, H, O, seed=seed + 1)  # torch-style init of an (O, H) output layer
        self.w_out, self.b_out = head.params["weight_ho"].copy(), head.params["bias_o"].copy()
        self.g_out, self.gb_out = np.zeros_like(self.w_out), np.zeros_like(self.b_out)


def _fastrnn_runners(work):
    import fastrnn

    j, e = work.jordan, work.elman

    def jordan_tf():
        out = j.forward(work.x, work.targets)
        j.backward(work.d_out)
        return out

    def jordan_ss():
        out = j.forward(work.x, work.targets, p=0.25)
        j.backward(work.d_out)
        return out

    def elman_train():
        y, _ = e.forward(work.x)
        o = y @ work.w_out.T + work.b_out
        d_o = work.d_out.reshape(-1, work.d_out.shape[2])
        work.g_out += d_o.T @ y.reshape(-1, y.shape[2])
        work.gb_out += d_o.sum(axis=0)
        e.backward((d_o @ work.w_out).reshape(y.shape))
        return o

    def jordan_free():
        with fastrnn.no_grad():
            return j.forward(work.x)

    def elman_infer():
        with fastrnn.no_grad():
            y, _ = e.forward(work.x)
        return y @ work.w_out.T + work.b_out

    return {"training": {"jordan-tf": jordan_tf, "jordan-ss": jordan_ss, "elman": elman_train},
            "inference": {"jordan-free": jordan_free, "elman": elman_infer}}


def _torch_runners(work):
    try:
        import torch
    except ImportError:
        return {"training": {}, "inference": {}}, None
    jp = {k: torch.tensor(v, requires_grad=True) for k, v in work.jordan.params.items()}
    x, targets = torch.tensor(work.x), torch.tensor(work.targets)
    T, B, D = work.x.shape
    H, O = work.jordan.hidden_size, work.jordan.output_size
    y_prev = torch.cat([torch.zeros(1, B, O), targets[:-1]])
    rnn = torch.nn.RNN(D, H)
    lin = torch.nn.Linear(H, O)
    with torch.no_grad():
        for name, value in work.elman.params.items():
            getattr(rnn, name).copy_(torch.tensor(value))
        lin.weight.copy_(torch.tensor(work.w_out))
        lin.bias.copy_(torch.tensor(work.b_out))

    def jordan_tf_math():
        pre = torch.nn.functional.linear(x, jp["weight_ih"], jp["bias_h"]) + y_prev @ jp["weight_oh"].T
        out = torch.nn.functional.linear(torch.tanh(pre), jp["weight_ho"], jp["bias_o"])
        out.sum().backward()
        return out.detach().numpy()

    def elman_train():
        out = lin(rnn(x)[0])
        out.sum().backward()
        return out.detach().numpy()

    def elman_infer():
        with torch.no_grad():
            return lin(rnn(x)[0]).numpy()

    runners = {"training": {"jordan-tf torch": jordan_tf_math, "elman torch": elman_train},
               "inference": {"elman torch": elman_infer}}
    return runners, torch


def measure(row, threads, quick=False):
    """One row at one thread count: {'ms': engine -> median ms, 'check': max |diff| of the outputs}."""
    import fastrnn

    from .machine import set_numpy_blas_threads
    from .timing import round_robin, settle_for

    _, size, mode = row.split("/")
    work = _Work(*SHAPES[size])
    runners = dict(_fastrnn_runners(work)[mode])
    torch_runners, torch = _torch_runners(work)
    runners.update(torch_runners[mode])
    fastrnn.set_num_threads(threads)
    set_numpy_blas_threads(1)  # the Elman head's small GEMMs; NumPy's spinning pool would steal fastrnn's cores
    if torch is not None:
        torch.set_num_threads(threads)
    check = {}
    if mode == "training" and "jordan-tf torch" in runners:  # the same math, two engines
        a, b = runners["jordan-tf"](), runners["jordan-tf torch"]()
        check["jordan-tf vs torch"] = float(np.max(np.abs(a - b)))
    if "elman torch" in runners:
        a, b = runners["elman"](), runners["elman torch"]()
        check["elman vs torch"] = float(np.max(np.abs(a - b)))
    timing = dict(min_sample_s=0.003, min_rounds=3, max_rounds=8, budget_s=0.5) if quick else \
        dict(min_sample_s=0.02, min_rounds=5, max_rounds=25, budget_s=4.0)
    timings = round_robin(runners, warm=set(runners), settle_s=settle_for(threads), **timing)
    return {"row": row, "shape": SHAPES[size], "threads": threads,
            "ms": {name: t.median * 1e3 for name, t in timings.items()}, "check": check}


def text_table(results):
    engines = []
    for r in results:
        engines += [e for e in r["ms"] if e not in engines]
    header = ["row", "(T,B,D,H,O)", "thr"] + [f"{e} ms" for e in engines] + ["elman / jordan", "max abs diff"]
    lines = []
    for r in results:
        ms = r["ms"]
        fast = ms.get("jordan-tf", ms.get("jordan-free"))
        ratio = f"{ms['elman'] / fast:.2f}x" if fast and "elman" in ms else "-"
        diff = ", ".join(f"{k} {v:.0e}" for k, v in r["check"].items()) or "-"
        lines.append([r["row"], ",".join(map(str, r["shape"])), str(r["threads"])]
                     + [f"{ms[e]:.2f}" if e in ms else "-" for e in engines] + [ratio, diff])
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    fmt = lambda vals: "  ".join(v.ljust(w) for v, w in zip(vals, widths)).rstrip()  # noqa: E731
    return "\n".join([fmt(header), fmt(["-" * w for w in widths])] + [fmt(line) for line in lines])


def run_from_cli(args, patterns):
    """Called by ``fastrnn bench`` when --rows names the jordan group."""
    from .._cli_bench import _threads as parse_threads

    rows = select(patterns)
    ignored = [flag for flag, value in (("--markdown", args.markdown), ("--plot", args.plot), ("--memory", args.memory),
                                        ("--engines", args.engines), ("--from-json", args.from_json)) if value]
    if ignored:
        print(f"note: ignored for the jordan rows: {', '.join(ignored)}", file=sys.stderr)
    if args.quick:
        rows = [r for r in rows if "/medium/" in r] or rows
    if args.list:
        print("\n".join(rows))
        return 0
    t0 = time.perf_counter()
    results = []
    for row in rows:
        for threads in parse_threads(args.threads):
            if not args.no_progress:
                print(f"{row} t={threads}", file=sys.stderr, flush=True)
            results.append(measure(row, threads, quick=args.quick))
    print("Jordan network, teacher-forced training (no BPTT) vs BPTT through a same-sized Elman network; "
          "median ms per forward + backward (training) or forward (inference); elman / jordan = how many "
          "times faster jordan-tf (training) or jordan free running (inference) is than fastrnn's Elman.")
    print(text_table(results))
    print(f"({time.perf_counter() - t0:.0f} s)")
    if args.json:
        import json

        with open(args.json, "w") as f:
            json.dump({"jordan": results}, f, indent=1)
        print(f"wrote {args.json}")
    return 0
