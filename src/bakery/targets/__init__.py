"""Where an image is built and verified: the one seam that bake and verify go through.

              bake                                verify
    aws       packer amazon-ebs on a spot         a spot GPU instance from the AMI, SSH,
              instance                            tests/image; the AMI tagged passed | failed
    emulator  packer amazon-ebs against the       the instance lifecycle only: no machine
              local AWS emulator (no provisioning) exists there, nothing is marked
    qemu      packer qemu: the same build block    the built disk booted with the fleet's
              and provisioners, on this machine   user-data, SSH, tests/image; the verdict in
                                                  build/NAME/verify.json, nothing in AWS marked

`verify --host` (tests/image against ssh:// or local:// alone) needs no target.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..config import ImageDef
from ..errors import BakeryError

NAMES = ("aws", "emulator", "qemu")
Say = Callable[[str], None]


@dataclass(frozen=True)
class Target:
    name: str
    marks: str  # what its verify may mark, as the README and the output say it
    bake: Callable[..., Any]  # (image, *, force, say, subnet, security_groups) -> outcome
    verify: Callable[..., Any]  # (image, *, say, **options) -> result


def _aws(emulator: bool) -> Target:
    from .. import bake, verify

    return Target(
        "emulator" if emulator else "aws",
        "nothing (no machine exists behind the emulator)" if emulator else "the AMI's tags",
        lambda image, *, force=False, say=print, **network: bake.bake(
            image, use_emulator=emulator, force=force, say=say, **network
        ),
        lambda image, *, say=print, **options: verify.main(
            image, use_emulator=emulator, say=say, **options
        ),
    )


def get(name: str | None, *, local: bool = False) -> Target:
    """The target a task names: --target NAME, with --local short for --target emulator."""
    if local and name not in (None, "emulator"):
        raise BakeryError(
            f"--local is short for --target emulator; it cannot go with --target {name}"
        )
    chosen = "emulator" if local else (name or "aws")
    if chosen == "qemu":
        from . import qemu

        return Target("qemu", "build/NAME/verify.json only", qemu.bake, qemu.verify)
    if chosen in ("aws", "emulator"):
        return _aws(chosen == "emulator")
    raise BakeryError(f"--target {name!r} is not a target ({', '.join(NAMES)})")


def require_qemu_table(image: ImageDef) -> None:
    if image.qemu is None:
        raise BakeryError(
            f"{image.path}: has no [qemu] table: --target qemu needs its base disk"
            ' (qemu.base = {url, sha256}, or qemu.debootstrap = "bookworm")'
        )
