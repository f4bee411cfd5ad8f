"""Batch scripts: the job file's ``[slurm]`` table + command-line overrides -> an sbatch script.

Pure functions: nothing here runs a command or touches Slurm, so rendering is golden-file
tested. Every value that goes into an ``#SBATCH`` line is checked against a strict character
set (a space, newline, quote or ``$(...)`` would break the line or smuggle in another option),
and every value that goes into a shell command is ``shlex.quote``d. ``setup`` lines are shell
by design (``module load mpi``): they must be single lines with balanced quotes.

Example
-------
>>> opts = resolve_options({"partition": "cpu", "nodes": 2}, {"time": "00:30:00"})
>>> opts.partition, opts.nodes, opts.ntasks_per_node, opts.time
('cpu', 2, 3, '00:30:00')
"""

from __future__ import annotations

import re
import shlex
import sys
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path

from hpcjobs.errors import UserError
from hpcjobs.runtime import MIN_CLUSTER_WORLD as MIN_CLUSTER_TASKS
from hpcjobs.runtime import MIN_WORLD as MIN_TASKS
from hpcjobs.runtime import STARTUP_TIMEOUT

TEMPLATE = "slurm-batch.sh"
CLUSTER_TEMPLATE = "slurm-cluster.sh"
BENCH_TEMPLATE = "slurm-bench.sh"
BENCH_CLUSTER_TEMPLATE = "slurm-bench-cluster.sh"

# key -> (kind, sbatch flag or None, help). Kinds: "str" (an #SBATCH value), "int", "lines",
# "directives", "text" (a value used only quoted in the shell part).
OPTIONS: dict[str, tuple[str, str | None, str]] = {
    "partition": ("str", "partition", "partition (queue) to run in, e.g. 'cpu'"),
    "account": ("str", "account", "account charged for the job"),
    "qos": ("str", "qos", "quality of service"),
    "nodes": ("int", "nodes", "number of nodes (default 1)"),
    "ntasks_per_node": ("int", "ntasks-per-node", "MPI ranks per node (default 3)"),
    "cpus_per_task": ("int", "cpus-per-task", "cores per rank = threads per Dask worker"),
    "mem": ("str", "mem", "memory per node, e.g. '16G'"),
    "time": ("str", "time", "walltime, e.g. '01:00:00' or '1-12:00:00'"),
    "gres": ("str", "gres", "generic resources, e.g. 'gpu:1'"),
    "constraint": ("str", "constraint", "node features, e.g. 'skylake'"),
    "job_name": ("str", "job-name", "name shown by squeue (default: the job's name)"),
    "extra": ("directives", None, "more #SBATCH directives, e.g. ['--exclusive']"),
    "setup": ("lines", None, "shell lines run before the launch, e.g. ['module load mpi']"),
    "signal_seconds": ("int0", None, "seconds before the walltime at which the job is told to "
                       "stop and requeue (default 120; 0: no signal)"),
    "max_requeues": ("int0", None, "how many times a stopped job requeues itself (default 3)"),
    "python": ("text", None, "the Python that runs hpcjobs on the nodes (default: this one)"),
    "mpi": ("str", None, "srun's MPI plugin (default 'pmi2')"),
    "dashboard": ("str", None, "where the dashboard listens (default '127.0.0.1:0', "
                  "loopback; 'none' for no dashboard)"),
    "interface": ("str", None, "network interface for the Dask cluster, e.g. 'ib0'"),
    "startup_timeout": ("int", None, "seconds a rank waits for the others at start (default "
                        f"{STARTUP_TIMEOUT})"),
}

# options hpcjobs sets itself: an `extra` directive may not change them
MANAGED = {"output": "logs go to the run folder", "error": "logs go to the run folder",
           "open-mode": "always append (requeues keep their history)",
           "array": "use a [sweep] table", "signal": "use [slurm] signal_seconds",
           "requeue": "use [slurm] max_requeues", "no-requeue": "use [slurm] max_requeues = 0",
           "chdir": "jobs run in their run folder", "parsable": "", "wrap": "",
           "job-name": "use [slurm] job_name", "ntasks": "use nodes and ntasks_per_node",
           "export": "the environment of `hpcjobs submit` is passed on"}

# What may stand in an #SBATCH value: no whitespace, quotes, $, `, ;, \, # or control chars.
_SBATCH_VALUE = re.compile(r"^[A-Za-z0-9_.,:=+\-/@%&|\[\]*!^~]+$")
_DIRECTIVE = re.compile(r"^--(?P<name>[a-z][a-z0-9-]*)(?:=(?P<value>.+))?$")
_TIME = re.compile(r"^(?:\d+-\d{1,2}(?::\d{1,2}){0,2}|\d+(?::\d{1,2}){0,2}|UNLIMITED|INFINITE)$")
_MEM = re.compile(r"^\d+(?:\.\d+)?[KMGT]?B?$", re.IGNORECASE)
_BAD_SHELL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_CONTINUED = re.compile(r"(\\|\||&&)\s*$")


