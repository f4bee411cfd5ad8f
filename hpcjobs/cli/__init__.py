"""The ``hpcjobs`` command line: a click group whose commands load lazily.

Commands live in their own modules and only parse arguments and call library functions.
``hpcjobs --help`` imports neither Dask nor Numba, so it answers at once.
"""

from __future__ import annotations

import importlib

import click

from hpcjobs._version import __version__

# command name -> "module:attribute"; a command's module is imported only when it runs
# (or when its help is shown)
COMMANDS: dict[str, str] = {
    "run": "hpcjobs.cli.jobs:run",
    "validate": "hpcjobs.cli.jobs:validate",
    "show": "hpcjobs.cli.jobs:show",
    "cluster": "hpcjobs.cli.cluster:cluster",
    "config": "hpcjobs.cli.config:config",
    "kernels": "hpcjobs.cli.kernels:kernels",
    "ingest": "hpcjobs.cli.ingest:ingest",
    "bench": "hpcjobs.cli.bench:bench",
    "preview": "hpcjobs.cli.preview:preview",
    "quickstart": "hpcjobs.cli.jobs:quickstart",
    "warmup": "hpcjobs.cli.warmup:warmup",
    "verify": "hpcjobs.cli.jobs:verify",
    "submit": "hpcjobs.cli.slurm:submit",
    "status": "hpcjobs.cli.slurm:status",
    "logs": "hpcjobs.cli.slurm:logs",
    "cancel": "hpcjobs.cli.slurm:cancel",
    "list": "hpcjobs.cli.slurm:list_",
    "doctor": "hpcjobs.cli.slurm:doctor",
    "mpi-run": "hpcjobs.cli.slurm:mpi_run",
    "mpi-cluster": "hpcjobs.cli.slurm:mpi_cluster",
}

# one-line help for `hpcjobs --help` without importing the command modules
SHORT_HELP: dict[str, str] = {
    "run": "Run a job file on a local Dask cluster (or a running scheduler).",
    "validate": "Check a job file against the kernel registry; run nothing.",
    "show": "Show a result's steps, arrays and provenance.",
    "cluster": "Start a Dask cluster that stays up: local, or --slurm in an allocation.",
    "config": "Print the site profile (dask config 'hpcjobs') and where each value came from.",
    "kernels": "List the kernels, or show one kernel's parameters.",
    "ingest": "Turn CSV, .npy, Parquet or basket files into a Zarr group.",
    "bench": "Benchmark kernels against NumPy and peer libraries.",
    "preview": "Draw one step of a result into a PNG (rasters, pyramids, series, embeddings).",
    "quickstart": "Make example data and run the example job end to end.",
    "warmup": "Compile kernels for this machine now (first runs then compile nothing).",
    "verify": "Read every chunk of a result or input; name the corrupt ones.",
    "submit": "Submit a job file to Slurm (Dask over MPI); --dry-run prints the script.",
    "status": "Show a submitted run's state: pending reason, exit code, array tasks.",
    "logs": "Print (or follow with -f) a submitted run's log.",
    "cancel": "Cancel a submitted run.",
    "list": "List your submitted runs and their states.",
    "doctor": "Check that jobs can run on Slurm here; say what is wrong.",
    "mpi-run": "Internal: what every MPI rank of a submitted job runs.",
    "mpi-cluster": "Internal: what every MPI rank of an interactive cluster runs.",
}


# commands that batch scripts run, not people: callable, but not listed
HIDDEN = {"mpi-run", "mpi-cluster"}


class LazyGroup(click.Group):
    """A group that imports a command's module only when that command is used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(name for name in COMMANDS if name not in HIDDEN)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        if ctx.resilient_parsing:  # shell completion: the name is enough
            return click.Command(name, short_help=SHORT_HELP.get(name, ""))
        module, _, attr = target.partition(":")
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The root help's command list, from SHORT_HELP: no command module is imported."""
        rows = [(name, SHORT_HELP.get(name, "")) for name in self.list_commands(ctx)]
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
