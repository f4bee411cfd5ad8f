"""``knn_outliers`` (distance to the k-th nearest other point) and ``lof`` (local outlier factor).

Both are exact. The whole set is indexed by a kd tree (median splits along the widest
coordinate, all leaves at one depth, at most ``_LEAF`` points each, nodes in heap order with their
split planes and bounding boxes). Each query walks it depth first, nearer child first; the
distance to a node's cell is updated in O(1) per step down (only the split coordinate changes,
Arya and Mount's incremental distance) and the step is branch free, so a query pays little for
the inner nodes. A farther child beyond the query's current k-th distance is never visited, a
leaf whose bounding box is beyond it is skipped, and the others' points are first filtered on
float32 distances from a copy of the leaf centred on its box (twice the SIMD lanes of float64
across points, half the bytes; the filter's threshold allows for its rounding, so every point
whose float64 distance is below the k-th passes). Only the points that pass get their float64
distance (sum of squared differences in coordinate order, as scikit-learn's trees do; from the
points' rows, prefetched together), and that alone decides: the neighbours and distances are
those of the float64 distances (a leaf whose coordinates float32 cannot hold takes the float64
distances of all its points). Leaves are
large (``_LEAF``): a query's time goes mostly into walking the tree and testing leaves, not into
the distances, so fewer, larger leaves cost less (``hpcjobs bench lof``). Queries come in tree
order (neighbouring queries walk the same nodes: cache). The tree's median splits are
selections (linear time per level), not sorts.
Queries are spread over the task's Numba threads (``task_threads()``), which claim runs of
consecutive queries from a shared counter (dynamic scheduling).

Distributed (Dask ``X``), each row block of ``X`` is a task that queries the whole set (whose
tree is built once, in one task, and shared): the k nearest neighbours of a block need every point.
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

from hpcjobs.kernels._jit import fetch_add, njit, prefetch_row, task_threads
from hpcjobs.kernels._validation import (
    InvalidInput,
    all_finite,
    check_array,
    check_int,
    is_dask,
    message,
)
from hpcjobs.kernels.mining.params import KNN_OUTLIERS, LOF

_LEAF = 128
#: rows a thread claims at a time (about 5 ms of queries at 1e5 x 8, k=20)
_RUN = 256


@dataclass(frozen=True)
class _Tree:
    """A kd tree in heap order (node ``i`` has children ``2i + 1``, ``2i + 2``; all leaves at
    depth ``depth``). Node ``i`` holds the points ``start[i]:stop[i]`` in leaf order, ids
    ``ids[...]`` and the bounding box ``lo[i]``, ``hi[i]``; an inner node's left child holds
    its points with coordinate ``split_dim[i]`` <= ``split_val[i]``, its right child those >=
    it. ``rows[r]`` is the point at position ``r`` in leaf order (float64, one cache line per
    point at d = 8: what a float64 distance reads). ``blocks32[leaf, j, c]`` is coordinate
    ``j`` of the leaf's ``c``-th point in float32, relative to the leaf's ``centre`` (float64):
    each leaf's points in one contiguous block, coordinates in rows, for the float32 filter
    (points side by side in SIMD lanes; indexed, no array view made for them);
    ``reach[leaf, j]`` is the largest ``|blocks32[leaf, j, :]|``."""

    rows: np.ndarray
    blocks32: np.ndarray
    centre: np.ndarray
    reach: np.ndarray
    ids: np.ndarray
    start: np.ndarray
    stop: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    split_dim: np.ndarray
    split_val: np.ndarray
    depth: int


# ---------------------------------------------------------------------------------------------
# chunk level


@njit
def _select(keys, perm, a, b, mid):
    """Reorders ``keys[a:b]``, and ``perm`` alongside, so that ``keys[mid]`` is the value it
    would have sorted, none before it larger and none after it smaller (Hoare's selection
    with a median-of-three pivot: linear time, where a sort of every node would cost a
    factor log n more; equal keys are spread to both sides)."""
    lo, hi = a, b - 1
    while lo < hi:
        x, y, z = keys[lo], keys[lo + (hi - lo) // 2], keys[hi]
        pivot = max(min(x, y), min(max(x, y), z))
        i, j = lo, hi
        while i <= j:
            while keys[i] < pivot:
                i += 1
            while keys[j] > pivot:
                j -= 1
            if i <= j:
                keys[i], keys[j] = keys[j], keys[i]
                perm[i], perm[j] = perm[j], perm[i]
                i += 1
                j -= 1
        if mid <= j:
            hi = j
        elif mid >= i:
            lo = i
        else:
            return


@njit
def _build(X, depth):
    """Median splits along the widest coordinate down to ``depth``; returns the tree arrays."""
    n, d = X.shape
    n_nodes = 2 ** (depth + 1) - 1
    perm = np.arange(n)
    start = np.empty(n_nodes, dtype=np.int64)
    stop = np.empty(n_nodes, dtype=np.int64)
    lo = np.empty((n_nodes, d))
    hi = np.empty((n_nodes, d))
    split_dim = np.zeros(n_nodes, dtype=np.int64)
    split_val = np.zeros(n_nodes)
    start[0] = 0
    stop[0] = n
    keys = np.empty(n)
    for node in range(n_nodes):
        a, b = start[node], stop[node]
        for j in range(d):
            lo[node, j] = np.inf
            hi[node, j] = -np.inf
        for r in range(a, b):
            for j in range(d):
                x = X[perm[r], j]
                lo[node, j] = min(lo[node, j], x)
                hi[node, j] = max(hi[node, j], x)
        left = 2 * node + 1
        if left >= n_nodes:
            continue
        best = 0
        for j in range(1, d):
            if hi[node, j] - lo[node, j] > hi[node, best] - lo[node, best]:
                best = j
        mid = a + (b - a) // 2
        if b - a > 1:
            for r in range(a, b):
                keys[r] = X[perm[r], best]
            _select(keys, perm, a, b, mid)
        split_dim[node] = best
        split_val[node] = X[perm[mid], best] if mid < b else hi[node, best]
        start[left], stop[left] = a, mid
        start[left + 1], stop[left + 1] = mid, b
    first_leaf = 2 ** depth - 1
    cap = 1
    for node in range(first_leaf, n_nodes):
        cap = max(cap, stop[node] - start[node])
    n_leaves = n_nodes - first_leaf
    rows = np.empty((n, d))
    for r in range(n):
        for j in range(d):
            rows[r, j] = X[perm[r], j]
    blocks32 = np.zeros((n_leaves, d, cap), dtype=np.float32)
    centre = np.zeros((n_leaves, d))
    reach = np.zeros((n_leaves, d))
    for node in range(first_leaf, n_nodes):
        leaf = node - first_leaf
        for j in range(d):
            centre[leaf, j] = lo[node, j] + 0.5 * (hi[node, j] - lo[node, j])
        for c in range(stop[node] - start[node]):
            for j in range(d):
                x = rows[start[node] + c, j]
                x32 = np.float32(x - centre[leaf, j])
                blocks32[leaf, j, c] = x32
                reach[leaf, j] = max(reach[leaf, j], abs(np.float64(x32)))
    return rows, blocks32, centre, reach, perm, start, stop, lo, hi, split_dim, split_val


@njit(inline="always")
def _box_gap(q, lo, hi, node):
    s = 0.0
    for j in range(q.shape[0]):
        gap = max(lo[node, j] - q[j], q[j] - hi[node, j], 0.0)
        s += gap * gap
    return s


@njit(inline="always")
def _add4(q, blocks, leaf, j, n, buf, first):
    """Adds coordinates ``j:j + 4`` of the squared distances from ``q`` to the leaf's ``n``
    points to ``buf`` (sets it when ``first``). One pass over the points with the four
    coordinates unrolled: the loop runs in SIMD lanes across points (Numba's loop vectorizer;
    its SLP vectorizer, which would pack a loop over coordinates, is off), and each point's sum
    still adds its coordinates in order. Four, not eight: eight coordinates' broadcasts and
    differences overflow the 16 vector registers. Indexed, not sliced: a view would take and
    drop a reference (an atomic add on a counter every thread shares) for each row."""
    q0, q1, q2, q3 = q[j], q[j + 1], q[j + 2], q[j + 3]
    if first:  # two loops: a branch inside would keep the loop from being vectorized
        for c in range(n):
            e0, e1 = q0 - blocks[leaf, j, c], q1 - blocks[leaf, j + 1, c]
            e2, e3 = q2 - blocks[leaf, j + 2, c], q3 - blocks[leaf, j + 3, c]
            buf[c] = e0 * e0 + e1 * e1 + e2 * e2 + e3 * e3
    else:
        for c in range(n):
            e0, e1 = q0 - blocks[leaf, j, c], q1 - blocks[leaf, j + 1, c]
            e2, e3 = q2 - blocks[leaf, j + 2, c], q3 - blocks[leaf, j + 3, c]
            buf[c] = buf[c] + e0 * e0 + e1 * e1 + e2 * e2 + e3 * e3


@njit(inline="always")
def _add1(q, blocks, leaf, j, n, buf, first):
    """Adds coordinate ``j`` of the squared distances to ``buf`` (as :func:`_add4`)."""
    qj = q[j]
    if first:
        for c in range(n):
            e = qj - blocks[leaf, j, c]
            buf[c] = e * e
    else:
        for c in range(n):
            e = qj - blocks[leaf, j, c]
            buf[c] = buf[c] + e * e


@njit(inline="always")
def _any_below(buf, n, kth):
    """Whether one of ``buf[:n]`` is below ``kth``: a count in SIMD lanes (an integer sum,
    vectorized), cheaper than a loop that stops at the first."""
    nearer = 0
    for c in range(n):
        nearer += np.int64(buf[c] < kth)
    return nearer > 0


@njit(inline="always")
def _leaf_distances(q, blocks, leaf, n, buf, kth):
    """Squared distances from ``q`` to the leaf's ``n`` points into ``buf`` (the float32
    filter's, from the leaf's centred copy: :func:`_cut` bounds their rounding), summed over
    coordinates in coordinate order, four coordinates a pass; whether one is below ``kth``.
    Stops (False) after a pass that leaves none of the partial sums below ``kth``: adding
    squares never lowers a sum, rounded or not, and most leaves near enough to compute hold
    no point nearer than the k-th."""
    d = q.shape[0]
    j = 0
    while j + 4 <= d:
        _add4(q, blocks, leaf, j, n, buf, j == 0)
        j += 4
        if j < d and not _any_below(buf, n, kth):
            return False
    while j < d:
        _add1(q, blocks, leaf, j, n, buf, j == 0)
        j += 1
    return _any_below(buf, n, kth)


#: a leaf's float32 filter is used while ``sum_j (|q_j - centre_j| + reach_j)^2`` stays below
#: this: no float32 square or sum can overflow (beyond it, the leaf's float64 distances)
_SPREAD_MAX = 1e30
_U32 = float(np.finfo(np.float32).eps) / 2
_U64 = float(np.finfo(np.float64).eps) / 2
_TINY32 = float(np.finfo(np.float32).tiny)


@njit(inline="always")
def _centred(q, centre, reach, leaf, q32):
    """``q`` relative to the leaf's centre, in float32, into ``q32``; returns the spread
    ``sum_j (|q32_j| + reach_j)^2`` that bounds the float32 distances' error (:func:`_cut`)."""
    t = 0.0
    for j in range(q.shape[0]):
        v = np.float32(q[j] - centre[leaf, j])
        q32[j] = v
        a = abs(np.float64(v)) + reach[leaf, j]
        t += a * a
    return t


