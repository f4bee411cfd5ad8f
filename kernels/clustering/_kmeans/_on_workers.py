"""All of k-means on the Dask workers that hold the data, as one worker group
(``hpcjobs.kernels._worker_group``): tolerance, seeding, Lloyd's loop and the labels run in
one long task per worker, which swap each pass's partial results directly; a worker lost
midway costs a restart from the last iteration all members agreed on.
"""

from __future__ import annotations

import math
import pickle
import time

import numpy as np

from hpcjobs.kernels.clustering._common import Blocks
from hpcjobs.kernels.clustering._kmeans._chunks import pad
from hpcjobs.kernels.clustering._kmeans._lloyd import lloyd_loop
from hpcjobs.kernels.clustering._kmeans._passes import labels_inertia_chunk, predict_block
from hpcjobs.kernels.clustering._kmeans._seeding import seeded


def kmeans_on_workers(blocks: Blocks, k: int, init, tol: float, rng, init_rounds: int,
                      oversampling: float, max_iter: int, resume: tuple | None = None):
    """All of k-means over blocks kept in a distributed cluster's memory, on the workers
    that hold them: tolerance, seeding, Lloyd's loop and the labels, the group's members
    swapping each pass's small results directly (no scheduler round trip per pass, see
    ``Blocks.run_group``; k-means++ makes a pass per centroid). Returns (centroids, n_iter,
    labels as a Dask array that stays on the workers, inertia).

    ``resume``: a state the members of an earlier call saved, ``(n_iter, (C, tol_abs, rng
    state, done))``: start after that iteration. When a worker dies the members fail with a
    ``MemberLost`` whose ``saved`` is the last such state they agreed on (or None)."""
    from hpcjobs.kernels._worker_group import MemberLost, last_saved

    # each member draws from its own copy of the generator (in-process workers would
    # otherwise share one object); the caller's generator then moves on as if in memory
    members = blocks.run_group(kmeans_member, k, init, tol, pickle.dumps(rng), init_rounds,
                               oversampling, max_iter, resume)
    client = blocks.kept.client
    try:
        C, n_iter, inertia, rng_state, name = client.gather(members)[0]
    except MemberLost as exc:
        exc.saved = last_saved(members)
        _after_loss(client, blocks.kept.placement)
        raise
    rng.bit_generator.state = rng_state
    # the members left each block's labels on its worker: a task per kept block takes them
    # there, or assigns the block's rows again where its worker has died since
    labels = blocks.X.map_blocks(_kept_labels, pad(C.T, blocks.dtype), name, dtype=np.int32,
                                 drop_axis=1, meta=np.empty(0, np.int32))
    return C, n_iter, labels, inertia


def _after_loss(client, placement, patience: float = 30.0) -> None:
    """Once a worker group failed (its members have ended): wait for the scheduler to drop the
    worker that was lost (so the next placement does not name it)."""
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        alive = set(client.scheduler_info(n_workers=-1)["workers"])
        if not set(placement) <= alive:
            return
        time.sleep(0.1)


def kmeans_member(blocks, k, init, tol, rng_pickle, init_rounds, oversampling, max_iter,
                  resume):
    """One worker's share of :func:`kmeans_on_workers` (``blocks``: a ``MemberBlocks``).

    Every member draws from its own copy of the generator and combines the same parts in the
    same order, so all seed alike; the seeding ends in local arithmetic (the weighted
    re-clustering) that members on different CPUs could round differently, so all take member
    0's centroids and tolerance. After each Lloyd iteration the members save the centroids they
    all agreed on: a later call resumes from there (``resume``) after a worker died."""
    rng = pickle.loads(rng_pickle)  # noqa: S301 - the client's own generator
    group = blocks.group
    if resume is None:
        tol_abs, C = seeded(blocks, k, init, tol, rng, init_rounds, oversampling)
        tol_abs, C = group.allgather((tol_abs, C) if group.member == 0 else None)[0]
        start, done = 0, False
    else:  # the data was checked for NaN/inf by the first pass of the earlier call
        start, (C, tol_abs, rng_state, done) = resume
        rng.bit_generator.state = rng_state
    rng_state = rng.bit_generator.state

    def save(n_iter, C, done):
        group.save(n_iter, (C, tol_abs, rng_state, done))

    n_iter = start
    if not done:
        C, n_iter, _ = lloyd_loop(blocks, np.asarray(C, dtype=np.float64), max_iter, tol_abs,
                                  start=start, save=save)
    CT = pad(C.T, blocks.dtype)
    labels, inertia = zip(*(labels_inertia_chunk(b, CT) for b in blocks.parts), strict=True)
    for offset, block_labels in zip(blocks.offsets, labels, strict=True):
        group.keep(int(offset), block_labels)
    inertia = math.fsum(group.allgather(math.fsum(inertia)))
    return C, n_iter, inertia, rng_state, group.name


def _kept_labels(block, CT, name, block_info=None):
    """The labels of a kept block: those its member of worker group ``name`` left on this
    worker, else (its worker died since) assigned again, alike."""
    from hpcjobs.kernels._worker_group import take_kept

    labels = take_kept(name, int(block_info[0]["array-location"][0][0]))
    return labels if labels is not None else predict_block(block, CT)
