"""Data-mining kernels against mlxtend, pyfim, stumpy, SCAMP, scikit-learn, oneDAL and faiss.

- ``frequent_itemsets``: Zipf-distributed baskets (about 10 distinct items each over 200 items),
  ``min_support=0.01``. ``hpcjobs`` takes the CSR arrays; ``mlxtend-fpgrowth`` (peer) takes the
  one-hot DataFrame it needs (built untimed in ``prepare``); ``pyfim-fpgrowth`` and
  ``pyfim-eclat`` (Borgelt's C, one thread) take a list of item lists (built untimed) and the
  same minimum count as an absolute support (``supp=-count``; a positive ``supp`` is a
  percentage); ``hpcjobs-dask`` runs SON over 4 chunks on a LocalCluster of 2 workers x 1 thread.
- ``matrix_profile``: a random walk, ``m=100``, against ``stumpy.stump`` (its Numba threads) and
  ``pyscamp.selfjoin`` (SCAMP's C++, ``threads`` = the usable cores, ``gpus=[]``);
  ``hpcjobs-dask``: the tiled version over 8 chunks on the same LocalCluster.
- ``lof``: standard normal points, ``d=8``, ``k=20``, against
  ``sklearn.neighbors.LocalOutlierFactor`` (its default tree) and oneDAL's
  (``sklearnex.neighbors``, TBB over all cores in this process); ``hpcjobs-dask`` over 8 row
  blocks. ``knn_outliers`` is timed alongside against ``NearestNeighbors.kneighbors`` and
  faiss's exact ``IndexFlatL2`` (float32, every point's k + 1 nearest: itself first, squared
  distances).
"""

from __future__ import annotations

import numpy as np

from hpcjobs.bench.harness import dask_client
from hpcjobs.bench.spec import Benchmark, Impl

N_ITEMS = 200
MIN_SUPPORT = 0.01
M = 100
K = 20


def _cluster():
    return dask_client(threads_per_worker=1)  # 2 workers, or as many as --workers says


# --------------------------------------------------------------------------- itemsets


def _baskets(size, rng):
    """CSR baskets: ~Poisson(10) distinct items each, items drawn with Zipf weights 1/rank."""
    n = size["n"]
    p = 1.0 / np.arange(1, N_ITEMS + 1)
    p /= p.sum()
    draws = rng.choice(N_ITEMS, size=(n, 40), p=p)
    lengths = np.maximum(1, rng.poisson(10, n))
    rows = []
    for i in range(n):
        rows.append(np.array(list(dict.fromkeys(draws[i].tolist()))[:lengths[i]], np.int32))
    indptr = np.zeros(n + 1, dtype=np.int64)
    indptr[1:] = np.cumsum([r.size for r in rows])
    return {"indptr": indptr, "items": np.concatenate(rows)}


def _fi_ours(csr):
    from hpcjobs.kernels import frequent_itemsets

    return frequent_itemsets(csr, MIN_SUPPORT)


def _fi_onehot(csr, size):
    import pandas as pd

    n = csr["indptr"].size - 1
    dense = np.zeros((n, N_ITEMS), dtype=bool)
    dense[np.repeat(np.arange(n), np.diff(csr["indptr"])), csr["items"]] = True
    return pd.DataFrame(dense, columns=[f"i{j}" for j in range(N_ITEMS)])


def _fi_mlxtend(df):
    from mlxtend.frequent_patterns import fpgrowth

    return fpgrowth(df, min_support=MIN_SUPPORT)


def _fi_lists(csr, size):
    """pyfim's input (a list of item lists) and the minimum count as its absolute support."""
    from hpcjobs.kernels.mining.itemsets import _min_count

    ip, items = csr["indptr"].tolist(), csr["items"].tolist()
    tracts = [items[ip[i]:ip[i + 1]] for i in range(len(ip) - 1)]
    return tracts, _min_count(MIN_SUPPORT, len(tracts))


def _fi_pyfim(algo):
    def run(prepared):
        import fim

        tracts, count = prepared
        return getattr(fim, algo)(tracts, supp=-count, report="a")

    return run


