"""Job commands: run, validate, show, cluster, quickstart."""

from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
from pathlib import Path

import click

from hpcjobs.cli._errors import CLIError, wrap_errors

CONTEXT = {"help_option_names": ["-h", "--help"]}


def _parse_sets(values: tuple[str, ...]) -> dict:
    """``--set step.km.params.n_clusters=4`` -> overrides (values parsed as TOML values)."""
    import tomllib

    out = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise CLIError(f"--set expects KEY=VALUE (e.g. step.km.params.n_clusters=4), "
                           f"got {item!r}")
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw  # a bare string
        out[key.strip()] = value
    return out


def insecure_option(func):
    """--insecure, shared by run and cluster."""
    return click.option("--insecure", is_flag=True,
                        help="Plain TCP instead of TLS: any user of this host could then use "
                             "the cluster and run code as you.")(func)


def _warn_insecure(insecure: bool) -> None:
    if insecure:
        click.echo("warning: --insecure: the cluster speaks plain TCP; any user of this host "
                   "can connect to it and run code as you", err=True)


def cluster_options(func):
    """--workers/--threads-per-worker/--numba-threads, shared by run and cluster."""
    func = click.option("--numba-threads", type=click.IntRange(min=1),
                        help="Numba threads per Dask thread.")(func)
    func = click.option("--threads-per-worker", type=click.IntRange(min=1),
                        help="Threads per Dask worker.")(func)
    func = click.option("--workers", type=click.IntRange(min=1),
                        help="Dask worker processes (default: one per core).")(func)
    return func


@click.command(context_settings=CONTEXT)
@click.argument("job_file", type=click.Path(dir_okay=False))
@click.option("--resume", is_flag=True, help="Finish an interrupted run: compute only what is "
              "missing.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output.")
@cluster_options
@click.option("--address", help="Use the running Dask scheduler at this address.")
@click.option("--scheduler-file", type=click.Path(dir_okay=False),
              help="Use the running Dask scheduler described by this file (`hpcjobs cluster`).")
@click.option("--on", "on_run", metavar="RUN",
              help="Run on the cluster in a Slurm allocation that `hpcjobs cluster --slurm` "
                   "started (its run id, folder or job id); its walltime warning stops the "
                   "job as a signal does (finished chunks kept: --resume later).")
@click.option("--report", is_flag=True, help="Save Dask's HTML performance report next to the "
              "output (OUTPUT.report.html).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override a job-file value, e.g. --set step.km.params.n_clusters=4 or "
                   "--set output.path=other.zarr (repeatable).")
@click.option("--progress/--no-progress", default=True, help="Progress bar on stderr.")
@insecure_option
@wrap_errors
def run(job_file, resume, overwrite, workers, threads_per_worker, numba_threads, address,
        scheduler_file, on_run, report, sets, progress, insecure):
    """Run JOB_FILE on a local Dask cluster sized to this machine (or a running scheduler)."""
    from hpcjobs.jobspec import load_job
    from hpcjobs.runner import run_job

    if resume and overwrite:
        raise click.UsageError("--resume and --overwrite exclude each other")
    if sum(bool(x) for x in (address, scheduler_file, on_run)) > 1:
        raise click.UsageError("give one of --address, --scheduler-file and --on")
    job = load_job(job_file, overrides=_parse_sets(sets))
    mode = "resume" if resume else "overwrite" if overwrite else "new"
    overrides = {"workers": workers, "threads_per_worker": threads_per_worker,
                 "numba_threads": numba_threads}
    if any(v is not None for v in overrides.values()):
        from hpcjobs.runtime.local import plan_cluster

        plan_cluster({**job.cluster, **overrides})  # refuse oversubscription up front
    if insecure:
        if address or scheduler_file or on_run:
            raise click.UsageError("--insecure is for the cluster that run starts itself")
        overrides["tls"] = False
        _warn_insecure(True)
    client = None
    if address or scheduler_file:
        from hpcjobs.runtime.local import connect

        client = connect(address=address, scheduler_file=scheduler_file)
    stop = threading.Event()
    if on_run:
        client = _on_cluster(on_run, stop)
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    report_path = job.output_path.with_suffix(".report.html") if report else None
    log = lambda msg: click.echo(msg, err=True)  # noqa: E731
    try:
        log(f"running {job.name}: {len(job.steps)} step(s) -> {job.output_path}")
        summary = run_job(job, client=client, mode=mode, progress=progress, stop=stop,
                          report=report_path, log=log,
                          cluster={k: v for k, v in overrides.items() if v is not None})
    finally:
        signal.signal(signal.SIGTERM, previous)
        if client is not None:
            client.close()
    click.echo(f"wrote {summary.output} in {summary.seconds:.1f} s "
               f"(inspect it with: hpcjobs show {summary.output})")
    if report_path is not None:
        click.echo(f"performance report: {report_path}")