@njit(inline="always")
def _cut(kth, spread, d):
    """The float32 threshold that every point of the leaf whose float64 distance is below
    ``kth`` passes, rounding included.

    With ``a = q - centre`` and ``b = p - centre`` each rounded to float32 (relative error
    below ``1.2 u32``), their difference is within ``2.2 u32 (|q32_j| + reach_j)`` of
    ``q_j - p_j``, so the float32 sum of squares is within ``(4.5 + 1.01 (d + 1)) u32
    spread`` (the squares' error, then the sum's) of the exact distance, which is within
    ``gamma_{d+1}`` (float64) of the float64 one; twice those, plus the underflow of ``d``
    squares, and the float32 rounding of the threshold itself outward.
    """
    cut = (kth * (1.0 + 4.0 * (d + 2) * _U64) + 2.0 * (4.5 + 1.01 * (d + 1)) * _U32 * spread
           + 4.0 * (d + 2) * _TINY32)
    return np.float32(cut * (1.0 + 4.0 * _U32))


@njit(inline="always")
def _exact(q, rows, r):
    """Squared distance from ``q`` to the point at position ``r`` (float64, summed in
    coordinate order, as scikit-learn's trees sum it): the distance that decides."""
    s = 0.0
    for j in range(q.shape[0]):
        e = q[j] - rows[r, j]
        s += e * e
    return s


