"""Submitting jobs, and what runs inside them: the library behind ``hpcjobs submit``.

``submit`` validates the job file (and every sweep point) before anything is written, makes a
run folder, renders the batch script and hands it to ``sbatch``. ``mpi_run`` is what every
rank of the allocation runs (``python -m hpcjobs mpi-run RUN``): Dask over MPI with the job
as the driver.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from hpcjobs.errors import HpcjobsError, Interrupted, OutputExistsError, UserError
from hpcjobs.slurm.client import SlurmClient
from hpcjobs.slurm.runs import Run, new_run, runs_root, write_script
from hpcjobs.slurm.script import local_python, render_script, resolve_options
from hpcjobs.slurm.sweep import Sweep, expand_sweep, task_group

MODES = ("new", "resume", "overwrite")


@dataclass
class Submission:
    script: str
    run: Run | None = None
    job_id: str | None = None
    sweep: Sweep | None = None


def prepare(job_file: str | os.PathLike, *, overrides: dict | None = None,
            slurm: dict | None = None, mode: str = "new"):
    """Validate everything a submission needs; return ``(job, options, sweep, run_overrides)``."""
    from hpcjobs.jobspec import load_job
    from hpcjobs.siteconfig import profile_label, profile_table

    if mode not in MODES:
        raise UserError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    overrides = dict(overrides or {})
    job = load_job(job_file, overrides=overrides)
    opts = resolve_options(job.slurm, slurm, where=f"{job_file}: [slurm]",
                           site=profile_table("slurm"), site_where=profile_label("slurm"))
    sweep = expand_sweep(job.sweep, where=f"{job_file}: [sweep]")
    # the job runs from a copy in its run folder: pin its paths to absolute ones
    run_overrides = {**overrides, "input.path": str(job.input_path.absolute()),
                     "output.path": str(job.output_path.absolute())}
    if sweep is not None:
        for i, point in enumerate(sweep.points):
            try:
                load_job(job_file, overrides={**run_overrides, **point}, check_inputs=False)
            except HpcjobsError as exc:
                raise UserError(f"{job_file}: [sweep] point {i} {point}: {exc}") from None
    if mode == "new" and job.output_path.exists():
        raise OutputExistsError(f"output {job.output_path} already exists; use --resume to "
                                "finish it or --overwrite to replace it")
    return job, opts, sweep, run_overrides


def submit(job_file: str | os.PathLike, *, overrides: dict | None = None,
           slurm: dict | None = None, mode: str = "new", dry_run: bool = False,
           client: SlurmClient | None = None, root: str | os.PathLike | None = None,
           python: str | None = None) -> Submission:
    """Submit ``job_file`` to Slurm; with ``dry_run`` only render the script.

    Parameters
    ----------
    overrides : dict, optional
        Dotted job-file overrides (``{"step.km.params.n_clusters": 4}``).
    slurm : dict, optional
        ``[slurm]`` settings from the command line; they win over the job file's.
    mode : {"new", "resume", "overwrite"}
        What to do with an existing output (a requeued start always resumes).

    Examples
    --------
    >>> sub = submit("job.toml", slurm={"time": "00:10:00"})  # doctest: +SKIP
    >>> sub.job_id, sub.run.path                                # doctest: +SKIP
    ('42', PosixPath('/home/me/.hpcjobs/runs/demo-20261125-171502-a3f9'))
    """
    from hpcjobs._version import __version__

    job, opts, sweep, run_overrides = prepare(job_file, overrides=overrides, slurm=slurm,
                                              mode=mode)
    python = python or local_python()
    array = sweep.array_spec if sweep else None
    if dry_run:
        planned = runs_root(root, create=False) / f"{job.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        script = render_script(opts, job_name=job.name, run_dir=planned, python=python,
                               mode=mode, array=array, hpcjobs_version=__version__)
        return Submission(script=script, sweep=sweep)

    client = client or SlurmClient()
    run = new_run(job.name, root)
    script = render_script(opts, job_name=job.name, run_dir=run.path, python=python,
                           mode="new" if sweep and mode == "overwrite" else mode,
                           array=array, hpcjobs_version=__version__)
    run.job_file.write_text(job.text, encoding="utf-8")
    run.write_config({
        "job_name": job.name,
        "job_file": run.job_file.name,
        "overrides": run_overrides,
        "output": str(job.output_path.absolute()),
        "sweep": [dict(p) for p in sweep.points] if sweep else None,
        "launcher": {"dashboard": opts.dashboard, "interface": opts.interface,
                     "startup_timeout": opts.startup_timeout},
    })
    write_script(run.script, script)
    run.update_state(run_id=run.run_id, job_name=job.name, source=str(Path(job_file).absolute()),
                     output=str(job.output_path.absolute()), mode=mode,
                     array_tasks=len(sweep.points) if sweep else None,
                     array_spec=array, slurm_conf=os.environ.get("SLURM_CONF"),
                     created=time.strftime("%Y-%m-%dT%H:%M:%S%z"), job_id=None)
    if sweep is not None:
        _prepare_sweep_output(job.output_path, sweep, mode, run)
    job_id = hand_to_sbatch(run, client)
    return Submission(script=script, run=run, job_id=job_id, sweep=sweep)


def hand_to_sbatch(run: Run, client: SlurmClient) -> str:
    """Submit the run's script; record the job id, or Slurm's refusal, in its state."""
    try:
        job_id = client.sbatch(run.script)
    except HpcjobsError as exc:
        run.update_state(submit_error=str(exc))
        raise
    run.update_state(job_id=job_id, submitted=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    return job_id


def _prepare_sweep_output(path: Path, sweep: Sweep, mode: str, run: Run) -> None:
    """The sweep's output group: one subgroup per task, the grid in its attributes."""
    import zarr

    if path.exists() and mode == "overwrite":
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    group = zarr.open_group(str(path), mode="a", zarr_format=3)
    group.attrs["hpcjobs_sweep"] = {
        "keys": list(sweep.keys), "run": run.run_id,
        "tasks": [{"group": task_group(i), "params": p} for i, p in enumerate(sweep.points)]}


