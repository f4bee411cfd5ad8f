"""hpcjobs.kernels: Numba-compiled data-mining, clustering and visualisation kernels.

Every public function takes NumPy or Dask arrays, validates its arguments, and returns NumPy
results for small outputs and Dask arrays for large ones. Nothing here imports the hpcjobs
framework: the kernels are usable alone.

Names are loaded lazily (PEP 562) so ``import hpcjobs.kernels`` does not compile anything.

Examples
--------
>>> import numpy as np
>>> from hpcjobs.kernels import describe
>>> describe(np.arange(12.0).reshape(6, 2), bins=4).mean
array([5., 6.])
"""

from __future__ import annotations

import importlib

# public name -> submodule (relative to this package) that defines it
_EXPORTS: dict[str, str] = {
    # stats
    "describe": "stats.describe",
    "standardize": "stats.standardize",
    # clustering
    "kmeans": "clustering.kmeans",
    "kmeans_predict": "clustering.kmeans",
    "minibatch_kmeans": "clustering.kmeans",
    "dbscan": "clustering.dbscan",
    # visualisation preprocessing
    "aggregate2d": "viz.aggregate",
    "shade": "viz.shade",
    "pyramid": "viz.pyramid",
    "lttb": "viz.downsample",
    "minmax": "viz.downsample",
    "m4": "viz.downsample",
    "minmax_lttb": "viz.downsample",
    "pca": "viz.pca",
    # data mining
    "frequent_itemsets": "mining.itemsets",
    "association_rules": "mining.itemsets",
    "matrix_profile": "mining.matrix_profile",
    "discords": "mining.matrix_profile",
    "motifs": "mining.matrix_profile",
    "knn_outliers": "mining.outliers",
    "lof": "mining.outliers",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    try:
        module = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
