"""matrix_profile / discords / motifs against a naive NumPy reference and stumpy.stump."""

from __future__ import annotations

import math

import dask.array as da
import numpy as np
import pytest

from hpcjobs.kernels import discords, matrix_profile, motifs

stumpy = pytest.importorskip("stumpy")


def _naive(T, m):
    """Full z-normalised distance matrix, stumpy's rules for constant and non-finite windows."""
    n_w = len(T) - m + 1
    W = np.lib.stride_tricks.sliding_window_view(T, m)
    finite = np.isfinite(W).all(axis=1)
    const = finite & (np.ptp(np.where(finite[:, None], W, 0.0), axis=1) == 0)
    mu = W.mean(axis=1, keepdims=True)
    sd = W.std(axis=1, keepdims=True)
    Z = np.where((finite & ~const)[:, None], (W - mu) / np.where(sd > 0, sd, 1.0), 0.0)
    D = np.sqrt(np.maximum(0.0, 2 * m * (1 - np.clip(Z @ Z.T / m, -np.inf, 1.0))))
    D[np.ix_(const, ~const)] = D[np.ix_(~const, const)] = math.sqrt(m)
    D[np.ix_(const, const)] = 0.0
    D[~finite, :] = np.inf
    D[:, ~finite] = np.inf
    excl = math.ceil(m / 4)
    for i in range(n_w):
        D[i, max(0, i - excl):i + excl + 1] = np.inf
    P = D.min(axis=1)
    idx = np.where(np.isfinite(P), D.argmin(axis=1), -1)
    return P, idx


def _series(n, seed):
    rng = np.random.default_rng(seed)
    return np.cumsum(rng.standard_normal(n))


@pytest.fixture(scope="module")
def hard_series():
    T = _series(1200, 5)
    T[300:331] = 2.5          # constant run: 8 constant windows, 7 apart at most
    T[500] = np.nan
    T[900:902] = np.inf
    return T


@pytest.fixture(scope="module")
def stumpy_ref(hard_series):
    out = stumpy.stump(hard_series, 24)  # the one stumpy call (it compiles for ~20 s)
    return out[:, 0].astype(np.float64), out[:, 1].astype(np.int64)


