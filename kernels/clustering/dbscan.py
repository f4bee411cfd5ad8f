"""DBSCAN, exact, on a grid of eps-cells with union-find; distributed by spatial slabs.

How it works (Gunawan's grid algorithm, as in "DBSCAN revisited", Gan & Tao 2015)
----------------------------------------------------------------------------------
* Rows are put in cells of side ``eps / sqrt(d)`` (a hair less, so that float rounding can
  never put two rows more than ``eps`` apart in one cell): all rows of a cell are neighbours.
  Cells are sorted (one int64 key per row, or the coordinates themselves when the grid is too
  large for one key); each cell finds its neighbour cells (those whose closest corners are
  ``<= eps`` apart) by a forward sweep over the sorted cells, stored once in a CSR list
  (about 21 per cell in 2-D; O(n) memory, nothing is quadratic in n).
* Core points: a cell with ``>= min_samples`` rows is all core; otherwise each row counts
  its neighbours within ``eps`` (distance ``<= eps``, the row itself included, as in
  scikit-learn) in the neighbour cells whose box is within ``eps`` of the row, stopping at
  ``min_samples``.
* Clusters: two cells holding core points are joined (union-find) when some pair of their
  core points is within ``eps``; the pair is only searched for when the two cells are not
  joined yet, which skips most pairs inside a cluster. A cluster is a connected set of cells.
* Over Dask, the space is cut into slabs along the widest dimension (boundaries at sampled
  quantiles, aligned to the cells) and every slab gets its rows plus a halo of ``2 m`` cells
  on each side (``m`` cells span ``eps``): the core flags of the slab's rows and of the inner
  ``m`` cells of the halo are then exact, so every cluster edge that touches a slab row is
  seen inside the slab. Slabs are clustered independently; clusters that cross slabs are
  merged on the driver through the core points seen by two slabs, and the labels are
  assembled back into the row order of X as Dask arrays.

The number of neighbour cells grows like ``(2 ceil(sqrt(d)) + 1)^d``: 2-D and 3-D are the
practical range (4-D works; beyond that a tree index pays more).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np

from hpcjobs.kernels._finite import all_finite
from hpcjobs.kernels._jit import njit, task_threads, thread_ranges
from hpcjobs.kernels._validation import (
    InvalidInput,
    check_array,
    message,
    nonfinite_error,
)
from hpcjobs.kernels.clustering._common import Blocks, known_rows, uniforms
from hpcjobs.kernels.clustering.params import DBSCAN

_FUNC = "dbscan"
_SHRINK = 1.0 - 1e-9  # cell side = eps / sqrt(d) * _SHRINK


@dataclass(frozen=True)
class DBSCANResult:
    """Result of :func:`dbscan`: ``labels`` (n,) int64, -1 for noise, and ``core`` (n,) bool.

    NumPy arrays for NumPy input, Dask arrays over the rows of X for Dask input.
    ``n_clusters`` is the number of clusters found.
    """

    labels: np.ndarray
    core: np.ndarray
    n_clusters: int


# ---------------------------------------------------------------------------------------------
# grid geometry


def _grid(eps: float, d: int, mag: float):
    """Cell side, reach ``m`` (cells) and the valid-offset table over ``[-m, m]^d``.

    ``mag`` bounds the magnitude of the coordinates (and of their range): the cell side is
    shrunk by the worst rounding error of ``floor((x - lo) / side)`` at that magnitude, so two
    rows of one cell are always within ``eps`` and no neighbour cell is missed.
    """
    side0 = eps / math.sqrt(d)
    err = 4.0 * np.finfo(np.float64).eps * (mag / side0 + 1.0)
    side = side0 * _SHRINK / (1.0 + 2.0 * err)
    reach = side * max(1.0 - 2.0 * err, 0.5)  # the least true gap one cell step can hide
    m = int(math.floor(eps / reach)) + 1
    width = 2 * m + 1
    valid = np.zeros(width ** d, dtype=np.bool_)
    for flat in range(width ** d):
        rest, gap2 = flat, 0.0
        for _ in range(d):
            o = rest % width - m
            rest //= width
            g = max(abs(o) - 1, 0)
            gap2 += g * g
        valid[flat] = gap2 * reach * reach <= eps * eps
    return side, m, valid


#: the most eps-cells along an axis, relative to the coordinates' magnitude: past 2**50 a
#: float64 coordinate no longer tells its cell (and a key would overflow)
_MAX_CELLS_PER_AXIS = 2.0 ** 50


def _check_scale(eps: float, d: int, mag: float) -> None:
    """Refuse an ``eps`` too small for the data's magnitude, before any grid is built."""
    least = mag * math.sqrt(d) / _MAX_CELLS_PER_AXIS
    if eps < least:
        raise InvalidInput(message("eps", _FUNC, f"at least {least:.3g} for coordinates of "
                                                 f"magnitude {mag:.3g} (at most 2**50 eps-cells "
                                                 "along an axis)", eps))


