"""``describe``: per-column count, mean, std, min, max and histogram of a 2-D array.

Statistics come from mergeable bases (count, mean, M2, min, max; Chan et al.'s pairwise
update), so chunks are summarised independently and combined in a tree: the result does not
depend on the chunking. Within a chunk the rows are cut into cache-sized blocks, each block is
summarised in one sweep about a shift (the running mean, so M2 does not cancel), with a
second sweep only for a block holding NaN, and histogrammed while it is in cache; blocks
are merged; threads work on disjoint row ranges and are merged serially at the end (the sweeps
are described at the chunk level below). The histogram needs the range first, so it is a
second pass over the data (the first gives the moments and the range), unless ``range`` or
the columns' ``extremes`` (hpcjobs records them per chunk) are given: then one pass
(:func:`describe_reduction`). NaN values are skipped, so the statistics equal
``numpy.nanmean``/``nanstd``/``nanmin``/``nanmax`` (and ``numpy.mean`` etc. when there is no
NaN); ``count`` is the number of non-NaN values. Infinite values are refused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import numba
import numpy as np

from hpcjobs.kernels._jit import njit, prefetch_ahead, task_threads, thread_ranges
from hpcjobs.kernels._reduction import Reduction, as_is
from hpcjobs.kernels._validation import (
    InvalidInput,
    check_array,
    check_cells,
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
# A C-order chunk is read as its flat run of values, never copied: value i of a run that starts
# at a row boundary is in column i % d. The sweeps keep their running statistics in "lanes":
# arrays of L = d * m values (m rows' worth), value i updating lane i % L, whose column is
# i % d. No lane's update depends on another's, so the loop over a run of L values is a plain
# vectorised map: no transpose, no horizontal reduction (min and max compare into the lane's
# own, one ``minpd``, which keeps the lane where the value is NaN). A chunk is swept in
# blocks of about _BLOCK_VALUES values
# where both sweeps run on each block (they stay in L1 between them), of more where a pass
# runs one sweep; blocks are merged with Chan et al.'s update.
#
# Both sweeps ask for their data 32 KB ahead (_jit.prefetch_ahead): without it they read memory
# at a third of a plain sum's speed; with it the moments pass runs at memory speed.
#
# - The moments sweep sums x - c and its square and keeps min and max, c being a value of the
#   data (the running mean; the block's first row before there is one): M2 = S2 - S1^2 / n
#   then loses at most a few ulps per row of a block. Where a column's mean is beyond its
#   spread, the means are kept relative to the range's first row, so that a large offset does
#   not spoil the merges (_set_origin). NaN and inf show in the sums: the block
#   is then swept again, skipping NaN (count, sum, then M2 about the block's mean).
# - The bins sweep computes each value's place in the flat counts (an int32: see _lane_bins);
#   the counts are then incremented from it (consecutive values are in different columns, so
#   consecutive increments do not wait for each other).
#
# describe runs the moments sweep over the data (which gives the range), then the bins sweep,
# each a pass over the chunks of a Dask array (the second counts only); describe_reduction
# runs both on each block, in one pass. ``hpcjobs bench describe`` times them.


_BLOCK_VALUES = 2048
# a pass of one sweep keeps nothing in cache between sweeps: larger blocks, fewer merges
# (each block's lanes are summed by column and merged: a quarter of the moments pass's
# time at 2048 values a block)
_MOMENTS_BLOCK_VALUES = 32768
_BINS_BLOCK_VALUES = 8192
_NSTATS = 5  # count, mean, M2, min, max
# far above the error of (x - lo) * scale and of numpy's linspace edges (a few ulps of bins;
# plus a few ulps of the edges' magnitude, in bins, for a range far from 0: _margins)
_MARGIN = 1e-7
_EPS = np.finfo(np.float64).eps
# reassociation lets the lane sums vectorise; NaN and inf keep their IEEE meaning
_SWEEP = {"reassoc", "nsz", "contract"}


def _lane_width(d: int) -> int:
    """L: values per lane set, d * m with m rows: a multiple of 16 (the vectorised loop's
    stride: LLVM interleaves four 4-double vectors, and a remainder runs scalar) where that
    keeps L small."""
    lanes = d * 16 // math.gcd(d, 16)
    return lanes if lanes <= 1024 else d


@njit
def _block_rows(d: int, lanes: int, values: int = _BLOCK_VALUES) -> int:
    """Rows per block: a whole number of lane sets, about ``values`` values."""
    per = lanes // d
    return max(per, values // d // per * per)


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


@njit(fastmath=_SWEEP)
def _lane_moments(flat, s0, nv, shift, s1, s2, mn, mx):
    """Sums of ``x - shift`` and of its square, min and max of ``flat[s0:s0 + nv]`` into
    lanes; NaN is not skipped in the sums (it shows there), min and max skip it. Four lane
    sets a step, so that the lanes are read and written once per four values (the loop was
    bound by those loads and stores: 0.57 -> 0.2 ns a value in cache)."""
    lanes = s1.shape[0]
    stop = s0 + nv
    s = s0
    while s + 4 * lanes <= stop:  # then the remaining lane sets one at a time
        prefetch_ahead(flat, s, s + 4 * lanes)
        r0, r1 = flat[s:s + lanes], flat[s + lanes:s + 2 * lanes]
        r2, r3 = flat[s + 2 * lanes:s + 3 * lanes], flat[s + 3 * lanes:s + 4 * lanes]
        for i in range(lanes):
            x0, x1 = np.float64(r0[i]), np.float64(r1[i])
            x2, x3 = np.float64(r2[i]), np.float64(r3[i])
            c = shift[i]
            e0, e1, e2, e3 = x0 - c, x1 - c, x2 - c, x3 - c
            s1[i] += (e0 + e1) + (e2 + e3)
            s2[i] += (e0 * e0 + e1 * e1) + (e2 * e2 + e3 * e3)
            # a chain into the lane's own (never NaN), so that each NaN is skipped
            mn[i] = _min(x3, _min(x2, _min(x1, _min(x0, mn[i]))))
            mx[i] = _max(x3, _max(x2, _max(x1, _max(x0, mx[i]))))
        s += 4 * lanes
    for t in range(s, stop, lanes):
        prefetch_ahead(flat, t, t + lanes)
        run = flat[t:min(t + lanes, stop)]
        for i in range(run.shape[0]):
            x = np.float64(run[i])
            dev = x - shift[i]
            s1[i] += dev
            s2[i] += dev * dev
            mn[i] = _min(x, mn[i])
            mx[i] = _max(x, mx[i])


@njit(inline="always")
def _min(x, m):
    """The smaller; ``m`` where either is NaN (x86's ``minpd``: one instruction, where
    ``numpy.fmin`` takes five)."""
    return x if x < m else m


@njit(inline="always")
def _max(x, m):
    """The larger; ``m`` where either is NaN."""
    return x if x > m else m


@njit(fastmath=_SWEEP)
def _lane_sums(flat, s0, nv, shift, cnt, total):
    """Count and sum of ``x - shift`` of the non-NaN values of ``flat[s0:s0 + nv]`` into
    lanes."""
    lanes = cnt.shape[0]
    for s in range(s0, s0 + nv, lanes):
        run = flat[s:min(s + lanes, s0 + nv)]
        for i in range(run.shape[0]):
            x = np.float64(run[i])
            ok = x == x
            cnt[i] += 1.0 if ok else 0.0
            total[i] += x - shift[i] if ok else 0.0


@njit(fastmath=_SWEEP)
def _lane_m2(flat, s0, nv, mean, m2):
    """M2 about the lanes' ``mean`` of the non-NaN values of ``flat[s0:s0 + nv]``."""
    lanes = m2.shape[0]
    for s in range(s0, s0 + nv, lanes):
        run = flat[s:min(s + lanes, s0 + nv)]
        for i in range(run.shape[0]):
            x = np.float64(run[i])
            dev = x - mean[i]
            m2[i] += dev * dev if x == x else 0.0


