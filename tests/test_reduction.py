"""The kernels' reduction layer: one task per row block for every reduction sharing it."""

import dask
import dask.array as da
import numpy as np
import pytest

from hpcjobs.kernels import aggregate2d, describe
from hpcjobs.kernels._reduction import Reduction, compute_all, to_delayed
from hpcjobs.kernels.stats.describe import describe_reduction
from hpcjobs.kernels.stats.extremes import column_extremes, merge_extremes
from hpcjobs.kernels.viz.aggregate import aggregate2d_reduction


@pytest.fixture
def X():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((5003, 3))
    X[::7, 2] = np.nan
    return X


def _extremes_reduction(X):
    return Reduction("extremes", (X,), column_extremes, merge_extremes, lambda b: b)


def test_numpy_and_dask_paths_agree(X):
    r_np = _extremes_reduction(X).compute()
    r_da = _extremes_reduction(da.from_array(X, chunks=(700, 3))).compute()
    np.testing.assert_array_equal(r_np, r_da)
    assert r_np[1, 2] == np.isnan(X[:, 2]).sum()
    np.testing.assert_array_equal(r_np[2], np.nanmin(X, axis=0))


def test_shared_pass_runs_one_chunk_task_per_block_for_all(X):
    Xd = da.from_array(X, chunks=(1000, 3))
    mins, maxs = np.nanmin(X, axis=0), np.nanmax(X, axis=0)
    reductions = [describe_reduction(Xd, bins=8, extremes=(mins, maxs)),
                  aggregate2d_reduction(Xd[:, 0], Xd[:, 1], shape=(4, 5),
                                        range=((mins[0], maxs[0]), (mins[1], maxs[1]))),
                  _extremes_reduction(Xd)]
    delayed = to_delayed(reductions)
    graph = dict(delayed[0].__dask_graph__())
    chunk_tasks = [k for k in graph if isinstance(k, tuple) and str(k[0]).endswith("-chunk")]
    assert len(chunk_tasks) == Xd.numblocks[0]  # not one per block per reduction
    desc, raster, ext = dask.compute(*delayed)
    ref = describe(X, bins=8)
    np.testing.assert_allclose(desc.mean, ref.mean, rtol=1e-12)
    np.testing.assert_array_equal(desc.hist, ref.hist)
    np.testing.assert_array_equal(raster, aggregate2d(X[:, 0], X[:, 1], shape=(4, 5)))
    np.testing.assert_array_equal(ext, column_extremes(X))


def test_different_row_blocks_get_their_own_tasks(X):
    a = _extremes_reduction(da.from_array(X, chunks=(1000, 3)))
    b = _extremes_reduction(da.from_array(X, chunks=(2500, 3)))
    ra, rb = compute_all([a, b])
    np.testing.assert_array_equal(ra, rb)


def test_describe_extremes_give_numpys_edges_in_one_pass(X):
    Xd = da.from_array(X, chunks=(1000, 3))
    ext = column_extremes(X)
    r = describe(Xd, bins=16, extremes=(ext[2], ext[3]))
    ref = describe(X, bins=16)
    np.testing.assert_array_equal(r.bin_edges, ref.bin_edges)
    np.testing.assert_array_equal(r.hist, ref.hist)


def test_describe_refuses_bad_extremes(X):
    with pytest.raises(ValueError, match="extremes"):
        describe(X, extremes=([0.0], [1.0]))
    with pytest.raises(ValueError, match="min <= max"):
        describe(X, extremes=([0.0, 0, 2], [1.0, 1, 1]))


def test_column_extremes_of_empty_and_integer_columns():
    e = column_extremes(np.zeros((0, 2)))
    assert e[0].tolist() == [0, 0] and np.isinf(e[2]).all() and np.isinf(e[3]).all()
    e = column_extremes(np.array([3, -1, 7], dtype=np.int32))
    assert e[:, 0].tolist() == [3, 0, -1, 7]
