"""The external programs the tool drives (packer, terraform): finding them, reading versions."""

from __future__ import annotations

import os
import re
import shutil

from .errors import BakeryError

Version = tuple[int, int, int]


def find(name: str, override: str, install: str) -> str:
    """The program's path: $OVERRIDE, else PATH; missing is one line saying how to get it."""
    path = os.environ.get(override) or shutil.which(name)
    if not path:
        raise BakeryError(
            f"{name} is not installed or not on PATH: install {install} (HashiCorp's releases),"
            f" or set {override}=/path/to/{name}"
        )
    return path


def parse_version(text: str, name: str) -> Version:
    match = re.search(r"(\d+)\.(\d+)\.(\d+)", text)
    if not match:
        raise BakeryError(f"cannot read the {name} version from {text.strip()[:80]!r}")
    return (int(match[1]), int(match[2]), int(match[3]))


def show(version: tuple[int, ...]) -> str:
    return ".".join(map(str, version))
