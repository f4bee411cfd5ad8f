"""The one place that runs Slurm's commands (sbatch, squeue, scontrol, scancel, sinfo).

Commands are lists (never a shell), each call has a timeout, and a failure raises
:class:`SlurmError` with the exit code, the command and Slurm's own message. Tests pass a fake
``runner`` (a callable like :func:`subprocess_runner`) or a fake client object with the same
methods.

Example
-------
>>> client = SlurmClient()                                        # doctest: +SKIP
>>> job_id = client.sbatch("/home/me/.hpcjobs/runs/r1/submit.sh")  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from hpcjobs.errors import RunFailed

logger = logging.getLogger("hpcjobs.slurm")

SQUEUE_FORMAT = "%i|%T|%r|%M|%l|%D|%R"
#: the commands hpcjobs runs (srun inside batch scripts)
SLURM_COMMANDS = ("sbatch", "squeue", "scontrol", "scancel", "sinfo", "srun")
SQUEUE_FIELDS = ("job_id", "state", "reason", "elapsed", "time_limit", "nodes", "nodelist")


@dataclass(frozen=True)
class Completed:
    """What a command returned."""

    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


Runner = Callable[[Sequence[str], float], Completed]


class SlurmError(RunFailed):
    """A Slurm command failed (exit 1 in the CLI)."""

    def __init__(self, args: Sequence[str], returncode: int, stderr: str, stdout: str = ""):
        self.args_ = tuple(args)
        self.returncode = returncode
        self.stderr = stderr.strip()
        self.stdout = stdout.strip()
        said = self.stderr or self.stdout or "no message"
        lines = said.splitlines()
        if len(lines) > 3:
            said = " | ".join(lines[-3:])
        hint = next((h for key, h in _HINTS.items() if key in said), "")
        super().__init__(f"`{shlex.join(self.args_)}` failed with exit code {returncode}: "
                         f"{said}{hint}")


_HINTS = {
    "configuration source": " (no Slurm configuration found: set SLURM_CONF; `hpcjobs doctor` "
                            "checks; the local test cluster's is printed by slurm/start)",
    "Unable to contact slurm controller": " (slurmctld is down: `hpcjobs doctor` checks; the "
                                          "local test cluster starts with sudo slurm/start)",
}


class SlurmNotFound(RunFailed):
    """A Slurm command is not installed (not on PATH)."""


def subprocess_runner(args: Sequence[str], timeout: float) -> Completed:
    """Run ``args`` (a list, no shell) and capture its output."""
    try:
        proc = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout,
                              check=False, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise SlurmNotFound(f"`{args[0]}` not found: is Slurm installed and on PATH? "
                            "(for the local test cluster: sudo slurm/start)") from None
    except subprocess.TimeoutExpired:
        raise RunFailed(f"`{shlex.join(args)}` did not answer within {timeout:.0f} s: "
                        "is slurmctld running? (slurm/status)") from None
    return Completed(tuple(args), proc.returncode, proc.stdout, proc.stderr)


class SlurmClient:
    """Slurm's commands as methods. ``runner`` is the single point that runs a process.

    Parameters
    ----------
    runner : callable, optional
        ``runner(args, timeout) -> Completed``; default :func:`subprocess_runner`.
    timeout : float
        Seconds any command may take.
    which : callable, optional
        ``which(command) -> path or None``: where a command is installed; default
        ``shutil.which``. A fake runner comes with a fake ``which``, so that nothing asks
        whether the real commands happen to be on this machine's PATH.
    """

    def __init__(self, runner: Runner | None = None, timeout: float = 60.0,
                 which: Callable[[str], str | None] | None = None):
        self.runner = runner or subprocess_runner
        self.timeout = timeout
        self.which = which or shutil.which

    def commands_found(self) -> dict[str, str | None]:
        """Where each Slurm command that hpcjobs uses is installed (None when missing)."""
        return {cmd: self.which(cmd) for cmd in SLURM_COMMANDS}

    # -- the choke point -------------------------------------------------------------------

    def call(self, args: Sequence[str], *, check: bool = True) -> Completed:
        args = [str(a) for a in args]
        logger.debug("running %s", shlex.join(args))
        done = self.runner(args, self.timeout)
        if check and done.returncode != 0:
            raise SlurmError(args, done.returncode, done.stderr, done.stdout)
        return done

    # -- commands --------------------------------------------------------------------------

    def sbatch(self, script: str | os.PathLike, *, args: Sequence[str] = ()) -> str:
        """Submit ``script``; return the job id (``sbatch --parsable``)."""
        out = self.call(["sbatch", "--parsable", *args, str(script)]).stdout.strip()
        job_id = out.splitlines()[-1].split(";")[0].strip() if out else ""
        if not job_id.isdigit():
            raise RunFailed(f"sbatch answered {out!r}, not a job id")
        return job_id

    def squeue(self, job_ids: Sequence[str] = (), *, user: str | None = None) -> str:
        """``squeue`` rows ``id|state|reason|elapsed|limit|nodes|nodelist``, one per array task.

        Finished jobs are not listed; an id Slurm no longer knows gives no row (not an error).
        """
        args = ["squeue", "--noheader", "--array", f"--format={SQUEUE_FORMAT}"]
        if job_ids:
            args.append("--jobs=" + ",".join(job_ids))
        if user:
            args.append(f"--user={user}")
        done = self.call(args, check=False)
        if done.returncode != 0:
            if "Invalid job id" in done.stderr:
                return ""
            raise SlurmError(args, done.returncode, done.stderr, done.stdout)
        return done.stdout

    def show_job(self, job_id: str) -> str:
        """``scontrol show job -o ID`` (one line per job or array task); "" once forgotten."""
        args = ["scontrol", "show", "job", "--oneliner", str(job_id)]
        done = self.call(args, check=False)
        if done.returncode != 0:
            if "Invalid job id" in done.stderr:
                return ""
            raise SlurmError(args, done.returncode, done.stderr, done.stdout)
        return done.stdout

    def cancel(self, job_id: str, *, signal: str | None = None, batch: bool = False) -> None:
        """``scancel``; with ``signal`` it only signals (``batch``: the batch shell only)."""
        args = ["scancel"]
        if signal:
            args.append(f"--signal={signal}")
        if batch:
            args.append("--batch")
        self.call([*args, str(job_id)])

    def requeue(self, job_id: str) -> None:
        self.call(["scontrol", "requeue", str(job_id)])

    def release_now(self, job_id: str) -> None:
        """Make a requeued job eligible at once (Slurm waits ~2 minutes by default)."""
        self.call(["scontrol", "update", f"JobId={job_id}", "StartTime=now"])

    def sinfo(self) -> str:
        """``sinfo`` rows ``partition|avail|nodes|state|cpus``."""
        return self.call(["sinfo", "--noheader", "--format=%P|%a|%D|%T|%c"]).stdout

    def ping(self) -> str:
        return self.call(["scontrol", "ping"]).stdout
