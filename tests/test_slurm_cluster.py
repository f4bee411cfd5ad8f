"""Interactive clusters on the real local Slurm (``hpcjobs cluster --slurm``): start one in a
2-node allocation, connect from Python, run jobs on it with ``--on``, scale it by a worker
job and back, keep strangers out, warn of the walltime, stop it.

Small allocations (the machine has 2 cores, shared): 2 nodes x 1 rank, a 1-rank worker job.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import threading
import time

import pytest

from tests import slurm_fixtures
from tests.test_slurm_real import (
    DESCRIBE,
    STANDARDIZE,
    assert_same_groups,
    connect_once,
    hpcjobs,
    local_result,
    make_input,
    wait_for,
    write_job,
)

slurm_cluster = slurm_fixtures.slurm_cluster
runs_dir = slurm_fixtures.runs_dir

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(300)]


def start_cluster(*args: str) -> str:
    out = hpcjobs("cluster", "--slurm", *args)
    m = re.search(r"submitted cluster job (\d+); run (\S+)", out)
    assert m and "cluster up:" in out, out
    return m.group(2)


def status_json(ref: str) -> dict:
    return json.loads(hpcjobs("status", ref, "--json"))


def cluster_log(runs, run_id: str, job_id: str) -> str:
    return (runs / run_id / "logs" / f"slurm-{job_id}.out").read_text()


def test_two_node_cluster_connect_run_scale_refuse_and_stop(slurm_cluster, runs_dir, tmp_path):
    import dask.array as da
    from distributed.security import Security

    import hpcjobs as hpcjobs_pkg

    t0 = time.monotonic()
    run_id = start_cluster("--nodes", "2", "--ntasks-per-node", "1", "--time", "00:05:00",
                           "--signal-seconds", "60")
    up = time.monotonic() - t0
    run = runs_dir / run_id
    st = status_json(run_id)
    job_id = st["job_id"]
    assert st["state"] == "RUNNING" and st["kind"] == "cluster" and st["total_workers"] == 1
    conn = run / "cluster" / f"{job_id}.json"
    assert conn.stat().st_mode & 0o777 == 0o600 and run.stat().st_mode & 0o777 == 0o700
    text = hpcjobs("status", run_id)
    assert "workers  1 live: 1 in the allocation" in text and "ssh -N -L" in text

    # a client from Python, with the job's certificate
    client = hpcjobs_pkg.connect(run_id, timeout=60)
    try:
        assert client.submit(sum, [1, 2, 3]).result(timeout=60) == 6
        assert da.ones(1000, chunks=100).sum().compute() == 1000
        assert 0 < client.time_left <= 300 and client.walltime_warning is None
        assert client.dashboard_link.startswith("http://localhost:")
    finally:
        client.close()
    # strangers: no certificate, or a certificate of their own
    address = json.loads(conn.read_text())["address"]
    with pytest.raises((TypeError, OSError)):
        connect_once(address)
    with pytest.raises(OSError):
        connect_once(address, security=Security.temporary())

    # a job file run on it, as on a local cluster
    make_input(tmp_path / "data.zarr", rows=20_000, chunk=2_500)
    job = write_job(tmp_path, "on", steps=DESCRIBE, slurm="")
    out = hpcjobs("run", str(job), "--on", run_id, "--no-progress")
    assert "wrote" in out
    assert_same_groups(tmp_path / "out.zarr", local_result(job, tmp_path / "local.zarr"),
                       {"summary": ["count", "mean", "std", "hist"]})

    # one more worker job (1 rank), and back
    t1 = time.monotonic()
    out = hpcjobs("cluster", "scale", run_id, "1", "--ntasks-per-node", "1")
    worker_job = re.search(r"submitted worker job (\d+)", out).group(1)
    wait_for(lambda: status_json(run_id)["total_workers"] == 2, 60, "the worker job to join")
    scaled = time.monotonic() - t1
    st = status_json(run_id)
    assert st["workers"] == {job_id: 1, worker_job: 1}
    assert f"worker job {worker_job}" in hpcjobs("status", run_id)
    out = hpcjobs("cluster", "scale", run_id, "0")
    assert "retired 1 worker(s)" in out and "0 worker job(s)" in out
    st = status_json(run_id)
    assert st["total_workers"] == 1
    assert st["worker_jobs"] == [{"job_id": worker_job, "state": "COMPLETED",
                                  "summary": "COMPLETED"}]

    # stop it: workers retire, the scheduler closes, the certificate is gone
    out = hpcjobs("cancel", run_id)
    assert f"stopped cluster {run_id} (job {job_id}: COMPLETED)" in out
    assert not conn.exists()
    assert "already COMPLETED" in hpcjobs("cancel", run_id, code=2)
    log = cluster_log(runs_dir, run_id, job_id)
    print(f"\ncluster up in {up:.1f} s after submit; a worker job joined in {scaled:.1f} s; "
          "log:\n" + log)
    assert "closing the cluster: stop requested (hpcjobs cancel)" in log
    others = [ln for ln in log.splitlines() if "SSL" not in ln and "TLS handshake" not in ln]
    assert all(ln.startswith("hpcjobs") for ln in others), others  # a clean log
    assert f"{job_id} end rc=0" in (run / "events.log").read_text()


def test_walltime_warning_stops_jobs_and_closes_the_cluster(slurm_cluster, runs_dir, tmp_path,
                                                           caplog):
    import hpcjobs as hpcjobs_pkg

    # 1 node x 2 ranks, 60 s: warned 50 s before the end, or earlier (Slurm's signal timer is
    # coarse: the signal may come as soon as the job starts), closed 25 s before it
    run_id = start_cluster("--nodes", "1", "--ntasks-per-node", "2", "--time", "00:01:00",
                           "--signal-seconds", "50")
    job_id = status_json(run_id)["job_id"]
    with caplog.at_level(logging.WARNING, logger="hpcjobs.cluster"):
        client = hpcjobs_pkg.connect(run_id, timeout=60)
        try:
            warning = wait_for(lambda: client.walltime_warning, 40, "the walltime warning")
            # the warning's clock is the allocation's: at most 60 s, and agreeing with ours
            assert 0 < warning["seconds_left"] <= 60
            assert warning["end_time"] == pytest.approx(client.end_time, abs=1)
            assert client.time_left <= warning["seconds_left"]
        finally:
            client.close()
    assert any("the allocation ends in" in r.getMessage() for r in caplog.records)

    # a job started now stops as on a signal (exit 3), to be resumed elsewhere
    make_input(tmp_path / "data.zarr", rows=2_000, chunk=500)
    job = write_job(tmp_path, "late", steps=DESCRIBE, slurm="")
    out = hpcjobs("run", str(job), "--on", run_id, "--no-progress", code=3)
    assert "allocation ends in" in out and "stopping" in out

    # the cluster closes itself before the walltime: a clean end, not a TIMEOUT
    wait_for(lambda: status_json(run_id)["state"] == "COMPLETED", 60, "the cluster to close")
    log = cluster_log(runs_dir, run_id, job_id)
    print("\n" + log)
    assert "walltime warning sent to the clients" in log
    assert re.search(r"closing the cluster: the walltime is \d+ s away", log)
    assert not (runs_dir / run_id / "cluster" / f"{job_id}.json").exists()
    assert "exit code 0" in log


def test_walltime_signal_during_a_job_keeps_its_chunks_for_resume(slurm_cluster, runs_dir,
                                                                 tmp_path):
    # Slurm's signal itself (sent by hand, as the facts of this machine advise for a
    # deterministic test) reaches a job in flight: it stops, keeps its chunks, resumes locally
    run_id = start_cluster("--nodes", "1", "--ntasks-per-node", "2", "--time", "00:05:00",
                           "--signal-seconds", "60")
    job_id = status_json(run_id)["job_id"]
    make_input(tmp_path / "data.zarr", rows=160_000, chunk=2_000)
    job = write_job(tmp_path, "long", steps=STANDARDIZE, slurm="")
    chunks = tmp_path / "out.zarr" / "scaled" / "Z" / "c"

    def signal_when_chunks_are_written() -> None:  # as Slurm does near the walltime
        wait_for(lambda: chunks.is_dir() and sum(1 for p in chunks.rglob("*") if p.is_file())
                 >= 4, 120, "the first chunks")
        subprocess.run(["scancel", "--signal=USR1", "--batch", job_id], check=True)

    signaller = threading.Thread(target=signal_when_chunks_are_written, daemon=True)
    signaller.start()
    try:
        out = hpcjobs("run", str(job), "--on", run_id, "--no-progress", code=3)
        assert "stopping (finished chunks are kept" in out
        assert re.search(r"stopped during step scaled: \d+ of \d+ chunks", out), out
    finally:
        signaller.join(10)
        hpcjobs("cancel", run_id)
    assert "signal USR1" in (runs_dir / run_id / "events.log").read_text()
    out = hpcjobs("run", str(job), "--resume", "--workers", "2", "--no-progress")
    assert re.search(r"step scaled: done in .* \d+ chunks reused", out), out
    import numpy as np
    import zarr

    X = zarr.open_group(str(tmp_path / "data.zarr"), mode="r")["readings"][...]
    Z = zarr.open_group(str(tmp_path / "out.zarr"), mode="r")["scaled"]["Z"][...]
    np.testing.assert_allclose(Z, (X - X.mean(axis=0)) / X.std(axis=0), rtol=1e-10, atol=1e-10)
