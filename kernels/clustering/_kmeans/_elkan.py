"""Lloyd's iterations with Elkan's bounds ("Using the triangle inequality to accelerate
k-means", ICML 2003) for an in-memory NumPy array on which the distances come from the
matrix-product step (:mod:`hpcjobs.kernels.clustering._dense_lloyd`: wide data): the same
labels, iterations and centroids as plain Lloyd, only the rows still in question read.

Every row keeps its label ``a``, an upper bound ``u`` on its distance to its centroid and a
lower bound ``L[j]`` on its distance to *every* centroid ``j`` (n x k float64). When the
centroids move by ``drift``, ``u`` grows by ``drift[a]`` and each ``L[j]`` shrinks by
``drift[j]``. A row is skipped without reading it when every other centroid is out of reach:
``u < m_j`` with ``m_j = max(L[j], d(c_a, c_j) - u)`` (the triangle inequality), first
tried at once for all of them with ``s[a]``, half the distance from ``c_a`` to its nearest
other centroid. Otherwise the row's own distance is computed (``u`` becomes exact), then
only the distances of the centroids still in reach, whose ``L[j]`` they renew.

Hamerly's single lower bound (``_bounded``) fails here for about half the rows in every
iteration (the rows of the groups that several centroids share: nearest and second distance
within ~2 %), and all ``k`` of their distances cost more than the matrix product gives every
row. With one bound per centroid the same rows fail, but only 2-3 of their other
distances are needed (11-17 % of the (row, other centroid) pairs; ``hpcjobs bench
kmeans-lloyd``, d = 784, k = 10), and the rows that fail are read from a float32 copy,
prefetched into the L2 cache two failed rows ahead (a pass first tests the bounds of 64 rows,
then reads those that failed: scattered rows of 3 KB, read 1.6x faster so).

Exactly Lloyd's labels
----------------------
Plain Lloyd's labels are those of the direct distances ``sum((x - c)**2)`` summed in the
data's dtype to the dtype-rounded centroids (the lowest index on a tie). The bounds hold the
true distances to the dtype-rounded centroids: set from computed distances widened by their
rounding error bound (``_bounded.error_bounds``: float64 or float32 distances, vectorised in
any order, within ``g64``/``g32`` relative plus an underflow term) and updated with outward
rounding (``_bounded._UP``/``_DOWN``). A centroid ``j`` is out of reach
only when ``u^2 (1 + g) + 2 a2 < m_j^2 (1 - g)`` (``g``, ``a2``: the direct distance's error
in the dtype): then the direct distance to ``c_a`` is strictly below the one to ``c_j``,
rounding included. A centroid out of reach of ``c_a`` is out of reach of any centroid that
beats ``c_a`` too, so the label is always chosen among those left in reach.

A row whose bounds fail is first tried on float32 copies of the rows and centroids (half
the bytes to read, twice the vector lanes): a copy is at most ``rx`` (row) and ``rc``
(centroid) from the original (``2^-24`` relative a feature, plus the subnormal spacing), so
by the triangle inequality the float32 distance, widened by its rounding error and by
``rx + rc``, bounds the true one. Where those bounds put one centroid in reach strictly ahead
of all the others (the same test), it is the label; otherwise (a near-tie, ~1-2 % of the
rows tried) the row is decided on float64 distances as the matrix-product step decides it
(``_dense_lloyd._choose``: the float64 distances, and the direct in-order sums where those
are too close to tell). Rows too large for float32 (``|x| > 1e37``) have no usable copy
(``rx`` = inf) and are decided on float64.

Passes and sums
---------------
The first iteration is a full pass (:func:`_full_rows`): each row is copied to float32 (its
``rx`` measured), its bounds to every centroid set from the copies, its label chosen as
above, and its values added to the sums in plain Lloyd's order (the same row ranges: the
same sums to the last bit). A centroid ``j`` out of reach of the best one so far by the
triangle inequality is not computed (Elkan's first pass: ``L[j]`` from ``d(c_b, c_j) -
u_b``): for rows whose group is far from the others, 3-4 of 10 distances. This replaced the
matrix-product pass (``_dense_lloyd.lloyd_dense``), whose BLAS product of a thin (k = 10)
matrix ran far from the memory's speed: 20-24 -> 15 ms, d = 784, 2e4 rows, float64.

The later iterations update the cluster sums (float64) with the rows that changed label only
(subtracted from their old cluster, added to their new one); when a bounded pass computed
so many distances that a full pass would have been as cheap (``DENSE_WORK``), the next
iteration is a full pass again (fresh sums and bounds).

The final labels and inertia come from one more bounded pass that computes every row's own
distance in float64 (the inertia needs them all, to float64 rounding) and only the other
distances still in reach.

Empty clusters are filled as plain Lloyd fills them (``_lloyd.relocate_empty``); the rows
moved get their new label and bounds that force their distances to be computed again.

Memory beside ``X``: the bounds (n x k float64, at most the size of ``X``: ``use_elkan``)
and, for float64 data, the float32 copy (half of ``X``). The distances of the passes are
all of the float32 copies or the float64 rows: no matrix product, no BLAS.
"""

