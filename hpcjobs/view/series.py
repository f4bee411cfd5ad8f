"""Windows of a long series, downsampled afresh for every zoom (``hpcjobs view``).

A window ``[x0, x1]`` asked for ``n`` points is answered from the full series, never from
all of it at once:

- **raw**: when the window holds at most :data:`RAW_POINTS` points, they are read (chunk by
  chunk, through the view's chunk cache) and reduced by MinMax-LTTB
  (``hpcjobs.kernels.minmax_lttb``) to ``n``;
- **summary**: wider windows take the MinMax preselection from a summary made once per
  series in one streamed pass (the first and last index of each stored chunk, and the min and
  max of every bin of :attr:`SeriesSource.bin` points, with their x: about ``2 n / bin``
  points), the points of the window's bins; LTTB (``hpcjobs.kernels.lttb``) then picks
  ``n`` of them. The summary is MinMax at a finer bin than any window can show, so the
  result is the same MinMax + LTTB a full read would give, up to the bins cut by the
  window's ends;
- **companion**: until the summary is ready (it is built in a background thread when the
  server starts) a wide window shows the points that the job's downsampling step kept.

NaN (and inf) points are never drawn: MinMax skips them, and they are dropped before LTTB.
"""

from __future__ import annotations

import threading

import numpy as np

from hpcjobs.view.chunks import ArrayReader

RAW_POINTS = 1 << 20
MAX_SUMMARY_POINTS = 1 << 19


class Column:
    """A 1-D series stored as a 1-D array, a slice of one, or a column of a 2-D array."""

    def __init__(self, reader: ArrayReader, index: tuple | None = None):
        self.reader = reader
        start, stop, self.col = 0, reader.shape[0], None
        if index:
            rows = index[0]
            if isinstance(rows, int) or (isinstance(rows, slice) and rows.step not in (None, 1)):
                raise ValueError("a series must be a contiguous range of rows")
            start, stop, _ = rows.indices(reader.shape[0])
            if reader.ndim == 2:
                if len(index) != 2 or not isinstance(index[1], int):
                    raise ValueError("a series of a 2-D array must be one column, e.g. X[:, 0]")
                self.col = index[1] % reader.shape[1]
        elif reader.ndim == 2:
            if reader.shape[1] != 1:
                raise ValueError("a series must be 1-D (or one column of a 2-D array)")
            self.col = 0
        if reader.ndim not in (1, 2):
            raise ValueError("a series must be 1-D")
        self.start, self.n = start, max(0, stop - start)

    @property
    def chunk(self) -> int:
        return self.reader.chunks[0]

    def read(self, i0: int, i1: int) -> np.ndarray:
        """Points ``[i0, i1)`` of the series (float64)."""
        i0, i1 = max(0, i0), min(self.n, i1)
        if i1 <= i0:
            return np.zeros(0)
        return self.reader.column(self.start + i0, self.start + i1, self.col).astype(
            np.float64, copy=False)


