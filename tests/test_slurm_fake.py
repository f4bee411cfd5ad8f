"""Slurm without Slurm: a fake at the one place that runs commands, the pure parsers, the run
folders, the CLI commands, and the MPI launcher under plain ``mpiexec``."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import hpcjobs.cli.slurm as cli_slurm
from hpcjobs.cli import cli
from hpcjobs.errors import RunFailed, UserError
from hpcjobs.slurm.client import Completed, SlurmClient, SlurmError, SlurmNotFound, subprocess_runner
from hpcjobs.slurm.runs import find_run, list_runs, new_run
from hpcjobs.slurm.status import expand_task_ids, parse_events, parse_scontrol, parse_squeue, resolve
from hpcjobs.slurm.submit import submit

# -- the fake ----------------------------------------------------------------------------------


class FakeSlurm:
    """Answers sbatch/squeue/scontrol/scancel/sinfo like Slurm 22.05 does; records every call."""

    def __init__(self):
        self.calls: list[list[str]] = []
        self.jobs: dict[str, dict] = {}
        self.next_id = 100
        self.fail: dict[str, tuple[int, str]] = {}
        self.missing: set[str] = set()  # commands `which` does not find

    def which(self, cmd: str) -> str | None:
        return None if cmd in self.missing else f"/fake/slurm/bin/{cmd}"

    def set(self, job_id, **values):
        self.jobs[str(job_id)].update(values)

    def __call__(self, args, timeout):
        args = list(args)
        assert all(isinstance(a, str) for a in args), args
        self.calls.append(args)
        if args[0] in self.fail:
            rc, err = self.fail[args[0]]
            return Completed(tuple(args), rc, "", err)
        if args[0] == "sbatch":
            assert args[1] == "--parsable" and Path(args[-1]).is_file()
            job_id = str(self.next_id)
            self.next_id += 1
            self.jobs[job_id] = {"state": "PENDING", "reason": "Priority", "exit": "0:0",
                                 "restarts": 0, "queued": True, "known": True}
            return Completed(tuple(args), 0, f"{job_id}\n", "")
        if args[0] == "squeue":
            ids = next(a for a in args if a.startswith("--jobs=")).split("=", 1)[1].split(",")
            rows = []
            for job_id in ids:
                job = self.jobs.get(job_id)
                if job and job["queued"]:
                    rows.extend(job.get("rows") or [
                        f"{job_id}|{job['state']}|{job['reason']}|0:05|1:00:00|1|node1"])
            return Completed(tuple(args), 0, "\n".join(rows) + "\n", "")
        if args[:3] == ["scontrol", "show", "job"]:
            job = self.jobs.get(args[-1])
            if not job or not job["known"]:
                return Completed(tuple(args), 1, "",
                                 "slurm_load_jobs error: Invalid job id specified\n")
            text = job.get("scontrol") or (
                f"JobId={args[-1]} JobName=demo UserId=alice(1000) JobState={job['state']} "
                f"Reason={job['reason']} Dependency=(null) Requeue=1 Restarts={job['restarts']} "
                f"BatchFlag=1 ExitCode={job['exit']} RunTime=00:00:09 NodeList=node[1-3] "
                "Command=/home/alice/runs/r 1/submit.sh WorkDir=/home/alice")
            return Completed(tuple(args), 0, text + "\n", "")
        if args[0] == "scancel":
            self.set(args[-1], state="CANCELLED", queued=False)
            return Completed(tuple(args), 0, "", "")
        if args[:2] == ["scontrol", "ping"]:
            return Completed(tuple(args), 0, "Slurmctld(primary) at localhost is UP\n", "")
        if args[0] == "sinfo":
            return Completed(tuple(args), 0, "debug*|up|3|idle|4\n", "")
        raise AssertionError(f"unexpected command {args}")


@pytest.fixture
def fake(monkeypatch):
    slurm = FakeSlurm()
    monkeypatch.setattr(cli_slurm, "_client", lambda: SlurmClient(runner=slurm, which=slurm.which))
    return slurm


@pytest.fixture
def job_file(tmp_path, monkeypatch):
    import numpy as np
    import zarr

    g = zarr.open_group(str(tmp_path / "data.zarr"), mode="w", zarr_format=3)
    g.create_array("readings", shape=(100, 3), chunks=(50, 3), dtype="f8")[:] = \
        np.arange(300.0).reshape(100, 3)
    monkeypatch.setenv("HPCJOBS_RUNS", str(tmp_path / "runs"))
    job = tmp_path / "job.toml"
    job.write_text('name = "demo"  # the demo job\n[input]\npath = "data.zarr"\n'
                   '[[step]]\nkernel = "describe"\ninput = "readings"\n'
                   '[output]\npath = "out/result.zarr"\n'
                   '[slurm]\nnodes = 2\ntime = "00:20:00"\n')
    return job


def invoke(*args, code=0):
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == code, result.output
    return result.output


# -- submit --------------------------------------------------------------------------------------


def test_submit_makes_a_private_run_folder(fake, job_file, tmp_path):
    sub = submit(job_file, client=SlurmClient(runner=fake), slurm={"partition": "debug"})
    run = sub.run
    assert sub.job_id == "100"
    assert fake.calls == [["sbatch", "--parsable", str(run.script)]]
    assert run.job_file.read_text() == job_file.read_text()  # as submitted, comments and all
    script = run.script.read_text()
    assert "#SBATCH --partition=debug" in script and "#SBATCH --nodes=2" in script
    assert os.access(run.script, os.X_OK)
    assert run.path.stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "runs").stat().st_mode & 0o777 == 0o700
    assert (run.path / "state.json").stat().st_mode & 0o777 == 0o600
    state = run.state
    assert state["job_id"] == "100" and state["output"] == str(tmp_path / "out/result.zarr")
    config = run.config
    # the copy in the run folder must find the data: paths pinned to absolute ones
    assert config["overrides"]["input.path"] == str(tmp_path / "data.zarr")
    assert config["overrides"]["output.path"] == str(tmp_path / "out/result.zarr")
    from hpcjobs.jobspec import load_job

    copy = load_job(run.job_file, overrides=config["overrides"])
    assert copy.input_path == tmp_path / "data.zarr"


def test_submit_refuses_existing_output_before_anything_is_written(fake, job_file, tmp_path):
    (tmp_path / "out/result.zarr").mkdir(parents=True)
    out = invoke("submit", str(job_file), code=2)
    assert "already exists" in out and "--resume" in out
    assert fake.calls == [] and not list_runs()
    invoke("submit", str(job_file), "--resume")
    assert fake.calls[-1][0] == "sbatch"
    assert "MODE=resume" in list_runs()[-1].script.read_text()


def test_sbatch_failure_says_code_command_and_message(fake, job_file):
    fake.fail["sbatch"] = (1, "sbatch: error: invalid partition specified: gpu\n")
    with pytest.raises(SlurmError) as info:
        submit(job_file, client=SlurmClient(runner=fake))
    message = str(info.value)
    assert "exit code 1" in message and "`sbatch --parsable" in message
    assert "invalid partition specified: gpu" in message
    assert "invalid partition" in list_runs()[-1].state["submit_error"]
    out = invoke("submit", str(job_file), code=1)
    assert "invalid partition specified" in out
    assert "NOT SUBMITTED (`sbatch --parsable" in invoke("status")


def test_client_is_the_one_choke_point():
    seen = []

    def runner(args, timeout):
        seen.append((list(args), timeout))
        return Completed(tuple(args), 0, "77;cluster\n", "")

    client = SlurmClient(runner=runner, timeout=9)
    assert client.sbatch("/x/submit.sh") == "77"
    client.cancel("77", signal="USR1", batch=True)
    client.release_now("77")
    assert seen[1] == (["scancel", "--signal=USR1", "--batch", "77"], 9)
    assert seen[2][0] == ["scontrol", "update", "JobId=77", "StartTime=now"]
    with pytest.raises(RunFailed, match="not a job id"):
        SlurmClient(runner=lambda a, t: Completed(tuple(a), 0, "oops\n", "")).sbatch("/x")


def test_real_runner_errors_are_clear():
    with pytest.raises(SlurmNotFound, match="not found"):
        subprocess_runner(["hpcjobs-no-such-command"], 5)
    with pytest.raises(RunFailed, match="did not answer within"):
        subprocess_runner([sys.executable, "-c", "import time; time.sleep(5)"], 0.5)
    done = subprocess_runner([sys.executable, "-c", "import sys; sys.exit(3)"], 10)
    assert done.returncode == 3


# -- status ----------------------------------------------------------------------------------


@pytest.fixture
def submitted(fake, job_file):
    sub = submit(job_file, client=SlurmClient(runner=fake))
    return sub


def status_of(ref):
    return json.loads(invoke("status", ref, "--json"))


def test_status_through_a_jobs_life(fake, submitted):
    run_id = submitted.run.run_id
    st = status_of(run_id)
    assert st["state"] == "PENDING" and st["tasks"][0]["reason"] == "Priority"
    assert "PENDING (Priority: other jobs come first)" in invoke("status", run_id)
    fake.set("100", state="RUNNING", reason="None")
    assert status_of("100")["state"] == "RUNNING"  # by job id
    # done: squeue forgets it, scontrol remembers
    fake.set("100", state="COMPLETED", queued=False)
    st = status_of(run_id)
    assert (st["state"], st["tasks"][0]["exit_code"], st["tasks"][0]["source"]) == \
        ("COMPLETED", 0, "scontrol")
    # scontrol forgets it too: the run folder's records
    fake.set("100", known=False)
    (submitted.run.path / "events.log").write_text(
        "2026-11-25T10:00:00Z 100 start host=n1 restart=0 mode=new\n"
        "2026-11-25T10:01:00Z 100 end rc=0\n")
    st = status_of(run_id)
    assert (st["state"], st["tasks"][0]["source"]) == ("COMPLETED", "records")


def test_failed_job_shows_exit_code(fake, submitted):
    fake.set("100", state="FAILED", reason="NonZeroExitCode", exit="2:0", queued=False)
    out = invoke("status")
    assert "FAILED, exit code 2" in out


def test_failed_start_is_failed_not_pending_or_running(fake, submitted):
    fake.set("100", state="PENDING", reason="launch failed requeued held")
    st = status_of("100")
    assert st["state"] == "FAILED" and "launch failed" in st["tasks"][0]["reason"]
    # forgotten by Slurm after a start with no end: unknown, never "running"
    fake.set("100", queued=False, known=False)
    (submitted.run.path / "events.log").write_text("2026-11-25T10:00:00Z 100 start host=n1\n")
    st = status_of("100")
    assert st["state"] == "UNKNOWN"
    (submitted.run.path / "events.log").write_text(
        "2026-11-25T10:00:00Z 100 start host=n1\n2026-11-25T10:00:01Z 100 end rc=127\n")
    st = status_of("100")
    assert st["state"] == "FAILED" and st["tasks"][0]["exit_code"] == 127


def test_requeued_job_pending_says_so(fake, submitted):
    fake.set("100", state="PENDING", reason="BeginTime", restarts=1)
    fake.jobs["100"]["rows"] = ["100|PENDING|BeginTime|0:00|1:00:00|1|(BeginTime)"]
    (submitted.run.path / "events.log").write_text("t 100 start\nt 100 signal USR1\n"
                                                   "t 100 requeue 1/3\n")
    st = status_of("100")
    assert st["state"] == "PENDING" and "requeued" in st["tasks"][0]["reason"]
    assert st["tasks"][0]["restarts"] == 1


def test_cancel(fake, submitted):
    fake.set("100", state="RUNNING", reason="None")
    assert "cancelled job 100" in invoke("cancel", submitted.run.run_id)
    assert ["scancel", "100"] in fake.calls
    out = invoke("cancel", submitted.run.run_id, code=2)
    assert "already CANCELLED" in out


def test_list_logs_and_finding_runs(fake, job_file):
    a = submit(job_file, client=SlurmClient(runner=fake))
    b = submit(job_file, client=SlurmClient(runner=fake), mode="overwrite")
    out = invoke("list")
    assert a.run.run_id in out and b.run.run_id in out and "PENDING" in out
    assert find_run("101").path == b.run.path
    assert find_run(str(a.run.path)).path == a.run.path
    with pytest.raises(UserError, match="matches 2 runs"):
        find_run("demo-")
    assert "no run or Slurm job id" in invoke("status", "nope", code=2)
    assert "no log yet" in invoke("logs", "101", code=2)
    (b.run.logs_dir / "slurm-101.out").write_text("hpcjobs: job 101 start\nhello\n")
    assert invoke("logs", "101") == "hpcjobs: job 101 start\nhello\n"
    fake.set("101", state="COMPLETED", queued=False)
    assert "hello" in invoke("logs", "101", "-f")  # returns once the job is over


def test_array_status_summary(fake, job_file):
    text = job_file.read_text() + '[sweep]\nmax_parallel = 2\n' \
        '"step.describe.params.bins" = [4, 8, 16, 32, 64]\n'
    job_file.write_text(text)
    sub = submit(job_file, client=SlurmClient(runner=fake))
    assert "#SBATCH --array=0-4%2" in sub.run.script.read_text()
    assert sub.run.state["array_tasks"] == 5
    import zarr

    attrs = zarr.open_group(sub.run.state["output"], mode="r").attrs["hpcjobs_sweep"]
    assert attrs["tasks"][3] == {"group": "task-3", "params": {"step.describe.params.bins": 32}}
    fake.jobs["100"]["rows"] = ["100_1|RUNNING|None|0:10|1:00:00|1|node2",
                                "100_[2-4%2]|PENDING|JobArrayTaskLimit|0:00|1:00:00|1|(x)"]
    fake.jobs["100"]["scontrol"] = (
        "JobId=101 ArrayJobId=100 ArrayTaskId=0 JobState=COMPLETED Reason=None ExitCode=0:0\n"
        "JobId=100 ArrayJobId=100 ArrayTaskId=2-4%2 JobState=PENDING Reason=JobArrayTaskLimit")
    st = status_of("100")
    assert st["state"] == "RUNNING"
    assert [t["state"] for t in st["tasks"]] == ["COMPLETED", "RUNNING", "PENDING", "PENDING",
                                                  "PENDING"]
    assert "RUNNING: 5 tasks: 1 running, 3 pending, 1 completed" in invoke("status", "100")


# -- parsers ------------------------------------------------------------------------------------


def test_parse_scontrol_values_with_spaces():
    line = ("JobId=42 JobName=my job UserId=alice(1000) JobState=PENDING "
            "Reason=launch failed requeued held Dependency=(null) Restarts=2 ExitCode=0:15 "
            "Command=/home/a b/submit.sh WorkDir=/home/a b")
    (rec,) = parse_scontrol(line)
    assert rec["JobName"] == "my job" and rec["Reason"] == "launch failed requeued held"
    assert rec["Restarts"] == "2" and rec["Command"] == "/home/a b/submit.sh"
    st = resolve("42", tags=["42"], squeue_rows=[], scontrol_records=[rec], events=[])
    assert st.state == "FAILED"
    killed = parse_scontrol("JobId=43 JobState=CANCELLED Reason=None ExitCode=0:15")
    st = resolve("43", tags=["43"], squeue_rows=[], scontrol_records=killed, events=[])
    assert st.tasks[0].exit_code == 128 + 15 and st.state == "CANCELLED"
    multi = parse_scontrol("JobId=1 JobState=RUNNING\n\nJobId=2 JobState=PENDING\n")
    assert [r["JobId"] for r in multi] == ["1", "2"]


def test_parse_squeue_and_task_ids():
    rows = parse_squeue("7|RUNNING|None|1:02|10:00|3|node[1-3]\n\n8_[0-3%2]|PENDING|Priority|"
                        "0:00|10:00|1|(Priority)\n")
    assert rows[0].nodelist == "node[1-3]" and rows[1].job_id == "8_[0-3%2]"
    assert expand_task_ids("0-3%2") == [0, 1, 2, 3]
    assert expand_task_ids("1,4-6,9") == [1, 4, 5, 6, 9]
    assert expand_task_ids("0-8:4") == [0, 4, 8]
    events = parse_events("2026-11-25T10:00:00Z 8_1 end rc=3\nbroken\n")
    assert events[0].tag == "8_1" and events[0].fields == {"rc": "3"}


def test_new_runs_are_unique_and_private(tmp_path):
    a, b = new_run("x", tmp_path / "r"), new_run("x", tmp_path / "r")
    assert a.path != b.path and a.path.stat().st_mode & 0o777 == 0o700


# -- doctor -------------------------------------------------------------------------------------


@pytest.fixture
def slurm_conf(tmp_path, monkeypatch):
    conf = tmp_path / "slurm.conf"
    conf.write_text("ClusterName=fake\n")
    monkeypatch.setenv("SLURM_CONF", str(conf))
    return conf


def test_doctor_without_probe(fake, job_file, slurm_conf):
    out = invoke("doctor", "--no-probe")
    assert "[ok  ] Slurm controller" in out and "[ok  ] import mpi4py.MPI" in out
    assert "all checks passed" in out


def test_doctor_reports_the_numba_cache_and_a_jobs_kernels(fake, job_file, slurm_conf):
    out = invoke("doctor", "--no-probe", str(job_file))
    assert "[ok  ] Numba cache: " in out
    assert re.search(r"\] kernels compiled here: [01] of 1 step\(s\) of .*job.toml for this "
                     r"machine's CPU", out), out


def test_doctor_says_what_is_missing(fake, monkeypatch, job_file, slurm_conf):
    fake.missing = {"sbatch", "squeue", "scancel", "sinfo", "srun"}
    out = invoke("doctor", code=1)
    assert "[FAIL] Slurm commands: missing sbatch, squeue, scancel, sinfo, srun" in out
    fake.missing = set()
    monkeypatch.setenv("SLURM_CONF", str(slurm_conf.parent / "missing.conf"))
    assert "missing.conf does not exist" in invoke("doctor", code=1)
    monkeypatch.setenv("SLURM_CONF", str(slurm_conf))
    fake.fail["scontrol"] = (1, "slurm_load_ctl_conf error: Unable to contact slurm controller")
    out = invoke("doctor", code=1)
    assert "[FAIL] Slurm controller: does not answer" in out and "slurm/start" in out


# -- the MPI launcher, under plain mpiexec (no Slurm needed) ---------------------------------------

MPIEXEC = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which("mpiexec")
needs_mpi = pytest.mark.skipif(MPIEXEC is None, reason="needs mpiexec (pip install mpich)")

PROGRAM = """
import sys
from mpi4py import MPI
from hpcjobs.runtime.mpi import launch
rank = MPI.COMM_WORLD.Get_rank()
if rank == int(sys.argv[2]):   # this rank never joins (it "died" at start-up)
    sys.exit(0)

