"""k-means (Lloyd, mini-batch) and DBSCAN against scikit-learn and dask-ml.

- ``kmeans-lloyd``: ``iters`` Lloyd iterations (``ITERS`` unless the size says otherwise)
  from the same starting centroids, ``tol=0`` (so every implementation runs exactly
  ``iters`` iterations plus its final assignment); per-iteration time = median / iters. The
  cost of one more iteration, without a call's fixed costs (keeping the chunks, starting the
  loop on the workers, labels), is the difference of the 10- and 50-iteration sizes / 40.
  Implementations: ``hpcjobs`` (NumPy input, Numba
  threads), ``sklearn`` (``k_means(..., algorithm="lloyd")``, its OpenMP threads),
  ``hpcjobs-dask`` (8 chunks already held by a LocalCluster of 2 workers x 1 thread) and
  ``dask-ml`` (``dask_ml.cluster.KMeans`` on the same cluster and chunks, the peer of
  ``hpcjobs-dask``); peers in this process: ``sklearnex`` (oneDAL's ``KMeans``, TBB threads
  over all cores) and ``faiss`` (``faiss.Kmeans`` in float32 with every point used
  (``max_points_per_centroid`` = n), its ``niter`` iterations from the same centroids, then the
  labels from its index: ours then runs on the same float32 data, as ``hpcjobs-float32``).
  The ``d=784`` size is image-like data, where the distance step is a matrix product.
- ``minibatch-kmeans``: one epoch (batch 1024) from the same starting centroids, labels and
  inertia of all rows included, against ``sklearn.cluster.MiniBatchKMeans``.
- ``dbscan``: 2-D blobs plus 10 % uniform noise, ``eps=0.1``, ``min_samples=10``, against
  ``sklearn.cluster.dbscan`` (at 3e5 points only: it needs minutes at 1e6), and over Dask
  (8 chunks on the same LocalCluster), and oneDAL's ``sklearnex.cluster.DBSCAN`` (brute
  force: at 3e5 points it takes about a minute a call).
"""

from __future__ import annotations

import numpy as np

from hpcjobs.bench.harness import dask_client
from hpcjobs.bench.spec import Benchmark, Impl

ITERS = 10
N_CHUNKS = 8
EPS, MIN_SAMPLES = 0.1, 10


# --------------------------------------------------------------------------- data


def _kmeans_data(size, rng):
    X = rng.standard_normal((size["n"], size["d"]))
    X += rng.integers(0, 4, (size["n"], 1)) * 3.0  # some structure along the diagonal
    C0 = X[rng.choice(size["n"], size["k"], replace=False)].copy()
    return X, C0, size.get("iters", ITERS)


def _dbscan_data(size, rng):
    n = size["n"]
    n_blob = int(n * 0.9)
    centers = rng.uniform(-40, 40, (20, 2))
    X = centers[rng.integers(0, 20, n_blob)] + rng.standard_normal((n_blob, 2))
    return np.vstack([X, rng.uniform(-45, 45, (n - n_blob, 2))])


