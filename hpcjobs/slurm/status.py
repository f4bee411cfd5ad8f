"""A run's status: from squeue, then ``scontrol show job``, then the run folder's own records.

``sacct`` needs slurmdbd, which small clusters (and the local test cluster) lack; squeue knows
live jobs, scontrol remembers finished ones for ``MinJobAge`` seconds, and the batch script
writes ``events.log`` lines that outlive both. The parsers are pure functions over text.

Example
-------
>>> rows = parse_squeue("42|PENDING|Priority|0:00|1:00:00|2|(Priority)\\n")
>>> rows[0].job_id, rows[0].state, rows[0].reason
('42', 'PENDING', 'Priority')
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from hpcjobs.slurm.client import SQUEUE_FIELDS

# Slurm states that mean "done, and it did not work"
FAILED_STATES = {"FAILED", "BOOT_FAIL", "NODE_FAIL", "OUT_OF_MEMORY", "DEADLINE", "TIMEOUT",
                 "PREEMPTED", "SPECIAL_EXIT"}
LIVE_STATES = {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "RESIZING",
               "SUSPENDED", "STOPPED", "SIGNALING", "STAGE_OUT", "REQUEUE_HOLD", "REQUEUE_FED"}
# a launch that failed leaves the job pending and held: that is a failure, not a wait
_LAUNCH_FAILED = re.compile(r"launch[ _]failed", re.IGNORECASE)
# what common pending reasons mean, in words
_WILL_NOT_START = "it will not start as submitted: cancel it and resubmit with less"
REASONS = {
    "Priority": "other jobs come first",
    "Resources": "waiting for free nodes",
    "BeginTime": "held until its start time",
    "Dependency": "waiting for another job",
    "JobArrayTaskLimit": "max_parallel tasks already running",
    "PartitionNodeLimit": f"asks for more nodes than the partition allows; {_WILL_NOT_START}",
    "PartitionTimeLimit": f"asks for more time than the partition allows; {_WILL_NOT_START}",
    "PartitionConfig": f"asks for more than the partition allows; {_WILL_NOT_START}",
    "PartitionDown": "the partition is down",
    "ReqNodeNotAvail": "a node it needs is down, drained or reserved",
    "JobHeldUser": "held by you: scontrol release JOBID",
    "JobHeldAdmin": "held by an administrator",
    "BadConstraints": f"no node has the features asked for; {_WILL_NOT_START}",
    "InvalidAccount": "the account is not valid for you",
    "InvalidQOS": "the QOS is not valid for you",
}
_ORDER = ["RUNNING", "COMPLETING", "PENDING", "FAILED", "CANCELLED", "TIMEOUT", "UNKNOWN",
          "COMPLETED"]


@dataclass(frozen=True)
class QueueRow:
    job_id: str
    state: str
    reason: str
    elapsed: str
    time_limit: str
    nodes: str
    nodelist: str


@dataclass(frozen=True)
class Event:
    time: str
    tag: str
    kind: str
    fields: dict
    text: str


@dataclass
class TaskStatus:
    """One job or one array task."""

    tag: str                      # "123" or "123_4"
    state: str                    # PENDING, RUNNING, COMPLETED, FAILED, CANCELLED, UNKNOWN ...
    reason: str = ""
    exit_code: int | None = None
    source: str = ""              # squeue, scontrol or records
    restarts: int = 0
    elapsed: str = ""
    nodelist: str = ""

    def describe(self) -> str:
        text = self.state
        if self.state == "PENDING" and self.reason and self.reason != "None":
            key = self.reason.split(",")[0].strip("()")
            words = REASONS.get(key) or next(
                (w for k, w in REASONS.items() if key.startswith(k)), "")
            text += f" ({self.reason}: {words})" if words else f" ({self.reason})"
        elif self.state in ("FAILED", "UNKNOWN", "CANCELLED", "TIMEOUT", "NOT SUBMITTED") \
                and self.reason:
            text += f" ({self.reason})"
        if self.exit_code not in (None, 0) or self.state in ("FAILED",):
            if self.exit_code is not None:
                text += f", exit code {self.exit_code}"
        if self.restarts:
            text += f", requeued {self.restarts}x"
        return text


@dataclass
class RunStatus:
    run_id: str
    job_id: str | None
    state: str
    tasks: list[TaskStatus] = field(default_factory=list)
    array: bool = False

    @property
    def counts(self) -> dict[str, int]:
        return dict(Counter(t.state for t in self.tasks))

    def summary(self) -> str:
        if not self.array:
            return self.tasks[0].describe() if self.tasks else self.state
        counts = self.counts
        parts = [f"{counts[s]} {s.lower()}" for s in _ORDER if s in counts]
        parts += [f"{n} {s.lower()}" for s, n in counts.items() if s not in _ORDER]
        return f"{self.state}: {len(self.tasks)} tasks: " + ", ".join(parts)


# -- parsers ------------------------------------------------------------------------------------


def parse_squeue(text: str) -> list[QueueRow]:
    """Rows of ``squeue --noheader --array --format=%i|%T|%r|%M|%l|%D|%R``."""
    rows = []
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = line.strip().split("|")
        if len(parts) < len(SQUEUE_FIELDS):
            parts += [""] * (len(SQUEUE_FIELDS) - len(parts))
        rows.append(QueueRow(*[p.strip() for p in parts[:len(SQUEUE_FIELDS)]]))
    return rows


_KV = re.compile(r"(?:^|\s)([A-Za-z][A-Za-z0-9_:/]*)=(.*?)(?=\s+[A-Za-z][A-Za-z0-9_:/]*=|\s*$)")


def parse_scontrol(text: str) -> list[dict[str, str]]:
    """Records of ``scontrol show job --oneliner``: one dict per line (or per blank-line block)."""
    blocks = [b for b in re.split(r"\n\s*\n", text.strip()) if b.strip()]
    if len(blocks) == 1 and "\n" in blocks[0] and blocks[0].count("JobId=") > 1:
        blocks = [line for line in blocks[0].splitlines() if line.strip()]
    records = []
    for block in blocks:
        flat = " ".join(block.split("\n"))
        records.append({m.group(1): m.group(2).strip() for m in _KV.finditer(flat)})
    return records


def parse_events(text: str) -> list[Event]:
    """``events.log`` lines: ``TIME TAG KIND [k=v ...]`` (written by the batch script)."""
    events = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        fields_ = dict(p.split("=", 1) for p in parts[3:] if "=" in p)
        events.append(Event(parts[0], parts[1], parts[2], fields_, line))
    return events


def expand_task_ids(spec: str) -> list[int]:
    """``"0-4%2"``, ``"1,3-5"`` or ``"7"`` -> the task ids."""
    spec = spec.split("%")[0]
    ids: list[int] = []
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        step = 1
        if ":" in part:
            part, step_s = part.split(":", 1)
            step = int(step_s)
        if "-" in part:
            lo, hi = part.split("-", 1)
            ids.extend(range(int(lo), int(hi) + 1, step))
        else:
            ids.append(int(part))
    return ids


def _exit_code(value: str | None) -> int | None:
    if not value:
        return None
    try:
        code, _, sig = value.partition(":")
        code_i, sig_i = int(code), int(sig or 0)
    except ValueError:
        return None
    return 128 + sig_i if sig_i and not code_i else code_i


# -- combining the three sources ---------------------------------------------------------------


def _tag_of_record(rec: dict) -> list[str]:
    array_job, task = rec.get("ArrayJobId"), rec.get("ArrayTaskId")
    if array_job and task and task not in ("N/A", "(null)"):
        return [f"{array_job}_{i}" for i in expand_task_ids(task)]
    return [rec.get("JobId", "")]


def _tag_of_row(row: QueueRow) -> list[str]:
    m = re.match(r"^(\d+)_\[(.+)\]$", row.job_id)
    if m:
        return [f"{m.group(1)}_{i}" for i in expand_task_ids(m.group(2))]
    return [row.job_id]


def _from_squeue(tag: str, row: QueueRow, restarts: int) -> TaskStatus:
    state, reason = row.state.upper(), row.reason
    if state in FAILED_STATES or (state == "PENDING" and _LAUNCH_FAILED.search(reason or "")):
        return TaskStatus(tag, "FAILED", reason=f"did not start: {reason}", source="squeue",
                          restarts=restarts, nodelist=row.nodelist)
    if state == "PENDING" and restarts and reason in ("BeginTime", "None", ""):
        reason = f"requeued, waiting to restart ({reason or 'None'})"
    return TaskStatus(tag, state, reason=reason, source="squeue", restarts=restarts,
                      elapsed=row.elapsed, nodelist=row.nodelist)


def _from_scontrol(tag: str, rec: dict) -> TaskStatus:
    state = rec.get("JobState", "UNKNOWN").upper()
    reason = rec.get("Reason", "")
    restarts = int(rec.get("Restarts", "0") or 0)
    code = _exit_code(rec.get("ExitCode"))
    if state == "PENDING" and _LAUNCH_FAILED.search(reason):
        return TaskStatus(tag, "FAILED", reason=f"did not start: {reason}", exit_code=code,
                          source="scontrol", restarts=restarts)
    if state in FAILED_STATES - {"TIMEOUT"}:
        state_out = "FAILED"
        reason = rec.get("JobState") if rec.get("JobState") != "FAILED" else (
            "" if reason in ("None", "NonZeroExitCode") else reason)
    else:
        state_out = state
        reason = "" if reason == "None" else reason
    return TaskStatus(tag, state_out, reason=reason, exit_code=code, source="scontrol",
                      restarts=restarts, elapsed=rec.get("RunTime", ""),
                      nodelist=rec.get("NodeList", ""))


def _from_events(tag: str, events: list[Event]) -> TaskStatus:
    mine = [e for e in events if e.tag == tag]
    restarts = sum(1 for e in mine if e.kind == "requeue")
    if not mine:
        return TaskStatus(tag, "UNKNOWN", reason="Slurm has no record of it and it never "
                          "started (cancelled before it ran, or the run folder is not "
                          "visible from the nodes)", source="records")
    last = mine[-1]
    if last.kind == "end":
        code = int(last.fields.get("rc", "1")) if last.fields.get("rc", "").isdigit() else 1
        return TaskStatus(tag, "COMPLETED" if code == 0 else "FAILED", exit_code=code,
                          source="records", restarts=restarts)
    if last.kind == "requeue":
        return TaskStatus(tag, "UNKNOWN", reason="requeued, then forgotten by Slurm",
                          source="records", restarts=restarts)
    return TaskStatus(tag, "UNKNOWN", reason=f"last record '{last.kind}' at {last.time}; Slurm "
                      "no longer knows the job (killed with its node?)", source="records",
                      restarts=restarts)


def resolve(job_id: str, *, tags: list[str], squeue_rows: list[QueueRow],
            scontrol_records: list[dict], events: list[Event], run_id: str = "",
            array: bool = False) -> RunStatus:
    """Each task's status from the best source that knows it, and the run's overall state."""
    by_row = {t: row for row in squeue_rows for t in _tag_of_row(row)}
    by_rec = {t: rec for rec in scontrol_records for t in _tag_of_record(rec)}
    tasks = []
    for tag in tags:
        rec = by_rec.get(tag)
        restarts = int(rec.get("Restarts", "0") or 0) if rec else sum(
            1 for e in events if e.tag == tag and e.kind == "requeue")
        if tag in by_row:
            tasks.append(_from_squeue(tag, by_row[tag], restarts))
        elif rec is not None:
            tasks.append(_from_scontrol(tag, rec))
        else:
            tasks.append(_from_events(tag, events))
    return RunStatus(run_id=run_id, job_id=job_id, state=overall(tasks), tasks=tasks,
                     array=array)


def overall(tasks: list[TaskStatus]) -> str:
    """One word for a run: running beats pending beats failed beats done."""
    states = {t.state for t in tasks}
    for state in ("RUNNING", "COMPLETING", "CONFIGURING", "PENDING", "REQUEUED", "SUSPENDED"):
        if state in states:
            return "RUNNING" if state in ("COMPLETING", "CONFIGURING") else state
    for state in ("FAILED", "TIMEOUT", "CANCELLED", "UNKNOWN"):
        if state in states:
            return state
    return "COMPLETED" if states == {"COMPLETED"} else (sorted(states)[0] if states else "UNKNOWN")


def run_status(run, client) -> RunStatus:
    """Ask Slurm (through ``client``) and the run folder about ``run``."""
    state = run.state
    job_id = state.get("job_id")
    if not job_id:
        why = state.get("submit_error") or "never handed to sbatch"
        return RunStatus(run.run_id, None, "NOT SUBMITTED",
                         [TaskStatus("-", "NOT SUBMITTED", reason=why)])
    n_tasks = state.get("array_tasks")
    tags = [f"{job_id}_{i}" for i in range(n_tasks)] if n_tasks else [str(job_id)]
    rows = parse_squeue(client.squeue([str(job_id)]))
    records = parse_scontrol(client.show_job(str(job_id))) if _needs_scontrol(rows, tags) else []
    result = resolve(str(job_id), tags=tags, squeue_rows=rows, scontrol_records=records,
                     events=parse_events(run.events()), run_id=run.run_id,
                     array=bool(n_tasks))
    return result


def _needs_scontrol(rows: list[QueueRow], tags: list[str]) -> bool:
    seen = {t for row in rows for t in _tag_of_row(row)}
    return not set(tags) <= seen
