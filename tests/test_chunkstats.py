"""Per-chunk statistics: recorded when written, trusted only while the chunks are unchanged."""

import os

import numpy as np
import pytest
import zarr

from hpcjobs import chunkstats
from hpcjobs.zarrio import create_array


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _array(tmp_path, data, chunk_rows):
    g = zarr.open_group(str(tmp_path / "in.zarr"), mode="w")
    z = create_array(g, "X", shape=data.shape, dtype=data.dtype,
                     chunks=(chunk_rows, *data.shape[1:]))
    z[...] = data
    return tmp_path / "in.zarr" / "X"


def test_recorder_records_every_block(tmp_path, cache):
    data = np.random.default_rng(0).standard_normal((1000, 3))
    data[5, 1] = np.nan
    path = _array(tmp_path, data, 300)
    rec = chunkstats.Recorder(3)
    for b in range(4):
        rec.add(b, data[b * 300:(b + 1) * 300])
    assert rec.save(path) == path / chunkstats.STATS_FILE
    stats = chunkstats.load(path)
    assert stats.extremes.shape == (4, 4, 3)
    lo, hi, count, nan = stats.column_range(1)
    assert (lo, hi, count, nan) == (np.nanmin(data[:, 1]), np.nanmax(data[:, 1]), 999, 1)


def test_recorder_saves_nothing_when_a_block_is_missing(tmp_path, cache):
    data = np.ones((600, 2))
    path = _array(tmp_path, data, 300)
    rec = chunkstats.Recorder(2)
    rec.add(0, data[:300])
    assert rec.save(path) is None
    assert chunkstats.load(path) is None


def test_a_rewritten_chunk_makes_the_statistics_stale(tmp_path, cache):
    data = np.arange(600.0).reshape(300, 2)
    path = _array(tmp_path, data, 100)
    chunkstats.record_whole(path, data)
    assert chunkstats.load(path) is not None
    z = zarr.open_array(str(path), mode="r+")
    chunk = path / "c" / "1" / "0"
    before = os.stat(chunk).st_mtime_ns
    z[100:200] = -1.0
    os.utime(chunk, ns=(before + 10**9, before + 10**9))  # coarse clocks: make it visible
    assert chunkstats.load(path) is None


def test_a_sidecar_in_the_cache_for_someone_elses_array(tmp_path, cache):
    data = np.arange(10.0)
    g = zarr.open_group(str(tmp_path / "theirs.zarr"), mode="w")
    z = g.create_array("y", shape=(10,), chunks=(4,), dtype="f8")
    z[:] = data
    path = tmp_path / "theirs.zarr" / "y"
    parts = [chunkstats.column_extremes(data[i:i + 4]) for i in (0, 4, 8)]
    written = chunkstats.save(path, chunkstats.of_blocks(path, parts), sidecar=True)
    assert str(written).startswith(str(cache))
    assert not (path / chunkstats.STATS_FILE).exists()
    assert chunkstats.load(path).column_range(0)[:2] == (0.0, 9.0)


def test_a_jobs_outputs_carry_statistics(input_dir, readings, dask_client, cache):
    from hpcjobs.jobspec import load_job
    from hpcjobs.runner import run_job
    from tests.conftest import write_job

    job = load_job(write_job(input_dir, """
name = "out-stats"
[input]
path = "in.zarr"
[[step]]
name = "z"
kernel = "standardize"
input = "readings"
[[step]]
name = "d"
kernel = "describe"
input = "readings"
[output]
path = "out/r.zarr"
"""))
    run_job(job, client=dask_client, warmup=False)
    z = zarr.open_array(str(input_dir / "out/r.zarr/z/Z"), mode="r")[:]
    stats = chunkstats.load(input_dir / "out/r.zarr/z/Z")  # chunked: from the blocks' markers
    assert stats.extremes.shape[0] == 8
    for j in range(3):
        assert stats.column_range(j) == (z[:, j].min(), z[:, j].max(), 4000, 0)
    mean = chunkstats.load(input_dir / "out/r.zarr/d/mean")  # written whole
    assert mean.column_range(0)[2] == 3
