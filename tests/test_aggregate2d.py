"""aggregate2d: exact numpy.histogram2d binning, scipy binned statistics, chunking, bad input."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
from scipy.stats import binned_statistic_2d

from hpcjobs.kernels import aggregate2d

SHAPE = (23, 31)
RANGE = ((-2.5, 3.0), (-3.0, 2.0))


def _points(n=20000, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(0.2, 1.2, n)
    y = rng.normal(-0.3, 1.0, n)
    v = rng.normal(5.0, 2.0, n)
    # points exactly on edges (first, interior, last), NaN and out of range
    edges_x = np.linspace(*RANGE[0], SHAPE[1] + 1)
    edges_y = np.linspace(*RANGE[1], SHAPE[0] + 1)
    x[:40] = edges_x[rng.integers(0, SHAPE[1] + 1, 40)]
    y[40:80] = edges_y[rng.integers(0, SHAPE[0] + 1, 40)]
    x[80:85] = RANGE[0][1]
    y[80:85] = RANGE[1][1]
    x[100:110] = np.nan
    y[110:115] = np.nan
    x[120] = np.nextafter(RANGE[0][1], np.inf)
    return x, y, v


def _ref_hist(x, y, weights=None):
    h, _, _ = np.histogram2d(y, x, bins=SHAPE, range=(RANGE[1], RANGE[0]), weights=weights)
    return h


def test_count_equals_histogram2d_exactly():
    x, y, _ = _points()
    out = aggregate2d(x, y, shape=SHAPE, range=RANGE)
    assert out.dtype == np.int64 and out.shape == SHAPE
    np.testing.assert_array_equal(out, _ref_hist(x, y))
    assert out[-1, -1] >= 5  # the closed last edge counts


def test_sum_equals_histogram2d_exactly():
    x, y, _ = _points()
    v = np.random.default_rng(3).integers(-50, 50, x.size) / 8.0  # exact in any order
    out = aggregate2d(x, y, shape=SHAPE, range=RANGE, agg="sum", values=v)
    np.testing.assert_array_equal(out, _ref_hist(x, y, v))


@pytest.mark.parametrize("agg", ["mean", "min", "max", "std", "sum"])
def test_statistics_equal_binned_statistic_2d(agg):
    x, y, v = _points()
    # scipy rounds points within ~1e-13 of the last edge into the range; numpy (our oracle
    # for binning) does not: leave out the point just past the edge
    x[120] = 0.0
    out = aggregate2d(x, y, shape=SHAPE, range=RANGE, agg=agg, values=v)
    ok = np.isfinite(x) & np.isfinite(y)
    ref = binned_statistic_2d(y[ok], x[ok], v[ok], statistic=agg, bins=SHAPE,
                              range=(RANGE[1], RANGE[0])).statistic
    if agg == "sum":
        ref = np.where(np.isnan(ref), 0.0, ref)
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12, equal_nan=True)


def test_float32_and_int_coordinates_bin_like_numpy():
    x, y, _ = _points()
    x32, y32 = x.astype(np.float32), y.astype(np.float32)
    np.testing.assert_array_equal(aggregate2d(x32, y32, shape=SHAPE, range=RANGE),
                                  _ref_hist(x32, y32))
    xi = np.random.default_rng(1).integers(-3, 4, 5000)
    yi = np.random.default_rng(2).integers(-3, 3, 5000)
    np.testing.assert_array_equal(aggregate2d(xi, yi, shape=SHAPE, range=RANGE),
                                  _ref_hist(xi, yi))


@pytest.mark.parametrize("agg", ["count", "sum", "mean", "min", "std", "count_cat"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_columns_of_a_row_major_chunk_are_read_in_place(agg, dtype):
    # X[:, 0] and X[:, 2] are strided views: binned a block at a time, not copied whole
    x, y, v = _points(70_000)  # more than one block of points
    X = np.stack([x, v, y], axis=1).astype(dtype)
    values = np.abs(v).astype(np.int64) % 3 if agg == "count_cat" else X[:, 1]
    kw = dict(shape=SHAPE, range=RANGE, agg=agg, values=values)
    strided = aggregate2d(X[:, 0], X[:, 2], **kw)
    np.testing.assert_array_equal(strided, aggregate2d(X[:, 0].copy(), X[:, 2].copy(), **kw))
    np.testing.assert_array_equal(aggregate2d(X[:, 0].copy(), X[:, 2], **kw), strided)
    if agg == "count":
        np.testing.assert_array_equal(strided, _ref_hist(X[:, 0], X[:, 2]))


def test_default_range_is_the_data_extent_like_numpy():
    rng = np.random.default_rng(4)
    x, y = rng.random(3000) * 7 - 2, rng.random(3000) * 3
    out = aggregate2d(x, y, shape=(9, 11))
    ref, _, _ = np.histogram2d(y, x, bins=(9, 11))
    np.testing.assert_array_equal(out, ref)


def test_nan_values_are_skipped():
    x, y, v = _points(2000)
    v[::7] = np.nan
    ok = ~np.isnan(v)
    out = aggregate2d(x, y, shape=SHAPE, range=RANGE, agg="mean", values=v)
    ref = aggregate2d(x[ok], y[ok], shape=SHAPE, range=RANGE, agg="mean", values=v[ok])
    np.testing.assert_array_equal(out, ref)


def test_count_cat_one_layer_per_category():
    x, y, _ = _points()
    labels = np.random.default_rng(5).integers(-1, 4, x.size)  # -1 (noise) is dropped
    out = aggregate2d(x, y, shape=SHAPE, range=RANGE, agg="count_cat", values=labels)
    assert out.shape == (4, *SHAPE)
    for k in range(4):
        np.testing.assert_array_equal(out[k], _ref_hist(x[labels == k], y[labels == k]))
    wide = aggregate2d(x, y, shape=SHAPE, range=RANGE, agg="count_cat", values=labels,
                       n_categories=6)
    assert wide.shape == (6, *SHAPE) and wide[4:].sum() == 0


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["int8", "int32", "int64", "uint16", "uint64"])
def test_count_cat_layers_from_the_largest_label_found_on_threads(dtype, monkeypatch):
    # the layer count comes from the largest label, found over the threads' point ranges:
    # the largest label in any range (the last point's included), only noise, any int dtype
    import hpcjobs.kernels.viz.aggregate as mod

    monkeypatch.setattr(mod, "_MIN_POINTS_PER_THREAD", 100)
    x, y, _ = _points(1001)
    for top_at in (0, 500, 1000):
        labels = np.zeros(x.size, dtype=dtype)
        labels[top_at] = 5
        assert mod._max_label(labels) == 5
        out = aggregate2d(x, y, shape=SHAPE, range=RANGE, agg="count_cat", values=labels)
        assert out.shape == (6, *SHAPE) and out[5].sum() == 1
    if dtype.startswith("int"):
        noise = np.full(x.size, -1, dtype=dtype)
        assert mod._max_label(noise) == -1
        out = aggregate2d(x, y, shape=SHAPE, range=RANGE, agg="count_cat", values=noise)
        assert out.shape == (1, *SHAPE) and out.sum() == 0


@pytest.mark.parametrize("agg", ["count", "sum", "mean", "min", "max", "std", "count_cat"])
@pytest.mark.parametrize("merge_bytes", [None, 1])  # 1: merges of two chunks, a deep tree
def test_same_result_for_1_2_4_7_chunks(agg, merge_bytes, monkeypatch):
    import hpcjobs.kernels.viz.aggregate as mod

    if merge_bytes:
        monkeypatch.setattr(mod, "_MERGE_BYTES", merge_bytes)
    x, y, v = _points(9000, seed=7)
    vals = np.random.default_rng(8).integers(0, 3, x.size) if agg == "count_cat" else v
    ref = aggregate2d(x, y, shape=SHAPE, range=RANGE, agg=agg, values=vals)
    for k in (1, 2, 4, 7):
        c = -(-x.size // k)
        got = aggregate2d(da.from_array(x, chunks=c), da.from_array(y, chunks=c), shape=SHAPE,
                          range=RANGE, agg=agg, values=da.from_array(vals, chunks=c))
        assert isinstance(got, da.Array)
        got = got.compute()
        if agg in ("count", "count_cat", "min", "max"):
            np.testing.assert_array_equal(got, ref)
        else:
            np.testing.assert_allclose(got, ref, rtol=1e-12, equal_nan=True)


def test_dask_default_range_and_local_cluster(dask_client):
    x, y, v = _points(6000, seed=9)
    ok = np.isfinite(x) & np.isfinite(y)
    ref = aggregate2d(x[ok], y[ok], shape=(10, 12), agg="max", values=v[ok])
    got = aggregate2d(da.from_array(x, chunks=1000), da.from_array(y, chunks=1500),
                      shape=(10, 12), agg="max", values=da.from_array(v, chunks=700))
    np.testing.assert_array_equal(dask_client.compute(got).result(), ref)


def test_big_raster_few_points_uses_one_buffer():
    x = np.array([0.0, 0.5, 1.0])
    out = aggregate2d(x, x, shape=(2000, 2000), range=((0, 1), (0, 1)))
    assert out.sum() == 3 and out[-1, -1] == 1 and out[1000, 1000] == 1


@pytest.mark.parametrize("kwargs, exc, words", [
    (dict(x=np.zeros(3), y=np.zeros(4)), ValueError, "same length as x"),
    (dict(x=np.zeros(0), y=np.zeros(0)), ValueError, "at least 1 row"),
    (dict(shape=(0, 4)), ValueError, "'shape' parameter of aggregate2d"),
    (dict(shape=(3,)), ValueError, "'shape'"),
    (dict(range=((1, 1), (0, 1))), ValueError, "min < max"),
    (dict(range=((0, np.inf), (0, 1))), ValueError, "'range'"),
    (dict(agg="median"), ValueError, "'agg'"),
    (dict(agg="mean"), TypeError, "'values'"),
    (dict(agg="sum", values=np.zeros(2)), ValueError, "same length as x"),
    (dict(agg="count_cat", values=np.zeros(3)), TypeError, "integer category labels"),
    (dict(x=np.zeros((3, 2)), y=np.zeros(3)), ValueError, "1-D"),
])
def test_bad_input(kwargs, exc, words):
    args = dict(x=np.zeros(3), y=np.zeros(3), shape=(4, 4), range=((0, 1), (0, 1)))
    args.update(kwargs)
    x, y = args.pop("x"), args.pop("y")
    with pytest.raises(exc, match=words):
        aggregate2d(x, y, **args)


def test_all_nan_without_range_says_how_to_fix():
    with pytest.raises(ValueError, match="Pass range="):
        aggregate2d(np.full(3, np.nan), np.zeros(3), shape=(2, 2))


def test_points_within_rounding_of_edges_bin_like_numpy():
    # many bins and awkward ranges: the arithmetic index and numpy's edges disagree only
    # within a few ulps of an edge; put points exactly there, and one ulp either side
    rng = np.random.default_rng(11)
    for shape, rng_ in [((997, 1009), ((-0.3, 0.7), (1e3, 1e3 + 1 / 3))),
                        ((64, 3), ((-1e6, 1e6 / 7), (0.1, 0.2)))]:
        ex = np.linspace(*rng_[0], shape[1] + 1)
        ey = np.linspace(*rng_[1], shape[0] + 1)
        x = rng.choice(ex, 20000)
        y = rng.choice(ey, 20000)
        x = np.concatenate([x, np.nextafter(x, np.inf), np.nextafter(x, -np.inf)])
        y = np.concatenate([y, np.nextafter(y, -np.inf), np.nextafter(y, np.inf)])
        out = aggregate2d(x, y, shape=shape, range=rng_)
        ref, _, _ = np.histogram2d(y, x, bins=shape, range=(rng_[1], rng_[0]))
        np.testing.assert_array_equal(out, ref)


@pytest.mark.parametrize("agg", ["count", "sum", "mean", "min", "max", "std", "count_cat"])
def test_private_thread_rasters_merge_to_the_same_result(agg, monkeypatch):
    import hpcjobs.kernels.viz.aggregate as mod

    x, y, v = _points(30000, seed=5)
    v[200:260] = np.nan
    values = {"count": None, "count_cat": np.arange(x.size) % 3}.get(agg, v)
    one = aggregate2d(x, y, shape=SHAPE, range=RANGE, agg=agg, values=values)
    monkeypatch.setattr(mod, "_MIN_POINTS_PER_THREAD", 1000)  # threads on small inputs
    many = aggregate2d(x, y, shape=SHAPE, range=RANGE, agg=agg, values=values)
    if agg in ("count", "count_cat", "min", "max"):
        np.testing.assert_array_equal(many, one)
    else:
        np.testing.assert_allclose(many, one, rtol=1e-12, atol=1e-12, equal_nan=True)
    if agg == "count":
        np.testing.assert_array_equal(many, _ref_hist(x, y))


def test_reused_thread_rasters_and_parallel_merge_give_fresh_results(monkeypatch):
    # threads' rasters are lent out again by later calls, and merged on all threads: every
    # call still starts from clean rasters and returns arrays of its own
    import hpcjobs.kernels.viz.aggregate as mod

    x, y, v = _points(30000, seed=7)
    v[::97] = np.nan
    aggs = ["max", "mean", "sum", "count", "min", "std", "mean", "max"]
    single = {a: aggregate2d(x, y, shape=SHAPE, range=RANGE, agg=a, values=v) for a in aggs}
    monkeypatch.setattr(mod, "_MIN_POINTS_PER_THREAD", 1000)
    monkeypatch.setattr(mod, "_MIN_CELLS_PARALLEL_MERGE", 1)
    monkeypatch.setattr(mod, "_SCRATCH", mod._Scratch())
    results = []
    for a in aggs + aggs:
        out = aggregate2d(x, y, shape=SHAPE, range=RANGE, agg=a, values=v)
        np.testing.assert_allclose(out, single[a], rtol=1e-12, atol=1e-12, equal_nan=True)
        results.append(out)
    assert mod._SCRATCH._kept > 0  # the rasters were kept for reuse...
    for out, a in zip(results, aggs + aggs, strict=True):  # ...and no result is one of them
        np.testing.assert_allclose(out, single[a], rtol=1e-12, atol=1e-12, equal_nan=True)


def test_carry_rasters_are_lent_again_only_when_no_carry_touched_them(monkeypatch):
    # the threads' carry rasters start at zero: one that no carry touched goes back to the
    # scratch as a zeroed raster; one with carries never serves a later call
    import hpcjobs.kernels.viz.aggregate as mod

    monkeypatch.setattr(mod, "_MIN_POINTS_PER_THREAD", 1000)
    rng = np.random.default_rng(3)
    sparse = rng.random((2, 2400)) * 3  # about 130 points a cell a thread: no carry
    dense = np.full((2, 2400), 0.5)  # 1200 points a thread in one cell: 4 carries each
    zeroed = lambda: [k for k, bufs in mod._SCRATCH._free.items() if k[2] and bufs]  # noqa: E731
    for agg in ("count", "mean", "count_cat"):
        vals = None if agg == "count" else np.arange(2400) % 2
        monkeypatch.setattr(mod, "_SCRATCH", mod._Scratch())
        for carries, (x, y) in ((False, sparse), (True, dense), (False, sparse), (True, dense),
                                (False, sparse)):
            out = aggregate2d(x, y, shape=(3, 3), range=((0, 3), (0, 3)), agg=agg, values=vals)
            if agg == "count":
                expected = np.histogram2d(y, x, bins=(3, 3), range=((0, 3), (0, 3)))[0]
            elif agg == "mean":
                expected = binned_statistic_2d(y, x, vals, "mean", bins=(3, 3),
                                               range=((0, 3), (0, 3))).statistic
            else:
                expected = np.stack([np.histogram2d(y[vals == c], x[vals == c], bins=(3, 3),
                                                    range=((0, 3), (0, 3)))[0] for c in (0, 1)])
            np.testing.assert_allclose(out, expected, rtol=1e-12, equal_nan=True)
            assert bool(zeroed()) != carries


@pytest.mark.parametrize("threads_from", [None, 1000])
def test_counts_past_each_byte_carry(threads_from, monkeypatch):
    # counts are kept a byte a cell plus carries of 256: cells with 255, 256, 257, 65536 + 3
    # points, in one thread and split over threads, count exactly
    import hpcjobs.kernels.viz.aggregate as mod

    if threads_from:
        monkeypatch.setattr(mod, "_MIN_POINTS_PER_THREAD", threads_from)
    per_cell = {(0, 0): 255, (1, 0): 256, (0, 1): 257, (2, 2): 65536 + 3}
    xs, ys = [], []
    for (r, c), k in per_cell.items():
        xs.append(np.full(k, c + 0.5))
        ys.append(np.full(k, r + 0.5))
    order = np.random.default_rng(0).permutation(sum(per_cell.values()))
    x, y = np.concatenate(xs)[order], np.concatenate(ys)[order]
    out = aggregate2d(x, y, shape=(3, 3), range=((0, 3), (0, 3)))
    expected = np.zeros((3, 3), dtype=np.int64)
    for (r, c), k in per_cell.items():
        expected[r, c] = k
    np.testing.assert_array_equal(out, expected)
    assert out.dtype == np.int64
    cats = (np.arange(x.size) % 2)
    layers = aggregate2d(x, y, shape=(3, 3), range=((0, 3), (0, 3)), agg="count_cat",
                         values=cats)
    np.testing.assert_array_equal(layers.sum(axis=0), expected)
    np.testing.assert_array_equal(layers[1], aggregate2d(x[cats == 1], y[cats == 1],
                                                         shape=(3, 3), range=((0, 3), (0, 3))))
    v = np.random.default_rng(1).random(x.size)
    means = aggregate2d(x, y, shape=(3, 3), range=((0, 3), (0, 3)), agg="mean", values=v)
    for (r, c), k in per_cell.items():
        sel = (y == r + 0.5) & (x == c + 0.5)
        assert sel.sum() == k
        np.testing.assert_allclose(means[r, c], v[sel].mean(), rtol=1e-12)
    assert np.isnan(means[2, 0])


@pytest.mark.parametrize("agg", ["count", "count_cat"])
def test_dask_chunks_with_and_without_byte_carries_merge_exactly(agg):
    # chunks whose counts fit a byte are summed through tiles, the others added one by one:
    # a chunk of 300 points in one cell (a carry) among chunks without any
    x, y, _ = _points(6000, seed=3)
    x[1000:1300], y[1000:1300] = 0.1, 0.1
    cats = np.arange(x.size) % 2
    values = cats if agg == "count_cat" else None
    ref = aggregate2d(x, y, shape=SHAPE, range=RANGE, agg=agg, values=values)
    for chunks in (1000, 3000):  # the carrying chunk among 5 byte chunks; among 1
        dv = None if values is None else da.from_array(values, chunks=chunks)
        got = aggregate2d(da.from_array(x, chunks=chunks), da.from_array(y, chunks=chunks),
                          shape=SHAPE, range=RANGE, agg=agg, values=dv).compute()
        np.testing.assert_array_equal(got, ref)
        assert got.dtype == np.int64
    if agg == "count":
        np.testing.assert_array_equal(ref, _ref_hist(x, y))
