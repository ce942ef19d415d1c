"""The results as a text table, JSON and Markdown (the same columns everywhere)."""
import json

from .peers import ENGINES

ENGINE_LABELS = {"fastrnn_frozen": "frozen", "reference": "NumPy ref", "torch": "torch", "torch_cell": "torch cell",
                 "onnxruntime": "ONNX RT", "keras": "Keras"}
OTHER_ENGINES = [n for n in ENGINES if n != "fastrnn"]


def fmt_ms(v):
    if v is None:
        return "-"
    if v >= 100:
        return f"{v:.0f}"
    if v >= 10:
        return f"{v:.1f}"
    if v >= 1:
        return f"{v:.2f}"
    return f"{v:.3g}"


def fmt_ratio(v):
    return "-" if v is None else f"{v:.2f}x" if v < 10 else f"{v:.0f}x"


def fmt_num(v, digits=0):
    return "-" if v is None else f"{v:.{digits}f}"


def shape_label(row):
    label = f"{row['size']} ({row['T']},{row['B']},{row['D']},{row['H']})"
    if row.get("kind") == "torch_step":  # both columns are a torch training step; "fastrnn" = fastrnn.torch
        return label + ": fastrnn.torch vs torch.nn in a torch training step"
    lengths = row.get("lengths")
    return label + f" len {lengths['min']}..{lengths['max']}" if lengths else label


def _check_cell(row):
    check = row["check"]
    if "fastrnn" not in check["ok"]:
        return "-"
    flag = "" if check["ok"]["fastrnn"] else " MISMATCH"
    return f"{check['max_abs_diff']['fastrnn']:.0e}{flag}"


def _memory_cell(row):
    mem = row.get("memory_mib") or {}
    if not mem:
        return "-"
    return f"{fmt_num(mem.get('fastrnn'), 1)} / {fmt_num(mem.get('torch'), 1)}"


HEADER = (["cell", "mode", "shape (T,B,D,H)", "thr", "fastrnn ms", "GF/s", "% sgemm"]
          + [ENGINE_LABELS[n] + " ms" for n in OTHER_ENGINES]
          + ["best peer", "vs best", "frozen vs best", "vs torch", "vs ref", "max abs diff", "train MiB fastrnn/torch", "notes"])


def table_rows(rows):
    """Each row as a list of strings, in HEADER's order; footnotes (numbered notes) beside."""
    cells, footnotes = [], []
    for row in rows:
        mark = ""
        if row["notes"]:
            footnotes.append(f"[{len(footnotes) + 1}] {row['name']} t={row['threads']}: " + "; ".join(row["notes"]))
            mark = f"[{len(footnotes)}]"
        cells.append([row["cell"], row["mode"], shape_label(row), str(row["threads"]), fmt_ms(row["ms"].get("fastrnn")),
                      fmt_num(row["gflops"], 1 if (row["gflops"] or 0) < 10 else 0), fmt_num(row["pct_sgemm"])]
                     + [fmt_ms(row["ms"].get(n)) for n in OTHER_ENGINES]
                     + [ENGINE_LABELS.get(row["best_peer"], "-"), fmt_ratio(row["speedup_vs_best_peer"]),
                        fmt_ratio(row.get("frozen_vs_best_peer")),
                        fmt_ratio(row["speedup_vs_torch"]), fmt_ratio(row["speedup_vs_reference"]),
                        _check_cell(row), _memory_cell(row), mark])
    return cells, footnotes


def text_table(rows):
    cells, footnotes = table_rows(rows)
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(HEADER)]
    numeric = set(range(3, len(HEADER) - 1)) - {HEADER.index("best peer")}

    def line(values):
        return "  ".join(v.rjust(w) if i in numeric else v.ljust(w) for i, (v, w) in enumerate(zip(values, widths))).rstrip()

    out = [line(HEADER), line(["-" * w for w in widths])] + [line(c) for c in cells]
    return "\n".join(out + ([""] + footnotes if footnotes else []))


def markdown_table(rows):
    cells, footnotes = table_rows(rows)
    out = ["| " + " | ".join(HEADER) + " |", "|" + "|".join("---" for _ in HEADER) + "|"]
    out += ["| " + " | ".join(c) + " |" for c in cells]
    if footnotes:
        out += [""] + [f"- {f}" for f in footnotes]
    return "\n".join(out)


def header_lines(meta):
    caches = "".join(f", {level} {size / 2**20:.3g} MB" for level, size in meta.get("caches", {}).items())
    lines = [f"fastrnn {meta['versions'].get('fastrnn')} (kernels: {meta.get('isa')}), {meta.get('cpu')}, "
             f"{meta.get('cores')} cores{caches}, {meta.get('date')}"]
    lines.append("peers: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items() if k != "fastrnn" and v)
                 + (f"; not installed: {', '.join(meta['missing'])}" if meta.get("missing") else ""))
    for threads, rate in sorted(meta.get("sgemm_gflops", {}).items(), key=lambda kv: int(kv[0])):
        torch_rate = meta.get("torch_mm_gflops", {}).get(threads)
        lines.append(f"sgemm 1024^3, {threads} thread(s): OpenBLAS {rate:.0f} GF/s (core {meta.get('openblas_core')}, "
                     f"via ctypes scipy_cblas_sgemm; '% sgemm' divides by this)"
                     + (f", torch.mm {torch_rate:.0f} GF/s" if torch_rate else ""))
    lines.append("times: median ms per call over alternating runs; vs X = X's time / fastrnn's; GF/s counts "
                 "2*T*B*G*H*(D+H) per forward (G = 1/4/3), training = 3x; oracle = "
                 "torch when installed, else the NumPy reference")
    return lines + meta.get("warnings", [])


def slower_rows(rows, key="speedup_vs_best_peer"):
    """Rows where some peer beat fastrnn (or, with key="frozen_vs_best_peer", its inference snapshot)."""
    return [r for r in rows if r.get(key) is not None and r[key] < 1]


def write_json(path, meta, rows):
    with open(path, "w") as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=1, default=float)


def read_json(paths):
    """(meta, rows) of one or more JSON files written by write_json. Several files (one run per thread
    count, as Keras needs) merge into the first file's meta with every run's command and date, the
    per-thread-count rates of all of them, and a package counted as missing only where no run had it."""
    metas, rows = [], []
    for path in [paths] if isinstance(paths, str) else paths:
        with open(path) as f:
            data = json.load(f)
        metas.append(data["meta"])
        rows += data["rows"]
    meta = metas[0]
    for other in metas[1:]:
        for key in ("sgemm_gflops", "torch_mm_gflops"):
            meta.setdefault(key, {}).update(other.get(key, {}))
        meta["threads"] = sorted(set(meta["threads"]) | set(other["threads"]))
        meta["missing"] = [pkg for pkg in meta.get("missing", []) if pkg in other.get("missing", [])]
        for pkg, version in other.get("versions", {}).items():
            meta["versions"][pkg] = meta["versions"].get(pkg) or version
        meta["warnings"] = meta.get("warnings", []) + [w for w in other.get("warnings", [])
                                                       if w not in meta.get("warnings", [])]
    if len(metas) > 1:
        meta["command"] = "\n".join(m.get("command", "?") for m in metas)
        meta["date"] = ", ".join(str(m.get("date")) for m in metas)
    return meta, rows


BEGIN, END = "<!-- fastrnn bench: begin (generated by `fastrnn bench --markdown`) -->", "<!-- fastrnn bench: end -->"


def markdown_section(meta, rows, plot_path=None):
    out = [BEGIN, "", "Command:", "", "```", meta.get("command", "?"), "```", ""]
    out += [f"- {line}" for line in header_lines(meta)] + [""]
    for threads in sorted({r["threads"] for r in rows}, reverse=True):
        subset = [r for r in rows if r["threads"] == threads]
        out += [f"### {threads} thread{'s' if threads > 1 else ''}", "", markdown_table(subset), ""]
    for key, what in (("speedup_vs_best_peer", "fastrnn"), ("frozen_vs_best_peer", "fastrnn.freeze (inference rows)")):
        slow = slower_rows(rows, key)
        out += [f"Rows where a peer is faster than {what}: "
                + (", ".join(f"{r['name']} t={r['threads']} ({ENGINE_LABELS[r['best_peer']]} "
                             f"{1 / r[key]:.2f}x faster)" for r in slow) or "none") + ".", ""]
    if plot_path:
        out += [f"![fastrnn's speed-up over torch per row]({plot_path})", ""]
    return "\n".join(out + [END])


def update_markdown(path, section):
    """Replace the generated section of ``path`` (between the markers), keeping the rest; append it
    when the file has none; create the file when missing."""
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        text = "# fastrnn benchmarks\n\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + section + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    with open(path, "w") as f:
        f.write(text)
