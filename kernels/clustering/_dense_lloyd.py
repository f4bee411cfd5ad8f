"""Lloyd's per-chunk step with the distances through a matrix product (BLAS).

The nearest centroid of a row ``x`` is the ``j`` that minimises ``|c_j|^2 - 2 x.c_j``: the
cross terms of a block of rows against all centroids are one matrix product (NumPy's BLAS,
register-blocked and FMA-fed), which does the bulk of the work far faster than the direct
``sum((x - c)**2)`` loops of ``_kmeans._chunks``. What is left per row is O(k + d): the smallest
score, the winner's distance, and the row added to its cluster's sums (one Numba pass over the
block while it is still in cache).

Same labels as the direct distances
-----------------------------------
The expansion loses digits to cancellation, so on its own it could pick another centroid than
the direct distances ``sum((x - c)**2)`` (summed over the features in order, in the data's
dtype) that the rest of k-means uses. Every score carries a rounding error bound
(``e_j = tol * (|x|^2 + |c_j|^2)``, from the classical dot-product bound); a row is settled
by the expansion alone only when no other centroid can beat the winner once both errors are
allowed for. Otherwise the centroids still in the race are compared on their float64
distances ``sum((x - c)**2)``, and where two of those are too close for the direct kernel's
own rounding to be ruled out (true near-ties: a duplicated centroid, a row halfway between
two), on the distances summed exactly as the direct kernel sums them, the smallest winning
(the lowest index on a tie, as there). So the labels are always those of the direct kernel.
On float64 data the recheck is rare; float32 products leave many rows contested on wide
data, which the float64 comparison settles at a fraction of the product's cost.

The inertia and ``d2`` are the winners' float64 distances (summed in another order than the
direct kernel's, so they agree with it to rounding, not bit for bit).

Threads: the chunk's rows are split into one range per thread (``n_threads``, at most one
per block) and each range runs in its own Python thread, calling BLAS single-threaded through
``threadpoolctl`` (NumPy and Numba both release the GIL), so that the threads in use never
exceed ``n_threads``. Without ``threadpoolctl`` one thread runs the chunk and BLAS threads the
products as it is set to (hpcjobs' workers start with one BLAS thread).

API (the per-chunk steps of ``_kmeans._specialised``, same arguments and results, which
call them where :func:`use_dense` says they are the faster choice): :func:`lloyd_dense` for
``assign_accumulate``, :func:`assign_dense` for ``assign_labels``.
"""

from __future__ import annotations

import contextlib
import threading

import numpy as np

from hpcjobs.kernels._jit import in_threads, njit, thread_ranges

#: bytes of rows per matrix product, so that a block and its scores are still in the core's
#: cache for the pass that follows; at least ``_MIN_ROWS`` rows, so that on wide data the
#: product is not too thin for BLAS to run at full speed
_BLOCK_BYTES = 1 << 17
_MIN_ROWS, _MAX_ROWS = 256, 4096

#: from this width on the matrix product wins for any number of clusters; below it, only up
#: to ``_CLUSTERS_PER_FEATURE * n_features`` clusters (see :func:`use_dense`)
_WIDE = 16
_CLUSTERS_PER_FEATURE = 1


def use_dense(n_features: int, n_clusters: int) -> bool:
    """Whether :func:`lloyd_dense`/:func:`assign_dense` beat the direct kernels of
    ``_kmeans._chunks`` on data of this width with this many clusters.

    Measured as whole ``kmeans`` runs from the same centroids, paired and alternating, with
    each step in turn (d from 4 to 784, k from 4 to 16; ``hpcjobs bench kmeans-lloyd`` at
    d=8, k=16 and d=784, k=10 are among them): the matrix product wins from d = 16 on, by
    more the wider the data, and on narrower data while k <= d; with more clusters per
    feature its per-row work (k scores written, then compared) costs more than the
    generated direct kernels' register-held distances. One feature has nothing to multiply.
    """
    if n_features < 2:
        return False
    return n_features >= _WIDE or n_clusters <= _CLUSTERS_PER_FEATURE * n_features


# ---------------------------------------------------------------------------------------------
# per block: Numba


