"""The fingerprint of everything that goes into an image: it decides whether a bake has work.

Covers the rendered Packer files (structure and the definition's values: versions, models,
volume, tags), every file under scripts/ (content and executable bit), and the resolved
base AMI. Not the build-time plumbing (region, build id, endpoints), which do not change
what ends up in the image.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

SCHEME = b"bakery-fingerprint-v1"


def fingerprint(rendered_files: Iterable[Path], scripts_dir: Path, source_ami: str) -> str:
    h = hashlib.sha256(SCHEME)
    for path in sorted(rendered_files, key=lambda p: p.name):
        _add(h, f"rendered/{path.name}", path)
    for path in sorted(p for p in scripts_dir.rglob("*") if p.is_file()):
        if "__pycache__" in path.parts:
            continue
        rel = path.relative_to(scripts_dir).as_posix()
        _add(h, f"scripts/{rel}:{'x' if path.stat().st_mode & 0o111 else '-'}", path)
    h.update(b"\0source-ami\0" + source_ami.encode())
    return h.hexdigest()


def _add(h: hashlib._Hash, name: str, path: Path) -> None:
    data = path.read_bytes()
    h.update(b"\0" + name.encode() + b"\0" + str(len(data)).encode() + b"\0" + data)
