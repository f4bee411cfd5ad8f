"""A worker plugin that keeps Numba's environment consistent in spawned worker processes."""

from __future__ import annotations

import logging
import os
import sys

from distributed import WorkerPlugin


class _BadInputFilter(logging.Filter):
    """Drop distributed's "Compute Failed" record (with its traceback) of a task that raised
    ``InvalidInput`` (or its ``InvalidType``): a kernel refusing its data, which the run
    reports itself in one line (exit 2); or ``MemberLost``: a worker group's member whose
    worker died, which the kernel answers by going on from its last saved step on the workers
    that remain (kernels/_worker_group). Other failures, bugs included, stay logged."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        return not (str(record.msg).startswith("Compute Failed") and len(args) > 3
                    and str(args[3]).startswith(("InvalidInput(", "InvalidType(",
                                                 "MemberLost(")))


def quiet_bad_input() -> None:
    """Keep the workers of this process from logging bad input's tracebacks (idempotent)."""
    logger = logging.getLogger("distributed.worker")
    if not any(isinstance(f, _BadInputFilter) for f in logger.filters):
        logger.addFilter(_BadInputFilter())


class NumbaEnvironment(WorkerPlugin):
    """Put ``NUMBA_NUM_THREADS`` back to what Numba already has, at the worker's start.

    A spawned worker imports the user's main module before its Nanny sets the worker's
    environment. Where that module imported Numba, Numba read the variable then, and a later
    compile reads it again and raises (Numba refuses a new pool size once started). The plan
    stays in ``HPCJOBS_NUMBA_THREADS``, which sizes the kernels (``task_threads``).
    """

    name = "hpcjobs-numba-environment"

    def setup(self, worker) -> None:
        numba = sys.modules.get("numba")
        if numba is None:  # not imported yet: Numba will read the planned value
            return
        started = str(numba.config.NUMBA_NUM_THREADS)
        if os.environ.get("NUMBA_NUM_THREADS") != started:
            os.environ["NUMBA_NUM_THREADS"] = started


def preload_kernels() -> None:
    """Import the kernels and start Numba's compiler context, before the first task needs them.

    A worker's first kernel call otherwise pays for both in the job's first step (measured on
    the 2-core machine: 0.9 s of a 1.2 s first step, against 0.3 s once loaded) while the
    driver waits; done as the worker starts, it overlaps with the other workers' start-up.
    """
    import importlib
    import pkgutil

    import dask.array  # noqa: F401
    import zarr  # noqa: F401

    import hpcjobs.kernels
    from hpcjobs.kernels._jit import thread_ranges

    quiet_bad_input()

    for info in pkgutil.walk_packages(hpcjobs.kernels.__path__, "hpcjobs.kernels."):
        if not info.ispkg:
            importlib.import_module(info.name)
    thread_ranges(1, 1)  # loaded from the cache: Numba's target context starts here


class KernelPreload(WorkerPlugin):
    """:func:`preload_kernels` in each worker of a local cluster, as it starts."""

    name = "hpcjobs-kernel-preload"

    def setup(self, worker) -> None:
        preload_kernels()
