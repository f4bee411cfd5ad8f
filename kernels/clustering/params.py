"""The parameters of the clustering kernels, declared once (see :mod:`hpcjobs.kernels._params`):
the kernels check their calls with them and job files are checked against them."""

from __future__ import annotations

from hpcjobs.kernels import _validation as v
from hpcjobs.kernels._params import Param, Params

INITS = ("k-means||", "k-means++", "random")
MINIBATCH_INITS = ("k-means++", "random")


def _init_check(choices: tuple[str, ...]):
    """A job file's ``init``: a method's name or a list of starting centroids (rows)."""
    def check(value, func):
        if isinstance(value, str):
            return v.check_choice(value, "init", func, choices)
        what = (f"one of {', '.join(map(repr, choices))} or a list of n_clusters rows of "
                "starting centroids")
        if not isinstance(value, list | tuple) or not value or not all(
                isinstance(row, list | tuple) and row and all(
                    isinstance(x, int | float) and not isinstance(x, bool) for x in row)
                for row in value):
            raise v.InvalidType(v.message("init", func, what, value))
        if len({len(row) for row in value}) != 1:
            raise v.InvalidInput(v.message("init", func, what + " of equal length", value))
        return [[float(x) for x in row] for row in value]
    return check


# init and seed take more from Python (an array of centroids, a numpy Generator) than from
# a job file: the kernels check them themselves (kernel_checks)
_SEED = Param("seed", "int", None, "random seed (null: fresh entropy)", low=0, nullable=True,
              kernel_checks=True)

KMEANS = Params(
    "kmeans",
    Param("n_clusters", "int", help="number of clusters k (1 <= k <= rows)", low=1),
    Param("init", "any", "k-means||", "'k-means||', 'k-means++', 'random' or a list of k "
          "starting centroids", check=_init_check(INITS), kernel_checks=True),
    Param("max_iter", "int", 300, "most Lloyd iterations", low=1),
    Param("tol", "float", 1e-4, "stop when the squared centroid shift <= tol * mean column "
          "variance", low=0.0),
    _SEED,
    Param("init_rounds", "int", 5, "k-means|| sampling rounds", low=1),
    Param("oversampling", "float", 2.0, "k-means|| rows drawn per round, per cluster",
          low=0.0, low_open=True),
)

MINIBATCH_KMEANS = Params(
    "minibatch_kmeans",
    Param("n_clusters", "int", help="number of clusters k", low=1),
    Param("batch_size", "int", 1024, "rows per step", low=1),
    Param("init", "any", "k-means++", "'k-means++', 'random' or a list of k starting "
          "centroids", check=_init_check(MINIBATCH_INITS), kernel_checks=True),
    Param("max_iter", "int", 100, "most epochs (passes over the data)", low=1),
    Param("tol", "float", 0.0, "stop when a step moves the centroids by <= tol * mean column "
          "variance (0: off)", low=0.0),
    Param("max_no_improvement", "int", 10, "stop after this many steps without improvement "
          "of the smoothed batch inertia (null: never)", low=1, nullable=True),
    _SEED,
)

DBSCAN = Params(
    "dbscan",
    Param("eps", "float", help="neighbourhood radius", low=0.0, low_open=True),
    Param("min_samples", "int", 5, "rows within eps (itself included) that make a core point",
          low=1),
)
