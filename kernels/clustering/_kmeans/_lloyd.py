"""Lloyd's loop over the passes of a set of blocks (NumPy, Dask or a worker group's member),
with scikit-learn's handling of empty clusters, and the final labels and inertia.
"""

from __future__ import annotations

import operator

import numpy as np

from hpcjobs.kernels._fsum import squared_distance_fsum
from hpcjobs.kernels._jit import task_threads
from hpcjobs.kernels.clustering._common import Blocks
from hpcjobs.kernels.clustering._kmeans._chunks import pad
from hpcjobs.kernels.clustering._kmeans._passes import (
    far_chunk,
    far_combine,
    fsum,
    labels_inertia_chunk,
    lloyd_chunk,
    predict_block,
    sum_combine,
)
from hpcjobs.kernels.clustering._kmeans._specialised import assign_labels


def relocate_empty(blocks, CT, sums, counts, empty):
    """Move the rows farthest from their centroid into the empty clusters (as scikit-learn);
    returns the ``(row index, cluster)`` of each row moved."""
    d2, idx, lab, rows = blocks.map_reduce(far_chunk, far_combine, CT, len(empty))
    moved = []
    for e, cluster in enumerate(empty[:len(idx)]):
        old = lab[e]
        if counts[old] <= 1:
            continue
        sums[old] -= rows[e]
        counts[old] -= 1
        sums[cluster] = rows[e]
        counts[cluster] = 1
        moved.append((int(idx[e]), int(cluster)))
    return moved


def moved_centroids(C: np.ndarray, sums: np.ndarray, counts: np.ndarray, tol_abs: float):
    """The centroids after a pass (the mean of each non-empty cluster's rows; an empty one
    stays) and the squared shift from ``C``, exactly rounded where it is near ``tol_abs``
    (elsewhere provably on the same side of it and of 0): members of a worker group on
    different CPUs still agree on when to stop."""
    new = C.copy()
    nz = counts > 0
    new[nz] = sums[nz] / counts[nz, None]
    return new, squared_distance_fsum(new, C, above=tol_abs)


def lloyd_loop(blocks: Blocks, C: np.ndarray, max_iter: int, tol_abs: float,
                start: int = 0, save=None):
    """Lloyd iterations after the ``start`` already done: (centroids, n_iter, inertia of the
    last pass if the centroids did not move in it, else None). ``save(n_iter, C, done)`` is
    called after each iteration (a collective records the state it can resume from)."""
    n_iter = start
    for n_iter in range(start + 1, max_iter + 1):  # noqa: B007
        CT = pad(C.T, blocks.dtype)
        sums, counts, inertia = blocks.map_reduce(lloyd_chunk, sum_combine, CT, len(C))
        empty = np.flatnonzero(counts == 0)
        if empty.size:
            relocate_empty(blocks, CT, sums, counts, empty)
        C, shift = moved_centroids(C, sums, counts, tol_abs)
        if save is not None:
            save(n_iter, C, shift <= tol_abs)
        if shift == 0.0:  # converged exactly: the pass's inertia is the final one
            return C, n_iter, float(inertia)
        if shift <= tol_abs:
            break
    return C, n_iter, None


def labels_inertia(blocks: Blocks, C: np.ndarray, inertia: float | None = None,
                    lazy: bool = False):
    """Labels of the rows for centroids ``C`` (Dask: lazy) and their inertia (one pass,
    skipped over Dask when ``inertia`` is already known; with ``lazy``, a ``dask.delayed``
    value from the labels' own tasks, to compute together with them)."""
    CT = pad(C.T, blocks.dtype)
    if not blocks.is_dask:
        X = blocks.X
        labels = np.empty(X.shape[0], dtype=np.int32)
        d2 = np.empty(X.shape[0], dtype=X.dtype)
        inertia = assign_labels(X, CT, labels, d2, task_threads())
        return labels, float(inertia)
    if inertia is not None:
        labels = blocks.X.map_blocks(predict_block, CT, dtype=np.int32, drop_axis=1,
                                     meta=np.empty(0, np.int32))
        return labels, float(inertia)
    # labels and inertia from one task per block: computed with the labels, one pass for both
    import dask
    import dask.array as da

    CT = dask.delayed(CT)
    parts = [dask.delayed(labels_inertia_chunk, pure=True)(p, CT) for p in blocks.parts]
    labels = da.concatenate([
        da.from_delayed(dask.delayed(operator.getitem, pure=True)(p, 0), shape=(int(size),),
                        dtype=np.int32) for p, size in zip(parts, blocks.sizes, strict=True)])
    inertia = dask.delayed(fsum, pure=True)([dask.delayed(operator.getitem, pure=True)(p, 1)
                                              for p in parts])
    return labels, (inertia if lazy else float(inertia.compute()))
