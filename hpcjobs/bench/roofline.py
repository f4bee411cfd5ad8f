"""How close a benchmark runs to this machine's memory limit: a STREAM-like probe.

At the start of a run, :func:`probe_bandwidth` measures what the cores can stream from memory
with Numba's threads (all usable cores): a *read* kernel (the sum of one array, the access
pattern of a reduction such as ``describe``) and STREAM's *triad* ``a = b + s * c`` (two
arrays read, one written; counted as 3 arrays of traffic, as STREAM counts it). Each is the
best of a few passes over arrays well beyond the caches.

A benchmark that says how many bytes one call must move at least (``Benchmark.bytes``: its
input read once per pass it cannot avoid, plus its outputs) then gets, per record,
``roofline_s = bytes / read bandwidth`` (the time of a call that only moved its data) and
``roofline_fraction = roofline_s / median_s`` (1.0: at the memory roofline). For kernels that
are bound by arithmetic (matrix profile, frequent itemsets, neighbours) the fraction is small
by nature and says so.
"""

from __future__ import annotations

import time

import numpy as np
from numba import prange

from hpcjobs.kernels._jit import njit

#: bytes of each probe array (3 for the triad: 384 MiB in all), far beyond any L3
ARRAY_BYTES = 128 * 2**20
#: a quick run's arrays (smoke runs and tests: this mostly measures caches)
QUICK_ARRAY_BYTES = 8 * 2**20
PASSES = 5


@njit(parallel=True, fastmath=True)
def _read(a):
    """Sum of ``a`` (fastmath: reordered partial sums vectorise; a probe, not a result)."""
    s = 0.0
    for i in prange(a.shape[0]):
        s += a[i]
    return s


@njit(parallel=True)
def _triad(a, b, c, s):
    for i in prange(a.shape[0]):
        a[i] = b[i] + s * c[i]


def _best(fn, *args, passes: int) -> float:
    best = float("inf")
    for _ in range(passes):
        t0 = time.perf_counter()
        fn(*args)
        best = min(best, time.perf_counter() - t0)
    return best


def probe_bandwidth(array_bytes: int = ARRAY_BYTES, passes: int = PASSES) -> dict:
    """Measure read and triad bandwidth (bytes/s) over arrays of ``array_bytes`` each.

    Returns ``{"read_Bps", "triad_Bps", "array_bytes", "passes", "threads", "seconds"}``;
    ``threads`` is Numba's thread count (all usable cores unless limited).
    """
    import numba

    t0 = time.perf_counter()
    n = max(1024, array_bytes // 8)
    a = np.zeros(n)
    b = np.ones(n)
    c = np.full(n, 2.0)
    _read(b)  # compile (cached) and fault the pages in
    _triad(a, b, c, 3.0)
    read_s = _best(_read, b, passes=passes)
    triad_s = _best(_triad, a, b, c, 3.0, passes=passes)
    return {
        "read_Bps": 8.0 * n / read_s,
        "triad_Bps": 3 * 8.0 * n / triad_s,
        "array_bytes": 8 * n,
        "passes": passes,
        "threads": numba.get_num_threads(),
        "seconds": time.perf_counter() - t0,
    }


def roofline_fields(bytes_moved: float | None, median_s: float | None,
                    bandwidth: dict | None) -> dict:
    """``bytes``, ``roofline_s`` and ``roofline_fraction`` of one record (None where unknown)."""
    out = {"bytes": bytes_moved, "roofline_s": None, "roofline_fraction": None}
    if not bytes_moved or not bandwidth or not bandwidth.get("read_Bps"):
        return out
    out["roofline_s"] = bytes_moved / bandwidth["read_Bps"]
    if median_s:
        out["roofline_fraction"] = out["roofline_s"] / median_s
    return out
