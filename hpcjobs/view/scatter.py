"""The scatter of an embedding (pca) coloured by cluster labels (``hpcjobs view``).

Up to :data:`MAX_POINTS` points go to the page as they are (drawn there, coloured by
label); more are aggregated to the pixels of the requested view: ``aggregate2d`` with
``count_cat`` per label (``count`` without labels) over the visible range, chunk by chunk,
shaded by ``shade`` (colours mixed by category, opacity by count), so a zoom re-aggregates
only the range it shows.
"""

from __future__ import annotations

import numpy as np

from hpcjobs.view.chunks import ArrayReader

MAX_POINTS = 20_000
NOISE_COLOR = "#b0b0b0"


class ScatterSource:
    """Components 0 and 1 of an embedding, with the labels of the same rows (or none)."""

    def __init__(self, embedding: ArrayReader, labels: ArrayReader | None):
        self.emb, self.labels = embedding, labels
        self.n = embedding.shape[0]
        self._extent: list | None = None
        self._k: int | None = None

    def _rows(self):
        """(x, y, labels or None) chunk by chunk."""
        step = self.emb.chunks[0]
        for s in range(0, self.n, step):
            e = min(self.n, s + step)
            block = self.emb.read((s, e), (0, min(2, self.emb.shape[1])))
            x = block[:, 0].astype(np.float64)
            y = block[:, 1].astype(np.float64) if block.shape[1] > 1 else np.zeros(e - s)
            lab = None if self.labels is None else self.labels.read((s, e)).astype(np.int64)
            yield x, y, lab

    def extent(self) -> list:
        """``[[xmin, xmax], [ymin, ymax]]`` of the finite points (one pass, kept)."""
        if self._extent is None:
            lo, hi = np.full(2, np.inf), np.full(2, -np.inf)
            kmin, kmax = 0, -1
            for x, y, lab in self._rows():
                for j, v in enumerate((x, y)):
                    v = v[np.isfinite(v)]
                    if v.size:
                        lo[j], hi[j] = min(lo[j], v.min()), max(hi[j], v.max())
                if lab is not None and lab.size:
                    kmin, kmax = min(kmin, int(lab.min())), max(kmax, int(lab.max()))
            lo[~np.isfinite(lo)], hi[~np.isfinite(hi)] = 0.0, 1.0
            pad = np.maximum((hi - lo) * 0.02, 1e-9)
            self._extent = [[float(lo[0] - pad[0]), float(hi[0] + pad[0])],
                            [float(lo[1] - pad[1]), float(hi[1] + pad[1])]]
            self._k = kmax + 1
            self._noise = kmin < 0
        return self._extent

    def clusters(self) -> list[int]:
        """The labels present (-1 first where there is noise), for the legend."""
        self.extent()
        if self.labels is None:
            return []
        return ([-1] if self._noise else []) + list(range(self._k))

    def points(self) -> dict:
        """Every point (only for small embeddings)."""
        xs, ys, labs = [], [], []
        for x, y, lab in self._rows():
            xs.append(x)
            ys.append(y)
            if lab is not None:
                labs.append(lab)
        x, y = np.concatenate(xs), np.concatenate(ys)
        ok = np.isfinite(x) & np.isfinite(y)
        out = {"x": x[ok].tolist(), "y": y[ok].tolist()}
        if labs:
            out["labels"] = np.concatenate(labs)[ok].tolist()
        return out

    def image(self, rng: list, width: int, height: int) -> np.ndarray:
        """The points of ``rng`` aggregated to ``height x width`` pixels, shaded (RGBA, north
        up)."""
        from hpcjobs.kernels import aggregate2d, shade
        from hpcjobs.kernels.viz.shade import CATEGORY_COLORS

        self.extent()
        shape = (int(height), int(width))
        cats = self.labels is not None and self._k > 0
        ncat = self._k + (1 if self._noise else 0)
        total = np.zeros(((ncat,) if cats else ()) + shape, dtype=np.int64)
        for x, y, lab in self._rows():
            ok = (np.isfinite(x) & np.isfinite(y) & (x >= rng[0][0]) & (x <= rng[0][1])
                  & (y >= rng[1][0]) & (y <= rng[1][1]))
            if not ok.any():
                continue
            if cats:
                values = lab[ok] + (1 if self._noise else 0)
                total += aggregate2d(x[ok], y[ok], shape=shape, range=rng, agg="count_cat",
                                     values=values, n_categories=ncat)
            else:
                total += aggregate2d(x[ok], y[ok], shape=shape, range=rng, agg="count")
        if cats:
            key = ([NOISE_COLOR] if self._noise else []) + [
                CATEGORY_COLORS[i % len(CATEGORY_COLORS)] for i in range(self._k)]
            img = shade(total, how="log", color_key=key, min_alpha=120)
        else:
            img = shade(total, how="eq_hist", cmap="viridis")
        return np.ascontiguousarray(img[::-1])
