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
verify`` finds it. The compressor is chosen for decode speed (Blosc LZ4, byte shuffle, level
1: :data:`CODECS`, measured by ``hpcjobs bench codecs``). ``hpcjobs ingest`` shards large
arrays (zarr v3 sharding: whole chunks along the rows in one file); step outputs are never
sharded, since parallel tasks write their blocks, and two writers of one shard would corrupt
it. Job inputs in these layouts are read by :func:`open_input_array`'s own tasks, straight
from the chunk files (:class:`StoredLayout`, :func:`read_chunk`).
"""

from __future__ import annotations

import datetime as _dt
import itertools
import json
import os
import shutil
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hpcjobs.errors import OutputExistsError, UserError

DONE_DIR = ".done"
STATUS_COMPLETE = "complete"


#: the codecs hpcjobs writes with (``hpcjobs ingest --codec NAME``): name -> compressor
#: settings; every one is followed by a CRC-32C of the stored chunk. Measured by
#: ``hpcjobs bench codecs`` (benchmarks/codecs.py), see docs/data.md.
CODECS: dict[str, dict | None] = {
    "blosc-lz4": {"id": "blosc", "cname": "lz4", "clevel": 1, "shuffle": "shuffle",
                  "blocksize": 0},
    # blocks of 1 MiB: twice the decode speed of Blosc's own choice at level 1
    "blosc-zstd": {"id": "blosc", "cname": "zstd", "clevel": 1, "shuffle": "shuffle",
                   "blocksize": 2**20},
    "zstd": {"id": "zstd", "level": 0},
    "none": None,
}
DEFAULT_CODEC = "blosc-lz4"


def compressors(codec: str = DEFAULT_CODEC) -> tuple:
    """The zarr ``compressors`` for the named codec of :data:`CODECS`, CRC-32C last."""
    if codec not in CODECS:
        raise UserError(f"unknown codec {codec!r}; choose one of {', '.join(CODECS)}")
    return compressors_of(CODECS[codec])


def compressors_of(spec: dict | None) -> tuple:
    """The zarr ``compressors`` for a codec described like the values of :data:`CODECS`
    (None: no compression), CRC-32C last."""
    from zarr.codecs import BloscCodec, Crc32cCodec, ZstdCodec

    if spec is None:
        return (Crc32cCodec(),)
    if spec["id"] == "zstd":
        return (ZstdCodec(level=spec["level"]), Crc32cCodec())
    # typesize left to zarr: it becomes the dtype's item size
    return (BloscCodec(cname=spec["cname"], clevel=spec["clevel"], shuffle=spec["shuffle"],
                       blocksize=spec.get("blocksize", 0)), Crc32cCodec())


def create_array(group, name: str, *, codec: str = DEFAULT_CODEC, **kwargs):
    """``group.create_array(name, ...)`` with hpcjobs' codecs: ``codec`` (one of
    :data:`CODECS`, default Blosc LZ4 with byte shuffle) followed by a CRC-32C checksum of
    the stored bytes. ``shards=(rows, ...)`` makes a sharded array whose inner chunks carry
    those codecs (the shard index has its own CRC-32C, zarr's default); the codec's name is
    in zarr's metadata (``zarr.json``)."""
    return group.create_array(name, compressors=compressors(codec), **kwargs)


def chunk_intact(array_path: str | os.PathLike, index: tuple[int, ...] | str) -> bool:
    """Whether the stored chunk ``index`` (``(i, j)`` or ``"i.j"``) of the array at
    ``array_path`` matches its CRC-32C, checked on the stored bytes (nothing is decoded).

    A chunk that was never written (all fill value) has nothing to check and is intact. In
    a sharded array ``index`` is an inner chunk's: its shard's index must match its own
    checksum too (:func:`damaged_chunks` checks whole shards).
    """
    if isinstance(index, str):
        index = tuple(int(i) for i in index.split(".")) if index else ()
    layout = _layout_at(array_path)
    if layout is None or layout.shards is None:
        key = "/".join(("c", *map(str, index)))
        try:
            data = Path(array_path, key).read_bytes()
        except FileNotFoundError:
            return True
        return _crc_ok(memoryview(data))
    shard = layout.shard_of(index)
    try:
        offsets = layout.shard_index(Path(array_path), shard)
    except FileNotFoundError:
        return True
    except CorruptChunk:
        return False
    offset, nbytes = offsets[layout.slot(index)]
    if offset == _MISSING:
        return True
    with open(Path(array_path, layout.key(shard)), "rb") as f:
        return _crc_ok(memoryview(os.pread(f.fileno(), int(nbytes), int(offset))))


def damaged_chunks(array_path: str | os.PathLike, array=None) -> list[tuple[tuple, str]]:
    """``[(chunk index, why)]`` for every stored chunk of the checksummed array at
    ``array_path`` whose CRC-32C fails, read on the stored bytes, nothing decoded.

    In a sharded array every inner chunk is named: one whose own checksum fails, or each one
    of a shard whose index fails its checksum (or is cut short), since none can be found.
    """
    array = array if array is not None else _open_array(array_path)
    grid = [range(-(-s // c)) if s else range(0) for s, c in
            zip(array.shape, array.chunks, strict=True)]
    layout = StoredLayout.of(array, checked=False)
    bad = []
    if layout is None or layout.shards is None:
        for idx in itertools.product(*grid):
            if not chunk_intact(array_path, idx):
                bad.append((idx, "checksum does not match"))
        return bad
    by_shard: dict[tuple, list[tuple]] = {}
    for idx in itertools.product(*grid):
        by_shard.setdefault(layout.shard_of(idx), []).append(idx)
    for shard, inner in by_shard.items():
        where = ".".join(map(str, shard))
        path = Path(array_path, layout.key(shard))
        try:
            data = memoryview(path.read_bytes())
        except FileNotFoundError:
            continue
        try:
            offsets = layout.parse_index(data)
        except CorruptChunk as exc:
            bad.extend((idx, f"in shard {where}, whose index is unreadable ({exc.why})")
                       for idx in inner)
            continue
        for idx in inner:
            offset, nbytes = offsets[layout.slot(idx)]
            if offset == _MISSING:
                continue
            if offset + nbytes > len(data) or not _crc_ok(data[offset:offset + nbytes]):
                bad.append((idx, f"checksum does not match (in shard {where})"))
    return bad


def _open_array(array_path):
    import zarr

    return zarr.open_array(str(array_path), mode="r")


_layouts: dict[tuple, StoredLayout | None] = {}


def _layout_at(array_path) -> StoredLayout | None:
    """:meth:`StoredLayout.of` the array at ``array_path``, kept while its ``zarr.json`` is
    unchanged (a resume checks every finished chunk: one metadata read, not one each)."""
    try:
        st = os.stat(Path(array_path, "zarr.json"))
    except FileNotFoundError:
        return None
    key = (str(Path(array_path).resolve()), st.st_mtime_ns, st.st_size)
    if key not in _layouts:
        if len(_layouts) > 64:
            _layouts.clear()
        _layouts[key] = StoredLayout.of(_open_array(array_path), checked=False)
    return _layouts[key]


def _crc(data: np.ndarray) -> int:
    import google_crc32c

    return google_crc32c.value(data)


def _crc_ok(data: memoryview) -> bool:
    """Whether stored bytes end with the CRC-32C of what comes before."""
    if len(data) < 4:
        return False
    body = np.frombuffer(data, dtype=np.uint8)  # what its parser takes without a copy
    return _crc(body[:-4]) == int.from_bytes(data[-4:], "little")


# ---------------------------------------------------------------------------------------------
# stored chunks, checked and decoded directly

_MISSING = 2**64 - 1  # a shard index's offset and length of an inner chunk never written


class CorruptChunk(ValueError):
    """A stored chunk (or shard index) whose checksum fails, or that is cut short."""

    def __init__(self, what: str, why: str):
        super().__init__(f"{what}: {why}")
        self.why = why


@dataclass(frozen=True)
class StoredLayout:
    """Where an array's chunks lie on disk and how they decode, for what hpcjobs writes:
    ``zarr.json``'s default chunk keys (``c/i/j``), optionally one level of sharding (index at
    either end, with or without its CRC-32C), inner codecs bytes (little-endian) [+ Blosc or
    Zstandard] [+ CRC-32C]. ``decodable``: :func:`read_chunk` can decode them itself (native
    byte order, a known compressor, a checksum last)."""

    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    shards: tuple[int, ...] | None
    dtype: str
    fill_value: Any
    compressor: str | None
    checksum: bool
    decodable: bool
    index_at_end: bool = True
    index_checksum: bool = True

    @classmethod
    def of(cls, array, checked: bool = True) -> StoredLayout | None:
        """The layout of a zarr ``array``, or None where it is not one of the above
        (``checked``: None too unless :func:`read_chunk` can decode it)."""
        meta = array.metadata
        if getattr(meta, "zarr_format", None) != 3 or not array.shape:
            return None
        enc = meta.chunk_key_encoding
        if type(enc).__name__ != "DefaultChunkKeyEncoding" or enc.separator != "/":
            return None
        codecs = tuple(meta.codecs)
        shards = index_at_end = index_checksum = None
        if len(codecs) == 1 and type(codecs[0]).__name__ == "ShardingCodec":
            outer = codecs[0]
            index_names = [type(c).__name__ for c in outer.index_codecs]
            if index_names not in (["BytesCodec"], ["BytesCodec", "Crc32cCodec"]) or \
                    not _little(outer.index_codecs[0]):
                return None
            shards = tuple(int(s) for s in meta.chunk_grid.chunk_shape)
            index_at_end = outer.index_location.value == "end"
            index_checksum = len(index_names) == 2
            codecs = tuple(outer.codecs)
        names = [type(c).__name__ for c in codecs]
        checksum = bool(names) and names[-1] == "Crc32cCodec"
        rest = names[:-1] if checksum else names
        dtype = np.dtype(meta.data_type.to_native_dtype())
        compressor = None
        decodable = (len(rest) in (1, 2) and rest[0] == "BytesCodec" and dtype.kind in "biuf"
                     and (dtype.itemsize == 1 or _little(codecs[0]))
                     and dtype.isnative and checksum)
        if len(rest) == 2:
            compressor = {"BloscCodec": "blosc", "ZstdCodec": "zstd"}.get(rest[1])
            decodable = decodable and compressor is not None
        if checked and not decodable:
            return None
        fill = meta.fill_value
        return cls(shape=tuple(int(s) for s in array.shape),
                   chunks=tuple(int(c) for c in array.chunks), shards=shards, dtype=dtype.str,
                   fill_value=fill.item() if hasattr(fill, "item") else fill,
                   compressor=compressor, checksum=checksum, decodable=decodable,
                   index_at_end=bool(index_at_end) if shards else True,
                   index_checksum=bool(index_checksum) if shards else True)

    # -- where things are -----------------------------------------------------------------

    def key(self, index: tuple[int, ...]) -> str:
        """The stored object's key (a chunk's, or a shard's for its shard index)."""
        return "/".join(("c", *map(str, index)))

    @property
    def per_shard(self) -> tuple[int, ...]:
        return tuple(s // c for s, c in zip(self.shards, self.chunks, strict=True))

    def shard_of(self, index: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(i // k for i, k in zip(index, self.per_shard, strict=True))

    def slot(self, index: tuple[int, ...]) -> int:
        """The inner chunk's position in its shard's index (C order)."""
        within = tuple(i % k for i, k in zip(index, self.per_shard, strict=True))
        return int(np.ravel_multi_index(within, self.per_shard))

    @property
    def index_bytes(self) -> int:
        return 16 * int(np.prod(self.per_shard)) + (4 if self.index_checksum else 0)

    def parse_index(self, data: memoryview, what: str = "shard") -> np.ndarray:
        """``(chunks per shard, 2)`` offsets and lengths from a shard's index (``data``:
        the index alone, or the whole shard)."""
        n = self.index_bytes
        if len(data) < n:
            raise CorruptChunk(what, "index cut short")
        raw = data[len(data) - n:] if self.index_at_end else data[:n]
        if self.index_checksum:
            if not _crc_ok(raw):
                raise CorruptChunk(what, "index checksum does not match")
            raw = raw[:-4]
        return np.frombuffer(raw, dtype="<u8").reshape(-1, 2)

    def shard_index(self, array_path: Path, shard: tuple[int, ...]) -> np.ndarray:
        """The offsets and lengths of one shard's inner chunks, read from its index alone."""
        with open(array_path / self.key(shard), "rb") as f:
            return self.read_index(f.fileno(), os.fstat(f.fileno()).st_size,
                                   f"{array_path.name} shard {'.'.join(map(str, shard))}")

    def read_index(self, fd: int, size: int, what: str) -> np.ndarray:
        """:meth:`parse_index` of the index bytes of the open shard file ``fd``."""
        n = self.index_bytes
        start = max(0, size - n) if self.index_at_end else 0
        return self.parse_index(memoryview(os.pread(fd, min(n, size), start)), what)


_scratch = threading.local()


def _scratch_view(nbytes: int) -> memoryview:
    """A buffer of ``nbytes`` this thread reuses for the stored bytes it reads (a fresh one
    per chunk costs its page faults each time: benchmarks/codecs.py)."""
    buf = getattr(_scratch, "buf", None)
    if buf is None or len(buf) < nbytes:
        buf = _scratch.buf = np.empty(max(nbytes, 1 << 20), dtype=np.uint8)
    return memoryview(buf)[:nbytes]


def _read_range(f, offset: int, nbytes: int) -> memoryview:
    view = _scratch_view(nbytes)
    got = os.preadv(f.fileno(), [view], offset)
    if got != nbytes:
        raise CorruptChunk(getattr(f, "name", "?"), f"cut short ({got} of {nbytes} bytes)")
    return view


def _decode_into(data: memoryview, layout: StoredLayout, out: np.ndarray, what: str) -> None:
    """Check the stored bytes of one chunk against their CRC-32C, then decode them into
    ``out`` (C-contiguous, the chunk's full shape)."""
    if not _crc_ok(data):
        raise CorruptChunk(what, "stored and computed checksum do not match")
    data = data[:-4]
    dest = out.reshape(-1).view(np.uint8)
    if layout.compressor == "blosc":
        from numcodecs import blosc

        if blosc._cbuffer_sizes(data)[0] != dest.nbytes:
            raise CorruptChunk(what, "decodes to the wrong size")
        blosc.decompress(data, dest)
    elif layout.compressor == "zstd":
        from numcodecs import zstd

        zstd.decompress(data, dest)
    elif len(data) == dest.nbytes:
        dest[:] = np.frombuffer(data, dtype=np.uint8)
    else:
        raise CorruptChunk(what, "decodes to the wrong size")


def read_chunk_into(array_path: str | os.PathLike, layout: StoredLayout,
                    index: tuple[int, ...], out: np.ndarray) -> np.ndarray:
    """Decode the stored chunk ``index`` (an inner chunk's where sharded) of the array at
    ``array_path`` into ``out`` (C-contiguous, the full chunk shape), reading its bytes into
    a buffer the thread reuses (uncompressed ones straight into ``out``); a chunk never
    written is the fill value. Returns ``out``.

    Raises :class:`CorruptChunk` (a ``ValueError``) where the checksum fails."""
    path = Path(array_path)
    what = f"{path.name} chunk {'.'.join(map(str, index))}"
    shard = layout.shard_of(index) if layout.shards is not None else None
    try:
        f = open(path / layout.key(shard if shard is not None else index), "rb", buffering=0)
    except FileNotFoundError:
        out.fill(layout.fill_value)
        return out
    with f:
        size = os.fstat(f.fileno()).st_size
        offset, nbytes = 0, size
        if shard is not None:
            offset, nbytes = (int(v) for v in layout.read_index(
                f.fileno(), size, f"{path.name} shard {'.'.join(map(str, shard))}"
            )[layout.slot(index)])
            if offset == _MISSING:
                out.fill(layout.fill_value)
                return out
        dest = out.reshape(-1).view(np.uint8)
        if layout.compressor is None and nbytes == dest.nbytes + 4:
            tail = bytearray(4)
            got = os.preadv(f.fileno(), [dest, tail], offset)
            if got != nbytes or _crc(dest) != int.from_bytes(tail, "little"):
                raise CorruptChunk(what, "stored and computed checksum do not match")
            return out
        data = _read_range(f, offset, nbytes)
    _decode_into(data, layout, out, what)
    return out


class ChunkBuffers:
    """Chunk-sized arrays that the read tasks of one process decode into, each reused once
    nothing refers to it any more.

    A fresh 64 MB array costs its page faults on every chunk (the allocator maps new memory
    for each and unmaps it on free): a fifth of a read's time, measured by
    ``hpcjobs bench job-scale``'s decode pass. A task's result, and every view of it (a column,
    the block cut to the array's edge), holds a reference to its array, so an array whose only
    references are this pool's is free: Dask has released the chunk. At most ``keep`` arrays
    are kept; past that a read gets a fresh array, as before.
    """

    def __init__(self, keep: int = 4):
        self.keep = keep
        self._arrays: list[np.ndarray] = []
        self._lock = threading.Lock()

    def take(self, shape: tuple[int, ...], dtype) -> np.ndarray:
        """An uninitialised C-contiguous array of ``shape`` and ``dtype``, for the caller alone."""
        dtype = np.dtype(dtype)
        with self._lock:
            for i in range(len(self._arrays)):
                arr = self._arrays[i]
                # referenced by the list, ``arr`` and getrefcount's argument: nobody else
                if sys.getrefcount(arr) == _POOLED_REFS:
                    if arr.shape == shape and arr.dtype == dtype:
                        return arr
                    if len(self._arrays) >= self.keep:  # a free one of another shape: make room
                        del self._arrays[i]
                        break
            arr = np.empty(shape, dtype=dtype)
            if len(self._arrays) < self.keep:
                self._arrays.append(arr)
            return arr


#: ``sys.getrefcount`` of an array that only :class:`ChunkBuffers`' list refers to, seen from
#: its loop
_POOLED_REFS = 3
_chunk_buffers = ChunkBuffers()


def read_chunk(array_path: str, layout: StoredLayout, index: tuple[int, ...]) -> np.ndarray:
    """The stored chunk ``index`` decoded into an array of the process's
    :class:`ChunkBuffers`, cut to the array's extent: one task of :func:`open_input_array`'s
    direct path."""
    out = _chunk_buffers.take(tuple(layout.chunks), layout.dtype)
    read_chunk_into(array_path, layout, index, out)
    edge = tuple(slice(0, min(c, s - i * c))
                 for i, c, s in zip(index, layout.chunks, layout.shape, strict=True))
    return out[edge]


def _little(codec) -> bool:
    endian = getattr(codec, "endian", None)
    return endian is None or getattr(endian, "value", endian) == "little"


def now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


# ---------------------------------------------------------------------------------------------
# inputs


#: the key prefix of :func:`open_input_array`'s read tasks (one per stored chunk)
READ_PREFIX = "read-zarr-"


def open_input_array(group_path: Path, name: str, index: tuple | None = None):
    """The input array ``name`` of the Zarr group at ``group_path`` as a Dask array.

    An array on local disk in a layout :class:`StoredLayout` decodes (what hpcjobs writes)
    is read by one task per stored chunk (an inner chunk where sharded), keys
    ``read-zarr-<token>``, that reads the chunk's bytes into a buffer the thread reuses,
    checks their CRC-32C and decodes them straight into the task's result (zarr's own read
    ran at about half the codec's speed: ``hpcjobs bench codecs``). The Dask chunks are the
    zarr chunks; the token depends on the array's path, layout and ``zarr.json``, so the same
    array opened twice (two steps, ``X[:, 0]`` and ``X[:, 1]``) shares its read tasks in one
    graph. Anything else goes through ``dask.array.from_zarr``.
    """
    import dask.array as da
    import zarr

    path = Path(group_path) / name
    arr = zarr.open_array(str(path), mode="r")
    layout = StoredLayout.of(arr) if _on_local_disk(arr) else None
    if layout is None or not all(layout.shape):
        x = da.from_zarr(arr)
    else:
        x = _direct_array(path, layout)
    return x[index] if index is not None else x


_READ_TASK = None


def _read_task_class():
    """A Dask task that optimisation never fuses into the tasks that use its chunk, so the
    read keeps its ``read-zarr-`` key (a job's reads can be counted) and one read serves
    every step and column that uses the chunk. Made on first use: this module imports Dask
    lazily; a worker unpickling one gets it through the module's ``__getattr__``."""
    global _READ_TASK
    if _READ_TASK is None:
        from dask._task_spec import Task

        class _ReadTask(Task):
            __slots__ = ()

            @property
            def block_fusion(self) -> bool:
                return True

        _ReadTask.__module__, _ReadTask.__qualname__ = __name__, "_ReadTask"
        _READ_TASK = _ReadTask
    return _READ_TASK


def __getattr__(name: str):
    if name == "_ReadTask":
        return _read_task_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _on_local_disk(arr) -> bool:
    return type(arr.store).__name__ == "LocalStore"


def _direct_array(path: Path, layout: StoredLayout):
    import dask.array as da
    from dask.base import tokenize
    from dask.highlevelgraph import HighLevelGraph

    path = path.resolve()
    meta_file = path / "zarr.json"
    st = meta_file.stat()
    name = READ_PREFIX + tokenize(str(path), layout, st.st_ino, st.st_mtime_ns, st.st_size)
    chunks = tuple(tuple(min(c, s - k) for k in range(0, s, c))
                   for s, c in zip(layout.shape, layout.chunks, strict=True))
    where = str(path)
    task = _read_task_class()
    dsk = {}
    for idx in itertools.product(*(range(len(c)) for c in chunks)):
        dsk[(name, *idx)] = task((name, *idx), read_chunk, where, layout, idx)
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=())
    return da.Array(graph, name, chunks, dtype=np.dtype(layout.dtype),
                    meta=np.empty((0,) * len(chunks), dtype=layout.dtype))


def open_transactions(group_path: Path, name: str) -> dict:
    """A transactions group (CSR: indptr, items, labels) as a dict of Dask/NumPy arrays."""
    import dask.array as da
    import zarr

    g = zarr.open_group(str(group_path / name), mode="r")
    # object first: NumPy casts its variable-width StringDType to str only through object
    labels = np.asarray(g["labels"][:], dtype=object).astype(str) if "labels" in g else None
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
        try:
            self._group = zarr.open_group(str(self.path), mode="w-", zarr_format=3)
        except OSError as exc:
            raise UserError(f"cannot create the output {self.path}: {exc.strerror or exc}") \
                from None
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
    :func:`create_array` makes them; in a sharded array, its inner chunks' last codec):
    then :func:`chunk_intact` can check a chunk."""
    codecs = tuple(getattr(array.metadata, "codecs", ()) or ())
    if len(codecs) == 1 and type(codecs[0]).__name__ == "ShardingCodec":
        if StoredLayout.of(array, checked=False) is None:
            return False  # a shard layout chunk_intact does not read
        codecs = tuple(codecs[0].codecs)
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
