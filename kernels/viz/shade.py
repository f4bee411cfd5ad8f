"""``shade``: turn an aggregate raster into an image (uint8 levels or RGBA).

Normalisations (``how``):

- ``linear``: ``(v - lo) / (hi - lo)`` over ``span`` (default: the data's min and max);
- ``log``: the same on ``log1p(v - lo)`` (counts spanning decades);
- ``eq_hist``: histogram equalisation like datashader's: each value maps to the fraction of
  pixels holding smaller or equal values (exact ranks, not a binned histogram), rescaled so
  the smallest value is 0 and the largest 1 - every colour of the map is used evenly.

Missing pixels - NaN, and 0 in integer (count) rasters - are transparent (RGBA) or 0 (levels).
An empty or all-missing raster gives a fully transparent image. A 3-D ``(n_categories, h, w)``
count raster (``aggregate2d(agg="count_cat")``) is shaded by mixing one colour per category in
proportion to the counts, with the opacity following the total count.
"""

from __future__ import annotations

import numpy as np

from hpcjobs.kernels._validation import (
    InvalidInput,
    InvalidType,
    check_array,
    is_dask,
    message,
)
from hpcjobs.kernels.viz.params import SHADE

_FUNC = "shade"

# a few colour maps as control points (interpolated linearly in RGB)
COLORMAPS: dict[str, list[str]] = {
    "viridis": ["#440154", "#482878", "#3e4989", "#31688e", "#26828e", "#1f9e89", "#35b779",
                "#6ece58", "#b5de2b", "#fde725"],
    "inferno": ["#000004", "#1b0c41", "#4a0c6b", "#781c6d", "#a52c60", "#cf4446", "#ed6925",
                "#fb9b06", "#f7d13d", "#fcffa4"],
    "fire": ["#000000", "#4b0000", "#940000", "#d71800", "#ff5a00", "#ff9d00", "#ffd84d",
             "#ffffff"],
    "blues": ["#deebf7", "#9ecae1", "#4292c6", "#08519c", "#08306b"],
    "gray": ["#000000", "#ffffff"],
}
# Tableau 10, for categories
CATEGORY_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
                   "#7f7f7f", "#bcbd22", "#17becf"]


def _hex_to_rgb(h: str) -> tuple[float, float, float]:
    h = h.lstrip("#")
    return tuple(int(h[i:i + 2], 16) / 255.0 for i in (0, 2, 4))


def _lut(cmap, n: int = 256) -> np.ndarray:
    """An (n, 3) uint8 lookup table from a name, a list of colours or an (m, 3|4) array."""
    if isinstance(cmap, str):
        if cmap not in COLORMAPS:
            raise InvalidInput(message("cmap", _FUNC, "one of " + ", ".join(map(repr, COLORMAPS))
                                       + " or a list of colours", cmap))
        pts = np.array([_hex_to_rgb(c) for c in COLORMAPS[cmap]])
    else:
        try:
            pts = np.array([_hex_to_rgb(c) if isinstance(c, str) else tuple(c)[:3]
                            for c in cmap], dtype=np.float64)
        except (TypeError, ValueError):
            raise InvalidType(message("cmap", _FUNC, "a colour map name, a list of '#rrggbb' "
                                      "strings or an (m, 3) array", cmap)) from None
        if pts.ndim != 2 or pts.shape[1] != 3 or len(pts) < 1:
            raise InvalidInput(message("cmap", _FUNC, "at least one RGB colour", cmap))
        if pts.max() > 1.0:
            pts = pts / 255.0
    if len(pts) == 1:
        pts = np.vstack([pts, pts])
    pos = np.linspace(0.0, 1.0, len(pts))
    t = np.linspace(0.0, 1.0, n)
    lut = np.stack([np.interp(t, pos, pts[:, c]) for c in range(3)], axis=1)
    return np.round(lut * 255).astype(np.uint8)


def _missing(a: np.ndarray) -> np.ndarray:
    if a.dtype.kind in "iub":
        return a == 0
    return ~np.isfinite(a)


