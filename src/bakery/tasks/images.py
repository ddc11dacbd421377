"""render and bake."""

from __future__ import annotations

from .. import config, packer, render, targets
from ._common import IMAGE_HELP, LOCAL_HELP, TARGET_HELP, bakery_task, image_arg


@bakery_task(
    help={
        "image": "image definition name (images/NAME.toml); all images when omitted",
        "target": TARGET_HELP,
        "local": "short for --target emulator (communicator none, no provisioners)",
        "packer-version": "render for this Packer version instead of the installed one (e.g. 1.11.2)",
    }
)
def render_(c, image=None, target=None, local=False, packer_version=None):
    """Render build/NAME/ (Packer HCL2 + NAME.pkrvars.hcl) from packer/*.j2 and the definition."""
    chosen = targets.get(target, local=local).name
    version = (
        packer.parse_version(packer_version) if packer_version else packer.version(packer.binary())
    )
    for definition in [image_arg(image)] if image else [config.load(n) for n in config.names()]:
        if chosen == "qemu":
            targets.require_qemu_table(definition)
        rendered = render.render(definition, version, target=chosen)
        print(
            f"rendered {definition.name} for packer {'.'.join(map(str, version))}: {rendered.directory}"
        )


@bakery_task(
    iterable=["security_group"],
    help={
        "image": IMAGE_HELP,
        "target": TARGET_HELP,
        "local": LOCAL_HELP,
        "force": "build even when an image with the same fingerprint exists",
        "subnet": "subnet of the build instance: an ID, or tag:KEY=VALUE (the match with the most"
        " free addresses) (default: build.subnet of the definition, else the default VPC)",
        "security-group": "security group ID for the build instance instead of Packer's temporary"
        " one (repeat for more; default: build.security_group_ids)",
    },
)
def bake(c, image=None, target=None, local=False, force=False, subnet=None, security_group=None):
    """Bake the image with Packer (an AMI on a spot instance by default), unless one with its fingerprint exists."""
    network = {"subnet": subnet, "security_groups": tuple(security_group or ())}
    targets.get(target, local=local).bake(image_arg(image), force=force, **network)
