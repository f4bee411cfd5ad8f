"""k-means's starting centroids and tolerance: k-means|| (Bahmani et al., "Scalable
K-Means++", VLDB 2012) with the weighted re-clustering of its candidates, greedy k-means++
(one pass per centroid) and random rows; the absolute tolerance from the data's variance.
"""

from __future__ import annotations

import numpy as np

from hpcjobs.kernels._jit import task_threads
from hpcjobs.kernels._validation import nonfinite_input
from hpcjobs.kernels.clustering._common import Blocks, new_key
from hpcjobs.kernels.clustering._kmeans._chunks import assign, pad
from hpcjobs.kernels.clustering._kmeans._passes import (
    NearestCandidate,
    finite_moments,
    kpar_chunk,
    kpar_combine,
    kpar_in_memory,
    kpp_chunk,
    kpp_combine,
    lloyd_chunk,
    moments_chunk,
    moments_combine,
    sum_combine,
)


def kmeans_plusplus(blocks: Blocks, k: int, rng: np.random.Generator) -> np.ndarray:
    """Greedy k-means++ with ``2 + log k`` local trials; one pass per centroid."""
    d = blocks.d
    M = 2 + int(np.log(k))
    first = int(rng.integers(blocks.n))
    trials = blocks.rows(np.array([first])).astype(np.float64)
    C = np.empty((0, d))
    while True:
        key = new_key(rng)
        pot, hk, hi, rows = blocks.map_reduce(
            kpp_chunk, kpp_combine, np.ascontiguousarray(C.T), np.ascontiguousarray(trials.T),
            key, M)
        best = int(np.argmin(pot)) if len(C) else 0
        C = np.vstack([C, trials[best:best + 1]])
        if len(C) == k:
            return C
        ok = hi[best] >= 0
        trials = rows[best][ok]
        if len(trials) == 0:  # fewer distinct rows than clusters: duplicate a random row
            trials = blocks.rows(np.array([int(rng.integers(blocks.n))])).astype(np.float64)


def kmeans_parallel(blocks: Blocks, k: int, rng: np.random.Generator, rounds: int,
                     oversampling: float) -> np.ndarray:
    """k-means|| (Bahmani et al. 2012) with the weighted re-clustering of the candidates."""
    ell = oversampling * k
    first = int(rng.integers(blocks.n))
    cand_idx = np.array([first], dtype=np.int64)
    cand = blocks.rows(cand_idx).astype(np.float64)
    # in memory, each row's nearest candidate is kept from round to round (a round measures
    # the rows against the candidates drawn since); over Dask chunks, against all of them
    nearest = NearestCandidate(blocks.n, blocks.d, blocks.dtype) if blocks.in_memory else None
    for _ in range(rounds):
        key = new_key(rng)
        if nearest is None:
            phi, idx, u, d2, rows = blocks.map_reduce(kpar_chunk, kpar_combine,
                                                      pad(cand.T, blocks.dtype), key, ell)
        else:
            phi, idx, u, d2, rows = kpar_in_memory(blocks.X, nearest, cand[nearest.count:],
                                                   key, ell)
        if phi <= 0.0:
            break
        keep = u * phi < ell * d2
        idx, rows = idx[keep], rows[keep]
        order = np.argsort(idx, kind="stable")
        cand_idx = np.concatenate([cand_idx, idx[order]])
        cand = np.vstack([cand, rows[order].astype(np.float64)])
    if len(cand) < k:  # pad with uniformly drawn rows (they are re-clustered like the others)
        extra = rng.choice(blocks.n, size=k - len(cand), replace=blocks.n < k)
        cand = np.vstack([cand, blocks.rows(np.sort(extra)).astype(np.float64)])
    if nearest is not None:  # the candidates no round has measured the rows against
        nearest.add(blocks.X, cand[nearest.count:])
        weights = nearest.weights()
    else:
        CT = pad(cand.T, blocks.dtype)
        _, weights, _ = blocks.map_reduce(lloyd_chunk, sum_combine, CT, len(cand))
    return weighted_kmeans(cand, weights.astype(np.float64), k, rng)


def weighted_kmeans(P: np.ndarray, w: np.ndarray, k: int, rng: np.random.Generator,
                     max_iter: int = 300) -> np.ndarray:
    """Weighted greedy k-means++ then weighted Lloyd on a small in-memory point set."""
    m = len(P)
    n_trials = 2 + int(np.log(k))
    p0 = w / w.sum() if w.sum() > 0 else None
    C = np.empty((k, P.shape[1]))
    C[0] = P[rng.choice(m, p=p0)]
    closest = ((P - C[0]) ** 2).sum(axis=1)
    for c in range(1, k):
        pot = (w * closest).sum()
        if pot <= 0:
            C[c] = P[rng.integers(m)]
            continue
        r = rng.random(n_trials) * pot
        ids = np.searchsorted(np.cumsum(w * closest), r)
        ids = np.minimum(ids, m - 1)
        d = ((P[None, :, :] - P[ids][:, None, :]) ** 2).sum(axis=2)
        np.minimum(closest, d, out=d)
        best = int(np.argmin((d * w).sum(axis=1)))
        C[c] = P[ids[best]]
        closest = d[best]
    lab = np.empty(m, dtype=np.int32)
    d2 = np.empty(m)
    for _ in range(max_iter):
        assign(P, pad(C.T, np.float64), lab, d2, task_threads())
        wsum = np.bincount(lab, weights=w, minlength=k)
        new = np.empty_like(C)
        for f in range(P.shape[1]):
            new[:, f] = np.bincount(lab, weights=w * P[:, f], minlength=k)
        nonempty = wsum > 0
        new[nonempty] /= wsum[nonempty, None]
        new[~nonempty] = C[~nonempty]
        if np.array_equal(new, C):
            break
        C = new
    return C


def seeded(blocks, k: int, init, tol: float, rng, rounds: int, oversampling: float):
    """(absolute tolerance, starting centroids). The tolerance comes first: over Dask its
    pass (or, with tol=0, the first pass of what follows) checks every chunk for NaN/inf."""
    tol_abs = tolerance(blocks, tol)
    return tol_abs, initial(blocks, k, init, rng, rounds, oversampling)


def initial(blocks: Blocks, k: int, init, rng, rounds: int, oversampling: float):
    if not isinstance(init, str):
        return init
    if init == "random":
        idx = np.sort(rng.choice(blocks.n, size=k, replace=False))
        return blocks.rows(idx).astype(np.float64)
    if init == "k-means++":
        return kmeans_plusplus(blocks, k, rng)
    return kmeans_parallel(blocks, k, rng, rounds, oversampling)


def tolerance(blocks: Blocks, tol: float) -> float:
    if tol == 0.0:  # Dask input: the first pass over the data checks it for NaN/inf
        blocks.check_finite_next("kmeans")
        return 0.0
    if not blocks.in_memory:  # the moments pass checks every chunk for NaN/inf
        n, _, m2 = blocks.map_reduce(moments_chunk, moments_combine)
        return float(tol * np.mean(m2 / n))
    # the first pass over in-memory data checks it (kmeans.fit_kmeans did not, up front)
    X = np.ascontiguousarray(blocks.X)
    n, _, m2, finite = finite_moments(X)
    if not finite:
        raise nonfinite_input(X, "X", "kmeans")
    return float(tol * np.mean(m2 / n))
