"""The matrix-product Lloyd step (kernels/clustering/_dense_lloyd.py) against the direct
kernels behind ``kmeans``/``kmeans_predict`` and against scikit-learn: same labels (ties and
cancellation included), same centroids and inertia to rounding."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from hpcjobs.kernels import kmeans, kmeans_predict
from hpcjobs.kernels.clustering._dense_lloyd import assign_dense, lloyd_dense, use_dense

sklearn_cluster = pytest.importorskip("sklearn.cluster")


def padded(C, dtype):
    """Centroid columns padded with +inf to a multiple of 4, as k-means hands them over."""
    k, d = C.shape
    CT = np.full((d, max(4, -(-k // 4) * 4)), np.inf, dtype=dtype)
    CT[:, :k] = C.T
    return CT


def structured(n, d, seed=0, dtype=np.float64):
    """Gaussian rows around four offsets along the diagonal (``hpcjobs bench kmeans-lloyd``)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    X += rng.integers(0, 4, (n, 1)) * 3.0
    return X.astype(dtype)


def dense_kmeans(X, C0, iters, n_threads=2):
    """Lloyd driven by the dense step alone: (centroids, labels, inertia, d2)."""
    C = C0.astype(np.float64)
    k = len(C)
    for _ in range(iters):
        sums, counts, _ = lloyd_dense(X, padded(C, X.dtype), k, n_threads)
        assert counts.sum() == len(X) and (counts > 0).all()
        new = sums / counts[:, None]
        if np.array_equal(new, C):
            break
        C = new
    labels = np.empty(len(X), dtype=np.int32)
    d2 = np.empty(len(X), dtype=X.dtype)
    inertia = assign_dense(X, padded(C, X.dtype), labels, d2, n_threads)
    return C.astype(X.dtype), labels, inertia, d2


