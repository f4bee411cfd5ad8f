"""Benchmark results of several nodes: each node's records tagged, then merged into one file.

A benchmark job over N nodes (``hpcjobs bench --submit``) writes one JSON lines file per
node; every record carries ``node`` (Slurm's node name) and ``slurm`` (job id, node index,
node count, node list, run id) besides its own ``machine``. :func:`merge_files` puts them
into one file that ``hpcjobs bench --from`` and ``hpcjobs bench compare`` read.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Mapping
from pathlib import Path

from hpcjobs.errors import UserError


def slurm_tag(env: Mapping[str, str] | None = None, run_id: str | None = None) -> dict:
    """What a record of this node says about where it ran, from Slurm's task environment."""
    env = os.environ if env is None else env

    def number(key: str) -> int | None:
        value = env.get(key, "")
        return int(value) if value.isdigit() else None

    return {"job_id": env.get("SLURM_JOB_ID"),
            "node": env.get("SLURMD_NODENAME") or socket.gethostname(),
            "node_index": number("SLURM_NODEID"),
            "nodes": number("SLURM_JOB_NUM_NODES") or number("SLURM_NNODES"),
            "nodelist": env.get("SLURM_JOB_NODELIST"),
            "run": run_id}


def tag_records(records: Iterable[dict], tag: dict) -> None:
    """Give each record ``node`` and ``slurm`` (in place)."""
    for rec in records:
        rec["node"] = tag["node"]
        rec["slurm"] = dict(tag)


def node_file(folder: str | os.PathLike, node: str) -> Path:
    """Where ``node`` writes its records in a run's ``nodes/`` folder."""
    if not node or "/" in node or node.startswith("."):
        raise UserError(f"node name {node!r} cannot name a file")
    return Path(folder) / f"{node}.jsonl"


def merge_files(files: Iterable[str | os.PathLike]) -> list[dict]:
    """The records of every node file, ordered by node index (then name), each node's in the
    order it wrote them."""
    from hpcjobs.bench.harness import read_jsonl

    per_node = []
    for path in files:
        records = read_jsonl(path)
        if records:
            index = (records[0].get("slurm") or {}).get("node_index")
            per_node.append((index if index is not None else 1 << 30, Path(path).stem, records))
    per_node.sort(key=lambda item: item[:2])
    return [rec for _, _, records in per_node for rec in records]


def nodes_of(records: Iterable[dict]) -> list[str]:
    """The node names of ``records``, in order of first appearance (empty: one machine)."""
    return list(dict.fromkeys(r["node"] for r in records if r.get("node")))
