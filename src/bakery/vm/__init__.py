"""The local VM behind `--target qemu`: a base disk (vm.base), a NoCloud seed (vm.seed), the
accelerator probe (vm.accel) and a booted machine that is always stopped (vm.machine)."""

from __future__ import annotations

import shutil

from ..errors import BakeryError


def require(program: str, package: str) -> str:
    """The program's path; missing is one line naming the package that brings it."""
    path = shutil.which(program)
    if not path:
        raise BakeryError(
            f"{program} is not installed (needed by --target qemu): apt-get install {package}"
        )
    return path
