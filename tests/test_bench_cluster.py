"""A scaling run on a given cluster (``harness.run(cluster=...)``, what ``hpcjobs bench --submit
--workers`` runs on Dask over MPI): which workers stay, the retire-down order, the records'
fields, with a real LocalCluster in place of the MPI cluster; and the submission side
without Slurm (rendered script as a golden file, bad input).

Regenerate the golden file after an intended change with
``HPCJOBS_UPDATE_GOLDEN=1 python -m pytest tests/test_bench_cluster.py``.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from distributed import Client, LocalCluster

from hpcjobs.bench import harness
from hpcjobs.bench.cluster import RetiringCluster, keep_order
from hpcjobs.errors import RunFailed, UserError
from hpcjobs.slurm.bench import bench_options, check_room
from hpcjobs.slurm.client import SlurmClient
from hpcjobs.slurm.script import render_bench_script
from tests import test_bench_submit
from tests.golden_scripts import assert_golden, assert_valid_bash
from tests.test_bench_submit import hpcjobs

slurm = test_bench_submit.slurm  # the fake Slurm fixture



# -- which workers stay --------------------------------------------------------------------------


def test_keep_order_spreads_over_nodes_and_every_prefix_is_even():
    nodes = {f"rank-{r}": n for r, n in [(2, "n1"), (5, "n1"), (8, "n1"), (3, "n2"), (6, "n2"),
                                         (9, "n2"), (4, "n3"), (7, "n3"), (10, "n3")]}
    order = keep_order(nodes)
    assert sorted(order) == sorted(nodes)
    for w in range(1, len(order) + 1):
        counts = [sum(nodes[name] == n for name in order[:w]) for n in ("n1", "n2", "n3")]
        assert max(counts) - min(counts) <= 1, (w, counts)  # as even as w allows
        assert sum(c > 0 for c in counts) == min(w, 3)      # on as many nodes as it can
    # each node's workers in rank order (rank-10 after rank-9, not after rank-1)
    assert [name for name in order if nodes[name] == "n3"] == ["rank-4", "rank-7", "rank-10"]


def test_keep_order_with_uneven_nodes():
    nodes = {"rank-2": "a", "rank-3": "b", "rank-4": "a", "rank-5": "a"}
    assert keep_order(nodes) == ["rank-2", "rank-3", "rank-4", "rank-5"]
    assert keep_order({}) == []


# -- the harness on a given cluster ---------------------------------------------------------------


def _write_cluster_defs(folder: Path) -> None:
    """A benchmark whose cluster implementation reports the client and workers it ran on."""
    folder.mkdir()
    (folder / "gamma.py").write_text(textwrap.dedent("""
        from distributed import get_client
        from hpcjobs.bench.harness import dask_client
        from hpcjobs.bench.spec import Benchmark, Impl, Sample

        SEEN = []

        def on_cluster(x):
            client = get_client()
            workers = client.scheduler_info(n_workers=-1)["workers"]
            total = client.submit(sum, list(x), pure=False).result()
            SEEN.append((client.scheduler.address, len(workers)))
            return Sample(0.001, {"workers_seen": len(workers), "total": total})

        BENCHMARKS = [Benchmark(
            name="gamma", kernel="kg", sizes=[{"n": 10}],
            make_data=lambda size, rng: [1.0] * size["n"],
            impls=[Impl("local", lambda x: sum(x)),
                   Impl("dask", on_cluster, cluster=True, context=dask_client,
                        self_timed=True)],
            repeats=2)]
    """))


@pytest.fixture
def local_cluster():
    """Three one-thread workers: the MPI cluster's stand-in (in this process: quicker to
    start; retiring them is the same)."""
    with LocalCluster(n_workers=3, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        yield client


def test_given_cluster_is_retired_down_largest_first(local_cluster, tmp_path, monkeypatch):
    _write_cluster_defs(tmp_path / "defs")
    given = RetiringCluster(local_cluster, threads=1)
    assert given.size == 3
    sizes_asked = []
    resize = given.resize

    def spy(workers: int) -> dict:
        sizes_asked.append(workers)
        return resize(workers)

    monkeypatch.setattr(given, "resize", spy)
    lines = []
    records, _ = harness.run(["kg"], directory=tmp_path / "defs", quick=True, probe=False,
                             workers=[1, 3, 2], cluster=given, log=lines.append)
    assert sizes_asked == [3, 2, 1]  # a given cluster only shrinks
    assert [line for line in lines if "worker(s)" in line] == [
        "gamma: 3 worker(s)", "gamma: 2 worker(s)", "gamma: 1 worker(s)"]
    # only the cluster implementation runs; records ordered by worker count
    assert [(r["impl"], r["workers"]) for r in records] == [("dask", 1), ("dask", 2),
                                                            ("dask", 3)]
    host = next(iter(given.where.values()))["node"]
    for r in records:
        w = r["workers"]
        assert r["status"] == "ok", r["reason"]
        assert r["measured"] == {"workers_seen": w, "total": 10.0}  # ran on the given cluster
        assert r["scaling"] == "strong"
        assert (r["worker_nodes"], r["worker_placement"]) == (1, {host: w})
        assert r["oversubscribed"] is (w > given.where["0"]["cores"])
    # speed-up and efficiency as a local scaling run computes them
    t = {r["workers"]: r["median_s"] for r in records}
    assert records[2]["scaling_speedup"] == pytest.approx(t[1] / t[3])
    assert records[2]["scaling_efficiency"] == pytest.approx(t[1] / (3 * t[3]))
    assert given.size == 1 and len(local_cluster.scheduler_info()["workers"]) == 1
    with pytest.raises(UserError, match="--workers 2: the cluster has 1 worker"):
        harness.run(["kg"], directory=tmp_path / "defs", quick=True, probe=False,
                    workers=[2], cluster=given)


def test_weak_scaling_on_a_given_cluster_grows_from_the_fewest(local_cluster, tmp_path):
    _write_cluster_defs(tmp_path / "defs")
    records, _ = harness.run(["kg"], directory=tmp_path / "defs", quick=True, probe=False,
                             workers=[1, 2], weak=True, cluster=RetiringCluster(local_cluster))
    assert [(r["workers"], r["size"]["n"], r["measured"]["total"]) for r in records] == [
        (1, 10, 10.0), (2, 20, 20.0)]
    assert all(r["scaling"] == "weak" for r in records)


def test_workers_with_more_threads_are_refused(tmp_path):
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        with pytest.raises(RunFailed, match="each worker must run 1 thread"):
            RetiringCluster(client, threads=1)


# -- the submission, without Slurm ----------------------------------------------------------------


def test_golden_bench_cluster_script():
    opts = bench_options({"nodes": 2, "partition": "cpu", "account": "proj-42",
                          "time": "00:30:00", "setup": ["module load python"]},
                         workers=[1, 2, 4])
    assert opts.ntasks_per_node == 3  # 6 ranks over 2 nodes
    text = render_bench_script(opts, job_name="bench-describe",
                               run_dir="/home/alice/.hpcjobs/runs/bench-describe-20261207-0400-ab",
                               python="/opt/venvs/hpc/bin/python", hpcjobs_version="0.0-test",
                               ranks=6)
    assert_golden(text, "bench-cluster")
    assert_valid_bash(text)


class _Sinfo:
    """A Slurm whose only answer is ``sinfo``'s (partition|avail|nodes|state|cpus)."""

    def __init__(self, rows: str):
        self.rows = rows

    def __call__(self, args, timeout):
        from hpcjobs.slurm.client import Completed

        return Completed(tuple(args), 0, self.rows, "")

    @staticmethod
    def which(name):
        return f"/usr/bin/{name}"