from __future__ import annotations

import math

import numpy as np

from hpcjobs.kernels._jit import in_threads, njit, prefetch_item, task_threads, thread_ranges
from hpcjobs.kernels._validation import all_finite, nonfinite_input
from hpcjobs.kernels._workspace import workspace
from hpcjobs.kernels.clustering._dense_lloyd import (
    _choose,
    _winner_and_norm,
    added,
    rounding_bounds,
)
from hpcjobs.kernels.clustering._kmeans._bounded import (
    _DOWN,
    _UP,
    _geometry,
    error_bounds,
    lower_distance,
    upper_distance,
)
from hpcjobs.kernels.clustering._kmeans._chunks import pad

#: the narrowest data the bounds pay on: the narrower the rows, the cheaper the plain
#: (matrix-product) pass and the more the per-row cost of the bounds weighs (paired runs of
#: ``kmeans``, 20 iterations from the same centroids on ``hpcjobs bench kmeans-lloyd``'s
#: data, when the first pass was still the product: 0.65x the plain time at d = 784,
#: 0.6-0.75x at d = 96-256 (k = 10-128), 1.0x at d = 64, 1.25-1.6x at d = 16-32; the full
#: float32 first pass since: the same or faster at d = 96-784, k = 10-128, also on data
#: without groups)
MIN_FEATURES = 96


def use_elkan(X, k: int) -> bool:
    """Whether Lloyd's iterations on the in-memory ``X`` run bounded here: where the plain
    pass is the matrix-product step (``_specialised._dense``) on data wide enough
    (``MIN_FEATURES``), and the bounds, one float64 per row and centroid, take no more
    memory than the data (``k * 8 <= d * itemsize``)."""
    from hpcjobs.kernels.clustering._kmeans._specialised import _dense

    d = X.shape[1]
    return d >= MIN_FEATURES and _dense(X, k) and k * 8 <= d * X.dtype.itemsize


@njit
def _out_of_reach(u, m, g, a2):
    """Whether a centroid at least ``m`` away loses to one at most ``u`` away on the direct
    distances (rounding included)."""
    m = max(m, 0.0)
    return u * u * (1.0 + g) + 2.0 * a2 < m * m * (1.0 - g)


#: the float32 copy of a row is within ``2^-24 |x|`` of it, plus ``2^-150`` a feature where
#: it is subnormal; rows with ``|x|`` beyond ``_F32_MAX`` have no copy (it could overflow)
_F32_ULP, _F32_TINY, _F32_MAX = 2.0 ** -24, 2.0 ** -150, 1e37


@njit(fastmath={"reassoc", "contract"})
def _distance32(X32, i, C32, j):
    """``sum((x - c)**2)`` of float32 row ``i`` and centroid ``j``, in float32, any order
    (vectorised: twice the lanes of float64, and the centroids' rows fit the L1 cache)."""
    e = np.float32(0.0)
    for f in range(X32.shape[1]):
        t = X32[i, f] - C32[j, f]
        e += t * t
    return e


@njit
def _bounds32(X32, i, C32, j, rx, rc, g32, a32):
    """(lower, upper) bound on the true distance of row ``i`` of ``X`` to centroid ``j``
    from the float32 copies: their computed distance widened by its rounding error and by
    how far the copies are from the originals (``rx``, ``rc[j]``: the triangle inequality)."""
    e = np.float64(_distance32(X32, i, C32, j))
    if e == np.inf:  # overflowed: no bound from the copies
        return 0.0, np.inf
    hi = (upper_distance(e, g32, a32) + rx + rc[j]) * _UP
    lo = (lower_distance(e, g32, a32) - rx - rc[j]) * _DOWN
    return max(lo, 0.0), hi