def _magnitude(lo: np.ndarray, hi: np.ndarray) -> float:
    return float(max(np.abs(lo).max(), np.abs(hi).max(), (hi - lo).max())) if len(lo) else 0.0


# ---------------------------------------------------------------------------------------------
# chunk level: Numba, on rows sorted by cell


@njit
def _cmp_prefix(cc, i, target, upto):
    """-1, 0, 1 comparing ``cc[i, :upto]`` with ``target[:upto]``."""
    for f in range(upto):
        a = cc[i, f]
        b = target[f]
        if a < b:
            return -1
        if a > b:
            return 1
    return 0


@njit
def _lower_bound(cc, target):
    lo = 0
    hi = cc.shape[0]
    d = cc.shape[1]
    while lo < hi:
        mid = (lo + hi) // 2
        if _cmp_prefix(cc, mid, target, d) < 0:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit
def _neighbours_of(cc, c, m, valid, out, count_only, target, pos, fresh):
    """Neighbour cells of cell ``c`` (itself included), in cell order; returns their number.

    ``pos[p]`` is where the search for prefix offset ``p`` starts: the targets grow with ``c``
    (cells are sorted), so a thread sweeping its cells in order only moves the pointers
    forward; ``fresh`` starts them with a binary search instead.
    """
    ncell, d = cc.shape
    width = 2 * m + 1
    n_prefix = width ** (d - 1)
    found = 0
    for p in range(n_prefix):
        rest = p
        # prefix offsets, most significant first so that cells come out in sorted order
        for f in range(d - 2, -1, -1):
            target[f] = cc[c, f] + (rest % width) - m
            rest //= width
        target[d - 1] = cc[c, d - 1] - m
        if fresh:
            j = _lower_bound(cc, target)
        else:
            j = pos[p]
            while j < ncell and _cmp_prefix(cc, j, target, d) < 0:
                j += 1
        pos[p] = j
        while j < ncell:
            if _cmp_prefix(cc, j, target, d - 1) != 0:
                break
            o_last = cc[j, d - 1] - cc[c, d - 1]
            if o_last > m:
                break
            flat = 0
            mult = 1
            for f in range(d):
                flat += (cc[j, f] - cc[c, f] + m) * mult
                mult *= width
            if valid[flat]:
                if not count_only:
                    out[found] = j
                found += 1
            j += 1
    return found


