"""Codecs, sharding and the direct read path of job inputs (hpcjobs.zarrio)."""

from __future__ import annotations

import time
from pathlib import Path

import dask
import numpy as np
import pytest
import zarr
from zarr.codecs import BloscCodec, BytesCodec, Crc32cCodec, GzipCodec

from hpcjobs import zarrio
from hpcjobs.errors import UserError


def _flip(path: Path, byte: int) -> None:
    data = bytearray(path.read_bytes())
    data[byte] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.fixture
def group(tmp_path):
    return zarr.open_group(str(tmp_path / "g.zarr"), mode="w", zarr_format=3)


def _data(shape=(1050, 3), dtype=np.float64):
    X = np.random.default_rng(0).random(shape) * 100
    X = X.astype(dtype)
    X[500:700] = 0  # whole chunks of the fill value: never stored
    return X


def _write(group, name, X, chunks, shards=None, codec=zarrio.DEFAULT_CODEC, **kwargs):
    a = zarrio.create_array(group, name, shape=X.shape, dtype=X.dtype, chunks=chunks,
                            shards=shards, codec=codec, **kwargs)
    a[...] = X
    return Path(group.store.root) / name


def _reads(x) -> set:
    return {k for k in dict(x.__dask_graph__()) if isinstance(k, tuple)
            and k[0].startswith(zarrio.READ_PREFIX)}


def test_default_codec_is_blosc_lz4_shuffle_then_crc32c(group):
    a = zarrio.create_array(group, "x", shape=(10, 2), dtype="f8", chunks=(5, 2))
    codecs = a.metadata.codecs
    assert isinstance(codecs[-1], Crc32cCodec)
    blosc = codecs[-2]
    assert isinstance(blosc, BloscCodec)
    assert (blosc.cname.value, blosc.clevel, blosc.shuffle.value, blosc.typesize) == \
        ("lz4", 1, "shuffle", 8)
    assert zarrio.has_checksum(a)
    with pytest.raises(UserError, match="unknown codec 'lzma'; choose one of blosc-lz4, "
                                        "blosc-zstd, zstd, none"):
        zarrio.create_array(group, "y", shape=(1,), dtype="f8", codec="lzma")


@pytest.mark.parametrize("codec", list(zarrio.CODECS))
@pytest.mark.parametrize("shards", [None, (400, 3)])
def test_direct_read_matches_zarr(group, codec, shards):
    X = _data()
    path = _write(group, "x", X, (100, 3), shards, codec)
    x = zarrio.open_input_array(path.parent, "x")
    assert x.name.startswith(zarrio.READ_PREFIX)
    assert x.chunks == (tuple([100] * 10 + [50]), (3,))  # the zarr chunks, also when sharded
    assert len(_reads(x)) == 11
    np.testing.assert_array_equal(x.compute(), X)
    np.testing.assert_array_equal(x.compute(), zarr.open_array(str(path))[...])
    assert zarrio.damaged_chunks(path) == []


@pytest.mark.parametrize("dtype", [np.int64, np.int16, np.uint8, np.bool_, np.float32])
def test_direct_read_dtypes_and_1d(group, dtype):
    v = (np.arange(777) % 7).astype(dtype)
    path = _write(group, "v", v, (100,), (300,))
    x = zarrio.open_input_array(path.parent, "v", (slice(10, 500),))
    assert x.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(x.compute(), v[10:500])


def test_two_opens_share_the_read_tasks(group):
    X = _data()
    path = _write(group, "x", X, (100, 3), (400, 3))
    a = zarrio.open_input_array(path.parent, "x", (slice(None), 0))
    b = zarrio.open_input_array(path.parent, "x", (slice(None), 1))
    assert _reads(a) == _reads(b) and len(_reads(a)) == 11
    both = dask.array.stack([a, b])
    assert len(_reads(both)) == 11  # one read per stored chunk in the combined graph
    np.testing.assert_array_equal(both.compute(), X[:, :2].T)
    time.sleep(0.02)  # past the file system's clock tick
    rewritten = _write(group, "x", X + 1, (100, 3), (400, 3), overwrite=True)  # new tokens
    assert _reads(zarrio.open_input_array(rewritten.parent, "x")).isdisjoint(_reads(a))


def test_other_layouts_fall_back_to_from_zarr(group, tmp_path):
    X = _data()
    for name, compressors in [("gz", (GzipCodec(),)), ("nocrc", (BloscCodec(),)),
                              ("gzcrc", (GzipCodec(), Crc32cCodec()))]:
        group.create_array(name, shape=X.shape, dtype=X.dtype, chunks=(100, 3),
                           compressors=compressors)[...] = X
        x = zarrio.open_input_array(Path(group.store.root), name)
        assert x.name.startswith("from-zarr"), name
        np.testing.assert_array_equal(x.compute(), X)
    group.create_array("big", shape=X.shape, dtype="f8", chunks=(100, 3),
                       serializer=BytesCodec(endian="big"), compressors=(Crc32cCodec(),))[...] = X
    x = zarrio.open_input_array(Path(group.store.root), "big")
    assert x.name.startswith("from-zarr")
    np.testing.assert_array_equal(x.compute(), X)


def test_a_corrupt_chunk_fails_its_read_task(group):
    X = _data()
    flat = _write(group, "flat", X, (100, 3))
    sharded = _write(group, "sharded", X, (100, 3), (400, 3))
    _flip(flat / "c" / "3" / "0", 20)
    _flip(sharded / "c" / "0" / "0", 20)  # inside inner chunk 0 of shard 0
    with pytest.raises(ValueError, match="flat chunk 3.0: stored and computed checksum"):
        zarrio.open_input_array(flat.parent, "flat").compute()
    with pytest.raises(ValueError, match="sharded chunk 0.0: stored and computed checksum"):
        zarrio.open_input_array(sharded.parent, "sharded").compute()
    # the other chunks still read
    np.testing.assert_array_equal(
        zarrio.open_input_array(sharded.parent, "sharded")[400:].compute(), X[400:])


