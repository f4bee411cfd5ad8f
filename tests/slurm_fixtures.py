"""Fixtures for the real-Slurm tests: the local cluster that ``slurm/start`` runs.

As root the fixture installs (if needed) and starts the cluster, so the tests run rather than
skip on a fresh CI machine; as another user it uses a cluster that is already up, or skips.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
START = REPO / "slurm" / "start"


@pytest.fixture(scope="session")
def slurm_cluster():
    """Start the local Slurm cluster; yield its SLURM_CONF (exported for the session)."""
    t0 = time.monotonic()
    proc = subprocess.run(["bash", str(START)], capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        if os.geteuid() != 0:
            pytest.skip(f"no local Slurm cluster and not root to start it: {proc.stderr.strip()}")
        pytest.fail(f"slurm/start failed ({proc.returncode}):\n{proc.stderr}")
    line = [x for x in proc.stdout.splitlines() if x.startswith("export SLURM_CONF=")][-1]
    conf = line.split("=", 1)[1]
    before = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = conf
    print(f"\nslurm/start took {time.monotonic() - t0:.1f} s ({conf})")
    yield conf
    if before is None:
        os.environ.pop("SLURM_CONF", None)
    else:
        os.environ["SLURM_CONF"] = before


@pytest.fixture
def runs_dir(tmp_path, monkeypatch):
    """A private run-folder root for one test."""
    root = tmp_path / "runs"
    monkeypatch.setenv("HPCJOBS_RUNS", str(root))
    return root
