"""``hpcjobs bench``: time kernels against NumPy and peer libraries, side by side."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from hpcjobs.cli._errors import wrap_errors
from hpcjobs.errors import RunFailed, UserError


def _int_list(text: str | None, hint: str, expected: str, low: int = 0) -> list[int] | None:
    """``"0,2"`` -> ``[0, 2]``; anything else (no number, one below ``low``) is a bad
    parameter saying what was ``expected``."""
    if text is None:
        return None
    try:
        out = [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        out = []
    if not out or min(out) < low:
        raise click.BadParameter(f"expected {expected}; got {text!r}", param_hint=hint)
    return out


def _client():
    from hpcjobs.slurm.client import SlurmClient

    return SlurmClient()


def _show(records: list[dict], plot: str | None) -> None:
    """The table, reports and summary of ``records`` (and their plot)."""
    from hpcjobs.bench import harness

    click.echo(harness.format_table(records))
    _echo_reports(harness.format_reports(records))
    click.echo(harness.format_summary(records))
    if plot:
        from hpcjobs.bench.plot import plot_records

        click.echo(f"plot: {plot_records(records, plot)}")


def _submit(request, slurm: dict, *, exclusive: bool, merged: str | None, wait: bool,
            dry_run: bool, plot: str | None) -> None:
    """``--submit``: the job over the nodes; with ``wait`` its merged results once it ends."""
    from hpcjobs.slurm import bench as slurm_bench

    client = None if dry_run else _client()
    sub = slurm_bench.submit_bench(request, slurm=slurm, exclusive=exclusive, merged=merged,
                                   dry_run=dry_run, client=client)
    if dry_run:
        click.echo(sub.script, nl=False)
        return
    run = sub.run
    click.echo(f"submitted benchmark job {sub.job_id} over {sub.options.nodes} node(s); "
               f"run {run.run_id}")
    click.echo(f"  results  {sub.merged} (merged when the job ends)")
    click.echo(f"  nodes    {run.path / 'nodes'}/NODE.jsonl (each node's, as it goes)")
    click.echo(f"  follow   hpcjobs status {run.run_id}   |   hpcjobs logs {sub.job_id} -f")
    if not wait:
        return
    click.echo(f"waiting for job {sub.job_id} to end (Ctrl-C stops waiting, not the job)",
               err=True)
    st = slurm_bench.wait_for_end(run, client)
    if not sub.merged.is_file() and any((run.path / "nodes").glob("*.jsonl")):
        slurm_bench.merge_run(run)  # the job ended before its own merge (walltime, cancel)
    if sub.merged.is_file():
        from hpcjobs.bench import harness

        _show(harness.read_jsonl(sub.merged), plot)
        click.echo(f"results: {sub.merged}")
    if st.state != "COMPLETED":
        raise RunFailed(f"benchmark job {sub.job_id} {st.summary()} (hpcjobs logs "
                        f"{sub.job_id})")


def _echo_reports(text: str) -> None:
    """A benchmark's own tables (``Benchmark.report``: job-scale's per-step table)."""
    if text:
        click.echo("")
        click.echo(text)
        click.echo("")


class _BenchCommand(click.Command):
    """``hpcjobs bench [KERNEL]...``, and ``hpcjobs bench compare A B`` and ``hpcjobs bench
    merge RUN`` (each with its own options)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args[:1] and args[0] in _SUBCOMMANDS:
            ctx.meta["hpcjobs.bench.sub"] = (args[0], args[1:])
            return []
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context):
        if "hpcjobs.bench.sub" in ctx.meta:
            name, args = ctx.meta["hpcjobs.bench.sub"]
            command = _SUBCOMMANDS[name]
            sub = command.make_context(f"{ctx.info_name} {name}", args, parent=ctx.parent)
            with sub:
                return command.invoke(sub)
        return super().invoke(ctx)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("a", type=click.Path(exists=True, dir_okay=False), metavar="A.jsonl")
@click.argument("b", type=click.Path(exists=True, dir_okay=False), metavar="B.jsonl")
@click.option("--threshold", type=float, default=1.10, show_default=True, metavar="X",
              help="Flag a benchmark whose median time changed by more than this factor.")
