"""``pca``: principal-component projection of a tall 2-D array, chunked over rows.

Two paths:

- ``covariance`` (default for d <= 2000): one pass over the rows accumulates the count, the
  mean and the centred scatter matrix per chunk (merged with Chan et al.'s update, so the
  chunking does not matter and no large offset spoils the precision); the d x d covariance is
  diagonalised exactly (``numpy.linalg.eigh``).
- ``randomized`` (beyond, or on request): Halko et al.'s randomized SVD of the centred data
  with oversampling and power iterations (QR-normalised); only (n, k + p) and (k + p, d)
  sketches are formed, never d x d.

Components get scikit-learn's sign convention (the largest-magnitude entry of each component is
positive), so ``embedding`` equals ``sklearn.decomposition.PCA(n_components).fit_transform``
up to rounding. The embedding of a Dask input is a lazy Dask array with the input's row chunks.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numba
import numpy as np

from hpcjobs.kernels._jit import njit, task_threads, thread_ranges
from hpcjobs.kernels._reduction import Reduction, as_is
from hpcjobs.kernels._validation import (
    InvalidInput,
    check_array,
    is_dask,
    message,
)
from hpcjobs.kernels.viz.params import PCA

_FUNC = "pca"
_EXACT_MAX_D = 2000


@dataclass(frozen=True)
class PCAResult:
    """A fitted projection: ``embedding`` (n, k), ``components`` (k, d) and variances (k,)."""

    embedding: object
    components: np.ndarray
    explained_variance: np.ndarray
    explained_variance_ratio: np.ndarray
    mean: np.ndarray
    method: str


# ---------------------------------------------------------------------------------------------
# the fused sweeps (d <= _FUSED_MAX_D)
#
# X is read once per sweep, with no centred copy. The scatter sweep copies blocks of
# _block_rows(d) rows as float64 columns, less a shift (the chunk's first row), into a
# (d, rows) buffer that stays in L1 (one pass over the block's rows), centres each block on
# its own mean there (exact two-pass) and adds its products four columns at a time (a
# vectorised dot product along the rows); blocks and threads are merged with Chan et al.'s
# update. With the shift, the means merged are small numbers: a large offset (mean 1e6, small
# spread) loses nothing to cancellation. The projection sweep centres and projects a row at a
# time. Threads take disjoint row ranges; one thread runs outside a parallel region (entering
# one costs milliseconds per chunk). ``hpcjobs bench pca`` times them against oneDAL.

#: beyond this many columns the scatter and projection are BLAS products of a centred copy
_FUSED_MAX_D = 64
#: below this many values a chunk is swept by one thread (thread start-up costs more)
_SERIAL_BELOW = 1 << 18
# reassociation lets the dot products vectorise (blockwise sums, as BLAS's)
_SWEEP = {"reassoc", "nsz", "contract"}


def _block_rows(d: int) -> int:
    """Rows per block: the (d, rows) float64 buffer within 32 KiB (an L1d)."""
    return max(16, (4096 // max(d, 1)) // 8 * 8)


@njit
def _columns(X, r0, r1, shift, cols):
    """Rows ``[r0, r1)`` of ``X`` less ``shift`` (d,) into the first ``r1 - r0`` columns of
    ``cols`` (d, rows)."""
    for t in range(r1 - r0):
        for j in range(X.shape[1]):
            cols[j, t] = np.float64(X[r0 + t, j]) - shift[j]


@njit(fastmath=_SWEEP)
def _add_products(cols, nb, m2):
    """``m2[i, j] += cols[i, :nb] @ cols[j, :nb]`` for j >= i (and a few j < i, which the
    caller ignores): four rows i at a time, so that each load of row j serves four products."""
    d = cols.shape[0]
    for i0 in range(0, d - 3, 4):
        for j in range(i0, d):
            a0 = a1 = a2 = a3 = 0.0
            for t in range(nb):
                c = cols[j, t]
                a0 += cols[i0, t] * c
                a1 += cols[i0 + 1, t] * c
                a2 += cols[i0 + 2, t] * c
                a3 += cols[i0 + 3, t] * c
            m2[i0, j] += a0
            m2[i0 + 1, j] += a1
            m2[i0 + 2, j] += a2
            m2[i0 + 3, j] += a3
    for i in range(d - d % 4, d):
        for j in range(i, d):
            acc = 0.0
            for t in range(nb):
                acc += cols[i, t] * cols[j, t]
            m2[i, j] += acc


@njit(fastmath=_SWEEP)
def _scatter_range(X, start, stop, rows, shift, mean, m2):
    """Mean (d,) and centred scatter (upper triangle of m2, (d, d)) of rows ``[start, stop)``
    less ``shift`` into ``mean`` and ``m2``: each block two-pass in cache, blocks merged (Chan
    et al.).

    ``shift`` is a row of the data: with a large offset, the blocks' means are then small
    numbers, whose differences the merges take without cancelling.
    """
    d = X.shape[1]
    cols = np.empty((d, rows))
    bmean = np.empty(d)
    mean[:] = 0.0
    m2[:, :] = 0.0
    n = 0
    for r0 in range(start, stop, rows):
        nb = min(r0 + rows, stop) - r0
        _columns(X, r0, r0 + nb, shift, cols)
        for j in range(d):
            total = 0.0
            for t in range(nb):
                total += cols[j, t]
            bmean[j] = total / nb
            for t in range(nb):
                cols[j, t] -= bmean[j]
        _add_products(cols, nb, m2)
        tot = n + nb
        weight = n * nb / tot
        for i in range(d):
            di = (bmean[i] - mean[i]) * weight
            for j in range(i, d):
                m2[i, j] += di * (bmean[j] - mean[j])
        for j in range(d):
            mean[j] += (bmean[j] - mean[j]) * (nb / tot)
        n = tot


@njit(parallel=True)
def _scatter_threads(X, rows, shift, n_threads):
    ranges = thread_ranges(X.shape[0], n_threads)
    d = X.shape[1]
    means = np.zeros((ranges.shape[0], d))
    m2s = np.zeros((ranges.shape[0], d, d))
    for p in numba.prange(ranges.shape[0]):
        _scatter_range(X, ranges[p, 0], ranges[p, 1], rows, shift, means[p], m2s[p])
    return ranges, means, m2s


def _fused_scatter(X: np.ndarray, n_threads: int) -> tuple:
    """(count, mean, centred scatter) of ``X`` in one sweep (threads merged with Chan's update)."""
    n, d = X.shape
    rows, shift = _block_rows(d), X[0].astype(np.float64)
    if n_threads == 1:
        mean, m2 = np.zeros(d), np.zeros((d, d))
        _scatter_range(X, 0, n, rows, shift, mean, m2)
        parts = [(n, mean, m2)]
    else:
        ranges, means, m2s = _scatter_threads(X, rows, shift, n_threads)
        parts = [(int(r1 - r0), m, s) for (r0, r1), m, s in zip(ranges, means, m2s, strict=True)]
    n, mean, m2 = _merge(parts)
    upper = np.triu(m2)
    return n, shift + mean, upper + np.triu(upper, 1).T


@njit(fastmath=_SWEEP)
def _project_range(X, start, stop, mean, components, out):
    """``(X[start:stop] - mean) @ components.T`` into ``out[start:stop]``, a row at a time."""
    d, k = X.shape[1], components.shape[0]
    centred = np.empty(d)
    for r in range(start, stop):
        for j in range(d):
            centred[j] = np.float64(X[r, j]) - mean[j]
        for c in range(k):
            acc = 0.0
            for j in range(d):
                acc += centred[j] * components[c, j]
            out[r, c] = acc


@njit(parallel=True)
def _project_threads(X, mean, components, out, n_threads):
    ranges = thread_ranges(X.shape[0], n_threads)
    for p in numba.prange(ranges.shape[0]):
        _project_range(X, ranges[p, 0], ranges[p, 1], mean, components, out)


def _fused_project(X: np.ndarray, mean: np.ndarray, components: np.ndarray,
                   n_threads: int) -> np.ndarray:
    out = np.empty((X.shape[0], components.shape[0]))
    if n_threads == 1:
        _project_range(X, 0, X.shape[0], mean, components, out)
    else:
        _project_threads(X, mean, components, out, n_threads)
    return out


def _threads_for(block: np.ndarray) -> int:
    return 1 if block.size < _SERIAL_BELOW else task_threads()


# ---------------------------------------------------------------------------------------------
# chunk level


def _scatter(block: np.ndarray) -> tuple:
    """Bases of one row chunk: (count, mean, centred scatter matrix)."""
    block = np.asarray(block)
    n, d = block.shape
    if n == 0:
        return 0, np.zeros(d), np.zeros((d, d))
    if d <= _FUSED_MAX_D:
        if block.dtype not in (np.float32, np.float64):
            block = block.astype(np.float64)
        return _fused_scatter(np.ascontiguousarray(block), _threads_for(block))
    # shifted by a row first, as the fused sweep is: the mean of a large offset is then exact
    first = np.asarray(block[0], dtype=np.float64)
    c = np.asarray(block, dtype=np.float64) - first
    offset = c.mean(axis=0)
    c -= offset
    return n, first + offset, c.T @ c


def _merge(parts: list) -> tuple:
    n, mean, m2 = parts[0]
    mean, m2 = mean.copy(), m2.copy()
    for nb, mb, sb in parts[1:]:
        if nb == 0:
            continue
        if n == 0:
            n, mean, m2 = nb, mb.copy(), sb.copy()
            continue
        tot = n + nb
        delta = mb - mean
        m2 += sb + np.outer(delta, delta) * (n * nb / tot)
        mean += delta * (nb / tot)
        n = tot
    return n, mean, m2


def _flip(components: np.ndarray) -> np.ndarray:
    """scikit-learn's ``svd_flip(u_based_decision=False)``: largest |entry| of each row > 0."""
    idx = np.argmax(np.abs(components), axis=1)
    signs = np.sign(components[np.arange(components.shape[0]), idx])
    signs[signs == 0] = 1.0
    return components * signs[:, None]


def _project(block, mean, components):
    """``(block - mean) @ components.T``, without a centred copy where d is small."""
    block = np.asarray(block)
    if block.shape[1] <= _FUSED_MAX_D and block.shape[0]:
        if block.dtype not in (np.float32, np.float64):
            block = block.astype(np.float64)
        return _fused_project(np.ascontiguousarray(block), mean,
                              np.ascontiguousarray(components, dtype=np.float64),
                              _threads_for(block))
    return (np.asarray(block, dtype=np.float64) - mean) @ components.T


def _randomized(X, mean, k, oversample, n_iter, seed):
    """Top-k right singular vectors and values of ``X - mean`` (Halko et al., power iterations)."""
    rng = np.random.default_rng(seed)
    d = X.shape[1]
    p = min(k + oversample, d)
    omega = rng.standard_normal((d, p))
    lazy = is_dask(X)

    def xc_dot(m):  # (X - mean) @ m
        if lazy:
            import dask.array as da

            return da.map_blocks(_project_with, X, mean, m, dtype=np.float64,
                                 chunks=(X.chunks[0], (m.shape[1],)))
        return (X - mean) @ m

    def xct_dot(q):  # (X - mean).T @ q
        if lazy:
            return Reduction("pca-tdot", (X, q), partial(_tdot, mean=mean), _sum,
                             as_is).compute()
        return (X - mean).T @ q

    def orth(y):
        if lazy:
            import dask.array as da

            q, _ = da.linalg.tsqr(y)
            return q.persist()
        q, _ = np.linalg.qr(y)
        return q

    q = orth(xc_dot(omega))
    for _ in range(n_iter):
        z, _ = np.linalg.qr(xct_dot(q))
        q = orth(xc_dot(z))
    b = xct_dot(q).T  # (p, d) = Q.T (X - mean)
    _, s, vt = np.linalg.svd(b, full_matrices=False)
    return s[:k], vt[:k]


def _project_with(block, mean, m):
    return (np.asarray(block, dtype=np.float64) - mean) @ m


def _tdot(block, q, mean):
    return (np.asarray(block, dtype=np.float64) - mean).T @ q


def _sum(parts):
    return np.sum(parts, axis=0)


@PCA
def pca(X, n_components: int = 2, *, method: str = "auto", n_iter: int = 4,
        oversample: int = 10, seed: int | None = 0) -> PCAResult:
    """Project the rows of ``X`` on their first principal components.

    Parameters
    ----------
    X : numpy or dask array, shape (n, d)
        Finite numbers; Dask arrays are processed chunk by chunk over rows.
    n_components : int
        Number of components k (1 <= k <= min(n, d)).
    method : {"auto", "covariance", "randomized"}
        ``covariance`` is exact (d x d covariance, ``eigh``); ``randomized`` is Halko et
        al.'s randomized SVD for wide data. ``auto``: covariance up to d = 2000.
    n_iter, oversample : int
        Power iterations and extra sketch columns of the randomized path.
    seed : int, optional
        Seed of the randomized path's Gaussian sketch.

    Returns
    -------
    PCAResult
        ``.embedding`` (n, k) (Dask for Dask input), ``.components`` (k, d),
        ``.explained_variance`` (k,) (ddof=1, like scikit-learn), ``.explained_variance_ratio``,
        ``.mean`` (d,), ``.method``.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]])
    >>> pca(X, 1).explained_variance
    array([2.])
    """
    # NaN and inf are refused once the scatter turns out non-finite: no pass of its own
    X = check_array(X, "X", _FUNC, ndim=2, min_len=2, allow_nan=True)
    n, d = X.shape
    if n_components > min(n, d):
        raise InvalidInput(message("n_components", _FUNC, f"at most min(n_rows, n_columns) = "
                                   f"{min(n, d)}", n_components))
    if method == "auto":
        method = "covariance" if d <= _EXACT_MAX_D else "randomized"
    lazy = is_dask(X)
    if lazy:
        if X.numblocks[1] > 1:
            X = X.rechunk({1: -1})
        cnt, mean, m2 = covariance_reduction(X).compute()
    else:
        cnt, mean, m2 = _scatter(X)
        if not _finite(mean, m2):
            check_array(X, "X", _FUNC, ndim=2, min_len=2)  # raises for NaN or inf
    total_var = np.trace(m2) / (cnt - 1)
    k = n_components
    if method == "covariance":
        w, v = np.linalg.eigh(m2 / (cnt - 1))
        order = np.argsort(w)[::-1][:k]
        var = np.maximum(w[order], 0.0)
        comps = v[:, order].T
    else:
        s, comps = _randomized(X, mean, k, oversample, n_iter, seed)
        var = s**2 / (cnt - 1)
    comps = _flip(comps)
    ratio = var / total_var if total_var > 0 else np.zeros_like(var)
    if lazy:
        import dask.array as da

        emb = da.map_blocks(_project, X, mean, comps, dtype=np.float64,
                            chunks=(X.chunks[0], (k,)))
    else:
        emb = _project(X, mean, comps)
    return PCAResult(embedding=emb, components=comps, explained_variance=var,
                     explained_variance_ratio=ratio, mean=mean, method=method)


def covariance_reduction(X) -> Reduction:
    """The pass that gives PCA's (count, mean, centred scatter matrix) as a
    :class:`~hpcjobs.kernels._reduction.Reduction` (Chan et al.'s merge of chunk bases)."""
    return Reduction("pca-covariance", (X,), _checked_scatter, _merge, as_is)


def _checked_scatter(block):
    bases = _scatter(block)
    block = np.asarray(block)
    if not _finite(*bases[1:]) and block.dtype.kind == "f" and not np.isfinite(block).all():
        from hpcjobs.kernels._validation import nonfinite_error

        raise nonfinite_error("X", _FUNC)
    return bases


def _finite(mean: np.ndarray, m2: np.ndarray) -> bool:
    """False where a NaN or inf in the data (or an overflow) spoilt the scatter."""
    return bool(np.isfinite(mean).all() and np.isfinite(m2).all())
