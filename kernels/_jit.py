"""Numba flags in one place: every kernel compiles with these.

``cache=True`` keeps compile time out of every run after the first; ``nogil=True`` lets Dask's
threads run kernels side by side; ``fastmath`` stays off so results match the NumPy references.
"""

from __future__ import annotations

import numba
import numpy as np

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


def task_threads() -> int:
    """Numba threads for one chunk computed by a Dask task, so that Dask threads x Numba
    threads stay within the cores.

    All of Numba's threads in the main thread (an in-memory call) and in a worker process
    (a Nanny's: its ``NUMBA_NUM_THREADS`` was sized together with its Dask threads); one in a
    pool thread of the main process (Dask's threaded scheduler, an in-process cluster), whose
    pool already runs a chunk per core.
    """
    import multiprocessing
    import threading

    if (threading.current_thread() is threading.main_thread()
            or multiprocessing.current_process().name != "MainProcess"):
        return numba.get_num_threads()
    return 1


@njit
def thread_ranges(n, n_parts):
    """Split ``range(n)`` into at most ``n_parts`` contiguous ``[start, stop)`` rows of near-equal size.

    Returns an int64 array of shape (parts, 2). Callable from Python and from njit code, so the
    same splitter serves Numba threads and Dask chunks.
    """
    n_parts = max(1, min(n_parts, max(n, 1)))
    out = np.empty((n_parts, 2), dtype=np.int64)
    for t in range(n_parts):
        out[t, 0] = (n * t) // n_parts
        out[t, 1] = (n * (t + 1)) // n_parts
    return out
