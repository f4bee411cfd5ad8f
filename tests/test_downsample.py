"""lttb, minmax, m4, minmax_lttb: identical indices to tsdownsample, in memory and over Dask."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
from tsdownsample import (
    LTTBDownsampler,
    M4Downsampler,
    MinMaxDownsampler,
    MinMaxLTTBDownsampler,
)

from hpcjobs.kernels import lttb, m4, minmax, minmax_lttb


def _series(n, dtype, seed):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(n).cumsum() * 10).astype(dtype)


def _ours(name, x, y, n_out):
    if name == "lttb":
        return lttb(x, y, n_out)
    if name == "minmax":
        return minmax(y, n_out, x=x)
    if name == "m4":
        return m4(x, y, n_out)
    return minmax_lttb(x, y, n_out)


PEERS = {"lttb": LTTBDownsampler, "minmax": MinMaxDownsampler, "m4": M4Downsampler,
         "minmax_lttb": MinMaxLTTBDownsampler}


def _peer(name, x, y, n_out):
    args = (y,) if x is None else (x, y)
    return PEERS[name]().downsample(*args, n_out=n_out)


@pytest.mark.parametrize("name", list(PEERS))
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int32])
@pytest.mark.parametrize("with_x", [False, True])
def test_identical_to_tsdownsample(name, dtype, with_x):
    rng = np.random.default_rng(0)
    for trial in range(6):
        n = int(rng.integers(500, 30000))
        y = _series(n, dtype, trial)
        x = np.sort(rng.random(n) * 1000.0) if with_x else None
        for n_out in (8, 100, 1000):
            if n_out > n:
                continue
            np.testing.assert_array_equal(_ours(name, x, y, n_out), _peer(name, x, y, n_out),
                                          err_msg=f"{name} n={n} n_out={n_out}")


@pytest.mark.parametrize("name", list(PEERS))
@pytest.mark.parametrize("with_x", [False, True])
@pytest.mark.parametrize("chunks", [1, 2, 4, 7])
def test_dask_gives_the_in_memory_indices(name, with_x, chunks):
    n = 12345
    y = _series(n, np.float64, 3)
    x = np.sort(np.random.default_rng(4).random(n) * 50.0) if with_x else None
    c = -(-n // chunks)
    yd = da.from_array(y, chunks=c)
    xd = None if x is None else da.from_array(x, chunks=c)
    for n_out in (12, 400):
        np.testing.assert_array_equal(_ours(name, xd, yd, n_out), _ours(name, x, y, n_out))


def test_minmax_and_m4_skip_nan_like_tsdownsample():
    y = _series(5000, np.float64, 5)
    y[::13] = np.nan
    y[1000:1400] = np.nan  # a bin of only NaN gives its first index
    for n_out in (16, 200):
        np.testing.assert_array_equal(minmax(y, n_out), _peer("minmax", None, y, n_out))
        np.testing.assert_array_equal(m4(None, y, n_out), _peer("m4", None, y, n_out))
        np.testing.assert_array_equal(minmax(da.from_array(y, chunks=777), n_out),
                                      minmax(y, n_out))


def test_datetime_x_and_n_out_equal_to_length():
    y = _series(3000, np.float64, 6)
    t = np.datetime64("2024-01-01") + np.sort(np.random.default_rng(1).integers(0, 10**9, 3000))
    np.testing.assert_array_equal(lttb(t, y, 300), lttb(t.view(np.int64), y, 300))
    np.testing.assert_array_equal(minmax(y, 3000), np.arange(3000))
    np.testing.assert_array_equal(lttb(None, y[:10], 10), np.arange(10))


def test_lttb_small_known_answer():
    np.testing.assert_array_equal(lttb(None, np.arange(10.0), 4), [0, 1, 5, 9])
    np.testing.assert_array_equal(lttb(np.arange(10), np.arange(10.0), 4), [0, 1, 5, 9])


@pytest.mark.parametrize("call, exc, words", [
    (lambda: lttb(None, np.arange(10.0), 2), ValueError, r"range \[3, inf\)"),
    (lambda: lttb(None, np.arange(10.0), 11), ValueError, "at most the series length"),
    (lambda: minmax(np.arange(10.0), 5), ValueError, "multiple of 2"),
    (lambda: m4(None, np.arange(10.0), 6), ValueError, "multiple of 4"),
    (lambda: lttb(np.arange(5), np.arange(6.0), 3), ValueError, "same length as y"),
    (lambda: lttb(None, np.zeros(0), 3), ValueError, "at least 1 row"),
    (lambda: lttb(np.array([0, 2, 1, 3.0]), np.arange(4.0), 3), ValueError, "sorted"),
    (lambda: minmax(np.arange(4.0), 2, x=np.array([0, 2, 1, 3.0])), ValueError, "sorted"),
    (lambda: lttb(None, np.array([1.0, np.nan, 2.0, 3.0]), 3), ValueError, "NaN"),
    (lambda: lttb(da.arange(10.0, chunks=4), da.from_array(
        np.array([0, 1, np.nan, 3, 4, 5, 6, 7, 8, 9.0]), chunks=4), 4), ValueError, "NaN"),
    (lambda: minmax(da.arange(10.0, chunks=4), 4,
                    x=da.from_array(np.array([0, 1, 2, 3, 4, 5, 6, 8, 7, 9.0]), chunks=4)),
     ValueError, "sorted"),
    (lambda: minmax_lttb(None, np.arange(100.0), 10, minmax_ratio=1), ValueError,
     "minmax_ratio"),
])
def test_bad_input(call, exc, words):
    with pytest.raises(exc, match=words):
        call()


@pytest.mark.parametrize("name", ["lttb", "minmax", "m4"])
def test_long_bins_ties_and_signed_zeros_like_tsdownsample(name):
    # bins of thousands of points (many SIMD blocks each), plateaus that tie across blocks,
    # -0.0 and +0.0 side by side (equal as floats: the first wins)
    rng = np.random.default_rng(11)
    n = 200_000
    y = np.round(rng.standard_normal(n).cumsum() / 40.0)
    y[5000:9000] = y.max() + 1.0  # one plateau spanning blocks and bins
    y[50_000:50_300] = 0.0
    y[50_000:50_300:3] = -0.0
    y[120_000:130_000] = np.where(np.arange(10_000) % 2, 0.0, -0.0)
    for n_out in (40, 100, 1000):
        np.testing.assert_array_equal(_ours(name, None, y, n_out), _peer(name, None, y, n_out))
    yi = y.astype(np.int32)
    np.testing.assert_array_equal(_ours(name, None, yi, 100), _peer(name, None, yi, 100))


def test_minmax_nan_inside_long_bins():
    rng = np.random.default_rng(12)
    y = rng.standard_normal(100_000).cumsum()
    y[rng.integers(0, y.size, 30)] = np.nan
    y[40_000:41_000] = np.nan
    for name in ("minmax", "m4"):
        np.testing.assert_array_equal(_ours(name, None, y, 100), _peer(name, None, y, 100))


@pytest.mark.parametrize("name", ["minmax", "m4"])
def test_bins_split_over_threads_like_tsdownsample(name, monkeypatch):
    # long series split their bins over Numba's threads: forced here on a short one, with
    # NaN, ties and signed zeros
    import hpcjobs.kernels.viz.downsample as mod

    rng = np.random.default_rng(13)
    y = np.round(rng.standard_normal(60_000).cumsum() / 30.0)
    y[rng.integers(0, y.size, 40)] = np.nan
    y[20_000:20_500] = 0.0
    y[20_000:20_500:2] = -0.0
    monkeypatch.setattr(mod, "_PAR_POINTS", 1000)
    for n_out in (8, 100, 1000):
        np.testing.assert_array_equal(_ours(name, None, y, n_out), _peer(name, None, y, n_out))
