"""Benchmarks as a Slurm job over N nodes: the library behind ``hpcjobs bench --submit``.

``submit_bench`` checks the benchmark selection here (unknown kernels, size indices, worker
counts fail before anything is submitted), makes a run folder and hands a batch script to
``sbatch`` in which one task per node runs :func:`node_run` (``python -m hpcjobs bench-node
RUN``) and the batch shell then runs :func:`merge_run` (``python -m hpcjobs bench merge RUN``):
one JSON lines file with every node's records, each tagged with its node and the job id.
Status, logs and cancel work on the run folder as on any submitted run.

With ``workers`` (a scaling run) the job is one Dask cluster over the nodes instead: its ranks
(a scheduler, a driver and ``max(workers)`` one-thread workers, round robin over the nodes)
run :func:`cluster_run` (``python -m hpcjobs bench-cluster RUN``, Dask over MPI as in a batch
job), whose driver times the cluster implementations at each worker count, largest first,
retiring workers between counts (:mod:`hpcjobs.bench.cluster`), and writes one
``nodes/<its node>.jsonl``; the merge then works as above.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from hpcjobs.errors import RunFailed, UserError
from hpcjobs.slurm.client import SlurmClient
from hpcjobs.slurm.runs import Run, new_run, runs_root, write_script
from hpcjobs.slurm.script import (
    BENCH_FIXED,
    SlurmOptions,
    local_python,
    render_bench_script,
    resolve_options,
)

KIND = "bench"
#: options of a benchmark job; the others (ranks per node, requeue, walltime signal) do not
#: apply: one task per node, never requeued. The Dask launcher's (mpi, interface, dashboard,
#: startup_timeout) serve a scaling run on one cluster over the nodes (--workers)
BENCH_KEYS = ("partition", "account", "qos", "nodes", "cpus_per_task", "mem", "time", "gres",
              "constraint", "extra", "setup", "python", "job_name", "mpi", "interface",
              "dashboard", "startup_timeout")


@dataclass
class BenchSubmission:
    script: str
    options: SlurmOptions
    merged: Path
    run: Run | None = None
    job_id: str | None = None


@dataclass(frozen=True)
class BenchRequest:
    """What every node runs: the arguments of ``hpcjobs bench`` that select and size the run."""

    kernels: tuple[str, ...] = ()
    quick: bool = False
    repeats: int | None = None
    sizes: list[int] | None = None
    workers: list[int] | None = None
    weak: bool = False
    probe: bool = True

    def as_dict(self) -> dict:
        return {"kernels": list(self.kernels), "quick": self.quick, "repeats": self.repeats,
                "sizes": self.sizes, "workers": self.workers, "weak": self.weak,
                "probe": self.probe}


def bench_options(slurm: dict | None = None, *, exclusive: bool = True,
                  workers: list[int] | None = None) -> SlurmOptions:
    """The job's Slurm options: the site profile's (those that apply) < ``slurm``; one task
    per node, no requeue; ``exclusive``: whole nodes (``--exclusive``), as a benchmark wants.
    ``workers`` (a scaling run on one cluster over the nodes): room for its ranks instead,
    :func:`cluster_ranks` of them, as many on each node as the fullest one needs."""
    from hpcjobs.siteconfig import profile_label, profile_table

    site = {k: v for k, v in profile_table("slurm").items() if k.replace("-", "_") in BENCH_KEYS}
    opts = resolve_options(None, slurm, site=site, site_where=profile_label("slurm"),
                           min_tasks=1, what="a node")
    opts = replace(opts, **BENCH_FIXED)
    if workers:
        ranks = cluster_ranks(workers)
        if "cpus_per_task" in opts._keys:
            raise UserError("--cpus-per-task does not go with --workers: each worker of the "
                            "cluster is one rank with one thread (and one Numba thread)")
        if ranks < opts.nodes:
            raise UserError(f"--nodes {opts.nodes}: a cluster of {ranks} ranks (scheduler, "
                            f"driver, {max(workers)} worker(s)) leaves a node empty; ask for "
                            f"at most {ranks} nodes or more workers")
        opts = replace(opts, ntasks_per_node=-(-ranks // opts.nodes))
    if exclusive and "--exclusive" not in opts.extra:
        opts = replace(opts, extra=(*opts.extra, "--exclusive"))
    return opts


def cluster_ranks(workers: list[int]) -> int:
    """Ranks of a scaling run's cluster: the scheduler, the driver and the most workers."""
    return 2 + max(workers)


