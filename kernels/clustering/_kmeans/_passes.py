"""k-means's chunk functions and their combines: what one pass runs on each row block and how
the blocks' results merge (module level, so Dask can pickle them). A pass is
``blocks.map_reduce(chunk, combine, *args)``; the same functions serve NumPy data, Dask
tasks and the members of a worker group.
"""

from __future__ import annotations

import math

import numpy as np

from hpcjobs.kernels._finite import all_finite
from hpcjobs.kernels._jit import task_threads
from hpcjobs.kernels._validation import nonfinite_error
from hpcjobs.kernels.clustering._common import uniforms
from hpcjobs.kernels.clustering._kmeans._chunks import assign, kpp
from hpcjobs.kernels.clustering._kmeans._specialised import assign_accumulate, assign_labels


def _c(block) -> np.ndarray:
    return np.ascontiguousarray(block)


def moments_chunk(block, offset):
    """(count, mean, M2) per column, and a finiteness check."""
    X = _c(block)
    if not all_finite(X):
        raise nonfinite_error("X", "kmeans")
    x = X.astype(np.float64, copy=False)
    mean = x.mean(axis=0)
    return float(X.shape[0]), mean, ((x - mean) ** 2).sum(axis=0)


def moments_combine(parts):
    n, mean, m2 = parts[0]
    for nb, mb, m2b in parts[1:]:
        tot = n + nb
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


def kpar_chunk(block, offset, CT, key, ell):
    """One k-means|| round on a chunk: its cost and a superset of the rows drawn."""
    X = _c(block)
    d2 = np.empty(X.shape[0])
    phi = mind2(X, CT, d2, task_threads())
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
    """Squared distance of every row to its nearest centroid into ``d2``; returns the sum."""
    labels = np.empty(X.shape[0], dtype=np.int32)
    return assign(X, CT, labels, d2, n_threads)


def fsum(values) -> float:
    return math.fsum(values)
