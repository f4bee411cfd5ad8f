"""Quick-look PNGs of a result group (``hpcjobs preview``).

A result is one Zarr group with a subgroup per step (design.md). What is drawn depends on
what the step holds:

- a pyramid (``multiscales`` attributes): one level, shaded (``--level``; by default the
  largest level that fits 2048 pixels);
- an embedding (``embedding``, n x k): a scatter of the first two components, coloured by a
  ``labels`` array of the same length if the result holds one (e.g. a k-means step);
- a downsampled series (``index`` and ``y``): a line plot with the kept points;
- an RGBA image (``rgba``): shown as is;
- per-category counts (``layers``): colours mixed by category;
- any other 2-D array (``raster`` first): shaded with histogram equalisation;
- any 1-D array: a line plot (downsampled with MinMax-LTTB when long).

Matplotlib (the ``viz`` extra) draws with the Agg backend; nothing needs a display.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from hpcjobs.errors import UserError

_MAX_PIXELS = 2048
_MAX_POINTS = 200_000


def _open(result: Path):
    import zarr

    if not result.exists():
        raise UserError(f"{result}: no such result (expected the Zarr group that "
                        "`hpcjobs run` writes)")
    try:
        return zarr.open_group(str(result), mode="r")
    except Exception as exc:  # noqa: BLE001 - any failure to open is the user's path
        raise UserError(f"{result}: not a Zarr result group ({type(exc).__name__}: {exc})") \
            from None


def _steps(root) -> list[str]:
    names = sorted(name for name, _ in root.groups())
    order = [s for s in (root.attrs.get("steps") or []) if s in names]
    return order + [s for s in names if s not in order]


def _pick_step(root, result: Path, step: str | None) -> str:
    steps = _steps(root)
    if not steps:
        raise UserError(f"{result}: the result holds no steps")
    if step is None:
        return steps[-1]
    if step not in steps:
        raise UserError(f"{result}: no step {step!r}; steps: {', '.join(steps)}")
    return step


def _arrays(group) -> dict:
    return dict(group.arrays())


def _read_raster(arr) -> np.ndarray:
    """A 2-D array read whole, or reduced by 2x steps (mean) until it fits the preview."""
    big = max(arr.shape)
    if big <= _MAX_PIXELS:
        return np.asarray(arr[...])
    import dask.array as da

    from hpcjobs.kernels import pyramid

    levels = math.ceil(math.log2(big / _MAX_PIXELS)) + 1
    x = da.from_zarr(arr)
    if x.dtype.kind in "iub":  # empty count cells stay empty after averaging
        x = da.where(x == 0, np.nan, x.astype(np.float64))
    return np.asarray(pyramid(x, levels, method="mean")[-1].compute())


def _find_labels(root, n: int, prefer: str):
    """A 1-D integer ``labels`` array of length n: in the step itself first, then any step."""
    for name in [prefer] + [s for s in _steps(root) if s != prefer]:
        arrays = _arrays(root[name])
        lab = arrays.get("labels")
        if lab is not None and lab.ndim == 1 and lab.shape[0] == n and lab.dtype.kind in "iu":
            return np.asarray(lab[...]), name
    return None, None


def _figure():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 6), dpi=100)
    return plt, fig, ax


def _extent(attrs, shape):
    rng = attrs.get("range")
    if rng:
        (x0, x1), (y0, y1) = rng
        return [x0, x1, y0, y1]
    return [0, shape[1], 0, shape[0]]


def _show_image(ax, rgba, extent, title):
    ax.set_facecolor("white")
    ax.imshow(rgba, origin="lower", extent=extent, interpolation="nearest",
              aspect="auto" if rgba.shape[0] * 4 < rgba.shape[1] or
              rgba.shape[1] * 4 < rgba.shape[0] else "equal")
    ax.set_title(title)


_MAX_LABELS = 10**8  # cluster sizes are counted from labels up to this many rows


def _centroid_profiles(plt, ax, name: str, arrays: dict) -> str:
    """Each centroid as a line over the columns (what each cluster looks like), with the
    cluster's size from the step's labels when there are not too many of them."""
    C = np.asarray(arrays["centroids"][...], dtype=np.float64)
    k, d = C.shape
    sizes = None
    labels = arrays.get("labels")
    if labels is not None and labels.ndim == 1 and labels.shape[0] <= _MAX_LABELS:
        lab = np.asarray(labels[...])
        sizes = np.bincount(lab[lab >= 0], minlength=k)[:k]
    palette = plt.get_cmap("tab10" if k <= 10 else "tab20").colors
    cols = np.arange(d)
    for j in range(min(k, 20)):
        label = f"{j}" + (f" ({sizes[j]:,} rows)" if sizes is not None else "")
        ax.plot(cols, C[j], marker="o", lw=1.5, color=palette[j % len(palette)], label=label)
    ax.set_xticks(cols)
    ax.set_xlabel("column")
    ax.set_ylabel("centroid value")
    ax.legend(title="cluster", fontsize="small", loc="best")
    what = f"{k} centroids over {d} columns" + (", sizes from labels" if sizes is not None
                                                 else "")
    ax.set_title(f"{name}: {what}")
    return what


def preview(result: str | Path, out: str | Path, *, step: str | None = None,
            level: int | None = None) -> str:
    """Draw one step of a result into a PNG at ``out``; return a one-line description.

    Raises :class:`~hpcjobs.errors.UserError` for a missing result, step or level.
    """
    from hpcjobs.kernels import minmax_lttb, shade

    result = Path(result)
    out = Path(out)
    root = _open(result)
    name = _pick_step(root, result, step)
    group = root[name]
    attrs = dict(group.attrs)
    arrays = _arrays(group)
    ms = attrs.get("multiscales") or (attrs.get("ome") or {}).get("multiscales")
    if level is not None and not ms:
        raise UserError(f"{result}: --level applies to pyramid steps; step {name!r} is not one")
    plt, fig, ax = _figure()
    try:
        if ms:
            paths = [d["path"] for d in ms[0]["datasets"]]
            if level is None:
                level = next((k for k, p in enumerate(paths)
                              if max(arrays[p].shape) <= _MAX_PIXELS), len(paths) - 1)
            if not 0 <= level < len(paths):
                raise UserError(f"{result}: step {name!r} has levels 0 to {len(paths) - 1}; "
                                f"got --level {level}")
            arr = arrays[paths[level]]
            data = _read_raster(arr)
            if arrays[paths[0]].dtype.kind in "iub" and data.dtype.kind == "f":
                data = np.where(data == 0, np.nan, data)  # averaged counts: 0 is still empty
            img = shade(data, how="eq_hist")
            what = f"pyramid level {level} of {len(paths)} {tuple(arr.shape)}"
            _show_image(ax, img, [0, arr.shape[1], 0, arr.shape[0]],
                        f"{name}: {what}, eq_hist")
        elif "embedding" in arrays and arrays["embedding"].ndim == 2:
            emb = arrays["embedding"]
            n = emb.shape[0]
            step_every = max(1, -(-n // _MAX_POINTS))
            pts = np.asarray(emb[::step_every, :2])
            labels, where = _find_labels(root, n, name)
            kw = {"s": 3 if len(pts) > 5000 else 10, "linewidths": 0}
            ys = pts[:, 1] if pts.shape[1] > 1 else np.zeros(len(pts))
            if labels is not None:
                lab = labels[::step_every]
                values = np.unique(lab)
                palette = plt.get_cmap("tab10" if len(values) <= 10 else "tab20").colors
                for i, value in enumerate(values[:20]):
                    sel = lab == value
                    color = "#b0b0b0" if value < 0 else palette[i % len(palette)]
                    name_ = "noise" if value < 0 else str(value)
                    ax.scatter(pts[sel, 0], ys[sel], color=color, label=name_, **kw)
                ax.legend(title=f"{where}/labels", loc="best", fontsize="small",
                          markerscale=3)
                what = f"embedding {tuple(emb.shape)} coloured by {where}/labels"
            else:
                ax.scatter(pts[:, 0], ys, alpha=0.5 if len(pts) > 20000 else 1.0, **kw)
                what = f"embedding {tuple(emb.shape)}"
            if step_every > 1:
                what += f", every {step_every}th point"
            ax.set_xlabel("component 1")
            ax.set_ylabel("component 2")
            ax.set_title(f"{name}: {what}")
        elif "centroids" in arrays and arrays["centroids"].ndim == 2:
            what = _centroid_profiles(plt, ax, name, arrays)
        elif "y" in arrays and "index" in arrays and arrays["y"].ndim == 1:
            y = np.asarray(arrays["y"][...])
            x = np.asarray(arrays["x"][...]) if "x" in arrays else np.asarray(
                arrays["index"][...])
            ax.plot(x, y, lw=1, color="#1f77b4")
            ax.plot(x, y, ".", ms=2, color="#d62728")
            ax.set_xlabel("x")
            ax.set_ylabel("y")
            method = attrs.get("method", "downsampled")
            what = f"{method} series, {len(y)} points kept"
            ax.set_title(f"{name}: {what}")
        elif "rgba" in arrays and arrays["rgba"].ndim == 3:
            img = np.asarray(arrays["rgba"][...])
            what = f"image {img.shape[:2]}"
            _show_image(ax, img, [0, img.shape[1], 0, img.shape[0]], f"{name}: {what}")
        elif "layers" in arrays and arrays["layers"].ndim == 3:
            layers = np.asarray(arrays["layers"][...])
            img = shade(layers, how="eq_hist")
            what = f"{layers.shape[0]} categories {layers.shape[1:]}"
            _show_image(ax, img, _extent(attrs, layers.shape[1:]), f"{name}: {what}")
            from matplotlib.patches import Patch

            from hpcjobs.kernels.viz.shade import CATEGORY_COLORS

            ax.legend(handles=[Patch(color=CATEGORY_COLORS[k % 10], label=str(k))
                               for k in range(min(layers.shape[0], 20))],
                      title="category", fontsize="small", loc="upper right")
        else:
            two_d = [k for k, a in arrays.items() if a.ndim == 2]
            one_d = [k for k, a in arrays.items() if a.ndim == 1 and a.shape[0] > 1
                     and a.dtype.kind in "fiu"]
            if two_d:
                key = "raster" if "raster" in two_d else two_d[0]
                arr = arrays[key]
                img = shade(_read_raster(arr), how="eq_hist")
                what = f"{key} {tuple(arr.shape)}"
                _show_image(ax, img, _extent(attrs, arr.shape), f"{name}: {what}, eq_hist")
            elif one_d:
                key = one_d[0]
                y = np.asarray(arrays[key][...], dtype=np.float64)
                idx = np.arange(len(y))
                if len(y) > 4000 and np.isfinite(y).all():
                    idx = minmax_lttb(None, y, 2000)
                ax.plot(idx, y[idx], lw=1)
                ax.set_xlabel("index")
                ax.set_ylabel(key)
                what = f"{key} ({len(y)} values)"
                ax.set_title(f"{name}: {what}")
            else:
                shown = ", ".join(f"{k} {tuple(a.shape)}" for k, a in arrays.items()) or "none"
                raise UserError(f"{result}: nothing to preview in step {name!r} (arrays: "
                                f"{shown})")
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.tight_layout()
        fig.savefig(out)
    finally:
        plt.close(fig)
    return f"step {name}: {what}"
