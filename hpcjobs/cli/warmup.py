"""``hpcjobs warmup``: compile kernels for this machine now, once, instead of in a job's first run."""

from __future__ import annotations

import click

from hpcjobs.cli._errors import CLIError, wrap_errors
from hpcjobs.cli.jobs import CONTEXT, cluster_options


@click.command(context_settings=CONTEXT)
@click.argument("targets", nargs=-1, metavar="[KERNEL|JOB.toml]...")
@cluster_options
@click.option("--force", is_flag=True, help="Compile again even where this machine is warm.")
@click.option("--progress/--no-progress", default=True, help="Progress bar on stderr.")
@wrap_errors
def warmup(targets, workers, threads_per_worker, numba_threads, force, progress):
    """Fill Numba's cache for KERNELs (default: every kernel) or for the steps of JOB files.

    Runs each kernel once on a small input, one worker process per core, so that no job
    compiles on this machine later. A site can run it once after installing; on a cluster,
    run it on a compute node (the cache is for the CPU it was made on).
    """
    from distributed import Client

    from hpcjobs import registry
    from hpcjobs.jobspec import load_job
    from hpcjobs.kernels._jit import cache_location
    from hpcjobs.runtime.local import plan_cluster, start_local_cluster
    from hpcjobs.warmup import plan_examples, plan_job, warm

    kernels = [t for t in targets if not t.endswith(".toml")]
    for name in kernels:
        if name not in registry.all_kernels():
            raise CLIError(f"unknown kernel {name!r}; known kernels: "
                           f"{', '.join(registry.all_kernels())} (or give a JOB.toml)")
    plans = [("kernels", plan_examples(kernels or None))] if kernels or not targets else []
    plans += [(job_file, plan_job(load_job(job_file)))
              for job_file in targets if job_file.endswith(".toml")]
    click.echo(f"Numba cache: {cache_location().describe()}", err=True)
    sizing = plan_cluster({"workers": workers, "threads_per_worker": threads_per_worker,
                           "numba_threads": numba_threads})
    log = lambda msg: click.echo(msg, err=True)  # noqa: E731
    warmed, already, compiled, seconds, failed = 0, 0, 0, 0.0, {}
    with start_local_cluster(sizing) as cluster, Client(cluster) as client:
        for source, plan in plans:
            report = warm(client, plan, log=log, progress=progress, force=force)
            warmed += len(report.warmed)
            already += len(report.already)
            compiled += report.compiled
            seconds += report.seconds
            failed.update({f"{source}: {name}": why for name, why in report.failed.items()})
    if not warmed and not failed:
        click.echo(f"already warm: {already} step(s); nothing to compile")
    else:
        click.echo(f"warmed {warmed} step(s): {compiled} kernel functions compiled in "
                   f"{seconds:.1f} s; {already} step(s) were warm already")
    for name, why in failed.items():
        click.echo(f"warm-up of {name} failed: {why}", err=True)
    if failed:
        raise CLIError(f"{len(failed)} warm-up(s) failed (see above)", exit_code=1)