@njit
def direct_distance(X, i, Cr, j):
    """``sum((X[i] - Cr[j])**2)`` in the data's dtype, features in order: the value (and
    rounding) of the direct kernels of ``_kmeans._chunks``."""
    s = Cr[0, 0] - Cr[0, 0]  # a zero of the dtype
    for f in range(X.shape[1]):
        t = X[i, f] - Cr[j, f]
        s += t * t
    return s


@njit(fastmath={"reassoc", "contract"})
def _winner_and_norm(X, i, Cr, m):
    """(squared distance of row ``i`` to centroid ``m``, ``|x|^2``) in float64.

    Summed in any order (vectorised): neither decides a label (the rounding bounds allow
    for it, and contested rows are decided by :func:`direct_distance`), the distance goes into the
    inertia, which agrees with the direct kernels' to rounding.
    """
    e = 0.0
    xn = 0.0
    for f in range(X.shape[1]):
        x = np.float64(X[i, f])
        t = x - Cr[m, f]
        e += t * t
        xn += x * x
    return e, xn


@njit
def _settle_block(X, s, GT, Cr, cn, bounds, best, second, lab, dist, xnorm):
    """Nearest centroid ``lab[r]`` (a float) of rows ``s + r`` (their scores ``x.c_j`` in
    ``GT[:, r]``), its squared distance ``dist[r]`` and ``|x|^2`` in ``xnorm[r]`` (float64),
    for ``r < GT.shape[1]``.

    The expansion's winner stands unless the runner-up's score is within the rounding bounds
    of it (``bounds``: see :class:`_Centroids`); then :func:`_recheck` decides.
    """
    tol, ratio = bounds[0], bounds[1]
    k, m = GT.shape
    for r in range(m):
        best[r] = np.inf
        second[r] = np.inf
        lab[r] = 0.0
    # smallest and second smallest |c_j|^2 - 2 x.c_j, rows across the vector lanes (branch
    # free; the label is carried as a float so that the loop vectorises)
    for j in range(k):
        c = cn[j]
        jf = np.float64(j)
        for r in range(m):
            sc = c - 2.0 * GT[j, r]
            b = best[r]
            lab[r] = jf if sc < b else lab[r]
            second[r] = min(second[r], max(b, sc))
            best[r] = min(b, sc)
    cmax = cn.max()
    near = np.empty(k)
    for r in range(m):
        i = s + r
        w = int(lab[r])
        e, xn = _winner_and_norm(X, i, Cr, w)
        dist[r] = e
        xnorm[r] = xn
        # j can beat w on the direct distances only if (D_j - e_j)(1 - g) <= (D_w + e_w)(1 + g)
        reach = (best[r] + xn + tol * (xn + cn[w])) * ratio
        if second[r] + xn - tol * (xn + cmax) <= reach:
            for j in range(k):
                near[j] = cn[j] - 2.0 * GT[j, r] + xn - tol * (xn + cn[j]) <= reach
            b, e = _recheck(X, i, Cr, near, bounds[2])
            lab[r] = b
            dist[r] = e


@njit
def _recheck(X, i, Cr, near, h):
    """The direct kernels' choice among the centroids ``j`` with ``near[j]``: the smallest
    direct distance, the lowest index on a tie; returns it and its distance (float64).

    First the float64 distances of those centroids (vectorised; within a factor ``1 +- h/2``
    of the direct ones together with them), then :func:`_choose`.
    """
    for j in range(near.shape[0]):
        near[j] = _winner_and_norm(X, i, Cr, j)[0] if near[j] else np.inf
    return _choose(X, i, Cr, near, h)


@njit
def _choose(X, i, Cr, dist, h):
    """The direct kernels' choice for row ``i`` among the centroids whose float64 distances
    ``dist[j]`` are finite (those of :func:`_winner_and_norm`; +inf for the others, which
    cannot win): returns it and its float64 distance.

    A centroid that stays alone within ``h`` of the smallest is the direct kernels' choice
    too. Only true near-ties (duplicated centroids, a row halfway between two) are summed in
    the direct kernels' order, which decides.
    """
    k = dist.shape[0]
    lo = np.inf
    for j in range(k):
        lo = min(lo, dist[j])
    top = lo * (1.0 + h) / (1.0 - h)
    lab = -1
    alone = True
    for j in range(k):
        if dist[j] <= top:
            if lab >= 0:
                alone = False
                break
            lab = j
    if alone:
        return lab, dist[lab]
    bd = Cr[0, 0] - Cr[0, 0]
    lab = -1
    for j in range(k):
        if dist[j] <= top:
            dj = direct_distance(X, i, Cr, j)
            if lab < 0 or dj < bd:
                bd = dj
                lab = j
    return lab, dist[lab]


