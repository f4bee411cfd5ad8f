"""The kernel registry: what each kernel is, takes and returns, for job files and the CLI.

Each module in this package describes one family of kernels with a module-level ``KERNELS``
list of :class:`KernelSpec`. Modules are discovered, so a new family needs no edit here.
Describing a kernel imports nothing heavy: the adapter named by ``KernelSpec.run`` (a
``"module:function"`` string) is imported only when a job runs it.

An adapter has the signature ``run(inputs: dict[str, dask.array.Array], params: dict) ->
(outputs, attrs)``: it receives the step's inputs as Dask arrays (already checked for rank and
dtype kind against the ports) and validated parameters (defaults filled in), and returns
``outputs`` (port name -> ``numpy.ndarray | dask.array.Array | scalar``, one per output port)
and ``attrs`` (JSON-able, merged into the step's group attributes; ``{}`` for none). Dask
outputs are written to Zarr chunk by chunk (resumable); NumPy outputs and scalars are written
whole.

A kernel's parameters are not declared here but next to the kernel, in
``hpcjobs.kernels.<family>.params`` (:class:`~hpcjobs.kernels._params.Params`): a spec lists
those declarations (``params=KMEANS.params``), which the kernel also checks its calls with.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hpcjobs.kernels._params import REQUIRED, Param, Params
from hpcjobs.kernels._validation import InvalidInput

__all__ = ["REQUIRED", "KernelSpec", "Param", "Params", "Port", "all_kernels", "get"]


@dataclass(frozen=True)
class Port:
    """An input or output of a kernel.

    ``dims`` names each dimension (outputs carry them to Zarr as ``dimension_names`` so xarray
    can read results; names must be unique within a step). For inputs, ``kinds`` lists the
    accepted dtype kinds (NumPy ``dtype.kind`` letters) and ``optional`` marks ports that may be
    left out. ``dtype`` documents an output's dtype. ``kind`` is ``"array"`` or ``"csr"``
    (a group with ``indptr``, ``items`` and ``labels``, as ``hpcjobs ingest`` writes baskets).
    ``shape_of`` names the input port whose shape (and chunks) an output always has: a step
    that reads it can warm up on a stand-in at once, without waiting for this step's warm-up.
    ``keep_dims``: an output named with ``*`` whose matches all keep ``dims`` as they are
    (pyramid levels: OME-NGFF 0.5 wants each level's ``dimension_names`` to be the axes'
    names) instead of taking the key's suffix.
    """

    name: str
    dims: tuple[str, ...]
    help: str = ""
    dtype: str = "float64"
    kinds: str = "fiub"
    optional: bool = False
    kind: str = "array"
    shape_of: str | None = None
    keep_dims: bool = False

    @property
    def ndim(self) -> int:
        return len(self.dims)

    def to_dict(self) -> dict:
        d = {"name": self.name, "dims": list(self.dims), "dtype": self.dtype, "kind": self.kind,
             "help": self.help}
        if self.optional:
            d["optional"] = True
        return d


@dataclass(frozen=True)
class KernelSpec:
    """A kernel as the framework sees it.

    The last three fields serve warm-ups (``hpcjobs.warmup``), which run a kernel on a small
    input to fill Numba's cache before a job's workers need it: ``example`` gives the required
    parameters for a run on made-up data (``hpcjobs warmup KERNEL``); ``example_from`` names
    the kernel whose outputs are this one's inputs there (by port name); ``warm_rows`` is the
    size of a warm-up input: small, yet past the kernel's size thresholds, so that it takes
    the code paths that a job's chunks take.

    ``plan`` (a ``"module:function"`` string) is set for kernels that are one pass of
    reductions: ``plan(inputs, params, extents) -> hpcjobs.passes.Plan | None``. The runner
    computes the plans of consecutive steps together, one pass over the inputs they share
    (``hpcjobs.passes``), and gives ``extents`` (port -> ``(4, columns)`` rows of
    ``column_extremes``, from per-chunk statistics, or None) for the ports named in
    ``extents``. A planner that returns None leaves the step to its adapter.
    """

    name: str
    family: str
    summary: str
    run: str
    inputs: tuple[Port, ...]
    outputs: tuple[Port, ...]
    params: tuple[Param, ...] = field(default_factory=tuple)
    example: dict[str, Any] = field(default_factory=dict)
    example_from: str | None = None
    warm_rows: int = 1 << 16
    plan: str | None = None
    extents: tuple[str, ...] = ()
    #: ``check(params, func) -> params`` for rules between parameters (e.g. a raster's
    #: size from its shape and layers), after each parameter passed its own checks
    check: Callable[[dict, str], dict] | None = None

    def input(self, name: str) -> Port | None:
        return next((p for p in self.inputs if p.name == name), None)

    def validate_params(self, given: dict) -> dict:
        """Check ``given`` against the declared parameters and fill in defaults.

        Raises :class:`~hpcjobs.kernels._validation.InvalidInput` for unknown, missing or bad
        values.
        """
        unknown = sorted(set(given) - {p.name for p in self.params})
        if unknown:
            valid = ", ".join(p.name for p in self.params) or "none"
            raise InvalidInput(f"unknown parameter {unknown[0]!r} for kernel {self.name}; "
                               f"valid parameters: {valid}")
        out = {}
        for p in self.params:
            if p.name in given:
                out[p.name] = p.validate(given[p.name], self.name)
            elif p.required:
                raise InvalidInput(f"missing required parameter {p.name!r} of kernel {self.name} "
                                   f"({p.describe_type()})")
            else:
                out[p.name] = p.default
        if self.check is not None:
            out = self.check(out, self.name)
        return out

    def adapter(self) -> Callable[[dict, dict], tuple[dict, dict] | dict]:
        return _load(self.run)

    def planner(self) -> Callable | None:
        return _load(self.plan) if self.plan else None

    def to_dict(self) -> dict:
        return {"name": self.name, "family": self.family, "summary": self.summary,
                "params": [p.to_dict() for p in self.params],
                "inputs": [p.to_dict() for p in self.inputs],
                "outputs": [p.to_dict() for p in self.outputs]}


def adapter_result(result) -> tuple[dict, dict]:
    """An adapter's (or a plan's) ``(outputs, attrs)``; an adapter that returns its outputs
    alone, as a dict, has no attributes to add."""
    if isinstance(result, dict):
        return result, {}
    outputs, attrs = result
    return outputs, attrs


def _load(target: str):
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


_REGISTRY: dict[str, KernelSpec] | None = None


def all_kernels() -> dict[str, KernelSpec]:
    """Every registered kernel by name, discovered from this package's modules."""
    global _REGISTRY
    if _REGISTRY is None:
        found: dict[str, KernelSpec] = {}
        for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
            if info.name.startswith("_"):
                continue
            module = importlib.import_module(f"{__name__}.{info.name}")
            for spec in getattr(module, "KERNELS", ()):
                if spec.name in found:
                    raise RuntimeError(f"kernel {spec.name!r} registered twice")
                found[spec.name] = spec
        _REGISTRY = dict(sorted(found.items()))
    return _REGISTRY


def get(name: str) -> KernelSpec:
    """The spec of kernel ``name``; ``LookupError`` listing the known names if there is none."""
    kernels = all_kernels()
    try:
        return kernels[name]
    except KeyError:
        raise LookupError(f"unknown kernel {name!r}; known kernels: {', '.join(kernels)}") from None
