"""Lloyd's iterations with Hamerly's bounds ("Making k-means even faster", SDM 2010) for an
in-memory NumPy array: the same assignments as plain Lloyd in every iteration, most of the
distance computations skipped.

Every row keeps its label, an upper bound ``u`` on its distance to its centroid and a lower
bound ``l`` on its distance to every other centroid. When the centroids move by ``drift``,
``u`` grows by its centroid's drift and ``l`` shrinks by the largest drift of the others;
a row whose ``u`` is still below ``max(l, 2 s - u)`` (``s``: half the distance from its
centroid to the nearest other one) cannot change its label, and is skipped without reading
it. Otherwise its own distance tightens ``u``; only if the test still fails are all ``k``
distances computed, as the direct kernels of ``_chunks`` compute them.

Exactly Lloyd's labels
----------------------
The labels of plain Lloyd are those of the direct distances ``sum((x - c)**2)`` summed in
the data's dtype, to the centroids rounded to the dtype (the lowest index on a tie). A row is
skipped only when its bounds prove that its centroid's *computed* distance is strictly below
every other centroid's, rounding included: the bounds hold the true distances to the
dtype-rounded centroids, are set from computed distances widened by their rounding error
bound (``g`` relative, plus an absolute term for underflow) and updated with outward
rounding, and the test asks ``u^2 (1 + g) + 2 a < m^2 (1 - g)``. Every row that is not
skipped is decided by the direct distances themselves.

Sums
----
The cluster sums (float64) are computed in full in the first iteration only; afterwards
only the rows whose label changed are subtracted from their old cluster and added to their
new one, so an iteration reads just the rows whose bounds fail (plain Lloyd re-reads all of
``X``). The sums then differ from full sums by float64 rounding alone.

Empty clusters are filled as plain Lloyd fills them (``_lloyd.relocate_empty``); the rows
moved get their new label and bounds that force their distances to be computed again.
The final labels come from one more bounded pass, which also computes every row's distance
to its centroid for the inertia.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from hpcjobs.kernels._jit import njit, task_threads, thread_ranges
from hpcjobs.kernels.clustering._kmeans._chunks import TILE, pad, tile_scratch

#: outward rounding of a float64 bound update (a few units in the last place)
_UP = 1.0 + 4.0 * np.finfo(np.float64).eps
_DOWN = 1.0 - 4.0 * np.finfo(np.float64).eps

#: pass modes: the first (every row's distances, full sums), an iteration (moves only), the
#: final labels (every row's own distance, for the inertia)
FIRST, STEP, FINAL = 0, 1, 2


@njit
def _own(X, i, CT, a):
    """``sum((X[i] - c_a)**2)`` in the data's dtype, features in order (the direct kernels'
    value for the centroid ``a``)."""
    s = CT[0, 0] - CT[0, 0]
    for f in range(X.shape[1]):
        t = X[i, f] - CT[f, a]
        s += t * t
    return s


@njit
def _nearest_two(XT, m, CT, dist, best, second, lab):
    """The direct kernels' nearest centroid ``lab[i]`` (lowest index on a tie) of the ``m``
    rows held transposed in ``XT``, its distance ``best[i]`` and the runner-up's
    ``second[i]``: ``_chunks.nearest_XT``'s sweep (the same sums, in the same order), which
    keeps the runner-up too (padding columns are +inf)."""
    d, kp = CT.shape
    for i in range(m):
        best[i] = np.inf
        second[i] = np.inf
        lab[i] = 0
    for j0 in range(0, kp, 4):
        for q in range(4):
            for i in range(m):
                dist[q, i] = 0.0
        for f in range(d):
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
        for q in range(4):
            j = j0 + q
            for i in range(m):  # branch free, so that it vectorises
                v = dist[q, i]
                b = best[i]
                lab[i] = j if v < b else lab[i]
                second[i] = min(second[i], max(b, v))
                best[i] = min(b, v)


@njit
def _upper(c2, g, a2):
    """An upper bound on the true distance whose computed square is ``c2``."""
    return math.sqrt(np.float64(c2) * (1.0 + g) + a2) * _UP


@njit
def _lower(c2, g, a2):
    """A lower bound on the true distance whose computed square is ``c2``."""
    v = np.float64(c2) * (1.0 - g) - a2
    return math.sqrt(v) * _DOWN if v > 0.0 else 0.0


@njit
def _settled(u, m, g, a2):
    """Whether a row whose true distance to its centroid is ``<= u`` and to any other
    ``>= m`` has its centroid's computed distance strictly below all others'."""
    return u * u * (1.0 + g) + 2.0 * a2 < m * m * (1.0 - g)


@njit
def _move(X, i, a, b, sums, counts):
    """Row ``i`` out of cluster ``a`` (none if negative) into cluster ``b``."""
    d = X.shape[1]
    if a >= 0:
        counts[a] -= 1
        for f in range(d):
            sums[a, f] -= X[i, f]
    counts[b] += 1
    for f in range(d):
        sums[b, f] += X[i, f]


@njit
def _settle(X, CT, XT, m, rows, labels, u, l, mode, g, a2, sums, counts, dist, best, second,
            lab):
    """All the distances of the ``m`` gathered rows ``rows`` (held in ``XT``): their labels,
    fresh bounds and the moves between clusters; returns the sum of their distances."""
    _nearest_two(XT, m, CT, dist, best, second, lab)
    inertia = 0.0
    for r in range(m):
        i = rows[r]
        a = labels[i]
        b = lab[r]
        labels[i] = b
        u[i] = _upper(best[r], g, a2)
        l[i] = _lower(second[r], g, a2)
        inertia += best[r]
        if mode == FIRST:
            _move(X, i, -1, b, sums, counts)
        elif mode == STEP and b != a:
            _move(X, i, a, b, sums, counts)
    return inertia


@njit
def _pass_range(X, CT, s, drift, far, labels, u, l, start, stop, mode, g, a2, sums, counts):
    """One bounded pass over rows ``[start, stop)`` (see :func:`bounded_pass`): the rows
    whose bounds fail are gathered, a tile at a time, for :func:`_settle`."""
    d, kp = CT.shape
    XT, dist, best, lab = tile_scratch(X, kp)
    second = np.empty(TILE, dtype=X.dtype)
    rows = np.empty(TILE, dtype=np.int64)
    far1, far2, jfar = far[0], far[1], int(far[2])
    inertia = 0.0
    m = 0
    for i in range(start, stop):
        a = labels[i]
        if mode != FIRST:
            ui = (u[i] + drift[a]) * _UP
            li = (l[i] - (far2 if a == jfar else far1)) * _DOWN
            li = max(li, 0.0)
            l[i] = li
            if mode != FINAL and _settled(ui, max(li, 2.0 * s[a] - ui), g, a2):
                u[i] = ui
                continue
            c2 = _own(X, i, CT, a)
            ui = _upper(c2, g, a2)
            u[i] = ui
            if _settled(ui, max(li, 2.0 * s[a] - ui), g, a2):
                inertia += c2
                continue
        for f in range(d):
            XT[f, m] = X[i, f]
        rows[m] = i
        m += 1
        if m == TILE:
            inertia += _settle(X, CT, XT, m, rows, labels, u, l, mode, g, a2, sums, counts,
                               dist, best, second, lab)
            m = 0
    if m:
        inertia += _settle(X, CT, XT, m, rows, labels, u, l, mode, g, a2, sums, counts, dist,
                           best, second, lab)
    return inertia


@njit(parallel=True)
def bounded_pass(X, CT, k, s, drift, far, labels, u, l, mode, g, a2, n_threads):
    """One bounded assignment pass over ``X`` (C-contiguous) for the centroids ``CT``
    (:func:`_chunks.pad`, in the dtype of ``X``), after they moved by ``drift`` (k,) since
    the bounds ``u``/``l`` were last updated (``far``: the largest drift, the second largest
    and the index of the largest; ``s``: half the distance of each centroid to its nearest
    other one). Updates ``labels``, ``u`` and ``l`` in place; returns ``(sums, counts,
    inertia)``: ``FIRST``: every row's distances computed, the full sums and counts;
    ``STEP``: the changes of the sums and counts (rows that changed label); ``FINAL``: the
    labels only (zero sums), with the inertia of every row (each row's own distance is
    computed; in the other modes the inertia covers only the rows computed).
    """
    n, d = X.shape
    ranges = thread_ranges(n, n_threads)
    nt = ranges.shape[0]
    sums = np.zeros((nt, k, d))
    counts = np.zeros((nt, k), dtype=np.int64)
    inertia = np.zeros(nt)
    for t in numba.prange(nt):
        inertia[t] = _pass_range(X, CT, s, drift, far, labels, u, l, ranges[t, 0],
                                 ranges[t, 1], mode, g, a2, sums[t], counts[t])
    out_s = np.zeros((k, d))
    out_c = np.zeros(k, dtype=np.int64)
    for t in range(nt):
        for j in range(k):
            out_c[j] += counts[t, j]
            for f in range(d):
                out_s[j, f] += sums[t, j, f]
    return out_s, out_c, inertia.sum()


def error_bounds(d: int, dtype) -> tuple[float, float]:
    """``(g, a2)``: a computed squared distance ``c2`` (``d`` features, in ``dtype``) is
    within ``c2 * g + a2`` of the true one (``g`` twice the classical bound, ``a2`` the
    underflow of ``d`` squares)."""
    fi = np.finfo(dtype)
    u = float(fi.eps) / 2
    gam = (d + 3) * u
    return 2.0 * gam / (1.0 - gam), 2.0 * d * float(fi.tiny)


def _geometry(CT: np.ndarray, k: int, old: np.ndarray | None):
    """``(s, drift, far)`` for the dtype-rounded centroids ``CT[:, :k]``: half the distance
    of each to its nearest other one (rounded down), how far each moved from ``old`` and
    the two largest moves (rounded up)."""
    Cd = CT[:, :k].T.astype(np.float64)
    d = Cd.shape[1]
    slack = 4.0 * (d + 4) * float(np.finfo(np.float64).eps)
    if k > 1:
        D = np.sqrt(((Cd[:, None, :] - Cd[None, :, :]) ** 2).sum(axis=2))
        np.fill_diagonal(D, np.inf)
        s = 0.5 * D.min(axis=1) * (1.0 - slack)
    else:
        s = np.full(1, np.inf)
    if old is None:
        drift = np.zeros(k)
    else:
        drift = np.sqrt(((Cd - old) ** 2).sum(axis=1)) * (1.0 + slack)
    far = np.zeros(3)
    if k:
        j = int(np.argmax(drift))
        far[0], far[2] = drift[j], j
        far[1] = np.delete(drift, j).max() if k > 1 else 0.0
    return s, drift, far, Cd


def bounded_lloyd(blocks, C: np.ndarray, max_iter: int, tol_abs: float):
    """Lloyd's iterations with Hamerly's bounds on the in-memory ``blocks``: ``(centroids,
    n_iter, labels, inertia)``, the same iterations, labels, ``n_iter`` and stopping rule as
    ``_lloyd.lloyd_loop`` followed by ``_lloyd.labels_inertia``."""
    from hpcjobs.kernels.clustering._kmeans._lloyd import relocate_empty

    X = np.ascontiguousarray(blocks.X)
    n, d = X.shape
    k = len(C)
    nt = task_threads()
    g, a2 = error_bounds(d, X.dtype)
    labels = np.zeros(n, dtype=np.int32)
    u = np.full(n, np.inf)
    l = np.zeros(n)  # noqa: E741
    CT = pad(C.T, X.dtype)
    s, drift, far, Cd = _geometry(CT, k, None)
    sums = counts = None
    n_iter = 0
    for n_iter in range(1, max_iter + 1):  # noqa: B007
        mode = FIRST if n_iter == 1 else STEP
        ds, dc, _ = bounded_pass(X, CT, k, s, drift, far, labels, u, l, mode, g, a2, nt)
        if mode == FIRST:
            sums, counts = ds, dc
        else:
            sums += ds
            counts += dc
        empty = np.flatnonzero(counts == 0)
        if empty.size:
            for row, cluster in relocate_empty(blocks, CT, sums, counts, empty):
                labels[row] = cluster
                u[row] = np.inf
                l[row] = 0.0
        new = C.copy()
        nz = counts > 0
        new[nz] = sums[nz] / counts[nz, None]
        shift = math.fsum(((new - C) ** 2).ravel())
        C = new
        CT = pad(C.T, X.dtype)
        s, drift, far, Cd = _geometry(CT, k, Cd)
        if shift <= tol_abs:
            break
    if n_iter == 0:  # no iteration: every row's distances
        _, _, inertia = bounded_pass(X, CT, k, s, drift, far, labels, u, l, FIRST, g, a2, nt)
    else:
        _, _, inertia = bounded_pass(X, CT, k, s, drift, far, labels, u, l, FINAL, g, a2, nt)
    return C, n_iter, labels, float(inertia)
