"""``hpcjobs doctor``: can jobs run on Slurm from here? Each check says what is wrong in words."""

from __future__ import annotations

import importlib
import os
import shlex
import time
from collections.abc import Callable

from hpcjobs.errors import HpcjobsError
from hpcjobs.slurm.client import SlurmClient
from hpcjobs.slurm.runs import new_run, runs_root
from hpcjobs.slurm.script import check_sbatch_value, local_python
from hpcjobs.slurm.status import LIVE_STATES, parse_scontrol, parse_squeue

LOCAL_HOME = "/var/lib/hpcjobs-slurm"  # slurm/start's default folder

PROBE = """\
import os, sys
from mpi4py import MPI
import distributed, hpcjobs, numba, zarr
from hpcjobs.warmup import warm_status
comm = MPI.COMM_WORLD
path = os.path.join(sys.argv[1], f"probe-{comm.Get_rank()}")
cpu, warm, steps = warm_status(sys.argv[2] if len(sys.argv) > 2 else None)
with open(path, "w") as fh:
    fh.write(f"{comm.Get_rank()} {comm.Get_size()} {MPI.Get_processor_name()} {cpu} {warm} "
             f"{steps}\\n")
"""


def run_doctor(client: SlurmClient, *, partition: str | None = None, timeout: float = 120,
               probe: bool = True, echo: Callable[[str], None] = print,
               python: str | None = None, job_file: str | None = None) -> bool:
    """Run the checks, printing one line each; True when all passed. With ``job_file``,
    also say whether its kernels are compiled for this machine and for the nodes."""
    failures = 0

    def report(ok: bool | None, what: str, detail: str = "") -> bool:
        nonlocal failures
        mark = {True: "ok  ", False: "FAIL", None: "warn"}[ok]
        failures += ok is False
        echo(f"[{mark}] {what}" + (f": {detail}" if detail else ""))
        return bool(ok)

    found = client.commands_found()
    missing = [cmd for cmd, where in found.items() if where is None]
    if not report(not missing, "Slurm commands",
                  f"missing {', '.join(missing)}: install Slurm's client tools or load its "
                  "module (for the local test cluster: sudo slurm/start)" if missing
                  else f"found in {os.path.dirname(found['sbatch'])}"):
        return False
    conf = os.environ.get("SLURM_CONF")
    if conf and not os.path.isfile(conf):
        report(False, "SLURM_CONF", f"{conf} does not exist (unset it or run slurm/start)")
        return False
    if not conf and not os.path.isfile("/etc/slurm/slurm.conf"):
        local = os.path.join(os.environ.get("HPCJOBS_SLURM_HOME", LOCAL_HOME), "etc",
                             "slurm.conf")
        hint = (f"the local test cluster's is {local}: export SLURM_CONF={local}"
                if os.path.isfile(local) else "start the local test cluster with "
                "sudo slurm/start and export the SLURM_CONF it prints")
        report(False, "Slurm configuration", f"SLURM_CONF is not set and there is no "
               f"/etc/slurm/slurm.conf; {hint}")
        return False
    try:
        client.ping()
        report(True, "Slurm controller", "answers" + (f" (SLURM_CONF={conf})" if conf else ""))
    except HpcjobsError as exc:
        report(False, "Slurm controller", f"does not answer ({exc}); for the local test cluster "
               "run: sudo slurm/start, then export the SLURM_CONF it prints")
        return False
    try:
        rows = [line.split("|") for line in client.sinfo().splitlines() if line.strip()]
        parts = sorted({r[0] for r in rows})
        usable = [r for r in rows if r[1] == "up" and r[3] in ("idle", "mixed", "allocated")]
        report(bool(usable), "partitions",
               ", ".join(parts) + ("" if usable else ": no node is up (all down or drained)"))
    except HpcjobsError as exc:
        report(False, "partitions", str(exc))

    root = runs_root()
    mode = oct(root.stat().st_mode & 0o777)
    writable = os.access(root, os.W_OK)
    report(writable and mode == "0o700", "run folder",
           f"{root} ({mode}{', private' if mode == '0o700' else ', NOT private: chmod 700'}"
           f"{'' if writable else ', NOT writable'})")
    try:
        check_sbatch_value("run folder", str(root))
    except HpcjobsError as exc:
        report(False, "run folder path", f"{exc}; set HPCJOBS_RUNS to a simpler path")

    for module, why in (("mpi4py.MPI", "MPI for Python (pip install mpi4py mpich)"),
                        ("distributed", "Dask's scheduler and workers"),
                        ("cryptography", "the job's TLS certificate (pip install cryptography)")):
        try:
            importlib.import_module(module)
            report(True, f"import {module}")
        except Exception as exc:  # noqa: BLE001  (ImportError, or libmpi missing: OSError)
            report(False, f"import {module}", f"{type(exc).__name__}: {exc}; needed for {why}")

    here = _numba_cache(report, job_file)
    site = _site_profile(report)
    if partition is None and site is not None:
        partition = site.get("partition")
    if probe:
        _probe(client, report, echo, partition=partition, timeout=timeout, site=site or {},
               python=python or local_python(), job_file=job_file, here=here)
    echo("all checks passed" if not failures else f"{failures} check(s) failed")
    return failures == 0


