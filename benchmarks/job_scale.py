"""A whole job at the size hpcjobs exists for: input bigger than the workers' memory.

``hpcjobs bench job-scale`` (sizes: ``--list``; by default 8 GB of each kind; ``--quick``:
0.05 GB) writes an input of N GB of float64 rows x 8 columns with ``hpcjobs ingest``
(whatever codec and layout hpcjobs writes today; cached, see :func:`dataset`) in two kinds:
``walk`` (random walks in N(0, 0.01) steps rounded to 1e-3, like sensor readings) and
``random`` (uniform floats, the worst case for a codec). On one LocalCluster of 2 worker
processes x 1 thread (Numba threads from ``hpcjobs.runtime.local.plan_cluster``), each with a
memory limit of N / 8 (the data is 4x the workers' memory; at least ``MIN_LIMIT``), the
same run times, side by side:

- ``decode``: one bare pass of hpcjobs' read path (``zarrio.open_input_array``): every chunk
  read and decoded, only its first row kept: the physical limit, the baseline;
- ``decode-zarr``: the same through ``dask.array.from_zarr`` (what the peers read with);
- ``hpcjobs``: the job file of :func:`job_text` (describe, aggregate2d, kmeans) through
  ``hpcjobs.runner.run_job`` on that cluster; its samples are the runner's whole-job seconds
  and its record holds each step's (``measured.steps``); ``hpcjobs-describe`` and
  ``hpcjobs-aggregate2d``: a job of that step alone (the targets for each step's own time:
  in the whole job the two share one pass);
- ``dask-sum``, ``dask-stats`` (mean, std, min, max in one ``dask.compute``),
  ``dask-histogram2d`` (columns 0 and 1, 1024 bins, the range from a min/max pass first),
  ``datashader`` (``Canvas(1024, 1024).points`` count over ``dd.from_dask_array``).

For every call and every job step: wall time, passes over the input (chunk-read tasks run /
chunks of one pass: :class:`ReadCounter`), the bytes the workers read from files (``rchar``)
as passes of the stored bytes (a check on the task count), GB/s (uncompressed bytes / time),
peak RSS of each worker (:class:`MemorySampler`) against its memory limit, and the time as
a multiple of the decode pass. ``benchmarks/README.md`` has the targets and the columns.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from hpcjobs.bench.harness import decode_pass
from hpcjobs.bench.spec import Benchmark, Impl, Sample

COLUMNS = 8
CHUNK_ROWS = 1_000_000
KINDS = ("walk", "random")
WORKERS = 2
#: the data is this many times the workers' memory limits together
DATA_PER_MEMORY = 4
#: a worker's memory limit is never below this (N / 8 at 8 GB): one with the kernels loaded
#: holds about 300 MB before any data here; at 256 MiB its nanny killed it at start, and at
#: 512 MiB in a decode pass of 64 MB chunks (it paused at 80%, was killed at 95%)
MIN_LIMIT = 10**9
#: bump when the data made for a size changes (cached data is then written again)
GENERATOR = 1
SEED = 20_260_518

#: key-name prefixes of tasks that read input chunks: hpcjobs' reader (``read-zarr-``; it
#: was ``from-zarr-``), dask's from_zarr getter. Add a reader's prefix here.
READ_PREFIXES = ("read-zarr", "from-zarr")
#: a task that depends on a key with one of these prefixes reads a chunk: dask's
#: ``from_array``/``from_zarr`` keep the array object under ``original-array-...`` /
#: ``original-from-zarr-...``, and every task that reads a chunk of it depends on it, even
#: where dask fused the read into a later task (``sum``, ``take``, a dataframe partition)
SOURCE_PREFIXES = ("original-",)

_STEPS = {
    "describe": """
[[step]]
kernel = "describe"
input = "X"
params = { bins = 64 }
""",
    "aggregate2d": """
[[step]]
kernel = "aggregate2d"
input = { x = "X[:, 0]", y = "X[:, 1]" }
params = { shape = [1024, 1024], agg = "count" }
""",
    "kmeans": """
