"""DBSCAN against scikit-learn and a naive NumPy reference, in memory and over Dask."""

from __future__ import annotations

import logging

import dask
import dask.array as da
import numpy as np
import pytest

from hpcjobs.kernels import dbscan

sklearn_cluster = pytest.importorskip("sklearn.cluster")
datasets = pytest.importorskip("sklearn.datasets")


def data(n=1500, d=2, centers=5, std=0.5, noise=0.1, seed=0):
    X, _ = datasets.make_blobs(int(n * (1 - noise)), n_features=d, centers=centers,
                               cluster_std=std, center_box=(-10, 10), random_state=seed)
    rng = np.random.default_rng(seed)
    return np.vstack([X, rng.uniform(-12, 12, (n - len(X), d))])


def chunked(X, n_chunks):
    return da.from_array(X, chunks=(-(-len(X) // n_chunks), X.shape[1]))


def naive_core(X, eps, min_samples):
    d2 = ((X[:, None] - X[None]) ** 2).sum(2)
    return (d2 <= eps * eps).sum(1) >= min_samples


def assert_matches_sklearn(X, eps, min_samples, labels, core):
    core_idx, sk = sklearn_cluster.dbscan(X, eps=eps, min_samples=min_samples)
    sk_core = np.zeros(len(X), bool)
    sk_core[core_idx] = True
    labels, core = np.asarray(labels), np.asarray(core)
    np.testing.assert_array_equal(core, sk_core)                 # the same core points
    pairs = set(zip(labels[core].tolist(), sk[core].tolist(), strict=True))
    assert len(pairs) == len(set(sk[core].tolist())) == len(set(labels[core].tolist()))
    np.testing.assert_array_equal(labels == -1, sk == -1)        # the same noise
    Xc, lc = X[core], labels[core]
    for i in np.flatnonzero(~core & (labels >= 0)):              # border: a core neighbour's
        near = ((Xc - X[i]) ** 2).sum(1) <= eps * eps
        assert labels[i] in set(lc[near].tolist())
    if labels.size:
        found = labels[labels >= 0]
        if found.size:  # numbered 0.. in order of first core row
            first = [np.flatnonzero(core & (labels == c))[0] for c in range(found.max() + 1)]
            assert first == sorted(first)


@pytest.mark.parametrize("d", [1, 2, 3, 4])
@pytest.mark.parametrize("eps,min_samples", [(0.3, 5), (0.6, 12), (0.25, 1), (0.5, 2)])
def test_matches_sklearn(d, eps, min_samples):
    X = data(1200, d=d, seed=d)
    r = dbscan(X, eps, min_samples)
    assert_matches_sklearn(X, eps, min_samples, r.labels, r.core)
    np.testing.assert_array_equal(r.core, naive_core(X, eps, min_samples))
    assert r.n_clusters == (r.labels.max() + 1 if r.labels.size else 0)


def test_distance_exactly_eps_counts():
    # integer lattice: neighbours at exactly eps (=1) and sqrt(2) * eps
    g = np.stack(np.meshgrid(np.arange(6.0), np.arange(5.0)), -1).reshape(-1, 2)
    for eps, ms in ((1.0, 5), (1.0, 4), (np.sqrt(2.0), 9), (0.999, 2)):
        r = dbscan(g, eps, ms)
        assert_matches_sklearn(g, eps, ms, r.labels, r.core)
        rd = dbscan(chunked(g, 3), eps, ms)
        np.testing.assert_array_equal(rd.labels.compute(), r.labels)


def test_edge_cases():
    one = dbscan(np.array([[1.0, 2.0]]), 0.5, 1)
    assert one.labels.tolist() == [0] and one.core.tolist() == [True]
    noise = dbscan(np.array([[0.0], [10.0], [20.0]]), 1.0, 2)
    assert noise.labels.tolist() == [-1, -1, -1] and noise.n_clusters == 0
    dup = np.zeros((30, 2))
    r = dbscan(dup, 1e-6, 30)
    assert (r.labels == 0).all() and r.core.all()
    r = dbscan(dup, 1e-6, 31)
    assert (r.labels == -1).all()
    X = data(600, seed=3).astype(np.float32)
    r = dbscan(X, 0.4, 6)
    assert_matches_sklearn(X.astype(np.float64), 0.4, 6, r.labels, r.core)


def test_large_coordinates_and_tiny_eps():
    rng = np.random.default_rng(1)
    X = rng.uniform(-1e6, 1e6, (500, 2))
    X = np.vstack([X, X[:100] + rng.normal(0, 1e-3, (100, 2))])
    r = dbscan(X, 0.01, 2)
    assert_matches_sklearn(X, 0.01, 2, r.labels, r.core)
    # 3-D: too many cells for one int64 key (the lexicographic sort path)
    X3 = rng.uniform(-1e6, 1e6, (400, 3))
    X3 = np.vstack([X3, X3[:150] + rng.normal(0, 2e-3, (150, 3))])
    r = dbscan(X3, 0.01, 2)
    assert_matches_sklearn(X3, 0.01, 2, r.labels, r.core)
    np.testing.assert_array_equal(dbscan(chunked(X3, 4), 0.01, 2).labels.compute(), r.labels)


@pytest.mark.parametrize("d", [2, 3])
def test_same_result_for_1_2_4_7_chunks(d):
    X = data(2000, d=d, centers=6, std=0.6, seed=10 + d)
    rng = np.random.default_rng(d)
    X = X[rng.permutation(len(X))]
    ref = dbscan(X, 0.4, 6)
    for n_chunks in (1, 2, 4, 7):
        r = dbscan(chunked(X, n_chunks), 0.4, 6)
        assert isinstance(r.labels, da.Array) and isinstance(r.core, da.Array)
        np.testing.assert_array_equal(r.labels.compute(), ref.labels)
        np.testing.assert_array_equal(r.core.compute(), ref.core)
        assert r.n_clusters == ref.n_clusters


def test_cluster_crossing_every_slab():
    # one long thin cluster along x crosses all spatial partitions, plus noise
    rng = np.random.default_rng(0)
    x = np.linspace(0, 100, 3000)
    X = np.column_stack([x, 0.05 * rng.standard_normal(3000)])
    X = np.vstack([X, rng.uniform(0, 100, (200, 2)) + [0, 5]])
    X = X[rng.permutation(len(X))]
    ref = dbscan(X, 0.2, 4)
    assert_matches_sklearn(X, 0.2, 4, ref.labels, ref.core)
    r = dbscan(chunked(X, 7), 0.2, 4)
    np.testing.assert_array_equal(r.labels.compute(), ref.labels)


def test_local_cluster_matches_in_memory(dask_client):
    X = data(3000, d=2, centers=8, std=0.5, seed=21)
    ref = dbscan(X, 0.3, 5)
    r = dbscan(chunked(X, 4), 0.3, 5)
    np.testing.assert_array_equal(r.labels.compute(), ref.labels)
    np.testing.assert_array_equal(r.core.compute(), ref.core)



def test_repeated_runs_on_scattered_chunks_reuse_no_key_differently(dask_client, caplog):
    # each block's key must mean the same task in every graph a run submits (its chunk
    # statistics and its slabs): else the scheduler warns of key reuse, which can deadlock
    # (dask/dask#9888); seen with chunks scattered by hand, as `hpcjobs bench dbscan` does
    X = data(3000, d=2, centers=8, std=0.5, seed=22)
    futures = dask_client.scatter([X[i:i + 750] for i in range(0, len(X), 750)], hash=False)
    Xd = da.concatenate([da.from_delayed(f, shape=(750, 2), dtype=X.dtype) for f in futures])
    ref = dbscan(X, 0.3, 5)
    with caplog.at_level(logging.WARNING, logger="distributed.scheduler"):
        for _ in range(2):
            r = dbscan(Xd, 0.3, 5)
            labels, core = dask.compute(r.labels, r.core)
            np.testing.assert_array_equal(labels, ref.labels)
            np.testing.assert_array_equal(core, ref.core)
    assert not [m for m in caplog.messages if "run_spec" in m]

def test_bad_inputs():
    X = data(50)
    bad = X.copy()
    bad[4, 0] = np.nan
    with pytest.raises(ValueError, match="finite"):
        dbscan(bad, 0.5, 5)
    bad[4, 0] = -np.inf
    with pytest.raises(ValueError, match="finite"):
        dbscan(bad, 0.5, 5)
    with pytest.raises(ValueError, match="finite"):
        dbscan(chunked(bad, 3), 0.5, 5)
    with pytest.raises(ValueError, match="2-D"):
        dbscan(X[:, 0], 0.5, 5)
    with pytest.raises(ValueError, match="at least 1 row"):
        dbscan(np.empty((0, 2)), 0.5, 5)
    with pytest.raises(ValueError, match=r"'eps' parameter of dbscan .* \(0\.0, inf\)\. Got 0"):
        dbscan(X, 0, 5)
    with pytest.raises(ValueError, match="eps"):
        dbscan(X, -1.0, 5)
    with pytest.raises(ValueError, match="min_samples"):
        dbscan(X, 0.5, 0)
    with pytest.raises(TypeError, match="min_samples"):
        dbscan(X, 0.5, 2.0)
    with pytest.raises(TypeError, match="numeric"):
        dbscan(np.array([["a"], ["b"]]), 0.5, 1)


def test_unknown_chunk_sizes():
    X = data(900, seed=15)
    keep = np.arange(900) % 4 != 0
    rows = -(-len(X) // 3)
    Xd = chunked(X, 3)[da.from_array(keep, chunks=(rows,))]
    ref = dbscan(X[keep], 0.5, 5)
    r = dbscan(Xd, 0.5, 5)
    np.testing.assert_array_equal(r.labels.compute(), ref.labels)
