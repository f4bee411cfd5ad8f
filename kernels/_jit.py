"""Numba flags in one place: every kernel compiles with these, into one cache, once.

``cache=True`` keeps compile time out of every run after the first; ``nogil=True`` lets Dask's
threads run kernels side by side; ``fastmath`` stays off so results match the NumPy references.

Two things Numba does not do by itself:

- **One cache a user can write.** Numba caches next to the source (``__pycache__``). Where the
  package folder is read-only (a site-wide install on a supercomputer) the kernels' cache goes
  to ``$XDG_CACHE_HOME/hpcjobs/numba`` (``~/.cache/hpcjobs/numba``) instead, unless
  ``NUMBA_CACHE_DIR`` says where; :func:`cache_location` tells which.
- **One compile per machine.** Numba's cache has no lock: processes that need the same function
  at once (a job's workers, a batch job's ranks on a shared file system) all compile it. Every
  kernel function here takes a file lock beside its cache entry while it compiles, and looks
  in the cache again once it holds it: one process compiles, the others load its result.

And two LLVM operations Numba has no word for: :func:`fetch_add` (an atomic counter threads
claim work from) and :func:`prefetch_row`/:func:`prefetch_item`/:func:`prefetch_ahead` (cache hints); and
:func:`in_threads`, row ranges in a pool of Python threads kept for the process, for kernels
that run one after the other where OpenMP's idle threads would spin on the cores.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils, sigutils
from numba.core.compiler_lock import global_compiler_lock
from numba.extending import intrinsic

JIT_FLAGS = {"nopython": True, "nogil": True, "cache": True, "fastmath": False}

#: how long a process waits for another one's compile of the same function before it
#: compiles the function itself (a compile that hung, a lock on a file system that hangs)
LOCK_WAIT_S = 600.0


def njit(*args, **overrides):
    """``numba.njit`` with the project's flags; ``@njit`` or ``@njit(parallel=True)``."""
    flags = {**JIT_FLAGS, **overrides}
    if args and callable(args[0]):
        return _jit(args[0], flags)
    return lambda func: _jit(func, flags)


def _jit(func, flags):
    where = cache_location() if flags.get("cache") else None
    if where is None or where.how != "user" or numba.config.CACHE_DIR:
        dispatcher = numba.jit(**flags)(func)
    else:  # the package folder is read-only: the user's folder, for this function alone
        numba.config.CACHE_DIR = where.folder
        try:
            dispatcher = numba.jit(**flags)(func)
        finally:
            numba.config.CACHE_DIR = ""
    if flags.get("cache"):
        _compile_under_lock(dispatcher)
    return dispatcher


class CacheLocation(NamedTuple):
    """Where the kernels' compiled code is cached: ``folder``, and ``how`` it was chosen
    (``"NUMBA_CACHE_DIR"``, ``"package"``: the ``__pycache__`` folders beside the source,
    or ``"user"``: the per-user folder, for a read-only package)."""

    folder: str
    how: str

    def describe(self) -> str:
        return {"NUMBA_CACHE_DIR": f"{self.folder} (NUMBA_CACHE_DIR)",
                "package": f"{self.folder} and the other __pycache__ folders of the kernels",
                "user": f"{self.folder} (the package folder is read-only)"}[self.how]


