"""k-means with Elkan's bounds (the in-memory NumPy path on wide data, ``_kmeans/_elkan``)
against plain Lloyd (the matrix-product pass every iteration) and scikit-learn: the same
labels and iterations, centroids and inertia to rounding; bounds that hold."""

from __future__ import annotations

import warnings

import numba
import numpy as np
import pytest

from hpcjobs.kernels import kmeans
from hpcjobs.kernels.clustering._common import Blocks
from hpcjobs.kernels.clustering._dense_lloyd import lloyd_dense
from hpcjobs.kernels.clustering._kmeans import _elkan
from hpcjobs.kernels.clustering._kmeans._chunks import pad
from hpcjobs.kernels.clustering._kmeans._elkan import elkan_lloyd, use_elkan
from hpcjobs.kernels.clustering._kmeans._seeding import tolerance
from tests.test_kmeans_bounds import check_fills_empty, check_same, data, plain

sklearn_cluster = pytest.importorskip("sklearn.cluster")


@pytest.fixture(params=[1, 2], ids=["1 thread", "2 threads"])
def threads(request):
    """Each test on one Numba thread and on two (the rows split into two ranges)."""
    before = numba.get_num_threads()
    numba.set_num_threads(min(request.param, numba.config.NUMBA_NUM_THREADS))
    yield request.param
    numba.set_num_threads(before)


@pytest.fixture
def passes(monkeypatch):
    """The bounded passes run: the distances each computed and whether it was the final one."""
    log = []
    kernel = _elkan.elkan_pass

    def counting(*args):
        out = kernel(*args)
        log.append((int(out[3]), bool(args[-2])))  # (.., final, n_threads)
        return out

    monkeypatch.setattr(_elkan, "elkan_pass", counting)
    return log


def elkan(X, C0, max_iter, tol):
    blocks = Blocks(X)
    return elkan_lloyd(blocks, np.asarray(C0, dtype=np.float64), max_iter,
                       tolerance(blocks, tol))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("d,n,k,iters", [(16, 3000, 8, 30), (64, 2000, 10, 20),
                                         (200, 1000, 7, 15), (784, 600, 10, 10)])
@pytest.mark.parametrize("tol", [0.0, 1e-4])
def test_same_as_plain_lloyd(dtype, d, n, k, iters, tol, threads, passes):
    X = data(n, d, dtype, seed=d + k)
    C0 = X[np.random.default_rng(1).choice(n, k, replace=False)]
    assert use_elkan(X, k) == (d >= _elkan.MIN_FEATURES)
    ref = plain(X, C0, iters, tol)
    check_same(ref, elkan(X, C0, iters, tol), dtype)
    # the bounds skip most distances: each bounded pass computes fewer than all n * k
    assert passes and passes[-1][1]
    assert all(work < n * k for work, _ in passes[:-1])
    # the public function takes this path for NumPy input on wide data (the same result)
    r = kmeans(X, k, init=C0, max_iter=iters, tol=tol)
    assert r.n_iter == ref[1] and r.centroids.dtype == dtype
    np.testing.assert_array_equal(r.labels, ref[2])


