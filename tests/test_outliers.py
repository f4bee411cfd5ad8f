"""knn_outliers / lof against a brute-force NumPy reference and scikit-learn."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

from hpcjobs.kernels import knn_outliers, lof

neighbors = pytest.importorskip("sklearn.neighbors")


def _naive_knn(X, k):
    D = np.sqrt(((X[:, None, :] - X[None, :, :]) ** 2).sum(-1))
    np.fill_diagonal(D, np.inf)
    order = np.argsort(D, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(D, order, 1), order


def _naive_lof(X, k):
    dist, idx = _naive_knn(X, k)
    kdist = dist[:, -1]
    lrd = 1.0 / (np.maximum(dist, kdist[idx]).mean(1) + 1e-10)
    return (lrd[idx] / lrd[:, None]).mean(1)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = np.r_[rng.standard_normal((900, 3)), rng.standard_normal((100, 3)) * 0.2 + 4,
              rng.uniform(-8, 8, (12, 3))]
    X[5] = X[6]  # a duplicate pair (distance 0 to each other)
    return X


@pytest.mark.parametrize("k", [1, 5, 20])
def test_knn_matches_sklearn_and_naive(data, k):
    got = knn_outliers(data, k)
    ref = neighbors.NearestNeighbors(n_neighbors=k).fit(data).kneighbors()[0][:, -1]
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got, _naive_knn(data, k)[0][:, -1], rtol=1e-12, atol=1e-12)
    if k == 1:
        assert got[5] == got[6] == 0.0


@pytest.mark.parametrize("k", [2, 10, 35])
def test_lof_matches_sklearn_and_naive(data, k):
    got = lof(data, k)
    ref = -neighbors.LocalOutlierFactor(n_neighbors=k).fit(data).negative_outlier_factor_
    np.testing.assert_allclose(got, ref, rtol=1e-9)
    np.testing.assert_allclose(got, _naive_lof(data, k), rtol=1e-9)
    assert np.median(got) == pytest.approx(1.0, abs=0.1)
    assert got[-12:].mean() > 1.5  # the scattered uniform points stand out


@pytest.mark.parametrize("n_chunks", [1, 2, 4, 7])
def test_dask_row_blocks(data, n_chunks):
    Xd = da.from_array(data, chunks=(-(-len(data) // n_chunks), 3))
    assert Xd.numblocks[0] == n_chunks
    k = 8
    kn = knn_outliers(Xd, k)
    lo = lof(Xd, k)
    assert isinstance(kn, da.Array) and isinstance(lo, da.Array)
    np.testing.assert_allclose(kn.compute(), knn_outliers(data, k), rtol=1e-12)
    np.testing.assert_allclose(lo.compute(), lof(data, k), rtol=1e-12)


def test_dask_column_chunks_and_float32():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((300, 5)).astype(np.float32)
    Xd = da.from_array(X, chunks=(70, 2))
    ref = neighbors.NearestNeighbors(n_neighbors=4).fit(X.astype(np.float64)).kneighbors()
    np.testing.assert_allclose(knn_outliers(Xd, 4).compute(), ref[0][:, -1], rtol=1e-12)


def test_high_dimension_and_tiny():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((200, 40))
    np.testing.assert_allclose(knn_outliers(X, 3), _naive_knn(X, 3)[0][:, -1], rtol=1e-12)
    two = np.array([[0.0, 0.0], [3.0, 4.0]])
    np.testing.assert_allclose(knn_outliers(two, 1), [5.0, 5.0])
    np.testing.assert_allclose(lof(two, 1), [1.0, 1.0])
    same = np.zeros((10, 2))  # all duplicates: sklearn gives 1.0 through the 1e-10 guard
    np.testing.assert_allclose(lof(same, 3), np.ones(10))


def test_bad_inputs(data):
    for func in (knn_outliers, lof):
        name = func.__name__
        with pytest.raises(ValueError, match=rf"The 'k' parameter of {name} must be an int in "
                           r"the range \[1, 1011\]. Got 1012 instead."):
            func(data, len(data))
        with pytest.raises(ValueError, match="'k' parameter"):
            func(data, 0)
        with pytest.raises(TypeError, match="'k' parameter"):
            func(data, 2.5)
        with pytest.raises(ValueError, match="2-D"):
            func(data[:, 0], 2)
        with pytest.raises(ValueError, match="at least 2 row"):
            func(data[:1], 1)
        bad = data.copy()
        bad[3, 1] = np.nan
        with pytest.raises(ValueError, match="finite"):
            func(bad, 2)
        with pytest.raises(ValueError, match="finite"):
            func(da.from_array(bad, chunks=(300, 3)), 2).compute()
        with pytest.raises(TypeError, match="'X' parameter"):
            func(np.array([["a", "b"], ["c", "d"]]), 1)


def test_many_leaves_wide_rows_and_threads():
    """Sets large enough for a deep tree and many runs of queries per thread, with rows wider
    than eight coordinates (the unrolled pass and the one-coordinate rest), float32 input,
    and ties (points on an integer grid: many neighbours at the same distance)."""
    import numba

    rng = np.random.default_rng(3)
    X = rng.standard_normal((6000, 11))
    got = lof(X, 20)
    ref = neighbors.LocalOutlierFactor(n_neighbors=20, algorithm="kd_tree").fit(X)
    np.testing.assert_allclose(got, -ref.negative_outlier_factor_, rtol=1e-9)
    kd = neighbors.NearestNeighbors(n_neighbors=7, algorithm="kd_tree").fit(X).kneighbors()
    np.testing.assert_allclose(knn_outliers(X, 7), kd[0][:, -1], rtol=1e-12, atol=0)
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        np.testing.assert_array_equal(lof(X, 20), got)  # the threads' split changes nothing
    finally:
        numba.set_num_threads(before)
    X32 = X[:, :9].astype(np.float32)
    ref32 = neighbors.NearestNeighbors(n_neighbors=5).fit(X32.astype(np.float64)).kneighbors()
    np.testing.assert_allclose(knn_outliers(X32, 5), ref32[0][:, -1], rtol=1e-12)
    grid = rng.integers(0, 6, (5000, 9)).astype(np.float64)
    ref_g = neighbors.NearestNeighbors(n_neighbors=15).fit(grid).kneighbors()
    np.testing.assert_array_equal(knn_outliers(grid, 15), ref_g[0][:, -1])


def test_float32_filter_passes_every_nearer_point():
    """The leaves' float32 filter lets through every point whose float64 distance is below
    the k-th, rounding included: each point of each leaf checked against a k-th just above
    its own float64 distance, at offsets and scales where float32 rounds (without the
    margin of ``_cut`` some of these points would be dropped)."""
    from hpcjobs.kernels.mining import outliers as o

    rng = np.random.default_rng(11)
    for offset, scale in [(0.0, 1.0), (1e3, 1e-2), (-5e6, 3.0), (1e9, 1e4)]:
        X = rng.standard_normal((2000, 5)) * scale + offset
        tree = o._tree(X)
        first = 2 ** tree.depth - 1
        q32 = np.empty(5, dtype=np.float32)
        buf32 = np.empty(tree.blocks32.shape[2], dtype=np.float32)
        for q in X[rng.choice(len(X), 40, replace=False)]:
            for leaf in range(tree.blocks32.shape[0]):
                a, b = tree.start[first + leaf], tree.stop[first + leaf]
                n = b - a
                spread = o._centred(q, tree.centre, tree.reach, leaf, q32)
                pts = X[tree.ids[a:b]]
                d64 = np.array([o._exact(q, tree.rows, r) for r in range(a, b)])
                np.testing.assert_array_equal(d64, ((q - pts) ** 2).sum(1))
                for c in range(n):
                    kth = np.nextafter(d64[c], np.inf)
                    cut = o._cut(kth, spread, 5)
                    o._leaf_distances(q32, tree.blocks32, leaf, n, buf32, np.float32(np.inf))
                    assert buf32[c] < cut


def test_large_offsets_and_coordinates_beyond_float32():
    """Near neighbours at a large offset (the float32 copy is centred on each leaf),
    coordinates too large for float32 (those leaves take the float64 distances), and both
    in one set: the distances of scikit-learn's kd tree."""
    rng = np.random.default_rng(12)
    base = rng.standard_normal((3000, 6))
    for X in (base * 1e-3 + 1e6, base * 1e25, np.r_[base, base[:300] * 1e22 + 1e23]):
        ref = neighbors.NearestNeighbors(n_neighbors=9, algorithm="kd_tree").fit(X)
        np.testing.assert_allclose(knn_outliers(X, 9), ref.kneighbors()[0][:, -1],
                                   rtol=1e-12, atol=0)


def test_dask_lof_queries_each_block_once(data, monkeypatch):
    """The neighbours of a block are one task that k-distances, densities and factors all
    use: a graph optimised apart for the k-distances would query every block twice."""
    import dask

    from hpcjobs.kernels.mining import outliers as o

    calls = []
    real = o._block_neighbours

    def counted(*args, **kwargs):
        calls.append(args[2])
        return real(*args, **kwargs)

    monkeypatch.setattr(o, "_block_neighbours", counted)
    Xd = da.from_array(data, chunks=(300, 3))
    with dask.config.set(scheduler="sync"):
        got = lof(Xd, 5).compute()
    np.testing.assert_allclose(got, lof(data, 5), rtol=1e-12)
    assert sorted(calls) == [0, 300, 600, 900]