def cache_location() -> CacheLocation:
    """Where the kernels' compiled code is cached (see the module's docstring)."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return CacheLocation(os.environ["NUMBA_CACHE_DIR"], "NUMBA_CACHE_DIR")
    package = os.path.dirname(os.path.abspath(__file__))
    pycache = os.path.join(package, "__pycache__")
    if os.access(pycache if os.path.isdir(pycache) else package, os.W_OK):
        return CacheLocation(pycache, "package")
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return CacheLocation(os.path.join(base, "hpcjobs", "numba"), "user")


_HELD: set[str] = set()  # lock files this process holds (only touched under Numba's lock)


def _compile_under_lock(dispatcher) -> None:
    """Make ``dispatcher`` compile a new signature only while it holds its function's lock."""
    try:
        folder = dispatcher._cache.cache_path
    except AttributeError:  # no cache: nothing to share with other processes
        return
    code = dispatcher.py_func.__code__
    name = f"{dispatcher.py_func.__module__}.{dispatcher.py_func.__qualname__}"
    lock_path = os.path.join(folder, f"{name}-{code.co_firstlineno}.lock")
    compile_unlocked = dispatcher.compile

    def compile(sig):
        # Numba's own (reentrant) lock first, as Numba takes it: a thread that compiles a
        # caller holds it while it compiles the callees, so the file lock always comes second
        with global_compiler_lock:
            args, _ = sigutils.normalize_signature(sig)
            if tuple(args) in dispatcher.overloads or lock_path in _HELD:
                return compile_unlocked(sig)
            with _file_lock(lock_path):
                # Numba loads from the cache here when another process compiled it meanwhile
                return compile_unlocked(sig)

    dispatcher.compile = compile


@contextlib.contextmanager
def _file_lock(path: str):
    """An exclusive ``flock`` on ``path`` (none where the file cannot be made or locked)."""
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        yield
        return
    locked = False
    try:
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                locked = True
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.02)
            except OSError:  # a file system without flock
                break
        if locked:
            _HELD.add(path)
        yield
    finally:
        if locked:
            _HELD.discard(path)
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


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
    them: OpenMP threads spinning against each other make every pass several times slower,
    and kernels that run at once in each worker far slower still (hpcjobs bench
    kmeans-lloyd; tests/test_threads.py checks the plan is followed).
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


@intrinsic
def fetch_add(typingctx, arr, idx, val):
    """Atomically add ``val`` to ``arr[idx]`` (an int64 array) and return its value before:
    threads claim work from a shared counter (dynamic scheduling; ``numba.prange`` splits its
    range evenly and statically, so a thread that the OS delays holds the others up at the
    end). Compiled code only."""
    def codegen(context, builder, sig, args):
        aryty = sig.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [args[1]],
                                       wraparound=False, boundscheck=False)
        return builder.atomic_rmw("add", ptr, args[2], "seq_cst")

    if not (isinstance(arr, types.Array) and arr.dtype == types.int64):
        return None
    return types.int64(arr, types.int64, types.int64), codegen


def _prefetch(context, builder, aryty, ary_value, indices, locality):
    """Emit ``llvm.prefetch`` (read, data cache) of the element of ``ary_value`` at
    ``indices`` into the caches from level ``4 - locality`` on (3: all of them)."""
    ary = context.make_array(aryty)(context, builder, ary_value)
    ptr = cgutils.get_item_pointer(context, builder, aryty, ary, indices, wraparound=False,
                                   boundscheck=False)
    i8p = ir.IntType(8).as_pointer()
    i32 = ir.IntType(32)
    fn = builder.module.declare_intrinsic(
        "llvm.prefetch", [i8p], ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]))
    builder.call(fn, [builder.bitcast(ptr, i8p), ir.Constant(i32, 0),
                      ir.Constant(i32, locality), ir.Constant(i32, 1)])
    return context.get_dummy_value()


@intrinsic
def prefetch_row(typingctx, X, i):
    """Ask the CPU to bring the start of row ``i`` of the C-contiguous 2-D array ``X`` into
    its caches (``llvm.prefetch``: a hint, which neither faults nor waits)."""
    def codegen(context, builder, sig, args):
        zero = context.get_constant(types.intp, 0)
        return _prefetch(context, builder, sig.args[0], args[0], [args[1], zero], 3)

    return types.void(X, types.intp), codegen


@intrinsic
def prefetch_item(typingctx, X, i, j):
    """Ask the CPU to bring the cache line holding ``X[i, j]`` (2-D) into its L2 cache: a
    hint, which neither faults nor waits. To read whole rows at random, a line at a time:
    into L2, not L1 (whose few miss buffers a row's lines fill up at once; rows of 3 KB read
    in random order: 1.6x faster with this ahead, none faster with the L1 hint, AMD EPYC)."""
    def codegen(context, builder, sig, args):
        return _prefetch(context, builder, sig.args[0], args[0], [args[1], args[2]], 2)

    return types.void(X, types.intp, types.intp), codegen