def check_room(opts: SlurmOptions, workers: list[int], client: SlurmClient) -> None:
    """Refuse, before submitting, a cluster whose ranks (one core each) do not fit on
    ``opts.nodes`` nodes of the partition (the smallest node's CPUs, from ``sinfo``). Where
    ``sinfo`` does not answer, sbatch judges alone."""
    from hpcjobs.errors import HpcjobsError

    try:
        text = client.sinfo()
    except HpcjobsError:
        return
    rows = [line.split("|") for line in text.splitlines() if line.count("|") >= 4]
    cpus = [int(r[4].rstrip("+")) for r in rows if r[4].rstrip("+").isdigit() and (
        r[0].rstrip("*") == opts.partition if opts.partition else r[0].endswith("*"))]
    if cpus and opts.ntasks_per_node > min(cpus):
        ranks = cluster_ranks(workers)
        raise UserError(f"--workers {max(workers)}: {ranks} ranks (scheduler, driver, workers) "
                        f"need {opts.ntasks_per_node} cores on each of {opts.nodes} node(s), "
                        f"but the partition's nodes have {min(cpus)}; ask for fewer workers "
                        "or more nodes")


def _job_name(kernels: tuple[str, ...]) -> str:
    from hpcjobs.jobspec import _NAME_RE

    name = "-".join(("bench", *kernels))
    return name if len(name) <= 40 and _NAME_RE.match(name) else "bench"


def submit_bench(request: BenchRequest, *, slurm: dict | None = None, exclusive: bool = True,
                 merged: str | os.PathLike | None = None, dry_run: bool = False,
                 client: SlurmClient | None = None, root: str | os.PathLike | None = None,
                 python: str | None = None) -> BenchSubmission:
    """Submit ``request`` as a benchmark job over ``slurm["nodes"]`` nodes (or, with
    ``dry_run``, only render its script). ``merged``: where the merged JSON lines go
    (default ``bench-<time>.jsonl`` here, as a local run's); it must be visible from the node
    that runs the batch shell.

    Examples
    --------
    >>> sub = submit_bench(BenchRequest(("describe",), quick=True), slurm={"nodes": 2})
    ... # doctest: +SKIP
    >>> sub.job_id, sub.merged                                  # doctest: +SKIP
    ('57', PosixPath('/home/me/bench-20261207-041502.jsonl'))
    """
    from hpcjobs._version import __version__
    from hpcjobs.bench import harness

    opts = bench_options(slurm, exclusive=exclusive, workers=request.workers)
    directory = harness.benchmarks_dir().absolute()
    harness.check_selection(request.kernels, quick=request.quick, sizes=request.sizes,
                            workers=request.workers, directory=directory)
    merged = harness.check_writable(
        Path(merged or time.strftime("bench-%Y%m%d-%H%M%S.jsonl")).absolute())
    python = python or local_python()
    name = _job_name(request.kernels)
    ranks = cluster_ranks(request.workers) if request.workers else None
    if dry_run:
        planned = runs_root(root, create=False) / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
        return BenchSubmission(render_bench_script(opts, job_name=name, run_dir=planned,
                                                   python=python, hpcjobs_version=__version__,
                                                   ranks=ranks),
                               opts, merged)
    client = client or SlurmClient()
    if request.workers:
        check_room(opts, request.workers, client)
    run = new_run(name, root)
    (run.path / "nodes").mkdir(mode=0o700)
    script = render_bench_script(opts, job_name=name, run_dir=run.path, python=python,
                                 hpcjobs_version=__version__, ranks=ranks)
    # "writers": how many node files a finished job leaves (one: a cluster's driver)
    run.write_config({"kind": KIND, "job_name": name, "request": request.as_dict(),
                      "benchmarks": str(directory), "merged": str(merged),
                      "nodes": opts.nodes, "writers": 1 if ranks else opts.nodes,
                      "launcher": {"dashboard": opts.dashboard, "interface": opts.interface,
                                   "startup_timeout": opts.startup_timeout}})
    write_script(run.script, script)
    run.update_state(run_id=run.run_id, kind=KIND, job_name=name, output=str(merged),
                     nodes=opts.nodes, slurm_conf=os.environ.get("SLURM_CONF"),
                     created=time.strftime("%Y-%m-%dT%H:%M:%S%z"), job_id=None)
    from hpcjobs.slurm.submit import hand_to_sbatch

    return BenchSubmission(script, opts, merged, run, hand_to_sbatch(run, client))


def bench_run(ref: str | os.PathLike) -> Run:
    """The benchmark run named by ``ref`` (a run id, its folder or a Slurm job id)."""
    from hpcjobs.slurm.runs import find_run

    run = find_run(str(ref))
    if run.state.get("kind") != KIND:
        raise UserError(f"run {run.run_id} is not a benchmark job (hpcjobs bench --submit)")
    return run


# -- inside the allocation ----------------------------------------------------------------------


