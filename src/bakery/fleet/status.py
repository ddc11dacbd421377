"""invoke status and connect: the fleet as it runs, and a way into one of its instances."""

from __future__ import annotations

import shlex
import shutil
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .. import aws, catalog
from .. import terraform as tf
from ..config import ImageDef
from ..errors import BakeryError
from . import group as group_
from . import options
from . import signin as signing
from .ami import state_of
from .options import Ingress
from .root import root_for, where

Say = Callable[[str], None]


@dataclass
class Status:
    outputs: dict[str, Any]
    group: dict[str, Any] | None
    instances: list[dict[str, Any]]


def status(
    image: ImageDef, *, region: str | None = None, use_emulator: bool = False, say: Say = print
) -> Status | None:
    binary = tf.binary()
    with where(use_emulator, say) as endpoint:
        aws.identity(region)
        root = root_for(image, region, endpoint)
        outputs = root.launched(binary, say)
        if outputs is None:
            say(f"status: {root.nothing()}")
            return None
        autoscaling = aws.client("autoscaling", root.region)
        ec2 = aws.client("ec2", root.region)
        name = outputs.get("autoscaling_group_name") or root.name
        group = group_.describe_group(autoscaling, name)
        say(f"status: {image.name} in {root.region} (state {root.state()})")
        instances: list[dict[str, Any]] = []
        if group is None:
            say(
                f"  group        {name}: not found (deleted outside terraform?): invoke launch"
                f" recreates it, {root.command('destroy')} forgets it"
            )
        else:
            say(f"  group        {group_.describe_group_line(group)}")
            described = group_.describe_instances(
                ec2, [i["InstanceId"] for i in group["Instances"]]
            )
            for member in group["Instances"]:
                detail = described.get(member["InstanceId"], {})
                instances.append(detail or {"InstanceId": member["InstanceId"]})
                say(f"  instance     {group_.describe_member(member, detail)}")
            if root.local and group["Instances"]:
                say(
                    "local: the emulator ignores the mixed instances policy and the template's"
                    " metadata options when it launches: its instances show no type from the list"
                    " and run on demand; AWS launches them as spot, of the listed types"
                )
        _say_ami(ec2, image, root.region, outputs.get("ami_id"), say)
        values = root.applied_inputs()
        if outputs.get("load_balancer_dns_name"):
            _say_front(outputs, values, root.region, say)
            root.say_local(say)
            return Status(outputs, group, instances)
        ingress = Ingress(
            tuple(values.get("ui_ingress_cidrs", [])), bool(values.get("ui_public_ingress"))
        )
        serving = [
            d
            for d in instances
            if group and d.get("InstanceId") in {i["InstanceId"] for i in group_.in_service(group)}
        ]
        port = int(values.get("ui_port", image.ui.port))
        for line in group_.reach_lines(
            serving,
            image=image.name,
            region=root.region,
            port=port,
            open_to=ingress.describe() if ingress.open else None,
        ):
            say(f"  {line}")
        root.say_local(say)
        return Status(outputs, group, instances)


def _say_front(outputs: dict[str, Any], values: dict[str, Any], region: str, say: Say) -> None:
    """The load balancer: the one address, its sign-in, the hook and the scaling policy."""
    arn = values.get("load_balancer_certificate_arn")
    try:
        url = signing.url_of(signing.certificate_domain(aws.client("acm", region), str(arn)))
    except BakeryError as e:
        url = f"https://<a name the certificate covers> ({e})"
    issuer = (values.get("oidc") or {}).get("issuer", "?")
    pulls = "allowed" if values.get("allow_model_pulls") else "403 at the load balancer"
    say(f"  address      {url}, sign-in through {issuer}; /api/model: {pulls}")
    say(f"  balancer     {outputs['load_balancer_dns_name']} (point the name above at it)")
    say(
        f"  readiness    launch lifecycle hook {outputs.get('lifecycle_hook_name')}: an instance"
        " takes traffic once its models are loaded and the UI answers"
    )
    if outputs.get("scaling_policy_name"):
        say(
            f"  scaling      {outputs['scaling_policy_name']}: about"
            f" {values.get('target_requests_per_instance')} requests per instance per minute,"
            f" {values.get('min_size')} to {values.get('max_size')} instances"
        )


def _say_ami(ec2: Any, image: ImageDef, region: str, ami_id: str | None, say: Say) -> None:
    if not ami_id:
        return
    try:
        ami = catalog.get(ec2, ami_id)
    except BakeryError:
        say(f"  ami          {ami_id}: gone (deregistered?); running instances keep their volumes")
        return
    say(f"  ami          {ami_id} ({ami.get('Name', 'unnamed')}), {state_of(ami)}")
    newest = catalog.newest(ec2, image.name, verification=catalog.PASSED)
    if newest and newest["ImageId"] != ami_id:
        say(
            f"  newer        {newest['ImageId']} is the newest verified AMI: invoke launch --image"
            f" {image.name} rolls it out to new instances"
        )


def connect(
    image: ImageDef,
    *,
    region: str | None = None,
    instance: str | None = None,
    local_port: Any = None,
    use_emulator: bool = False,
    say: Say = print,
) -> int:
    """`invoke connect`: a Session Manager port forward from localhost to the UI of one instance."""
    port_override = (
        options.check_port("--local-port", local_port) if local_port is not None else None
    )
    binary = tf.binary()
    with where(use_emulator, say) as endpoint:
        aws.identity(region)
        root = root_for(image, region, endpoint)
        outputs = root.launched(binary, say)
        if outputs is None:
            raise BakeryError(f"{root.nothing()}: {root.command('launch')} first")
        name = outputs.get("autoscaling_group_name") or root.name
        group = group_.describe_group(aws.client("autoscaling", root.region), name)
        ready = group_.in_service(group) if group else []
        ids = [i["InstanceId"] for i in ready]
        if instance and instance not in ids:
            raise BakeryError(
                f"--instance {instance} is not an in-service instance of {name}"
                f" ({', '.join(ids) or 'none is in service'})"
            )
        if not ids:
            raise BakeryError(
                f"no instance of {name} is in service in {root.region}"
                f" ({group.get('DesiredCapacity', 0) if group else 0} desired): {root.command('status')}"
            )
        target = instance or sorted(ids)[0]
        port = int(root.applied_inputs().get("ui_port", image.ui.port))
        command = group_.port_forward_command(target, root.region, port, port_override)
        if root.local:
            say(f"connect: {shlex.join(command)}")
            say(
                "local: no instance runs behind the emulator, so no session was started: this is"
                " the command connect runs against AWS"
            )
            return 0
        missing = [t for t in ("aws", "session-manager-plugin") if not shutil.which(t)]
        if missing:
            say(f"connect: {shlex.join(command)}")
            raise BakeryError(
                f"{' and '.join(missing)} not on PATH: install the AWS CLI and its Session Manager"
                " plugin, then run the command above"
            )
        say(
            f"connect: forwarding localhost:{port_override or port} to the UI of {target} (port {port});"
            f" open http://localhost:{port_override or port}; Ctrl-C ends it"
        )
        return _run_session(command)


def _run_session(command: list[str]) -> int:
    """The session in the foreground: Ctrl-C is how it ends, and the CLI handles it itself."""
    proc = subprocess.Popen(command)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return proc.wait()
    finally:
        signal.signal(signal.SIGINT, previous)