def test_room_for_the_ranks_is_checked_against_the_partition():
    client = SlurmClient(runner=_Sinfo("debug*|up|3|idle|4\nbig|up|2|idle|64\n"),
                         which=_Sinfo.which)
    check_room(bench_options({"nodes": 2}, workers=[1, 2, 4, 6]), [1, 2, 4, 6], client)
    with pytest.raises(UserError, match=r"--workers 7: 9 ranks .* need 5 cores on each of 2 "
                                        r"node\(s\), but the partition's nodes have 4"):
        check_room(bench_options({"nodes": 2}, workers=[7]), [7], client)
    check_room(bench_options({"nodes": 2, "partition": "big"}, workers=[7]), [7], client)


@pytest.mark.parametrize("args, message", [
    (["--workers", "1,2", "--nodes", "5"], "--nodes 5: a cluster of 4 ranks (scheduler, "
                                           "driver, 2 worker(s)) leaves a node empty"),
    (["--workers", "1,2", "--cpus-per-task", "2", "--shared"],
     "--cpus-per-task does not go with --workers"),
    (["--weak"], "Error: --weak needs --workers (e.g. --workers 1,2,4)"),
    (["--workers", "0,2"], "worker counts of at least 1"),
])
def test_bad_input_is_one_line_with_exit_2(slurm, tmp_path, monkeypatch,
                                           args, message):
    _write_cluster_defs(tmp_path / "cdefs")
    monkeypatch.setenv("HPCJOBS_BENCHMARKS", str(tmp_path / "cdefs"))
    out = hpcjobs("bench", "kg", "--submit", *args, code=2)
    # (a malformed value is click's usage error: its last line says what was expected)
    assert message in out.strip().splitlines()[-1], out
    assert not any(call[0] == "sbatch" for call in slurm.calls)


