"""Run folders: one per submission, so status, logs and cancel work from any later shell.

::

    ~/.hpcjobs/runs/                  ($HPCJOBS_RUNS; private: 0700)
      sensor-clusters-20261125-171502-a3f9/
        job.toml        the job file as submitted (byte for byte)
        run.json        what the nodes need: overrides, sweep tasks, launcher settings
        submit.sh       the rendered batch script
        state.json      job id, submit time, last status seen
        events.log      one line per start / stop signal / requeue / end, from the batch shell
        logs/           Slurm's output (append mode: requeues keep their history)
        cluster/        scheduler address + the job's TLS certificate (0600)
        exit/ stop/     the driver's exit code, the stop requests, per Slurm job id

Example
-------
>>> run = new_run("demo")                 # doctest: +SKIP
>>> find_run(run.run_id).path == run.path  # doctest: +SKIP
True
"""

from __future__ import annotations

import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from hpcjobs.errors import UserError

RUNS_ENV = "HPCJOBS_RUNS"


def runs_root(root: str | os.PathLike | None = None, *, create: bool = True) -> Path:
    """The folder holding run folders: ``root``, ``$HPCJOBS_RUNS`` or ``~/.hpcjobs/runs``."""
    path = Path(root or os.environ.get(RUNS_ENV) or Path.home() / ".hpcjobs" / "runs")
    path = path.expanduser().absolute()
    if create:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(path, 0o700)
    return path


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=1, sort_keys=True, default=str)
        fh.write("\n")
    os.replace(tmp, path)


def write_script(path: Path, text: str) -> None:
    """Write a batch script readable and runnable by its owner alone (0700)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o700)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


@dataclass(frozen=True)
class Run:
    """A run folder."""

    path: Path

    @property
    def run_id(self) -> str:
        return self.path.name

    @property
    def job_file(self) -> Path:
        return self.path / "job.toml"

    @property
    def script(self) -> Path:
        return self.path / "submit.sh"

    @property
    def logs_dir(self) -> Path:
        return self.path / "logs"

    @property
    def events_file(self) -> Path:
        return self.path / "events.log"

    @property
    def state(self) -> dict:
        try:
            return json.loads((self.path / "state.json").read_text())
        except FileNotFoundError:
            return {}

    def update_state(self, **values) -> dict:
        state = {**self.state, **values}
        _write_json(self.path / "state.json", state)
        return state

    @property
    def config(self) -> dict:
        """``run.json``: what the job needs on the nodes."""
        return json.loads((self.path / "run.json").read_text())

    def config_on_node(self, log) -> dict | None:
        """``run.json`` as a job's task reads it on its node, or ``None`` after saying in one
        line why it cannot (the run folder must be on a file system the nodes share)."""
        try:
            return self.config
        except (OSError, ValueError) as exc:
            log(f"error: cannot read {self.path / 'run.json'}: {exc} (is the run folder "
                "visible from this node?)")
            return None

    def write_config(self, config: dict) -> None:
        _write_json(self.path / "run.json", config)

    @property
    def job_id(self) -> str | None:
        return self.state.get("job_id")

    def events(self) -> str:
        try:
            return self.events_file.read_text()
        except FileNotFoundError:
            return ""

    def log_files(self) -> list[Path]:
        """The job's log files, oldest first (one per job, one per array task)."""
        if not self.logs_dir.is_dir():
            return []
        return sorted(self.logs_dir.glob("*.out"), key=lambda p: (p.stat().st_mtime, p.name))

    def cluster_files(self) -> list[Path]:
        folder = self.path / "cluster"
        return sorted(folder.glob("*.json")) if folder.is_dir() else []


def new_run(job_name: str, root: str | os.PathLike | None = None) -> Run:
    """Make a fresh private run folder named ``<job>-<YYYYmmdd-HHMMSS>-<random>``."""
    base = runs_root(root)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for _ in range(20):
        path = base / f"{job_name}-{stamp}-{secrets.token_hex(2)}"
        try:
            path.mkdir(mode=0o700)
            break
        except FileExistsError:
            continue
    else:  # pragma: no cover
        raise UserError(f"cannot make a new run folder in {base}")
    for sub in ("logs", "stop", "exit"):
        (path / sub).mkdir(mode=0o700)
    return Run(path)


def list_runs(root: str | os.PathLike | None = None) -> list[Run]:
    """All run folders, oldest first."""
    base = runs_root(root, create=False)
    if not base.is_dir():
        return []
    runs = [Run(p) for p in base.iterdir() if (p / "state.json").is_file()]
    return sorted(runs, key=lambda r: (r.state.get("submitted", ""), r.run_id))


def find_run(ref: str, root: str | os.PathLike | None = None) -> Run:
    """The run named by ``ref``: a folder path, a run id (or unique prefix) or a Slurm job id.

    A job id of an array task (``123_4``) finds its array's run.
    """
    candidate = Path(ref).expanduser()
    if (candidate / "state.json").is_file():
        return Run(candidate.absolute())
    runs = list_runs(root)
    if not runs:
        raise UserError(f"no run {ref!r}: there are no runs in {runs_root(root, create=False)} "
                        "yet (submit one with: hpcjobs submit JOB.toml)")
    exact = [r for r in runs if r.run_id == ref]
    if exact:
        return exact[0]
    job_id = ref.split("_")[0]
    by_job = [r for r in runs if job_id.isdigit() and str(r.state.get("job_id")) == job_id]
    if by_job:
        return by_job[-1]
    prefix = [r for r in runs if r.run_id.startswith(ref)]
    if len(prefix) == 1:
        return prefix[0]
    if len(prefix) > 1:
        names = ", ".join(r.run_id for r in prefix[:5])
        raise UserError(f"{ref!r} matches {len(prefix)} runs ({names}...): give more of the name")
    raise UserError(f"no run or Slurm job id {ref!r} in {runs_root(root, create=False)} "
                    "(see: hpcjobs list)")


def latest_run(root: str | os.PathLike | None = None) -> Run | None:
    runs = list_runs(root)
    return runs[-1] if runs else None
