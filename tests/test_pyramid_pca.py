"""pyramid vs NumPy reshape reductions (in memory and over Dask); pca vs scikit-learn."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pytest
from sklearn.decomposition import PCA

from hpcjobs.kernels import pca, pyramid


def _block(a, f, func):
    h, w = a.shape
    return func(a.reshape(h // f, f, w // f, f), axis=(1, 3))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mean_levels_equal_numpy_reshape_mean(dtype):
    a = np.random.default_rng(0).random((96, 160)).astype(dtype)
    levels = pyramid(a, 5)
    assert [lvl.shape for lvl in levels] == [(96, 160), (48, 80), (24, 40), (12, 20), (6, 10)]
    assert levels[0] is a or np.array_equal(levels[0], a)
    for k, lvl in enumerate(levels):
        assert lvl.dtype == dtype
        np.testing.assert_allclose(lvl, _block(a.astype(np.float64), 2**k, np.mean),
                                   rtol=1e-6 if dtype == np.float32 else 1e-13)


@pytest.mark.parametrize("method, func", [("min", np.min), ("max", np.max)])
def test_min_max_levels(method, func):
    a = np.random.default_rng(1).integers(0, 1000, (64, 32))
    for k, lvl in enumerate(pyramid(a, 4, method=method)):
        np.testing.assert_array_equal(lvl, _block(a, 2**k, func))


def test_mode_picks_the_most_frequent_label_ties_to_smallest():
    a = np.array([[1, 1, 3, 4],
                  [2, 1, 4, 3]])
    np.testing.assert_array_equal(pyramid(a, 2, method="mode")[1], [[1, 3]])


def test_odd_sizes_and_nan_windows():
    a = np.arange(35.0).reshape(5, 7)
    a[0, 0] = np.nan
    a[4, 6] = np.nan
    lvl1, lvl2 = pyramid(a, 3)[1:]
    assert lvl1.shape == (3, 4) and lvl2.shape == (2, 2)
    assert lvl1[0, 0] == np.mean([1.0, 7, 8])  # NaN skipped
    assert np.isnan(lvl1[2, 3])  # a (partial) window of only NaN
    assert lvl1[2, 2] == 32.5  # a partial window averages the pixels it holds
    assert lvl2[0, 0] == np.nanmean(a[:4, :4])  # the mean of base pixels, not of means
    np.testing.assert_allclose(pyramid(a, 3, method="max")[2],
                               [[np.nanmax(a[:4, :4]), np.nanmax(a[:4, 4:])],
                                [np.nanmax(a[4:, :4]), np.nanmax(a[4:, 4:])]])


@pytest.mark.parametrize("method", ["mean", "min", "max", "mode"])
def test_dask_levels_equal_in_memory_and_read_the_base_once(method):
    rng = np.random.default_rng(2)
    a = rng.integers(0, 5, (77, 130)) if method == "mode" else rng.random((77, 130))
    ref = pyramid(a, 4, method=method)
    reads = []

    def load(block, block_info=None):
        reads.append(block_info[0]["chunk-location"])
        return block

    for chunks in [(77, 130), (40, 64), (13, 30)]:
        reads.clear()
        base = da.from_array(a, chunks=chunks).map_blocks(load, dtype=a.dtype)
        levels = pyramid(base, 4, method=method)
        got = dask.compute(*levels[1:], scheduler="sync")
        for g, r in zip(got, ref[1:], strict=True):
            np.testing.assert_array_equal(g, r)
        assert len(reads) == len(set(reads))  # each base chunk read once for all levels


def test_pyramid_bad_input():
    with pytest.raises(ValueError, match="'levels' parameter of pyramid"):
        pyramid(np.ones((4, 4)), 0)
    with pytest.raises(ValueError, match="'method'"):
        pyramid(np.ones((4, 4)), 2, method="median")
    with pytest.raises(ValueError, match="2-D"):
        pyramid(np.ones(4), 2)
    with pytest.raises(ValueError, match="non-empty"):
        pyramid(np.ones((4, 0)), 2)
    with pytest.raises(ValueError, match="at least 1 row"):
        pyramid(np.ones((0, 4)), 2)


def _data(n=600, d=7, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)) @ rng.standard_normal((d, d)) + 100.0


def test_pca_equals_sklearn():
    X = _data()
    r = pca(X, 3)
    sk = PCA(3).fit(X)
    np.testing.assert_allclose(r.explained_variance, sk.explained_variance_, rtol=1e-10)
    np.testing.assert_allclose(r.explained_variance_ratio, sk.explained_variance_ratio_,
                               rtol=1e-10)
    # up to the sign of each component (both use the same sign rule; check it anyway)
    signs = np.sign(np.sum(r.components * sk.components_, axis=1))
    np.testing.assert_allclose(r.components * signs[:, None], sk.components_, atol=1e-10)
    np.testing.assert_allclose(r.embedding * signs, sk.transform(X), atol=1e-8)
    assert r.method == "covariance"


@pytest.mark.parametrize("chunks", [1, 2, 4, 7])
def test_pca_dask_row_chunks(chunks):
    X = _data(700)
    ref = pca(X, 2)
    r = pca(da.from_array(X, chunks=(-(-700 // chunks), 7)), 2)
    assert isinstance(r.embedding, da.Array)
    np.testing.assert_allclose(r.embedding.compute(), ref.embedding, atol=1e-9)
    np.testing.assert_allclose(r.explained_variance, ref.explained_variance, rtol=1e-12)


def _exact_scatter(X):
    """Mean and centred scatter in extended precision (the reference for badly-centred data)."""
    XL = X.astype(np.longdouble)
    c = XL - XL.sum(axis=0) / X.shape[0]
    return (XL.sum(axis=0) / X.shape[0]).astype(np.float64), (c.T @ c).astype(np.float64)


# 600 x 7 is swept by one thread, 40_000 x 20 by all of Numba's; 3_000 x 80 by BLAS
@pytest.mark.parametrize("shape", [(600, 7), (40_000, 20), (3_000, 80)])
@pytest.mark.parametrize("offset, scale", [(0.0, 1.0), (1e6, 1e-3), (-5e8, 10.0)])
def test_pca_badly_centred_data_keeps_its_precision(shape, offset, scale):
    """A large mean and a small spread: the fused sweep centres without cancelling."""
    X = _data(*shape, seed=4) * scale + offset
    r = pca(X, 3)
    mean, scatter = _exact_scatter(X)
    w, v = np.linalg.eigh(scatter / (X.shape[0] - 1))
    w, v = w[::-1], v[:, ::-1]
    np.testing.assert_allclose(r.mean, mean, rtol=1e-14)
    np.testing.assert_allclose(r.explained_variance, w[:3], rtol=1e-11)
    np.testing.assert_allclose(r.explained_variance_ratio, w[:3] / w.sum(), rtol=1e-11)
    # (scikit-learn's own covariance solver loses these digits: X.T @ X less n mean mean.T)
    signs = np.sign(np.sum(r.components * v[:, :3].T, axis=1))
    np.testing.assert_allclose(r.components * signs[:, None], v[:, :3].T, atol=1e-9)
    # the embedding centred on the exact mean, projected in extended precision
    want = (X.astype(np.longdouble) - mean) @ r.components.T.astype(np.longdouble)
    np.testing.assert_allclose(r.embedding, want.astype(np.float64), rtol=0,
                               atol=1e-9 * np.abs(want).max().astype(np.float64))


@pytest.mark.parametrize("dtype", [np.float32, np.int32])
def test_pca_other_dtypes_as_float64(dtype):
    X = (_data(40_000, 20, seed=5) * 10).astype(dtype)
    r, ref = pca(X, 2), pca(X.astype(np.float64), 2)
    np.testing.assert_allclose(r.explained_variance, ref.explained_variance, rtol=1e-12)
    np.testing.assert_allclose(r.embedding, ref.embedding, atol=1e-8)


def test_pca_dask_matches_in_memory_on_offset_data():
    X = _data(50_000, 20, seed=6) * 1e-3 + 1e6
    ref = pca(X, 2)
    r = pca(da.from_array(X, chunks=(12_000, 20)), 2)
    np.testing.assert_allclose(r.explained_variance, ref.explained_variance, rtol=1e-9)
    np.testing.assert_allclose(r.embedding.compute(), ref.embedding, atol=1e-9)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("n", [50, 40_000])
def test_pca_refuses_nan_and_inf_anywhere(bad, n):
    X = _data(n, 20)
    X[n - 1, 19] = bad
    with pytest.raises(ValueError, match="finite"):
        pca(X)
    with pytest.raises(ValueError, match="finite"):
        pca(da.from_array(X, chunks=(n // 3 + 1, 20)))


def test_pca_randomized_matches_sklearn_on_low_rank_data():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((400, 4)) @ rng.standard_normal((4, 60)) * 3 + \
        0.01 * rng.standard_normal((400, 60))
    sk = PCA(2).fit(X)
    for data in (X, da.from_array(X, chunks=(150, 60))):
        r = pca(data, 2, method="randomized", seed=1)
        emb = np.asarray(r.embedding)
        signs = np.sign(np.sum(r.components * sk.components_, axis=1))
        np.testing.assert_allclose(r.explained_variance, sk.explained_variance_, rtol=1e-6)
        np.testing.assert_allclose(emb * signs, sk.transform(X), atol=1e-4)


def test_pca_bad_input():
    with pytest.raises(ValueError, match="at most min"):
        pca(_data(10, 3), 4)
    with pytest.raises(ValueError, match="finite"):
        pca(np.array([[1.0, np.nan], [2.0, 3.0], [1.0, 1.0]]))
    with pytest.raises(ValueError, match="2-D"):
        pca(np.arange(5.0))
    with pytest.raises(ValueError, match="finite"):
        pca(da.from_array(np.array([[1.0, np.nan], [2.0, 3.0], [1.0, 1.0]]), chunks=2))
