"""``hpcjobs view``: how long a map tile and a series window take, over HTTP, on big results.

The data (made once per size, kept in ``$HPCJOBS_BENCH_DATA`` or
``~/.cache/hpcjobs/bench-data/view-<points>-<side>``): an input group with a random walk
of ``points`` float64 values (64 MiB chunks, as ``hpcjobs ingest`` writes them) and a
``side x side`` float32 raster (rows of 64 MiB chunks); then a real job over it through
``run_job``: ``pyramid`` of the raster (down to about 256 pixels) and ``minmax_lttb`` of the
series (4000 points, the companion). A :class:`~hpcjobs.view.server.ViewServer` on that
result answers every request over loopback HTTP (the tile PNG cache off, the chunk cache at
its default budget; the series summary is built before the samples, and its time is
recorded as ``measured.summary_s``).

Implementations (each call is one request):

- ``tile-walk``: the tiles a person sees zooming in step by step from the whole map to one
  base pixel per screen pixel, and panning there (a viewport of 3 x 2 tiles);
- ``tile-random``: a tile at a random zoom and place (cold chunks at the finest zooms: the
  worst case);
- ``window-walk``: windows of a zoom from the whole series to 1000 points, 2x per step, then
  pans at that zoom;
- ``window-random``: a window of random width (log-uniform from 1000 points to all) at a
  random place.

The target (issue 17): a tile or a window in <= 50 ms at 1e8 points / a 16384^2 raster.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import time
import urllib.request
from pathlib import Path

import numpy as np

from hpcjobs.bench.spec import Benchmark, Impl, Sample

from .job_scale import data_root

TILE_SIDE = 256
JOB = """
name = "view-bench"
[input]
path = "in.zarr"
[[step]]
name = "pyr"
kernel = "pyramid"
input = "raster"
params = {{ levels = {levels} }}
[[step]]
name = "series"
kernel = "minmax_lttb"
input = "t"
params = {{ n_out = 4000 }}
[output]
path = "result.zarr"
[cluster]
workers = 2
threads_per_worker = 1
"""


def _write_inputs(group_path: Path, points: int, side: int, rng) -> None:
    import zarr

    from hpcjobs.zarrio import create_array

    g = zarr.open_group(str(group_path), mode="w", zarr_format=3)
    chunk = min(points, 2**23)  # 64 MiB of float64
    t = create_array(g, "t", shape=(points,), dtype="float64", chunks=(chunk,),
                     dimension_names=["sample"])
    level = 0.0
    for s in range(0, points, chunk):
        block = level + np.cumsum(rng.normal(0, 1, min(chunk, points - s)))
        level = float(block[-1])
        t[s:s + len(block)] = np.round(block, 3)
    rows = max(1, min(side, 2**26 // (4 * side)))  # 64 MiB of float32 rows
    r = create_array(g, "raster", shape=(side, side), dtype="float32", chunks=(rows, side),
                     dimension_names=["y", "x"])
    u = np.linspace(-3, 3, side, dtype=np.float32)
    for s in range(0, side, rows):
        v = np.linspace(-3, 3, side, dtype=np.float32)[s:s + rows, None]
        field = (np.exp(-(u[None, :] ** 2 + v ** 2)) * 1000 + np.sin(u[None, :] * 40) * 50
                 * np.cos(v * 30) + 60).astype(np.float32)
        noise = rng.gamma(2.0, 5.0, field.shape).astype(np.float32)
        r[s:s + rows] = np.where(noise > 30, 0, field + noise)


def make_result(size: dict, rng) -> Path:
    """The benchmark's result group for ``size`` (made once, then reused)."""
    from distributed import Client, LocalCluster

    from hpcjobs.jobspec import load_job
    from hpcjobs.runner import run_job

    folder = data_root() / f"view-{size['points']}-{size['side']}"
    result = folder / "result.zarr"
    manifest = folder / "manifest.json"
    want = {"points": size["points"], "side": size["side"], "version": 1}
    if manifest.exists() and json.loads(manifest.read_text()) == want:
        return result
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    _write_inputs(folder / "in.zarr", size["points"], size["side"], rng)
    levels = max(1, int(math.log2(size["side"] / TILE_SIDE)) + 1)
    (folder / "job.toml").write_text(JOB.format(levels=levels))
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        run_job(load_job(folder / "job.toml"), client=client)
    manifest.write_text(json.dumps(want))
    return result


