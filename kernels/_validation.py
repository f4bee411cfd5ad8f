"""Argument checks shared by every kernel, with one message template.

A message names the parameter, the function, what was expected and what was found, e.g.
``The 'n_clusters' parameter of kmeans must be an int in the range [1, inf). Got 0 instead.``
The framework's job-file validation calls the same helpers, so a job file and a Python call
get the same words. Functions with a leading ``_`` elsewhere assume these checks were done.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Sequence

import numpy as np

#: the most cells of a histogram or raster one kernel call builds (describe: bins x columns;
#: aggregate2d: n_categories x ny x nx): 2**26, e.g. 8192 x 8192. Such a raster of int64 or
#: float64 takes 512 MiB, and every chunk (and thread) being summarised holds its own.
MAX_CELLS = 2**26


class InvalidInput(ValueError):
    """An argument or input a kernel refuses: the one type validation raises, so that a
    caller (``hpcjobs run``) can tell bad input from a failure and catch exactly it."""


class InvalidType(InvalidInput, TypeError):
    """:class:`InvalidInput` of the wrong type (also a ``TypeError``, as Python's own)."""


def check_cells(cells: int, name: str, func: str, what: str, got: object) -> None:
    """Refuse a result of more than :data:`MAX_CELLS` cells (``what`` says how they count)
    before anything is allocated."""
    if cells > MAX_CELLS:
        raise InvalidInput(message(name, func, f"at most {MAX_CELLS:,} cells in all ({what}, "
                                               "e.g. 8192 x 8192)", got))


def message(name: str, func: str, expected: str, got: object, fix: str = "") -> str:
    """The one message template: parameter, function, expectation, value and (optionally) the fix."""
    text = f"The {name!r} parameter of {func} must be {expected}. Got {_show(got)} instead."
    return f"{text} {fix}".rstrip()


def _show(value: object) -> str:
    if isinstance(value, np.ndarray) or is_dask(value):
        return f"an array of shape {tuple(value.shape)} and dtype {value.dtype}"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def is_dask(x: object) -> bool:
    """True for Dask collections, without importing Dask."""
    return hasattr(x, "__dask_graph__") and callable(getattr(x, "__dask_graph__", None))


def _interval(low, high, low_open, high_open) -> str:
    lo = "-inf" if low is None else f"{low}"
    hi = "inf" if high is None else f"{high}"
    return f"{'(' if low_open or low is None else '['}{lo}, {hi}{')' if high_open or high is None else ']'}"


def _in_bounds(v, low, high, low_open, high_open) -> bool:
    if low is not None and (v <= low if low_open else v < low):
        return False
    if high is not None and (v >= high if high_open else v > high):
        return False
    return True


def check_int(value, name: str, func: str, *, low=None, high=None, low_open=False,
              high_open=False) -> int:
    """Return ``value`` as an int if it is an integer inside the bounds, else raise."""
    ok_type = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if not ok_type or not _in_bounds(value, low, high, low_open, high_open):
        expected = f"an int in the range {_interval(low, high, low_open, high_open)}"
        exc = InvalidType if not ok_type else InvalidInput
        raise exc(message(name, func, expected, value))
    return int(value)


def check_float(value, name: str, func: str, *, low=None, high=None, low_open=False,
                high_open=False) -> float:
    """Return ``value`` as a finite float inside the bounds, else raise."""
    ok_type = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not ok_type or not math.isfinite(value) or not _in_bounds(
        value, low, high, low_open, high_open
    ):
        expected = f"a finite float in the range {_interval(low, high, low_open, high_open)}"
        exc = InvalidType if not ok_type else InvalidInput
        raise exc(message(name, func, expected, value))
    return float(value)


def check_bool(value, name: str, func: str) -> bool:
    if not isinstance(value, bool | np.bool_):
        raise InvalidType(message(name, func, "a bool (true or false)", value))
    return bool(value)


def check_choice(value, name: str, func: str, choices: Iterable[str]) -> str:
    choices = list(choices)
    if value not in choices:
        shown = ", ".join(repr(c) for c in choices)
        raise InvalidInput(message(name, func, f"one of {shown}", value))
    return value


def check_ints(value, name: str, func: str, *, length: int | None = None, low=None,
               high=None) -> tuple[int, ...]:
    """A sequence of ints of a given length (e.g. a raster ``shape``)."""
    what = f"a list of {length} ints" if length else "a list of ints"
    if low is not None or high is not None:
        what += f" each in the range {_interval(low, high, False, False)}"
    if not isinstance(value, Sequence | np.ndarray) or isinstance(value, str):
        raise InvalidType(message(name, func, what, value))
    items = list(value)
    if length is not None and len(items) != length:
        raise InvalidInput(message(name, func, what, value))
    for item in items:
        ok = isinstance(item, numbers.Integral) and not isinstance(item, bool)
        if not ok or not _in_bounds(item, low, high, False, False):
            raise InvalidInput(message(name, func, what, value))
    return tuple(int(i) for i in items)


def check_array(X, name: str, func: str, *, ndim: int | tuple[int, ...] | None = None,
                kinds: str = "fiub", min_len: int = 1, float_out: bool = True,
                allow_nan: bool = False, fix: str = ""):
    """Check an input array's rank, dtype kind and length; NumPy inputs are also checked for NaN.

    Returns a NumPy array (C-contiguous, float64 unless already float32 when ``float_out``)
    or the Dask array unchanged but for the dtype cast. Dask inputs cannot be checked for NaN
    without computing them: kernels check each chunk as they read it.
    """
    if X is None:
        raise InvalidType(message(name, func, "an array", X))
    if not is_dask(X):
        try:
            X = np.asarray(X)
        except (TypeError, ValueError) as exc:
            raise InvalidType(message(name, func, "an array of numbers", X)) from exc
    ndims = (ndim,) if isinstance(ndim, int) else ndim
    if ndims is not None and X.ndim not in ndims:
        want = " or ".join(f"{n}-D" for n in ndims)
        hint = fix or (
            "Reshape your data with X.reshape(-1, 1) for a single feature."
            if 2 in ndims and X.ndim == 1 else ""
        )
        raise InvalidInput(message(name, func, f"a {want} array", X, hint))
    if X.dtype.kind not in kinds:
        raise InvalidType(message(name, func, f"a numeric array (dtype kinds {kinds!r})", X))
    if X.ndim and X.shape[0] < min_len:
        raise InvalidInput(message(name, func, f"an array with at least {min_len} row(s)", X))
    if float_out and X.dtype not in (np.float32, np.float64):
        X = X.astype(np.float64)
    if not is_dask(X):
        X = np.ascontiguousarray(X)
        if not allow_nan and X.dtype.kind == "f" and X.size and not all_finite(X):
            raise nonfinite_input(X, name, func)
    return X


def nonfinite_input(X, name: str, func: str) -> InvalidInput:
    """:func:`check_array`'s error for an input holding NaN or inf (for a kernel whose first
    pass over the data checks it instead)."""
    return InvalidInput(message(name, func, "finite (no NaN or inf)", X,
                                "Drop or impute the missing values first."))


#: from this many values on, the finite check runs in the kernels' threads
#: (``_jit.in_threads``; below, NumPy's one pass costs less than handing them work)
_PARALLEL_CHECK = 1 << 20


def all_finite(X: np.ndarray) -> bool:
    """Whether the C-contiguous float array ``X`` holds no NaN or inf."""
    if X.size < _PARALLEL_CHECK:
        return bool(np.isfinite(X).all())
    from hpcjobs.kernels._jit import count_nonfinite, task_threads

    return count_nonfinite(X.reshape(-1), task_threads()) == 0


def nonfinite_error(name: str, func: str) -> InvalidInput:
    """The error a kernel raises when a chunk turns out to hold NaN or inf."""
    return InvalidInput(
        f"The {name!r} parameter of {func} must be finite (no NaN or inf). Got an array holding "
        "NaN or inf instead. Drop or impute the missing values first."
    )
