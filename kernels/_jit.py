"""Numba flags in one place: every kernel compiles with these.

``cache=True`` keeps compile time out of every run after the first; ``nogil=True`` lets Dask's
threads run kernels side by side; ``fastmath`` stays off so results match the NumPy references.
"""

from __future__ import annotations

import numba

JIT_FLAGS = {"nopython": True, "nogil": True, "cache": True, "fastmath": False}


def njit(*args, **overrides):
    """``numba.njit`` with the project's flags; ``@njit`` or ``@njit(parallel=True)``."""
    flags = {**JIT_FLAGS, **overrides}
    if args and callable(args[0]):
        return numba.jit(**flags)(args[0])
    return numba.jit(*args, **flags)


def set_num_threads(n: int | None) -> None:
    """Set Numba's thread count for this process (clamped to what Numba was started with)."""
    if n is None:
        return
    numba.set_num_threads(max(1, min(int(n), numba.config.NUMBA_NUM_THREADS)))


def thread_ranges(n: int, n_parts: int):
    """Split ``range(n)`` into at most ``n_parts`` contiguous ``(start, stop)`` pairs of near-equal size.

    The same splitter serves Numba threads and Dask chunks, so work is divided the same way.
    """
    import numpy as np

    n_parts = max(1, min(int(n_parts), max(int(n), 1)))
    bounds = np.linspace(0, n, n_parts + 1).astype(np.int64)
    return np.stack([bounds[:-1], bounds[1:]], axis=1)
