"""A running Dask cluster that a scaling run sizes down, worker count by worker count.

``hpcjobs bench --submit --nodes N --workers 1,2,4`` runs one Dask cluster over the
allocation's nodes (Dask over MPI, :mod:`hpcjobs.runtime.mpi`) and times the cluster
implementations on it at each worker count, largest first: :meth:`RetiringCluster.resize`
retires workers (``client.retire_workers``) down to the next count. Which workers stay is
decided once, up front, by :func:`keep_order`: round robin over the nodes, so that the ``w``
workers that remain are spread over as many nodes as they can be (as evenly as they can be),
and every smaller count keeps a subset of a larger one's workers.

Each record of a count says where its workers sat: ``worker_nodes`` (how many nodes),
``worker_placement`` (``{node: workers}``), ``worker_numba_threads`` (the most Numba threads
a worker had: 1 in a benchmark job, which exports ``NUMBA_NUM_THREADS=1``) and
``oversubscribed`` (a node ran more worker threads than it has cores).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping
from typing import Any

from hpcjobs.errors import RunFailed


def _where() -> dict[str, Any]:
    """Run on each worker: its Slurm node (else host), host and the node's cores (Slurm's
    count for the job there, else the machine's: a rank's own affinity may be one core)."""
    cpus = os.environ.get("SLURM_CPUS_ON_NODE", "")
    cores = int(cpus) if cpus.isdigit() else (os.cpu_count() or 1)
    host = socket.gethostname()
    import numba

    return {"node": os.environ.get("SLURMD_NODENAME") or host, "host": host, "cores": cores,
            "numba_threads": numba.get_num_threads()}


def _rank_key(name: str) -> tuple:
    """Worker names in rank order (``rank-10`` after ``rank-9``), other names after them."""
    tail = str(name).rsplit("-", 1)[-1]
    return (0, int(tail), "") if tail.isdigit() else (1, 0, str(name))


def keep_order(nodes: Mapping[str, str]) -> list[str]:
    """Worker names (``nodes``: name -> node) in the order they are kept: round robin over the
    nodes (sorted by name), each node's workers in rank order. The first ``w`` of this order
    are the workers of a ``w``-worker run: spread over ``min(w, nodes)`` nodes, no node more
    than one worker ahead of another.

    >>> keep_order({"rank-2": "n1", "rank-3": "n1", "rank-4": "n2", "rank-5": "n2"})
    ['rank-2', 'rank-4', 'rank-3', 'rank-5']
    """
    per_node: dict[str, list[str]] = {}
    for name in sorted(nodes, key=_rank_key):
        per_node.setdefault(nodes[name], []).append(name)
    queues = [per_node[n] for n in sorted(per_node)]
    order = []
    for i in range(max((len(q) for q in queues), default=0)):
        order.extend(q[i] for q in queues if i < len(q))
    return order


class RetiringCluster:
    """The cluster of ``client`` as :func:`hpcjobs.bench.harness.run` takes it
    (``cluster=``): sized down by retiring workers, never up.

    ``threads``: the Dask threads every worker must have (1: one thread per worker, with
    one Numba thread, as the benchmark job's ranks are started); a worker with another count
    is refused, since the records would not say what ran.
    """

    def __init__(self, client, *, threads: int = 1, timeout: float = 60.0):
        self.client = client
        self.timeout = timeout
        workers = client.scheduler_info(n_workers=-1)["workers"]
        odd = {info.get("name"): info.get("nthreads") for info in workers.values()
               if info.get("nthreads") != threads}
        if odd:
            raise RunFailed(f"each worker must run {threads} thread(s); these do not: {odd}")
        where = client.run(_where)
        self.names = {addr: str(info.get("name", addr)) for addr, info in workers.items()}
        self.where = {self.names[addr]: w for addr, w in where.items() if addr in self.names}
        self.order = keep_order({name: w["node"] for name, w in self.where.items()})
        self.size = len(self.order)

    def resize(self, workers: int) -> dict[str, Any]:
        """Retire workers until ``workers`` remain (the first of :attr:`order`); return the
        records' placement fields."""
        if not 1 <= workers <= self.size:
            raise RunFailed(f"cannot size a cluster of {self.size} worker(s) to {workers}")
        keep, retire = self.order[:workers], self.order[workers:self.size]
        if retire:
            self.client.retire_workers(names=retire, close_workers=True)
            self._wait_for(set(keep))
        self.size = workers
        placement: dict[str, int] = {}
        for name in keep:
            node = self.where[name]["node"]
            placement[node] = placement.get(node, 0) + 1
        cores = {self.where[name]["node"]: self.where[name]["cores"] for name in keep}
        return {"worker_nodes": len(placement), "worker_placement": placement,
                "worker_numba_threads": max(self.where[name]["numba_threads"] for name in keep),
                "oversubscribed": any(placement[n] > cores[n] for n in placement)}

    def _wait_for(self, names: set[str]) -> None:
        deadline = time.monotonic() + self.timeout
        while True:
            now = {str(info.get("name")) for info in
                   self.client.scheduler_info(n_workers=-1)["workers"].values()}
            if now == names:
                return
            if time.monotonic() > deadline:
                raise RunFailed(f"workers did not retire within {self.timeout:.0f} s: "
                                f"{sorted(now - names)} still there")
            time.sleep(0.1)
