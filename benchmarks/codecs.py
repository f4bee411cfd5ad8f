"""Codecs and layouts for decode speed: what ``hpcjobs.zarrio.create_array`` writes with.

``hpcjobs bench codecs`` runs one benchmark per codec (every one ends with the CRC-32C that
hpcjobs keeps on everything) and one for the layout and the job read path. Sizes are the
kinds of data: ``walk`` (8 columns of random walks, steps N(0, 0.01), rounded to 1e-3, like
sensor readings), ``random`` (8 columns of uniform floats), ``labels`` (int64 in 0..7, 1-D);
float64 chunks of 1e6 rows x 8 columns and label chunks of 8e6 values: 64 MB each. Every
size dict records ``ratio`` (raw / stored bytes, the CRC included), measured while the data
is made. Throughput is decoded bytes per second, one thread (Blosc's own threads off, zarr's
pool of one); the files are read from the page cache, so this is decode speed, not disk speed.

Implementations of each codec benchmark, on the same stored chunks:

- ``codec``: the codec alone: numcodecs decodes each chunk's stored bytes, already in
  memory, into one buffer reused for every chunk;
- ``direct`` (peer of ``codec``): ``zarrio.read_chunk_into``: read the chunk file into a
  buffer the thread reuses, check the CRC-32C, decode into one reused output buffer;
- ``task`` (peer of ``codec``): ``zarrio.read_chunk``, what a job's read task runs: the same
  into a new array per chunk (its result);
- ``zarr`` (peer of ``codec``): zarr-python's ``array[rows]`` of each whole chunk.

The peers' ``ours/peer`` column is codec time / their time: "zarr read / codec alone" as a
speed ratio (1 = as fast as the codec).

``layout`` (default codec, walk data, 16 chunks = 1 GiB): ``zarr`` and ``direct`` again, on
an unsharded and a sharded copy (shards of 8 chunks, what ingest writes above 512 MiB), and
the job's read path against ``dask.array.from_zarr``: ``open_input_array(...)`` and
``da.from_zarr(...)`` computed on a LocalCluster of 1 worker x 1 thread, each chunk reduced
to one row in its task (``read`` ours, ``from_zarr`` peer).
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import weakref
from pathlib import Path

import numpy as np

from hpcjobs.bench.harness import decode_pass
from hpcjobs.bench.spec import Benchmark, Impl
from hpcjobs.zarrio import compressors_of

#: name -> (compressor spec for zarr, as in hpcjobs.zarrio.CODECS), the CRC-32C follows
CODECS = {
    "none": None,
    "zstd-0": {"id": "zstd", "level": 0},
    "zstd-1": {"id": "zstd", "level": 1},
    "zstd-3": {"id": "zstd", "level": 3},
    "blosc-lz4-noshuffle-1": {"id": "blosc", "cname": "lz4", "clevel": 1, "shuffle": "noshuffle"},
    "blosc-lz4-shuffle-1": {"id": "blosc", "cname": "lz4", "clevel": 1, "shuffle": "shuffle"},
    "blosc-lz4-shuffle-5": {"id": "blosc", "cname": "lz4", "clevel": 5, "shuffle": "shuffle"},
    "blosc-lz4-bitshuffle-1": {"id": "blosc", "cname": "lz4", "clevel": 1,
                               "shuffle": "bitshuffle"},
    "blosc-lz4hc-shuffle-1": {"id": "blosc", "cname": "lz4hc", "clevel": 1,
                              "shuffle": "shuffle"},
    "blosc-lz4hc-bitshuffle-1": {"id": "blosc", "cname": "lz4hc", "clevel": 1,
                                 "shuffle": "bitshuffle"},
    "blosc-zstd-shuffle-1": {"id": "blosc", "cname": "zstd", "clevel": 1, "shuffle": "shuffle"},
    "blosc-zstd-shuffle-1-1M": {"id": "blosc", "cname": "zstd", "clevel": 1,
                                "shuffle": "shuffle", "blocksize": 2**20},
    "blosc-zstd-bitshuffle-1": {"id": "blosc", "cname": "zstd", "clevel": 1,
                                "shuffle": "bitshuffle"},
}

CHUNK_ROWS = 1_000_000
WIDTH = 8
KINDS = ("walk", "random", "labels")


def _sizes(quick: bool = False) -> list[dict]:
    chunks, rows = (2, 20_000) if quick else (4, CHUNK_ROWS)
    return [{"kind": k, "chunks": chunks, "chunk_rows": rows} for k in KINDS]


def _values(size: dict, rng) -> np.ndarray:
    n = size["chunks"] * size["chunk_rows"]
    if size["kind"] == "walk":
        steps = rng.normal(0.0, 0.01, size=(n, WIDTH))
        return np.round(20.0 + np.cumsum(steps, axis=0), 3)
    if size["kind"] == "random":
        return rng.random((n, WIDTH))
    return rng.integers(0, 8, size=n * WIDTH, dtype=np.int64)


class Stored:
    """One size's data written with one codec (and optionally sharded) in a temporary
    folder that goes with this object; ``ratio`` raw / stored bytes."""

    def __init__(self, values: np.ndarray, spec, chunk_rows: int, shard_chunks: int = 0,
                 folder: Path | None = None):
        import zarr

        from hpcjobs.zarrio import StoredLayout

        self.folder = Path(folder or tempfile.mkdtemp(prefix="hpcjobs-codecs-"))
        if folder is None:
            self._cleanup = weakref.finalize(self, shutil.rmtree, self.folder, True)
        name = f"x{shard_chunks}"
        self.path = self.folder / "data.zarr" / name
        per = chunk_rows * WIDTH if values.ndim == 1 else chunk_rows  # 64 MB either way
        chunks = (per,) + values.shape[1:]
        shards = (per * shard_chunks,) + values.shape[1:] if shard_chunks else None
        g = zarr.open_group(str(self.folder / "data.zarr"), mode="a", zarr_format=3)
        a = g.create_array(name, shape=values.shape, dtype=values.dtype, chunks=chunks,
                           shards=shards, compressors=compressors_of(spec), overwrite=True)
        a[...] = values
        self.array = zarr.open_array(str(self.path), mode="r")
        self.layout = StoredLayout.of(self.array)
        self.n_chunks = -(-values.shape[0] // per)
        self.grid = [(i,) + (0,) * (values.ndim - 1) for i in range(self.n_chunks)]
        self.chunk_shape = chunks
        self.dtype = values.dtype
        self.raw_bytes = values.nbytes
        self.stored_bytes = sum(f.stat().st_size for f in (self.path / "c").rglob("*")
                                if f.is_file())
        self.ratio = self.raw_bytes / self.stored_bytes
        self.spec = spec
        self.per = per
        self.encoded: list[bytes] | None = None

    def chunk_bytes(self) -> list[bytes]:
        """Each (unsharded) chunk's stored bytes without its CRC: the codec's input."""
        if self.encoded is None:
            self.encoded = [(self.path / "/".join(("c", *map(str, idx)))).read_bytes()[:-4]
                            for idx in self.grid]
        return self.encoded


# --------------------------------------------------------------------------- implementations


@contextlib.contextmanager
def one_thread():
    """Blosc without its own threads, zarr's pool one thread wide."""
    import zarr
    from numcodecs import blosc

    before = blosc.get_nthreads(), blosc.use_threads
    blosc.set_nthreads(1)
    blosc.use_threads = False
    try:
        with zarr.config.set({"threading.max_workers": 1}):
            yield
    finally:
        blosc.set_nthreads(before[0])
        blosc.use_threads = before[1]


