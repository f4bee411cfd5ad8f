"""What ``hpcjobs view`` shows of a result group: its steps, the view each step's kernel calls
for, and where each view's data lives (the result itself, or the job's input group).

The layout is the one ``hpcjobs run`` writes (README, "What a result looks like"): one
subgroup per step with attributes ``kernel``, ``params`` and ``inputs`` (the job file's
references, e.g. ``"readings[:, 0]"`` or ``"density/raster"``), provenance on the root (its
``inputs`` key names the input group). A downsampling step holds only the points it kept: its
full series is found again from the step's ``inputs``, so that every zoom can go back to it.
Big arrays are never read whole here: views get small arrays in the description, and sources
(:mod:`hpcjobs.view.tiles`, :mod:`hpcjobs.view.series`) that read windows of the big ones.
"""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path

import numpy as np

from hpcjobs.errors import UserError
from hpcjobs.jobspec import _REF_RE
from hpcjobs.view.chunks import ArrayReader
from hpcjobs.view.scatter import MAX_POINTS, ScatterSource
from hpcjobs.view.series import Column, SeriesSource
from hpcjobs.view.tiles import MapSource

SERIES_KERNELS = ("lttb", "minmax", "m4", "minmax_lttb")
MAX_TABLE_ROWS = 5000       # itemsets and rules sent to the page (the best by support)
SMALL_ARRAY = 1 << 16       # arrays up to this many values go into the description whole


def parse_index(text: str | None) -> tuple | None:
    """``"[:, 0]"``'s inside (``":, 0"``) as a tuple of ints and slices (None for none)."""
    if text is None:
        return None
    items: list = []
    for part in text.split(","):
        part = part.strip()
        if ":" in part:
            items.append(slice(*(int(b) if b.strip() else None for b in part.split(":"))))
        else:
            items.append(int(part))
    return tuple(items)


