"""k-means with Hamerly's bounds (the in-memory NumPy path) against plain Lloyd and
scikit-learn: the same labels and iterations, centroids and inertia to rounding."""

from __future__ import annotations

import numpy as np
import pytest

from hpcjobs.kernels import kmeans
from hpcjobs.kernels.clustering._common import Blocks
from hpcjobs.kernels.clustering._kmeans import _bounded, _specialised
from hpcjobs.kernels.clustering._kmeans._bounded import bounded_lloyd, error_bounds
from hpcjobs.kernels.clustering._kmeans._lloyd import labels_inertia, lloyd_loop
from hpcjobs.kernels.clustering._kmeans._seeding import tolerance

sklearn_cluster = pytest.importorskip("sklearn.cluster")


@pytest.fixture(autouse=True, params=["default", "at once"])
def bounded_passes(request, monkeypatch):
    """Each test twice: with the bounds started when the centroids settle (as they run), and
    from the second iteration on whatever the drift (so that the small inputs here run
    mostly bounded passes); counts the bounded passes."""
    if request.param == "at once":
        monkeypatch.setattr(_bounded, "START_DRIFT", 1e12)  # any drift (finite: no 0 * inf)
    calls = []
    kernel = _specialised.bounded_pass

    def counting(X):
        step = kernel(X)

        def run(*args):
            calls.append(1)
            return step(*args)
        return run

    monkeypatch.setattr(_specialised, "bounded_pass", counting)
    return request.param, calls


