"""shade (linear, log, eq_hist, categories, empty rasters), hpcjobs preview, and a job
pca -> aggregate2d -> pyramid run end to end."""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from click.testing import CliRunner

from hpcjobs.cli import cli
from hpcjobs.kernels import aggregate2d, shade
from hpcjobs.preview import preview
from hpcjobs.registry.viz import multiscales_attrs


def test_linear_log_and_levels():
    a = np.array([[0, 1], [2, 4]])
    np.testing.assert_array_equal(shade(a, how="linear", cmap=None), [[0, 1], [86, 255]])
    f = np.array([[np.nan, 1.0], [10.0, 100.0]])
    lv = shade(f, how="log", cmap=None)
    assert lv[0, 0] == 0 and lv[0, 1] == 1 and lv[1, 1] == 255
    expected = 1 + round(254 * np.log1p(9.0) / np.log1p(99.0))
    assert lv[1, 0] == expected


def test_eq_hist_spreads_values_evenly():
    # heavy-tailed counts: linear crushes nearly all pixels to the bottom, eq_hist does not
    rng = np.random.default_rng(0)
    counts = rng.zipf(1.5, (64, 64)).clip(max=10**6)
    lin = shade(counts, how="linear", cmap=None)
    eq = shade(counts, how="eq_hist", cmap=None)
    assert np.median(lin) < 5
    assert 30 < np.median(eq) < 200
    # monotonic: a larger count never gets a lower level
    order = np.argsort(counts, axis=None)
    assert (np.diff(eq.ravel()[order].astype(int)) >= 0).all()
    assert eq.max() == 255


def test_rgba_missing_is_transparent_and_cmap_endpoints():
    a = np.array([[0, 5], [10, 0]])
    img = shade(a, how="linear", cmap=["#000000", "#ff0000"])
    assert img.shape == (2, 2, 4) and img.dtype == np.uint8
    assert img[0, 0, 3] == 0 and img[1, 1, 3] == 0
    np.testing.assert_array_equal(img[0, 1], [0, 0, 0, 255])
    np.testing.assert_array_equal(img[1, 0], [255, 0, 0, 255])


@pytest.mark.parametrize("how", ["linear", "log", "eq_hist"])
def test_empty_all_nan_and_constant_rasters(how):
    assert not shade(np.zeros((3, 4), dtype=np.int64), how=how).any()
    assert not shade(np.full((3, 4), np.nan), how=how).any()
    assert shade(np.zeros((0, 4)), how=how).shape == (0, 4, 4)
    const = shade(np.full((2, 2), 7.0), how=how, cmap=None)
    assert (const == 255).all()


def test_categories_mix_colours():
    layers = np.zeros((2, 1, 3), dtype=np.int64)
    layers[0, 0, 0] = 5
    layers[1, 0, 1] = 5
    layers[:, 0, 2] = 5
    img = shade(layers, color_key=["#ff0000", "#0000ff"], how="linear")
    np.testing.assert_array_equal(img[0, 0, :3], [255, 0, 0])
    np.testing.assert_array_equal(img[0, 1, :3], [0, 0, 255])
    np.testing.assert_array_equal(img[0, 2, :3], [128, 0, 128])
    assert img[0, 2, 3] == 255 and img[0, 0, 3] == 40


def test_shade_bad_input():
    with pytest.raises(ValueError, match="'how'"):
        shade(np.ones((2, 2)), how="sqrt")
    with pytest.raises(ValueError, match="'cmap'"):
        shade(np.ones((2, 2)), cmap="nope")
    with pytest.raises(ValueError, match="'span'"):
        shade(np.ones((2, 2)), span=(3, 1))
    with pytest.raises(ValueError, match="2-D or 3-D"):
        shade(np.ones(4))


# ---------------------------------------------------------------------------------------------
# preview


