"""``hpcjobs cluster``: a local cluster that stays up, or (``--slurm``) one in an allocation;
``hpcjobs cluster scale RUN N``: worker-only jobs for a cluster in an allocation."""

from __future__ import annotations

import getpass

import click

from hpcjobs.cli._errors import CLIError, wrap_errors
from hpcjobs.cli.jobs import cluster_options, insecure_option, local_cluster

CONTEXT = {"help_option_names": ["-h", "--help"]}

#: options that only a local cluster has, and the words for refusing them with --slurm
LOCAL_ONLY = {"workers": "--workers (the allocation's ranks are the workers: --nodes, "
                         "--ntasks-per-node)",
              "threads_per_worker": "--threads-per-worker (use --cpus-per-task)",
              "numba_threads": "--numba-threads", "port": "--port", "insecure": "--insecure",
              "scheduler_file": "--scheduler-file (the run folder holds the connection file)"}


def slurm_options(func):
    """The ``[slurm]`` options that submit has, for a cluster in an allocation."""
    for args, kwargs in reversed([
        (("--partition", "-p"), {"help": "Partition (queue)."}),
        (("--account", "-A"), {"help": "Account to charge."}),
        (("--qos",), {"help": "Quality of service."}),
        (("--nodes", "-N"), {"type": click.IntRange(min=1), "help": "Number of nodes."}),
        (("--ntasks-per-node",), {"type": click.IntRange(min=1), "help": "MPI ranks per node "
                                  "(rank 0 is the scheduler, the others are workers)."}),
        (("--cpus-per-task", "-c"), {"type": click.IntRange(min=1),
                                     "help": "Cores per rank (threads per Dask worker)."}),
        (("--mem",), {"help": "Memory per node, e.g. 16G."}),
        (("--time", "-t", "time_"), {"help": "Walltime, e.g. 01:00:00."}),
        (("--gres",), {"help": "Generic resources, e.g. gpu:1."}),
        (("--constraint", "-C"), {"help": "Node features."}),
    ]):
        func = click.option(*args, **kwargs)(func)
    return func


def _client():
    from hpcjobs.slurm.client import SlurmClient

    return SlurmClient()


@click.group(invoke_without_command=True, context_settings=CONTEXT)
@cluster_options
@click.option("--scheduler-file", type=click.Path(dir_okay=False), default=None,
              help="Where to write the scheduler's address for `hpcjobs run --scheduler-file` "
                   "[default: scheduler.json].")
@click.option("--port", type=click.IntRange(0, 65535), default=None,
              help="Scheduler port (0: any free port) [default: 0].")
@click.option("--dashboard-address", default=None,
              help="Where the dashboard listens [default: 127.0.0.1:8787; with --slurm "
                   "127.0.0.1:0 on the scheduler's node].")
@click.option("--no-dashboard", is_flag=True, help="No dashboard at all.")
@insecure_option
@click.option("--timeout", type=float, default=None, hidden=True,
              help="Stop after this many seconds (for tests).")
@click.option("--slurm", "on_slurm", is_flag=True,
              help="Start the cluster inside a Slurm allocation (scheduler and workers over "
                   "MPI, the job's own TLS certificate) and return once it is up.")
@slurm_options
@click.option("--signal-seconds", type=click.IntRange(min=1),
              help="With --slurm: warn the clients this many seconds before the walltime "
                   "(default 300); the cluster closes shortly before the end.")
@click.option("--job", "job_file", type=click.Path(dir_okay=False, exists=True),
              help="With --slurm: take the [slurm] table of this job file.")
@click.option("--name", help="With --slurm: the run's and the Slurm job's name "
                             "[default: the job file's name, or 'cluster'].")
@click.option("--no-wait", is_flag=True, help="With --slurm: return once submitted.")
@click.option("--wait-timeout", type=float, default=None,
              help="With --slurm: give up waiting after this many seconds (the job stays "
                   "queued).")
@click.option("--dry-run", is_flag=True, help="With --slurm: print the batch script; submit "
                                              "nothing.")
