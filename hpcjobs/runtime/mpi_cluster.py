"""Dask over MPI with no driver: an interactive cluster in an allocation, waiting for clients.

Unlike :func:`hpcjobs.runtime.mpi.launch` (scheduler, driver, workers), rank 0 runs the
scheduler and every other rank a worker; the clients come from outside (a notebook on the
login node, ``hpcjobs run --on RUN``) with the job's certificate, which rank 0 writes into
the run folder (0600) once every worker has joined. The scheduler closes, workers first,
when

- ``stop_path`` appears (``hpcjobs cancel RUN``),
- the walltime is ``close_margin`` seconds away, or
- a client shuts the cluster down (``client.shutdown()``).

``warn_seconds`` before the walltime (or when ``walltime_path`` appears: the batch shell
writes it on Slurm's signal), the scheduler publishes a warning on the event topic
:data:`WALLTIME_TOPIC` and in its metadata under :data:`CLUSTER_KEY`; the clients of
``hpcjobs.connect`` log it and stop their jobs as on a signal.

:func:`join_cluster` is what every rank of a worker-only job runs (``hpcjobs cluster
scale``): workers that join a running cluster's scheduler with its certificate.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import tempfile
import time
from pathlib import Path

from hpcjobs.errors import RunFailed
from hpcjobs.runtime import MIN_CLUSTER_WORLD, STARTUP_TIMEOUT
from hpcjobs.runtime.mpi import (
    _TAG_HELLO,
    SCHEDULER_RANK,
    _final_barrier,
    _finalizes_mpi,
    _mute_shutdown_noise,
    _quiet_dask_logs,
    _ranks_on_node,
    _recv_with_deadline,
    _run_worker,
    log,
    memory_limit,
)
from hpcjobs.runtime.security import load_connection, temporary_security, write_connection_file

#: the event topic on which the scheduler warns its clients of the walltime
WALLTIME_TOPIC = "hpcjobs-walltime"
#: the scheduler metadata key holding ``{"end_time", "warn_seconds", "warned"}``
CLUSTER_KEY = "hpcjobs-cluster"

__all__ = ["launch_cluster", "join_cluster", "worker_name", "WALLTIME_TOPIC", "CLUSTER_KEY"]


def worker_name(job_id: str, rank: int) -> str:
    """A worker's name: its Slurm job and rank, so status can count each job's workers."""
    return f"{job_id}-rank-{rank}"


def close_margin(warn_seconds: float) -> float:
    """Seconds before the walltime at which the cluster closes itself (workers retire)."""
    return min(30.0, warn_seconds / 2)


# -- the scheduler rank -------------------------------------------------------------------------


async def _wait_for_workers(scheduler, expected: int, timeout: float, stop_path: Path) -> int:
    deadline = time.monotonic() + timeout
    while len(scheduler.workers) < expected and time.monotonic() < deadline:
        if stop_path.exists():
            break
        await asyncio.sleep(0.1)
    return len(scheduler.workers)


def _warn(scheduler, *, end_time: float | None, warn_seconds: float, why: str) -> None:
    left = None if end_time is None else max(0.0, end_time - time.time())
    closes = None if left is None else max(0.0, left - close_margin(warn_seconds))
    message = {"end_time": end_time, "seconds_left": left, "closes_in": closes, "why": why}
    scheduler.task_metadata[CLUSTER_KEY] = {"end_time": end_time, "warn_seconds": warn_seconds,
                                            "warned": True}
    scheduler.log_event(WALLTIME_TOPIC, message)
    log("walltime warning sent to the clients ("
        + (f"{left:.0f} s left, the cluster closes in {closes:.0f} s" if left is not None
           else why) + ")", rank=0)


async def _serve(scheduler, *, stop_path: Path, walltime_path: Path, end_time: float | None,
                 warn_seconds: float) -> str:
    """Wait for clients until something ends the cluster; say what."""
    warned = False
    margin = close_margin(warn_seconds)
    while scheduler.status.name not in ("closing", "closed", "failed"):
        if stop_path.exists():
            return "stop requested (hpcjobs cancel)"
        left = None if end_time is None else end_time - time.time()
        if not warned and (walltime_path.exists() or (left is not None and left <= warn_seconds)):
            warned = True
            _warn(scheduler, end_time=end_time, warn_seconds=warn_seconds,
                  why="Slurm's walltime signal" if walltime_path.exists() else "the clock")
        if left is not None and left <= margin:
            return f"the walltime is {max(left, 0):.0f} s away"
        await asyncio.sleep(0.25)
    return "a client shut the cluster down"


async def _run_cluster_scheduler(comm, *, world: int, security, interface: str | None,
                                 dashboard_address: str | None, startup_timeout: float,
                                 cluster_path: Path, stop_path: Path, walltime_path: Path,
                                 job_id: str, end_time: float | None,
                                 warn_seconds: float) -> int:
    from distributed import Scheduler

    dashboard = dashboard_address not in (None, "", "none")
    async with Scheduler(protocol="tls", security=security, interface=interface, port=0,
                         dashboard=dashboard,
                         dashboard_address=dashboard_address if dashboard else None,
                         ) as scheduler:
        scheduler.task_metadata[CLUSTER_KEY] = {"end_time": end_time,
                                                "warn_seconds": warn_seconds, "warned": False}
        for dest in range(1, world):
            comm.send(("ok", scheduler.address, security), dest=dest, tag=_TAG_HELLO)
        joined = await _wait_for_workers(scheduler, world - 1, startup_timeout, stop_path)
        if joined == 0:
            log(f"no worker joined within {startup_timeout:.0f} s; closing", rank=0)
            await scheduler.close()
            return 1
        if joined < world - 1:
            log(f"warning: only {joined} of {world - 1} workers joined within "
                f"{startup_timeout:.0f} s; the cluster runs with them", rank=0)
        port = scheduler.services["dashboard"].port if "dashboard" in scheduler.services \
            else None
        host = (dashboard_address or "").rsplit(":", 1)[0] or "127.0.0.1"
        cluster_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_connection_file(
            cluster_path, address=scheduler.address, security=security, job_id=job_id,
            dashboard=f"http://{host}:{port}/status" if port else None,
            dashboard_host=host if port else None, dashboard_port=port,
            node=os.environ.get("SLURMD_NODENAME") or socket.gethostname(),
            hostname=socket.getfqdn(), workers=joined, world_size=world,
            end_time=end_time, warn_seconds=warn_seconds,
            started=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        log(f"cluster up: scheduler at {scheduler.address} (TLS, this job's certificate only),"
            f" {joined} workers" + (f", dashboard on port {port}" if port else "")
            + "; waiting for clients", rank=0)
        why = await _serve(scheduler, stop_path=stop_path, walltime_path=walltime_path,
                           end_time=end_time, warn_seconds=warn_seconds)
        log(f"closing the cluster: {why}; the workers retire", rank=0)
        with contextlib.suppress(OSError):
            cluster_path.unlink()  # no new clients from here on
        _mute_shutdown_noise()
        await scheduler.close()
    return 0


# -- entry points --------------------------------------------------------------------------------


def _world(comm):
    if comm is None:
        from mpi4py import MPI

        comm = MPI.COMM_WORLD
    return comm, comm.Get_rank(), comm.Get_size()


def _run_rank(comm, rank: int, role, finish_timeout: float) -> int:
    """Run ``role()`` (a RunFailed is one line in the log, exit 1), then leave together."""
    try:
        code = role()
    except RunFailed as exc:
        log(f"error: {exc}", rank=rank)
        code = 1
    # ranks that finalize MPI leave together; those of a job under srun (batch_world) leave
    # without an MPI call, which a dead worker rank could hang
    if _finalizes_mpi() and not _final_barrier(comm, timeout=finish_timeout):
        log("warning: not every rank reached the end (one died?); leaving anyway", rank=rank)
    return code


def launch_cluster(*, cluster_path: str | os.PathLike, stop_path: str | os.PathLike,
                   walltime_path: str | os.PathLike, job_id: str, end_time: float | None,
                   warn_seconds: float, comm=None, nthreads: int | None = None,
                   interface: str | None = None, dashboard_address: str | None = "127.0.0.1:0",
                   startup_timeout: float = STARTUP_TIMEOUT, finish_timeout: float = 30.0) -> int:
    """Run an interactive cluster on every rank of the allocation; return this rank's code.

    Rank 0: the scheduler (it makes the job's certificate and writes ``cluster_path``);
    every other rank: a worker. ``end_time`` (seconds since the epoch, None when unlimited)
    is the allocation's end, known on rank 0.
    """
    comm, rank, world = _world(comm)
    if world < MIN_CLUSTER_WORLD:
        if rank == 0:
            log(f"error: a cluster needs at least {MIN_CLUSTER_WORLD} ranks (a scheduler and a "
                f"worker); found {world}. Ask for --ntasks-per-node=2 or more nodes.")
        return 2
    _quiet_dask_logs()
    nthreads = nthreads or int(os.environ.get("SLURM_CPUS_PER_TASK", "1") or 1)

    def role() -> int:
        if rank == SCHEDULER_RANK:
            return _scheduler_rank(comm, world, cluster_path=Path(cluster_path),
                                   stop_path=Path(stop_path), walltime_path=Path(walltime_path),
                                   job_id=job_id, end_time=end_time, warn_seconds=warn_seconds,
                                   interface=interface, dashboard_address=dashboard_address,
                                   startup_timeout=startup_timeout)
        from hpcjobs.runtime.worker_env import preload_kernels

        preload_kernels()  # while the scheduler's rank starts
        status, address, security = _recv_with_deadline(
            comm, SCHEDULER_RANK, _TAG_HELLO, startup_timeout, "scheduler address")
        if status != "ok":
            raise RunFailed(f"the scheduler on rank 0 failed to start: {address}")
        return _worker(address, security, name=worker_name(job_id, rank), rank=rank,
                       nthreads=nthreads, interface=interface, startup_timeout=startup_timeout)

    return _run_rank(comm, rank, role, finish_timeout)


def _scheduler_rank(comm, world: int, *, cluster_path: Path, **kwargs) -> int:
    try:
        security = temporary_security()
    except Exception as exc:
        for dest in range(1, world):
            comm.send(("error", f"{type(exc).__name__}: {exc}", None), dest=dest, tag=_TAG_HELLO)
        raise RunFailed(f"cannot make the job's TLS certificate ({exc})") from None
    try:
        return asyncio.run(_run_cluster_scheduler(comm, world=world, security=security,
                                                  cluster_path=cluster_path, **kwargs))
    except Exception as exc:
        raise RunFailed(f"the scheduler failed: {type(exc).__name__}: {exc}") from None
    finally:
        with contextlib.suppress(OSError):  # the certificate dies with the cluster
            cluster_path.unlink()


def _worker(address: str, security, *, name: str, rank: int, nthreads: int,
            interface: str | None, startup_timeout: float) -> int:
    with tempfile.TemporaryDirectory(prefix=f"hpcjobs-rank{rank}-") as tmp:
        try:
            return asyncio.run(_run_worker(
                address, rank=rank, security=security, nthreads=nthreads, interface=interface,
                startup_timeout=startup_timeout, local_directory=tmp, name=name,
                memory=memory_limit(_ranks_on_node())))
        except Exception as exc:  # noqa: BLE001  (one line in the log, not a traceback)
            raise RunFailed(f"the worker could not join {address}: {type(exc).__name__}: "
                            f"{exc}") from None


def join_cluster(cluster_path: str | os.PathLike, *, job_id: str, comm=None,
                 nthreads: int | None = None, interface: str | None = None,
                 startup_timeout: float = STARTUP_TIMEOUT, finish_timeout: float = 30.0) -> int:
    """Every rank: a worker that joins the running cluster described by ``cluster_path``.

    The workers leave when the scheduler closes, or when a client retires them
    (``hpcjobs cluster scale RUN 0``).
    """
    comm, rank, _ = _world(comm)
    _quiet_dask_logs()
    nthreads = nthreads or int(os.environ.get("SLURM_CPUS_PER_TASK", "1") or 1)

    def role() -> int:
        try:
            address, security = load_connection(cluster_path, worker=True)
        except (OSError, ValueError, KeyError) as exc:
            raise RunFailed(f"the cluster is not up (cannot read {cluster_path}: "
                            f"{type(exc).__name__}): nothing to join") from None
        return _worker(address, security, name=worker_name(job_id, rank), rank=rank,
                       nthreads=nthreads, interface=interface, startup_timeout=startup_timeout)

    return _run_rank(comm, rank, role, finish_timeout)