@njit
def _in_reach(i, a, ui, L, dcc, g, a2):
    """Whether any centroid other than ``a`` may still be nearer to row ``i`` than ``a``."""
    for j in range(dcc.shape[0]):
        if j != a and not _out_of_reach(ui, max(L[i, j], dcc[a, j] - ui), g, a2):
            return True
    return False


@njit
def _move(X, i, a, w, labels, sums, counts):
    """Row ``i`` from cluster ``a`` to ``w``: its label, the sums and counts."""
    labels[i] = w
    counts[w] += 1
    counts[a] -= 1
    for f in range(X.shape[1]):
        sums[w, f] += X[i, f]
        sums[a, f] -= X[i, f]


@njit
def _row32(X, X32, i, C32, rx, rc, dcc, labels, u, L, errs, hi, cand, sums, counts):
    """Row ``i``, its bounds failed, from its float32 copy: its own distance bounds, those
    of the centroids still in reach, and its label where one of them is nearer than all the
    others beyond rounding. Returns (settled, distances computed); a row not settled (a
    near-tie) is left to :func:`_row` (its bounds stay valid)."""
    g, a2, g32, a32 = errs[0], errs[1], errs[5], errs[6]
    a = labels[i]
    lo, ua = _bounds32(X32, i, C32, a, rx[i], rc, g32, a32)
    L[i, a] = lo
    u[i] = ua
    nc = 0
    w = a
    for j in range(dcc.shape[0]):
        if j != a and not _out_of_reach(ua, max(L[i, j], dcc[a, j] - ua), g, a2):
            L[i, j], hi[j] = _bounds32(X32, i, C32, j, rx[i], rc, g32, a32)
            cand[nc] = j
            nc += 1
            w = j if hi[j] < (ua if w == a else hi[w]) else w
    if nc == 0:
        return True, 1
    uw = ua if w == a else hi[w]
    if w != a and not _out_of_reach(uw, L[i, a], g, a2):
        return False, nc + 1
    for q in range(nc):
        if cand[q] != w and not _out_of_reach(uw, L[i, cand[q]], g, a2):
            return False, nc + 1
    if w != a:
        _move(X, i, a, w, labels, sums, counts)
        u[i] = uw
    return True, nc + 1


@njit
def _row(X, i, Cr, dcc, labels, u, L, errs, dist, sums, counts):
    """Row ``i``, its bounds failed, on float64 distances: its own distance, the distances
    of the centroids still in reach, its label (the direct kernels' choice, near-ties
    included) and fresh bounds; returns (its distance, the number of distances computed)."""
    g, a2, g64, a64, h = errs[0], errs[1], errs[2], errs[3], errs[4]
    k = Cr.shape[0]
    a = labels[i]
    e = _winner_and_norm(X, i, Cr, a)[0]
    ui = upper_distance(e, g64, a64)
    L[i, a] = lower_distance(e, g64, a64)
    near = 0
    for j in range(k):
        dist[j] = np.inf
        if j != a and not _out_of_reach(ui, max(L[i, j], dcc[a, j] - ui), g, a2):
            dist[j] = _winner_and_norm(X, i, Cr, j)[0]
            L[i, j] = lower_distance(dist[j], g64, a64)
            near += 1
    if near:
        dist[a] = e
        w, e = _choose(X, i, Cr, dist, h)
        if w != a:
            ui = upper_distance(e, g64, a64)
            _move(X, i, a, w, labels, sums, counts)
    u[i] = ui
    return e, near + 1


@njit(fastmath={"reassoc", "contract"})
def _copy_with_norm(X, i, X32):
    """Row ``i`` of ``X`` rounded to float32 into row ``i`` of ``X32``; returns ``|x|^2``
    (float64, summed in any order: its rounding bound allows for that)."""
    xn = 0.0
    for f in range(X.shape[1]):
        x = X[i, f]
        xn += x * x
        X32[i, f] = np.float32(x)
    return xn