@click.pass_context
@wrap_errors
def cluster(ctx, workers, threads_per_worker, numba_threads, scheduler_file, port,
            dashboard_address, no_dashboard, insecure, timeout, on_slurm, partition, account,
            qos, nodes, ntasks_per_node, cpus_per_task, mem, time_, gres, constraint,
            signal_seconds, job_file, name, no_wait, wait_timeout, dry_run):
    """Start a Dask cluster that stays up: locally until Ctrl-C, or with --slurm in an
    allocation until its walltime or `hpcjobs cancel RUN`.

    Local: share it across runs and notebooks with `hpcjobs run job.toml --scheduler-file
    scheduler.json`, or in Python `Client(*hpcjobs.runtime.security.load_connection(
    "scheduler.json"))`.

    --slurm: rank 0 of the allocation runs the scheduler, the other ranks workers; connect
    with `hpcjobs.connect(RUN)` or `hpcjobs run job.toml --on RUN`; more workers with
    `hpcjobs cluster scale RUN N`. Either way the cluster speaks TLS with a certificate made
    for it, in a file readable by you alone.
    """
    if ctx.invoked_subcommand is not None:
        return
    slurm_given = {k: v for k, v in {"partition": partition, "account": account, "qos": qos,
                                     "nodes": nodes, "ntasks_per_node": ntasks_per_node,
                                     "cpus_per_task": cpus_per_task, "mem": mem,
                                     "time": time_, "gres": gres, "constraint": constraint,
                                     "signal_seconds": signal_seconds}.items()
                   if v is not None}
    if not on_slurm:
        extra = [f"--{k.replace('_', '-')}" for k in slurm_given] + [
            flag for flag, on in (("--job", job_file), ("--name", name),
                                  ("--no-wait", no_wait), ("--wait-timeout", wait_timeout),
                                  ("--dry-run", dry_run)) if on]
        if extra:
            raise click.UsageError(f"{extra[0]} needs --slurm (a cluster in an allocation)")
        from hpcjobs.siteconfig import cluster_defaults

        dashboard_address = (dashboard_address or cluster_defaults().get("dashboard_address")
                             or "127.0.0.1:8787")
        local_cluster(workers, threads_per_worker, numba_threads,
                      scheduler_file or "scheduler.json", port or 0, dashboard_address,
                      no_dashboard, insecure, timeout)
        return
    local = {"workers": workers, "threads_per_worker": threads_per_worker,
             "numba_threads": numba_threads, "port": port, "insecure": insecure or None,
             "scheduler_file": scheduler_file}
    refused = [LOCAL_ONLY[k] for k, v in local.items() if v is not None]
    if refused:
        raise click.UsageError(f"{refused[0]} is for a local cluster, not with --slurm")
    if no_dashboard:
        slurm_given["dashboard"] = "none"
    elif dashboard_address is not None:
        slurm_given["dashboard"] = dashboard_address
    _start_on_slurm(slurm_given, job_file=job_file, name=name, no_wait=no_wait,
                    wait_timeout=wait_timeout, dry_run=dry_run)


def _start_on_slurm(slurm: dict, *, job_file, name, no_wait, wait_timeout, dry_run) -> None:
    from hpcjobs.slurm import interactive

    started = interactive.start(job_file=job_file, slurm=slurm, name=name, dry_run=dry_run,
                                client=None if dry_run else _client())
    if dry_run:
        click.echo(started.script, nl=False)
        return
    run, opts = started.run, started.options
    click.echo(f"submitted cluster job {started.job_id}; run {run.run_id}")
    click.echo(f"  folder  {run.path}")
    click.echo(f"  size    {opts.nodes} node(s) x {opts.ntasks_per_node} rank(s): a scheduler "
               f"and {opts.ntasks - 1} worker(s)")
    if no_wait:
        click.echo(f"  follow  hpcjobs status {run.run_id}")
        return
    try:
        info = interactive.wait_until_up(run, _client(), timeout=wait_timeout,
                                         echo=lambda msg: click.echo(f"  {msg}", err=True))
    except KeyboardInterrupt:
        raise CLIError(f"stopped waiting; the cluster stays queued: hpcjobs status "
                       f"{run.run_id}, or hpcjobs cancel {run.run_id}", 130) from None
    echo_connection(run, info)


def echo_connection(run, info: dict) -> None:
    """How to connect to a cluster that is up, and to its dashboard."""
    from hpcjobs.slurm.connect import connection_path

    click.echo(f"cluster up: {info.get('workers')} worker(s), scheduler {info['address']} "
               "(TLS: this job's certificate only)")
    click.echo(f"  certificate  {connection_path(run)} (mode 0600)")
    click.echo(f"  python       client = hpcjobs.connect({run.run_id!r})")
    click.echo(f"  run a job    hpcjobs run JOB.toml --on {run.run_id}")
    click.echo(f"  stop it      hpcjobs cancel {run.run_id}")
    for line in dashboard_lines(info):
        click.echo(f"  {line}")


