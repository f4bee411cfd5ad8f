"""Read a result group back: its steps, arrays and provenance, for ``hpcjobs show``."""

from __future__ import annotations

from pathlib import Path

from hpcjobs.errors import UserError

PROVENANCE_KEYS = ("job_name", "status", "started", "finished", "host", "user", "slurm_job_id",
                   "hpcjobs_version", "fingerprint")


def open_result(path: str | Path):
    import zarr

    p = Path(path)
    if not p.exists():
        raise UserError(f"{p} does not exist (expected a result group written by hpcjobs)")
    try:
        return zarr.open_group(str(p), mode="r")
    except Exception:  # noqa: BLE001
        raise UserError(f"{p} is not a Zarr group") from None


def summarize(path: str | Path) -> dict:
    """A JSON-able description of the result at ``path``."""
    g = open_result(path)
    attrs = dict(g.attrs)
    steps = []
    for name, node in sorted(g.members(), key=lambda m: _step_order(attrs, m[0])):
        if hasattr(node, "shape"):
            continue
        arrays = []
        for aname, arr in sorted(node.members()):
            if not hasattr(arr, "shape"):
                continue
            arrays.append({"name": aname, "shape": list(arr.shape), "dtype": str(arr.dtype),
                           "chunks": list(arr.chunks) if arr.shape else [],
                           "dims": list(arr.metadata.dimension_names or [])})
        sattrs = dict(node.attrs)
        steps.append({"name": name, "kernel": sattrs.get("kernel"),
                      "status": sattrs.get("status"), "seconds": sattrs.get("seconds"),
                      "params": sattrs.get("params"), "inputs": sattrs.get("inputs"),
                      "arrays": arrays})
    return {"path": str(path), "provenance": {k: attrs.get(k) for k in PROVENANCE_KEYS},
            "versions": attrs.get("versions", {}), "inputs": attrs.get("inputs", {}),
            "runs": attrs.get("runs", []), "steps": steps}


def _step_order(attrs: dict, name: str) -> tuple[int, str]:
    order = attrs.get("steps") or []
    return (order.index(name) if name in order else len(order), name)


def format_summary(info: dict) -> str:
    prov = info["provenance"]
    lines = [f"result  {info['path']}"]
    for key in PROVENANCE_KEYS:
        if prov.get(key) is not None:
            lines.append(f"  {key:<16}{prov[key]}")
    if info["inputs"]:
        for path, arrays in info["inputs"].items():
            shapes = ", ".join(f"{n} {tuple(s) if isinstance(s, list) else s}"
                               for n, s in (arrays or {}).items())
            lines.append(f"  {'input':<16}{path}  [{shapes}]")
    if len(info["runs"]) > 1:
        lines.append(f"  {'runs':<16}{len(info['runs'])} (resumed "
                     f"{len(info['runs']) - 1} time(s))")
    versions = info["versions"]
    if versions:
        lines.append("  versions        " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    for step in info["steps"]:
        secs = f", {step['seconds']:.2f} s" if isinstance(step["seconds"], int | float) else ""
        lines.append("")
        lines.append(f"step {step['name']}  (kernel {step['kernel']}, {step['status']}{secs})")
        if step["params"]:
            lines.append("  params: " + ", ".join(f"{k}={v!r}" for k, v in step["params"].items()))
        if not step["arrays"]:
            lines.append("  (no arrays)")
            continue
        w = max(5, *(len(a["name"]) for a in step["arrays"]))
        lines.append(f"  {'ARRAY':<{w}}  {'SHAPE':<16} {'DTYPE':<10} {'CHUNKS':<16} DIMS")
        for a in step["arrays"]:
            shape = "x".join(map(str, a["shape"])) or "scalar"
            chunks = "x".join(map(str, a["chunks"])) or "-"
            lines.append(f"  {a['name']:<{w}}  {shape:<16} {a['dtype']:<10} {chunks:<16} "
                         f"{', '.join(a['dims'])}")
    return "\n".join(lines)
