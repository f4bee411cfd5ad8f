"""Connect to an interactive cluster in a Slurm allocation (``hpcjobs cluster --slurm``).

``hpcjobs.connect(RUN)`` finds the run folder (a run id, its folder, or the Slurm job id),
reads the address and the job's certificate that the scheduler wrote there (0600), and
returns a :class:`ClusterClient`: a ``distributed.Client`` that also knows the allocation's
end (``time_left``) and logs the scheduler's walltime warning when it comes.

Example
-------
>>> import hpcjobs
>>> client = hpcjobs.connect("cluster-20261207-010203-ab12")   # doctest: +SKIP
>>> client.time_left                                           # doctest: +SKIP
3541.2
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from distributed import Client

from hpcjobs.errors import UserError
from hpcjobs.runtime.mpi import cluster_file
from hpcjobs.runtime.mpi_cluster import CLUSTER_KEY, WALLTIME_TOPIC, close_margin
from hpcjobs.runtime.security import load_connection
from hpcjobs.slurm.runs import Run, find_run

logger = logging.getLogger("hpcjobs.cluster")

__all__ = ["connect", "ClusterClient", "cluster_run", "connection_info", "connection_path",
           "dashboard_link"]


def cluster_run(ref: str | os.PathLike | Run, root: str | os.PathLike | None = None) -> Run:
    """The run folder of an interactive cluster named by ``ref``; a batch run is refused."""
    run = ref if isinstance(ref, Run) else find_run(str(ref), root)
    if run.state.get("kind") != "cluster":
        raise UserError(f"run {run.run_id} is a batch job, not an interactive cluster (start "
                        "one with: hpcjobs cluster --slurm)")
    return run


def connection_info(run: Run) -> dict | None:
    """What the cluster's scheduler wrote (address, dashboard, end time...), or None while
    the cluster is not up (or once it has closed)."""
    job_id = run.job_id
    if not job_id:
        return None
    try:
        return json.loads(cluster_file(run.path, job_id).read_text())
    except FileNotFoundError:
        return None


def _not_up(run: Run) -> UserError:
    from hpcjobs.slurm.client import SlurmClient
    from hpcjobs.slurm.status import run_status

    try:
        state = run_status(run, SlurmClient()).summary()
    except Exception as exc:  # noqa: BLE001  (the message matters more than the state)
        state = f"state unknown: {exc}"
    return UserError(f"cluster {run.run_id} is not up ({state}); `hpcjobs cluster --slurm` "
                     "waits for it, `hpcjobs status` shows it")


class ClusterClient(Client):
    """A ``distributed.Client`` of an interactive cluster, with the allocation's clock.

    ``time_left`` is the seconds until the allocation ends (None when unlimited);
    ``walltime_warning`` the scheduler's warning once it came (a dict with ``seconds_left``
    and ``closes_in``), also logged on the ``hpcjobs.cluster`` logger. ``on_walltime(f)``
    calls ``f(warning)`` when it comes (at once if it already came).
    """

    def __init__(self, address: str, *, security, run: Run, info: dict, **kwargs):
        self.run_id, self.job_id = run.run_id, run.job_id
        self._info = dict(info)
        self.end_time: float | None = info.get("end_time")
        self.walltime_warning: dict | None = None
        self._walltime_callbacks: list[Callable[[dict], None]] = []
        super().__init__(address, security=security, **kwargs)
        self.subscribe_topic(WALLTIME_TOPIC, self._on_walltime_event)
        meta = self.get_metadata(CLUSTER_KEY, default=None) or {}
        if meta.get("warned"):  # the warning came before we connected
            left = self.time_left
            closes = None if left is None else max(
                0.0, left - close_margin(meta.get("warn_seconds") or 0))
            self._on_walltime_event((time.time(), {"end_time": self.end_time,
                                                   "seconds_left": left, "closes_in": closes,
                                                   "why": "before this client connected"}))

    @property
    def dashboard_link(self) -> str | None:
        """The dashboard as reached from here (see :func:`dashboard_link`)."""
        return dashboard_link(self._info)

    @property
    def time_left(self) -> float | None:
        """Seconds until the allocation ends (None: no time limit)."""
        return None if self.end_time is None else max(0.0, self.end_time - time.time())

    def on_walltime(self, callback: Callable[[dict], None]) -> None:
        """Call ``callback(warning)`` when the walltime warning comes (now if it came)."""
        self._walltime_callbacks.append(callback)
        if self.walltime_warning is not None:
            callback(self.walltime_warning)

    def _on_walltime_event(self, event) -> None:
        _, message = event
        first = self.walltime_warning is None
        self.walltime_warning = dict(message)
        if first:
            left = message.get("seconds_left")
            closes = message.get("closes_in")
            logger.warning(
                "hpcjobs cluster %s: the allocation ends in %s; %s", self.run_id,
                "?" if left is None else f"{left:.0f} s",
                "save your work: its workers retire" + (
                    f" in {closes:.0f} s" if closes is not None else " soon"))
        for callback in list(self._walltime_callbacks):
            callback(self.walltime_warning)


def connect(run: str | os.PathLike, *, wait: float = 0, timeout: float = 30,
            root: str | os.PathLike | None = None, **client_kwargs) -> ClusterClient:
    """A client of the interactive cluster ``run`` (a run id, run folder or Slurm job id).

    Parameters
    ----------
    wait : float
        Seconds to wait for the cluster to come up (0: it must be up now).
    timeout : float
        Seconds the connection itself may take.

    Raises
    ------
    UserError
        No such run, a batch run, or the cluster is not up (with its state).
    """
    r = cluster_run(run, root)
    deadline = time.monotonic() + wait
    info = connection_info(r)
    while info is None and time.monotonic() < deadline:
        time.sleep(0.5)
        info = connection_info(r)
    if info is None:
        raise _not_up(r)
    path = cluster_file(r.path, r.job_id)
    address, security = load_connection(path)
    try:
        return ClusterClient(address, security=security, run=r, info=info,
                             timeout=f"{timeout}s", **client_kwargs)
    except OSError as exc:
        raise UserError(f"cannot reach cluster {r.run_id} at {address}: {exc} (has it "
                        "closed? hpcjobs status " + r.run_id + ")") from None


def dashboard_link(info: dict) -> str | None:
    """The dashboard's link as seen from here, built by ``distributed.dashboard.link`` (so a
    jupyter-server-proxy template applies): ``localhost:PORT`` when the dashboard listens on
    the node's loopback (reached through an SSH tunnel), else the node and port."""
    port = info.get("dashboard_port")
    if not port:
        return None
    from distributed.utils import format_dashboard_link

    host = info.get("dashboard_host") or "127.0.0.1"
    if host in ("127.0.0.1", "localhost"):
        host = "localhost"
    elif host in ("", "0.0.0.0", "::"):
        host = info.get("node") or info.get("hostname") or host
    return format_dashboard_link(host, port)


def connection_path(run: Run) -> Path:
    """Where the cluster's address and certificate are (0600)."""
    return cluster_file(run.path, run.job_id or "")
