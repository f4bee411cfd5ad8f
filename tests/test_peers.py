"""The benchmarks' strongest peers as oracles: each kernel gives the peer's results.

oneDAL (``sklearnex``) for describe, pca, lof, kmeans and dbscan; faiss for all-kNN and float32
k-means; Borgelt's pyfim for frequent itemsets; SCAMP (``pyscamp``) for the matrix profile.
The same inputs and settings as ``benchmarks/*.py`` use, at small sizes; where a result is
defined only up to ties (neighbour indices, labels of points equally near two centroids,
cluster numbering) the comparison allows exactly that and no more.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests import peer_fixtures

source_peers = peer_fixtures.source_peers

N_ITEMS = 200


def _zipf_baskets(n: int, seed: int = 0, n_items: int = N_ITEMS) -> dict:
    """The frequent-itemsets benchmark's baskets: ~Poisson(10) distinct Zipf-weighted items."""
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, n_items + 1)
    p /= p.sum()
    draws = rng.choice(n_items, size=(n, 40), p=p)
    lengths = np.maximum(1, rng.poisson(10, n))
    rows = [np.array(list(dict.fromkeys(draws[i].tolist()))[:lengths[i]], np.int32)
            for i in range(n)]
    indptr = np.zeros(n + 1, dtype=np.int64)
    indptr[1:] = np.cumsum([r.size for r in rows])
    return {"indptr": indptr, "items": np.concatenate(rows)}


# --------------------------------------------------------------------------- oneDAL


def test_describe_matches_onedal_basic_statistics():
    from sklearnex.basic_statistics import BasicStatistics

    from hpcjobs.kernels import describe

    X = np.random.default_rng(1).standard_normal((50_000, 6)) * [1, 2, 3, 1e3, 1e-3, 7] + 5
    ours = describe(X, bins=64)
    bs = BasicStatistics(result_options=["min", "max", "mean", "variance"]).fit(X)
    n = X.shape[0]
    np.testing.assert_array_equal(ours.min, bs.min_)
    np.testing.assert_array_equal(ours.max, bs.max_)
    np.testing.assert_allclose(ours.mean, bs.mean_, rtol=1e-13)
    # oneDAL's variance is ddof=1, ours (like numpy's std) ddof=0
    np.testing.assert_allclose(ours.std**2 * n / (n - 1), bs.variance_, rtol=1e-11)


def test_pca_matches_onedal_covariance_eigh():
    from sklearnex.decomposition import PCA

    from hpcjobs.kernels import pca

    rng = np.random.default_rng(2)
    X = rng.standard_normal((20_000, 20)) @ rng.standard_normal((20, 20))
    ours = pca(X, 2)
    theirs = PCA(2, svd_solver="covariance_eigh")
    emb = theirs.fit_transform(X)
    signs = np.sign(np.sum(ours.components * theirs.components_, axis=1))  # up to sign
    assert np.all(signs != 0)
    np.testing.assert_allclose(ours.components, theirs.components_ * signs[:, None], atol=1e-10)
    np.testing.assert_allclose(ours.explained_variance, theirs.explained_variance_, rtol=1e-10)
    np.testing.assert_allclose(ours.embedding, emb * signs, atol=1e-8)


def test_lof_matches_onedal():
    from sklearnex.neighbors import LocalOutlierFactor

    from hpcjobs.kernels import lof

    X = np.random.default_rng(3).standard_normal((5_000, 8))
    theirs = -LocalOutlierFactor(n_neighbors=20).fit(X).negative_outlier_factor_
    np.testing.assert_allclose(lof(X, 20), theirs, rtol=1e-10)


@pytest.mark.parametrize("d, k, iters", [(8, 16, 20), (96, 10, 10)])
def test_kmeans_matches_onedal_from_the_same_centroids(d, k, iters):
    """Same start, tol=0: the same labels and centroids after the same Lloyd iterations
    (d=96: the wide path, where the distance step is a matrix product)."""
    from sklearnex.cluster import KMeans

    from hpcjobs.kernels import kmeans

    rng = np.random.default_rng(4)
    X = rng.standard_normal((20_000, d)) + rng.integers(0, 4, (20_000, 1)) * 3.0
    C0 = X[rng.choice(len(X), k, replace=False)].copy()
    ours = kmeans(X, k, init=C0, max_iter=iters, tol=0.0)
    theirs = KMeans(k, init=C0, n_init=1, max_iter=iters, tol=0.0, algorithm="lloyd").fit(X)
    assert theirs.n_iter_ == ours.n_iter == iters
    np.testing.assert_array_equal(ours.labels, theirs.labels_)
    np.testing.assert_allclose(ours.centroids, theirs.cluster_centers_, rtol=1e-10, atol=1e-12)
    assert ours.inertia == pytest.approx(theirs.inertia_, rel=1e-10)