@njit(parallel=True)
def _neighbour_csr(cc, m, valid, n_threads):
    ncell, d = cc.shape
    n_prefix = (2 * m + 1) ** (d - 1)
    ranges = thread_ranges(ncell, n_threads)
    nt = ranges.shape[0]
    counts = np.zeros(ncell + 1, dtype=np.int64)
    dummy = np.empty(0, dtype=np.int64)
    for t in numba.prange(nt):
        target = np.empty(d, dtype=np.int64)
        pos = np.zeros(n_prefix, dtype=np.int64)
        for c in range(ranges[t, 0], ranges[t, 1]):
            counts[c + 1] = _neighbours_of(cc, c, m, valid, dummy, True, target, pos,
                                           c == ranges[t, 0])
    ptr = np.cumsum(counts)
    nbr = np.empty(ptr[-1], dtype=np.int64)
    for t in numba.prange(nt):
        target = np.empty(d, dtype=np.int64)
        pos = np.zeros(n_prefix, dtype=np.int64)
        for c in range(ranges[t, 0], ranges[t, 1]):
            _neighbours_of(cc, c, m, valid, nbr[ptr[c]:ptr[c + 1]], False, target, pos,
                           c == ranges[t, 0])
    return ptr, nbr


@njit
def _d2(X, i, j):
    s = 0.0
    for f in range(X.shape[1]):
        t = X[i, f] - X[j, f]
        s += t * t
    return s


@njit
def _box_d2(X, i, cc, c, lo, side, pad):
    """Squared distance from row ``i`` to cell ``c``'s box (grown by ``pad`` for rounding)."""
    s = 0.0
    for f in range(X.shape[1]):
        a = lo[f] + cc[c, f] * side - pad
        b = a + side + 2.0 * pad
        x = X[i, f]
        if x < a:
            s += (a - x) * (a - x)
        elif x > b:
            s += (x - b) * (x - b)
    return s


@njit(parallel=True)
def _core_points(X, start, ptr, nbr, need, eps2, min_samples, cc, lo, side, pad):
    """Core flag of every row with ``need``; rows of one cell are ``start[c]:start[c+1]``."""
    ncell = start.shape[0] - 1
    core = np.zeros(X.shape[0], dtype=np.bool_)
    for c in numba.prange(ncell):
        a, b = start[c], start[c + 1]
        size = b - a
        if size >= min_samples:
            for i in range(a, b):
                core[i] = need[i]
            continue
        for i in range(a, b):
            if not need[i]:
                continue
            count = size
            for q in range(ptr[c], ptr[c + 1]):
                nc = nbr[q]
                if nc == c or _box_d2(X, i, cc, nc, lo, side, pad) > eps2:
                    continue
                for j in range(start[nc], start[nc + 1]):
                    if _d2(X, i, j) <= eps2:
                        count += 1
                        if count >= min_samples:
                            break
                if count >= min_samples:
                    break
            core[i] = count >= min_samples
    return core


@njit
def _has_core(start, core):
    ncell = start.shape[0] - 1
    has_core = np.zeros(ncell, dtype=np.bool_)
    for c in range(ncell):
        for i in range(start[c], start[c + 1]):
            if core[i]:
                has_core[c] = True
                break
    return has_core


@njit
def _find(parent, x):
    root = x
    while parent[root] != root:
        root = parent[root]
    while parent[x] != root:
        nxt = parent[x]
        parent[x] = root
        x = nxt
    return root


@njit
def _components(X, start, ptr, nbr, core, eps2, cc, lo, side, pad):
    """Union-find over cells: the root cell of every cell's cluster (-1 without core points).

    Two cells holding core points are joined when a pair of their core points is within
    eps; the pair is only searched for when the cells are not already joined, which skips
    most pairs inside a cluster.
    """
    ncell = start.shape[0] - 1
    has_core = _has_core(start, core)
    parent = np.arange(ncell)
    for c in range(ncell):
        if not has_core[c]:
            continue
        for q in range(ptr[c], ptr[c + 1]):
            nc = nbr[q]
            if nc <= c or not has_core[nc]:
                continue
            a = _find(parent, c)
            b = _find(parent, nc)
            if a == b:
                continue
            hit = False
            for i in range(start[c], start[c + 1]):
                if not core[i] or _box_d2(X, i, cc, nc, lo, side, pad) > eps2:
                    continue
                for j in range(start[nc], start[nc + 1]):
                    if core[j] and _d2(X, i, j) <= eps2:
                        hit = True
                        break
                if hit:
                    break
            if hit:
                if a < b:
                    parent[b] = a
                else:
                    parent[a] = b
    root = np.full(ncell, -1, dtype=np.int64)
    for c in range(ncell):
        if has_core[c]:
            root[c] = _find(parent, c)
    return root


