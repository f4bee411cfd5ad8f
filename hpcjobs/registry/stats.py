"""Summary-statistics kernels for job files."""

from __future__ import annotations

from hpcjobs.kernels.stats.params import DESCRIBE
from hpcjobs.registry import KernelSpec, Port


def run_describe(inputs: dict, params: dict) -> tuple[dict, dict]:
    from hpcjobs.kernels import describe

    return _describe_outputs(describe(inputs["X"], bins=params["bins"], range=params["range"])), {}


def plan_describe(inputs: dict, params: dict, extents: dict):
    """describe in one pass: over a fixed range, or over the columns' extents."""
    from hpcjobs.kernels.stats.describe import describe_reduction
    from hpcjobs.kernels.stats.extremes import MAX, MIN
    from hpcjobs.passes import Plan

    known = extents.get("X")
    if params["range"] is None and known is None:
        return None
    extremes = None if params["range"] is not None else (known[MIN], known[MAX])
    r = describe_reduction(inputs["X"], bins=params["bins"], range=params["range"],
                           extremes=extremes)
    return Plan([r], lambda results: (_describe_outputs(results[0]), {}))


def _describe_outputs(r) -> dict:
    return {"count": r.count, "mean": r.mean, "std": r.std, "min": r.min, "max": r.max,
            "hist": r.hist, "bin_edges": r.bin_edges}


KERNELS = [
    KernelSpec(
        name="describe",
        family="stats",
        summary="Per-column count, mean, std, min, max and histogram (NaN skipped).",
        run="hpcjobs.registry.stats:run_describe",
        plan="hpcjobs.registry.stats:plan_describe",
        extents=("X",),
        inputs=(Port("X", ("row", "column"), "2-D numeric array; columns are summarised"),),
        outputs=(
            Port("count", ("column",), "non-NaN values per column", dtype="int64"),
            Port("mean", ("column",), "mean per column"),
            Port("std", ("column",), "standard deviation per column (ddof=0)"),
            Port("min", ("column",), "minimum per column"),
            Port("max", ("column",), "maximum per column"),
            Port("hist", ("column", "bin"), "histogram counts per column", dtype="int64"),
            Port("bin_edges", ("column", "edge"), "histogram bin edges per column"),
        ),
        params=DESCRIBE.params,
    ),
]


def run_standardize(inputs: dict, params: dict) -> tuple[dict, dict]:
    from hpcjobs.kernels.stats.standardize import standardize

    return {"Z": standardize(inputs["X"])}, {}


KERNELS.append(
    KernelSpec(
        name="standardize",
        family="stats",
        summary="Z-scores per column, (X - mean) / std, chunk by chunk (constant columns -> 0).",
        run="hpcjobs.registry.stats:run_standardize",
        inputs=(Port("X", ("row", "column"), "2-D numeric array"),),
        outputs=(Port("Z", ("row", "column"), "standardized values, same shape and chunks",
                      shape_of="X"),),
    )
)
