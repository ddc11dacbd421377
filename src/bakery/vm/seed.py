"""A NoCloud seed (an ISO labelled CIDATA): what EC2's metadata gives an instance at first
boot, for a local VM. meta-data carries the SSH public key (cloud-init installs it for the
image's default user, as it does the launch key pair on EC2); user-data is the fleet's script."""

from __future__ import annotations

import subprocess
from pathlib import Path

from ..errors import BakeryError
from . import require


def write(path: Path, *, instance_id: str, hostname: str, public_key: str, user_data: str) -> Path:
    folder = path.parent / (path.stem + ".d")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "meta-data").write_text(
        f"instance-id: {instance_id}\nlocal-hostname: {hostname}\n"
        f"public-keys:\n  - {public_key.strip()}\n"
    )
    (folder / "user-data").write_text(user_data)
    xorriso = require("xorriso", "xorriso")
    proc = subprocess.run(
        [
            xorriso,
            "-as",
            "genisoimage",
            "-quiet",
            "-output",
            str(path),
            "-volid",
            "CIDATA",
            "-joliet",
            "-rock",
            str(folder / "meta-data"),
            str(folder / "user-data"),
        ],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise BakeryError(f"qemu: could not make the NoCloud seed: {proc.stderr.strip()[:300]}")
    return path
