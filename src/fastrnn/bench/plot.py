"""fastrnn's speed-up over torch per row, one bar per thread count (a PNG via matplotlib)."""


def plot_speedup(rows, path, title="fastrnn speed-up over torch (torch ms / fastrnn ms)"):
    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(r["name"] for r in rows if r.get("speedup_vs_torch")))
    threads = sorted({r["threads"] for r in rows})
    if not names:
        raise ValueError("no row has both fastrnn and torch times: nothing to plot")
    value = {(r["name"], r["threads"]): r["speedup_vs_torch"] for r in rows}
    height = 0.8 / len(threads)
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.32 * len(names)))
    for k, t in enumerate(threads):
        ys = [i + (k - (len(threads) - 1) / 2) * height for i in range(len(names))]
        xs = [value.get((n, t)) or 0 for n in names]
        bars = ax.barh(ys, xs, height=height, label=f"{t} thread{'s' if t > 1 else ''}")
        for bar, x in zip(bars, xs):
            if x:
                ax.text(x * 1.03, bar.get_y() + bar.get_height() / 2, f"{x:.1f}", va="center", fontsize=6)
    ax.set_xscale("log")
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("speed-up (log scale; > 1: fastrnn faster)")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