@njit
def _lloyd_block(X, s, GT, Cr, cn, bounds, best, second, lab, dist, xnorm, sums, counts):
    """Assign the rows of the block at ``s`` and add them to ``sums``/``counts``; return
    their inertia."""
    _settle_block(X, s, GT, Cr, cn, bounds, best, second, lab, dist, xnorm)
    d = X.shape[1]
    inertia = 0.0
    for r in range(GT.shape[1]):
        b = int(lab[r])
        counts[b] += 1
        inertia += dist[r]
        for f in range(d):
            sums[b, f] += X[s + r, f]
    return inertia


@njit
def _assign_block(X, s, GT, Cr, cn, bounds, best, second, lab, dist, xnorm, labels, d2):
    """Labels and squared distances of the rows of the block at ``s``; return their
    inertia."""
    _settle_block(X, s, GT, Cr, cn, bounds, best, second, lab, dist, xnorm)
    inertia = 0.0
    for r in range(GT.shape[1]):
        labels[s + r] = int(lab[r])
        d2[s + r] = dist[r]
        inertia += dist[r]
    return inertia


# ---------------------------------------------------------------------------------------------
# per chunk: row ranges in threads, BLAS single-threaded in each


class _Centroids:
    """The centroids in the layouts the block steps use, and the rounding bounds they
    allow for: ``bounds = (tol, ratio, h)`` (scores, direct distances, float64 distances)."""

    def __init__(self, CT: np.ndarray, k: int, dtype):
        d = CT.shape[0]
        C = np.asarray(CT[:, :k], dtype=dtype)
        self.Cr = np.ascontiguousarray(C.T)  # (k, d): left operand of the product, rows
        C64 = self.Cr.astype(np.float64)
        self.cn = np.einsum("ij,ij->i", C64, C64)
        self.bounds = rounding_bounds(d, dtype)


def rounding_bounds(d: int, dtype) -> np.ndarray:
    """``(tol, ratio, h)`` for rows of ``d`` features in ``dtype``: how far the product's
    scores, the direct distances and the float64 distances may be from the exact ones (see
    :class:`_Centroids`; they depend on ``d`` and the dtype only)."""
    u_prod = np.finfo(dtype).eps / 2  # the product rounds in the data's dtype
    u64 = np.finfo(np.float64).eps / 2
    # |D_j - delta_j| <= (gamma_d(prod) + 2 gamma_d(64) + 4 u64) (|x|^2 + |c_j|^2):
    # the cross term, the two norms and the two additions; twice that, for margin
    tol = 2.0 * (d + 4) * (u_prod + 2.0 * u64)
    # the direct distance in the dtype is within gamma_{d+2} of the exact one
    g = (d + 2) * u_prod
    g = 2.0 * g / (1.0 - g)
    ratio = (1.0 + g) / (1.0 - g)
    # and the float64 one of _winner_and_norm (any order) within gamma_{d+3}(64): a
    # float64 distance and the direct one are within a factor 1 +- (g + g64) of each other
    g64 = 2.0 * (d + 3) * u64
    return np.array([tol, ratio, 2.0 * (g + g64)])


