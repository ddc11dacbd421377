"""invoke launch: terraform/ driven from the catalog.

One fleet per image and region, in a working folder of its own (see tfroot). `launch` checks
every input and finds the AMI before anything is written or applied (options, the AMI, the
network, the load balancer's certificate, client secret and OIDC issuer, Terraform), so bad
input leaves nothing behind; then terraform init + apply, a bounded wait for instances in
service, and the way to the UI.

The AMI is picked as the module picks it (see ami), so what was checked here is what launches.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import aws
from .. import terraform as tf
from ..config import ImageDef, rel
from ..errors import BakeryError, Interrupted
from . import group, options, tfroot
from . import signin as signing
from .ami import pick_ami, root_volume_gib, state_of
from .network import Network, network
from .options import Capacity, Ingress, SignIn
from .root import Root, check_emulator_bucket, check_emulator_policies, root_for, where

Say = Callable[[str], None]


@dataclass
class Outcome:
    outputs: dict[str, Any]
    instances: list[dict[str, Any]]
    work: Path
    url: str | None = None


@dataclass(frozen=True)
class Front:
    """The load balancer as this launch puts it: its sign-in and the certificate's name."""

    signin: SignIn
    domain: str
    secret: str  # where the client secret is, in words (never its value)

    @property
    def url(self) -> str:
        return signing.url_of(self.domain)


def launch(
    image: ImageDef,
    *,
    capacity: Any = None,
    min_capacity: Any = None,
    max_capacity: Any = None,
    allow_cidr: Iterable[str] = (),
    yes_public: bool = False,
    allow_unverified: bool = False,
    subnets: Iterable[str] = (),
    region: str | None = None,
    wait_minutes: Any = options.DEFAULT_WAIT_MINUTES,
    certificate_arn: str | None = None,
    oidc_issuer: str | None = None,
    oidc_client_id: str | None = None,
    oidc_client_secret_param: str | None = None,
    use_emulator: bool = False,
    say: Say = print,
) -> Outcome:
    """`invoke launch`: everything checked, then terraform init + apply, a wait, the way in."""
    sign_in = options.sign_in(
        image, certificate_arn, oidc_issuer, oidc_client_id, oidc_client_secret_param
    )
    size = options.capacity(
        image, capacity, min_capacity, max_capacity, balanced=sign_in is not None
    )
    ingress = options.allowed_networks(allow_cidr, yes_public, signed_in=sign_in is not None)
    patience_min = options.check_wait_minutes(wait_minutes)
    subnet_ids = options.check_subnets(subnets)
    options.fleet_name(image)
    binary = tf.binary()
    tf_version = tf.version(binary)
    started_here = use_emulator and not os.environ.get("AWS_ENDPOINT_URL")
    with where(use_emulator, say) as endpoint:
        aws.identity(region)
        root = root_for(image, region, endpoint)
        if root.backend and not root.backend.dynamodb_table and tf_version < tf.LOCKFILE_MINIMUM:
            raise BakeryError(
                f"the S3 backend locks with use_lockfile, which needs {tf.name(binary)} >="
                f" {'.'.join(map(str, tf.LOCKFILE_MINIMUM))} (this is {'.'.join(map(str, tf_version))}):"
                f" upgrade, or set {tfroot.DYNAMODB_TABLE_ENV}"
            )
        root.check_backend(tf.name(binary))
        ec2 = aws.client("ec2", root.region)
        aws.check_instance_types(ec2, image, "launch")
        try:
            ami = pick_ami(ec2, image, root.region, allow_unverified=allow_unverified, say=say)
        except BakeryError as e:
            if started_here:
                raise BakeryError(
                    f"{e}; the emulator started for this task starts empty: run one"
                    " (MOTO_IAM_LOAD_MANAGED_POLICIES=true moto_server -p 5000), export"
                    " AWS_ENDPOINT_URL=http://127.0.0.1:5000, bake into it with --local, then launch --local"
                ) from None
            raise
        net = network(ec2, subnet_ids)
        front = _front(root, sign_in, net) if sign_in else None
        root_size = None
        if endpoint is not None:
            check_emulator_policies(aws.client("iam", root.region), endpoint)
            if root.backend:
                check_emulator_bucket(aws.client("s3", root.backend.region), root.backend, endpoint)
            # moto launches nothing from a block device without a size (AWS takes the
            # snapshot's). Set whatever the capacity, so that scaling changes no template.
            root_size = root_volume_gib(ami)
        values = tfroot.fleet_inputs(
            image,
            root.name,
            ami,
            capacity=size,
            ingress=ingress,
            net=net,
            allow_unverified=allow_unverified,
            root_volume_size=root_size,
            signin=front.signin if front else None,
        )
        _announce(root, ami, values, size, ingress, net, front, say)
        if root_size is not None:
            say(
                f"local: root_volume_size = {root_size} GiB (the AMI's): the emulator launches nothing"
                " from a block device without a size; on AWS it stays null (the snapshot's size)"
            )
        tfroot.write(root.work, root.main_tf(), tfroot.tfvars_json(values))
        runner = tf.Terraform(root.work, binary, say)
        runner.prepare()
        try:
            runner.init()
        except tf.Stopped:
            raise Interrupted(
                f"launch of {image.name} interrupted during {runner.name} init; nothing was applied"
            ) from None
        try:
            runner.apply()
        except tf.Stopped:
            raise Interrupted(
                f"launch of {image.name} interrupted during {runner.name} apply; the state ({root.state()})"
                f" records what was created: launch again to finish, or {root.command('destroy')}"
            ) from None
        except BakeryError as e:
            raise BakeryError(
                f"{e} (what was created is in the state, {root.state()}: fix and launch again, or"
                f" {root.command('destroy')})"
            ) from None
        outputs = runner.outputs().get("fleet") or {}
        if outputs.get("ami_id") and outputs["ami_id"] != ami["ImageId"]:
            say(
                f"launch: warning: the module resolved {outputs['ami_id']}, not {ami['ImageId']}:"
                f" an AMI was tagged while this ran; {root.command('status')} shows which runs"
            )
        instances = _wait_and_tell(root, outputs, size, patience_min, ingress, front, say)
        return Outcome(outputs, instances, root.work, front.url if front else None)


