"""The local VM behind `--target qemu`: a base disk (vm.base), a NoCloud seed (vm.seed), the
accelerator probe (vm.accel) and a booted machine that is always stopped (vm.machine)."""

from __future__ import annotations

import shutil
from pathlib import Path

from ..errors import BakeryError

# Where .ci/setup links the checkout's own tools (ansible-playbook from a venv of its own).
CHECKOUT_TOOLS = Path(__file__).resolve().parents[3] / ".tools" / "bin"


def require(program: str, package: str) -> str:
    """The program's path (PATH first, then the checkout's .tools/bin); missing is one line
    naming the package that brings it."""
    path = shutil.which(program) or shutil.which(program, path=str(CHECKOUT_TOOLS))
    if not path:
        raise BakeryError(
            f"{program} is not installed (needed by --target qemu): apt-get install {package}"
        )
    return path