@njit(parallel=True)
def _assign_points(X, gidx, start, ptr, nbr, need, core, root, eps2, cc, lo, side, pad):
    """Cluster (root cell) of every needed row: its own for core rows, the nearest core
    neighbour's for border rows, -1 for noise."""
    ncell = start.shape[0] - 1
    comp = np.full(X.shape[0], -1, dtype=np.int64)
    for c in numba.prange(ncell):
        for i in range(start[c], start[c + 1]):
            if not need[i]:
                continue
            if core[i]:
                comp[i] = root[c]
                continue
            best_d = np.inf
            best_g = -1
            best_c = -1
            for q in range(ptr[c], ptr[c + 1]):
                nc = nbr[q]
                if root[nc] < 0 or _box_d2(X, i, cc, nc, lo, side, pad) > eps2:
                    continue
                for j in range(start[nc], start[nc + 1]):
                    if not core[j]:
                        continue
                    dd = _d2(X, i, j)
                    if dd <= eps2 and (dd < best_d or (dd == best_d and gidx[j] < best_g)):
                        best_d = dd
                        best_g = gidx[j]
                        best_c = root[nc]
            comp[i] = best_c
    return comp


@njit(parallel=True)
def _cell_keys(X, lo, side, cmin, strides):
    """Linear index of every row's cell, ``floor((x - lo) / side)`` per dimension."""
    n, d = X.shape
    keys = np.empty(n, dtype=np.int64)
    for i in numba.prange(n):
        k = 0
        for f in range(d):
            k += (np.int64(np.floor((X[i, f] - lo[f]) / side)) - cmin[f]) * strides[f]
        keys[i] = k
    return keys


def _local_dbscan(X: np.ndarray, gidx: np.ndarray, need: np.ndarray, lo: np.ndarray,
                  mag: float, eps: float, min_samples: int):
    """DBSCAN of the rows ``X`` (float64) whose core flags are wanted where ``need``.

    Returns ``core`` and ``comp`` (a cluster id local to this call, -1 for noise; only
    meaningful where ``need``), in the order of the input rows.
    """
    n, d = X.shape
    threads = task_threads()  # also sizes the pranges below (this thread's Numba count)
    side, m, valid = _grid(eps, d, mag)
    cmin = np.floor((X.min(axis=0) - lo) / side).astype(np.int64)
    span = (np.floor((X.max(axis=0) - lo) / side) - cmin + 1).astype(np.float64)
    if float(np.prod(span)) < 2.0 ** 62:
        strides = np.cumprod(np.concatenate([[1], span[::-1][:-1]]))[::-1].astype(np.int64)
        keys = _cell_keys(X, lo, side, cmin, strides)
        order = np.argsort(keys)  # the order within a cell does not matter
        ks = keys[order]
        change = np.flatnonzero(ks[1:] != ks[:-1]) + 1
    else:  # too many cells for one int64 key: sort the cell coordinates themselves
        coords = np.floor((X - lo) / side).astype(np.int64)
        order = np.lexsort(coords.T[::-1])
        cs = coords[order]
        change = np.flatnonzero(np.any(cs[1:] != cs[:-1], axis=1)) + 1
    Xs = np.ascontiguousarray(X[order])
    gs = gidx[order]
    ns = need[order]
    start = np.concatenate([[0], change, [n]]).astype(np.int64)
    cc = np.ascontiguousarray(np.floor((Xs[start[:-1]] - lo) / side).astype(np.int64))
    ptr, nbr = _neighbour_csr(cc, m, valid, threads)
    eps2 = eps * eps
    pad = 16.0 * np.finfo(np.float64).eps * (mag + side)
    core = _core_points(Xs, start, ptr, nbr, ns, eps2, min_samples, cc, lo, side, pad)
    root = _components(Xs, start, ptr, nbr, core, eps2, cc, lo, side, pad)
    comp = _assign_points(Xs, gs, start, ptr, nbr, ns, core, root, eps2, cc, lo, side, pad)
    out_core = np.empty(n, dtype=np.bool_)
    out_comp = np.empty(n, dtype=np.int64)
    out_core[order] = core
    out_comp[order] = comp
    return out_core, out_comp


