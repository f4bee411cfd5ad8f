"""``knn_outliers`` (distance to the k-th nearest other point) and ``lof`` (local outlier factor).

Both are exact. The points are cut into leaves of at most ``_LEAF`` points by median splits
along the widest coordinate (a kd partition), each leaf with its bounding box. Queries are
grouped the same way; a query leaf visits the data leaves in order of the smallest possible
distance between the two boxes and computes the distances of each block pair directly (sum of
squared differences, as scikit-learn's trees do), skipping a data leaf as soon as its box is
farther than every query's current k-th distance. Query leaves are spread over Numba threads.

Distributed (Dask ``X``), each row block of ``X`` is a task that queries the whole set (whose
partition is built once and shared): the k nearest neighbours of a block need every point.
``lof`` then needs the k-distance of every point (n floats) and the local reachability density
of every point, each a small 1-D array shared between the blocks. The formulas are those of
``sklearn.neighbors.LocalOutlierFactor`` (``lrd = 1 / (mean(reach_dist) + 1e-10)``), and a point
is never its own neighbour (duplicates of it are, at distance 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np

from hpcjobs.kernels._jit import njit
from hpcjobs.kernels._validation import check_array, check_int, is_dask, message

_LEAF = 48


@dataclass(frozen=True)
class _Partition:
    """Points ``X[perm]`` in leaf order; leaf ``l`` holds rows ``start[l]:stop[l]``."""

    points: np.ndarray
    perm: np.ndarray
    start: np.ndarray
    stop: np.ndarray
    lo: np.ndarray
    hi: np.ndarray


# ---------------------------------------------------------------------------------------------
# chunk level


@njit
def _split(X, perm, leaf):
    """kd partition: reorder ``perm`` in place; return leaf bounds (n_leaves, 2)."""
    n = perm.shape[0]
    d = X.shape[1]
    max_leaves = 2 * (n // max(leaf, 1) + 2)
    bounds = np.empty((max_leaves, 2), dtype=np.int64)
    n_leaves = 0
    stack = np.empty((max_leaves + 64, 2), dtype=np.int64)
    top = 0
    stack[0, 0] = 0
    stack[0, 1] = n
    top = 1
    keys = np.empty(n, dtype=np.float64)
    while top > 0:
        top -= 1
        a = stack[top, 0]
        b = stack[top, 1]
        if b - a <= leaf:
            bounds[n_leaves, 0] = a
            bounds[n_leaves, 1] = b
            n_leaves += 1
            continue
        best_dim = 0
        best_spread = -1.0
        for j in range(d):
            lo = np.inf
            hi = -np.inf
            for r in range(a, b):
                x = X[perm[r], j]
                lo = min(lo, x)
                hi = max(hi, x)
            if hi - lo > best_spread:
                best_spread = hi - lo
                best_dim = j
        for r in range(a, b):
            keys[r] = X[perm[r], best_dim]
        order = np.argsort(keys[a:b], kind="mergesort")
        seg = perm[a:b].copy()
        for r in range(b - a):
            perm[a + r] = seg[order[r]]
        mid = a + (b - a) // 2
        stack[top, 0] = mid
        stack[top, 1] = b
        stack[top + 1, 0] = a
        stack[top + 1, 1] = mid
        top += 2
    return bounds[:n_leaves]


@njit
def _boxes(points, bounds):
    n_leaves = bounds.shape[0]
    d = points.shape[1]
    lo = np.empty((n_leaves, d))
    hi = np.empty((n_leaves, d))
    for leaf in range(n_leaves):
        for j in range(d):
            lo[leaf, j] = np.inf
            hi[leaf, j] = -np.inf
        for r in range(bounds[leaf, 0], bounds[leaf, 1]):
            for j in range(d):
                x = points[r, j]
                lo[leaf, j] = min(lo[leaf, j], x)
                hi[leaf, j] = max(hi[leaf, j], x)
    return lo, hi


@njit
def _query_leaf(Q, q_ids, qa, qb, q_lo, q_hi, P, p_ids, p_start, p_stop, p_lo, p_hi, k,
                best_d, best_i, lb):
    """k nearest (squared distance, id) of queries ``Q[qa:qb]`` into ``best_d``/``best_i``."""
    n_leaves = p_start.shape[0]
    d = Q.shape[1]
    for leaf in range(n_leaves):
        s = 0.0
        for j in range(d):
            gap = max(p_lo[leaf, j] - q_hi[j], q_lo[j] - p_hi[leaf, j], 0.0)
            s += gap * gap
        lb[leaf] = s
    order = np.argsort(lb)
    for r in range(qa, qb):
        for t in range(k):
            best_d[r - qa, t] = np.inf
            best_i[r - qa, t] = -1
    worst = np.inf
    for o in range(n_leaves):
        leaf = order[o]
        if lb[leaf] > worst:
            break
        for r in range(qa, qb):
            rr = r - qa
            kth = best_d[rr, k - 1]
            # the query point's own distance to the leaf box
            s = 0.0
            for j in range(d):
                gap = max(p_lo[leaf, j] - Q[r, j], Q[r, j] - p_hi[leaf, j], 0.0)
                s += gap * gap
            if s > kth:
                continue
            qid = q_ids[r]
            for c in range(p_start[leaf], p_stop[leaf]):
                if p_ids[c] == qid:
                    continue
                dist = 0.0
                for j in range(d):
                    diff = Q[r, j] - P[c, j]
                    dist += diff * diff
                if dist < kth:
                    t = k - 1
                    while t > 0 and best_d[rr, t - 1] > dist:
                        best_d[rr, t] = best_d[rr, t - 1]
                        best_i[rr, t] = best_i[rr, t - 1]
                        t -= 1
                    best_d[rr, t] = dist
                    best_i[rr, t] = p_ids[c]
                    kth = best_d[rr, k - 1]
        worst = 0.0
        for r in range(qa, qb):
            worst = max(worst, best_d[r - qa, k - 1])


@njit(parallel=True)
def _knn(Q, q_ids, q_start, q_stop, q_lo, q_hi, P, p_ids, p_start, p_stop, p_lo, p_hi, k,
         n_threads):
    """k nearest other points of every query (grouped in leaves), sorted: (dist, ids)."""
    nq = Q.shape[0]
    dist = np.empty((nq, k))
    ids = np.empty((nq, k), dtype=np.int64)
    n_q_leaves = q_start.shape[0]
    n_parts = max(1, min(n_threads * 8, n_q_leaves))
    max_rows = 0
    for leaf in range(n_q_leaves):
        max_rows = max(max_rows, q_stop[leaf] - q_start[leaf])
    for part in numba.prange(n_parts):
        lb = np.empty(p_start.shape[0])
        bd = np.empty((max_rows, k))
        bi = np.empty((max_rows, k), dtype=np.int64)
        for leaf in range(part, n_q_leaves, n_parts):
            qa, qb = q_start[leaf], q_stop[leaf]
            _query_leaf(Q, q_ids, qa, qb, q_lo[leaf], q_hi[leaf], P, p_ids, p_start, p_stop,
                        p_lo, p_hi, k, bd, bi, lb)
            for r in range(qa, qb):
                for t in range(k):
                    dist[r, t] = math.sqrt(bd[r - qa, t])
                    ids[r, t] = bi[r - qa, t]
    return dist, ids


@njit
def _lrd(dist, ids, kdist):
    """Local reachability density of each row from its neighbours' k-distances."""
    n, k = dist.shape
    out = np.empty(n)
    for r in range(n):
        s = 0.0
        for t in range(k):
            s += max(dist[r, t], kdist[ids[r, t]])
        out[r] = 1.0 / (s / k + 1e-10)
    return out