def _scatter(X):
    """A Dask array of ``N_CHUNKS`` chunks already held by the workers (as if read)."""
    import dask.array as da
    from distributed import get_client, wait

    client = get_client()
    rows = -(-len(X) // N_CHUNKS)
    pieces = [X[i:i + rows] for i in range(0, len(X), rows)]
    # hash=False: keys of their own. Content-hashed keys would be the same for the next
    # implementation's (or worker count's) scatter of the same data while the workers are
    # still forgetting the last one, and a worker can then drop the new copy (its task waits
    # forever on a "missing" piece: seen with hpcjobs bench describe --submit --workers)
    futures = client.scatter(pieces, hash=False)
    wait(futures)
    return da.concatenate([da.from_delayed(f, shape=p.shape, dtype=X.dtype)
                           for f, p in zip(futures, pieces, strict=True)])


def _cluster():
    return dask_client(threads_per_worker=1)  # 2 workers, or as many as --workers says


# --------------------------------------------------------------------------- k-means


def _ours_lloyd(data):
    from hpcjobs.kernels import kmeans

    X, C0, iters = data
    r = kmeans(X, len(C0), init=C0, max_iter=iters, tol=0.0)
    if hasattr(r.labels, "compute"):
        r.labels.compute()
    return r


def _sklearn_lloyd(data):
    from sklearn.cluster import k_means

    X, C0, iters = data
    return k_means(X, len(C0), init=C0, n_init=1, max_iter=iters, tol=0.0, algorithm="lloyd")


def _sklearnex_lloyd(data):
    from sklearnex.cluster import KMeans

    X, C0, iters = data
    return KMeans(len(C0), init=C0, n_init=1, max_iter=iters, tol=0.0,
                  algorithm="lloyd").fit(X)


def _float32_prepare(data, size):
    X, C0, iters = data
    return np.ascontiguousarray(X, dtype=np.float32), C0.astype(np.float32), iters


def _faiss_lloyd(data):
    import faiss

    X, C0, iters = data
    km = faiss.Kmeans(X.shape[1], len(C0), niter=iters, max_points_per_centroid=len(X),
                      min_points_per_centroid=1, verbose=False)
    km.train(X, init_centroids=C0)
    _, labels = km.index.search(X, 1)
    return km.centroids, labels[:, 0]


def _dask_prepare(data, size):
    X, *rest = data
    return _scatter(X), *rest


def _daskml_lloyd(data):
    from dask_ml.cluster import KMeans

    X, C0, iters = data
    km = KMeans(n_clusters=len(C0), init=C0, max_iter=iters, tol=0.0)
    km.fit(X)
    km.labels_.compute()
    return km


def _ours_minibatch(data):
    from hpcjobs.kernels import minibatch_kmeans

    X, C0, _ = data
    return minibatch_kmeans(X, len(C0), batch_size=1024, init=C0, max_iter=1,
                            max_no_improvement=None, seed=0)


def _sklearn_minibatch(data):
    from sklearn.cluster import MiniBatchKMeans

    X, C0, _ = data
    return MiniBatchKMeans(len(C0), init=C0, n_init=1, batch_size=1024, max_iter=1,
                           max_no_improvement=None, random_state=0).fit(X)


# --------------------------------------------------------------------------- DBSCAN


def _ours_dbscan(X):
    from hpcjobs.kernels import dbscan

    r = dbscan(X, EPS, MIN_SAMPLES)
    if hasattr(r.labels, "compute"):
        import dask

        dask.compute(r.labels, r.core)
    return r


def _sklearn_dbscan(X):
    from sklearn.cluster import dbscan

    return dbscan(X, eps=EPS, min_samples=MIN_SAMPLES)


def _sklearnex_dbscan(X):
    from sklearnex.cluster import DBSCAN

    return DBSCAN(eps=EPS, min_samples=MIN_SAMPLES, algorithm="brute").fit(X)


BENCHMARKS = [
    Benchmark(
        name="kmeans-lloyd",
        kernel="kmeans",
        description="`iters` Lloyd iterations from the same centroids, tol=0 "
                    "(per iteration: median / iters)",
        sizes=[{"n": 10**5, "d": 8, "k": 16}, {"n": 10**6, "d": 8, "k": 16},
               {"n": 10**6, "d": 8, "k": 16, "iters": 50},
               {"n": 10**6, "d": 8, "k": 16, "iters": 20},
               {"n": 20_000, "d": 784, "k": 10}],
        quick_sizes=[{"n": 20_000, "d": 4, "k": 4}],
        make_data=_kmeans_data,
        items=lambda size: size["n"] * size.get("iters", ITERS),
        unit="row-iterations",
        # X read once per iteration and once for the labels, which are written (int32)
        bytes=lambda s: 8 * s["n"] * s["d"] * (s.get("iters", ITERS) + 1) + 4 * s["n"],
        repeats=5,
        impls=[
            Impl("hpcjobs", _ours_lloyd, note="NumPy input, all Numba threads"),
            Impl("sklearn", _sklearn_lloyd, peer=True, requires=("sklearn",),
                 note="sklearn.cluster.k_means(algorithm='lloyd')"),
            Impl("sklearnex", _sklearnex_lloyd, peer=True, requires=("sklearnex",),
                 note="oneDAL KMeans(algorithm='lloyd'), TBB threads"),
            Impl("hpcjobs-float32", _ours_lloyd, prepare=_float32_prepare,
                 note="the same on float32 data, for faiss"),
            Impl("faiss", _faiss_lloyd, peer=True, prepare=_float32_prepare,
                 baseline="hpcjobs-float32", requires=("faiss",),
                 note="faiss.Kmeans, float32, every point used, then labels"),
            Impl("hpcjobs-dask", _ours_lloyd, prepare=_dask_prepare, context=_cluster, cluster=True,
                 requires=("distributed",), note=f"{N_CHUNKS} chunks on LocalCluster 2x1"),
            Impl("dask-ml", _daskml_lloyd, peer=True, baseline="hpcjobs-dask",
                 prepare=_dask_prepare, context=_cluster, cluster=True, requires=("dask_ml", "distributed"),
                 sizes=(0, 1), note="dask_ml.cluster.KMeans, same cluster and chunks"),
        ],
    ),
    Benchmark(
        name="minibatch-kmeans",
        kernel="minibatch_kmeans",
        description="one epoch, batch 1024, plus labels and inertia of all rows",
        sizes=[{"n": 10**6, "d": 8, "k": 16}],
        quick_sizes=[{"n": 20_000, "d": 4, "k": 4}],
        make_data=_kmeans_data,
        items=lambda size: size["n"],
        unit="rows",
        bytes=lambda s: 2 * 8 * s["n"] * s["d"] + 4 * s["n"],  # the epoch, then the labels
        repeats=5,
        impls=[
            Impl("hpcjobs", _ours_minibatch, note="NumPy input"),
            Impl("sklearn", _sklearn_minibatch, peer=True, requires=("sklearn",),
                 note="sklearn.cluster.MiniBatchKMeans(max_iter=1)"),
        ],
    ),
    Benchmark(
        name="dbscan",
        kernel="dbscan",
        description=f"2-D blobs + 10% noise, eps={EPS}, min_samples={MIN_SAMPLES}",
        sizes=[{"n": 3 * 10**5}, {"n": 10**6}],
        quick_sizes=[{"n": 20_000}],
        make_data=_dbscan_data,
        items=lambda size: size["n"],
        unit="points",
        bytes=lambda s: 16 * s["n"] + 9 * s["n"],  # the points read; labels and core written
        repeats=3,
        impls=[
            Impl("hpcjobs", _ours_dbscan, note="NumPy input, all Numba threads"),
            Impl("sklearn", _sklearn_dbscan, peer=True, requires=("sklearn",), sizes=(0,),
                 note="sklearn.cluster.dbscan (3e5 only)"),
            Impl("sklearnex", _sklearnex_dbscan, peer=True, requires=("sklearnex",), sizes=(0,),
                 note="oneDAL DBSCAN, brute force (3e5 only)"),
            Impl("hpcjobs-dask", _ours_dbscan, prepare=lambda X, size: _scatter(X),
                 context=_cluster, cluster=True, requires=("distributed",),
                 note=f"{N_CHUNKS} chunks on LocalCluster 2x1"),
        ],
    ),
]
