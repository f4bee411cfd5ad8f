"""Run a job: each step's kernel as a Dask graph, its outputs written to Zarr.

Steps run in order; a step reads its inputs from the input group or from the Zarr outputs of
earlier steps (so a chain of steps resumes step by step). Chunked (Dask) outputs are written
block by block with a marker per block; on resume only missing blocks are computed. Small
outputs are written whole when the step ends. The root's ``status`` turns ``complete`` last.

Consecutive steps whose kernels are reductions (describe, aggregate2d) and that do not read
each other's outputs run as one pass over what they read (``hpcjobs.passes``): one graph,
each input chunk read once, the data's ranges from per-chunk statistics.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import json
import os
import platform
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hpcjobs import chunkstats, registry
from hpcjobs._version import __version__
from hpcjobs.errors import HpcjobsError, Interrupted, RunFailed, UserError
from hpcjobs.jobspec import JobSpec, StepSpec
from hpcjobs.kernels._validation import InvalidInput
from hpcjobs.zarrio import (
    STATUS_COMPLETE,
    OutputGroup,
    now,
    open_input_array,
    open_transactions,
    regular_chunks,
    store_block,
)

MODES = ("new", "resume", "overwrite")


@dataclass
class StepReport:
    name: str
    kernel: str
    seconds: float = 0.0
    skipped: bool = False
    chunks_written: int = 0
    chunks_reused: int = 0


@dataclass
class RunSummary:
    output: Path
    status: str
    seconds: float = 0.0
    steps: list[StepReport] = field(default_factory=list)
    dashboard: str | None = None


def job_fingerprint(job: JobSpec) -> str:
    """What makes two runs' outputs interchangeable: input, steps, kernels, inputs, params."""
    desc = {"input": str(job.input_path.resolve()),
            "steps": [[s.name, s.kernel, {k: r.text for k, r in s.inputs.items()}, s.params]
                      for s in job.steps]}
    blob = json.dumps(desc, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def run_job(job: JobSpec, *, client=None, mode: str = "new", progress: bool = False,
            stop: threading.Event | None = None, report: str | os.PathLike | None = None,
            extra_provenance: dict | None = None, cluster: dict | None = None,
            log: Callable[[str], None] | None = None, warmup: bool = True) -> RunSummary:
    """Run ``job`` and write its result group.

    Parameters
    ----------
    job : JobSpec
        A validated job (``hpcjobs.jobspec.load_job``).
    client : distributed.Client, optional
        Where to compute; by default a temporary local cluster sized by ``cluster`` (the
        job's ``[cluster]`` table updated with these overrides).
    mode : {"new", "resume", "overwrite"}
        An existing output is refused ("new"), finished ("resume": only missing chunks and
        steps are computed) or replaced ("overwrite").
    progress : bool
        Draw a progress bar on stderr for chunked outputs.
    stop : threading.Event, optional
        When set, pending chunks are cancelled, finished ones kept, and ``Interrupted`` raised.
    report : path, optional
        Save Dask's HTML performance report there.
    extra_provenance : dict, optional
        More root attributes (e.g. the Slurm job id).
    warmup : bool
        First compile the kernels of the steps still to run, once, on the workers, where
        this machine has not yet (``hpcjobs.warmup``): a no-op once the cache is warm.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    log = log or (lambda msg: None)
    started = time.perf_counter()
    out = OutputGroup(job.output_path)
    created = out.prepare(mode, job_fingerprint(job))
    summary = RunSummary(output=job.output_path, status="running")
    if not created and out.is_complete():
        log(f"{job.output_path} is already complete; nothing to do")
        summary.status = STATUS_COMPLETE
        return summary
    try:
        _write_provenance(out, job, created, extra_provenance)
        with _compute_context(client, job, cluster) as (active, dashboard):
            summary.dashboard = dashboard
            if dashboard:
                log(f"dashboard: {dashboard}")
            if warmup:
                _warm_up(job, out, active, progress, stop, log)
            with _report_context(report):
                done = {s.name for s in job.steps if out.step_complete(s.name)}
                for group in _step_groups(job, done):
                    if len(group) == 1 and (group[0].name in done or
                                            registry.get(group[0].kernel).plan is None):
                        summary.steps.append(
                            _run_step(job, group[0], out, active, progress, stop, log))
                    else:
                        summary.steps.extend(
                            _run_shared_pass(job, group, out, active, progress, stop, log))
        out.update_attrs(status=STATUS_COMPLETE, finished=now(),
                         runs=_close_run(out, STATUS_COMPLETE))
    except Interrupted:
        out.update_attrs(status="interrupted", runs=_close_run(out, "interrupted"))
        raise
    except InvalidInput as exc:  # a kernel refused the data: bad input
        _fail(out, created, "failed")
        raise UserError(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from exc
    except HpcjobsError:
        _fail(out, created, "failed")
        raise
    except KeyboardInterrupt:
        out.update_attrs(status="interrupted", runs=_close_run(out, "interrupted"))
        raise
    except Exception as exc:
        _fail(out, False, "failed")
        raise RunFailed(f"job {job.name} failed: {type(exc).__name__}: {exc} (finished chunks "
                        "are kept; rerun with --resume)") from exc
    summary.status = STATUS_COMPLETE
    summary.seconds = time.perf_counter() - started
    return summary


def _fail(out: OutputGroup, created: bool, status: str) -> None:
    """A fresh output of a run that failed on bad input is removed; otherwise marked failed."""
    if created:
        out.remove()
        return
    with contextlib.suppress(Exception):
        out.update_attrs(status=status, runs=_close_run(out, status))


# ---------------------------------------------------------------------------------------------
# compute context


@contextlib.contextmanager
def _compute_context(client, job: JobSpec, cluster_overrides: dict | None):
    if client is not None:
        with client.as_current():
            yield client, client.dashboard_link
        return
    from distributed import Client

    from hpcjobs.runtime.local import plan_cluster, start_local_cluster

    plan = plan_cluster({**job.cluster, **(cluster_overrides or {})})
    with start_local_cluster(plan) as cluster, Client(cluster) as own:
        yield own, own.dashboard_link


def _warm_up(job: JobSpec, out: OutputGroup, client, progress: bool, stop, log) -> None:
    """Fill Numba's cache for the steps still to run before their chunks need it. Never
    fails the run: a step whose warm-up fails compiles as it runs, and raises there; a
    cluster whose workers cannot warm up (no hpcjobs there) runs the steps as they are."""
    from hpcjobs.warmup import plan_job, warm

    try:
        plan = plan_job(job, done=[s.name for s in job.steps if out.step_complete(s.name)])
        warm(client, plan, log=log, progress=progress, stop=stop)
    except Exception as exc:  # noqa: BLE001 - the steps themselves will say what is wrong
        log(f"no warm-up ({type(exc).__name__}: {exc}); the steps compile as they run")


@contextlib.contextmanager
def _report_context(report):
    if report is None:
        yield
        return
    from distributed import performance_report

    Path(report).parent.mkdir(parents=True, exist_ok=True)
    with performance_report(filename=str(report)):
        yield


# ---------------------------------------------------------------------------------------------
# steps


def _resolve_inputs(job: JobSpec, step: StepSpec, spec) -> dict:
    inputs = {}
    for port_name, ref in step.inputs.items():
        port = spec.input(port_name)
        if port.kind == "csr":
            inputs[port_name] = open_transactions(job.input_path, ref.name)
        elif ref.step is not None:
            inputs[port_name] = open_input_array(job.output_path, f"{ref.step}/{ref.name}",
                                                 ref.index)
        else:
            inputs[port_name] = open_input_array(job.input_path, ref.name, ref.index)
    return inputs


def _port_for(spec, key: str):
    """The output port for ``key`` and its dims (pattern ports get the key's suffix)."""
    for port in spec.outputs:
        if port.name == key:
            return port, port.dims
    for port in spec.outputs:
        if port.name.endswith("*") and key.startswith(port.name[:-1]):
            suffix = key[len(port.name) - 1:]
            if port.keep_dims:
                return port, port.dims
            return port, tuple(f"{d}_{suffix}" for d in port.dims)
    raise RuntimeError(f"kernel {spec.name} returned {key!r}, which it does not declare")


def _step_groups(job: JobSpec, done: set[str]) -> list[list[StepSpec]]:
    """The steps in order, consecutive ones that can share a pass together: steps still to
    run (not in ``done``) whose kernels plan reductions (``KernelSpec.plan``) and that read
    no output of another step of their group."""
    groups: list[list[StepSpec]] = []
    current: list[StepSpec] = []
    for step in job.steps:
        shareable = registry.get(step.kernel).plan is not None and step.name not in done
        names = {s.name for s in current}
        if shareable and current and not any(r.step in names for r in step.inputs.values()):
            current.append(step)
            continue
        if current:
            groups.append(current)
        current = [step] if shareable else []
        if not shareable:
            groups.append([step])
    if current:
        groups.append(current)
    return groups


def _sources(job: JobSpec, step: StepSpec) -> dict:
    from hpcjobs.passes import Source

    out = {}
    for port, ref in step.inputs.items():
        if ref.step is not None:
            out[port] = Source(job.output_path / ref.step / ref.name, ref.index, False)
        else:
            out[port] = Source(job.input_path / ref.name, ref.index, True)
    return out


def _run_shared_pass(job: JobSpec, steps: list[StepSpec], out: OutputGroup, client, progress,
                     stop, log) -> list[StepReport]:
    """Run ``steps`` (see :func:`_step_groups`) as one pass over the inputs they share:
    their reductions in one graph, the data's ranges from per-chunk statistics."""
    from hpcjobs import passes
    from hpcjobs.kernels._reduction import to_delayed

    if stop is not None and stop.is_set():
        raise Interrupted(f"stopped before step {steps[0].name}")
    t0 = time.perf_counter()
    specs = {s.name: registry.get(s.kernel) for s in steps}
    inputs = {s.name: _resolve_inputs(job, s, specs[s.name]) for s in steps}
    sources = {s.name: _sources(job, s) for s in steps}
    wanted = [sources[s.name][p] for s in steps for p in specs[s.name].extents
              if p in sources[s.name] and s.params.get("range") is None]
    extents, missing = passes.load_extents(wanted)
    missing = [m for m in missing if passes.selects_columns(m)]
    if missing:  # a first pass for the statistics; later jobs read them
        names = ", ".join(sorted({m.path.name for m in missing}))
        log(f"no chunk statistics for {names} yet: one pass to gather them")
        _gather_stats(client, missing, extents, progress, stop, log)

    planned, plain = [], []
    for s in steps:
        ext = {p: extents.of(src) for p, src in sources[s.name].items()}
        plan = specs[s.name].planner()(inputs[s.name], dict(s.params), ext)
        (planned if plan is not None else plain).append((s, plan))
    reports = []
    if planned:
        names = " + ".join(s.name for s, _ in planned)
        log(f"step{'s' if len(planned) > 1 else ''} {names}: "
            f"{' + '.join(s.kernel for s, _ in planned)}, one pass ...")
        for s, _ in planned:
            _open_step(out, s)
        flat = [r for _, plan in planned for r in plan.reductions]
        # inputs read without statistics get them in this pass, for later jobs
        _, unknown = passes.load_extents(
            src for s, _ in planned for src in sources[s.name].values()
            if src.path not in extents.known and passes.selects_columns(src))
        unread = [open_input_array(u.path.parent, u.path.name) for u in unknown]
        results = _compute_chunks(
            client, to_delayed(flat + [passes.stats_reduction(a) for a in unread]), names,
            progress, stop, log, unit=" reductions")
        for src, array, per_block in zip(unknown, unread, results[len(flat):], strict=True):
            passes.keep_stats(src, array, per_block)
        seconds = time.perf_counter() - t0
        pos = 0
        for s, plan in planned:
            mine = results[pos:pos + len(plan.reductions)]
            pos += len(plan.reductions)
            report = StepReport(s.name, s.kernel, seconds=seconds)
            _write_outputs(out, s, specs[s.name], *plan.outputs(mine), report, client,
                           progress, stop, log, t0)
            reports.append(report)
        log(f"step{'s' if len(planned) > 1 else ''} {names}: done in {seconds:.2f} s "
            "(one pass)")
    for s, _ in plain:
        reports.append(_run_step(job, s, out, client, progress, stop, log))
    return [next(r for r in reports if r.name == s.name) for s in steps]


def _gather_stats(client, missing, extents, progress, stop, log) -> None:
    """One pass of chunk statistics over the arrays of ``missing`` sources: kept for later
    jobs (``passes.keep_stats``) and added to ``extents``."""
    from hpcjobs import passes
    from hpcjobs.kernels._reduction import to_delayed

    arrays = [open_input_array(m.path.parent, m.path.name) for m in missing]
    found = _compute_chunks(client, to_delayed([passes.stats_reduction(a) for a in arrays]),
                            "statistics", progress, stop, log, unit=" arrays")
    for src, array, per_block in zip(missing, arrays, found, strict=True):
        extents.known[src.path] = passes.keep_stats(src, array, per_block)


def _open_step(out: OutputGroup, step: StepSpec) -> None:
    group = out.step_group(step.name)
    group.attrs.update({"kernel": step.kernel, "params": _json_params(step.params),
                        "inputs": {k: r.text for k, r in step.inputs.items()},
                        "status": "running", "started": now()})


def _run_step(job: JobSpec, step: StepSpec, out: OutputGroup, client, progress, stop,
              log) -> StepReport:
    report = StepReport(step.name, step.kernel)
    if out.step_complete(step.name):
        log(f"step {step.name}: complete from an earlier run, skipped")
        report.skipped = True
        return report
    if stop is not None and stop.is_set():
        raise Interrupted(f"stopped before step {step.name}")
    spec = registry.get(step.kernel)
    t0 = time.perf_counter()
    log(f"step {step.name}: {step.kernel} ...")
    _open_step(out, step)
    outputs, attrs = spec.adapter()(_resolve_inputs(job, step, spec), dict(step.params))
    _write_outputs(out, step, spec, outputs, attrs, report, client, progress, stop, log, t0)
    reused = f", {report.chunks_reused} chunks reused" if report.chunks_reused else ""
    log(f"step {step.name}: done in {report.seconds:.2f} s{reused}")
    return report


def _write_outputs(out: OutputGroup, step: StepSpec, spec, results: dict, extra_attrs: dict,
                   report: StepReport, client, progress, stop, log, t0: float) -> None:
    """Write a step's outputs (Dask ones chunk by chunk, resumable) and its ``extra_attrs``,
    and mark it complete."""
    pending, whole, chunked = [], [], []
    for key, value in results.items():
        port, dims = _port_for(spec, key)
        if _is_chunked(value):
            x = regular_chunks(value)
            path, done = out.prepare_chunked(step.name, key, x, dims)
            chunked.append(path)
            writes = x.map_blocks(store_block, path=str(path), dtype=np.int8,
                                  chunks=tuple((1,) * len(c) for c in x.chunks))
            delayed = writes.to_delayed()
            for idx in np.ndindex(*delayed.shape):
                if ".".join(map(str, idx)) in done:
                    report.chunks_reused += 1
                else:
                    pending.append(delayed[idx])
        else:
            whole.append((key, value, dims))
    lazy = [i for i, (_, value, _) in enumerate(whole) if hasattr(value, "__dask_graph__")]
    if pending or lazy:  # small lazy outputs in the same graph: they may share its pass
        report.chunks_written = len(pending)
        values = _compute_chunks(client, pending + [whole[i][1] for i in lazy], step.name,
                                 progress, stop, log)
        for i, value in zip(lazy, values[len(pending):], strict=True):
            whole[i] = (whole[i][0], value, whole[i][2])
    for path in chunked:
        chunkstats.from_markers(path)
    for key, value, dims in whole:
        out.write_whole(step.name, key, value, dims)
    report.seconds = time.perf_counter() - t0
    out.step_group(step.name).attrs.update({**extra_attrs, "status": STATUS_COMPLETE,
                                            "finished": now(),
                                            "seconds": round(report.seconds, 3)})


def _is_chunked(value) -> bool:
    """A Dask array with at least one dimension (written chunk by chunk); not a Delayed,
    whose every attribute is another Delayed."""
    import dask.array as da

    return isinstance(value, da.Array) and value.ndim > 0


def _compute_chunks(client, pending: list, step: str, progress: bool, stop, log,
                    unit: str = " chunks") -> list:
    """Compute ``pending`` (Dask objects) on ``client``, with a progress bar and ``stop``;
    their results in order."""
    futures = client.compute(pending)
    total, last_drawn = len(futures), -1
    try:
        while True:
            done = sum(f.done() for f in futures)
            if progress and done != last_drawn:
                draw_bar(step, done, total, unit)
                last_drawn = done
            failed = next((f for f in futures if f.status == "error"), None)
            if failed is not None:
                failed.result()  # raises the task's exception
            if done == total:
                break
            if stop is not None and stop.is_set():
                client.cancel([f for f in futures if not f.done()])
                finished = sum(f.status == "finished" for f in futures)
                raise Interrupted(f"stopped during step {step}: {finished} of {total} chunks "
                                  "written and kept; rerun with --resume")
            time.sleep(0.1)
        if progress:
            sys.stderr.write("\n")
        return [f.result() for f in futures]
    finally:
        client.cancel([f for f in futures if not f.done()])


def draw_bar(label: str, done: int, total: int, note: str = "", width: int = 30) -> None:
    """Redraw ``  label: [####    ] done/total note`` in place on stderr."""
    filled = int(width * done / total) if total else width
    sys.stderr.write(f"\r  {label}: [{'#' * filled}{' ' * (width - filled)}] {done}/{total}{note}")
    sys.stderr.flush()


def _json_params(params: dict) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in params.items()}


# ---------------------------------------------------------------------------------------------
# provenance


def library_versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version(), "hpcjobs": __version__}
    for name in ("numpy", "numba", "dask", "distributed", "zarr", "click", "mpi4py"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def _input_shapes(job: JobSpec) -> dict:
    import zarr

    shapes = {}
    for step in job.steps:
        for ref in step.inputs.values():
            if ref.step is None:
                try:
                    node = zarr.open(str(job.input_path / ref.name), mode="r")
                    shapes[ref.name] = list(node.shape) if hasattr(node, "shape") else "group"
                except Exception:  # noqa: BLE001 - provenance must never fail a run
                    shapes[ref.name] = None
    return {str(job.input_path): shapes}


def _write_provenance(out: OutputGroup, job: JobSpec, created: bool, extra: dict | None):
    run = {"started": now(), "host": socket.gethostname(), "mode": "new" if created else "resume",
           "slurm_job_id": os.environ.get("SLURM_JOB_ID"), "status": "running"}
    runs = [] if created else list(out.attrs.get("runs", []))
    runs.append(run)
    attrs = {
        "status": "running",
        "job_name": job.name,
        "job": job.text,
        "job_file": str(job.file.resolve()) if job.file.name != "<job>" else None,
        "fingerprint": job_fingerprint(job),
        "steps": [s.name for s in job.steps],
        "inputs": _input_shapes(job),
        "hpcjobs_version": __version__,
        "versions": library_versions(),
        "host": socket.gethostname(),
        "user": _user(),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "runs": runs,
    }
    if created:
        attrs["started"] = run["started"]
    attrs.update(extra or {})
    out.update_attrs(**attrs)


def _close_run(out: OutputGroup, status: str) -> list:
    runs = list(out.attrs.get("runs", []))
    if runs:
        runs[-1] = {**runs[-1], "finished": now(), "status": status}
    return runs


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001
        return "unknown"
