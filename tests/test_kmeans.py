"""k-means, k-means||, k-means++, prediction and mini-batch against NumPy and scikit-learn."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

from hpcjobs.kernels import kmeans, kmeans_predict, minibatch_kmeans

sklearn_cluster = pytest.importorskip("sklearn.cluster")
datasets = pytest.importorskip("sklearn.datasets")


def blobs(n=1500, d=3, centers=5, std=0.5, seed=0, dtype=np.float64):
    X, _ = datasets.make_blobs(n, n_features=d, centers=centers, cluster_std=std,
                               center_box=(-20, 20), random_state=seed)
    return X.astype(dtype)


def chunked(X, n_chunks):
    return da.from_array(X, chunks=(-(-len(X) // n_chunks), X.shape[1]))


def true_inertia(X, C, labels):
    X = X.astype(np.float64)
    return float(((X - C.astype(np.float64)[labels]) ** 2).sum())


def naive_lloyd(X, C, iters):
    """Plain NumPy Lloyd: the reference the fused kernel is checked against."""
    C = C.astype(np.float64)
    for _ in range(iters):
        d2 = ((X[:, None, :] - C[None]) ** 2).sum(axis=2)
        lab = d2.argmin(axis=1)
        C = np.array([X[lab == j].mean(axis=0) for j in range(len(C))])
    return C


# --------------------------------------------------------------------------- Lloyd vs oracles


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("iters", [1, 3, 10])
def test_lloyd_matches_sklearn_from_given_centroids(dtype, iters):
    X = blobs(2000, d=4, centers=6, std=2.0, dtype=dtype)
    rng = np.random.default_rng(iters)
    C0 = X[rng.choice(len(X), 6, replace=False)]
    r = kmeans(X, 6, init=C0, max_iter=iters, tol=0)
    C, labels, inertia, n_iter = sklearn_cluster.k_means(
        X, 6, init=C0, n_init=1, max_iter=iters, tol=0, algorithm="lloyd", return_n_iter=True)
    rtol = 1e-5 if dtype == np.float32 else 1e-10
    assert r.centroids.dtype == dtype
    np.testing.assert_allclose(r.centroids, C, rtol=rtol, atol=rtol)
    assert (r.labels == labels).all()
    assert r.n_iter == n_iter
    assert r.inertia == pytest.approx(true_inertia(X, r.centroids, r.labels), rel=1e-6)
    assert r.inertia == pytest.approx(inertia, rel=1e-4 if dtype == np.float32 else 1e-9)
    np.testing.assert_allclose(naive_lloyd(X.astype(np.float64), C0, n_iter), r.centroids,
                               rtol=rtol, atol=rtol)


def test_converged_lloyd_stops_like_sklearn():
    X = blobs(1200, d=2, centers=4, std=1.0, seed=3)
    C0 = X[:4]
    r = kmeans(X, 4, init=C0, max_iter=300, tol=1e-4)
    C, labels, inertia, n_iter = sklearn_cluster.k_means(
        X, 4, init=C0, n_init=1, max_iter=300, tol=1e-4, algorithm="lloyd", return_n_iter=True)
    np.testing.assert_allclose(r.centroids, C, rtol=1e-9)
    assert (r.labels == labels).all() and r.n_iter == n_iter


def test_empty_cluster_is_relocated_like_sklearn():
    X = blobs(600, d=2, centers=3, std=1.0, seed=1)
    C0 = np.vstack([X[:2], [[1e3, 1e3]]])  # the third centroid gets no row
    r = kmeans(X, 3, init=C0, max_iter=5, tol=0)
    C, labels, _ = sklearn_cluster.k_means(X, 3, init=C0, n_init=1, max_iter=5, tol=0,
                                           algorithm="lloyd")
    assert np.bincount(r.labels, minlength=3).min() > 0
    np.testing.assert_allclose(r.centroids, C, rtol=1e-9)
    assert (r.labels == labels).all()
    rd = kmeans(chunked(X, 4), 3, init=C0, max_iter=5, tol=0)
    np.testing.assert_allclose(rd.centroids, C, rtol=1e-9)


@pytest.mark.parametrize("init", ["k-means||", "k-means++"])
def test_seeded_init_reaches_sklearn_best_of_three(init):
    X = blobs(3000, d=5, centers=8, std=0.4, seed=7)
    _, _, best = sklearn_cluster.k_means(X, 8, n_init=3, random_state=0)
    r = kmeans(X, 8, init=init, seed=0)
    assert r.inertia <= best * 1.01
    assert r.inertia == pytest.approx(true_inertia(X, r.centroids, r.labels), rel=1e-9)


def test_random_init_and_seed_reproducible():
    X = blobs(800)
    a = kmeans(X, 5, init="random", seed=5)
    b = kmeans(X, 5, init="random", seed=5)
    np.testing.assert_array_equal(a.centroids, b.centroids)
    assert a.inertia == b.inertia and a.n_iter == b.n_iter
    assert a.inertia == pytest.approx(true_inertia(X, a.centroids, a.labels), rel=1e-9)


def test_k_equal_one_and_k_equal_n():
    X = blobs(40, d=2)
    r = kmeans(X, 1, seed=0)
    np.testing.assert_allclose(r.centroids[0], X.mean(axis=0))
    assert r.inertia == pytest.approx(((X - X.mean(0)) ** 2).sum())
    r = kmeans(X, 40, init="k-means++", seed=0)
    assert r.inertia == pytest.approx(0.0, abs=1e-9)
    assert len(np.unique(r.labels)) == 40


def test_duplicate_rows_fewer_distinct_than_k():
    X = np.repeat(np.array([[0.0, 0.0], [5.0, 5.0]]), 20, axis=0)
    for init in ("k-means||", "k-means++", "random"):
        r = kmeans(X, 3, init=init, seed=1)
        assert r.inertia == pytest.approx(0.0, abs=1e-12)
        assert np.isfinite(r.centroids).all()


# --------------------------------------------------------------------------- chunking and Dask


@pytest.mark.parametrize("init", ["k-means||", "k-means++", "random", "array"])
def test_same_result_for_1_2_4_7_chunks(init):
    X = blobs(1400, d=3, centers=5, std=1.5, seed=2)
    init_ = X[[3, 100, 500, 900, 1300]] if init == "array" else init
    ref = kmeans(X, 5, init=init_, seed=11)
    for n_chunks in (1, 2, 4, 7):
        r = kmeans(chunked(X, n_chunks), 5, init=init_, seed=11)
        assert isinstance(r.labels, da.Array)
        np.testing.assert_allclose(r.centroids, ref.centroids, rtol=1e-9, atol=1e-12)
        np.testing.assert_array_equal(r.labels.compute(), ref.labels)
        assert r.inertia == pytest.approx(ref.inertia, rel=1e-9)
        assert r.n_iter == ref.n_iter


def test_float32_dask_chunks():
    X = blobs(900, dtype=np.float32)
    ref = kmeans(X, 5, seed=3)
    r = kmeans(chunked(X, 4), 5, seed=3)
    assert r.centroids.dtype == np.float32
    np.testing.assert_allclose(r.centroids, ref.centroids, rtol=1e-5)
    assert (r.labels.compute() == ref.labels).mean() > 0.999


@pytest.mark.parametrize("kept", [True, False])
def test_local_cluster_matches_in_memory(dask_client, kept, monkeypatch):
    # kept: the blocks held in the cluster's memory, k-means run on the workers; not kept
    # (data larger than half the workers' memory): every pass streams the chunks
    from hpcjobs.kernels.clustering._common import Blocks

    if not kept:
        monkeypatch.setattr(Blocks, "keep_in_memory", lambda self, fraction=0.5: False)
    X = blobs(1500, d=4, centers=6, std=1.0, seed=4)
    for init in ("k-means||", "k-means++"):
        ref = kmeans(X, 6, init=init, seed=2)
        r = kmeans(chunked(X, 4), 6, init=init, seed=2)
        np.testing.assert_allclose(r.centroids, ref.centroids, rtol=1e-9)
        np.testing.assert_array_equal(r.labels.compute(), ref.labels)
        assert r.inertia == pytest.approx(ref.inertia, rel=1e-9)
    m = minibatch_kmeans(chunked(X, 3), 6, batch_size=100, seed=0)
    assert m.labels.compute().shape == (1500,)


def test_predict_numpy_and_dask():
    X = blobs(500, d=3)
    C = X[:7]
    expect = ((X[:, None] - C[None]) ** 2).sum(2).argmin(1)
    np.testing.assert_array_equal(kmeans_predict(X, C), expect)
    np.testing.assert_array_equal(kmeans_predict(chunked(X, 3), C).compute(), expect)
    r = kmeans(X, 4, seed=0)
    np.testing.assert_array_equal(kmeans_predict(X, r.centroids), r.labels)


# --------------------------------------------------------------------------- mini-batch


def test_minibatch_near_lloyd_and_reproducible():
    X = blobs(4000, d=4, centers=6, std=0.5, seed=9)
    _, _, best = sklearn_cluster.k_means(X, 6, n_init=3, random_state=0)
    a = minibatch_kmeans(X, 6, batch_size=256, seed=1)
    b = minibatch_kmeans(X, 6, batch_size=256, seed=1)
    np.testing.assert_array_equal(a.centroids, b.centroids)
    assert a.inertia <= best * 1.02
    assert a.inertia == pytest.approx(true_inertia(X, a.centroids, a.labels), rel=1e-9)
    assert a.n_steps > 0


def test_minibatch_steps_per_epoch():
    X = blobs(1000)
    r = minibatch_kmeans(chunked(X, 4), 5, batch_size=100, max_iter=2, max_no_improvement=None,
                         seed=0)
    # 4 chunks of 250 rows: 3 batches each (100, 100, 50), 2 epochs
    assert r.n_iter == 2 and r.n_steps == 24


def test_minibatch_streams_from_zarr(tmp_path):
    zarr = pytest.importorskip("zarr")
    X = blobs(3000, d=3, centers=4, std=0.3, seed=5)
    z = zarr.create_array(store=str(tmp_path / "x.zarr"), shape=X.shape, chunks=(500, 3),
                          dtype="f8")
    z[:] = X
    Xd = da.from_zarr(str(tmp_path / "x.zarr"))
    r = minibatch_kmeans(Xd, 4, batch_size=128, seed=2)
    r2 = minibatch_kmeans(Xd, 4, batch_size=128, seed=2)
    np.testing.assert_array_equal(r.centroids, r2.centroids)
    _, _, best = sklearn_cluster.k_means(X, 4, n_init=3, random_state=0)
    assert r.inertia <= best * 1.02
    labels = r.labels.compute()
    assert labels.shape == (3000,)
    assert r.inertia == pytest.approx(true_inertia(X, r.centroids, labels), rel=1e-9)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("func", [kmeans, minibatch_kmeans])
def test_bad_inputs(func):
    X = blobs(50)
    bad = X.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="finite"):
        func(bad, 2)
    bad[3, 1] = np.inf
    with pytest.raises(ValueError, match="finite"):
        func(bad, 2)
    with pytest.raises(ValueError, match="finite"):
        func(chunked(bad, 3), 2).labels.compute()
    if func is kmeans:  # tol=0: the first pass of each init checks the chunks
        for init in ("k-means||", "k-means++", "random", X[:2]):
            with pytest.raises(ValueError, match="finite"):
                kmeans(chunked(bad, 3), 2, init=init, tol=0, seed=0)
    with pytest.raises(ValueError, match="2-D.*reshape"):
        func(X[:, 0], 2)
    with pytest.raises(ValueError, match="at least 1 row"):
        func(np.empty((0, 3)), 2)
    with pytest.raises(ValueError, match=r"'n_clusters' parameter .* \[1, inf\)\. Got 0"):
        func(X, 0)
    with pytest.raises(ValueError, match="n_clusters.*at most the number of rows"):
        func(X, 51)
    with pytest.raises(TypeError, match="n_clusters"):
        func(X, 2.5)
    with pytest.raises(TypeError, match="numeric"):
        func(np.array([["a", "b"], ["c", "d"]]), 1)
    with pytest.raises(ValueError, match="init.*shape \\(2, 3\\)"):
        func(X, 2, init=np.zeros((3, 3)))
    with pytest.raises(ValueError, match="'init' parameter"):
        func(X, 2, init="kmeans")
    with pytest.raises(ValueError, match="max_iter"):
        func(X, 2, max_iter=0)
    with pytest.raises(ValueError, match="tol"):
        func(X, 2, tol=-1.0)
    with pytest.raises(ValueError, match="seed"):
        func(X, 2, seed=-3)


def test_predict_bad_inputs():
    X = blobs(20)
    with pytest.raises(ValueError, match="3 columns"):
        kmeans_predict(X, np.zeros((2, 2)))
    with pytest.raises(ValueError, match="finite"):
        kmeans_predict(X, np.full((2, 3), np.nan))


def test_process_cluster_matches_in_memory():
    distributed = pytest.importorskip("distributed")
    X = blobs(1200, d=3, centers=4, std=1.0, seed=8)
    ref = kmeans(X, 4, seed=6)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as cluster, \
            distributed.Client(cluster, set_as_default=False) as client:
        with client.as_current():
            import dask

            with dask.config.set(scheduler=client):
                r = kmeans(chunked(X, 4), 4, seed=6)
                labels = r.labels.compute()
    np.testing.assert_allclose(r.centroids, ref.centroids, rtol=1e-9)
    np.testing.assert_array_equal(labels, ref.labels)


# --------------------------------------------------------------------------- job files

JOB = """
name = "clusters"
[input]
path = "in.zarr"
[[step]]
name = "km"
kernel = "kmeans"
input = "points"
params = { n_clusters = 4, seed = 3 }
[[step]]
name = "mb"
kernel = "minibatch_kmeans"
input = "points"
params = { n_clusters = 4, batch_size = 200, seed = 1 }
[[step]]
kernel = "dbscan"
input = "points[:, 0:2]"
params = { eps = 0.5, min_samples = 5 }
[output]
path = "out.zarr"
"""


def test_job_file_end_to_end(tmp_path, dask_client):
    zarr = pytest.importorskip("zarr")
    from hpcjobs.jobspec import load_job
    from hpcjobs.kernels import dbscan
    from hpcjobs.runner import run_job
    from tests.conftest import make_input, write_job

    X = blobs(2000, d=3, centers=4, std=0.4, seed=12)
    make_input(tmp_path / "in.zarr", {"points": (X, (300, 3))})
    job = load_job(write_job(tmp_path, JOB))
    assert run_job(job, client=dask_client).status == "complete"
    out = zarr.open_group(str(tmp_path / "out.zarr"), mode="r")
    ref = kmeans(X, 4, seed=3)
    np.testing.assert_allclose(out["km/centroids"][:], ref.centroids, rtol=1e-9)
    np.testing.assert_array_equal(out["km/labels"][:], ref.labels)
    assert out["km/labels"].chunks == (300,)
    assert out["km/labels"].metadata.dimension_names == ("row",)
    assert float(out["km/inertia"][()]) == pytest.approx(ref.inertia, rel=1e-9)
    assert int(out["km/n_iter"][()]) == ref.n_iter
    mb = minibatch_kmeans(da.from_array(X, chunks=(300, 3)), 4, batch_size=200, seed=1)
    np.testing.assert_allclose(out["mb/centroids"][:], mb.centroids, rtol=1e-9)
    assert int(out["mb/n_steps"][()]) == mb.n_steps
    db = dbscan(X[:, :2], 0.5, 5)
    np.testing.assert_array_equal(out["dbscan/labels"][:], db.labels)
    np.testing.assert_array_equal(out["dbscan/core"][:], db.core)
    assert int(out["dbscan/n_clusters"][()]) == db.n_clusters


def test_job_file_refuses_bad_params(tmp_path):
    from hpcjobs.errors import UserError
    from hpcjobs.jobspec import load_job
    from tests.conftest import make_input, write_job

    make_input(tmp_path / "in.zarr", {"points": (blobs(100), (50, 3))})
    for bad, words in (("n_clusters = 0", "n_clusters"), ("n_clusters = 2, init = 'x'", "init"),
                       ("n_clusters = 2, init = [[1.0, 2.0], [1.0]]", "init")):
        job = JOB.replace("n_clusters = 4, seed = 3", bad)
        with pytest.raises(UserError, match=words):
            load_job(write_job(tmp_path, job))


def test_unknown_chunk_sizes():
    X = blobs(900, d=2, centers=3, seed=14)
    keep = np.arange(900) % 3 != 0
    Xd = chunked(X, 4)[da.from_array(keep, chunks=(-(-len(X) // 4),))]
    assert np.isnan(Xd.shape[0])
    ref = kmeans(X[keep], 3, seed=1)
    r = kmeans(Xd, 3, seed=1)
    np.testing.assert_allclose(r.centroids, ref.centroids, rtol=1e-9)
    np.testing.assert_array_equal(r.labels.compute(), ref.labels)


class _CountingSource:
    """An array-like that counts the row blocks read from it."""

    def __init__(self, X):
        self.X, self.shape, self.dtype, self.ndim, self.reads = X, X.shape, X.dtype, X.ndim, 0

    def __getitem__(self, idx):
        self.reads += 1
        return self.X[idx]


def test_streamed_labels_and_inertia_share_one_pass():
    import dask

    from hpcjobs.kernels.clustering.kmeans import fit_kmeans

    X = blobs(4000, d=3, centers=4, std=0.3, seed=1)
    src = _CountingSource(X)
    Xd = da.from_array(src, chunks=(500, 3), asarray=True)
    with dask.config.set(scheduler="sync"):  # no cluster to keep the blocks in: streamed
        r = fit_kmeans(Xd, 4, init=X[:4], max_iter=3, tol=0.0)
        before = src.reads
        labels, inertia = dask.compute(r.labels, r.inertia)
    assert src.reads - before == 8  # one read of each of the 8 blocks for both
    ref = kmeans(X, 4, init=X[:4], max_iter=3, tol=0.0)
    np.testing.assert_array_equal(labels, ref.labels)
    assert inertia == pytest.approx(ref.inertia, rel=1e-12)


@pytest.mark.parametrize("shape", [(1, 3), (5, 4), (63, 2), (65, 9), (4000, 784)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_column_moments_as_numpy_var(shape, dtype):
    # the tolerance's variances (compiled, in blocks of 64 rows merged, over 1 and 2 threads):
    # NumPy's float64 var to rounding, at a large offset too; and tol * their mean is the
    # tolerance the iterations stop on
    from hpcjobs.kernels.clustering._common import Blocks
    from hpcjobs.kernels.clustering._kmeans._passes import column_moments
    from hpcjobs.kernels.clustering._kmeans._seeding import tolerance

    rng = np.random.default_rng(shape[0])
    for offset in (0.0, 1e4):
        X = (rng.standard_normal(shape) * 3 + offset).astype(dtype)
        ref = np.var(X.astype(np.float64), axis=0)
        for threads in (1, 2):
            n, mean, m2 = column_moments(X, threads)
            assert n == shape[0]
            np.testing.assert_allclose(mean, X.astype(np.float64).mean(axis=0), rtol=1e-13,
                                       atol=1e-13 * (3 + offset))
            np.testing.assert_allclose(m2 / n, ref, rtol=1e-9, atol=1e-12 * offset ** 2)
        assert tolerance(Blocks(X), 1e-4) == pytest.approx(1e-4 * ref.mean(), rel=1e-9)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_kmeans_parallel_distances_on_wide_data(dtype):
    # k-means|| rounds take the step that suits the data (the matrix product on wide data):
    # each row's squared distance to its nearest candidate as the exact one, to rounding
    from hpcjobs.kernels.clustering._dense_lloyd import use_dense
    from hpcjobs.kernels.clustering._kmeans._chunks import pad
    from hpcjobs.kernels.clustering._kmeans._passes import mind2

    rng = np.random.default_rng(5)
    X = (rng.standard_normal((3000, 300)) + 50.0).astype(dtype)
    C = X[rng.choice(len(X), 21, replace=False)].astype(np.float64)
    assert use_dense(X.shape[1], len(C))
    d2 = np.empty(len(X))
    phi = mind2(X, pad(C.T, dtype), d2, 2)
    exact = ((X.astype(np.float64)[:, None, :] - C[None]) ** 2).sum(axis=2).min(axis=1)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(d2, exact, rtol=rtol, atol=rtol)
    assert phi == pytest.approx(exact.sum(), rel=rtol)


@pytest.mark.parametrize("d", [3, 40])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_nearest_candidate_kept_between_rounds_as_one_pass(d, dtype):
    """In memory, k-means|| keeps each row's nearest candidate between rounds and measures
    the rows against the new candidates alone: labels and distances must be those of one
    pass over all candidates, near-ties included (duplicated candidates; candidates an ulp
    apart, which float64 distances order where the data's dtype ties them: the lower index
    wins there)."""
    from hpcjobs.kernels.clustering._kmeans._chunks import pad
    from hpcjobs.kernels.clustering._kmeans._passes import NearestCandidate
    from hpcjobs.kernels.clustering._kmeans._specialised import assign_labels

    rng = np.random.default_rng(9)
    X = rng.standard_normal((4000, d)).astype(dtype)
    C = [X[rng.choice(len(X), 6, replace=False)]]
    for _ in range(3):  # each batch: new rows, a copy of an earlier candidate, ulp nudges
        earlier = np.vstack(C)
        nudged = earlier[rng.integers(0, len(earlier), 4)].copy()
        f = rng.integers(0, d, 4)
        nudged[np.arange(4), f] = np.nextafter(nudged[np.arange(4), f], np.inf)
        C.append(np.vstack([X[rng.choice(len(X), 5, replace=False)],
                            earlier[rng.integers(0, len(earlier), 2)], nudged]))
    X[:200] = np.vstack(C)[rng.integers(0, sum(map(len, C)), 200)]  # rows on candidates
    nearest = NearestCandidate(len(X), d, dtype)
    for batch in C:
        nearest.add(X, batch.astype(np.float64))
    allC = np.vstack(C)
    labels, d2 = np.empty(len(X), dtype=np.int32), np.empty(len(X))
    assign_labels(X, pad(allC.T.astype(np.float64), dtype), labels, d2, 2)
    np.testing.assert_array_equal(nearest.labels, labels)
    np.testing.assert_array_equal(nearest.d2, d2)
    np.testing.assert_array_equal(nearest.weights(), np.bincount(labels, minlength=len(allC)))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_kmeans_parallel_in_memory_as_over_chunks_on_wide_data(dtype):
    # in memory the rounds keep the nearest candidates; over Dask chunks they measure all
    # candidates each round: the same seeds
    from hpcjobs.kernels.clustering._common import Blocks
    from hpcjobs.kernels.clustering._kmeans._seeding import kmeans_parallel

    X = blobs(2000, d=40, centers=6, std=3.0, seed=8, dtype=dtype)
    X[100:140] = X[:40]  # duplicated rows: exact ties
    ref = kmeans_parallel(Blocks(X), 6, np.random.default_rng(3), 5, 2.0)
    for n_chunks in (1, 3):
        got = kmeans_parallel(Blocks(chunked(X, n_chunks)), 6, np.random.default_rng(3), 5, 2.0)
        np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)
