"""The first call of each public kernel in a fresh process, once Numba's cache is warm.

``first-call``: each implementation is one kernel. A sample starts a new Python process
(``python benchmarks/startup.py KERNEL N``) that makes a small input, then times ``from
hpcjobs.kernels import KERNEL`` plus the first call: what a job's worker or a user's script
pays before its first result (loading the cached machine code, starting Numba's threads),
without the interpreter's and NumPy's own start-up. The untimed warm-up runs fill the cache,
so the samples measure a warm cache. Target (issue 5): at most 1 s for every kernel.
"""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np

from hpcjobs.bench.spec import Benchmark, Impl


def _inputs(n: int) -> dict:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, 4))
    series = rng.standard_normal(n).cumsum()
    baskets = [list(rng.choice(20, size=4, replace=False)) for _ in range(max(n // 10, 10))]
    return {"X": X, "series": series, "baskets": baskets, "raster": rng.random((256, 256))}


def _calls(d: dict) -> dict:
    """Kernel name -> the call whose first run is timed (small inputs: the call is load)."""
    from hpcjobs import kernels as K

    X, s = d["X"], d["series"]
    xy = X[:, 0], X[:, 1]
    mp = lambda: K.matrix_profile(s[:2000], 50)  # noqa: E731
    return {
        "describe": lambda: K.describe(X),
        "standardize": lambda: K.standardize(X),
        "kmeans": lambda: K.kmeans(X, 4, seed=0),
        "kmeans_predict": lambda: K.kmeans_predict(X, X[:4]),
        "minibatch_kmeans": lambda: K.minibatch_kmeans(X, 4, max_iter=1, seed=0),
        "dbscan": lambda: K.dbscan(X[:, :2], 0.1, 5),
        "aggregate2d": lambda: K.aggregate2d(*xy, shape=(100, 100), agg="mean", values=X[:, 2]),
        "shade": lambda: K.shade(d["raster"]),
        "pyramid": lambda: K.pyramid(d["raster"].astype(np.float32), 3),
        "lttb": lambda: K.lttb(None, s, 100),
        "minmax": lambda: K.minmax(s, 100),
        "m4": lambda: K.m4(None, s, 100),
        "minmax_lttb": lambda: K.minmax_lttb(None, s, 100),
        "pca": lambda: K.pca(X),
        "frequent_itemsets": lambda: K.frequent_itemsets(d["baskets"], 0.05),
        "association_rules": lambda: K.association_rules(
            K.frequent_itemsets(d["baskets"], 0.05), 0.1),
        "matrix_profile": mp,
        "discords": lambda: K.discords(mp()),
        "motifs": lambda: K.motifs(mp()),
        "knn_outliers": lambda: K.knn_outliers(X, 10),
        "lof": lambda: K.lof(X, 10),
    }


#: every public kernel; a test checks that this stays the package's full list
KERNELS = (
    "describe", "standardize", "kmeans", "kmeans_predict", "minibatch_kmeans", "dbscan",
    "aggregate2d", "shade", "pyramid", "lttb", "minmax", "m4", "minmax_lttb", "pca",
    "frequent_itemsets", "association_rules", "matrix_profile", "discords", "motifs",
    "knn_outliers", "lof",
)


def first_call(kernel: str, n: int) -> float:
    """Seconds of ``import`` + first call of ``kernel`` in this process (call it once)."""
    d = _inputs(n)
    t0 = time.perf_counter()
    _calls(d)[kernel]()
    return time.perf_counter() - t0


def _in_child(kernel: str):
    def run(size: dict) -> float:
        proc = subprocess.run([sys.executable, __file__, kernel, str(size["n"])],
                              capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise RuntimeError(f"child process for {kernel} exited {proc.returncode}: {tail}")
        return float(proc.stdout.split()[-1])

    return run


BENCHMARKS = [
    Benchmark(
        name="first-call", kernel="first-call", sizes=[{"n": 20_000}],
        quick_sizes=[{"n": 2000}], make_data=lambda size, rng: size,
        items=lambda size: 1, unit="calls", repeats=5,
        impls=[Impl(k, _in_child(k), self_timed=True) for k in KERNELS],
        description="import + first call in a fresh process, warm Numba cache",
    ),
]


if __name__ == "__main__":
    print(first_call(sys.argv[1], int(sys.argv[2])))