[[step]]
kernel = "kmeans"
input = "X"
params = { n_clusters = 8, init = "random", max_iter = 5, tol = 0.0, seed = 0 }
""",
}


def job_text(input_path: str, output_path: str, steps=tuple(_STEPS)) -> str:
    """The job file of the benchmark: ``steps`` (all three by default) over ``input_path``."""
    head = (f'name = "job-scale"\ndescription = "hpcjobs bench job-scale"\n\n'
            f"[input]\npath = {input_path}\n")
    return head + "".join(_STEPS[s] for s in steps) + f"\n[output]\npath = {output_path}\n"


def _sizes(gbs, chunk_rows: int = CHUNK_ROWS) -> list[dict]:
    return [{"gb": gb, "kind": kind, "chunk_rows": chunk_rows} for gb in gbs for kind in KINDS]


SIZES = _sizes((0.5, 2, 8, 32))
QUICK_SIZES = _sizes((0.05,), chunk_rows=100_000)


def rows_of(size: dict) -> int:
    return int(round(size["gb"] * 1e9 / (8 * COLUMNS)))


def memory_limit(raw_bytes: int, workers: int = WORKERS) -> int:
    """Each worker's memory limit: the data is ``DATA_PER_MEMORY`` x all of them, at least
    ``MIN_LIMIT``; ``$HPCJOBS_BENCH_MEMORY_LIMIT`` (bytes, or e.g. ``1GiB``) instead."""
    env = os.environ.get("HPCJOBS_BENCH_MEMORY_LIMIT")
    if env:
        from dask.utils import parse_bytes

        return int(parse_bytes(env))
    return max(MIN_LIMIT, int(raw_bytes // (DATA_PER_MEMORY * workers)))


# --------------------------------------------------------------------------- the data


def data_root() -> Path:
    """``$HPCJOBS_BENCH_DATA``, else ``$XDG_CACHE_HOME/hpcjobs/bench-data`` (``~/.cache``)."""
    env = os.environ.get("HPCJOBS_BENCH_DATA")
    if env:
        return Path(env)
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "hpcjobs" / "bench-data"


@dataclass
class Dataset:
    """One size's input: the Zarr group ``group`` with the array ``X``."""

    group: Path
    kind: str
    rows: int
    chunk_rows: int
    raw_bytes: int
    stored_bytes: int
    written_s: float | None
    reused: bool
    name: str = "X"

    @property
    def array_path(self) -> Path:
        return self.group / self.name

    @property
    def info(self) -> dict:
        return {"path": str(self.group), "kind": self.kind, "rows": self.rows,
                "columns": COLUMNS, "chunk_rows": self.chunk_rows,
                "chunks": -(-self.rows // self.chunk_rows), "raw_bytes": self.raw_bytes,
                "stored_bytes": self.stored_bytes,
                "ratio": self.raw_bytes / self.stored_bytes if self.stored_bytes else None,
                "written_s": self.written_s, "reused": self.reused}


def _blocks(kind: str, rows: int, block_rows: int):
    """The data of ``kind`` as row blocks (the same for the same arguments)."""
    last = np.full(COLUMNS, 20.0)
    for b, start in enumerate(range(0, rows, block_rows)):
        n = min(block_rows, rows - start)
        rng = np.random.default_rng([SEED, KINDS.index(kind), b])
        if kind == "walk":
            walk = last + np.cumsum(rng.normal(0.0, 0.01, size=(n, COLUMNS)), axis=0)
            last = walk[-1].copy()
            yield np.round(walk, 3)
        else:
            yield rng.random((n, COLUMNS))


def _writer_settings() -> dict:
    """What hpcjobs writes an input with today: the metadata ``hpcjobs ingest`` gives a tiny
    array, and its layout constants (cached data written otherwise is written again)."""
    from hpcjobs import ingest as ingest_module
    from hpcjobs._version import __version__

    with tempfile.TemporaryDirectory(prefix="hpcjobs-job-scale-probe-") as tmp:
        np.save(Path(tmp) / "x.npy", np.zeros((16, COLUMNS)))
        ingest_module.ingest(Path(tmp) / "x.npy", Path(tmp) / "x.zarr", name="X", chunks=8)
        meta = json.loads((Path(tmp) / "x.zarr" / "X" / "zarr.json").read_text())
    meta = {k: meta.get(k) for k in ("codecs", "chunk_key_encoding", "fill_value")}
    return {"generator": GENERATOR, "hpcjobs": __version__, "meta": meta,
            "layout": {k: getattr(ingest_module, k, None)
                       for k in ("SHARD_BYTES", "CHUNK_BYTES")}}


def _stored_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def dataset(size: dict, rng=None, root: Path | None = None, log=print) -> Dataset:
    """The input for ``size``, written once: kept under :func:`data_root` with a manifest
    and reused while the manifest matches (size, kind, seed, what hpcjobs writes with).

    Written block by block: the rows go to a temporary ``.npy`` (a memory map, flushed as
    it fills), which ``hpcjobs.ingest.ingest`` reads chunk by chunk, then it is removed."""
    import fcntl

    rows, chunk_rows = rows_of(size), int(size["chunk_rows"])
    settings = _writer_settings()
    spec = {"kind": size["kind"], "rows": rows, "columns": COLUMNS, "chunk_rows": chunk_rows,
            "seed": SEED, "writer": settings}
    key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]
    stem = f"job-scale-{size['kind']}-{rows}x{COLUMNS}-c{chunk_rows}"
    root = Path(root or data_root())
    root.mkdir(parents=True, exist_ok=True)
    group, manifest = root / f"{stem}-{key}.zarr", root / f"{stem}-{key}.json"
    with open(root / f"{stem}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one writer; others wait, then reuse
        found = json.loads(manifest.read_text()) if manifest.is_file() else None
        if found and found.get("spec") == spec and (group / "X" / "zarr.json").is_file():
            return Dataset(group, size["kind"], rows, chunk_rows, rows * COLUMNS * 8,
                           found["stored_bytes"], found["written_s"], reused=True)
        for old in root.glob(f"{stem}-*"):  # the same data written otherwise: out of date
            shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink()
        from hpcjobs.ingest import ingest

        log(f"job-scale: writing {rows:,} x {COLUMNS} {size['kind']} rows to {group} ...")
        t0 = time.perf_counter()
        npy = root / f"{stem}-{key}.tmp.npy"
        try:
            out = np.lib.format.open_memmap(npy, mode="w+", dtype="<f8", shape=(rows, COLUMNS))
            pos = 0
            for block in _blocks(size["kind"], rows, chunk_rows):
                out[pos:pos + len(block)] = block
                pos += len(block)
                out.flush()
            del out
            ingest(npy, group, name="X", chunks=chunk_rows, overwrite=True)
        finally:
            npy.unlink(missing_ok=True)
        written = time.perf_counter() - t0
        stored = _stored_bytes(group)
        manifest.write_text(json.dumps({"spec": spec, "stored_bytes": stored,
                                        "written_s": written, "created": time.strftime(
                                            "%Y-%m-%dT%H:%M:%S%z")}, indent=1))
        return Dataset(group, size["kind"], rows, chunk_rows, rows * COLUMNS * 8, stored,
                       written, reused=False)


def _make(size, rng):
    import click

    return dataset(size, rng, log=lambda m: click.echo(m, err=True))


# --------------------------------------------------------------------------- counting reads


def read_rule(key, dependencies=()) -> str | None:
    """Why the task ``key`` (with the keys it depends on) reads an input chunk: the prefix
    of :data:`READ_PREFIXES` its name starts with, or ``"<source prefix>*"`` where it
    depends on a key of :data:`SOURCE_PREFIXES`; None when it reads none."""
    name = str(key[0] if isinstance(key, tuple) else key)
    for prefix in READ_PREFIXES:
        if name.startswith(prefix):
            return prefix
    if name.startswith(SOURCE_PREFIXES):
        return None  # the array object itself
    for dep in dependencies:
        dep = str(dep[0] if isinstance(dep, tuple) else dep)
        for prefix in SOURCE_PREFIXES:
            if dep.startswith(prefix):
                return prefix + "*"
    return None


try:
    from distributed.diagnostics.plugin import SchedulerPlugin
except ImportError:  # pragma: no cover - distributed is a dependency
    SchedulerPlugin = object


class ReadCounter(SchedulerPlugin):
    """On the scheduler: the time and :func:`read_rule` of every chunk-read task that ran
    (went from processing to memory)."""

    name = "hpcjobs-bench-reads"

    def __init__(self):
        self.events: list[tuple[float, str]] = []
        self.scheduler = None

    async def start(self, scheduler):
        self.scheduler = scheduler

    def transition(self, key, start, finish, *args, **kwargs):
        if start != "processing" or finish != "memory":
            return
        ts = self.scheduler.tasks.get(key) if self.scheduler is not None else None
        deps = [d.key for d in ts.dependencies] if ts is not None else ()
        rule = read_rule(key, deps)
        if rule is not None:
            self.events.append((time.time(), rule))


def _read_events(start: int = 0, dask_scheduler=None) -> list:
    return dask_scheduler.plugins[ReadCounter.name].events[start:]


# --------------------------------------------------------------------------- worker memory


def _proc(pid: int, reset: bool) -> tuple[int | None, int | None, bool]:
    """``(peak RSS since the last reset, or the RSS, in bytes; rchar; reset done)``."""
    peak = rss = rchar = None
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    peak = int(line.split()[1]) * 1024
                elif line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) * 1024
        with contextlib.suppress(OSError), open(f"/proc/{pid}/io") as fh:
            for line in fh:
                if line.startswith("rchar:"):
                    rchar = int(line.split()[1])
    except FileNotFoundError:
        return None, None, reset
    except OSError:  # no /proc: psutil's RSS
        import psutil

        try:
            return psutil.Process(pid).memory_info().rss, None, False
        except psutil.Error:
            return None, None, False
    if reset:
        try:  # Linux >= 4.0: "5" resets the peak (VmHWM) to the current RSS, nothing else
            with open(f"/proc/{pid}/clear_refs", "w") as fh:
                fh.write("5")
        except OSError:
            reset = False
    return (peak if reset else rss), rchar, reset


