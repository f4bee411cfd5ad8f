"""Site profiles: [slurm] and [cluster] defaults from Dask's configuration (section hpcjobs),
under the job file and the command line; `hpcjobs config` says where each value came from."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from hpcjobs.cli import cli

PROFILE = """\
hpcjobs:
  slurm:
    partition: centre-a
    account: proj-42
    ntasks-per-node: 4
    setup: ["module load mpi/centre-a"]
  cluster:
    memory_limit: 3GiB
"""


@pytest.fixture
def site_profile(tmp_path, monkeypatch):
    """A profile file in a Dask config folder of its own, loaded as Dask loads its config."""
    import dask.config

    folder = tmp_path / "dask"
    folder.mkdir()
    (folder / "hpcjobs.yaml").write_text(PROFILE)
    monkeypatch.setattr(dask.config, "paths", [str(folder)])
    collected = dask.config.collect(paths=[str(folder)], env={})
    with dask.config.set({"hpcjobs": collected["hpcjobs"]}):
        yield folder / "hpcjobs.yaml"


@pytest.fixture
def job(tmp_path, monkeypatch):
    import numpy as np
    import zarr

    g = zarr.open_group(str(tmp_path / "data.zarr"), mode="w", zarr_format=3)
    g.create_array("readings", shape=(100, 3), chunks=(50, 3), dtype="f8")[:] = np.ones((100, 3))
    monkeypatch.setenv("HPCJOBS_RUNS", str(tmp_path / "runs"))
    path = tmp_path / "job.toml"
    path.write_text('name = "portable"\n[input]\npath = "data.zarr"\n[[step]]\n'
                    'kernel = "describe"\ninput = "readings"\n[output]\npath = "out.zarr"\n'
                    '[slurm]\nnodes = 2\ntime = "00:20:00"\n')
    return path


def invoke(*args, code=0):
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == code, result.output
    return result.output


def test_profile_values_appear_in_submit_dry_run_under_the_job_file(site_profile, job):
    out = invoke("submit", str(job), "--dry-run")
    for line in ("--partition=centre-a", "--account=proj-42", "--ntasks-per-node=4",
                 "--nodes=2", "--time=00:20:00"):
        assert f"#SBATCH {line}\n" in out
    assert "module load mpi/centre-a\n" in out
    # the job file wins over the profile, the command line over both
    job.write_text(job.read_text() + 'partition = "from-job"\n')
    out = invoke("submit", str(job), "--dry-run", "--account", "from-cli")
    assert "#SBATCH --partition=from-job\n" in out and "#SBATCH --account=from-cli\n" in out
    # the same profile sizes an interactive cluster
    out = invoke("cluster", "--slurm", "--dry-run", "-t", "01:00:00")
    assert "#SBATCH --partition=centre-a\n" in out and "#SBATCH --ntasks-per-node=4\n" in out


def test_without_a_profile_nothing_changes(job):
    out = invoke("submit", str(job), "--dry-run")
    assert "--partition" not in out and "--account" not in out
    assert "#SBATCH --ntasks-per-node=3\n" in out  # hpcjobs' own default


def test_cluster_table_defaults_size_local_clusters(site_profile):
    from hpcjobs.runtime.local import plan_cluster

    assert plan_cluster({}, cores=2).memory_limit == "3GiB"
    assert plan_cluster({"memory_limit": "1GiB"}, cores=2).memory_limit == "1GiB"


def test_config_names_the_source_of_each_value(site_profile, monkeypatch):
    import dask

    with dask.config.set({"hpcjobs.slurm.qos": "debug"}):
        out = invoke("config")
        rows = {line.split()[0]: line for line in out.splitlines() if line.startswith(
            ("slurm.", "cluster."))}
        assert str(site_profile) in rows["slurm.partition"] and "'centre-a'" in rows[
            "slurm.partition"]
        assert str(site_profile) in rows["cluster.memory_limit"]
        assert "dask.config.set (in this process)" in rows["slurm.qos"]
        data = json.loads(invoke("config", "--json"))
    assert {"key": "slurm.account", "value": "proj-42", "source": str(site_profile)} in data


@pytest.mark.parametrize("profile, words", [
    ({"slurm": {"partiton": "x"}}, "partiton: unknown Slurm setting; valid keys: partition"),
    ({"slurm": {"partition": "a b"}}, "partition: 'a b' cannot go into an #SBATCH line"),
    ({"cluster": {"workers": 0}}, "cluster.workers: The 'workers' parameter of [cluster] must be an int"),
    ({"slrum": {}}, "unknown table; valid: slurm, cluster"),
])
def test_a_bad_profile_is_one_line_exit_2(profile, words, job):
    import dask

    commands = [["config"]] + ([] if "cluster" in profile else [["submit", str(job),
                                                                 "--dry-run"]])
    with dask.config.set({"hpcjobs": profile}):
        for args in commands:
            out = invoke(*args, code=2)
            assert words in out and "Traceback" not in out
            assert "dask config hpcjobs." in out and "(from dask.config.set (in this " \
                "process))" in out


def test_real_dask_config_files_and_variables_reach_a_new_process(tmp_path, job):
    """The profile as a user sets it: a YAML file in $DASK_CONFIG and a DASK_HPCJOBS__...
    variable, read by Dask itself in a fresh `hpcjobs` process."""
    folder = tmp_path / "site"
    folder.mkdir()
    (folder / "hpcjobs.yaml").write_text(PROFILE)
    env = {**os.environ, "DASK_CONFIG": str(folder), "DASK_HPCJOBS__SLURM__QOS": "high",
           "DASK_HPCJOBS__SLURM__PARTITION": "from-env"}

    def hpcjobs(*args: str) -> str:
        proc = subprocess.run([sys.executable, "-m", "hpcjobs", *args], env=env,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    out = hpcjobs("submit", str(job), "--dry-run")
    assert "#SBATCH --qos=high\n" in out and "#SBATCH --account=proj-42\n" in out
    assert "#SBATCH --partition=from-env\n" in out  # a variable beats a file
    rows = {r["key"]: r for r in json.loads(hpcjobs("config", "--json"))}
    assert rows["slurm.account"]["source"] == str(folder / "hpcjobs.yaml")
    assert rows["slurm.qos"]["source"].startswith("environment")
    assert rows["slurm.partition"]["source"].startswith("environment")


def test_doctor_reports_the_profile(site_profile, monkeypatch, tmp_path):
    from hpcjobs.slurm.doctor import _site_profile

    lines = []
    values = _site_profile(lambda ok, what, detail="": lines.append((ok, what, detail)))
    assert values["partition"] == "centre-a"
    ok, what, detail = lines[0]
    assert ok and what == "site profile" and f"partition='centre-a' ({site_profile})" in detail
