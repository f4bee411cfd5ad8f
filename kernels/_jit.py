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


def task_threads() -> int:
    """Numba threads for the kernel this thread is about to run, so that Dask threads x
    Numba threads stay within the cores; also made this thread's own count (Numba keeps one
    per thread), so that the kernels sized by Numba's count, not by an argument, follow.

    All of Numba's threads in the main thread (an in-memory call); as many as the process was
    planned for in a worker process (see :func:`_planned_threads`); one in a pool thread of
    the main process (Dask's threaded scheduler, an in-process cluster), whose pool already
    runs a chunk per core.
    """
    import multiprocessing
    import threading

    if threading.current_thread() is threading.main_thread():
        return numba.get_num_threads()
    if multiprocessing.current_process().name != "MainProcess":
        n = _planned_threads()
    else:
        n = 1
    if numba.get_num_threads() != n:
        numba.set_num_threads(n)
    return n


#: the Numba threads a worker process was planned with: hpcjobs' clusters set it beside
#: NUMBA_NUM_THREADS (``hpcjobs.runtime.local.PLANNED_THREADS_VAR``)
PLANNED_THREADS_VAR = "HPCJOBS_NUMBA_THREADS"


def _planned_threads() -> int:
    """A worker process's Numba threads, as planned for it, not as Numba started.

    A Nanny puts the environment it was given into its worker only once the spawned process
    has imported the user's main module; a script that imports these kernels at its top has
    thus started Numba with every core in each worker, and its kernels would oversubscribe
    them (measured: k-means over 2 workers 2.4x slower per pass; one 2-thread kernel per
    worker at once 40x slower, OpenMP threads spinning against each other).
    """
    import os

    n = numba.get_num_threads()
    for var in (PLANNED_THREADS_VAR, "NUMBA_NUM_THREADS"):
        planned = os.environ.get(var, "")
        if planned.isdigit() and int(planned) > 0:
            return min(n, int(planned))
    return n


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
