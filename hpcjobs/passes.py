"""One pass over the input for the steps of a job that share it.

A step whose kernel is a set of reductions (``KernelSpec.plan``: describe, aggregate2d, ...)
does not compute on its own: the runner collects the plans of consecutive such steps and
computes their reductions in one Dask graph (``hpcjobs.kernels._reduction``), so each input
chunk is read and decoded once and every step's chunk function runs on it.

What the data's range would cost a pass for comes from the inputs' per-chunk statistics
(``hpcjobs.chunkstats``): a step told the extents of its inputs needs no range pass. An input
without statistics gets them in the first pass that reads it (a sidecar in the user's cache:
the input itself is not touched); if a step needs them before it can plan, that is one pass
of statistics alone, and later jobs read none.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hpcjobs import chunkstats
from hpcjobs.kernels._reduction import Reduction, as_is
from hpcjobs.kernels.stats.extremes import column_extremes, merge_extremes


@dataclass
class Plan:
    """A step as reductions: ``outputs(results)`` turns their results (in order) into the
    step's ``(outputs, attrs)``, as an adapter returns them: port name -> value, and the
    step's attributes."""

    reductions: list[Reduction]
    outputs: Callable[[list], tuple[dict, dict]]


@dataclass(frozen=True)
class Source:
    """Where a step's input port reads: the array's folder and the index applied to it."""

    path: Path
    index: tuple | None
    under_input: bool


@dataclass
class Extents:
    """The per-column extents (rows of ``column_extremes``) of step inputs, from statistics."""

    known: dict[Path, chunkstats.ChunkStats] = field(default_factory=dict)

    def of(self, source: Source) -> np.ndarray | None:
        """``(4, columns)`` extents of what ``source`` selects; None when its statistics are
        unknown or the index selects rows (then the statistics do not describe it)."""
        stats = self.known.get(source.path)
        if stats is None:
            return None
        cols = _columns(source.index, len(stats.shape))
        if cols is None:
            return None
        total = stats.total()
        return total[:, cols] if not isinstance(cols, int) else total[:, [cols]]


def _columns(index: tuple | None, ndim: int):
    """The columns an index selects when it keeps every row (else None)."""
    if index is None:
        return slice(None)
    if not index or index[0] != slice(None) or len(index) > ndim:
        return None
    if ndim == 1 or len(index) == 1:
        return slice(None)
    col = index[1]
    return col if isinstance(col, int | slice) else None


def selects_columns(source: Source) -> bool:
    """Whether ``source`` reads whole columns of a numeric 1-D or 2-D array (then its
    statistics describe what it reads)."""
    return _columns(source.index, 2 if source.index is None else max(len(source.index), 1)) \
        is not None


def load_extents(sources) -> tuple[Extents, list[Source]]:
    """The statistics recorded for ``sources``, and the sources that have none."""
    ext, missing = Extents(), []
    for src in sources:
        if src.path in ext.known or src in missing:
            continue
        stats = chunkstats.load(src.path)
        if stats is None:
            missing.append(src)
        else:
            ext.known[src.path] = stats
    return ext, missing


# ---------------------------------------------------------------------------------------------
# statistics gathered in a pass


def stats_reduction(array) -> Reduction:
    """The per-block extremes of a Dask array (in block order), for :func:`keep_stats`."""
    return Reduction("chunk-stats", (array,), _block_extremes, _concat, as_is)


def _block_extremes(block: np.ndarray) -> np.ndarray:
    return column_extremes(block)[None]


def _concat(parts: list) -> np.ndarray:
    return np.concatenate(parts)


def keep_stats(source: Source, array, per_block: np.ndarray) -> chunkstats.ChunkStats:
    """The statistics a pass found for ``source``'s array (``array``: the Dask array it read,
    whose blocks ``per_block`` describes), kept for later jobs where they tile its stored row
    blocks: a sidecar for inputs, in the array's folder for hpcjobs' own outputs."""
    import zarr

    z = zarr.open_array(str(source.path), mode="r")
    block_rows, blocks, _ = chunkstats._layout(z)
    sizes = np.asarray(array.chunks[0], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    owner = starts // block_rows
    if np.any((starts + np.maximum(sizes, 1) - 1) // block_rows != owner):
        # a Dask block across two stored blocks: good for this job, not kept
        return chunkstats.ChunkStats(tuple(z.shape), max(int(z.shape[0]), 1),
                                     merge_extremes(per_block)[None], np.zeros((1, 2), np.int64))
    parts = [chunkstats.empty_block(per_block.shape[2]) for _ in range(blocks)]
    for b, k in enumerate(owner):
        if sizes[b]:
            parts[k] = merge_extremes([parts[k], per_block[b]])
    stats = chunkstats.of_blocks(source.path, parts)
    with contextlib.suppress(OSError):  # a read-only place: the statistics serve this job
        chunkstats.save(source.path, stats, sidecar=source.under_input)
    return stats
