"""describe against NumPy: every chunking, NaN, edge cases, bad input, a real cluster."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

from hpcjobs.kernels import describe


def reference(X: np.ndarray, bins: int):
    """Plain NumPy: nan-aware statistics and numpy.histogram per column."""
    hists, edges = [], []
    for col in X.T:
        col = col[~np.isnan(col)]
        h, e = np.histogram(col, bins=bins) if col.size else np.histogram(col, bins, (0, 1))
        hists.append(h)
        edges.append(e)
    with np.errstate(invalid="ignore"), __import__("warnings").catch_warnings():
        __import__("warnings").simplefilter("ignore", RuntimeWarning)
        return dict(count=(~np.isnan(X)).sum(0), mean=np.nanmean(X, 0), std=np.nanstd(X, 0),
                    min=np.nanmin(X, 0), max=np.nanmax(X, 0), hist=np.array(hists),
                    bin_edges=np.array(edges))


def assert_matches(result, ref, rtol=1e-12):
    np.testing.assert_array_equal(result.count, ref["count"])
    for key in ("mean", "std", "min", "max", "bin_edges"):
        np.testing.assert_allclose(getattr(result, key), ref[key], rtol=rtol, atol=0,
                                   equal_nan=True, err_msg=key)
    np.testing.assert_array_equal(result.hist, ref["hist"])


@pytest.fixture
def X():
    rng = np.random.default_rng(7)
    X = rng.normal(1e4, 3.0, size=(10_007, 5))  # large offset: a naive sum-of-squares fails
    X[:, 3] = rng.integers(0, 4, size=X.shape[0])  # values on bin edges
    return X


@pytest.mark.parametrize("n_chunks", [1, 2, 4, 7])
def test_equals_numpy_for_every_chunking(X, n_chunks):
    ref = reference(X, 16)
    rows = -(-X.shape[0] // n_chunks)
    assert_matches(describe(da.from_array(X, chunks=(rows, 5)), bins=16), ref)
    assert_matches(describe(X, bins=16), ref)


def test_column_chunks_are_merged(X):
    assert_matches(describe(da.from_array(X, chunks=(3000, 2)), bins=8), reference(X, 8))


def test_nan_is_skipped_and_counted(X):
    X = X.copy()
    X[::3, 0] = np.nan
    X[:, 4] = np.nan  # an all-NaN column: NaN statistics, empty histogram
    ref = reference(X, 10)
    r = describe(da.from_array(X, chunks=(1000, 5)), bins=10)
    assert_matches(r, ref)
    assert r.count[4] == 0 and np.isnan(r.mean[4]) and r.hist[4].sum() == 0


@pytest.mark.parametrize("data", [
    np.full((50, 2), 3.5),                     # constant columns
    np.array([[1.0, -2.0]]),                   # one row
    np.array([[1e300, -1e300], [-1e300, 1e300]]),  # huge values
    np.arange(20, dtype=np.int32).reshape(10, 2),  # integers
])
def test_edge_inputs(data):
    assert_matches(describe(data, bins=4), reference(data.astype(np.float64), 4))


@pytest.mark.slow
def test_float32_input_accumulates_in_float64():
    X = np.random.default_rng(1).random((5000, 2)).astype(np.float32)
    r = describe(X, bins=5)
    np.testing.assert_allclose(r.mean, X.astype(np.float64).mean(0), rtol=1e-12)


def test_fixed_range_reads_once_and_drops_outside():
    X = np.array([[0.0], [0.5], [1.0], [2.0]])
    r = describe(da.from_array(X, chunks=2), bins=2, range=(0, 1))
    np.testing.assert_array_equal(r.hist[0], np.histogram(X[:, 0], 2, range=(0, 1))[0])


def test_empty_array():
    r = describe(np.empty((0, 3)))
    assert (r.count == 0).all() and np.isnan(r.mean).all()


@pytest.mark.parametrize("bad, exc, text", [
    (np.arange(5.0), ValueError, "2-D"),
    (np.array([[1.0, np.inf]]), ValueError, "inf"),
    (np.array([["a"]]), TypeError, "numeric"),
])
def test_bad_input(bad, exc, text):
    with pytest.raises(exc, match=text):
        describe(bad)


@pytest.mark.parametrize("row, value", [(77, np.inf), (2048 + 5, -np.inf)])
def test_inf_in_a_dask_chunk_is_found(row, value):
    X = np.ones((2100, 2))  # a sweep block of 2048 rows and a partial one
    X[row, 1] = value
    with pytest.raises(ValueError, match="inf"):
        describe(da.from_array(X, chunks=(2100, 1)))


def test_values_on_and_beside_every_edge():
    # each value within an ulp of a bin edge: the arithmetic bin is checked against the edges
    edges = np.linspace(-3.7, 11.2, 65)
    col = np.concatenate([edges, np.nextafter(edges, -np.inf), np.nextafter(edges, np.inf)])
    X = np.stack([col, -col[::-1] * 1e-3], axis=1)
    X = np.concatenate([X, [[-3.7, -11.2e-3]]])
    ref = reference(X, 64)
    assert_matches(describe(X, bins=64), ref)
    assert_matches(describe(da.from_array(X, chunks=(50, 2)), bins=64), ref)
    assert_matches(describe(X, bins=64, range=(-3.7, 11.2)),
                   {**ref, "hist": np.stack([np.histogram(c, 64, (-3.7, 11.2))[0]
                                             for c in X.T]),
                    "bin_edges": np.tile(edges, (2, 1))})


def test_bad_bins():
    with pytest.raises(ValueError, match=r"The 'bins' parameter of describe must be an int"):
        describe(np.ones((3, 1)), bins=0)


def test_same_on_a_cluster(X, dask_client):
    r = describe(da.from_array(X, chunks=(1500, 5)), bins=16)
    assert_matches(r, reference(X, 16))


def test_constant_huge_column_gets_one_bin():
    # numpy.histogram refuses this ("Too many bins for data range"); we widen the range
    r = describe(np.full((4, 1), 1e300), bins=4)
    assert r.hist.sum() == 4 and r.max[0] == 1e300 and np.all(np.diff(r.bin_edges[0]) > 0)


def _exact_mean_std(X):
    """Mean and std (ddof=0) of each column in extended precision."""
    XL = X.astype(np.longdouble)
    mean = XL.sum(axis=0) / X.shape[0]
    return mean.astype(np.float64), np.sqrt(((XL - mean) ** 2).sum(axis=0) / X.shape[0])


# 3 columns and 200_003 rows: the chunk is swept by all of Numba's threads, in many blocks,
# whose lanes span several rows (and the last block is partial)
@pytest.mark.parametrize("offset, scale", [(0.0, 1.0), (1e6, 1e-3), (-5e8, 10.0)])
def test_badly_centred_columns_keep_their_precision(offset, scale):
    """One sweep about a shift (S2 - S1^2 / n) must not cancel for a large mean."""
    rng = np.random.default_rng(11)
    X = rng.standard_normal((200_003, 3)) * scale + offset
    X[:, 2] = np.sort(X[:, 2])  # a trend: each block's mean far from the running mean
    mean, std = _exact_mean_std(X)
    r = describe(X)
    np.testing.assert_allclose(r.mean, mean, rtol=1e-15, atol=1e-14 * scale)
    np.testing.assert_allclose(r.std, std, rtol=1e-13)
    assert_matches(r, reference(X, 64), rtol=1e-9)  # (numpy's own std is off by ~1e-10)


@pytest.mark.parametrize("d", [1, 7, 10, 33])
def test_nan_blocks_among_clean_ones(d):
    """Blocks holding NaN are swept again (NaN skipped); the others are not."""
    rng = np.random.default_rng(12)
    X = rng.normal(50.0, 2.0, size=(150_001, d))
    X[rng.integers(0, X.shape[0], 40), rng.integers(0, d, 40)] = np.nan
    X[:3000, 0] = np.nan  # whole blocks of a column without values
    assert_matches(describe(X), reference(X, 64), rtol=1e-11)
    assert_matches(describe(X, bins=7), reference(X, 7), rtol=1e-11)


@pytest.mark.parametrize("value", [np.inf, -np.inf])
def test_inf_is_refused_in_a_threaded_chunk(value):
    X = np.random.default_rng(13).standard_normal((150_001, 10))
    X[99_999, 4] = value
    with pytest.raises(ValueError, match="inf"):
        describe(X)
    with pytest.raises(ValueError, match="inf"):
        describe(X, range=(-1, 1))