def _codec_alone(st: Stored):
    from numcodecs import blosc, zstd

    out = st.reuse
    dest = out.reshape(-1).view(np.uint8)
    for data in st.chunk_bytes():
        if st.spec is None:
            dest[:] = np.frombuffer(data, dtype=np.uint8)
        elif st.spec["id"] == "zstd":
            zstd.decompress(data, dest)
        else:
            blosc.decompress(data, dest)


def _direct(st: Stored):
    from hpcjobs.zarrio import read_chunk_into

    where = str(st.path)
    for idx in st.grid:
        read_chunk_into(where, st.layout, idx, st.reuse)


def _task(st: Stored):
    from hpcjobs.zarrio import read_chunk

    where = str(st.path)
    for idx in st.grid:
        read_chunk(where, st.layout, idx)


def _zarr(st: Stored):
    a = st.array
    for i in range(st.n_chunks):
        a[i * st.per:(i + 1) * st.per]


def _with_buffer(st: Stored, size) -> Stored:
    st.reuse = np.empty(st.chunk_shape, dtype=st.dtype)
    st.reuse.fill(0)  # touched once, before the timings
    return st


def _make(spec):
    def make(size, rng):
        return _stored_for(spec, size, rng)
    return make


_made: dict[tuple, Stored] = {}


def _stored_for(spec, size, rng=None) -> Stored:
    """The size's data stored with ``spec``; made once: ``items`` (called first, so that the
    ratio is in every record's size) makes it and ``make_data`` takes it."""
    key = (repr(spec), size["kind"], size["chunks"], size["chunk_rows"])
    st = _made.pop(key, None)
    if st is None:
        st = Stored(_values(size, rng or np.random.default_rng(0)), spec, size["chunk_rows"])
    return st


def _items(spec):
    def items(size):
        key = (repr(spec), size["kind"], size["chunks"], size["chunk_rows"])
        st = _made.get(key) or _made.setdefault(key, _stored_for(spec, size))
        size["ratio"] = round(st.ratio, 3)
        return float(st.raw_bytes)
    return items