def _front(root: Root, sign_in: SignIn, net: Network) -> Front:
    """The load balancer's certificate, client secret and issuer, checked where they live."""
    if len(net.subnet_ids) < 2:
        raise BakeryError(
            f"the load balancer needs subnets in two Availability Zones, and {net.describe()}"
            " has one: pass --subnet twice"
        )
    domain = signing.certificate_domain(aws.client("acm", root.region), sign_in.certificate_arn)
    secret = signing.check_secret(
        aws.client("ssm", root.region),
        aws.client("secretsmanager", root.region),
        sign_in.secret_parameter,
    )
    return Front(signing.with_endpoints(sign_in), domain, secret)


def _announce(
    root: Root,
    ami: dict[str, Any],
    values: dict[str, Any],
    size: Capacity,
    ingress: Ingress,
    net: Network,
    front: Front | None,
    say: Say,
) -> None:
    image = root.image
    say(
        f"launch: {image.name} in {root.region}: {ami['ImageId']} ({ami.get('Name', 'unnamed')},"
        f" {state_of(ami)}), models {', '.join(values['models']) or 'none'}"
    )
    say(
        f"launch: {size.describe()}, all spot, across {', '.join(values['instance_types'])};"
        f" {net.describe()}"
    )
    port = image.ui.port
    if front:
        reach = ", ".join(values["load_balancer_ingress_cidrs"])
        say(
            f"launch: one HTTPS address, {front.url}, with sign-in through {front.signin.issuer}"
            f" (client {front.signin.client_id}, secret read by terraform from {front.secret});"
            f" open to {reach}; HTTP redirects to HTTPS"
        )
        say(
            f"launch: the UI port {port} takes the load balancer alone; each new instance takes"
            " traffic only once its models are loaded and the UI answers (launch lifecycle hook)"
        )
        say(
            "launch: model pulls through the UI (/api/model) "
            + (
                "are allowed (launch.allow_model_pulls)"
                if front.signin.allow_model_pulls
                else "answer 403 at the load balancer"
            )
        )
    elif ingress.public:
        say(
            f"launch: --yes-public: the UI on port {port} will be open to the whole internet, and it"
            " has no authentication: anyone who finds the address can use the GPUs and make Ollama"
            " pull models"
        )
    elif ingress.cidrs:
        say(
            f"launch: the UI port {port} open to {', '.join(ingress.cidrs)} only (no authentication)"
        )
    else:
        say(
            f"launch: the UI port {port} closed to the network (no --allow-cidr): Session Manager only"
        )
    say("launch: Ollama's port 11434 is never opened")
    say(f"launch: working folder {rel(root.work)}; state {root.state()}")


def _wait_and_tell(
    root: Root,
    outputs: dict[str, Any],
    size: Capacity,
    patience_min: int,
    ingress: Ingress,
    front: Front | None,
    say: Say,
) -> list[dict[str, Any]]:
    image, name = root.image, outputs.get("autoscaling_group_name") or root.name
    autoscaling, ec2 = aws.client("autoscaling", root.region), aws.client("ec2", root.region)
    if front:
        for line in group.front_lines(
            front.url, outputs.get("load_balancer_dns_name"), outputs.get("load_balancer_zone_id")
        ):
            say(line)
    count = size.minimum if size.desired is None else size.desired
    if count == 0:
        say(
            f"launch: capacity 0: the group {name} and its launch template are ready, no instance"
            f" runs ({root.command('launch', '--capacity', '1')} starts one)"
        )
        root.say_local(say)
        return []
    if patience_min == 0:
        say(
            f"launch: not waiting for instances (--wait-minutes 0): {root.command('status')}"
            " shows when they are in service"
        )
        root.say_local(say)
        return []
    ready = group.wait_in_service(autoscaling, name, count, patience_min * 60.0, say)
    described = group.describe_instances(ec2, [i["InstanceId"] for i in ready])
    instances = [described[i["InstanceId"]] for i in ready if i["InstanceId"] in described]
    if not front:
        for line in group.reach_lines(
            instances,
            image=image.name,
            region=root.region,
            port=image.ui.port,
            open_to=ingress.describe() if ingress.open else None,
        ):
            say(line)
    if instances and front:
        say(
            "launch: in service means the models are loaded and the UI answers: the launch"
            " lifecycle hook held each instance until its user-data said so"
        )
        if root.local:
            say(
                "local: the emulator puts instances in service at once (no Pending:Wait) and does"
                " not implement CompleteLifecycleAction; AWS holds them until they are ready"
            )
    elif instances:
        say(
            "launch: in service means EC2 runs the instance; the UI answers once it reports ready"
            " (journal tag bakery, /run/bakery/ready), usually minutes after boot"
        )
    root.say_local(say)
    if len(ready) < count:
        why = group.last_failure(autoscaling, name)
        raise BakeryError(
            f"{len(ready)} of {count} instances of {image.name} in service after {patience_min} min"
            f" (--wait-minutes){f': {why}' if why else ''}; the fleet is applied and the group keeps"
            f" trying: {root.command('status')}"
        )
    return instances