def test_dbscan_matches_onedal_core_noise_and_clusters():
    from sklearnex.cluster import DBSCAN

    from hpcjobs.kernels import dbscan

    rng = np.random.default_rng(5)
    centers = rng.uniform(-10, 10, (8, 2))
    X = np.vstack([centers[rng.integers(0, 8, 9_000)] + rng.standard_normal((9_000, 2)) * 0.5,
                   rng.uniform(-12, 12, (1_000, 2))])
    ours = dbscan(X, 0.1, 10)
    theirs = DBSCAN(eps=0.1, min_samples=10, algorithm="brute").fit(X)
    core = np.zeros(len(X), bool)
    core[theirs.core_sample_indices_] = True
    np.testing.assert_array_equal(ours.core, core)
    np.testing.assert_array_equal(ours.labels == -1, theirs.labels_ == -1)
    # core points: the same partition (cluster numbers may differ); a border point may join
    # any cluster whose core point reaches it, in either implementation
    pairs = set(zip(ours.labels[core].tolist(), theirs.labels_[core].tolist(), strict=True))
    assert len(pairs) == len({a for a, _ in pairs}) == len({b for _, b in pairs})
    assert ours.n_clusters == theirs.labels_.max() + 1


# --------------------------------------------------------------------------- faiss


def test_knn_outliers_match_faiss_flat_index():
    import faiss

    from hpcjobs.kernels import knn_outliers

    X = np.random.default_rng(6).standard_normal((8_000, 8))
    X32 = X.astype(np.float32)
    index = faiss.IndexFlatL2(8)
    index.add(X32)
    d2, ids = index.search(X32, 21)
    np.testing.assert_array_equal(ids[:, 0], np.arange(len(X)))  # itself first
    # faiss: float32 squared distances (with ||x||^2 - 2 x.y + ||y||^2 rounding)
    np.testing.assert_allclose(knn_outliers(X32.astype(np.float64), 20), np.sqrt(d2[:, 20]),
                               rtol=1e-4)


def test_float32_kmeans_matches_faiss_up_to_near_ties():
    import faiss

    from hpcjobs.kernels import kmeans

    rng = np.random.default_rng(7)
    X = (rng.standard_normal((20_000, 8)) + rng.integers(0, 4, (20_000, 1)) * 3.0)
    X = X.astype(np.float32)
    C0 = X[rng.choice(len(X), 16, replace=False)].copy()
    ours = kmeans(X, 16, init=C0, max_iter=10, tol=0.0)
    km = faiss.Kmeans(8, 16, niter=10, max_points_per_centroid=len(X), min_points_per_centroid=1)
    km.train(X, init_centroids=C0)
    _, labels = km.index.search(X, 1)
    labels = labels[:, 0]
    np.testing.assert_allclose(ours.centroids, km.centroids, rtol=1e-4, atol=1e-4)
    differ = np.flatnonzero(ours.labels != labels)
    assert differ.size <= len(X) // 1000
    Xd = X[differ].astype(np.float64)
    C = ours.centroids.astype(np.float64)
    d_ours = np.sum((Xd - C[ours.labels[differ]]) ** 2, axis=1)
    d_theirs = np.sum((Xd - C[labels[differ]]) ** 2, axis=1)
    np.testing.assert_allclose(d_ours, d_theirs, rtol=1e-4)  # float32 near-ties only


# --------------------------------------------------------------------------- pyfim, SCAMP