class MemorySampler:
    """A thread that reads each worker process's peak RSS (and bytes read, ``rchar``) every
    ``interval`` s. Where the kernel lets it reset the peak (``/proc/PID/clear_refs``), a
    sample is the true peak since the one before (``method="peak"``); else the RSS at that
    moment (``"sampled"``: a spike between samples is missed). A worker process that goes
    (its nanny restarted it) is replaced by the new one and counted in ``restarts``."""

    def __init__(self, pids: list[int], interval: float = 0.02):
        self.pids = list(pids)
        self.interval = interval
        self.reset = True
        self.samples: list[tuple[float, int, int, int | None]] = []
        self.gone: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="job-scale-rss", daemon=True)

    @property
    def method(self) -> str:
        return "peak" if self.reset else "sampled"

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _run(self):
        while not self._stop.wait(self.interval):
            t = time.time()
            for pid in list(self.pids):
                peak, rchar, self.reset = _proc(pid, self.reset)
                if peak is None:
                    self.pids.remove(pid)
                    self.gone.append((t, pid))
                    self._adopt()
                else:
                    self.samples.append((t, pid, peak, rchar))

    def _adopt(self):
        """Worker processes started since (children of this process's nannies)."""
        import psutil

        seen = {p for _, p, _, _ in self.samples} | {p for _, p in self.gone}
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process().children(recursive=True):
                if child.pid not in seen and "spawn_main" in " ".join(child.cmdline()):
                    self.pids.append(child.pid)

    def wait_past(self, t: float) -> None:
        """Until a sample later than ``t`` is in (at most a few intervals)."""
        deadline = time.time() + 10 * self.interval + 1.0
        while time.time() < deadline and not (self.samples and self.samples[-1][0] > t):
            time.sleep(self.interval / 2)