@click.option("--plot", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="Also draw B/A per benchmark as bars (needs matplotlib).")
@click.option("--fail", is_flag=True, help="Exit 1 when anything is flagged SLOWER.")
@click.option("--node", default=None, metavar="NAME",
              help="Only this node's records of runs over several nodes (bench --submit).")
@wrap_errors
def compare(a: str, b: str, threshold: float, plot: str | None, fail: bool,
            node: str | None) -> None:
    """Compare two runs' results (JSON lines of hpcjobs bench): B/A per benchmark and size.

    \b
    Example:
      hpcjobs bench compare before.jsonl after.jsonl --threshold 1.2 --plot cmp.png
    """
    from hpcjobs.bench import compare as cmp
    from hpcjobs.bench.harness import read_jsonl

    rows = cmp.compare_records(read_jsonl(a), read_jsonl(b), threshold, node)
    if not any(r["ratio"] is not None for r in rows):
        raise UserError(f"{a} and {b}: no benchmark ran in both (same benchmark, size and "
                        "implementation)")
    click.echo(cmp.format_compare(rows, threshold))
    if plot:
        click.echo(f"plot: {cmp.plot_compare(rows, plot, threshold)}")
    slower = [r for r in rows if r["flag"] == "SLOWER"]
    if fail and slower:
        raise RunFailed(f"{len(slower)} benchmark(s) slower than x{threshold:g}")


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("run", metavar="RUN")
@click.option("--json-out", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="Where the merged JSON lines go (default: the file named at submission).")
@wrap_errors
def merge(run: str, json_out: str | None) -> None:
    """Merge the per-node results of a benchmark job (`hpcjobs bench --submit`) into one JSON
    lines file. RUN: its run id, run folder or Slurm job id.

    The job merges them itself when its nodes are done; run this for a job that ran out of
    time or was cancelled (each node keeps every size it finished), or for another copy.
    """
    from hpcjobs.bench.nodes import nodes_of
    from hpcjobs.slurm.bench import bench_run, merge_run

    found = bench_run(run)
    path, records = merge_run(found, json_out)
    nodes = nodes_of(records)
    missing = int(found.config.get("writers") or found.config.get("nodes") or 0) - len(nodes)
    click.echo(f"merged {len(records)} record(s) from {len(nodes)} node(s) "
               f"({', '.join(nodes)}) into {path}"
               + (f"; {missing} node(s) wrote nothing (hpcjobs logs {found.run_id})"
                  if missing > 0 else ""))


_SUBCOMMANDS = {"compare": compare, "merge": merge}

#: ``--submit``'s Slurm options: (flags, [slurm] key, help); values are checked by the
#: [slurm] machinery (hpcjobs.slurm.script), so a bad one is a one-line error like submit's
_SLURM_FLAGS = (
    (("--nodes", "-N"), "nodes", "With --submit: nodes to run on, one run per node, or "
                                 "with --workers one cluster over them (default 1)."),
    (("--partition", "-p"), "partition", "With --submit: partition (queue)."),
    (("--account", "-A"), "account", "With --submit: account to charge."),
    (("--qos",), "qos", "With --submit: quality of service."),
    (("--time", "-t"), "time", "With --submit: walltime, e.g. 00:30:00."),
    (("--mem",), "mem", "With --submit: memory per node, e.g. 16G."),
    (("--constraint", "-C"), "constraint", "With --submit: node features."),
    (("--gres",), "gres", "With --submit: generic resources, e.g. gpu:1."),
    (("--cpus-per-task", "-c"), "cpus_per_task", "With --submit --shared: cores for each "
                                                 "node's run (default: the whole node)."),
)


def _submit_options(func):
    for flags, key, help_text in reversed(_SLURM_FLAGS):
        kind, metavar = {"nodes": (int, "N"), "cpus_per_task": (int, "CORES"),
                         "time": (str, "TIME")}.get(key, (str, "TEXT"))
        func = click.option(*flags, f"slurm_{key}", type=kind, default=None, metavar=metavar,
                            help=help_text)(func)
    return func


