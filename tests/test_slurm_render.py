"""Batch-script rendering: golden files, validation of [slurm] values, --dry-run.

Regenerate the golden files after an intended change with
``HPCJOBS_UPDATE_GOLDEN=1 python -m pytest tests/test_slurm_render.py``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from hpcjobs.cli import cli
from hpcjobs.errors import UserError
from hpcjobs.slurm.script import OPTIONS, render_script, resolve_options
from hpcjobs.slurm.sweep import expand_sweep
from tests.golden_scripts import assert_golden, assert_valid_bash

CASES = {
    "minimal": ({}, {}, {}),
    "full": ({"partition": "cpu", "account": "proj-42", "qos": "normal", "nodes": 4,
              "ntasks_per_node": 8, "cpus_per_task": 2, "mem": "64G", "time": "1-12:00:00",
              "gres": "gpu:a100:2", "constraint": "skylake&ib", "job_name": "big-run",
              "extra": ["--exclusive", "--mail-type=END,FAIL", "--mail-user=me@uni.example"],
              "setup": ["module load mpi/openmpi-4", "source /opt/envs/hpc/bin/activate",
                        "export DATA_ROOT=/scratch/$USER"],
              "signal_seconds": 300, "max_requeues": 5, "mpi": "pmix"},
             {}, {"mode": "resume"}),
    "overrides": ({"partition": "cpu", "nodes": 2, "time": "02:00:00"},
                  {"partition": "debug", "time": "00:10:00", "ntasks_per_node": 4,
                   "max_requeues": 0, "signal_seconds": 0},
                  {"mode": "overwrite"}),
    "array": ({"nodes": 1}, {}, {"array": "0-5%2"}),
}


def render_case(name: str) -> str:
    table, overrides, kwargs = CASES[name]
    opts = resolve_options(table, overrides)
    return render_script(opts, job_name="sensor-clusters",
                         run_dir="/home/alice/.hpcjobs/runs/sensor-clusters-20261125-120000-abcd",
                         python="/opt/venvs/hpc/bin/python", hpcjobs_version="0.0-test",
                         **kwargs)


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden(name):
    assert_golden(render_case(name), name)


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_rendered_script_is_valid_bash(name):
    assert_valid_bash(render_case(name))


def test_directives():
    text = render_case("full")
    lines = [ln for ln in text.splitlines() if ln.startswith("#SBATCH")]
    assert "#SBATCH --signal=B:USR1@300" in lines
    assert "#SBATCH --requeue" in lines
    assert "#SBATCH --open-mode=append" in lines
    assert "#SBATCH --nodes=4" in lines and "#SBATCH --ntasks-per-node=8" in lines
    assert "#SBATCH --gres=gpu:a100:2" in lines and "#SBATCH --exclusive" in lines
    assert "MAX_REQUEUES=5" in text and "MODE=resume" in text
    assert "srun --mpi=pmix --kill-on-bad-exit=0 --wait=0 /opt/venvs/hpc/bin/python -m hpcjobs mpi-run" \
        in text
    over = render_case("overrides")
    assert "#SBATCH --partition=debug" in over and "#SBATCH --time=00:10:00" in over
    assert "#SBATCH --signal" not in over and "#SBATCH --no-requeue" in over
    assert "#SBATCH --output=/home/alice/.hpcjobs/runs/sensor-clusters-20261125-120000-abcd/" \
           "logs/slurm-%A_%a.out" in render_case("array")


def test_each_setup_line_is_checked():
    opts = resolve_options({"setup": ["module load mpi  # the site's MPI", "echo 'it''s' &"]})
    text = render_script(opts, job_name="j", run_dir="/runs/r1", python="/usr/bin/python3")
    assert "module load mpi  # the site's MPI\n_rc=$?; if [ $_rc -ne 0 ]; then setup_failed " \
        "$_rc 'module load mpi  # the site'\"'\"'s MPI'; fi" in text
    assert text.index("set +u +o pipefail") < text.index("module load") < \
        text.index("set -u -o pipefail")


def test_paths_are_shell_quoted():
    opts = resolve_options({"python": "/opt/my envs/bin/python"})
    text = render_script(opts, job_name="j", run_dir="/runs/r1", python="/usr/bin/python3")
    assert "'/opt/my envs/bin/python' -m hpcjobs mpi-run /runs/r1" in text
    assert "PYTHON='/opt/my envs/bin/python'" in text


BAD_SBATCH = ["cpu\n#SBATCH --wrap=rm", "cpu --qos=high", "$(rm -rf ~)", "cpu;reboot",
              "a'b", 'a"b', "`id`", "cpu #x", "", "a\\b"]


@pytest.mark.parametrize("value", BAD_SBATCH)
@pytest.mark.parametrize("key", ["partition", "account", "constraint", "gres", "job_name"])
def test_values_that_break_sbatch_lines_are_refused(key, value):
    with pytest.raises(UserError, match=key):
        resolve_options({key: value})


@pytest.mark.parametrize("table, match", [
    ({"partitoin": "cpu"}, "unknown Slurm setting; valid keys: partition, account"),
    ({"nodes": 0}, "integer >= 1"),
    ({"nodes": "2"}, "integer >= 1"),
    ({"nodes": True}, "integer >= 1"),
    ({"nodes": 1, "ntasks_per_node": 2}, "at least 3 ranks"),
    ({"time": "one hour"}, "cannot go into an #SBATCH line"),
    ({"time": "1h"}, "Slurm time"),
    ({"mem": "lots"}, "size like"),
    ({"extra": ["--output=/tmp/x"]}, "set by hpcjobs"),
    ({"extra": ["--array=0-3"]}, r"\[sweep\]"),
    ({"extra": ["exclusive"]}, "not a directive"),
    ({"extra": ["--mail-user=$(id)"]}, "cannot go into"),
    ({"setup": ["module load mpi\nrm -rf /"]}, "single line"),
    ({"setup": ["echo 'unbalanced"]}, "unbalanced quotes"),
    ({"setup": ["module load a \\"]}, "complete command"),
    ({"setup": ["module load a &&"]}, "complete command"),
    ({"setup": ["cat x |  "]}, "complete command"),
    ({"setup": ["   "]}, "empty setup entry"),
    ({"setup": "module load a", "python": "py\nthon"}, "one non-empty line"),
    ({"max_requeues": -1}, "integer >= 0"),
])
def test_bad_tables_are_refused(table, match):
    with pytest.raises(UserError, match=match):
        resolve_options(table)


def test_every_option_has_a_field_and_a_default():
    from dataclasses import fields

    from hpcjobs.slurm.script import SlurmOptions

    assert {f.name for f in fields(SlurmOptions)} - {"_keys"} == set(OPTIONS)
    assert resolve_options({}).ntasks == 3


def test_unknown_key_lists_every_valid_key():
    with pytest.raises(UserError) as info:
        resolve_options({"bogus": 1})
    for key in OPTIONS:
        assert key in str(info.value)


def test_command_line_wins_and_none_is_ignored():
    opts = resolve_options({"partition": "cpu", "nodes": 2}, {"partition": "gpu", "nodes": None,
                                                              "ntasks-per-node": 5})
    assert (opts.partition, opts.nodes, opts.ntasks_per_node) == ("gpu", 2, 5)
    with pytest.raises(UserError, match="command line: partition"):
        resolve_options({}, {"partition": "a b"})


def test_sweep_expansion():
    sweep = expand_sweep({"max_parallel": 2, "step": {"km": {"params": {"seed": [0, 1]}}},
                          "step.km.params.n_clusters": [2, 4, 8]})
    assert sweep.array_spec == "0-5%2"
    assert sweep.points[0] == {"step.km.params.seed": 0, "step.km.params.n_clusters": 2}
    assert sweep.points[5] == {"step.km.params.seed": 1, "step.km.params.n_clusters": 8}
    assert expand_sweep({}) is None
    assert expand_sweep({"step.a.params.b": [1]}).array_spec == "0-0"
    for bad, match in [({"step.a.params.b": []}, "non-empty list"),
                       ({"step.a.params.b": 3}, "non-empty list"),
                       ({"output.path": ["a", "b"]}, "only step parameters"),
                       ({"max_parallel": 0, "step.a.params.b": [1]}, "max_parallel"),
                       ({"max_parallel": 2}, "no parameters"),
                       ({"step.a.params.b": list(range(40)), "step.a.params.c": list(range(40))},
                        "at most 1000")]:
        with pytest.raises(UserError, match=match):
            expand_sweep(bad)


# -- hpcjobs submit --dry-run -------------------------------------------------------------------


@pytest.fixture
def job_dir(tmp_path, monkeypatch):
    import numpy as np
    import zarr

    g = zarr.open_group(str(tmp_path / "data.zarr"), mode="w", zarr_format=3)
    g.create_array("readings", shape=(100, 3), chunks=(50, 3), dtype="f8")[:] = \
        np.arange(300.0).reshape(100, 3)
    monkeypatch.setenv("HPCJOBS_RUNS", str(tmp_path / "runs"))
    return tmp_path


def write(job_dir: Path, slurm: str, extra: str = "") -> Path:
    job = job_dir / "job.toml"
    job.write_text('name = "dry"\n[input]\npath = "data.zarr"\n[[step]]\nkernel = "describe"\n'
                   f'input = "readings"\n[output]\npath = "out.zarr"\n[slurm]\n{slurm}\n{extra}')
    return job


def test_dry_run_prints_and_submits_nothing(job_dir, monkeypatch):
    import hpcjobs.cli.slurm as cli_slurm

    monkeypatch.setattr(cli_slurm, "_client", lambda: pytest.fail("dry run reached Slurm"))
    job = write(job_dir, 'partition = "cpu"\nnodes = 2')
    result = CliRunner().invoke(cli, ["submit", str(job), "--dry-run", "--time", "00:30:00",
                                      "-N", "3"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("#!/bin/bash")
    assert "#SBATCH --partition=cpu" in result.output
    assert "#SBATCH --nodes=3" in result.output and "#SBATCH --time=00:30:00" in result.output
    assert not (job_dir / "runs").exists() or not any((job_dir / "runs").iterdir())


def test_dry_run_refuses_bad_values_with_exit_2(job_dir):
    job = write(job_dir, 'partition = "cpu\\n#SBATCH --wrap=x"')
    result = CliRunner().invoke(cli, ["submit", str(job), "--dry-run"])
    assert result.exit_code == 2
    assert "partition" in result.output and "#SBATCH" in result.output
    result = CliRunner().invoke(cli, ["submit", str(write(job_dir, "")), "--dry-run",
                                      "--partition", "a$(id)"])
    assert result.exit_code == 2 and "cannot go into an #SBATCH line" in result.output
    result = CliRunner().invoke(cli, ["submit", str(write(job_dir, "bogus = 1")), "--dry-run"])
    assert result.exit_code == 2 and "valid keys: partition" in result.output


def test_dry_run_sweep(job_dir):
    job = write(job_dir, "", '[sweep]\nmax_parallel = 3\n"step.describe.params.bins" = [4, 8]\n')
    result = CliRunner().invoke(cli, ["submit", str(job), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "#SBATCH --array=0-1%3" in result.output
    bad = write(job_dir, "", '[sweep]\n"step.describe.params.bins" = [4, -1]\n')
    result = CliRunner().invoke(cli, ["submit", str(bad), "--dry-run"])
    assert result.exit_code == 2 and "point 1" in result.output


# -- interactive clusters (hpcjobs cluster --slurm) ---------------------------------------------

CLUSTER_CASES = {
    "cluster": ({"partition": "cpu", "nodes": 2, "time": "02:00:00",
                 "setup": ["module load mpi"]}, {}),
    "cluster-workers": ({"partition": "cpu", "nodes": 1, "ntasks_per_node": 1},
                        {"role": "workers", "cluster_job": "4242"}),
}


def render_cluster_case(name: str) -> str:
    from hpcjobs.slurm.script import CLUSTER_DEFAULTS, render_cluster_script

    table, kwargs = CLUSTER_CASES[name]
    opts = resolve_options(table, defaults=CLUSTER_DEFAULTS, min_tasks=1)
    return render_cluster_script(opts, job_name="notebook",
                                 run_dir="/home/alice/.hpcjobs/runs/notebook-20261207-120000-abcd",
                                 python="/opt/venvs/hpc/bin/python", hpcjobs_version="0.0-test",
                                 **kwargs)


@pytest.mark.parametrize("name", sorted(CLUSTER_CASES))
def test_cluster_golden(name):
    text = render_cluster_case(name)
    assert_golden(text, name)
    assert_valid_bash(text)


def test_cluster_script_never_requeues_and_warns_before_the_walltime():
    text = render_cluster_case("cluster")
    assert "#SBATCH --no-requeue" in text and "--requeue\n" not in text
    assert "#SBATCH --signal=B:USR1@300" in text  # a cluster's default: 5 minutes
    assert "mpi-cluster /home/alice" in text and "--join" not in text
    workers = render_cluster_case("cluster-workers")
    assert "--join 4242" in workers and "#SBATCH --ntasks-per-node=1" in workers


def test_cluster_dry_run_and_its_refusals(job_dir, monkeypatch):
    import hpcjobs.cli.cluster as cli_cluster

    monkeypatch.setattr(cli_cluster, "_client", lambda: pytest.fail("dry run reached Slurm"))
    job = write(job_dir, 'partition = "cpu"\nnodes = 3\nntasks_per_node = 1')
    result = CliRunner().invoke(cli, ["cluster", "--slurm", "--job", str(job), "--dry-run",
                                      "-t", "00:30:00", "--signal-seconds", "120"])
    assert result.exit_code == 0, result.output
    for line in ("--partition=cpu", "--nodes=3", "--ntasks-per-node=1", "--time=00:30:00",
                 "--signal=B:USR1@120", "--job-name=dry"):
        assert f"#SBATCH {line}\n" in result.output
    for args, words in (
            (["--workers", "2"], "--workers (the allocation's ranks are the workers"),
            (["--insecure"], "--insecure is for a local cluster"),
            (["-N", "1", "--ntasks-per-node", "1"], "at least 2 ranks (a scheduler and a "
                                                    "worker)"),
            (["-t", "00:05:00"], "the walltime warning would come at the start"),
            (["--partition", "a b"], "cannot go into an #SBATCH line")):
        result = CliRunner().invoke(cli, ["cluster", "--slurm", "--dry-run", *args])
        assert result.exit_code == 2 and words in result.output, (args, result.output)
    result = CliRunner().invoke(cli, ["cluster", "--nodes", "2"])
    assert result.exit_code == 2 and "--nodes needs --slurm" in result.output


@pytest.mark.parametrize("value, seconds", [
    ("90", 5400), ("5:30", 330), ("01:00:00", 3600), ("1-12", 129600), ("1-02:03", 93780),
    ("1-02:03:04", 93784), ("UNLIMITED", None)])
def test_slurm_times_in_seconds(value, seconds):
    from hpcjobs.slurm.script import time_seconds

    assert time_seconds(value) == seconds