@dataclass
class Monitor:
    """What the cluster did between two moments: reads, bytes read, peak RSS."""

    client: object
    sampler: MemorySampler
    limit: int
    stored_bytes: int
    events: list = field(default_factory=list)

    def window(self, t0: float, t1: float, blocks: int) -> dict:
        """Passes (read tasks / ``blocks``, the read tasks of one pass) and the rest between
        ``t0`` and ``t1`` (``time.time()``)."""
        self.sampler.wait_past(t1)
        self.events.extend(self.client.run_on_scheduler(_read_events, start=len(self.events)))
        by_rule: dict[str, int] = {}
        for t, rule in self.events:
            if t0 <= t <= t1:
                by_rule[rule] = by_rule.get(rule, 0) + 1
        tasks = sum(by_rule.values())
        end = t1 + 1.5 * self.sampler.interval  # the sample after t1 covers up to t1
        peaks: dict[int, int] = {}
        before: dict[int, int] = {}
        after: dict[int, int] = {}
        for t, pid, peak, rchar in self.sampler.samples:
            if t <= t0:
                if rchar is not None:
                    before[pid] = rchar
            elif t <= end:
                peaks[pid] = max(peaks.get(pid, 0), peak)
                if rchar is not None:
                    after[pid] = rchar
                    before.setdefault(pid, rchar)  # a worker started within the window
        read = sum(after[p] - before[p] for p in after) if after else None
        return {
            "read_tasks": tasks,
            "read_tasks_by_rule": by_rule,
            "blocks_per_pass": blocks,
            "passes": tasks / blocks if blocks else None,
            "bytes_read": read,
            "read_passes": read / self.stored_bytes if read is not None and
            self.stored_bytes else None,
            "peak_rss_bytes": max(peaks.values()) if peaks else None,
            "peak_rss_per_worker": [peaks[p] for p in sorted(peaks)],
            "memory_limit_bytes": self.limit,
            "rss_method": self.sampler.method,
            "worker_restarts": sum(1 for t, _ in self.sampler.gone if t0 <= t <= end),
        }


# --------------------------------------------------------------------------- one cluster


@dataclass
class Run:
    """What every implementation of one size receives: the data, the cluster, the monitor."""

    data: Dataset
    client: object
    monitor: Monitor
    plan: object
    scratch: Path
    #: each worker's RSS when the cluster had started, before any work
    idle_rss: list = field(default_factory=list)
    #: seconds the job's untimed warm-up took (``_warm_job``)
    job_warmup_s: float | None = None

    def fields(self) -> dict:
        p = self.plan
        return {"input": self.data.info,
                "cluster": {"workers": p.workers, "threads_per_worker": p.threads_per_worker,
                            "numba_threads": p.numba_threads,
                            "memory_limit_bytes": self.monitor.limit,
                            "idle_rss_bytes": self.idle_rss}}

    def timed(self, blocks: int, work, *args) -> Sample:
        """``work(*args)`` timed, with what the cluster did meanwhile."""
        t0, p0 = time.time(), time.perf_counter()
        work(*args)
        seconds, t1 = time.perf_counter() - p0, time.time()
        win = self.monitor.window(t0, t1, blocks)
        return Sample(seconds, {**self.fields(), "seconds": seconds,
                                "gb_per_s": self.data.raw_bytes / seconds / 1e9, **win})