@njit
def _lof(ids, lrd_rows, lrd_all):
    n, k = ids.shape
    out = np.empty(n)
    for r in range(n):
        s = 0.0
        for t in range(k):
            s += lrd_all[ids[r, t]] / lrd_rows[r]
        out[r] = s / k
    return out


# ---------------------------------------------------------------------------------------------
# array level


def _partition(X: np.ndarray, ids: np.ndarray | None = None) -> _Partition:
    X = np.ascontiguousarray(X, dtype=np.float64)
    order = np.arange(X.shape[0], dtype=np.int64)
    bounds = _split(X, order, _LEAF)
    points = np.ascontiguousarray(X[order])
    lo, hi = _boxes(points, bounds)
    perm = order if ids is None else ids[order]
    return _Partition(points, perm, np.ascontiguousarray(bounds[:, 0]),
                      np.ascontiguousarray(bounds[:, 1]), lo, hi)


def _neighbours(data: _Partition, queries: _Partition, k: int):
    """(dist, ids) of the queries, rows in the queries' original order (``queries.perm`` are
    global ids; ``offset`` subtracted gives the row)."""
    dist, ids = _knn(queries.points, queries.perm, queries.start, queries.stop, queries.lo,
                     queries.hi, data.points, data.perm, data.start, data.stop, data.lo,
                     data.hi, k, numba.get_num_threads())
    return dist, ids


