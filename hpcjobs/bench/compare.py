"""``hpcjobs bench compare A.jsonl B.jsonl``: a regression table between two runs.

Records are matched on (benchmark, size, implementation, workers); for each pair,
``ratio = median(B) / median(A)`` (> 1: B is slower). A ratio beyond ``threshold`` is flagged
``SLOWER``, below ``1 / threshold`` ``faster``. Peers' ours/peer ratios are compared as well
(``ours/peer A -> B``): on a busy machine, or across machines, that ratio (taken within one
run) moves much less than the times themselves.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from hpcjobs.errors import UserError

#: default: flag a change of more than 10 %
THRESHOLD = 1.10


def _key(r: dict, by_node: bool) -> tuple:
    return (r["benchmark"], json.dumps(r.get("size", {}), sort_keys=True), r["impl"],
            r.get("workers"), r.get("node") if by_node else None)


def _one_node(records: list[dict], node: str | None, label: str) -> list[dict]:
    """``records`` of ``node`` only; all of them when ``node`` is None or they are a run on
    one machine (no nodes)."""
    from hpcjobs.bench.nodes import nodes_of

    nodes = nodes_of(records)
    if node is None or not nodes:
        return records
    if node not in nodes:
        raise UserError(f"--node {node}: {label} has no records of that node; its nodes: "
                        f"{', '.join(nodes)}")
    return [r for r in records if r.get("node") == node]


def compare_records(a: list[dict], b: list[dict], threshold: float = THRESHOLD,
                    node: str | None = None) -> list[dict]:
    """One row per (benchmark, size, impl, workers) that ran in both: times, ratio, flag.

    Rows of records that ran in only one of the runs (or failed in one) are kept with
    ``ratio=None`` and ``flag`` saying which. Two runs over several nodes (``hpcjobs bench
    --submit``) are matched node by node too; ``node`` keeps one node's records of each (to
    compare such a run with a run on one machine).
    """
    from hpcjobs.bench.nodes import nodes_of

    if threshold <= 1.0:
        raise UserError(f"--threshold: expected a ratio above 1 like 1.1, got {threshold}")
    a, b = _one_node(a, node, "A"), _one_node(b, node, "B")
    nodes_a, nodes_b = nodes_of(a), nodes_of(b)
    by_node = bool(nodes_a and nodes_b)
    for label, nodes in (("A", nodes_a), ("B", nodes_b)):
        if not by_node and len(nodes) > 1:
            raise UserError(f"{label} holds records of {len(nodes)} nodes "
                            f"({', '.join(nodes)}) and the other run those of one machine: "
                            "pick one with --node NAME")
    ok_a = {_key(r, by_node): r for r in a if r.get("status") == "ok"}
    ok_b = {_key(r, by_node): r for r in b if r.get("status") == "ok"}
    rows = []
    for key in list(dict.fromkeys([*ok_a, *ok_b])):
        ra, rb = ok_a.get(key), ok_b.get(key)
        ref = ra or rb
        row = {"benchmark": ref["benchmark"], "size": ref.get("size", {}), "impl": ref["impl"],
               "peer": ref.get("peer", False), "workers": ref.get("workers"),
               "node": key[-1],
               "a_s": ra["median_s"] if ra else None, "b_s": rb["median_s"] if rb else None,
               "peer_ratio_a": ra.get("ratio") if ra else None,
               "peer_ratio_b": rb.get("ratio") if rb else None,
               "ratio": None, "flag": ""}
        if ra is None or rb is None:
            row["flag"] = "only in B" if ra is None else "only in A"
        elif ra["median_s"] and rb["median_s"]:
            row["ratio"] = rb["median_s"] / ra["median_s"]
            if row["ratio"] > threshold:
                row["flag"] = "SLOWER"
            elif row["ratio"] < 1.0 / threshold:
                row["flag"] = "faster"
        rows.append(row)
    return rows


def format_compare(rows: list[dict], threshold: float = THRESHOLD) -> str:
    """The regression table and a one-line count of what was flagged."""
    from hpcjobs.bench.harness import format_seconds, format_size

    header = ["benchmark", "size", "impl", "A", "B", "B/A", "ours/peer A -> B", "flag"]
    table = [header]
    for r in rows:
        peer = "-"
        if r["peer_ratio_a"] is not None or r["peer_ratio_b"] is not None:
            peer = " -> ".join("-" if x is None else f"{x:.2f}"
                               for x in (r["peer_ratio_a"], r["peer_ratio_b"]))
        size = format_size(r["size"]) + (f" w={r['workers']}" if r["workers"] else "") + (
            f" @{r['node']}" if r.get("node") else "")
        table.append([r["benchmark"], size, r["impl"] + (" (peer)" if r["peer"] else ""),
                      format_seconds(r["a_s"]), format_seconds(r["b_s"]),
                      "-" if r["ratio"] is None else f"{r['ratio']:.2f}", peer, r["flag"]])
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = []
    for k, row in enumerate(table):
        lines.append("  ".join(c.ljust(w) if i < 3 or i == 7 else c.rjust(w)
                               for i, (c, w) in enumerate(zip(row, widths, strict=True)))
                     .rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    slower = sum(r["flag"] == "SLOWER" for r in rows)
    faster = sum(r["flag"] == "faster" for r in rows)
    lines.append("")
    lines.append(f"B/A: median time in B over A (> 1: B slower); flagged past x{threshold:g}: "
                 f"{slower} slower, {faster} faster, of {sum(r['ratio'] is not None for r in rows)}"
                 " compared")
    return "\n".join(lines)


def plot_compare(rows: list[dict], path: str | os.PathLike,
                 threshold: float = THRESHOLD) -> Path:
    """A horizontal bar per compared row: B/A on a log axis, the threshold band shaded."""
    from hpcjobs.bench.harness import format_size
    from hpcjobs.bench.plot import pyplot

    plt = pyplot()
    rows = [r for r in rows if r["ratio"] is not None]
    if not rows:
        raise UserError("nothing to plot: no benchmark ran in both files")
    labels = [f"{r['benchmark']} {format_size(r['size'])} {r['impl']}"
              + (f" w={r['workers']}" if r["workers"] else "")
              + (f" @{r['node']}" if r.get("node") else "") for r in rows]
    ratios = [r["ratio"] for r in rows]
    colors = ["tab:red" if r["flag"] == "SLOWER" else "tab:green" if r["flag"] == "faster"
              else "tab:gray" for r in rows]
    fig, ax = plt.subplots(figsize=(8, 0.3 * len(rows) + 1.5))
    ax.barh(range(len(rows)), [x - 1 for x in ratios], left=1, color=colors)
    ax.axvspan(1 / threshold, threshold, color="tab:gray", alpha=0.15)
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_yticks(range(len(rows)), labels, fontsize="small")
    ax.invert_yaxis()
    ax.set_xlabel("median time B / A (> 1: B slower)")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
