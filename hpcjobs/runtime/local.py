"""Local Dask clusters sized to the machine, and connections to running schedulers.

Sizing rule: Dask workers x threads per worker x Numba threads never exceeds the cores this
process may use. By default every core gets one single-threaded worker process with one Numba
thread; the job file's ``[cluster]`` table or the command line can trade processes for threads.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from hpcjobs.errors import UserError

#: the Numba threads planned for a worker process (read by ``hpcjobs.kernels._jit``)
PLANNED_THREADS_VAR = "HPCJOBS_NUMBA_THREADS"
#: thread-pool variables pinned in workers so NumPy/BLAS do not oversubscribe either
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def machine_cores() -> int:
    """Cores this process may run on (respects affinity masks and Slurm's cpusets)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class ClusterPlan:
    workers: int
    threads_per_worker: int
    numba_threads: int
    processes: bool = True
    memory_limit: str | int = "auto"
    dashboard_address: str | None = "127.0.0.1:0"
    #: TLS with a certificate made for this cluster (worker processes only; threads in this
    #: process talk through memory): off only when asked for (``--insecure``)
    tls: bool = True

    @property
    def env(self) -> dict[str, str]:
        env = {"NUMBA_NUM_THREADS": str(self.numba_threads),
               PLANNED_THREADS_VAR: str(self.numba_threads)}
        env.update({v: "1" for v in _THREAD_VARS})
        return env


def plan_cluster(settings: dict | None = None, *, cores: int | None = None) -> ClusterPlan:
    """Size a local cluster from ``settings`` (the job's ``[cluster]`` table plus overrides,
    over the site profile's ``hpcjobs.cluster`` values).

    Raises ``UserError`` if the requested workers x threads x Numba threads exceed the cores.
    """
    from hpcjobs.siteconfig import cluster_defaults

    # the site profile (dask config hpcjobs.cluster) below the job file and command line
    s = {**cluster_defaults(), **{k: v for k, v in (settings or {}).items() if v is not None}}
    cores = cores or machine_cores()
    threads = int(s.get("threads_per_worker", 1))
    workers = int(s.get("workers", max(1, cores // threads)))
    per_numba = max(1, cores // (workers * threads))
    numba_threads = int(s.get("numba_threads", per_numba))
    used = workers * threads * numba_threads
    if used > cores:
        raise UserError(
            f"cluster: workers ({workers}) x threads_per_worker ({threads}) x numba_threads "
            f"({numba_threads}) = {used} exceeds the {cores} cores available; lower one of them")
    return ClusterPlan(workers=workers, threads_per_worker=threads, numba_threads=numba_threads,
                       processes=bool(s.get("processes", True)),
                       memory_limit=s.get("memory_limit", "auto"),
                       dashboard_address=_dashboard(s.get("dashboard_address", "127.0.0.1:0")),
                       tls=bool(s.get("tls", True)))


def _dashboard(address) -> str | None:
    """A dashboard address, or None for none (``"none"``, ``false`` or an empty string)."""
    if address is False or str(address).strip().lower() in ("", "none", "false"):
        return None
    return str(address)


def start_local_cluster(plan: ClusterPlan, *, scheduler_port: int = 0):
    """Start a ``distributed.LocalCluster`` for ``plan`` bound to loopback; returns it.

    Worker processes and clients speak TLS with a certificate made for this cluster
    (``cluster.security``), unless ``plan.tls`` is off: any user of the host can reach a
    loopback port, and a plain scheduler runs their code as you.
    """
    if not plan.processes:
        # threads in this process: pin BLAS pools; Numba's pool is process-wide and fixed once
        # launched (changing NUMBA_NUM_THREADS afterwards makes Numba raise), so leave it be
        for var in _THREAD_VARS:
            os.environ.setdefault(var, "1")
    from distributed import LocalCluster

    from hpcjobs.runtime.worker_env import KernelPreload, NumbaEnvironment, quiet_bad_input

    if not plan.processes:
        quiet_bad_input()  # the workers log in this process

    # Nanny-only keywords
    extra = ({"env": plan.env, "plugins": {NumbaEnvironment(), KernelPreload()}}
             if plan.processes else {})
    if plan.processes and plan.tls:
        from hpcjobs.runtime.security import temporary_security

        extra["security"] = temporary_security()
    return LocalCluster(
        n_workers=plan.workers,
        threads_per_worker=plan.threads_per_worker,
        processes=plan.processes,
        memory_limit=plan.memory_limit,
        # worker processes talk over loopback TCP; threads in this process use inproc://
        host="127.0.0.1" if plan.processes else None,
        scheduler_port=scheduler_port,
        dashboard_address=plan.dashboard_address,
        **extra,
    )


def connect(address: str | None = None, scheduler_file: str | None = None, security=None):
    """A ``distributed.Client`` to a scheduler that is already running; a scheduler file
    that ``hpcjobs cluster`` wrote brings the cluster's certificate along."""
    from distributed import Client

    if scheduler_file is not None:
        from hpcjobs.runtime.security import load_connection

        try:
            address, found = load_connection(scheduler_file)
        except FileNotFoundError:
            raise UserError(f"scheduler file {scheduler_file} does not exist (start one with "
                            "`hpcjobs cluster`)") from None
        except PermissionError:
            raise UserError(f"scheduler file {scheduler_file} is not readable: it belongs to "
                            "another user's cluster") from None
        except (ValueError, KeyError) as exc:
            raise UserError(f"scheduler file {scheduler_file} is not a scheduler file "
                            f"({type(exc).__name__}: {exc})") from None
        security = security or found
    try:
        return Client(address=address, security=security, timeout="10s")
    except TypeError:  # distributed's word for "TLS without a certificate"
        raise UserError(f"the Dask scheduler at {address} speaks TLS: connect with its "
                        "scheduler file (--scheduler-file), which holds its certificate"
                        ) from None
    except OSError as exc:
        where = address or scheduler_file
        raise UserError(f"cannot reach the Dask scheduler at {where}: {exc}") from None
