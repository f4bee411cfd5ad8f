"""k-means's chunk functions and their combines: what one pass runs on each row block and how
the blocks' results merge (module level, so Dask can pickle them). A pass is
``blocks.map_reduce(chunk, combine, *args)``; the same functions serve NumPy data, Dask
tasks and the members of a worker group.
"""

from __future__ import annotations

import math

import numpy as np

from hpcjobs.kernels._finite import all_finite
from hpcjobs.kernels._jit import in_threads, njit, task_threads, thread_ranges
from hpcjobs.kernels._validation import nonfinite_error
from hpcjobs.kernels.clustering._common import uniforms
from hpcjobs.kernels.clustering._dense_lloyd import direct_distance, rounding_bounds
from hpcjobs.kernels.clustering._kmeans._chunks import assign, kpp, pad
from hpcjobs.kernels.clustering._kmeans._specialised import assign_accumulate, assign_labels


def _c(block) -> np.ndarray:
    return np.ascontiguousarray(block)


def moments_chunk(block, offset):
    """(count, mean, M2) per column, and a finiteness check."""
    X = _c(block)
    n, mean, m2, finite = finite_moments(X)
    if not finite:
        raise nonfinite_error("X", "kmeans")
    return n, mean, m2


def finite_moments(X: np.ndarray) -> tuple[float, np.ndarray, np.ndarray, bool]:
    """:func:`column_moments` of ``X`` and whether ``X`` holds no NaN/inf, from the same
    pass: a NaN or inf shows in the moments (an overflow of finite values too, which the
    exact check, run only then, tells apart)."""
    n, mean, m2 = column_moments(X, task_threads())
    finite = bool(np.isfinite(mean).all() and np.isfinite(m2).all()) or all_finite(X)
    return n, mean, m2, finite


#: rows summed twice while in the L1/L2 cache (the mean, then the squares about it), before
#: their moments merge into the range's
_MOMENT_ROWS = 64


@njit
def _column_moments(X, start, stop):
    """(count, mean, M2) per column of rows ``[start, stop)`` of ``X``, in float64: each
    block of ``_MOMENT_ROWS`` rows summed about its own mean (two passes, in cache), the blocks
    merged as Chan et al. merge partial moments (as :func:`moments_combine`)."""
    d = X.shape[1]
    mean = np.zeros(d)
    m2 = np.zeros(d)
    bmean = np.empty(d)
    bm2 = np.empty(d)
    n = 0.0
    for b in range(start, stop, _MOMENT_ROWS):
        e = min(b + _MOMENT_ROWS, stop)
        nb = float(e - b)
        bmean[:] = 0.0
        bm2[:] = 0.0
        for i in range(b, e):  # (rows in the inner loop's order: it runs along a row)
            for f in range(d):
                bmean[f] += X[i, f]
        for f in range(d):
            bmean[f] /= nb
        for i in range(b, e):
            for f in range(d):
                t = X[i, f] - bmean[f]
                bm2[f] += t * t
        tot = n + nb
        for f in range(d):
            delta = bmean[f] - mean[f]
            mean[f] += delta * (nb / tot)
            m2[f] += bm2[f] + delta * delta * (n * nb / tot)
        n = tot
    return n, mean, m2


def column_moments(X: np.ndarray, n_threads: int) -> tuple[float, np.ndarray, np.ndarray]:
    """(count, mean, M2) per column of the C-contiguous ``X`` (``M2 / count`` is
    ``np.var(X, axis=0)``, to rounding) in one pass over row ranges in threads: compiled, no
    temporary as large as ``X`` (``np.var`` makes two: 43 ms for 20000 x 784 float64, as much
    as the k-means fit it sets the tolerance of)."""
    parts = in_threads(thread_ranges(X.shape[0], n_threads),
                       lambda a, b: _column_moments(X, a, b))
    return moments_combine(parts)


def moments_combine(parts):
    n, mean, m2 = parts[0]
    for nb, mb, m2b in parts[1:]:
        tot = n + nb
        # NaN or inf in the data shows here as NaN (the callers check for it): no warning
        with np.errstate(invalid="ignore", over="ignore"):
            delta = mb - mean
            mean = mean + delta * (nb / tot)
            m2 = m2 + m2b + delta * delta * (n * nb / tot)
        n = tot
    return n, mean, m2