@contextlib.contextmanager
def on_cluster(data: Dataset, size: dict):
    """``Benchmark.setup``: one LocalCluster (2 workers x 1 thread, Numba threads as
    ``hpcjobs run`` plans them) that every implementation of this size runs on."""
    from distributed import Client

    from hpcjobs.runtime.local import plan_cluster, start_local_cluster

    limit = memory_limit(data.raw_bytes)
    plan = plan_cluster({"workers": WORKERS, "threads_per_worker": 1, "memory_limit": limit,
                         "dashboard_address": None})
    scratch = Path(tempfile.mkdtemp(prefix="hpcjobs-job-scale-"))
    try:
        with start_local_cluster(plan) as cluster, Client(cluster) as client:
            client.register_plugin(ReadCounter(), name=ReadCounter.name)
            pids = list(client.run(os.getpid).values())
            idle = [_proc(pid, reset=False)[0] for pid in pids]
            with MemorySampler(pids) as sampler:
                yield Run(data, client, Monitor(client, sampler, limit, data.stored_bytes),
                          plan, scratch, idle_rss=idle)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


# --------------------------------------------------------------------------- implementations


def _ours_array(run: Run):
    from hpcjobs.zarrio import open_input_array

    return open_input_array(run.data.group, run.data.name)


def _zarr_array(run: Run):
    import dask.array as da
    import zarr

    return da.from_zarr(zarr.open_array(str(run.data.array_path), mode="r"))


def _sum(X):
    return X.sum().compute()


def _stats(X):
    import dask

    return dask.compute(X.mean(0), X.std(0), X.min(0), X.max(0))


def _histogram2d(X):
    import dask
    import dask.array as da

    x, y = X[:, 0], X[:, 1]
    xlo, xhi, ylo, yhi = dask.compute(x.min(), x.max(), y.min(), y.max())
    h, _, _ = da.histogram2d(x, y, bins=1024, range=[[xlo, xhi], [ylo, yhi]])
    return h.compute()


def _datashader(X):
    import dask.dataframe as dd
    import datashader as ds

    df = dd.from_dask_array(X, columns=[f"c{i}" for i in range(X.shape[1])])
    return ds.Canvas(plot_width=1024, plot_height=1024).points(df, "c0", "c1", agg=ds.count())


def _peer(array, work):
    """An implementation running ``work`` on the input through ``array(run)``."""
    def fn(run: Run) -> Sample:
        X = array(run)
        return run.timed(X.numblocks[0], work, X)
    return fn


def _warm(array, work, whole: bool = False):
    """``prepare``: ``work`` once, untimed, on the first few chunks (imports, Numba's
    compilations in the workers) or the whole input (``whole``: the page cache too)."""
    def prepare(run: Run, size: dict) -> Run:
        X = array(run)
        if not whole:
            X = X[:min(X.shape[0], 4 * run.data.chunk_rows)]
        work(X)
        return run
    return prepare


def _warm_datashader(run: Run, size: dict) -> Run:
    """datashader's functions compile in each worker: tasks of a small frame on all."""
    import dask.array as da

    small = np.random.default_rng(0).random((16 * 2000, COLUMNS))
    _datashader(da.from_array(small, chunks=(2000, COLUMNS)))
    return run


_STEP_LINE = re.compile(r"^steps? (?P<names>.+?): (?P<rest>.*)$")


def step_windows(steps: list[tuple[str, float]], logs: list[tuple[float, str]]) -> dict:
    """Each step's ``(start, end, shared_with)`` in ``time.time()`` from the runner's log
    (``logs``: ``(time, line)``): a step ends at its ``step NAME: done`` line (steps
    that share a pass: ``steps A + B: done``) and lasted the runner's seconds for it
    (``steps``: ``(name, seconds)``); steps of one pass get the pass's window. A step whose
    lines are not found has none."""
    wanted = {name for name, _ in steps}
    seconds = dict(steps)
    ends: dict[str, float] = {}
    starts: dict[str, float] = {}
    groups: dict[str, list[str]] = {}
    for t, line in logs:
        m = _STEP_LINE.match(line.strip())
        if not m:
            continue
        names = [n.strip() for n in m["names"].split(" + ") if n.strip() in wanted]
        if not names:
            continue
        for n in names:
            groups.setdefault(n, names)
            if m["rest"].startswith("done"):
                ends.setdefault(n, t)
            else:
                starts.setdefault(n, t)
    out = {}
    for name, _ in steps:
        group = groups.get(name, [name])
        end = ends.get(name)
        if end is None and name in starts:
            end = starts[name] + seconds[name]
        if end is None:
            continue
        start = end - max(seconds.get(g, 0.0) for g in group)
        out[name] = (start, end, [g for g in group if g != name])
    return out


def _job_file(run: Run, folder: Path, steps=tuple(_STEPS)) -> Path:
    job_file = folder / "job.toml"
    job_file.write_text(job_text(json.dumps(str(run.data.group)),
                                 json.dumps(str(folder / "result.zarr")), steps))
    return job_file


