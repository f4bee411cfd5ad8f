"""``pyramid``: multiscale levels of a 2-D raster by repeated 2x reduction.

Level 0 is the raster itself; level k is ``ceil(shape / 2**k)``. Reductions:

- ``mean``: the mean of the base pixels under each level-k pixel (a box filter, the
  anti-aliased choice). It is carried as sum and count from level to level, so it equals
  ``raster.reshape(h // 2**k, 2**k, w // 2**k, 2**k).mean(axis=(1, 3))`` for sizes divisible by
  ``2**k``; partial windows at odd edges average the pixels they hold; NaN pixels are skipped
  (a window of only NaN is NaN).
- ``min``, ``max``: the same over the window, NaN skipped.
- ``mode``: for label rasters, the most frequent of the 2x2 values of the level below (ties
  go to the smallest value), as label pyramids are usually built; NaN skipped.

A Dask raster is rechunked (only if needed) so chunk edges fall on multiples of
``2**(levels - 1)``; each base chunk is then read once and yields its window of every level in
one task, and the levels' small blocks are merged back into chunks of about the base chunk's
size. Rasters larger than memory therefore stream chunk by chunk.
"""

from __future__ import annotations

import numba
import numpy as np

from hpcjobs.kernels._jit import njit, task_threads
from hpcjobs.kernels._validation import InvalidInput, check_array, is_dask
from hpcjobs.kernels.viz.params import PYRAMID

_FUNC = "pyramid"

# ---------------------------------------------------------------------------------------------
# chunk level


@njit(inline="always")
def _window(a, i, j, vals, pos):
    """The non-NaN values of the 2x2 window of ``a`` under output pixel ``(i, j)`` (fewer at
    the raster's last row or column) into ``vals``, their flat indices into ``pos``; returns
    how many."""
    h, w = a.shape
    k = 0
    for r in range(2 * i, min(2 * i + 2, h)):
        for q in range(2 * j, min(2 * j + 2, w)):
            v = a[r, q]
            if v == v:
                vals[k] = v
                pos[k] = r * w + q
                k += 1
    return k


@njit(parallel=True)
def _reduce_sum(s, c, s_out, c_out, counted):
    """2x2 sums of ``s`` (NaN skipped) into ``s_out`` and their counts into ``c_out``: the
    sums of ``c`` at the same pixels where ``counted``, else of the non-NaN pixels (the first
    level, from the raster itself, whose ``c`` is not read)."""
    ho, wo = s_out.shape
    cf = c.ravel()
    for i in numba.prange(ho):
        vals = np.empty(4, dtype=np.float64)
        pos = np.empty(4, dtype=np.int64)
        for j in range(wo):
            k = _window(s, i, j, vals, pos)
            acc = 0.0
            n = 0.0
            for m in range(k):
                acc += vals[m]
                n += cf[pos[m]] if counted else 1.0
            s_out[i, j] = acc
            c_out[i, j] = n


@njit(parallel=True)
def _reduce_extreme(a, out, want_max):
    """2x2 max (or min) of ``a``, NaN skipped (NaN where all four are)."""
    ho, wo = out.shape
    for i in numba.prange(ho):
        vals = np.empty(4, dtype=a.dtype)
        pos = np.empty(4, dtype=np.int64)
        for j in range(wo):
            k = _window(a, i, j, vals, pos)
            best = a[2 * i, 2 * j]  # NaN when k == 0
            for m in range(k):
                v = vals[m]
                if m == 0 or (v > best if want_max else v < best):
                    best = v
            out[i, j] = best


@njit(parallel=True)
def _reduce_mode(a, out):
    """2x2 most frequent value of ``a`` (the smallest on a tie), NaN skipped."""
    ho, wo = out.shape
    for i in numba.prange(ho):
        vals = np.empty(4, dtype=a.dtype)
        pos = np.empty(4, dtype=np.int64)
        for j in range(wo):
            k = _window(a, i, j, vals, pos)
            if k == 0:
                out[i, j] = a[2 * i, 2 * j]  # only NaN
                continue
            best = vals[0]
            best_n = 0
            for m in range(k):
                cnt = 0
                for p in range(k):
                    if vals[p] == vals[m]:
                        cnt += 1
                if cnt > best_n or (cnt == best_n and vals[m] < best):
                    best, best_n = vals[m], cnt
            out[i, j] = best


def _half(shape):
    return (shape[0] + 1) // 2, (shape[1] + 1) // 2


def _out_dtype(dtype, method):
    if method == "mean":
        return np.float32 if dtype == np.float32 else np.float64
    return dtype


