"""Against the real local Slurm cluster of ``slurm/`` (3 simulated nodes): submit, status, logs,
cancel, failures, requeue on the walltime signal, arrays, and the job's TLS.

Run as root, the session fixture starts the cluster itself (installing Slurm if missing).
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from hpcjobs.cli import cli
from tests import slurm_fixtures, test_security

# the fixtures (kept out of tests/conftest.py): the local cluster, a private run-folder root
slurm_cluster = slurm_fixtures.slurm_cluster
runs_dir = slurm_fixtures.runs_dir
# ... and a second Unix user of the host, with a folder it can enter
other_user = test_security.other_user
open_folder = test_security.open_folder

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(300)]


def hpcjobs(*args: str, code: int | None = 0) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    if code is not None:
        assert result.exit_code == code, result.output
    return result.output


def make_input(path: Path, rows: int = 20_000, chunk: int = 2_500) -> Path:
    import zarr

    rng = np.random.default_rng(42)
    group = zarr.open_group(str(path), mode="w", zarr_format=3)
    arr = group.create_array("readings", shape=(rows, 4), chunks=(chunk, 4), dtype="f8")
    arr[:] = rng.normal(loc=[0, 10, -5, 100], scale=[1, 2, 3, 10], size=(rows, 4))
    return path


def write_job(folder: Path, name: str, *, steps: str, slurm: str, extra: str = "",
              output: str = "out.zarr") -> Path:
    job = folder / f"{name}.toml"
    job.write_text(f'name = "{name}"\n[input]\npath = "data.zarr"\n{steps}\n'
                   f'[output]\npath = "{output}"\n[slurm]\n{slurm}\n{extra}')
    return job


DESCRIBE = '[[step]]\nname = "summary"\nkernel = "describe"\ninput = "readings"\n' \
           'params = { bins = 16 }\n'
AGGREGATE = '[[step]]\nname = "raster"\nkernel = "aggregate2d"\n' \
            'input = { x = "readings[:, 0]", y = "readings[:, 1]" }\nparams = { shape = [64, 48] }\n'
KMEANS = '[[step]]\nname = "km"\nkernel = "kmeans"\ninput = "readings"\n' \
         'params = { n_clusters = 3, seed = 0, max_iter = 12 }\n'
STANDARDIZE = '[[step]]\nname = "scaled"\nkernel = "standardize"\ninput = "readings"\n'


def status_json(ref: str) -> dict:
    return json.loads(hpcjobs("status", ref, "--json"))


def wait_for(predicate, timeout: float, what: str, interval: float = 0.3):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def submit(job: Path, *args: str) -> tuple[str, str]:
    out = hpcjobs("submit", str(job), *args)
    m = re.search(r"submitted (?:job|array of \d+ tasks) (\d+); run (\S+)", out)
    assert m, out
    return m.group(1), m.group(2)


def log_text(runs: Path, run_id: str) -> str:
    return "".join(p.read_text() for p in sorted((runs / run_id / "logs").glob("*.out")))


def local_result(job: Path, output: Path):
    """The same job run locally (hpcjobs run) for comparison."""
    from hpcjobs.jobspec import load_job
    from hpcjobs.runner import run_job

    spec = load_job(job, overrides={"output.path": str(output)})
    run_job(spec, cluster={"workers": 2, "threads_per_worker": 1})
    return output


def connect_once(address: str, timeout: float = 5, **kwargs) -> None:
    """Connect a client to ``address`` and close it, on an event loop of this thread (no
    client loop thread, whose start a machine busy with the job's six ranks can delay past
    distributed's 10 s); raises what the connection raises."""
    import asyncio

    from distributed import Client

    async def attempt():
        client = Client(address, asynchronous=True, timeout=timeout, **kwargs)
        try:
            await client
            assert client.scheduler_info()["id"]
        finally:  # a refused client too, on this loop (left to the garbage collector, its
            await client.close()  # close would run after the loop is gone, and warn)

    asyncio.run(attempt())


def assert_same_groups(a: Path, b: Path, steps: dict[str, list[str]]) -> None:
    import zarr

    ga, gb = zarr.open_group(str(a), mode="r"), zarr.open_group(str(b), mode="r")
    for step, names in steps.items():
        for name in names:
            np.testing.assert_allclose(ga[step][name][...], gb[step][name][...], rtol=1e-12,
                                       atol=1e-12, err_msg=f"{step}/{name}")


# -- the tests -----------------------------------------------------------------------------------


def test_three_node_mpi_job_matches_local_run_and_refuses_strangers(slurm_cluster, runs_dir,
                                                                     tmp_path, other_user,
                                                                     open_folder):
    from distributed.security import Security

    from hpcjobs.runtime.mpi import load_security

    make_input(tmp_path / "data.zarr")
    # describe + aggregate2d: one pass, their ranges from the chunk statistics (the first
    # pass gathers them); k-means: its Lloyd loop runs on the workers, which swap partial
    # sums over the job's TLS
    job = write_job(tmp_path, "three", steps=DESCRIBE + AGGREGATE + KMEANS,
                    slurm='nodes = 3\nntasks_per_node = 2\ntime = "00:05:00"')
    t0 = time.monotonic()
    job_id, run_id = submit(job)
    seen = {status_json(run_id)["state"]}
    assert seen <= {"PENDING", "RUNNING"}, seen

    # while it runs: the scheduler file (0600) and the TLS check
    cluster = wait_for(lambda: next((runs_dir / run_id / "cluster").glob("*.json"), None), 60,
                       "the scheduler address in the run folder")
    assert cluster.stat().st_mode & 0o777 == 0o600
    assert (runs_dir / run_id).stat().st_mode & 0o777 == 0o700
    address, security = load_security(cluster)
    assert address.startswith("tls://")
    seen.add(status_json(run_id)["state"])
    connect_once(address, timeout=20, security=security)  # the job's certificate gets in
    with pytest.raises((TypeError, OSError)):  # no certificate at all
        connect_once(address.replace("tls://", "tcp://"))
    with pytest.raises((TypeError, OSError)):
        connect_once(address)
    with pytest.raises(OSError):  # a certificate of its own: refused by the job's CA
        connect_once(address, security=Security.temporary())
    # another user of the host: cannot read the cluster file, nor get in without it
    test_security.assert_kept_out(test_security.intrude(other_user, open_folder, cluster,
                                                        address))
    # the refusals were the certificate's doing: the job is still up
    seen.add(status_json(run_id)["state"])

    wait_for(lambda: status_json(run_id)["state"] == "COMPLETED", 180, "the job to complete")
    wall = time.monotonic() - t0
    st = status_json(run_id)
    assert "RUNNING" in seen
    assert st["tasks"][0]["exit_code"] == 0
    log = log_text(runs_dir, run_id)
    print(f"\nsubmit-to-done {wall:.1f} s; log tail:\n" + "\n".join(log.splitlines()[-4:]))
    assert "(6 ranks)" in log and "4 workers ready" in log
    # the strangers' handshakes were refused by the scheduler, and said so in the log
    assert "TLS handshake failed" in log
    others = [ln for ln in log.splitlines() if "SSL" not in ln and "TLS handshake" not in ln]
    assert all(ln.startswith("hpcjobs") for ln in others), others  # a clean log
    assert re.search(r"end .* exit code 0", log)

    import zarr

    attrs = dict(zarr.open_group(str(tmp_path / "out.zarr"), mode="r").attrs)
    assert job_id in json.dumps(attrs)
    local = local_result(job, tmp_path / "local.zarr")
    assert_same_groups(tmp_path / "out.zarr", local,
                       {"summary": ["count", "mean", "std", "min", "max", "hist", "bin_edges"],
                        "raster": ["raster"],
                        "km": ["centroids", "labels", "inertia", "n_iter"]})
    assert "one pass" in log


def test_cancel_running_job(slurm_cluster, runs_dir, tmp_path):
    make_input(tmp_path / "data.zarr", rows=100, chunk=50)
    job = write_job(tmp_path, "sleepy", steps=DESCRIBE,
                    slurm='time = "00:05:00"\nsetup = ["sleep 120"]')
    job_id, run_id = submit(job)
    wait_for(lambda: status_json(run_id)["state"] == "RUNNING", 60, "the job to run")
    out = hpcjobs("cancel", run_id)
    assert f"cancelled job {job_id}" in out
    wait_for(lambda: status_json(run_id)["state"] == "CANCELLED", 30, "CANCELLED")
    assert "CANCELLED" in hpcjobs("status", job_id)  # by Slurm job id too
    err = hpcjobs("cancel", run_id, code=2)
    assert "already CANCELLED" in err


def test_pending_reason_and_refused_submission(slurm_cluster, runs_dir, tmp_path):
    make_input(tmp_path / "data.zarr", rows=100, chunk=50)
    later = write_job(tmp_path, "later", steps=DESCRIBE,
                      slurm='time = "00:05:00"\nextra = ["--begin=now+3600"]')
    job_id, run_id = submit(later)
    try:
        assert "PENDING (BeginTime: held until its start time)" in hpcjobs("status", run_id)
    finally:
        hpcjobs("cancel", job_id)
    # more nodes than the partition has: it waits, and status says why
    big = write_job(tmp_path, "big", steps=DESCRIBE, output="big.zarr",
                    slurm='nodes = 4\ntime = "00:05:00"')
    job_id, run_id = submit(big)
    try:
        out = hpcjobs("status", run_id)
        assert "PENDING (Partition" in out and "it will not start as submitted" in out
    finally:
        hpcjobs("cancel", run_id)
    # a partition that does not exist: sbatch refuses, and the message says so
    out = hpcjobs("submit", str(big), "--partition", "nosuch", code=1)
    assert "`sbatch --parsable" in out and "exit code 1" in out
    assert "invalid partition" in out.lower()


def test_failed_setup_line_fails_the_job(slurm_cluster, runs_dir, tmp_path):
    make_input(tmp_path / "data.zarr", rows=100, chunk=50)
    job = write_job(tmp_path, "nomodule", steps=DESCRIBE,
                    slurm='time = "00:05:00"\nsetup = ["echo preparing", "ls /no/such/module"]')
    job_id, run_id = submit(job)
    log = hpcjobs("logs", run_id, "-f")
    assert "setup line failed with exit code 2: ls /no/such/module" in log
    assert "FAILED, exit code 2" in hpcjobs("status", run_id)


def test_failing_job_exit_code_and_log(slurm_cluster, runs_dir, tmp_path):
    make_input(tmp_path / "data.zarr", rows=100, chunk=50)
    (tmp_path / "blocker").write_text("a file where the output folder should be")
    job = write_job(tmp_path, "broken", steps=DESCRIBE, output="blocker/out.zarr",
                    slurm='nodes = 1\nntasks_per_node = 3\ntime = "00:05:00"')
    job_id, run_id = submit(job)
    followed = hpcjobs("logs", run_id, "-f")  # follows the log until the job ends
    assert "cannot create the output folder" in followed and "exit code 2" in followed
    st = status_json(run_id)
    assert st["state"] == "FAILED"
    assert st["tasks"][0]["exit_code"] == 2  # the driver's code (a UserError), not srun's
    log = log_text(runs_dir, run_id)
    assert "error: cannot create the output folder" in log
    assert "Traceback" not in log
    assert "exit code 2" in hpcjobs("status", run_id)
    assert "cannot create the output folder" in hpcjobs("logs", job_id)


def test_first_run_on_the_nodes_compiles_once_and_says_so(slurm_cluster, runs_dir, tmp_path,
                                                          monkeypatch):
    # a cache of its own (sbatch passes the environment on): the nodes start cold
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "numba-cache"))
    make_input(tmp_path / "data.zarr", rows=2000, chunk=500)
    job = write_job(tmp_path, "cold", steps=DESCRIBE,
                    slurm='nodes = 2\nntasks_per_node = 2\ntime = "00:05:00"')
    job_id, run_id = submit(job)
    followed = hpcjobs("logs", run_id, "-f")
    assert "compiling kernels for this machine (first run only): 1/1 summary" in followed
    assert status_json(run_id)["state"] == "COMPLETED", followed
    assert list((tmp_path / "numba-cache").rglob("*.nbi"))  # filled on the nodes
    # the next run finds the stamp and compiles nothing
    _, again = submit(job, "--overwrite")
    assert "compiling kernels" not in hpcjobs("logs", again, "-f")


