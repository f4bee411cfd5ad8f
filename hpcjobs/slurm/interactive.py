"""Interactive clusters in a Slurm allocation: the library behind ``hpcjobs cluster --slurm``.

``start`` submits an allocation whose ranks run a scheduler and workers (no driver: the
cluster waits for clients) and ``wait_until_up`` returns once the scheduler has written the
address and the job's certificate into the run folder. ``scale`` submits worker-only jobs
that join the same scheduler, and retires them again; ``stop`` closes the cluster cleanly
(workers retire, then the scheduler) and cancels what is left; ``status`` adds the live
workers to a run's status. ``mpi_cluster`` is what every rank runs.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import SimpleNamespace

from hpcjobs.errors import HpcjobsError, RunFailed, UserError
from hpcjobs.slurm.client import SlurmClient
from hpcjobs.slurm.runs import Run, new_run, runs_root, write_script
from hpcjobs.slurm.script import (
    CLUSTER_DEFAULTS,
    MIN_CLUSTER_TASKS,
    SlurmOptions,
    local_python,
    render_cluster_script,
    resolve_options,
    time_seconds,
)
from hpcjobs.slurm.status import LIVE_STATES, RunStatus, parse_squeue, run_status

DEFAULT_NAME = "cluster"


@dataclass
class ClusterStart:
    script: str
    options: SlurmOptions
    run: Run | None = None
    job_id: str | None = None


def cluster_options(*, job_file: str | os.PathLike | None = None, slurm: dict | None = None,
                    ) -> tuple[SlurmOptions, str | None]:
    """The cluster's Slurm options: site profile < the job file's ``[slurm]`` < ``slurm``;
    also the job file's name, when one is given."""
    from hpcjobs.siteconfig import profile_label, profile_table

    table, where, name = None, "[slurm]", None
    if job_file is not None:
        from hpcjobs.jobspec import load_job

        job = load_job(job_file, check_inputs=False)
        table, where, name = job.slurm, f"{job_file}: [slurm]", job.name
    opts = resolve_options(table, slurm, where=where, site=profile_table("slurm"),
                           site_where=profile_label("slurm"), defaults=CLUSTER_DEFAULTS,
                           min_tasks=MIN_CLUSTER_TASKS, what="a scheduler and a worker")
    limit = time_seconds(opts.time) if opts.time else None
    if limit is not None and opts.signal_seconds >= limit:
        raise UserError(f"signal_seconds = {opts.signal_seconds}: the walltime warning would "
                        f"come at the start of a {opts.time} allocation; ask for more time or "
                        "a smaller --signal-seconds")
    return opts, name


