"""Row blocks kept in a distributed cluster's memory, and the blocks each member of a worker
group sees (see the package's docstring)."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from hpcjobs.kernels._finite import FiniteCheck
from hpcjobs.kernels._worker_group._group import run_group

#: give the core to another thread ready to run on it (a member's kernels never block, so
#: the worker's event loop would wait for the end of the member's time slice)
_yield_core = getattr(os, "sched_yield", lambda: None)


@dataclass
class KeptBlocks:
    """Blocks persisted on a distributed cluster's workers: the persisted array ``X``, its
    row blocks ``parts`` (delayed) and their ``futures``, and ``placement``, the indices of
    the blocks each worker holds, by worker address."""

    client: object
    X: object
    parts: list
    futures: list
    placement: dict[str, list[int]]

    def run(self, offsets, n: int, func, check: str | None, *args) -> list:
        """``func(MemberBlocks, *args)`` on every worker that holds blocks, all at once (one
        worker group); returns the futures of the results, in member order."""
        return run_group(self.client, self.placement, self.futures, offsets, _on_member, n,
                         func, check, *args)


def keep_blocks(X, sizes, fraction: float) -> KeptBlocks | None:
    """Persist the Dask array ``X`` (whole rows per block, ``sizes`` rows each) on the active
    distributed cluster when it takes at most ``fraction`` of the workers' memory limits;
    None where there is no such cluster, another scheduler was asked for, or it is too big."""
    import dask

    if dask.config.get("scheduler", None) not in (None, "dask.distributed", "distributed"):
        return None  # another scheduler was asked for (a warm-up's "sync" in a task)
    try:
        from distributed import default_client
        client = default_client()
    except (ImportError, ValueError):  # no distributed cluster: nothing to keep them in
        return None
    workers = client.scheduler_info(n_workers=-1)["workers"]
    limits = [w.get("memory_limit") or 0 for w in workers.values()]
    if not limits or 0 in limits or X.nbytes > fraction * sum(limits):
        return None
    from distributed import futures_of, wait

    X = client.persist(X)
    parts = list(X.to_delayed().ravel())
    futures = futures_of(X)
    wait(futures)
    by_key = {f.key: f for f in futures}
    who_has = client.who_has(futures)
    placement: dict[str, list[int]] = {}
    for i, part in enumerate(parts):
        if sizes[i] > 0:
            # (a block nobody is known to hold goes to a worker that will fetch it)
            holders = sorted(who_has.get(part.key) or [min(workers)])
            placement.setdefault(holders[0], []).append(i)
    return KeptBlocks(client, X, parts, [by_key[part.key] for part in parts], placement)


class MemberBlocks(FiniteCheck):
    """The blocks one member of a worker group holds. Its ``map_reduce`` combines over all
    members: this member's blocks (side by side on the worker's ``threads``), then every
    member's part (an allgather), so each member gets the same result."""

    in_memory = False

    def __init__(self, group, blocks, offsets, n: int, check: str | None = None,
                 threads: int = 1):
        self.group = group
        self.parts = [np.ascontiguousarray(b) for b in blocks]
        self.offsets = list(offsets)
        self.n = n
        self.dtype = self.parts[0].dtype
        self.d = int(self.parts[0].shape[1])
        self._check = check
        threads = min(threads, len(self.parts))
        self._pool = ThreadPoolExecutor(threads) if threads > 1 else None

    def map_reduce(self, chunk, combine, *args):
        chunk = self._next_chunk(chunk)
        if self._pool is None:
            mine = []
            for b, o in zip(self.parts, self.offsets, strict=True):
                mine.append(chunk(b, o, *args))
                _yield_core()  # the worker's event loop may take peers' messages meanwhile
        else:  # the kernels release the GIL
            mine = list(self._pool.map(lambda b, o: chunk(b, o, *args), self.parts,
                                       self.offsets))
        return combine(self.group.allgather(combine(mine)))

    def rows(self, idx: np.ndarray) -> np.ndarray:
        """The rows at global indices ``idx`` (from whichever members hold them), on every
        member."""
        idx = np.asarray(idx, dtype=np.int64)
        mine = []
        for b, o in zip(self.parts, self.offsets, strict=True):
            at = np.flatnonzero((idx >= o) & (idx < o + b.shape[0]))
            mine.append((at, b[idx[at] - o]))
        out = np.empty((idx.shape[0], self.d), dtype=self.dtype)
        for theirs in self.group.allgather(mine):
            for at, rows in theirs:
                out[at] = rows
        return out

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()


def _on_member(group, blocks, offsets, n, func, check, *args):
    from distributed import get_worker

    member_blocks = MemberBlocks(group, blocks, offsets, n, check, get_worker().state.nthreads)
    try:
        return func(member_blocks, *args)
    finally:
        member_blocks.close()