def dashboard_lines(info: dict) -> list[str]:
    """The dashboard's link (``distributed.dashboard.link`` honoured, e.g. for
    jupyter-server-proxy) and the SSH tunnel to it when it listens on the node's loopback."""
    import socket

    from hpcjobs.slurm.connect import dashboard_link

    link = dashboard_link(info)
    if link is None:
        return []
    port, node = info["dashboard_port"], info.get("node") or "NODE"
    if (info.get("dashboard_host") or "127.0.0.1") not in ("127.0.0.1", "localhost"):
        return [f"dashboard    {link}"]
    return [f"dashboard    {link} (on {node}'s loopback: open a tunnel first)",
            f"  from the login node: ssh -N -L {port}:127.0.0.1:{port} {node}",
            f"  from your laptop:    ssh -N -L {port}:127.0.0.1:{port} -J "
            f"{getpass.getuser()}@{socket.getfqdn()} {node}"]


@cluster.command(context_settings=CONTEXT)
@click.argument("run")
@click.argument("jobs", type=click.IntRange(min=0))
@click.option("--nodes", "-N", type=click.IntRange(min=1), help="Nodes per worker job "
              "(default 1).")
@click.option("--ntasks-per-node", type=click.IntRange(min=1),
              help="Worker ranks per node (default: the cluster's).")
@click.option("--time", "-t", "time_", help="Walltime of each worker job (default: the "
                                           "cluster's).")
@click.option("--timeout", type=float, default=60, show_default=True,
              help="Seconds removed jobs may take to retire before they are cancelled.")
@wrap_errors
def scale(run, jobs, nodes, ntasks_per_node, time_, timeout):
    """Keep JOBS worker-only jobs beside RUN's allocation: submit more, or retire the newest.

    Each worker job's ranks join the cluster's scheduler with its certificate; removed ones
    retire their workers first (their data moves to the others).
    """
    from hpcjobs.slurm import interactive
    from hpcjobs.slurm.connect import cluster_run

    r = cluster_run(run)
    live = interactive.scale(r, jobs, _client(), echo=click.echo, timeout=timeout,
                             slurm={"nodes": nodes, "ntasks_per_node": ntasks_per_node,
                                    "time": time_})
    click.echo(f"cluster {r.run_id}: {len(live)} worker job(s)"
               + (f": {', '.join(live)}" if live else ""))


def status_lines(run, client) -> tuple[list[str], dict]:
    """``hpcjobs status`` of a cluster run: its lines and its JSON."""
    import time

    from hpcjobs.slurm import interactive

    cs = interactive.status(run, client)
    lines = ["kind     interactive cluster (hpcjobs cluster --slurm)"]
    data = {"kind": "cluster", "worker_jobs": [
        {"job_id": j.job_id, "state": j.state, "summary": j.summary()} for j in cs.worker_jobs],
        "workers": cs.workers, "total_workers": cs.total_workers,
        "address": (cs.info or {}).get("address"), "end_time": (cs.info or {}).get("end_time")}
    if cs.info is not None:
        from hpcjobs.slurm.connect import connection_path

        if cs.workers is None:
            lines.append(f"workers  {cs.info.get('workers')} at start (the scheduler did not "
                         "answer now)")
        else:
            mine = cs.workers.get(str(run.job_id), 0)
            parts = [f"{mine} in the allocation"] + [
                f"{cs.workers.get(str(j.job_id), 0)} in worker job {j.job_id}"
                for j in cs.worker_jobs if j.state == "RUNNING"]
            lines.append(f"workers  {cs.total_workers} live: " + ", ".join(parts))
        lines.append(f"cluster  {cs.info['address']} (TLS; certificate in "
                     f"{connection_path(run)})")
        end = cs.info.get("end_time")
        if end:
            left = max(0, end - time.time())
            lines.append(f"ends in  {left / 60:.1f} min (clients are warned "
                         f"{cs.info.get('warn_seconds', 0) / 60:.1f} min before)")
        lines.append(f"connect  hpcjobs.connect({run.run_id!r})  |  hpcjobs run JOB.toml "
                     f"--on {run.run_id}")
        lines += dashboard_lines(cs.info)
    for j in cs.worker_jobs:
        lines.append(f"  worker job {j.job_id:<8} {j.summary()}")
    return lines, data
