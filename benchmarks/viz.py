"""Visualisation preprocessing against the libraries people would otherwise use.

- ``aggregate2d-count``: 2-D point counts into 1000 x 1000 vs datashader ``Canvas.points``
  (``count()``), ``numpy.histogram2d`` and fast-histogram's ``histogram2d``; plus our own
  Dask path (threaded scheduler, chunks of 1e7 points) for the Dask-overhead target;
- ``aggregate2d-mean``: mean / min / max of a value per cell vs datashader ``mean``;
- ``aggregate2d-count_cat``: counts per category (8) vs datashader ``count_cat``, with the
  categories given (as datashader's Categorical gives them) and found from the labels;
- ``lttb``, ``minmax``, ``m4``: 1e7 points -> 1000 vs tsdownsample (LTTB serial, MinMax and
  M4 with ``parallel=True``);
- ``pyramid``: 8192^2 float32, 5 levels (base + 4) vs xarray ``coarsen(...).mean()`` from the
  base for each level;
- ``pca``: 1e6 x 20 -> 2 components (fit and embedding) vs scikit-learn ``PCA`` (full SVD
  solver) and Intel's oneDAL ``sklearnex.decomposition.PCA(svd_solver="covariance_eigh")``
  (TBB threads over all cores, in this process).
"""

from __future__ import annotations

import numpy as np

from hpcjobs.bench.spec import Benchmark, Impl

SHAPE = (1000, 1000)
RANGE = ((0.0, 1.0), (0.0, 1.0))


def _points(size, rng):
    n = size["n"]
    x = rng.random(n)
    y = rng.random(n)
    v = rng.random(n)
    cat = rng.integers(0, 8, n)
    return {"x": x, "y": y, "v": v, "cat": cat}


def _frame(d, size):
    import pandas as pd

    return pd.DataFrame({"x": d["x"], "y": d["y"], "v": d["v"],
                         "cat": pd.Categorical(d["cat"])})


def _canvas():
    import datashader as ds

    return ds.Canvas(plot_width=SHAPE[1], plot_height=SHAPE[0], x_range=RANGE[0],
                     y_range=RANGE[1])


def _agg(kind, **kwargs):
    def run(d):
        from hpcjobs.kernels import aggregate2d

        values = {"count": None, "count_cat": d["cat"]}.get(kind, d["v"])
        return aggregate2d(d["x"], d["y"], shape=SHAPE, range=RANGE, agg=kind, values=values,
                           **kwargs)

    return run


def _ds(kind):
    def run(df):
        import datashader as ds

        red = {"count": ds.count(), "mean": ds.mean("v"), "max": ds.max("v"),
               "count_cat": ds.count_cat("cat")}[kind]
        return _canvas().points(df, "x", "y", red)

    return run


def _dask_points(d, size):
    import dask.array as da

    c = 10**7
    return {k: da.from_array(v, chunks=c) for k, v in d.items()}


def _agg_dask(d):
    import dask

    from hpcjobs.kernels import aggregate2d

    with dask.config.set(scheduler="threads"):
        return aggregate2d(d["x"], d["y"], shape=SHAPE, range=RANGE).compute()


def _np_hist(d):
    return np.histogram2d(d["y"], d["x"], bins=SHAPE, range=(RANGE[1], RANGE[0]))[0]


def _fast_hist(d):
    from fast_histogram import histogram2d

    return histogram2d(d["y"], d["x"], bins=SHAPE, range=(RANGE[1], RANGE[0]))


POINT_SIZES = [{"n": 10**6}, {"n": 10**7}, {"n": 10**8}]
QUICK = [{"n": 20_000}]


def _series(size, rng):
    return rng.standard_normal(size["n"]).cumsum()


def _ts(name, parallel):
    def run(y):
        import tsdownsample as tsd

        cls = {"lttb": tsd.LTTBDownsampler, "minmax": tsd.MinMaxDownsampler,
               "m4": tsd.M4Downsampler}[name]
        return cls().downsample(y, n_out=1000, parallel=parallel)

    return run


def _ours_ts(name):
    def run(y):
        from hpcjobs import kernels

        if name == "lttb":
            return kernels.lttb(None, y, 1000)
        if name == "minmax":
            return kernels.minmax(y, 1000)
        return kernels.m4(None, y, 1000)

    return run


def _raster(size, rng):
    n = size["n"]
    return rng.random((n, n), dtype=np.float32)


def _pyr_ours(a):
    from hpcjobs.kernels import pyramid

    return pyramid(a, 5)


def _to_xarray(a, size):
    import xarray as xr

    return xr.DataArray(a, dims=("y", "x"))


def _pyr_xarray(xa):
    return [xa] + [xa.coarsen(y=2**k, x=2**k, boundary="trim").mean().values
                   for k in range(1, 5)]


def _pca_data(size, rng):
    n, d = size["n"], size["d"]
    return rng.standard_normal((n, d)) @ rng.standard_normal((d, d))


def _pca_ours(X):
    from hpcjobs.kernels import pca

    return pca(X, 2).embedding