@njit(inline="always")
def _insert(best_d, best_i, k, dist, pid):
    """Puts ``(dist, pid)`` into the sorted ``k`` nearest so far; returns the new k-th."""
    t = k - 1
    while t > 0 and best_d[t - 1] > dist:
        best_d[t] = best_d[t - 1]
        best_i[t] = best_i[t - 1]
        t -= 1
    best_d[t] = dist
    best_i[t] = pid
    return best_d[k - 1]


@njit(inline="always")
def _query(q, qid, tree, k, best_d, best_i, stack, stack_rd, stack_off, off, q32, buf32,
           hits):
    """k nearest points (squared distance, id) to ``q`` other than id ``qid``, sorted.

    Depth first, nearer child first. The distance from ``q`` to a node's cell (the region its
    ancestors' split planes bound) is kept per coordinate in ``off`` and updated in O(1) per
    step down (Arya and Mount's incremental distance): only the split coordinate changes.
    A farther child whose cell is beyond the current k-th distance is never visited, and a
    leaf whose bounding box is beyond it is skipped before its distances are computed.

    A leaf's points are first filtered on float32 distances from the leaf's centred copy
    (eight SIMD lanes, half the bytes): only the points that pass :func:`_cut` get their
    float64 distance, the one that decides (so the neighbours and distances are those of the
    float64 distances alone).
    """
    (rows, blocks32, centre, reach, ids, start, stop, lo, hi, split_dim, split_val,
     depth) = tree
    d = q.shape[0]
    first_leaf = 2 ** depth - 1
    for t in range(k):
        best_d[t] = np.inf
        best_i[t] = -1
    top = 1
    stack[0] = 0
    stack_rd[0] = 0.0
    for j in range(d):
        stack_off[0, j] = 0.0
    while top > 0:
        top -= 1
        node = stack[top]
        rd = stack_rd[top]
        if rd > best_d[k - 1]:
            continue
        for j in range(d):
            off[j] = stack_off[top, j]
        kth = best_d[k - 1]
        while node < first_leaf:
            # branch free: the farther child is always written, and kept only when near enough
            s = split_dim[node]
            diff = q[s] - split_val[node]
            near = 2 * node + 1 + np.int64(diff >= 0.0)
            far_rd = rd - off[s] * off[s] + diff * diff
            stack[top] = 4 * node + 3 - near
            stack_rd[top] = far_rd
            for j in range(d):
                stack_off[top, j] = off[j]
            stack_off[top, s] = diff
            top += np.int64(far_rd <= kth)
            node = near
        if _box_gap(q, lo, hi, node) > best_d[k - 1]:
            continue
        a, b = start[node], stop[node]
        leaf = node - first_leaf
        kth = best_d[k - 1]
        spread = _centred(q, centre, reach, leaf, q32)
        if spread <= _SPREAD_MAX:
            cut = _cut(kth, spread, d)
            if not _leaf_distances(q32, blocks32, leaf, b - a, buf32, cut):
                continue  # no point can be nearer than the k-th
            # the points that pass, listed without a branch (it would mispredict), their rows
            # asked for at once: their cache misses overlap instead of following each other
            m = 0
            for c in range(b - a):
                hits[m] = a + c
                m += np.int64(buf32[c] < cut)
            for t in range(m):
                prefetch_row(rows, hits[t])
            for t in range(m):
                r = hits[t]
                dist = _exact(q, rows, r)
                if dist < kth and ids[r] != qid:
                    kth = _insert(best_d, best_i, k, dist, ids[r])
            continue
        for c in range(b - a):  # coordinates beyond float32: every float64 distance
            dist = _exact(q, rows, a + c)
            if dist < kth and ids[a + c] != qid:
                kth = _insert(best_d, best_i, k, dist, ids[a + c])


