"""k-means: Lloyd iterations, k-means|| / k-means++ / random seeding, prediction, mini-batch.

How it works
------------
* **Lloyd**: one fused Numba pass per chunk assigns every row to its nearest centroid and adds
  it to per-thread partial sums and counts (float64) and to the inertia; threads own disjoint
  row ranges and are merged serially. Over Dask every row block is one task and the partials
  are tree-combined (fan-in 8), one ``dask.compute`` per iteration, on the active scheduler.
  On a distributed cluster whose memory can hold the data, the blocks are persisted and the
  whole of k-means (tolerance, seeding, Lloyd, labels) runs on the workers that hold them,
  one long task each, which swap each pass's partials directly (an allgather, see
  ``hpcjobs.kernels._collective``): a pass then costs a worker-to-worker message (0.13 ms
  through a pipe between workers of one machine, ~0.3 ms over the comms) instead of a
  scheduler round trip (~10 ms).
  Distances are computed directly as ``sum((x - c)**2)`` in the data's dtype (float32 stays
  float32), never through the ``|x|^2 - 2 x.c + |c|^2`` expansion, so ``inertia`` is the true
  sum of squared distances of the returned ``labels`` to the returned ``centroids``.
* **Convergence** follows scikit-learn: stop when the squared centroid shift summed over the
  clusters is ``<= tol * mean(var(X, axis=0))`` (``tol=0`` stops only when the centroids no
  longer move). ``n_iter`` counts the Lloyd updates; labels and inertia are then recomputed
  for the final centroids (one more assignment pass; over Dask the labels stay lazy and the
  pass is skipped when the last iteration did not move the centroids).
* **Empty clusters** (a centroid that receives no row) are handled as scikit-learn does: the
  rows farthest from their own centroid are moved into the empty clusters (each becomes a
  one-row cluster and is taken out of its old cluster's sums). This costs one extra pass in
  the iterations where it happens.
* **k-means||** (Bahmani et al., "Scalable K-Means++", VLDB 2012): start from one uniformly
  drawn row, then for ``init_rounds`` rounds draw every row independently with probability
  ``min(1, l * d^2(x, C) / phi(C))`` (``l = oversampling * k``; one pass per round), weight
  each candidate by the number of rows closest to it (one pass), and re-cluster the weighted
  candidates into ``k`` centroids with weighted k-means++ and weighted Lloyd in memory, as
  the paper prescribes. The per-row random numbers are hashed from the global row index, so
  the candidates do not depend on the chunking.
* **k-means++**: greedy k-means++ (scikit-learn's variant with ``2 + log k`` local trials),
  one pass per centroid: the pass that scores the trials for centroid ``j`` also draws, for
  each trial, the next trials by an exponential race (weighted sampling without
  replacement), so only the winner's draw is kept.
* **Mini-batch** (:func:`minibatch_kmeans`): Sculley's update with per-centroid learning rate
  ``1 / count`` (as scikit-learn's ``MiniBatchKMeans``); the data are streamed chunk by chunk
  (chunks in random order, rows in shuffled runs of 16 within the chunk, the next chunk read
  while one is processed), so each step costs O(batch).

All the random choices derive from ``seed``: the same seed gives the same result, and for
:func:`kmeans` the same result whatever the chunking (up to float rounding of the sums).
"""

from __future__ import annotations

import math
import operator
import pickle
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numba
import numpy as np

from hpcjobs.kernels._jit import njit, task_threads, thread_ranges
from hpcjobs.kernels._validation import (
    InvalidInput,
    InvalidType,
    check_array,
    check_choice,
    check_int,
    is_dask,
    message,
    nonfinite_error,
)
from hpcjobs.kernels.clustering._common import (
    Blocks,
    all_finite,
    known_rows,
    new_key,
    uniform,
    uniforms,
)
from hpcjobs.kernels.clustering.params import INITS as _INITS
from hpcjobs.kernels.clustering.params import KMEANS, MINIBATCH_INITS, MINIBATCH_KMEANS


@dataclass(frozen=True)
class KMeansResult:
    """Result of :func:`kmeans` and :func:`minibatch_kmeans`.

    ``centroids`` (k, d) in the dtype of X; ``labels`` (n,) int32, a NumPy array for NumPy
    input and a Dask array over the rows of X for Dask input; ``inertia`` the sum of squared
    distances of the rows to their centroid; ``n_iter`` the Lloyd iterations (epochs for
    mini-batch); ``n_steps`` the mini-batch steps (0 for Lloyd).
    """

    centroids: np.ndarray
    labels: np.ndarray
    inertia: float
    n_iter: int
    n_steps: int = 0


# ---------------------------------------------------------------------------------------------
# chunk level: Numba


_TILE = 64  # rows per tile: the tile is transposed so that the distance loops run over rows


@njit
def _nearest_tile(X, s, CT, XT, dist, best, lab):
    """Nearest centroid of rows ``s:s+_TILE``: squared distances into ``best``, index ``lab``."""
    for i in range(_TILE):
        for f in range(X.shape[1]):
            XT[f, i] = X[s + i, f]
    _nearest_XT(XT, _TILE, CT, dist, best, lab)


@njit
def _nearest_XT(XT, m, CT, dist, best, lab):
    """Nearest centroid of the ``m`` rows held transposed in ``XT`` (d, >= m).

    ``CT`` (d, kp) holds the centroids as columns, ``kp`` a multiple of 4 (padding columns are
    +inf and never win). Four centroids are swept per pass over the tile, so the inner loops
    are long, unit-stride and vectorise.
    """
    d, kp = CT.shape
    for i in range(m):
        best[i] = np.inf
        lab[i] = 0
    for j0 in range(0, kp, 4):
        for q in range(4):
            for i in range(m):
                dist[q, i] = 0.0
        for f in range(d):
            c0 = CT[f, j0]
            c1 = CT[f, j0 + 1]
            c2 = CT[f, j0 + 2]
            c3 = CT[f, j0 + 3]
            for i in range(m):
                x = XT[f, i]
                t0 = x - c0
                t1 = x - c1
                t2 = x - c2
                t3 = x - c3
                dist[0, i] += t0 * t0
                dist[1, i] += t1 * t1
                dist[2, i] += t2 * t2
                dist[3, i] += t3 * t3
        for q in range(4):
            for i in range(m):
                if dist[q, i] < best[i]:
                    best[i] = dist[q, i]
                    lab[i] = j0 + q


