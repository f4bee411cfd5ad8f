"""Slurm commands: submit, status, logs, cancel, list, doctor (and the hidden mpi-run)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from hpcjobs.cli._errors import CLIError, wrap_errors
from hpcjobs.errors import UserError

CONTEXT = {"help_option_names": ["-h", "--help"]}


def _client():
    from hpcjobs.slurm.client import SlurmClient

    return SlurmClient()


def _resolve_run(ref: str | None):
    from hpcjobs.slurm.runs import find_run, latest_run

    if ref:
        return find_run(ref)
    run = latest_run()
    if run is None:
        raise UserError("there are no runs yet (submit one with: hpcjobs submit JOB.toml)")
    return run


# -- submit ------------------------------------------------------------------------------------


@click.command(context_settings=CONTEXT)
@click.argument("job_file", type=click.Path(dir_okay=False))
@click.option("--dry-run", is_flag=True, help="Print the batch script; submit nothing.")
@click.option("--resume", is_flag=True, help="Finish an interrupted output: compute only what "
              "is missing.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output.")
@click.option("--partition", "-p", help="Partition (queue).")
@click.option("--account", "-A", help="Account to charge.")
@click.option("--qos", help="Quality of service.")
@click.option("--nodes", "-N", type=click.IntRange(min=1), help="Number of nodes.")
@click.option("--ntasks-per-node", type=click.IntRange(min=1), help="MPI ranks per node.")
@click.option("--cpus-per-task", "-c", type=click.IntRange(min=1),
              help="Cores per rank (threads per Dask worker).")
@click.option("--mem", help="Memory per node, e.g. 16G.")
@click.option("--time", "-t", "time_", help="Walltime, e.g. 01:00:00.")
@click.option("--gres", help="Generic resources, e.g. gpu:1.")
@click.option("--constraint", "-C", help="Node features.")
@click.option("--max-requeues", type=click.IntRange(min=0),
              help="Times a job stopped by the walltime signal requeues itself (default 3).")
@click.option("--signal-seconds", type=click.IntRange(min=0),
              help="Seconds before the walltime at which the job is told to stop (default 120).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override a job-file value, e.g. --set step.km.params.n_clusters=4.")
@wrap_errors
def submit(job_file, dry_run, resume, overwrite, partition, account, qos, nodes,
           ntasks_per_node, cpus_per_task, mem, time_, gres, constraint, max_requeues,
           signal_seconds, sets):
    """Submit JOB_FILE to Slurm: Dask over MPI inside the allocation.

    Settings come from the job's [slurm] table; options given here win. Every submission
    gets a run folder (~/.hpcjobs/runs or $HPCJOBS_RUNS) that `hpcjobs status`, `logs` and
    `cancel` use later.
    """
    from hpcjobs.cli.jobs import _parse_sets
    from hpcjobs.slurm.submit import submit as do_submit

    if resume and overwrite:
        raise click.UsageError("--resume and --overwrite exclude each other")
    slurm = {"partition": partition, "account": account, "qos": qos, "nodes": nodes,
             "ntasks_per_node": ntasks_per_node, "cpus_per_task": cpus_per_task, "mem": mem,
             "time": time_, "gres": gres, "constraint": constraint,
             "max_requeues": max_requeues, "signal_seconds": signal_seconds}
    mode = "resume" if resume else "overwrite" if overwrite else "new"
    sub = do_submit(job_file, overrides=_parse_sets(sets), slurm=slurm, mode=mode,
                    dry_run=dry_run, client=None if dry_run else _client())
    if dry_run:
        click.echo(sub.script, nl=False)
        return
    what = f"array of {len(sub.sweep.points)} tasks" if sub.sweep else "job"
    click.echo(f"submitted {what} {sub.job_id}; run {sub.run.run_id}")
    click.echo(f"  folder  {sub.run.path}")
    click.echo(f"  follow  hpcjobs status {sub.run.run_id}   |   hpcjobs logs {sub.job_id} -f")


# -- status / list -----------------------------------------------------------------------------


def _status_dict(st, run) -> dict:
    return {"run": st.run_id, "job_id": st.job_id, "state": st.state,
            "summary": st.summary(), "output": run.state.get("output"),
            "folder": str(run.path),
            "tasks": [{"task": t.tag, "state": t.state, "reason": t.reason,
                       "exit_code": t.exit_code, "source": t.source, "restarts": t.restarts}
                      for t in st.tasks]}


@click.command(context_settings=CONTEXT)
@click.argument("run", required=False)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@wrap_errors
def status(run, as_json):
    """Show the state of RUN (a run id, its folder or a Slurm job id; default: the latest).

    The state comes from squeue, then scontrol, then the run folder's own records; a pending
    job shows its reason, a job that failed to start shows as failed.
    """
    from hpcjobs.slurm.status import run_status

    r = _resolve_run(run)
    client = _client()
    st = run_status(r, client)
    lines, extra = [], {}
    if r.state.get("kind") == "cluster":
        from hpcjobs.cli.cluster import status_lines

        lines, extra = status_lines(r, client)
    if as_json:
        click.echo(json.dumps({**_status_dict(st, r), **extra}, indent=1))
        return
    click.echo(f"run      {r.run_id}")
    click.echo(f"job id   {st.job_id or '-'}")
    click.echo(f"state    {st.summary()}")
    if lines:
        for line in lines:
            click.echo(line)
        log = r.logs_dir / f"slurm-{st.job_id}.out"
        click.echo(f"logs     {log if log.is_file() else '(none yet)'}")
        return
    click.echo(f"output   {r.state.get('output', '-')}")
    logs = r.log_files()
    click.echo(f"logs     {logs[-1] if logs else '(none yet)'}")
    if st.array:
        for t in st.tasks:
            click.echo(f"  {t.tag:<14} {t.describe()}")
    cluster = [p for p in r.cluster_files() if st.state == "RUNNING"]
    if cluster:
        info = json.loads(cluster[-1].read_text())
        click.echo(f"cluster  {info.get('address')} (TLS; certificate in {cluster[-1]})")
        if info.get("dashboard"):
            click.echo(f"dashboard {info['dashboard']} (on the node's loopback: ssh -L)")


@click.command("list", context_settings=CONTEXT)
@click.option("--all", "show_all", is_flag=True, help="All runs, not only the last 20.")
@click.option("--no-slurm", is_flag=True, help="Do not ask Slurm; only list the folders.")
@wrap_errors
def list_(show_all, no_slurm):
    """List your runs, newest last, with their Slurm state."""
    from hpcjobs.slurm.runs import list_runs, runs_root
    from hpcjobs.slurm.status import run_status

    runs = list_runs()
    if not runs:
        click.echo(f"no runs in {runs_root(create=False)}")
        return
    if not show_all:
        runs = runs[-20:]
    client = None if no_slurm else _client()
    click.echo(f"{'RUN':<44} {'JOB ID':>8}  {'SUBMITTED':<19}  STATE")
    for r in runs:
        state = r.state
        word = "-"
        if client is not None:
            try:
                word = run_status(r, client).summary()
            except Exception as exc:  # noqa: BLE001  (a listing should not die on one run)
                word = f"? ({exc})"
        submitted = (state.get("submitted") or state.get("created") or "")[:19]
        click.echo(f"{r.run_id:<44} {state.get('job_id') or '-':>8}  {submitted:<19}  {word}")


# -- logs ----------------------------------------------------------------------------------------


@click.command(context_settings=CONTEXT)
@click.argument("run", required=False)
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines until the job ends.")
@click.option("--task", type=int, help="Only this array task's log.")
@wrap_errors
def logs(run, follow, task):
    """Print the log of RUN (default: the latest run)."""
    from hpcjobs.slurm.status import LIVE_STATES, run_status

    r = _resolve_run(run)

    def files():
        found = r.log_files()
        if task is not None:
            found = [p for p in found if p.stem.endswith(f"_{task}")]
        return found

    if not follow:
        found = files()
        if not found:
            raise UserError(f"run {r.run_id} has no log yet (state: "
                            f"{run_status(r, _client()).summary()})")
        for p in found:
            if len(found) > 1:
                click.echo(f"==> {p.name} <==")
            click.echo(p.read_text(errors="replace"), nl=False)
        return
    offsets: dict[Path, int] = {}
    client = _client()
    last_check = 0.0
    try:
        while True:
            for p in files():
                with open(p, errors="replace") as fh:
                    fh.seek(offsets.get(p, 0))
                    chunk = fh.read()
                    offsets[p] = fh.tell()
                if chunk:
                    click.echo(chunk, nl=False)
            if time.monotonic() - last_check > 2:
                last_check = time.monotonic()
                if run_status(r, client).state not in LIVE_STATES:
                    for p in files():  # what was written at the very end
                        with open(p, errors="replace") as fh:
                            fh.seek(offsets.get(p, 0))
                            click.echo(fh.read(), nl=False)
                    return
            time.sleep(0.5)
    except KeyboardInterrupt:
        return


# -- cancel --------------------------------------------------------------------------------------


@click.command(context_settings=CONTEXT)
@click.argument("run")
@wrap_errors
def cancel(run):
    """Cancel RUN (all its array tasks); finished chunks of its output are kept.

    A cluster (`hpcjobs cluster --slurm`) is closed cleanly: its workers retire, then the
    scheduler closes; its worker jobs end with it.
    """
    from hpcjobs.slurm.status import LIVE_STATES, run_status

    r = _resolve_run(run)
    client = _client()
    if r.state.get("kind") == "cluster":
        from hpcjobs.slurm import interactive

        st = interactive.stop(r, client, echo=click.echo)
        click.echo(f"stopped cluster {r.run_id} (job {st.job_id}: {st.summary()})")
        return
    st = run_status(r, client)
    if st.job_id is None:
        raise UserError(f"run {r.run_id} was never submitted")
    if st.state not in LIVE_STATES:
        raise UserError(f"run {r.run_id} (job {st.job_id}) is already {st.state}; "
                        "nothing to cancel")
    client.cancel(st.job_id)
    r.update_state(cancelled=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    click.echo(f"cancelled job {st.job_id} (run {r.run_id})")


# -- doctor --------------------------------------------------------------------------------------


@click.command(context_settings=CONTEXT)
@click.option("--partition", "-p", help="Partition for the probe job.")
@click.option("--timeout", type=float, default=120, show_default=True,
              help="Seconds to wait for the probe job.")
@click.option("--no-probe", is_flag=True, help="Skip the probe job.")
@click.argument("job_file", required=False, type=click.Path(dir_okay=False, exists=True))
@wrap_errors
def doctor(partition, timeout, no_probe, job_file):
    """Check that jobs can run on Slurm here, and say in words what is wrong.

    Checks the Slurm commands and controller, the run folder, the Python packages the job
    needs and Numba's cache, then submits a tiny probe job that imports MPI and hpcjobs on
    the nodes, writes into the run folder and reports the nodes' CPU. With JOB_FILE it also
    says whether that job's kernels are compiled, here and for the nodes.
    """
    from hpcjobs.slurm.doctor import run_doctor

    ok = run_doctor(_client(), partition=partition, timeout=timeout, probe=not no_probe,
                    echo=click.echo, job_file=job_file)
    if not ok:
        raise CLIError("some checks failed (see above)", 1)


# -- mpi-cluster (hidden): what every rank of an interactive cluster runs -----------------------


@click.command("mpi-cluster", hidden=True, context_settings=CONTEXT)
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--join", help="Join the cluster of this Slurm job id (a worker job).")
def mpi_cluster(run_dir, join):
    """Run RUN_DIR's interactive cluster, or join it (started by its batch scripts)."""
    from hpcjobs.slurm.interactive import mpi_cluster as run

    code = run(run_dir, join=join)
    sys.stdout.flush()
    sys.stderr.flush()
    sys.exit(code)


# -- mpi-run (hidden): what every rank of a batch job runs -----------------------------------


@click.command("mpi-run", hidden=True, context_settings=CONTEXT)
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--mode", type=click.Choice(["new", "resume", "overwrite"]), default="new")
def mpi_run(run_dir, mode):
    """Run the job of RUN_DIR with Dask over MPI (started by the batch script on every rank)."""
    from hpcjobs.slurm.submit import mpi_run as run

    code = run(run_dir, mode)
    sys.stdout.flush()
    sys.stderr.flush()
    sys.exit(code)
