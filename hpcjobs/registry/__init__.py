"""The kernel registry: what each kernel is, takes and returns, for job files and the CLI.

Each module in this package describes one family of kernels with a module-level ``KERNELS``
list of :class:`KernelSpec`. Modules are discovered, so a new family needs no edit here.
Describing a kernel imports nothing heavy: the adapter named by ``KernelSpec.run`` (a
``"module:function"`` string) is imported only when a job runs it.

An adapter has the signature ``run(inputs: dict[str, dask.array.Array], params: dict) ->
dict[str, numpy.ndarray | dask.array.Array | scalar]``: it receives the step's inputs as Dask
arrays (already checked for rank and dtype kind against the ports) and validated parameters
(defaults filled in), and returns one entry per output port. Dask outputs are written to Zarr
chunk by chunk (resumable); NumPy outputs and scalars are written whole.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hpcjobs.kernels import _validation as v


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()

_KINDS = ("int", "float", "bool", "str", "ints", "floats", "any")


@dataclass(frozen=True)
class Param:
    """One kernel parameter: its type, default, bounds and help.

    ``kind`` is one of ``int``, ``float``, ``bool``, ``str``, ``ints`` (list of ints),
    ``floats`` (list of floats) or ``any``. ``check`` is an optional extra validator
    ``check(value, func) -> value`` raising ``ValueError``/``TypeError`` with a message from
    :func:`hpcjobs.kernels._validation.message`.
    """

    name: str
    kind: str
    default: Any = REQUIRED
    help: str = ""
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[str, ...] | None = None
    length: int | None = None
    nullable: bool = False
    check: Callable[[Any, str], Any] | None = None

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"Param {self.name!r}: kind must be one of {_KINDS}, got {self.kind!r}")

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def validate(self, value: Any, func: str) -> Any:
        """Return the normalised value, or raise ``ValueError``/``TypeError`` naming the problem."""
        if value is None:
            if self.nullable:
                return None
            raise TypeError(v.message(self.name, func, f"{self.describe_type()}", value))
        bounds = dict(low=self.low, high=self.high, low_open=self.low_open,
                      high_open=self.high_open)
        if self.kind == "int":
            value = v.check_int(value, self.name, func, **bounds)
        elif self.kind == "float":
            if isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            value = v.check_float(value, self.name, func, **bounds)
        elif self.kind == "bool":
            value = v.check_bool(value, self.name, func)
        elif self.kind == "str":
            if not isinstance(value, str):
                raise TypeError(v.message(self.name, func, "a string", value))
        elif self.kind == "ints":
            value = v.check_ints(value, self.name, func, length=self.length, low=self.low,
                                 high=self.high)
        elif self.kind == "floats":
            value = _check_floats(value, self.name, func, self.length)
        if self.choices is not None and self.kind == "str":
            value = v.check_choice(value, self.name, func, self.choices)
        if self.check is not None:
            value = self.check(value, func)
        return value

    def describe_type(self) -> str:
        text = {"int": "int", "float": "float", "bool": "bool", "str": "string",
                "ints": "list of ints", "floats": "list of floats", "any": "any"}[self.kind]
        if self.length:
            text = f"{text} (length {self.length})"
        if self.choices:
            text = "one of " + ", ".join(repr(c) for c in self.choices)
        elif self.low is not None or self.high is not None:
            text += " in " + v._interval(self.low, self.high, self.low_open, self.high_open)
        if self.nullable:
            text += " or null"
        return text

    def to_dict(self) -> dict:
        return {"name": self.name, "type": self.describe_type(), "kind": self.kind,
                "required": self.required,
                "default": None if self.required else _jsonable(self.default),
                "help": self.help}


def _check_floats(value, name, func, length):
    what = f"a list of {length} numbers" if length else "a list of numbers"
    if isinstance(value, str) or not hasattr(value, "__len__"):
        raise TypeError(v.message(name, func, what, value))
    out = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, int | float):
            raise TypeError(v.message(name, func, what, value))
        out.append(float(item))
    if length is not None and len(out) != length:
        raise ValueError(v.message(name, func, what, value))
    return tuple(out)


def _jsonable(x):
    if isinstance(x, tuple):
        return [_jsonable(i) for i in x]
    return x


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

    def param(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)

    def input(self, name: str) -> Port | None:
        return next((p for p in self.inputs if p.name == name), None)

    def validate_params(self, given: dict) -> dict:
        """Check ``given`` against the declared parameters and fill in defaults.

        Raises ``KeyError``-free ``ValueError``/``TypeError`` for unknown, missing or bad values.
        """
        unknown = sorted(set(given) - {p.name for p in self.params})
        if unknown:
            valid = ", ".join(p.name for p in self.params) or "none"
            raise ValueError(f"unknown parameter {unknown[0]!r} for kernel {self.name}; "
                             f"valid parameters: {valid}")
        out = {}
        for p in self.params:
            if p.name in given:
                out[p.name] = p.validate(given[p.name], self.name)
            elif p.required:
                raise ValueError(f"missing required parameter {p.name!r} of kernel {self.name} "
                                 f"({p.describe_type()})")
            else:
                out[p.name] = p.default
        if self.check is not None:
            out = self.check(out, self.name)
        return out

    def adapter(self) -> Callable[[dict, dict], dict]:
        return _load(self.run)

    def planner(self) -> Callable | None:
        return _load(self.plan) if self.plan else None

    def to_dict(self) -> dict:
        return {"name": self.name, "family": self.family, "summary": self.summary,
                "params": [p.to_dict() for p in self.params],
                "inputs": [p.to_dict() for p in self.inputs],
                "outputs": [p.to_dict() for p in self.outputs]}


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
