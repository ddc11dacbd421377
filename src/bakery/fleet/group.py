"""A fleet as AWS sees it: its Auto Scaling group and instances, the wait for them to be in
service, the way to reach the UI, and what is left of it after a destroy."""

from __future__ import annotations

import contextlib
import json
import shlex
import time
from collections.abc import Callable
from typing import Any

import botocore.exceptions

from .. import TOOL, catalog
from ..errors import BakeryError

Say = Callable[[str], None]

POLL_S = 15.0
PORT_FORWARD_DOCUMENT = "AWS-StartPortForwardingSession"
LIVE_STATES = ["pending", "running", "stopping", "stopped", "shutting-down"]


# --- reaching the UI ------------------------------------------------------------------------


def port_forward_command(
    instance_id: str, region: str, port: int, local_port: int | None = None
) -> list[str]:
    parameters = {"portNumber": [str(port)], "localPortNumber": [str(local_port or port)]}
    return [
        "aws",
        "ssm",
        "start-session",
        "--region",
        region,
        "--target",
        instance_id,
        "--document-name",
        PORT_FORWARD_DOCUMENT,
        "--parameters",
        json.dumps(parameters, separators=(",", ":")),
    ]


def reach_lines(
    instances: list[dict[str, Any]], *, image: str, region: str, port: int, open_to: str | None
) -> list[str]:
    """How to reach the UI: its URL on each instance when networks were allowed (`open_to`
    names them), else the Session Manager port forward. `instances` are EC2 descriptions of
    instances in service."""
    if not instances:
        return []
    if open_to:
        lines = [f"the UI (no authentication; open to {open_to}):"]
        private = []
        for i in instances:
            if i.get("PublicIpAddress"):
                lines.append(f"  http://{i['PublicIpAddress']}:{port}  ({i['InstanceId']})")
            else:
                private.append(i)
        for i in private:
            lines.append(
                f"  {i['InstanceId']} has no public address: http://{i.get('PrivateIpAddress', '?')}:{port}"
                f" from inside the VPC, or invoke connect --image {image}"
            )
        return lines
    first = instances[0]["InstanceId"]
    return [
        "the UI is closed to the network (no --allow-cidr): forward its port through Session Manager",
        f"(invoke connect --image {image} runs this for you; it needs the AWS CLI and its Session Manager plugin):",
        f"  {shlex.join(port_forward_command(first, region, port))}",
        f"then open http://localhost:{port}",
    ]


def front_lines(url: str, dns_name: str | None, zone_id: str | None) -> list[str]:
    """The one address behind the load balancer, and the DNS record it needs."""
    host = url.removeprefix("https://")
    lines = [f"the UI: {url} (sign in first; the UI's own port is closed to the network)"]
    if dns_name:
        record = f"a CNAME {host} -> {dns_name}"
        if zone_id:
            record += f", or a Route 53 alias to it (hosted zone {zone_id})"
        lines.append(f"  DNS: {record}")
    return lines


# --- the group and its instances ------------------------------------------------------------


def describe_group(autoscaling: Any, name: str) -> dict[str, Any] | None:
    groups = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name])[
        "AutoScalingGroups"
    ]
    return groups[0] if groups else None


def in_service(group: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        i
        for i in group.get("Instances", [])
        if i.get("LifecycleState") == "InService" and i.get("HealthStatus") == "Healthy"
    ]


def describe_instances(ec2: Any, ids: list[str]) -> dict[str, dict[str, Any]]:
    if not ids:
        return {}
    found: dict[str, dict[str, Any]] = {}
    for page in ec2.get_paginator("describe_instances").paginate(InstanceIds=ids):
        for reservation in page["Reservations"]:
            for instance in reservation["Instances"]:
                found[instance["InstanceId"]] = instance
    return found


def last_failure(autoscaling: Any, name: str) -> str | None:
    """Why the group could not launch, in AWS's words (e.g. no spot capacity), if it says."""
    try:
        activities = autoscaling.describe_scaling_activities(
            AutoScalingGroupName=name, MaxRecords=10
        )["Activities"]
    except botocore.exceptions.ClientError:
        return None
    for activity in activities:
        if activity.get("StatusCode") in ("Failed", "Cancelled") and activity.get("StatusMessage"):
            return " ".join(activity["StatusMessage"].split())[:300]
    return None