@njit
def _nearest_row(X, i, CT, dist):
    d, kp = CT.shape
    for j in range(kp):
        dist[j] = 0.0
    for f in range(d):
        x = X[i, f]
        for j in range(kp):
            t = x - CT[f, j]
            dist[j] += t * t
    best = 0
    bd = dist[0]
    for j in range(1, kp):
        if dist[j] < bd:
            bd = dist[j]
            best = j
    return best, bd


@njit
def _lloyd_range(X, CT, start, stop, sums, counts, XT, dist, best, lab):
    """Assign rows ``[start, stop)`` and add them to ``sums``/``counts``; return their inertia."""
    d = CT.shape[0]
    inertia = 0.0
    s = start
    while s + _TILE <= stop:
        _nearest_tile(X, s, CT, XT, dist, best, lab)
        for i in range(_TILE):
            b = lab[i]
            counts[b] += 1
            inertia += best[i]
            for f in range(d):
                sums[b, f] += XT[f, i]
        s += _TILE
    for i in range(s, stop):
        b, bd = _nearest_row(X, i, CT, dist[0])
        counts[b] += 1
        inertia += bd
        for f in range(d):
            sums[b, f] += X[i, f]
    return inertia


def _pad(CT: np.ndarray, dtype) -> np.ndarray:
    """Centroid columns padded with +inf to a multiple of 4, C-contiguous, in ``dtype``."""
    d, k = CT.shape
    kp = max(4, -(-k // 4) * 4)
    out = np.full((d, kp), np.inf, dtype=dtype)
    out[:, :k] = CT
    return out


@njit(parallel=True)
def _lloyd(X, CT, k, n_threads):
    """Fused assignment + partial sums of a whole chunk: (sums (k, d), counts (k,), inertia).

    ``CT`` is padded (:func:`_pad`); ``k`` is the true number of centroids.
    """
    d, kp = CT.shape
    ranges = thread_ranges(X.shape[0], n_threads)
    nt = ranges.shape[0]
    sums = np.zeros((nt, kp, d))
    counts = np.zeros((nt, kp), dtype=np.int64)
    inertia = np.zeros(nt)
    for t in numba.prange(nt):
        XT = np.empty((d, _TILE), dtype=X.dtype)
        dist = np.empty((4, max(_TILE, kp)), dtype=X.dtype)
        best = np.empty(_TILE, dtype=X.dtype)
        lab = np.empty(_TILE, dtype=np.int64)
        inertia[t] = _lloyd_range(X, CT, ranges[t, 0], ranges[t, 1], sums[t], counts[t], XT,
                                  dist, best, lab)
    out_s = np.zeros((k, d))
    out_c = np.zeros(k, dtype=np.int64)
    for t in range(nt):
        for j in range(k):
            out_c[j] += counts[t, j]
            for f in range(d):
                out_s[j, f] += sums[t, j, f]
    return out_s, out_c, inertia.sum()


@njit
def _assign_range(X, CT, start, stop, labels, d2, XT, dist, best, lab):
    inertia = 0.0
    s = start
    while s + _TILE <= stop:
        _nearest_tile(X, s, CT, XT, dist, best, lab)
        for i in range(_TILE):
            labels[s + i] = lab[i]
            d2[s + i] = best[i]
            inertia += best[i]
        s += _TILE
    for i in range(s, stop):
        b, bd = _nearest_row(X, i, CT, dist[0])
        labels[i] = b
        d2[i] = bd
        inertia += bd
    return inertia


@njit(parallel=True)
def _assign(X, CT, labels, d2, n_threads):
    """Nearest centroid of every row into ``labels`` and its squared distance into ``d2``.

    ``CT`` is padded (:func:`_pad`) and in the dtype of ``X``.
    """
    d, kp = CT.shape
    ranges = thread_ranges(X.shape[0], n_threads)
    nt = ranges.shape[0]
    inertia = np.zeros(nt)
    for t in numba.prange(nt):
        XT = np.empty((d, _TILE), dtype=X.dtype)
        dist = np.empty((4, max(_TILE, kp)), dtype=X.dtype)
        best = np.empty(_TILE, dtype=X.dtype)
        lab = np.empty(_TILE, dtype=np.int64)
        inertia[t] = _assign_range(X, CT, ranges[t, 0], ranges[t, 1], labels, d2, XT, dist,
                                   best, lab)
    return inertia.sum()


@njit
def _kpp_range(X, offset, start, stop, CT, TT, key, pot, hk, hi):
    """Score the trial centroids ``TT`` and draw the next trials for each (exponential race).

    ``pot[l]`` gets the potential sum(min(d^2(x, C), d^2(x, T_l))); ``hk[l]``/``hi[l]`` keep the
    ``M`` smallest keys ``-log(u_x) / w_l(x)`` and their global row indices.
    """
    d = X.shape[1]
    j = CT.shape[1]
    L = TT.shape[1]
    M = hk.shape[1]
    for i in range(start, stop):
        base = np.inf
        for c in range(j):
            s = 0.0
            for f in range(d):
                t = np.float64(X[i, f]) - CT[f, c]
                s += t * t
            if s < base:
                base = s
        e = -math.log(uniform(key, offset + i))
        for ll in range(L):
            s = 0.0
            for f in range(d):
                t = np.float64(X[i, f]) - TT[f, ll]
                s += t * t
            w = min(s, base)
            pot[ll] += w
            if w > 0.0:
                kk = e / w
                m = 0
                for q in range(1, M):
                    if hk[ll, q] > hk[ll, m]:
                        m = q
                if kk < hk[ll, m]:
                    hk[ll, m] = kk
                    hi[ll, m] = offset + i


@njit(parallel=True)
def _kpp(X, offset, CT, TT, key, M, n_threads):
    L = TT.shape[1]
    ranges = thread_ranges(X.shape[0], n_threads)
    nt = ranges.shape[0]
    pot = np.zeros((nt, L))
    hk = np.full((nt, L, M), np.inf)
    hi = np.full((nt, L, M), -1, dtype=np.int64)
    for t in numba.prange(nt):
        _kpp_range(X, offset, ranges[t, 0], ranges[t, 1], CT, TT, key, pot[t], hk[t], hi[t])
    return pot.sum(axis=0), hk, hi


def _mind2(X, CT, d2, n_threads):
    """Squared distance of every row to its nearest centroid into ``d2``; returns the sum."""
    labels = np.empty(X.shape[0], dtype=np.int32)
    return _assign(X, CT, labels, d2, n_threads)


@njit
def _minibatch_chunk(X, perm, CT, wsum, k, batch, n_total, max_no_improvement, tol_abs, state):
    """Mini-batch steps over the rows ``X[perm]`` of one chunk, updating ``CT`` in place.

    ``CT`` (d, kp) float64 is padded like :func:`_pad`; ``state`` = [steps, ewa inertia,
    best ewa, steps without improvement, stopped].
    """
    d, kp = CT.shape
    m = perm.shape[0]
    bsum = np.zeros((k, d))
    bcnt = np.zeros(k)
    XT = np.empty((d, _TILE))
    dist = np.empty((4, _TILE))
    best = np.empty(_TILE)
    lab = np.empty(_TILE, dtype=np.int64)
    for b0 in range(0, m, batch):
        if state[4] != 0.0:
            return
        b1 = min(b0 + batch, m)
        nb = b1 - b0
        bsum[:] = 0.0
        bcnt[:] = 0.0
        binert = 0.0
        for t0 in range(b0, b1, _TILE):
            mt = min(_TILE, b1 - t0)
            for i in range(mt):
                r = perm[t0 + i]
                for f in range(d):
                    XT[f, i] = X[r, f]
            _nearest_XT(XT, mt, CT, dist, best, lab)
            for i in range(mt):
                j = lab[i]
                bcnt[j] += 1.0
                binert += best[i]
                for f in range(d):
                    bsum[j, f] += XT[f, i]
        shift = 0.0
        for j in range(k):
            if bcnt[j] > 0:
                w = wsum[j] + bcnt[j]
                for f in range(d):
                    new = (CT[f, j] * wsum[j] + bsum[j, f]) / w
                    shift += (new - CT[f, j]) ** 2
                    CT[f, j] = new
                wsum[j] = w
        state[0] += 1.0
        binert /= nb
        if state[0] == 1.0:
            state[1] = binert
        else:
            alpha = min(1.0, nb * 2.0 / (n_total + 1))
            state[1] = state[1] * (1.0 - alpha) + binert * alpha
        if state[0] == 1.0 or state[1] < state[2]:
            state[2] = state[1]
            state[3] = 0.0
        else:
            state[3] += 1.0
        if max_no_improvement > 0 and state[3] >= max_no_improvement:
            state[4] = 1.0
        if tol_abs > 0.0 and shift <= tol_abs:
            state[4] = 1.0


# ---------------------------------------------------------------------------------------------
# Lloyd and assignment kernels specialised on d (generated once per d, cached by Numba)

_GEN_MAX_D = 16  # widths with a generated kernel; wider data use the generic tile kernel
_GEN_MIN_ROWS = 1 << 15  # smaller inputs are not worth a compile

_GEN_TEMPLATE = '''"""Generated by hpcjobs.kernels.clustering.kmeans for d = {d}: do not edit."""
import numba
import numpy as np

from hpcjobs.kernels._jit import njit, thread_ranges
from hpcjobs.kernels.clustering.kmeans import _TILE, _nearest_row


@njit
def nearest_tile(X, s, CT, XT, best, lab):
    for i in range(_TILE):
{load}
        best[i] = np.inf
        lab[i] = 0
    for j in range(0, CT.shape[1], 2):
        {cent}
        for i in range(_TILE):
{body}
            b = best[i]
            la = lab[i]
            m = a0 < b
            b = a0 if m else b
            la = j if m else la
            m = a1 < b
            b = a1 if m else b
            la = j + 1 if m else la
            best[i] = b
            lab[i] = la


@njit
def lloyd_range(X, CT, start, stop, sums, counts, XT, dist, best, lab):
    inertia = 0.0
    s = start
    while s + _TILE <= stop:
        nearest_tile(X, s, CT, XT, best, lab)
        for i in range(_TILE):
            b = lab[i]
            counts[b] += 1
            inertia += best[i]
{sums}
        s += _TILE
    for i in range(s, stop):
        b, bd = _nearest_row(X, i, CT, dist)
        counts[b] += 1
        inertia += bd
        for f in range({d}):
            sums[b, f] += X[i, f]
    return inertia


@njit(parallel=True)
def lloyd(X, CT, k, n_threads):
    kp = CT.shape[1]
    ranges = thread_ranges(X.shape[0], n_threads)
    nt = ranges.shape[0]
    sums = np.zeros((nt, kp, {d}))
    counts = np.zeros((nt, kp), dtype=np.int64)
    inertia = np.zeros(nt)
    for t in numba.prange(nt):
        XT = np.empty(({d}, _TILE), dtype=X.dtype)
        dist = np.empty(kp, dtype=X.dtype)
        best = np.empty(_TILE, dtype=X.dtype)
        lab = np.empty(_TILE, dtype=np.int64)
        inertia[t] = lloyd_range(X, CT, ranges[t, 0], ranges[t, 1], sums[t], counts[t], XT,
                                 dist, best, lab)
    out_s = np.zeros((k, {d}))
    out_c = np.zeros(k, dtype=np.int64)
    for t in range(nt):
        for j in range(k):
            out_c[j] += counts[t, j]
            for f in range({d}):
                out_s[j, f] += sums[t, j, f]
    return out_s, out_c, inertia.sum()


@njit
def assign_range(X, CT, start, stop, labels, d2, XT, dist, best, lab):
    inertia = 0.0
    s = start
    while s + _TILE <= stop:
        nearest_tile(X, s, CT, XT, best, lab)
        for i in range(_TILE):
            labels[s + i] = lab[i]
            d2[s + i] = best[i]
            inertia += best[i]
        s += _TILE
    for i in range(s, stop):
        b, bd = _nearest_row(X, i, CT, dist)
        labels[i] = b
        d2[i] = bd
        inertia += bd
    return inertia


@njit(parallel=True)
def assign(X, CT, labels, d2, n_threads):
    ranges = thread_ranges(X.shape[0], n_threads)
    nt = ranges.shape[0]
    inertia = np.zeros(nt)
    for t in numba.prange(nt):
        XT = np.empty(({d}, _TILE), dtype=X.dtype)
        dist = np.empty(CT.shape[1], dtype=X.dtype)
        best = np.empty(_TILE, dtype=X.dtype)
        lab = np.empty(_TILE, dtype=np.int64)
        inertia[t] = assign_range(X, CT, ranges[t, 0], ranges[t, 1], labels, d2, XT, dist,
                                  best, lab)
    return inertia.sum()
'''


def _gen_source(d: int) -> str:
    ind = " " * 12
    load = "\n".join(f"        XT[{f}, i] = X[s + i, {f}]" for f in range(d))
    cent = "\n        ".join(f"c{q}_{f} = CT[{f}, j + {q}]" for q in range(2) for f in range(d))
    body = []
    for f in range(d):
        body.append(f"{ind}x = XT[{f}, i]")
        for q in range(2):
            body.append(f"{ind}t = x - c{q}_{f}")
            body.append(f"{ind}a{q} {'=' if f == 0 else '+='} t * t")
    sums = "\n".join(f"{ind}sums[b, {f}] += XT[{f}, i]" for f in range(d))
    return _GEN_TEMPLATE.format(d=d, load=load, cent=cent, body="\n".join(body), sums=sums)


_GEN: dict = {}


def _gen_module(d: int):
    """The kernels specialised on ``d`` (or None): the generated source is written to a
    folder of the user's cache (``HPCJOBS_KERNEL_CACHE``, else ``~/.cache/hpcjobs``) and
    imported from there, so that Numba caches its compiled code as for any module; where
    no folder is writable it is compiled in memory (each process compiles it again)."""
    if d in _GEN:
        return _GEN[d]
    import hashlib
    import importlib.util
    import os
    import sys
    import tempfile

    src = _gen_source(d)
    tag = hashlib.sha1(src.encode()).hexdigest()[:12]
    name = f"hpcjobs_kmeans_d{d}_{tag}"
    mod = None
    roots = [os.environ.get("HPCJOBS_KERNEL_CACHE"),
             os.path.join(os.path.expanduser("~"), ".cache", "hpcjobs"), tempfile.gettempdir()]
    for root in filter(None, roots):
        try:
            folder = os.path.join(root, "kmeans_kernels")
            os.makedirs(folder, exist_ok=True)
            path = os.path.join(folder, name + ".py")
            if not os.path.exists(path):
                tmp = f"{path}.{os.getpid()}.tmp"
                with open(tmp, "w") as fh:
                    fh.write(src)
                os.replace(tmp, path)  # atomic: processes racing write the same text
            spec = importlib.util.spec_from_file_location(name, path)
            mod = importlib.util.module_from_spec(spec)
            sys.modules[name] = mod  # Numba's cache finds the module again by its name
            spec.loader.exec_module(mod)
            break
        except OSError:
            sys.modules.pop(name, None)
            mod = None
    if mod is None:
        import types

        mod = types.ModuleType(name)
        src = src.replace("@njit\n", "@njit(cache=False)\n").replace(
            "@njit(parallel=True)", "@njit(parallel=True, cache=False)")
        exec(compile(src, f"<{name}>", "exec"), mod.__dict__)  # noqa: S102
    _GEN[d] = mod
    return mod


def _use_gen(X) -> bool:
    return X.shape[1] <= _GEN_MAX_D and X.shape[0] >= _GEN_MIN_ROWS


def _lloyd_fast(X, CT, k, n_threads):
    """:func:`_lloyd`, through the kernel specialised on d where it pays."""
    if _use_gen(X):
        return _gen_module(X.shape[1]).lloyd(X, CT, k, n_threads)
    return _lloyd(X, CT, k, n_threads)


def _assign_fast(X, CT, labels, d2, n_threads):
    """:func:`_assign`, through the kernel specialised on d where it pays."""
    if _use_gen(X):
        return _gen_module(X.shape[1]).assign(X, CT, labels, d2, n_threads)
    return _assign(X, CT, labels, d2, n_threads)


# ---------------------------------------------------------------------------------------------
# chunk level: the Python wrappers Dask runs (module level, so they pickle)


def _c(block) -> np.ndarray:
    return np.ascontiguousarray(block)


def _moments_chunk(block, offset):
    """(count, mean, M2) per column, and a finiteness check."""
    X = _c(block)
    if not all_finite(X):
        raise nonfinite_error("X", "kmeans")
    x = X.astype(np.float64, copy=False)
    mean = x.mean(axis=0)
    return float(X.shape[0]), mean, ((x - mean) ** 2).sum(axis=0)


def _moments_combine(parts):
    n, mean, m2 = parts[0]
    for nb, mb, m2b in parts[1:]:
        tot = n + nb
        delta = mb - mean
        mean = mean + delta * (nb / tot)
        m2 = m2 + m2b + delta * delta * (n * nb / tot)
        n = tot
    return n, mean, m2


def _lloyd_chunk(block, offset, CT, k):
    return _lloyd_fast(_c(block), CT, k, task_threads())


def _sum_combine(parts):
    out = list(parts[0])
    for p in parts[1:]:
        for i, v in enumerate(p):
            out[i] = out[i] + v
    return tuple(out)


def _labels_inertia_chunk(block, CT):
    X = _c(block)
    labels = np.empty(X.shape[0], dtype=np.int32)
    d2 = np.empty(X.shape[0], dtype=X.dtype)
    return labels, float(_assign_fast(X, CT, labels, d2, task_threads()))


def _predict_block(block, CT):
    X = _c(block)
    if not all_finite(X):
        raise nonfinite_error("X", "kmeans_predict")
    labels = np.empty(X.shape[0], dtype=np.int32)
    d2 = np.empty(X.shape[0], dtype=X.dtype)
    _assign_fast(X, CT, labels, d2, task_threads())
    return labels


def _far_chunk(block, offset, CT, e):
    """The ``e`` rows farthest from their nearest centroid: (d2, index, label, rows)."""
    X = _c(block)
    labels = np.empty(X.shape[0], dtype=np.int32)
    d2 = np.empty(X.shape[0], dtype=np.float64)
    _mind2_labels(X, CT, labels, d2)
    e = min(e, X.shape[0])
    sel = np.argpartition(-d2, e - 1)[:e] if e < X.shape[0] else np.arange(X.shape[0])
    return d2[sel], sel.astype(np.int64) + offset, labels[sel], X[sel].copy()


def _mind2_labels(X, CT, labels, d2):
    buf = np.empty(X.shape[0], dtype=X.dtype)
    _assign(X, CT, labels, buf, task_threads())
    d2[:] = buf


def _far_combine(parts):
    d2 = np.concatenate([p[0] for p in parts])
    idx = np.concatenate([p[1] for p in parts])
    lab = np.concatenate([p[2] for p in parts])
    rows = np.concatenate([p[3] for p in parts])
    order = np.lexsort((idx, -d2))
    e = max(len(p[0]) for p in parts)
    order = order[:e]
    return d2[order], idx[order], lab[order], rows[order]


def _kpar_chunk(block, offset, CT, key, ell):
    """One k-means|| round on a chunk: its cost and a superset of the rows drawn."""
    X = _c(block)
    d2 = np.empty(X.shape[0])
    phi = _mind2(X, CT, d2, task_threads())
    u = uniforms(key, offset, X.shape[0])
    # p = min(1, ell d2 / phi) with phi >= this chunk's phi: keep u * phi_chunk < ell d2
    sel = np.flatnonzero(u * phi < ell * d2)
    return phi, sel.astype(np.int64) + offset, u[sel], d2[sel], X[sel].copy()


def _kpar_combine(parts):
    return (sum(p[0] for p in parts),) + tuple(
        np.concatenate([p[i] for p in parts]) for i in range(1, 5))


def _kpp_chunk(block, offset, CT, TT, key, M):
    X = _c(block)
    pot, hk, hi = _kpp(X, offset, CT, TT, key, M, task_threads())
    return _kpp_select(pot, hk.transpose(1, 0, 2).reshape(TT.shape[1], -1),
                       hi.transpose(1, 0, 2).reshape(TT.shape[1], -1), X, offset, M)


def _kpp_select(pot, keys, idx, X, offset, M):
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


def _kpp_combine(parts):
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


# ---------------------------------------------------------------------------------------------
# seeding


def _kmeans_plusplus(blocks: Blocks, k: int, rng: np.random.Generator) -> np.ndarray:
    """Greedy k-means++ with ``2 + log k`` local trials; one pass per centroid."""
    d = blocks.d
    M = 2 + int(np.log(k))
    first = int(rng.integers(blocks.n))
    trials = blocks.rows(np.array([first])).astype(np.float64)
    C = np.empty((0, d))
    while True:
        key = new_key(rng)
        pot, hk, hi, rows = blocks.map_reduce(
            _kpp_chunk, _kpp_combine, np.ascontiguousarray(C.T), np.ascontiguousarray(trials.T),
            key, M)
        best = int(np.argmin(pot)) if len(C) else 0
        C = np.vstack([C, trials[best:best + 1]])
        if len(C) == k:
            return C
        ok = hi[best] >= 0
        trials = rows[best][ok]
        if len(trials) == 0:  # fewer distinct rows than clusters: duplicate a random row
            trials = blocks.rows(np.array([int(rng.integers(blocks.n))])).astype(np.float64)


def _kmeans_parallel(blocks: Blocks, k: int, rng: np.random.Generator, rounds: int,
                     oversampling: float) -> np.ndarray:
    """k-means|| (Bahmani et al. 2012) with the weighted re-clustering of the candidates."""
    ell = oversampling * k
    first = int(rng.integers(blocks.n))
    cand_idx = np.array([first], dtype=np.int64)
    cand = blocks.rows(cand_idx).astype(np.float64)
    for _ in range(rounds):
        key = new_key(rng)
        CT = _pad(cand.T, blocks.dtype)
        phi, idx, u, d2, rows = blocks.map_reduce(_kpar_chunk, _kpar_combine, CT, key, ell)
        if phi <= 0.0:
            break
        keep = u * phi < ell * d2
        idx, rows = idx[keep], rows[keep]
        order = np.argsort(idx, kind="stable")
        cand_idx = np.concatenate([cand_idx, idx[order]])
        cand = np.vstack([cand, rows[order].astype(np.float64)])
    if len(cand) < k:  # pad with uniformly drawn rows (they are re-clustered like the others)
        extra = rng.choice(blocks.n, size=k - len(cand), replace=blocks.n < k)
        cand = np.vstack([cand, blocks.rows(np.sort(extra)).astype(np.float64)])
    CT = _pad(cand.T, blocks.dtype)
    _, weights, _ = blocks.map_reduce(_lloyd_chunk, _sum_combine, CT, len(cand))
    return _weighted_kmeans(cand, weights.astype(np.float64), k, rng)


def _weighted_kmeans(P: np.ndarray, w: np.ndarray, k: int, rng: np.random.Generator,
                     max_iter: int = 300) -> np.ndarray:
    """Weighted greedy k-means++ then weighted Lloyd on a small in-memory point set."""
    m = len(P)
    n_trials = 2 + int(np.log(k))
    p0 = w / w.sum() if w.sum() > 0 else None
    C = np.empty((k, P.shape[1]))
    C[0] = P[rng.choice(m, p=p0)]
    closest = ((P - C[0]) ** 2).sum(axis=1)
    for c in range(1, k):
        pot = (w * closest).sum()
        if pot <= 0:
            C[c] = P[rng.integers(m)]
            continue
        r = rng.random(n_trials) * pot
        ids = np.searchsorted(np.cumsum(w * closest), r)
        ids = np.minimum(ids, m - 1)
        d = ((P[None, :, :] - P[ids][:, None, :]) ** 2).sum(axis=2)
        np.minimum(closest, d, out=d)
        best = int(np.argmin((d * w).sum(axis=1)))
        C[c] = P[ids[best]]
        closest = d[best]
    lab = np.empty(m, dtype=np.int32)
    d2 = np.empty(m)
    for _ in range(max_iter):
        _assign(P, _pad(C.T, np.float64), lab, d2, task_threads())
        wsum = np.bincount(lab, weights=w, minlength=k)
        new = np.empty_like(C)
        for f in range(P.shape[1]):
            new[:, f] = np.bincount(lab, weights=w * P[:, f], minlength=k)
        nonempty = wsum > 0
        new[nonempty] /= wsum[nonempty, None]
        new[~nonempty] = C[~nonempty]
        if np.array_equal(new, C):
            break
        C = new
    return C


# ---------------------------------------------------------------------------------------------
# array level


def _check_seed(seed, func: str) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is not None:
        seed = check_int(seed, "seed", func, low=0)
    return np.random.default_rng(seed)


def _check_X(X, func: str):
    X = check_array(X, "X", func, ndim=2,
                    fix="" if not (hasattr(X, "ndim") and X.ndim == 1) else
                    "Reshape your data with X.reshape(-1, 1) for a single feature.")
    X = known_rows(X)
    if X.shape[0] < 1:
        raise InvalidInput(message("X", func, "an array with at least 1 row(s)", X))
    return X


def _check_init(init, k: int, d: int, dtype, func: str, choices=_INITS):
    if isinstance(init, str):
        return check_choice(init, "init", func, choices)
    if is_dask(init):
        init = init.compute()
    try:
        C = np.asarray(init, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidType(message("init", func, f"one of {', '.join(map(repr, choices))} or an "
                                  "array of shape (n_clusters, n_features)", init)) from None
    if C.shape != (k, d):
        raise InvalidInput(message("init", func, f"an array of shape ({k}, {d}) "
                                   "(n_clusters, n_features)", C))
    if not np.isfinite(C).all():
        raise InvalidInput(message("init", func, "finite (no NaN or inf)", C))
    return C


def _tolerance(blocks: Blocks, tol: float) -> float:
    if tol == 0.0:  # Dask input: the first pass over the data checks it for NaN/inf
        blocks.check_finite_next("kmeans")
        return 0.0
    if not blocks.in_memory:  # the moments pass checks every chunk for NaN/inf
        n, _, m2 = blocks.map_reduce(_moments_chunk, _moments_combine)
        return float(tol * np.mean(m2 / n))
    return float(tol * np.mean(np.var(blocks.X, axis=0)))


def _relocate_empty(blocks, CT, sums, counts, empty):
    """Move the rows farthest from their centroid into the empty clusters (as scikit-learn)."""
    d2, idx, lab, rows = blocks.map_reduce(_far_chunk, _far_combine, CT, len(empty))
    for e, cluster in enumerate(empty[:len(idx)]):
        old = lab[e]
        if counts[old] <= 1:
            continue
        sums[old] -= rows[e]
        counts[old] -= 1
        sums[cluster] = rows[e]
        counts[cluster] = 1


def _lloyd_loop(blocks: Blocks, C: np.ndarray, max_iter: int, tol_abs: float,
                start: int = 0, save=None):
    """Lloyd iterations after the ``start`` already done: (centroids, n_iter, inertia of the
    last pass if the centroids did not move in it, else None). ``save(n_iter, C, done)`` is
    called after each iteration (a collective records the state it can resume from)."""
    n_iter = start
    for n_iter in range(start + 1, max_iter + 1):  # noqa: B007
        CT = _pad(C.T, blocks.dtype)
        sums, counts, inertia = blocks.map_reduce(_lloyd_chunk, _sum_combine, CT, len(C))
        empty = np.flatnonzero(counts == 0)
        if empty.size:
            _relocate_empty(blocks, CT, sums, counts, empty)
        new = C.copy()
        nz = counts > 0
        new[nz] = sums[nz] / counts[nz, None]
        # exactly rounded, so that ranks on different CPUs still agree on when to stop
        shift = math.fsum(((new - C) ** 2).ravel())
        C = new
        if save is not None:
            save(n_iter, C, shift <= tol_abs)
        if shift == 0.0:  # converged exactly: the pass's inertia is the final one
            return C, n_iter, float(inertia)
        if shift <= tol_abs:
            break
    return C, n_iter, None


def _labels_inertia(blocks: Blocks, C: np.ndarray, inertia: float | None = None,
                    lazy: bool = False):
    """Labels of the rows for centroids ``C`` (Dask: lazy) and their inertia (one pass,
    skipped over Dask when ``inertia`` is already known; with ``lazy``, a ``dask.delayed``
    value from the labels' own tasks, to compute together with them)."""
    CT = _pad(C.T, blocks.dtype)
    if not blocks.is_dask:
        X = blocks.X
        labels = np.empty(X.shape[0], dtype=np.int32)
        d2 = np.empty(X.shape[0], dtype=X.dtype)
        inertia = _assign_fast(X, CT, labels, d2, task_threads())
        return labels, float(inertia)
    if inertia is not None:
        labels = blocks.X.map_blocks(_predict_block, CT, dtype=np.int32, drop_axis=1,
                                     meta=np.empty(0, np.int32))
        return labels, float(inertia)
    # labels and inertia from one task per block: computed with the labels, one pass for both
    import dask
    import dask.array as da

    CT = dask.delayed(CT)
    parts = [dask.delayed(_labels_inertia_chunk, pure=True)(p, CT) for p in blocks.parts]
    labels = da.concatenate([
        da.from_delayed(dask.delayed(operator.getitem, pure=True)(p, 0), shape=(int(size),),
                        dtype=np.int32) for p, size in zip(parts, blocks.sizes, strict=True)])
    inertia = dask.delayed(_fsum, pure=True)([dask.delayed(operator.getitem, pure=True)(p, 1)
                                              for p in parts])
    return labels, (inertia if lazy else float(inertia.compute()))


def _fsum(values) -> float:
    return math.fsum(values)


def _kmeans_on_workers(blocks: Blocks, k: int, init, tol: float, rng, init_rounds: int,
                       oversampling: float, max_iter: int, resume: tuple | None = None):
    """All of k-means over blocks kept in a distributed cluster's memory, on the workers
    that hold them: tolerance, seeding, Lloyd's loop and the labels, the ranks swapping each
    pass's small results directly (no scheduler round trip per pass, see
    ``Blocks.run_ranks``; k-means++ makes a pass per centroid). Returns (centroids, n_iter,
    labels as a Dask array that stays on the workers, inertia).

    ``resume``: a state the ranks of an earlier call saved, ``(n_iter, (C, tol_abs, rng
    state, done))``: start after that iteration. When a worker dies the ranks fail with a
    ``RankFailed`` whose ``saved`` is the last such state they agreed on (or None)."""

    from hpcjobs.kernels._collective import RankFailed, last_saved

    # each rank draws from its own copy of the generator (in-process workers would
    # otherwise share one object); the caller's generator then moves on as if in memory
    ranks = blocks.run_ranks(_kmeans_rank, k, init, tol, pickle.dumps(rng), init_rounds,
                             oversampling, max_iter, resume)
    client = blocks._client
    try:
        C, n_iter, inertia, rng_state, name = client.gather(ranks)[0]
    except RankFailed as exc:
        exc.saved = last_saved(ranks)
        _after_loss(client, blocks.placement)
        raise
    rng.bit_generator.state = rng_state
    # the ranks left each block's labels on its worker: a task per kept block takes them
    # there, or assigns the block's rows again where its worker has died since
    labels = blocks.X.map_blocks(_kept_labels, _pad(C.T, blocks.dtype), name, dtype=np.int32,
                                 drop_axis=1, meta=np.empty(0, np.int32))
    return C, n_iter, labels, inertia


def _after_loss(client, placement, patience: float = 30.0) -> None:
    """Once a collective failed (its ranks have ended): wait for the scheduler to drop the
    worker that was lost (so the next placement does not name it)."""
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        alive = set(client.scheduler_info(n_workers=-1)["workers"])
        if not set(placement) <= alive:
            return
        time.sleep(0.1)


def _kmeans_rank(blocks, k, init, tol, rng_pickle, init_rounds, oversampling, max_iter,
                 resume):
    """One worker's share of :func:`_kmeans_on_workers` (``blocks``: a ``RankBlocks``).

    Every rank draws from its own copy of the generator and combines the same parts in the
    same order, so all seed alike; the seeding ends in local arithmetic (the weighted
    re-clustering) that ranks on different CPUs could round differently, so all take rank
    0's centroids and tolerance. After each Lloyd iteration the ranks save the centroids they
    all agreed on: a later call resumes from there (``resume``) after a worker died."""
    rng = pickle.loads(rng_pickle)  # noqa: S301 - the client's own generator
    group = blocks.group
    if resume is None:
        tol_abs, C = _seeded(blocks, k, init, tol, rng, init_rounds, oversampling)
        tol_abs, C = group.allgather((tol_abs, C) if group.rank == 0 else None)[0]
        start, done = 0, False
    else:  # the data was checked for NaN/inf by the first pass of the earlier call
        start, (C, tol_abs, rng_state, done) = resume
        rng.bit_generator.state = rng_state
    rng_state = rng.bit_generator.state

    def save(n_iter, C, done):
        group.save(n_iter, (C, tol_abs, rng_state, done))

    n_iter = start
    if not done:
        C, n_iter, _ = _lloyd_loop(blocks, np.asarray(C, dtype=np.float64), max_iter, tol_abs,
                                   start=start, save=save)
    CT = _pad(C.T, blocks.dtype)
    labels, inertia = zip(*(_labels_inertia_chunk(b, CT) for b in blocks.parts), strict=True)
    for offset, block_labels in zip(blocks.offsets, labels, strict=True):
        group.keep(int(offset), block_labels)
    inertia = math.fsum(group.allgather(math.fsum(inertia)))
    return C, n_iter, inertia, rng_state, group.name


def _kept_labels(block, CT, name, block_info=None):
    """The labels of a kept block: those its rank of collective ``name`` left on this
    worker, else (its worker died since) assigned again, alike."""
    from hpcjobs.kernels._collective import take_kept

    labels = take_kept(name, int(block_info[0]["array-location"][0][0]))
    return labels if labels is not None else _predict_block(block, CT)


def _seeded(blocks, k: int, init, tol: float, rng, rounds: int, oversampling: float):
    """(absolute tolerance, starting centroids). The tolerance comes first: over Dask its
    pass (or, with tol=0, the first pass of what follows) checks every chunk for NaN/inf."""
    tol_abs = _tolerance(blocks, tol)
    return tol_abs, _initial(blocks, k, init, rng, rounds, oversampling)


def _initial(blocks: Blocks, k: int, init, rng, rounds: int, oversampling: float):
    if not isinstance(init, str):
        return init
    if init == "random":
        idx = np.sort(rng.choice(blocks.n, size=k, replace=False))
        return blocks.rows(idx).astype(np.float64)
    if init == "k-means++":
        return _kmeans_plusplus(blocks, k, rng)
    return _kmeans_parallel(blocks, k, rng, rounds, oversampling)


@KMEANS
def kmeans(X, n_clusters: int, *, init="k-means||", max_iter: int = 300, tol: float = 1e-4,
           seed: int | np.random.Generator | None = None, init_rounds: int = 5,
           oversampling: float = 2.0) -> KMeansResult:
    """Cluster the rows of ``X`` into ``n_clusters`` groups with Lloyd's k-means.

    Parameters
    ----------
    X : array (n, d), NumPy or Dask, float32 or float64 (other numbers become float64)
    n_clusters : number of clusters k, ``1 <= k <= n``
    init : ``"k-means||"`` (default, scalable), ``"k-means++"`` (one pass per centroid),
        ``"random"`` (k distinct rows) or an array (k, d) of starting centroids
    max_iter : most Lloyd iterations
    tol : stop when the squared centroid shift is ``<= tol * mean(var(X, axis=0))``
    seed : int, ``numpy.random.Generator`` or None (fresh entropy)
    init_rounds, oversampling : k-means|| rounds and oversampling factor l / k

    Returns
    -------
    KMeansResult with ``centroids`` (k, d), ``labels`` (n,) int32 (Dask for Dask input),
    ``inertia`` (true sum of squared distances) and ``n_iter``.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0.0, 0.0], [0.0, 1.0], [10.0, 10.0], [10.0, 11.0]])
    >>> r = kmeans(X, 2, seed=0)
    >>> sorted(r.centroids[:, 1].tolist()), r.inertia
    ([0.5, 10.5], 1.0)
    """
    r = fit_kmeans(X, n_clusters, init=init, max_iter=max_iter, tol=tol, seed=seed,
                   init_rounds=init_rounds, oversampling=oversampling)
    if not isinstance(r.inertia, float):  # streamed Dask data: one more pass for it
        import dask

        (inertia,) = dask.compute(r.inertia)
        r = KMeansResult(r.centroids, r.labels, float(inertia), r.n_iter)
    return r


#: how often a k-means over kept blocks starts again after losing a worker
_RANK_RETRIES = 3


@KMEANS
def fit_kmeans(X, n_clusters: int, *, init="k-means||", max_iter: int = 300,
               tol: float = 1e-4, seed: int | np.random.Generator | None = None,
               init_rounds: int = 5, oversampling: float = 2.0) -> KMeansResult:
    """:func:`kmeans`, but over streamed Dask data ``.inertia`` is a ``dask.delayed`` value
    that shares its pass with the labels: a caller that writes the labels computes both in
    one pass (``hpcjobs run`` does)."""
    func = "kmeans"
    X = _check_X(X, func)
    k = n_clusters  # (declared checks: clustering/params.py)
    if k > X.shape[0]:
        raise InvalidInput(message("n_clusters", func, f"an int in the range [1, {X.shape[0]}] "
                                   "(at most the number of rows of X)", k))
    init = _check_init(init, k, X.shape[1], X.dtype, func)
    rng = _check_seed(seed, func)
    blocks = Blocks(X)
    resume = None
    for attempt in range(_RANK_RETRIES + 1):
        if not blocks.keep_in_memory():  # (again after a loss: where the blocks are now)
            break
        from hpcjobs.kernels._collective import RankFailed

        try:  # Lloyd reads the data max_iter times: from the workers' memory
            C, n_iter, labels, inertia = _kmeans_on_workers(
                blocks, k, init, tol, rng, init_rounds, oversampling, max_iter, resume)
        except RankFailed as exc:
            # a worker died: Dask brings its blocks back from the source onto the workers
            # that remain (or its replacement), and the ranks start again from the last
            # iteration they all finished (else from the same generator state, which moves
            # on only after a success): the same result
            if attempt == _RANK_RETRIES:
                raise
            resume = exc.saved or resume
            continue
        return KMeansResult(C.astype(X.dtype), labels, inertia, n_iter)
    tol_abs, C = _seeded(blocks, k, init, tol, rng, init_rounds, oversampling)
    C, n_iter, inertia = _lloyd_loop(blocks, np.asarray(C, dtype=np.float64), max_iter, tol_abs)
    labels, inertia = _labels_inertia(blocks, C, inertia, lazy=True)
    return KMeansResult(C.astype(X.dtype), labels, inertia, n_iter)


def kmeans_predict(X, centroids):
    """Index of the nearest centroid of every row of ``X`` (int32; Dask for Dask input).

    Examples
    --------
    >>> import numpy as np
    >>> kmeans_predict(np.array([[0.1, 0.0], [9.0, 9.5]]), np.array([[0.0, 0.0], [10.0, 10.0]]))
    array([0, 1], dtype=int32)
    """
    func = "kmeans_predict"
    X = _check_X(X, func)
    C = check_array(centroids, "centroids", func, ndim=2)
    if is_dask(C):
        C = C.compute()
    if C.shape[1] != X.shape[1]:
        raise InvalidInput(message("centroids", func, f"an array with {X.shape[1]} columns "
                                   "(as many as X)", C))
    CT = _pad(C.T, X.dtype)
    if is_dask(X):
        if len(X.chunks[1]) > 1:
            X = X.rechunk({1: -1})
        return X.map_blocks(_predict_block, CT, dtype=np.int32, drop_axis=1,
                            meta=np.empty(0, np.int32))
    return _predict_block(X, CT)


_RUN = 16  # mini-batch rows are visited in a random order of runs of this many rows


def _visit_order(m: int, rng: np.random.Generator) -> np.ndarray:
    """A random order of ``range(m)`` made of shuffled runs of ``_RUN`` consecutive rows.

    Whole runs keep the row reads sequential (a fully random order of a large chunk would be
    one cache miss per row); a batch of 1024 rows still draws 64 runs from the whole chunk.
    """
    runs = rng.permutation(-(-m // _RUN)).astype(np.int64)
    order = (runs[:, None] * _RUN + np.arange(_RUN)).ravel()
    return order[order < m] if m % _RUN else order


@MINIBATCH_KMEANS
def minibatch_kmeans(X, n_clusters: int, *, batch_size: int = 1024, init="k-means++",
                     max_iter: int = 100, tol: float = 0.0, max_no_improvement: int | None = 10,
                     seed: int | np.random.Generator | None = None) -> KMeansResult:
    """Mini-batch k-means (Sculley 2010) over data streamed chunk by chunk.

    Each epoch visits the chunks of ``X`` in a random order and each chunk's rows in a random
    order (shuffled runs of 16 consecutive rows, so that reads stay sequential), in batches of
    ``batch_size`` rows: every step assigns one batch and moves each
    centroid towards the mean of its rows with learning rate ``1 / count`` (O(batch * k * d)
    per step; one chunk in memory at a time). The starting centroids come from ``init`` run
    on ``3 * batch_size`` rows (at least ``3 * k``) of the first chunk visited. Stops after
    ``max_iter`` epochs, or earlier when the smoothed batch inertia has not improved for
    ``max_no_improvement`` steps (None: never) or the squared centroid change of a step is
    ``<= tol * mean(var)`` (variance estimated on the init sample; 0 disables it).
    ``labels`` and ``inertia`` are computed for the final centroids on all of X.
    The result depends on ``seed`` and on the chunking (the order rows are visited in).

    Examples
    --------
    >>> import numpy as np
    >>> X = np.vstack([np.zeros((50, 2)), np.full((50, 2), 10.0)])
    >>> r = minibatch_kmeans(X, 2, batch_size=16, seed=0)
    >>> sorted(r.centroids[:, 0].tolist())
    [0.0, 10.0]
    """
    func = "minibatch_kmeans"
    X = _check_X(X, func)
    k, batch = n_clusters, batch_size  # (declared checks: clustering/params.py)
    if k > X.shape[0]:
        raise InvalidInput(message("n_clusters", func, f"an int in the range [1, {X.shape[0]}] "
                                   "(at most the number of rows of X)", k))
    init = _check_init(init, k, X.shape[1], X.dtype, func, choices=MINIBATCH_INITS)
    rng = _check_seed(seed, func)
    blocks = Blocks(X)

    def load(b):
        if not blocks.is_dask:
            return blocks.X
        import dask

        (arr,) = dask.compute(blocks.parts[b])
        arr = np.ascontiguousarray(arr)
        if not all_finite(arr):
            raise nonfinite_error("X", func)
        return arr

    CT = None
    wsum = np.zeros(k)
    state = np.zeros(5)
    tol_abs = 0.0
    n_epochs = 0
    nonempty = np.flatnonzero(blocks.sizes > 0)
    # Dask input: the next chunk is read while the current one is processed
    pool = ThreadPoolExecutor(1) if blocks.is_dask and len(nonempty) > 1 else None
    try:
        for epoch in range(max_iter):
            n_epochs = epoch + 1
            order = rng.permutation(nonempty)
            pending = pool.submit(load, order[0]) if pool else None
            for pos, b in enumerate(order):
                chunk = pending.result() if pool else load(b)
                if pool and pos + 1 < len(order):
                    pending = pool.submit(load, order[pos + 1])
                if CT is None:
                    m = min(len(chunk), max(3 * batch, 3 * k))
                    sample = chunk[np.sort(rng.choice(len(chunk), size=m, replace=False))]
                    if k > len(sample):
                        raise InvalidInput(message(
                            "n_clusters", func, "at most the rows of the first chunk visited",
                            k, "Use larger chunks."))
                    if isinstance(init, str):
                        C = _initial(Blocks(np.ascontiguousarray(sample)), k, init, rng, 1, 1.0)
                    else:
                        C = init
                    CT = _pad(np.asarray(C, dtype=np.float64).T, np.float64)
                    if tol > 0:
                        tol_abs = float(tol * np.mean(np.var(sample, axis=0)))
                perm = _visit_order(len(chunk), rng)
                _minibatch_chunk(chunk, perm, CT, wsum, k, batch, float(blocks.n),
                                 0 if max_no_improvement is None else max_no_improvement,
                                 tol_abs, state)
                if state[4]:
                    break
            if state[4]:
                break
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    C = np.ascontiguousarray(CT[:, :k].T)
    labels, inertia = _labels_inertia(blocks, C)
    return KMeansResult(C.astype(X.dtype), labels, inertia, n_epochs, int(state[0]))
