"""Every provisioning script and every executable in rootfs/ passes shellcheck, and has the
shape every script shares (bash, strict mode, executable)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from bakery import render

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
SHELL_FILES = sorted(SCRIPTS.glob("*.sh")) + sorted(
    p for p in (SCRIPTS / "rootfs").rglob("*") if p.is_file() and os.access(p, os.X_OK)
)
IDS = [p.relative_to(SCRIPTS).as_posix() for p in SHELL_FILES]


def test_every_step_has_a_script() -> None:
    steps = {script for script, _ in render.STEPS}
    assert steps >= {"wait-cloud-init.sh", "install-nvidia-driver.sh", "validate.sh"}
    assert steps <= set(IDS)
    assert "rootfs/usr/local/libexec/bakery/wait-for-nvidia" in IDS


@pytest.mark.parametrize("path", SHELL_FILES, ids=IDS)
def test_shellcheck(path: Path, tool: Callable[[str], str]) -> None:
    result = subprocess.run(
        [tool("shellcheck"), "-x", path.name], capture_output=True, text=True, cwd=path.parent
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", SHELL_FILES, ids=IDS)
def test_strict_bash(path: Path) -> None:
    lines = path.read_text().splitlines()
    assert lines[0] == "#!/usr/bin/env bash"
    assert lines[1].startswith("# "), "a header comment says what the script does"
    assert "set -o errexit -o nounset -o pipefail" in lines
    assert path.stat().st_mode & 0o111, "executable"
