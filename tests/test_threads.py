"""Numba threads per Dask task: Dask threads x Numba threads stay within the cores."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

import numba

from hpcjobs.kernels._jit import task_threads

# A user's script that imports the kernels at its top: each spawned worker imports it again
# (as __mp_main__), so Numba starts there before the Nanny sets NUMBA_NUM_THREADS.
_SCRIPT = textwrap.dedent("""
    import json, sys
    import numba
    import numpy as np
    from hpcjobs.kernels import standardize  # noqa: F401 - Numba imported first, on purpose
    from hpcjobs.kernels._jit import task_threads
    from hpcjobs.runtime.local import plan_cluster, start_local_cluster

    def probe():
        import dask.array as da
        from hpcjobs.kernels.stats.standardize import _scale_block
        started = numba.config.NUMBA_NUM_THREADS
        n = task_threads()
        # a wrapper of a kernel sized only by the thread's Numba count
        _scale_block(np.ones((8, 2)), np.zeros(2), np.ones(2))
        # a compile re-reads NUMBA_NUM_THREADS: it must not find a new value
        compiled = numba.njit(lambda a: a + 1)(1)
        return {"started": started, "task": n, "after": numba.get_num_threads(),
                "compiled": compiled}

    if __name__ == "__main__":
        plan = plan_cluster({"workers": 1, "threads_per_worker": 1, "numba_threads": 1})
        from distributed import Client
        with start_local_cluster(plan) as cluster, Client(cluster) as client:
            print(json.dumps(client.submit(probe, pure=False).result()))
""")


def test_worker_process_follows_the_plan_when_numba_was_imported_first(tmp_path):
    script = tmp_path / "user_script.py"
    script.write_text(_SCRIPT)
    # the worker inherits 2 and reads it when its copy of the script imports Numba
    env = {**os.environ, "NUMBA_NUM_THREADS": "2"}
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         env=env, timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["started"] == 2  # the case this guards: Numba's pool already has 2
    assert seen["task"] == 1
    assert seen["after"] == 1  # and kernels that size themselves follow
    assert seen["compiled"] == 2


def test_pool_threads_of_the_main_process_get_one_numba_thread():
    before = numba.get_num_threads()
    with ThreadPoolExecutor(1) as pool:
        seen = pool.submit(lambda: (task_threads(), numba.get_num_threads())).result()
    assert seen == (1, 1)
    assert task_threads() == before == numba.get_num_threads()  # the main thread keeps its own
