"""Plot benchmark records: time against size per implementation, one panel per benchmark;
for a scaling run (``--workers``), time and efficiency against the worker count."""

from __future__ import annotations

import math
import os
from pathlib import Path

from hpcjobs.errors import UserError


def pyplot():
    """matplotlib's pyplot on the Agg backend, or a ``UserError`` saying how to install it."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError:
        raise UserError("plotting needs matplotlib: pip install matplotlib") from None
    return plt


def plot_records(records: list[dict], path: str | os.PathLike) -> Path:
    """Save a log-log figure of median time (min-max as error bars) vs items per call.

    One panel per benchmark, one line per implementation (peers dashed). Skipped and failed
    records are left out. Returns the path written.

    Examples
    --------
    >>> from hpcjobs.bench.harness import read_jsonl      # doctest: +SKIP
    >>> plot_records(read_jsonl("bench.jsonl"), "bench.png")  # doctest: +SKIP
    """
    ok = [r for r in records if r.get("status") == "ok"]
    if not ok:
        raise UserError("nothing to plot: no successful benchmark records")
    if any(r.get("workers") for r in ok):
        return plot_scaling(ok, path)
    plt = pyplot()
    benches = list(dict.fromkeys(r["benchmark"] for r in ok))
    ncols = min(3, len(benches))
    nrows = math.ceil(len(benches) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, 4.0 * nrows), squeeze=False)
    for ax, name in zip(axes.flat, benches, strict=False):
        recs = [r for r in ok if r["benchmark"] == name]
        unit = recs[0].get("unit", "items")
        for impl in dict.fromkeys(r["impl"] for r in recs):
            pts = sorted((r["items"], r["median_s"], r["min_s"], r["max_s"], r["peer"])
                         for r in recs if r["impl"] == impl)
            x = [p[0] for p in pts]
            y = [p[1] for p in pts]
            err = [[p[1] - p[2] for p in pts], [p[3] - p[1] for p in pts]]
            ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=impl,
                        linestyle="--" if pts[0][4] else "-")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(f"{unit} per call")
        ax.set_ylabel("time per call (s), median; bars min-max")
        ax.set_title(name)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="small")
    for ax in list(axes.flat)[len(benches):]:
        ax.set_visible(False)
    m = ok[0].get("machine", {})
    fig.suptitle(f"hpcjobs bench: {m.get('cpu', '?')}, {m.get('cores_usable', '?')} cores",
                 fontsize="medium")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_scaling(records: list[dict], path: str | os.PathLike) -> Path:
    """A scaling run: per benchmark, median time (left) and parallel efficiency (right)
    against workers, one line per (implementation, size); the ideal as a dotted line."""
    plt = pyplot()
    ok = [r for r in records if r.get("status") == "ok" and r.get("workers")]
    if not ok:
        raise UserError("nothing to plot: no successful scaling records")
    benches = list(dict.fromkeys(r["benchmark"] for r in ok))
    fig, axes = plt.subplots(len(benches), 2, figsize=(10, 3.6 * len(benches)), squeeze=False)
    for (ax_t, ax_e), name in zip(axes, benches, strict=True):
        recs = [r for r in ok if r["benchmark"] == name]
        for key in dict.fromkeys((r["impl"], r["size_index"]) for r in recs):
            pts = sorted((r["workers"], r["median_s"], r.get("scaling_efficiency"))
                         for r in recs if (r["impl"], r["size_index"]) == key)
            w = [p[0] for p in pts]
            label = f"{key[0]} [size {key[1]}]"
            line = ax_t.plot(w, [p[1] for p in pts], marker="o", label=label)[0]
            ax_e.plot(w, [p[2] for p in pts], marker="o", color=line.get_color(), label=label)
            if recs[0].get("scaling") != "weak":
                ax_t.plot(w, [pts[0][1] * w[0] / x for x in w], linestyle=":",
                          color=line.get_color())
        kind = recs[0].get("scaling") or "strong"
        ax_t.set_xscale("log", base=2)
        ax_t.set_yscale("log")
        ax_t.set_xlabel("workers")
        ax_t.set_ylabel("time per call (s), median")
        ax_t.set_title(f"{name}: {kind} scaling (dotted: ideal)")
        ax_e.axhline(1.0, color="black", linewidth=0.8, linestyle=":")
        ax_e.set_xscale("log", base=2)
        ax_e.set_xlabel("workers")
        ax_e.set_ylabel("parallel efficiency")
        ax_e.set_ylim(0, 1.2)
        for ax in (ax_t, ax_e):
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize="small")
    m = ok[0].get("machine", {})
    fig.suptitle(f"hpcjobs bench --workers: {m.get('cpu', '?')}, "
                 f"{m.get('cores_usable', '?')} cores", fontsize="medium")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
