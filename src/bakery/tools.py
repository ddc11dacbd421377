"""The external programs the tool drives (packer; terraform or tofu): finding them, reading versions.

Which binary runs: the one its variable names (PACKER, TERRAFORM), always; else the newest of
the one on PATH and the one in the checkout's .tools/bin (where ./.ci/setup puts what it builds),
so a Packer 1.11 of the user's own beats the 1.9.4 that setup built, and that 1.9.4 beats a
distribution's 1.6.6. OpenTofu stands in for Terraform only where no terraform is found.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

from .errors import BakeryError

Version = tuple[int, int, int]
TOOLS_BIN = Path(__file__).resolve().parents[2] / ".tools" / "bin"


def find(
    names: Sequence[str], override: str, install: str, read_version: Callable[[str], Version]
) -> str:
    """The program's path: $OVERRIDE, else the newest on PATH or in .tools/bin of the first of
    `names` found there; none is one line saying how to get one."""
    chosen = os.environ.get(override)
    if chosen:
        path = shutil.which(chosen)
        if not path:
            raise BakeryError(
                f"{override}={chosen} is not an executable file: fix it, or unset {override} to"
                f" use the newest {names[0]} on PATH or in {TOOLS_BIN}"
            )
        return path
    for name in names:
        found = candidates(name)
        if found:
            return newest(found, read_version)
    missing = f"neither {' nor '.join(names)} is" if len(names) > 1 else f"{names[0]} is not"
    also = f" (or to {names[1]})" if len(names) > 1 else ""
    raise BakeryError(
        f"{missing} installed (not on PATH, not in {TOOLS_BIN}): install {install}, or set"
        f" {override}=/path/to/{names[0]}{also}"
    )


def candidates(name: str) -> list[str]:
    """`name` on PATH, then in .tools/bin; the same file reached twice counts once."""
    found: list[str] = []
    for path in (shutil.which(name), shutil.which(name, path=str(TOOLS_BIN))):
        if path and all(os.path.realpath(path) != os.path.realpath(f) for f in found):
            found.append(path)
    return found


def newest(paths: Sequence[str], read_version: Callable[[str], Version]) -> str:
    """The path with the highest version (the first on a tie). One that cannot say its version
    loses; if none can, the first, whose own check then says what is wrong with it."""
    if len(paths) == 1:
        return paths[0]
    versions: dict[str, Version] = {}
    for path in paths:
        try:
            versions[path] = read_version(path)
        except BakeryError:
            continue
    if not versions:
        return paths[0]
    return max(versions, key=versions.__getitem__)


def parse_version(text: str, name: str) -> Version:
    match = re.search(r"(\d+)\.(\d+)\.(\d+)", text)
    if not match:
        raise BakeryError(f"cannot read the {name} version from {text.strip()[:80]!r}")
    return (int(match[1]), int(match[2]), int(match[3]))


def show(version: tuple[int, ...]) -> str:
    return ".".join(map(str, version))
