"""hpcjobs view over HTTP: the token, tiles against the stored levels, series windows against
MinMax-LTTB of the full series (reading only the chunks a window needs), the scatter, each
step's description, the command line, and OME-NGFF metadata checked with ome-zarr-models."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
import zarr
from click.testing import CliRunner

from hpcjobs.cli import cli
from hpcjobs.kernels import minmax_lttb, pyramid, shade
from hpcjobs.view import series as series_mod
from hpcjobs.view.chunks import ArrayReader, ChunkCache
from hpcjobs.view.png import encode_png
from hpcjobs.view.server import ViewServer
from hpcjobs.view.tiles import MapSource
from hpcjobs.zarrio import create_array
from tests.view_fixtures import demo_data, view_result  # noqa: F401 - a fixture


def _png(data: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)))


@pytest.fixture(scope="module")
def server(view_result):  # noqa: F811 - the fixture
    s = ViewServer(view_result).start()
    yield s
    s.close()


def get(server, path: str, token: str | None = "", cookie: str | None = None):
    """(status, body, content type) of GET path (the server's token unless told)."""
    url = f"http://127.0.0.1:{server.port}{path}"
    if token is not None:
        url += ("&" if "?" in path else "?") + f"token={token or server.token}"
    req = urllib.request.Request(url, headers={"Cookie": cookie} if cookie else {})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read(), r.headers.get("Content-Type"), r.headers
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers.get("Content-Type"), exc.headers


# ---------------------------------------------------------------------------------- token


@pytest.mark.parametrize("path", ["/", "/api/summary", "/api/tile/pyr/0/0/0.png",
                                  "/api/series/series/full?x0=0&x1=10", "/static/view.js"])
@pytest.mark.slow  # the demo job's result: about 30 s once a session
def test_no_token_no_data(server, path):
    for token in (None, "wrong", server.token[:-1]):
        status, body, _, _ = get(server, path, token=token)
        assert status == 403, (path, token)
        assert b"token" in body and b"PNG" not in body and b"{" not in body


@pytest.mark.slow  # the demo job's result: about 30 s once a session
def test_the_page_sets_a_cookie_that_then_suffices(server):
    status, body, ctype, headers = get(server, "/")
    assert status == 200 and ctype.startswith("text/html") and b"view.js" in body
    cookie = headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    status, body, _, _ = get(server, "/api/summary", token=None, cookie=cookie.split(";")[0])
    assert status == 200 and json.loads(body)["steps"]
    assert server.url.startswith("http://127.0.0.1:") and f"token={server.token}" in server.url
    assert server.httpd.server_address[0] == "127.0.0.1"


# ---------------------------------------------------------------------------------- summary


@pytest.mark.slow  # the demo job's result: about 30 s once a session
def test_each_step_gets_its_view(server, view_result):  # noqa: F811
    status, body, _, _ = get(server, "/api/summary")
    info = json.loads(body)
    kinds = {s["name"]: s["view"]["kind"] for s in info["steps"]}
    assert kinds == {"stats": "describe", "km": "kmeans", "emb": "scatter", "density": "map",
                     "pyr": "map", "series": "series", "mp": "series", "disc": "markers",
                     "mot": "markers", "outliers": "series", "fi": "table",
                     "rules": "table"}
    views = {s["name"]: s["view"] for s in info["steps"]}
    out = zarr.open_group(str(view_result), mode="r")
    # k-means: sizes counted from the labels
    labels = out["km/labels"][:]
    assert views["km"]["sizes"] == np.bincount(labels, minlength=4).tolist()
    # the map's extent is aggregate2d's, found through the pyramid's input
    assert views["pyr"]["extent"] == out["density"].attrs["range"]
    assert views["pyr"]["levels"] == [[256, 256], [128, 128], [64, 64], [32, 32]]
    # tables sorted by support, itemsets named by the basket labels
    fi = views["fi"]
    assert fi["total"] == out["fi/support"].shape[0]
    support = [r[2] for r in fi["rows"]]
    assert support == sorted(support, reverse=True)
    assert all(isinstance(r[0], str) and r[0] for r in fi["rows"])
    assert {"butter", "bread"} <= {r[0] for r in fi["rows"]}
    assert views["rules"]["columns"][:2] == ["antecedent", "consequent"]
    # matrix profile: the series and its profile, discords and motifs marked
    mp = views["mp"]
    assert [p["source"] for p in mp["panels"]] == ["full", "profile"]
    kinds = {m["kind"] for m in mp["markers"]}
    assert kinds == {"discord", "motif"}
    assert any(1190 <= m["start"] <= 1240 for m in mp["markers"] if m["kind"] == "discord")
    # describe: statistics and histograms of the three columns
    X = demo_data()[0]
    np.testing.assert_allclose(views["stats"]["mean"], X.mean(axis=0), rtol=1e-9)
    assert len(views["stats"]["hist"]) == 3 and sum(views["stats"]["hist"][0]) == len(X)
    assert info["provenance"]["status"] == "complete"
    # per-row scores: a line of the score
    assert views["outliers"]["panels"][0]["source"] == "score"
    d = json.loads(get(server, "/api/series/outliers/score?x0=0&x1=1999&n=3000")[1])
    np.testing.assert_array_equal(d["y"], out["outliers/score"][:])


# ---------------------------------------------------------------------------------- tiles


@pytest.mark.slow  # the demo job's result: about 30 s once a session
def test_tile_is_the_stored_level_shaded(server, view_result):  # noqa: F811
    raster = zarr.open_array(str(view_result / "density" / "raster"), mode="r")[:]
    status, body, ctype, _ = get(server, "/api/tile/density/0/0/0.png?how=linear&cmap=gray")
    assert status == 200 and ctype == "image/png"
    img = _png(body)
    assert img.shape == (256, 256, 4)
    flipped = raster[::-1]  # north up
    np.testing.assert_array_equal(img[..., 3] > 0, flipped > 0)  # empty cells transparent
    want = shade(flipped, how="linear", cmap="gray", span=(raster[raster > 0].min(),
                                                            raster.max()))
    assert np.abs(img[..., 0].astype(int) - want[..., 0]).max() <= 1
    # eq_hist: shade's ranks (the tile's level is the reference: every value in it), from
    # the first colour of the map to the last
    img = _png(get(server, "/api/tile/pyr/0/0/0.png")[1])
    want = shade(flipped, how="eq_hist", cmap="viridis")
    assert np.abs(img.astype(int) - want).max() <= 6
    top = img[::-1][raster == raster.max()][0, :3]
    bottom = img[::-1][raster == raster[raster > 0].min()][0, :3]
    assert tuple(top) == (0xfd, 0xe7, 0x25) and tuple(bottom) == (0x44, 0x01, 0x54)


@pytest.fixture
def big_map(tmp_path):
    """A 1000 x 700 count raster with a 4-level pyramid in Zarr, chunks of 128 x 128."""
    rng = np.random.default_rng(3)
    base = rng.poisson(3.0, (1000, 700)).astype(np.int64)
    g = zarr.open_group(str(tmp_path / "p.zarr"), mode="w", zarr_format=3)
    levels = pyramid(base, 4)
    for k, lvl in enumerate(levels):
        a = create_array(g, f"level{k}", shape=lvl.shape, dtype=lvl.dtype, chunks=(128, 128))
        a[...] = lvl
    return tmp_path / "p.zarr", levels


def test_tiles_come_from_the_matching_level(big_map):
    path, levels = big_map
    cache = ChunkCache(budget=2**30)
    src = MapSource([ArrayReader(path / f"level{k}", cache) for k in range(4)],
                    empty_is_zero=True)
    assert src.max_zoom == 2  # 1000 / 256 -> 4 tiles a side at zoom 2
    # zoom 2: level 0; tile (tx=1, ty=2) holds rows 512..767 and columns 256..511
    np.testing.assert_array_equal(src.values(2, 1, 2), np.where(
        levels[0][512:768, 256:512] == 0, np.nan, levels[0][512:768, 256:512]))
    # zoom 0: level 2 (250 x 175), padded with NaN to 256 x 256
    t = src.values(0, 0, 0)
    np.testing.assert_allclose(t[:250, :175], levels[2])
    assert np.isnan(t[250:]).all() and np.isnan(t[:, 175:]).all()
    # beyond the stored levels: reduced from the coarsest on the fly (2x2 NaN-skipping mean)
    src2 = MapSource([ArrayReader(path / f"level{k}", cache) for k in range(2)],
                     empty_is_zero=True)
    got = src2.values(0, 0, 0)[:250, :175]
    np.testing.assert_allclose(got, levels[1].reshape(250, 2, 175, 2).mean(axis=(1, 3)))
    # magnified: a base pixel becomes 2 x 2 tile pixels
    z = src.values(3, 0, 0)
    np.testing.assert_array_equal(z[::2, ::2], src.values(2, 0, 0)[:128, :128])
    # only the chunks under a tile are decoded
    cache2 = ChunkCache(budget=2**30)
    src3 = MapSource([ArrayReader(path / "level0", cache2)], empty_is_zero=True)
    src3.values(2, 0, 0)
    assert cache2.misses == 4  # 256 x 256 from chunks of 128 x 128


def test_a_raster_without_pyramid_gets_one(tmp_path):
    rng = np.random.default_rng(4)
    base = rng.random((1100, 900))
    g = zarr.open_group(str(tmp_path / "r.zarr"), mode="w", zarr_format=3)
    a = create_array(g, "raster", shape=base.shape, dtype=base.dtype, chunks=(300, 300))
    a[...] = base
    src = MapSource([ArrayReader(tmp_path / "r.zarr" / "raster")], empty_is_zero=False,
                    derive_into=tmp_path / "derived")
    want = pyramid(base, 4)[3]
    np.testing.assert_allclose(src.values(0, 0, 0)[:want.shape[0], :want.shape[1]], want)
    assert len(src.levels) == src.max_zoom + 1 == 4


@pytest.mark.parametrize("path, message", [
    ("/api/tile/pyr/0/0/0.png?how=sqrt", "how: expected one of"),
    ("/api/tile/pyr/0/0/0.png?cmap=jet", "cmap: expected one of"),
    ("/api/tile/pyr/99/0/0.png", "zoom 99 is outside"),
    ("/api/tile/pyr/a/0/0.png", "integers"),
    ("/api/tile/nope/0/0/0.png", "no step 'nope'; steps: stats, km"),
    ("/api/tile/km/0/0/0.png", "no raster"),
    ("/api/series/km/full?x0=0&x1=1", "full series of step 'km' is not found"),
    ("/api/series/series/full?x0=abc&x1=3", "expected a number"),
    ("/api/series/series/full?x1=3", "missing query parameter 'x0'"),
    ("/api/scatter/emb/image.png?x0=1&x1=0&y0=0&y1=1&w=10&h=10", "x0 < x1"),
])
@pytest.mark.slow  # the demo job's result: about 30 s once a session
def test_bad_requests_say_what(server, path, message):
    status, body, _, _ = get(server, path)
    assert status in (400, 404)
    assert message in json.loads(body)["error"]


# ---------------------------------------------------------------------------------- series


@pytest.mark.slow  # the demo job's result: about 30 s once a session
def test_window_is_minmax_lttb_of_the_full_series(server, view_result):  # noqa: F811
    t = demo_data()[1]
    status, body, _, _ = get(server, "/api/series/series/full?x0=1000.5&x1=51000&n=500")
    d = json.loads(body)
    assert d["source"] == "raw" and d["points"] == 50000
    seg = t[1001:51001]
    keep = minmax_lttb(None, seg, 500)
    np.testing.assert_array_equal(d["x"], keep + 1001)
    np.testing.assert_array_equal(d["y"], seg[keep])
    # a window narrower than n: every point
    d = json.loads(get(server, "/api/series/series/full?x0=10&x1=19&n=500")[1])
    np.testing.assert_array_equal(d["y"], t[10:20])


@pytest.mark.slow  # the demo job's result: about 30 s once a session
def test_wide_windows_use_the_summary_and_read_nothing_whole(view_result, monkeypatch):  # noqa: F811
    monkeypatch.setattr(series_mod, "RAW_POINTS", 5000)
    t = demo_data()[1]
    cache = ChunkCache(budget=2**30)
    col = series_mod.Column(ArrayReader(view_result.parent / "in.zarr" / "t", cache))
    src = series_mod.SeriesSource(col)
    # a narrow window decodes only the chunk it lies in (chunks of 50,000 points)
    d = src.window(120_000, 122_000, 300)
    assert d["source"] == "raw" and cache.misses == 1
    # before the summary: the companion (none here) -> the summary is built, then used
    src.build_summary()
    d = src.window(0, 199_999, 400)
    assert d["source"] == "summary" and d["points"] == 200_000 and len(d["x"]) == 400
    x = np.asarray(d["x"], dtype=np.int64)
    np.testing.assert_array_equal(d["y"], t[x])  # real points of the series
    assert (np.diff(x) > 0).all() and x[0] == 0 and x[-1] == 199_999
    # the summary holds every bin's min and max: the burst's extremes are kept
    lo, hi = 60_000, 100_000
    d = src.window(lo, hi, 400)
    assert min(d["y"]) == t[lo:hi + 1].min() or max(d["y"]) == t[lo:hi + 1].max()


@pytest.mark.slow  # the demo job's result: about 30 s once a session
def test_companion_answers_until_the_summary_is_ready(view_result, monkeypatch):  # noqa: F811
    monkeypatch.setattr(series_mod, "RAW_POINTS", 5000)
    col = series_mod.Column(ArrayReader(view_result.parent / "in.zarr" / "t"))
    kept_x = np.array([0.0, 5.0, 100_000.0, 199_999.0])
    src = series_mod.SeriesSource(col, companion=(kept_x, np.array([1.0, 2.0, 3.0, 4.0])))
    d = src.window(0, 150_000, 100)
    assert d["source"] == "companion" and d["x"] == [0.0, 5.0, 100_000.0]


def test_series_of_a_column_with_x(tmp_path):
    rng = np.random.default_rng(5)
    X = np.cumsum(rng.normal(size=(30_000, 2)), axis=0)
    x = np.sort(rng.random(30_000)) * 100
    g = zarr.open_group(str(tmp_path / "s.zarr"), mode="w", zarr_format=3)
    for name, data, chunks in (("X", X, (4000, 2)), ("x", x, (7000,))):
        a = create_array(g, name, shape=data.shape, dtype=data.dtype, chunks=chunks)
        a[...] = data
    y = series_mod.Column(ArrayReader(tmp_path / "s.zarr" / "X"), (slice(None), 1))
    xs = series_mod.Column(ArrayReader(tmp_path / "s.zarr" / "x"))
    src = series_mod.SeriesSource(y, xs)
    d = src.window(20.0, 40.0, 200)
    sel = (x >= 20.0) & (x <= 40.0)
    keep = minmax_lttb(x[sel], X[sel, 1], 200)
    np.testing.assert_array_equal(d["x"], x[sel][keep])
    np.testing.assert_array_equal(d["y"], X[sel, 1][keep])
    src.build_summary()
    assert src.window(20.0, 40.0, 200) == d  # the summary only brackets the ends


# ---------------------------------------------------------------------------------- scatter


@pytest.mark.slow  # the demo job's result: about 30 s once a session
def test_scatter_points_and_aggregated_image(server, view_result, monkeypatch):  # noqa: F811
    out = zarr.open_group(str(view_result), mode="r")
    d = json.loads(get(server, "/api/scatter/emb/points")[1])
    assert len(d["x"]) == 20_000 and d["labels"] == out["km/labels"][:].tolist()
    src = server.result.scatter_source("emb")
    (x0, x1), (y0, y1) = src.extent()
    status, body, ctype, _ = get(server, f"/api/scatter/emb/image.png?x0={x0}&x1={x1}"
                                         f"&y0={y0}&y1={y1}&w=320&h=240")
    img = _png(body)
    assert status == 200 and img.shape == (240, 320, 4)
    emb = out["emb/embedding"][:]
    # as many coloured pixels as cells holding a point, with the four cluster colours
    counts, _, _ = np.histogram2d(emb[:, 1], emb[:, 0], bins=(240, 320), range=[[y0, y1],
                                                                               [x0, x1]])
    assert abs(int((img[..., 3] > 0).sum()) - int((counts > 0).sum())) <= 40
    assert len(np.unique(img[img[..., 3] > 0][:, :3], axis=0)) >= 4


# ---------------------------------------------------------------------------------- PNG


def test_png_round_trip():
    from PIL import Image

    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, (13, 7, 4), dtype=np.uint8)
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(encode_png(rgba)))), rgba)
    grey = rng.integers(0, 256, (5, 9), dtype=np.uint8)
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(encode_png(grey)))), grey)
    with pytest.raises(ValueError, match="expected an"):
        encode_png(np.zeros((2, 2, 3), np.uint8))