def _fi_dask(csr, size):
    import dask.array as da

    n = csr["indptr"].size
    return {"indptr": da.from_array(csr["indptr"], chunks=-(-n // 4)),
            "items": da.from_array(csr["items"], chunks=-(-csr["items"].size // 4))}


# --------------------------------------------------------------------------- matrix profile


def _walk(size, rng):
    return np.cumsum(rng.standard_normal(size["n"]))


def _mp_ours(T):
    from hpcjobs.kernels import matrix_profile

    r = matrix_profile(T, M)
    if hasattr(r.profile, "compute"):
        import dask

        return dask.compute(r.profile, r.index)
    return r


def _stump(T):
    import stumpy

    return stumpy.stump(T, M)


def _scamp(T):
    import pyscamp

    from hpcjobs.bench.harness import usable_cores

    return pyscamp.selfjoin(T, M, threads=usable_cores(), gpus=[])


def _chunks8(X, size):
    import dask.array as da
    from distributed import get_client, wait

    chunks = (-(-X.shape[0] // 8),) + X.shape[1:]
    x = get_client().persist(da.from_array(X, chunks=chunks))
    wait(x)
    return x


# --------------------------------------------------------------------------- outliers


def _points(size, rng):
    return rng.standard_normal((size["n"], size["d"]))


def _lof_ours(X):
    from hpcjobs.kernels import lof

    out = lof(X, K)
    return out.compute() if hasattr(out, "compute") else out


def _lof_sklearn(X):
    from sklearn.neighbors import LocalOutlierFactor

    return LocalOutlierFactor(n_neighbors=K).fit(X).negative_outlier_factor_


def _lof_sklearnex(X):
    from sklearnex.neighbors import LocalOutlierFactor

    return LocalOutlierFactor(n_neighbors=K).fit(X).negative_outlier_factor_


def _float32(X, size):
    return np.ascontiguousarray(X, dtype=np.float32)


def _knn_faiss(X32):
    import faiss

    index = faiss.IndexFlatL2(X32.shape[1])
    index.add(X32)
    d2, _ = index.search(X32, K + 1)  # every point finds itself first
    return np.sqrt(d2[:, K])


def _knn_ours(X):
    from hpcjobs.kernels import knn_outliers

    return knn_outliers(X, K)


def _knn_sklearn(X):
    from sklearn.neighbors import NearestNeighbors

    return NearestNeighbors(n_neighbors=K).fit(X).kneighbors()[0][:, -1]


BENCHMARKS = [
    Benchmark(
        name="frequent_itemsets",
        kernel="frequent_itemsets",
        description=f"Zipf baskets (~10 of {N_ITEMS} items), min_support={MIN_SUPPORT}",
        sizes=[{"n": 50_000}, {"n": 500_000}],
        quick_sizes=[{"n": 5_000}],
        make_data=_baskets,
        unit="baskets",
        # about 10 int32 items and one int64 offset a basket: mining is bound by arithmetic
        bytes=lambda s: 48 * s["n"],
        repeats=5,
        impls=[
            Impl("hpcjobs", _fi_ours, note="Eclat on bitsets, Numba threads"),
            Impl("mlxtend-fpgrowth", _fi_mlxtend, peer=True, prepare=_fi_onehot,
                 requires=("mlxtend", "pandas"), sizes=(0,),
                 note="one-hot DataFrame built untimed"),
            Impl("pyfim-fpgrowth", _fi_pyfim("fpgrowth"), peer=True, prepare=_fi_lists,
                 requires=("fim",), note="Borgelt's C, 1 thread; item lists built untimed"),
            Impl("pyfim-eclat", _fi_pyfim("eclat"), peer=True, prepare=_fi_lists,
                 requires=("fim",), note="Borgelt's C, 1 thread; item lists built untimed"),
            Impl("hpcjobs-dask", _fi_ours, prepare=_fi_dask, context=_cluster, cluster=True,
                 requires=("distributed",), note="SON over 4 chunks, 2 workers x 1 thread"),
        ],
    ),
    Benchmark(
        name="matrix_profile",
        kernel="matrix_profile",
        description=f"random walk, m={M}, self-join",
        sizes=[{"n": 20_000}, {"n": 100_000}],
        quick_sizes=[{"n": 2_000}],
        make_data=_walk,
        unit="windows",
        bytes=lambda s: 24 * s["n"],  # the series read; profile and index written
        repeats=3,
        impls=[
            Impl("hpcjobs", _mp_ours, note="diagonals in SIMD bands, Numba threads"),
            Impl("stumpy", _stump, peer=True, requires=("stumpy",), note="stumpy.stump"),
            Impl("pyscamp", _scamp, peer=True, requires=("pyscamp",),
                 note="SCAMP selfjoin, threads = usable cores, no GPU"),
            Impl("hpcjobs-dask", _mp_ours, prepare=_chunks8, context=_cluster, cluster=True,
                 requires=("distributed",), note="tiles of 8 chunks, 2 workers x 1 thread"),
        ],
    ),
    Benchmark(
        name="lof",
        kernel="lof",
        description=f"standard normal points, k={K}",
        sizes=[{"n": 100_000, "d": 8}],
        quick_sizes=[{"n": 5_000, "d": 8}],
        make_data=_points,
        items=lambda size: size["n"],
        unit="points",
        bytes=lambda s: 8 * s["n"] * (s["d"] + 1),  # the points read, one value each written
        repeats=3,
        impls=[
            Impl("hpcjobs", _lof_ours, note="kd tree, exact, Numba threads"),
            Impl("sklearn", _lof_sklearn, peer=True, requires=("sklearn",),
                 note="LocalOutlierFactor (auto tree)"),
            Impl("sklearnex", _lof_sklearnex, peer=True, requires=("sklearnex",),
                 note="oneDAL LocalOutlierFactor, TBB threads"),
            Impl("hpcjobs-dask", _lof_ours, prepare=_chunks8, context=_cluster, cluster=True,
                 requires=("distributed",), note="8 row blocks, 2 workers x 1 thread"),
        ],
    ),
    Benchmark(
        name="knn_outliers",
        kernel="knn_outliers",
        description=f"distance to the {K}-th neighbour, standard normal points",
        sizes=[{"n": 100_000, "d": 8}],
        quick_sizes=[{"n": 5_000, "d": 8}],
        make_data=_points,
        unit="points",
        bytes=lambda s: 8 * s["n"] * (s["d"] + 1),
        repeats=3,
        impls=[
            Impl("hpcjobs", _knn_ours, note="kd tree, exact, Numba threads"),
            Impl("sklearn", _knn_sklearn, peer=True, requires=("sklearn",),
                 note="NearestNeighbors.kneighbors"),
            Impl("faiss", _knn_faiss, peer=True, prepare=_float32, requires=("faiss",),
                 note="IndexFlatL2 (exact; float32 copy made untimed), search k + 1"),
        ],
    ),
]