@pytest.mark.parametrize("n_items, min_support, max_len", [
    (N_ITEMS, 0.01, None), (N_ITEMS, 0.05, None), (N_ITEMS, 0.01, 2),
    (8_000, 0.001, None),  # a large catalogue: many rare frequent items (pair counts first)
])
def test_frequent_itemsets_identical_to_pyfim(source_peers, n_items, min_support, max_len):
    """The same itemsets with the same counts as Borgelt's fpgrowth and eclat, given the
    same minimum count (pyfim: supp < 0 is an absolute count, > 0 a percentage)."""
    import fim

    from hpcjobs.kernels import frequent_itemsets
    from hpcjobs.kernels.mining.itemsets import _min_count

    csr = _zipf_baskets(6_000, n_items=n_items)
    ours = frequent_itemsets(csr, min_support, max_len=max_len)
    ip, items = csr["indptr"].tolist(), csr["items"].tolist()
    tracts = [items[ip[i]:ip[i + 1]] for i in range(len(ip) - 1)]
    count = _min_count(min_support, len(tracts))
    mine = dict(zip(ours.itemsets, ours.counts.tolist(), strict=True))
    assert len(mine) > 50
    for algo in (fim.fpgrowth, fim.eclat):
        limit = {} if max_len is None else {"zmax": max_len}
        found = algo(tracts, supp=-count, report="a", **limit)
        assert {frozenset(s): c for s, c in found} == mine, algo.__name__


def test_frequent_itemsets_dask_son_identical_to_pyfim(source_peers):
    import dask.array as da
    import fim

    from hpcjobs.kernels import frequent_itemsets
    from hpcjobs.kernels.mining.itemsets import _min_count

    csr = _zipf_baskets(4_000, seed=1)
    lazy = {"indptr": da.from_array(csr["indptr"], chunks=1_001), "items": csr["items"]}
    ours = frequent_itemsets(lazy, 0.02)
    ip, items = csr["indptr"].tolist(), csr["items"].tolist()
    tracts = [items[ip[i]:ip[i + 1]] for i in range(len(ip) - 1)]
    found = fim.eclat(tracts, supp=-_min_count(0.02, len(tracts)), report="a")
    assert {frozenset(s): c for s, c in found} == dict(
        zip(ours.itemsets, ours.counts.tolist(), strict=True))


@pytest.mark.parametrize("m", [100, 64])
def test_matrix_profile_matches_scamp(source_peers, m):
    """The same profile (SCAMP returns float32) and index up to ties, once the exclusion
    zones are lined up: ours (and stumpy's) leaves out matches ``|i - j| <= ceil(m / 4)``,
    SCAMP's only ``|i - j| < ceil(m / 4)``: where SCAMP's best match lies exactly on that
    boundary, ours is the best beyond it, and SCAMP's can only be nearer."""
    import pyscamp
    from numpy.lib.stride_tricks import sliding_window_view

    from hpcjobs.kernels import matrix_profile

    rng = np.random.default_rng(8)
    T = np.cumsum(rng.standard_normal(6_000))
    T[3000:3000 + 2 * m] = T[1000:1000 + 2 * m] + 0.01 * rng.standard_normal(2 * m)  # a motif
    ours = matrix_profile(T, m)
    profile, index = pyscamp.selfjoin(T, m, threads=2, gpus=[])
    n = len(T) - m + 1
    excl = ours.exclusion_zone
    assert excl == -(-m // 4) and profile.shape == index.shape == (n,)
    windows = np.arange(n)
    assert np.abs(ours.index - windows).min() == excl + 1
    gap = np.abs(index.astype(np.int64) - windows)
    assert gap.min() == excl  # SCAMP's boundary is one nearer than ours
    edge = gap == excl
    assert edge.sum() < n // 10
    assert np.all(profile[edge] <= ours.profile[edge] + 1e-4)
    beyond = ~edge
    # distances come from correlations, sqrt(2 m (1 - rho)): near 0 (the motif) a rounding
    # of rho by 1e-10 is 1e-4 of distance, in both
    np.testing.assert_allclose(ours.profile[beyond], profile[beyond], rtol=1e-4, atol=1e-3)
    differ = np.flatnonzero(beyond & (ours.index != index))
    assert differ.size <= n // 100
    # where the indices differ, both matches are (numerically) equally near
    W = sliding_window_view(T, m)
    Z = (W - W.mean(1, keepdims=True)) / W.std(1, keepdims=True)
    d_ours = np.linalg.norm(Z[differ] - Z[ours.index[differ]], axis=1)
    d_theirs = np.linalg.norm(Z[differ] - Z[index[differ]], axis=1)
    np.testing.assert_allclose(d_ours, d_theirs, rtol=1e-4, atol=1e-3)