def _warm_job(run: Run, size: dict, steps=tuple(_STEPS)) -> Run:
    """``prepare``: the job's kernels compiled for this machine now (the runner's warm-up,
    which the timed run then finds done), as the harness keeps compile time out of timings."""
    from hpcjobs.jobspec import load_job
    from hpcjobs.warmup import plan_job, warm

    folder = Path(tempfile.mkdtemp(prefix="warm-", dir=run.scratch))
    t0 = time.perf_counter()
    with run.client.as_current():
        warm(run.client, plan_job(load_job(_job_file(run, folder, steps))))
    run.job_warmup_s = time.perf_counter() - t0
    shutil.rmtree(folder, ignore_errors=True)
    return run


def _job(run: Run, steps=tuple(_STEPS)) -> Sample:
    """The job of :func:`job_text` (or of its ``steps`` alone) on ``run``'s cluster; its seconds
    are the runner's."""
    from hpcjobs.jobspec import load_job
    from hpcjobs.runner import run_job

    folder = Path(tempfile.mkdtemp(prefix="job-", dir=run.scratch))
    try:
        job = load_job(_job_file(run, folder, steps))
        logs: list[tuple[float, str]] = []
        blocks = _ours_array(run).numblocks[0]
        t0 = time.time()
        summary = run_job(job, client=run.client, mode="overwrite",
                          log=lambda line: logs.append((time.time(), line)))
        t1 = time.time()
        windows = step_windows([(s.name, s.seconds) for s in summary.steps], logs)
        steps = []
        for s in summary.steps:
            rec = {"step": s.name, "kernel": s.kernel, "seconds": s.seconds,
                   "gb_per_s": run.data.raw_bytes / s.seconds / 1e9 if s.seconds else None,
                   "shared_with": [], "window": None}
            if s.name in windows:
                start, end, shared = windows[s.name]
                rec.update(shared_with=shared, window=[start - t0, end - t0],
                           **run.monitor.window(start, end, blocks))
            steps.append(rec)
        first = min((w[0] for w in windows.values()), default=None)
        whole = run.monitor.window(t0, t1, blocks)
        return Sample(summary.seconds, {
            **run.fields(), "seconds": summary.seconds,
            "gb_per_s": run.data.raw_bytes / summary.seconds / 1e9, **whole,
            "before_steps_s": first - t0 if first is not None else None,
            "compile_untimed_s": run.job_warmup_s,
            "steps": steps, "log": [[round(t - t0, 3), line] for t, line in logs]})
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# --------------------------------------------------------------------------- across impls


#: steps also timed as a job of their own: their "x decode" targets are for each alone
ALONE = ("describe", "aggregate2d")

#: targets (benchmarks/README.md): name -> the most it may be
TARGETS = {"describe x decode": 1.2, "aggregate2d x decode": 1.2,
           "describe + aggregate2d passes": 1.0, "kmeans x decode per pass": 1.1,
           "job x decode": 8.0, "peak RSS / limit": 1.0}


def finish(records: list[dict]) -> None:
    """``Benchmark.finish``: every time as a multiple of the decode pass's (``x_decode``;
    steps also per pass they made), and the job's targets."""
    ok = {r["impl"]: r for r in records if r["status"] == "ok"}
    base = ok.get("decode")
    if base is None or not base["median_s"]:
        return
    yardsticks = {"x_decode": base["median_s"]}
    zarr = ok.get("decode-zarr")
    if zarr is not None and zarr["median_s"]:
        yardsticks["x_decode_zarr"] = zarr["median_s"]
    for r in ok.values():
        m = r["measured"]
        for key, decode in yardsticks.items():
            m[key] = r["median_s"] / decode
            for st in m.get("steps", []):
                st[key] = st["seconds"] / decode if st["seconds"] else None
                st[f"{key}_per_pass"] = (st[key] / st["passes"]
                                         if st.get("passes") and st[key] else None)
    job = ok.get("hpcjobs")
    if job is not None:
        alone = {k: ok[f"hpcjobs-{k}"]["measured"] for k in ALONE if f"hpcjobs-{k}" in ok}
        job["measured"]["targets"] = targets(job["measured"], alone)
        if "x_decode_zarr" in yardsticks:
            job["measured"]["targets_zarr"] = targets(job["measured"], alone, "x_decode_zarr")


