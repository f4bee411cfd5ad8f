"""Exceptions that the CLI turns into one-line messages and exit codes.

``UserError`` (exit 2) means the input was wrong: a job file, a path, an argument. The
message says what was wrong and what was expected. ``RunFailed`` (exit 1) means the input
was fine but running it failed (a worker died, the scheduler went away, Slurm refused).
"""

from __future__ import annotations


class HpcjobsError(Exception):
    """Base class; ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class UserError(HpcjobsError, ValueError):
    """Bad input: the message is shown as one line and the CLI exits with 2."""

    exit_code = 2


class JobFileError(UserError):
    """A job file that cannot be run: the message names the file and the key."""

    def __init__(self, file: str, key: str | None, problem: str):
        self.file, self.key, self.problem = file, key, problem
        where = f"{file}: {key}: " if key else f"{file}: "
        super().__init__(where + problem)


class OutputExistsError(UserError):
    """The output already exists and neither --resume nor --overwrite was given."""


class RunFailed(HpcjobsError):
    """Running a valid job failed; exit 1."""

    exit_code = 1


class Interrupted(HpcjobsError):
    """The run was asked to stop (walltime signal, Ctrl-C); finished chunks are kept."""

    exit_code = 3