# ---------------------------------------------------------------------------------- OME-NGFF


@pytest.mark.slow  # the demo job's result: about 30 s once a session
def test_pyramid_is_valid_ome_ngff_05_and_04(view_result, tmp_path):  # noqa: F811
    from ome_zarr_models.v04.image import Image as Image04
    from ome_zarr_models.v04.image import ImageAttrs as Attrs04
    from ome_zarr_models.v05.image import Image as Image05

    group = zarr.open_group(str(view_result / "pyr"), mode="r")
    img = Image05.from_zarr(group)  # metadata and arrays: paths, dimension names, scales
    ms = img.ome_attributes.multiscales[0]
    assert [d.path for d in ms.datasets] == ["level0", "level1", "level2", "level3"]
    assert [a.name for a in ms.axes] == ["y", "x"]
    assert group["level2"].metadata.dimension_names == ("y", "x")
    attrs = dict(group.attrs)
    Attrs04.model_validate({"multiscales": attrs["multiscales"]})
    # 0.4 readers read Zarr v2: the same levels and 0.4 metadata there validate as a whole
    v2 = zarr.open_group(str(tmp_path / "pyr-v2.zarr"), mode="w", zarr_format=2)
    v2.attrs["multiscales"] = attrs["multiscales"]
    for d in ms.datasets:
        data = group[d.path][:]
        v2.create_array(d.path, shape=data.shape, dtype=data.dtype, chunks=data.shape)[...] = data
    Image04.from_zarr(zarr.open_group(str(tmp_path / "pyr-v2.zarr"), mode="r"))


