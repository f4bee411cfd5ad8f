"""Visualisation-preprocessing kernels for job files: aggregate2d, shade, pyramid, downsampling, pca."""

from __future__ import annotations

import numpy as np

from hpcjobs.kernels.viz.params import (
    AGGREGATE2D,
    LTTB,
    M4,
    MINMAX,
    MINMAX_LTTB,
    PCA,
    PYRAMID,
    SHADE,
    check_raster_size,
)
from hpcjobs.registry import KernelSpec, Params, Port


def _check_raster_size(params: dict, func: str) -> dict:
    check_raster_size(params["shape"], params["agg"], params["n_categories"], func)
    return params


# ---------------------------------------------------------------------------------------------
# adapters


def run_aggregate2d(inputs: dict, params: dict) -> tuple[dict, dict]:
    from hpcjobs.kernels import aggregate2d
    from hpcjobs.kernels.viz.aggregate import binning

    agg = params["agg"]
    x, y, values = inputs["x"], inputs["y"], inputs.get("values")
    # the extent found from the data is recorded too: pixels map back to coordinates
    extent, layers = binning(x, y, values, range=params["range"], agg=agg,
                             n_categories=params["n_categories"])
    rng = [list(r) for r in extent]
    out = aggregate2d(x, y, shape=tuple(params["shape"]), range=rng, agg=agg, values=values,
                      n_categories=layers if agg == "count_cat" else None)
    return _raster_outputs(out, agg, rng)


def plan_aggregate2d(inputs: dict, params: dict, extents: dict):
    """aggregate2d in one pass: over a fixed range, or over the points' extents (the data's
    finite min and max, as without them)."""
    from hpcjobs.kernels.stats.extremes import MAX, MIN
    from hpcjobs.kernels.viz.aggregate import _auto_range, aggregate2d_reduction
    from hpcjobs.passes import Plan

    agg, rng, ncat = params["agg"], params["range"], params["n_categories"]
    values = inputs.get("values") if agg != "count" else None
    if rng is None:
        ex, ey = extents.get("x"), extents.get("y")
        if ex is None or ey is None:
            return None
        rng = [list(_auto_range(e[MIN, 0], e[MAX, 0], name)) for e, name in ((ex, "x"), (ey, "y"))]
    if agg == "count_cat" and ncat is None:
        ev = extents.get("values")
        if ev is None:
            return None
        ncat = max(int(ev[MAX, 0]) + 1, 1) if ev[0, 0] else 1
    r = aggregate2d_reduction(inputs["x"], inputs["y"], shape=tuple(params["shape"]),
                              range=rng, agg=agg, values=values, n_categories=ncat or 1)
    return Plan([r], lambda results: _raster_outputs(results[0], agg, rng))


def _raster_outputs(out, agg: str, rng: list) -> tuple[dict, dict]:
    attrs = {"hpcjobs_kind": "raster", "agg": agg, "range": rng}
    return {"layers" if agg == "count_cat" else "raster": out}, attrs


def run_shade(inputs: dict, params: dict) -> tuple[dict, dict]:
    from hpcjobs.kernels import shade

    img = shade(inputs["raster"], how=params["how"], cmap=params["cmap"])
    return {"rgba": img}, {"hpcjobs_kind": "image", "how": params["how"]}


def multiscales_attrs(name: str, n_levels: int, method: str) -> dict:
    """OME-NGFF multiscales metadata for ``level0 .. level{n-1}`` (2x per level, y/x axes).

    Written both as OME-NGFF 0.5 (``ome`` key, for Zarr v3 readers) and 0.4 style
    (top-level ``multiscales``).
    """
    datasets = []
    for k in range(n_levels):
        f = float(2**k)
        datasets.append({"path": f"level{k}", "coordinateTransformations": [
            {"type": "scale", "scale": [f, f]},
            {"type": "translation", "translation": [(f - 1) / 2, (f - 1) / 2]},
        ]})
    ms = {"name": name, "axes": [{"name": "y", "type": "space"}, {"name": "x", "type": "space"}],
          "datasets": datasets, "type": method,
          "metadata": {"method": "hpcjobs.kernels.pyramid", "reduction": method}}
    return {"ome": {"version": "0.5", "multiscales": [ms]},
            "multiscales": [{**ms, "version": "0.4"}], "hpcjobs_kind": "pyramid"}


def run_pyramid(inputs: dict, params: dict) -> tuple[dict, dict]:
    from hpcjobs.kernels import pyramid

    raster = inputs["raster"]
    # never reduce below one pixel
    most = int(np.floor(np.log2(max(min(raster.shape), 1)))) + 1
    levels = min(params["levels"], most)
    out = pyramid(raster, levels, method=params["method"])
    result = {f"level{k}": lvl for k, lvl in enumerate(out)}
    return result, multiscales_attrs("pyramid", levels, params["method"])


def _run_downsample(name: str, inputs: dict, params: dict) -> tuple[dict, dict]:
    import dask

    from hpcjobs import kernels

    y = inputs["y"]
    x = inputs.get("x")
    n_out = params["n_out"]
    if name == "lttb":
        idx = kernels.lttb(x, y, n_out)
    elif name == "minmax":
        idx = kernels.minmax(y, n_out, x=x)
    elif name == "m4":
        idx = kernels.m4(x, y, n_out)
    else:
        idx = kernels.minmax_lttb(x, y, n_out, minmax_ratio=params["minmax_ratio"])
    ys, xs = dask.compute(y[idx], None if x is None else x[idx])
    return {"index": idx, "x": idx.astype(np.float64) if xs is None else np.asarray(xs),
            "y": np.asarray(ys)}, {"hpcjobs_kind": "series", "method": name}