def test_checksums_of_sharded_arrays(group):
    X = _data()
    path = _write(group, "x", X, (100, 3), (400, 3))
    a = zarr.open_array(str(path))
    assert a.shards == (400, 3) and zarrio.has_checksum(a)
    shard1 = path / "c" / "1" / "0"
    assert zarrio.chunk_intact(path, (4, 0)) and zarrio.chunk_intact(path, "9.0")
    _flip(shard1, 10)  # inner chunk 4, the first of shard 1
    assert not zarrio.chunk_intact(path, (4, 0)) and zarrio.chunk_intact(path, (7, 0))
    assert zarrio.damaged_chunks(path) == [((4, 0), "checksum does not match (in shard 1.0)")]
    _flip(shard1, shard1.stat().st_size - 8)  # the shard's index: all its chunks are lost
    assert not zarrio.chunk_intact(path, (7, 0))
    assert [idx for idx, _ in zarrio.damaged_chunks(path)] == [(4, 0), (5, 0), (6, 0), (7, 0)]
    assert all("shard 1.0, whose index is unreadable (index checksum does not match)" in why
               for _, why in zarrio.damaged_chunks(path))
    shard1.write_bytes(shard1.read_bytes()[:30])  # cut short
    assert all("index cut short" in why for _, why in zarrio.damaged_chunks(path))


def test_unsharded_checksum_still_read_from_the_chunk_file(group):
    X = _data()
    path = _write(group, "x", X, (100, 3))
    _flip(path / "c" / "2" / "0", 5)
    assert zarrio.damaged_chunks(path) == [((2, 0), "checksum does not match")]
    assert not zarrio.chunk_intact(path, "2.0") and zarrio.chunk_intact(path, "5.0")


def test_reads_keep_their_keys_through_optimisation(group):
    """Dask's linear fusion would rename a read used once (``getitem-read-zarr-...``): the
    read tasks block it, so a job's input reads can be counted by their prefix."""
    X = _data()
    path = _write(group, "x", X, (100, 3), (400, 3))
    x = zarrio.open_input_array(path.parent, "x", (slice(None), 0))
    (opt,) = dask.optimize(x.sum())
    keys = [k for k in dict(opt.__dask_graph__()) if isinstance(k, tuple)]
    assert sum(k[0].startswith(zarrio.READ_PREFIX) for k in keys) == 11
    assert float(opt.compute()) == pytest.approx(X[:, 0].sum())


def test_codecs_benchmark_quick(monkeypatch):
    """``hpcjobs bench codecs`` loads, and a codec's quick run records its ratio per kind."""
    from hpcjobs.bench import harness

    monkeypatch.delenv("HPCJOBS_BENCHMARKS", raising=False)
    benches, problems = harness.discover(["codecs"])
    assert not problems
    names = [b.name for b in benches]
    assert "codec blosc-lz4-shuffle-1" in names and "codec zstd-0" in names and \
        names[-1] == "layout"
    (bench,) = [b for b in benches if b.name == "codec blosc-lz4-shuffle-1"]
    recs = harness.run_benchmark(bench, quick=True, repeats=1)
    assert {r["status"] for r in recs} == {"ok"}
    assert {r["size"]["kind"] for r in recs} == {"walk", "random", "labels"}
    ratios = {r["size"]["kind"]: r["size"]["ratio"] for r in recs}
    assert ratios["labels"] > 4 and 1 < ratios["random"] < 1.5  # shuffle finds the exponents
    zarr_recs = [r for r in recs if r["impl"] == "zarr"]
    assert all(r["against"] == "codec" and r["ratio"] for r in zarr_recs)


def test_chunk_buffers_are_reused_only_when_nothing_refers_to_them():
    pool = zarrio.ChunkBuffers(keep=2)
    a, b = pool.take((4, 2), "f8"), pool.take((4, 2), "f8")
    assert a is not b and a.flags.c_contiguous
    column = a[:, 0]  # a view keeps its array busy
    del a
    c = pool.take((4, 2), "f8")
    assert c is not column.base and c is not b
    base = id(column.base)  # no reference of the test's own
    del column
    assert id(pool.take((4, 2), "f8")) == base  # released: taken again
    assert pool.take((4, 2), "f4").dtype == np.float32  # another dtype: never a reused array
    del c, b
    other = pool.take((3,), "i8")  # the pool full of free arrays of another shape: one goes
    assert other.shape == (3,) and any(x is other for x in pool._arrays)


def test_reads_through_reused_buffers_give_every_chunk_its_own_data(group):
    X = np.random.default_rng(1).random((4000, 3))
    path = _write(group, "x", X, (100, 3), (800, 3))
    x = zarrio.open_input_array(path.parent, "x")
    kept = [b.compute(scheduler="threads") for b in x.blocks]  # all held at once
    np.testing.assert_array_equal(np.concatenate(kept), X)
    assert len({id(k.base if k.base is not None else k) for k in kept}) == 40
    with dask.config.set(scheduler="threads", num_workers=2):
        np.testing.assert_allclose(x.sum(axis=0).compute(), X.sum(axis=0), rtol=1e-12)
        np.testing.assert_allclose((x[:, 0] * x[:, 1]).sum().compute(), (X[:, 0] * X[:, 1]).sum(),
                                   rtol=1e-12)
