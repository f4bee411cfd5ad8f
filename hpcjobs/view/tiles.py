"""Map tiles of a raster or pyramid, cut and shaded on request (``hpcjobs view``).

Geometry: a raster of ``H x W`` base pixels, row 0 at the bottom (rows follow y, as
aggregate2d writes them). Zoom ``z = max_zoom`` shows one base pixel per tile pixel, each zoom
below halves the resolution, zoom 0 fits the raster into one 256 x 256 tile; zooms above
``max_zoom`` magnify (nearest pixel). Tile ``(z, tx, ty)`` covers columns ``[tx, tx+1) * 256``
and rows ``[ty, ty+1) * 256`` of the level for that zoom, ``ty`` counted from the bottom;
its PNG is flipped so north is up. The level is the pyramid level whose scale matches the
zoom (level ``k`` = ``2**k`` base pixels a pixel); past the coarsest stored level the tile is
reduced from it on the fly (NaN-skipping mean). A raster without a pyramid gets one made
once, streamed chunk by chunk, into a temporary folder of the server (``derive_levels``).

Shading is ``hpcjobs.kernels.shade`` itself, with one normalisation for every tile of a map
(tiles must agree at their edges): ``linear`` and ``log`` over the ``span`` of a reference
level (the finest with at most :data:`REFERENCE_PIXELS` pixels), ``eq_hist`` through that
level's ranks (the fraction of reference pixels at or below a value), then shaded linearly.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hpcjobs.view.chunks import ArrayReader

TILE = 256
REFERENCE_PIXELS = 1 << 20
RANK_POINTS = 4096
MAGNIFY = 3  # zoom levels above one base pixel per tile pixel


class NpyLevel:
    """A derived pyramid level kept as a ``.npy`` memory map (the same ``read`` as a reader)."""

    def __init__(self, path: Path):
        self.data = np.load(path, mmap_mode="r")
        self.shape = self.data.shape
        self.dtype = self.data.dtype

    def read(self, *bounds: tuple[int, int]) -> np.ndarray:
        box = tuple(slice(max(0, a), min(s, b)) for (a, b), s in zip(bounds, self.shape,
                                                                     strict=False))
        return np.asarray(self.data[box])


def derive_levels(reader: ArrayReader, folder: Path, levels: int) -> list[NpyLevel]:
    """Levels 1 .. levels-1 of ``reader``'s raster by ``kernels.pyramid`` (mean), streamed
    from its chunks into ``.npy`` files in ``folder``."""
    import dask
    import dask.array as da

    from hpcjobs.kernels import pyramid

    x = da.from_array(_ChunkSource(reader), chunks=reader.chunks, lock=False, asarray=True)
    if x.dtype.kind == "b":
        x = x.astype(np.uint8)
    folder.mkdir(parents=True, exist_ok=True)
    lazy = pyramid(x, levels, method="mean")[1:]
    targets = []
    for k, lvl in enumerate(lazy, start=1):
        targets.append(np.lib.format.open_memmap(folder / f"level{k}.npy", mode="w+",
                                                 dtype=lvl.dtype, shape=lvl.shape))
    with dask.config.set(scheduler="threads", num_workers=2):
        da.store(lazy, targets, lock=False)
    for t in targets:
        t.flush()
    return [NpyLevel(folder / f"level{k}.npy") for k in range(1, levels)]


class _ChunkSource:
    """``reader`` as an array-like for ``dask.array.from_array`` (reads through the cache)."""

    def __init__(self, reader: ArrayReader):
        self.reader, self.shape, self.dtype, self.ndim = reader, reader.shape, reader.dtype, 2

    def __getitem__(self, key):
        rows, cols = key
        return self.reader.read((rows.start or 0, rows.stop), (cols.start or 0, cols.stop))


@dataclass
class Normaliser:
    """One map's value-to-[0, 1] mapping, from its reference level.

    ``eq_hist`` ranks come from a table of at most :data:`RANK_POINTS` (value, rank) pairs
    of the reference (interpolated between them): a tile is mapped in a millisecond, where a
    search among a million distinct values took 40 ms."""

    span: tuple[float, float] | None
    values: np.ndarray = field(repr=False)   # increasing reference values
    ranks: np.ndarray = field(repr=False)    # eq_hist rank of each (0 .. 1)

    @classmethod
    def of(cls, data: np.ndarray, empty_is_zero: bool) -> Normaliser:
        v = np.asarray(data, dtype=np.float64).ravel()
        v = v[np.isfinite(v) & ((v != 0) if empty_is_zero else True)]
        if v.size == 0:
            return cls(None, np.zeros(0), np.zeros(0))
        values, counts = np.unique(v, return_counts=True)
        cdf = np.cumsum(counts) / v.size
        ranks = (cdf - cdf[0]) / (1.0 - cdf[0]) if len(values) > 1 else np.ones(1)
        if len(values) > RANK_POINTS:
            keep = np.unique(np.concatenate([
                np.searchsorted(ranks, np.linspace(0.0, 1.0, RANK_POINTS)).clip(0, len(ranks) - 1),
                np.linspace(0, len(values) - 1, RANK_POINTS).astype(np.int64)]))
            values, ranks = values[keep], ranks[keep]
        return cls((float(values[0]), float(values[-1])), values, ranks)

    def eq_hist(self, tile: np.ndarray) -> np.ndarray:
        """Each value's reference rank (NaN stays NaN)."""
        if self.values.size == 0:
            return np.full(tile.shape, np.nan)
        if self.values.size == 1:
            return np.where(np.isfinite(tile), 1.0, np.nan)
        return np.interp(tile, self.values, self.ranks)  # NaN in, NaN out