def run_lttb(inputs: dict, params: dict) -> tuple[dict, dict]:
    return _run_downsample("lttb", inputs, params)


def run_minmax(inputs: dict, params: dict) -> tuple[dict, dict]:
    return _run_downsample("minmax", inputs, params)


def run_m4(inputs: dict, params: dict) -> tuple[dict, dict]:
    return _run_downsample("m4", inputs, params)


def run_minmax_lttb(inputs: dict, params: dict) -> tuple[dict, dict]:
    return _run_downsample("minmax_lttb", inputs, params)


def run_pca(inputs: dict, params: dict) -> tuple[dict, dict]:
    from hpcjobs.kernels import pca

    r = pca(inputs["X"], params["n_components"], method=params["method"], seed=params["seed"])
    return {"embedding": r.embedding, "components": r.components,
            "explained_variance": r.explained_variance,
            "explained_variance_ratio": r.explained_variance_ratio,
            "mean": r.mean}, {"hpcjobs_kind": "embedding", "method": r.method}


# ---------------------------------------------------------------------------------------------
# specs

_SERIES_INPUTS = (
    Port("y", ("sample",), "the series (1-D)"),
    Port("x", ("sample",), "sorted x of the series (default: 0 .. n-1)", kinds="fiuM",
         optional=True),
)
_SERIES_OUTPUTS = (
    Port("index", ("kept",), "indices of the points kept", dtype="int64"),
    Port("x", ("kept",), "x of the points kept (the index when there is no x)"),
    Port("y", ("kept",), "y of the points kept"),
)


def _series_spec(name: str, summary: str, params: Params) -> KernelSpec:
    return KernelSpec(
        name=name, family="viz", summary=summary, run=f"hpcjobs.registry.viz:run_{name}",
        inputs=_SERIES_INPUTS, outputs=_SERIES_OUTPUTS, params=params.params,
    )


KERNELS = [
    KernelSpec(
        name="aggregate2d",
        example={"shape": [64, 64]},
        family="viz",
        summary="Bin points onto a raster (count, sum, mean, min, max, std, count_cat), "
                "exactly like numpy.histogram2d.",
        run="hpcjobs.registry.viz:run_aggregate2d",
        plan="hpcjobs.registry.viz:plan_aggregate2d",
        extents=("x", "y", "values"),
        inputs=(
            Port("x", ("point",), "x of each point"),
            Port("y", ("point",), "y of each point"),
            Port("values", ("point",), "value (or integer category) of each point; needed "
                 "by every agg but count", optional=True),
        ),
        outputs=(
            Port("raster", ("y", "x"), "the aggregate (rows follow y); int64 for count"),
            Port("layers", ("category", "y", "x"), "count_cat: counts per category",
                 dtype="int64"),
        ),
        params=AGGREGATE2D.params,
        check=_check_raster_size,
    ),
    KernelSpec(
        name="shade",
        warm_rows=512,
        family="viz",
        summary="Shade a raster into an RGBA image (linear, log or histogram equalisation).",
        run="hpcjobs.registry.viz:run_shade",
        inputs=(Port("raster", ("y", "x"), "a 2-D aggregate (0 or NaN = empty)"),),
        outputs=(Port("rgba", ("y", "x", "channel"), "RGBA image", dtype="uint8"),),
        params=SHADE.params,
    ),
    KernelSpec(
        name="pyramid",
        warm_rows=512,
        family="viz",
        summary="Multiscale levels by 2x reduction, with OME-NGFF multiscales metadata.",
        run="hpcjobs.registry.viz:run_pyramid",
        inputs=(Port("raster", ("y", "x"), "the base raster (level 0)"),),
        outputs=(Port("level*", ("y", "x"), "level k, ceil(shape / 2**k)",
                     keep_dims=True),),
        params=PYRAMID.params,
    ),
    _series_spec("lttb", "Largest-Triangle-Three-Buckets downsampling of a series.", LTTB),
    _series_spec("minmax", "Min and max per bin of a series (n_out even).", MINMAX),
    _series_spec("m4", "First, min, max and last per bin of a series (n_out multiple of 4).",
                 M4),
    _series_spec("minmax_lttb", "MinMax preselection then LTTB (fast LTTB for long series).",
                 MINMAX_LTTB),
    KernelSpec(
        name="pca",
        family="viz",
        summary="Principal-component projection (exact covariance, or randomized SVD for "
                "wide data).",
        run="hpcjobs.registry.viz:run_pca",
        inputs=(Port("X", ("row", "feature"), "2-D numeric array, finite"),),
        outputs=(
            Port("embedding", ("row", "component"), "rows projected on the components"),
            Port("components", ("component", "feature"), "principal axes"),
            Port("explained_variance", ("component",), "variance along each axis"),
            Port("explained_variance_ratio", ("component",), "fraction of the total variance"),
            Port("mean", ("feature",), "column means"),
        ),
        params=PCA.select("n_components", "method", "seed"),
    ),
]
