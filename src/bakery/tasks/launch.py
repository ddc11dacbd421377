"""launch, status, connect, destroy and cost: a spot fleet from the image's newest verified AMI."""

from __future__ import annotations

from invoke import Exit

from ..fleet import cost as costing
from ..fleet import destroy as destroying
from ..fleet import launch as launching
from ..fleet import options
from ..fleet import status as statuses
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
        "capacity": "a fixed fleet of N instances, all spot (default: launch.min_capacity and"
        f" launch.max_capacity of the definition, else {options.DEFAULT_CAPACITY}); 0 keeps the"
        " group and launch template without paying for GPUs",
        "min-capacity": "a scaling fleet: at least this many instances (1 or more; with"
        " --max-capacity, behind the load balancer; default: launch.min_capacity)",
        "max-capacity": "a scaling fleet: at most this many instances, added as requests per"
        " instance rise (default: launch.max_capacity)",
        "allow-cidr": "an IPv4 network allowed to reach the UI (repeat for more); without it the"
        " UI is reachable through Session Manager only, or, behind the load balancer, from"
        " anywhere after sign-in. The UI has no authentication of its own",
        "yes-public": "allow --allow-cidr 0.0.0.0/0 without the load balancer: anyone on the"
        " internet can use the UI",
        "allow-unverified": "launch the newest AMI even if it did not pass verification",
        "subnet": "a subnet ID to launch into (repeat, one per Availability Zone; default: the"
        " default VPC's subnets)",
        "region": REGION_HELP,
        "wait-minutes": "how long to wait for the instances to be in service (default"
        f" {options.DEFAULT_WAIT_MINUTES}; 0 does not wait)",
        "certificate-arn": "put the load balancer in front: HTTPS with this ACM certificate"
        " (default: launch.certificate_arn); needs the three --oidc-* options",
        "oidc-issuer": "the OpenID Connect issuer everyone signs in through, https://"
        " (default: launch.oidc_issuer)",
        "oidc-client-id": "the client ID registered with the issuer (default: launch.oidc_client_id)",
        "oidc-client-secret-param": "the NAME of the SSM SecureString parameter holding the"
        " client secret, or /aws/reference/secretsmanager/SECRET_NAME; never the secret itself"
        " (default: launch.oidc_client_secret_param)",
        "local": FLEET_LOCAL_HELP,
    },
)
def launch(
    c,
    image=None,
    capacity=None,  # strings, so that a bad value gets our one-line error, not invoke's
    min_capacity=None,
    max_capacity=None,
    allow_cidr=None,
    yes_public=False,
    allow_unverified=False,
    subnet=None,
    region=None,
    wait_minutes=None,
    certificate_arn=None,
    oidc_issuer=None,
    oidc_client_id=None,
    oidc_client_secret_param=None,
    local=False,
):
    """Launch (or update) the image's spot fleet with terraform/; print how to reach the UI."""
    launching.launch(
        image_arg(image),
        capacity=capacity,
        min_capacity=min_capacity,
        max_capacity=max_capacity,
        allow_cidr=allow_cidr or (),
        yes_public=yes_public,
        allow_unverified=allow_unverified,
        subnets=subnet or (),
        region=region,
        wait_minutes=options.DEFAULT_WAIT_MINUTES if wait_minutes is None else wait_minutes,
        certificate_arn=certificate_arn,
        oidc_issuer=oidc_issuer,
        oidc_client_id=oidc_client_id,
        oidc_client_secret_param=oidc_client_secret_param,
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
    statuses.status(image_arg(image), region=region, use_emulator=local)


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
    code = statuses.connect(
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
    destroying.destroy(image_arg(image), region=region, use_emulator=local)


@bakery_task(
    help={
        "image": IMAGE_HELP,
        "region": REGION_HELP,
        "json": "print the numbers as JSON (unrounded) instead of a table",
        "local": FLEET_LOCAL_HELP,
    }
)
def cost(c, image=None, region=None, json=False, local=False):
    """Spot prices: the fleet per hour (now, at its max), the newest AMI's bake and verify, $/M tokens."""
    costing.cost(image_arg(image), region=region, as_json=json, use_emulator=local)