def test_requeue_on_usr1_resumes_and_matches(slurm_cluster, runs_dir, tmp_path):
    # chunked step, whole-array step, chunked step: a stop that lands anywhere before the last
    # step starts must requeue (it most often lands among the first step's chunks)
    make_input(tmp_path / "data.zarr", rows=400_000, chunk=2_500)
    again = STANDARDIZE.replace('name = "scaled"', 'name = "again"')
    job = write_job(tmp_path, "preempted", steps=STANDARDIZE + DESCRIBE + again,
                    slurm='nodes = 2\nntasks_per_node = 2\ntime = "00:05:00"\n'
                          'max_requeues = 2')
    job_id, run_id = submit(job)
    run = runs_dir / run_id
    chunks = tmp_path / "out.zarr" / "scaled" / "Z" / "c"
    wait_for(lambda: chunks.is_dir() and sum(1 for p in chunks.rglob("*") if p.is_file()) >= 4,
             120, "the first chunks to be written")
    subprocess.run(["scancel", "--signal=USR1", "--batch", job_id], check=True)
    wait_for(lambda: "requeue 1/2" in (run / "events.log").read_text(), 90, "the requeue")
    requeued = wait_for(lambda: (lambda t: t if t["state"] == "PENDING" else None)(
        status_json(run_id)["tasks"][0]), 60, "the job to be pending again")
    assert requeued["restarts"] == 1 and "requeued" in requeued["reason"]
    # Slurm holds a requeued job back ~2 minutes; let it go at once, but not within the second
    # of the requeue (slurmd would still see the old run's revoked credential)
    time.sleep(2)
    subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"], check=True)
    wait_for(lambda: status_json(run_id)["state"] == "COMPLETED", 180, "the resumed run")

    st = status_json(run_id)
    assert st["tasks"][0]["restarts"] == 1
    events = (run / "events.log").read_text()
    assert "signal USR1" in events and "mode=resume" in events and "end rc=0" in events
    log = log_text(runs_dir, run_id)
    assert "stopped" in log and "restart 1, mode resume" in log
    assert "complete from an earlier run, skipped" in log or "chunks reused" in log
    assert "Traceback" not in log
    stopped = re.search(r"stopped: (.*?);", log).group(1)
    print(f"\nthe first start {stopped}")
    local = local_result(job, tmp_path / "local.zarr")
    assert_same_groups(tmp_path / "out.zarr", local,
                       {"summary": ["count", "mean", "std", "hist"], "scaled": ["Z"],
                        "again": ["Z"]})


