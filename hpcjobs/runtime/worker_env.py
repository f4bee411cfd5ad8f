"""A worker plugin that keeps Numba's environment consistent in spawned worker processes."""

from __future__ import annotations

import os
import sys

from distributed import WorkerPlugin


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