@dataclass(frozen=True)
class SlurmOptions:
    """The validated ``[slurm]`` table with command-line overrides applied."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    nodes: int = 1
    ntasks_per_node: int = 3
    cpus_per_task: int | None = None
    mem: str | None = None
    time: str | None = None
    gres: str | None = None
    constraint: str | None = None
    job_name: str | None = None
    extra: tuple[str, ...] = ()
    setup: tuple[str, ...] = ()
    signal_seconds: int = 120
    max_requeues: int = 3
    python: str | None = None
    mpi: str = "pmi2"
    dashboard: str = "127.0.0.1:0"
    interface: str | None = None
    startup_timeout: int = STARTUP_TIMEOUT
    _keys: tuple[str, ...] = field(default=(), repr=False, compare=False)

    @property
    def ntasks(self) -> int:
        return self.nodes * self.ntasks_per_node


#: the defaults of the options a job file may leave out: ``SlurmOptions``' own
DEFAULTS = {key: getattr(SlurmOptions(), key) for key in (
    "nodes", "ntasks_per_node", "signal_seconds", "max_requeues", "mpi", "dashboard",
    "startup_timeout")}
#: an interactive cluster: a scheduler and one worker at least, warned 5 minutes before the end
CLUSTER_DEFAULTS = {**DEFAULTS, "ntasks_per_node": 2, "signal_seconds": 300, "max_requeues": 0}
#: a benchmark job: one task per node, no walltime signal, never requeued (a rerun would time
#: a different moment of the machine; what finished is merged anyway)
BENCH_FIXED = {"ntasks_per_node": 1, "signal_seconds": 0, "max_requeues": 0}


def _problem(key: str, message: str, where: str) -> UserError:
    return UserError(f"{where}: {key}: {message}")


def _check_value(key: str, kind: str, value, where: str):
    if kind in ("int", "int0"):
        low = 0 if kind == "int0" else 1
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise _problem(key, f"expected an integer >= {low}, found {value!r}", where)
        return value
    if kind == "lines":
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise _problem(key, f"expected a list of strings, found {value!r}", where)
        for line in value:
            check_shell_line(line, key, where)
        return tuple(value)
    if kind == "directives":
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise _problem(key, f"expected a list of strings like '--exclusive', found {value!r}",
                           where)
        for directive in value:
            check_directive(directive, where)
        return tuple(value)
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _problem(key, f"expected a string, found {value!r}", where)
    value = str(value)
    if kind == "text":
        if not value or _BAD_SHELL.search(value):
            raise _problem(key, f"must be one non-empty line, found {value!r}", where)
        return value
    check_sbatch_value(key, value, where)
    if key == "time" and not _TIME.match(value):
        raise _problem(key, f"expected a Slurm time like '30', '01:00:00' or '1-12:00:00', "
                            f"found {value!r}", where)
    if key == "mem" and not _MEM.match(value):
        raise _problem(key, f"expected a size like '4G' or '16000M', found {value!r}", where)
    return value


def time_seconds(value: str) -> int | None:
    """A Slurm time (``MM``, ``MM:SS``, ``HH:MM:SS``, ``D-HH[:MM[:SS]]``) in seconds;
    None for ``UNLIMITED``/``INFINITE``.

    >>> time_seconds("90"), time_seconds("01:00:00"), time_seconds("1-12")
    (5400, 3600, 129600)
    """
    if value.upper() in ("UNLIMITED", "INFINITE"):
        return None
    days, _, rest = value.rpartition("-")
    parts = [int(p) for p in rest.split(":")]
    if days:  # D-HH, D-HH:MM, D-HH:MM:SS
        h, m, sec = (parts + [0, 0])[:3]
    else:     # MM, MM:SS, HH:MM:SS
        h, m, sec = [0, *parts] if len(parts) == 2 else ([0, parts[0], 0] if len(parts) == 1
                                                         else parts)
    return ((int(days or 0) * 24 + h) * 60 + m) * 60 + sec


def check_sbatch_value(key: str, value: str, where: str = "[slurm]") -> None:
    """Refuse a value that would break an ``#SBATCH`` line or add options to it."""
    if not value or not _SBATCH_VALUE.match(value):
        bad = sorted({c for c in value if not _SBATCH_VALUE.match(c)}) if value else []
        shown = ", ".join(repr(c) for c in bad) or "empty"
        raise _problem(key, f"{value!r} cannot go into an #SBATCH line ({shown}): use letters, "
                            "digits and . , : = + - / @ % & | [ ] * only", where)


