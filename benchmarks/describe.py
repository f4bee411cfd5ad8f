"""``describe`` against plain NumPy and dask.array's own reductions.

Four implementations on the same data, side by side:

- ``hpcjobs``: ``describe(X)`` on the NumPy array (Numba, all of Numba's threads);
- ``hpcjobs-1thread``: the same with Numba limited to one thread (per-core efficiency);
- ``numpy`` (peer of ``hpcjobs``): ``X.mean(0)``, ``X.std(0)``, ``X.min(0)``, ``X.max(0)`` and
  ``numpy.histogram`` of each column over its [min, max], as one would write it by hand;
- ``hpcjobs-dask``: ``describe`` on a Dask array already held by a LocalCluster of
  2 workers x 1 thread (chunks of about 64 MiB);
- ``dask.array`` (peer of ``hpcjobs-dask``): ``mean``, ``std``, ``min``, ``max`` then
  ``da.histogram`` per column, on the same cluster layout and chunks;
- ``sklearnex`` (peer of ``hpcjobs``): Intel's oneDAL ``BasicStatistics`` with
  ``result_options=["min", "max", "mean", "variance"]``, threaded with TBB over all cores in
  this process (it holds the GIL: never inside Dask threads). It makes no histogram, which
  ours makes as well; its variance is ddof=1 where ours is ddof=0 (``tests/test_peers.py``
  checks they agree).

Sizes go up to 1e8 values (1e7 rows x 10 columns, 800 MB of float64).
"""

from __future__ import annotations

import contextlib

import numpy as np

from hpcjobs.bench.harness import dask_client
from hpcjobs.bench.spec import Benchmark, Impl

BINS = 64
CHUNK_BYTES = 64 * 2**20


def _make(size, rng):
    return rng.standard_normal((size["n"], size["d"]))


def _ours(X):
    from hpcjobs.kernels import describe

    return describe(X, bins=BINS)


@contextlib.contextmanager
def _one_numba_thread():
    import numba

    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(before)


def _numpy(X):
    mean, std, lo, hi = X.mean(0), X.std(0), X.min(0), X.max(0)
    hist = [np.histogram(X[:, j], bins=BINS, range=(lo[j], hi[j]))[0] for j in range(X.shape[1])]
    return mean, std, lo, hi, hist


def _basic_statistics(X):
    from sklearnex.basic_statistics import BasicStatistics

    return BasicStatistics(result_options=["min", "max", "mean", "variance"]).fit(X)


def _scatter(X, size):
    """A Dask array whose ~64 MiB chunks already live on the workers (as if read from Zarr)."""
    import dask.array as da
    from distributed import get_client, wait

    client = get_client()
    n, d = X.shape
    rows = max(1, CHUNK_BYTES // (8 * d))
    pieces = [X[i:i + rows] for i in range(0, n, rows)]
    # hash=False: keys of their own. Content-hashed keys would be the same for the next
    # implementation's (or worker count's) scatter of the same data while the workers are
    # still forgetting the last one, and a worker can then drop the new copy (its task waits
    # forever on a "missing" piece: seen with hpcjobs bench describe --submit --workers)
    futures = client.scatter(pieces, hash=False)
    wait(futures)
    arrays = [da.from_delayed(f, shape=p.shape, dtype=X.dtype)
              for f, p in zip(futures, pieces, strict=True)]
    return da.concatenate(arrays, axis=0)


def _dask_array(Xd):
    import dask
    import dask.array as da

    mean, std, lo, hi = dask.compute(Xd.mean(0), Xd.std(0), Xd.min(0), Xd.max(0))
    hists = [da.histogram(Xd[:, j], bins=BINS, range=(lo[j], hi[j]))[0]
             for j in range(Xd.shape[1])]
    return mean, std, lo, hi, dask.compute(*hists)


def _cluster():
    return dask_client(threads_per_worker=1)  # 2 workers, or as many as --workers says


BENCHMARKS = [
    Benchmark(
        name="describe",
        kernel="describe",
        description="per-column count/mean/std/min/max + 64-bin histogram",
        sizes=[{"n": 10**5, "d": 10}, {"n": 10**6, "d": 10}, {"n": 10**7, "d": 10}],
        quick_sizes=[{"n": 20_000, "d": 4}],
        make_data=_make,
        items=lambda size: size["n"] * size["d"],
        unit="values",
        bytes=lambda size: 8 * size["n"] * size["d"],  # one read of X
        repeats=5,
        impls=[
            Impl("hpcjobs", _ours, note="Numba, all Numba threads"),
            Impl("hpcjobs-1thread", _ours, context=_one_numba_thread,
                 note="Numba limited to 1 thread"),
            Impl("numpy", _numpy, peer=True, note="mean/std/min/max + np.histogram per column"),
            Impl("sklearnex", _basic_statistics, peer=True, requires=("sklearnex",),
                 note="oneDAL BasicStatistics(min, max, mean, variance); no histogram"),
            Impl("hpcjobs-dask", _ours, prepare=_scatter, context=_cluster, cluster=True,
                 requires=("distributed",), note="LocalCluster 2 workers x 1 thread"),
            Impl("dask.array", _dask_array, peer=True, baseline="hpcjobs-dask",
                 prepare=_scatter, context=_cluster, cluster=True, requires=("distributed",),
                 note="dask.array reductions + da.histogram, same cluster"),
        ],
    ),
]
