"""The CLI through click's CliRunner and as a real process: exit codes, one-line errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import zarr
from click.testing import CliRunner

from hpcjobs import __version__
from hpcjobs.cli import cli
from tests.conftest import start_cluster, stop_cluster, write_job

HPCJOBS = [sys.executable, "-m", "hpcjobs"]

JOB = """
name = "clitest"
[input]
path = "in.zarr"
[[step]]
name = "stats"
kernel = "describe"
input = "readings"
[output]
path = "res.zarr"
[cluster]
workers = 1
"""


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_version_and_help():
    assert __version__ in invoke("--version").output
    result = invoke("-h")
    assert result.exit_code == 0 and "run" in result.output and "kernels" in result.output


def test_help_is_fast_and_imports_nothing_heavy():
    code = ("import sys, time; t = time.perf_counter(); from hpcjobs.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('dask', 'numba', 'zarr', 'distributed') if m in sys.modules]\n"
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_commands_load_whatever_the_process_argv(monkeypatch):
    # the root help lists commands without importing them; a command itself always loads in
    # full, also when the host process (pytest, a notebook) was started without arguments
    monkeypatch.setattr(sys, "argv", ["python"])
    assert "--workers" in invoke("run", "--help").output
    assert "Make example data" in invoke("--help").output


def test_kernels_listing_and_detail():
    result = invoke("kernels")
    assert result.exit_code == 0 and "describe" in result.output
    detail = invoke("kernels", "describe")
    assert "bins" in detail.output and "outputs:" in detail.output
    data = json.loads(invoke("kernels", "--json").output)
    assert any(k["name"] == "describe" for k in data)
    missing = CliRunner().invoke(cli, ["kernels", "nope"])
    assert missing.exit_code == 2 and "unknown kernel 'nope'" in missing.output


def test_run_then_show(input_dir):
    job = write_job(input_dir, JOB)
    result = CliRunner().invoke(cli, ["run", str(job), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output
    shown = invoke("show", input_dir / "res.zarr")
    assert "step stats" in shown.output and "complete" in shown.output
    assert "mean" in shown.output and "4000" in shown.output
    info = json.loads(invoke("show", input_dir / "res.zarr", "--json").output)
    assert info["provenance"]["job_name"] == "clitest"
    # a second run without --resume/--overwrite is refused with exit code 2
    again = CliRunner().invoke(cli, ["run", str(job), "--no-progress"])
    assert again.exit_code == 2 and "already exists" in again.output


def test_set_overrides_and_report(input_dir):
    job = write_job(input_dir, JOB)
    result = CliRunner().invoke(cli, ["run", str(job), "--no-progress", "--report",
                                      "--set", "step.stats.params.bins=5"])
    assert result.exit_code == 0, result.output
    assert zarr.open_array(str(input_dir / "res.zarr/stats/hist")).shape == (3, 5)
    assert (input_dir / "res.report.html").stat().st_size > 1000


def test_oversubscription_is_refused(input_dir):
    job = write_job(input_dir, JOB)
    result = CliRunner().invoke(cli, ["run", str(job), "--workers", "64",
                                      "--threads-per-worker", "64"])
    assert result.exit_code == 2 and "exceeds the" in result.output
    assert not (input_dir / "res.zarr").exists()


@pytest.mark.parametrize("args, words", [
    (["run", "missing.toml"], "file not found"),
    (["show", "missing.zarr"], "does not exist"),
    (["run", "--resume", "--overwrite", "x.toml"], "exclude each other"),
])
def test_user_errors_exit_2_in_one_line(args, words, tmp_path):
    proc = subprocess.run(HPCJOBS + args, capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert words in proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and words in errors[0]  # one line (after click's usage hint)


def test_debug_shows_the_traceback(tmp_path):
    proc = subprocess.run(HPCJOBS + ["--debug", "run", "missing.toml"], capture_output=True,
                          text=True, cwd=tmp_path)
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_cluster_command_is_shared_by_runs(input_dir):
    sched = input_dir / "scheduler.json"
    proc = start_cluster(sched)
    try:
        job = write_job(input_dir, JOB)
        result = CliRunner().invoke(cli, ["run", str(job), "--scheduler-file", str(sched),
                                          "--no-progress"])
        assert result.exit_code == 0, result.output
    finally:
        out = stop_cluster(proc, signal.SIGINT)
    assert "dashboard:" in out and "cluster stopped." in out
    assert not sched.exists()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_cluster_command_stops_cleanly_on_signals(tmp_path, sig):
    sched = tmp_path / "scheduler.json"
    out = stop_cluster(start_cluster(sched), sig)
    assert "cluster stopped." in out and "Traceback" not in out
    assert not sched.exists()


@pytest.mark.slow
def test_quickstart_end_to_end(tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(HPCJOBS + ["quickstart", str(tmp_path / "qs"), "--rows", "20000"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "quickstart finished" in proc.stdout
    result = Path(tmp_path / "qs/results/quickstart.zarr")
    g = zarr.open_group(str(result), mode="r")
    assert g.attrs["status"] == "complete"
    assert g["summary/count"][:].tolist() == [20000] * 4
    assert g["clusters/labels"].shape == (20000,) and g["clusters/centroids"].shape == (6, 4)
    assert int(g["density/raster"][:].sum()) == 20000
    # its data carries chunk statistics: the job needed no pass to find ranges
    assert "one pass to gather" not in proc.stderr + proc.stdout
    from hpcjobs import chunkstats

    data = zarr.open_array(str(tmp_path / "qs/data/sensors.zarr/readings"), mode="r")[:]
    stats = chunkstats.load(tmp_path / "qs/data/sensors.zarr/readings")
    assert stats.column_range(2)[:2] == (data[:, 2].min(), data[:, 2].max())
