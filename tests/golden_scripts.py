"""Golden batch scripts: a rendering must equal ``tests/golden/NAME.sh`` byte for byte
(``HPCJOBS_UPDATE_GOLDEN=1`` rewrites the file from the rendering first) and parse as bash."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

GOLDEN = Path(__file__).parent / "golden"


def assert_golden(text: str, name: str) -> None:
    """``text`` is ``tests/golden/<name>.sh`` (rewritten first under HPCJOBS_UPDATE_GOLDEN)."""
    path = GOLDEN / f"{name}.sh"
    if os.environ.get("HPCJOBS_UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"rendering changed: see {path}"


def assert_valid_bash(text: str) -> None:
    """``bash -n`` accepts ``text`` (where bash is installed)."""
    if shutil.which("bash"):
        proc = subprocess.run(["bash", "-n"], input=text, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
