"""Time-series downsampling for plotting: ``lttb``, ``minmax``, ``m4`` and ``minmax_lttb``.

Each function returns the int64 indices of the points kept, identical to tsdownsample's
``LTTBDownsampler``, ``MinMaxDownsampler``, ``M4Downsampler`` and ``MinMaxLTTBDownsampler``
(serial versions): the same bins (computed with the same floating-point formulas), the same
tie rule (the first minimum / maximum / largest triangle wins) and the same averages (the
eight-chain unrolled sum that tsdownsample's ndarray ``mean`` uses).

Bins without ``x`` cover equal index ranges; with ``x`` (sorted, non-decreasing) they cover
equal x intervals, found by binary search. ``minmax`` and ``m4`` skip NaN in y (a bin of only
NaN gives its first index); ``lttb`` refuses NaN. When ``n_out`` equals the series length
every index is returned.

Dask series (a long series in Zarr) give the same indices as in memory: min/max bins are
reduced per chunk and merged in chunk order (ties keep the earlier chunk), the x bins come from
per-chunk binary-search counts, and LTTB runs over bucket-aligned chunks in two passes (bucket
averages in parallel, then the sequential triangle selection chained chunk to chunk).
"""

from __future__ import annotations

import numba
import numpy as np
from numba import types
from numba.extending import intrinsic

from hpcjobs.kernels._jit import njit, task_threads
from hpcjobs.kernels._validation import InvalidInput, check_array, is_dask, message
from hpcjobs.kernels.viz.params import LTTB, M4, MINMAX, MINMAX_LTTB

# ---------------------------------------------------------------------------------------------
# chunk level


