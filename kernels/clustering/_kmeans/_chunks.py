"""k-means's chunk loops (Numba): the nearest centroid of every row of a chunk, Lloyd's fused
assign + accumulate step, the assignment alone, and the k-means++ trial scoring.

Each loop exists once. Every pass over a chunk goes through :func:`lloyd` or :func:`assign`
(and :func:`kpp` for k-means++); for narrow data ``_specialised`` compiles a copy of the
same loops around a distance step unrolled over the columns (``assign_accumulate`` and
``assign_labels`` in ``_specialised`` pick which one runs, or hand wide data to
``_dense_lloyd``, whose labels are the same).

Distances here are computed directly as ``sum((x - c)**2)`` in the data's dtype (float32
stays float32), never through the ``|x|^2 - 2 x.c + |c|^2`` expansion, so the inertia is the
true sum of squared distances.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from hpcjobs.kernels._jit import njit, thread_ranges
from hpcjobs.kernels.clustering._common import uniform

TILE = 64  # rows per tile: the tile is transposed so that the distance loops run over rows


@njit
def nearest_tile(X, s, CT, XT, dist, best, lab):
    """Nearest centroid of rows ``s:s+TILE``: squared distances into ``best``, index ``lab``."""
    for i in range(TILE):
        for f in range(X.shape[1]):
            XT[f, i] = X[s + i, f]
    nearest_XT(XT, TILE, CT, dist, best, lab)


@njit
def nearest_XT(XT, m, CT, dist, best, lab):
    """Nearest centroid of the ``m`` rows held transposed in ``XT`` (d, >= m).

    ``CT`` (d, kp) holds the centroids as columns, ``kp`` a multiple of 4 (padding columns are
    +inf and never win). Four centroids are swept per pass over the tile, so the inner loops
    are long, unit-stride and vectorise.
    """
    for i in range(m):
        best[i] = np.inf
        lab[i] = 0
    for j0 in range(0, CT.shape[1], 4):
        distances4(XT, m, CT, j0, dist)
        for q in range(4):
            for i in range(m):
                if dist[q, i] < best[i]:
                    best[i] = dist[q, i]
                    lab[i] = j0 + q


@njit
def distances4(XT, m, CT, j0, dist):
    """The squared distances of the ``m`` rows held transposed in ``XT`` to the centroids
    ``j0`` to ``j0 + 3`` into ``dist[0:4, :m]``, features summed in order."""
    for q in range(4):
        for i in range(m):
            dist[q, i] = 0.0
    for f in range(CT.shape[0]):
        c0 = CT[f, j0]
        c1 = CT[f, j0 + 1]
        c2 = CT[f, j0 + 2]
        c3 = CT[f, j0 + 3]
        for i in range(m):
            x = XT[f, i]
            t0 = x - c0
            t1 = x - c1
            t2 = x - c2
            t3 = x - c3
            dist[0, i] += t0 * t0
            dist[1, i] += t1 * t1
            dist[2, i] += t2 * t2
            dist[3, i] += t3 * t3


@njit
def nearest_row(X, i, CT, dist):
    d, kp = CT.shape
    for j in range(kp):
        dist[j] = 0.0
    for f in range(d):
        x = X[i, f]
        for j in range(kp):
            t = x - CT[f, j]
            dist[j] += t * t
    best = 0
    bd = dist[0]
    for j in range(1, kp):
        if dist[j] < bd:
            bd = dist[j]
            best = j
    return best, bd


@njit
def add_tile(XT, m, best, lab, sums, counts, inertia):
    """Add the ``m`` rows of the tile ``XT`` to the sums and counts of their nearest centroid
    (``lab``); returns ``inertia`` plus their squared distances (``best``), in row order."""
    d = XT.shape[0]
    for i in range(m):
        b = lab[i]
        counts[b] += 1
        inertia += best[i]
        for f in range(d):
            sums[b, f] += XT[f, i]
    return inertia


@njit
def lloyd_range(X, CT, start, stop, sums, counts, XT, dist, best, lab):
    """Assign rows ``[start, stop)`` and add them to ``sums``/``counts``; return their inertia."""
    d = CT.shape[0]
    inertia = 0.0
    s = start
    while s + TILE <= stop:
        nearest_tile(X, s, CT, XT, dist, best, lab)
        inertia = add_tile(XT, TILE, best, lab, sums, counts, inertia)
        s += TILE
    for i in range(s, stop):
        b, bd = nearest_row(X, i, CT, dist[0])
        counts[b] += 1
        inertia += bd
        for f in range(d):
            sums[b, f] += X[i, f]
    return inertia


def pad(CT: np.ndarray, dtype) -> np.ndarray:
    """Centroid columns padded with +inf to a multiple of 4, C-contiguous, in ``dtype``."""
    d, k = CT.shape
    kp = max(4, -(-k // 4) * 4)
    out = np.full((d, kp), np.inf, dtype=dtype)
    out[:, :k] = CT
    return out


@njit
def tile_scratch(X, kp):
    """One thread's buffers for :func:`nearest_tile`: the tile transposed, the distances of
    four centroids (also of all ``kp`` for one row), the best distance and label per row."""
    XT = np.empty((X.shape[1], TILE), dtype=X.dtype)
    dist = np.empty((4, max(TILE, kp)), dtype=X.dtype)
    best = np.empty(TILE, dtype=X.dtype)
    lab = np.empty(TILE, dtype=np.int64)
    return XT, dist, best, lab


@njit(parallel=True)
def lloyd(X, CT, k, n_threads):
    """Fused assignment + partial sums of a whole chunk: (sums (k, d), counts (k,), inertia).

    ``CT`` is padded (:func:`pad`); ``k`` is the true number of centroids.
    """
    d, kp = CT.shape
    ranges = thread_ranges(X.shape[0], n_threads)
    nt = ranges.shape[0]
    sums = np.zeros((nt, kp, d))
    counts = np.zeros((nt, kp), dtype=np.int64)
    inertia = np.zeros(nt)
    for t in numba.prange(nt):
        XT, dist, best, lab = tile_scratch(X, kp)
        inertia[t] = lloyd_range(X, CT, ranges[t, 0], ranges[t, 1], sums[t], counts[t], XT,
                                  dist, best, lab)
    out_s, out_c = merge_threads(sums, counts, k)
    return out_s, out_c, inertia.sum()


@njit
def merge_threads(sums, counts, k):
    """The threads' sums (nt, >= k, d) and counts (nt, >= k) of the first ``k`` clusters,
    added up in thread order."""
    nt, _, d = sums.shape
    out_s = np.zeros((k, d))
    out_c = np.zeros(k, dtype=np.int64)
    for t in range(nt):
        for j in range(k):
            out_c[j] += counts[t, j]
            for f in range(d):
                out_s[j, f] += sums[t, j, f]
    return out_s, out_c


@njit
def assign_range(X, CT, start, stop, labels, d2, XT, dist, best, lab):
    inertia = 0.0
    s = start
    while s + TILE <= stop:
        nearest_tile(X, s, CT, XT, dist, best, lab)
        for i in range(TILE):
            labels[s + i] = lab[i]
            d2[s + i] = best[i]
            inertia += best[i]
        s += TILE
    for i in range(s, stop):
        b, bd = nearest_row(X, i, CT, dist[0])
        labels[i] = b
        d2[i] = bd
        inertia += bd
    return inertia


@njit(parallel=True)
def assign(X, CT, labels, d2, n_threads):
    """Nearest centroid of every row into ``labels`` and its squared distance into ``d2``.

    ``CT`` is padded (:func:`pad`) and in the dtype of ``X``.
    """
    kp = CT.shape[1]
    ranges = thread_ranges(X.shape[0], n_threads)
    nt = ranges.shape[0]
    inertia = np.zeros(nt)
    for t in numba.prange(nt):
        XT, dist, best, lab = tile_scratch(X, kp)
        inertia[t] = assign_range(X, CT, ranges[t, 0], ranges[t, 1], labels, d2, XT, dist,
                                   best, lab)
    return inertia.sum()


@njit
def kpp_range(X, offset, start, stop, CT, TT, key, pot, hk, hi):
    """Score the trial centroids ``TT`` and draw the next trials for each (exponential race).

    ``pot[l]`` gets the potential sum(min(d^2(x, C), d^2(x, T_l))); ``hk[l]``/``hi[l]`` keep the
    ``M`` smallest keys ``-log(u_x) / w_l(x)`` and their global row indices.
    """
    d = X.shape[1]
    j = CT.shape[1]
    L = TT.shape[1]
    M = hk.shape[1]
    for i in range(start, stop):
        base = np.inf
        for c in range(j):
            s = 0.0
            for f in range(d):
                t = np.float64(X[i, f]) - CT[f, c]
                s += t * t
            if s < base:
                base = s
        e = -math.log(uniform(key, offset + i))
        for ll in range(L):
            s = 0.0
            for f in range(d):
                t = np.float64(X[i, f]) - TT[f, ll]
                s += t * t
            w = min(s, base)
            pot[ll] += w
            if w > 0.0:
                kk = e / w
                m = 0
                for q in range(1, M):
                    if hk[ll, q] > hk[ll, m]:
                        m = q
                if kk < hk[ll, m]:
                    hk[ll, m] = kk
                    hi[ll, m] = offset + i


@njit(parallel=True)
def kpp(X, offset, CT, TT, key, M, n_threads):
    L = TT.shape[1]
    ranges = thread_ranges(X.shape[0], n_threads)
    nt = ranges.shape[0]
    pot = np.zeros((nt, L))
    hk = np.full((nt, L, M), np.inf)
    hi = np.full((nt, L, M), -1, dtype=np.int64)
    for t in numba.prange(nt):
        kpp_range(X, offset, ranges[t, 0], ranges[t, 1], CT, TT, key, pot[t], hk[t], hi[t])
    return pot.sum(axis=0), hk, hi

