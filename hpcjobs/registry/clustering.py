"""Clustering kernels for job files: k-means (Lloyd and mini-batch) and DBSCAN.

Labels are Dask arrays over the rows (written to Zarr chunk by chunk); centroids and the
scalars are small NumPy results written whole.
"""

from __future__ import annotations

from hpcjobs.kernels import _validation as v
from hpcjobs.registry import KernelSpec, Param, Port

_INITS = ("k-means||", "k-means++", "random")


def _check_init(choices):
    def check(value, func):
        if isinstance(value, str):
            return v.check_choice(value, "init", func, choices)
        what = (f"one of {', '.join(map(repr, choices))} or a list of n_clusters rows of "
                "starting centroids")
        if not isinstance(value, list | tuple) or not value or not all(
                isinstance(row, list | tuple) and row and all(
                    isinstance(x, int | float) and not isinstance(x, bool) for x in row)
                for row in value):
            raise TypeError(v.message("init", func, what, value))
        if len({len(row) for row in value}) != 1:
            raise ValueError(v.message("init", func, what + " of equal length", value))
        return [[float(x) for x in row] for row in value]
    return check


def _init(value):
    import numpy as np

    return value if isinstance(value, str) else np.asarray(value, dtype=np.float64)


def _kmeans_outputs(r) -> dict:
    inertia = r.inertia if hasattr(r.inertia, "__dask_graph__") else float(r.inertia)
    return {"centroids": r.centroids, "labels": r.labels, "inertia": inertia,
            "n_iter": int(r.n_iter)}


def run_kmeans(inputs: dict, params: dict) -> dict:
    from hpcjobs.kernels.clustering.kmeans import fit_kmeans

    # the inertia of streamed data comes with the labels' pass (the runner computes both)
    r = fit_kmeans(inputs["X"], params["n_clusters"], init=_init(params["init"]),
               max_iter=params["max_iter"], tol=params["tol"], seed=params["seed"],
               init_rounds=params["init_rounds"], oversampling=params["oversampling"])
    return _kmeans_outputs(r)


def run_minibatch_kmeans(inputs: dict, params: dict) -> dict:
    from hpcjobs.kernels import minibatch_kmeans

    r = minibatch_kmeans(inputs["X"], params["n_clusters"], batch_size=params["batch_size"],
                         init=_init(params["init"]), max_iter=params["max_iter"],
                         tol=params["tol"], max_no_improvement=params["max_no_improvement"],
                         seed=params["seed"])
    out = _kmeans_outputs(r)
    out["n_steps"] = int(r.n_steps)
    return out


def run_dbscan(inputs: dict, params: dict) -> dict:
    from hpcjobs.kernels import dbscan

    r = dbscan(inputs["X"], params["eps"], params["min_samples"])
    return {"labels": r.labels, "core": r.core, "n_clusters": int(r.n_clusters)}


_X = Port("X", ("row", "column"), "2-D numeric array; its rows are clustered")
_KM_OUT = (
    Port("centroids", ("cluster", "column"), "centroid of each cluster (dtype of X)"),
    Port("labels", ("row",), "cluster of each row", dtype="int32"),
    Port("inertia", (), "sum of squared distances of the rows to their centroid"),
    Port("n_iter", (), "Lloyd iterations run (epochs for mini-batch)", dtype="int64"),
)
_SEED = Param("seed", "int", None, "random seed (null: fresh entropy)", low=0, nullable=True)

KERNELS = [
    KernelSpec(
        name="kmeans",
        example={"n_clusters": 4},
        family="clustering",
        summary="k-means (Lloyd, k-means|| seeding); fused Numba pass per chunk, tree-combined.",
        run="hpcjobs.registry.clustering:run_kmeans",
        inputs=(_X,),
        outputs=_KM_OUT,
        params=(
            Param("n_clusters", "int", help="number of clusters k (1 <= k <= rows)", low=1),
            Param("init", "any", "k-means||", "'k-means||', 'k-means++', 'random' or a list "
                  "of k starting centroids", check=_check_init(_INITS)),
            Param("max_iter", "int", 300, "most Lloyd iterations", low=1),
            Param("tol", "float", 1e-4, "stop when the squared centroid shift <= tol * "
                  "mean column variance", low=0.0),
            _SEED,
            Param("init_rounds", "int", 5, "k-means|| sampling rounds", low=1),
            Param("oversampling", "float", 2.0, "k-means|| rows drawn per round, per cluster",
                  low=0.0, low_open=True),
        ),
    ),
    KernelSpec(
        name="minibatch_kmeans",
        example={"n_clusters": 4},
        family="clustering",
        summary="Mini-batch k-means streaming the chunks (O(batch) per step).",
        run="hpcjobs.registry.clustering:run_minibatch_kmeans",
        inputs=(_X,),
        outputs=_KM_OUT + (Port("n_steps", (), "mini-batch steps run", dtype="int64"),),
        params=(
            Param("n_clusters", "int", help="number of clusters k", low=1),
            Param("batch_size", "int", 1024, "rows per step", low=1),
            Param("init", "any", "k-means++", "'k-means++', 'random' or a list of k "
                  "starting centroids", check=_check_init(("k-means++", "random"))),
            Param("max_iter", "int", 100, "most epochs (passes over the data)", low=1),
            Param("tol", "float", 0.0, "stop when a step moves the centroids by <= tol * "
                  "mean column variance (0: off)", low=0.0),
            Param("max_no_improvement", "int", 10, "stop after this many steps without "
                  "improvement of the smoothed batch inertia (null: never)", low=1,
                  nullable=True),
            _SEED,
        ),
    ),
    KernelSpec(
        name="dbscan",
        example={"eps": 0.5}, warm_rows=1 << 14,
        family="clustering",
        summary="Exact DBSCAN (Euclidean) on an eps-grid with union-find; spatial slabs over "
                "Dask. Practical for 2-D and 3-D.",
        run="hpcjobs.registry.clustering:run_dbscan",
        inputs=(_X,),
        outputs=(
            Port("labels", ("row",), "cluster of each row, -1 for noise", dtype="int64"),
            Port("core", ("row",), "whether the row is a core point", dtype="bool"),
            Port("n_clusters", (), "number of clusters found", dtype="int64"),
        ),
        params=(
            Param("eps", "float", help="neighbourhood radius", low=0.0, low_open=True),
            Param("min_samples", "int", 5, "rows within eps (itself included) that make a "
                  "core point", low=1),
        ),
    ),
]