class _Session:
    """A server on the result and the request sequences the implementations step through."""

    def __init__(self, result: Path, seed: int = 0):
        from hpcjobs.view.server import ViewServer

        self.server = ViewServer(result, png_cache=0).start()
        self.base = f"http://127.0.0.1:{self.server.port}"
        t0 = time.perf_counter()
        self.series = self.server.result.series_source("series", "full")
        self.series.build_summary()
        self.summary_s = time.perf_counter() - t0
        self.map = self.server.result.map_source("pyr")
        self.map.normaliser()
        self.rng = np.random.default_rng(seed)
        self.walks = {"tile-walk": self._tile_walk(), "window-walk": self._window_walk()}

    def get(self, path: str) -> bytes:
        sep = "&" if "?" in path else "?"
        with urllib.request.urlopen(f"{self.base}{path}{sep}token={self.server.token}") as r:
            return r.read()

    def _tile_walk(self):
        top = self.map.max_zoom
        while True:
            cu, cv = self.rng.random(2)
            for z in range(0, top + 1):
                n = 2**z
                cx = min(int(cu * n), n - 1)
                cy = min(int(cv * n), n - 1)
                for dx in (-1, 0, 1):
                    for dy in (0, 1):
                        if 0 <= cx + dx < n and 0 <= cy + dy < n:
                            yield z, cx + dx, cy + dy
            for step in range(6):  # pan right at the finest zoom
                n = 2**top
                for dy in (0, 1):
                    yield top, min(int(cu * n) + 2 + step, n - 1), min(int(cv * n) + dy, n - 1)

    def tile_random(self):
        z = int(self.rng.integers(0, self.map.max_zoom + 1))
        n = 2**z
        return z, int(self.rng.integers(0, n)), int(self.rng.integers(0, n))

    def _window_walk(self):
        n = self.series.n
        while True:
            centre = self.rng.random() * n
            span = float(n)
            while span > 1000:
                yield max(0.0, centre - span / 2), min(n - 1.0, centre + span / 2)
                span /= 2
            for k in range(8):
                a = centre + k * span / 4
                yield a, a + span

    def window_random(self):
        n = self.series.n
        span = math.exp(self.rng.uniform(math.log(1000), math.log(n)))
        a = self.rng.random() * max(n - span, 0)
        return a, a + span

    def tile(self, z: int, tx: int, ty: int) -> Sample:
        png = self.get(f"/api/tile/pyr/{z}/{tx}/{ty}.png")
        return Sample(fields={"zoom": z, "png_bytes": len(png), "summary_s": self.summary_s})

    def window(self, x0: float, x1: float) -> Sample:
        d = json.loads(self.get(f"/api/series/series/full?x0={x0}&x1={x1}&n=1500"))
        return Sample(fields={"points_in_window": d["points"], "source": d["source"],
                              "summary_s": self.summary_s})

    def close(self) -> None:
        self.server.close()


@contextlib.contextmanager
def _serve(result: Path, size: dict):
    session = _Session(result)
    try:
        yield session
    finally:
        session.close()


BENCHMARKS = [
    Benchmark(
        name="view",
        kernel="view",
        description="hpcjobs view over HTTP: map tiles of a pyramid, series windows",
        sizes=[{"points": 10**8, "side": 16384}],
        quick_sizes=[{"points": 10**6, "side": 1024}],
        make_data=make_result,
        setup=_serve,
        items=lambda size: 1.0,
        unit="requests",
        repeats=200,
        baseline="tile-walk",
        impls=[
            Impl("tile-walk", lambda s: s.tile(*next(s.walks["tile-walk"]))),
            Impl("tile-random", lambda s: s.tile(*s.tile_random())),
            Impl("window-walk", lambda s: s.window(*next(s.walks["window-walk"]))),
            Impl("window-random", lambda s: s.window(*s.window_random())),
        ],
    ),
]
