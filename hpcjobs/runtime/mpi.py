"""Dask over MPI inside a Slurm allocation: every rank runs :func:`launch`.

Rank 0 runs the scheduler, rank 1 the *driver* (the function that runs the job through a
``distributed.Client``) and every other rank a worker. The cluster speaks TLS with a
certificate made on rank 0 for this job alone (``Security.temporary()``) and sent to the other
ranks over MPI, so nobody else on the machine can connect to it or submit work. The dashboard
listens on loopback unless asked otherwise.

What dask-mpi does less well and this module cares about:

- a too-small world is refused with the counts found and needed, on every rank;
- every wait has a deadline: a rank that dies before the cluster is up gives a clear error on
  the others instead of a hang, and the scheduler closes once its driver has gone;
- shutdown is ordered (workers retire, then the scheduler closes) and Dask's connection chatter
  is kept out of the log, so a successful job ends with a clean log;
- the process exit code is the driver's on rank 1 and 0 on the others (``srun`` returns the
  largest, so the job's exit code is the driver's);
- a worker rank that dies mid-job costs time, not the job: no MPI call follows the start-up,
  a batch job's ranks do not finalize MPI (:func:`batch_world`, whose docstring says why) and
  Dask redoes the lost rank's tasks on the workers that remain (the scheduler's log says so).
  The scheduler's and the driver's ranks are not replaceable: their death ends the job.

Example (``prog.py``, run with ``srun --mpi=pmi2 python prog.py`` or ``mpiexec -n 4``)::

    import sys
    from hpcjobs.runtime.mpi import launch

    def driver(client):
        import dask.array as da
        print(da.ones(1000, chunks=100).sum().compute())
        return 0

    sys.exit(launch(driver))
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hpcjobs.errors import RunFailed
from hpcjobs.runtime import MIN_WORLD, NO_WORKERS_TIMEOUT, STARTUP_TIMEOUT

# a client joins a running job's cluster with what rank 0 wrote: ``(address, Security)``
from hpcjobs.runtime.security import load_connection as load_security  # noqa: F401
from hpcjobs.runtime.security import write_connection_file

SCHEDULER_RANK = 0
DRIVER_RANK = 1
_TAG_HELLO = 17
_DRIVER_KEY = "hpcjobs-driver-client"

__all__ = ["launch", "batch_world", "load_security", "cluster_file", "log"]


def log(message: str, *, rank: int | None = None) -> None:
    """One line on stderr, prefixed with the rank (goes to the job's log)."""
    who = "hpcjobs" if rank is None else f"hpcjobs[rank {rank}]"
    print(f"{who}: {message}", file=sys.stderr, flush=True)


# -- the job's certificate on disk ------------------------------------------------------------


def cluster_file(run_dir: str | os.PathLike, job_id: str) -> Path:
    """Where rank 0 writes the scheduler address and the job's certificate (mode 0600)."""
    return Path(run_dir) / "cluster" / f"{job_id}.json"


def _write_cluster_file(path: Path, *, address: str, dashboard: str | None, security,
                        job_id: str, world: int) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    write_connection_file(path, address=address, security=security, job_id=job_id,
                          dashboard=dashboard, world_size=world, workers=world - 2,
                          started=time.strftime("%Y-%m-%dT%H:%M:%S%z"))


# -- MPI helpers with deadlines ---------------------------------------------------------------


def _recv_with_deadline(comm, source: int, tag: int, timeout: float, what: str):
    """``comm.recv`` that gives up after ``timeout`` seconds instead of hanging."""
    deadline = time.monotonic() + timeout
    while not comm.iprobe(source=source, tag=tag):
        if time.monotonic() > deadline:
            raise RunFailed(f"no {what} from rank {source} after {timeout:.0f} s: that rank "
                            "failed or died during start-up (see its messages above)")
        time.sleep(0.05)
    return comm.recv(source=source, tag=tag)


class _HandledLoss(logging.Filter):
    """Drops the scheduler's own reports of a lost worker's consequences that are handled,
    and said in one line by the scheduler's rank: the tasks it will recompute, and each task
    failed once no worker is left (the driver's error says it once). (A worker's report of a
    worker group's member lost, which the kernel recovers from, is the workers' own filter's:
    ``worker_env.quiet_bad_input``, as on a local cluster.)"""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        return not (("will be recomputed elsewhere" in text and "Removing worker" in text)
                    or "timed out waiting without any running workers" in text)


def _quiet_dask_logs() -> None:
    """Keep Dask's per-connection INFO chatter and shutdown noise out of the job log."""
    import distributed  # noqa: F401  (it sets its loggers' levels on import: adjust after)
    names = {"distributed", "tornado"} | {
        name for name in logging.root.manager.loggerDict if name.startswith("distributed.")}
    for name in sorted(names):
        logging.getLogger(name).setLevel(logging.WARNING)
    for name in ("distributed.scheduler", "distributed.worker"):
        logging.getLogger(name).addFilter(_HandledLoss())


def _mute_shutdown_noise() -> None:
    """Once the job is done, connection errors while tearing down carry no news."""
    names = {"distributed", "tornado", "asyncio"} | {
        name for name in logging.root.manager.loggerDict if name.startswith("distributed.")}
    for name in sorted(names):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def batch_world():
    """``MPI.COMM_WORLD`` for the ranks of a batch job (under ``srun``): MPI is not finalized
    at exit, so that the death of a worker rank does not hang the others as they leave.

    Measured on the local Slurm (``srun --mpi=pmi2 --kill-on-bad-exit=0``, mpich 5 from
    PyPI): after one rank was SIGKILLed the others carried on, but hung at exit in
    ``MPI_Finalize`` (it waits for every rank) until the walltime; without finalization
    they left at once. Under mpich's own ``mpiexec`` a rank that leaves unfinalized makes it
    end the others, so programs run there keep mpi4py's default (and :func:`launch` then
    lets the ranks leave together). Must come before the first import of ``mpi4py.MPI``.
    """
    import mpi4py

    if "mpi4py.MPI" not in sys.modules:
        mpi4py.rc.finalize = False
    from mpi4py import MPI

    return MPI.COMM_WORLD


def _finalizes_mpi() -> bool:
    """Whether this process finalizes MPI at exit (see :func:`batch_world`)."""
    rc = getattr(sys.modules.get("mpi4py"), "rc", None)
    return getattr(rc, "finalize", None) is not False


def _lost_workers_plugin():
    """A scheduler plugin that says in the job's log when a worker dies (its connection
    dropped; a worker that retires or closes says goodbye first)."""
    from distributed.diagnostics.plugin import SchedulerPlugin

    class LostWorkers(SchedulerPlugin):
        name = "hpcjobs-lost-workers"

        def __init__(self):
            self.names: dict[str, str] = {}
            self.status: dict[str, str] = {}  # the last status each worker reported

        def add_worker(self, scheduler, worker: str) -> None:
            self.names[worker] = str(scheduler.workers[worker].name)

        def log_event(self, topic, msg) -> None:
            if isinstance(msg, dict) and msg.get("action") == "worker-status-change":
                self.status[topic] = msg.get("status")

        def remove_worker(self, scheduler, worker: str, *, stimulus_id: str = "",
                          **kwargs) -> None:
            name = self.names.pop(worker, worker)
            # (a worker that retires or closes says so first: "closing_gracefully", ...;
            # the last one is still running when the scheduler closes at the end)
            if (self.status.pop(worker, "running") in ("running", "paused")
                    and stimulus_id.startswith("handle-worker-cleanup")
                    and scheduler.status.name == "running"):
                if scheduler.workers:
                    log(f"lost worker {name} ({worker}): its rank died? Dask redoes its tasks "
                        f"on the {len(scheduler.workers)} worker(s) that remain",
                        rank=SCHEDULER_RANK)
                else:
                    log(f"lost worker {name} ({worker}), the last one: no worker is left, so "
                        f"the job's tasks fail in {NO_WORKERS_TIMEOUT} s (finished steps are "
                        "kept; `hpcjobs submit --resume` finishes the rest)",
                        rank=SCHEDULER_RANK)

    return LostWorkers()


# -- the three roles ---------------------------------------------------------------------------


async def _run_scheduler(comm, *, world: int, security, interface: str | None,
                         dashboard_address: str | None, startup_timeout: float,
                         on_address: Callable[[str, str | None], None]) -> int:
    import dask
    from distributed import Scheduler

    dashboard = dashboard_address not in (None, "", "none")
    # MPI ranks never come back: once every worker is gone, fail the tasks rather than wait
    # out the walltime (Dask's default waits forever)
    dask.config.set({"distributed.scheduler.no-workers-timeout": f"{NO_WORKERS_TIMEOUT}s"})
    async with Scheduler(protocol="tls", security=security, interface=interface, port=0,
                         dashboard=dashboard,
                         dashboard_address=dashboard_address if dashboard else None,
                         ) as scheduler:
        scheduler.add_plugin(_lost_workers_plugin())
        link = None
        if dashboard and "dashboard" in scheduler.services:
            port = scheduler.services["dashboard"].port
            host = dashboard_address.rsplit(":", 1)[0] or "127.0.0.1"
            link = f"http://{host}:{port}/status"
        for dest in range(1, world):
            comm.send(("ok", scheduler.address, security), dest=dest, tag=_TAG_HELLO)
        on_address(scheduler.address, link)
        log(f"scheduler at {scheduler.address} (TLS, this job's certificate only)"
            + (f", dashboard {link}" if link else ""), rank=0)

        # Close when the driver has come and gone, or never came: never wait forever.
        # (The driver names itself in the scheduler's metadata; other clients holding the
        # job's certificate, e.g. a user looking in, do not keep the cluster alive.)
        started = time.monotonic()
        seen_driver = False
        gone_since: float | None = None
        while scheduler.status.name not in ("closing", "closed", "failed"):
            driver_id = scheduler.task_metadata.get(_DRIVER_KEY)
            if driver_id is not None and driver_id in scheduler.clients:
                seen_driver, gone_since = True, None
            elif seen_driver:
                gone_since = gone_since or time.monotonic()
                if time.monotonic() - gone_since > 10:
                    log("the driver disconnected without closing the cluster; closing", rank=0)
                    break
            elif time.monotonic() - started > startup_timeout:
                log(f"no driver connected within {startup_timeout:.0f} s; closing", rank=0)
                await scheduler.close()
                return 1
            await asyncio.sleep(0.2)
        _mute_shutdown_noise()
        await scheduler.close()
    return 0


def memory_limit(ranks_on_node: int, environ=os.environ) -> int | str:
    """Bytes one worker rank may use: Slurm's memory for the node (``--mem``) or per CPU
    (``--mem-per-cpu``), else the machine's memory, shared by the ranks on the node."""
    cpus = int(environ.get("SLURM_CPUS_PER_TASK", "1") or 1)
    if environ.get("SLURM_MEM_PER_CPU", "").isdigit():
        return int(environ["SLURM_MEM_PER_CPU"]) * cpus * 2**20
    if environ.get("SLURM_MEM_PER_NODE", "").isdigit():
        return int(environ["SLURM_MEM_PER_NODE"]) * 2**20 // max(1, ranks_on_node)
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover
        return "auto"
    return total // max(1, ranks_on_node)


async def _run_worker(address: str, *, rank: int, security, nthreads: int,
                      interface: str | None, startup_timeout: float, local_directory: str,
                      memory: int | str, name: str | None = None) -> int:
    from distributed import Worker

    async with Worker(address, security=security, nthreads=nthreads, name=name or f"rank-{rank}",
                      interface=interface, dashboard=False, death_timeout=startup_timeout,
                      # its HTTP server (health, metrics) on loopback, not on every interface
                      dashboard_address="127.0.0.1:0",
                      local_directory=local_directory, memory_limit=memory) as worker:
        await worker.finished()
    return 0


def _run_driver(address: str, *, security, workers: int, startup_timeout: float,
                driver: Callable[[Any], int]) -> int:
    from distributed import Client

    with Client(address, security=security, timeout=f"{startup_timeout}s") as client:
        client.set_metadata(_DRIVER_KEY, client.id)
        try:
            client.wait_for_workers(workers, timeout=startup_timeout)
        except TimeoutError:
            have = len(client.scheduler_info(n_workers=-1)["workers"])
            raise RunFailed(f"only {have} of {workers} workers joined within "
                            f"{startup_timeout:.0f} s: a worker rank failed or died "
                            "(see its messages above)") from None
        log(f"{workers} workers ready; running the job", rank=DRIVER_RANK)
        try:
            code = int(driver(client) or 0)
        finally:
            # Ordered, quiet shutdown: every rank stops logging connection chatter, the
            # workers retire and exit, then the scheduler closes.
            _mute_shutdown_noise()
            with contextlib.suppress(Exception):
                client.run_on_scheduler(_mute_shutdown_noise)
            with contextlib.suppress(Exception):
                client.run(_mute_shutdown_noise)
            with contextlib.suppress(Exception):
                client.retire_workers(close_workers=True)
            with contextlib.suppress(Exception):
                client.shutdown()
    return code


# -- the entry point on every rank -------------------------------------------------------------


def launch(driver: Callable[[Any], int], *, comm=None, nthreads: int | None = None,
           interface: str | None = None, dashboard_address: str | None = "127.0.0.1:0",
           startup_timeout: float = STARTUP_TIMEOUT, cluster_path: str | os.PathLike | None = None,
           job_id: str = "", on_error: Callable[[BaseException], int] | None = None,
           finish_timeout: float = 30.0) -> int:
    """Start Dask over MPI and run ``driver(client)`` on rank 1; return this rank's exit code.

    Parameters
    ----------
    driver : callable
        Called on rank 1 with a connected ``distributed.Client`` once every worker has joined;
        its return value (an int) is the job's exit code.
    comm : mpi4py communicator, optional
        Default ``MPI.COMM_WORLD``. Needs at least 3 ranks.
    nthreads : int, optional
        Threads per worker; default ``$SLURM_CPUS_PER_TASK`` or 1.
    interface : str, optional
        Network interface the scheduler and workers listen on (e.g. ``"ib0"``).
    dashboard_address : str or None
        Where the dashboard listens; loopback by default, ``None`` for no dashboard.
    startup_timeout : float
        Seconds any rank waits for another during start-up before giving up with an error.
    cluster_path : path, optional
        Where rank 0 writes the address and the job's certificate (0600).
    on_error : callable, optional
        Turns an exception on rank 1 into an exit code (default: message, exit 1).
    finish_timeout : float
        Seconds the ranks wait for each other at the end, so that they leave together
        (not where MPI is not finalized, see :func:`batch_world`).

    Examples
    --------
    >>> sys.exit(launch(lambda client: 0))  # doctest: +SKIP
    """
    if comm is None:
        from mpi4py import MPI

        comm = MPI.COMM_WORLD
    rank, world = comm.Get_rank(), comm.Get_size()
    if world < MIN_WORLD:
        if rank == 0:
            log(f"error: Dask over MPI needs at least {MIN_WORLD} ranks (a scheduler, a driver "
                f"and one worker); found {world}. Ask Slurm for more tasks, e.g. "
                "--nodes=1 --ntasks-per-node=3.")
        return 2
    _quiet_dask_logs()
    nthreads = nthreads or int(os.environ.get("SLURM_CPUS_PER_TASK", "1") or 1)
    ranks_on_node = _ranks_on_node()
    code = _run_role(driver, comm, rank, world, nthreads=nthreads, interface=interface,
                     ranks_on_node=ranks_on_node,
                     dashboard_address=dashboard_address, startup_timeout=startup_timeout,
                     cluster_path=cluster_path, job_id=job_id, on_error=on_error)
    # Leave together where MPI is finalized at exit (mpiexec ends the others when one rank
    # leaves early); a batch job's ranks (batch_world) leave without an MPI call, which a
    # dead worker rank would never join.
    if _finalizes_mpi() and not _final_barrier(comm, timeout=finish_timeout):
        log("warning: not every rank reached the end (one died?); leaving anyway", rank=rank)
    return code


def _final_barrier(comm, timeout: float) -> bool:
    """A barrier that gives up after ``timeout`` seconds (a dead rank must not hang us)."""
    try:
        request = comm.Ibarrier()
    except Exception:  # noqa: BLE001  (MPI reports a dead peer as an error)
        return False
    deadline = time.monotonic() + timeout
    while not _test(request):
        if time.monotonic() > deadline:
            with contextlib.suppress(Exception):
                request.Cancel()
            return False
        time.sleep(0.05)
    return True


def _test(request) -> bool:
    try:
        return bool(request.Test())
    except Exception:  # noqa: BLE001
        return True


def _ranks_on_node(environ=os.environ) -> int:
    """How many ranks share this node (and its memory), from the launcher's environment.

    Not from an MPI collective: a rank that died at start-up would make it hang.
    """
    for var in ("SLURM_NTASKS_PER_NODE", "MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE"):
        if environ.get(var, "").isdigit():
            return int(environ[var])
    tasks = environ.get("SLURM_TASKS_PER_NODE", "")  # e.g. "2(x3),1"
    node = environ.get("SLURM_NODEID", "0")
    if tasks and node.isdigit():
        counts = []
        for part in tasks.split(","):
            n, _, rep = part.partition("(x")
            counts += [int(n)] * (int(rep.rstrip(")")) if rep else 1)
        if int(node) < len(counts):
            return counts[int(node)]
    return 1


def _run_role(driver, comm, rank: int, world: int, *, nthreads, interface, ranks_on_node,
              dashboard_address, startup_timeout, cluster_path, job_id, on_error) -> int:
    try:
        if rank == SCHEDULER_RANK:
            from distributed.security import Security

            try:
                security = Security.temporary()
            except Exception as exc:
                for dest in range(1, world):
                    comm.send(("error", f"{type(exc).__name__}: {exc}", None), dest=dest,
                              tag=_TAG_HELLO)
                raise RunFailed("cannot make the job's TLS certificate "
                                f"({type(exc).__name__}: {exc}); is `cryptography` installed?"
                                ) from None

            sent = False

            def on_address(address: str, link: str | None) -> None:
                nonlocal sent
                sent = True
                if cluster_path is not None:
                    _write_cluster_file(Path(cluster_path), address=address, dashboard=link,
                                        security=security, job_id=job_id, world=world)

            try:
                return asyncio.run(_run_scheduler(
                    comm, world=world, security=security, interface=interface,
                    dashboard_address=dashboard_address, startup_timeout=startup_timeout,
                    on_address=on_address))
            except Exception as exc:
                if not sent:  # tell the other ranks rather than let them wait
                    for dest in range(1, world):
                        comm.send(("error", f"{type(exc).__name__}: {exc}", None), dest=dest,
                                  tag=_TAG_HELLO)
                raise RunFailed(f"the scheduler failed: {type(exc).__name__}: {exc}") from None
            finally:
                # the certificate is worthless once the cluster is gone: do not leave keys about
                if cluster_path is not None:
                    with contextlib.suppress(OSError):
                        Path(cluster_path).unlink()

        if rank != DRIVER_RANK:
            from hpcjobs.runtime.worker_env import preload_kernels

            preload_kernels()  # a worker's: while the scheduler's rank starts
        status, address, security = _recv_with_deadline(
            comm, SCHEDULER_RANK, _TAG_HELLO, startup_timeout, "scheduler address")
        if status != "ok":
            raise RunFailed(f"the scheduler on rank 0 failed to start: {address}")

        if rank == DRIVER_RANK:
            if dashboard_address not in (None, "", "none"):
                # the dashboard link Dask prints should name where it really listens
                import dask

                host = dashboard_address.rsplit(":", 1)[0] or "127.0.0.1"
                dask.config.set({"distributed.dashboard.link": f"http://{host}:{{port}}/status"})
            try:
                return _run_driver(address, security=security, workers=world - 2,
                                   startup_timeout=startup_timeout, driver=driver)
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as exc:
                if on_error is not None:
                    return on_error(exc)
                log(f"error: {exc}", rank=rank)
                return getattr(exc, "exit_code", 1)

        with tempfile.TemporaryDirectory(prefix=f"hpcjobs-rank{rank}-") as tmp:
            return asyncio.run(_run_worker(address, rank=rank, security=security,
                                           nthreads=nthreads, interface=interface,
                                           startup_timeout=startup_timeout,
                                           local_directory=tmp,
                                           memory=memory_limit(ranks_on_node)))
    except RunFailed as exc:
        log(f"error: {exc}", rank=rank)
        return 1


class StopWatcher:
    """Sets ``event`` when ``path`` appears (the batch shell writes it on the walltime signal).

    A file, rather than a signal, reaches the driver wherever it runs in the allocation.
    """

    def __init__(self, path: str | os.PathLike, event: threading.Event, interval: float = 0.2):
        self.path, self.event, self.interval = Path(path), event, interval
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="hpcjobs-stop-watch",
                                        daemon=True)

    def _watch(self) -> None:
        while not self._done.wait(self.interval):
            if self.path.exists():
                log("stop requested (walltime or preemption signal): finishing the chunks in "
                    "flight, keeping what is done", rank=DRIVER_RANK)
                self.event.set()
                return

    def __enter__(self) -> StopWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join(timeout=2)