def _block_rows(d: int, itemsize: int) -> int:
    return int(min(_MAX_ROWS, max(_MIN_ROWS, _BLOCK_BYTES // max(1, d * itemsize))))


def _scored_blocks(X: np.ndarray, start: int, stop: int, cen: _Centroids):
    """The row blocks of ``[start, stop)`` with their scores: ``(s, GT, scratch)`` with
    ``GT[j, r] = x_{s+r} . c_j`` and the per-row scratch arrays of the block steps (all
    reused from block to block)."""
    k = cen.Cr.shape[0]
    rows = _block_rows(X.shape[1], X.itemsize)
    buf = np.empty(k * rows, dtype=X.dtype)
    best, second, dist, xnorm = np.empty(rows), np.empty(rows), np.empty(rows), np.empty(rows)
    lab = np.empty(rows)  # labels as floats (see _settle_block)
    for s in range(start, stop, rows):
        m = min(rows, stop - s)
        GT = buf[:k * m].reshape(k, m)
        np.matmul(cen.Cr, X[s:s + m].T, out=GT)
        yield s, GT, (best[:m], second[:m], lab[:m], dist[:m], xnorm[:m])


def _ranges_in_threads(X: np.ndarray, n_threads: int, work):
    """``work(start, stop)`` over contiguous row ranges, one per thread (no more ranges than
    blocks: a small chunk runs in the calling thread alone); the results in order. The
    calling thread takes the first range, threads of a pool kept for the process the others.
    """
    n = X.shape[0]
    blocks = -(-n // _block_rows(X.shape[1], X.itemsize))
    with _one_blas_thread() as limited:
        # without a limit on BLAS's threads, one range: BLAS threads the products alone
        parts = max(1, min(n_threads, blocks)) if limited else 1
        return in_threads(thread_ranges(n, parts), work)


def lloyd_dense(X: np.ndarray, CT: np.ndarray, k: int, n_threads: int):
    """One Lloyd pass over a chunk: ``(sums (k, d) float64, counts (k,) int64, inertia)``.

    ``X`` (n, d) C-contiguous float32/float64; ``CT`` (d, kp) the centroids as columns in
    ``X``'s dtype (padding columns after the first ``k`` are ignored). Same arguments and
    results as ``_kmeans._specialised.assign_accumulate``.
    """
    n, d = X.shape
    cen = _Centroids(CT, k, X.dtype)

    def work(start, stop):
        sums = np.zeros((k, d))
        counts = np.zeros(k, dtype=np.int64)
        inertia = 0.0
        for s, GT, scratch in _scored_blocks(X, start, stop, cen):
            inertia += _lloyd_block(X, s, GT, cen.Cr, cen.cn, cen.bounds, *scratch,
                                    sums, counts)
        return sums, counts, inertia

    return added(_ranges_in_threads(X, n_threads, work))


def added(parts: list) -> tuple:
    """The ranges' results (tuples of arrays and numbers) added up, in range order."""
    total = list(parts[0])
    for part in parts[1:]:
        for q, v in enumerate(part):
            total[q] += v
    return tuple(total)


def assign_dense(X: np.ndarray, CT: np.ndarray, labels: np.ndarray, d2: np.ndarray,
                 n_threads: int) -> float:
    """Nearest centroid of every row into ``labels`` and its squared distance into ``d2``;
    returns their sum. ``CT`` (d, kp) as for :func:`lloyd_dense`, padding columns +inf (as
    ``kmeans._pad`` makes them: they never win and are skipped). Same arguments and result as
    ``_kmeans._specialised.assign_labels``.
    """
    k = int(np.isfinite(CT[0]).sum())
    cen = _Centroids(CT, k, X.dtype)

    def work(start, stop):
        inertia = 0.0
        for s, GT, scratch in _scored_blocks(X, start, stop, cen):
            inertia += _assign_block(X, s, GT, cen.Cr, cen.cn, cen.bounds, *scratch,
                                     labels, d2)
        return inertia

    return float(sum(_ranges_in_threads(X, n_threads, work)))


# ---------------------------------------------------------------------------------------------
# BLAS threads

_blas_lock = threading.Lock()
_blas_users = 0
_blas_limit = None
_controller = None


@contextlib.contextmanager
def _one_blas_thread():
    """BLAS single-threaded while any call of this module runs (the threads are ours);
    yields whether it could be limited.

    Calls that overlap (Dask threads) share one limit, set by the first and lifted by the
    last, so the process's own setting comes back whatever the order they end in. Without
    ``threadpoolctl`` (a dependency of scikit-learn, not of hpcjobs) BLAS keeps its own
    threads, and the callers run the products from one thread.
    """
    global _blas_users, _blas_limit, _controller
    with _blas_lock:
        if _blas_users == 0:
            try:
                if _controller is None:
                    from threadpoolctl import ThreadpoolController

                    _controller = ThreadpoolController()
                _blas_limit = _controller.limit(limits=1, user_api="blas")
            except ImportError:
                _blas_limit = None
        _blas_users += 1
        limited = _blas_limit is not None
    try:
        yield limited
    finally:
        with _blas_lock:
            _blas_users -= 1
            if _blas_users == 0 and _blas_limit is not None:
                _blas_limit.restore_original_limits()
                _blas_limit = None