@njit
def _full_rows(X, X32, rx, Cr, C32, rc, dcc, labels, u, L, start, stop, errs, copy, sums,
               counts):
    """Every row of ``[start, stop)`` from scratch: its float32 copy first (with ``copy``),
    bounds on its distance to every centroid from the copies, its label (on float64
    distances where the float32 ones leave a near-tie, as :func:`_row` decides), and its
    values added to ``sums``/``counts`` in order (plain Lloyd's pass adds them so: the same
    sums to the bit). Returns how many rows' squared norms were NaN or inf (with ``copy``:
    a NaN or inf in the row, or a norm beyond float64; rows with a NaN are skipped)."""
    g, a2, g64, a64, g32, a32 = errs[0], errs[1], errs[2], errs[3], errs[5], errs[6]
    k, d = Cr.shape
    dist = np.empty(k)
    hi = np.empty(k)
    moved = np.zeros((k, d))  # (_row's moves: not wanted here, the sums are added below)
    moves = np.zeros(k, dtype=np.int64)
    odd = 0
    for i in range(start, stop):
        if copy:
            xn = _copy_with_norm(X, i, X32)
            if not xn < np.inf:
                odd += 1
                if xn != xn:
                    continue
            x = upper_distance(xn, g64, a64)
            rx[i] = (x * _F32_ULP + math.sqrt(d) * _F32_TINY) * _UP if x < _F32_MAX else np.inf
        settled = False
        w = labels[i]  # (the last label, or 0: the first centroid tried)
        if rx[i] < np.inf:
            L[i, w], hi[w] = _bounds32(X32, i, C32, w, rx[i], rc, g32, a32)
            for j in range(k):
                if j == w:
                    continue
                # a centroid far from the best so far is out of reach (Elkan's first pass):
                # its lower bound from theirs, its distance not computed
                far = dcc[w, j] - hi[w]
                if _out_of_reach(hi[w], far, g, a2):
                    L[i, j] = max(far * _DOWN, 0.0)
                    hi[j] = np.inf
                    continue
                L[i, j], hi[j] = _bounds32(X32, i, C32, j, rx[i], rc, g32, a32)
                w = j if hi[j] < hi[w] else w
            settled = True
            for j in range(k):
                if j != w and not _out_of_reach(hi[w], L[i, j], g, a2):
                    settled = False
                    break
            u[i] = hi[w]
        else:
            u[i] = np.inf
            for j in range(k):
                L[i, j] = 0.0
        labels[i] = w
        if not settled:
            _row(X, i, Cr, dcc, labels, u, L, errs, dist, moved, moves)
            w = labels[i]
        counts[w] += 1
        for f in range(d):
            sums[w, f] += X[i, f]
    return odd


#: the rows whose bounds are tested before those of them that failed are read (their
#: indices fill a small buffer), and how many failed rows ahead of the one being read are
#: prefetched
_BATCH, _AHEAD = 64, 2


@njit
def _prefetch_rows(X32, failed, q, m):
    """The float32 rows ``failed[q:q + _AHEAD]`` (of ``m``) to the L2 cache. Failed rows are
    scattered (~half of them, on ``hpcjobs bench kmeans-lloyd``), and a row is read whole:
    waiting for them was most of a pass."""
    d = X32.shape[1]
    for r in range(q, min(q + _AHEAD, m)):
        for f in range(0, d, 16):
            prefetch_item(X32, failed[r], f)
        prefetch_item(X32, failed[r], d - 1)


@njit
def _rows(X, X32, rx, Cr, C32, rc, dcc, s, drift, labels, u, L, start, stop, errs, final,
          sums, counts):
    """One bounded pass over rows ``[start, stop)`` (see :func:`elkan_pass`): returns
    (the inertia of the rows whose float64 distance was computed, the distances computed).
    The bounds of ``_BATCH`` rows are tested first, then the rows that failed are read, in
    order, each prefetched ``_AHEAD`` failed rows before."""
    g, a2 = errs[0], errs[1]
    k = Cr.shape[0]
    dist = np.empty(k)
    hi = np.empty(k)
    cand = np.empty(k, dtype=np.int64)
    failed = np.empty(_BATCH, dtype=np.int64)
    inertia = 0.0
    work = 0
    for b in range(start, stop, _BATCH):
        m = 0
        for i in range(b, min(b + _BATCH, stop)):
            a = labels[i]
            ui = (u[i] + drift[a]) * _UP
            u[i] = ui
            for j in range(k):
                L[i, j] = max((L[i, j] - drift[j]) * _DOWN, 0.0)
            if final or not (_out_of_reach(ui, 2.0 * s[a] - ui, g, a2)
                             or not _in_reach(i, a, ui, L, dcc, g, a2)):
                failed[m] = i
                m += 1
        if not final:  # (the final pass reads every row, in order)
            _prefetch_rows(X32, failed, 0, m)
        for q in range(m):
            i = failed[q]
            if not final:
                _prefetch_rows(X32, failed, q + _AHEAD, min(q + _AHEAD + 1, m))
                if rx[i] < np.inf:  # the row has a float32 copy
                    settled, w = _row32(X, X32, i, C32, rx, rc, dcc, labels, u, L, errs, hi,
                                        cand, sums, counts)
                    work += w
                    if settled:
                        continue
            e, w = _row(X, i, Cr, dcc, labels, u, L, errs, dist, sums, counts)
            inertia += e
            work += w
    return inertia, work