@pytest.mark.parametrize("d", [128, 784])
@pytest.mark.parametrize("tol", [0.0, 1e-4])
def test_same_as_sklearn(d, tol, threads):
    # float64 only: on float32 data scikit-learn's distances (a float32 matrix product) can
    # pick another centroid than the float32 direct distances do, and its iterations part
    # from plain Lloyd's too (d=128 here); float32 is checked against plain Lloyd above
    X = data(1500, d, np.float64, seed=20 + d)
    C0 = X[np.random.default_rng(2).choice(len(X), 8, replace=False)]
    r = kmeans(X, 8, init=C0, max_iter=20, tol=tol)
    C, labels, inertia, n_iter = sklearn_cluster.k_means(
        X, 8, init=C0, n_init=1, max_iter=20, tol=tol, algorithm="lloyd", return_n_iter=True)
    np.testing.assert_array_equal(r.labels, labels)
    assert r.n_iter == n_iter
    np.testing.assert_allclose(r.centroids, C, rtol=1e-10, atol=1e-10)
    assert r.inertia == pytest.approx(inertia, rel=1e-9)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_ties_and_duplicates(dtype, threads):
    # a small integer grid: identical rows and rows exactly halfway between centroids
    rng = np.random.default_rng(4)
    X = rng.integers(0, 3, (2000, 16)).astype(dtype)
    C0 = X[:6].astype(np.float64)
    C0[3] = C0[2]  # a duplicated centroid: the lower index wins every tie
    C0[5] = (C0[0] + C0[1]) / 2  # halfway
    for tol in (0.0, 1e-4):
        check_same(plain(X, C0, 20, tol), elkan(X, C0, 20, tol), dtype)
    # every row a copy of one of three rows, more clusters than distinct rows
    Y = np.repeat(X[:3], 200, axis=0)
    C1 = np.vstack([Y[:1], Y[:1], Y[200:201], Y[400:401] + 0.5, Y[400:401] - 0.5])
    check_same(plain(Y, C1, 10, 0.0), elkan(Y, C1, 10, 0.0), dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_empty_clusters(dtype, threads):
    X = data(2000, 32, dtype, seed=3)
    far = np.full((2, 32), 1e3)
    far[1, ::2] = -1e3
    C0 = np.vstack([X[:3], far[:1], X[3:4], far[1:]])  # two get no row
    check_fills_empty(X, C0, elkan, dtype)


def test_zero_and_one_iteration():
    X = data(500, 64, np.float64)
    for iters in (0, 1, 2):
        check_same(plain(X, X[:5], iters, 0.0), elkan(X, X[:5], iters, 0.0), np.float64)


def test_tiny_scale_float32():
    # squares that underflow: the bounds' absolute terms keep the labels exact
    X = (data(1000, 64, np.float64) * 1e-20).astype(np.float32)
    check_same(plain(X, X[:6], 10, 0.0), elkan(X, X[:6], 10, 0.0), np.float32)


def test_use_elkan():
    # the bench size (d=784, k=10) runs bounded; narrow data have Hamerly's bounds or none,
    # and the bounds are not kept where they would take more memory than the data
    assert use_elkan(np.empty((20000, 784)), 10)
    assert use_elkan(np.empty((20000, 784), dtype=np.float32), 10)
    assert use_elkan(np.empty((20000, 96)), 96)
    assert not use_elkan(np.empty((20000, 96)), 97)
    assert not use_elkan(np.empty((20000, 96), dtype=np.float32), 49)
    assert not use_elkan(np.empty((10**5, 8)), 16)
    assert not use_elkan(np.empty((20000, 64)), 10)
    assert not use_elkan(np.empty((100, 784)), 10)  # below one product block


def exact_distances(X, C):
    """Distances of every row to every centroid, to well below float64 rounding."""
    Xl = X.astype(np.longdouble)
    Cl = C.astype(X.dtype).astype(np.longdouble)
    return np.sqrt(((Xl[:, None, :] - Cl[None, :, :]) ** 2).sum(axis=2))


def check_bounds(state, X, C):
    D = exact_distances(X, C)
    own = D[np.arange(len(X)), state.labels]
    assert (state.u >= own).all()
    assert (state.L <= D).all()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_full_pass_sums_and_bounds(dtype, threads):
    # the first iteration (from the float32 copies) has plain Lloyd's product pass's labels
    # and sums, bit for bit (with tol=0 the iterations stop on a shift of exactly 0 where
    # plain Lloyd's do), and every row's bounds hold; they still hold after bounded passes
    # with moving centroids
    X = data(3000, 784, dtype, seed=9)
    k = 10
    C = X[:k].astype(np.float64) + 0.25
    CT = pad(C.T, X.dtype)
    nt = numba.get_num_threads()
    sums, counts, _ = lloyd_dense(X, CT, k, nt)
    state = _elkan._State(X, k)
    bs, bc = state.full_pass(CT, nt)
    np.testing.assert_array_equal(bc, counts)
    np.testing.assert_array_equal(bs, sums)
    np.testing.assert_array_equal(state.labels, plain(X, C, 0, 0.0)[2])
    check_bounds(state, X, C)
    for _ in range(3):
        C = (bs / bc[:, None] + C) / 2  # moved: the bounds follow the drift
        ds, dc, _, _ = state.bounded_pass(pad(C.T, X.dtype), nt)
        bs += ds
        bc += dc
        check_bounds(state, X, C)
        np.testing.assert_array_equal(state.labels, plain(X, C, 0, 0.0)[2])
        np.testing.assert_allclose(bs, plain_sums(X, state.labels, k), rtol=1e-9, atol=1e-6)


def plain_sums(X, labels, k):
    out = np.zeros((k, X.shape[1]))
    np.add.at(out, labels, X.astype(np.float64))
    return out


def test_rows_too_large_for_float32():
    # |x| beyond float32's range: no float32 copy, those rows on float64 distances
    X = data(1000, 64, np.float64, seed=5)
    X[::2] *= 1e40
    C0 = X[:6]
    state = _elkan._State(X, 6)
    state.full_pass(pad(C0.T, X.dtype), 1)
    assert np.isinf(state.rx[::2]).all() and np.isfinite(state.rx[1::2]).all()
    check_same(plain(X, C0, 10, 0.0), elkan(X, C0, 10, 0.0), np.float64)


@pytest.mark.parametrize("tol", [0.0, 1e-4])
def test_offset_beyond_float32_precision(tol, threads):
    # rows far from the origin, groups much closer together than float32 resolves there:
    # the float32 copies are off by more than the gaps, which their bounds must allow for
    X = data(2000, 32, np.float64, seed=6) * 1e-3 + 1e4
    C0 = X[np.random.default_rng(3).choice(len(X), 6, replace=False)]
    check_same(plain(X, C0, 15, tol), elkan(X, C0, 15, tol), np.float64)
    state = _elkan._State(X, 6)
    state.full_pass(pad(C0.T, X.dtype), 1)
    check_bounds(state, X, C0)


def test_float32_copy_kept_between_fits():
    # float64 fits lend their float32 copy from kernels/_workspace.py: the next fit, on
    # other data of the same shape or a smaller one, finds the last one's rows there and
    # must copy its own over them all before it reads any
    from hpcjobs.kernels._workspace import release_workspaces, workspace

    release_workspaces()
    for seed, n in [(30, 900), (31, 900), (32, 700)]:
        X = data(n, 200, np.float64, seed=seed)
        C0 = X[np.random.default_rng(seed).choice(n, 8, replace=False)]
        check_same(plain(X, C0, 12, 0.0), elkan(X, C0, 12, 0.0), np.float64)
    with workspace("kmeans-float32-rows", (900, 200), np.float32) as kept:
        # the last fit's copy: its rows, rounded to float32
        np.testing.assert_array_equal(kept.reshape(-1)[:700 * 200].reshape(700, 200),
                                      X.astype(np.float32))
    assert release_workspaces() == 900 * 200 * 4


def test_concurrent_fits_share_the_kept_copy_safely():
    # fits in several threads at once (Dask's threaded scheduler does this): the kept float32
    # copy is lent to one of them, the others make their own; each result is the one of a
    # fit alone on one thread (a pool thread's fit runs on one), bit for bit
    import threading

    rng = np.random.default_rng(8)
    Xs = [rng.standard_normal((2000, 300)) + i for i in range(4)]
    Xs.append(rng.standard_normal((2000, 300)).astype(np.float32))
    C0s = [X[:8].copy() for X in Xs]
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        alone = [kmeans(X, 8, init=C0, max_iter=12, tol=0.0)
                 for X, C0 in zip(Xs, C0s, strict=True)]
    finally:
        numba.set_num_threads(before)
    out = [None] * len(Xs)

    def fit(i):
        out[i] = kmeans(Xs[i], 8, init=C0s[i], max_iter=12, tol=0.0)

    threads = [threading.Thread(target=fit, args=(i,)) for i in range(len(Xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for a, b in zip(alone, out, strict=True):
        np.testing.assert_array_equal(b.labels, a.labels)
        np.testing.assert_array_equal(b.centroids, a.centroids)
        assert (b.n_iter, b.inertia) == (a.n_iter, a.inertia)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("tol", [0.0, 1e-4])
def test_nan_and_inf_found_by_the_first_pass(dtype, tol, threads):
    # the up-front check is left to the first pass that reads all of X (the tolerance's
    # moments, or Elkan's first pass over float64 rows): NaN or inf anywhere, in either
    # thread's rows, is the same one-line error; finite rows too large for their squared norm
    # (1e200: no path's distances hold them) are not called NaN or inf
    X = data(800, 128, dtype, seed=41)
    C0 = X[:6].copy()
    for row in (0, 399, 400, 799):
        for value in (np.nan, np.inf, -np.inf):
            bad = X.copy()
            bad[row, 77] = value
            with pytest.raises(ValueError, match=r"'X' parameter of kmeans must be finite"):
                kmeans(bad, 6, init=C0, max_iter=5, tol=tol)
    if dtype == np.float64:
        big = X.copy()
        big[::2] *= 1e200
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            kmeans(big, 6, init=big[:6].copy(), max_iter=3, tol=tol)