@intrinsic
def _bits(typingctx, v):
    """The bit pattern of a float64 as int64 (a register bitcast, no memory round trip)."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.int64))

    return types.int64(types.float64), codegen




@njit
def _argminmax(y, start, stop):
    """First index of the min and of the max of ``y[start:stop]`` skipping NaN.

    A range of only NaN gives ``(start, start)`` (as tsdownsample's argminmax does).
    """
    return _argminmax_scalar(y, start, stop)


@njit
def _argminmax_scalar(y, start, stop):
    imin = -1
    imax = -1
    vmin = 0.0
    vmax = 0.0
    for i in range(start, stop):
        v = y[i]
        if v != v:
            continue
        if imin < 0:
            imin, imax, vmin, vmax = i, i, v, v
        elif v < vmin:
            vmin, imin = v, i
        elif v > vmax:
            vmax, imax = v, i
    if imin < 0:
        return start, start
    return imin, imax



# min/max of a bin in one vectorised pass: each value becomes an int64 key ordered like the
# floats (the bits, with the magnitude bits flipped for negative numbers), and an integer
# min/max reduction vectorises where a float one does not. NaN keys fall outside
# [key(-inf), key(+inf)], so the same pass tells whether a bin holds NaN (then it is scanned
# again skipping NaN). Blocks of _MM_BLOCK values: the first block reaching a new extreme is
# remembered, and only that block is scanned for the first index of the extreme.

_MM_BLOCK = 256
_KEY_NEG_INF = np.int64(-0x7FF0000000000001)  # key of -inf: 0xfff0... ^ 0x7fff...
_KEY_POS_INF = np.int64(0x7FF0000000000000)  # key of +inf
_I64_MAX = np.int64(0x7FFFFFFFFFFFFFFF)
_I64_MIN = np.int64(-0x7FFFFFFFFFFFFFFF - 1)


@njit
def _key(v):
    b = _bits(np.float64(v))
    return b ^ ((b >> 63) & 0x7FFFFFFFFFFFFFFF)


@njit
def _block_keys(ys):
    lo = _I64_MAX
    hi = _I64_MIN
    for k in range(ys.shape[0]):
        c = _key(ys[k])
        lo = c if c < lo else lo
        hi = c if c > hi else hi
    return lo, hi


@njit
def _first_key(ys, key):
    for k in range(ys.shape[0]):
        if _key(ys[k]) == key:
            return k
    return 0


@njit
def _first_zero(ys, stop):
    """First ``k < stop`` with ``ys[k] == 0`` (+0.0 and -0.0 compare equal), else ``stop``."""
    for k in range(stop):
        if ys[k] == 0:
            return k
    return stop


@njit
def _argminmax_keys(y, s, e):
    """First argmin and argmax of ``y[s:e]`` (NaN skipped; all NaN gives ``(s, s)``).

    For float y and integer y of at most 32 bits (exact as float64).
    """
    ys = y[s:e]
    m = ys.shape[0]
    kmin = _I64_MAX
    kmax = _I64_MIN
    bmin = 0
    bmax = 0
    for b0 in range(0, m, _MM_BLOCK):
        lo, hi = _block_keys(ys[b0:min(b0 + _MM_BLOCK, m)])
        if lo < kmin:
            kmin, bmin = lo, b0
        if hi > kmax:
            kmax, bmax = hi, b0
    if kmin < _KEY_NEG_INF or kmax > _KEY_POS_INF:  # NaN in the bin
        return _argminmax_scalar(y, s, e)
    i = _first_key(ys[bmin:min(bmin + _MM_BLOCK, m)], kmin) + bmin
    j = _first_key(ys[bmax:min(bmax + _MM_BLOCK, m)], kmax) + bmax
    if ys[i] == 0:  # -0.0 and +0.0 are equal as floats: the first of either wins
        i = _first_zero(ys, i)
    if ys[j] == 0:
        j = _first_zero(ys, j)
    return i + s, j + s


@njit
def _minmax_span(y, starts, stops, b0, b1, out):
    """Sorted (argmin, argmax) of bins ``b0 .. b1 - 1`` into ``out``."""
    for b in range(b0, b1):
        i, j = _argminmax_keys(y, starts[b], stops[b])
        if i < j:
            out[b, 0], out[b, 1] = i, j
        else:
            out[b, 0], out[b, 1] = j, i


# points per thread before splitting the bins over threads pays: below it, one thread is as
# fast as tsdownsample's two; above it, two threads beat one clearly (hpcjobs bench minmax,
# against tsdownsample)
_PAR_POINTS = 2**21


@njit(parallel=True)
def _minmax_threads(y, starts, stops, bounds, out):
    for t in numba.prange(bounds.shape[0] - 1):
        _minmax_span(y, starts, stops, bounds[t], bounds[t + 1], out)


@njit
def _bin_extrema(y, starts, stops, offset, out_i, out_v, valid, keys):
    """Per bin: (argmin, min, argmax, max) of ``y`` over the bin's part in this chunk.

    ``starts``/``stops`` are global indices; ``offset`` is the chunk's first global index.
    ``valid[b]`` is False when the part holds only NaN. ``keys``: y is float or an integer
    of at most 32 bits (the vectorised scan); else the scalar one. Serial: Dask's threads
    run the chunks side by side.
    """
    for b in range(starts.shape[0]):
        if keys:
            i, j = _argminmax_keys(y, starts[b] - offset, stops[b] - offset)
        else:
            i, j = _argminmax(y, starts[b] - offset, stops[b] - offset)
        valid[b] = y[i] == y[i]
        out_i[b, 0] = i + offset
        out_i[b, 1] = j + offset
        out_v[b, 0] = np.float64(y[i])
        out_v[b, 1] = np.float64(y[j])


@njit
def _mean_unrolled(y, start, stop):
    """Mean of ``y[start:stop]`` summed like ndarray's ``unrolled_fold`` (8 chains), in y's type.

    For finite y (LTTB refuses NaN and inf); the chains start at +0.0 of y's type.
    """
    z = y[start] - y[start]
    p0 = p1 = p2 = p3 = p4 = p5 = p6 = p7 = z
    i = start
    while stop - i >= 8:
        p0 += y[i]
        p1 += y[i + 1]
        p2 += y[i + 2]
        p3 += y[i + 3]
        p4 += y[i + 4]
        p5 += y[i + 5]
        p6 += y[i + 6]
        p7 += y[i + 7]
        i += 8
    acc = z + (p0 + p4)
    acc = acc + (p1 + p5)
    acc = acc + (p2 + p6)
    acc = acc + (p3 + p7)
    while i < stop:
        acc = acc + y[i]
        i += 1
    cnt = np.zeros(1, dtype=y.dtype)
    cnt[0] = stop - start
    res = np.zeros(1, dtype=y.dtype)
    res[0] = acc / cnt[0]
    return np.float64(res[0])


@njit
def _mean_seq(y, start, stop):
    """Mean of integer ``y[start:stop]`` summed sequentially in float64 (tsdownsample's rule)."""
    acc = 0.0
    for i in range(start, stop):
        acc += np.float64(y[i])
    return acc / (stop - start)


@njit
def _lttb_ranges(n, n_out):
    """Range ``j`` (0 <= j <= n_out - 2) of LTTB: ``[floor(every*j) + 1, floor(every*(j+1)) + 1)``."""
    every = (n - 2) / (n_out - 2)
    starts = np.empty(n_out - 1, dtype=np.int64)
    stops = np.empty(n_out - 1, dtype=np.int64)
    for j in range(n_out - 1):
        starts[j] = np.int64(every * j) + 1
        stops[j] = min(np.int64(every * (j + 1)) + 1, n)
    return starts, stops


@njit(parallel=True)
def _range_means(y, starts, stops, offset, unrolled, out):
    """Mean of y over each range (global indices; the chunk starts at ``offset``)."""
    for j in numba.prange(starts.shape[0]):
        s = starts[j] - offset
        e = stops[j] - offset
        if unrolled:
            out[j] = _mean_unrolled(y, s, e)
        else:
            out[j] = _mean_seq(y, s, e)


# The triangle areas are computed with exactly tsdownsample's formula. The first index of the
# largest is found in two steps: the maximum of each block of _AREA_BLOCK points by a
# branch-free max reduction over the areas' bit patterns as int64 (non-negative floats order
# like their bits, and an integer max vectorises where a float max does not: tsdownsample's
# own trick), remembering the first block whose maximum beats all earlier ones; then one
# scalar scan of that block alone for the first point reaching the maximum (tsdownsample's
# first-max rule). No scratch buffer: each bucket is read once for its mean and once here,
# from cache.

_AREA_BLOCK = 256


@njit
def _max_area(ys, a0, d1, d2, off, ramp):
    best = 0
    for k in range(ys.shape[0]):
        v = _bits(abs(d1 * np.float64(ys[k]) - (a0 - ramp[k]) * d2 - off))
        best = v if v > best else best
    return best


@njit
def _first_area(ys, a0, d1, d2, off, ramp, best):
    for k in range(ys.shape[0]):
        if _bits(abs(d1 * np.float64(ys[k]) - (a0 - ramp[k]) * d2 - off)) == best:
            return k
    return 0


@njit
def _max_area_x(ys, xs, d1, d2, off):
    best = 0
    for k in range(ys.shape[0]):
        v = _bits(abs(d1 * np.float64(ys[k]) + d2 * np.float64(xs[k]) - off))
        best = v if v > best else best
    return best


@njit
def _first_area_x(ys, xs, d1, d2, off, best):
    for k in range(ys.shape[0]):
        if _bits(abs(d1 * np.float64(ys[k]) + d2 * np.float64(xs[k]) - off)) == best:
            return k
    return 0


@njit
def _pick_area(y, s, e, d1, d2, off, ax, ramp):
    """First index of the largest triangle in ``y[s:e]`` (x = index; ``ax`` the last pick's x).

    ``a0 - ramp[k]`` is exactly ``ax - (s + k)`` (integers as floats, ramp = 0., 1., ...), the
    value tsdownsample steps down by 1.0; slices with range(m) keep the loops check-free.
    """
    ys = y[s:e]
    m = ys.shape[0]
    a0 = ax - s
    best = -1
    bb = 0
    for b0 in range(0, m, _AREA_BLOCK):
        v = _max_area(ys[b0:min(b0 + _AREA_BLOCK, m)], a0 - b0, d1, d2, off, ramp)
        if v > best:
            best, bb = v, b0
    b1 = min(bb + _AREA_BLOCK, m)
    return _first_area(ys[bb:b1], a0 - bb, d1, d2, off, ramp, best) + bb + s


@njit
def _pick_area_x(x, y, s, e, d1, d2, off):
    ys = y[s:e]
    xs = x[s:e]
    m = ys.shape[0]
    best = -1
    bb = 0
    for b0 in range(0, m, _AREA_BLOCK):
        b1 = min(b0 + _AREA_BLOCK, m)
        v = _max_area_x(ys[b0:b1], xs[b0:b1], d1, d2, off)
        if v > best:
            best, bb = v, b0
    b1 = min(bb + _AREA_BLOCK, m)
    return _first_area_x(ys[bb:b1], xs[bb:b1], d1, d2, off, best) + bb + s


@njit
def _lttb_select(x, y, has_x, offset, b0, b1, starts, stops, avg_y, avg_x, a, ax, ay, out,
                 fuse=-1):
    """Pick the point of buckets ``b0 .. b1 - 1`` (sequential: each depends on the last).

    ``x``/``y`` hold the chunk starting at global index ``offset``; ``a``, ``ax``, ``ay`` are
    the point picked last (global index and values). Writes ``out[b + 1]``; returns the state.
    ``fuse`` -1: ``avg_y`` is precomputed; 1 (float y, unrolled sum) or 0 (integer y): each
    next range's mean is computed here just before its bucket is searched, so the bucket is
    read from memory once (the search finds it in cache).
    """
    ramp = np.arange(_AREA_BLOCK).astype(np.float64)
    for i in range(b0, b1):
        ravg = i + 1
        if fuse >= 0:
            if fuse == 1:
                avg_y[ravg] = _mean_unrolled(y, starts[ravg] - offset, stops[ravg] - offset)
            else:
                avg_y[ravg] = _mean_seq(y, starts[ravg] - offset, stops[ravg] - offset)
        if has_x:
            c_x = avg_x[ravg]
        else:
            c_x = (starts[ravg] + stops[ravg] - 1) / 2.0
        c_y = avg_y[ravg]
        lo = starts[i]
        hi = starts[ravg]
        d1 = ax - c_x
        d2 = c_y - ay
        if has_x:
            off = d1 * ay + d2 * ax
            a = _pick_area_x(x, y, lo - offset, hi - offset, d1, d2, off) + offset
        else:
            off = d1 * ay
            # tsdownsample steps (ax - k) down by 1.0 from (ax - lo): exact, so computed directly
            a = _pick_area(y, lo - offset, hi - offset, d1, d2, off, ax - offset, ramp) + offset
        ay = np.float64(y[a - offset])
        ax = np.float64(x[a - offset]) if has_x else np.float64(a)
        out[i + 1] = a
    return a, ax, ay


# ---------------------------------------------------------------------------------------------
# validation


def _check_n_out(n_out, n, func):
    """``n_out`` (its declared checks passed) is at most the series' length ``n``."""
    if n_out > n:
        raise InvalidInput(message("n_out", func, f"at most the series length ({n})", n_out,
                                   "Downsampling cannot add points."))
    return n_out


def _check_series(y, x, func, *, allow_nan):
    y = check_array(y, "y", func, ndim=1, float_out=False, allow_nan=allow_nan,
                    kinds="fiub", min_len=1, fix="")
    if y.dtype.kind == "b":
        y = y.astype(np.int8)
    if x is not None:
        x = check_array(x, "x", func, ndim=1, float_out=False, allow_nan=True, kinds="fiuM")
        if x.dtype.kind == "M":
            x = x.view(np.int64)
        if x.shape[0] != y.shape[0]:
            raise InvalidInput(message("x", func, f"the same length as y ({y.shape[0]})", x))
        if not is_dask(x) and x.shape[0] > 1 and not (x[1:] >= x[:-1]).all():
            raise _not_sorted(func)
    return y, x


def _nan_error(func):
    return InvalidInput(message("y", func, "finite (no NaN or inf)", "a series holding NaN or inf",
                                "Drop or interpolate the missing values first."))


def _not_sorted(func):
    return InvalidInput(message("x", func, "sorted (non-decreasing, no NaN)", "unsorted x",
                                "Sort the series by x first."))


def _check_sorted_dask(x, func):
    if x is None or not is_dask(x) or x.shape[0] < 2:
        return None
    return (x[1:] >= x[:-1]).all()


def _ascontig(a):
    return None if a is None else np.ascontiguousarray(a)


# ---------------------------------------------------------------------------------------------
# min/max bins


def _index_bins(n: int, nb: int):
    """tsdownsample's bins without x: ``[floor(bs*i) + (i>0), floor(bs*(i+1)) + 1)``."""
    bs = (n - 1) / nb
    i = np.arange(nb, dtype=np.float64)
    starts = (bs * i).astype(np.int64) + (i != 0)
    stops = (bs * (i + 1)).astype(np.int64) + 1
    return starts.astype(np.int64), stops


def _search_values(x0, x1, nb: int, dtype):
    """The bin ends tsdownsample searches for, cast to x's type.

    ``x0 + step * k`` computed as tsdownsample's ``sequential_add_mul`` does
    (``x0 + step * (k // 2) + step * (k - k // 2)``), and the last bin ends at the last x
    itself (matching tsdownsample 0.1.5 on float x exactly; on integer and datetime x a bin
    edge that lands within rounding of an integer can still differ by one point, rarely).
    """
    step = (float(x1) / nb) - (float(x0) / nb)
    k = np.arange(1, nb + 1, dtype=np.int64)
    half = (k // 2).astype(np.float64)
    rest = (k - k // 2).astype(np.float64)
    sv = float(x0) + step * half + step * rest
    if np.dtype(dtype).kind in "iu":
        sv = np.trunc(sv).astype(dtype)
    else:
        sv = sv.astype(dtype)
    sv[-1] = x1
    return sv


def _x_bins_from_counts(left, right, n):
    """Bins from the global searchsorted counts of each search value (left and right side).

    tsdownsample: a bin is empty when the first point of the bin is already >= the search
    value; else its binary search stops at the first point >= the value and takes that
    point too when it equals the value (only the first of equal x values: ``left + 1``).
    """
    starts, stops = [], []
    start = 0
    for lft, rgt in zip(left.tolist(), right.tolist(), strict=True):
        if start >= n or start >= lft:
            continue
        stop = n if lft >= n else (lft + 1 if rgt > lft else lft)
        starts.append(start)
        stops.append(stop)
        start = stop
    return np.asarray(starts, dtype=np.int64), np.asarray(stops, dtype=np.int64)


def _x_bins(x, nb):
    sv = _search_values(x[0], x[-1], nb, x.dtype)
    left = np.searchsorted(x, sv, side="left")
    right = np.searchsorted(x, sv, side="right")
    return _x_bins_from_counts(left, right, x.shape[0])


def _x_bins_dask(x, nb):
    import dask
    import dask.array as da

    x0, x1 = dask.compute(x[0], x[-1])
    sv = _search_values(x0, x1, nb, x.dtype)

    def counts(block):
        return np.stack([np.searchsorted(block, sv, side="left"),
                         np.searchsorted(block, sv, side="right")])[None]

    c = da.map_blocks(counts, x, new_axis=[1, 2], chunks=((1,) * x.numblocks[0], (2,), (nb,)),
                      dtype=np.int64)
    (tot,) = dask.compute(c.sum(axis=0))
    return _x_bins_from_counts(tot[0], tot[1], x.shape[0])


def _extrema(y, starts, stops):
    """In-memory sorted (argmin, argmax) pairs per bin, shape (nbins, 2).

    One vectorised pass per bin (``_argminmax_keys``: first occurrences, NaN skipped, like
    tsdownsample). Bins are split over Numba's threads in contiguous groups only for series
    of ``_PAR_POINTS`` a thread: below that a pass is shorter than what the hand-off to a
    thread can cost on busy cores. 64-bit integer y (not exact as float64) goes through
    NumPy's ``argmin``/``argmax``.
    """
    nb = starts.shape[0]
    out = np.empty((nb, 2), dtype=np.int64)
    if nb == 0:
        return out
    if y.dtype.kind == "f" or y.dtype.itemsize <= 4:
        threads = max(1, min(task_threads(), nb, int(y.shape[0]) // _PAR_POINTS))
        if threads == 1:
            _minmax_span(y, starts, stops, 0, nb, out)
        else:
            bounds = np.linspace(0, nb, threads + 1).astype(np.int64)
            _minmax_threads(y, starts, stops, bounds, out)
        return out
    for b in range(nb):
        s, e = int(starts[b]), int(stops[b])
        seg = y[s:e]
        i, j = int(seg.argmin()) + s, int(seg.argmax()) + s
        out[b] = (i, j) if i < j else (j, i)
    return out


def _extrema_dask(y, starts, stops):
    """The same pairs from a chunked series: per-chunk extrema merged in chunk order."""
    import dask

    offsets = np.concatenate([[0], np.cumsum(y.chunks[0])])
    parts = []
    for c, block in enumerate(y.to_delayed(optimize_graph=False).ravel()):
        lo, hi = offsets[c], offsets[c + 1]
        sel = np.nonzero((starts < hi) & (stops > lo))[0]
        if sel.size == 0:
            continue
        s = np.maximum(starts[sel], lo)
        e = np.minimum(stops[sel], hi)
        parts.append((sel, dask.delayed(_chunk_extrema)(block, s, e, lo)))
    results = dask.compute([p[1] for p in parts])[0]
    nb = starts.shape[0]
    bi = np.full((nb, 2), -1, dtype=np.int64)
    bv = np.zeros((nb, 2))
    for (sel, _), (ii, vv, ok) in zip(parts, results, strict=True):
        for k, b in enumerate(sel.tolist()):  # chunks in order: ties keep the earlier one
            if not ok[k]:
                continue
            if bi[b, 0] < 0:
                bi[b], bv[b] = ii[k], vv[k]
                continue
            if vv[k, 0] < bv[b, 0]:
                bi[b, 0], bv[b, 0] = ii[k, 0], vv[k, 0]
            if vv[k, 1] > bv[b, 1]:
                bi[b, 1], bv[b, 1] = ii[k, 1], vv[k, 1]
    empty = bi[:, 0] < 0
    bi[empty, 0] = starts[empty]
    bi[empty, 1] = starts[empty]
    return np.sort(bi, axis=1)


def _chunk_extrema(block, s, e, offset):
    block = np.ascontiguousarray(block)
    out_i = np.empty((s.shape[0], 2), dtype=np.int64)
    out_v = np.empty((s.shape[0], 2))
    valid = np.empty(s.shape[0], dtype=np.bool_)
    _bin_extrema(block, s, e, offset, out_i, out_v, valid,
                 block.dtype.kind == "f" or block.dtype.itemsize <= 4)
    return out_i, out_v, valid


def _minmax_m4(y, x, n_out, per_bin):
    """Shared body of minmax (``per_bin`` 2) and m4 (4) for NumPy or Dask series."""
    n = y.shape[0]
    if n_out >= n:
        return np.arange(n, dtype=np.int64)
    lazy = is_dask(y) or is_dask(x)
    if lazy:
        import dask.array as da

        y = da.asarray(y)
        if x is not None:
            x = da.asarray(x).rechunk(y.chunks)
            ok = _check_sorted_dask(x, "minmax")
            if ok is not None and not bool(ok.compute()):
                raise _not_sorted("minmax" if per_bin == 2 else "m4")
    nb = n_out // per_bin
    if x is None:
        starts, stops = _index_bins(n, nb)
        pairs = _extrema_dask(y, starts, stops) if lazy else _extrema(y, starts, stops)
        if per_bin == 2:
            return pairs.ravel()
        return np.column_stack([starts, pairs, stops - 1]).ravel()
    starts, stops = _x_bins_dask(x, nb) if lazy else _x_bins(x, nb)
    small = stops - starts <= per_bin
    big = ~small
    pairs = np.empty((starts.shape[0], 2), dtype=np.int64)
    if big.any():
        pairs[big] = (_extrema_dask(y, starts[big], stops[big]) if lazy
                      else _extrema(y, starts[big], stops[big]))
    pieces = []
    for b in range(starts.shape[0]):
        if small[b]:
            pieces.append(np.arange(starts[b], stops[b], dtype=np.int64))
        elif per_bin == 2:
            pieces.append(pairs[b])
        else:
            pieces.append(np.array([starts[b], pairs[b, 0], pairs[b, 1], stops[b] - 1]))
    if not pieces:
        return np.empty(0, dtype=np.int64)
    return np.concatenate(pieces).astype(np.int64)


@MINMAX
def minmax(y, n_out: int = 1000, *, x=None) -> np.ndarray:
    """Indices of the min and max of ``n_out // 2`` bins (tsdownsample's MinMaxDownsampler).

    Parameters
    ----------
    y : numpy or dask array, shape (n,)
        The series; NaN values are skipped.
    n_out : int
        Number of indices wanted: an even number, at most ``n``.
    x : numpy or dask array, shape (n,), optional
        Sorted x (numbers or datetime64): then the bins are equal x intervals (empty bins
        give nothing, bins of at most two points give all their points).

    Returns
    -------
    numpy.ndarray of int64
        Sorted indices of the points kept.

    Examples
    --------
    >>> import numpy as np
    >>> minmax(np.array([0., 3, 1, 2, 5, 4, 0, 1]), 4)
    array([0, 1, 4, 6])
    """
    y, x = _check_series(y, x, "minmax", allow_nan=True)
    n_out = _check_n_out(n_out, y.shape[0], "minmax")
    return _minmax_m4(_ascontig(y) if not is_dask(y) else y,
                      _ascontig(x) if x is not None and not is_dask(x) else x, n_out, 2)


@M4
def m4(x, y, n_out: int = 1000) -> np.ndarray:
    """Indices of the first, min, max and last point of ``n_out // 4`` bins (M4).

    Identical to tsdownsample's ``M4Downsampler``.

    Parameters
    ----------
    x : numpy or dask array, shape (n,), or None
        Sorted x (numbers or datetime64); None: the bins are equal index ranges.
    y : numpy or dask array, shape (n,)
        The series; NaN values are skipped.
    n_out : int
        A multiple of 4, at most ``n``.

    Returns
    -------
    numpy.ndarray of int64
        Sorted indices (a bin's first and min point may coincide and appear twice).

    Examples
    --------
    >>> import numpy as np
    >>> m4(None, np.array([0., 3, 1, 2, 5, 4, 0, 1, 2]), 4)
    array([0, 0, 4, 8])
    """
    y, x = _check_series(y, x, "m4", allow_nan=True)
    n_out = _check_n_out(n_out, y.shape[0], "m4")
    return _minmax_m4(_ascontig(y) if not is_dask(y) else y,
                      _ascontig(x) if x is not None and not is_dask(x) else x, n_out, 4)


# ---------------------------------------------------------------------------------------------
# LTTB


def _lttb_numpy(x, y, n_out):
    n = y.shape[0]
    starts, stops = _lttb_ranges(n, n_out)
    avg_y = np.empty(n_out - 1)
    unrolled = y.dtype.kind == "f"
    # range 0's mean here; the others inside the selection, fused with the bucket search
    avg_y[0] = (_mean_unrolled if unrolled else _mean_seq)(y, starts[0], stops[0])
    has_x = x is not None
    avg_x = ((x[stops - 1].astype(np.float64) + x[starts].astype(np.float64)) / 2.0 if has_x
             else np.zeros(n_out - 1))
    out = np.empty(n_out, dtype=np.int64)
    out[0], out[-1] = 0, n - 1
    xx = x if has_x else y
    ax = np.float64(x[0]) if has_x else 0.0
    # the last bucket's "next average" is the last point: range n_out - 2 is [n - 1, n)
    _lttb_select(xx, y, has_x, 0, 0, n_out - 2, starts, stops, avg_y, avg_x, 0, ax,
                 np.float64(y[0]), out, 1 if unrolled else 0)
    # a NaN or inf anywhere makes its range's mean non-finite (the ranges cover y[1:])
    if not (np.isfinite(avg_y).all() and np.isfinite(y[0])) and not np.isfinite(y).all():
        raise _nan_error("lttb")
    return out


def _lttb_dask(x, y, n_out):
    import dask
    import dask.array as da

    n = y.shape[0]
    starts, stops = _lttb_ranges(n, n_out)
    # chunks cut at bucket starts, about as long as the input's chunks
    target = max(int(np.median(y.chunks[0])), 1)
    cuts = [0]
    for s in starts[1:].tolist():
        if s - cuts[-1] >= target:
            cuts.append(s)
    cuts.append(n)
    chunks = (tuple(np.diff(cuts).tolist()),)
    y = da.asarray(y).rechunk(chunks)
    has_x = x is not None
    if has_x:
        x = da.asarray(x).rechunk(chunks)
    unrolled = y.dtype.kind == "f"
    yb = y.to_delayed(optimize_graph=False).ravel()
    xb = x.to_delayed(optimize_graph=False).ravel() if has_x else [None] * len(yb)
    cut = np.asarray(cuts)
    sels = [np.nonzero((starts >= cut[c]) & (starts < cut[c + 1]))[0] for c in range(len(yb))]
    parts = [dask.delayed(_lttb_block_means)(yb[c], xb[c], int(cut[c]), starts[sels[c]],
                                             stops[sels[c]], unrolled)
             for c in range(len(yb))]
    checks = _check_sorted_dask(x, "lttb")
    nan = ~da.isfinite(y).all() if y.dtype.kind == "f" else False
    # one graph for everything read from the rechunked series: computing y[0] on its own
    # after to_delayed() sends the scheduler two different tasks under one key (the
    # "different run_spec" warning of distributed)
    parts, bad_nan, ok, y0, x0 = dask.compute(parts, nan, True if checks is None else checks,
                                              y[0], x[0] if has_x else 0.0)
    if bad_nan:
        raise _nan_error("lttb")
    if not ok:
        raise _not_sorted("lttb")
    avg_y = np.empty(n_out - 1)
    avg_x = np.zeros(n_out - 1)
    for sel, (m, axs) in zip(sels, parts, strict=True):
        avg_y[sel] = m
        avg_x[sel] = axs
    # the bucket tables go to each worker once, not inside every task
    tables = dask.delayed((starts, stops, avg_y, avg_x), pure=True)
    state = (0, float(x0), float(y0))
    pieces = []
    for c in range(len(yb)):
        b = sels[c]
        if b.size == 0:
            continue
        b0, b1 = int(b[0]), min(int(b[-1]) + 1, n_out - 2)
        if b0 >= b1:
            continue
        state, piece = dask.delayed(_lttb_block_select, nout=2)(
            yb[c], xb[c], int(cut[c]), b0, b1, state, tables, n_out)
        pieces.append(piece)
    (pieces,) = dask.compute(pieces)
    out = np.empty(n_out, dtype=np.int64)
    out[0], out[-1] = 0, n - 1
    out[1:-1] = np.concatenate(pieces)
    return out


# The tasks of the Dask paths are module-level functions, never closures or the jitted
# functions themselves: those are pickled by value, and a worker rebuilds them without
# Numba's cache, so every new worker process compiled them again (lttb: 1.6 s a worker).


def _lttb_block_means(block, xblock, lo, starts, stops, unrolled):
    """Means of the y (and mid x) of the ranges ``[starts, stops)`` held by one block."""
    task_threads()  # a prange sized by this thread's Numba count
    block = np.ascontiguousarray(block)
    out = np.empty(starts.shape[0])
    _range_means(block, starts, stops, lo, unrolled, out)
    if xblock is not None:
        ax = ((xblock[stops - 1 - lo].astype(np.float64)
               + xblock[starts - lo].astype(np.float64)) / 2.0)
    else:
        ax = np.zeros(starts.shape[0])
    return out, ax


def _lttb_block_select(block, xblock, lo, b0, b1, state, tables, n_out):
    """The points of buckets ``b0 .. b1 - 1`` in one block, after the point ``state``
    picked last; returns the new state and the points."""
    starts, stops, avg_y, avg_x = tables
    out = np.zeros(n_out, dtype=np.int64)
    block = np.ascontiguousarray(block)
    has_x = xblock is not None
    xx = np.ascontiguousarray(xblock) if has_x else block
    a, ax, ay = _lttb_select(xx, block, has_x, lo, b0, b1, starts, stops, avg_y, avg_x,
                             *state, out)
    return (a, ax, ay), out[b0 + 1:b1 + 1]


@LTTB
def lttb(x, y, n_out: int = 1000) -> np.ndarray:
    """Indices of the points Largest-Triangle-Three-Buckets keeps (tsdownsample's LTTB).

    Parameters
    ----------
    x : numpy or dask array, shape (n,), or None
        Sorted x (numbers or datetime64); None means x = 0 .. n-1.
    y : numpy or dask array, shape (n,)
        The series, without NaN.
    n_out : int
        Number of points kept, 3 <= n_out <= n (the first and last are always kept).

    Returns
    -------
    numpy.ndarray of int64, shape (n_out,)

    Examples
    --------
    >>> import numpy as np
    >>> lttb(None, np.arange(10.0), 4)
    array([0, 1, 5, 9])
    """
    y, x = _check_series(y, x, "lttb", allow_nan=True)  # NaN is caught with the means
    n_out = _check_n_out(n_out, y.shape[0], "lttb")
    if n_out == y.shape[0]:
        return np.arange(n_out, dtype=np.int64)
    if is_dask(y) or is_dask(x):
        import dask.array as da

        return _lttb_dask(x, da.asarray(y), n_out)
    return _lttb_numpy(_ascontig(x), _ascontig(y), n_out)


@MINMAX_LTTB
def minmax_lttb(x, y, n_out: int = 1000, *, minmax_ratio: int = 4) -> np.ndarray:
    """MinMax preselection of ``n_out * minmax_ratio`` points, then LTTB (MinMaxLTTB).

    Identical to tsdownsample's ``MinMaxLTTBDownsampler``: when ``n // n_out > minmax_ratio``
    the interior points are reduced with ``minmax``, then LTTB picks ``n_out`` of them at
    their original x (the first and last point always kept); otherwise it is plain LTTB.

    Parameters
    ----------
    x : numpy or dask array, shape (n,), or None
    y : numpy or dask array, shape (n,)
        The series, without NaN.
    n_out : int
        3 <= n_out <= n.
    minmax_ratio : int
        Preselection factor (>= 2).

    Returns
    -------
    numpy.ndarray of int64, shape (n_out,)

    Examples
    --------
    >>> import numpy as np
    >>> minmax_lttb(None, np.sin(np.arange(1000) / 50.0), 10).shape
    (10,)
    """
    y, x = _check_series(y, x, "minmax_lttb", allow_nan=True)  # NaN: checked below
    n_out = _check_n_out(n_out, y.shape[0], "minmax_lttb")
    n = y.shape[0]
    if n_out == n:
        return np.arange(n, dtype=np.int64)
    if n // n_out <= minmax_ratio:
        return lttb(x, y, n_out)
    inner = _minmax_m4(y[1:n - 1], None if x is None else x[1:n - 1], n_out * minmax_ratio, 2)
    index = np.concatenate([[0], inner + 1, [n - 1]]).astype(np.int64)
    if is_dask(y):
        import dask

        ys, xs = dask.compute(y[index], None if x is None else x[index])
    else:
        ys, xs = y[index], None if x is None else x[index]
    ys = np.ascontiguousarray(ys)
    # the reduced series keeps its original positions as x (tsdownsample does the same)
    xs = index if xs is None else np.ascontiguousarray(xs)
    if np.asarray(ys).dtype.kind == "f" and not np.isfinite(ys).all():
        raise _nan_error("minmax_lttb")
    picked = _lttb_numpy(xs, ys, n_out)
    return index[picked]
