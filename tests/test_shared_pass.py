"""Steps that read the same input share one pass over it; ranges come from chunk statistics."""

from __future__ import annotations

import os

import numpy as np
import pytest
import zarr
from distributed import get_task_stream

from hpcjobs import chunkstats
from hpcjobs.jobspec import load_job
from hpcjobs.kernels import aggregate2d, describe
from hpcjobs.runner import _step_groups, run_job
from tests.conftest import write_job

JOB = """
name = "shared"
[input]
path = "in.zarr"
[[step]]
kernel = "describe"
input = "readings"
params = {{ bins = 16 }}
[[step]]
kernel = "aggregate2d"
input = {{ x = "readings[:, 0]", y = "readings[:, 1]" }}
params = {{ shape = [20, 30] }}
[output]
path = "{out}"
"""

CHUNKS = 8  # readings: 4000 rows in chunks of 500


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def _passes(client, job) -> float:
    """Run ``job``; the passes it made over its input (input chunk reads / chunks)."""
    with get_task_stream(client) as ts:
        assert run_job(job, client=client, warmup=False).status == "complete"
    reads = [t for t in ts.data
             if str(t["key"][0] if isinstance(t["key"], tuple) else t["key"])
             .startswith(("from-zarr", "read-zarr"))]
    return len(reads) / CHUNKS


def _check(out_path, readings):
    out = zarr.open_group(str(out_path), mode="r")
    ref = describe(readings, bins=16)
    np.testing.assert_allclose(out["describe/mean"][:], ref.mean, rtol=1e-12)
    np.testing.assert_allclose(out["describe/std"][:], ref.std, rtol=1e-12)
    np.testing.assert_array_equal(out["describe/hist"][:], ref.hist)
    np.testing.assert_array_equal(out["describe/bin_edges"][:], ref.bin_edges)
    raster = aggregate2d(readings[:, 0], readings[:, 1], shape=(20, 30))
    np.testing.assert_array_equal(out["aggregate2d/raster"][:], raster)
    assert out["aggregate2d"].attrs["range"] == [
        [readings[:, 0].min(), readings[:, 0].max()], [readings[:, 1].min(), readings[:, 1].max()]]


def test_one_pass_for_both_steps_once_the_input_has_statistics(input_dir, readings,
                                                              dask_client, tmp_path):
    first = load_job(write_job(input_dir, JOB.format(out="out/a.zarr"), "a.toml"))
    assert [len(g) for g in _step_groups(first, set())] == [2]
    assert _passes(dask_client, first) == 2  # statistics, then both steps
    _check(input_dir / "out/a.zarr", readings)
    src = input_dir / "in.zarr" / "readings"
    assert not (src / chunkstats.STATS_FILE).exists()  # the input is not touched
    assert chunkstats.sidecar_path(src).is_file()

    second = load_job(write_job(input_dir, JOB.format(out="out/b.zarr"), "b.toml"))
    assert _passes(dask_client, second) == 1
    _check(input_dir / "out/b.zarr", readings)


def test_an_input_with_recorded_statistics_is_read_once(input_dir, readings, dask_client):
    src = input_dir / "in.zarr" / "readings"
    chunkstats.record_whole(src, readings)
    job = load_job(write_job(input_dir, JOB.format(out="out/c.zarr")))
    assert _passes(dask_client, job) == 1
    _check(input_dir / "out/c.zarr", readings)


def test_statistics_of_a_rewritten_input_are_not_trusted(input_dir, readings, dask_client):
    src = input_dir / "in.zarr" / "readings"
    chunkstats.record_whole(src, readings)
    changed = readings.copy()
    changed[0] = [100.0, -100.0, 0.0]
    z = zarr.open_array(str(src), mode="r+")
    z[:500] = changed[:500]
    chunk = src / "c" / "0" / "0"
    st = chunk.stat()
    os.utime(chunk, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    job = load_job(write_job(input_dir, JOB.format(out="out/d.zarr")))
    assert _passes(dask_client, job) == 2
    _check(input_dir / "out/d.zarr", changed)


def test_a_fixed_range_needs_no_statistics(input_dir, readings, dask_client):
    body = JOB.format(out="out/e.zarr").replace("bins = 16", "bins = 16, range = [-5.0, 12.0]")
    body = body.replace("shape = [20, 30]", "shape = [20, 30], range = [[-5, 12], [-5, 12]]")
    job = load_job(write_job(input_dir, body))
    assert _passes(dask_client, job) == 1
    out = zarr.open_group(str(input_dir / "out/e.zarr"), mode="r")
    ref = describe(readings, bins=16, range=(-5.0, 12.0))
    np.testing.assert_array_equal(out["describe/hist"][:], ref.hist)


def test_groups_break_at_other_kernels_and_at_reads_of_the_group_s_outputs(input_dir):
    body = """
name = "groups"
[input]
path = "in.zarr"
[[step]]
kernel = "describe"
input = "readings"
[[step]]
name = "z"
kernel = "standardize"
input = "readings"
[[step]]
name = "zd"
kernel = "describe"
input = "z/Z"
[[step]]
name = "za"
kernel = "aggregate2d"
input = { x = "z/Z[:, 0]", y = "readings[:, 1]" }
params = { shape = [4, 4] }
[[step]]
name = "again"
kernel = "aggregate2d"
input = { x = "za/raster[:, 0]", y = "za/raster[:, 1]" }
params = { shape = [4, 4] }
[output]
path = "out/g.zarr"
"""
    job = load_job(write_job(input_dir, body))
    groups = _step_groups(job, set())
    assert [[s.name for s in g] for g in groups] == [["describe"], ["z"], ["zd", "za"], ["again"]]


def test_a_streamed_kmeans_step_writes_labels_and_inertia_from_one_pass(input_dir, readings,
                                                                        dask_client,
                                                                        monkeypatch):
    from hpcjobs.kernels import kmeans
    from hpcjobs.kernels.clustering import _common

    # as if the data were larger than the workers' memory: every pass streams
    monkeypatch.setattr(_common.Blocks, "keep_in_memory", lambda self, fraction=0.5: False)
    job = load_job(write_job(input_dir, """
name = "streamed"
[input]
path = "in.zarr"
[[step]]
kernel = "kmeans"
input = "readings"
params = { n_clusters = 3, init = "random", max_iter = 4, tol = 0.0, seed = 0 }
[output]
path = "out/k.zarr"
"""))
    passes = _passes(dask_client, job)
    assert passes <= 4 + 1 + 3 / CHUNKS  # the iterations, labels + inertia, the 3 seed rows
    out = zarr.open_group(str(input_dir / "out/k.zarr"), mode="r")
    seeds = np.sort(np.random.default_rng(0).choice(len(readings), 3, replace=False))
    ref = kmeans(readings, 3, init=readings[seeds], max_iter=4, tol=0.0)
    np.testing.assert_array_equal(out["kmeans/labels"][:], ref.labels)
    assert float(out["kmeans/inertia"][...]) == pytest.approx(ref.inertia, rel=1e-12)