def test_array_job_sweep(slurm_cluster, runs_dir, tmp_path):
    import zarr

    make_input(tmp_path / "data.zarr", rows=2_000, chunk=500)
    job = write_job(tmp_path, "sweep", steps=DESCRIBE,
                    slurm='nodes = 1\nntasks_per_node = 3\ntime = "00:05:00"',
                    extra='[sweep]\nmax_parallel = 2\n"step.summary.params.bins" = [4, 8, 12]\n')
    assert "#SBATCH --array=0-2%2" in hpcjobs("submit", str(job), "--dry-run")
    job_id, run_id = submit(job)
    wait_for(lambda: status_json(run_id)["state"] == "COMPLETED", 240, "the array to complete")
    out = hpcjobs("status", run_id)
    assert "3 tasks: 3 completed" in out
    for i in range(3):
        assert f"{job_id}_{i}" in out
    root = zarr.open_group(str(tmp_path / "out.zarr"), mode="r")
    tasks = root.attrs["hpcjobs_sweep"]["tasks"]
    for i, bins in enumerate([4, 8, 12]):
        assert tasks[i]["params"] == {"step.summary.params.bins": bins}
        assert root[f"task-{i}"]["summary"]["hist"].shape == (4, bins)
    assert len(list((runs_dir / run_id / "logs").glob("*.out"))) == 3
    log = log_text(runs_dir, run_id)
    assert all(ln.startswith("hpcjobs") for ln in log.splitlines()), log  # clean shutdowns


def test_doctor_probe_job_on_the_real_cluster(slurm_cluster, runs_dir, tmp_path):
    make_input(tmp_path / "data.zarr", rows=2000, chunk=500)
    job = write_job(tmp_path, "doc", steps=DESCRIBE, slurm="nodes = 1")
    out = hpcjobs("doctor", str(job))
    print("\n" + out)
    for check in ("Slurm controller", "partitions", "run folder", "import mpi4py.MPI",
                  "Numba cache", "probe job", "MPI and hpcjobs on the nodes",
                  "run folder visible from the nodes", "compute nodes' CPU"):
        assert f"[ok  ] {check}" in out, out
    # the simulated nodes are this machine: what is compiled here is compiled for them
    here = re.search(r"\] kernels compiled here: (\d) of 1 step", out)
    nodes = re.search(r"\] kernels compiled for the nodes: (\d) of 1 step", out)
    assert here and nodes and here.group(1) == nodes.group(1), out
    assert "all checks passed" in out
    # the probe's ranks really ran as MPI ranks 0 and 1 of a world of 2
    probes = sorted(runs_dir.glob("*/probe-*"))
    assert [p.read_text().split()[:2] for p in probes] == [["0", "2"], ["1", "2"]]