@pytest.mark.parametrize("n, d, k, iters", [(3000, 784, 10, 4), (20_011, 8, 16, 5),
                                            (40_000, 8, 16, 3), (999, 33, 7, 6),
                                            (50, 5, 3, 2)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_lloyd_matches_kmeans_and_sklearn(n, d, k, iters, dtype):
    X = structured(n, d, seed=d + k, dtype=dtype)
    C0 = X[np.random.default_rng(1).choice(n, k, replace=False)]
    C, labels, inertia, d2 = dense_kmeans(X, C0, iters)
    r = kmeans(X, k, init=C0, max_iter=iters, tol=0.0)
    np.testing.assert_array_equal(labels, r.labels)
    rtol = 1e-5 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(C, r.centroids, rtol=rtol, atol=rtol)
    assert inertia == pytest.approx(r.inertia, rel=1e-6 if dtype == np.float32 else 1e-10)
    np.testing.assert_allclose(d2.sum(dtype=np.float64), inertia, rtol=1e-5)
    if dtype == np.float64:
        Cs, ls, inert = sklearn_cluster.k_means(X, k, init=C0, n_init=1, max_iter=iters, tol=0.0,
                                                algorithm="lloyd")
        np.testing.assert_array_equal(labels, ls)
        np.testing.assert_allclose(C, Cs, rtol=1e-10, atol=1e-10)
        assert inertia == pytest.approx(inert, rel=1e-10)


@pytest.mark.parametrize("n_threads", [1, 2, 3])
def test_step_is_the_same_for_any_threads(n_threads):
    X = structured(10_007, 40, seed=3)
    C = X[:12].astype(np.float64) + 0.5
    one = lloyd_dense(X, padded(C, X.dtype), 12, 1)
    many = lloyd_dense(X, padded(C, X.dtype), 12, n_threads)
    np.testing.assert_array_equal(many[1], one[1])
    np.testing.assert_allclose(many[0], one[0], rtol=1e-12)
    assert many[2] == pytest.approx(one[2], rel=1e-12)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_cancellation_and_ties_get_the_direct_kernels_labels(dtype):
    """Rows far from the origin relative to their spread (the expansion |x|^2 - 2x.c + |c|^2
    keeps no significant digit of the distances), exact ties between centroids (a duplicated
    centroid, rows halfway between two), and integer data: the labels must still be those
    of the direct distances, the lowest index on a tie."""
    rng = np.random.default_rng(7)
    n, d = 6000, 24
    if dtype == np.float64:  # (on integers the float64 product would be exact)
        X = 1e8 + rng.standard_normal((n, d))
    else:  # float32 holds integers only, this far out
        X = (1e7 + rng.integers(-3, 4, (n, d))).astype(dtype)
    C = X[rng.choice(n, 6, replace=False)].astype(np.float64)
    C = np.vstack([C, C[2:3], C[:1] + 1.0, C[:1] - 1.0])  # a duplicate, two at distance 1
    X[:50] = C[0]  # halfway rows: equidistant from C[7] and C[8]
    labels = np.empty(n, dtype=np.int32)
    d2 = np.empty(n, dtype=dtype)
    inertia = assign_dense(X, padded(C, dtype), labels, d2, 2)
    expect = kmeans_predict(X, C.astype(dtype))
    np.testing.assert_array_equal(labels, expect)
    assert not (labels == 6).any()  # the duplicate of centroid 2 never wins its ties
    Cd = C.astype(dtype).astype(np.float64)
    exact = ((X.astype(np.float64) - Cd[expect]) ** 2).sum(axis=1)
    np.testing.assert_allclose(d2, exact, rtol=1e-6)
    assert inertia == pytest.approx(exact.sum(), rel=1e-6)
    sums, counts, inertia2 = lloyd_dense(X, padded(C, dtype), len(C), 2)
    np.testing.assert_array_equal(counts, np.bincount(expect, minlength=len(C)))
    assert inertia2 == pytest.approx(inertia, rel=1e-12)


def test_assign_matches_predict_on_wide_data():
    X = structured(4000, 784, seed=5)
    C = X[np.random.default_rng(2).choice(4000, 10, replace=False)] + 0.25
    labels = np.empty(4000, dtype=np.int32)
    d2 = np.empty(4000)
    assign_dense(X, padded(C, X.dtype), labels, d2, 2)
    np.testing.assert_array_equal(labels, kmeans_predict(X, C))


def test_blas_threads_come_back_after_overlapping_calls():
    threadpoolctl = pytest.importorskip("threadpoolctl")

    def blas_threads():
        return [i["num_threads"] for i in threadpoolctl.threadpool_info()
                if i["user_api"] == "blas"]

    before = blas_threads()
    X = structured(30_000, 64, seed=4)
    CT = padded(X[:16].astype(np.float64), X.dtype)
    errors = []

    def call():
        try:
            lloyd_dense(X, CT, 16, 2)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert blas_threads() == before


def test_without_threadpoolctl_same_step(monkeypatch):
    """Without threadpoolctl (not a dependency of hpcjobs) the step runs from one thread."""
    import sys

    from hpcjobs.kernels.clustering import _dense_lloyd

    X = structured(9000, 48, seed=6)
    CT = padded(X[:9].astype(np.float64) + 0.1, X.dtype)
    expect = lloyd_dense(X, CT, 9, 2)
    monkeypatch.setattr(_dense_lloyd, "_controller", None)
    monkeypatch.setitem(sys.modules, "threadpoolctl", None)  # import fails
    got = lloyd_dense(X, CT, 9, 2)
    np.testing.assert_array_equal(got[1], expect[1])
    np.testing.assert_allclose(got[0], expect[0], rtol=1e-12)
    with _dense_lloyd._one_blas_thread() as limited:
        assert not limited


def test_use_dense_for_wide_data_not_for_one_feature():
    assert use_dense(784, 10)
    assert use_dense(784, 1000)
    assert not use_dense(1, 2)