# -- inside the allocation ----------------------------------------------------------------------


def mpi_run(run_dir: str | os.PathLike, mode: str = "new", *, comm=None,
            recorded_exit: bool = True) -> int:
    """Run the job of ``run_dir`` on Dask over MPI; called on every rank. Returns the exit code.

    The job's driver (rank 1) stops when the batch script writes ``stop/<jobid>`` (on the
    walltime signal): finished chunks are kept and the exit code is 3 (``Interrupted``), which
    the script answers with a requeue. The driver's code goes to ``exit/<jobid>``; with
    ``recorded_exit`` the process then exits 0, so that srun does not tear the step down
    under the other ranks (the batch script exits with the recorded code).
    """
    from hpcjobs.runtime.mpi import STARTUP_TIMEOUT, StopWatcher, batch_world, cluster_file, launch, log

    run = Run(Path(run_dir).absolute())
    config = run.config_on_node(log)
    if config is None:
        return 2
    job_id = os.environ.get("SLURM_JOB_ID", "local")
    task = os.environ.get("SLURM_ARRAY_TASK_ID")
    overrides = dict(config["overrides"])
    if config.get("sweep") is not None:
        if task is None:
            log("error: this run is a sweep but SLURM_ARRAY_TASK_ID is not set")
            return 2
        overrides.update(config["sweep"][int(task)])
        overrides["output.path"] = f"{config['output'].rstrip('/')}/{task_group(int(task))}"
    launcher = config.get("launcher", {})
    provenance = {"slurm_job_id": os.environ.get("SLURM_ARRAY_JOB_ID") or job_id,
                  "slurm_restart": int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0),
                  "slurm_nodes": os.environ.get("SLURM_JOB_NODELIST"),
                  "hpcjobs_run": run.run_id}
    if task is not None:
        provenance["slurm_array_task_id"] = int(task)

    def driver(client) -> int:
        from hpcjobs.jobspec import load_job
        from hpcjobs.runner import run_job

        job = load_job(run.job_file, overrides=overrides)
        stop = threading.Event()
        started = time.perf_counter()
        with StopWatcher(run.path / "stop" / job_id, stop):
            summary = run_job(job, client=client, mode=mode, stop=stop,
                              extra_provenance=provenance,
                              log=lambda msg: log(msg, rank=1))
        log(f"wrote {summary.output} ({len(summary.steps)} step(s)) in "
            f"{time.perf_counter() - started:.1f} s", rank=1)
        return 0

    def on_error(exc: BaseException) -> int:
        if isinstance(exc, Interrupted):
            log(f"stopped: {exc}; finished chunks are kept and the next start resumes", rank=1)
        elif isinstance(exc, HpcjobsError):
            log(f"error: {exc}", rank=1)
        else:
            log(f"error: {type(exc).__name__}: {exc}", rank=1)
        return getattr(exc, "exit_code", 1) if isinstance(exc, HpcjobsError) else 1

    if comm is None:
        comm = batch_world()  # MPI is not finalized: a dead worker rank must not hang us
    code = launch(driver, comm=comm, dashboard_address=launcher.get("dashboard"),
                  interface=launcher.get("interface"),
                  startup_timeout=float(launcher.get("startup_timeout", STARTUP_TIMEOUT)),
                  cluster_path=cluster_file(run.path, job_id), job_id=job_id,
                  on_error=on_error)
    if comm.Get_rank() == 1 or (comm.Get_size() < 3 and comm.Get_rank() == 0):
        exit_dir = run.path / "exit"
        exit_dir.mkdir(exist_ok=True)
        (exit_dir / job_id).write_text(f"{code}\n")
        if recorded_exit:
            return 0
    return code
