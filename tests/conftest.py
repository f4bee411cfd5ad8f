"""Shared fixtures: small Zarr inputs, job files, and one in-process Dask cluster."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest


def make_input(path: Path, arrays: dict[str, tuple[np.ndarray, tuple]]) -> Path:
    """A Zarr v3 input group at ``path`` with ``{name: (data, chunks)}``."""
    import zarr

    g = zarr.open_group(str(path), mode="w", zarr_format=3)
    for name, (data, chunks) in arrays.items():
        dtype = str if data.dtype.kind == "U" else data.dtype
        a = g.create_array(name, shape=data.shape, dtype=dtype, chunks=chunks)
        a[...] = data
    return path


def write_job(directory: Path, body: str, name: str = "job.toml") -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(body))
    return path


def start_cluster(sched: Path, *extra: str) -> subprocess.Popen:
    """``hpcjobs cluster`` as a background shell starts it: with SIGINT and SIGHUP ignored
    (what a non-interactive shell's ``&`` hands down), so only its own handlers can stop it."""
    def ignore_signals():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)

    proc = subprocess.Popen([sys.executable, "-m", "hpcjobs", "cluster", "--workers", "1",
                             "--scheduler-file", str(sched), "--dashboard-address",
                             "127.0.0.1:0", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=ignore_signals)
    deadline = time.monotonic() + 60
    while not sched.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"hpcjobs cluster did not start: {proc.communicate()[0]}")
        time.sleep(0.2)
    return proc


def stop_cluster(proc: subprocess.Popen, sig: int = signal.SIGINT) -> str:
    proc.send_signal(sig)
    try:
        out, _ = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"hpcjobs cluster ignored {signal.Signals(sig).name}: {proc.communicate()[0]}")
    assert proc.returncode == 0, out
    return out


@pytest.fixture
def readings() -> np.ndarray:
    return np.random.default_rng(42).normal(3.0, 2.0, size=(4000, 3))


@pytest.fixture
def input_dir(tmp_path, readings) -> Path:
    """A tmp folder holding ``in.zarr`` with ``readings`` (4000 x 3, 8 chunks) and ``flat``."""
    make_input(tmp_path / "in.zarr", {
        "readings": (readings, (500, 3)),
        "flat": (np.arange(100.0), (25,)),
        "words": (np.array(["a", "b"]), (2,)),
    })
    return tmp_path


@pytest.fixture(scope="session")
def dask_client():
    """One in-process cluster (2 workers x 1 thread) shared by the tests that need one."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address="127.0.0.1:0") as cluster, Client(cluster) as client:
        yield client


@pytest.fixture(autouse=True)
def _no_site_profile():
    """No test sees the site profile of the machine it runs on (an ``hpcjobs`` section in
    Dask's configuration, e.g. ~/.config/dask/hpcjobs.yaml): tests that want one set it."""
    import dask.config

    with dask.config.set({"hpcjobs": {}}):
        yield
