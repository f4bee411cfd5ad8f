"""k-means: Lloyd iterations, k-means|| / k-means++ / random seeding, prediction, mini-batch.

How it works
------------
* **Lloyd**: one fused Numba pass per chunk assigns every row to its nearest centroid and adds
  it to per-thread partial sums and counts (float64) and to the inertia; threads own disjoint
  row ranges and are merged serially. Over Dask every row block is one task and the partials
  are tree-combined (fan-in 8), one ``dask.compute`` per iteration, on the active scheduler.
  On a distributed cluster whose memory can hold the data, the blocks are persisted and the
  whole of k-means (tolerance, seeding, Lloyd, labels) runs on the workers that hold them,
  one long task each (a worker group, see ``hpcjobs.kernels._worker_group``), which swap each
  pass's partials directly (an allgather): a pass then costs a worker-to-worker message (0.13 ms
  through a pipe between workers of one machine, ~0.3 ms over the comms) instead of a
  scheduler round trip (~10 ms).
  Labels are those of the direct distances ``sum((x - c)**2)`` in the data's dtype (float32
  stays float32). On wide data (or few clusters per feature) the distances come from the
  ``|c|^2 - 2 x.c`` expansion through a matrix product, with a rounding-bounded recheck of
  every row another centroid could still win, so the labels are the same
  (``hpcjobs.kernels.clustering._dense_lloyd``); ``inertia`` is the sum of the winners'
  squared distances, to rounding the same either way.
* **Bounds** (NumPy input): the same iterations skip the distances that bounds on them prove
  unable to change a label, rounding included: Hamerly's bounds on narrow data
  (``_kmeans._bounded``), Elkan's (one per row and centroid) on wide data, where every
  distance is first tried on a float32 copy of the rows (``_kmeans._elkan``; the copy is
  kept for the next fit: ``hpcjobs.kernels._workspace``).
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
  the candidates do not depend on the chunking. In memory, each row's nearest candidate is
  kept between rounds: a round measures the rows against the candidates it adds alone, and
  the weights come from those labels (no pass of their own); the result is the same.
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

Where each part lives (``kernels/clustering/_kmeans/``): the Numba chunk loops in ``_chunks``
(and ``_specialised``, which picks the loop a chunk runs), the chunk functions of each pass in
``_passes``, the seeding and tolerance in ``_seeding``, Lloyd's loop in ``_lloyd``, the worker
group path in ``_on_workers`` and mini-batch in ``_minibatch``; this module holds the public
functions and their checks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hpcjobs.kernels._validation import (
    InvalidInput,
    InvalidType,
    all_finite,
    check_array,
    check_choice,
    check_int,
    is_dask,
    message,
    nonfinite_input,
)
from hpcjobs.kernels.clustering._common import Blocks, known_rows
from hpcjobs.kernels.clustering._kmeans._bounded import bounded_lloyd
from hpcjobs.kernels.clustering._kmeans._chunks import pad
from hpcjobs.kernels.clustering._kmeans._elkan import elkan_lloyd, use_elkan
from hpcjobs.kernels.clustering._kmeans._lloyd import labels_inertia, lloyd_loop
from hpcjobs.kernels.clustering._kmeans._minibatch import minibatch_epochs
from hpcjobs.kernels.clustering._kmeans._on_workers import (
    kmeans_on_workers as _kmeans_on_workers,
)
from hpcjobs.kernels.clustering._kmeans._passes import predict_block
from hpcjobs.kernels.clustering._kmeans._seeding import seeded
from hpcjobs.kernels.clustering._kmeans._specialised import use_bounds
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


def _check_seed(seed, func: str) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is not None:
        seed = check_int(seed, "seed", func, low=0)
    return np.random.default_rng(seed)


def _check_X(X, func: str, finite: bool = True):
    X = check_array(X, "X", func, ndim=2, allow_nan=not finite,
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


def _first_pass_checks(X: np.ndarray, k: int, init, tol: float, max_iter: int) -> bool:
    """Whether the first pass of the fit over the in-memory ``X`` reads all of it and checks
    it for NaN/inf on the way (one pass less than a check up front: 125 MB at 2e4 x 784): the
    tolerance's moments (``tol > 0``), or, from given centroids, Elkan's first pass over
    float64 rows (their norms)."""
    if tol > 0:
        return True
    return (not isinstance(init, str) and max_iter >= 1 and X.dtype == np.float64
            and use_elkan(X, k))


#: how often a k-means over kept blocks (a worker group) starts again after losing a worker
_GROUP_RETRIES = 3


@KMEANS
def fit_kmeans(X, n_clusters: int, *, init="k-means||", max_iter: int = 300,
               tol: float = 1e-4, seed: int | np.random.Generator | None = None,
               init_rounds: int = 5, oversampling: float = 2.0) -> KMeansResult:
    """:func:`kmeans`, but over streamed Dask data ``.inertia`` is a ``dask.delayed`` value
    that shares its pass with the labels: a caller that writes the labels computes both in
    one pass (``hpcjobs run`` does)."""
    func = "kmeans"
    X = _check_X(X, func, finite=False)  # NumPy: just below, or by the first pass over X
    k = n_clusters  # (declared checks: clustering/params.py)
    if k > X.shape[0]:
        raise InvalidInput(message("n_clusters", func, f"an int in the range [1, {X.shape[0]}] "
                                   "(at most the number of rows of X)", k))
    init = _check_init(init, k, X.shape[1], X.dtype, func)
    rng = _check_seed(seed, func)
    if not is_dask(X) and not _first_pass_checks(X, k, init, tol, max_iter) \
            and not all_finite(X):
        raise nonfinite_input(X, "X", func)
    blocks = Blocks(X)
    resume = None
    for attempt in range(_GROUP_RETRIES + 1):
        if not blocks.keep_in_memory():  # (again after a loss: where the blocks are now)
            break
        from hpcjobs.kernels._worker_group import MemberLost

        try:  # Lloyd reads the data max_iter times: from the workers' memory
            C, n_iter, labels, inertia = _kmeans_on_workers(
                blocks, k, init, tol, rng, init_rounds, oversampling, max_iter, resume)
        except MemberLost as exc:
            # a worker died: Dask brings its blocks back from the source onto the workers
            # that remain (or its replacement), and the members start again from the last
            # iteration they all finished (else from the same generator state, which moves
            # on only after a success): the same result
            if attempt == _GROUP_RETRIES:
                raise
            resume = exc.saved or resume
            continue
        return KMeansResult(C.astype(X.dtype), labels, inertia, n_iter)
    tol_abs, C = seeded(blocks, k, init, tol, rng, init_rounds, oversampling)
    if not blocks.is_dask and use_bounds(blocks.X, k):
        # in memory, with the direct distance kernels: the same iterations, most of the
        # distances skipped once the centroids settle
        C, n_iter, labels, inertia = bounded_lloyd(blocks, np.asarray(C, dtype=np.float64),
                                                   max_iter, tol_abs)
        return KMeansResult(C.astype(X.dtype), labels, inertia, n_iter)
    if not blocks.is_dask and use_elkan(blocks.X, k):
        # in memory, wide data: Elkan's bounds, one per row and centroid
        C, n_iter, labels, inertia = elkan_lloyd(blocks, np.asarray(C, dtype=np.float64),
                                                 max_iter, tol_abs)
        return KMeansResult(C.astype(X.dtype), labels, inertia, n_iter)
    C, n_iter, inertia = lloyd_loop(blocks, np.asarray(C, dtype=np.float64), max_iter, tol_abs)
    labels, inertia = labels_inertia(blocks, C, inertia, lazy=True)
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
    CT = pad(C.T, X.dtype)
    if is_dask(X):
        if len(X.chunks[1]) > 1:
            X = X.rechunk({1: -1})
        return X.map_blocks(predict_block, CT, dtype=np.int32, drop_axis=1,
                            meta=np.empty(0, np.int32))
    return predict_block(X, CT)


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

    C, n_epochs, n_steps = minibatch_epochs(blocks, k, init, batch, max_iter, tol,
                                            max_no_improvement, rng, func)
    labels, inertia = labels_inertia(blocks, C)
    return KMeansResult(C.astype(X.dtype), labels, inertia, n_epochs, n_steps)