@njit
def _first_core(comp, core, gidx, n_ids):
    """Lowest global row index of a core row per id (``comp`` in ``[0, n_ids)``)."""
    big = np.iinfo(np.int64).max
    first = np.full(n_ids, big, dtype=np.int64)
    for i in range(comp.shape[0]):
        if core[i] and comp[i] >= 0 and gidx[i] < first[comp[i]]:
            first[comp[i]] = gidx[i]
    return first


def _rank_ids(first: np.ndarray):
    """Ids with a core row numbered 0.. by their lowest core row index; -1 for the others."""
    used = np.flatnonzero(first != np.iinfo(np.int64).max)
    rank = np.full(len(first), -1, dtype=np.int64)
    rank[used[np.argsort(first[used], kind="stable")]] = np.arange(len(used))
    return rank, len(used)


def _number_clusters(comp: np.ndarray, core: np.ndarray, gidx: np.ndarray, n_ids: int):
    """Map local ids (root cells, ``< n_ids``) to 0.. in the order of each cluster's lowest
    core row index."""
    rank, n_clusters = _rank_ids(_first_core(comp, core, gidx, n_ids))
    labels = np.where(comp >= 0, rank[np.maximum(comp, 0)], -1)
    return labels, n_clusters


# ---------------------------------------------------------------------------------------------
# Dask: slabs with a halo


def _bounds_chunk(block, offset, key, rate):
    X = np.ascontiguousarray(block, dtype=np.float64)
    if not all_finite(X):
        raise nonfinite_error("X", _FUNC)
    u = uniforms(key, offset, X.shape[0])
    return X.min(axis=0), X.max(axis=0), X[u < rate]


def _bounds_combine(parts):
    return (np.min([p[0] for p in parts], axis=0), np.max([p[1] for p in parts], axis=0),
            np.concatenate([p[2] for p in parts]))


def _split_chunk(block, offset, lo, side, dim, lows, highs):
    """Rows of one chunk for every slab (its rows and halo): a list of (gidx, rows)."""
    X = np.ascontiguousarray(block, dtype=np.float64)
    cs = np.floor((X[:, dim] - lo[dim]) / side)
    out = []
    for a, b in zip(lows, highs, strict=True):
        sel = np.flatnonzero((cs >= a) & (cs < b))
        out.append((sel.astype(np.int64) + offset, X[sel]))
    return out


def _slab(pieces, lo, mag, side, dim, own_lo, own_hi, m, eps, min_samples):
    """DBSCAN of one slab; returns its rows' results and what the merge needs."""
    d = len(lo)
    gidx = np.concatenate([p[0] for p in pieces]) if pieces else np.empty(0, np.int64)
    X = (np.concatenate([p[1] for p in pieces]) if pieces else np.empty((0, d)))
    order = np.argsort(gidx, kind="stable")
    gidx, X = gidx[order], np.ascontiguousarray(X[order])
    cs = np.floor((X[:, dim] - lo[dim]) / side)
    own = (cs >= own_lo) & (cs < own_hi)
    need = (cs >= own_lo - m) & (cs < own_hi + m)
    if len(gidx):
        core, comp = _local_dbscan(X, gidx, need, lo, mag, eps, min_samples)
    else:
        core, comp = np.zeros(0, bool), np.zeros(0, np.int64)
    # local ids 0..nc-1
    uniq = np.unique(comp[need & (comp >= 0)])
    local = np.full(comp.shape, -1, dtype=np.int64)
    has = need & (comp >= 0)
    local[has] = np.searchsorted(uniq, comp[has])
    oc = own & core
    first = _first_core(local, oc, gidx, len(uniq))
    halo_core = core & need & ~own
    edge_core = oc & ((cs < own_lo + m) | (cs >= own_hi - m))
    return {
        "gidx": gidx[own], "core": core[own], "local": local[own],
        "n_local": len(uniq), "first": first,
        "halo": (gidx[halo_core], local[halo_core]),
        "edge": (gidx[edge_core], local[edge_core]),
    }


