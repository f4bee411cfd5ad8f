"""Against the real local Slurm cluster: a batch job whose worker rank is SIGKILLed in the
middle of k-means's Lloyd loop still completes, with exit code 0 and the result of an
uninterrupted local run (labels identical, centroids and inertia to 1e-12).

Run as root, the session fixture starts the cluster itself (installing Slurm if missing).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from pathlib import Path

import pytest

from tests import slurm_fixtures
from tests.test_slurm_real import (
    DESCRIBE,
    assert_same_groups,
    local_result,
    log_text,
    make_input,
    status_json,
    submit,
    wait_for,
    write_job,
)

slurm_cluster = slurm_fixtures.slurm_cluster
runs_dir = slurm_fixtures.runs_dir

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(360)]

# tol = 0: the loop runs all its iterations (or until the centroids stop moving exactly)
KMEANS_LONG = '[[step]]\nname = "km"\nkernel = "kmeans"\ninput = "readings"\n' \
              'params = { n_clusters = 8, seed = 0, max_iter = 60, tol = 0.0 }\n'


def kill_a_rank_mid_loop(cluster_file: Path, iterations: int, timeout: float = 150) -> dict:
    """Connect to the job's cluster with its certificate, wait until a k-means worker-group member
    has finished ``iterations`` Lloyd iterations, and SIGKILL that worker's MPI rank (the
    worker runs in the rank's own process). Returns what it killed."""
    from distributed import Client

    from hpcjobs.runtime.mpi import load_security

    address, security = load_security(cluster_file)

    def saved_step(dask_worker) -> int:  # (a local function: sent by value to the ranks)
        plugin = dask_worker.plugins.get("hpcjobs-worker-group")  # its PLUGIN_NAME
        return max((step for step, _ in getattr(plugin, "saved", {}).values()), default=0)

    def identity(dask_worker) -> tuple:
        return os.getpid(), dask_worker.name, os.environ.get("SLURM_PROCID")

    async def watch() -> dict:
        # on an event loop of this thread: a client's own loop thread can be slow to start
        # while the job's ranks hold both cores
        async with Client(address, security=security, asynchronous=True,
                          timeout=30) as client:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                try:
                    steps = await client.run(saved_step)
                except Exception:  # noqa: BLE001 - a worker between states: ask again
                    steps = {}
                ready = [w for w, step in steps.items() if step >= iterations]
                if ready:
                    pid, name, procid = (await client.run(identity, workers=ready[:1]))[
                        ready[0]]
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
                    assert b"mpi-run" in cmdline, cmdline  # the rank itself, no nanny
                    os.kill(pid, signal.SIGKILL)
                    return {"pid": pid, "name": name, "rank": procid,
                            "step": steps[ready[0]]}
                await asyncio.sleep(0.05)
        raise AssertionError(f"no k-means group member reached iteration {iterations} in {timeout} s")

    return asyncio.run(watch())


def test_batch_job_survives_a_worker_rank_killed_mid_step(slurm_cluster, runs_dir, tmp_path):
    make_input(tmp_path / "data.zarr", rows=200_000, chunk=25_000)
    # 4 ranks: the scheduler, the driver and two workers, one of which is killed
    job = write_job(tmp_path, "loss", steps=KMEANS_LONG,
                    slurm='nodes = 2\nntasks_per_node = 2\ntime = "00:05:00"')
    job_id, run_id = submit(job)
    cluster = wait_for(lambda: next((runs_dir / run_id / "cluster").glob("*.json"), None), 90,
                       "the scheduler address in the run folder")
    killed = kill_a_rank_mid_loop(cluster, iterations=3)
    assert killed["rank"] in ("2", "3"), killed  # a worker rank, not the scheduler's or driver's
    print(f"\nkilled {killed}")

    wait_for(lambda: status_json(run_id)["state"] in ("COMPLETED", "FAILED"), 240,
             "the job to end")
    st = status_json(run_id)
    log = log_text(runs_dir, run_id)
    print("log tail:\n" + "\n".join(log.splitlines()[-8:]))
    assert st["state"] == "COMPLETED", log
    assert st["tasks"][0]["exit_code"] == 0
    assert re.search(r"end .* exit code 0", log)
    # the scheduler said what happened, once
    assert len(re.findall(r"lost worker", log)) == 1 and f"lost worker {killed['name']}" in log
    assert re.search(r"task \d+: Killed", log)  # srun saw the rank die, and went on
    # a clean log: Dask's own reports of what it handled are left out
    others = [ln for ln in log.splitlines() if not ln.startswith(("hpcjobs", "srun: "))]
    assert not others, others

    local = local_result(job, tmp_path / "local.zarr")
    assert_same_groups(tmp_path / "out.zarr", local,
                       {"km": ["centroids", "labels", "inertia", "n_iter"]})


@pytest.mark.timeout(600)
def test_batch_job_whose_every_worker_died_ends_and_resumes(slurm_cluster, runs_dir, tmp_path):
    """With no worker left, the job fails soon (its walltime is 5 minutes) instead of waiting
    for workers that MPI never brings back; the steps it finished are kept, and a resumed
    submit finishes the rest."""
    from hpcjobs.runtime import NO_WORKERS_TIMEOUT

    make_input(tmp_path / "data.zarr", rows=200_000, chunk=25_000)
    # 3 ranks: the scheduler, the driver and the one worker, which is killed
    job = write_job(tmp_path, "allgone", steps=DESCRIBE + KMEANS_LONG,
                    slurm='nodes = 1\nntasks_per_node = 3\ntime = "00:05:00"')
    job_id, run_id = submit(job)
    cluster = wait_for(lambda: next((runs_dir / run_id / "cluster").glob("*.json"), None), 90,
                       "the scheduler address in the run folder")
    killed = kill_a_rank_mid_loop(cluster, iterations=2)
    assert killed["rank"] == "2", killed
    t_killed = time.monotonic()

    wait_for(lambda: status_json(run_id)["state"] in ("COMPLETED", "FAILED"),
             NO_WORKERS_TIMEOUT + 90, "the job to end without its workers")
    waited = time.monotonic() - t_killed
    st = status_json(run_id)
    log = log_text(runs_dir, run_id)
    print(f"\nkilled {killed}; the job ended {waited:.0f} s later\nlog tail:\n"
          + "\n".join(log.splitlines()[-6:]))
    assert st["state"] == "FAILED", log
    assert "the last one: no worker is left" in log and "--resume" in log
    assert re.search(r"steps? [^:\n]*summary[^:\n]*: done", log)  # finished before: kept
    others = [ln for ln in log.splitlines() if not ln.startswith(("hpcjobs", "srun: "))]
    assert not others, others  # the scheduler's line and the driver's error say it all

    _, resumed = submit(job, "--resume")
    wait_for(lambda: status_json(resumed)["state"] in ("COMPLETED", "FAILED"), 240,
             "the resumed job to end")
    log = log_text(runs_dir, resumed)
    assert status_json(resumed)["state"] == "COMPLETED", log
    assert "step summary: complete from an earlier run, skipped" in log, log
    local = local_result(job, tmp_path / "local.zarr")
    assert_same_groups(tmp_path / "out.zarr", local,
                       {"summary": ["mean", "count"],
                        "km": ["centroids", "labels", "inertia", "n_iter"]})