def test_workers_beyond_the_nodes_cores_are_refused_before_sbatch(
        slurm, tmp_path, monkeypatch):
    _write_cluster_defs(tmp_path / "cdefs")
    monkeypatch.setenv("HPCJOBS_BENCHMARKS", str(tmp_path / "cdefs"))
    # the fake Slurm's nodes have 4 CPUs: 10 ranks need 5 on each of 2 nodes
    out = hpcjobs("bench", "kg", "--submit", "--nodes", "2", "--workers", "1,8", code=2)
    assert "--workers 8: 10 ranks" in out and len(out.strip().splitlines()) == 1, out
    assert not any(call[0] == "sbatch" for call in slurm.calls)
    assert not (tmp_path / "runs").exists()


def test_submit_driver_merge_and_read_back(slurm, tmp_path, monkeypatch,
                                           local_cluster):
    """The job as the fake Slurm takes it; its driver's part on a LocalCluster (the ranks'
    Dask over MPI is the real-Slurm test's); merge, --from, compare and the scaling plot."""
    from hpcjobs.slurm.bench import _run_and_write
    from hpcjobs.slurm.runs import find_run

    _write_cluster_defs(tmp_path / "cdefs")
    monkeypatch.setenv("HPCJOBS_BENCHMARKS", str(tmp_path / "cdefs"))
    merged = tmp_path / "scaling.jsonl"
    out = hpcjobs("bench", "kg", "--quick", "--submit", "--nodes", "2", "--workers", "1,2",
                  "--json-out", str(merged))
    assert "submitted benchmark job 100 over 2 node(s)" in out
    script = Path(slurm.calls[-1][-1]).read_text()
    assert "#SBATCH --nodes=2" in script and "#SBATCH --ntasks-per-node=2" in script
    assert "srun --mpi=pmi2 --ntasks=4 --distribution=cyclic" in script
    assert "-m hpcjobs bench-cluster " in script and "export NUMBA_NUM_THREADS=1" in script
    run = find_run("100")
    assert run.config["writers"] == 1 and run.config["request"]["workers"] == [1, 2]
    env = {"SLURMD_NODENAME": "node1", "SLURM_NODEID": "0", "SLURM_JOB_ID": "100",
           "SLURM_JOB_NUM_NODES": "2", "SLURM_JOB_NODELIST": "node[1-2]"}
    code = _run_and_write(run, run.config, env=env, echo=lambda msg: None,
                          log=lambda msg: None, cluster=RetiringCluster(local_cluster))
    assert code == 0
    out = hpcjobs("bench", "merge", "100")
    assert f"merged 2 record(s) from 1 node(s) (node1) into {merged}" in out
    assert "wrote nothing" not in out  # one writer: the driver
    records = harness.read_jsonl(merged)
    assert [(r["workers"], r["node"], r["slurm"]["job_id"]) for r in records] == [
        (1, "node1", "100"), (2, "node1", "100")]
    assert all(r["worker_nodes"] == 1 and r["scaling_speedup"] for r in records)
    shown = hpcjobs("bench", "--from", str(merged))
    assert "workers" in shown and "speedup" in shown and "on nodes" in shown
    assert "dask" in hpcjobs("bench", "compare", str(merged), str(merged))
    pytest.importorskip("matplotlib")
    png = tmp_path / "scaling.png"
    hpcjobs("bench", "--from", str(merged), "--plot", str(png))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
