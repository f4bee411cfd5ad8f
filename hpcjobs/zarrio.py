"""Zarr in and out: job inputs as Dask arrays, and resumable, chunk-by-chunk job outputs.

Output layout (design.md contract): one Zarr v3 group at the output path; one subgroup per
step, named after the step, holding the step's outputs as arrays (with ``dimension_names``
so ``xarray.open_zarr(path, group=step)`` reads them); the root group's attributes hold the
provenance and a ``status`` that becomes ``"complete"`` only after everything else is
written: an interrupted run never looks complete.

Chunked outputs record each finished chunk with a marker file inside the array's folder
(``<array>/.done/<i.j>``), written after the chunk itself: a resumed run computes only the
chunks without a marker.

Every array hpcjobs writes (outputs, ``hpcjobs ingest``, the quickstart's data) is created by
:func:`create_array`, whose codecs end with a CRC-32C checksum of each stored chunk: a flipped
bit on disk fails the read of that chunk instead of coming back as data, and ``hpcjobs
verify`` finds it.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from hpcjobs.errors import OutputExistsError, UserError

DONE_DIR = ".done"
STATUS_COMPLETE = "complete"


def create_array(group, name: str, **kwargs):
    """``group.create_array(name, ...)`` with hpcjobs' codecs: zarr's default compressor
    (Zstandard, level 0) followed by a CRC-32C checksum of the stored bytes."""
    from zarr.codecs import Crc32cCodec, ZstdCodec

    return group.create_array(name, compressors=(ZstdCodec(level=0), Crc32cCodec()), **kwargs)


def chunk_intact(array_path: str | os.PathLike, index: tuple[int, ...] | str) -> bool:
    """Whether the stored chunk ``index`` (``(i, j)`` or ``"i.j"``) of the array at
    ``array_path`` matches its CRC-32C, checked on the stored bytes (nothing is decoded).

    A chunk that was never written (all fill value) has nothing to check and is intact.
    """
    import google_crc32c

    if isinstance(index, str):
        index = tuple(int(i) for i in index.split(".")) if index else ()
    path = Path(array_path, "c", *map(str, index)) if index else Path(array_path, "c")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return True
    if len(data) < 4:
        return False
    stored = int.from_bytes(data[-4:], "little")
    return google_crc32c.value(data[:-4]) == stored


def now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


# ---------------------------------------------------------------------------------------------
# inputs


def open_input_array(group_path: Path, name: str, index: tuple | None = None):
    """The input array ``name`` of the Zarr group at ``group_path`` as a Dask array."""
    import dask.array as da
    import zarr

    arr = zarr.open_array(str(group_path / name), mode="r")
    x = da.from_zarr(arr)
    return x[index] if index is not None else x


def open_transactions(group_path: Path, name: str) -> dict:
    """A transactions group (CSR: indptr, items, labels) as a dict of Dask/NumPy arrays."""
    import dask.array as da
    import zarr

    g = zarr.open_group(str(group_path / name), mode="r")
    labels = np.asarray(g["labels"][:]).astype(str) if "labels" in g else None
    return {"indptr": da.from_zarr(g["indptr"]), "items": da.from_zarr(g["items"]),
            "labels": labels}


# ---------------------------------------------------------------------------------------------
# outputs


class OutputGroup:
    """The result group of one job at ``path``: creation, resume checks, steps and provenance."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._group = None

    # -- lifecycle ------------------------------------------------------------------------

    def prepare(self, mode: str, fingerprint: str) -> bool:
        """Get the output ready for ``mode`` ("new", "resume", "overwrite").

        Returns True if the output was created by this call (a fresh run), False when an
        earlier partial output is resumed. Raises ``OutputExistsError`` rather than touch an
        existing output without ``--resume``/``--overwrite``.
        """
        import zarr

        exists = self.path.exists()
        if exists and mode == "new":
            raise OutputExistsError(
                f"output {self.path} already exists; use --resume to finish it or --overwrite "
                "to replace it")
        if exists and mode == "resume":
            try:
                self._group = zarr.open_group(str(self.path), mode="r+")
            except Exception:  # noqa: BLE001
                raise OutputExistsError(f"output {self.path} exists but is not a Zarr group made "
                                        "by hpcjobs; use --overwrite to replace it") from None
            found = self._group.attrs.get("fingerprint")
            if found != fingerprint:
                raise OutputExistsError(
                    f"output {self.path} was made by a different job (inputs, steps or "
                    "parameters changed); use --overwrite to replace it")
            return False
        if exists:  # overwrite
            self.remove()
        parent = self.path.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot create the output folder {parent}: {exc.strerror}") from None
        if not os.access(parent, os.W_OK):
            raise UserError(f"output folder {parent} is not writable")
        self._group = zarr.open_group(str(self.path), mode="w-", zarr_format=3)
        return True

    def remove(self) -> None:
        if self.path.is_dir():
            shutil.rmtree(self.path)
        elif self.path.exists():
            self.path.unlink()

    @property
    def group(self):
        if self._group is None:
            import zarr

            self._group = zarr.open_group(str(self.path), mode="r+")
        return self._group

    # -- attributes -----------------------------------------------------------------------

    @property
    def attrs(self) -> dict:
        return dict(self.group.attrs)

    def update_attrs(self, **values: Any) -> None:
        self.group.attrs.update(_jsonable(values))

    def is_complete(self) -> bool:
        return self.attrs.get("status") == STATUS_COMPLETE

    # -- steps ----------------------------------------------------------------------------

    def step_group(self, name: str):
        import zarr

        if name in self.group:
            return zarr.open_group(str(self.path / name), mode="r+")
        return self.group.create_group(name)

    def step_complete(self, name: str) -> bool:
        return name in self.group and self.step_group(name).attrs.get("status") == STATUS_COMPLETE

    def write_whole(self, step: str, name: str, value, dims: tuple[str, ...] | None) -> None:
        """Write a small output (NumPy array, scalar or strings) in one go."""
        g = self.step_group(step)
        arr = np.asarray(value)
        if arr.dtype.kind in "OUT":
            arr = arr.astype(str)
        dims = _dims_for(dims, arr.ndim)
        chunks = arr.shape if arr.ndim else ()
        if any(s == 0 for s in arr.shape):
            chunks = tuple(max(1, s) for s in arr.shape)
        z = create_array(g, name, shape=arr.shape, dtype=arr.dtype if arr.dtype.kind != "U"
                         else str, chunks=chunks, dimension_names=dims, overwrite=True)
        if arr.size:
            z[...] = arr
            from hpcjobs import chunkstats

            chunkstats.record_whole(self.path / step / name, arr)

    def prepare_chunked(self, step: str, name: str, x, dims: tuple[str, ...] | None):
        """Create (or reopen on resume) the Zarr array for Dask output ``x``.

        Returns ``(zarr_path, done)``: the array's path and the set of finished chunk keys.
        """
        g = self.step_group(step)
        path = self.path / step / name
        chunks = tuple(c[0] for c in x.chunks)
        if name in g:
            z = g[name]
            if tuple(z.shape) == tuple(x.shape) and tuple(z.chunks) == chunks and \
                    z.dtype == x.dtype:
                done_dir = path / DONE_DIR
                done = set(os.listdir(done_dir)) if done_dir.is_dir() else set()
                if has_checksum(z):  # a finished chunk that rotted since is done again
                    done = {key for key in done if chunk_intact(path, key)}
                return path, done
        create_array(g, name, shape=x.shape, dtype=x.dtype, chunks=chunks,
                     dimension_names=_dims_for(dims, x.ndim), overwrite=True)
        (path / DONE_DIR).mkdir(exist_ok=True)
        return path, set()