_palettes: dict[str, np.ndarray] = {}


def palette(cmap: str) -> np.ndarray:
    """``(256, 4)`` RGBA for ``shade(..., cmap=None)``'s levels: 0 transparent, then the map."""
    if cmap not in _palettes:
        from hpcjobs.kernels.viz.shade import _lut

        rgb = _lut(cmap, 255)
        _palettes[cmap] = np.vstack([np.zeros((1, 4), np.uint8),
                                     np.hstack([rgb, np.full((255, 1), 255, np.uint8)])])
    return _palettes[cmap]


class MapSource:
    """Tiles of one map: the stored levels (finest first), the base shape, the shading."""

    def __init__(self, levels: list, *, empty_is_zero: bool, derive_into: Path | None = None):
        self.levels = list(levels)
        self.base_shape = tuple(int(s) for s in self.levels[0].shape[-2:])
        self.empty_is_zero = empty_is_zero
        self.max_zoom = max(0, math.ceil(math.log2(max(self.base_shape) / TILE)))
        self._derive_into = derive_into
        self._lock = threading.Lock()
        self._norm: Normaliser | None = None

    @property
    def categories(self) -> bool:
        return len(self.levels[0].shape) == 3

    def describe(self) -> dict:
        return {"base_shape": list(self.base_shape), "tile": TILE, "max_zoom": self.max_zoom,
                "min_zoom": 0, "top_zoom": self.max_zoom + MAGNIFY,
                "levels": [list(lv.shape) for lv in self.levels]}

    def _ensure_levels(self) -> None:
        """A lone raster bigger than a few tiles gets its pyramid derived once."""
        if len(self.levels) > 1 or self._derive_into is None or self.categories:
            return
        with self._lock:
            if len(self.levels) == 1 and self.max_zoom > 2:
                self.levels += derive_levels(self.levels[0], self._derive_into,
                                             self.max_zoom + 1)

    def normaliser(self) -> Normaliser:
        if self._norm is None:
            self._ensure_levels()
            k = next((k for k, lv in enumerate(self.levels)
                      if np.prod(lv.shape[-2:]) <= REFERENCE_PIXELS), len(self.levels) - 1)
            lv = self.levels[k]
            data = _read_level(lv, (0, lv.shape[-2]), (0, lv.shape[-1]))
            if data.ndim == 3:
                data = data.sum(axis=0)
            if data.shape[0] * data.shape[1] > REFERENCE_PIXELS:  # only a big base: sample
                step = math.ceil(math.sqrt(data.size / REFERENCE_PIXELS))
                data = data[::step, ::step]
            self._norm = Normaliser.of(data, self.empty_is_zero)
        return self._norm

    def values(self, z: int, tx: int, ty: int) -> np.ndarray:
        """The tile's values (``(256, 256)``, or ``(categories, 256, 256)``), row 0 at the
        bottom; NaN (or 0 for counts) outside the raster."""
        self._ensure_levels()
        shift = self.max_zoom - z          # log2 of base pixels per tile pixel
        if shift < 0:                      # magnified: a part of a base tile, repeated
            rep = 2 ** -shift
            size = TILE // rep
            part = self._cut(0, 1, (ty * size, (ty + 1) * size), (tx * size, (tx + 1) * size))
            return np.repeat(np.repeat(part, rep, axis=-2), rep, axis=-1)
        k = min(shift, len(self.levels) - 1)
        m = 2 ** (shift - k)               # further reduction past the coarsest level
        return self._cut(k, m, (ty * TILE * m, (ty + 1) * TILE * m),
                         (tx * TILE * m, (tx + 1) * TILE * m))

    def _cut(self, k: int, m: int, rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
        lv = self.levels[k]
        data = _read_level(lv, rows, cols)
        if self.empty_is_zero or data.dtype.kind != "f":
            data = data.astype(np.float64)
            if self.empty_is_zero:
                data[data == 0] = np.nan
        want = ((rows[1] - rows[0]) // m, (cols[1] - cols[0]) // m)
        if m > 1:
            data = _block_mean(data, m)
        out = np.full(data.shape[:-2] + want, np.nan)
        out[..., :data.shape[-2], :data.shape[-1]] = data
        return out

    def tile_rgba(self, z: int, tx: int, ty: int, how: str, cmap: str) -> np.ndarray:
        """The shaded tile, north up: ``(256, 256, 4)`` uint8."""
        from hpcjobs.kernels import shade

        norm = self.normaliser()
        vals = self.values(z, tx, ty)
        if vals.ndim == 3:                 # categories: colours mixed, opacity by total
            counts = np.nan_to_num(vals, nan=0.0)
            total_span = norm.span if how != "eq_hist" else None
            img = shade(counts, how="linear" if how == "eq_hist" else how, span=total_span)
        elif norm.span is None:
            img = np.zeros((*vals.shape, 4), dtype=np.uint8)
        else:  # shade's levels (0: missing, 1 .. 255), coloured through its colour map
            if how == "eq_hist":
                vals, how, span = norm.eq_hist(vals), "linear", (0.0, 1.0)
            else:
                lo, hi = norm.span
                span = (lo, hi if hi > lo else lo + 1.0)
            img = palette(cmap)[shade(vals, how=how, span=span, cmap=None)]
        return np.ascontiguousarray(img[::-1])


def _read_level(lv, rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
    h, w = lv.shape[-2:]
    r0, r1 = max(0, rows[0]), min(h, rows[1])
    c0, c1 = max(0, cols[0]), min(w, cols[1])
    if r1 <= r0 or c1 <= c0:
        return np.zeros(lv.shape[:-2] + (0, 0), dtype=lv.dtype)
    if len(lv.shape) == 3:
        return lv.read((0, lv.shape[0]), (r0, r1), (c0, c1))
    return lv.read((r0, r1), (c0, c1))


def _block_mean(a: np.ndarray, m: int) -> np.ndarray:
    """NaN-skipping mean over ``m x m`` blocks of the last two axes (partial edge blocks)."""
    h, w = a.shape[-2:]
    H, W = -(-h // m) * m, -(-w // m) * m
    pad = np.full(a.shape[:-2] + (H, W), np.nan)
    pad[..., :h, :w] = a
    blocks = pad.reshape(a.shape[:-2] + (H // m, m, W // m, m))
    ok = np.isfinite(blocks)
    n = ok.sum(axis=(-3, -1))
    s = np.where(ok, blocks, 0.0).sum(axis=(-3, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, s / np.maximum(n, 1), np.nan)

