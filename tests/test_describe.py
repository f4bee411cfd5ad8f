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


def test_threads_merge_large_offsets_exactly(monkeypatch):
    """Each thread's means are relative to its range's first row and merged about the first
    thread's: as absolute means (each rounded to an ulp of the offset) the merge lost
    digits of M2 (std off by up to 1e-8 here)."""
    from hpcjobs.kernels.stats import describe as module

    monkeypatch.setattr(module, "_threads_for", lambda block: 4)
    rng = np.random.default_rng(17)
    X = rng.uniform(0.0, 10.0, size=(60_007, 4)) + np.array([-5e8, 1e6, 2e9, 0.0])
    X[:, 3] = np.sort(X[:, 3]) * 1e-3 + 7e5  # a trend: each thread's mean its own
    mean, std = _exact_mean_std(X)
    r = describe(X)
    np.testing.assert_allclose(r.mean, mean, rtol=1e-15)
    np.testing.assert_allclose(r.std, std, rtol=1e-12)


@pytest.mark.parametrize("d", [1, 7, 10, 33])
def test_nan_blocks_among_clean_ones(d):
    """Blocks holding NaN are swept again (NaN skipped); the others are not."""
    rng = np.random.default_rng(12)
    X = rng.normal(50.0, 2.0, size=(150_001, d))
    X[rng.integers(0, X.shape[0], 40), rng.integers(0, d, 40)] = np.nan
    X[:3000, 0] = np.nan  # whole blocks of a column without values
    assert_matches(describe(X), reference(X, 64), rtol=1e-11)
    assert_matches(describe(X, bins=7), reference(X, 7), rtol=1e-11)


@pytest.mark.parametrize("d", [1, 10, 33])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_min_max_skip_nan_beside_them(d, dtype):
    """A third of the values NaN: each sweep step takes four lane sets' values at once, and
    a NaN beside a column's extreme in that step must not hide it (min and max skip NaN
    where the sums do not)."""
    rng = np.random.default_rng(17 + d)
    for _ in range(16):  # where the extremes fall among the NaN: many draws
        X = rng.standard_normal((2_011, d)).astype(dtype)
        X[rng.random(X.shape) < 0.3] = np.nan
        r = describe(X)
        np.testing.assert_array_equal(r.min, np.nanmin(X, axis=0).astype(np.float64))
        np.testing.assert_array_equal(r.max, np.nanmax(X, axis=0).astype(np.float64))
    assert_matches(r, reference(X.astype(np.float64), 64), rtol=1e-11)


@pytest.mark.parametrize("value", [np.inf, -np.inf])
def test_inf_is_refused_in_a_threaded_chunk(value):
    X = np.random.default_rng(13).standard_normal((150_001, 10))
    X[99_999, 4] = value
    with pytest.raises(ValueError, match="inf"):
        describe(X)
    with pytest.raises(ValueError, match="inf"):
        describe(X, range=(-1, 1))


def _on_and_beside_edges(lo, hi, bins, rng, n):
    """``n`` values in [lo, hi], a quarter of them on a bin edge or an ulp from one."""
    edges = np.linspace(lo, hi, bins + 1)
    near = np.concatenate([edges, np.nextafter(edges, -np.inf)[1:], np.nextafter(edges, np.inf)[:-1]])
    col = rng.uniform(lo, hi, n)
    col[rng.integers(0, n, n // 4)] = rng.choice(near, n // 4)
    col[0], col[-1] = lo, hi
    return col


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("d", [1, 3, 10, 33])
def test_in_memory_histogram_without_nan_equals_numpy(dtype, d):
    """In memory without NaN, every value is within the range (the data's own): the bins
    sweep then skips the test of which values to keep. Its bins must still be numpy's, edges
    included, over many blocks of each pass and a partial one, large offsets too."""
    rng = np.random.default_rng(14 + d)
    n = 40_011
    X = np.empty((n, d))
    for j in range(d):
        lo = [-3.7, 1e6, -5e8, 0.0][j % 4]
        X[:, j] = _on_and_beside_edges(lo, lo + [14.9, 1e-3, 10.0, 1.0][j % 4], 64, rng, n)
    if d > 2:
        X[:, 2] = 7.25  # a constant column: numpy's range (7.25 - 0.5, 7.25 + 0.5)
    X = X.astype(dtype)
    ref = reference(X.astype(np.float64), 64)
    r = describe(X)
    mean, std = _exact_mean_std(X.astype(np.float64))
    np.testing.assert_allclose(r.mean, mean, rtol=1e-15)
    np.testing.assert_allclose(r.std, std, rtol=1e-11)  # (numpy's own is off by ~1e-9 here)
    assert_matches(r, {**ref, "mean": mean, "std": std}, rtol=1e-11)
    for j in range(d):  # numpy.histogram of the column itself (float32 included)
        np.testing.assert_array_equal(r.hist[j], np.histogram(X[:, j], r.bin_edges[j])[0])


def test_in_memory_histogram_with_nan_drops_it():
    """NaN in memory: the general bins sweep (NaN dropped), in every block."""
    rng = np.random.default_rng(15)
    X = np.stack([_on_and_beside_edges(-1.0, 2.0, 64, rng, 30_001) for _ in range(4)], axis=1)
    X[rng.integers(0, X.shape[0], 500), rng.integers(0, 4, 500)] = np.nan
    assert_matches(describe(X), reference(X, 64), rtol=1e-11)


def test_bins_sweeps_agree():
    """The bins sweep for values known to be within the range equals the general one."""
    from hpcjobs.kernels.stats import describe as module

    rng = np.random.default_rng(16)
    X = np.stack([_on_and_beside_edges(1e8, 1e8 + 3.0, 16, rng, 9_999),
                  _on_and_beside_edges(-2.0, 5.0, 16, rng, 9_999)], axis=1)
    lo, hi, edges = module._edges(X.min(0), X.max(0), 16)
    inside = module._chunk_hist(X, lo, hi, edges, inside=True)
    np.testing.assert_array_equal(inside, module._chunk_hist(X, lo, hi, edges, inside=False))
    np.testing.assert_array_equal(inside, [np.histogram(c, e)[0]
                                           for c, e in zip(X.T, edges, strict=True)])
