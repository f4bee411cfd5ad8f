"""``hpcjobs bench``: time kernels against NumPy and peer libraries, side by side."""

from __future__ import annotations

import os
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


def _echo_reports(text: str) -> None:
    """A benchmark's own tables (``Benchmark.report``: job-scale's per-step table)."""
    if text:
        click.echo("")
        click.echo(text)
        click.echo("")


class _BenchCommand(click.Command):
    """``hpcjobs bench [KERNEL]...``, and ``hpcjobs bench compare A B`` (its own options)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args[:1] == ["compare"]:
            ctx.meta["hpcjobs.bench.compare"] = args[1:]
            return []
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context):
        if "hpcjobs.bench.compare" in ctx.meta:
            sub = compare.make_context(f"{ctx.info_name} compare",
                                       ctx.meta["hpcjobs.bench.compare"], parent=ctx.parent)
            with sub:
                return compare.invoke(sub)
        return super().invoke(ctx)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("a", type=click.Path(exists=True, dir_okay=False), metavar="A.jsonl")
@click.argument("b", type=click.Path(exists=True, dir_okay=False), metavar="B.jsonl")
@click.option("--threshold", type=float, default=1.10, show_default=True, metavar="X",
              help="Flag a benchmark whose median time changed by more than this factor.")
@click.option("--plot", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="Also draw B/A per benchmark as bars (needs matplotlib).")
@click.option("--fail", is_flag=True, help="Exit 1 when anything is flagged SLOWER.")
@wrap_errors
def compare(a: str, b: str, threshold: float, plot: str | None, fail: bool) -> None:
    """Compare two runs' results (JSON lines of hpcjobs bench): B/A per benchmark and size.

    \b
    Example:
      hpcjobs bench compare before.jsonl after.jsonl --threshold 1.2 --plot cmp.png
    """
    from hpcjobs.bench import compare as cmp
    from hpcjobs.bench.harness import read_jsonl

    rows = cmp.compare_records(read_jsonl(a), read_jsonl(b), threshold)
    if not any(r["ratio"] is not None for r in rows):
        raise UserError(f"{a} and {b}: no benchmark ran in both (same benchmark, size and "
                        "implementation)")
    click.echo(cmp.format_compare(rows, threshold))
    if plot:
        click.echo(f"plot: {cmp.plot_compare(rows, plot, threshold)}")
    slower = [r for r in rows if r["flag"] == "SLOWER"]
    if fail and slower:
        raise RunFailed(f"{len(slower)} benchmark(s) slower than x{threshold:g}")


@click.command(cls=_BenchCommand, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("kernels", nargs=-1, metavar="[KERNEL]...")
@click.option("--quick", is_flag=True, help="Small sizes and at most 3 repeats (a smoke run).")
@click.option("--repeats", type=click.IntRange(min=1), default=None, metavar="N",
              help="Timed repeats per implementation and size (default: the benchmark's).")
@click.option("--sizes", "sizes_text", default=None, metavar="I,J",
              help="Run only these size indices (see --list), e.g. 0,1 (default: all, or "
                   "those --list marks *).")
@click.option("--json-out", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="JSON lines output (default: bench-<time>.jsonl in the current folder).")
@click.option("--append", is_flag=True, help="Append to --json-out instead of replacing it.")
@click.option("--no-json", is_flag=True, help="Write no JSON lines file.")
@click.option("--list", "list_only", is_flag=True,
              help="List the benchmarks, their sizes and implementations; run nothing.")
@click.option("--plot", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="Also plot time vs size per implementation (needs matplotlib).")
@click.option("--workers", "workers_text", default=None, metavar="1,2,4",
              help="Scaling run: the implementations that run on a local cluster, once per "
                   "worker count (strong scaling: the same sizes).")
@click.option("--weak", is_flag=True,
              help="With --workers: weak scaling (each size's n grows with the workers).")
@click.option("--no-probe", is_flag=True,
              help="Skip the memory-bandwidth probe at the start (no roofline fractions).")
@click.option("--from", "from_file", type=click.Path(exists=True, dir_okay=False), default=None,
              metavar="FILE", help="Print (and --plot) results of an earlier run; run nothing.")
@wrap_errors
def bench(kernels: tuple[str, ...], quick: bool, repeats: int | None, sizes_text: str | None,
          json_out: str | None, append: bool, no_json: bool, list_only: bool,
          plot: str | None, workers_text: str | None, weak: bool, no_probe: bool,
          from_file: str | None) -> None:
    """Benchmark KERNELs (default: all) from the definitions in benchmarks/.

    Every implementation runs on the same data in the same run: one warm-up call (reported as
    compile time), then repeats; the table shows median/min/max, throughput and, for each
    peer library, the time ratio ours/peer (< 1: hpcjobs is faster), and how close each
    runs to the memory roofline that a bandwidth probe measures first. Peers that are not
    installed are skipped and listed. Results go to a JSON lines file (benchmarks/README.md).
    `hpcjobs bench compare A.jsonl B.jsonl` compares two runs (see its --help).

    \b
    Examples:
      hpcjobs bench --list
      hpcjobs bench describe --quick
      hpcjobs bench describe --sizes 2 --repeats 3 --json-out describe.jsonl --plot d.png
      hpcjobs bench job-scale --sizes 2,3        # a whole job over 2 GB, walk and random
      hpcjobs bench describe --workers 1,2,4 --plot scaling.png
      hpcjobs bench compare before.jsonl after.jsonl
    """
    from hpcjobs.bench import harness

    if from_file:
        records = harness.read_jsonl(from_file)
        if kernels:
            records = [r for r in records if r.get("kernel") in kernels
                       or r.get("benchmark") in kernels]
        click.echo(harness.format_table(records))
        _echo_reports(harness.format_reports(records))
        click.echo(harness.format_summary(records))
        if plot:
            from hpcjobs.bench.plot import plot_records

            click.echo(f"plot: {plot_records(records, plot)}")
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
        raise click.BadParameter("--weak needs --workers (e.g. --workers 1,2,4)",
                                 param_hint="--weak")

    def log(msg: str) -> None:
        click.echo(msg, err=True)

    path = None if no_json else Path(json_out or time.strftime("bench-%Y%m%d-%H%M%S.jsonl"))
    if path is not None:  # fail now, not after an hour of benchmarks (and create nothing yet)
        folder = path.parent
        if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK) or (
                path.exists() and not os.access(path, os.W_OK)):
            raise UserError(f"{path}: cannot write results there")
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