def wait_in_service(
    autoscaling: Any,
    name: str,
    desired: int,
    patience_s: float,
    say: Say,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> list[dict[str, Any]]:
    """The group's healthy in-service instances, once `desired` of them are (or patience ends)."""
    deadline = clock() + patience_s
    seen: tuple[int, int] | None = None
    while True:
        group = describe_group(autoscaling, name)
        if group is None:
            raise BakeryError(f"the Auto Scaling group {name} is gone")
        ready = in_service(group)
        counts = (len(ready), len(group.get("Instances", [])))
        if counts != seen:
            say(f"launch: {counts[0]} of {desired} instances in service ({counts[1]} in the group)")
            seen = counts
        if len(ready) >= desired or clock() >= deadline:
            return ready
        sleep(min(POLL_S, max(deadline - clock(), 0.1)))


def describe_member(member: dict[str, Any], detail: dict[str, Any]) -> str:
    """id, type, zone, spot or on-demand, lifecycle state, health, address."""
    fields = [
        member["InstanceId"],
        member.get("InstanceType") or detail.get("InstanceType") or "-",
        member.get("AvailabilityZone") or "-",
        (detail.get("InstanceLifecycle") or "on-demand") if detail else "-",
        member.get("LifecycleState") or "-",
        member.get("HealthStatus") or "-",
        detail.get("PublicIpAddress") or detail.get("PrivateIpAddress") or "-",
    ]
    return "  ".join(fields)


def describe_group_line(group: dict[str, Any]) -> str:
    ready = len(in_service(group))
    policy = group.get("MixedInstancesPolicy") or {}
    distribution = policy.get("InstancesDistribution") or {}
    overrides = (policy.get("LaunchTemplate") or {}).get("Overrides") or []
    types = ", ".join(o["InstanceType"] for o in overrides if o.get("InstanceType"))
    base = distribution.get("OnDemandBaseCapacity", 0)
    above = distribution.get("OnDemandPercentageAboveBaseCapacity", 0)
    market = (
        "all spot" if not base and not above else f"on demand: {base} + {above}% above, rest spot"
    )
    return (
        f"{group['AutoScalingGroupName']}: {ready} of {group.get('DesiredCapacity', 0)} in service"
        f" (min {group.get('MinSize')}, max {group.get('MaxSize')}), {market} across {types or '?'}"
    )


def leftovers(
    autoscaling: Any,
    ec2: Any,
    iam: Any,
    elbv2: Any,
    *,
    image: str,
    name: str,
    outputs: dict[str, Any],
) -> list[str]:
    """What of the fleet still exists, looked up by name, by the IDs in the module's
    outputs, and by the tool's tags."""
    left: list[str] = []
    if describe_group(autoscaling, name):
        left.append(f"Auto Scaling group {name}")
    # The load balancer and target group are named after the fleet, as the group is.
    with contextlib.suppress(elbv2.exceptions.LoadBalancerNotFoundException):
        if elbv2.describe_load_balancers(Names=[name])["LoadBalancers"]:
            left.append(f"load balancer {name}")
    with contextlib.suppress(elbv2.exceptions.TargetGroupNotFoundException):
        if elbv2.describe_target_groups(Names=[name])["TargetGroups"]:
            left.append(f"target group {name}")
    lb_group = outputs.get("load_balancer_security_group_id")
    if lb_group:
        with contextlib.suppress(botocore.exceptions.ClientError):
            if ec2.describe_security_groups(GroupIds=[lb_group])["SecurityGroups"]:
                left.append(f"security group {lb_group}")
    tagged = [
        {"Name": f"tag:{catalog.MANAGED_BY}", "Values": [TOOL]},
        {"Name": f"tag:{catalog.IMAGE}", "Values": [image]},
    ]
    templates = ec2.describe_launch_templates(Filters=tagged)["LaunchTemplates"]
    left += [f"launch template {t['LaunchTemplateId']}" for t in templates]
    members = ec2.describe_instances(
        Filters=[
            {"Name": "tag:aws:autoscaling:groupName", "Values": [name]},
            {"Name": "instance-state-name", "Values": LIVE_STATES},
        ]
    )["Reservations"]
    left += [f"instance {i['InstanceId']}" for r in members for i in r["Instances"]]
    group_id = outputs.get("security_group_id")
    if group_id:
        with contextlib.suppress(botocore.exceptions.ClientError):
            if ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"]:
                left.append(f"security group {group_id}")
    role = outputs.get("iam_role_name")
    if role:
        with contextlib.suppress(iam.exceptions.NoSuchEntityException):
            iam.get_role(RoleName=role)
            left.append(f"IAM role {role}")
    profile_arn = outputs.get("iam_instance_profile_arn")
    if profile_arn:
        profile = profile_arn.rsplit("/", 1)[-1]
        with contextlib.suppress(iam.exceptions.NoSuchEntityException):
            iam.get_instance_profile(InstanceProfileName=profile)
            left.append(f"instance profile {profile}")
    return left