def has_checksum(array) -> bool:
    """Whether the array's last codec is a CRC-32C of the stored bytes (as
    :func:`create_array` makes them): then :func:`chunk_intact` can check a chunk."""
    codecs = getattr(array.metadata, "codecs", ()) or ()
    return bool(codecs) and "crc32c" in type(codecs[-1]).__name__.lower()


def store_block(block: np.ndarray, path: str, block_info=None):
    """Write one computed block into the Zarr array at ``path``, then its marker.

    Runs on a worker. The marker is written after the data, so a block interrupted half-way
    is recomputed on resume.
    """
    import zarr

    loc = block_info[0]["array-location"]
    key = ".".join(str(i) for i in block_info[0]["chunk-location"])
    z = zarr.open_array(path, mode="r+")
    z[tuple(slice(a, b) for a, b in loc)] = block
    marker = os.path.join(path, DONE_DIR, key)
    with open(marker, "w") as f:  # the block's statistics (hpcjobs.chunkstats) ride along
        f.write(_block_stats(block))
    return np.zeros((1,) * block.ndim, dtype=np.int8)


def _block_stats(block: np.ndarray) -> str:
    if block.dtype.kind not in "fiub" or block.ndim not in (1, 2):
        return ""
    from hpcjobs.kernels.stats.extremes import column_extremes

    return json.dumps(column_extremes(block).tolist())


def regular_chunks(x):
    """Rechunk ``x`` so every chunk but the last along each axis has the same size (Zarr's rule)."""
    if any(np.isnan(c) for cs in x.chunks for c in cs):
        x = x.compute_chunk_sizes()
    want = []
    for cs in x.chunks:
        first = cs[0] if cs else 1
        want.append(first if all(c == first for c in cs[:-1]) and cs[-1] <= first else max(cs))
    if all(cs[:-1] == (w,) * (len(cs) - 1) and (not cs or cs[-1] <= w)
           for cs, w in zip(x.chunks, want, strict=True)):
        return x
    return x.rechunk(tuple(want))


def _dims_for(dims, ndim: int) -> list[str] | None:
    if dims is not None and len(dims) == ndim:
        return list(dims)
    return [f"dim_{i}" for i in range(ndim)] if ndim else None


def _jsonable(value):
    return json.loads(json.dumps(value, default=_default))


def _default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, tuple | set | frozenset):
        return list(obj)
    if isinstance(obj, slice):
        return f"{obj.start}:{obj.stop}:{obj.step}"
    return str(obj)