def elkan_pass(X, X32, rx, Cr, C32, rc, dcc, s, drift, labels, u, L, errs, final,
               n_threads):
    """One bounded pass over ``X`` (C-contiguous) for the centroids ``Cr`` (k, d), rows in
    the dtype of ``X``, after they moved by ``drift`` (k,) since the bounds ``u``/``L`` were
    last updated (``dcc``: lower bounds on the distances between the centroids; ``s``: half
    the distance of each to its nearest other one; ``errs``: ``g, a2, g64, a64, h, g32,
    a32``). The rows whose bounds fail are first tried on float32 copies (``X32``, ``C32``,
    at most ``rx[i]``/``rc[j]`` away from ``X``/``Cr``). Updates ``labels``, ``u`` and
    ``L``; returns the changes of the cluster sums and counts (the rows that changed label,
    moved), the inertia and the number of distances computed (with ``final``, every row is
    decided on float64 distances, its own always computed: the inertia is then the total).

    The row ranges run in the kernels' thread pool (``_jit.in_threads``; the
    kernels release the GIL), not in Numba's threads: on a busy machine OpenMP's spinning
    threads held each pass up by tens of ms (``hpcjobs bench kmeans-lloyd``).
    """
    k, d = Cr.shape

    def work(start, stop):
        sums = np.zeros((k, d))
        counts = np.zeros(k, dtype=np.int64)
        inertia, done = _rows(X, X32, rx, Cr, C32, rc, dcc, s, drift, labels, u, L, start,
                              stop, errs, final, sums, counts)
        return sums, counts, inertia, done

    return added(in_threads(thread_ranges(X.shape[0], n_threads), work))


#: a bounded pass that computed more than this fraction of all the ``n * k`` distances (the
#: own ones included) is followed by a full pass, which renews every bound
#: (``hpcjobs bench kmeans-lloyd``: ~25 % of the distances in the first bounded pass,
#: ~15 % later; a bounded pass then costs a quarter of a full pass)
DENSE_WORK = 0.5


@njit
def _away(A, B, g64, a64):
    """Upper bounds on the distances between the rows of ``A`` and ``B`` (in float64;
    ``g64``, ``a64``: the error bounds of a float64 distance)."""
    out = np.empty(A.shape[0])
    for r in range(A.shape[0]):
        e = 0.0
        for f in range(A.shape[1]):
            t = np.float64(A[r, f]) - np.float64(B[r, f])
            e += t * t
        out[r] = upper_distance(e, g64, a64)
    return out


