"""``matrix_profile`` (z-normalised self-join, banded diagonals), ``discords`` and ``motifs``.

The distance matrix of all window pairs ``(i, j)`` is walked along its diagonals ``j - i = g``
(``g`` beyond the exclusion zone ``ceil(m / 4)``), updating the windows' covariance in O(1) per
step as stumpy does; each pair's Pearson correlation updates the best match of both its row
``i`` and its column ``j``. The diagonals go in bands of ``_BAND`` neighbours walked row by row:
a row of a band is one loop over its diagonals with no dependence between them (SIMD, as in
SCAMP), whose column terms stay in cache from one row to the next. Bands are split between the
task's Numba threads (``task_threads()``) by cost (number of pairs), each thread keeps its own
best-so-far arrays, merged at the end; correlations become distances only at the end.

Distributed (Dask ``T``), the upper triangle is cut into tiles (row block x column block of
windows, the blocks following ``T``'s chunks or ``tile``); a tile reads only
``T[r0 : r1 + m - 1]`` and ``T[c0 : c1 + m - 1]`` and folds the best match of each of its rows
and columns into the running best of its row block and of its column block (so tile (p, q) runs
after (p, q - 1) and (p - 1, q): a wavefront). No worker holds the whole series, and no tile
result waits in memory for a reduction: a worker holds O(tile) values per running task.

Non-finite and constant windows are handled as stumpy does: a window holding NaN or inf is never
matched (its profile is ``inf``, its index ``-1``); two constant windows (peak-to-peak 0) are at
distance 0, a constant and a non-constant window at ``sqrt(m)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np

from hpcjobs.kernels._jit import njit, task_threads
from hpcjobs.kernels._validation import (
    InvalidInput,
    InvalidType,
    check_array,
    check_int,
    is_dask,
    message,
)
from hpcjobs.kernels.mining.params import DISCORDS, MATRIX_PROFILE, MOTIFS

_FUNC = "matrix_profile"
_P_NORM_THRESHOLD = 1e-14  # stumpy.config.STUMPY_P_NORM_THRESHOLD
_MAX_BLOCKS = 64  # default tiling: T's chunks, or n / 64 windows when there are more chunks


@dataclass(frozen=True)
class MatrixProfile:
    """z-normalised matrix profile: ``profile[i]`` is the distance from window ``i`` to its
    nearest non-trivial match ``index[i]`` (``inf`` and ``-1`` for windows holding NaN/inf)."""

    profile: np.ndarray
    index: np.ndarray
    m: int
    exclusion_zone: int


@dataclass(frozen=True)
class Discords:
    """Top anomalies: window starts ``index`` and their profile values ``distance``."""

    index: np.ndarray
    distance: np.ndarray


@dataclass(frozen=True)
class Motifs:
    """Top motif pairs: ``index`` (k, 2) window starts and their distance."""

    index: np.ndarray
    distance: np.ndarray


# ---------------------------------------------------------------------------------------------
# chunk level


@njit
def _window_stats(T, m):
    """Per window of ``T``: mean, 1/std (1 for constant), mean of the first m - 1 values (for
    every start up to ``len(T) - m + 1``), finiteness and constancy. Non-finite values are
    replaced by 0 in the returned copy, as stumpy does."""
    n = T.shape[0]
    n_w = n - m + 1
    finite = np.empty(n, dtype=np.bool_)
    Tz = np.empty(n, dtype=np.float64)
    for t in range(n):
        x = T[t]
        finite[t] = np.isfinite(x)
        Tz[t] = x if finite[t] else 0.0
    isfinite = np.ones(n_w, dtype=np.bool_)
    run = 0  # non-finite values in the current window
    for t in range(m):
        if not finite[t]:
            run += 1
    for i in range(n_w):
        if i > 0:
            if not finite[i - 1]:
                run -= 1
            if not finite[i + m - 1]:
                run += 1
        isfinite[i] = run == 0
    mean = np.empty(n_w, dtype=np.float64)
    sig_inv = np.empty(n_w, dtype=np.float64)
    isconst = np.zeros(n_w, dtype=np.bool_)
    mean_m1 = np.empty(n_w + 1, dtype=np.float64)
    for i in range(n_w):
        s = 0.0
        lo = Tz[i]
        hi = Tz[i]
        for t in range(i, i + m):
            x = Tz[t]
            s += x
            lo = min(lo, x)
            hi = max(hi, x)
        mu = s / m
        v = 0.0
        for t in range(i, i + m):
            d = Tz[t] - mu
            v += d * d
        sd = math.sqrt(v / m)
        mean[i] = mu
        isconst[i] = isfinite[i] and hi == lo
        sig_inv[i] = 1.0 if isconst[i] or sd == 0.0 else 1.0 / sd
    for i in range(mean_m1.shape[0]):
        s = 0.0
        for t in range(i, i + m - 1):
            s += Tz[t]
        mean_m1[i] = s / (m - 1)
    return Tz, mean, sig_inv, mean_m1, isfinite, isconst


@njit
def _diagonal_span(g, lr, lc):
    """Local rows ``[i0, i1)`` of diagonal ``j - i = g`` in an ``lr x lc`` tile."""
    return max(0, -g), min(lr, lc - g)


_BAND = 256  # diagonals per band: one row of a band is one SIMD loop over neighbouring diagonals


@njit
def _side_terms(Tz, mean_m1, sig_inv, isfinite, isconst, m):
    """Per window of one side, as rows of one array: stumpy's two covariance-update terms
    (``T[i + m - 1] - mean(T[i : i + m - 1])`` and ``T[i - 1] - mean(T[i : i + m - 1])``),
    1/std (0 for a constant window or one holding NaN/inf) and the term added to a pair's
    correlation (0.5 for a constant window, -inf for one holding NaN/inf, else 0): with them
    stumpy's rules need no branch (two constant windows 0 + 0.5 + 0.5 = 1, a constant and a
    plain one 0.5, a window holding NaN/inf never matched)."""
    n_w = isfinite.shape[0]
    out = np.empty((4, n_w))
    for i in range(n_w):
        out[0, i] = Tz[i + m - 1] - mean_m1[i]
        out[1, i] = (Tz[i - 1] if i > 0 else 0.0) - mean_m1[i]
        plain = isfinite[i] and not isconst[i]
        out[2, i] = sig_inv[i] if plain else 0.0
        out[3, i] = 0.0 if plain else (0.5 if isconst[i] else -np.inf)
    return out


@njit
def _band(Ta, Tb, m, mu_a, mu_b, rows, cols, g0, lr, lc, r0, c0, rho_r, idx_r, rho_c, idx_c,
          cov, rho):
    """Diagonals ``g0 .. g0 + len(cov) - 1`` of one tile, row by row.

    A row of the band is one loop over its diagonals (columns ``i + g0 + b``) with no
    dependence between them, so it runs as SIMD: each diagonal's covariance steps down from the
    row above (stumpy's O(1) update) and becomes a Pearson correlation. The loop only counts
    the correlations that beat the row's best and their columns' best (after the first rows of
    a band, rarely any); only then is the row scanned again to update them.
    Indices are unsigned in the hot loops (no wraparound checks).
    """
    inv_m = 1.0 / m
    constant = (m - 1) * inv_m * inv_m
    width = cov.shape[0]
    df_c = cols[0]
    dg_c = cols[1]
    sinv_c = cols[2]
    add_c = cols[3]
    live = width  # lanes [live, width) have started (a lane starts where its diagonal does)
    for i in range(max(0, -(g0 + width - 1)), min(lr, lc - g0)):
        b_lo = max(0, -i - g0)
        b_hi = min(width, lc - i - g0)
        for b in range(b_lo, min(live, b_hi)):  # diagonals starting on this row
            j = i + g0 + b
            c = 0.0
            for t in range(m):
                c += (Tb[j + t] - mu_b[j]) * (Ta[i + t] - mu_a[i])
            cov[b] = c * inv_m
        first = min(live, b_hi)
        live = min(live, b_lo)
        ui = np.uint64(i)
        df = rows[0, ui]
        dg = rows[1, ui]
        sinv = rows[2, ui]
        add = rows[3, ui]
        best = rho_r[ui]
        base = np.uint64(i + g0)
        for b in range(np.uint64(first), np.uint64(b_hi)):  # the lanes that started above
            j = base + b
            cov[b] = cov[b] + constant * (df_c[j] * df - dg_c[j] * dg)
        row_hits = 0
        col_hits = 0
        for b in range(np.uint64(b_lo), np.uint64(b_hi)):
            j = base + b
            x = cov[b] * sinv_c[j] * sinv
            r = (x if x < 1.0 else 1.0) + (add + add_c[j])
            rho[b] = r
            row_hits += r > best
            col_hits += r > rho_c[j]
        if col_hits:
            for b in range(b_lo, b_hi):
                j = i + g0 + b
                if rho[b] > rho_c[j]:
                    rho_c[j] = rho[b]
                    idx_c[j] = r0 + i
        if row_hits:
            for b in range(b_lo, b_hi):
                if rho[b] > best:
                    best = rho[b]
                    idx_r[ui] = c0 + i + g0 + b
            rho_r[ui] = best


@njit
def _band_range(Ta, Tb, m, mu_a, mu_b, rows, cols, g_lo, n_diag, lr, lc, k_start, k_stop, r0,
                c0, rho_r, idx_r, rho_c, idx_c):
    """Bands ``k_start:k_stop`` (band ``k``: diagonals ``g_lo + k * _BAND`` on) of one tile into
    this thread's best-so-far buffers."""
    cov = np.empty(_BAND)
    rho = np.empty(_BAND)
    for k in range(k_start, k_stop):
        width = min(_BAND, n_diag - k * _BAND)
        _band(Ta, Tb, m, mu_a, mu_b, rows, cols, g_lo + k * _BAND, lr, lc, r0, c0, rho_r, idx_r,
              rho_c, idx_c, cov[:width], rho[:width])


@njit
def _merge_best(rho, idx, rho_b, idx_b):
    """``(rho, idx) = max`` of both, the smaller index winning exact ties."""
    for i in range(rho.shape[0]):
        if rho_b[i] > rho[i] or (rho_b[i] == rho[i] and idx_b[i] >= 0 and
                                 (idx[i] < 0 or idx_b[i] < idx[i])):
            rho[i] = rho_b[i]
            idx[i] = idx_b[i]


@njit
def _cost_ranges(costs, n_parts):
    """Split ``costs`` into ``n_parts`` contiguous ranges of near-equal total cost."""
    out = np.zeros((n_parts, 2), dtype=np.int64)
    total = costs.sum()
    acc = 0
    k = 0
    for d in range(costs.shape[0]):
        acc += costs[d]
        while k < n_parts - 1 and acc * n_parts >= total * (k + 1):
            out[k, 1] = d + 1
            out[k + 1, 0] = d + 1
            k += 1
    out[n_parts - 1, 1] = costs.shape[0]
    for t in range(n_parts):
        if out[t, 0] > out[t, 1]:
            out[t, 0] = out[t, 1]
    return out


@njit(parallel=True)
def _tile(Ta, Tb, m, r0, c0, excl, n_threads):
    """Best match (Pearson, index) of every row and column window of one tile, with ``j - i >
    excl`` in global starts. ``Ta``/``Tb`` hold the tile's rows' and columns' values."""
    Ta_z, mu_a, sinv_a, mm1_a, fin_a, con_a = _window_stats(Ta, m)
    Tb_z, mu_b, sinv_b, mm1_b, fin_b, con_b = _window_stats(Tb, m)
    lr = mu_a.shape[0]
    lc = mu_b.shape[0]
    g_lo = max(-(lr - 1), excl + 1 - (c0 - r0))
    g_hi = lc - 1
    n_diag = max(g_hi - g_lo + 1, 0)
    n_bands = -(-n_diag // _BAND)
    costs = np.zeros(n_bands, dtype=np.int64)
    for d in range(n_diag):
        i0, i1 = _diagonal_span(g_lo + d, lr, lc)
        costs[d // _BAND] += max(i1 - i0, 0)
    n_parts = max(1, min(n_threads, n_bands))
    ranges = _cost_ranges(costs, n_parts)
    rho_r = np.full((n_parts, lr), -np.inf)
    idx_r = np.full((n_parts, lr), -1, dtype=np.int64)
    rho_c = np.full((n_parts, lc), -np.inf)
    idx_c = np.full((n_parts, lc), -1, dtype=np.int64)
    rows = _side_terms(Ta_z, mm1_a, sinv_a, fin_a, con_a, m)
    cols = _side_terms(Tb_z, mm1_b, sinv_b, fin_b, con_b, m)
    for t in numba.prange(n_parts):
        _band_range(Ta_z, Tb_z, m, mu_a, mu_b, rows, cols, g_lo, n_diag, lr, lc, ranges[t, 0],
                    ranges[t, 1], r0, c0, rho_r[t], idx_r[t], rho_c[t], idx_c[t])
    for t in range(1, n_parts):
        _merge_best(rho_r[0], idx_r[0], rho_r[t], idx_r[t])
        _merge_best(rho_c[0], idx_c[0], rho_c[t], idx_c[t])
    return rho_r[0].copy(), idx_r[0].copy(), rho_c[0].copy(), idx_c[0].copy()


@njit
def _to_distance(rho, m):
    out = np.empty(rho.shape[0], dtype=np.float64)
    for i in range(rho.shape[0]):
        p = abs(2.0 * m * (1.0 - rho[i]))
        out[i] = 0.0 if p < _P_NORM_THRESHOLD else math.sqrt(p)
    return out


# ---------------------------------------------------------------------------------------------
# array level


def _tile_fold(acc_rows, acc_cols, Ta, Tb, m, r0, c0, excl):
    """One tile, folded into its row block's and column block's best so far (``None``: none
    yet). For a tile on the diagonal (``acc_cols`` unused) both sides go to the rows."""
    Ta = np.ascontiguousarray(Ta, dtype=np.float64)
    Tb = np.ascontiguousarray(Tb, dtype=np.float64)
    rho_r, idx_r, rho_c, idx_c = _tile(Ta, Tb, m, r0, c0, excl, task_threads())
    if r0 == c0:
        _merge_best(rho_r, idx_r, rho_c, idx_c)
        return _fold(acc_rows, rho_r, idx_r), None
    return _fold(acc_rows, rho_r, idx_r), _fold(acc_cols, rho_c, idx_c)


def _fold(acc, rho, idx):
    """Merge one tile's (rho, idx) for a block into the block's best so far (a new pair)."""
    if acc is None:
        return rho, idx
    rho_acc, idx_acc = acc[0].copy(), acc[1].copy()  # never mutate a task's input
    _merge_best(rho_acc, idx_acc, rho, idx)
    return rho_acc, idx_acc


def _finish(best, m):
    rho, idx = best
    return _to_distance(rho, m), idx


@MATRIX_PROFILE
def matrix_profile(T, m: int, *, tile: int | None = None) -> MatrixProfile:
    """z-normalised matrix profile of a time series (self-join), as ``stumpy.stump``.

    Parameters
    ----------
    T : 1-D array, NumPy or Dask
        The series. NaN/inf make the windows holding them unmatched (profile ``inf``, index
        -1). A NumPy series without two finite windows is refused; for a Dask series that
        would need a pass over the data, so its profile is then all ``inf``.
    m : int
        Window length, 3 <= m <= len(T) / 2.
    tile : int, optional
        Windows per tile side for Dask input (default: ``T``'s chunks, or 1/64 of the windows
        when ``T`` has more than 64 chunks). A NumPy ``T`` is computed in one process with
        Numba threads.

    Returns
    -------
    MatrixProfile
        ``.profile`` (n - m + 1,) distances and ``.index`` (n - m + 1,) of the nearest
        non-trivial match (exclusion zone ``ceil(m / 4)``); Dask arrays for Dask ``T``.

    Examples
    --------
    >>> import numpy as np
    >>> T = np.sin(2 * np.pi * np.arange(400) / 40)  # exactly periodic: every window repeats
    >>> mp = matrix_profile(T, 20)
    >>> mp.profile.shape, bool(mp.profile.max() < 1e-3)
    ((381,), True)
    """
    T = check_array(T, "T", _FUNC, ndim=1, allow_nan=True,
                    fix="For several series, compute one profile per series.")
    n = int(T.shape[0])
    m = check_int(m, "m", _FUNC, low=3, high=max(n // 2, 3))
    if m > n // 2:
        raise InvalidInput(message("m", _FUNC, f"an int in the range [3, {n // 2}] (len(T) / 2)",
                                   m))
    T = T.astype(np.float64)
    excl = int(math.ceil(m / 4))
    n_w = n - m + 1
    if not is_dask(T):
        rho_r, idx_r, rho_c, idx_c = _tile(T, T, m, 0, 0, excl, task_threads())
        _merge_best(rho_r, idx_r, rho_c, idx_c)
        if not np.isfinite(rho_r).any():
            raise InvalidInput(message("T", _FUNC, "a series with at least two finite windows "
                                       "of length m", T, "Drop or impute the missing values."))
        return MatrixProfile(_to_distance(rho_r, m), idx_r, m, excl)
    if tile is not None:
        cuts = np.arange(0, n_w, tile)
    elif len(T.chunks[0]) > _MAX_BLOCKS:  # (blocks^2 / 2 tiles: keep the graph small)
        cuts = np.arange(0, n_w, -(-n_w // _MAX_BLOCKS))
    else:
        cuts = np.cumsum((0,) + T.chunks[0][:-1])
    cuts = np.unique(np.clip(cuts, 0, n_w))
    bounds = np.append(cuts[cuts < n_w], n_w)
    return _matrix_profile_dask(T, m, excl, bounds)


def _matrix_profile_dask(T, m: int, excl: int, bounds: np.ndarray) -> MatrixProfile:
    import dask
    import dask.array as da

    n_blocks = bounds.size - 1
    # A tile task takes the best-so-far of its row block and of its column block and returns
    # them updated: no tile result waits in memory for a reduction, and the tiles run as a
    # wavefront (tile (p, q) after (p, q - 1) and (p - 1, q)), at most n_blocks at a time.
    best: list = [None] * n_blocks
    for p in range(n_blocks):
        r0, r1 = int(bounds[p]), int(bounds[p + 1])
        for q in range(p, n_blocks):
            c0, c1 = int(bounds[q]), int(bounds[q + 1])
            if (c1 - 1) - r0 <= excl:
                continue  # no pair of this tile lies beyond the exclusion zone
            out = dask.delayed(_tile_fold, pure=True, nout=2)(
                best[p], None if q == p else best[q], T[r0:r1 + m - 1], T[c0:c1 + m - 1], m,
                r0, c0, excl)
            best[p] = out[0]
            if q != p:
                best[q] = out[1]
    profiles, indices = [], []
    for p in range(n_blocks):
        size = int(bounds[p + 1] - bounds[p])
        if best[p] is None:  # only possible for a tiny series: nothing beyond the exclusion
            best[p] = (np.full(size, -np.inf), np.full(size, -1, dtype=np.int64))
        done = dask.delayed(_finish, pure=True, nout=2)(best[p], m)
        profiles.append(da.from_delayed(done[0], (size,), dtype=np.float64))
        indices.append(da.from_delayed(done[1], (size,), dtype=np.int64))
    return MatrixProfile(da.concatenate(profiles), da.concatenate(indices), m, excl)


# ---------------------------------------------------------------------------------------------
# discords and motifs


def _profile_arrays(profile, func: str):
    if isinstance(profile, MatrixProfile):
        P, index, excl = profile.profile, profile.index, profile.exclusion_zone
        P = np.asarray(P.compute() if is_dask(P) else P, dtype=np.float64)
        index = np.asarray(index.compute() if is_dask(index) else index)
        return P, index, excl
    P = check_array(profile, "profile", func, ndim=1, allow_nan=True)
    P = np.asarray(P.compute() if is_dask(P) else P, dtype=np.float64)
    return P, None, None


def _exclusion(excl, default, func):
    if excl is None:
        if default is None:
            raise InvalidType(message("exclusion_zone", func, "an int when the profile is a plain "
                                      "array (e.g. ceil(m / 4))", excl))
        return default
    return check_int(excl, "exclusion_zone", func, low=0)


@DISCORDS
def discords(profile, k: int = 3, *, exclusion_zone: int | None = None) -> Discords:
    """The ``k`` windows farthest from their nearest match (top anomalies).

    Greedy: take the largest finite profile value, exclude ``exclusion_zone`` windows either
    side of it, repeat. Fewer than ``k`` are returned when the exclusion zones cover the series.

    Parameters
    ----------
    profile : MatrixProfile or 1-D array
    k : int, number of discords (default 3).
    exclusion_zone : int, optional
        Default: the profile's own (``ceil(m / 4)``); required for a plain array.

    Examples
    --------
    >>> import numpy as np
    >>> T = np.sin(2 * np.pi * np.arange(400) / 40); T[200] += 2.0
    >>> int(discords(matrix_profile(T, 20), 1).index[0]) in range(181, 201)
    True
    """
    func = "discords"
    P, _, default = _profile_arrays(profile, func)
    k = check_int(k, "k", func, low=1, high=P.shape[0])
    excl = _exclusion(exclusion_zone, default, func)
    work = np.where(np.isfinite(P), P, -np.inf)
    picked, dist = [], []
    for _ in range(k):
        i = int(np.argmax(work))
        if work[i] == -np.inf:
            break
        picked.append(i)
        dist.append(P[i])
        work[max(0, i - excl):i + excl + 1] = -np.inf
    return Discords(np.asarray(picked, dtype=np.int64), np.asarray(dist, dtype=np.float64))


@MOTIFS
def motifs(profile, k: int = 3, *, exclusion_zone: int | None = None) -> Motifs:
    """The ``k`` closest pairs of windows (top motifs), without overlaps.

    Greedy: take the smallest profile value ``P[i]`` with its match ``j = index[i]``, exclude
    ``exclusion_zone`` windows around both ``i`` and ``j``, repeat.

    Parameters
    ----------
    profile : MatrixProfile
        The result of :func:`matrix_profile` (the match indices are needed).
    k : int, number of motif pairs (default 3).
    exclusion_zone : int, optional
        Default: the profile's own, ``ceil(m / 4)``.

    Examples
    --------
    >>> import numpy as np
    >>> T = np.random.default_rng(0).standard_normal(300); T[50:70] = T[200:220]
    >>> sorted(motifs(matrix_profile(T, 20), 1).index[0].tolist())
    [50, 200]
    """
    func = "motifs"
    if not isinstance(profile, MatrixProfile):
        raise InvalidType(message("profile", func, "the result of matrix_profile (with .index)",
                                  profile))
    P, index, default = _profile_arrays(profile, func)
    k = check_int(k, "k", func, low=1, high=P.shape[0])
    excl = _exclusion(exclusion_zone, default, func)
    work = np.where(np.isfinite(P) & (index >= 0), P, np.inf)
    pairs, dist = [], []
    for _ in range(k):
        i = int(np.argmin(work))
        if work[i] == np.inf:
            break
        j = int(index[i])
        pairs.append((min(i, j), max(i, j)))
        dist.append(P[i])
        for c in (i, j):
            work[max(0, c - excl):c + excl + 1] = np.inf
    return Motifs(np.asarray(pairs, dtype=np.int64).reshape(-1, 2),
                  np.asarray(dist, dtype=np.float64))
