"""How the CLI reports failures: one line on stderr, exit 2 for bad input, 1 for failed runs."""

from __future__ import annotations

import sys

import click

from hpcjobs.errors import HpcjobsError


class CLIError(click.ClickException):
    """A library error shown as one line, with the library error's exit code."""

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file=None) -> None:
        click.echo(f"Error: {self.format_message()}", err=True)


def _debug_requested(argv: list[str]) -> bool:
    return "--debug" in argv


def run_cli(group: click.Group, argv: list[str] | None = None) -> None:
    """Invoke ``group``; map exceptions to exit codes unless ``--debug`` asks for tracebacks."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        group.main(args=args, prog_name="hpcjobs", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except HpcjobsError as exc:
        if _debug_requested(args):
            raise
        click.echo(f"Error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
    except Exception as exc:  # a bug or an environment failure: say it in one line
        if _debug_requested(args):
            raise
        click.echo(f"Error: {type(exc).__name__}: {exc} (run with --debug for the traceback)",
                   err=True)
        sys.exit(1)
    sys.exit(0)


def wrap_errors(func):
    """Decorator for commands: library ``HpcjobsError`` becomes a ``CLIError`` (CliRunner-friendly).

    With ``--debug`` on the root group the original exception propagates.
    """
    import functools

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        ctx = click.get_current_context()
        debug = bool((ctx.find_root().obj or {}).get("debug"))
        try:
            return func(*args, **kwargs)
        except HpcjobsError as exc:
            if debug:
                raise
            raise CLIError(str(exc), exc.exit_code) from exc

    return wrapper
