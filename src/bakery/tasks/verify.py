"""verify: the image tests on a spot GPU instance launched from the AMI, or on a given host."""

from __future__ import annotations

from .. import targets
from .. import verify as verifying
from ..errors import BakeryError
from ._common import IMAGE_HELP, TARGET_HELP, bakery_task, image_arg


@bakery_task(
    iterable=["security_group"],
    help={
        "image": IMAGE_HELP,
        "ami": "AMI ID to verify (default: the image's newest unverified AMI)",
        "host": "run the image tests alone against this host: ssh://[USER@]HOST[:PORT],"
        " paramiko://..., safe-ssh://... or local:// (no instance, nothing marked)",
        "target": TARGET_HELP + "; nothing is marked but on aws",
        "local": "short for --target emulator: the instance lifecycle only (the image tests"
        " cannot run there; nothing is marked)",
        "timeout": f"minutes before everything is ended and cleaned up (default {verifying.DEFAULT_TIMEOUT_MIN})",
        "subnet": "subnet to launch in: an ID, or tag:KEY=VALUE for every matching subnet, zone by"
        " zone (default: verify.subnet of the definition, else the default VPC's subnets)",
        "security-group": "security group ID for the instance, instead of the one the run makes"
        " (repeat for more; default: verify.security_group_ids)",
        "ssh-cidr": "IPv4 address or network admitted to SSH (default: this runner's public"
        " address/32, from checkip.amazonaws.com)",
        "gpu": "with --host: the GPU name nvidia-smi should report (e.g. A10G); unchecked when omitted",
        "ssh-key": "with --host: private key for ssh:// and paramiko:// hosts",
    },
)
def verify(
    c,
    image=None,
    ami=None,
    host=None,
    target=None,
    local=False,
    timeout=None,  # a string, so that a bad value gets our one-line error, not invoke's traceback
    subnet=None,
    ssh_cidr=None,
    gpu=None,
    ssh_key=None,
    security_group=None,
):
    """Verify an AMI on a spot GPU instance: launch, run tests/image, tag the verdict, always clean up."""
    timeout = verifying.DEFAULT_TIMEOUT_MIN if timeout is None else timeout
    if host and target:
        raise BakeryError("--host runs the image tests alone: it takes no --target")
    targets.get(target, local=local).verify(
        image_arg(image),
        ami=ami,
        host=host,
        timeout=timeout,
        subnet=subnet,
        ssh_cidr=ssh_cidr,
        gpu=gpu,
        ssh_key=ssh_key,
        security_groups=tuple(security_group or ()),
    )