def _slab_summary(res):
    return {k: res[k] for k in ("n_local", "first", "halo", "edge")}


def _merge_slabs(summaries):
    """Union the local clusters of all slabs; global label of every (slab, local id)."""
    base = np.concatenate([[0], np.cumsum([s["n_local"] for s in summaries])]).astype(np.int64)
    total = int(base[-1])
    parent = np.arange(total)
    edge_g = np.concatenate([s["edge"][0] for s in summaries])
    edge_node = np.concatenate([s["edge"][1] + base[i] for i, s in enumerate(summaries)])
    order = np.argsort(edge_g)
    edge_g, edge_node = edge_g[order], edge_node[order]
    for i, s in enumerate(summaries):
        g, loc = s["halo"]
        if len(g) == 0:
            continue
        pos = np.searchsorted(edge_g, g)
        pos = np.minimum(pos, len(edge_g) - 1)
        ok = edge_g[pos] == g
        for a, b in zip(loc[ok] + base[i], edge_node[pos[ok]], strict=True):
            _union_py(parent, int(a), int(b))
    roots = np.array([_find_py(parent, x) for x in range(total)], dtype=np.int64)
    first = np.concatenate([s["first"] for s in summaries]) if total else np.empty(0, np.int64)
    uroots, inv = np.unique(roots, return_inverse=True)
    cfirst = np.full(len(uroots), np.iinfo(np.int64).max)
    np.minimum.at(cfirst, inv, first)
    rank = np.empty(len(uroots), dtype=np.int64)
    rank[np.argsort(cfirst, kind="stable")] = np.arange(len(uroots))
    return base, rank[inv] if total else np.empty(0, np.int64), len(uroots)


def _find_py(parent, x):
    while parent[x] != x:
        parent[x] = parent[parent[x]]
        x = parent[x]
    return x


def _union_py(parent, a, b):
    a, b = _find_py(parent, a), _find_py(parent, b)
    if a != b:
        parent[max(a, b)] = min(a, b)


def _assemble(offset, size, base, node_label, *slabs):
    labels = np.full(size, -1, dtype=np.int64)
    core = np.zeros(size, dtype=np.bool_)
    for i, res in enumerate(slabs):
        g = res["gidx"]
        a, b = np.searchsorted(g, [offset, offset + size])
        if a == b:
            continue
        rows = g[a:b] - offset
        loc = res["local"][a:b]
        has = loc >= 0
        labels[rows[has]] = node_label[loc[has] + base[i]]
        core[rows] = res["core"][a:b]
    return labels, core