def _numba_cache(report, job_file: str | None) -> str:
    """Report where compiled kernels are cached, and (with a job) whether they are here;
    return this machine's CPU name."""
    from hpcjobs.kernels._jit import cache_location
    from hpcjobs.warmup import warm_status

    where = cache_location()
    folder = where.folder
    while not os.path.exists(folder) and os.path.dirname(folder) != folder:
        folder = os.path.dirname(folder)
    report(os.access(folder, os.W_OK), "Numba cache", where.describe() + (
        "" if os.access(folder, os.W_OK) else ": NOT writable, every run compiles again; "
        "set NUMBA_CACHE_DIR to a folder of yours"))
    cpu, warm, steps = warm_status(job_file)
    if job_file is not None:
        report(True if warm == steps else None, "kernels compiled here",
               f"{warm} of {steps} step(s) of {job_file} for this machine's CPU ({cpu})"
               + ("" if warm == steps else f"; run: hpcjobs warmup {job_file}"))
    return cpu


def _site_profile(report) -> dict | None:
    """Report the site profile's ``[slurm]`` values (dask config ``hpcjobs.slurm``); None
    when it is not valid."""
    from hpcjobs.siteconfig import profile_sources, slurm_defaults

    try:
        values = slurm_defaults()
    except HpcjobsError as exc:
        report(False, "site profile", str(exc))
        return None
    shown = [f"{v.key}={v.value!r} ({v.source})" for v in profile_sources() if v.table == "slurm"]
    report(True, "site profile", "; ".join(shown) if shown else
           "none (defaults for [slurm] may go in ~/.config/dask/hpcjobs.yaml: hpcjobs config)")
    return values