def node_run(run_dir: str | os.PathLike, *, env: dict | None = None,
             echo: Callable[[str], None] = print,
             log: Callable[[str], None] | None = None) -> int:
    """Run the benchmarks of ``run_dir`` on this node (one Slurm task per node); write
    ``nodes/<node>.jsonl`` size by size. Returns the exit code: 0, 1 (a benchmark failed) or
    2 (the run folder cannot be read)."""
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    run = Run(Path(run_dir).absolute())
    config = run.config_on_node(log)
    if config is None:
        return 2
    return _run_and_write(run, config, env=env, echo=echo, log=log)


def _run_and_write(run: Run, config: dict, *, env: dict | None, echo: Callable[[str], None],
                   log: Callable[[str], None], cluster=None) -> int:
    """Run the request of ``config`` (on ``cluster``, a :class:`harness.GivenCluster`, if
    given), writing ``nodes/<this node>.jsonl`` size by size; the exit code: 0 or 1."""
    from hpcjobs.bench import harness
    from hpcjobs.bench.nodes import node_file, slurm_tag, tag_records

    tag = slurm_tag(env, run.run_id)
    path = node_file(run.path / "nodes", tag["node"])
    request = config["request"]
    state = {"append": False}

    def save(records: list[dict]) -> None:
        tag_records(records, tag)
        harness.write_jsonl(records, path, append=state["append"])
        state["append"] = True

    records, problems = harness.run(
        request["kernels"], quick=request["quick"], repeats=request["repeats"],
        sizes=request["sizes"], directory=config["benchmarks"], log=log, on_size=save,
        probe=request["probe"], workers=request["workers"], weak=request["weak"],
        cluster=cluster)
    echo(harness.format_table(records))
    echo(harness.format_summary(records, problems))
    echo(f"node {tag['node']}: {len(records)} record(s) in {path}")
    return 1 if any(r["status"] == "error" for r in records) else 0


def cluster_run(run_dir: str | os.PathLike, *, comm=None, env: dict | None = None,
                echo: Callable[[str], None] = print) -> int:
    """Every rank of a scaling job over the nodes: Dask over MPI (:func:`launch`) with one
    thread per worker; the driver (rank 1) runs the request of ``run_dir`` on that cluster,
    retiring workers down to each count. Returns this rank's exit code (the driver's: 0, 1
    when a benchmark failed, 2 when the run folder cannot be read)."""
    from hpcjobs.bench.cluster import RetiringCluster
    from hpcjobs.runtime.mpi import STARTUP_TIMEOUT, batch_world, cluster_file, launch, log

    run = Run(Path(run_dir).absolute())
    config = run.config_on_node(log)
    if config is None:
        return 2
    launcher = config.get("launcher", {})
    job_id = (env or os.environ).get("SLURM_JOB_ID", "local")

    def driver(client) -> int:
        def say(msg: str) -> None:
            log(msg, rank=1)

        return _run_and_write(run, config, env=env, echo=echo, log=say,
                              cluster=RetiringCluster(client, threads=1))

    return launch(driver, comm=comm if comm is not None else batch_world(), nthreads=1,
                  dashboard_address=launcher.get("dashboard"),
                  interface=launcher.get("interface"),
                  startup_timeout=float(launcher.get("startup_timeout", STARTUP_TIMEOUT)),
                  cluster_path=cluster_file(run.path, job_id), job_id=job_id)


def merge_run(run: Run, out: str | os.PathLike | None = None) -> tuple[Path, list[dict]]:
    """Merge the node files of ``run`` into ``out`` (default: the file named at submission);
    return the path and the records. Written whole to a temporary file, then renamed: a
    reader never sees half of it, and merging again gives the same file."""
    from hpcjobs.bench import harness
    from hpcjobs.bench.nodes import merge_files

    config = run.config
    files = sorted((run.path / "nodes").glob("*.jsonl"))
    records = merge_files(files)
    if not records:
        raise RunFailed(f"run {run.run_id}: no node wrote results yet "
                        f"({run.path / 'nodes'} is empty; see hpcjobs logs {run.run_id})")
    path = Path(out or config["merged"])
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    harness.write_jsonl(records, tmp)
    os.replace(tmp, path)
    run.update_state(merged=str(path), merged_nodes=len(files))
    return path, records


def wait_for_end(run: Run, client: SlurmClient, *, interval: float = 2.0,
                 timeout: float | None = None):
    """Poll the run's state until the job has ended; return its final status."""
    from hpcjobs.slurm.status import LIVE_STATES, run_status

    started = time.monotonic()
    while True:
        st = run_status(run, client)
        if st.state not in LIVE_STATES:
            return st
        if timeout is not None and time.monotonic() - started > timeout:
            raise RunFailed(f"job {st.job_id} still {st.summary()} after {timeout:.0f} s "
                            f"(it goes on: hpcjobs status {run.run_id})")
        time.sleep(interval)
