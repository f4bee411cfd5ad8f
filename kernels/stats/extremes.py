"""``column_extremes``: count, NaN count, min and max of each column, in one pass.

The per-chunk statistics hpcjobs records when it writes an array (like Parquet's row-group
statistics) are these four numbers per column, so a later step that needs the data's range
reads no data for it. One pass over the chunk, threads over disjoint row ranges.
"""

from __future__ import annotations

import numba
import numpy as np

from hpcjobs.kernels._jit import njit, task_threads, thread_ranges

#: rows of the result: non-NaN count, NaN count, min and max over the non-NaN values
COUNT, NAN, MIN, MAX = range(4)


@njit
def _extremes_range(X, start, stop, out):
    d = X.shape[1]
    for j in range(d):
        out[COUNT, j] = 0.0
        out[NAN, j] = 0.0
        out[MIN, j] = np.inf
        out[MAX, j] = -np.inf
    for i in range(start, stop):
        for j in range(d):
            x = np.float64(X[i, j])
            if x != x:
                out[NAN, j] += 1.0
                continue
            out[COUNT, j] += 1.0
            if x < out[MIN, j]:
                out[MIN, j] = x
            if x > out[MAX, j]:
                out[MAX, j] = x


@njit(parallel=True)
def _extremes(X, n_threads):
    ranges = thread_ranges(X.shape[0], n_threads)
    parts = np.empty((ranges.shape[0], 4, X.shape[1]))
    for t in numba.prange(ranges.shape[0]):
        _extremes_range(X, ranges[t, 0], ranges[t, 1], parts[t])
    out = parts[0].copy()
    for t in range(1, ranges.shape[0]):
        for j in range(X.shape[1]):
            out[COUNT, j] += parts[t, COUNT, j]
            out[NAN, j] += parts[t, NAN, j]
            out[MIN, j] = min(out[MIN, j], parts[t, MIN, j])
            out[MAX, j] = max(out[MAX, j], parts[t, MAX, j])
    return out


def column_extremes(X: np.ndarray) -> np.ndarray:
    """``(4, d)`` float64: rows :data:`COUNT`, :data:`NAN`, :data:`MIN`, :data:`MAX` per column
    of a 1-D (one column) or 2-D numeric array. Columns without a non-NaN value have
    min ``inf`` and max ``-inf``; infinite values count as values (min/max say so)."""
    X = np.asarray(X)
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2 or X.dtype.kind not in "fiub":
        raise ValueError(f"column_extremes: expected a 1-D or 2-D numeric array, got "
                         f"{X.ndim}-D {X.dtype}")
    if X.dtype.kind == "b":
        X = X.view(np.uint8)
    elif X.dtype == np.float16:  # Numba has no half floats; float32 holds each one exactly
        X = X.astype(np.float32)
    threads = 1 if X.size < 1 << 20 else task_threads()
    return _extremes(np.ascontiguousarray(X), threads)


def merge_extremes(parts) -> np.ndarray:
    """Extremes of the union of the rows that ``parts`` (each ``(4, d)``) summarise."""
    parts = np.asarray(parts)
    return np.stack([parts[:, COUNT].sum(axis=0), parts[:, NAN].sum(axis=0),
                     parts[:, MIN].min(axis=0), parts[:, MAX].max(axis=0)])