def _pca_sk(X):
    from sklearn.decomposition import PCA

    return PCA(2, svd_solver="full").fit_transform(X)


def _pca_sklearnex(X):
    from sklearnex.decomposition import PCA

    return PCA(2, svd_solver="covariance_eigh").fit_transform(X)


BENCHMARKS = [
    Benchmark(
        name="aggregate2d-count", kernel="aggregate2d", sizes=POINT_SIZES, quick_sizes=QUICK,
        make_data=_points, items=lambda s: s["n"], unit="points",
        bytes=lambda s: 16 * s["n"],  # x and y read once
        impls=[
            Impl("hpcjobs", _agg("count")),
            Impl("hpcjobs-dask", _agg_dask, prepare=_dask_points,
                 note="threaded scheduler, 1e7-point chunks"),
            Impl("datashader", _ds("count"), peer=True, prepare=_frame,
                 requires=("datashader", "pandas")),
            Impl("fast-histogram", _fast_hist, peer=True, requires=("fast_histogram",)),
            Impl("numpy.histogram2d", _np_hist, peer=True, sizes=(0, 1)),
        ],
        description="points into a 1000 x 1000 count raster",
    ),
    Benchmark(
        name="aggregate2d-mean", kernel="aggregate2d", sizes=POINT_SIZES[:2], quick_sizes=QUICK,
        make_data=_points, items=lambda s: s["n"], unit="points",
        bytes=lambda s: 24 * s["n"],  # x, y and the values read once
        impls=[
            Impl("hpcjobs", _agg("mean")),
            Impl("hpcjobs-count", _agg("count"), note="for the mean/count time ratio"),
            Impl("hpcjobs-min", _agg("min")),
            Impl("hpcjobs-max", _agg("max")),
            Impl("datashader", _ds("mean"), peer=True, prepare=_frame,
                 requires=("datashader", "pandas")),
            Impl("datashader-max", _ds("max"), peer=True, prepare=_frame,
                 requires=("datashader", "pandas")),
        ],
    ),
    Benchmark(
        name="aggregate2d-count_cat", kernel="aggregate2d", sizes=POINT_SIZES[:2],
        quick_sizes=QUICK, make_data=_points, items=lambda s: s["n"], unit="points",
        bytes=lambda s: 24 * s["n"],  # x, y and the int64 labels read once
        impls=[
            Impl("hpcjobs", _agg("count_cat", n_categories=8),
                 note="n_categories=8: the categories known, as datashader's Categorical"),
            Impl("hpcjobs-scan", _agg("count_cat"), note="layers from the largest label"),
            Impl("hpcjobs-count", _agg("count"), note="for the count_cat/count time ratio"),
            Impl("datashader", _ds("count_cat"), peer=True, prepare=_frame,
                 requires=("datashader", "pandas")),
        ],
    ),
    *[
        Benchmark(
            name=name, kernel=name if name != "minmax" else "minmax",
            sizes=[{"n": 10**6}, {"n": 10**7}], quick_sizes=[{"n": 50_000}],
            make_data=_series, items=lambda s: s["n"], unit="points",
            bytes=lambda s: 8 * s["n"],  # the series read once
            impls=[
                Impl("hpcjobs", _ours_ts(name)),
                Impl(f"tsdownsample{'-parallel' if name != 'lttb' else ''}",
                     _ts(name, name != "lttb"), peer=True, requires=("tsdownsample",)),
            ],
            description="n points -> 1000",
        )
        for name in ("lttb", "minmax", "m4")
    ],
    Benchmark(
        name="pyramid", kernel="pyramid", sizes=[{"n": 2048}, {"n": 8192}],
        quick_sizes=[{"n": 256}], make_data=_raster, items=lambda s: s["n"] ** 2,
        unit="pixels", bytes=lambda s: 4 * s["n"] ** 2 * (1 + 1 / 3),  # base read, levels written
        impls=[
            Impl("hpcjobs", _pyr_ours),
            Impl("xarray-coarsen", _pyr_xarray, peer=True, prepare=_to_xarray,
                 requires=("xarray",)),
        ],
        description="float32 n x n raster, 5 levels (base + 4 reductions), mean",
    ),
    Benchmark(
        name="pca", kernel="pca", sizes=[{"n": 10**5, "d": 20}, {"n": 10**6, "d": 20}],
        quick_sizes=[{"n": 2000, "d": 10}], make_data=_pca_data,
        items=lambda s: s["n"] * s["d"], unit="values",
        # X read twice (covariance, then the projection), the embedding written
        bytes=lambda s: 8 * s["n"] * (2 * s["d"] + 2),
        impls=[
            Impl("hpcjobs", _pca_ours),
            Impl("sklearn", _pca_sk, peer=True, requires=("sklearn",)),
            Impl("sklearnex", _pca_sklearnex, peer=True, requires=("sklearnex",),
                 note="oneDAL PCA(svd_solver='covariance_eigh').fit_transform"),
        ],
    ),
]
