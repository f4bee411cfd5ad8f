"""The example kernel of docs/adding-a-kernel.md, as it would be spread over the project's
files: ``column_mean``, the mean of each column with NaN skipped, as one reduction.
tests/test_example_kernel.py checks that the page quotes this file and that it works."""

from __future__ import annotations

from functools import partial

import numpy as np

from hpcjobs.kernels._jit import njit
from hpcjobs.kernels._params import Param, Params
from hpcjobs.kernels._reduction import Reduction
from hpcjobs.kernels._validation import check_array

# --- kernels/stats/params.py: the parameters, declared once ----------------------------------

COLUMN_MEAN = Params(
    "column_mean",
    Param("min_count", "int", 1, "values a column needs for a mean (else NaN)", low=1),
)

# --- kernels/stats/column_mean.py: the kernel --------------------------------------------------


@njit
def _count_sum(block):
    """Count and sum of the non-NaN values of each column: one pass over the rows."""
    out = np.zeros((2, block.shape[1]))
    for i in range(block.shape[0]):
        for j in range(block.shape[1]):
            v = block[i, j]
            if v == v:  # NaN compares false: skipped
                out[0, j] += 1.0
                out[1, j] += v
    return out


def _chunk(block: np.ndarray) -> np.ndarray:
    """chunk: one row block -> its bases, (2, columns) counts and sums."""
    return _count_sum(np.ascontiguousarray(block, dtype=np.float64))


def _combine(parts: list) -> np.ndarray:
    """combine: the bases of several blocks -> those of their rows together."""
    return np.sum(parts, axis=0)


def _finalize(bases: np.ndarray, min_count: int) -> np.ndarray:
    """finalise: the bases of all rows -> the result."""
    count, total = bases
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count >= min_count, total / count, np.nan)


def column_mean_reduction(X, *, min_count: int = 1) -> Reduction:
    """column_mean as one Reduction: for a pass shared with other steps."""
    X = check_array(X, "X", "column_mean", ndim=2, allow_nan=True, min_len=0)
    return Reduction("column_mean", (X,), _chunk, _combine,
                     partial(_finalize, min_count=min_count))


@COLUMN_MEAN
def column_mean(X, *, min_count: int = 1) -> np.ndarray:
    """The mean of each column of ``X`` (NumPy or Dask), NaN skipped; NaN for a column with
    fewer than ``min_count`` values."""
    return column_mean_reduction(X, min_count=min_count).compute()


# --- hpcjobs/registry/stats.py: the kernel in job files ---------------------------------------

from hpcjobs.registry import KernelSpec, Port  # noqa: E402 - (its own file in the project)


def run_column_mean(inputs: dict, params: dict) -> tuple[dict, dict]:
    return {"mean": column_mean(inputs["X"], **params)}, {}


def plan_column_mean(inputs: dict, params: dict, extents: dict):
    from hpcjobs.passes import Plan

    r = column_mean_reduction(inputs["X"], **params)
    return Plan([r], lambda results: ({"mean": results[0]}, {}))


SPEC = KernelSpec(
    name="column_mean",
    family="stats",
    summary="Mean of each column, NaN skipped.",
    run="tests.example_kernel:run_column_mean",
    plan="tests.example_kernel:plan_column_mean",
    inputs=(Port("X", ("row", "column"), "2-D numeric array"),),
    outputs=(Port("mean", ("column",), "mean of each column"),),
    params=COLUMN_MEAN.params,
)