def _on_cluster(ref: str, stop: threading.Event):
    """A client of the cluster ``ref`` whose walltime warning sets ``stop``."""
    from hpcjobs.slurm.connect import connect

    client = connect(ref)

    def on_walltime(warning: dict) -> None:
        left = warning.get("seconds_left")
        click.echo(f"the cluster's allocation ends in {left:.0f} s: stopping (finished chunks "
                   "are kept; finish with --resume on another cluster)" if left is not None
                   else "the cluster's allocation ends soon: stopping", err=True)
        stop.set()

    client.on_walltime(on_walltime)
    return client


@click.command(context_settings=CONTEXT)
@click.argument("job_files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--no-inputs", is_flag=True, help="Do not open the input Zarr (check syntax, "
              "kernels and parameters only).")
@wrap_errors
def validate(job_files, no_inputs):
    """Check JOB_FILES against the kernel registry and their inputs; run nothing."""
    from hpcjobs.jobspec import load_job

    for job_file in job_files:
        job = load_job(job_file, check_inputs=not no_inputs)
        steps = ", ".join(f"{s.name} ({s.kernel})" for s in job.steps)
        click.echo(f"{job_file}: OK: {job.name}: {steps}; reads {job.input_path}, writes "
                   f"{job.output_path}")


@click.command(context_settings=CONTEXT)
@click.argument("result", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--job", "show_job", is_flag=True, help="Also print the job file as run.")
@wrap_errors
def show(result, as_json, show_job):
    """Show RESULT's steps, arrays (shapes, dtypes, chunks) and provenance."""
    from hpcjobs.show import format_summary, open_result, summarize

    info = summarize(result)
    if as_json:
        click.echo(json.dumps(info, indent=2, default=str))
    else:
        click.echo(format_summary(info))
    if show_job:
        click.echo("\njob file as run:\n" + (open_result(result).attrs.get("job") or ""))


@click.command(context_settings=CONTEXT)
@click.argument("path", type=click.Path())
@wrap_errors
def verify(path):
    """Check every chunk under the Zarr group PATH; name the corrupt ones (exit 1 if any).

    Arrays that hpcjobs writes carry a checksum per chunk, so a changed bit fails its chunk;
    a job's result is also checked for its completion markers, statuses and provenance.
    `hpcjobs run --resume` recomputes a finished chunk whose checksum fails.
    """
    from hpcjobs.verify import verify as run_verify

    report = run_verify(path)
    for name, idx, why in report.corrupt:
        click.echo(f"CORRUPT {name} chunk {'.'.join(map(str, idx)) or '0'}: {why}")
    for problem in report.problems:
        click.echo(f"PROBLEM {problem}")
    if report.unchecked:
        click.echo(f"no checksum (only a failing decode shows): {', '.join(report.unchecked)}")
    click.echo(f"{path}: {report.arrays} arrays, {report.chunks} chunks checked, "
               f"{len(report.corrupt)} corrupt, {len(report.problems)} other problem(s)")
    if not report.ok:
        raise CLIError(f"{len(report.corrupt)} corrupt chunk(s) and {len(report.problems)} "
                       f"other problem(s) in {path}", exit_code=1)


def local_cluster(workers, threads_per_worker, numba_threads, scheduler_file, port,
                  dashboard_address, no_dashboard, insecure, timeout) -> None:
    """``hpcjobs cluster`` without ``--slurm``: a local cluster that stays up until Ctrl-C
    (the command and its options: ``hpcjobs/cli/cluster.py``)."""
    import getpass
    import socket
    from urllib.parse import urlsplit

    from distributed import Client

    from hpcjobs.runtime.local import plan_cluster, start_local_cluster
    from hpcjobs.runtime.security import write_connection_file

    plan = plan_cluster({"workers": workers, "threads_per_worker": threads_per_worker,
                         "numba_threads": numba_threads, "tls": not insecure,
                         "dashboard_address": "none" if no_dashboard else dashboard_address})
    _warn_insecure(insecure)
    path = Path(scheduler_file)
    if path.exists():
        raise CLIError(f"{path} already exists: is another cluster running? Stop it or remove "
                       "the file")
    stop = threading.Event()
    with _stopped_by_signals(stop), start_local_cluster(plan, scheduler_port=port) as local, \
            Client(local) as client:
        link = client.dashboard_link if not no_dashboard else None
        write_connection_file(path, address=local.scheduler_address, dashboard=link,
                              security=None if insecure else local.security)
        click.echo(f"scheduler:      {local.scheduler_address}"
                   + ("" if insecure else " (TLS: only holders of the scheduler file get in)"))
        if link:
            port_ = urlsplit(link).port
            click.echo(f"dashboard:      {link}")
            click.echo("                (on loopback: other users of this host can open it; "
                       "--no-dashboard turns it off)")
            click.echo(f"                from your laptop: ssh -N -L {port_}:127.0.0.1:{port_} "
                       f"{getpass.getuser()}@{socket.getfqdn()}")
        click.echo(f"scheduler file: {path} (mode 0600: holds the cluster's certificate)")
        click.echo(f"workers:        {plan.workers} x {plan.threads_per_worker} thread(s), "
                   f"{plan.numba_threads} Numba thread(s) each")
        click.echo(f"use it with:    hpcjobs run JOB.toml --scheduler-file {path}")
        click.echo("Ctrl-C stops it.")
        started = time.monotonic()
        try:
            while not stop.is_set():
                if timeout is not None and time.monotonic() - started > timeout:
                    break
                stop.wait(0.2)
        finally:
            path.unlink(missing_ok=True)
    click.echo("cluster stopped.")


#: what stops a long-running command cleanly: Ctrl-C, kill, and the terminal closing
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextlib.contextmanager
def _stopped_by_signals(stop: threading.Event):
    """Set ``stop`` on SIGINT, SIGTERM or SIGHUP while the block runs.

    The handlers are installed whatever the process inherited: a command started in the
    background by a non-interactive shell inherits SIGINT as *ignored*, and Ctrl-C or
    ``kill -INT`` would then never stop it.
    """
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@click.command(context_settings=CONTEXT)
@click.argument("directory", default="quickstart", type=click.Path(file_okay=False))
@click.option("--rows", type=int, default=2_000_000, show_default=True,
              help="Number of synthetic sensor readings.")
@click.option("--force", is_flag=True, help="Make the data and job again if they exist.")
@cluster_options
@insecure_option
@wrap_errors
def quickstart(directory, rows, force, workers, threads_per_worker, numba_threads, insecure):
    """Make example data and a job file in DIRECTORY, run the job, and show the result."""
    from concurrent.futures import ThreadPoolExecutor

    from distributed import Client

    from hpcjobs.jobspec import load_job
    from hpcjobs.quickstart import data_path, make_sensor_data, write_job_file
    from hpcjobs.runner import run_job
    from hpcjobs.runtime.local import plan_cluster, start_local_cluster
    from hpcjobs.show import format_summary, summarize

    t0 = time.perf_counter()
    job_path = write_job_file(Path(directory), rows, force=force)
    overrides = {"workers": workers, "threads_per_worker": threads_per_worker,
                 "numba_threads": numba_threads, "tls": False if insecure else None}
    _warn_insecure(insecure)
    sizing = plan_cluster({**load_job(job_path, check_inputs=False).cluster,
                           **{k: v for k, v in overrides.items() if v is not None}})
    with ThreadPoolExecutor(1) as pool:
        starting = pool.submit(start_local_cluster, sizing)  # the workers start meanwhile
        try:
            make_sensor_data(data_path(directory), rows)
        except BaseException:
            starting.result().close()
            raise
        cluster = starting.result()
    click.echo(f"made {rows:,} synthetic sensor readings in {data_path(directory)} and the "
               f"job file {job_path}", err=True)
    with cluster, Client(cluster) as client:
        summary = run_job(load_job(job_path), client=client, mode="overwrite", progress=True,
                          log=lambda msg: click.echo(msg, err=True))
    click.echo(format_summary(summarize(summary.output)))
    click.echo(f"\nquickstart finished in {time.perf_counter() - t0:.1f} s. Next: edit "
               f"{job_path} and run `hpcjobs run {job_path} --overwrite`.")
