"""Helpers for test modules, importable from any test folder as `tooling`.

(Every conftest.py is the module `conftest` when test folders are not packages, so shared
helpers live here rather than in a conftest.)
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def require_tool(name: str) -> str:
    """The path of a tool the suite needs; a missing one fails the test (./.ci/setup installs it)."""
    local_bins = [
        REPO / ".venv" / "bin",
        REPO / ".tools" / "checkov" / "bin",
        REPO / ".tools" / "node_modules" / ".bin",
    ]
    path = shutil.which(name) or shutil.which(name, path=os.pathsep.join(map(str, local_bins)))
    if not path:
        pytest.fail(f"{name} is not installed: run ./.ci/setup (it installs what the tests need)")
    return path