def check_directive(directive: str, where: str = "[slurm]") -> None:
    """An ``extra`` directive: ``--name`` or ``--name=value`` with a safe value."""
    m = _DIRECTIVE.match(directive)
    if not m:
        raise _problem("extra", f"{directive!r} is not a directive like '--exclusive' or "
                                "'--mail-type=END'", where)
    name = m.group("name")
    if name in MANAGED:
        why = MANAGED[name]
        raise _problem("extra", f"--{name} is set by hpcjobs" + (f" ({why})" if why else ""),
                       where)
    if m.group("value") is not None:
        check_sbatch_value("extra", m.group("value"), where)


def check_shell_line(line: str, key: str = "setup", where: str = "[slurm]") -> None:
    """A setup line: one line of shell with balanced quotes (it runs as written)."""
    if _BAD_SHELL.search(line):
        raise _problem(key, f"{line!r}: each setup entry must be a single line "
                            "(no newlines or control characters)", where)
    if _CONTINUED.search(line.split(" #")[0]):
        raise _problem(key, f"{line!r}: each setup entry must be a complete command (it ends "
                            "with a continuation: \\, |, && or ||)", where)
    try:
        words = shlex.split(line, comments=True)
    except ValueError as exc:
        raise _problem(key, f"{line!r}: {exc} (unbalanced quotes?)", where) from None
    if not words:
        raise _problem(key, f"{line!r}: empty setup entry (leave it out)", where)


def resolve_options(table: dict | None, overrides: dict | None = None, *,
                    where: str = "[slurm]", site: dict | None = None,
                    site_where: str = "dask config hpcjobs.slurm",
                    defaults: dict | None = None, min_tasks: int = MIN_TASKS,
                    what: str = "a scheduler, a driver and a worker") -> SlurmOptions:
    """Validate the ``[slurm]`` table, apply ``overrides`` (None values ignored).

    ``site`` holds a site profile's values (``hpcjobs.siteconfig``): below the table, above
    ``defaults`` (default :data:`DEFAULTS`). Unknown keys are refused with the list of valid
    ones. ``where`` names the source in errors (e.g. ``"job.toml: [slurm]"``).
    """
    merged: dict = {}
    for source, label in ((site or {}, site_where), (table or {}, where),
                          (overrides or {}, "command line")):
        if not isinstance(source, dict):
            raise UserError(f"{label}: expected a table of Slurm settings, found {source!r}")
        for key, value in source.items():
            key_norm = key.replace("-", "_")
            if key_norm not in OPTIONS:
                raise UserError(f"{label}: {key}: unknown Slurm setting; valid keys: "
                                + ", ".join(OPTIONS))
            if value is None:
                continue
            merged[key_norm] = _check_value(key_norm, OPTIONS[key_norm][0], value, label)
    values = {**(DEFAULTS if defaults is None else defaults), **merged}
    opts = SlurmOptions(**values, _keys=tuple(merged))
    if opts.ntasks < min_tasks:
        raise UserError(f"{where}: nodes x ntasks_per_node = {opts.ntasks}: Dask over MPI needs "
                        f"at least {min_tasks} ranks ({what}); raise ntasks_per_node")
    return opts


def _sbatch_lines(opts: SlurmOptions, *, job_name: str, run_dir: str,
                  array: str | None) -> list[str]:
    log = f"{run_dir}/logs/slurm-%A_%a.out" if array else f"{run_dir}/logs/slurm-%j.out"
    lines = [f"--job-name={opts.job_name or job_name}",
             f"--output={log}",
             "--open-mode=append",
             f"--chdir={run_dir}"]
    for key in ("partition", "account", "qos", "nodes", "ntasks_per_node", "cpus_per_task",
                "mem", "time", "gres", "constraint"):
        value = getattr(opts, key)
        if value is not None:
            lines.append(f"--{OPTIONS[key][1]}={value}")
    if array:
        lines.append(f"--array={array}")
    if opts.signal_seconds:
        lines.append(f"--signal=B:USR1@{opts.signal_seconds}")
    lines.append("--requeue" if opts.max_requeues else "--no-requeue")
    lines.extend(opts.extra)
    return [f"#SBATCH {line}" for line in lines]


def load_template(name: str = TEMPLATE) -> str:
    """The batch-script template shipped in ``hpcjobs/templates``."""
    return resources.files("hpcjobs").joinpath("templates", name).read_text(encoding="utf-8")


