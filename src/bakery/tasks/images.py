"""render and bake."""

from __future__ import annotations

from .. import bake as baking
from .. import config, packer, render
from ._common import IMAGE_HELP, LOCAL_HELP, bakery_task, image_arg


@bakery_task(
    help={
        "image": "image definition name (images/NAME.toml); all images when omitted",
        "local": "render for the local emulator (communicator none, no provisioners)",
        "packer-version": "render for this Packer version instead of the installed one (e.g. 1.11.2)",
    }
)
def render_(c, image=None, local=False, packer_version=None):
    """Render build/NAME/ (Packer HCL2 + NAME.pkrvars.hcl) from packer/*.j2 and the definition."""
    version = (
        packer.parse_version(packer_version) if packer_version else packer.version(packer.binary())
    )
    for definition in [image_arg(image)] if image else [config.load(n) for n in config.names()]:
        rendered = render.render(definition, version, local=local)
        print(
            f"rendered {definition.name} for packer {'.'.join(map(str, version))}: {rendered.directory}"
        )


@bakery_task(
    help={
        "image": IMAGE_HELP,
        "local": LOCAL_HELP,
        "force": "build even when an AMI with the same fingerprint exists",
    }
)
def bake(c, image=None, local=False, force=False):
    """Bake the image's AMI with Packer on a spot instance, unless one with its fingerprint exists."""
    baking.bake(image_arg(image), use_emulator=local, force=force)
