"""Lloyd's iterations with Hamerly's bounds ("Making k-means even faster", SDM 2010) for an
in-memory NumPy array: the same assignments as plain Lloyd in every iteration, most of the
distance computations skipped.

Every row keeps its label, an upper bound ``u`` on its distance to its centroid and a lower
bound ``l`` on its distance to every other centroid. When the centroids move by ``drift``,
``u`` grows by its centroid's drift and ``l`` shrinks by the largest drift of the others;
a row whose ``u`` is still below ``max(l, 2 s - u)`` (``s``: half the distance from its
centroid to the nearest other one) cannot change its label, and is skipped without reading
it. Otherwise all ``k`` of its distances are computed, as the direct kernels of ``_chunks``
compute them (Hamerly first tightens ``u`` with the row's own distance: that costs more
here than it saves, see :func:`_pass_range`).

The bounds start only once the centroids move little (``START_DRIFT``); the iterations
before are plain Lloyd passes, which cost less while most rows would fail the test.

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
The cluster sums (float64) are computed in full in the first bounded pass only; afterwards
only the rows whose label changed are subtracted from their old cluster and added to their
new one, so an iteration reads just the rows whose bounds fail (plain Lloyd re-reads all of
``X``). The sums then differ from full sums by float64 rounding alone.

Empty clusters are filled as plain Lloyd fills them (``_lloyd.relocate_empty``); the rows
moved get their new label and bounds that force their distances to be computed again.
The final labels and inertia come from the plain kernels (``_lloyd.labels_inertia``): the
inertia needs every row's distance anyway.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from hpcjobs.kernels._jit import njit, prefetch_row, task_threads, thread_ranges
from hpcjobs.kernels.clustering._kmeans._chunks import (
    TILE,
    distances4,
    merge_threads,
    pad,
    tile_scratch,
)

#: outward rounding of a float64 bound update (a few units in the last place)
_UP = 1.0 + 4.0 * np.finfo(np.float64).eps
_DOWN = 1.0 - 4.0 * np.finfo(np.float64).eps


@njit(inline="always")
def upper_distance(c2, g, a2):
    """An upper bound on the true distance whose square was computed as ``c2`` (within
    ``c2 * g + a2`` of the true square: :func:`error_bounds`), rounded up."""
    return math.sqrt(np.float64(c2) * (1.0 + g) + a2) * _UP


@njit(inline="always")
def lower_distance(c2, g, a2):
    """A lower bound on the true distance whose square was computed as ``c2`` (as
    :func:`upper_distance`), rounded down."""
    return math.sqrt(max(np.float64(c2) * (1.0 - g) - a2, 0.0)) * _DOWN


@njit
def _nearest_two(XT, m, CT, dist, best, second, lab):
    """The direct kernels' nearest centroid ``lab[i]`` (lowest index on a tie) of the ``m``
    rows held transposed in ``XT``, its distance ``best[i]`` and the runner-up's
    ``second[i]``: ``_chunks.nearest_XT``'s sweep (the same sums, in the same order), which
    keeps the runner-up too (padding columns are +inf)."""
    for i in range(m):
        best[i] = np.inf
        second[i] = np.inf
        lab[i] = 0
    for j0 in range(0, CT.shape[1], 4):
        distances4(XT, m, CT, j0, dist)
        for q in range(4):
            j = j0 + q
            for i in range(m):  # branch free, so that it vectorises
                v = dist[q, i]
                b = best[i]
                lab[i] = j if v < b else lab[i]
                second[i] = min(second[i], max(b, v))
                best[i] = min(b, v)


@njit
def _moves(XT, nm, moved, old, lab, sums, counts):
    """The ``nm`` rows ``moved`` of the tile ``XT`` out of their cluster ``old`` (none if
    negative) into ``lab``: the changes of the sums and counts."""
    for q in range(nm):
        r = moved[q]
        a = old[q]
        b = lab[r]
        counts[b] += 1
        for f in range(XT.shape[0]):
            sums[b, f] += XT[f, r]
        if a >= 0:
            counts[a] -= 1
            for f in range(XT.shape[0]):
                sums[a, f] -= XT[f, r]


@njit
def _settle(CT, XT, m, rows, labels, u, l, g, a2, sums, counts, dist, best, second, lab,
            ub, lb, moved, old):
    """All the distances of the ``m`` gathered rows ``rows`` (held in ``XT``): their labels,
    fresh bounds (the computed distances widened by their rounding error) and the moves
    between clusters (a row labelled -1 had none: it is only added)."""
    _nearest_two(XT, m, CT, dist, best, second, lab)
    for r in range(m):  # the square roots apart, without a branch, so that they vectorise
        ub[r] = upper_distance(best[r], g, a2)
        lb[r] = lower_distance(second[r], g, a2)
    nm = 0
    for r in range(m):
        i = rows[r]
        a = labels[i]
        b = lab[r]
        labels[i] = b
        u[i] = ub[r]
        l[i] = lb[r]
        moved[nm] = r
        old[nm] = a
        nm += 0 if a == b else 1
    _moves(XT, nm, moved, old, lab, sums, counts)


#: rows whose bounds are tested before the rows of the block before, that failed, are
#: gathered (see :func:`_pass_range`)
BLOCK = 256


@njit
def _pass_range(X, CT, s, drift, far, labels, u, l, start, stop, g, a2, sums, counts):
    """One bounded pass over rows ``[start, stop)`` (see :func:`bounded_pass`).

    A block of rows at a time: the bounds of every row are updated and tested, the rows that
    fail listed without a branch (a branch per row mispredicts on the rows near the
    boundaries) and every row's start prefetched; then the rows that failed in the block
    before (in the caches by now: the scattered reads of them alone are not overlapped by the
    CPU as well) are gathered, a tile at a time, for all their distances
    (:func:`_settle`). Tightening the upper bound first with the row's own distance, as
    Hamerly does, costs more here than it saves: the full distances of a tile of rows
    vectorise, one row's own distance does not.
    """
    d, kp = CT.shape
    XT, dist, best, lab = tile_scratch(X, kp)
    second = np.empty(TILE, dtype=X.dtype)
    ub = np.empty(TILE)
    lb = np.empty(TILE)
    rows = np.empty(TILE, dtype=np.int64)
    moved = np.empty(TILE, dtype=np.int64)
    old = np.empty(TILE, dtype=np.int32)
    cand = np.empty((2, BLOCK), dtype=np.int64)  # this block's failures, the last block's
    far1, far2, jfar = far[0], far[1], int(far[2])
    m = 0
    last = 0  # rows of the block before that failed, in cand[1 - this]
    this = 0
    for b0 in range(start, stop + BLOCK, BLOCK):  # one block more: the last one's gather
        nc = 0
        for i in range(b0, min(b0 + BLOCK, stop)):
            a = labels[i]
            ui = (u[i] + drift[a]) * _UP
            li = max((l[i] - (far2 if a == jfar else far1)) * _DOWN, 0.0)
            u[i] = ui
            l[i] = li
            cand[this, nc] = i
            prefetch_row(X, i)
            mi = max(li, 2.0 * s[a] - ui)
            nc += 0 if ui * ui * (1.0 + g) + 2.0 * a2 < mi * mi * (1.0 - g) else 1
        for q in range(last):
            i = cand[1 - this, q]
            for f in range(d):
                XT[f, m] = X[i, f]
            rows[m] = i
            m += 1
            if m == TILE:
                _settle(CT, XT, m, rows, labels, u, l, g, a2, sums, counts, dist, best,
                        second, lab, ub, lb, moved, old)
                m = 0
        last = nc
        this = 1 - this
    if m:
        _settle(CT, XT, m, rows, labels, u, l, g, a2, sums, counts, dist, best, second,
                lab, ub, lb, moved, old)


@njit(parallel=True)
def bounded_pass(X, CT, k, s, drift, far, labels, u, l, g, a2, n_threads):
    """One bounded assignment pass over ``X`` (C-contiguous) for the centroids ``CT``
    (:func:`_chunks.pad`, in the dtype of ``X``), after they moved by ``drift`` (k,) since
    the bounds ``u``/``l`` were last updated (``far``: the largest drift, the second largest
    and the index of the largest; ``s``: half the distance of each centroid to its nearest
    other one). Updates ``labels``, ``u`` and ``l`` in place; returns the changes of the
    cluster sums (float64) and counts: the rows that changed label, moved (rows labelled -1,
    with ``u`` = inf, are added: the first pass gives the full sums).
    """
    n, d = X.shape
    ranges = thread_ranges(n, n_threads)
    nt = ranges.shape[0]
    sums = np.zeros((nt, k, d))
    counts = np.zeros((nt, k), dtype=np.int64)
    for t in numba.prange(nt):
        _pass_range(X, CT, s, drift, far, labels, u, l, ranges[t, 0], ranges[t, 1], g, a2,
                    sums[t], counts[t])
    return merge_threads(sums, counts, k)


def error_bounds(d: int, dtype) -> tuple[float, float]:
    """``(g, a2)``: a computed squared distance ``c2`` (``d`` features, in ``dtype``) is
    within ``c2 * g + a2`` of the true one (``g`` twice the classical bound, ``a2`` the
    underflow of ``d`` squares)."""
    fi = np.finfo(dtype)
    u = float(fi.eps) / 2
    gam = (d + 3) * u
    return 2.0 * gam / (1.0 - gam), 2.0 * d * float(fi.tiny)


def _slack(d: int) -> float:
    """Relative rounding bound (with margin) of a float64 distance over ``d`` features."""
    return 4.0 * (d + 4) * float(np.finfo(np.float64).eps)


def centroid_distances(Cd: np.ndarray) -> np.ndarray:
    """Lower bounds on the distances between the centroids ``Cd`` (k, d) float64 (rounded
    down; +inf on the diagonal): no centroid is nearer to another than this."""
    return _pair_distances(np.ascontiguousarray(Cd), 1.0 - _slack(Cd.shape[1]))


@njit(fastmath={"reassoc", "contract"})
def _pair_distances(Cd, down):
    """``|c_a - c_b| * down`` for every pair (summed in any order: ``down`` allows for it;
    compiled, as NumPy's (k, k, d) temporaries cost ~0.15 ms a pass at k = 10, d = 784)."""
    k, d = Cd.shape
    D = np.empty((k, k))
    for a in range(k):
        D[a, a] = np.inf
        for b in range(a + 1, k):
            e = 0.0
            for f in range(d):
                t = Cd[a, f] - Cd[b, f]
                e += t * t
            D[a, b] = D[b, a] = math.sqrt(e) * down
    return D


def _geometry(CT: np.ndarray, k: int, old: np.ndarray | None):
    """``(s, drift, far, Cd, D)`` for the dtype-rounded centroids ``CT[:, :k]``: half the
    distance of each to its nearest other one (rounded down), how far each moved from ``old``
    and the two largest moves (rounded up), the centroids in float64 (k, d) and the lower
    bounds on their distances (:func:`centroid_distances`)."""
    Cd = np.ascontiguousarray(CT[:, :k].T, dtype=np.float64)
    D = centroid_distances(Cd)
    s, drift, far = _centroid_moves(Cd, D, Cd if old is None else old, old is not None,
                                    _slack(Cd.shape[1]))
    return s, drift, far, Cd, D


@njit(fastmath={"reassoc", "contract"})
def _centroid_moves(Cd, D, old, moved, slack):
    """:func:`_geometry`'s ``s``, ``drift`` and ``far`` (compiled: a dozen NumPy calls on
    k values cost 0.1 ms a pass; the drifts summed in any order, ``slack`` allows for it)."""
    k, d = Cd.shape
    s = np.full(k, np.inf)
    drift = np.zeros(k)
    far = np.zeros(3)
    for a in range(k):
        if k > 1:
            s[a] = 0.5 * D[a].min()
        if moved:
            e = 0.0
            for f in range(d):
                t = Cd[a, f] - old[a, f]
                e += t * t
            drift[a] = math.sqrt(e) * (1.0 + slack)
    if k:
        j = np.argmax(drift)
        far[0], far[2] = drift[j], j
        for a in range(k):
            if a != j:
                far[1] = max(far[1], drift[a])
    return s, drift, far


#: the bounds are started once no centroid moved by more than this fraction of the smallest
#: half-distance between two centroids in the last iteration: before, most rows fail the test
#: and a bounded pass (all the distances, the runner-up's too, and the bounds) costs more
#: than the plain pass (``hpcjobs bench kmeans-lloyd``)
START_DRIFT = 0.1


def bounded_lloyd(blocks, C: np.ndarray, max_iter: int, tol_abs: float):
    """Lloyd's iterations with Hamerly's bounds on the in-memory ``blocks``: ``(centroids,
    n_iter, labels, inertia)``, the same iterations, labels, ``n_iter`` and stopping rule as
    ``_lloyd.lloyd_loop`` followed by ``_lloyd.labels_inertia`` (which gives the final labels
    and inertia here too: every row's distance is needed for the inertia).

    The first iterations are plain Lloyd passes, until the centroids move little enough
    (``START_DRIFT``); the first bounded pass then computes every row's distances and the
    full sums, the later ones only the rows whose bounds fail and the moves between clusters.
    """
    from hpcjobs.kernels.clustering._kmeans._lloyd import (
        labels_inertia,
        moved_centroids,
        relocate_empty,
    )
    from hpcjobs.kernels.clustering._kmeans._passes import lloyd_chunk, sum_combine
    from hpcjobs.kernels.clustering._kmeans._specialised import bounded_pass as kernel
    from hpcjobs.kernels.clustering._kmeans._specialised import use_bounds

    X = np.ascontiguousarray(blocks.X)
    n, d = X.shape
    k = len(C)
    nt = task_threads()
    g, a2 = error_bounds(d, X.dtype)
    step = kernel(X)
    labels = u = l = None  # noqa: E741
    # the first bounded pass's full sums are the plain pass's to the last bit where the plain
    # pass is the direct kernels' (the same rows per thread, each added in order): the
    # iterations then stop exactly where plain Lloyd's do (a shift of 0 with tol=0). The
    # matrix-product step sums otherwise: there that pass takes its sums from a plain pass.
    same_sums = use_bounds(X, k)
    CT = pad(C.T, X.dtype)
    s, drift, far, Cd, _ = _geometry(CT, k, None)
    n_iter = 0
    for n_iter in range(1, max_iter + 1):  # noqa: B007
        start = labels is None and n_iter > 1 and far[0] <= START_DRIFT * s.min()
        if start:  # no label and no bound yet: every row's distances, every row added
            labels = np.full(n, -1, dtype=np.int32)
            u = np.full(n, np.inf)
            l = np.zeros(n)  # noqa: E741
        if labels is not None:
            ds, dc = step(X, CT, k, s, drift, far, labels, u, l, g, a2, nt)
        if labels is None or (start and not same_sums):
            sums, counts, _ = blocks.map_reduce(lloyd_chunk, sum_combine, CT, k)
        elif start:
            sums, counts = ds, dc
        else:
            sums += ds
            counts += dc
        empty = np.flatnonzero(counts == 0)
        if empty.size:
            for row, cluster in relocate_empty(blocks, CT, sums, counts, empty):
                if labels is not None:
                    labels[row] = cluster
                    u[row] = np.inf
                    l[row] = 0.0
        C, shift = moved_centroids(C, sums, counts, tol_abs)
        CT = pad(C.T, X.dtype)
        s, drift, far, Cd, _ = _geometry(CT, k, Cd)
        if shift <= tol_abs:
            break
    labels, inertia = labels_inertia(blocks, C)
    return C, n_iter, labels, inertia
