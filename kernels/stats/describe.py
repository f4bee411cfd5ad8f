"""``describe``: per-column count, mean, std, min, max and histogram of a 2-D array.

Statistics come from mergeable bases (count, mean, M2, min, max; Chan et al.'s pairwise
update), so chunks are summarised independently and combined in a tree: the result does not
depend on the chunking. Within a chunk the rows are cut into cache-sized blocks, each block is
summarised with an exact two-pass mean/M2, and blocks are merged; threads work on disjoint row
ranges and are merged serially at the end (the sweeps are described at the chunk level
below). The histogram needs the range first, so it is a
second pass over the data, unless ``range`` or the columns' ``extremes`` (hpcjobs records
them per chunk) are given: then one pass (:func:`describe_reduction`). NaN values are skipped, so the
statistics equal ``numpy.nanmean``/``nanstd``/``nanmin``/``nanmax`` (and ``numpy.mean`` etc.
when there is no NaN); ``count`` is the number of non-NaN values. Infinite values are refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numba
import numpy as np

from hpcjobs.kernels._jit import njit, task_threads, thread_ranges
from hpcjobs.kernels._reduction import Reduction
from hpcjobs.kernels._validation import (
    InvalidInput,
    check_array,
    check_cells,
    is_dask,
    message,
)
from hpcjobs.kernels.stats.params import DESCRIBE


@dataclass(frozen=True)
class DescribeResult:
    """Per-column summary of a 2-D array (each field has one entry per column)."""

    count: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    min: np.ndarray
    max: np.ndarray
    hist: np.ndarray
    bin_edges: np.ndarray


# ---------------------------------------------------------------------------------------------
# chunk level
#
# A chunk is swept in blocks of _BLOCK_ROWS rows. The block's columns are copied into
# contiguous buffers in one sweep over its rows (padded with NaN, which every statistic skips,
# so the sweeps always run exactly _BLOCK_ROWS values: Numba vectorises loops of constant
# length), and each column is then swept twice while it is in cache: count, sum, min and
# max; then M2 about the block's mean together with each value's histogram bin (as an int32:
# see _sweep_m2_bins). The bins are scattered into the counts last. Min and max are reduced
# over the doubles' bits as ordered integers (``_key``): LLVM vectorises integer min/max
# reductions, not floating-point ones (``hpcjobs bench describe`` times the whole chunk).


_BLOCK_ROWS = 2048
_NSTATS = 5  # count, mean, M2, min, max
_SIGN = np.int64(0x7FFFFFFFFFFFFFFF)
# far above the error of (x - lo) * scale and of numpy's linspace edges (a few ulps of bins)
_MARGIN = 1e-7


@njit
def _merge_into(dst, src):
    """Merge the bases ``src`` (5, d) into ``dst`` (5, d) in place (Chan's pairwise update)."""
    for j in range(dst.shape[1]):
        nb = src[0, j]
        if nb == 0:
            continue
        na = dst[0, j]
        if na == 0:
            for s in range(_NSTATS):
                dst[s, j] = src[s, j]
            continue
        n = na + nb
        delta = src[1, j] - dst[1, j]
        dst[1, j] = dst[1, j] + delta * (nb / n)
        dst[2, j] = dst[2, j] + src[2, j] + delta * delta * (na * nb / n)
        dst[0, j] = n
        dst[3, j] = min(dst[3, j], src[3, j])
        dst[4, j] = max(dst[4, j], src[4, j])


@njit
def _key(bits):
    """The bits of a double as an int64 that orders as the double does (and back again)."""
    return bits ^ ((bits >> 63) & _SIGN)


# reassociation lets the sums vectorise (in blocks, as numpy's pairwise sums do; within 1e-15
# of a sequential sum here); NaN and inf keep their IEEE meaning
_SWEEP = {"reassoc", "nsz", "contract"}


@njit(fastmath=_SWEEP)
def _sweep_sums(col, bits):
    """Count, sum, min and max (as keys) of the non-NaN values of a block's column."""
    cnt = 0.0
    total = 0.0
    kmin = _SIGN
    kmax = -_SIGN
    for t in range(_BLOCK_ROWS):
        x = col[t]
        b = bits[t]
        key = b ^ ((b >> 63) & _SIGN)  # _key, written out: a call here stops vectorising
        ok = x == x
        cnt += 1.0 if ok else 0.0
        total += x if ok else 0.0
        low = key if ok else _SIGN
        high = key if ok else -_SIGN
        kmin = min(kmin, low)
        kmax = max(kmax, high)
    return cnt, total, kmin, kmax


@njit(fastmath=_SWEEP)
def _sweep_m2(col, mean):
    m2 = 0.0
    for t in range(_BLOCK_ROWS):
        x = col[t]
        dev = x - mean
        m2 += dev * dev if x == x else 0.0
    return m2


@njit(fastmath=_SWEEP)
def _sweep_m2_bins(col, mean, lo, hi, scale, bins, kbuf):
    """M2 about ``mean`` and each value's bin (``bins`` when dropped: NaN, out of range) as
    ``floor((x - lo) * scale)``; True when a value lies within rounding error of an edge."""
    m2 = 0.0
    near = False
    for t in range(_BLOCK_ROWS):
        x = col[t]
        dev = x - mean
        m2 += dev * dev if x == x else 0.0
        keep = (x >= lo) & (x <= hi)  # NaN compares false
        f = (x - lo) * scale if keep else 0.0
        # int32, not int64: CPUs without AVX-512 convert packed doubles to int32 only, so
        # an int64 conversion keeps the loop scalar (a bin index is below 2**26 anyway)
        k = min(np.int32(f), np.int32(bins - 1))
        frac = f - k
        near |= keep & ((frac < _MARGIN) | (frac > 1.0 - _MARGIN))
        kbuf[t] = k if keep else np.int32(bins)
    return m2, near


@njit
def _exact_bins(col, lo, scale, edges_j, bins, kbuf):
    """Bins of the kept values of a block checked against the actual edges, as
    ``numpy.histogram`` corrects them (for blocks with values near an edge)."""
    for t in range(_BLOCK_ROWS):
        if kbuf[t] == bins:
            continue
        x = col[t]
        k = min(int((x - lo) * scale), bins - 1)
        if x < edges_j[k]:
            k -= 1
        elif k != bins - 1 and x >= edges_j[k + 1]:
            k += 1
        kbuf[t] = k


@njit
def _columns(X, r0, r1, cols):
    """Rows ``[r0, r1)`` of ``X`` into the rows of ``cols`` (d, _BLOCK_ROWS) as float64
    columns, the rest of each NaN: one sweep over the block's rows (a strided copy a column
    at a time reads every cache line of the block once per column)."""
    n = r1 - r0
    d = X.shape[1]
    for t in range(n):
        for j in range(d):
            cols[j, t] = np.float64(X[r0 + t, j])
    for j in range(d):
        for t in range(n, _BLOCK_ROWS):
            cols[j, t] = np.nan


@njit
def _bins_into(col, mean, lo, hi, scale, edges_j, bins, kbuf, counts_j):
    """Histogram a block's column into ``counts_j`` (bins + 1: the last one takes what is
    dropped); M2 about ``mean`` is the by-product returned."""
    m2, near = _sweep_m2_bins(col, mean, lo, hi, scale, bins, kbuf)
    if near:
        _exact_bins(col, lo, scale, edges_j, bins, kbuf)
    for t in range(_BLOCK_ROWS):
        counts_j[kbuf[t]] += 1
    return m2


@njit
def _moments_range(X, start, stop, out, block, lo, hi, scale, edges, counts):
    """Bases of rows ``[start, stop)`` of ``X`` into ``out`` (5, d); ``block`` is scratch (5, d).

    With ``counts`` of shape (d, bins + 1 > 1), the rows are also histogrammed into it in the
    same sweep.
    """
    d = X.shape[1]
    bins = counts.shape[1] - 1
    cols = np.empty((d, _BLOCK_ROWS))
    kbuf = np.empty(_BLOCK_ROWS, dtype=np.int32)
    ext = np.empty(2, dtype=np.int64)
    ext_values = ext.view(np.float64)
    out[0, :] = 0.0
    for r0 in range(start, stop, _BLOCK_ROWS):
        r1 = min(r0 + _BLOCK_ROWS, stop)
        _columns(X, r0, r1, cols)
        for j in range(d):
            col = cols[j]
            cnt, total, kmin, kmax = _sweep_sums(col, col.view(np.int64))
            mean = total / cnt if cnt > 0 else 0.0
            if bins > 0:
                m2 = _bins_into(col, mean, lo[j], hi[j], scale[j], edges[j], bins, kbuf,
                                counts[j])
            else:
                m2 = _sweep_m2(col, mean)
            block[0, j] = cnt
            block[1, j] = mean
            block[2, j] = m2
            ext[0] = _key(kmin)
            ext[1] = _key(kmax)
            block[3, j] = ext_values[0] if cnt > 0 else np.inf
            block[4, j] = ext_values[1] if cnt > 0 else -np.inf
        _merge_into(out, block)


def _moments(X, lo, hi, scale, edges, n_threads: int):
    """Bases (5, d) of a whole chunk and its histogram (d, bins) where ``edges`` has
    bins + 1 > 1 columns (else (d, 0)); the middle result is 1 if the chunk holds an infinite
    value. Threads work on disjoint row ranges, merged serially; one thread runs outside a
    parallel region (entering one costs milliseconds per chunk even with one thread)."""
    d, bins = X.shape[1], max(edges.shape[1] - 1, 0)
    if n_threads == 1:
        out, block = np.zeros((_NSTATS, d)), np.zeros((_NSTATS, d))
        hist = np.zeros((d, bins + 1), dtype=np.int64)
        _moments_range(X, 0, X.shape[0], out, block, lo, hi, scale, edges, hist)
        parts, hists = out[None], hist[None]
    else:
        parts, hists = _moments_threads(X, lo, hi, scale, edges, n_threads)
    return _merged_parts(parts, hists)


@njit(parallel=True)
def _moments_threads(X, lo, hi, scale, edges, n_threads):
    d, bins = X.shape[1], edges.shape[1] - 1
    ranges = thread_ranges(X.shape[0], n_threads)
    parts = np.zeros((ranges.shape[0], _NSTATS, d))
    scratch = np.zeros((ranges.shape[0], _NSTATS, d))
    hists = np.zeros((ranges.shape[0], d, max(bins, 0) + 1), dtype=np.int64)
    for t in numba.prange(ranges.shape[0]):
        _moments_range(X, ranges[t, 0], ranges[t, 1], parts[t], scratch[t], lo, hi, scale,
                       edges, hists[t])
    return parts, hists


@njit
def _merged_parts(parts, hists):
    """The threads' bases merged, whether a value was infinite, the histogram without its
    bin of dropped values."""
    d = parts.shape[2]
    out = np.zeros((_NSTATS, d))
    for t in range(parts.shape[0]):
        _merge_into(out, parts[t])
    bad = 0
    for j in range(d):
        if out[0, j] > 0 and (out[3, j] == -np.inf or out[4, j] == np.inf):
            bad = 1
    return out, bad, hists.sum(axis=0)[:, :hists.shape[2] - 1]


@njit
def _hist_range(X, start, stop, lo, hi, scale, edges, counts):
    """Histogram rows ``[start, stop)`` into ``counts`` (d, bins + 1), binned like
    ``numpy.histogram`` (``scale = bins / (hi - lo)``, numpy's ``norm``)."""
    d, bins = X.shape[1], counts.shape[1] - 1
    cols = np.empty((d, _BLOCK_ROWS))
    kbuf = np.empty(_BLOCK_ROWS, dtype=np.int32)
    for r0 in range(start, stop, _BLOCK_ROWS):
        r1 = min(r0 + _BLOCK_ROWS, stop)
        _columns(X, r0, r1, cols)
        for j in range(d):
            _bins_into(cols[j], 0.0, lo[j], hi[j], scale[j], edges[j], bins, kbuf, counts[j])


@njit(parallel=True)
def _histogram(X, lo, hi, scale, edges, n_threads):
    """The histogram alone (the data's range was found in a pass of its own)."""
    d, bins = edges.shape[0], edges.shape[1] - 1
    ranges = thread_ranges(X.shape[0], n_threads)
    parts = np.zeros((ranges.shape[0], d, bins + 1), dtype=np.int64)
    for t in numba.prange(ranges.shape[0]):
        _hist_range(X, ranges[t, 0], ranges[t, 1], lo, hi, scale, edges, parts[t])
    return parts.sum(axis=0)[:, :bins]


# ---------------------------------------------------------------------------------------------
# array level


#: below this many values a chunk is summarised by one thread (thread start-up costs more)
_SERIAL_BELOW = 1 << 20


def _threads_for(block: np.ndarray) -> int:
    return 1 if block.size < _SERIAL_BELOW else task_threads()


_NO_BINS = (np.zeros(0), np.zeros(0), np.zeros(0), np.zeros((0, 1)))


def _chunk_moments(block: np.ndarray) -> np.ndarray:
    return _moments_hist(block, *_NO_BINS)[0]


def _moments_hist(block: np.ndarray, lo, hi, scale, edges) -> tuple[np.ndarray, np.ndarray]:
    """Bases and histogram of one in-memory chunk (no histogram for ``_NO_BINS``)."""
    block = np.ascontiguousarray(block)
    if edges.shape[0] == 0:
        edges = np.zeros((block.shape[1], 1))
    out, bad, hist = _moments(block, lo, hi, scale, edges, _threads_for(block))
    if bad:
        raise InvalidInput(message("X", "describe", "free of inf (NaN is skipped)", "an array "
                                   "holding inf", "Replace or drop the infinite values first."))
    return out, hist


def _combine_moments(parts: list[np.ndarray]) -> np.ndarray:
    out = np.array(parts[0], copy=True)
    for p in parts[1:]:
        _merge_into(out, p)
    return out


def _chunk_hist(block: np.ndarray, lo, hi, edges) -> np.ndarray:
    return _histogram(np.ascontiguousarray(block), lo, hi, _scale(lo, hi, edges), edges,
                      _threads_for(block))


def _scale(lo, hi, edges) -> np.ndarray:
    """numpy.histogram's ``norm``: bins per unit of each column."""
    return (edges.shape[1] - 1) / (hi - lo)


def _edges(mins: np.ndarray, maxs: np.ndarray, bins: int, count=None):
    """Bin edges per column exactly as ``numpy.histogram(..., bins)`` chooses them.

    Columns without values (``count == 0``) get numpy's default range (0, 1).
    """
    empty = np.zeros(len(mins), dtype=bool) if count is None else count == 0
    lo = np.where(empty | ~np.isfinite(mins), 0.0, mins)
    hi = np.where(empty | ~np.isfinite(maxs), 1.0, maxs)
    same = lo == hi
    lo, hi = np.where(same, lo - 0.5, lo), np.where(same, hi + 0.5, hi)
    # beyond ~1e16, +-0.5 is lost to rounding (numpy refuses such columns): widen relatively
    flat = lo == hi
    pad = np.abs(lo) * 1e-9
    lo, hi = np.where(flat, lo - pad, lo), np.where(flat, hi + pad, hi)
    edges = np.stack([np.linspace(a, b, bins + 1) for a, b in zip(lo, hi, strict=True)])
    return lo, hi, edges


def _finalize(bases: tuple, edges: np.ndarray) -> DescribeResult:
    bases, hist = bases
    count = bases[0]
    with np.errstate(invalid="ignore", divide="ignore"):
        empty = count == 0
        mean = np.where(empty, np.nan, bases[1])
        std = np.where(empty, np.nan, np.sqrt(bases[2] / np.where(empty, 1, count)))
    return DescribeResult(
        count=count.astype(np.int64), mean=mean, std=std,
        min=np.where(empty, np.nan, bases[3]), max=np.where(empty, np.nan, bases[4]),
        hist=hist, bin_edges=edges,
    )


def _check_range(range_, d):
    if range_ is None:
        return None
    r = np.asarray(range_, dtype=np.float64)
    if r.shape == (2,):
        r = np.tile(r, (d, 1))
    if r.shape != (d, 2) or not np.isfinite(r).all() or (r[:, 0] >= r[:, 1]).any():
        raise InvalidInput(message("range", "describe", f"a (lo, hi) pair or {d} such pairs with "
                                   "lo < hi", range_))
    return r


@DESCRIBE
def describe(X, *, bins: int = 64, range=None, extremes=None) -> DescribeResult:
    """Count, mean, std (ddof=0), min, max and a histogram of each column of a 2-D array.

    Parameters
    ----------
    X : numpy or dask array, shape (n, d)
        Numeric data; NaN values are skipped, inf is refused.
    bins : int
        Number of histogram bins per column, spanning each column's [min, max] as
        ``numpy.histogram`` does (the last bin closed).
    range : (lo, hi) or sequence of d such pairs, optional
        Fixed histogram range; then the data is read once instead of twice.
    extremes : (mins, maxs), optional
        Each column's min and max over its non-NaN values, when known already (hpcjobs
        records them per chunk when it writes an array): the histogram then spans them as
        without it, and the data is read once. ``inf``/``-inf`` for a column without values.

    Returns
    -------
    DescribeResult
        ``.count .mean .std .min .max`` of shape (d,), ``.hist`` (d, bins) int64 and
        ``.bin_edges`` (d, bins + 1).

    Examples
    --------
    >>> import numpy as np
    >>> r = describe(np.array([[1.0, 2.0], [3.0, 6.0]]), bins=2)
    >>> r.mean, r.hist[0]
    (array([2., 4.]), array([1, 1]))
    """
    # inf is refused by the sweeps themselves (their min/max see it): no pass of its own
    X = check_array(X, "X", "describe", ndim=2, allow_nan=True, min_len=0)
    d = X.shape[1]
    check_cells(bins * d, "bins", "describe", "bins x columns", bins)
    fixed = _check_range(range, d)
    known = _check_extremes(extremes, d)
    if fixed is None and known is None:
        if not is_dask(X):  # one moments pass, then the histogram (the data is in memory)
            bases = _chunk_moments(X) if X.shape[0] else _empty_bases(d)
            lo, hi, edges = _edges(*_extremes_of(bases), bins)
            return _finalize((bases, _chunk_hist(X, lo, hi, edges)), edges)
        else:  # a first pass for the range
            moments = Reduction("describe-range", (X,), _chunk_moments, _combine_moments,
                                _extremes_of)
            known = moments.compute()
    return describe_reduction(X, bins=bins, range=fixed, extremes=known).compute()


@DESCRIBE
def describe_reduction(X, *, bins: int = 64, range=None, extremes=None) -> Reduction:
    """``describe`` as one :class:`~hpcjobs.kernels._reduction.Reduction` (one pass), for
    a histogram range that is known: ``range`` or the columns' ``extremes``."""
    X = check_array(X, "X", "describe", ndim=2, allow_nan=True, min_len=0)
    d = X.shape[1]
    check_cells(bins * d, "bins", "describe", "bins x columns", bins)
    fixed = _check_range(range, d)
    if fixed is not None:
        lo, hi, edges = _edges(fixed[:, 0], fixed[:, 1], bins)
    else:
        known = _check_extremes(extremes, d)
        if known is None:
            raise InvalidInput(message("extremes", "describe_reduction", "range or the columns' "
                                       "(mins, maxs)", None))
        lo, hi, edges = _edges(known[0], known[1], bins)
    if X.shape[0] == 0:
        X = np.zeros((0, d))
    return Reduction("describe", (X,), partial(_chunk_describe, lo=lo, hi=hi, edges=edges),
                     _combine_describe, partial(_finalize, edges=edges))


def _chunk_describe(block: np.ndarray, lo, hi, edges) -> tuple:
    if block.shape[0] == 0:
        return _empty_bases(block.shape[1]), np.zeros((block.shape[1], edges.shape[1] - 1),
                                                      dtype=np.int64)
    return _moments_hist(block, lo, hi, _scale(lo, hi, edges), edges)


def _combine_describe(parts: list[tuple]) -> tuple:
    return (_combine_moments([p[0] for p in parts]), np.sum([p[1] for p in parts], axis=0))


def _extremes_of(bases: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(mins, maxs)`` from the bases; ``(inf, -inf)`` for a column without values."""
    empty = bases[0] == 0
    return np.where(empty, np.inf, bases[3]), np.where(empty, -np.inf, bases[4])


def _check_extremes(extremes, d: int):
    if extremes is None:
        return None
    try:
        mins, maxs = (np.asarray(e, dtype=np.float64).reshape(-1) for e in extremes)
    except (TypeError, ValueError):
        mins = maxs = np.zeros(0)
    if mins.shape != (d,) or maxs.shape != (d,) or np.isnan(mins).any() or \
            np.isnan(maxs).any():
        raise InvalidInput(message("extremes", "describe", f"(mins, maxs), {d} values each",
                                   extremes))
    if (np.isfinite(mins) & np.isfinite(maxs) & (mins > maxs)).any():
        raise InvalidInput(message("extremes", "describe", "min <= max per column", extremes))
    return mins, maxs


def _empty_bases(d: int) -> np.ndarray:
    b = np.zeros((_NSTATS, d))
    b[3], b[4] = np.inf, -np.inf
    return b