def lloyd_chunk(block, offset, CT, k):
    return assign_accumulate(_c(block), CT, k, task_threads())


def sum_combine(parts):
    out = list(parts[0])
    for p in parts[1:]:
        for i, v in enumerate(p):
            out[i] = out[i] + v
    return tuple(out)


def labels_inertia_chunk(block, CT):
    X = _c(block)
    labels = np.empty(X.shape[0], dtype=np.int32)
    d2 = np.empty(X.shape[0], dtype=X.dtype)
    return labels, float(assign_labels(X, CT, labels, d2, task_threads()))


def predict_block(block, CT):
    X = _c(block)
    if not all_finite(X):
        raise nonfinite_error("X", "kmeans_predict")
    labels = np.empty(X.shape[0], dtype=np.int32)
    d2 = np.empty(X.shape[0], dtype=X.dtype)
    assign_labels(X, CT, labels, d2, task_threads())
    return labels


def far_chunk(block, offset, CT, e):
    """The ``e`` rows farthest from their nearest centroid: (d2, index, label, rows)."""
    X = _c(block)
    labels = np.empty(X.shape[0], dtype=np.int32)
    d2 = np.empty(X.shape[0], dtype=np.float64)
    mind2_labels(X, CT, labels, d2)
    e = min(e, X.shape[0])
    sel = np.argpartition(-d2, e - 1)[:e] if e < X.shape[0] else np.arange(X.shape[0])
    return d2[sel], sel.astype(np.int64) + offset, labels[sel], X[sel].copy()


def mind2_labels(X, CT, labels, d2):
    buf = np.empty(X.shape[0], dtype=X.dtype)
    assign(X, CT, labels, buf, task_threads())
    d2[:] = buf


def far_combine(parts):
    d2 = np.concatenate([p[0] for p in parts])
    idx = np.concatenate([p[1] for p in parts])
    lab = np.concatenate([p[2] for p in parts])
    rows = np.concatenate([p[3] for p in parts])
    order = np.lexsort((idx, -d2))
    e = max(len(p[0]) for p in parts)
    order = order[:e]
    return d2[order], idx[order], lab[order], rows[order]


class NearestCandidate:
    """In memory, between k-means|| rounds: each row's squared distance to its nearest
    candidate so far (``d2``, float64) and that candidate's index (``labels``), over the
    candidates taken in so far. A round then measures the rows against the candidates drawn
    since alone: round r against about ell candidates, not r * ell (at d = 784, k = 10 the
    rounds and the weighing of the candidates were three quarters of a default fit).

    The result is the one pass over all candidates gives (``assign_labels``): where a new
    candidate and the old one are too close for their float64 distances to tell, the
    direct distances decide, the old one (the lower index) winning a tie."""

    def __init__(self, n: int, d: int, dtype):
        self.d2 = np.full(n, np.inf)
        self.labels = np.full(n, -1, dtype=np.int64)
        self.candidates = np.empty((0, d), dtype=dtype)
        self._h = rounding_bounds(d, dtype)[2]

    @property
    def count(self) -> int:
        return len(self.candidates)

    def add(self, X: np.ndarray, new: np.ndarray) -> None:
        """Take in the candidates ``new`` (m, d), which follow those taken in so far."""
        if len(new) == 0:
            return
        X = _c(X)
        d2 = np.empty(X.shape[0])
        labels = np.empty(X.shape[0], dtype=np.int32)
        assign_labels(X, pad(new.T, X.dtype), labels, d2, task_threads())
        first = self.count
        self.candidates = np.vstack([self.candidates, new.astype(X.dtype)])
        _take_nearer(X, self.d2, self.labels, d2, labels, first, self.candidates,
                     (1.0 + self._h) / (1.0 - self._h))

    def weights(self) -> np.ndarray:
        """How many rows each candidate is nearest to."""
        return np.bincount(self.labels, minlength=self.count).astype(np.float64)