class Result:
    """A result group opened for viewing (read-only)."""

    def __init__(self, path: str | Path):
        from hpcjobs.preview import _open, _steps

        self.path = Path(path)
        self.root = _open(self.path)
        self.attrs = dict(self.root.attrs)
        self.steps = _steps(self.root)
        if not self.steps:
            raise UserError(f"{self.path}: the result holds no steps (expected the Zarr group "
                            "that `hpcjobs run` writes)")
        self.step_attrs = {s: dict(self.root[s].attrs) for s in self.steps}
        self.step_arrays = {s: dict(self.root[s].arrays()) for s in self.steps}
        self._maps: dict[str, MapSource] = {}
        self._series: dict[tuple[str, str], SeriesSource] = {}
        self._scatters: dict[str, ScatterSource] = {}
        self._lock = threading.Lock()
        self._scratch = tempfile.TemporaryDirectory(prefix="hpcjobs-view-")

    def close(self) -> None:
        self._scratch.cleanup()

    # -- finding arrays ------------------------------------------------------------------

    def input_group(self) -> Path | None:
        """The job's input group (the root's ``inputs`` key), if it still exists."""
        for key in (self.attrs.get("inputs") or {}):
            p = Path(key)
            if not p.is_absolute() and self.attrs.get("job_file"):
                p = Path(self.attrs["job_file"]).parent / p
            if p.exists():
                return p
        return None

    def resolve(self, ref: str) -> tuple[Path, tuple | None] | None:
        """The array folder and index a job-file reference points to (None if gone)."""
        m = _REF_RE.match(ref.strip())
        if not m:
            return None
        path = m.group("path").strip("/")
        index = parse_index(m.group("index"))
        head, _, rest = path.partition("/")
        if rest and head in self.steps:
            p = self.path / head / rest
        else:
            group = self.input_group()
            if group is None:
                return None
            p = group / path
        return (p, index) if (p / "zarr.json").exists() else None

    def check_step(self, step: str) -> str:
        if step not in self.step_arrays:
            raise KeyError(f"no step {step!r}; steps: {', '.join(self.steps)}")
        return step

    def small(self, step: str, name: str) -> np.ndarray:
        """A step's array read whole (only ever called for small ones)."""
        return np.asarray(self.step_arrays[step][name][...])

    def reader(self, step: str, name: str) -> ArrayReader:
        return ArrayReader(self.path / step / name)

    # -- the page's description ----------------------------------------------------------

    def summary(self) -> dict:
        """Provenance, steps and arrays (as ``hpcjobs show``), each step with its view."""
        from hpcjobs.show import summarize

        info = summarize(self.path)
        info["job"] = self.attrs.get("job")
        for step in info["steps"]:
            try:
                step["view"] = self.view(step["name"])
            except Exception as exc:  # noqa: BLE001 - one odd step must not hide the rest
                step["view"] = {"kind": "none", "note": f"{type(exc).__name__}: {exc}"}
        return _jsonable(info)

    def kernel(self, step: str) -> str | None:
        return self.step_attrs[step].get("kernel")

    def view(self, step: str) -> dict:
        """What the page draws for ``step``: a dict with ``kind`` and that kind's data."""
        attrs, arrays, kernel = self.step_attrs[step], self.step_arrays[step], self.kernel(step)
        if self._map_levels(step):
            return self._map_view(step)
        if kernel in SERIES_KERNELS or attrs.get("hpcjobs_kind") == "series":
            return self._series_view(step)
        if kernel == "matrix_profile":
            return self._profile_view(step)
        if "embedding" in arrays and arrays["embedding"].ndim == 2:
            return self._scatter_view(step)
        if "centroids" in arrays:
            return self._kmeans_view(step)
        if kernel == "describe":
            return self._describe_view(step)
        if kernel == "frequent_itemsets":
            return self._itemsets_view(step)
        if kernel == "association_rules":
            return self._rules_view(step)
        if kernel in ("discords", "motifs"):
            return {"kind": "markers", "of": kernel, "note": "marked on the matrix profile's view",
                    **self._marker_table(step)}
        lines = [n for n, a in arrays.items() if a.ndim == 1 and a.shape[0] > 1
                 and a.dtype.kind == "f"]
        if lines:  # per-row scores (knn_outliers, lof): a zoomable line of each
            return {"kind": "series", "markers": [], "panels": [
                {"source": n, "label": f"{step}/{n}", "n": int(arrays[n].shape[0]),
                 "x_range": [0.0, float(arrays[n].shape[0] - 1)]} for n in sorted(lines)[:3]]}
        return {"kind": "arrays", "note": f"no view of {kernel or 'this step'}'s outputs: "
                                          "its arrays are listed below"}

    # -- maps -----------------------------------------------------------------------------

    def _map_levels(self, step: str) -> list[str]:
        """The arrays that make a step's map, finest first (none: not a map)."""
        attrs, arrays = self.step_attrs[step], self.step_arrays[step]
        ms = attrs.get("multiscales") or (attrs.get("ome") or {}).get("multiscales")
        if ms:
            return [d["path"] for d in ms[0]["datasets"] if d["path"] in arrays]
        for name, ndim in (("raster", 2), ("layers", 3)):
            if name in arrays and arrays[name].ndim == ndim and min(arrays[name].shape) > 0:
                return [name]
        return []

    def _extent(self, step: str) -> list | None:
        """The data extent of a step's raster: its own ``range``, or that of the raster it
        was made from (a pyramid or a shade of an aggregate2d step)."""
        seen = set()
        while step not in seen:
            seen.add(step)
            rng = self.step_attrs[step].get("range")
            if rng:
                return rng
            refs = list((self.step_attrs[step].get("inputs") or {}).values())
            heads = [r.split("/")[0] for r in refs if r.split("/")[0] in self.steps]
            if not heads:
                return None
            step = heads[0]
        return None

    def map_source(self, step: str) -> MapSource:
        self.check_step(step)
        with self._lock:
            if step not in self._maps:
                names = self._map_levels(step)
                if not names:
                    raise KeyError(f"step {step!r} has no raster or pyramid")
                levels = [self.reader(step, n) for n in names]
                base = self.step_arrays[step][names[0]]
                empty_is_zero = base.dtype.kind in "iub" or self._counts(step)
                self._maps[step] = MapSource(levels, empty_is_zero=empty_is_zero,
                                             derive_into=Path(self._scratch.name) / step)
            return self._maps[step]

    def _counts(self, step: str) -> bool:
        """A pyramid of a count raster (its averaged levels are floats, 0 still empty)."""
        for ref in (self.step_attrs[step].get("inputs") or {}).values():
            found = self.resolve(ref)
            if found is not None:
                import zarr

                return zarr.open_array(str(found[0]), mode="r").dtype.kind in "iub"
        return False

    def _map_view(self, step: str) -> dict:
        src = self.map_source(step)
        params = self.step_attrs[step].get("params") or {}
        return {"kind": "map", **src.describe(), "extent": self._extent(step),
                "categories": src.categories,
                "how": params.get("how", "eq_hist"), "cmap": params.get("cmap", "viridis")}

    # -- series ---------------------------------------------------------------------------

    def series_source(self, step: str, source: str) -> SeriesSource:
        self.check_step(step)
        with self._lock:
            key = (step, source)
            if key not in self._series:
                self._series[key] = self._make_series(step, source)
            return self._series[key]

    def _column(self, ref: str | None) -> Column | None:
        found = self.resolve(ref) if ref else None
        if found is None:
            return None
        return Column(ArrayReader(found[0]), found[1])

    def _make_series(self, step: str, source: str) -> SeriesSource:
        inputs = self.step_attrs[step].get("inputs") or {}
        if source == "full":
            y = self._column(inputs.get("y") or inputs.get("T"))
            if y is None:
                raise KeyError(f"the full series of step {step!r} is not found")
            x = self._column(inputs.get("x")) if "x" in inputs else None
            companion = None
            if "y" in self.step_arrays[step] and "x" in self.step_arrays[step]:
                companion = (self.small(step, "x").astype(np.float64),
                             self.small(step, "y").astype(np.float64))
            return SeriesSource(y, x, companion)
        if source in self.step_arrays[step] and self.step_arrays[step][source].ndim == 1:
            return SeriesSource(Column(self.reader(step, source)))
        raise KeyError(f"step {step!r} has no series {source!r}")

    def start_summaries(self) -> None:
        """Build every series' summary in the background (the server calls it once)."""
        for step in self.steps:
            view_sources = []
            kernel = self.kernel(step)
            if kernel in SERIES_KERNELS:
                view_sources = ["full"]
            elif kernel == "matrix_profile":
                view_sources = ["full", "profile"]
            for source in view_sources:
                try:
                    self.series_source(step, source).build_in_background()
                except (KeyError, ValueError):
                    pass

    def _series_view(self, step: str) -> dict:
        inputs = self.step_attrs[step].get("inputs") or {}
        view = {"kind": "series", "panels": [], "markers": []}
        try:
            src = self.series_source(step, "full")
        except (KeyError, ValueError) as exc:
            view["note"] = f"zooming shows the kept points only ({exc})"
            view["panels"].append({"source": "y", "label": f"{step}/y (kept points)",
                                   "n": int(self.step_arrays[step]["y"].shape[0]),
                                   "x_range": _range(self.small(step, "x"))})
            return view
        view["panels"].append({"source": "full", "label": inputs.get("y"), "n": src.n,
                               "x_range": list(src.x_range()),
                               "kept": int(self.step_arrays[step]["y"].shape[0])})
        return view

    def _profile_view(self, step: str) -> dict:
        attrs = self.step_attrs[step]
        m = int((attrs.get("params") or {}).get("m") or 1)
        view = {"kind": "series", "m": m, "panels": [], "markers": []}
        t_ref = (attrs.get("inputs") or {}).get("T")
        try:
            src = self.series_source(step, "full")
            view["panels"].append({"source": "full", "label": t_ref, "n": src.n,
                                   "x_range": list(src.x_range())})
        except (KeyError, ValueError) as exc:
            view["note"] = f"the series itself is not found ({exc})"
        prof = self.series_source(step, "profile")
        view["panels"].append({"source": "profile", "label": f"{step}/profile", "n": prof.n,
                               "x_range": list(prof.x_range())})
        for other in self.steps:
            ref = (self.step_attrs[other].get("inputs") or {}).get("profile", "")
            if self.kernel(other) in ("discords", "motifs") and ref.split("/")[0] == step:
                for row in self._marker_table(other)["rows"]:
                    for start in row["starts"]:
                        view["markers"].append({"kind": self.kernel(other)[:-1], "step": other,
                                                "start": start, "length": m,
                                                "distance": row["distance"]})
        return view

    def _marker_table(self, step: str) -> dict:
        idx = self.small(step, "index")
        dist = self.small(step, "distance").reshape(-1)
        idx = idx.reshape(len(dist), -1) if len(dist) else idx.reshape(0, 1)
        rows = [{"starts": [int(i) for i in r if i >= 0], "distance": _num(d)}
                for r, d in zip(idx, dist, strict=True) if (r >= 0).any()]
        return {"rows": rows}

    # -- embeddings, clusters, tables -----------------------------------------------------

    def labels_for(self, n: int, prefer: str) -> str | None:
        """The step holding a 1-D integer ``labels`` array of length n, if any."""
        for name in [prefer] + [s for s in self.steps if s != prefer]:
            lab = self.step_arrays[name].get("labels")
            if lab is not None and lab.ndim == 1 and lab.shape[0] == n and lab.dtype.kind in "iu":
                return name
        return None

    def scatter_source(self, step: str) -> ScatterSource:
        self.check_step(step)
        with self._lock:
            if step not in self._scatters:
                if "embedding" not in self.step_arrays[step]:
                    raise KeyError(f"step {step!r} has no embedding")
                n = self.step_arrays[step]["embedding"].shape[0]
                where = self.labels_for(n, step)
                self._scatters[step] = ScatterSource(
                    self.reader(step, "embedding"),
                    None if where is None else self.reader(where, "labels"))
            return self._scatters[step]

    def _scatter_view(self, step: str) -> dict:
        emb = self.step_arrays[step]["embedding"]
        src = self.scatter_source(step)
        view = {"kind": "scatter", "n": int(emb.shape[0]), "components": int(emb.shape[1]),
                "labels": self.labels_for(emb.shape[0], step), "extent": src.extent(),
                "aggregated": src.n > MAX_POINTS, "clusters": src.clusters()}
        if "explained_variance_ratio" in self.step_arrays[step]:
            view["explained"] = _finite_list(self.small(step, "explained_variance_ratio"))
        return view

    def _kmeans_view(self, step: str) -> dict:
        arrays = self.step_arrays[step]
        C = self.small(step, "centroids").astype(np.float64)
        view = {"kind": "kmeans", "centroids": _finite_list(C), "sizes": None}
        for key in ("inertia", "n_iter"):
            if key in arrays:
                view[key] = _num(self.small(step, key))
        if "labels" in arrays and arrays["labels"].ndim == 1:
            view["sizes"] = self.cluster_sizes(step, C.shape[0]).tolist()
        return view

    def cluster_sizes(self, step: str, k: int) -> np.ndarray:
        """Rows per cluster, counted chunk by chunk from the step's labels."""
        reader = self.reader(step, "labels")
        out = np.zeros(k, dtype=np.int64)
        for s in range(0, reader.shape[0], reader.chunks[0]):
            lab = reader.read((s, s + reader.chunks[0])).astype(np.int64)
            lab = lab[(lab >= 0) & (lab < k)]
            out += np.bincount(lab, minlength=k)[:k]
        return out

    def _describe_view(self, step: str) -> dict:
        out = {"kind": "describe"}
        for key in ("count", "mean", "std", "min", "max", "hist", "bin_edges"):
            if key in self.step_arrays[step]:
                out[key] = _finite_list(self.small(step, key))
        return out

    def _item_labels(self, step: str):
        """Item names: the step's own ``labels``, or those of the step its inputs come from."""
        if "labels" in self.step_arrays[step]:
            return self.small(step, "labels")
        for ref in (self.step_attrs[step].get("inputs") or {}).values():
            head = ref.split("/")[0]
            if head in self.steps and "labels" in self.step_arrays[head]:
                return self.small(head, "labels")
        return None

    def _itemsets_view(self, step: str) -> dict:
        a = {k: self.small(step, k) for k in ("indptr", "items", "support", "counts")}
        labels = self._item_labels(step)
        order = np.argsort(-a["support"], kind="stable")[:MAX_TABLE_ROWS]
        rows = []
        for i in order.tolist():
            items = a["items"][a["indptr"][i]:a["indptr"][i + 1]]
            rows.append([", ".join(_names(items, labels)), int(len(items)),
                         _num(a["support"][i]), int(a["counts"][i])])
        return {"kind": "table", "columns": ["itemset", "size", "support", "count"],
                "rows": rows, "total": int(len(a["support"]))}

    def _rules_view(self, step: str) -> dict:
        a = {k: self.small(step, k) for k in self.step_arrays[step]}
        labels = self._item_labels(step)
        metrics = [k for k in ("support", "confidence", "lift", "leverage", "conviction")
                   if k in a]
        order = np.argsort(-a["support"], kind="stable")[:MAX_TABLE_ROWS]
        rows = []
        for i in order.tolist():
            ante = a["antecedent_items"][a["antecedent_indptr"][i]:a["antecedent_indptr"][i + 1]]
            cons = a["consequent_items"][a["consequent_indptr"][i]:a["consequent_indptr"][i + 1]]
            rows.append([", ".join(_names(ante, labels)), ", ".join(_names(cons, labels)),
                         *(_num(a[k][i]) for k in metrics)])
        return {"kind": "table", "columns": ["antecedent", "consequent", *metrics],
                "rows": rows, "total": int(len(a["support"]))}


def _names(items: np.ndarray, labels) -> list[str]:
    if labels is None:
        return [str(int(i)) for i in items]
    return [str(labels[int(i)]) if 0 <= int(i) < len(labels) else str(int(i)) for i in items]


def _num(v):
    v = float(np.asarray(v))
    return v if np.isfinite(v) else None


def _range(a: np.ndarray) -> list[float]:
    a = np.asarray(a, dtype=np.float64)
    a = a[np.isfinite(a)]
    return [float(a.min()), float(a.max())] if a.size else [0.0, 1.0]


def _finite_list(a: np.ndarray):
    """A JSON-able nested list; NaN and inf become null."""
    a = np.asarray(a, dtype=np.float64)
    obj = a.astype(object)
    obj[~np.isfinite(a)] = None
    return obj.tolist()


def _jsonable(value):
    """``value`` with NumPy types as Python ones and non-finite floats as None (strict JSON)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)
