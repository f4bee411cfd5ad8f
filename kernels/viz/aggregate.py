"""``aggregate2d``: points binned onto a raster (count, sum, mean, min, max, std, count_cat).

Binning is exactly ``numpy.histogram2d(y, x, bins=(ny, nx), range=((ymin, ymax), (xmin, xmax)))``:
a point falls in bin ``j`` of an axis when ``edges[j] <= v < edges[j + 1]`` with the edges of
``numpy.linspace(lo, hi, n + 1)``; the last bin is closed (``v == hi`` counts); points with a NaN
coordinate or outside the range are dropped. The bin index is computed arithmetically and then
corrected against the actual edges, as numpy's own histogram does, so rounding never moves a
point.

Every reduction is built from mergeable bases (count; sum; running min/max; count, mean and
M2 for the standard deviation, merged with Chan et al.'s update): each thread (and each Dask
chunk) fills its own bases, the bases are combined (a tree over Dask chunks), and the result is
finalised once. Points whose value is NaN are skipped by the value reductions (like datashader).
Empty bins are 0 for count and sum (like ``histogram2d``) and NaN for mean, min, max and std
(like ``scipy.stats.binned_statistic_2d``).

Threads get private rasters only when there are enough points per cell to pay for them, so a
raster much larger than the point set is filled by one thread instead of being copied per core.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import partial
from typing import NamedTuple

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from hpcjobs.kernels._jit import njit, task_threads, thread_ranges
from hpcjobs.kernels._reduction import Reduction, to_delayed
from hpcjobs.kernels._validation import (
    InvalidInput,
    InvalidType,
    check_array,
    is_dask,
    message,
)
from hpcjobs.kernels.viz.params import AGGREGATE2D, AGGS, check_raster_size

_FUNC = "aggregate2d"
# Threads only for chunks long enough: on busy cores each hand-off to a thread can wait a
# scheduler tick (milliseconds), and private rasters cost a copy and a merge each.
_MIN_POINTS_PER_THREAD = 2**21
# ...and a merge of the threads' rasters on all of them from this many cells
_MIN_CELLS_PARALLEL_MERGE = 2**19


# ---------------------------------------------------------------------------------------------
# chunk level


# points binned per pass into an index buffer (256 KB: in L2) before their updates; blocks
# that fit in L1 were slower, with more switches between the two loops
# (hpcjobs bench aggregate2d-count)
_BLOCK = 32768


@njit
def _bin(v, lo, hi, scale, edges, n, margin):
    """The bin of ``v`` on one axis as ``numpy.histogramdd`` finds it, or -1 when dropped.

    (The reference for one value; the hot loops below inline the same steps.)
    """
    if not (v >= lo and v <= hi):  # NaN compares false: dropped with the out-of-range points
        return -1
    f = (v - lo) * scale
    j = int(f)
    if j >= n:
        j = n - 1
    frac = f - j
    if frac < margin or frac > 1.0 - margin:
        if v < edges[j]:
            j -= 1
        elif j < n - 1 and v >= edges[j + 1]:
            j += 1
    return j


@njit
def _axes(xe, ye):
    nx = xe.shape[0] - 1
    ny = ye.shape[0] - 1
    # far above the error of (v - lo) * scale and of numpy's linspace edges (a few ulps of n)
    margin = max(1e-7, 256.0 * max(nx, ny) * 2.220446049250313e-16)
    return nx, ny, nx / (xe[nx] - xe[0]), ny / (ye[ny] - ye[0]), margin


@njit
def _cells(xb, yb, xe, ye, kbuf):
    """Flat raster index ``row * nx + col`` of each point of a block, -1 when it is dropped.

    Bins as numpy.histogramdd: ``floor((v - lo) * scale)``, checked against numpy's actual
    edges only for points within rounding error of an edge (fractional part within ``margin``
    of 0 or 1, ``margin`` far above that error). The first pass is branch-free (it
    vectorises); the rare near-edge points are fixed in a second, scalar pass.
    """
    nx, ny, xs, ys, margin = _axes(xe, ye)
    xlo, xhi, ylo, yhi = xe[0], xe[nx], ye[0], ye[ny]
    near_any = False
    for t in range(xb.shape[0]):
        v = np.float64(xb[t])
        w = np.float64(yb[t])
        ok = (v >= xlo) & (v <= xhi) & (w >= ylo) & (w <= yhi)  # NaN compares false
        f = (v - xlo) * xs if ok else 0.0
        g = (w - ylo) * ys if ok else 0.0
        # int32, not int64: CPUs without AVX-512 convert packed doubles to int32 only, so
        # an int64 conversion keeps the loop scalar (cells are fewer than 2**26)
        c = min(np.int32(f), np.int32(nx - 1))
        r = min(np.int32(g), np.int32(ny - 1))
        fc = f - c
        fr = g - r
        near = (fc < margin) | (fc > 1.0 - margin) | (fr < margin) | (fr > 1.0 - margin)
        near_any |= near & ok
        kbuf[t] = r * np.int32(nx) + c if ok else np.int32(-1)
    if not near_any:
        return
    for t in range(xb.shape[0]):
        if kbuf[t] < 0:
            continue
        v = np.float64(xb[t])
        w = np.float64(yb[t])
        kbuf[t] = (_bin(w, ylo, yhi, ys, ye, ny, margin) * nx
                   + _bin(v, xlo, xhi, xs, xe, nx, margin))


@intrinsic
def _prefetch(typingctx, arr, idx):
    """Prefetch (for writing) the cache line of ``arr[idx]``: a hint, it never faults."""
    def codegen(context, builder, sig, args):
        aryty = sig.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [args[1]],
                                       wraparound=False, boundscheck=False)
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0i8")
        # rw = 1 (write), locality = 3 (keep in all levels), cache type = 1 (data)
        builder.call(fn, [builder.bitcast(ptr, i8p), ir.Constant(i32, 1), ir.Constant(i32, 3),
                          ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return types.void(arr, types.int64), codegen


def _points(x, y, b0, b1, xbuf, ybuf):
    """Points ``[b0, b1)`` of ``x`` and ``y`` as contiguous arrays (compiled code only): views
    where both are contiguous already, else copied into the buffers in one loop, so that two
    columns of one row-major chunk (``X[:, 0]``, ``X[:, 1]``) are read from memory once, a
    block at a time, instead of copied whole (a fresh column each) before binning, which
    took several times as long (hpcjobs bench job-scale: aggregate2d's step)."""
    raise NotImplementedError("compiled code only")


@overload(_points, jit_options={"cache": True})
def _points_impl(x, y, b0, b1, xbuf, ybuf):
    if x.layout == "C" and y.layout == "C":
        return lambda x, y, b0, b1, xbuf, ybuf: (x[b0:b1], y[b0:b1])

    def gather(x, y, b0, b1, xbuf, ybuf):
        n = b1 - b0
        for t in range(n):
            xbuf[t] = x[b0 + t]
            ybuf[t] = y[b0 + t]
        return xbuf[:n], ybuf[:n]
    return gather


# Points land on the raster in random order: each update is a cache miss once the raster
# outgrows the caches. The cells of a block are known before its updates, so the update loops
# prefetch the cell _AHEAD points ahead: many misses in flight instead of one at a time.
_AHEAD = 48


# One small loop per reduction over the block's cell indices (a shared loop with a switch
# inside runs several times slower). Points [start, stop) go through slices indexed by
# range(m), so numba emits no negative-index checks; bases are flat and caller-owned.


# Counts are kept per thread in one byte a cell (``lo``) plus a carry raster (``hi``, counts of
# 256) that only cells past 255 points touch: a quarter of the cache footprint of 32-bit counts
# (1000 x 1000 cells: 1 MB, which stays in a core's L2). ``hi`` comes zeroed from the
# allocator (calloc), so its untouched pages cost nothing; its one extra last element counts
# the carries, so that a merge reads ``hi`` only where there were some. Count = 256 * hi + lo.
# The carry is written out in each of the three loops: as a helper (a plain call, or Numba's
# inline="always") the scatter loops ran several times slower (hpcjobs bench aggregate2d-count).


@njit
def _acc_count(x, y, start, stop, xe, ye, lo, hi):
    kbuf = np.empty(_BLOCK, dtype=np.int64)
    xbuf, ybuf = np.empty(_BLOCK), np.empty(_BLOCK)
    for b0 in range(start, stop, _BLOCK):
        b1 = min(b0 + _BLOCK, stop)
        k = kbuf[:b1 - b0]
        _cells(*_points(x, y, b0, b1, xbuf, ybuf), xe, ye, k)
        m = k.shape[0]
        for t in range(m):
            if t + _AHEAD < m:
                _prefetch(lo, k[t + _AHEAD])
            j = k[t]
            if j >= 0:
                c = np.int64(lo[j]) + 1
                if c == 256:  # rare: a cell's 256th point since its last carry
                    hi[j] += 1
                    hi[hi.shape[0] - 1] += 1  # carries so far
                    c = 0
                lo[j] = c


@njit
def _acc_cat(x, y, v, start, stop, xe, ye, ncat, lo, hi):
    cells = (xe.shape[0] - 1) * (ye.shape[0] - 1)
    kbuf = np.empty(_BLOCK, dtype=np.int64)
    xbuf, ybuf = np.empty(_BLOCK), np.empty(_BLOCK)
    for b0 in range(start, stop, _BLOCK):
        b1 = min(b0 + _BLOCK, stop)
        k = kbuf[:b1 - b0]
        _cells(*_points(x, y, b0, b1, xbuf, ybuf), xe, ye, k)
        vb = v[b0:b1]
        m = k.shape[0]
        for t in range(m):
            if t + _AHEAD < m:
                _prefetch(lo, np.int64(vb[t + _AHEAD]) * cells + k[t + _AHEAD])
            cat = np.int64(vb[t])
            if k[t] >= 0 and cat >= 0 and cat < ncat:
                j = cat * cells + k[t]
                c = np.int64(lo[j]) + 1
                if c == 256:
                    hi[j] += 1
                    hi[hi.shape[0] - 1] += 1
                    c = 0
                lo[j] = c


@njit
def _update(code, k, vb, cnt, acc1, acc2, hi):
    """Add the points of cells ``k`` (-1: dropped) and values ``vb`` to the bases:
    sum (1), mean (2), min (3), max (4), std (5); ``code`` picks the loop."""
    m = k.shape[0]
    if code == 1:
        for t in range(m):
            if t + _AHEAD < m:
                _prefetch(acc1, k[t + _AHEAD])
            val = np.float64(vb[t])
            if k[t] >= 0 and val == val:
                acc1[k[t]] += val
    elif code == 2:  # sums, and counts a byte a cell (which stay in L2)
        for t in range(m):
            if t + _AHEAD < m:
                _prefetch(acc1, k[t + _AHEAD])
                _prefetch(cnt, k[t + _AHEAD])
            val = np.float64(vb[t])
            j = k[t]
            if j >= 0 and val == val:
                acc1[j] += val
                c = np.int64(cnt[j]) + 1
                if c == 256:
                    hi[j] += 1
                    hi[hi.shape[0] - 1] += 1
                    c = 0
                cnt[j] = c
    elif code == 3:
        for t in range(m):
            if t + _AHEAD < m:
                _prefetch(acc1, k[t + _AHEAD])
            val = np.float64(vb[t])
            j = k[t]
            if j >= 0:  # branch-free update (an unpredictable branch costs more than a store)
                a = acc1[j]
                keep = (a <= val) | (val != val)  # a NaN start (empty) is replaced
                acc1[j] = a if keep else val
    elif code == 4:
        for t in range(m):
            if t + _AHEAD < m:
                _prefetch(acc1, k[t + _AHEAD])
            val = np.float64(vb[t])
            j = k[t]
            if j >= 0:
                a = acc1[j]
                keep = (a >= val) | (val != val)
                acc1[j] = a if keep else val
    else:  # std: Welford's running mean and M2
        for t in range(m):
            if t + _AHEAD < m:
                j = k[t + _AHEAD]
                _prefetch(cnt, j)
                _prefetch(acc1, j)
                _prefetch(acc2, j)
            val = np.float64(vb[t])
            if k[t] >= 0 and val == val:
                j = k[t]
                cnt[j] += 1
                delta = val - acc1[j]
                acc1[j] += delta / cnt[j]
                acc2[j] += delta * (val - acc1[j])


@njit
def _acc_values(x, y, v, start, stop, xe, ye, code, cnt, acc1, acc2, hi):
    """sum (1), mean (2), min (3), max (4), std (5) of points ``[start, stop)``.

    (Grouping the points by raster band first, so that the updates stay in cache, was
    measured slower here even for rasters far larger than L3: the prefetched scatter wins.)
    """
    kbuf = np.empty(_BLOCK, dtype=np.int64)
    xbuf, ybuf = np.empty(_BLOCK), np.empty(_BLOCK)
    for b0 in range(start, stop, _BLOCK):
        b1 = min(b0 + _BLOCK, stop)
        k = kbuf[:b1 - b0]
        _cells(*_points(x, y, b0, b1, xbuf, ybuf), xe, ye, k)
        _update(code, k, v[b0:b1], cnt, acc1, acc2, hi)


@njit
def _accumulate(x, y, v, start, stop, xe, ye, code, ncat, cnt, acc1, acc2, hi):
    """Add points ``[start, stop)`` to one set of bases (flat rasters, caller-owned).

    ``code`` picks the reduction (index into ``AGGS``); ``cnt``, ``acc1``, ``acc2`` are the
    bases it needs (see ``_AGGS``), flattened as ``row * nx + col`` (and
    ``cat * ny * nx + cell`` for count_cat); for count, count_cat and mean ``cnt`` holds the
    low byte of the counts and ``hi`` the carries.
    """
    if code == 0:
        _acc_count(x, y, start, stop, xe, ye, cnt, hi)
    elif code == 6:
        _acc_cat(x, y, v, start, stop, xe, ye, ncat, cnt, hi)
    else:
        _acc_values(x, y, v, start, stop, xe, ye, code, cnt, acc1, acc2, hi)


@njit
def _accumulate_one(x, y, v, start, stop, xe, ye, code, ncat, cnt, acc1, acc2, hi, fill):
    """One set of bases, serial (no parallel region to start when one thread does the work)."""
    cnt[:] = 0
    acc1[:] = fill
    acc2[:] = 0.0
    _accumulate(x, y, v, start, stop, xe, ye, code, ncat, cnt, acc1, acc2, hi)


@njit(parallel=True)
def _accumulate_threads(x, y, v, ranges, xe, ye, code, ncat, cnt, acc1, acc2, hi, fill):
    """Each thread initialises and fills its own bases ``cnt[t]``, ``acc1[t]``, ``acc2[t]``
    (``hi`` comes zeroed)."""
    for t in numba.prange(ranges.shape[0]):
        cnt[t, :] = 0
        acc1[t, :] = fill
        acc2[t, :] = 0.0
        _accumulate(x, y, v, ranges[t, 0], ranges[t, 1], xe, ye, code, ncat,
                    cnt[t], acc1[t], acc2[t], hi[t])


#: cells merged at a time: their totals stay in L1 while each thread's row is added
_MERGE_TILE = 2048


@njit
def _carried(hi, cells):
    """Which threads' counts passed a byte somewhere (``hi``'s last element counts their
    carries; ``hi`` has no columns for reductions without bytewise counts)."""
    out = np.zeros(hi.shape[0], dtype=np.bool_)
    if hi.shape[1]:
        for t in range(hi.shape[0]):
            out[t] = hi[t, cells] > 0
    return out


@njit
def _tile_counts(cnt, hi, carried, a0, m, acc):
    """``acc[:m]`` = the counts of cells ``[a0, a0 + m)`` summed over the threads (``256 *
    hi + lo``, ``hi`` read only where ``carried``), thread by thread: loops that vectorise."""
    first = cnt[0, a0:a0 + m]
    for i in range(m):
        acc[i] = first[i]
    for t in range(1, cnt.shape[0]):
        row = cnt[t, a0:a0 + m]
        for i in range(m):
            acc[i] += row[i]
    for t in range(cnt.shape[0]):
        if carried[t]:
            row_hi = hi[t, a0:a0 + m]
            for i in range(m):
                acc[i] += 256 * np.int64(row_hi[i])


@njit
def _merge_counts(cnt, hi, total, a, b):
    """``total[j] = sum over threads of 256 * hi + lo`` for cells ``[a, b)``, written once
    per cell, through tiles of totals that stay in L1."""
    carried = _carried(hi, total.shape[0])
    acc = np.empty(_MERGE_TILE, dtype=np.int64)
    for a0 in range(a, b, _MERGE_TILE):
        m = min(_MERGE_TILE, b - a0)
        _tile_counts(cnt, hi, carried, a0, m, acc)
        out = total[a0:a0 + m]
        for i in range(m):
            out[i] = acc[i]


@njit
def _merge_range(code, cnt, acc1, hi, total, acc, a, b):
    """Fold the threads' bases of cells ``[a, b)`` into ``total`` (counts: ``256 * hi +
    lo``) and ``acc``: additive bases are summed; min (3) and max (4) keep the extreme, NaN
    meaning empty."""
    nt = cnt.shape[0]
    if total.shape[0]:
        _merge_counts(cnt, hi, total, a, b)
    if acc.shape[0] == 0:
        return
    for j in range(a, b):
        v = acc1[0, j]
        for t in range(1, nt):
            w = acc1[t, j]
            # branch-free (which thread holds the extreme is a coin flip): fmin / fmax
            if code == 3:
                v = w if (w < v) | (v != v) else v
            elif code == 4:
                v = w if (w > v) | (v != v) else v
            else:
                v += w
        acc[j] = v


@njit(parallel=True)
def _merge_threads(code, cnt, acc1, hi, total, acc, ranges):
    """:func:`_merge_range` over the cell ranges side by side (one range: serial, for small
    rasters, where a second parallel region would cost more than it saves; several: large
    rasters, where the merge and the first touch of the fresh result's pages take ms)."""
    if ranges.shape[0] == 1:
        _merge_range(code, cnt, acc1, hi, total, acc, ranges[0, 0], ranges[0, 1])
        return
    for p in numba.prange(ranges.shape[0]):
        _merge_range(code, cnt, acc1, hi, total, acc, ranges[p, 0], ranges[p, 1])


@njit(error_model="numpy")  # the division is guarded: no zero check in the loop
def _mean_range(cnt, acc1, hi, out, a, b):
    """``out[j] = sum / count`` of the threads' bases for cells ``[a, b)`` (NaN where
    empty), through tiles of totals that stay in L1."""
    carried = _carried(hi, cnt.shape[1])
    s = np.empty(_MERGE_TILE)
    c = np.empty(_MERGE_TILE, dtype=np.int64)
    for a0 in range(a, b, _MERGE_TILE):
        m = min(_MERGE_TILE, b - a0)
        _tile_counts(cnt, hi, carried, a0, m, c)
        for i in range(m):
            s[i] = acc1[0, a0 + i]
        for t in range(1, cnt.shape[0]):
            for i in range(m):
                s[i] += acc1[t, a0 + i]
        for i in range(m):
            out[a0 + i] = s[i] / c[i] if c[i] > 0 else np.nan


@njit(parallel=True)
def _mean_of_threads(cnt, acc1, hi, out, ranges):
    """:func:`_mean_range` over the cell ranges side by side."""
    if ranges.shape[0] == 1:
        _mean_range(cnt, acc1, hi, out, ranges[0, 0], ranges[0, 1])
        return
    for p in numba.prange(ranges.shape[0]):
        _mean_range(cnt, acc1, hi, out, ranges[p, 0], ranges[p, 1])


@njit
def _merge_std(cnt, mean, m2, cnt_b, mean_b, m2_b):
    """Merge (count, mean, M2) bases ``_b`` into the first set in place (Chan et al.)."""
    for k in range(cnt.shape[0]):
        nb = cnt_b[k]
        if nb == 0:
            continue
        na = cnt[k]
        if na == 0:
            cnt[k], mean[k], m2[k] = nb, mean_b[k], m2_b[k]
            continue
        n = na + nb
        delta = mean_b[k] - mean[k]
        mean[k] += delta * (nb / n)
        m2[k] += m2_b[k] + delta * delta * (na * nb / n)
        cnt[k] = n


class _Scratch:
    """The threads' base rasters, kept between calls for the next call of the same shape.

    A fresh raster's first touch page-faults, which costs as much as binning as many points
    as the raster has cells (hpcjobs bench aggregate2d-mean), so private 1000 x 1000 float64
    rasters for two threads cost more to map than to merge. Buffers are lent out whole (so
    concurrent calls never share one) and only up to ``limit`` bytes are kept. Buffers known
    to be all zeros (the carry rasters no carry touched) are kept apart and lent out as
    zeroed ones.
    """

    def __init__(self, limit: int = 128 * 2**20):
        self.limit = limit
        self._free: dict[tuple, list[np.ndarray]] = {}
        self._kept = 0
        self._lock = threading.Lock()

    def take(self, shape: tuple, dtype, zeroed: bool = False) -> np.ndarray:
        key = (shape, np.dtype(dtype).str, zeroed)
        with self._lock:
            free = self._free.get(key)
            if free:
                buf = free.pop()
                self._kept -= buf.nbytes
                return buf
        return (np.zeros if zeroed else np.empty)(shape, dtype=dtype)

    def give(self, *bufs: np.ndarray, zeroed: bool = False) -> None:
        with self._lock:
            for buf in bufs:
                if buf.size and self._kept + buf.nbytes <= self.limit:
                    self._free.setdefault((buf.shape, buf.dtype.str, zeroed), []).append(buf)
                    self._kept += buf.nbytes


_SCRATCH = _Scratch()


def _new_bases(agg: str, t: int, cells: int, n: int, scratch: _Scratch | None = None) -> tuple:
    """Per-thread bases (count, acc1, acc2, hi), uninitialised but ``hi`` (the threads
    initialise their own rows); from ``scratch`` when given."""
    has_cnt, has_a1, has_a2 = _AGGS[agg].bases
    bytewise = _AGGS[agg].bytewise
    new = np.empty if scratch is None else scratch.take
    cnt = new((t, cells if has_cnt else 0), np.uint8 if bytewise else np.float64)
    acc1 = new((t, cells if has_a1 else 0), np.float64)
    acc2 = new((t, cells if has_a2 else 0), np.float64)
    # zeroed: by the allocator (pages no carry touches are never mapped), or a carry raster
    # of an earlier call that had no carries. A fresh one each call took the memory that the
    # allocator had recycled, so the result was faulted in instead: page faults on every
    # call, and none with the carry raster lent again (hpcjobs bench aggregate2d-count).
    hi_shape = (t, cells + 1 if bytewise else 0)
    hi_dtype = np.uint32 if n < 2**32 else np.int64
    hi = np.zeros(hi_shape, hi_dtype) if scratch is None else scratch.take(hi_shape, hi_dtype,
                                                                          zeroed=True)
    return cnt, acc1, acc2, hi


def _merge_sums(a: tuple, b: tuple) -> tuple:
    """Two flat base tuples (count, acc1, acc2) of additive bases merged into ``a``."""
    _add_into(a[0], b[0])
    _add_into(a[1], b[1])
    return a


def _merge_min(a: tuple, b: tuple) -> tuple:
    return a[0], np.fmin(a[1], b[1], out=a[1]), a[2]


def _merge_max(a: tuple, b: tuple) -> tuple:
    return a[0], np.fmax(a[1], b[1], out=a[1]), a[2]


def _merge_moments(a: tuple, b: tuple) -> tuple:
    """Counts, means and M2 merged with Chan et al.'s update, into ``a``."""
    _merge_std(a[0], a[1], a[2], b[0], b[1], b[2])
    return a


@njit
def _add_into(total, part):
    """``total += part`` (e.g. int64 += uint8): NumPy's mixed-type add runs through cast
    buffers, several times slower, and a chunk merge adds a raster per chunk."""
    for j in range(total.shape[0]):
        total[j] += part[j]


def _task_bases(x, y, v, xe, ye, agg: str, ncat: int) -> tuple:
    """:func:`_chunk_bases` of one Dask chunk, with the threads a task may use."""
    return _chunk_bases(x, y, v, xe, ye, agg, ncat, threads=task_threads())


def _chunk_bases(x, y, v, xe, ye, agg: str, ncat: int, threads: int | None = None) -> tuple:
    """Bases of one in-memory chunk of points, ``threads`` (default: the task's) over disjoint
    point ranges."""
    return _merged(_fill(x, y, v, xe, ye, agg, ncat, threads))


def _chunk_raster(x, y, v, xe, ye, agg: str, ncat: int, shape: tuple) -> np.ndarray:
    """The finished raster of in-memory points (straight from the threads' bases where the
    reduction can: ``_Agg.of_threads``)."""
    filled = _fill(x, y, v, xe, ye, agg, ncat)
    of_threads = _AGGS[agg].of_threads
    if of_threads is not None and filled.threads > 1:
        return of_threads(filled).reshape(shape)
    return _finalize(_merged(filled), agg, shape, ncat, inplace=True)


class _Filled(NamedTuple):
    """The threads' bases (one row a thread) after accumulation, before their merge."""

    agg: str
    threads: int
    cnt: np.ndarray
    acc1: np.ndarray
    acc2: np.ndarray
    hi: np.ndarray

    def release(self) -> None:
        """Lend the bases (of several threads: from the scratch) to the next call, once
        merged; the carry raster as a zeroed one when no carry touched it."""
        _SCRATCH.give(self.cnt, self.acc1, self.acc2)
        if self.hi.shape[1] and not self.hi[:, -1].any():
            _SCRATCH.give(self.hi, zeroed=True)

    def merge_ranges(self) -> np.ndarray:
        """Cell ranges merged side by side: one per thread for large rasters, else one."""
        cells = max(self.cnt.shape[1], self.acc1.shape[1])
        parts = self.threads if cells >= _MIN_CELLS_PARALLEL_MERGE else 1
        return thread_ranges(cells, parts)


def _fill(x, y, v, xe, ye, agg: str, ncat: int, threads: int | None = None) -> _Filled:
    """Accumulate one in-memory chunk into per-thread bases (``threads``, default the task's,
    over disjoint point ranges)."""
    x, y = _one_dimensional(x), _one_dimensional(y)  # strided columns are read as they are
    n = x.shape[0]
    rec = _AGGS[agg]
    cells = (xe.shape[0] - 1) * (ye.shape[0] - 1) * (ncat if rec.layers else 1)
    if v is None:
        v = x  # not read by count
    else:
        v = np.ascontiguousarray(v)
        if v.dtype.kind in "biu" and not rec.layers:
            v = v.astype(np.float64)
    # a private raster per thread only when each thread has points enough to pay for it
    threads = task_threads() if threads is None else threads
    t = max(1, min(threads, n // _MIN_POINTS_PER_THREAD, max(1, 2 * n // cells)))
    # one thread's bases are the result; several threads' are merged into a new one, and
    # can serve the next call
    cnt, acc1, acc2, hi = _new_bases(agg, t, cells, n, _SCRATCH if t > 1 else None)
    if t == 1:
        _accumulate_one(x, y, v, 0, n, xe, ye, rec.code, ncat, cnt[0], acc1[0], acc2[0],
                        hi[0], rec.fill)
    else:
        _accumulate_threads(x, y, v, thread_ranges(n, t), xe, ye, rec.code, ncat, cnt, acc1,
                            acc2, hi, rec.fill)
    return _Filled(agg, t, cnt, acc1, acc2, hi)


def _one_dimensional(a: np.ndarray) -> np.ndarray:
    """``a`` as a 1-D array without a copy where it has a fixed stride (a column of a chunk),
    else contiguous."""
    a = np.asarray(a)
    return a if a.ndim == 1 else np.ascontiguousarray(a).reshape(-1)


def _merged(filled: _Filled) -> tuple:
    """The threads' bases folded into one flat set (count, acc1, acc2)."""
    agg, t, cnt, acc1, acc2, hi = filled
    rec = _AGGS[agg]
    if rec.pairwise:
        out = (cnt[0], acc1[0], acc2[0])
        if t > 1:
            out = tuple(a.copy() for a in out)
        for i in range(1, t):
            out = rec.merge(out, (cnt[i], acc1[i], acc2[i]))
        if t > 1:
            filled.release()
        return out
    if t == 1:
        if hi.shape[1] and hi[0, -1] > 0:  # counts: 256 * hi + lo (uint32 below 2**32 points)
            return (hi[0, :-1] << 8) + cnt[0], acc1[0], acc2[0]
        return cnt[0], acc1[0], acc2[0]  # no carry: the low bytes are the counts
    total = np.empty(cnt.shape[1], dtype=np.int64)
    acc = np.empty(acc1.shape[1])
    _merge_threads(rec.code, cnt, acc1, hi, total, acc, filled.merge_ranges())
    filled.release()
    return total, acc, np.empty(0)


def _combine(parts: list, agg: str) -> tuple:
    """Merge the bases of several chunks (a node of the Dask merge tree)."""
    merge = _AGGS[agg].merge
    cnt, acc1, acc2 = parts[0]
    out = (cnt.astype(np.int64 if cnt.dtype.kind == "u" else cnt.dtype), acc1.copy(), acc2.copy())
    for p in parts[1:]:
        out = merge(out, p)
    return out


def _finalize(bases: tuple, agg: str, shape: tuple, ncat: int,
              inplace: bool = False) -> np.ndarray:
    """The raster from merged bases; ``inplace``: the bases are this call's own, so a mean
    may overwrite the sums (one fresh raster less to page in)."""
    return _AGGS[agg].finalise(bases, _out_shape(agg, shape, ncat), inplace)


def _out_shape(agg: str, shape: tuple, ncat: int) -> tuple:
    """The raster's shape: ``(ny, nx)``, or one layer per category."""
    return (ncat, *shape) if _AGGS[agg].layers else tuple(shape)


def _counts(bases: tuple, shape: tuple, inplace: bool) -> np.ndarray:
    return bases[0].reshape(shape).astype(np.int64, copy=False)


def _first_acc(bases: tuple, shape: tuple, inplace: bool) -> np.ndarray:
    return bases[1].reshape(shape)


def _mean(bases: tuple, shape: tuple, inplace: bool) -> np.ndarray:
    cnt, acc1, _ = bases
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.divide(acc1, cnt, out=acc1 if inplace else None).reshape(shape)


def _std(bases: tuple, shape: tuple, inplace: bool) -> np.ndarray:
    """ddof=0, like numpy.std."""
    cnt, _, m2 = bases
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(cnt > 0, np.sqrt(m2 / np.where(cnt > 0, cnt, 1)), np.nan).reshape(shape)


class _Agg(NamedTuple):
    """One reduction: everything about it outside the compiled loops, in one record.

    ``code`` picks its loop in the compiled code (``_accumulate``, ``_update``,
    ``_merge_range``); ``bases`` says which flat rasters it keeps (count, acc1, acc2);
    ``bytewise``: counts kept a byte a cell with carries in ``hi`` (they stay in cache);
    ``fill``: acc1's empty value; ``merge(a, b)`` merges two chunks' bases (and the threads'
    when ``pairwise``; else one compiled pass sums or compares them); ``finalise(bases,
    shape, inplace)`` makes the raster; ``layers``: one raster per category (count_cat);
    ``values``: what it needs of the points' values (None, "numbers" or "labels");
    ``of_threads(filled)``: the raster straight from several threads' bases, where that
    saves a pass (mean).
    """

    code: int
    bases: tuple[bool, bool, bool]
    bytewise: bool
    fill: float
    merge: Callable[[tuple, tuple], tuple]
    finalise: Callable[[tuple, tuple, bool], np.ndarray]
    dtype: type = np.float64
    pairwise: bool = False
    layers: bool = False
    values: str | None = "numbers"
    of_threads: Callable | None = None


def _mean_of_filled(filled) -> np.ndarray:
    """The means straight from the threads' bases: merged and divided in one pass (no count
    raster to write and read back, no second pass over the sums)."""
    out = np.empty(filled.cnt.shape[1])
    _mean_of_threads(filled.cnt, filled.acc1, filled.hi, out, filled.merge_ranges())
    filled.release()
    return out


_COUNT, _SUM, _COUNT_SUM, _MOMENTS = (True, False, False), (False, True, False), \
    (True, True, False), (True, True, True)

#: the reductions, by name (a new one: a record here, its name in params.AGGS, and, for a
#: new kind of update, a loop in ``_update`` under its code)
_AGGS: dict[str, _Agg] = {
    "count": _Agg(code=0, bases=_COUNT, bytewise=True, fill=0.0, merge=_merge_sums,
                  finalise=_counts, dtype=np.int64, values=None),
    "sum": _Agg(code=1, bases=_SUM, bytewise=False, fill=0.0, merge=_merge_sums,
                finalise=_first_acc),
    "mean": _Agg(code=2, bases=_COUNT_SUM, bytewise=True, fill=0.0, merge=_merge_sums,
                 finalise=_mean, of_threads=_mean_of_filled),
    "min": _Agg(code=3, bases=_SUM, bytewise=False, fill=np.nan, merge=_merge_min,
                finalise=_first_acc),
    "max": _Agg(code=4, bases=_SUM, bytewise=False, fill=np.nan, merge=_merge_max,
                finalise=_first_acc),
    "std": _Agg(code=5, bases=_MOMENTS, bytewise=False, fill=0.0, merge=_merge_moments,
                finalise=_std, pairwise=True),
    "count_cat": _Agg(code=6, bases=_COUNT, bytewise=True, fill=0.0, merge=_merge_sums,
                      finalise=_counts, dtype=np.int64, layers=True, values="labels"),
}
assert tuple(_AGGS) == AGGS  # the declared choices are the reductions here


# ---------------------------------------------------------------------------------------------
# array level


def _edges(lo: float, hi: float, n: int) -> np.ndarray:
    return np.linspace(lo, hi, n + 1)


def _check_range(range_):
    expected = "((xmin, xmax), (ymin, ymax)) with finite numbers and min < max"
    try:
        r = np.asarray(range_, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidType(message("range", _FUNC, expected, range_)) from None
    if r.shape == (4,):
        r = r.reshape(2, 2)
    if r.shape != (2, 2) or not np.isfinite(r).all() or (r[:, 0] >= r[:, 1]).any():
        raise InvalidInput(message("range", _FUNC, expected, range_))
    return r


def _auto_range(lo: float, hi: float, name: str) -> tuple[float, float]:
    """The range numpy.histogram picks from data: [min, max], widened by 0.5 if they are equal."""
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise InvalidInput(message(
            name, _FUNC, "finite somewhere (to find the range from the data)",
            "an array with no finite value or holding inf", "Pass range=((xmin, xmax), "
            "(ymin, ymax)) explicitly."))
    if lo == hi:
        return lo - 0.5, hi + 0.5
    return float(lo), float(hi)


def _finite_minmax(a):
    a = np.asarray(a)
    if a.dtype.kind == "f":
        if np.isinf(a).any():
            return np.nan, np.nan
        if np.isnan(a).all():
            return np.nan, np.nan
        return np.nanmin(a), np.nanmax(a)
    return a.min(), a.max()


@AGGREGATE2D
def aggregate2d(x, y, *, shape, range=None, agg: str = "count", values=None,
                n_categories: int | None = None):
    """Aggregate points onto a 2-D raster, binned exactly like ``numpy.histogram2d``.

    Parameters
    ----------
    x, y : numpy or dask array, shape (n,)
        Point coordinates. Points with a NaN coordinate or outside ``range`` are dropped.
    shape : (ny, nx)
        Raster size: rows follow y, columns follow x.
    range : ((xmin, xmax), (ymin, ymax)), optional
        Raster extent. The last bin of each axis is closed. Default: the data's finite
        min and max (one extra pass over Dask data), as ``numpy.histogram2d`` does.
    agg : {"count", "sum", "mean", "min", "max", "std", "count_cat"}
        The reduction. All but count need ``values``; NaN values are skipped. ``std`` is
        the population standard deviation (ddof=0). ``count_cat`` counts the points per
        category: ``values`` holds integer labels, one layer per category; labels outside
        ``[0, n_categories)`` (e.g. -1 for noise) are dropped.
    values : numpy or dask array, shape (n,), optional
        The value (or the category label) of each point.
    n_categories : int, optional
        Number of layers for ``count_cat`` (default: largest label + 1).

    Returns
    -------
    numpy.ndarray or dask.array.Array
        ``(ny, nx)`` (``(n_categories, ny, nx)`` for count_cat): int64 counts, float64
        otherwise (0 in empty bins for sum, NaN for mean, min, max and std). A Dask array
        (one chunk, computed by a tree reduction over the input chunks) when an input is Dask.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([0.1, 0.6, 0.9, 1.0]); y = np.array([0.1, 0.1, 0.8, 1.0])
    >>> aggregate2d(x, y, shape=(2, 2), range=((0, 1), (0, 1)))
    array([[1, 1],
           [0, 2]])
    """
    x, y, values, shape, agg, n_categories = _checked(x, y, values, shape, agg, n_categories)
    rng = None if range is None else _check_range(range)
    if not (is_dask(x) or is_dask(y) or is_dask(values)):
        return _aggregate_numpy(x, y, values, shape, rng, agg, n_categories)
    return _aggregate_dask(x, y, values, shape, rng, agg, n_categories)


def _checked(x, y, values, shape, agg, n_categories):
    """aggregate2d's arguments, validated (values dropped for count)."""
    agg = AGGREGATE2D["agg"].validate(agg, _FUNC)  # (again: aggregate2d_reduction's own)
    shape = AGGREGATE2D["shape"].validate(shape, _FUNC)
    x = check_array(x, "x", _FUNC, ndim=1, allow_nan=True, float_out=False)
    y = check_array(y, "y", _FUNC, ndim=1, allow_nan=True, float_out=False)
    if x.shape[0] != y.shape[0]:
        raise InvalidInput(message("y", _FUNC, f"the same length as x ({x.shape[0]})", y))
    needs = _AGGS[agg].values
    if needs is None:
        values = None
    elif values is None:
        raise InvalidType(message("values", _FUNC, f"an array of length {x.shape[0]} for "
                                  f"agg={agg!r}", values, "Only agg='count' needs no values."))
    else:
        vdtype = values.dtype if hasattr(values, "dtype") else np.asarray(values).dtype
        if needs == "labels" and vdtype.kind not in "iu":
            raise InvalidType(message("values", _FUNC, "integer category labels for "
                                      "agg='count_cat'", values,
                                      "Pass labels as ints (e.g. values.astype(int))."))
        values = check_array(values, "values", _FUNC, ndim=1, allow_nan=True,
                             float_out=False, kinds="fiub")
        if values.shape[0] != x.shape[0]:
            raise InvalidInput(message("values", _FUNC, f"the same length as x ({x.shape[0]})",
                                       values))
    n_categories = AGGREGATE2D["n_categories"].validate(n_categories, _FUNC)
    check_raster_size(shape, agg, n_categories, _FUNC)
    return x, y, values, shape, agg, n_categories


def binning(x, y, values=None, *, range=None, agg: str = "count",
            n_categories: int | None = None) -> tuple[tuple, int]:
    """``(((xmin, xmax), (ymin, ymax)), n_layers)``: the extent and layer count that
    ``aggregate2d`` bins into, for NumPy or Dask points.

    The extent is ``range`` or each axis' finite min and max (as numpy.histogram2d picks
    them); the layers are ``n_categories`` or, for count_cat, the largest label + 1 (else 1).
    What has to be found from the data is found in one pass (one Dask computation). Job
    steps record the extent, so that a raster's pixels map back to coordinates.
    """
    scan = agg in _AGGS and _AGGS[agg].layers and n_categories is None and values is not None
    if is_dask(x) or is_dask(y) or is_dask(values):
        import dask
        import dask.array as da

        todo = {}
        if range is None:
            todo.update({name: (da.nanmin(_inf_to_nan(a)), da.nanmax(_inf_to_nan(a)),
                                da.isinf(a).any())
                         for name, a in (("x", da.asarray(x)), ("y", da.asarray(y)))})
        if scan:
            todo["ncat"] = da.asarray(values).max()
        (found,) = dask.compute(todo) if todo else ({},)
        if range is None:  # inf anywhere: no range from the data
            range = [_auto_range(*(np.nan if found[k][2] else found[k][i] for i in (0, 1)), k)
                     for k in ("x", "y")]
        if scan:
            n_categories = max(int(found["ncat"]) + 1, 1)
    else:
        if range is None:
            range = [_auto_range(*_finite_minmax(x), "x"), _auto_range(*_finite_minmax(y), "y")]
        if scan:
            values = np.asarray(values)
            n_categories = max(_max_label(values) + 1, 1) if values.size else 1
    extent = tuple((float(r[0]), float(r[1])) for r in range)
    return extent, n_categories or 1


def _aggregate_numpy(x, y, values, shape, rng, agg, ncat):
    (xr, yr), ncat = binning(x, y, values, range=rng, agg=agg, n_categories=ncat)
    check_raster_size(shape, agg, ncat, _FUNC)  # the layers may come from the data's labels
    xe, ye = _edges(*xr, shape[1]), _edges(*yr, shape[0])
    return _chunk_raster(x, y, values, xe, ye, agg, ncat, tuple(shape))


def _max_label(labels: np.ndarray) -> int:
    """The largest label, on the task's threads, for the layer count: NumPy's max runs on one
    thread, a tenth of a count_cat's time (hpcjobs bench aggregate2d-count_cat)."""
    if labels.dtype.kind == "u" and labels.dtype.itemsize == 8:
        return int(labels.max())  # beyond int64: let NumPy compare
    threads = task_threads() if labels.shape[0] >= _MIN_POINTS_PER_THREAD else 1
    return int(_max_of_threads(np.ascontiguousarray(labels),
                               thread_ranges(labels.shape[0], threads)))


@njit(parallel=True)
def _max_of_threads(labels, ranges):
    part = np.empty(ranges.shape[0], dtype=np.int64)
    for p in numba.prange(ranges.shape[0]):
        part[p] = labels[ranges[p, 0]:ranges[p, 1]].max()  # vectorises; a max() loop did not
    return part.max()


def _aggregate_dask(x, y, values, shape, rng, agg, ncat, split_every: int | None = None):
    import dask.array as da

    x, y = da.asarray(x), da.asarray(y)
    if values is not None:
        values = da.asarray(values)
    (xr, yr), ncat = binning(x, y, values, range=rng, agg=agg, n_categories=ncat)
    r = aggregate2d_reduction(x, y, shape=shape, range=(xr, yr), agg=agg, values=values,
                              n_categories=ncat, split_every=split_every)
    return da.from_delayed(to_delayed([r])[0], _out_shape(agg, shape, ncat),
                           dtype=_AGGS[agg].dtype)


def aggregate2d_reduction(x, y, *, shape, range, agg: str = "count", values=None,
                          n_categories: int = 1, split_every: int | None = None) -> Reduction:
    """``aggregate2d`` over a known ``range`` as one
    :class:`~hpcjobs.kernels._reduction.Reduction`: bases per chunk of points, a tree of
    merges (fan-in ``split_every``, by default as large as the bases' size allows), one
    finalise into the raster."""
    x, y, values, shape, agg, n_categories = _checked(x, y, values, shape, agg,
                                                      n_categories or 1)
    xr, yr = _check_range(range)
    xe, ye = _edges(*xr, shape[1]), _edges(*yr, shape[0])
    ncat = n_categories
    if split_every is None:
        split_every = _fan_in(agg, int(np.prod(_out_shape(agg, shape, ncat))))
    return Reduction("aggregate2d", (x, y, values),
                     partial(_task_bases, xe=xe, ye=ye, agg=agg, ncat=ncat),
                     partial(_combine, agg=agg),
                     partial(_finalize, agg=agg, shape=tuple(shape), ncat=ncat),
                     split_every=split_every)


#: the merge tree's fan-in is as large as this many bytes of chunk bases allow, up to 16
_MERGE_BYTES = 256 * 2**20


def _fan_in(agg: str, cells: int) -> int:
    """Chunks merged per task: fewer tree levels (a merge in the middle of the tree holds a
    thread that a chunk could use; hpcjobs bench aggregate2d-count over Dask), as long as the
    parts held together stay within ``_MERGE_BYTES``."""
    per_cell = 8 * sum(_AGGS[agg].bases)
    return int(max(2, min(16, _MERGE_BYTES // max(1, per_cell * cells))))


def _inf_to_nan(a):
    import dask.array as da

    if a.dtype.kind != "f":
        return a
    return da.where(da.isinf(a), np.nan, a)

