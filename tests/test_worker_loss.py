"""A worker process killed mid-step costs a job time, not its result."""

from __future__ import annotations

import dataclasses
import os
import signal
import threading
import time

import dask.array as da
import numpy as np
import pytest

from hpcjobs.kernels import kmeans

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture
def cluster():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None, memory_limit="2GiB") as lc, Client(lc) as client:
        yield client


def _kill_a_worker_when(client, started: threading.Event, prefix: str) -> dict:
    """SIGKILL one worker process once a task whose key starts with ``prefix`` runs."""
    killed = {}

    def watch():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not started.is_set():
            processing = client.processing()
            busy = [w for w, keys in processing.items()
                    if any(str(k).startswith(prefix) for k in keys)]
            if busy:
                time.sleep(0.5)  # well inside the loop
                pid = client.run(os.getpid, workers=[busy[0]])[busy[0]]
                os.kill(pid, signal.SIGKILL)
                killed["pid"] = pid
                return
            time.sleep(0.05)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    killed["thread"] = t
    return killed


def _saved_step(dask_worker) -> int:
    """The last Lloyd iteration that a k-means worker-group member on this worker saved (0: none yet)."""
    from hpcjobs.kernels._worker_group import PLUGIN_NAME

    plugin = dask_worker.plugins.get(PLUGIN_NAME)
    return max((step for step, _ in getattr(plugin, "saved", {}).values()), default=0)


def _kill_a_member_after(client, started: threading.Event, iterations: int) -> dict:
    """SIGKILL the worker of a k-means worker-group member once it has finished ``iterations`` Lloyd
    iterations (so the loss lands mid-loop, whatever the machine's load)."""
    killed = {}

    def watch():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not started.is_set():
            try:
                steps = client.run(_saved_step)
            except Exception:  # noqa: BLE001 - a worker between states: ask again
                steps = {}
            ready = [w for w, step in steps.items() if step >= iterations]
            if ready:
                pid = client.run(os.getpid, workers=[ready[0]])[ready[0]]
                os.kill(pid, signal.SIGKILL)
                killed["pid"], killed["step"] = pid, steps[ready[0]]
                return
            time.sleep(0.02)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    killed["thread"] = t
    return killed


def test_kmeans_on_kept_blocks_survives_a_killed_worker(cluster, monkeypatch):
    from hpcjobs.kernels.clustering import kmeans as module

    resumed_from = []
    real = module._kmeans_on_workers

    def counted(*args, **kwargs):
        resume = args[-1] if len(args) > 8 else kwargs.get("resume")
        resumed_from.append(None if resume is None else resume[0])
        return real(*args, **kwargs)

    rng = np.random.default_rng(0)
    X = da.from_array(rng.random((300_000, 8)), chunks=(50_000, 8))
    ref = kmeans(X, 16, init="random", max_iter=60, tol=0.0, seed=3)
    # (NumPy values only: a Dask result would hold the members' futures, which the scheduler
    # would try to compute again when their worker is killed below)
    ref = dataclasses.replace(ref, labels=ref.labels.compute())
    assert ref.n_iter > 30  # the loop is long enough to be caught in the middle

    monkeypatch.setattr(module, "_kmeans_on_workers", counted)
    done = threading.Event()
    killed = _kill_a_member_after(cluster, done, iterations=10)
    r = kmeans(X, 16, init="random", max_iter=60, tol=0.0, seed=3)
    labels = r.labels.compute()
    done.set()
    killed["thread"].join()
    assert "pid" in killed, "no worker was killed: the test did not test anything"
    # the collective loop failed once and started again from the last iteration that the
    # members had all finished, not from the seeding
    assert resumed_from[0] is None and len(resumed_from) >= 2, resumed_from
    assert 10 <= resumed_from[1] < ref.n_iter, (resumed_from, killed["step"], ref.n_iter)
    np.testing.assert_array_equal(labels, ref.labels)
    np.testing.assert_allclose(r.centroids, ref.centroids, rtol=1e-12, atol=1e-12)
    assert r.n_iter == ref.n_iter
    assert r.inertia == pytest.approx(ref.inertia, rel=1e-12)


