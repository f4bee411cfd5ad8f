"""The parameters of the visualisation kernels, declared once (see
:mod:`hpcjobs.kernels._params`), with the raster-size rule that aggregate2d and its job
files share."""

from __future__ import annotations

import numpy as np

from hpcjobs.kernels import _validation as v
from hpcjobs.kernels._params import Param, Params

AGGS = ("count", "sum", "mean", "min", "max", "std", "count_cat")
HOWS = ("linear", "log", "eq_hist")
CMAPS = ("viridis", "inferno", "fire", "blues", "gray")
PYRAMID_METHODS = ("mean", "min", "max", "mode")
PCA_METHODS = ("auto", "covariance", "randomized")


def _range_check(value, func):
    """A job file's raster extent, as a list of two [min, max] lists."""
    if value is None:
        return None
    expected = "[[xmin, xmax], [ymin, ymax]] (or [xmin, xmax, ymin, ymax]) with min < max"
    try:
        r = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise v.InvalidType(v.message("range", func, expected, value)) from None
    if r.shape == (4,):
        r = r.reshape(2, 2)
    if r.shape != (2, 2) or not np.isfinite(r).all() or (r[:, 0] >= r[:, 1]).any():
        raise v.InvalidInput(v.message("range", func, expected, value))
    return [[float(r[0, 0]), float(r[0, 1])], [float(r[1, 0]), float(r[1, 1])]]


def check_raster_size(shape, agg: str, n_categories: int | None, func: str) -> None:
    """The raster, all its layers, within ``MAX_CELLS``, before any is allocated (the kernel
    checks again once the layers of count_cat are known from the data)."""
    ny, nx = shape
    if agg == "count_cat" and n_categories is not None:
        v.check_cells(n_categories * ny * nx, "n_categories", func, "n_categories x ny x nx",
                      f"{n_categories} layers of {ny} x {nx}")
    else:
        v.check_cells(ny * nx, "shape", func, "ny x nx", list(shape))


AGGREGATE2D = Params(
    "aggregate2d",
    Param("shape", "ints", help="raster size [ny, nx]; ny x nx (x n_categories) at most "
          f"{v.MAX_CELLS:,} cells", length=2, low=1, high=1_000_000),
    # Python also takes arrays and tuples: the kernel checks the range itself
    Param("range", "any", None, "extent [[xmin, xmax], [ymin, ymax]] (default: the data's "
          "finite min and max)", nullable=True, check=_range_check, kernel_checks=True),
    Param("agg", "str", "count", "the reduction", choices=AGGS),
    Param("n_categories", "int", None, "layers for count_cat (default: largest label + 1)",
          low=1, high=v.MAX_CELLS, nullable=True),
)

SHADE = Params(
    "shade",
    Param("how", "str", "eq_hist", "normalisation", choices=HOWS),
    # Python also takes a list of colours or None (levels): the kernel checks cmap itself
    Param("cmap", "str", "viridis", "colour map", choices=CMAPS, kernel_checks=True),
)

PYRAMID = Params(
    "pyramid",
    Param("levels", "int", 5, "levels including the base (capped at one pixel)", low=1,
          high=64),
    Param("method", "str", "mean", "reduction", choices=PYRAMID_METHODS),
)


def _multiple_of(multiple: int):
    def check(value, func):
        if value % multiple:
            raise v.InvalidInput(v.message("n_out", func, f"a multiple of {multiple}", value))
        return value
    return check


def _n_out(low: int, multiple: int = 1) -> Param:
    """``n_out`` of a downsampling kernel (at most the series' length: checked against it)."""
    return Param("n_out", "int", 1000, "number of points kept (at most the series length)",
                 low=low, check=_multiple_of(multiple) if multiple > 1 else None)


LTTB = Params("lttb", _n_out(3))
MINMAX = Params("minmax", _n_out(2, 2))
M4 = Params("m4", _n_out(4, 4))
MINMAX_LTTB = Params("minmax_lttb", _n_out(3),
                     Param("minmax_ratio", "int", 4, "preselection factor", low=2))

PCA = Params(
    "pca",
    Param("n_components", "int", 2, "number of components", low=1),
    Param("method", "str", "auto", "covariance (exact), randomized, or auto (covariance up "
          "to 2000 columns)", choices=PCA_METHODS),
    Param("n_iter", "int", 4, "power iterations of the randomized sketch", low=0),
    Param("oversample", "int", 10, "extra columns of the randomized sketch", low=0),
    # Python also takes None or a numpy Generator
    Param("seed", "int", 0, "seed of the randomized sketch", low=0, kernel_checks=True),
)
