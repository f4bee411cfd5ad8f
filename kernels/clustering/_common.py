"""Shared pieces of the clustering kernels: row blocks of NumPy or Dask arrays, hashed
uniform numbers, thread ranges.

``Blocks`` runs one pass over the data as *chunk -> tree combine*, a
:class:`~hpcjobs.kernels._reduction.Reduction` of the kernels' one reduction layer: on a
NumPy array the chunk function is called once on the whole array (it is itself
thread-parallel); on a Dask array every row block becomes one task, combined in a tree of
fan-in 8 and computed with ``dask.compute`` on whatever scheduler is active (a kernel never
creates a cluster).
Blocks kept in a distributed cluster's memory can instead host a whole iterative kernel:
``Blocks.run_ranks`` runs it on the workers that hold them, each seeing its own blocks as a
``RankBlocks``, whose passes combine over all workers by an allgather.

Random numbers that must not depend on the chunking (k-means|| and k-means++ sampling) come
from a counter-based generator: ``uniform(key, i)`` hashes the global row index ``i`` with a
key drawn from the user's seed (splitmix64), so row ``i`` draws the same number whichever
chunk it sits in.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import numpy as np

from hpcjobs.kernels._jit import njit
from hpcjobs.kernels._reduction import Reduction
from hpcjobs.kernels._validation import is_dask

#: give the core to another thread ready to run on it (a rank's kernels never block, so the
#: worker's event loop would wait for the end of the rank's time slice)
_yield_core = getattr(os, "sched_yield", lambda: None)

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


@njit
def splitmix64(z):
    """The splitmix64 finaliser of ``z`` (uint64)."""
    z = z + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


@njit
def uniform(key, i):
    """A uniform number in (0, 1) for row ``i`` under ``key`` (both uint64-able)."""
    z = splitmix64(np.uint64(key) ^ splitmix64(np.uint64(i)))
    return ((z >> np.uint64(11)) + 0.5) * (1.0 / 9007199254740992.0)


@njit
def uniforms(key, offset, n):
    out = np.empty(n)
    for i in range(n):
        out[i] = uniform(key, offset + i)
    return out


@njit
def all_finite(X):
    for i in range(X.shape[0]):
        for j in range(X.shape[1]):
            x = X[i, j]
            if not (x - x == 0):  # NaN and +-inf
                return False
    return True


def new_key(rng: np.random.Generator) -> np.uint64:
    return np.uint64(rng.integers(0, 2**63 - 1, dtype=np.int64))


def _checked(chunk, func, block, offset, *args):
    """``chunk(block, offset, *args)`` after checking ``block`` for NaN and inf."""
    from hpcjobs.kernels._validation import nonfinite_error

    block = np.ascontiguousarray(block)
    if not all_finite(block):
        raise nonfinite_error("X", func)
    return chunk(block, offset, *args)


class _FiniteCheck:
    """The "check the next pass for NaN/inf" switch that both kinds of blocks share."""

    _check: str | None = None

    def check_finite_next(self, func: str) -> None:
        """Have the next pass also check every chunk for NaN/inf (the data is not checked up
        front), raising the error of ``func``."""
        self._check = func

    def _take_check(self):
        func, self._check = self._check, None
        return func

    def _next_chunk(self, chunk):
        """``chunk``, checking its block first if a check was asked for (once)."""
        func = self._take_check()
        if func is None:
            return chunk
        import functools

        return functools.partial(_checked, chunk, func)


def known_rows(X):
    """A Dask array with unknown chunk sizes (e.g. after a boolean mask) gets them computed."""
    if is_dask(X) and any(np.isnan(c) for c in X.chunks[0]):
        X = X.compute_chunk_sizes()
    return X


class Blocks(_FiniteCheck):
    """The row blocks of a 2-D NumPy or Dask array, for chunk -> combine passes.

    ``map_reduce(chunk, combine, *args)`` returns ``combine([chunk(block, offset, *args), ...])``
    where ``offset`` is the global index of the block's first row.
    """

    def __init__(self, X, split_every: int = 8):
        self.X = X
        self.n, self.d = int(X.shape[0]), int(X.shape[1])
        self.dtype = X.dtype
        self.split_every = split_every
        self.is_dask = is_dask(X)
        self.in_memory = not self.is_dask  # one NumPy array: statistics need no pass
        if self.is_dask:
            if len(X.chunks[1]) > 1:
                X = X.rechunk({1: -1})
            if 0 in X.chunks[0] and X.shape[0]:  # a chunk function never sees an empty block
                X = X.rechunk(((*(c for c in X.chunks[0] if c),), X.chunks[1]))
            self.X = X
            self.parts = list(X.to_delayed().ravel())
            self.sizes = np.array(X.chunks[0], dtype=np.int64)
        else:
            self.parts = [X]
            self.sizes = np.array([X.shape[0]], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).astype(np.int64)
        #: once kept: the indices of the blocks each worker holds, by worker address
        self.placement: dict[str, list[int]] | None = None

    def keep_in_memory(self, fraction: float = 0.5) -> bool:
        """Hold the blocks in the distributed cluster's memory for an iterative algorithm
        (every later pass reads them from there, not from the source, and the scheduler has
        no loading tasks to run again) when they take at most ``fraction`` of the workers'
        memory limits; else each pass streams them from the source. True when kept: then
        ``placement`` says which worker holds which blocks, for :meth:`run_ranks`."""
        if not self.is_dask:
            return False
        import dask

        if dask.config.get("scheduler", None) not in (None, "dask.distributed", "distributed"):
            return False  # another scheduler was asked for (a warm-up's "sync" in a task)
        try:
            from distributed import default_client
            client = default_client()
        except (ImportError, ValueError):  # no distributed cluster: nothing to keep them in
            return False
        workers = client.scheduler_info(n_workers=-1)["workers"]
        limits = [w.get("memory_limit") or 0 for w in workers.values()]
        if not limits or 0 in limits or self.X.nbytes > fraction * sum(limits):
            return False
        from distributed import futures_of, wait

        self.X = client.persist(self.X)
        self.parts = list(self.X.to_delayed().ravel())
        futures = futures_of(self.X)
        wait(futures)
        by_key = {f.key: f for f in futures}
        self._futures = [by_key[part.key] for part in self.parts]
        who_has = client.who_has(futures)
        groups: dict[str, list[int]] = {}
        for i, part in enumerate(self.parts):
            if self.sizes[i] > 0:
                # (a block nobody is known to hold goes to a worker that will fetch it)
                holders = sorted(who_has.get(part.key) or [min(workers)])
                groups.setdefault(holders[0], []).append(i)
        self.placement = groups
        self._client = client
        return True

    @property
    def n_blocks(self) -> int:
        return len(self.parts)

    def map_reduce(self, chunk, combine, *args):
        if not self.is_dask:
            return combine([chunk(self.parts[0], 0, *args)])
        name = getattr(chunk, "__name__", "blocks").strip("_").replace("_", "-")
        return Reduction(name, (self.X,), partial(_block_pass, self._next_chunk(chunk), args),
                         combine, _same, split_every=self.split_every,
                         row_offsets=True).compute()

    def run_ranks(self, func, *args) -> list:
        """``func(RankBlocks, *args)`` on every worker that holds kept blocks, all at once,
        with the worker's own blocks (see ``hpcjobs.kernels._collective``): an iterative
        kernel's whole loop runs there, with no scheduler round trip per pass. Returns the
        futures of the results, in rank order."""
        from hpcjobs.kernels._collective import run_ranks

        return run_ranks(self._client, self.placement, self._futures, self.offsets,
                         _on_rank, self.n, func, self._take_check(), *args)

    def rows(self, idx: np.ndarray) -> np.ndarray:
        """The rows at sorted global indices ``idx`` as a NumPy array."""
        idx = np.asarray(idx, dtype=np.int64)
        if not self.is_dask:
            return np.ascontiguousarray(self.X[idx])
        import dask

        order = np.argsort(idx, kind="stable")
        (rows,) = dask.compute(self.X[idx[order]])
        out = np.empty_like(rows)
        out[order] = rows
        return np.ascontiguousarray(out)


class RankBlocks(_FiniteCheck):
    """The blocks one rank of :meth:`Blocks.run_ranks` holds. Its ``map_reduce`` combines
    over all ranks: this rank's blocks (side by side on the worker's ``threads``), then
    every rank's part (an allgather), so each rank gets the same result."""

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
        """The rows at global indices ``idx`` (from whichever ranks hold them), on every rank."""
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


def _block_pass(chunk, args, block, offset):
    return chunk(block, offset, *args)


def _same(bases):
    return bases


def _on_rank(group, blocks, offsets, n, func, check, *args):
    from distributed import get_worker

    rank_blocks = RankBlocks(group, blocks, offsets, n, check, get_worker().state.nthreads)
    try:
        return func(rank_blocks, *args)
    finally:
        rank_blocks.close()