def start(*, job_file: str | os.PathLike | None = None, slurm: dict | None = None,
          name: str | None = None, dry_run: bool = False, client: SlurmClient | None = None,
          root: str | os.PathLike | None = None, python: str | None = None) -> ClusterStart:
    """Submit an interactive cluster (or, with ``dry_run``, only render its script)."""
    from hpcjobs._version import __version__
    from hpcjobs.jobspec import _NAME_RE
    from hpcjobs.slurm.submit import hand_to_sbatch

    opts, job_name = cluster_options(job_file=job_file, slurm=slurm)
    name = name or job_name or DEFAULT_NAME
    if not _NAME_RE.match(name):
        raise UserError(f"--name: {name!r}: use letters, digits and . _ - (at most 64)")
    python = python or local_python()
    if dry_run:
        planned = runs_root(root, create=False) / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
        return ClusterStart(render_cluster_script(opts, job_name=name, run_dir=planned,
                                                  python=python, hpcjobs_version=__version__),
                            opts)
    client = client or SlurmClient()
    run = new_run(name, root)
    script = render_cluster_script(opts, job_name=name, run_dir=run.path, python=python,
                                   hpcjobs_version=__version__)
    run.write_config({"kind": "cluster", "job_name": name, "python": python,
                      "options": _options_dict(opts),
                      "launcher": {"dashboard": opts.dashboard, "interface": opts.interface,
                                   "startup_timeout": opts.startup_timeout,
                                   "warn_seconds": opts.signal_seconds}})
    write_script(run.script, script)
    run.update_state(run_id=run.run_id, kind="cluster", job_name=name, job_id=None,
                     worker_jobs=[], slurm_conf=os.environ.get("SLURM_CONF"),
                     created=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    return ClusterStart(script, opts, run, hand_to_sbatch(run, client))


def _options_dict(opts: SlurmOptions) -> dict:
    return {k: v for k, v in asdict(opts).items() if not k.startswith("_")}


def wait_until_up(run: Run, client: SlurmClient, *, timeout: float | None = None,
                  echo: Callable[[str], None] = lambda _: None, interval: float = 0.5) -> dict:
    """Wait until the cluster has written its connection file; return what it wrote.

    Raises ``RunFailed`` (with the log's last lines) when the job ends first, and
    ``RunFailed`` when ``timeout`` seconds pass (the job stays queued).
    """
    from hpcjobs.slurm.connect import connection_info

    started = time.monotonic()
    said = ""
    while True:
        info = connection_info(run)
        if info is not None:
            return info
        st = run_status(run, client)
        if st.state not in LIVE_STATES:
            info = connection_info(run)
            if info is not None:
                return info
            raise RunFailed(f"cluster {run.run_id} (job {st.job_id}) ended before it was up: "
                            f"{st.summary()}; log: {_log_tail(run)}")
        summary = st.summary()
        if summary != said:
            echo(f"waiting: job {st.job_id} {summary}")
            said = summary
        if timeout is not None and time.monotonic() - started > timeout:
            raise RunFailed(f"cluster {run.run_id} not up after {timeout:.0f} s ({summary}); "
                            f"it stays queued: hpcjobs status {run.run_id}, or hpcjobs cancel "
                            f"{run.run_id}")
        time.sleep(interval)


def _log_tail(run: Run, lines: int = 3) -> str:
    logs = run.log_files()
    if not logs:
        return "(none)"
    tail = logs[-1].read_text(errors="replace").strip().splitlines()[-lines:]
    return " | ".join(tail) or "(empty)"


# -- workers: what the cluster has, scale up and down --------------------------------------------


@dataclass
class ClusterStatus:
    """A cluster run's status, its worker jobs' and the workers the scheduler knows."""

    status: RunStatus
    info: dict | None
    worker_jobs: list[RunStatus] = field(default_factory=list)
    #: live workers per Slurm job id (None: the scheduler did not answer)
    workers: dict[str, int] | None = None

    @property
    def total_workers(self) -> int | None:
        return None if self.workers is None else sum(self.workers.values())


def _job_status(run: Run, job_id: str, client: SlurmClient) -> RunStatus:
    """The status of one of the run's jobs (the cluster's or a worker job)."""
    view = SimpleNamespace(run_id=run.run_id, state={"job_id": job_id}, events=run.events)
    return run_status(view, client)


def status(run: Run, client: SlurmClient, *, ask_scheduler: bool = True) -> ClusterStatus:
    from hpcjobs.slurm.connect import connection_info

    st = run_status(run, client)
    jobs = [_job_status(run, j, client) for j in run.state.get("worker_jobs", [])]
    info = connection_info(run) if st.state == "RUNNING" else None
    workers = None
    if info is not None and ask_scheduler:
        try:
            workers = _workers_by_job(run)
        except (OSError, HpcjobsError, TimeoutError):
            workers = None
    return ClusterStatus(st, info, jobs, workers)


async def _with_client(run: Run, func, timeout: float = 20):
    """``await func(client)`` with an asynchronous client of the cluster (no loop thread:
    on a busy machine a client's own loop thread can start too late)."""
    from distributed import Client

    from hpcjobs.runtime.security import load_connection
    from hpcjobs.slurm.connect import connection_path

    address, security = load_connection(connection_path(run))
    async with Client(address, security=security, asynchronous=True,
                      timeout=f"{timeout}s") as client:
        return await func(client)


def _workers_by_job(run: Run) -> dict[str, int]:
    async def count(client) -> dict[str, int]:
        info = await client.scheduler.identity(n_workers=-1)
        counts: dict[str, int] = {}
        for worker in info["workers"].values():
            job = str(worker.get("name", "")).split("-rank-")[0]
            counts[job] = counts.get(job, 0) + 1
        return counts

    return asyncio.run(_with_client(run, count))


def scale(run: Run, jobs: int, client: SlurmClient, *, slurm: dict | None = None,
          echo: Callable[[str], None] = lambda _: None, timeout: float = 60) -> list[str]:
    """Keep ``jobs`` worker-only jobs beside the cluster's allocation; return their ids.

    New jobs use the cluster's options (one node, the cluster's ranks per node) with
    ``slurm`` overrides; removed ones (newest first) have their workers retired through the
    scheduler, so the data they hold moves to the others, and are cancelled if they linger.
    """
    from hpcjobs._version import __version__
    from hpcjobs.slurm.connect import connection_info

    if jobs < 0:
        raise UserError(f"scale: expected a number of worker jobs >= 0, found {jobs}")
    st = run_status(run, client)
    if st.state != "RUNNING" or connection_info(run) is None:
        raise UserError(f"cluster {run.run_id} is not up ({st.summary()}): nothing to scale")
    live = [j for j in run.state.get("worker_jobs", [])
            if _job_status(run, j, client).state in LIVE_STATES]
    if jobs > len(live):
        config = run.config
        base = {**config["options"], "nodes": 1, "job_name": None,
                **{k: v for k, v in (slurm or {}).items() if v is not None}}
        opts = resolve_options({k: v for k, v in base.items() if v is not None},
                               where="scale", defaults=CLUSTER_DEFAULTS, min_tasks=1)
        script = render_cluster_script(opts, job_name=f"{config['job_name']}-workers",
                                       run_dir=run.path, python=config["python"],
                                       role="workers", cluster_job=str(run.job_id),
                                       hpcjobs_version=__version__)
        path = run.path / "workers.sh"
        write_script(path, script)
        for _ in range(jobs - len(live)):
            job_id = client.sbatch(path)
            live.append(job_id)
            echo(f"submitted worker job {job_id} ({opts.ntasks} worker(s))")
            run.update_state(worker_jobs=[*run.state.get("worker_jobs", []), job_id])
    elif jobs < len(live):
        remove = live[jobs:][::-1]
        _retire_jobs(run, remove, client, echo=echo, timeout=timeout)
        live = live[:jobs]
    return live


def _retire_jobs(run: Run, job_ids: list[str], client: SlurmClient, *,
                 echo: Callable[[str], None], timeout: float) -> None:
    """Retire the workers of ``job_ids`` (their data moves to the others); cancel the jobs
    that are still there after ``timeout`` seconds (or had not started)."""
    prefixes = tuple(f"{j}-rank-" for j in job_ids)

    async def retire(dask_client) -> int:
        info = await dask_client.scheduler.identity(n_workers=-1)
        names = [w["name"] for w in info["workers"].values()
                 if str(w.get("name", "")).startswith(prefixes)]
        if names:
            await dask_client.retire_workers(names=names, close_workers=True)
        return len(names)

    try:
        retired = asyncio.run(_with_client(run, retire))
        echo(f"retired {retired} worker(s) of job(s) {', '.join(job_ids)}")
    except (OSError, HpcjobsError, TimeoutError) as exc:
        echo(f"could not retire the workers through the scheduler ({exc}); cancelling")
    _wait_or_cancel(run, job_ids, client, echo=echo, timeout=timeout)


def _wait_or_cancel(run: Run, job_ids: list[str], client: SlurmClient, *,
                    echo: Callable[[str], None], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    remaining = list(job_ids)
    while remaining and time.monotonic() < deadline:
        rows = {r.job_id: r.state for r in parse_squeue(client.squeue(remaining))}
        remaining = [j for j in remaining if rows.get(j) in LIVE_STATES]
        # a job that never started has nothing to retire
        for j in [j for j in remaining if rows.get(j) == "PENDING"]:
            client.cancel(j)
            remaining.remove(j)
        if remaining:
            time.sleep(0.5)
    for j in remaining:
        echo(f"job {j} still running after {timeout:.0f} s: cancelling it")
        client.cancel(j)


def stop(run: Run, client: SlurmClient, *, timeout: float = 60,
         echo: Callable[[str], None] = lambda _: None) -> RunStatus:
    """Close the cluster cleanly: the scheduler retires the workers and closes (asked
    through ``stop/<jobid>`` in the run folder); a job still there after ``timeout`` seconds,
    a pending one, and every worker job are cancelled."""
    st = run_status(run, client)
    if st.job_id is None:
        raise UserError(f"run {run.run_id} was never submitted")
    worker_jobs = [j for j in run.state.get("worker_jobs", [])
                   if _job_status(run, j, client).state in LIVE_STATES]
    if st.state not in LIVE_STATES and not worker_jobs:
        raise UserError(f"cluster {run.run_id} (job {st.job_id}) is already {st.state}; "
                        "nothing to stop")
    if st.state in LIVE_STATES:
        stop_dir = run.path / "stop"
        stop_dir.mkdir(mode=0o700, exist_ok=True)
        (stop_dir / str(st.job_id)).write_text(time.strftime("%Y-%m-%dT%H:%M:%S%z\n"))
        _wait_or_cancel(run, [str(st.job_id)], client, echo=echo, timeout=timeout)
    # the scheduler closed its workers; a worker job that lingers (or waits) is cancelled
    _wait_or_cancel(run, worker_jobs, client, echo=echo, timeout=15)
    run.update_state(cancelled=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    return run_status(run, client)


# -- inside the allocation ----------------------------------------------------------------------


def allocation_end(job_id: str, client: SlurmClient | None = None) -> float | None:
    """When the allocation ends (seconds since the epoch), from ``scontrol show job``;
    None when unlimited or unknown."""
    from datetime import datetime

    from hpcjobs.slurm.status import parse_scontrol

    try:
        records = parse_scontrol((client or SlurmClient()).show_job(job_id))
    except HpcjobsError:
        return None
    end = records[0].get("EndTime", "") if records else ""
    try:
        return datetime.fromisoformat(end).timestamp()  # local time, as Slurm prints it
    except ValueError:
        return None  # "Unknown", or no limit


def mpi_cluster(run_dir: str | os.PathLike, *, join: str | None = None, comm=None) -> int:
    """What every rank of a cluster job (or, with ``join``, of a worker job) runs."""
    from hpcjobs.runtime.mpi import STARTUP_TIMEOUT, batch_world, cluster_file, log
    from hpcjobs.runtime.mpi_cluster import join_cluster, launch_cluster

    run = Run(Path(run_dir).absolute())
    try:
        launcher = run.config.get("launcher", {})
    except (OSError, ValueError) as exc:
        log(f"error: cannot read {run.path / 'run.json'}: {exc} (is the run folder visible "
            "from this node?)")
        return 2
    job_id = os.environ.get("SLURM_JOB_ID", "local")
    common = {"interface": launcher.get("interface"),
              "startup_timeout": float(launcher.get("startup_timeout", STARTUP_TIMEOUT))}
    if comm is None:  # MPI not finalized: a dead worker rank must not hang the others
        comm = batch_world()
    if join is not None:
        return join_cluster(cluster_file(run.path, join), job_id=job_id, comm=comm, **common)
    end_time = allocation_end(job_id) if comm.Get_rank() == 0 else None
    return launch_cluster(cluster_path=cluster_file(run.path, job_id),
                          stop_path=run.path / "stop" / job_id,
                          walltime_path=run.path / "walltime" / job_id, job_id=job_id,
                          end_time=end_time, warn_seconds=float(launcher.get("warn_seconds", 300)),
                          comm=comm, dashboard_address=launcher.get("dashboard"), **common)