@njit(fastmath=_SWEEP)
def _lane_bins(flat, s0, nv, lo, hi, scale, margin, base, bins, kbuf, inside):
    """Each value's place in the flat counts into ``kbuf``: ``base`` (its column's first bin)
    + ``floor((x - lo) * scale)``, or + ``bins`` when dropped (NaN, out of range). True when
    a value lies within rounding error of an edge: ``f - k``, its place in its bin, is then
    more than ``1/2 - margin`` from the bin's middle (one compare: ``margin`` holds
    ``1/2 - margin``). ``inside``: every value is known to be within ``[lo, hi]`` (none NaN:
    the range is the data's own), so none is tested; LLVM compiles the loop once for each
    value of this invariant, the ``inside`` one a third shorter."""
    lanes = lo.shape[0]
    near = False
    for s in range(0, nv, lanes):
        prefetch_ahead(flat, s0 + s, s0 + s + lanes)
        run = flat[s0 + s:s0 + min(s + lanes, nv)]
        kout = kbuf[s:min(s + lanes, nv)]
        for i in range(run.shape[0]):
            x = np.float64(run[i])
            keep = inside | ((x >= lo[i]) & (x <= hi[i]))  # NaN compares false
            f = (x - lo[i]) * scale[i] if keep else 0.0  # >= 0: x >= lo rounds to x - lo >= 0
            # int32, not int64: CPUs without AVX-512 convert packed doubles to int32 only, so
            # an int64 conversion keeps the loop scalar (a bin index is below 2**26 anyway)
            k = min(np.int32(f), np.int32(bins - 1))
            near |= keep & (abs(f - k - 0.5) > margin[i])
            kout[i] = base[i] + (k if keep else np.int32(bins))
    return near


