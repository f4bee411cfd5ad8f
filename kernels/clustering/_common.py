"""Shared pieces of the clustering kernels: row blocks of NumPy or Dask arrays, hashed
uniform numbers, thread ranges.

``Blocks`` runs one pass over the data as *chunk -> tree combine*, a
:class:`~hpcjobs.kernels._reduction.Reduction` of the kernels' one reduction layer: on a
NumPy array the chunk function is called once on the whole array (it is itself
thread-parallel); on a Dask array every row block becomes one task, combined in a tree of
fan-in 8 and computed with ``dask.compute`` on whatever scheduler is active (a kernel never
creates a cluster).
Blocks kept in a distributed cluster's memory can instead host a whole iterative kernel:
``Blocks.run_group`` runs it as a worker group (``hpcjobs.kernels._worker_group``) on the
workers that hold them, each member seeing its own blocks, whose passes combine over all
members by an allgather.

Random numbers that must not depend on the chunking (k-means|| and k-means++ sampling) come
from a counter-based generator: ``uniform(key, i)`` hashes the global row index ``i`` with a
key drawn from the user's seed (splitmix64), so row ``i`` draws the same number whichever
chunk it sits in.
"""

from __future__ import annotations

from functools import partial

import numpy as np

from hpcjobs.kernels._finite import FiniteCheck
from hpcjobs.kernels._jit import njit
from hpcjobs.kernels._reduction import Reduction, as_is
from hpcjobs.kernels._validation import is_dask

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


def new_key(rng: np.random.Generator) -> np.uint64:
    return np.uint64(rng.integers(0, 2**63 - 1, dtype=np.int64))


def known_rows(X):
    """A Dask array with unknown chunk sizes (e.g. after a boolean mask) gets them computed."""
    if is_dask(X) and any(np.isnan(c) for c in X.chunks[0]):
        X = X.compute_chunk_sizes()
    return X


class Blocks(FiniteCheck):
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
            # not optimised: a block's key must name the same task here as in the other
            # graphs of a run that use X (its reductions), or the scheduler sees one key
            # with two meanings (dask/dask#9888)
            self.parts = list(X.to_delayed(optimize_graph=False).ravel())
            self.sizes = np.array(X.chunks[0], dtype=np.int64)
        else:
            self.parts = [X]
            self.sizes = np.array([X.shape[0]], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).astype(np.int64)
        #: once kept in a distributed cluster's memory: where (see :meth:`keep_in_memory`)
        self.kept = None

    def keep_in_memory(self, fraction: float = 0.5) -> bool:
        """Hold the blocks in the distributed cluster's memory for an iterative algorithm
        (every later pass reads them from there, not from the source, and the scheduler has
        no loading tasks to run again) when they take at most ``fraction`` of the workers'
        memory limits; else each pass streams them from the source. True when kept: then
        ``kept`` says which worker holds which blocks, for :meth:`run_group`."""
        if not self.is_dask:
            return False
        from hpcjobs.kernels._worker_group import keep_blocks

        self.kept = keep_blocks(self.X, self.sizes, fraction)
        if self.kept is None:
            return False
        self.X, self.parts = self.kept.X, self.kept.parts
        return True

    @property
    def n_blocks(self) -> int:
        return len(self.parts)

    def map_reduce(self, chunk, combine, *args):
        if not self.is_dask:
            return combine([chunk(self.parts[0], 0, *args)])
        name = getattr(chunk, "__name__", "blocks").strip("_").replace("_", "-")
        return Reduction(name, (self.X,), partial(_block_pass, self._next_chunk(chunk), args),
                         combine, as_is, split_every=self.split_every,
                         row_offsets=True).compute()

    def run_group(self, func, *args) -> list:
        """``func(MemberBlocks, *args)`` on every worker that holds kept blocks, all at once,
        with the worker's own blocks (a worker group, see ``hpcjobs.kernels._worker_group``):
        an iterative kernel's whole loop runs there, with no scheduler round trip per pass.
        Returns the futures of the results, in member order."""
        return self.kept.run(self.offsets, self.n, func, self._take_check(), *args)

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


def _block_pass(chunk, args, block, offset):
    return chunk(block, offset, *args)
