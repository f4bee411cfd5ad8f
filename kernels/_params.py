"""Kernel parameters declared once, as data, next to the kernels that take them.

A :class:`Param` says what one parameter accepts (its kind, bounds or choices), its default
and its help; a :class:`Params` groups a kernel's parameters and, used as a decorator on the
kernel's public function, checks them on every call (as scikit-learn's
``_parameter_constraints`` with ``validate_params``). The framework's registry lists the same
objects for job files (``hpcjobs kernels``), and ``hpcjobs validate`` checks a job's
parameters with them: a Python call and a job file get the same words from
:func:`hpcjobs.kernels._validation.message`.

Each family keeps its declarations in a light module (``kernels/<family>/params.py``, no
Numba), so that the registry can read them without compiling or importing a kernel. The
decorator compares them with the function's signature at import: a default declared in one
place and changed in the other fails at once.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hpcjobs.kernels import _validation as v


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


#: the default of a parameter that has none
REQUIRED: Any = _Required()

_KINDS = ("int", "float", "bool", "str", "ints", "floats", "any")


@dataclass(frozen=True)
class Param:
    """One kernel parameter: its kind, default, bounds and help.

    ``kind`` is one of ``int``, ``float``, ``bool``, ``str``, ``ints`` (list of ints),
    ``floats`` (list of floats) or ``any``. ``check`` is an optional extra validator
    ``check(value, func) -> value`` raising :class:`~hpcjobs.kernels._validation.InvalidInput`
    with a message from :func:`~hpcjobs.kernels._validation.message`. ``kernel_checks`` marks
    a parameter whose Python form is richer than a job file's (an array, a
    ``numpy.random.Generator``): the kernel checks it itself, the declaration checks job files.
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
    kernel_checks: bool = False

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"Param {self.name!r}: kind must be one of {_KINDS}, got {self.kind!r}")

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def validate(self, value: Any, func: str) -> Any:
        """Return the normalised value, or raise ``InvalidInput`` naming the problem."""
        if value is None:
            if self.nullable:
                return None
            raise v.InvalidType(v.message(self.name, func, f"{self.describe_type()}", value))
        bounds = dict(low=self.low, high=self.high, low_open=self.low_open,
                      high_open=self.high_open)
        if self.kind == "int":
            value = v.check_int(value, self.name, func, **bounds)
        elif self.kind == "float":
            value = v.check_float(value, self.name, func, **bounds)
        elif self.kind == "bool":
            value = v.check_bool(value, self.name, func)
        elif self.kind == "str":
            if not isinstance(value, str):
                raise v.InvalidType(v.message(self.name, func, "a string", value))
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
        raise v.InvalidType(v.message(name, func, what, value))
    out = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, int | float):
            raise v.InvalidType(v.message(name, func, what, value))
        out.append(float(item))
    if length is not None and len(out) != length:
        raise v.InvalidInput(v.message(name, func, what, value))
    return tuple(out)


def _jsonable(x):
    if isinstance(x, tuple):
        return [_jsonable(i) for i in x]
    return x


class Params:
    """The declared parameters of one kernel function, named ``func`` in messages.

    ``KMEANS["tol"]`` is one :class:`Param`; ``KMEANS.select("a", "b")`` a few of them (for a
    job-file kernel that offers fewer than the function takes). As a decorator,
    ``@KMEANS`` checks the declared arguments of every call (those not marked
    ``kernel_checks``) before the function runs, with their normalised values passed on.
    """

    def __init__(self, func: str, *params: Param):
        self.func = func
        self.params: tuple[Param, ...] = params
        self._by_name = {p.name: p for p in params}

    def __getitem__(self, name: str) -> Param:
        return self._by_name[name]

    def __iter__(self):
        return iter(self.params)

    def select(self, *names: str) -> tuple[Param, ...]:
        return tuple(self._by_name[n] for n in names)

    def __call__(self, fn: Callable) -> Callable:
        signature = inspect.signature(fn)
        self._agree(fn, signature)
        positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        where = {name: i for i, (name, arg) in enumerate(signature.parameters.items())
                 if arg.kind in positional}
        # (parameter, its position or None): checked where given; a default is the declared
        # one, so it needs no check. No Signature.bind: it would cost more than the checks.
        plan = tuple((p, where.get(p.name)) for p in self.params if not p.kernel_checks)
        func = self.func

        @functools.wraps(fn)
        def checking(*args, **kwargs):
            checked = None
            for p, pos in plan:
                if p.name in kwargs:
                    kwargs[p.name] = p.validate(kwargs[p.name], func)
                elif pos is not None and pos < len(args):
                    if checked is None:
                        checked = list(args)
                    checked[pos] = p.validate(args[pos], func)
            return fn(*(args if checked is None else checked), **kwargs)

        checking.params = self
        return checking

    def _agree(self, fn: Callable, signature: inspect.Signature) -> None:
        """Every declared parameter is one of ``fn``'s, with the same default."""
        for p in self.params:
            arg = signature.parameters.get(p.name)
            if arg is None:
                raise TypeError(f"{fn.__qualname__} has no parameter {p.name!r} (declared for "
                                f"{self.func})")
            default = REQUIRED if arg.default is inspect.Parameter.empty else arg.default
            if default is not p.default and default != p.default:
                raise TypeError(f"{fn.__qualname__}: parameter {p.name!r} defaults to "
                                f"{default!r} in its signature but {p.default!r} in its "
                                "declaration")
