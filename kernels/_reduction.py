"""The kernels' one reduction layer: a kernel states chunk / combine / finalise, and gets its
NumPy path, its Dask path and a pass shared with other kernels from them.

A kernel that summarises its inputs row block by row block (describe, aggregate2d, the
per-chunk statistics, ...) is a :class:`Reduction`:

- ``chunk(*blocks) -> bases``: the mergeable summary of one row block of every input (the
  inputs are row-aligned: block ``i`` of each holds the same rows);
- ``combine(list_of_bases) -> bases``: the summary of the union of those rows;
- ``finalize(bases) -> result``: the kernel's result.

A chunk function that needs to know where its rows sit (k-means's seeding draws a number per
global row) is declared with ``row_offsets=True`` and called as ``chunk(*blocks, offset)``,
``offset`` being the global index of the block's first row.

From these three functions come

- the NumPy path, :meth:`Reduction.compute` on NumPy inputs: ``finalize(chunk(*inputs))``
  (the chunk function threads inside with Numba);
- the Dask path, :meth:`Reduction.compute` on Dask inputs: one task per row block, a tree
  of combines of fan-in ``split_every``, one finalise;
- the shared pass, :func:`compute_all`: several reductions in one Dask graph, with **one task
  per row block for all of them** where their inputs have the same row blocks: each block
  is read and decoded once (its tasks are shared), and every reduction's chunk function runs
  on it in the same task, on the same worker, while it is in the cache. This is how a job
  whose steps read the same input makes one pass over it.

As datashader's reductions do, the bases are small (a few arrays), so moving them between
workers costs nothing next to the data.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hpcjobs.kernels._validation import is_dask


def as_is(bases):
    """The ``finalize`` of a reduction whose result is its combined bases."""
    return bases


@dataclass(frozen=True)
class Reduction:
    """``finalize(combine(chunk(*blocks) for each row block))`` over row-aligned ``inputs``.

    ``inputs`` are NumPy or Dask arrays with the same number of rows (``None`` passes
    through to ``chunk`` as ``None``); 2-D Dask inputs are read in whole rows.
    ``row_offsets``: ``chunk`` also takes the global index of the block's first row, last.
    """

    name: str
    inputs: tuple
    chunk: Callable[..., Any]
    combine: Callable[[list], Any]
    finalize: Callable[[Any], Any]
    split_every: int = 8
    row_offsets: bool = False

    def compute(self):
        """The result, computed now (one pass over Dask inputs)."""
        if not any(is_dask(a) for a in self.inputs):
            return self.finalize(self.chunk(*self.inputs, *((0,) if self.row_offsets else ())))
        return compute_all([self])[0]


def compute_all(reductions: Sequence[Reduction], **compute_kwargs) -> list:
    """The results of several reductions from one Dask computation (one pass over inputs
    they share); ``compute_kwargs`` go to ``dask.compute``."""
    import dask

    return list(dask.compute(*to_delayed(reductions), **compute_kwargs))


def to_delayed(reductions: Sequence[Reduction]) -> list:
    """One ``dask.delayed`` object per reduction, all from one graph (see the module's
    docstring): compute them together, e.g. with ``client.compute``, for one pass."""
    from dask.base import tokenize
    from dask.delayed import Delayed
    from dask.highlevelgraph import HighLevelGraph

    prepared = [_row_blocks(r) for r in reductions]
    # reductions whose inputs have the same row blocks share one task per block
    groups: dict[tuple, list[int]] = {}
    for i, (_, rows) in enumerate(prepared):
        groups.setdefault(rows, []).append(i)
    dsk: dict = {}
    deps: list = []
    finals = [None] * len(reductions)
    for rows, members in groups.items():
        token = tokenize(*(reductions[i].name for i in members),
                         *(prepared[i][0] for i in members),
                         *(_fn_token(reductions[i]) for i in members))
        name = f"reduce-{'+'.join(reductions[i].name for i in members)}-{token}"
        keys_per_block = _block_keys([prepared[i][0] for i in members], len(rows))
        for arrays in (prepared[i][0] for i in members):
            deps.extend(a for a in arrays if is_dask(a))
        chunks = [reductions[i].chunk for i in members]
        wants = [reductions[i].row_offsets for i in members]
        offsets = np.concatenate([[0], np.cumsum(rows)[:-1]]).astype(np.int64)
        level = []
        for b, keys in enumerate(keys_per_block):
            dsk[(f"{name}-chunk", b)] = (_chunk_all, chunks, [len(k) for k in keys], wants,
                                         int(offsets[b]), *[key for k in keys for key in k])
            level.append((f"{name}-chunk", b))
        combines = [reductions[i].combine for i in members]
        fan_in = min(reductions[i].split_every for i in members)
        depth = 0
        while len(level) > 1:
            depth += 1
            merged = []
            for j, s in enumerate(range(0, len(level), fan_in)):
                dsk[(f"{name}-combine{depth}", j)] = (_combine_all, combines, level[s:s + fan_in])
                merged.append((f"{name}-combine{depth}", j))
            level = merged
        for pos, i in enumerate(members):
            key = f"{name}-{reductions[i].name}-{pos}"
            dsk[key] = (_finalize_one, reductions[i].finalize, level[0], pos)
            finals[i] = key
    layer = f"reduce-{tokenize(*finals)}"
    graph = HighLevelGraph.from_collections(layer, dsk, dependencies=_unique(deps))
    return [Delayed(key, graph, layer=layer) for key in finals]


# ---------------------------------------------------------------------------------------------
# the graph's pieces


def _chunk_all(chunks, arity, wants_offset, offset, *blocks):
    out, pos = [], 0
    for fn, n, want in zip(chunks, arity, wants_offset, strict=True):
        out.append(fn(*blocks[pos:pos + n], offset) if want else fn(*blocks[pos:pos + n]))
        pos += n
    return tuple(out)


def _combine_all(combines, parts):
    return tuple(fn([p[k] for p in parts]) for k, fn in enumerate(combines))


def _finalize_one(finalize, bases, pos):
    return finalize(bases[pos])


def _row_blocks(r: Reduction) -> tuple[tuple, tuple]:
    """The reduction's inputs as Dask arrays with whole rows per block and the row chunks of
    its first Dask input; NumPy inputs (and ``None``) ride along, cut to those rows."""
    import dask.array as da

    first = next(a for a in r.inputs if is_dask(a))
    rows = first.chunks[0]
    arrays = []
    for a in r.inputs:
        if a is None:
            arrays.append(None)
            continue
        a = a if is_dask(a) else da.from_array(np.asarray(a), chunks=(rows,) + np.shape(a)[1:])
        want = (rows,) + tuple((s,) for s in a.shape[1:])
        if a.chunks != want:
            a = a.rechunk(want)
        arrays.append(a)
    return tuple(arrays), tuple(rows)


def _block_keys(input_sets: list[tuple], blocks: int) -> list[list[list]]:
    """Per row block, per reduction, the keys (or None) of its inputs' blocks."""
    out = []
    for b in range(blocks):
        per = []
        for arrays in input_sets:
            per.append([None if a is None else (a.name, b) + (0,) * (a.ndim - 1)
                        for a in arrays])
        out.append(per)
    return out


def _fn_token(r: Reduction) -> str:
    from dask.base import tokenize

    return tokenize(r.chunk, r.combine, r.finalize, r.split_every, r.row_offsets)


def _unique(collections: list) -> list:
    seen, out = set(), []
    for c in collections:
        if c.name not in seen:
            seen.add(c.name)
            out.append(c)
    return out
