"""The repository passes ruff (its settings: pyproject.toml), so style and likely bugs show up in the test run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ruff_finds_nothing():
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "."], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    if "No module named ruff" in proc.stderr:
        raise AssertionError("ruff is not installed: pip install -r requirements-dev.txt")
    assert proc.returncode == 0, f"ruff check . (fix with `python -m ruff check --fix .`):\n{proc.stdout}{proc.stderr}"