def _levels_numpy(a: np.ndarray, levels: int, method: str) -> list[np.ndarray]:
    """All levels of an in-memory raster (level 0 is ``a`` itself)."""
    out = [a]
    if method == "mean":
        s = c = None
        dt = _out_dtype(a.dtype, method)
        for k in range(1, levels):
            shape = _half(out[-1].shape)
            s_new = np.empty(shape)
            c_new = np.empty(shape)
            if k == 1:  # from the raster itself: counts of its non-NaN pixels
                _reduce_sum(a, s_new, s_new, c_new, False)
            else:
                _reduce_sum(s, c, s_new, c_new, True)
            s, c = s_new, c_new
            with np.errstate(invalid="ignore", divide="ignore"):
                out.append((s / c).astype(dt, copy=False))
        return out
    for _ in range(1, levels):
        prev = out[-1]
        nxt = np.empty(_half(prev.shape), dtype=prev.dtype)
        if method == "mode":
            _reduce_mode(prev, nxt)
        else:
            _reduce_extreme(prev, nxt, method == "max")
        out.append(nxt)
    return out


def _block_levels(block, levels, method):
    """The windows of levels 1 .. levels-1 that one aligned base chunk covers."""
    task_threads()  # pranges sized by this thread's Numba count
    return tuple(_levels_numpy(np.ascontiguousarray(block), levels, method)[1:])


# ---------------------------------------------------------------------------------------------
# array level


@PYRAMID
def pyramid(raster, levels: int = 5, *, method: str = "mean") -> list:
    """Multiscale levels of a raster, each half the size of the one before (2x reduction).

    Parameters
    ----------
    raster : numpy or dask array, shape (h, w)
        The base (level 0). NaN pixels are skipped by every method.
    levels : int
        Number of levels including the base (level k has shape ``ceil((h, w) / 2**k)``).
    method : {"mean", "min", "max", "mode"}
        ``mean`` averages the base pixels under each pixel (exact: carried as sum and count);
        ``min``/``max`` take the extreme; ``mode`` (label rasters) the most frequent of the
        2x2 values of the level below, ties to the smallest.

    Returns
    -------
    list of numpy or dask arrays
        ``levels`` arrays: the base, then each reduction. Dask in gives Dask out (lazy; each
        base chunk is read once for all levels when they are computed together, e.g. with
        ``dask.compute(*levels)`` or one ``da.store``).

    Examples
    --------
    >>> import numpy as np
    >>> [lvl.shape for lvl in pyramid(np.ones((8, 6)), 3)]
    [(8, 6), (4, 3), (2, 2)]
    """
    raster = check_array(raster, "raster", _FUNC, ndim=2, allow_nan=True, float_out=False,
                         kinds="fiub")
    if 0 in raster.shape:
        from hpcjobs.kernels._validation import message

        raise InvalidInput(message("raster", _FUNC, "a non-empty 2-D array", raster))
    if raster.dtype.kind == "b":
        raster = raster.astype(np.uint8)
    if not is_dask(raster):
        return _levels_numpy(np.ascontiguousarray(raster), levels, method)
    return _levels_dask(raster, levels, method)


def _aligned_chunks(n: int, chunk: int, f: int) -> tuple[int, ...]:
    c = max(f, -(-chunk // f) * f)
    out = [c] * (n // c)
    if n % c:
        out.append(n % c)
    return tuple(out)


def _levels_dask(raster, levels: int, method: str) -> list:

    if levels == 1:
        return [raster]
    f = 2 ** (levels - 1)
    target = tuple(max(c) for c in raster.chunks)
    chunks = tuple(_aligned_chunks(n, c, f) for n, c in zip(raster.shape, target, strict=True))
    if chunks != raster.chunks:
        raster = raster.rechunk(chunks)
    dt = _out_dtype(raster.dtype, method)

    def level_chunks(k):
        d = 2 ** k
        return tuple(tuple(-(-c // d) for c in axis) for axis in raster.chunks)

    # one task per base chunk computes every level's window (the base is read once)
    meta_levels = raster.map_blocks(
        lambda b: np.array([[_block_levels(b, levels, method)]], dtype=object),
        dtype=object, chunks=tuple((1,) * len(axis) for axis in raster.chunks),
        meta=np.empty((0, 0), dtype=object),
    )
    out = [raster]
    for k in range(1, levels):
        lvl = meta_levels.map_blocks(
            lambda b, k=k: b[0, 0][k - 1], dtype=dt, chunks=level_chunks(k),
            meta=np.empty((0, 0), dtype=dt),
        )
        # merge the shrinking blocks back into chunks about the base chunk's size
        lvl = lvl.rechunk(tuple(min(t, s) for t, s in zip(target, lvl.shape, strict=True)))
        out.append(lvl)
    return out