def test_kmeans_labels_survive_a_worker_killed_after_the_loop(cluster):
    """The labels of a finished k-means are left on the members' workers: a worker killed
    before they are written costs their recomputation, not the result."""
    from hpcjobs.kernels import kmeans_predict

    data = np.random.default_rng(1).random((200_000, 4))
    r = kmeans(da.from_array(data, chunks=(25_000, 4)), 8, init="random", max_iter=5,
               tol=0.0, seed=1)
    victim = sorted(cluster.scheduler_info(n_workers=-1)["workers"])[0]
    os.kill(cluster.run(os.getpid, workers=[victim])[victim], signal.SIGKILL)
    np.testing.assert_array_equal(r.labels.compute(), kmeans_predict(data, r.centroids))


def test_kmeans_resumes_from_a_saved_iteration_exactly():
    """A loop resumed from iteration i's state ends as the uninterrupted loop does (NumPy)."""
    from hpcjobs.kernels.clustering._common import Blocks
    from hpcjobs.kernels.clustering._kmeans._lloyd import lloyd_loop

    X = np.random.default_rng(5).random((20_000, 3))
    blocks = Blocks(X)
    C0 = X[:6].copy()
    states = {}
    C, n_iter, _ = lloyd_loop(blocks, C0, 40, 0.0,
                               save=lambda i, C, done: states.setdefault(i, (C, done)))
    assert n_iter > 12 and sorted(states) == list(range(1, n_iter + 1))
    assert states[n_iter][1] or n_iter == 40
    C2, n_iter2, _ = lloyd_loop(blocks, states[12][0], 40, 0.0, start=12)
    assert n_iter2 == n_iter
    np.testing.assert_array_equal(C2, C)


def test_a_job_survives_a_worker_killed_during_its_shared_pass(cluster, tmp_path,
                                                              monkeypatch):
    import zarr

    from hpcjobs.jobspec import load_job
    from hpcjobs.kernels import aggregate2d, describe
    from hpcjobs.runner import run_job
    from tests.conftest import make_input, write_job

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    data = np.random.default_rng(1).standard_normal((3_000_000, 4))
    make_input(tmp_path / "in.zarr", {"X": (data, (100_000, 4))})
    job = load_job(write_job(tmp_path, """
name = "loss"
[input]
path = "in.zarr"
[[step]]
kernel = "describe"
input = "X"
[[step]]
kernel = "aggregate2d"
input = { x = "X[:, 0]", y = "X[:, 1]" }
params = { shape = [256, 256] }
[output]
path = "out.zarr"
"""))
    done = threading.Event()
    killed = _kill_a_worker_when(cluster, done, "('reduce-")
    assert run_job(job, client=cluster, warmup=False).status == "complete"
    done.set()
    killed["thread"].join()
    assert "pid" in killed, "no worker was killed: the test did not test anything"
    out = zarr.open_group(str(tmp_path / "out.zarr"), mode="r")
    ref = describe(data)
    np.testing.assert_allclose(out["describe/mean"][:], ref.mean, rtol=1e-12)
    np.testing.assert_array_equal(out["describe/hist"][:], ref.hist)
    np.testing.assert_array_equal(out["aggregate2d/raster"][:],
                                  aggregate2d(data[:, 0], data[:, 1], shape=(256, 256)))


@pytest.mark.parametrize("exc, logged", [
    ("MemberLost", False),  # handled: the kernel goes on from its last saved step
    ("InvalidInput", False),  # reported by the run itself, in one line
    ("ValueError", True),  # a bug: its traceback stays in the log
])
def test_workers_log_only_the_failures_nobody_handles(exc, logged, caplog):
    """A worker's "Compute Failed" report, as distributed writes it, is dropped for the
    failures hpcjobs handles and kept for the others (a local run's log stays readable)."""
    import logging

    from distributed.core import error_message

    from hpcjobs.kernels._validation import InvalidInput
    from hpcjobs.kernels._worker_group import MemberLost
    from hpcjobs.runtime.worker_env import quiet_bad_input

    error = {"MemberLost": MemberLost("member 1 of 2 lost"),
             "InvalidInput": InvalidInput("bad data"), "ValueError": ValueError("bug")}[exc]
    quiet_bad_input()
    result = error_message(error)
    with caplog.at_level(logging.WARNING, logger="distributed.worker"):
        logging.getLogger("distributed.worker").warning(
            "Compute Failed\nKey:       %s\nState:     %s\nTask:  %s\nException: %r\n"
            "Traceback: %r\n", "k", "executing", "spec", result["exception_text"],
            result["traceback_text"])
    assert any("Compute Failed" in r.getMessage() for r in caplog.records) == logged