def _result(path):
    """A small result group in the design.md layout, written with zarr directly."""
    rng = np.random.default_rng(1)
    root = zarr.open_group(str(path), mode="w", zarr_format=3)
    root.attrs.update({"steps": ["km", "proj", "density", "pyr", "sig"], "job_name": "t"})

    def put(group, name, data):
        a = group.create_array(name, shape=data.shape, dtype=data.dtype, chunks=data.shape)
        a[...] = data

    labels = rng.integers(0, 3, 3000)
    emb = rng.normal(0, 0.3, (3000, 2)) + np.array([[0, 0], [3, 0], [0, 3]])[labels]
    km = root.create_group("km")
    put(km, "labels", labels)
    put(km, "centroids", np.array([[0.0, 0.0], [3.0, 0.0], [0.0, 3.0]]))
    put(root.create_group("proj"), "embedding", emb)
    dens = aggregate2d(emb[:, 0], emb[:, 1], shape=(60, 80), range=((-1, 4), (-1, 4)))
    g = root.create_group("density")
    g.attrs.update({"range": [[-1, 4], [-1, 4]]})
    put(g, "raster", dens)
    g = root.create_group("pyr")
    g.attrs.update(multiscales_attrs("pyr", 3, "mean"))
    for k in range(3):
        put(g, f"level{k}", dens[::2**k, ::2**k].astype(np.float64))
    g = root.create_group("sig")
    put(g, "index", np.arange(0, 1000, 10))
    put(g, "x", np.arange(0, 1000, 10).astype(np.float64))
    put(g, "y", np.sin(np.arange(0, 1000, 10) / 50.0))
    return path


@pytest.mark.parametrize("step, level, words", [
    ("density", None, "raster (60, 80)"),
    ("pyr", 2, "pyramid level 2 of 3 (15, 20)"),
    ("proj", None, "coloured by km/labels"),
    ("sig", None, "100 points kept"),
    ("km", None, "3 centroids over 2 columns, sizes from labels"),
    (None, None, "step sig"),
])
def test_preview_kinds(tmp_path, step, level, words):
    res = _result(tmp_path / "r.zarr")
    out = tmp_path / "p.png"
    text = preview(res, out, step=step, level=level)
    assert words in text
    import matplotlib.image as mpimg

    img = mpimg.imread(out)
    assert img.shape[0] == 600 and img.shape[1] == 800
    assert img[..., :3].std() > 0.05  # something was drawn


def test_preview_cli_and_errors(tmp_path):
    res = _result(tmp_path / "r.zarr")
    runner = CliRunner()
    ok = runner.invoke(cli, ["preview", str(res), "--step", "pyr", "-o",
                             str(tmp_path / "a.png")])
    assert ok.exit_code == 0, ok.output
    assert "pyramid level 0 of 3" in ok.output and (tmp_path / "a.png").exists()
    cases = [
        (["preview", str(tmp_path / "missing.zarr")], "no such result"),
        (["preview", str(res), "--step", "nope"], "no step 'nope'; steps: km, proj"),
        (["preview", str(res), "--step", "pyr", "--level", "5"], "levels 0 to 2"),
        (["preview", str(res), "--step", "sig", "--level", "1"], "applies to pyramid steps"),
    ]
    for args, words in cases:
        r = runner.invoke(cli, [*args, "-o", str(tmp_path / "b.png")])
        assert r.exit_code == 2, r.output
        assert words in r.output
        assert "Traceback" not in r.output


# ---------------------------------------------------------------------------------------------
# a job end to end: pca -> aggregate2d -> pyramid (and preview of each)

JOB = """
name = "viz-pipeline"
[input]
path = "in.zarr"
[[step]]
kernel = "pca"
input = "X"
[[step]]
name = "density"
kernel = "aggregate2d"
input = {{ x = "pca/embedding[:, 0]", y = "pca/embedding[:, 1]" }}
params = {{ shape = [64, 96], range = [[{x0}, {x1}], [{y0}, {y1}]] }}
[[step]]
name = "pyr"
kernel = "pyramid"
input = "density/raster"
params = {{ levels = 4 }}
[output]
path = "out.zarr"
"""


