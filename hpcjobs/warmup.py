"""Compile a job's kernels once per machine, before its workers need them.

Numba compiles a kernel the first time a process calls it with new argument types, and caches
the machine code on disk. Without help, every worker of a job's first run meets the same
uncompiled functions at the same moment and compiles them side by side: a 2-core machine does
the work twice while the user sees a silent step. A *warm-up* runs each step of the job first
on a small slice of its real input (or, for a step that reads an earlier step's output, on the
output of that step's warm-up), as one small Dask task per step on the cluster's workers:

- steps that do not depend on each other warm up on different workers at once, and each
  kernel function is compiled by one process (the others wait for it on the cache's lock,
  ``hpcjobs.kernels._jit``), on the machines that run the job (a batch job's compute nodes,
  not the login node);
- the warm-up's inputs have the dtypes, widths and chunk sizes of the real ones and the step's
  own parameters, so the job's chunks find every signature in the cache;
- a stamp beside the cache records each warmed step (its kernel, the parameters that choose
  code paths, the input dtypes and widths) for the machine (CPU, Numba, kernel sources): a
  later run checks the stamps with one small task and warms nothing; the stamps go with the
  cache, so a cache removed takes its stamps along.

``hpcjobs warmup [KERNEL...]`` warms kernels on made-up data (each kernel's ``example`` in the
registry), for a site to run once after installing.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hpcjobs import registry

logger = logging.getLogger("hpcjobs.warmup")

#: the longest side a warm-up input keeps on its other axes (a raster's width, say)
_MAX_WIDTH = 1024
_CUT_WIDTH = 512
#: at most this many bytes in one warm-up input (wide rows get fewer of them)
_MAX_BYTES = 16 << 20


@dataclass(frozen=True)
class FromStep:
    """A warm-up input taken from an earlier warm-up's output ``name`` (sliced by ``index``)."""

    step: str
    name: str
    index: tuple | None = None


@dataclass(frozen=True)
class WarmStep:
    """One step to warm up: the kernel, its parameters, and small inputs.

    ``inputs`` maps each port to a NumPy array, a Dask array (sliced here to the warm-up's
    rows, read on the worker), a transactions dict, or a :class:`FromStep`. ``chunk_rows`` is
    the chunk length the warm-up gives its inputs (at least two chunks where the data allow,
    so the kernel's merges compile too).
    """

    name: str
    kernel: str
    params: dict
    inputs: dict
    chunk_rows: int
    signature: str = ""
    needs: tuple[str, ...] = field(default=())


@dataclass
class WarmReport:
    """What a warm-up did: steps warmed (and how many functions they compiled), and steps
    that were warm already."""

    warmed: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    compiled: int = 0
    seconds: float = 0.0


# ---------------------------------------------------------------------------------------------
# planning (in the driver)


def plan_job(job, done: Iterable[str] = ()) -> list[WarmStep]:
    """The warm-ups of ``job``'s steps, except those in ``done`` (complete from an earlier run)."""
    from hpcjobs.zarrio import open_input_array, open_transactions

    done = set(done)
    plan: list[WarmStep] = []
    for step in job.steps:
        if step.name in done:
            continue
        spec = registry.get(step.kernel)
        inputs, chunks = {}, []
        for port_name, ref in step.inputs.items():
            if spec.input(port_name).kind == "csr":
                inputs[port_name] = open_transactions(job.input_path, ref.name)
                chunks.append(spec.warm_rows)
            elif ref.step is not None and ref.step not in done:
                stand_in = _stand_in(plan, ref)
                if stand_in is None:
                    inputs[port_name] = FromStep(ref.step, ref.name, ref.index)
                else:
                    inputs[port_name], source_chunks = stand_in
                    chunks.append(source_chunks)
            else:
                path, name = ((job.output_path, f"{ref.step}/{ref.name}") if ref.step is not None
                              else (job.input_path, ref.name))
                x = open_input_array(path, name, ref.index)
                inputs[port_name] = _head(x, spec.warm_rows)
                if x.ndim:
                    chunks.append(int(x.chunks[0][0]))
        rows = min(chunks) if chunks else spec.warm_rows
        plan.append(_with_signature(WarmStep(step.name, step.kernel, dict(step.params), inputs,
                                             max(1, min(rows, math.ceil(spec.warm_rows / 2)))),
                                    plan))
    return plan