@click.command(cls=_BenchCommand, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("kernels", nargs=-1, metavar="[KERNEL]...")
@click.option("--quick", is_flag=True, help="Small sizes and at most 3 repeats (a smoke run).")
@click.option("--repeats", type=click.IntRange(min=1), default=None, metavar="N",
              help="Timed repeats per implementation and size (default: the benchmark's).")
@click.option("--sizes", "sizes_text", default=None, metavar="I,J",
              help="Run only these size indices (see --list), e.g. 0,1 (default: all, or "
                   "those --list marks *).")
@click.option("--json-out", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="JSON lines output (default: bench-<time>.jsonl in the current folder); "
                   "with --submit the merged file of all nodes.")
@click.option("--append", is_flag=True, help="Append to --json-out instead of replacing it.")
@click.option("--no-json", is_flag=True, help="Write no JSON lines file.")
@click.option("--list", "list_only", is_flag=True,
              help="List the benchmarks, their sizes and implementations; run nothing.")
@click.option("--plot", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="Also plot time vs size per implementation (needs matplotlib).")
@click.option("--workers", "workers_text", default=None, metavar="1,2,4",
              help="Scaling run: the implementations that run on a local cluster, once per "
                   "worker count (strong scaling: the same sizes). With --submit: on one Dask "
                   "cluster over the --nodes nodes, largest count first.")
@click.option("--weak", is_flag=True,
              help="With --workers: weak scaling (each size's n grows with the workers).")
@click.option("--no-probe", is_flag=True,
              help="Skip the memory-bandwidth probe at the start (no roofline fractions).")
@click.option("--from", "from_file", type=click.Path(exists=True, dir_okay=False), default=None,
              metavar="FILE", help="Print (and --plot) results of an earlier run; run nothing.")
@click.option("--submit", is_flag=True,
              help="Run as a Slurm job instead, the same run on each of --nodes nodes; their "
                   "results merge into one JSON lines file (--json-out) when the job ends.")
@_submit_options
@click.option("--shared", is_flag=True,
              help="With --submit: do not ask for whole nodes (default: --exclusive).")
@click.option("--wait", is_flag=True,
              help="With --submit: wait for the job to end, then print the merged results.")
@click.option("--dry-run", is_flag=True,
              help="With --submit: print the batch script; submit nothing.")
@wrap_errors
def bench(kernels: tuple[str, ...], quick: bool, repeats: int | None, sizes_text: str | None,
          json_out: str | None, append: bool, no_json: bool, list_only: bool,
          plot: str | None, workers_text: str | None, weak: bool, no_probe: bool,
          from_file: str | None, submit: bool, shared: bool, wait: bool, dry_run: bool,
          **slurm_flags) -> None:
    """Benchmark KERNELs (default: all) from the definitions in benchmarks/.

    Every implementation runs on the same data in the same run: one warm-up call (reported as
    compile time), then repeats; the table shows median/min/max, throughput and, for each
    peer library, the time ratio ours/peer (< 1: hpcjobs is faster), and how close each
    runs to the memory roofline that a bandwidth probe measures first. Peers that are not
    installed are skipped and listed. Results go to a JSON lines file (benchmarks/README.md).
    `hpcjobs bench compare A.jsonl B.jsonl` compares two runs (see its --help).

    With --submit the run goes to Slurm: one task on each of --nodes nodes runs it (whole
    nodes unless --shared; partition, account, time... as for `hpcjobs submit`, under the
    site profile's [slurm] values), each record tagged with its node and the job id, merged
    into one file when the job ends (`hpcjobs bench merge RUN` merges by hand).
    With --submit --workers the job is one Dask cluster over the --nodes nodes instead (Dask
    over MPI, one-thread workers round robin over the nodes) that retires workers down to
    each count, largest first: scaling over nodes. `hpcjobs status|logs|cancel` work on the
    job.

    \b
    Examples:
      hpcjobs bench --list
      hpcjobs bench describe --quick
      hpcjobs bench describe --sizes 2 --repeats 3 --json-out describe.jsonl --plot d.png
      hpcjobs bench job-scale --sizes 2,3        # a whole job over 2 GB, walk and random
      hpcjobs bench describe --workers 1,2,4 --plot scaling.png
      hpcjobs bench compare before.jsonl after.jsonl
      hpcjobs bench describe --quick --submit --nodes 2 --time 00:10:00 --wait
      hpcjobs bench describe --submit --nodes 4 --workers 1,2,4,8 --time 01:00:00
    """
    from hpcjobs.bench import harness

    slurm = {key.removeprefix("slurm_"): v for key, v in slurm_flags.items() if v is not None}
    if not submit:
        given = [f"--{k.replace('_', '-')}" for k in slurm] + [
            flag for flag, on in (("--shared", shared), ("--wait", wait),
                                  ("--dry-run", dry_run)) if on]
        if given:
            raise UserError(f"{given[0]} needs --submit (a benchmark job on Slurm)")
    else:
        refused = [flag for flag, on in (("--from", from_file), ("--list", list_only),
                                         ("--no-json", no_json), ("--append", append),
                                         ("--plot without --wait", plot and not wait))
                   if on]
        if refused:
            raise UserError(f"--submit: {refused[0]} does not go with it (a submitted run "
                            "writes one merged JSON lines file, --json-out)")
    if from_file:
        records = harness.read_jsonl(from_file)
        if kernels:
            records = [r for r in records if r.get("kernel") in kernels
                       or r.get("benchmark") in kernels]
        _show(records, plot)
        return
    if list_only:
        benches, problems = harness.discover(kernels)
        click.echo(harness.format_list(benches))
        for f, e in problems.items():
            click.echo(f"not loaded: {f}: {e}")
        return
    sizes = _int_list(sizes_text, "--sizes", "size indices like 0,2")
    workers = _int_list(workers_text, "--workers", "worker counts of at least 1 like 1,2,4",
                        low=1)
    if weak and workers is None:
        raise UserError("--weak needs --workers (e.g. --workers 1,2,4)")
    if submit:
        from hpcjobs.slurm.bench import BenchRequest

        request = BenchRequest(kernels, quick=quick, repeats=repeats, sizes=sizes,
                               workers=workers, weak=weak, probe=not no_probe)
        _submit(request, slurm, exclusive=not shared, merged=json_out, wait=wait,
                dry_run=dry_run, plot=plot)
        return

    def log(msg: str) -> None:
        click.echo(msg, err=True)

    path = None if no_json else Path(json_out or time.strftime("bench-%Y%m%d-%H%M%S.jsonl"))
    if path is not None:
        harness.check_writable(path)
    state = {"append": append}

    def save(size_records: list[dict]) -> None:  # each size as it finishes (Ctrl-C keeps them)
        if path is not None:
            harness.write_jsonl(size_records, path, append=state["append"])
            state["append"] = True

    records, problems = harness.run(kernels, quick=quick, repeats=repeats, sizes=sizes, log=log,
                                    on_size=save, probe=not no_probe, workers=workers,
                                    weak=weak)
    click.echo(harness.format_table(records))
    _echo_reports(harness.format_reports(records))
    click.echo(harness.format_summary(records, problems))
    if path is not None:
        click.echo(f"results: {path}")
    if plot:
        from hpcjobs.bench.plot import plot_records

        click.echo(f"plot: {plot_records(records, plot)}")
    failed = [r for r in records if r["status"] == "error"]
    if failed:
        raise RunFailed(f"{len(failed)} benchmark run(s) failed: "
                        + "; ".join(f"{r['benchmark']}/{r['impl']}: {r['reason']}"
                                    for r in failed[:3]))


@click.command("bench-node", hidden=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("run_dir", type=click.Path(file_okay=False))
def bench_node(run_dir: str) -> None:
    """Run RUN_DIR's benchmarks on this node (what each task of a benchmark job runs)."""
    from hpcjobs.slurm.bench import node_run

    code = node_run(run_dir, echo=click.echo)
    sys.stdout.flush()
    sys.stderr.flush()
    sys.exit(code)


@click.command("bench-cluster", hidden=True,
               context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("run_dir", type=click.Path(file_okay=False))
def bench_cluster(run_dir: str) -> None:
    """Run RUN_DIR's scaling run on one Dask cluster over the job's nodes (what every MPI rank
    of a `bench --submit --workers` job runs)."""
    from hpcjobs.slurm.bench import cluster_run

    code = cluster_run(run_dir, echo=click.echo)
    sys.stdout.flush()
    sys.stderr.flush()
    sys.exit(code)