def data(n, d, dtype, seed=0):
    """Overlapping groups (four blobs along the diagonal, unit noise): many rows near the
    boundaries of the clusters, so that the bounds fail often."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    X += rng.integers(0, 4, (n, 1)) * 3.0
    return X.astype(dtype)


def plain(X, C0, max_iter, tol):
    """Plain Lloyd (every distance, every iteration), as the NumPy path ran before the
    bounds: (centroids, n_iter, labels, inertia)."""
    blocks = Blocks(X)
    C, n_iter, inertia = lloyd_loop(blocks, np.asarray(C0, dtype=np.float64), max_iter,
                                    tolerance(blocks, tol))
    labels, inertia = labels_inertia(blocks, C, inertia)
    return C, n_iter, labels, inertia


def bounded(X, C0, max_iter, tol):
    blocks = Blocks(X)
    return bounded_lloyd(blocks, np.asarray(C0, dtype=np.float64), max_iter,
                         tolerance(blocks, tol))


def check_same(a, b, dtype):
    C, n_iter, labels, inertia = a
    Cb, n_iter_b, labels_b, inertia_b = b
    assert n_iter_b == n_iter
    np.testing.assert_array_equal(labels_b, labels)
    scale = max(1.0, float(np.abs(C).max()))
    np.testing.assert_allclose(Cb, C, rtol=1e-12, atol=1e-12 * scale)
    assert inertia_b == pytest.approx(inertia, rel=1e-5 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("d,n,k,iters", [(1, 3000, 5, 40), (2, 4000, 7, 40), (8, 6000, 16, 30),
                                         (64, 1500, 10, 20), (784, 300, 6, 10)])
@pytest.mark.parametrize("tol", [0.0, 1e-4])
def test_same_as_plain_lloyd(dtype, d, n, k, iters, tol, bounded_passes):
    X = data(n, d, dtype, seed=d)
    C0 = X[np.random.default_rng(1).choice(n, k, replace=False)]
    ref = plain(X, C0, iters, tol)
    check_same(ref, bounded(X, C0, iters, tol), dtype)
    if bounded_passes[0] == "at once" and ref[1] > 1:
        assert len(bounded_passes[1]) == ref[1] - 1  # every iteration after the first
    # the public function takes this path for NumPy input where the bounds pay
    r = kmeans(X, k, init=C0, max_iter=iters, tol=tol)
    assert r.n_iter == ref[1] and r.centroids.dtype == dtype
    np.testing.assert_array_equal(r.labels, ref[2])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("d", [2, 8, 64])
@pytest.mark.parametrize("tol", [0.0, 1e-4])
def test_same_as_sklearn(dtype, d, tol):
    X = data(3000, d, dtype, seed=10 + d)
    C0 = X[np.random.default_rng(2).choice(len(X), 8, replace=False)]
    r = kmeans(X, 8, init=C0, max_iter=30, tol=tol)
    C, labels, inertia, n_iter = sklearn_cluster.k_means(
        X, 8, init=C0, n_init=1, max_iter=30, tol=tol, algorithm="lloyd", return_n_iter=True)
    rtol = 1e-5 if dtype == np.float32 else 1e-10
    np.testing.assert_array_equal(r.labels, labels)
    assert r.n_iter == n_iter
    np.testing.assert_allclose(r.centroids, C, rtol=rtol, atol=rtol)
    assert r.inertia == pytest.approx(inertia, rel=1e-4 if dtype == np.float32 else 1e-9)


def check_fills_empty(X, C0, run, dtype):
    """``run`` (as :func:`bounded`) from centroids some of which get no row: the empty
    clusters filled as plain Lloyd and scikit-learn fill them."""
    ref = plain(X, C0, 15, 0.0)
    got = run(X, C0, 15, 0.0)
    check_same(ref, got, dtype)
    assert np.bincount(got[2], minlength=len(C0)).min() > 0
    _, labels, _ = sklearn_cluster.k_means(X, len(C0), init=C0, n_init=1, max_iter=15, tol=0,
                                           algorithm="lloyd")
    np.testing.assert_array_equal(got[2], labels)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_empty_cluster(dtype):
    X = data(2000, 3, dtype, seed=3)
    C0 = np.vstack([X[:3], [[1e3, 1e3, 1e3]], X[3:4], [[-1e3, 0, 1e3]]])  # two get no row
    check_fills_empty(X, C0, bounded, dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_duplicates_and_ties(dtype):
    # a small integer grid: many identical rows and rows exactly halfway between centroids
    rng = np.random.default_rng(4)
    X = rng.integers(0, 5, (3000, 2)).astype(dtype)
    C0 = np.array([[0.0, 0.0], [2.0, 0.0], [4.0, 4.0], [1.0, 3.0], [2.0, 2.0]])
    for tol in (0.0, 1e-4):
        check_same(plain(X, C0, 20, tol), bounded(X, C0, 20, tol), dtype)
    # duplicated centroids: the lower index wins every tie, as in the direct kernels
    C1 = np.array([[1.0, 1.0], [1.0, 1.0], [3.0, 3.0]])
    check_same(plain(X, C1, 10, 0.0), bounded(X, C1, 10, 0.0), dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_k_one_and_k_above_distinct_rows(dtype):
    X = data(500, 4, dtype)
    check_same(plain(X, X[:1], 10, 0.0), bounded(X, X[:1], 10, 0.0), dtype)
    Y = np.repeat(X[:3], 50, axis=0)  # three distinct rows, five clusters
    C0 = np.vstack([Y[:1], Y[50:51], Y[100:101], Y[:1] + 0.5, Y[50:51] - 0.5])
    check_same(plain(Y, C0, 10, 0.0), bounded(Y, C0, 10, 0.0), dtype)
    r = kmeans(Y, 5, init="k-means++", seed=0)
    assert r.inertia == pytest.approx(0.0, abs=1e-9)


def test_bounds_start_when_the_centroids_settle(bounded_passes):
    # well separated groups: the centroids settle within a few iterations, then the bounds
    X = data(20000, 8, np.float64, seed=7)
    C0 = X[np.random.default_rng(3).choice(len(X), 16, replace=False)]
    ref = plain(X, C0, 30, 0.0)
    check_same(ref, bounded(X, C0, 30, 0.0), np.float64)
    assert 0 < len(bounded_passes[1]) < ref[1]


def test_use_bounds_only_with_the_direct_kernels():
    # the bench sizes: d=8, k=16 runs the direct kernels (bounds); d=784 the matrix product
    assert _specialised.use_bounds(np.empty((10**5, 8)), 16)
    assert not _specialised.use_bounds(np.empty((20000, 784)), 10)


def test_zero_iterations_and_tiny_input():
    X = data(3, 2, np.float64)
    check_same(plain(X, X[:2], 5, 0.0), bounded(X, X[:2], 5, 0.0), np.float64)
    C, n_iter, labels, inertia = bounded(X, X[:2], 0, 0.0)
    assert n_iter == 0 and labels.shape == (3,)
    assert inertia == pytest.approx(plain(X, X[:2], 0, 0.0)[3])


def test_tiny_scale_float32():
    # squares that underflow: the bounds' absolute term keeps the labels exact
    X = (data(2000, 8, np.float64) * 1e-20).astype(np.float32)
    C0 = X[:6]
    check_same(plain(X, C0, 10, 0.0), bounded(X, C0, 10, 0.0), np.float32)


def test_error_bounds_cover_float32_rounding():
    rng = np.random.default_rng(5)
    d = 784
    g, a2 = error_bounds(d, np.float32)
    x = rng.standard_normal((200, d)).astype(np.float32)
    c = rng.standard_normal(d).astype(np.float32)
    computed = np.array([np.float32(0) + sum_in_order(r - c) for r in x], dtype=np.float64)
    exact = ((x.astype(np.float64) - c.astype(np.float64)) ** 2).sum(axis=1)
    assert (np.abs(computed - exact) <= g * computed + a2).all()


def sum_in_order(t):
    s = np.float32(0)
    for v in t:
        s = np.float32(s + np.float32(v * v))
    return s


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n,d,k", [(5000, 3, 16), (40000, 8, 16)])  # generic, specialised
def test_first_bounded_pass_sums_are_the_plain_ones(dtype, n, d, k):
    # bit for bit where the plain pass is the direct kernels': the iterations stop where
    # plain Lloyd's stop
    from hpcjobs.kernels._jit import task_threads
    from hpcjobs.kernels.clustering._kmeans._chunks import pad

    X = data(n, d, dtype, seed=8)
    C = X[:k].astype(np.float64) + 0.5
    CT = pad(C.T, X.dtype)
    assert _specialised.use_bounds(X, k)
    sums, counts, _ = _specialised.assign_accumulate(X, CT, k, task_threads())
    g, a2 = error_bounds(d, X.dtype)
    s, drift, far, _, _ = _bounded._geometry(CT, k, None)
    labels = np.full(n, -1, dtype=np.int32)
    u, lo = np.full(n, np.inf), np.zeros(n)
    bs, bc = _specialised.bounded_pass(X)(X, CT, k, s, drift, far, labels, u, lo, g, a2,
                                          task_threads())
    np.testing.assert_array_equal(bc, counts)
    np.testing.assert_array_equal(bs, sums)
    np.testing.assert_array_equal(labels, plain(X, C, 0, 0.0)[2])
