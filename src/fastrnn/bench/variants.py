"""``fastrnn bench --rows variants``: the recurrent variants of issue 8 against what a torch user has today.

torch.nn has none of them (layer-normalised LSTM: pytorch#6760, recurrent dropout: pytorch#37731,
zoneout: pytorch#561), so the alternative is a hand-written loop over time steps: ``torch.nn.LSTMCell`` /
``GRUCell`` where the variant leaves the cell alone (recurrent dropout of an LSTM, zoneout), otherwise
the input projection as one matmul and per step ``addmm`` + ``F.layer_norm`` + elementwise ops (the
fastest such loop; a cell module would redo the input projection every step). The plain
``torch.nn.LSTM`` / ``GRU`` (oneDNN-backed, no variant) is timed beside it as the speed a user gives up.

Each row: one training step (forward, then backward of sum(y)) at LSTM/GRU medium size (T=100, B=64,
D=128, H=256), float32, train mode (fresh masks per call). Before timing, fastrnn and the torch loop
are run in eval mode in float64 from the same weights and their outputs compared (the torch loop is
written independently from the same equations, so this checks the variant's definition, not only the
kernels). ``TorchLoop`` is also used by tests/test_variants_torch.py.
"""
import time

import numpy as np

from .timing import settle_for

SIZE = (100, 64, 128, 256)  # T, B, D, H: the grid's "medium"
P = 0.25                     # recurrent dropout / zoneout probability of the rows

# row name -> (cell, options)
ROWS = {
    "lstm/plain": ("lstm", {}),
    "lstm/layer_norm": ("lstm", dict(layer_norm=True)),
    "lstm/peephole": ("lstm", dict(peephole=True)),
    "lstm/recurrent_dropout": ("lstm", dict(recurrent_dropout=P)),
    "lstm/zoneout": ("lstm", dict(zoneout=P)),
    "gru/plain": ("gru", {}),
    "gru/layer_norm": ("gru", dict(layer_norm=True)),
    "gru/reset_after=False": ("gru", dict(reset_after=False)),
    "gru/recurrent_dropout": ("gru", dict(recurrent_dropout=P)),
    "gru/zoneout": ("gru", dict(zoneout=P)),
}


def row_names(patterns):
    """The variant rows matching --rows patterns ('variants' alone: all of them)."""
    import fnmatch

    wanted = [p[len("variants"):].lstrip("/") for p in patterns if p.startswith("variants")]
    return [n for n in ROWS if any(not w or fnmatch.fnmatchcase(n, f"*{w}*") for w in wanted)]


def _torch():
    import torch

    return torch


