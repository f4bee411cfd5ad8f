"""Per-chunk statistics of arrays: count, NaN count, min and max per column of each row block.

Like Parquet's row-group statistics: a step that needs the data's range (describe's histogram,
aggregate2d's extent) takes it from them and reads no data for it.

- Arrays hpcjobs writes (``hpcjobs ingest``, chunked step outputs, small outputs) get them at
  write time, in ``<array>/.hpcjobs-stats.npz`` beside the chunks (zarr ignores the file).
- An input without them (written by someone else) gets them on a job's first pass over it, in
  a sidecar under ``$XDG_CACHE_HOME/hpcjobs/chunk-stats/``: hpcjobs never writes into a user's
  input without being asked.

A row block is one stored object along the rows (a shard where the array is sharded, else a
chunk), across all columns. Each block's entry keeps the size and modification time of the
files that store it, and is trusted only while they are unchanged: statistics never describe
data that was rewritten since.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hpcjobs.kernels.stats.extremes import COUNT, MAX, MIN, NAN, column_extremes, merge_extremes

STATS_FILE = ".hpcjobs-stats.npz"
VERSION = 1


@dataclass(frozen=True)
class ChunkStats:
    """Statistics of an array of ``shape`` stored in row blocks of ``block_rows`` rows.

    ``extremes`` is ``(blocks, 4, columns)``: per block the rows of
    :func:`hpcjobs.kernels.stats.extremes.column_extremes`; ``fingerprints`` ``(blocks, 2)``
    the summed size and the latest modification time (ns) of each block's files.
    """

    shape: tuple[int, ...]
    block_rows: int
    extremes: np.ndarray
    fingerprints: np.ndarray

    @property
    def columns(self) -> int:
        return self.extremes.shape[2]

    def total(self) -> np.ndarray:
        """``(4, columns)``: the extremes of the whole array."""
        return merge_extremes(self.extremes)

    def column_range(self, column: int = 0) -> tuple[float, float, int, int]:
        """``(min, max, count, nan_count)`` of one column over the whole array."""
        t = self.total()
        return (float(t[MIN, column]), float(t[MAX, column]), int(t[COUNT, column]),
                int(t[NAN, column]))


# ---------------------------------------------------------------------------------------------
# the array's layout


def _layout(array) -> tuple[int, int, tuple[int, ...]]:
    """``(block_rows, blocks, grid_tail)``: rows per stored row block, their number, and the
    number of stored objects along the other axes."""
    shards = getattr(array, "shards", None)
    block = tuple(shards or array.chunks)
    shape = tuple(array.shape)
    if not shape:
        return 1, 1, ()
    blocks = -(-shape[0] // block[0]) if shape[0] else 0
    tail = tuple(-(-s // b) if s else 0 for s, b in zip(shape[1:], block[1:], strict=True))
    return int(block[0]), int(blocks), tail


def _fingerprint(array_path: Path, array, row_block: int, tail: tuple[int, ...]) -> tuple[int, int]:
    size = mtime = 0
    for rest in np.ndindex(*tail):
        key = array.metadata.encode_chunk_key((row_block, *rest))
        try:
            st = os.stat(array_path / key)
        except FileNotFoundError:
            continue
        size += st.st_size
        mtime = max(mtime, st.st_mtime_ns)
    return size, mtime


def fingerprints(array_path: str | os.PathLike, array=None) -> np.ndarray:
    """``(blocks, 2)`` int64: each row block's file size and modification time, now."""
    import zarr

    array_path = Path(array_path)
    array = array if array is not None else zarr.open_array(str(array_path), mode="r")
    _, blocks, tail = _layout(array)
    return np.array([_fingerprint(array_path, array, b, tail) for b in range(blocks)],
                    dtype=np.int64).reshape(blocks, 2)


# ---------------------------------------------------------------------------------------------
# where they are kept