@pytest.mark.slow  # the demo job's result: about 30 s once a session
def test_pyramid_group_opens_level_by_level_in_xarray(view_result):  # noqa: F811
    xr = pytest.importorskip("xarray")
    ds = xr.open_zarr(view_result, group="pyr", consolidated=False,
                      drop_variables=["level1", "level2", "level3"])
    assert ds["level0"].dims == ("y", "x") and ds["level0"].shape == (256, 256)


# ---------------------------------------------------------------------------------- CLI


def test_cli_bad_result_is_one_line(tmp_path):
    r = CliRunner().invoke(cli, ["view", str(tmp_path / "missing.zarr"), "--no-browser"])
    assert r.exit_code == 2 and r.output.count("\n") == 1 and "no such result" in r.output
    (tmp_path / "empty.zarr").mkdir()
    zarr.open_group(str(tmp_path / "empty.zarr"), mode="w")
    r = CliRunner().invoke(cli, ["view", str(tmp_path / "empty.zarr"), "--no-browser"])
    assert r.exit_code == 2 and "holds no steps" in r.output


@pytest.mark.slow  # the demo job's result: about 30 s once a session
def test_cli_serves_until_interrupted(view_result):  # noqa: F811
    proc = subprocess.Popen([sys.executable, "-m", "hpcjobs", "view", str(view_result),
                             "--no-browser"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        proc.stdout.readline()
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and "/?token=" in url
        with urllib.request.urlopen(url.replace("/?", "/api/summary?"), timeout=60) as r:
            assert json.loads(r.read())["steps"]
        port = int(url.split(":")[2].split("/")[0])
        with pytest.raises(urllib.error.HTTPError, match="403"):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/summary", timeout=60)
        # the same port again: one line, exit 2
        r = CliRunner().invoke(cli, ["view", str(view_result), "--no-browser", "--port",
                                     str(port)])
        assert r.exit_code == 2 and f"--port {port}: cannot listen" in r.output
    finally:
        proc.send_signal(signal.SIGINT)
        t0 = time.monotonic()
        proc.wait(timeout=30)
    assert proc.returncode == 0 and time.monotonic() - t0 < 30


# ---------------------------------------------------------------------------------- bench


@pytest.mark.slow
def test_bench_view_quick(tmp_path, monkeypatch):
    """``hpcjobs bench view --quick``: the data made by a real job, every request timed."""
    from hpcjobs.bench import harness

    monkeypatch.setenv("HPCJOBS_BENCH_DATA", str(tmp_path / "data"))
    out = tmp_path / "view.jsonl"
    r = CliRunner().invoke(cli, ["bench", "view", "--quick", "--repeats", "5", "--json-out",
                                 str(out)])
    assert r.exit_code == 0, r.output
    recs = harness.read_jsonl(out)
    assert [x["impl"] for x in recs] == ["tile-walk", "tile-random", "window-walk",
                                         "window-random"]
    for rec in recs:
        assert rec["status"] == "ok" and rec["median_s"] > 0 and rec["repeats"] == 5
        assert rec["measured"]["summary_s"] > 0
    assert recs[0]["measured"]["png_bytes"] > 100
    assert recs[2]["measured"]["source"] in ("raw", "summary")
    assert (tmp_path / "data" / "view-1000000-1024" / "result.zarr" / "pyr" / "level2").exists()