def _codec_benchmark(name: str, spec) -> Benchmark:
    return Benchmark(
        name=f"codec {name}",
        kernel="codecs",
        description="decode speed, one thread: the codec alone, hpcjobs' direct read, zarr",
        sizes=_sizes(),
        quick_sizes=_sizes(quick=True),
        make_data=_make(spec),
        items=_items(spec),
        unit="B",
        repeats=5,
        baseline="codec",
        impls=[
            Impl("codec", _codec_alone, prepare=_with_buffer, context=one_thread,
                 note="numcodecs decode of in-memory bytes into a reused buffer"),
            Impl("direct", _direct, prepare=_with_buffer, context=one_thread, peer=True,
                 note="zarrio.read_chunk_into: file -> reused bytes -> CRC -> reused output"),
            Impl("task", _task, prepare=_with_buffer, context=one_thread, peer=True,
                 note="zarrio.read_chunk: as a read task, a new array per chunk"),
            Impl("zarr", _zarr, prepare=_with_buffer, context=one_thread, peer=True,
                 note="zarr-python array[rows] of each whole chunk"),
        ],
    )


# --------------------------------------------------------------------------- layout and read path

#: what ingest shards with above SHARD_BYTES (hpcjobs.ingest): chunks per shard here
SHARD_CHUNKS = 8


class Layouts:
    """Walk data in the default codec, unsharded and sharded, in one temporary folder."""

    def __init__(self, size, rng):
        from hpcjobs.zarrio import CODECS, DEFAULT_CODEC

        self.folder = Path(tempfile.mkdtemp(prefix="hpcjobs-layout-"))
        self._cleanup = weakref.finalize(self, shutil.rmtree, self.folder, True)
        spec = CODECS[DEFAULT_CODEC]
        values = _values({"kind": "walk", "chunks": size["chunks"],
                          "chunk_rows": size["chunk_rows"]}, rng)
        self.flat = Stored(values, spec, size["chunk_rows"], 0, self.folder)
        self.sharded = Stored(values, spec, size["chunk_rows"],
                              min(SHARD_CHUNKS, size["chunks"]), self.folder)
        del values
        for st in (self.flat, self.sharded):
            _with_buffer(st, size)
        self.group = self.folder / "data.zarr"


def _read(ly: Layouts, name: str):
    from hpcjobs.zarrio import open_input_array

    return decode_pass(open_input_array(ly.group, name))


def _from_zarr(ly: Layouts, name: str):
    import dask.array as da
    import zarr

    return decode_pass(da.from_zarr(zarr.open_array(str(ly.group / name), mode="r")))


def _one_worker():
    from hpcjobs.bench.harness import dask_client

    return dask_client(workers=1, threads_per_worker=1, memory_limit="2GiB")


def _layout_sizes(quick: bool = False) -> list[dict]:
    return [{"kind": "walk", "chunks": 4 if quick else 16,
             "chunk_rows": 20_000 if quick else CHUNK_ROWS}]


LAYOUT = Benchmark(
    name="layout",
    kernel="codecs",
    description="default codec: unsharded vs sharded, hpcjobs' read path vs da.from_zarr",
    sizes=_layout_sizes(),
    quick_sizes=_layout_sizes(quick=True),
    make_data=lambda size, rng: Layouts(size, rng),
    items=lambda size: float(size["chunks"] * size["chunk_rows"] * WIDTH * 8),
    unit="B",
    repeats=3,
    baseline="direct",
    impls=[
        Impl("direct", lambda ly: _direct(ly.flat), context=one_thread,
             note="zarrio.read_chunk_into, unsharded"),
        Impl("direct-sharded", lambda ly: _direct(ly.sharded), context=one_thread, peer=True,
             note=f"the same, inner chunks of shards of {SHARD_CHUNKS} chunks"),
        Impl("zarr", lambda ly: _zarr(ly.flat), context=one_thread, peer=True,
             note="zarr-python array[rows] per chunk, unsharded"),
        Impl("zarr-sharded", lambda ly: _zarr(ly.sharded), context=one_thread, peer=True,
             note="the same, sharded"),
        Impl("read", lambda ly: _read(ly, ly.flat.path.name), context=_one_worker,
             requires=("distributed",),
             note="open_input_array on 1 worker x 1 thread, unsharded"),
        Impl("read-sharded", lambda ly: _read(ly, ly.sharded.path.name), context=_one_worker,
             requires=("distributed",), peer=True, baseline="read",
             note="the same, sharded"),
        Impl("from_zarr", lambda ly: _from_zarr(ly, ly.flat.path.name), context=_one_worker,
             requires=("distributed",), peer=True, baseline="read",
             note="dask.array.from_zarr, same cluster, unsharded"),
        Impl("from_zarr-sharded", lambda ly: _from_zarr(ly, ly.sharded.path.name),
             context=_one_worker, requires=("distributed",), peer=True, baseline="read",
             note="the same, sharded"),
    ],
)

BENCHMARKS = [_codec_benchmark(name, spec) for name, spec in CODECS.items()] + [LAYOUT]