def _normalise(a: np.ndarray, mask: np.ndarray, how: str, span) -> np.ndarray:
    """Values of the valid pixels mapped to [0, 1] (float64 array of the valid pixels)."""
    v = a[mask].astype(np.float64)
    if v.size == 0:
        return v
    if span is not None:
        lo, hi = span
        v = np.clip(v, lo, hi)
    else:
        lo, hi = float(v.min()), float(v.max())
    if how == "log":
        v = np.log1p(v - lo)
        lo, hi = 0.0, float(np.log1p(hi - lo))
    if how == "eq_hist":
        values, counts = np.unique(v, return_counts=True)
        cdf = np.cumsum(counts) / v.size
        first = cdf[0]
        if len(values) == 1:
            return np.ones_like(v)
        ranks = (cdf - first) / (1.0 - first)
        return ranks[np.searchsorted(values, v)]
    if hi <= lo:
        return np.ones_like(v)
    return (v - lo) / (hi - lo)


def _check_span(span):
    if span is None:
        return None
    try:
        lo, hi = (float(s) for s in span)
    except (TypeError, ValueError):
        raise InvalidType(message("span", _FUNC, "a (low, high) pair of numbers", span)) from None
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise InvalidInput(message("span", _FUNC, "finite (low, high) with low < high", span))
    return lo, hi


@SHADE
def shade(agg, *, how: str = "eq_hist", cmap="viridis", span=None, color_key=None,
          min_alpha: int = 40) -> np.ndarray:
    """Shade an aggregate raster into an image.

    Parameters
    ----------
    agg : numpy or dask array, shape (h, w) or (n_categories, h, w)
        The raster (a Dask raster is computed: it must fit in memory, as images do).
    how : {"eq_hist", "linear", "log"}
        The normalisation (see the module docstring).
    cmap : str, list of colours or (m, 3) array, or None
        Colour map for 2-D rasters (``viridis``, ``inferno``, ``fire``, ``blues``, ``gray``,
        or your own colours). None returns uint8 levels instead of RGBA.
    span : (low, high), optional
        Values mapped to the ends of the colour map (clipped beyond); default: data range.
    color_key : list of colours, optional
        One colour per category for 3-D rasters (default: Tableau 10, repeated).
    min_alpha : int
        Opacity (0-255) of the faintest non-empty pixel of a categorical raster.

    Returns
    -------
    numpy.ndarray of uint8
        ``(h, w, 4)`` RGBA (missing pixels transparent), or ``(h, w)`` levels when
        ``cmap=None`` (missing pixels 0, data 1 .. 255).

    Examples
    --------
    >>> import numpy as np
    >>> shade(np.array([[0, 1], [2, 4]]), how="linear", cmap=None)
    array([[  0,   1],
           [ 86, 255]], dtype=uint8)
    """
    span = _check_span(span)
    a = check_array(agg, "agg", _FUNC, ndim=(2, 3), allow_nan=True, float_out=False,
                    min_len=0)
    if is_dask(a):
        a = a.compute()
    a = np.asarray(a)
    if a.ndim == 3:
        return _shade_categories(a, how, span, color_key, min_alpha)
    mask = ~_missing(a)
    t = _normalise(a, mask, how, span)
    if cmap is None:
        out = np.zeros(a.shape, dtype=np.uint8)
        out[mask] = 1 + np.round(t * 254).astype(np.uint8)
        return out
    lut = _lut(cmap)
    out = np.zeros((*a.shape, 4), dtype=np.uint8)
    idx = np.round(t * (len(lut) - 1)).astype(np.int64)
    out[mask, :3] = lut[idx]
    out[mask, 3] = 255
    return out


def _shade_categories(a, how, span, color_key, min_alpha):
    ncat = a.shape[0]
    if color_key is None:
        color_key = [CATEGORY_COLORS[i % len(CATEGORY_COLORS)] for i in range(ncat)]
    if len(color_key) < ncat:
        raise InvalidInput(message("color_key", _FUNC, f"at least {ncat} colours (one per "
                                   "category)", color_key))
    colors = np.array([_hex_to_rgb(c) if isinstance(c, str) else tuple(c)[:3]
                       for c in color_key[:ncat]], dtype=np.float64)
    if colors.max() > 1.0:
        colors = colors / 255.0
    counts = np.where(np.isfinite(a), a, 0).astype(np.float64)
    total = counts.sum(axis=0)
    mask = total > 0
    out = np.zeros((*a.shape[1:], 4), dtype=np.uint8)
    if not mask.any():
        return out
    weights = counts[:, mask] / total[mask]  # (ncat, m)
    rgb = weights.T @ colors  # (m, 3)
    out[mask, :3] = np.round(rgb * 255).astype(np.uint8)
    t = _normalise(total, mask, how, span)
    out[mask, 3] = np.round(min_alpha + t * (255 - min_alpha)).astype(np.uint8)
    return out