@njit
def _exact_bins(flat, s0, nv, d, lo, scale, edges, kbuf):
    """The bins of a block's kept values checked against the actual edges, as
    ``numpy.histogram`` corrects them (for blocks with values near an edge)."""
    bins = edges.shape[1] - 1
    for i in range(nv):
        j = i % d
        if kbuf[i] - j * (bins + 1) == bins:
            continue
        x = np.float64(flat[s0 + i])
        k = min(int((x - lo[j]) * scale[j]), bins - 1)
        if x < edges[j, k]:
            k -= 1
        elif k != bins - 1 and x >= edges[j, k + 1]:
            k += 1
        kbuf[i] = j * (bins + 1) + k


@njit
def _by_lane(values, lanes):
    """A column's value in each lane (lane i is in column i % d); zeros for no values."""
    out = np.zeros(lanes, dtype=values.dtype)
    for i in range(lanes if values.shape[0] else 0):
        out[i] = values[i % values.shape[0]]
    return out


@njit
def _by_column(first, second, mn, mx, d, block):
    """Lanes summed into rows 0 and 1 of ``block`` (5, d), their min and max into rows 3, 4."""
    block[:2] = 0.0
    block[3] = np.inf
    block[4] = -np.inf
    for i in range(first.shape[0]):
        j = i % d
        block[0, j] += first[i]
        block[1, j] += second[i]
        block[3, j] = min(block[3, j], mn[i])
        block[4, j] = max(block[4, j], mx[i])


@njit
def _block_moments(flat, s0, nb, d, origin, out, lanes_buf, block):
    """Bases (5, d) of the block of ``nb`` rows at ``flat[s0]`` into ``block``, their means
    less ``origin`` (d,); ``out`` holds the bases so far (their mean, the shift), likewise;
    ``lanes_buf`` is scratch (6, L). About an origin near a large offset, the blocks' means
    are small numbers, which Chan's merge takes without cancelling."""
    nv = nb * d
    s1, s2, mn, mx, cnt, shift = (lanes_buf[0], lanes_buf[1], lanes_buf[2], lanes_buf[3],
                                  lanes_buf[4], lanes_buf[5])
    for i in range(shift.shape[0]):
        j = i % d
        shift[i] = origin[j] + out[1, j] if out[0, j] > 0 else np.float64(flat[s0 + j])
    s1[:] = 0.0
    s2[:] = 0.0
    mn[:] = np.inf
    mx[:] = -np.inf
    _lane_moments(flat, s0, nv, shift, s1, s2, mn, mx)
    _by_column(s1, s2, mn, mx, d, block)
    finite = True
    for j in range(d):
        finite &= np.isfinite(block[0, j]) & np.isfinite(block[1, j])
    if finite:
        for j in range(d):
            a, b = block[0, j], block[1, j]
            block[0, j] = nb
            block[1, j] = (shift[j] - origin[j]) + a / nb
            block[2, j] = max(b - a * a / nb, 0.0)
        return
    # NaN or inf: count and mean, then M2 about it, skipping NaN (min and max stand)
    cnt[:] = 0.0
    s1[:] = 0.0
    s2[:] = 0.0
    for i in range(shift.shape[0]):
        shift[i] = origin[i % d]
    _lane_sums(flat, s0, nv, shift, cnt, s1)
    _by_column(cnt, s1, mn, mx, d, block)
    for j in range(d):
        block[1, j] = block[1, j] / block[0, j] if block[0, j] > 0 else 0.0
    for i in range(shift.shape[0]):
        shift[i] = origin[i % d] + block[1, i % d]
    _lane_m2(flat, s0, nv, shift, s2)
    block[2] = 0.0
    for i in range(s2.shape[0]):
        block[2, i % d] += s2[i]


