"""The ``hpcjobs`` command line: a click group whose commands load lazily.

Commands live in their own modules and only parse arguments and call library functions.
``hpcjobs --help`` imports neither Dask nor Numba, so it answers at once.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import click

from hpcjobs._version import __version__


@dataclass(frozen=True)
class Command:
    """One command: where it lives (``"module:attribute"``, imported only when the command
    runs or shows its help), its line in ``hpcjobs --help``, and whether people see it there
    (``hidden``: commands that batch scripts run, callable but not listed)."""

    target: str
    short_help: str
    hidden: bool = False


# the commands: one entry each (a new command is one line here and its own module)
COMMANDS: dict[str, Command] = {
    "run": Command("hpcjobs.cli.jobs:run",
                   "Run a job file on a local Dask cluster (or a running scheduler)."),
    "validate": Command("hpcjobs.cli.jobs:validate",
                        "Check a job file against the kernel registry; run nothing."),
    "show": Command("hpcjobs.cli.jobs:show", "Show a result's steps, arrays and provenance."),
    "cluster": Command("hpcjobs.cli.cluster:cluster", "Start a Dask cluster that stays up: "
                       "local, or --slurm in an allocation."),
    "config": Command("hpcjobs.cli.config:config", "Print the site profile (dask config "
                      "'hpcjobs') and where each value came from."),
    "kernels": Command("hpcjobs.cli.kernels:kernels",
                       "List the kernels, or show one kernel's parameters."),
    "ingest": Command("hpcjobs.cli.ingest:ingest",
                      "Turn CSV, .npy, Parquet or basket files into a Zarr group."),
    "bench": Command("hpcjobs.cli.bench:bench",
                     "Benchmark kernels against NumPy and peer libraries."),
    "preview": Command("hpcjobs.cli.preview:preview", "Draw one step of a result into a PNG "
                       "(rasters, pyramids, series, embeddings)."),
    "view": Command("hpcjobs.cli.view:view", "Serve a result in the browser: pan and zoom maps, "
                    "series, embeddings, tables."),
    "quickstart": Command("hpcjobs.cli.jobs:quickstart",
                          "Make example data and run the example job end to end."),
    "warmup": Command("hpcjobs.cli.warmup:warmup",
                      "Compile kernels for this machine now (first runs then compile nothing)."),
    "verify": Command("hpcjobs.cli.jobs:verify",
                      "Read every chunk of a result or input; name the corrupt ones."),
    "submit": Command("hpcjobs.cli.slurm:submit",
                      "Submit a job file to Slurm (Dask over MPI); --dry-run prints the script."),
    "status": Command("hpcjobs.cli.slurm:status",
                      "Show a submitted run's state: pending reason, exit code, array tasks."),
    "logs": Command("hpcjobs.cli.slurm:logs", "Print (or follow with -f) a submitted run's log."),
    "cancel": Command("hpcjobs.cli.slurm:cancel", "Cancel a submitted run."),
    "list": Command("hpcjobs.cli.slurm:list_", "List your submitted runs and their states."),
    "doctor": Command("hpcjobs.cli.slurm:doctor",
                      "Check that jobs can run on Slurm here; say what is wrong."),
    "mpi-run": Command("hpcjobs.cli.slurm:mpi_run",
                       "Internal: what every MPI rank of a submitted job runs.", hidden=True),
    "bench-node": Command("hpcjobs.cli.bench:bench_node",
                          "Internal: what each node of a benchmark job runs.", hidden=True),
    "bench-cluster": Command("hpcjobs.cli.bench:bench_cluster",
                             "Internal: what every MPI rank of a scaling benchmark job runs.",
                             hidden=True),
    "mpi-cluster": Command("hpcjobs.cli.slurm:mpi_cluster",
                           "Internal: what every MPI rank of an interactive cluster runs.",
                           hidden=True),
}


class LazyGroup(click.Group):
    """A group that imports a command's module only when that command is used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(name for name, command in COMMANDS.items() if not command.hidden)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        command = COMMANDS.get(name)
        if command is None:
            return None
        if ctx.resilient_parsing:  # shell completion: the name is enough
            return click.Command(name, short_help=command.short_help)
        module, _, attr = command.target.partition(":")
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The root help's command list, from COMMANDS: no command module is imported."""
        rows = [(name, COMMANDS[name].short_help) for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(cls=LazyGroup, context_settings=CONTEXT)
@click.version_option(__version__, "-V", "--version", prog_name="hpcjobs")
@click.option("--debug", is_flag=True, help="Show full tracebacks instead of one-line errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """hpcjobs: Numba kernels as Dask jobs over Zarr, on a laptop or on Slurm over MPI.

    Write a job file (TOML), check it with `hpcjobs validate`, run it with `hpcjobs run`
    (local Dask cluster) or `hpcjobs submit` (Slurm), and look at the result with
    `hpcjobs show`.
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, turning library errors into one-line messages."""
    from hpcjobs.cli._errors import run_cli

    run_cli(cli, argv)
