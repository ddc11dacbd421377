"""launch, status, connect and destroy: a spot fleet from the image's newest verified AMI."""

from __future__ import annotations

from invoke import Exit

from .. import launch as launching
from ._common import IMAGE_HELP, bakery_task, image_arg

FLEET_LOCAL_HELP = (
    "against a local AWS emulator (AWS_ENDPOINT_URL, else one started for the task), with the"
    " real terraform and AWS provider; nothing boots there"
)
REGION_HELP = "the fleet's region (default: the configured region)"


@bakery_task(
    iterable=["allow_cidr", "subnet"],
    help={
        "image": IMAGE_HELP,
        "capacity": f"how many instances to run, all spot (default {launching.DEFAULT_CAPACITY});"
        " 0 keeps the group and launch template without paying for GPUs",
        "allow-cidr": "an IPv4 network allowed to reach the UI port (repeat for more); without it"
        " the UI is reachable through Session Manager only. The UI has no authentication",
        "yes-public": "allow --allow-cidr 0.0.0.0/0: anyone on the internet can use the UI",
        "allow-unverified": "launch the newest AMI even if it did not pass verification",
        "subnet": "a subnet ID to launch into (repeat, one per Availability Zone; default: the"
        " default VPC's subnets)",
        "region": REGION_HELP,
        "wait-minutes": "how long to wait for the instances to be in service (default"
        f" {launching.DEFAULT_WAIT_MINUTES}; 0 does not wait)",
        "local": FLEET_LOCAL_HELP,
    },
)
def launch(
    c,
    image=None,
    capacity=None,  # strings, so that a bad value gets our one-line error, not invoke's
    allow_cidr=None,
    yes_public=False,
    allow_unverified=False,
    subnet=None,
    region=None,
    wait_minutes=None,
    local=False,
):
    """Launch (or update) the image's spot fleet with terraform/; print how to reach the UI."""
    launching.launch(
        image_arg(image),
        capacity=launching.DEFAULT_CAPACITY if capacity is None else capacity,
        allow_cidr=allow_cidr or (),
        yes_public=yes_public,
        allow_unverified=allow_unverified,
        subnets=subnet or (),
        region=region,
        wait_minutes=launching.DEFAULT_WAIT_MINUTES if wait_minutes is None else wait_minutes,
        use_emulator=local,
    )


@bakery_task(
    help={
        "image": IMAGE_HELP,
        "region": REGION_HELP,
        "local": FLEET_LOCAL_HELP,
    }
)
def status(c, image=None, region=None, local=False):
    """The fleet: its group, instances (type, zone, spot or on-demand, health), AMI, the way in."""
    launching.status(image_arg(image), region=region, use_emulator=local)


@bakery_task(
    help={
        "image": IMAGE_HELP,
        "instance": "the in-service instance to connect to (default: the first)",
        "local-port": "the port on this machine (default: the UI's port)",
        "region": REGION_HELP,
        "local": FLEET_LOCAL_HELP,
    }
)
def connect(c, image=None, instance=None, local_port=None, region=None, local=False):
    """Forward a local port to the UI of an in-service instance (AWS CLI + Session Manager plugin)."""
    code = launching.connect(
        image_arg(image),
        region=region,
        instance=instance,
        local_port=local_port,
        use_emulator=local,
    )
    if code:
        raise Exit(code=code)


@bakery_task(
    help={
        "image": IMAGE_HELP,
        "region": REGION_HELP,
        "local": FLEET_LOCAL_HELP,
    }
)
def destroy(c, image=None, region=None, local=False):
    """Destroy the image's fleet with terraform, then check that nothing of it is left."""
    launching.destroy(image_arg(image), region=region, use_emulator=local)