def plan_examples(kernels: Iterable[str] | None = None) -> list[WarmStep]:
    """Warm-ups of ``kernels`` (default: all) on made-up float64 data with their example
    parameters; a kernel that reads another one's outputs gets that one's warm-up first."""
    names = list(kernels) if kernels is not None else list(registry.all_kernels())
    wanted: list[str] = []
    for name in names:
        spec = registry.get(name)
        for needed in ([spec.example_from] if spec.example_from else []) + [name]:
            if needed not in wanted:
                wanted.append(needed)
    rng = np.random.default_rng(0)
    plan: list[WarmStep] = []
    for name in wanted:
        spec = registry.get(name)
        params = spec.validate_params(dict(spec.example))
        if spec.example_from:
            inputs = {p.name: FromStep(spec.example_from, p.name) for p in spec.inputs
                      if not p.optional}
        else:
            inputs = {p.name: _made_up(p, spec.warm_rows, rng) for p in spec.inputs
                      if not p.optional}
        plan.append(_with_signature(
            WarmStep(name, name, params, inputs, max(1, spec.warm_rows // 2)), plan))
    return plan


def _stand_in(plan: list[WarmStep], ref):
    """For an earlier step's output that has the shape of that step's input (``shape_of``):
    ``(that input in the output's dtype, its chunk rows)``, so that this warm-up need not
    wait for the other; else None."""
    source = next((s for s in plan if s.name == ref.step), None)
    if source is None or ref.index is not None:
        return None
    port = next((p for p in registry.get(source.kernel).outputs if p.name == ref.name), None)
    like = source.inputs.get(port.shape_of) if port is not None and port.shape_of else None
    if like is None or not hasattr(like, "__dask_graph__"):
        return None
    return like.astype(port.dtype), source.chunk_rows


def _head(x, rows: int):
    """The first ``rows`` rows of a Dask array (other long axes cut to a few hundred, and
    fewer rows where they are wide: at most ``_MAX_BYTES``)."""
    if x.ndim == 0:
        return x
    widths = [n if n <= _MAX_WIDTH else _CUT_WIDTH for n in x.shape[1:]]
    row_bytes = x.dtype.itemsize * math.prod(widths)
    rows = max(1, min(rows, _MAX_BYTES // max(1, row_bytes)))
    return x[(slice(0, rows),) + tuple(slice(0, w) for w in widths)]


def _made_up(port, rows: int, rng) -> object:
    if port.kind == "csr":
        lens = rng.integers(1, 8, rows)
        indptr = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
        items = rng.zipf(1.5, int(indptr[-1])).astype(np.int32) % 40
        return {"indptr": indptr, "items": items, "labels": None}
    if port.dims == ("y", "x"):
        return rng.random((rows, rows))
    if port.ndim == 2:
        return rng.standard_normal((rows, 4))
    if port.ndim == 1:
        return rng.standard_normal(rows).cumsum()
    return np.asarray(rows)


def _with_signature(step: WarmStep, earlier: list[WarmStep]) -> WarmStep:
    """``step`` with its signature: what decides which functions it compiles."""
    by_name = {s.name: s for s in earlier}
    needs = tuple(sorted({v.step for v in step.inputs.values() if isinstance(v, FromStep)}))
    parts: dict = {"kernel": step.kernel, "params": _code_path_params(step),
                   "inputs": {k: _describe_input(v, by_name) for k, v in step.inputs.items()}}
    blob = json.dumps(parts, sort_keys=True, default=str)
    return WarmStep(step.name, step.kernel, step.params, step.inputs, step.chunk_rows,
                    signature=blob, needs=needs)


def _code_path_params(step: WarmStep) -> dict:
    """Parameters that choose code paths (strings, flags) as they are; the others only by
    type (a number of clusters or bins compiles nothing new; None against a value may)."""
    return {k: v if isinstance(v, str | bool) else type(v).__name__
            for k, v in sorted(step.params.items())}


def _describe_input(value, earlier: dict[str, WarmStep]):
    if isinstance(value, FromStep):
        # an earlier step's output: its dtype and shape follow from that step's signature
        source = earlier.get(value.step)
        return ["from", value.step, value.name, str(value.index),
                source.signature if source else None]
    if isinstance(value, dict):
        return {k: _describe_input(v, earlier) for k, v in value.items()}
    if value is None:
        return None
    shape = getattr(value, "shape", ())
    return [str(getattr(value, "dtype", type(value).__name__)), list(shape[1:])]


# ---------------------------------------------------------------------------------------------
# running (tasks on the workers, progress in the driver)


def warm(client, plan: list[WarmStep], *, log: Callable[[str], None] | None = None,
         progress: bool = False, force: bool = False, stop=None) -> WarmReport:
    """Warm up ``plan`` on ``client``'s workers; steps already warm there are skipped.
    ``stop`` (a ``threading.Event``) cancels what is left when set.

    Prints ``compiling kernels for this machine (first run only): k/n`` as steps finish (a
    bar on a terminal with ``progress``, one line per step otherwise). A warm-up that fails is
    reported in ``WarmReport.failed`` and left to the real run (which compiles as it goes and
    raises the real error, if there is one).
    """
    log = log or (lambda msg: None)
    report = WarmReport()
    if not plan:
        return report
    t0 = time.perf_counter()
    cold = set(range(len(plan))) if force else set(
        client.submit(missing_stamps, [s.signature for s in plan], pure=False).result())
    report.already = [s.name for i, s in enumerate(plan) if i not in cold]
    if not cold:
        return report
    # steps that feed a cold one warm up too (they load from the cache: fast)
    by_name = {s.name: i for i, s in enumerate(plan)}
    run = set(cold)
    for i in reversed(range(len(plan))):  # needs name earlier steps: one pass back suffices
        if i in run:
            run.update(by_name[n] for n in plan[i].needs if n in by_name)
    kernels = sorted({plan[i].kernel for i in cold})
    log(f"{_COMPILING}: {', '.join(kernels)}")
    futures: dict[int, object] = {}
    # submitted in that order: idle workers take the tasks as they arrive
    for i in _submission_order(plan, sorted(run)):
        step = plan[i]
        deps = {n: futures[by_name[n]] for n in step.needs if by_name.get(n) in futures}
        futures[i] = client.submit(warm_step, step, deps, i in cold,
                                   key=f"hpcjobs-warmup-{i}-{step.name}-{os.getpid()}-"
                                       f"{time.monotonic_ns()}")
    total, finished = len(cold), 0
    seen: set[int] = set()
    bar = progress and sys.stderr.isatty()
    try:
        while len(seen) < len(futures) and not (stop is not None and stop.is_set()):
            for i, fut in futures.items():
                if i in seen or not fut.done():
                    continue
                seen.add(i)
                name = plan[i].name
                try:
                    result = fut.result()
                except Exception as exc:  # noqa: BLE001 - left to the real run
                    result = {"error": f"{type(exc).__name__}: {exc}", "compiled": 0}
                if result.get("error"):
                    report.failed[name] = result["error"].splitlines()[0]
                    logger.info("warm-up of step %s failed: %s", name, result["error"])
                elif i in cold:
                    report.warmed.append(name)
                    report.compiled += result["compiled"]
                if i in cold:
                    finished += 1
                    _show(finished, total, name, result, bar, log)
            time.sleep(0.05)
    finally:
        client.cancel([f for f in futures.values() if not f.done()])
        if bar:
            sys.stderr.write("\n")
    report.seconds = time.perf_counter() - t0
    if stop is not None and stop.is_set():
        log(f"warm-up stopped after {report.seconds:.1f} s")
        return report
    log(f"compiled {report.compiled} kernel functions in {report.seconds:.1f} s; later runs "
        "load them from the cache")
    return report


def _submission_order(plan: list[WarmStep], run: list[int]) -> list[int]:
    """The steps in ``run``, one of each kernel family before a second one of any, each after
    the steps it needs. Kernels of one family share compiled functions (standardize uses
    describe's): two workers that start on them at once mostly wait for each other on the
    cache's lock (quickstart from a cold cache: warm-up 13.5 -> 10 s)."""
    rounds: dict[str, int] = {}
    ranked = []
    for i in run:
        family = registry.get(plan[i].kernel).family
        ranked.append((rounds.get(family, 0), i))
        rounds[family] = rounds.get(family, 0) + 1
    pending = [i for _, i in sorted(ranked)]
    names = {plan[i].name: i for i in run}
    order: list[int] = []
    while pending:
        ready = next(i for i in pending
                     if all(names[n] in order for n in plan[i].needs if n in names))
        order.append(ready)
        pending.remove(ready)
    return order


_COMPILING = "compiling kernels for this machine (first run only)"


def _show(k: int, total: int, name: str, result: dict, bar: bool, log) -> None:
    if bar:
        from hpcjobs.runner import draw_bar

        draw_bar(_COMPILING, k, total, f" {name:<24}")
        return
    what = "failed, left to the run" if result.get("error") else \
        f"{result['compiled']} functions, {result['seconds']:.1f} s"
    log(f"  {_COMPILING}: {k}/{total} {name} ({what})")


def missing_stamps(signatures: list[str]) -> list[int]:
    """On a worker: the positions of the signatures this machine has not warmed up yet."""
    folder = stamp_folder()
    return [i for i, sig in enumerate(signatures) if not (folder / _stamp_name(sig)).is_file()]


def warm_step(step: WarmStep, deps: dict[str, dict], stamp: bool) -> dict:
    """On a worker: run ``step``'s kernel on its small inputs (Dask's synchronous scheduler,
    so the chunk functions run here), count what Numba compiled, stamp it, and return the
    outputs for the steps that read them."""
    import dask

    counter = _compile_counter()
    before = counter.count
    t0 = time.perf_counter()
    try:
        with dask.config.set(scheduler="sync"):
            inputs = {k: _materialise(v, deps, step.chunk_rows) for k, v in step.inputs.items()}
            outputs, _ = registry.get(step.kernel).adapter()(inputs, dict(step.params))
            keys = list(outputs)
            values = dask.compute(*outputs.values())
    except Exception as exc:  # noqa: BLE001 - reported, never raised: the run decides
        return {"error": f"{type(exc).__name__}: {exc}", "compiled": counter.count - before}
    seconds = time.perf_counter() - t0
    compiled = counter.count - before
    if stamp:
        _write_stamp(step, compiled, seconds)
    return {"outputs": dict(zip(keys, values, strict=True)), "compiled": compiled,
            "seconds": seconds}


def _materialise(value, deps: dict[str, dict], chunk_rows: int):
    """A warm-up input as the adapter gets it: Dask arrays of ``chunk_rows``-row chunks."""
    import dask.array as da

    if isinstance(value, FromStep):
        out = deps[value.step]
        if out.get("error"):
            raise RuntimeError(f"the warm-up of step {value.step} failed")
        array = np.asarray(out["outputs"][value.name])
        value = array[value.index] if value.index is not None else array
    if isinstance(value, dict):  # transactions: the first chunk_rows * 2 of them
        indptr = np.asarray(value["indptr"][:2 * chunk_rows + 1])
        items = np.asarray(value["items"][int(indptr[0]):int(indptr[-1])])
        indptr = indptr - indptr[0]
        return {"indptr": da.from_array(indptr, chunks=chunk_rows + 1),
                "items": da.from_array(items, chunks=-1), "labels": value.get("labels")}
    if hasattr(value, "__dask_graph__"):
        value = value.compute()
    value = np.asarray(value)
    if value.ndim == 0:
        return da.from_array(value)
    return da.from_array(value, chunks=(max(1, min(chunk_rows, math.ceil(len(value) / 2))),)
                         + value.shape[1:])


# ---------------------------------------------------------------------------------------------
# stamps and the machine


def stamp_folder() -> Path:
    """Where this machine's warm-up stamps live: inside the kernels' Numba cache."""
    from hpcjobs.kernels._jit import cache_location

    return Path(cache_location().folder) / "hpcjobs-warm" / machine_key()


def _stamp_name(signature: str) -> str:
    return hashlib.sha256(signature.encode()).hexdigest()[:24] + ".json"


def _write_stamp(step: WarmStep, compiled: int, seconds: float) -> None:
    import socket

    folder = stamp_folder()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / _stamp_name(step.signature)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"step": step.name, "kernel": step.kernel,
                                   "signature": json.loads(step.signature),
                                   "compiled": compiled, "seconds": round(seconds, 3),
                                   "host": socket.gethostname(), "cpu": machine()["cpu"],
                                   "at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, indent=1))
        os.replace(tmp, path)
    except OSError as exc:  # a read-only cache: the next run warms up again
        logger.info("cannot write the warm-up stamp in %s: %s", folder, exc)


def machine() -> dict:
    """What Numba's compiled code depends on here: CPU, its features, Numba and Python."""
    import llvmlite.binding as ll
    import numba

    return {"cpu": numba.config.CPU_NAME or ll.get_host_cpu_name(),
            "features": numba.config.CPU_FEATURES or ll.get_host_cpu_features().flatten(),
            "numba": numba.__version__, "python": sys.version.split()[0]}


@functools.cache
def machine_key() -> str:
    """A short key of :func:`machine` and of the kernels' and adapters' source files."""
    import hpcjobs.kernels

    roots = [Path(hpcjobs.kernels.__file__).parent, Path(registry.__file__).parent]
    files = sorted(p for root in roots for p in root.rglob("*.py"))
    sources = [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    here = machine()
    blob = json.dumps([here, sources], sort_keys=True)
    return f"{here['cpu']}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}"


class _Counter:
    count = 0


@functools.cache
def _compile_counter() -> _Counter:
    """This process's count of compilations of hpcjobs' kernel functions (Numba's own
    helpers that a compile types along are not counted; nor are loads from the cache)."""
    from numba.core import event

    counter = _Counter()

    class Listener(event.Listener):
        def on_start(self, ev):
            func = getattr(ev.data.get("dispatcher"), "py_func", None)
            # generated code (datashader's) may have no module at all
            if (getattr(func, "__module__", None) or "").startswith("hpcjobs"):
                counter.count += 1

        def on_end(self, ev):
            pass

    event.register("numba:compile", Listener())
    return counter


def warm_status(job_file: str | os.PathLike | None = None) -> tuple[str, int, int]:
    """``(cpu, warm, steps)`` on this machine: its CPU's name, and how many of ``job_file``'s
    steps are compiled for it (``hpcjobs doctor`` asks this on the compute nodes)."""
    cpu = machine()["cpu"]
    if job_file is None:
        return cpu, 0, 0
    from hpcjobs.jobspec import load_job

    plan = plan_job(load_job(job_file))
    return cpu, len(plan) - len(missing_stamps([s.signature for s in plan])), len(plan)
