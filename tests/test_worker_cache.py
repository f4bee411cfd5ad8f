"""New Dask worker processes load every kernel's machine code from Numba's cache.

A jitted function that travels inside a task (itself, or through a closure that calls it) is
pickled by value, and the worker rebuilds it without the cache: every new worker compiled it
again (lttb over Dask: 1.6 s a worker, each job). The test runs each kernel's Dask path on
worker processes once (the cache fills), then again on a new cluster, and counts Numba
compilations in its workers: there must be none. (A new cluster, not ``client.restart()``:
a restart raced with the released tasks of the first round and failed in CI.)
"""

from __future__ import annotations

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")


def _record_compiles():
    """In a worker: count Numba compilations from now on (cache loads are not counted)."""
    import builtins

    from numba.core import event

    class Recorder(event.Listener):
        def on_start(self, ev):
            builtins._hpcjobs_compiles.append(str(ev.data.get("dispatcher", "")))

        def on_end(self, ev):
            pass

    builtins._hpcjobs_compiles = []
    event.register("numba:compile", Recorder())


def _compiles_so_far():
    import builtins

    out = list(builtins._hpcjobs_compiles)
    builtins._hpcjobs_compiles.clear()
    return out


def _dask_calls():
    import dask.array as da

    from hpcjobs import kernels as K

    rng = np.random.default_rng(0)
    X = rng.standard_normal((20000, 4))
    dX = da.from_array(X, chunks=(5000, 4))
    walk = da.from_array(rng.standard_normal(100_000).cumsum(), chunks=25_000)
    short = da.from_array(rng.standard_normal(3000).cumsum(), chunks=1000)
    raster = da.from_array(rng.random((256, 256)), chunks=128)
    lens = rng.integers(1, 8, 2000)
    indptr = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    baskets = {"indptr": da.from_array(indptr, chunks=501),
               "items": da.from_array(rng.integers(0, 30, indptr[-1]).astype(np.int32),
                                      chunks=-1)}
    x, y = dX[:, 0], dX[:, 1]
    return {
        "describe": lambda: K.describe(dX),
        "standardize": lambda: K.standardize(dX).compute(),
        "kmeans": lambda: K.kmeans(dX, 4, seed=0, max_iter=5),
        "kmeans_predict": lambda: K.kmeans_predict(dX, X[:4]).compute(),
        "minibatch_kmeans": lambda: K.minibatch_kmeans(dX, 4, max_iter=2, seed=0),
        "dbscan": lambda: K.dbscan(dX[:, :2], 0.1, 5),
        "aggregate2d": lambda: K.aggregate2d(x, y, shape=(32, 32), agg="mean",
                                             values=dX[:, 2]).compute(),
        "shade": lambda: K.shade(raster),
        "pyramid": lambda: [np.asarray(a) for a in K.pyramid(raster, 3)],
        "lttb": lambda: K.lttb(None, walk, 200),
        "minmax": lambda: K.minmax(walk, 200),
        "m4": lambda: K.m4(None, walk, 200),
        "minmax_lttb": lambda: K.minmax_lttb(None, walk, 200),
        "pca": lambda: np.asarray(K.pca(dX).embedding),
        "frequent_itemsets": lambda: K.frequent_itemsets(baskets, 0.05),
        "matrix_profile": lambda: K.matrix_profile(short, 50),
        "knn_outliers": lambda: np.asarray(K.knn_outliers(dX, 10)),
        "lof": lambda: np.asarray(K.lof(dX, 10)),
    }


def _cluster():
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           dashboard_address=None)
    return cluster, Client(cluster)


@pytest.mark.slow
def test_new_worker_processes_compile_nothing():
    cluster, client = _cluster()
    with cluster, client:
        for call in _dask_calls().values():
            call()  # compiles where the cache lacks a signature, and fills it
    cluster, client = _cluster()  # new worker processes
    with cluster, client:
        client.run(_record_compiles)
        compiled = {}
        for name, call in _dask_calls().items():
            call()
            funcs = sorted({f for fs in client.run(_compiles_so_far).values() for f in fs})
            if funcs:
                compiled[name] = funcs
    assert not compiled, f"new workers compiled again: {compiled}"