@njit
def _take_nearer(X, d2, labels, new_d2, new_labels, first, Cr, factor):
    """Where the new candidate (index ``first + new_labels[i]``) is nearer than the old one,
    take it. Within ``factor`` of each other, float64 distances cannot tell (see
    ``_dense_lloyd._choose``): the direct distances decide, the old one (the lower index)
    winning a tie."""
    for i in range(d2.shape[0]):
        a, b = d2[i], new_d2[i]
        j = first + new_labels[i]
        if max(a, b) <= min(a, b) * factor:
            nearer = direct_distance(X, i, Cr, j) < direct_distance(X, i, Cr, labels[i])
        else:
            nearer = b < a
        if nearer:
            d2[i] = b
            labels[i] = j


def kpar_chunk(block, offset, CT, key, ell):
    """One k-means|| round on a chunk: its cost and a superset of the rows drawn."""
    X = _c(block)
    d2 = np.empty(X.shape[0])
    phi = mind2(X, CT, d2, task_threads())
    return _drawn(X, offset, d2, phi, key, ell)


def kpar_in_memory(X, nearest: NearestCandidate, new: np.ndarray, key, ell):
    """One k-means|| round on in-memory data, as :func:`kpar_chunk` (one chunk) but with
    the rows measured against the candidates drawn since the last round (``new``) alone."""
    nearest.add(X, new)
    return _drawn(X, 0, nearest.d2, float(nearest.d2.sum()), key, ell)


def _drawn(X, offset, d2, phi, key, ell):
    u = uniforms(key, offset, X.shape[0])
    # p = min(1, ell d2 / phi) with phi >= this chunk's phi: keep u * phi_chunk < ell d2
    sel = np.flatnonzero(u * phi < ell * d2)
    return phi, sel.astype(np.int64) + offset, u[sel], d2[sel], X[sel].copy()


def kpar_combine(parts):
    return (sum(p[0] for p in parts),) + tuple(
        np.concatenate([p[i] for p in parts]) for i in range(1, 5))


def kpp_chunk(block, offset, CT, TT, key, M):
    X = _c(block)
    pot, hk, hi = kpp(X, offset, CT, TT, key, M, task_threads())
    return kpp_select(pot, hk.transpose(1, 0, 2).reshape(TT.shape[1], -1),
                       hi.transpose(1, 0, 2).reshape(TT.shape[1], -1), X, offset, M)


def kpp_select(pot, keys, idx, X, offset, M):
    """Keep the ``M`` smallest keys per trial, with their rows (``X`` holds them at idx-offset)."""
    L = keys.shape[0]
    d = X.shape[1]
    out_k = np.full((L, M), np.inf)
    out_i = np.full((L, M), -1, dtype=np.int64)
    out_r = np.zeros((L, M, d))
    for ll in range(L):
        order = np.lexsort((idx[ll], keys[ll]))[:M]
        ok = np.isfinite(keys[ll][order])
        order = order[ok]
        out_k[ll, :len(order)] = keys[ll][order]
        out_i[ll, :len(order)] = idx[ll][order]
        if X is not None:
            out_r[ll, :len(order)] = X[idx[ll][order] - offset]
    return pot, out_k, out_i, out_r


def kpp_combine(parts):
    pot = sum(p[0] for p in parts)
    keys = np.concatenate([p[1] for p in parts], axis=1)
    idx = np.concatenate([p[2] for p in parts], axis=1)
    rows = np.concatenate([p[3] for p in parts], axis=1)
    L, M = parts[0][1].shape
    out_k = np.full((L, M), np.inf)
    out_i = np.full((L, M), -1, dtype=np.int64)
    out_r = np.zeros((L, M, rows.shape[2]))
    for ll in range(L):
        order = np.lexsort((idx[ll], keys[ll]))[:M]
        out_k[ll] = keys[ll][order]
        out_i[ll] = idx[ll][order]
        out_r[ll] = rows[ll][order]
    return pot, out_k, out_i, out_r


def mind2(X, CT, d2, n_threads):
    """Squared distance of every row to its nearest centroid into ``d2``; returns the sum.
    The distances of the step that suits ``X`` (on wide data the matrix product's: the
    k-means|| rounds at d = 784 took 30 ms each on the direct loops, 3/4 of a default fit)."""
    labels = np.empty(X.shape[0], dtype=np.int32)
    return assign_labels(X, CT, labels, d2, n_threads)


def fsum(values) -> float:
    return math.fsum(values)