class SeriesSource:
    """One series (``y``, optionally sorted ``x``) with its summary and companion points."""

    def __init__(self, y: Column, x: Column | None = None,
                 companion: tuple[np.ndarray, np.ndarray] | None = None):
        if x is not None and x.n != y.n:
            raise ValueError(f"x has {x.n} points but y has {y.n}")
        self.y, self.x, self.n = y, x, y.n
        self.bin = max(64, -(-2 * self.n // MAX_SUMMARY_POINTS))
        self.companion = companion
        self._summary: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._lock = threading.Lock()
        self.error: str | None = None

    # -- the summary -------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self._summary is not None

    def build_summary(self) -> None:
        """The MinMax summary in one pass (chunk-aligned reads); safe to call from threads."""
        from hpcjobs.kernels import minmax

        with self._lock:
            if self._summary is not None:
                return
            idx, xs, ys = [], [], []
            step = max(self.y.chunk, self.bin) // self.bin * self.bin
            for s in range(0, self.n, step):
                e = min(self.n, s + step)
                y = self.y.read(s, e)
                nb = -(-(e - s) // self.bin)
                if e - s > 2 * nb:
                    found = minmax(y, 2 * nb)
                else:
                    found = np.arange(e - s)
                found = np.unique(np.concatenate([[0, e - s - 1], found]))
                found = found[np.isfinite(y[found])]
                idx.append(found + s)
                ys.append(y[found])
                if self.x is not None:
                    xs.append(self.x.read(s, e)[found])
            i = np.concatenate(idx) if idx else np.zeros(0, dtype=np.int64)
            self._summary = (i.astype(np.int64),
                             np.concatenate(xs) if self.x is not None and xs else
                             i.astype(np.float64),
                             np.concatenate(ys) if ys else np.zeros(0))

    def build_in_background(self) -> threading.Thread:
        def run():
            try:
                self.build_summary()
            except Exception as exc:  # noqa: BLE001 - reported with each window instead
                self.error = f"{type(exc).__name__}: {exc}"

        t = threading.Thread(target=run, name="hpcjobs-view-summary", daemon=True)
        t.start()
        return t

    # -- windows -------------------------------------------------------------------------

    def x_range(self) -> tuple[float, float]:
        if self.x is None:
            return 0.0, float(max(self.n - 1, 0))
        return float(self.x.read(0, 1)[0]), float(self.x.read(self.n - 1, self.n)[0])

    def _index_of(self, value: float, side: str) -> int:
        """The first index whose x is >= value (side left) or > value (right)."""
        if self.x is None:
            v = np.ceil(value) if side == "left" else np.floor(value) + 1
            return int(np.clip(v, 0, self.n))
        if self._summary is not None:   # bracket with the summary, then one chunk read
            si, sx, _ = self._summary
            j = int(np.searchsorted(sx, value, side=side))
            lo = int(si[j - 1]) if j > 0 else 0
            hi = int(si[j]) + 1 if j < len(si) else self.n
        else:
            lo, hi = 0, self.n
        while hi - lo > RAW_POINTS:  # no summary yet: bisect by single reads
            mid = (lo + hi) // 2
            v = self.x.read(mid, mid + 1)[0]
            if v < value or (side == "right" and v == value):
                lo = mid
            else:
                hi = mid
        xs = self.x.read(lo, hi)
        return lo + int(np.searchsorted(xs, value, side=side))

    def window(self, x0: float, x1: float, n: int) -> dict:
        """About ``n`` points of ``[x0, x1]``: ``{"x", "y", "source", "points"}`` (points: how
        many of the full series lie in the window)."""
        from hpcjobs.kernels import lttb, minmax_lttb

        n = int(min(max(n, 3), 20_000))
        if not x1 >= x0:
            x0, x1 = x1, x0
        wide = self._summary is not None and self.x is not None and \
            self._summary_count(x0, x1) * self.bin / 2 > 4 * RAW_POINTS
        if not wide:
            i0, i1 = self._index_of(x0, "left"), self._index_of(x1, "right")
            count = i1 - i0
            if count <= RAW_POINTS:
                y = self.y.read(i0, i1)
                x = np.arange(i0, i1, dtype=np.float64) if self.x is None else \
                    self.x.read(i0, i1)
                ok = np.isfinite(y)
                if not ok.all():
                    x, y = x[ok], y[ok]
                if len(y) > n:
                    keep = minmax_lttb(x, y, n)
                    x, y = x[keep], y[keep]
                return _answer(x, y, "raw", count)
        else:
            count = int(self._summary_count(x0, x1) * self.bin / 2)
        if self._summary is None:
            if self.companion is None:
                self.build_summary()
            else:
                cx, cy = self.companion
                sel = (cx >= x0) & (cx <= x1) & np.isfinite(cy)
                return _answer(cx[sel], cy[sel], "companion", count)
        si, sx, sy = self._summary
        a, b = np.searchsorted(sx, x0, side="left"), np.searchsorted(sx, x1, side="right")
        x, y = sx[a:b], sy[a:b]
        if len(y) > n:
            keep = lttb(x, y, n)
            x, y = x[keep], y[keep]
        return _answer(x, y, "summary", count)

    def _summary_count(self, x0: float, x1: float) -> int:
        _, sx, _ = self._summary
        return int(np.searchsorted(sx, x1, side="right") - np.searchsorted(sx, x0, side="left"))


def _answer(x: np.ndarray, y: np.ndarray, source: str, count: int) -> dict:
    return {"x": np.asarray(x, dtype=np.float64).tolist(),
            "y": np.asarray(y, dtype=np.float64).tolist(), "source": source,
            "points": int(count)}
