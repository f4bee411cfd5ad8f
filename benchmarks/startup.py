"""What a user waits for before the first result: a fresh machine's first run, and each
later first call.

``quickstart``: the README's quickstart (``hpcjobs quickstart DIR --force``) as a new
process, wall time, from a cold Numba cache (an empty ``NUMBA_CACHE_DIR`` and generated-kernel
folder for each sample: everything compiles, once, in the job's warm-up) and from a warm one
(its first sample fills the cache). Targets (issue 12, 2 cores): cold <= 25 s, warm <= 5 s.

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


def _profile(K, d):
    return K.matrix_profile(d["series"][:2000], 50)


#: kernel name -> the call whose first run is timed, given the package and the inputs (small:
#: the call is mostly loading); every public kernel, which a test checks
_CALLS = {
    "describe": lambda K, d: K.describe(d["X"]),
    "standardize": lambda K, d: K.standardize(d["X"]),
    "kmeans": lambda K, d: K.kmeans(d["X"], 4, seed=0),
    "kmeans_predict": lambda K, d: K.kmeans_predict(d["X"], d["X"][:4]),
    "minibatch_kmeans": lambda K, d: K.minibatch_kmeans(d["X"], 4, max_iter=1, seed=0),
    "dbscan": lambda K, d: K.dbscan(d["X"][:, :2], 0.1, 5),
    "aggregate2d": lambda K, d: K.aggregate2d(d["X"][:, 0], d["X"][:, 1], shape=(100, 100),
                                              agg="mean", values=d["X"][:, 2]),
    "shade": lambda K, d: K.shade(d["raster"]),
    "pyramid": lambda K, d: K.pyramid(d["raster"].astype(np.float32), 3),
    "lttb": lambda K, d: K.lttb(None, d["series"], 100),
    "minmax": lambda K, d: K.minmax(d["series"], 100),
    "m4": lambda K, d: K.m4(None, d["series"], 100),
    "minmax_lttb": lambda K, d: K.minmax_lttb(None, d["series"], 100),
    "pca": lambda K, d: K.pca(d["X"]),
    "frequent_itemsets": lambda K, d: K.frequent_itemsets(d["baskets"], 0.05),
    "association_rules": lambda K, d: K.association_rules(
        K.frequent_itemsets(d["baskets"], 0.05), 0.1),
    "matrix_profile": _profile,
    "discords": lambda K, d: K.discords(_profile(K, d)),
    "motifs": lambda K, d: K.motifs(_profile(K, d)),
    "knn_outliers": lambda K, d: K.knn_outliers(d["X"], 10),
    "lof": lambda K, d: K.lof(d["X"], 10),
}


def first_call(kernel: str, n: int) -> float:
    """Seconds of ``import`` + first call of ``kernel`` in this process (call it once)."""
    d = _inputs(n)
    t0 = time.perf_counter()
    from hpcjobs import kernels

    _CALLS[kernel](kernels, d)
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


def _quickstart(cold: bool):
    """A sample: ``hpcjobs quickstart`` in a new process, with a new cache when ``cold``."""
    import os
    import tempfile

    warm_cache = tempfile.mkdtemp(prefix="hpcjobs-bench-warm-")

    def run(size: dict) -> float:
        with tempfile.TemporaryDirectory(prefix="hpcjobs-bench-qs-") as tmp:
            cache = os.path.join(tmp, "cache") if cold else warm_cache
            env = {**os.environ, "NUMBA_CACHE_DIR": os.path.join(cache, "numba"),
                   "HPCJOBS_KERNEL_CACHE": os.path.join(cache, "generated")}
            t0 = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "hpcjobs", "quickstart",
                                   os.path.join(tmp, "qs"), "--rows", str(size["rows"])],
                                  capture_output=True, text=True, env=env, timeout=900)
            seconds = time.perf_counter() - t0
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise RuntimeError(f"hpcjobs quickstart exited {proc.returncode}: {tail}")
        return seconds

    return run


BENCHMARKS = [
    Benchmark(
        name="quickstart", kernel="quickstart", sizes=[{"rows": 2_000_000}],
        quick_sizes=[{"rows": 20_000}], make_data=lambda size, rng: size,
        items=lambda size: size["rows"], unit="rows", repeats=3,
        impls=[Impl("warm cache", _quickstart(cold=False), self_timed=True),
               Impl("cold cache", _quickstart(cold=True), self_timed=True)],
        baseline="warm cache",
        description="hpcjobs quickstart in a new process, wall time, cold and warm Numba cache",
    ),
    Benchmark(
        name="first-call", kernel="first-call", sizes=[{"n": 20_000}],
        quick_sizes=[{"n": 2000}], make_data=lambda size, rng: size,
        items=lambda size: 1, unit="calls", repeats=5,
        impls=[Impl(k, _in_child(k), self_timed=True) for k in _CALLS],
        description="import + first call in a fresh process, warm Numba cache",
    ),
]


if __name__ == "__main__":
    print(first_call(sys.argv[1], int(sys.argv[2])))