class TorchLoop:
    """One layer, one direction, time-major, the variant equations of fastrnn (VARIANTS_DOC) in torch ops,
    loaded from a fastrnn state dict. ``__call__(x, masks=None, train=True)`` returns y (T, B, H); masks
    (rd (B, H), zh (T, B, H), zc (T, B, H)) may be given, else they are drawn with torch's generator.
    fused_cell=False: always the explicit ops (their gradients land in ``p``, keyed like fastrnn without _l0)."""

    def __init__(self, cell, options, state_dict, dtype=None, fused_cell=True):
        torch = _torch()
        self.torch, self.F = torch, torch.nn.functional
        self.cell, self.H = cell, state_dict["weight_hh_l0"].shape[1]
        self.layer_norm = options.get("layer_norm", False)
        self.peephole = options.get("peephole", False)
        self.reset_after = options.get("reset_after", True)
        self.rd, self.zoneout = options.get("recurrent_dropout", 0.0), options.get("zoneout", 0.0)
        dtype = dtype or torch.float32
        self.p = {k[:-3]: torch.tensor(np.asarray(v), dtype=dtype, requires_grad=True) for k, v in state_dict.items()}
        # where the variant leaves the cell alone, the user's natural choice is torch's fused cell
        self.module = None
        if (fused_cell and not self.layer_norm and not self.peephole and self.reset_after
                and not (cell == "gru" and self.rd)):
            cls = torch.nn.LSTMCell if cell == "lstm" else torch.nn.GRUCell
            self.module = cls(state_dict["weight_ih_l0"].shape[1], self.H).to(dtype)
            self.module.load_state_dict({k: self.p[k].detach() for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")})

    def parameters(self):
        return list(self.module.parameters()) if self.module is not None else list(self.p.values())

    def _masks(self, T, B, train, like):
        torch, H = self.torch, self.H
        rd = zh = zc = None
        if train and self.rd:
            rd = torch.bernoulli(torch.full((B, H), 1 - self.rd, dtype=like.dtype)) / (1 - self.rd)
        if train and self.zoneout:
            zh = torch.bernoulli(torch.full((T, B, H), self.zoneout, dtype=like.dtype))
            zc = torch.bernoulli(torch.full((T, B, H), self.zoneout, dtype=like.dtype))
        return rd, zh, zc

    def __call__(self, x, masks=None, train=True):
        torch, F, p, H = self.torch, self.F, self.p, self.H
        T, B, _ = x.shape
        rd, zh, zc = masks if masks is not None else self._masks(T, B, train, x)
        if not train and self.zoneout:
            zh = zc = [self.zoneout] * T
        lstm = self.cell == "lstm"
        G = 4 if lstm else 3
        h = x.new_zeros(B, H)
        c = x.new_zeros(B, H) if lstm else None
        ax = None
        if self.module is None:
            ax = x @ p["weight_ih"].T
            if self.layer_norm:
                ax = F.layer_norm(ax, (G * H,), p["layernorm_gates_weight"][0], p["layernorm_gates_bias"][0], 1e-5)
            ax = ax + p["bias_ih"]
        ys = []
        for t in range(T):
            hd = h if rd is None else h * rd
            if self.module is not None:
                if lstm:
                    h_new, c_new = self.module(x[t], (hd, c))
                else:
                    h_new, c_new = self.module(x[t], h), None
            elif lstm:
                ah = hd @ p["weight_hh"].T
                if self.layer_norm:
                    ah = F.layer_norm(ah, (G * H,), p["layernorm_gates_weight"][1], p["layernorm_gates_bias"][1], 1e-5)
                pre_i, pre_f, pre_g, pre_o = (ax[t] + ah + p["bias_hh"]).chunk(4, dim=1)
                if self.peephole:
                    pre_i, pre_f = pre_i + p["weight_ci"] * c, pre_f + p["weight_cf"] * c
                c_new = torch.sigmoid(pre_f) * c + torch.sigmoid(pre_i) * torch.tanh(pre_g)
                if self.peephole:
                    pre_o = pre_o + p["weight_co"] * c_new
                c_out = F.layer_norm(c_new, (H,), p["layernorm_cell_weight"], p["layernorm_cell_bias"], 1e-5) \
                    if self.layer_norm else c_new
                h_new = torch.sigmoid(pre_o) * torch.tanh(c_out)
            else:
                rows = G * H if self.reset_after else 2 * H
                ah = hd @ p["weight_hh"][:rows].T
                if self.layer_norm:
                    ah = F.layer_norm(ah, (G * H,), p["layernorm_gates_weight"][1], p["layernorm_gates_bias"][1], 1e-5)
                ah = ah + p["bias_hh"][:rows]
                r = torch.sigmoid(ax[t, :, :H] + ah[:, :H])
                z = torch.sigmoid(ax[t, :, H:2 * H] + ah[:, H:2 * H])
                if self.reset_after:
                    n = torch.tanh(ax[t, :, 2 * H:] + r * ah[:, 2 * H:])
                else:
                    n = torch.tanh(ax[t, :, 2 * H:] + (r * hd) @ p["weight_hh"][2 * H:].T + p["bias_hh"][2 * H:])
                h_new, c_new = (1 - z) * n + z * h, None
            if zh is not None:
                h_new = zh[t] * h + (1 - zh[t]) * h_new
                if lstm:
                    c_new = zc[t] * c + (1 - zc[t]) * c_new
            h, c = h_new, c_new
            ys.append(h)
        return torch.stack(ys)


def _check(cell, options, seed=0):
    """max |fastrnn - torch loop| of y in eval mode, float64, small T."""
    import fastrnn

    torch = _torch()
    T, B, D, H = 12, 4, 16, 24
    cls = fastrnn.LSTM if cell == "lstm" else fastrnn.GRU
    layer = cls(D, H, dtype=np.float64, seed=seed, **options).eval()
    rng = np.random.default_rng(seed)
    for key in layer.params:
        layer.params[key] = layer.params[key] + rng.normal(size=layer.params[key].shape) * 0.1
    x = rng.normal(size=(T, B, D))
    with fastrnn.no_grad():
        y, _ = layer(x)
    loop = TorchLoop(cell, options, layer.state_dict(), dtype=torch.float64)
    with torch.no_grad():
        y_t = loop(torch.from_numpy(x), train=False).numpy()
    return float(np.max(np.abs(y - y_t)))


def measure(name, threads, budget_s=2.0):
    """One row: ms per training step of fastrnn, the torch loop and the plain torch layer."""
    import fastrnn

    torch = _torch()
    cell, options = ROWS[name]
    T, B, D, H = SIZE
    cls = fastrnn.LSTM if cell == "lstm" else fastrnn.GRU
    layer = cls(D, H, seed=0, **options)
    x = np.random.default_rng(0).uniform(-1, 1, size=(T, B, D)).astype(np.float32)
    dy = np.ones((T, B, H), np.float32)

    def fastrnn_step():
        layer.forward(x)
        layer.backward(dy)

    state = layer.state_dict()
    loop = TorchLoop(cell, options, state)
    x_t = torch.from_numpy(x)

    def loop_step():
        for prm in loop.parameters():
            prm.grad = None
        loop(x_t).sum().backward()

    plain = (torch.nn.LSTM if cell == "lstm" else torch.nn.GRU)(D, H)
    plain.load_state_dict({k: torch.from_numpy(state[k]) for k in
                           ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")})

    def plain_step():
        plain.zero_grad()
        plain(x_t)[0].sum().backward()

    fastrnn.set_num_threads(threads)
    torch.set_num_threads(threads)
    # alternate the engines round by round, so a noisy machine's drifts hit each alike
    runners = {"fastrnn": fastrnn_step, "torch_loop": loop_step, "torch_plain": plain_step}
    for fn in runners.values():
        fn()
    samples = {k: [] for k in runners}
    start = time.perf_counter()
    while (min(len(s) for s in samples.values()) < 3 or
           (time.perf_counter() - start < budget_s and min(len(s) for s in samples.values()) < 15)):
        for key, fn in runners.items():
            time.sleep(settle_for(threads))  # the previous engine's idle threads stop spinning
            t0 = time.perf_counter()
            fn()
            samples[key].append(time.perf_counter() - t0)
    ms = {k: 1e3 * float(np.median(v)) for k, v in samples.items()}
    return {"name": name, "threads": threads, "T": T, "B": B, "D": D, "H": H, "ms": ms,
            "speedup_vs_torch_loop": ms["torch_loop"] / ms["fastrnn"],
            "speedup_vs_torch_plain": ms["torch_plain"] / ms["fastrnn"],
            "max_abs_diff_vs_torch_loop": _check(cell, options)}


def run_variants(args):
    """Entry point from fastrnn bench (``--rows variants`` or ``--rows variants/lstm`` ...)."""
    import json

    from .._cli_bench import _threads
    from . import machine

    names = row_names([p for arg in args.rows for p in arg.split(",") if p])
    if args.list:
        print("\n".join("variants/" + n for n in names))
        return 0
    try:
        _torch()
    except ImportError:
        raise SystemExit("the variant rows compare with torch: pip install torch") from None
    budget = args.budget if args.budget is not None else (0.5 if args.quick else 2.0)
    rows = []
    print(f"variants: one training step (forward + backward of sum(y)), T, B, D, H = {SIZE}, float32, "
          f"train mode, p = {P}; ms (median)")
    print(f"{'row':26s} {'thr':>3s} {'fastrnn':>9s} {'torch loop':>11s} {'torch.nn':>9s} "
          f"{'vs loop':>8s} {'vs torch.nn':>11s} {'check':>9s}")
    for threads in _threads(args.threads):
        for name in names:
            if args.wait_idle:
                machine.wait_for_quiet(args.wait_idle)
            other = machine.OtherLoad().start()
            r = measure(name, threads, budget)
            r["other_load_cores"] = other.stop()
            rows.append(r)
            ms = r["ms"]
            busy = f"  (other processes: {r['other_load_cores']:.1f} cores)" if (r["other_load_cores"] or 0) > 0.3 else ""
            print(f"{name:26s} {threads:3d} {ms['fastrnn']:9.1f} {ms['torch_loop']:11.1f} {ms['torch_plain']:9.1f} "
                  f"{r['speedup_vs_torch_loop']:7.1f}x {r['speedup_vs_torch_plain']:10.2f}x "
                  f"{r['max_abs_diff_vs_torch_loop']:9.1e}{busy}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"variants": rows}, f, indent=1)
        print(f"wrote {args.json}")
    bad = [r["name"] for r in rows if not r["max_abs_diff_vs_torch_loop"] < 1e-9]
    if bad:
        print(f"MISMATCH: fastrnn differs from the torch loop on {bad}")
        return 1
    return 0