def driver(client):
    import os, shutil, time
    import dask.array as da
    path = sys.argv[3] + "/cluster.json"
    while not os.path.exists(path):   # rank 0 writes it as the scheduler starts
        time.sleep(0.05)
    print("mode", oct(os.stat(path).st_mode & 0o777), flush=True)
    shutil.copy(path, sys.argv[3] + "/seen.json")
    total = da.ones((400, 4), chunks=(50, 4)).sum().compute()
    print("total", total, "workers", len(client.scheduler_info(n_workers=-1)["workers"]),
          flush=True)
    return int(sys.argv[1])

sys.exit(launch(driver, startup_timeout=8, finish_timeout=3,
                cluster_path=sys.argv[3] + "/cluster.json", job_id="t"))
"""


def run_mpi(tmp_path, n, code, die=-1, timeout=90):
    prog = tmp_path / "prog.py"
    prog.write_text(PROGRAM)
    return subprocess.run([MPIEXEC, "-n", str(n), sys.executable, str(prog), str(code),
                           str(die), str(tmp_path)], capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.slow
@needs_mpi
def test_launcher_runs_the_driver_and_exits_with_its_code_cleanly(tmp_path):
    proc = run_mpi(tmp_path, 4, code=5)
    assert "total 1600.0 workers 2" in proc.stdout
    assert proc.returncode == 5
    lines = proc.stderr.strip().splitlines()
    assert all(line.startswith("hpcjobs[rank") for line in lines), proc.stderr  # no noise
    info = json.loads((tmp_path / "seen.json").read_text())
    assert info["address"].startswith("tls://") and "BEGIN CERTIFICATE" in info["tls"]["ca"]
    assert "mode 0o600" in proc.stdout
    assert info["dashboard"].startswith("http://127.0.0.1:")
    assert not (tmp_path / "cluster.json").exists()  # the key does not outlive the cluster


@needs_mpi
def test_launcher_refuses_a_too_small_world(tmp_path):
    proc = run_mpi(tmp_path, 2, code=0)
    assert proc.returncode == 2
    assert "needs at least 3 ranks" in proc.stderr and "found 2" in proc.stderr


@pytest.mark.slow
@needs_mpi
def test_launcher_dead_rank_is_an_error_not_a_hang(tmp_path):
    proc = run_mpi(tmp_path, 4, code=0, die=3)
    assert proc.returncode == 1
    assert "only 1 of 2 workers joined within 8 s" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_worker_memory_follows_slurm():
    from hpcjobs.runtime.mpi import memory_limit

    assert memory_limit(4, {"SLURM_MEM_PER_NODE": "8000"}) == 8000 * 2**20 // 4
    assert memory_limit(4, {"SLURM_MEM_PER_CPU": "1000", "SLURM_CPUS_PER_TASK": "3"}) == \
        3000 * 2**20
    machine = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert memory_limit(2, {}) == machine // 2


def test_ranks_on_node_from_the_environment():
    from hpcjobs.runtime.mpi import _ranks_on_node

    assert _ranks_on_node({"SLURM_NTASKS_PER_NODE": "4"}) == 4
    assert _ranks_on_node({"SLURM_TASKS_PER_NODE": "2(x3),1", "SLURM_NODEID": "3"}) == 1
    assert _ranks_on_node({"SLURM_TASKS_PER_NODE": "2(x3),1", "SLURM_NODEID": "1"}) == 2
    assert _ranks_on_node({"MPI_LOCALNRANKS": "5"}) == 5
    assert _ranks_on_node({}) == 1
