"""Mini-batch k-means (Sculley 2010, learning rate ``1 / count``, as scikit-learn's
``MiniBatchKMeans``): the chunk loop (Numba), the order a chunk's rows are visited in, and the
epochs over the chunks, streamed one at a time (the next read while one is processed).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from hpcjobs.kernels._finite import all_finite
from hpcjobs.kernels._jit import njit
from hpcjobs.kernels._validation import InvalidInput, message, nonfinite_error
from hpcjobs.kernels.clustering._common import Blocks
from hpcjobs.kernels.clustering._kmeans._chunks import TILE, add_tile, nearest_XT, pad
from hpcjobs.kernels.clustering._kmeans._seeding import initial


@njit
def minibatch_chunk(X, perm, CT, wsum, k, batch, n_total, max_no_improvement, tol_abs, state):
    """Mini-batch steps over the rows ``X[perm]`` of one chunk, updating ``CT`` in place.

    ``CT`` (d, kp) float64 is padded like :func:`pad`; ``state`` = [steps, ewa inertia,
    best ewa, steps without improvement, stopped].
    """
    d, kp = CT.shape
    m = perm.shape[0]
    bsum = np.zeros((k, d))
    bcnt = np.zeros(k)
    XT = np.empty((d, TILE))
    dist = np.empty((4, TILE))
    best = np.empty(TILE)
    lab = np.empty(TILE, dtype=np.int64)
    for b0 in range(0, m, batch):
        if state[4] != 0.0:
            return
        b1 = min(b0 + batch, m)
        nb = b1 - b0
        bsum[:] = 0.0
        bcnt[:] = 0.0
        binert = 0.0
        for t0 in range(b0, b1, TILE):
            mt = min(TILE, b1 - t0)
            for i in range(mt):
                r = perm[t0 + i]
                for f in range(d):
                    XT[f, i] = X[r, f]
            nearest_XT(XT, mt, CT, dist, best, lab)
            binert = add_tile(XT, mt, best, lab, bsum, bcnt, binert)
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


RUN = 16  # mini-batch rows are visited in a random order of runs of this many rows


def visit_order(m: int, rng: np.random.Generator) -> np.ndarray:
    """A random order of ``range(m)`` made of shuffled runs of ``RUN`` consecutive rows.

    Whole runs keep the row reads sequential (a fully random order of a large chunk would be
    one cache miss per row); a batch of 1024 rows still draws 64 runs from the whole chunk.
    """
    runs = rng.permutation(-(-m // RUN)).astype(np.int64)
    order = (runs[:, None] * RUN + np.arange(RUN)).ravel()
    return order[order < m] if m % RUN else order


def minibatch_epochs(blocks: Blocks, k: int, init, batch: int, max_iter: int, tol: float,
                     max_no_improvement: int | None, rng: np.random.Generator, func: str):
    """Mini-batch epochs over the chunks of ``blocks`` (see ``minibatch_kmeans``), one chunk
    in memory at a time: (centroids (k, d) float64, epochs, steps)."""
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
                        C = initial(Blocks(np.ascontiguousarray(sample)), k, init, rng, 1, 1.0)
                    else:
                        C = init
                    CT = pad(np.asarray(C, dtype=np.float64).T, np.float64)
                    if tol > 0:
                        tol_abs = float(tol * np.mean(np.var(sample, axis=0)))
                perm = visit_order(len(chunk), rng)
                minibatch_chunk(chunk, perm, CT, wsum, k, batch, float(blocks.n),
                                0 if max_no_improvement is None else max_no_improvement,
                                tol_abs, state)
                if state[4]:
                    break
            if state[4]:
                break
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    return np.ascontiguousarray(CT[:, :k].T), n_epochs, int(state[0])
