"""Clustering kernels for job files: k-means (Lloyd and mini-batch) and DBSCAN.

Labels are Dask arrays over the rows (written to Zarr chunk by chunk); centroids and the
scalars are small NumPy results written whole.
"""

from __future__ import annotations

from hpcjobs.kernels.clustering.params import DBSCAN, KMEANS, MINIBATCH_KMEANS
from hpcjobs.registry import KernelSpec, Port


def _init(value):
    import numpy as np

    return value if isinstance(value, str) else np.asarray(value, dtype=np.float64)


def _kmeans_outputs(r) -> dict:
    inertia = r.inertia if hasattr(r.inertia, "__dask_graph__") else float(r.inertia)
    return {"centroids": r.centroids, "labels": r.labels, "inertia": inertia,
            "n_iter": int(r.n_iter)}


def run_kmeans(inputs: dict, params: dict) -> tuple[dict, dict]:
    from hpcjobs.kernels.clustering.kmeans import fit_kmeans

    # the inertia of streamed data comes with the labels' pass (the runner computes both)
    r = fit_kmeans(inputs["X"], params["n_clusters"], init=_init(params["init"]),
               max_iter=params["max_iter"], tol=params["tol"], seed=params["seed"],
               init_rounds=params["init_rounds"], oversampling=params["oversampling"])
    return _kmeans_outputs(r), {}


def run_minibatch_kmeans(inputs: dict, params: dict) -> tuple[dict, dict]:
    from hpcjobs.kernels import minibatch_kmeans

    r = minibatch_kmeans(inputs["X"], params["n_clusters"], batch_size=params["batch_size"],
                         init=_init(params["init"]), max_iter=params["max_iter"],
                         tol=params["tol"], max_no_improvement=params["max_no_improvement"],
                         seed=params["seed"])
    out = _kmeans_outputs(r)
    out["n_steps"] = int(r.n_steps)
    return out, {}


def run_dbscan(inputs: dict, params: dict) -> tuple[dict, dict]:
    from hpcjobs.kernels import dbscan

    r = dbscan(inputs["X"], params["eps"], params["min_samples"])
    return {"labels": r.labels, "core": r.core, "n_clusters": int(r.n_clusters)}, {}


_X = Port("X", ("row", "column"), "2-D numeric array; its rows are clustered")
_KM_OUT = (
    Port("centroids", ("cluster", "column"), "centroid of each cluster (dtype of X)"),
    Port("labels", ("row",), "cluster of each row", dtype="int32"),
    Port("inertia", (), "sum of squared distances of the rows to their centroid"),
    Port("n_iter", (), "Lloyd iterations run (epochs for mini-batch)", dtype="int64"),
)

KERNELS = [
    KernelSpec(
        name="kmeans",
        example={"n_clusters": 4},
        family="clustering",
        summary="k-means (Lloyd, k-means|| seeding); fused Numba pass per chunk, tree-combined.",
        run="hpcjobs.registry.clustering:run_kmeans",
        inputs=(_X,),
        outputs=_KM_OUT,
        params=KMEANS.params,
    ),
    KernelSpec(
        name="minibatch_kmeans",
        example={"n_clusters": 4},
        family="clustering",
        summary="Mini-batch k-means streaming the chunks (O(batch) per step).",
        run="hpcjobs.registry.clustering:run_minibatch_kmeans",
        inputs=(_X,),
        outputs=_KM_OUT + (Port("n_steps", (), "mini-batch steps run", dtype="int64"),),
        params=MINIBATCH_KMEANS.params,
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
        params=DBSCAN.params,
    ),
]
