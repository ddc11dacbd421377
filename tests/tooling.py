"""Helpers for test modules, importable from any test folder as `tooling`.

(Every conftest.py is the module `conftest` when test folders are not packages, so shared
helpers live here rather than in a conftest.)
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
from pathlib import Path

import pytest

from bakery import packer, render, terraform, tools
from bakery.errors import BakeryError

REPO = Path(__file__).resolve().parents[1]
MODERN_PACKER = (1, 9, 4)  # what ./.ci/setup builds: the last MPL Packer


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


@functools.cache
def _packers() -> dict[str, tools.Version]:
    """Every packer on PATH (each folder, not only the first hit) and in .tools/bin, by version."""
    folders = [*os.environ.get("PATH", "").split(os.pathsep), str(tools.TOOLS_BIN)]
    found: dict[str, tools.Version] = {}
    for folder in folders:
        path = shutil.which("packer", path=folder) if folder else None
        if path and all(os.path.realpath(path) != os.path.realpath(p) for p in found):
            with contextlib.suppress(BakeryError):
                found[path] = packer.read_version(path)
    return found


def oldest_packer() -> str:
    """The oldest supported Packer (Debian's 1.6.6: no required_plugins).

    A missing one skips, saying so: ./.ci/setup installs it (so `.ci/run` checks it), but the
    GitLab job image (ci/image) carries only the Packer users run."""
    old = {p: v for p, v in _packers().items() if v < render.MODERN}
    if not old:
        pytest.skip(
            f"no Packer older than {tools.show(render.MODERN)} on PATH (Debian's 1.6.6, the oldest"
            " supported, which ./.ci/setup installs): not checked against it in this run"
        )
    return min(old, key=old.__getitem__)


def modern_packer() -> str:
    """The newest Packer here, which must take required_plugins (the 1.9.4 that ./.ci/setup
    builds into .tools/bin, or a newer one of your own); a missing one fails."""
    found = _packers()
    newest = max(found, key=found.__getitem__, default=None)
    if newest is None or found[newest] < MODERN_PACKER:
        pytest.fail(
            f"no Packer >= {tools.show(MODERN_PACKER)} on PATH or in .tools/bin: run ./.ci/setup"
            " (it builds Packer 1.9.4 and the amazon plugin from their Go modules)"
        )
    return newest


def tofu() -> str | None:
    """$TOFU, else tofu on PATH or in .tools/bin, else None (callers skip, saying why)."""
    configured = os.environ.get("TOFU")
    if configured:
        if not shutil.which(configured):
            pytest.fail(f"TOFU={configured} is not an executable file")
        return configured
    found = tools.candidates("tofu")
    return tools.newest(found, terraform.read_version) if found else None


NO_TOFU = (
    "no OpenTofu: no tofu on PATH or in .tools/bin, and TOFU is not set (./.ci/toolchain builds"
    " OpenTofu only where no terraform is installed)"
)