def render_script(opts: SlurmOptions, *, job_name: str, run_dir: str | Path, python: str,
                  mode: str = "new", array: str | None = None, hpcjobs_version: str = "",
                  template: str | None = None) -> str:
    """The batch script for one submission (pure: same inputs, same text).

    Parameters
    ----------
    opts : SlurmOptions
        From :func:`resolve_options`.
    job_name : str
        The job's name (``--job-name`` unless ``opts.job_name`` is set).
    run_dir : path
        The run folder: logs, stop files and exit codes go there; the job runs there.
    python : str
        The Python that runs ``-m hpcjobs`` on the nodes (``opts.python`` wins).
    mode : {"new", "resume", "overwrite"}
        Output mode of the first start; a requeued start always resumes.
    array : str, optional
        ``--array`` value for a sweep, e.g. ``"0-5%2"``.

    Examples
    --------
    >>> text = render_script(resolve_options({}), job_name="demo", run_dir="/runs/r1",
    ...                      python="/usr/bin/python3")
    >>> "#SBATCH --signal=B:USR1@120" in text
    True
    """
    run_dir = str(run_dir)
    if mode not in ("new", "resume", "overwrite"):
        raise ValueError(f"mode must be new, resume or overwrite, got {mode!r}")
    python = _checked_python(opts, python, run_dir, job_name)
    launch = [python, "-m", "hpcjobs", "mpi-run", run_dir]
    subs = {
        **_common_subs(opts, job_name=job_name, run_dir=run_dir, python=python,
                       hpcjobs_version=hpcjobs_version, array=array),
        "mode": mode,
        "max_requeues": str(opts.max_requeues),
        # a worker rank that dies must not take the others down: Dask redoes its work
        # (docs/slurm.md); the job's exit code is the driver's, from the run folder
        "srun": " ".join(["srun", f"--mpi={shlex.quote(opts.mpi)}", "--kill-on-bad-exit=0",
                          "--wait=0"]),
        # (a requeued start resumes: the script decides the mode at run time)
        "launch": " ".join(shlex.quote(part) for part in launch) + ' --mode "$MODE"',
    }
    return _fill(template if template is not None else load_template(), subs)


def local_python() -> str:
    """The Python running hpcjobs here: what a job's ranks run on the nodes unless the
    ``[slurm]`` option ``python`` names another (the same path must exist there)."""
    return sys.executable or "python3"


def _checked_python(opts: SlurmOptions, python: str, run_dir: str, job_name: str) -> str:
    check_sbatch_value("run folder", run_dir, "the run folder path")
    check_sbatch_value("job name", opts.job_name or job_name, "the job name")
    python = opts.python or python
    _check_value("python", "text", python, "the python path")
    return python


def _common_subs(opts: SlurmOptions, *, job_name: str, run_dir: str, python: str,
                 hpcjobs_version: str, array: str | None = None) -> dict[str, str]:
    """What both templates fill in: directives, names, paths and the setup lines."""
    return {
        "sbatch": "\n".join(_sbatch_lines(opts, job_name=job_name, run_dir=run_dir,
                                          array=array)),
        "job_name": opts.job_name or job_name,
        "version": hpcjobs_version,
        "run_dir": shlex.quote(run_dir),
        "python": shlex.quote(python),
        "setup": "\n".join(
            f"{line}\n_rc=$?; if [ $_rc -ne 0 ]; then setup_failed $_rc {shlex.quote(line)}; fi"
            for line in opts.setup) if opts.setup else "# (none)",
    }


def _fill(text: str, subs: dict[str, str]) -> str:
    """The template with its fragments included (a line ``{{> _name.sh}}``: the lines every
    batch script shares, in ``hpcjobs/templates``) and its ``{{key}}`` placeholders filled."""
    text = re.sub(r"^\{\{> ([\w.-]+)\}\}\n", lambda m: load_template(m.group(1)), text,
                  flags=re.MULTILINE)
    return re.sub(r"\{\{(\w+)\}\}", lambda m: subs[m.group(1)], text)