def _dbscan_dask(blocks: Blocks, eps: float, min_samples: int) -> DBSCANResult:
    import dask
    import dask.array as da

    d = blocks.d
    rate = min(1.0, 20000.0 / max(blocks.n, 1))
    lo, hi, sample = blocks.map_reduce(_bounds_chunk, _bounds_combine, np.uint64(12345), rate)
    mag = _magnitude(lo, hi)
    _check_scale(eps, d, mag)
    side, m, _ = _grid(eps, d, mag)
    dim = int(np.argmax(hi - lo))
    n_slabs = max(1, int((blocks.sizes > 0).sum()))
    scs = np.floor((sample[:, dim] - lo[dim]) / side)
    cuts = np.unique(np.quantile(scs, np.arange(1, n_slabs) / n_slabs, method="lower")
                     if len(scs) and n_slabs > 1 else np.empty(0))
    own_lo = np.concatenate([[-np.inf], cuts])
    own_hi = np.concatenate([cuts, [np.inf]])
    P = len(own_lo)
    lows, highs = own_lo - 2 * m, own_hi + 2 * m
    pieces = [[] for _ in range(P)]
    for b, off, size in zip(blocks.parts, blocks.offsets, blocks.sizes, strict=True):
        if size == 0:
            continue
        split = dask.delayed(_split_chunk, pure=True, nout=P)(b, int(off), lo, side, dim,
                                                              lows, highs)
        for i in range(P):
            pieces[i].append(split[i])
    slabs = [dask.delayed(_slab, pure=True)(pieces[i], lo, mag, side, dim, own_lo[i], own_hi[i], m,
                                            eps, min_samples) for i in range(P)]
    slabs = list(dask.persist(*slabs))
    summaries = dask.compute(*[dask.delayed(_slab_summary, pure=True)(s) for s in slabs])
    base, node_label, n_clusters = _merge_slabs(list(summaries))
    label_parts, core_parts = [], []
    for off, size in zip(blocks.offsets, blocks.sizes, strict=True):
        out = dask.delayed(_assemble, pure=True, nout=2)(int(off), int(size), base, node_label,
                                                         *slabs)
        label_parts.append(da.from_delayed(out[0], (int(size),), dtype=np.int64))
        core_parts.append(da.from_delayed(out[1], (int(size),), dtype=np.bool_))
    return DBSCANResult(da.concatenate(label_parts), da.concatenate(core_parts), n_clusters)


@DBSCAN
def dbscan(X, eps: float, min_samples: int = 5) -> DBSCANResult:
    """Exact DBSCAN (Euclidean) of the rows of ``X``.

    A row is *core* when at least ``min_samples`` rows (itself included) lie within
    distance ``<= eps``, as in scikit-learn; clusters are the connected groups of core rows,
    border rows join the cluster of their nearest core row, and the rest is noise (-1).

    Parameters
    ----------
    X : array (n, d), NumPy or Dask; practical for d <= 3 (4 works)
    eps : neighbourhood radius, > 0
    min_samples : rows (the row itself included) that make a core row, >= 1

    Returns
    -------
    DBSCANResult with ``labels`` (n,) int64 and ``core`` (n,) bool (Dask arrays for Dask
    input) and ``n_clusters``.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0.0, 0.0], [0.0, 0.5], [0.5, 0.0], [5.0, 5.0]])
    >>> r = dbscan(X, eps=0.6, min_samples=3)
    >>> r.labels.tolist(), r.core.tolist()
    ([0, 0, 0, -1], [True, False, False, False])
    """
    X = known_rows(check_array(X, "X", _FUNC, ndim=2))
    if X.shape[0] < 1:
        raise InvalidInput(message("X", _FUNC, "an array with at least 1 row(s)", X))
    if X.shape[1] == 0:
        raise InvalidInput(message("X", _FUNC, "an array with at least 1 column", X))
    blocks = Blocks(X)
    if blocks.is_dask:
        return _dbscan_dask(blocks, eps, min_samples)
    Xf = np.ascontiguousarray(X, dtype=np.float64)
    n = Xf.shape[0]
    gidx = np.arange(n, dtype=np.int64)
    lo, hi = Xf.min(axis=0), Xf.max(axis=0)
    if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
        raise nonfinite_error("X", _FUNC)
    _check_scale(eps, Xf.shape[1], _magnitude(lo, hi))
    core, comp = _local_dbscan(Xf, gidx, np.ones(n, dtype=np.bool_), lo, _magnitude(lo, hi),
                               eps, min_samples)
    labels, n_clusters = _number_clusters(comp, core, gidx, n)
    return DBSCANResult(labels, core, n_clusters)