def test_job_pca_aggregate2d_pyramid(tmp_path, dask_client):
    from hpcjobs.jobspec import load_job
    from hpcjobs.kernels import pca, pyramid
    from hpcjobs.runner import run_job
    from tests.conftest import make_input, write_job

    rng = np.random.default_rng(2)
    X = rng.normal(size=(5000, 5)) @ rng.normal(size=(5, 5))
    make_input(tmp_path / "in.zarr", {"X": (X, (1000, 5))})
    emb = pca(X, 2).embedding
    lo, hi = emb.min(axis=0) - 0.1, emb.max(axis=0) + 0.1
    job = load_job(write_job(tmp_path, JOB.format(x0=lo[0], x1=hi[0], y0=lo[1], y1=hi[1])))
    run_job(job, client=dask_client)

    root = zarr.open_group(str(tmp_path / "out.zarr"), mode="r")
    np.testing.assert_allclose(root["pca/embedding"][...], emb, atol=1e-8)
    expected = aggregate2d(emb[:, 0], emb[:, 1], shape=(64, 96),
                           range=((lo[0], hi[0]), (lo[1], hi[1])))
    # the runner's embedding may differ from ours in the last bits: compare counts closely
    got = root["density/raster"][...]
    assert got.sum() == 5000 and np.abs(got - expected).sum() <= 4
    levels = pyramid(got, 4)
    ms = root["pyr"].attrs["ome"]["multiscales"][0]
    assert [d["path"] for d in ms["datasets"]] == ["level0", "level1", "level2", "level3"]
    assert ms["datasets"][2]["coordinateTransformations"][0]["scale"] == [4.0, 4.0]
    for k in range(4):
        np.testing.assert_allclose(root[f"pyr/level{k}"][...], levels[k])
    for step in ("pca", "density", "pyr"):
        text = preview(tmp_path / "out.zarr", tmp_path / f"{step}.png", step=step)
        assert step in text and (tmp_path / f"{step}.png").stat().st_size > 5000


def test_job_aggregate2d_records_the_range_it_found(tmp_path, dask_client):
    # without a range the step bins into the data's extent, and records it, so that the
    # raster's pixels (and the preview's axes) map back to coordinates
    from hpcjobs.jobspec import load_job
    from hpcjobs.kernels.viz.aggregate import binning
    from hpcjobs.runner import run_job
    from tests.conftest import make_input, write_job

    rng = np.random.default_rng(4)
    pts = rng.normal(size=(3000, 2)) * [2.0, 0.5] + [10.0, -3.0]
    make_input(tmp_path / "in.zarr", {"P": (pts, (1000, 2))})
    job = load_job(write_job(tmp_path, """
        name = "auto-range"
        [input]
        path = "in.zarr"
        [[step]]
        name = "density"
        kernel = "aggregate2d"
        input = { x = "P[:, 0]", y = "P[:, 1]" }
        params = { shape = [30, 40] }
        [output]
        path = "out.zarr"
        """))
    run_job(job, client=dask_client)
    root = zarr.open_group(str(tmp_path / "out.zarr"), mode="r")
    found = root["density"].attrs["range"]
    extent = [[pts[:, 0].min(), pts[:, 0].max()], [pts[:, 1].min(), pts[:, 1].max()]]
    assert found == extent
    assert [list(r) for r in binning(pts[:, 0], pts[:, 1])[0]] == extent
    expected = np.histogram2d(pts[:, 1], pts[:, 0], bins=(30, 40))[0]
    np.testing.assert_array_equal(root["density/raster"][...], expected)
    text = preview(tmp_path / "out.zarr", tmp_path / "d.png", step="density")
    assert "raster (30, 40)" in text