@njit
def _set_origin(out, origin):
    """After a range's first block (means relative to its first row): where a column's mean is
    within its spread, its means are kept about 0 from now on (a shift there would cost the
    mean digits it does not need to lose); beyond it (a large offset), about that row."""
    for j in range(out.shape[1]):
        if not abs(origin[j] + out[1, j]) > out[4, j] - out[3, j]:
            out[1, j] += origin[j]
            origin[j] = 0.0


@njit
def _describe_range(X, start, stop, lanes, rows, lo, hi, scale, edges, out, counts, inside,
                    origin):
    """Bases (5, d) of rows ``[start, stop)`` of ``X`` into ``out`` when ``out`` has rows,
    their means less ``origin`` (d,), set here, and their histogram into ``counts``
    (d, bins + 1: the last bin takes what is dropped) when it has columns, a block at a time;
    ``inside``: every value is within ``[lo, hi]`` (no NaN), so none is dropped."""
    d, bins = X.shape[1], counts.shape[1] - 1
    flat, flat_counts = X.reshape(-1), counts.reshape(-1)
    moments, hist = out.shape[0] > 0, bins > 0
    lo_l, hi_l, scale_l = _by_lane(lo, lanes), _by_lane(hi, lanes), _by_lane(scale, lanes)
    base_l = _by_lane(np.arange(d).astype(np.int32) * np.int32(bins + 1), lanes)
    margin_l = 0.5 - (_MARGIN + 8 * _EPS * np.maximum(np.abs(lo_l), np.abs(hi_l)) * scale_l)
    lanes_buf = np.empty((6, lanes))
    kbuf = np.empty(rows * d, dtype=np.int32)
    block = np.empty((_NSTATS, d))
    origin[:] = 0.0  # the range's first row (0 for NaN or inf)
    for j in range(d if stop > start else 0):
        x = np.float64(flat[start * d + j])
        origin[j] = x if np.isfinite(x) else 0.0
    if moments:
        out[0, :] = 0.0
    # the first block is about its first row, the others about the running mean: a small
    # first block, so that the large ones sum small deviations (a large one about a row far
    # from the mean lost ~1e-14 of a unit-variance mean)
    first = min(rows, _block_rows(d, lanes))
    r0 = start
    while r0 < stop:
        s0, nb = r0 * d, min(r0 + (rows if r0 > start else first), stop) - r0
        if moments:
            _block_moments(flat, s0, nb, d, origin, out, lanes_buf, block)
            _merge_into(out, block)
            if r0 == start:
                _set_origin(out, origin)
        if hist:
            near = _lane_bins(flat, s0, nb * d, lo_l, hi_l, scale_l, margin_l, base_l, bins, kbuf,
                              inside)
            if near:
                _exact_bins(flat, s0, nb * d, d, lo, scale, edges, kbuf)
            for i in range(nb * d):  # unsigned: no wrap-around test for a negative index
                flat_counts[np.uint32(kbuf[i])] += 1
        r0 += nb


def _moments(X, lo, hi, scale, edges, n_threads: int, moments: bool = True,
             inside: bool = False):
    """Bases (5, d) of a whole chunk (with ``moments``) and its histogram (d, bins) where
    ``edges`` has bins + 1 > 1 columns (else (d, 0)); the middle result is 1 if the chunk holds
    an infinite value. Threads work on disjoint row ranges, merged serially; one thread runs
    outside a parallel region (entering one costs milliseconds per chunk even with one
    thread)."""
    d, bins = X.shape[1], max(edges.shape[1] - 1, 0)
    lanes = _lane_width(d)
    values = _BLOCK_VALUES if moments and bins else (
        _MOMENTS_BLOCK_VALUES if moments else _BINS_BLOCK_VALUES)
    rows, stats = _block_rows(d, lanes, values), _NSTATS if moments else 0
    if n_threads == 1:
        parts = np.zeros((1, stats, d))
        hists = np.zeros((1, d, bins + 1), dtype=np.int64)
        origins = np.zeros((1, d))
        _describe_range(X, 0, X.shape[0], lanes, rows, lo, hi, scale, edges, parts[0],
                        hists[0], inside, origins[0])
    else:
        parts, hists, origins = _moments_threads(X, lanes, rows, lo, hi, scale, edges, stats,
                                                 n_threads, inside)
    if not moments:
        parts = np.zeros((1, _NSTATS, d))
    return _merged_parts(parts, hists, origins)