def sidecar_path(array_path: str | os.PathLike) -> Path:
    """The cache file for an input array's statistics (keyed by its resolved path)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    key = hashlib.sha256(str(Path(array_path).resolve()).encode()).hexdigest()[:24]
    return Path(base, "hpcjobs", "chunk-stats", f"{key}.npz")


def _write_npz(path: Path, stats: ChunkStats) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".stats-", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, version=VERSION, shape=np.array(stats.shape, dtype=np.int64),
                     block_rows=stats.block_rows, extremes=stats.extremes,
                     fingerprints=stats.fingerprints)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _read_npz(path: Path) -> ChunkStats | None:
    try:
        with np.load(path) as z:
            if int(z["version"]) != VERSION:
                return None
            return ChunkStats(tuple(int(s) for s in z["shape"]), int(z["block_rows"]),
                              z["extremes"], z["fingerprints"])
    except (OSError, KeyError, ValueError):
        return None


def save(array_path: str | os.PathLike, stats: ChunkStats, *, sidecar: bool = False) -> Path:
    """Keep ``stats`` in the array's folder (an array hpcjobs wrote) or, with ``sidecar``,
    in the user's cache (anyone else's array)."""
    path = sidecar_path(array_path) if sidecar else Path(array_path, STATS_FILE)
    _write_npz(path, stats)
    return path


def load(array_path: str | os.PathLike) -> ChunkStats | None:
    """The statistics of the array at ``array_path`` if every row block's are recorded and
    its files are unchanged since; else None."""
    import zarr

    array_path = Path(array_path)
    try:
        array = zarr.open_array(str(array_path), mode="r")
    except Exception:  # noqa: BLE001 - no array, no statistics
        return None
    if array.dtype.kind not in "fiub" or len(array.shape) not in (1, 2):
        return None
    block_rows, blocks, _ = _layout(array)
    now = None
    for path in (array_path / STATS_FILE, sidecar_path(array_path)):
        stats = _read_npz(path) if path.is_file() else None
        if stats is None or stats.shape != tuple(array.shape) or stats.block_rows != block_rows \
                or stats.extremes.shape[0] != blocks:
            continue
        now = fingerprints(array_path, array) if now is None else now
        if np.array_equal(now, stats.fingerprints):
            return stats
    return None


# ---------------------------------------------------------------------------------------------
# recording them


def of_blocks(array_path: str | os.PathLike, extremes) -> ChunkStats:
    """Statistics from each row block's extremes (in block order), fingerprinted now: call
    it once the blocks are written."""
    import zarr

    array = zarr.open_array(str(array_path), mode="r")
    block_rows, blocks, _ = _layout(array)
    extremes = np.asarray(extremes, dtype=np.float64)
    if extremes.shape[0] != blocks:
        raise ValueError(f"{array_path}: {extremes.shape[0]} blocks' statistics for "
                         f"{blocks} row blocks")
    return ChunkStats(tuple(array.shape), block_rows, extremes,
                      fingerprints(array_path, array))


def record_whole(array_path: str | os.PathLike, values: np.ndarray) -> None:
    """Record the statistics of an array just written from ``values`` (numeric, 1-D or 2-D)."""
    values = np.asarray(values)
    if values.dtype.kind not in "fiub" or values.ndim not in (1, 2) or not values.size:
        return
    import zarr

    block_rows, blocks, _ = _layout(zarr.open_array(str(array_path), mode="r"))
    parts = [column_extremes(values[b * block_rows:(b + 1) * block_rows])
             for b in range(blocks)]
    save(array_path, of_blocks(array_path, parts))


class Recorder:
    """Collects the extremes of row blocks as they are written (ingest, step outputs) and
    saves them once all are: ``add(block_index, rows)`` after each write, then ``save()``."""

    def __init__(self, columns: int):
        self.columns = columns
        self.parts: dict[int, np.ndarray] = {}

    def add(self, block_index: int, rows: np.ndarray) -> None:
        rows = np.asarray(rows)
        if rows.dtype.kind not in "fiub" or rows.ndim not in (1, 2):
            return
        part = column_extremes(rows)
        if block_index in self.parts:  # a block written in pieces
            part = merge_extremes([self.parts[block_index], part])
        self.parts[block_index] = part

    def save(self, array_path: str | os.PathLike) -> Path | None:
        """Save them if every row block of the array was seen; else save nothing."""
        import zarr

        _, blocks, _ = _layout(zarr.open_array(str(array_path), mode="r"))
        if not self.parts or sorted(self.parts) != list(range(blocks)):
            return None
        return save(array_path, of_blocks(array_path, [self.parts[b] for b in range(blocks)]))


def from_markers(array_path: str | os.PathLike, marker_dir: str = ".done") -> Path | None:
    """Save the statistics that each block's completion marker holds (as
    ``hpcjobs.zarrio.store_block`` writes them) once every row block has one; arrays cut
    into several blocks across their columns are left without."""
    import json

    import zarr

    array_path = Path(array_path)
    array = zarr.open_array(str(array_path), mode="r")
    _, blocks, tail = _layout(array)
    if any(t > 1 for t in tail) or array.dtype.kind not in "fiub":
        return None
    suffix = "" if len(array.shape) == 1 else ".0"
    parts = []
    for b in range(blocks):
        try:
            text = (array_path / marker_dir / f"{b}{suffix}").read_text()
            parts.append(np.asarray(json.loads(text), dtype=np.float64))
        except (OSError, ValueError):
            return None
    return save(array_path, of_blocks(array_path, parts)) if parts else None


def empty_block(columns: int) -> np.ndarray:
    """The extremes of a block with no rows."""
    out = np.zeros((4, columns))
    out[MIN], out[MAX] = np.inf, -np.inf
    return out