@njit
def _run(Q, q_ids, r0, r1, tree, k, dist, nbr, scratch):
    """The k nearest other points of rows ``r0:r1`` of ``Q`` into ``dist``/``nbr``.

    One call per run of queries, :func:`_query` inlined: a call passes the tree's arrays,
    and every call counts a reference to each of them up and down, atomically, on counters
    all the threads share (each query paying those had cost a few per cent)."""
    stack, stack_rd, stack_off, off, q32, buf32, hits, bd, bi, q = scratch
    for r in range(r0, r1):
        for j in range(Q.shape[1]):
            q[j] = Q[r, j]
        _query(q, q_ids[r], tree, k, bd, bi, stack, stack_rd, stack_off, off, q32, buf32,
               hits)
        for t in range(k):
            dist[r, t] = math.sqrt(bd[t])
            nbr[r, t] = bi[t]


@njit(parallel=True)
def _knn(Q, q_ids, tree, k, n_threads):
    """k nearest other points of every row of ``Q`` (ids ``q_ids``), sorted: (dist, ids).

    Each thread claims runs of ``_RUN`` consecutive rows from a shared counter until none are
    left (dynamic: queries differ in cost, and a thread the OS delays on a shared machine
    would hold a static split up at the end); consecutive rows keep the tree order's cache
    reuse."""
    nq, d = Q.shape
    dist = np.empty((nq, k))
    nbr = np.empty((nq, k), dtype=np.int64)
    n_runs = -(-nq // _RUN)
    n_workers = max(1, min(n_runs, n_threads))
    claimed = np.zeros(1, dtype=np.int64)
    for _ in numba.prange(n_workers):
        depth, cap = tree[-1], tree[1].shape[2]
        scratch = (np.empty(depth + 2, dtype=np.int64), np.empty(depth + 2),
                   np.empty((depth + 2, d)), np.empty(d), np.empty(d, dtype=np.float32),
                   np.empty(cap, dtype=np.float32), np.empty(cap, dtype=np.int64),
                   np.empty(k), np.empty(k, dtype=np.int64), np.empty(d))
        run = fetch_add(claimed, 0, 1)
        while run < n_runs:
            _run(Q, q_ids, run * _RUN, min(nq, (run + 1) * _RUN), tree, k, dist, nbr, scratch)
            run = fetch_add(claimed, 0, 1)
    return dist, nbr


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


def _tree(X: np.ndarray) -> _Tree:
    """The kd tree of the (finite) rows of ``X``."""
    X = np.ascontiguousarray(X, dtype=np.float64)
    depth = 0
    while -(-X.shape[0] // 2 ** depth) > _LEAF:
        depth += 1
    return _Tree(*_build(X, depth), depth)


def _neighbours(tree: _Tree, Q: np.ndarray, q_ids: np.ndarray, k: int):
    """(dist, ids) of the k nearest points of the tree to each row of ``Q``, sorted."""
    arrays = (tree.rows, tree.blocks32, tree.centre, tree.reach, tree.ids, tree.start,
              tree.stop, tree.lo, tree.hi, tree.split_dim, tree.split_val, tree.depth)
    return _knn(Q, q_ids, arrays, k, task_threads())


def _block_neighbours(tree: _Tree, block: np.ndarray, offset: int, k: int):
    """(dist, ids) of the k nearest points of the whole set (``tree``, already checked for
    NaN and inf) to each row of the block that starts at row ``offset``."""
    # query in the block's own kd order: neighbouring queries walk the same nodes (cache)
    own = _tree(block)
    order = own.ids
    dist, nbr = _neighbours(tree, own.rows, order + offset, k)
    out_d = np.empty_like(dist)
    out_i = np.empty_like(nbr)
    out_d[order] = dist
    out_i[order] = nbr
    return out_d, out_i


def _checked_tree(X: np.ndarray, func: str) -> _Tree:
    """The kd tree of the whole of a Dask ``X``, in one task: the one place every value
    passes through, so the one finite check (NumPy input is checked by ``check_array``)."""
    X = np.ascontiguousarray(X, dtype=np.float64)
    if not all_finite(X):
        raise InvalidInput(message("X", func, "finite (no NaN or inf)", X,
                                   "Drop or impute the missing values first."))
    return _tree(X)


def _validate(X, k: int, func: str):
    X = check_array(X, "X", func, ndim=2, min_len=2)
    n = int(X.shape[0])
    k = check_int(k, "k", func, low=1, high=n - 1)
    return X, k


def _all_neighbours(X: np.ndarray, k: int):
    """(dist, ids) of the k nearest other points of every row of the checked ``X``."""
    tree = _tree(X)
    # query in leaf order (neighbouring queries share the tree's cache lines): the tree's rows
    dist, nbr = _neighbours(tree, tree.rows, tree.ids, k)
    out_d = np.empty_like(dist)
    out_i = np.empty_like(nbr)
    out_d[tree.ids] = dist
    out_i[tree.ids] = nbr
    return out_d, out_i


def _dask_neighbours(X, k: int, func: str = "knn_outliers"):
    """Per row block: delayed (dist, ids) against the whole set, and the block sizes."""
    import dask

    X = X.rechunk({1: -1})
    tree = dask.delayed(_checked_tree, pure=True)(X.rechunk({0: -1}), func)
    blocks = X.to_delayed(optimize_graph=False).ravel()
    sizes = X.chunks[0]
    offsets = np.cumsum((0,) + sizes[:-1])
    parts = [dask.delayed(_block_neighbours, pure=True, nout=2)(tree, b, int(o), k)
             for b, o in zip(blocks, offsets, strict=True)]
    return parts, sizes


@KNN_OUTLIERS
def knn_outliers(X, k: int = 5):
    """Distance of each point to its k-th nearest other point (exact, Euclidean).

    Parameters
    ----------
    X : 2-D array (n, d), NumPy or Dask (row blocks are queried against the whole set)
    k : int in [1, n - 1] (default 5)

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
            for p, s in zip(parts, sizes, strict=True)]
    return da.concatenate(cols)


def _kth(dist):
    return np.ascontiguousarray(dist[:, -1])


# Dask tasks call the jitted functions from module-level functions: a jitted function in a
# task is pickled by value, and a worker rebuilds it without Numba's cache (it compiled
# again in every new worker process).


def _block_lrd(dist, ids, kdist):
    return _lrd(dist, ids, kdist)


def _block_lof(ids, lrd_rows, lrd_all):
    return _lof(ids, lrd_rows, lrd_all)


@LOF
def lof(X, k: int = 20):
    """Local outlier factor of each point (about 1 for inliers, larger for outliers), exact.

    Parameters
    ----------
    X : 2-D array (n, d), NumPy or Dask
    k : int in [1, n - 1] (default 20)
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

    parts, sizes = _dask_neighbours(X, k, "lof")
    kd = [da.from_delayed(dask.delayed(_kth, pure=True)(p[0]), (s,), dtype=np.float64)
          for p, s in zip(parts, sizes, strict=True)]
    kdist = da.concatenate(kd).rechunk(-1).to_delayed(optimize_graph=False).ravel()[0]
    lrds = [dask.delayed(_block_lrd, pure=True)(p[0], p[1], kdist) for p in parts]
    lrd_all = da.concatenate([da.from_delayed(v, (s,), dtype=np.float64)
                              for v, s in zip(lrds, sizes, strict=True)]).rechunk(-1)
    lrd_all = lrd_all.to_delayed(optimize_graph=False).ravel()[0]
    out = [da.from_delayed(dask.delayed(_block_lof, pure=True)(p[1], v, lrd_all), (s,),
                           dtype=np.float64) for p, v, s in zip(parts, lrds, sizes, strict=True)]
    return da.concatenate(out)
