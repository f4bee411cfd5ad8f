"""A real headless Chromium for the browser tests: Debian's ``chromium`` package, driven by
Playwright (its Python package; no browser download: it launches the system's binary).

As root the fixture installs the package (``apt-get install chromium``) when it is missing,
as ``slurm_fixtures.py`` installs Slurm, so the tests run rather than skip on a fresh CI
machine; as another user without Chromium they skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

CANDIDATES = ("chromium", "chromium-browser")


def _find() -> str | None:
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def _install() -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"],
                ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium"]):
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
        if proc.returncode != 0:
            pytest.fail(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")


@pytest.fixture(scope="session")
def chromium_path() -> str:
    """The path of a Chromium binary (installed first, as root, where missing)."""
    found = _find()
    if found is None:
        if os.geteuid() != 0:
            pytest.skip("no chromium on PATH and not root to apt-get install it")
        t0 = time.monotonic()
        _install()
        found = _find()
        if found is None:
            pytest.fail("apt-get installed chromium but no chromium is on PATH")
        print(f"\napt-get install chromium took {time.monotonic() - t0:.1f} s")
    return found


@pytest.fixture(scope="session")
def browser(chromium_path):
    """A headless Chromium (Playwright) for the session."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path, headless=True,
                              args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="session")
def artefacts(tmp_path_factory) -> Path:
    """Where screenshots go: ``$HPCJOBS_TEST_ARTEFACTS/view`` or a pytest temporary folder."""
    env = os.environ.get("HPCJOBS_TEST_ARTEFACTS")
    folder = Path(env) / "view" if env else tmp_path_factory.mktemp("view-screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder
