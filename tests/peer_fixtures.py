"""The peers that build from source (the ``peers-src`` extra): pyfim (C) and pyscamp (C++).

Neither has a wheel for every platform, and pyscamp's build (cmake, no pyproject) cannot take
cmake from pip's build isolation nor switch CUDA off from a requirement, so they are not in
the ``test`` extra: this session fixture installs them into the running interpreter's
environment the first time a test needs them, with ``FORCE_NO_CUDA=1`` (no CUDA build, also
where an nvcc is on the PATH) and cmake from the ``cmake`` wheel (``test`` extra). Where the C
compiler or Python's headers are missing it installs them with apt as root (as the Slurm
fixture does), so the tests run on a fresh CI machine; as another user it skips instead.
Pip keeps the built wheels in its cache: later fresh environments install them in seconds.
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest

SOURCE_PEERS = {"fim": "pyfim>=6.28", "pyscamp": "pyscamp>=4.0"}
APT_PACKAGES = ["build-essential", "python3-dev"]


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def _cmake_dir() -> str | None:
    """The folder of a real cmake binary: the ``cmake`` wheel's, else one on the PATH."""
    try:
        import cmake

        return cmake.CMAKE_BIN_DIR
    except (ImportError, AttributeError):
        found = shutil.which("cmake")
        return str(Path(found).parent) if found else None


def _build_tools_missing() -> list[str]:
    missing = []
    if not (shutil.which("cc") or shutil.which("gcc")) or not shutil.which("c++"):
        missing.append("a C/C++ compiler")
    if not (Path(sysconfig.get_paths()["include"]) / "Python.h").exists():
        missing.append("Python.h")
    return missing


def _run(cmd: list[str], env: dict | None = None, timeout: float = 1800) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n"
                    f"{proc.stderr[-3000:]}")


def install_source_peers() -> None:
    """Install pyfim and pyscamp if they are missing (see the module docstring)."""
    wanted = [spec for module, spec in SOURCE_PEERS.items() if not _importable(module)]
    if not wanted:
        return
    t0 = time.monotonic()
    missing = _build_tools_missing()
    if missing:
        if os.geteuid() != 0:
            pytest.skip(f"building {', '.join(wanted)} needs {' and '.join(missing)}, and "
                        "installing them needs root")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        _run(["apt-get", "update", "-q"], env=env)
        _run(["apt-get", "install", "-y", "-q", *APT_PACKAGES], env=env)
    env = {**os.environ, "FORCE_NO_CUDA": "1"}
    cmake_dir = _cmake_dir()
    if cmake_dir is None:
        _run([sys.executable, "-m", "pip", "install", "-q", "cmake>=3.18"])
        importlib.invalidate_caches()
        cmake_dir = _cmake_dir()
    env["PATH"] = f"{cmake_dir}{os.pathsep}{env.get('PATH', '')}"
    _run([sys.executable, "-m", "pip", "install", "-q", *wanted], env=env)
    importlib.invalidate_caches()
    for module in SOURCE_PEERS:
        importlib.import_module(module)
    print(f"\ninstalled {', '.join(wanted)} in {time.monotonic() - t0:.0f} s")


@pytest.fixture(scope="session")
def source_peers():
    """pyfim and pyscamp, importable (installed on first use)."""
    install_source_peers()