def targets(m: dict, alone: dict | None = None, yardstick: str = "x_decode") -> list[dict]:
    """Each target of :data:`TARGETS` with the job's value (None: not measured); a step's
    own "x decode" target comes from its job alone (``alone``: kernel -> that job's
    measurements) where it ran, else from the whole job (where it may share its pass).

    ``yardstick``: the decode pass the times are multiples of: ``"x_decode"``, hpcjobs' own
    read path (the physical limit), or ``"x_decode_zarr"``, a ``dask.array.from_zarr`` pass
    over the same data (the yardstick of the issue that set the targets: a dask.array decode
    pass)."""
    steps = {s["kernel"]: {**s, "x_decode": s.get(yardstick),
                           "x_decode_per_pass": s.get(f"{yardstick}_per_pass")}
             for s in m.get("steps", [])}
    for kernel, measured in (alone or {}).items():
        own = [s for s in measured.get("steps", []) if s["kernel"] == kernel]
        if own and own[0].get(yardstick) is not None:
            steps = {**steps, kernel: {**steps.get(kernel, {}), "x_decode": own[0][yardstick]}}

    def get(kernel, key):
        return steps.get(kernel, {}).get(key)

    together = None
    d, a = steps.get("describe"), steps.get("aggregate2d")
    if d and a and d.get("passes") is not None and a.get("passes") is not None:
        # one window when they share a pass, else the reads of both
        together = d["passes"] if a["step"] in d["shared_with"] else d["passes"] + a["passes"]
    peaks = [s.get("peak_rss_bytes") for s in [m, *steps.values()]]
    peak = max((p for p in peaks if p is not None), default=None)
    values = {"describe x decode": get("describe", "x_decode"),
              "aggregate2d x decode": get("aggregate2d", "x_decode"),
              "describe + aggregate2d passes": together,
              "kmeans x decode per pass": get("kmeans", "x_decode_per_pass"),
              "job x decode": m.get(yardstick),
              "peak RSS / limit": peak / m["memory_limit_bytes"] if peak is not None and
              m.get("memory_limit_bytes") else None}
    return [{"target": name, "value": values[name], "at_most": limit,
             "met": None if values[name] is None else values[name] <= limit + 1e-9}
            for name, limit in TARGETS.items()]


# --------------------------------------------------------------------------- the table

#: the table's rows in this order (the job runs last: see ``BENCHMARKS``)
_ORDER = ("decode", "decode-zarr", "hpcjobs-describe", "hpcjobs-aggregate2d", "hpcjobs",
          "dask-sum", "dask-stats", "dask-histogram2d",
          "datashader")
_LABELS = {"decode": "decode pass (hpcjobs read)", "decode-zarr": "decode pass (da.from_zarr)",
           "dask-sum": "dask.array sum", "dask-stats": "dask.array mean+std+min+max",
           "dask-histogram2d": "da.histogram2d (range + histogram)",
           "datashader": "datashader points count"}


def _num(x, fmt="{:.2f}") -> str:
    return "-" if x is None else fmt.format(x)


def _row(label: str, m: dict) -> list[str]:
    peak, limit = m.get("peak_rss_bytes"), m.get("memory_limit_bytes")
    rss = "-" if peak is None else f"{peak / 2**20:.0f} / {limit / 2**20:.0f} MiB"
    if m.get("worker_restarts"):
        rss += f", {m['worker_restarts']} worker(s) restarted"
    x = _num(m.get("x_decode"))
    if m.get("x_decode_per_pass") is not None and m.get("kernel") == "kmeans":
        x += f" ({m['x_decode_per_pass']:.2f} per pass)"
    return [label, _num(m.get("seconds")), _num(m.get("passes")), _num(m.get("gb_per_s")), rss,
            x, _num(m.get("read_passes"))]


def report(records: list[dict]) -> str:
    """``Benchmark.report``: per size, the table of README's job-scale section."""
    out = []
    sizes = list(dict.fromkeys((r["size_index"], r["quick"]) for r in records))
    for index, quick in sizes:
        recs = [r for r in records if (r["size_index"], r["quick"]) == (index, quick)]
        recs.sort(key=lambda r: _ORDER.index(r["impl"]) if r["impl"] in _ORDER else len(_ORDER))
        info = next((r["measured"] for r in recs if r["measured"].get("input")), None)
        size = recs[0]["size"]
        if info is None:
            out.append(f"job-scale {size['kind']} {size['gb']} GB: nothing ran")
            continue
        i, c = info["input"], info["cluster"]
        idle = "/".join(f"{b / 2**20:.0f}" for b in c.get("idle_rss_bytes") or [] if b) or "?"
        out.append(
            f"job-scale {i['kind']} {size['gb']} GB: {i['rows']:,} rows x {i['columns']} "
            f"float64 in {i['chunks']} chunks of {i['chunk_rows']:,} rows; stored "
            f"{i['stored_bytes'] / 1e9:.2f} GB ({_num(i['ratio'])}x); {c['workers']} workers"
            f" x {c['threads_per_worker']} thread x {c['numba_threads']} Numba thread(s), "
            f"memory limit {c['memory_limit_bytes'] / 2**20:.0f} MiB each (the data is "
            f"{i['raw_bytes'] / (c['workers'] * c['memory_limit_bytes']):.1f}x their "
            f"memory), {idle} MiB held by each before any work")
        rows = [["step", "wall s", "passes", "GB/s", "peak RSS / limit", "x decode pass",
                 "read / stored"]]
        notes = []
        for r in recs:
            m = r["measured"]
            if r["status"] != "ok":
                rows.append([_LABELS.get(r["impl"], r["impl"]), r["status"],
                             (r["reason"] or "")[:50], "", "", "", ""])
                continue
            if r["impl"].startswith("hpcjobs-"):  # one step alone: its step's row
                for st in m.get("steps", []):
                    rows.append(_row(f"hpcjobs {st['step']} alone", {
                        **st, "memory_limit_bytes": m["memory_limit_bytes"]}))
                continue
            if r["impl"] != "hpcjobs":
                rows.append(_row(_LABELS.get(r["impl"], r["impl"]), m))
                continue
            for st in m.get("steps", []):
                label = f"hpcjobs {st['step']}" + ("*" if st["shared_with"] else "")
                if st["shared_with"]:
                    note = (f"* {' + '.join([st['step'], *st['shared_with']])}: one pass, "
                            "the same reads counted for each")
                    if note not in notes and not any(s in n for n in notes
                                                     for s in st["shared_with"]):
                        notes.append(note)
                rows.append(_row(label, {**st, "memory_limit_bytes":
                                         m["memory_limit_bytes"]}))
            before = m.get("before_steps_s")
            rows.append(_row("hpcjobs whole job" + (
                f" ({before:.1f} s before its steps)" if before is not None else ""), m))
            for key, of in (("targets", "hpcjobs read"), ("targets_zarr", "da.from_zarr")):
                for t in m.get(key, []):
                    status = {True: "met", False: "MISSED", None: "not measured"}[t["met"]]
                    notes.append(f"target {t['target']} <= {t['at_most']} (decode pass: {of}): "
                                 f"{_num(t['value'])} {status}")
        widths = [max(len(row[k]) for row in rows) for k in range(len(rows[0]))]
        for k, row in enumerate(rows):
            out.append("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True))
                       + " |")
            if k == 0:
                out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
        out.extend(notes)
        out.append("")
    return "\n".join(out).rstrip()


BENCHMARKS = [
    Benchmark(
        name="job-scale",
        kernel="job-scale",
        description="describe + aggregate2d + kmeans as one job over data 4x the workers' "
                    "memory, beside a decode pass, dask.array and datashader",
        sizes=SIZES,
        quick_sizes=QUICK_SIZES,
        default_sizes=tuple(i for i, s in enumerate(SIZES) if s["gb"] == 8),
        make_data=_make,
        items=lambda size: float(rows_of(size) * COLUMNS * 8),
        unit="B",
        repeats=1,
        warmup=False,
        setup=on_cluster,
        finish=finish,
        report=report,
        baseline="decode",
        impls=[
            Impl("decode", _peer(_ours_array, decode_pass), self_timed=True,
                 prepare=_warm(_ours_array, decode_pass, whole=True),
                 note="open_input_array, each chunk's first row kept (baseline); an untimed "
                      "pass first (page cache)"),
            Impl("decode-zarr", _peer(_zarr_array, decode_pass), self_timed=True, peer=True,
                 prepare=_warm(_zarr_array, decode_pass),
                 note="the same through dask.array.from_zarr"),
            Impl("dask-sum", _peer(_zarr_array, _sum), self_timed=True, peer=True,
                 prepare=_warm(_zarr_array, _sum), note="da.from_zarr(...).sum()"),
            Impl("dask-stats", _peer(_zarr_array, _stats), self_timed=True, peer=True,
                 prepare=_warm(_zarr_array, _stats),
                 note="mean, std, min, max in one dask.compute"),
            Impl("dask-histogram2d", _peer(_zarr_array, _histogram2d), self_timed=True, peer=True,
                 prepare=_warm(_zarr_array, _histogram2d),
                 note="columns 0, 1: a min/max pass, then 1024 x 1024 bins"),
            Impl("datashader", _peer(_zarr_array, _datashader), self_timed=True, peer=True,
                 prepare=_warm_datashader, requires=("datashader", "pandas"),
                 note="Canvas(1024, 1024).points(dd.from_dask_array(X), count)"),
            *[Impl(f"hpcjobs-{k}", partial(_job, steps=(k,)), self_timed=True,
                   prepare=partial(_warm_job, steps=(k,)),
                   note=f"run_job of the {k} step alone") for k in ALONE],
            # the jobs last: once a job's warm-up ran in a worker, Numba compiling a function
            # without a module there (datashader's generated code) fails in hpcjobs.warmup's
            # compile counter (``getattr(func, "__module__", "")`` is None)
            Impl("hpcjobs", _job, self_timed=True, prepare=_warm_job,
                 note="run_job: describe, aggregate2d, kmeans; the runner's seconds"),
        ],
    ),
]
