"""``hpcjobs bench --submit`` against the real local Slurm cluster of ``slurm/`` (3 simulated
nodes on this host): a 2-node benchmark job whose results merge into one file, and a scaling
run (``--workers``) on one Dask cluster over 2 nodes."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from hpcjobs.bench import harness
from hpcjobs.cli import cli
from tests import slurm_fixtures

slurm_cluster = slurm_fixtures.slurm_cluster
runs_dir = slurm_fixtures.runs_dir

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(300)]


def hpcjobs(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == code, result.output
    return result.output


def test_describe_quick_on_two_nodes_merges_both_nodes_records(slurm_cluster, runs_dir,
                                                                 tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    merged = tmp_path / "two-nodes.jsonl"
    # --shared: the test cluster is shared with other tests; whole nodes are the default
    out = hpcjobs("bench", "describe", "--quick", "--submit", "--nodes", "2", "--shared",
                  "--time", "00:05:00", "--json-out", str(merged), "--wait")
    job_id = re.search(r"submitted benchmark job (\d+) over 2 node\(s\)", out).group(1)
    assert f"results  {merged}" in out and f"results: {merged}" in out
    records = harness.read_jsonl(merged)
    nodes = sorted({r["node"] for r in records})
    assert len(nodes) == 2 and set(nodes) <= {"node1", "node2", "node3"}
    assert {r["slurm"]["node_index"] for r in records} == {0, 1}
    for r in records:
        assert r["slurm"]["job_id"] == job_id and r["slurm"]["nodes"] == 2
        assert r["status"] in ("ok", "skipped"), (r["impl"], r["reason"])
        m = r["machine"]
        assert m["cpu"] and m["cores"] >= 1 and m["memory_bytes"] > 0 and m["host"]
        assert m["bandwidth"]["read_Bps"] > 0
    per_node = {n: sorted(r["impl"] for r in records if r["node"] == n) for n in nodes}
    assert per_node[nodes[0]] == per_node[nodes[1]] and "hpcjobs" in per_node[nodes[0]]
    # the merged file reads back, compares with itself node by node, and the job is a run
    shown = hpcjobs("bench", "--from", str(merged))
    assert all(f"machine {n} (" in shown for n in nodes)
    assert f"@{nodes[1]}" in hpcjobs("bench", "compare", str(merged), str(merged))
    assert "COMPLETED" in hpcjobs("status", job_id)
    log = hpcjobs("logs", job_id)
    assert f"merged {len(records)} record(s) from 2 node(s)" in log
    assert "exit code 0" in log


def test_scaling_on_one_cluster_over_two_nodes(slurm_cluster, runs_dir, tmp_path, monkeypatch):
    """--workers with --submit: one Dask-over-MPI cluster over 2 nodes (4 ranks, cyclic),
    retired from 2 workers to 1; the records say where the workers sat."""
    monkeypatch.chdir(tmp_path)
    merged = tmp_path / "scaling.jsonl"
    out = hpcjobs("bench", "describe", "--quick", "--submit", "--nodes", "2", "--workers", "1,2",
                  "--shared", "--time", "00:05:00", "--json-out", str(merged), "--wait")
    job_id = re.search(r"submitted benchmark job (\d+) over 2 node\(s\)", out).group(1)
    records = harness.read_jsonl(merged)
    assert {r["workers"] for r in records} == {1, 2}
    assert {r["impl"] for r in records} == {"hpcjobs-dask", "dask.array"}  # cluster impls
    for r in records:
        assert r["status"] == "ok", (r["impl"], r["reason"])
        assert r["slurm"]["job_id"] == job_id and r["slurm"]["nodes"] == 2
        assert r["node"] == records[0]["node"]  # one writer: the driver
        # round robin over the nodes: 2 workers on 2 nodes, 1 on 1
        assert r["worker_nodes"] == r["workers"]
        assert sum(r["worker_placement"].values()) == r["workers"]
        assert set(r["worker_placement"]) <= {"node1", "node2", "node3"}
        assert r["machine"]["numba_threads"] == 1 and r["machine"]["bandwidth"]["read_Bps"] > 0
        assert r["worker_numba_threads"] == 1  # 1 Dask thread x 1 Numba thread per worker
        assert r["scaling"] == "strong" and r["scaling_speedup"] > 0
    two = {n for r in records if r["workers"] == 2 for n in r["worker_placement"]}
    assert len(two) == 2
    assert "on nodes" in hpcjobs("bench", "--from", str(merged))
    log = hpcjobs("logs", job_id)
    assert "4 ranks" in log and f"merged {len(records)} record(s) from 1 node(s)" in log
    assert "exit code 0" in log and "lost worker" not in log