class _State:
    """Labels and bounds of every row, the float32 copy of the rows, the centroids the
    bounds refer to and the error bounds."""

    def __init__(self, X: np.ndarray, k: int, X32: np.ndarray | None = None):
        n, d = X.shape
        self.X, self.k = X, k
        self.labels = np.zeros(n, dtype=np.int32)
        self.u = np.empty(n)
        self.L = np.empty((n, k))
        if X.dtype == np.float32:
            self.X32, self.rx = X, np.zeros(n)
        else:  # filled by the first full pass
            if X32 is None:
                X32 = np.empty((n, d), dtype=np.float32)
            self.X32, self.rx = X32, np.empty(n)
        g, a2 = error_bounds(d, X.dtype)
        g64, a64 = error_bounds(d, np.float64)
        g32, a32 = error_bounds(d, np.float32)
        h = rounding_bounds(d, X.dtype)[2]
        self.errs = np.array([g, a2, g64, a64, h, g32, a32])
        self.Cd = None
        self.copied = False

    def full_pass(self, CT, nt):
        """Every row's label, bounds and (the first time, for float64 data) float32 copy from
        scratch: plain Lloyd's pass's sums and counts, to the bit."""
        from hpcjobs.kernels.clustering._dense_lloyd import _ranges_in_threads

        Cr, C32, rc, dcc, _s, _drift = self._centroids(CT)
        X, k, d = self.X, self.k, self.X.shape[1]
        copy = self.X32 is not X and not self.copied

        def work(start, stop):
            sums = np.zeros((k, d))
            counts = np.zeros(k, dtype=np.int64)
            odd = _full_rows(X, self.X32, self.rx, Cr, C32, rc, dcc, self.labels, self.u,
                             self.L, start, stop, self.errs, copy, sums, counts)
            return sums, counts, odd

        sums, counts, odd = added(_ranges_in_threads(X, nt, work))
        # the first pass over float64 data checks it for NaN/inf (kmeans.fit_kmeans did not
        # check up front: _first_pass_checks): a norm not finite, then the exact check
        if odd and not all_finite(X):
            raise nonfinite_input(X, "X", "kmeans")
        self.copied = True
        return sums, counts

    def _centroids(self, CT):
        """The centroids ``CT`` as the passes take them: rows in the data's dtype and in
        float32 (with ``rc``, how far those are from them), their distances' lower bounds,
        half the distance of each to its nearest other one and how far each moved since the
        bounds were last updated (the bounds refer to them from now on)."""
        s, drift, _far, Cd, dcc = _geometry(CT, self.k, self.Cd)
        self.Cd = Cd
        Cr = Cd if self.X.dtype == np.float64 else np.ascontiguousarray(CT[:, :self.k].T)
        with np.errstate(over="ignore"):  # centroids too large: rc[j] = inf
            C32 = Cr.astype(np.float32)
        return Cr, C32, _away(C32, Cr, self.errs[2], self.errs[3]), dcc, s, drift

    def bounded_pass(self, CT, nt, final=False):
        """A bounded pass for the centroids ``CT``: (sum and count changes, inertia, distances
        computed)."""
        Cr, C32, rc, dcc, s, drift = self._centroids(CT)
        return elkan_pass(self.X, self.X32, self.rx, Cr, C32, rc, dcc, s, drift, self.labels,
                          self.u, self.L, self.errs, final, nt)

    def moved(self, rows):
        """Rows moved into empty clusters: bounds that force all their distances."""
        for row, cluster in rows:
            self.labels[row] = cluster
            self.u[row] = np.inf
            self.L[row] = 0.0


def elkan_lloyd(blocks, C: np.ndarray, max_iter: int, tol_abs: float):
    """Lloyd's iterations with Elkan's bounds on the in-memory ``blocks``: ``(centroids,
    n_iter, labels, inertia)``, the same iterations, labels, ``n_iter`` and stopping rule as
    ``_lloyd.lloyd_loop`` followed by ``_lloyd.labels_inertia``."""
    from hpcjobs.kernels.clustering._kmeans._lloyd import labels_inertia

    if max_iter < 1:
        return (C, 0, *labels_inertia(blocks, C))
    X = np.ascontiguousarray(blocks.X)
    if X.dtype == np.float32:
        return _iterations(blocks, _State(X, len(C)), C, max_iter, tol_abs)
    # the float32 copy in pages used before (kernels/_workspace.py)
    with workspace("kmeans-float32-rows", X.shape, np.float32) as X32:
        return _iterations(blocks, _State(X, len(C), X32), C, max_iter, tol_abs)


def _iterations(blocks, state: _State, C: np.ndarray, max_iter: int, tol_abs: float):
    """:func:`elkan_lloyd`'s iterations and final pass on ``state``."""
    from hpcjobs.kernels.clustering._kmeans._lloyd import moved_centroids, relocate_empty

    n, k = state.X.shape[0], state.k
    dtype = state.X.dtype
    nt = task_threads()
    CT = pad(C.T, dtype)
    dense = True
    n_iter = 0
    for n_iter in range(1, max_iter + 1):  # noqa: B007
        if dense:
            sums, counts = state.full_pass(CT, nt)
            dense = False
        else:
            ds, dc, _, work = state.bounded_pass(CT, nt)
            sums += ds
            counts += dc
            dense = work > DENSE_WORK * n * k
        empty = np.flatnonzero(counts == 0)
        if empty.size:
            state.moved(relocate_empty(blocks, CT, sums, counts, empty))
        C, shift = moved_centroids(C, sums, counts, tol_abs)
        CT = pad(C.T, dtype)
        if shift <= tol_abs:
            break
    _, _, inertia, _ = state.bounded_pass(CT, nt, final=True)
    return C, n_iter, state.labels.copy(), float(inertia)