@njit(parallel=True)
def _moments_threads(X, lanes, rows, lo, hi, scale, edges, stats, n_threads, inside):
    d, bins = X.shape[1], max(edges.shape[1] - 1, 0)
    ranges = thread_ranges(X.shape[0], n_threads)
    parts = np.zeros((ranges.shape[0], stats, d))
    hists = np.zeros((ranges.shape[0], d, bins + 1), dtype=np.int64)
    origins = np.zeros((ranges.shape[0], d))
    for t in numba.prange(ranges.shape[0]):
        _describe_range(X, ranges[t, 0], ranges[t, 1], lanes, rows, lo, hi, scale, edges,
                        parts[t], hists[t], inside, origins[t])
    return parts, hists, origins


@njit
def _merged_parts(parts, hists, origins):
    """The threads' bases merged, whether a value was infinite, the histogram without its
    bin of dropped values. Each thread's means are less its ``origins`` row (its range's first
    row): they are merged about the first thread's origin (the difference of two nearby
    values of the data is exact), so that a large offset does not spoil the merge (as
    absolute means, each rounded to an ulp of the offset, it did)."""
    d = parts.shape[2]
    out = np.zeros((_NSTATS, d))
    for t in range(parts.shape[0]):
        part = parts[t].copy()
        for j in range(d if part.shape[0] else 0):
            part[1, j] += origins[t, j] - origins[0, j]
        _merge_into(out, part)
    for j in range(d):
        out[1, j] += origins[0, j]
    bad = 0
    for j in range(d):
        if out[0, j] > 0 and (out[3, j] == -np.inf or out[4, j] == np.inf):
            bad = 1
    return out, bad, hists.sum(axis=0)[:, :hists.shape[2] - 1]


# ---------------------------------------------------------------------------------------------
# array level


#: below this many values a chunk is summarised by one thread (thread start-up costs more)
_SERIAL_BELOW = 1 << 20


def _threads_for(block: np.ndarray) -> int:
    return 1 if block.size < _SERIAL_BELOW else task_threads()


_NO_BINS = (np.zeros(0), np.zeros(0), np.zeros(0), np.zeros((0, 1)))


def _chunk_moments(block: np.ndarray) -> np.ndarray:
    if block.shape[0] == 0:
        return _empty_bases(block.shape[1])
    return _moments_hist(block, *_NO_BINS)[0]


def _chunk_hist(block: np.ndarray, lo, hi, edges, inside: bool = False) -> np.ndarray:
    """The histogram alone (the data's range came from a moments pass of its own);
    ``inside``: every value is within ``[lo, hi]``, none NaN (a faster sweep)."""
    if block.shape[0] == 0:
        return np.zeros((block.shape[1], edges.shape[1] - 1), dtype=np.int64)
    block = np.ascontiguousarray(block)
    return _moments(block, lo, hi, _scale(lo, hi, edges), edges, _threads_for(block),
                    moments=False, inside=inside)[2]


def _infinite() -> InvalidInput:
    return InvalidInput(message("X", "describe", "free of inf (NaN is skipped)", "an array "
                                "holding inf", "Replace or drop the infinite values first."))


def _moments_hist(block: np.ndarray, lo, hi, scale, edges) -> tuple[np.ndarray, np.ndarray]:
    """Bases and histogram of one in-memory chunk (no histogram for ``_NO_BINS``)."""
    block = np.ascontiguousarray(block)
    if edges.shape[0] == 0:
        edges = np.zeros((block.shape[1], 1))
    out, bad, hist = _moments(block, lo, hi, scale, edges, _threads_for(block))
    if bad:
        raise _infinite()
    return out, hist


def _combine_moments(parts: list[np.ndarray]) -> np.ndarray:
    out = np.array(parts[0], copy=True)
    for p in parts[1:]:
        _merge_into(out, p)
    return out


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
    if fixed is None and known is None:  # a moments pass (the range), then the histogram
        bases = Reduction("describe-moments", (X,), _chunk_moments, _combine_moments,
                          as_is).compute()
        lo, hi, edges = _edges(*_extremes_of(bases), bins)
        # the range is the data's own: without NaN, no value is outside it
        with np.errstate(over="ignore"):  # a range beyond float64's: the general sweep
            inside = bool((bases[0] == X.shape[0]).all() and np.isfinite(hi - lo).all())
        hist = Reduction("describe-hist", (X,), partial(_chunk_hist, lo=lo, hi=hi, edges=edges,
                                                        inside=inside), _sum, as_is).compute()
        return _finalize((bases, hist), edges)
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
    return _combine_moments([p[0] for p in parts]), _sum([p[1] for p in parts])


def _sum(parts: list[np.ndarray]) -> np.ndarray:
    return np.sum(parts, axis=0)


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