def _probe(client, report, echo, *, partition, timeout, python, job_file=None,
           here: str = "", site: dict | None = None) -> None:
    run = new_run("doctor-probe")
    (run.path / "probe.py").write_text(PROBE)
    lines = ["#!/bin/bash", "#SBATCH --job-name=hpcjobs-doctor", "#SBATCH --nodes=1",
             "#SBATCH --ntasks=2", "#SBATCH --time=00:05:00",
             f"#SBATCH --output={run.path}/logs/slurm-%j.out", f"#SBATCH --chdir={run.path}"]
    if partition:
        check_sbatch_value("partition", partition, "--partition")
        lines.append(f"#SBATCH --partition={partition}")
    for key in ("account", "qos"):  # the site's, so that the probe may run where jobs run
        if (site or {}).get(key):
            check_sbatch_value(key, str(site[key]), f"dask config hpcjobs.slurm.{key}")
            lines.append(f"#SBATCH --{key}={site[key]}")
    setup = (site or {}).get("setup") or []
    lines += [setup] if isinstance(setup, str) else list(setup)
    job_arg = f" {shlex.quote(os.path.abspath(job_file))}" if job_file else ""
    lines.append(f"srun --mpi=pmi2 {shlex.quote(python)} {shlex.quote(str(run.path / 'probe.py'))}"
                 f" {shlex.quote(str(run.path))}{job_arg}")
    run.script.write_text("\n".join(lines) + "\n")
    started = time.monotonic()
    try:
        job_id = client.sbatch(run.script)
    except HpcjobsError as exc:
        report(False, "probe job", f"sbatch refused it: {exc}")
        return
    run.update_state(job_id=job_id, job_name="doctor-probe", run_id=run.run_id,
                     submitted=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    state, reason, record = "PENDING", "", {}
    while time.monotonic() - started < timeout:
        rows = parse_squeue(client.squeue([job_id]))
        if rows:
            state, reason = rows[0].state, rows[0].reason
        else:
            records = parse_scontrol(client.show_job(job_id))
            record = records[0] if records else {}
            state = record.get("JobState", "UNKNOWN")
        if state not in LIVE_STATES:
            break
        time.sleep(0.5)
    seconds = time.monotonic() - started
    if state in LIVE_STATES:
        client.cancel(job_id)
        report(False, "probe job", f"job {job_id} still {state} after {timeout:.0f} s"
               + (f" (reason: {reason})" if reason else "") + "; cancelled it")
        return
    probes = sorted(run.path.glob("probe-*"))
    log = next(iter(run.log_files()), None)
    tail = log.read_text(errors="replace").strip().splitlines()[-3:] if log else []
    if state != "COMPLETED":
        report(False, "probe job", f"job {job_id} ended {state} (exit code "
               f"{record.get('ExitCode', '?')}); last log lines: {' | '.join(tail) or '(none)'}")
        return
    report(True, "probe job", f"job {job_id} ran on {record.get('NodeList', '?')} and finished in "
           f"{seconds:.1f} s")
    if len(probes) == 2:
        ranks = [p.read_text().split() for p in probes]
        report(True, "MPI and hpcjobs on the nodes",
               f"{len(ranks)} ranks imported mpi4py, distributed, hpcjobs, numba, zarr "
               f"(hosts: {', '.join(sorted({r[2] for r in ranks}))})")
        report(True, "run folder visible from the nodes", str(run.path))
        _report_node_cache(report, ranks, here, job_file)
    else:
        report(False, "MPI and hpcjobs on the nodes / run folder visible from the nodes",
               f"{len(probes)} of 2 ranks wrote into {run.path}: the run folder must be on a "
               "file system the nodes share (set HPCJOBS_RUNS), and the nodes need the same "
               f"Python ({python}); log: {' | '.join(tail) or '(none)'}")


def _report_node_cache(report, ranks: list[list[str]], here: str, job_file: str | None) -> None:
    """The nodes' CPUs against this machine's, and the job's kernels cached for them."""
    cpus = sorted({r[3] for r in ranks})
    if cpus == [here]:
        report(True, "compute nodes' CPU", f"{here}, as here: kernels compiled here serve them")
    else:
        report(None, "compute nodes' CPU", f"{', '.join(cpus)}, but {here} here: code compiled "
               "here is of no use there; the first run of each job compiles once on the nodes "
               "(or run `hpcjobs warmup` in a job on that partition)")
    if job_file is not None:
        warm, steps = min(int(r[4]) for r in ranks), int(ranks[0][5])
        report(True if warm == steps else None, "kernels compiled for the nodes",
               f"{warm} of {steps} step(s) of {job_file}" + (
                   "" if warm == steps else "; the job's first run compiles the rest once"))