def _check_against(P, I, ref_P, ref_I, tol=1e-8):
    np.testing.assert_array_equal(np.isinf(P), np.isinf(ref_P))
    fin = np.isfinite(ref_P)
    # near-zero distances are ill-conditioned (sqrt of 2m(1 - rho) for rho ~ 1): compare the
    # squared distances there
    far = fin & (ref_P > 1e-3)
    np.testing.assert_allclose(P[far], ref_P[far], rtol=0, atol=tol)
    np.testing.assert_allclose(P[fin] ** 2, ref_P[fin] ** 2, rtol=0, atol=tol)
    differ = np.flatnonzero(I != ref_I)
    # indices may differ only where two matches tie exactly
    assert differ.size <= max(2, fin.sum() // 100), differ


@pytest.mark.slow
def test_matches_stumpy(hard_series, stumpy_ref):
    mp = matrix_profile(hard_series, 24)
    assert mp.profile.shape == mp.index.shape == (len(hard_series) - 23,)
    assert mp.index.dtype == np.int64 and mp.exclusion_zone == 6
    _check_against(mp.profile, mp.index, *stumpy_ref)
    # the NaN/inf windows: never matched, profile inf
    assert np.all(mp.index[np.isinf(mp.profile)] == -1)
    assert np.isinf(mp.profile[500 - 23:501]).all()


@pytest.mark.parametrize("n_chunks", [1, 2, 4, 7])
def test_dask_tiles_match_stumpy(hard_series, stumpy_ref, n_chunks):
    Td = da.from_array(hard_series, chunks=-(-len(hard_series) // n_chunks))
    assert Td.numblocks[0] == n_chunks
    mp = matrix_profile(Td, 24)
    assert isinstance(mp.profile, da.Array)
    _check_against(mp.profile.compute(), mp.index.compute(), *stumpy_ref)


def test_dask_tiles_read_only_their_windows(hard_series):
    # a tile size smaller than the chunks, and the graph of one block not holding the series
    Td = da.from_array(hard_series, chunks=300)
    mp = matrix_profile(Td, 24, tile=97)
    ref = matrix_profile(hard_series, 24)
    np.testing.assert_allclose(mp.profile.compute(), ref.profile, atol=1e-8, rtol=0)
    sizes = []
    for task in mp.profile.__dask_graph__().values():
        args = getattr(task, "args", ())
        sizes += [a.shape[0] for a in args if isinstance(a, np.ndarray) and a.ndim == 1]
    assert not sizes or max(sizes) < len(hard_series)


@pytest.mark.parametrize("n,m,seed", [(200, 10, 0), (157, 3, 1), (64, 32, 2)])
def test_matches_naive(n, m, seed):
    T = _series(n, seed)
    P, idx = _naive(T, m)
    mp = matrix_profile(T, m)
    np.testing.assert_allclose(mp.profile, P, rtol=0, atol=1e-7)
    assert np.mean(mp.index == idx) > 0.98


def test_constant_series_and_constant_windows():
    T = np.r_[np.full(50, 3.0), _series(100, 3)]
    P, idx = _naive(T, 8)
    mp = matrix_profile(T, 8)
    np.testing.assert_allclose(mp.profile, P, rtol=0, atol=1e-7)
    assert mp.profile[0] == 0.0  # constant window matched by another constant one
    flat = matrix_profile(np.ones(40), 5)
    np.testing.assert_array_equal(flat.profile, np.zeros(36))


def test_discords_and_motifs():
    rng = np.random.default_rng(0)
    t = np.linspace(0, 40 * np.pi, 2000)
    T = np.sin(t) + 0.01 * rng.standard_normal(t.size)
    T[1234:1240] += 1.5                     # anomaly
    T[300:340] = T[1500:1540] = rng.standard_normal(40) * 3  # planted motif pair
    mp = matrix_profile(T, 40)
    top = discords(mp, 3)
    assert top.index.shape == (3,) and np.all(np.diff(top.distance) <= 0)
    assert any(1195 <= i <= 1240 for i in top.index)
    assert np.min(np.abs(np.subtract.outer(top.index, top.index)) + np.eye(3, dtype=int) * 99) \
        > mp.exclusion_zone
    pair = motifs(mp, 1)
    assert sorted(pair.index[0].tolist()) == [300, 1500] and pair.distance[0] < 1e-6
    two = motifs(mp, 2)
    assert two.index.shape == (2, 2) and two.distance[1] >= two.distance[0]
    # a plain array needs the exclusion zone
    assert discords(mp.profile, 1, exclusion_zone=10).index[0] == top.index[0]
    with pytest.raises(TypeError, match="exclusion_zone"):
        discords(mp.profile, 1)
    with pytest.raises(TypeError, match="'profile' parameter of motifs"):
        motifs(mp.profile, 1)
    with pytest.raises(ValueError, match="'k' parameter of discords"):
        discords(mp, 0)


def test_discords_on_dask_profile():
    T = _series(600, 9)
    mp = matrix_profile(da.from_array(T, chunks=150), 16)
    ref = matrix_profile(T, 16)
    np.testing.assert_array_equal(discords(mp, 2).index, discords(ref, 2).index)


def test_bad_inputs():
    T = _series(100, 0)
    with pytest.raises(ValueError, match=r"'m' parameter of matrix_profile must be an int in "
                       r"the range \[3, 50\]"):
        matrix_profile(T, 2)
    with pytest.raises(ValueError, match="'m' parameter"):
        matrix_profile(T, 51)
    with pytest.raises(TypeError, match="'m' parameter"):
        matrix_profile(T, 10.0)
    with pytest.raises(ValueError, match="1-D"):
        matrix_profile(T.reshape(10, 10), 3)
    with pytest.raises(ValueError, match="finite windows"):
        matrix_profile(np.full(100, np.nan), 10)
    nan_every_5 = T.copy()
    nan_every_5[::5] = np.nan
    with pytest.raises(ValueError, match="finite windows"):
        matrix_profile(nan_every_5, 6)
    with pytest.raises(TypeError, match="'T' parameter"):
        matrix_profile(np.array(["a"] * 20), 3)
    with pytest.raises(ValueError, match="'tile'"):
        matrix_profile(da.from_array(T, chunks=50), 10, tile=0)


@pytest.mark.slow
def test_job_end_to_end(tmp_path, dask_client):
    """A job file: matrix_profile -> discords and motifs chained, and lof, through run_job."""
    zarr = pytest.importorskip("zarr")
    from hpcjobs.jobspec import load_job
    from hpcjobs.kernels import lof
    from hpcjobs.runner import run_job
    from tests.conftest import make_input, write_job

    T = _series(900, 11)
    X = np.random.default_rng(3).standard_normal((600, 3))
    make_input(tmp_path / "in.zarr", {"T": (T, (200,)), "X": (X, (150, 3))})
    job = load_job(write_job(tmp_path, """
        name = "mining"
        [input]
        path = "in.zarr"
        [[step]]
        name = "mp"
        kernel = "matrix_profile"
        input = "T"
        params = { m = 20 }
        [[step]]
        kernel = "discords"
        input = "mp/profile"
        params = { k = 2, m = 20 }
        [[step]]
        kernel = "motifs"
        input = { profile = "mp/profile", index = "mp/index" }
        params = { k = 1, m = 20 }
        [[step]]
        kernel = "lof"
        input = "X"
        params = { k = 10 }
        [output]
        path = "out.zarr"
    """))
    assert run_job(job, client=dask_client).status == "complete"
    out = zarr.open_group(str(tmp_path / "out.zarr"), mode="r")
    ref = matrix_profile(T, 20)
    np.testing.assert_allclose(out["mp/profile"][:], ref.profile, atol=1e-8, rtol=0)
    np.testing.assert_array_equal(out["mp/index"][:], ref.index)
    assert out["mp"].attrs["m"] == 20 and out["mp/profile"].chunks == (200,)
    np.testing.assert_array_equal(out["discords/index"][:], discords(ref, 2).index)
    np.testing.assert_array_equal(out["motifs/index"][:], motifs(ref, 1).index)
    np.testing.assert_allclose(out["lof/lof"][:], lof(X, 10), rtol=1e-12)