def render_cluster_script(opts: SlurmOptions, *, job_name: str, run_dir: str | Path,
                          python: str, role: str = "cluster", cluster_job: str = "",
                          hpcjobs_version: str = "", template: str | None = None) -> str:
    """The batch script of an interactive cluster (pure: same inputs, same text).

    ``role="cluster"``: rank 0 runs the scheduler and every other rank a worker, and the
    cluster waits for clients (``python -m hpcjobs mpi-cluster RUN``). ``role="workers"``:
    every rank is a worker that joins the scheduler of the cluster job ``cluster_job``
    (``hpcjobs cluster scale``). Clusters never requeue: ``opts.signal_seconds`` before the
    walltime the batch shell tells the scheduler, which warns its clients.

    Examples
    --------
    >>> opts = resolve_options({"nodes": 2}, defaults=CLUSTER_DEFAULTS, min_tasks=2)
    >>> text = render_cluster_script(opts, job_name="c", run_dir="/runs/c1", python="python3")
    >>> "#SBATCH --no-requeue" in text and "mpi-cluster /runs/c1" in text
    True
    """
    run_dir = str(run_dir)
    if role not in ("cluster", "workers"):
        raise ValueError(f"role must be cluster or workers, got {role!r}")
    if role == "workers" and not cluster_job.isdigit():
        raise ValueError(f"a worker job needs its cluster's job id, got {cluster_job!r}")
    python = _checked_python(opts, python, run_dir, job_name)
    launch = [python, "-m", "hpcjobs", "mpi-cluster", run_dir]
    if role == "workers":
        launch += ["--join", cluster_job]
    opts = replace(opts, max_requeues=0)  # an interactive cluster is not requeued
    subs = {
        **_common_subs(opts, job_name=job_name, run_dir=run_dir, python=python,
                       hpcjobs_version=hpcjobs_version),
        "role": role,
        # as a batch job's: a worker rank that dies does not end the cluster
        "srun": " ".join(["srun", f"--mpi={shlex.quote(opts.mpi)}", "--kill-on-bad-exit=0",
                          "--wait=0"]),
        "launch": " ".join(shlex.quote(part) for part in launch),
    }
    return _fill(template if template is not None else load_template(CLUSTER_TEMPLATE), subs)


def render_bench_script(opts: SlurmOptions, *, job_name: str, run_dir: str | Path,
                        python: str, hpcjobs_version: str = "", ranks: int | None = None,
                        template: str | None = None) -> str:
    """The batch script of a benchmark job (pure: same inputs, same text).

    One task per node (``srun --whole``: each with all the cores the job holds there) runs
    ``python -m hpcjobs bench-node RUN``, which writes ``nodes/<node>.jsonl`` into the run
    folder; then the batch shell runs ``python -m hpcjobs bench merge RUN``. ``opts`` comes
    with :data:`BENCH_FIXED` applied (:func:`hpcjobs.slurm.bench.bench_options`).
    ``ranks`` (a scaling run on one cluster over the nodes): that many MPI ranks instead,
    round robin over the nodes (``--distribution=cyclic``), run ``python -m hpcjobs
    bench-cluster RUN`` (Dask over MPI, one thread per worker), whose driver writes the
    records; the merge is the same.

    Examples
    --------
    >>> opts = resolve_options({"nodes": 2}, min_tasks=1)
    >>> opts = replace(opts, **BENCH_FIXED)
    >>> text = render_bench_script(opts, job_name="b", run_dir="/runs/b1", python="python3")
    >>> "#SBATCH --ntasks-per-node=1" in text and "bench-node /runs/b1" in text
    True
    """
    run_dir = str(run_dir)
    python = _checked_python(opts, python, run_dir, job_name)
    quoted = shlex.quote(python)
    subs = {
        **_common_subs(opts, job_name=job_name, run_dir=run_dir, python=python,
                       hpcjobs_version=hpcjobs_version),
        "srun": "srun --ntasks-per-node=1 --whole --kill-on-bad-exit=0 --label",
        "launch": f"{quoted} -m hpcjobs bench-node {shlex.quote(run_dir)}",
        "merge": f"{quoted} -m hpcjobs bench merge {shlex.quote(run_dir)}",
    }
    name = BENCH_TEMPLATE
    if ranks is not None:
        name = BENCH_CLUSTER_TEMPLATE
        subs.update(
            ranks=str(int(ranks)),
            srun=" ".join(["srun", f"--mpi={shlex.quote(opts.mpi)}", f"--ntasks={int(ranks)}",
                           "--distribution=cyclic", "--kill-on-bad-exit=0", "--wait=0"]),
            launch=f"{quoted} -m hpcjobs bench-cluster {shlex.quote(run_dir)}")
    return _fill(template if template is not None else load_template(name), subs)


__all__ = ["OPTIONS", "SlurmOptions", "resolve_options", "render_script", "load_template",
           "local_python",
           "render_cluster_script", "render_bench_script", "BENCH_FIXED", "CLUSTER_DEFAULTS",
           "MIN_CLUSTER_TASKS", "check_sbatch_value", "check_directive", "check_shell_line",
           "time_seconds"]
