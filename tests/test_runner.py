"""Running jobs: Zarr round trips, provenance, chained steps, resume, refusals."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest
import zarr

from hpcjobs import registry
from hpcjobs.errors import Interrupted, OutputExistsError, UserError
from hpcjobs.jobspec import load_job
from hpcjobs.kernels import describe, standardize
from hpcjobs.registry import KernelSpec, Port
from hpcjobs.runner import run_job
from tests.conftest import make_input, write_job

JOB = """
name = "rt"
[input]
path = "in.zarr"
[[step]]
name = "stats"
kernel = "describe"
input = "readings"
params = { bins = 8 }
[[step]]
name = "z"
kernel = "standardize"
input = "readings"
[[step]]
name = "zstats"
kernel = "describe"
input = "z/Z[:, 1:]"
[output]
path = "out/result.zarr"
"""


def test_round_trip_and_provenance(input_dir, readings, dask_client):
    job = load_job(write_job(input_dir, JOB))
    summary = run_job(job, client=dask_client)
    assert summary.status == "complete"
    out = zarr.open_group(str(input_dir / "out/result.zarr"), mode="r")
    attrs = dict(out.attrs)
    assert attrs["status"] == "complete"
    assert attrs["job"] == job.text and attrs["job_name"] == "rt"
    assert attrs["inputs"] == {str(input_dir / "in.zarr"): {"readings": [4000, 3]}}
    assert attrs["versions"]["zarr"] == zarr.__version__
    assert attrs["started"] <= attrs["finished"]
    assert attrs["steps"] == ["stats", "z", "zstats"]

    ref = describe(readings, bins=8)
    np.testing.assert_allclose(out["stats/mean"][:], ref.mean, rtol=1e-12)
    np.testing.assert_array_equal(out["stats/hist"][:], ref.hist)
    Z = out["z/Z"]
    assert Z.chunks == (500, 3)  # written chunk by chunk, like the input
    np.testing.assert_allclose(Z[:], standardize(readings), rtol=0, atol=1e-12)
    np.testing.assert_allclose(out["zstats/mean"][:], [0, 0], atol=1e-12)
    assert out["z"].attrs["kernel"] == "standardize"
    assert out["stats/mean"].metadata.dimension_names == ("column",)


def test_xarray_reads_every_step(input_dir, dask_client):
    xr = pytest.importorskip("xarray")
    job = load_job(write_job(input_dir, JOB))
    run_job(job, client=dask_client)
    for step in job.steps:
        ds = xr.open_zarr(job.output_path, group=step.name, consolidated=False)
        assert len(ds.data_vars) >= 1


def test_existing_output_is_never_touched(input_dir, dask_client):
    job = load_job(write_job(input_dir, JOB))
    run_job(job, client=dask_client)
    marker = job.output_path / "zarr.json"
    before = marker.stat().st_mtime_ns
    with pytest.raises(OutputExistsError, match="--resume .* --overwrite"):
        run_job(job, client=dask_client)
    assert marker.stat().st_mtime_ns == before
    summary = run_job(job, client=dask_client, mode="resume")  # complete: nothing to do
    assert summary.steps == []
    run_job(job, client=dask_client, mode="overwrite")


def test_resume_refuses_a_different_job(input_dir, dask_client):
    job = load_job(write_job(input_dir, JOB))
    run_job(job, client=dask_client)
    other = load_job(write_job(input_dir, JOB.replace("bins = 8", "bins = 9")))
    with pytest.raises(OutputExistsError, match="different job"):
        run_job(other, client=dask_client, mode="resume")


def _slow_scale(block):
    time.sleep(0.05)
    return block * 2.0


def run_slow(inputs, params):
    return {"Y": inputs["X"].map_blocks(_slow_scale, dtype=np.float64)}, {}


@pytest.fixture
def slow_kernel(monkeypatch):
    spec = KernelSpec(name="slowdouble", family="test", summary="2x, slowly",
                      run="tests.test_runner:run_slow",
                      inputs=(Port("X", ("row", "column")),),
                      outputs=(Port("Y", ("row", "column")),))
    monkeypatch.setitem(registry.all_kernels(), "slowdouble", spec)
    return spec


def test_interrupted_run_resumes_without_recomputing(tmp_path, slow_kernel, dask_client):
    X = np.random.default_rng(0).random((4000, 2))
    make_input(tmp_path / "in.zarr", {"X": (X, (100, 2))})  # 40 chunks
    job = load_job(write_job(tmp_path, """
        [input]
        path = "in.zarr"
        [[step]]
        kernel = "slowdouble"
        input = "X"
        [output]
        path = "out.zarr"
    """))
    done_dir = job.output_path / "slowdouble" / "Y" / ".done"
    stop = threading.Event()

    def stop_after_some_chunks():
        while not (done_dir.is_dir() and len(os.listdir(done_dir)) >= 5):
            time.sleep(0.01)
        stop.set()

    threading.Thread(target=stop_after_some_chunks, daemon=True).start()
    with pytest.raises(Interrupted, match="chunks written and kept"):
        run_job(job, client=dask_client, stop=stop)
    out = zarr.open_group(str(job.output_path), mode="r")
    assert out.attrs["status"] == "interrupted"  # never looks complete
    finished = len(os.listdir(done_dir))
    assert 5 <= finished < 40

    summary = run_job(job, client=dask_client, mode="resume")
    step = summary.steps[0]
    # chunks in flight when the stop came may still have finished: they are reused too
    assert step.chunks_reused >= finished and step.chunks_reused + step.chunks_written == 40
    np.testing.assert_array_equal(zarr.open_array(str(job.output_path / "slowdouble/Y"))[:],
                                  X * 2.0)
    attrs = zarr.open_group(str(job.output_path), mode="r").attrs
    assert attrs["status"] == "complete"
    assert [r["status"] for r in attrs["runs"]] == ["interrupted", "complete"]


def test_nan_input_fails_cleanly_and_writes_nothing(tmp_path, dask_client):
    X = np.ones((100, 2))
    X[50, 1] = np.inf
    make_input(tmp_path / "in.zarr", {"X": (X, (10, 2))})
    job = load_job(write_job(tmp_path, """
        [input]
        path = "in.zarr"
        [[step]]
        kernel = "describe"
        input = "X"
        [output]
        path = "out.zarr"
    """))
    with pytest.raises(UserError, match="inf"):
        run_job(job, client=dask_client)
    assert not job.output_path.exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_output_folder(input_dir, dask_client):  # pragma: no cover - CI runs as root
    (input_dir / "ro").mkdir(mode=0o500)
    job = load_job(write_job(input_dir, JOB.replace("out/result.zarr", "ro/x/r.zarr")))
    with pytest.raises(UserError, match="cannot create|not writable"):
        run_job(job, client=dask_client)


def test_output_folder_that_is_a_file(input_dir, dask_client):
    (input_dir / "out").write_text("a file, not a folder")
    job = load_job(write_job(input_dir, JOB))
    with pytest.raises(UserError, match="cannot create the output folder"):
        run_job(job, client=dask_client)


def test_temporary_local_cluster_is_sized_and_used(input_dir, readings):
    job = load_job(write_job(input_dir, JOB + "[cluster]\nworkers = 1\n"))
    summary = run_job(job)
    assert summary.status == "complete"
    np.testing.assert_array_equal(
        zarr.open_array(str(job.output_path / "stats/count"))[:], [4000, 4000, 4000])