def _block_neighbours(data: _Partition, block: np.ndarray, offset: int, k: int):
    block = np.ascontiguousarray(block, dtype=np.float64)
    _check_finite(block, "knn_outliers")
    ids = np.arange(offset, offset + block.shape[0], dtype=np.int64)
    q = _partition(block, ids)
    dist, nbr = _neighbours(data, q, k)
    out_d = np.empty_like(dist)
    out_i = np.empty_like(nbr)
    rows = q.perm - offset
    out_d[rows] = dist
    out_i[rows] = nbr
    return out_d, out_i


def _check_finite(X: np.ndarray, func: str) -> None:
    if not np.isfinite(X).all():
        raise ValueError(message("X", func, "finite (no NaN or inf)", X,
                                 "Drop or impute the missing values first."))


def _validate(X, k: int, func: str):
    X = check_array(X, "X", func, ndim=2, min_len=2)
    n = int(X.shape[0])
    k = check_int(k, "k", func, low=1, high=n - 1)
    return X, k


def _all_neighbours(X: np.ndarray, k: int):
    part = _partition(X)
    dist, nbr = _neighbours(part, part, k)
    out_d = np.empty_like(dist)
    out_i = np.empty_like(nbr)
    out_d[part.perm] = dist
    out_i[part.perm] = nbr
    return out_d, out_i


def _dask_neighbours(X, k: int):
    """Per row block: delayed (dist, ids) against the whole set, and the block sizes."""
    import dask

    X = X.rechunk({1: -1})
    data = dask.delayed(_partition, pure=True)(X.rechunk({0: -1}))
    blocks = X.to_delayed().ravel()
    sizes = X.chunks[0]
    offsets = np.cumsum((0,) + sizes[:-1])
    parts = [dask.delayed(_block_neighbours, pure=True, nout=2)(data, b, int(o), k)
             for b, o in zip(blocks, offsets)]
    return parts, sizes


def knn_outliers(X, k: int):
    """Distance of each point to its k-th nearest other point (exact, Euclidean).

    Parameters
    ----------
    X : 2-D array (n, d), NumPy or Dask (row blocks are queried against the whole set)
    k : int in [1, n - 1]

    Returns
    -------
    numpy.ndarray or dask.array.Array of shape (n,)
        Equal to ``NearestNeighbors(n_neighbors=k).fit(X).kneighbors()[0][:, -1]``.

    Examples
    --------
    >>> import numpy as np
    >>> knn_outliers(np.array([[0.0], [1.0], [3.0], [10.0]]), 1)
    array([1., 1., 2., 7.])
    """
    X, k = _validate(X, k, "knn_outliers")
    if not is_dask(X):
        dist, _ = _all_neighbours(X, k)
        return np.ascontiguousarray(dist[:, k - 1])
    import dask
    import dask.array as da

    parts, sizes = _dask_neighbours(X, k)
    cols = [da.from_delayed(dask.delayed(_kth, pure=True)(p[0]), (s,), dtype=np.float64)
            for p, s in zip(parts, sizes)]
    return da.concatenate(cols)


def _kth(dist):
    return np.ascontiguousarray(dist[:, -1])


def lof(X, k: int):
    """Local outlier factor of each point (about 1 for inliers, larger for outliers), exact.

    Parameters
    ----------
    X : 2-D array (n, d), NumPy or Dask
    k : int in [1, n - 1]
        Number of neighbours (``n_neighbors``).

    Returns
    -------
    numpy.ndarray or dask.array.Array of shape (n,)
        Equal to ``-LocalOutlierFactor(n_neighbors=k).fit(X).negative_outlier_factor_``.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0.0], [0.1], [0.2], [0.3], [5.0]])
    >>> bool(lof(X, 2)[-1] > 10)
    True
    """
    X, k = _validate(X, k, "lof")
    if not is_dask(X):
        dist, nbr = _all_neighbours(X, k)
        lrd = _lrd(dist, nbr, np.ascontiguousarray(dist[:, k - 1]))
        return _lof(nbr, lrd, lrd)
    import dask
    import dask.array as da

    parts, sizes = _dask_neighbours(X, k)
    kd = [da.from_delayed(dask.delayed(_kth, pure=True)(p[0]), (s,), dtype=np.float64)
          for p, s in zip(parts, sizes)]
    kdist = da.concatenate(kd).rechunk(-1).to_delayed().ravel()[0]
    lrds = [dask.delayed(_lrd, pure=True)(p[0], p[1], kdist) for p in parts]
    lrd_all = da.concatenate([da.from_delayed(v, (s,), dtype=np.float64)
                              for v, s in zip(lrds, sizes)]).rechunk(-1)
    lrd_all = lrd_all.to_delayed().ravel()[0]
    out = [da.from_delayed(dask.delayed(_lof, pure=True)(p[1], v, lrd_all), (s,),
                           dtype=np.float64) for p, v, s in zip(parts, lrds, sizes)]
    return da.concatenate(out)
