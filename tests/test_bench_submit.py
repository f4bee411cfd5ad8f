"""``hpcjobs bench --submit`` without Slurm: the rendered batch script (golden file), the fake
Slurm at the one place that runs commands, each node's run and the merge, and bad input.

Regenerate the golden file after an intended change with
``HPCJOBS_UPDATE_GOLDEN=1 python -m pytest tests/test_bench_submit.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import dask.config
import pytest
from click.testing import CliRunner

import hpcjobs.cli.bench as cli_bench
import hpcjobs.cli.slurm as cli_slurm
from hpcjobs.bench import harness
from hpcjobs.cli import cli
from hpcjobs.slurm.bench import bench_options, node_run
from hpcjobs.slurm.client import SlurmClient
from hpcjobs.slurm.runs import find_run, new_run
from hpcjobs.slurm.script import render_bench_script
from tests.golden_scripts import assert_golden, assert_valid_bash
from tests.test_bench import _write_defs
from tests.test_slurm_fake import FakeSlurm


@pytest.fixture
def slurm(monkeypatch, tmp_path):
    """A fake Slurm behind both the bench and the status/cancel commands; a private run root;
    the small definitions of tests/test_bench.py (kernel ``ka``, sizes n=10 and n=20)."""
    fake = FakeSlurm()
    client = lambda: SlurmClient(runner=fake, which=fake.which)  # noqa: E731
    monkeypatch.setattr(cli_bench, "_client", client)
    monkeypatch.setattr(cli_slurm, "_client", client)
    monkeypatch.setenv("HPCJOBS_RUNS", str(tmp_path / "runs"))
    _write_defs(tmp_path / "defs")
    monkeypatch.setenv("HPCJOBS_BENCHMARKS", str(tmp_path / "defs"))
    monkeypatch.chdir(tmp_path)
    return fake


def hpcjobs(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == code, result.output
    return result.output


def node_env(node: str, index: int, job_id: str = "100", nodes: int = 2) -> dict:
    return {"SLURMD_NODENAME": node, "SLURM_NODEID": str(index), "SLURM_JOB_ID": job_id,
            "SLURM_JOB_NUM_NODES": str(nodes), "SLURM_JOB_NODELIST": "node[1-2]"}


def test_golden_bench_script():
    opts = bench_options({"nodes": 2, "partition": "cpu", "account": "proj-42",
                          "time": "00:30:00", "setup": ["module load python"]})
    text = render_bench_script(opts, job_name="bench-describe",
                               run_dir="/home/alice/.hpcjobs/runs/bench-describe-20261207-0400-ab",
                               python="/opt/venvs/hpc/bin/python", hpcjobs_version="0.0-test")
    assert_golden(text, "bench")
    assert_valid_bash(text)


def test_site_profile_applies_but_one_task_per_node_and_no_requeue():
    profile = {"partition": "cpu", "ntasks_per_node": 4, "signal_seconds": 300,
               "max_requeues": 5, "dashboard": "none", "setup": ["module load mpi"]}
    with dask.config.set({"hpcjobs": {"slurm": profile}}):
        opts = bench_options({"nodes": 3}, exclusive=False)
    assert (opts.partition, opts.nodes, opts.ntasks_per_node) == ("cpu", 3, 1)
    assert (opts.signal_seconds, opts.max_requeues, opts.extra) == (0, 0, ())
    assert opts.setup == ("module load mpi",)


def test_submit_run_nodes_merge_and_read_back(slurm, tmp_path):
    out = hpcjobs("bench", "ka", "--sizes", "0", "--repeats", "2", "--no-probe", "--submit",
                  "--nodes", "2", "--partition", "debug", "--time", "00:05:00",
                  "--json-out", "merged.jsonl")
    merged = tmp_path / "merged.jsonl"
    assert "submitted benchmark job 100 over 2 node(s); run bench-ka-" in out
    assert f"results  {merged} (merged when the job ends)" in out
    assert not merged.exists()
    assert [c[0] for c in slurm.calls] == ["sbatch"]
    run = find_run("100")
    script = Path(slurm.calls[0][-1]).read_text()
    for line in ("#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=1", "#SBATCH --exclusive",
                 "#SBATCH --partition=debug", "#SBATCH --time=00:05:00", "#SBATCH --no-requeue"):
        assert line in script.splitlines()
    assert "--signal" not in script
    assert f"bench-node {run.path}" in script and f"bench merge {run.path}" in script
    config = run.config
    assert config["request"] == {"kernels": ["ka"], "quick": False, "repeats": 2,
                                 "sizes": [0], "workers": None, "weak": False, "probe": False}
    assert config["merged"] == str(merged)

    # what the two tasks of the job do (node2 first: the merge orders by node index)
    lines: list[str] = []
    assert node_run(run.path, env=node_env("node2", 1), echo=lines.append, log=lines.append) == 0
    assert node_run(run.path, env=node_env("node1", 0), echo=lines.append, log=lines.append) == 0
    assert "node node1: 2 record(s)" in "\n".join(lines)
    assert "merged 4 record(s) from 2 node(s) (node1, node2) into " + str(merged) in \
        hpcjobs("bench", "merge", "100")
    records = harness.read_jsonl(merged)
    assert [(r["node"], r["impl"]) for r in records] == [
        ("node1", "hpcjobs"), ("node1", "np"), ("node2", "hpcjobs"), ("node2", "np")]
    for r in records:
        assert r["status"] == "ok" and r["slurm"]["job_id"] == "100"
        assert r["slurm"]["node"] == r["node"] and r["slurm"]["run"] == run.run_id
        assert r["slurm"]["node_index"] == (0 if r["node"] == "node1" else 1)
        assert r["slurm"]["nodes"] == 2
        m = r["machine"]
        assert m["cpu"] and m["cores"] >= 1 and m["memory_bytes"] > 0 and m["host"]

    shown = hpcjobs("bench", "--from", str(merged))
    assert "machine node1 (" in shown and "machine node2 (" in shown and "job 100)" in shown
    header = shown.splitlines()[0].split()
    assert header[-1] == "node"
    assert sum(1 for line in shown.splitlines() if line.rstrip().endswith("node2")) == 2
    cmp = hpcjobs("bench", "compare", str(merged), str(merged))
    assert "n=10 @node1" in cmp and "n=10 @node2" in cmp
    # a one-machine run against a run over two nodes: one node at a time
    single = tmp_path / "single.jsonl"
    harness.write_jsonl([{**r, "node": None, "slurm": None} for r in records[:2]], single)
    err = hpcjobs("bench", "compare", str(single), str(merged), code=2)
    assert "B holds records of 2 nodes (node1, node2)" in err and "--node NAME" in err
    assert "n=10" in hpcjobs("bench", "compare", str(single), str(merged), "--node", "node2")
    assert "its nodes: node1, node2" in hpcjobs("bench", "compare", str(merged), str(merged),
                                                "--node", "node3", code=2)

    # the generic run commands work on it
    assert "PENDING" in hpcjobs("status", "100")
    st = json.loads(hpcjobs("status", run.run_id, "--json"))
    assert st["output"] == str(merged)
    assert "cancelled job 100" in hpcjobs("cancel", "100")
    assert slurm.calls[-1] == ["scancel", "100"]


def test_merge_of_a_run_without_results_and_of_another_kind(slurm, tmp_path):
    hpcjobs("bench", "ka", "--sizes", "0", "--no-probe", "--submit")
    err = hpcjobs("bench", "merge", "100", code=1)
    assert "no node wrote results yet" in err
    err = hpcjobs("bench", "merge", "nosuchrun", code=2)
    assert "no run or Slurm job id 'nosuchrun'" in err
    other = new_run("job")
    other.update_state(run_id=other.run_id, job_id="7")
    err = hpcjobs("bench", "merge", "7", code=2)
    assert f"run {other.run_id} is not a benchmark job" in err


def test_dry_run_prints_the_script_and_submits_nothing(slurm, tmp_path):
    out = hpcjobs("bench", "ka", "--submit", "--dry-run", "--nodes", "3", "--shared", "-c", "2")
    assert "#SBATCH --nodes=3" in out and "#SBATCH --cpus-per-task=2" in out
    assert "--exclusive" not in out and "srun --ntasks-per-node=1 --whole" in out
    assert slurm.calls == [] and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("args, message", [
    (["--submit", "--from", "x.jsonl"], "--submit: --from does not go with it"),
    (["--submit", "--list"], "--submit: --list does not go with it"),
    (["--submit", "--no-json"], "--submit: --no-json does not go with it"),
    (["--submit", "--append"], "--submit: --append does not go with it"),
    (["--submit", "--plot", "a.png"], "--plot without --wait does not go with it"),
    (["--submit", "--nodes", "0"], "command line: nodes: expected an integer >= 1, found 0"),
    (["--submit", "--nodes", "-2"], "nodes: expected an integer >= 1, found -2"),
    (["--submit", "--time", "1h"], "time: expected a Slurm time"),
    (["--submit", "--partition", "a b"], "cannot go into an #SBATCH line"),
    (["--nodes", "2"], "--nodes needs --submit"),
    (["--wait"], "--wait needs --submit"),
    (["--partition", "cpu"], "--partition needs --submit"),
    (["--submit", "--sizes", "9"], "size index 9 out of range"),
    (["nokernel", "--submit"], "no benchmark for kernel 'nokernel'"),
    (["--submit", "--json-out", "/no/such/dir/x.jsonl"], "cannot write results there"),
])
def test_bad_input_is_one_line_with_exit_2_and_submits_nothing(slurm, tmp_path, args, message):
    (tmp_path / "x.jsonl").write_text("")
    kernel = [] if args[0] == "nokernel" else ["ka"]
    err = hpcjobs("bench", *kernel, *args, code=2)
    assert message in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert slurm.calls == [] and not (tmp_path / "runs").exists()


def test_a_failing_node_run_exits_1_and_keeps_its_records(slurm, tmp_path):
    (tmp_path / "defs" / "gamma.py").write_text(
        "from hpcjobs.bench.spec import Benchmark, Impl\n\n"
        "def bad(x):\n    raise ValueError('kaputt')\n\n"
        "BENCHMARKS = [Benchmark(name='gamma', kernel='kg', sizes=[{'n': 10}],\n"
        "    make_data=lambda size, rng: rng.standard_normal(size['n']),\n"
        "    impls=[Impl('hpcjobs', lambda x: x.sum()), Impl('bad', bad, peer=True)],\n"
        "    repeats=1)]\n")
    hpcjobs("bench", "kg", "--no-probe", "--submit", "--nodes", "2")
    run = find_run("100")
    lines: list[str] = []
    assert node_run(run.path, env=node_env("node1", 0), echo=lines.append,
                    log=lines.append) == 1
    merged = hpcjobs("bench", "merge", "100")
    assert f"merged 2 record(s) from 1 node(s) (node1) into {run.config['merged']}; 1 " \
        f"node(s) wrote nothing (hpcjobs logs {run.run_id})" in merged
    records = harness.read_jsonl(run.config["merged"])
    assert [(r["impl"], r["status"], r["node"]) for r in records] == [
        ("hpcjobs", "ok", "node1"), ("bad", "error", "node1")]
    # a node that cannot read the run folder says so, with exit code 2
    assert node_run(tmp_path / "nowhere", env=node_env("node2", 1), echo=lines.append,
                    log=lines.append) == 2
    assert "cannot read" in lines[-1] and "visible from this node" in lines[-1]