@intrinsic
def _prefetch_value(typingctx, flat, i):
    """The cache line holding ``flat[i]`` (1-D) into L2: a hint (see prefetch_item)."""
    def codegen(context, builder, sig, args):
        return _prefetch(context, builder, sig.args[0], args[0], [args[1]], 2)

    return types.void(flat, types.intp), codegen


#: how far ahead a streaming sweep asks for its data (:func:`prefetch_ahead`)
AHEAD_BYTES = 32768


@njit(inline="always")
def prefetch_ahead(flat, start, stop):
    """Ask for the cache lines ``AHEAD_BYTES`` past ``flat[start:stop]`` (1-D; clipped to
    it) in L2, as a sweep over ``flat[start:stop]`` is about to read them. A sweep
    that does a few operations a value reads memory at a third of the speed a plain sum does
    on AMD EPYC (its hardware prefetcher falls behind): asking ``AHEAD_BYTES`` ahead, a step's
    worth at a time, brings it to the sum's speed (1.0 -> 0.34 ns a value, one thread)."""
    step, ahead = max(64 // flat.itemsize, 1), AHEAD_BYTES // flat.itemsize
    for i in range(max(start + ahead, 0) // step * step, min(stop + ahead, flat.shape[0]),
                   step):
        _prefetch_value(flat, i)


@njit
def _count_nonfinite(flat, start, stop):
    """How many of ``flat[start:stop]`` are NaN or infinite. The test ``|x| < inf`` (false
    for NaN and inf) is a compare and an integer sum that vectorise; ``x - x != 0``, an
    unordered compare, did not (6x slower)."""
    part = flat[start:stop]  # (indices from 0: no negative-index check in the loop)
    finite = 0
    for i in range(part.shape[0]):
        finite += np.int64(np.abs(part[i]) < np.inf)
    return part.shape[0] - finite


def count_nonfinite(flat: np.ndarray, n_threads: int) -> int:
    """How many values of the 1-D float array ``flat`` are NaN or infinite, over
    ``n_threads`` threads (:func:`in_threads`): one pass at memory speed, no temporary
    array (``np.isfinite(X).all()`` makes a boolean array as large as ``X``, on one core)."""
    ranges = thread_ranges(flat.shape[0], n_threads)
    return int(sum(in_threads(ranges, lambda a, b: _count_nonfinite(flat, a, b))))


def in_threads(ranges: np.ndarray, work) -> list:
    """``work(start, stop)`` for each row range of ``ranges`` (parts, 2): the first in the
    calling thread, the others in the threads of a pool kept for the process; the results in
    order. For kernels compiled ``nogil`` (all of ours) that run between others of their own:
    an idle pool thread waits on a lock, where OpenMP's threads (``parallel=True``) spin on a
    core for milliseconds after each parallel region (libgomp's default), holding up what
    runs next (k-means at d = 784: 3-4 ms of its first pass after the finite check)."""
    ranges = [(int(a), int(b)) for a, b in ranges]
    if len(ranges) == 1:
        return [work(*ranges[0])]
    others = [_pool(len(ranges) - 1).submit(work, *r) for r in ranges[1:]]
    first = work(*ranges[0])
    return [first] + [f.result() for f in others]


_pool_lock = threading.Lock()
_pool_executor: ThreadPoolExecutor | None = None


def _pool(workers: int) -> ThreadPoolExecutor:
    """A thread pool of at least ``workers`` threads, kept between calls (starting threads
    for every chunk step would cost as much as a small chunk's work)."""
    global _pool_executor
    with _pool_lock:
        if _pool_executor is None or _pool_executor._max_workers < workers:
            old = _pool_executor
            _pool_executor = ThreadPoolExecutor(workers, thread_name_prefix="hpcjobs-kernels")
            if old is not None:
                old.shutdown(wait=False)
        return _pool_executor

