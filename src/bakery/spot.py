"""Spot instances: one launched with fallback across types and zones, and a reclaim told
from a failure.

A reclaim (EC2 took the capacity back) says nothing about the image: bake and verify end with
SpotInterrupted for it, which CI retries. Anything else that ends an instance is a failure.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import botocore.exceptions

from . import aws, catalog, config
from .config import ImageDef
from .errors import BakeryError, ConfigError, SpotInterrupted
from .waiting import POLL_S, duration

Say = Callable[[str], None]

RUNNING_PATIENCE_S = 10 * 60  # pending -> running
STATUS_PATIENCE_S = 15 * 60  # running -> both status checks ok

# What EC2 writes when it reclaims spot capacity: the instance's StateReason codes
# (EC2 API reference, StateReason) and the spot request status codes of an interruption
# (EC2 user guide, "Spot request status"). Launch-time capacity errors
# (InsufficientInstanceCapacity, capacity-not-available) are not interruptions: nothing ran.
MARKERS = (
    "Server.SpotInstanceTermination",
    "Server.SpotInstanceShutdown",
    "instance-terminated-by-price",
    "instance-terminated-no-capacity",
    "instance-terminated-capacity-oversubscribed",
    "instance-stopped-by-price",
    "instance-stopped-no-capacity",
    "instance-stopped-capacity-oversubscribed",
    "marked-for-termination",
    "marked-for-stop",
)


def interruption(*texts: str) -> str | None:
    """The first line of `texts` that shows a spot interruption, or None."""
    markers = [m.lower() for m in MARKERS]
    for text in texts:
        for line in (text or "").splitlines():
            if any(m in line.lower() for m in markers):
                return line.strip()
    return None


# RunInstances errors that another zone or type may not have: say so and try the next.
CAPACITY_CODES = {
    "InsufficientInstanceCapacity",
    "InsufficientCapacity",
    "InsufficientHostCapacity",
    "InsufficientFreeAddressesInSubnet",
    "SpotMaxPriceTooLow",
    "Unsupported",
    "UnfulfillableCapacity",
}
# Regional limits: every zone would answer alike, so the next type is tried, not the next zone.
QUOTA_CODES = {"MaxSpotInstanceCountExceeded", "VcpuLimitExceeded", "InstanceLimitExceeded"}
THROTTLE_CODES = {"RequestLimitExceeded", "Throttling", "ThrottlingException"}


# --- where it may go --------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """Where the instance may go, decided before anything is created."""

    vpc_id: str
    subnets: dict[str, str]  # zone -> subnet, in the order they are tried
    instance_types: tuple[str, ...]
    cidr: str


def plan(ec2: Any, image: ImageDef, subnet: str | None, cidr: str) -> Plan:
    region = ec2.meta.region_name
    aws.check_instance_types(ec2, image, "verify")
    if subnet:
        try:
            found = ec2.describe_subnets(SubnetIds=[subnet])["Subnets"]
        except botocore.exceptions.ClientError as e:
            if not aws.error_code(e).startswith("InvalidSubnet"):
                raise
            found = []
        if not found:
            raise BakeryError(f"--subnet {subnet} does not exist in {region}")
        return Plan(
            found[0]["VpcId"],
            {found[0]["AvailabilityZone"]: subnet},
            image.verify.instance_types,
            cidr,
        )
    vpcs = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"]
    if not vpcs:
        raise BakeryError(
            f"{region} has no default VPC: pass --subnet ID (a subnet this runner can reach over SSH)"
        )
    vpc = vpcs[0]["VpcId"]
    defaults = {
        s["AvailabilityZone"]: s["SubnetId"]
        for s in ec2.describe_subnets(
            Filters=[
                {"Name": "vpc-id", "Values": [vpc]},
                {"Name": "default-for-az", "Values": ["true"]},
            ]
        )["Subnets"]
    }
    zones = [
        z["ZoneName"]
        for z in ec2.describe_availability_zones(
            Filters=[{"Name": "state", "Values": ["available"]}]
        )["AvailabilityZones"]
        if z.get("ZoneType", "availability-zone") == "availability-zone"
    ]
    wanted = list(image.verify.availability_zones)
    for i, zone in enumerate(wanted):
        if zone not in zones:
            raise ConfigError(
                image.path,
                f"verify.availability_zones[{i}]",
                f"{zone!r} is not an available zone of {region} (zones: {', '.join(sorted(zones))})",
            )
    order = wanted or sorted(zones)
    subnets = {z: defaults[z] for z in order if z in defaults}
    if not subnets:
        raise BakeryError(
            f"the default VPC {vpc} has no default subnet in {', '.join(order)}: pass --subnet ID"
        )
    return Plan(vpc, subnets, image.verify.instance_types, cidr)


# --- what one run creates ---------------------------------------------------------------------


@dataclass
class Created:
    """What one run has created so far, for its clean-up to end by ID."""

    run_id: str
    group_id: str | None = None
    key_name: str | None = None
    instance_ids: list[str] = field(default_factory=list)
    in_flight: bool = False  # a RunInstances call was under way: its answer may be lost


@dataclass
class Launched:
    instance_id: str
    instance_type: str
    zone: str
    address: str = ""
    private: bool = False  # no public address: reached on its private one

    @property
    def gpu(self) -> str | None:
        return config.gpu_name(self.instance_type)


# --- launching with fallback ------------------------------------------------------------------


def _launch_client(region: str) -> Any:
    """An EC2 client that makes one attempt per RunInstances call. botocore retries capacity
    errors (HTTP 500) with backoff, up to the configured attempts, where trying the next zone
    or type is the better move; throttling is retried by _run_instances()."""
    runner = aws.client("ec2", region)
    hyphenized = runner.meta.service_model.service_id.hyphenize()
    runner.meta.events.unregister(
        f"needs-retry.{hyphenized}", unique_id=f"retry-config-{hyphenized}"
    )
    return runner


def block_devices(ami: dict[str, Any]) -> list[dict[str, Any]]:
    """The AMI's EBS volumes, encrypted (the account's default key unless the snapshot has one)
    and deleted with the instance."""
    keep = ("SnapshotId", "VolumeSize", "VolumeType", "Iops", "Throughput")
    return [
        {
            "DeviceName": m["DeviceName"],
            "Ebs": {k: m["Ebs"][k] for k in keep if k in m["Ebs"]}
            | {"Encrypted": True, "DeleteOnTermination": True},
        }
        for m in ami.get("BlockDeviceMappings", [])
        if m.get("Ebs")
    ]


def launch_params(
    ami: dict[str, Any],
    instance_type: str,
    subnet: str,
    created: Created,
    tags: dict[str, str],
) -> dict[str, Any]:
    return {
        "ImageId": ami["ImageId"],
        "InstanceType": instance_type,
        "MinCount": 1,
        "MaxCount": 1,
        "KeyName": created.key_name,
        "SubnetId": subnet,
        "SecurityGroupIds": [created.group_id],
        "InstanceMarketOptions": {
            "MarketType": "spot",
            "SpotOptions": {
                "SpotInstanceType": "one-time",
                "InstanceInterruptionBehavior": "terminate",
            },
        },
        "MetadataOptions": {"HttpTokens": "required", "HttpEndpoint": "enabled"},
        "BlockDeviceMappings": block_devices(ami),
        "InstanceInitiatedShutdownBehavior": "terminate",
        "TagSpecifications": [
            catalog.tag_spec("instance", tags),
            catalog.tag_spec("volume", tags),
            catalog.tag_spec("spot-instances-request", tags),
        ],
    }


def _capacity(e: botocore.exceptions.ClientError) -> bool:
    message = aws.describe(e).lower()
    return aws.error_code(e) in CAPACITY_CODES or "capacity-not-available" in message


def _run_instances(runner: Any, params: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """One launch: (answer, "") or (None, the capacity or quota error's code); throttling is
    waited out; any other error is raised."""
    for pause in (2, 4, 8, 0):
        try:
            return runner.run_instances(**params), ""
        except botocore.exceptions.ClientError as e:
            code = aws.error_code(e)
            if code in THROTTLE_CODES and pause:
                time.sleep(pause)
                continue
            if _capacity(e) or code in QUOTA_CODES:
                return None, code or "capacity-not-available"
            raise
    raise AssertionError("unreachable: the last pause raises or returns")


def launch_with_fallback(
    ec2: Any,
    ami: dict[str, Any],
    plan_: Plan,
    created: Created,
    tags: dict[str, str],
    say: Say,
) -> Launched:
    """The first type x zone with spot capacity, in the definition's order of preference."""
    runner = _launch_client(ec2.meta.region_name)
    tried: dict[str, dict[str, list[str]]] = {}  # type -> error code -> zones
    for instance_type in plan_.instance_types:
        for zone, subnet in plan_.subnets.items():
            params = launch_params(ami, instance_type, subnet, created, tags)
            params["ClientToken"] = f"{created.run_id}-{instance_type}-{zone}"[:64]
            created.in_flight = True
            try:
                answer, code = _run_instances(runner, params)
            except botocore.exceptions.ClientError as e:
                created.in_flight = False  # refused: nothing was launched
                raise BakeryError(
                    f"cannot launch {instance_type} in {zone}: {aws.describe(e)}"
                ) from None
            created.in_flight = False
            if answer is not None:
                instance = answer["Instances"][0]
                created.instance_ids.append(instance["InstanceId"])
                say(
                    f"verify: launched spot {instance_type} {instance['InstanceId']} in {zone}"
                    f" from {ami['ImageId']} (IMDSv2 required, encrypted volumes)"
                )
                return Launched(instance["InstanceId"], instance_type, zone)
            if code in QUOTA_CODES:
                tried.setdefault(instance_type, {})[code] = ["every zone"]
                say(
                    f"verify: {instance_type}: {code}, a regional limit that every zone would"
                    " answer alike; trying the next type"
                )
                break
            tried.setdefault(instance_type, {}).setdefault(code, []).append(zone)
            say(f"verify: no spot capacity for {instance_type} in {zone} ({code}); trying the next")
    detail = "; ".join(
        f"{t}: " + ", ".join(f"{code} in {' '.join(zones)}" for code, zones in codes.items())
        for t, codes in tried.items()
    )
    raise BakeryError(
        f"no spot capacity for any verify instance type in {ec2.meta.region_name} ({detail})"
    )


# --- waiting ----------------------------------------------------------------------------------


def describe_instance(ec2: Any, instance_id: str) -> dict[str, Any] | None:
    try:
        reservations = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
    except botocore.exceptions.ClientError as e:
        if aws.error_code(e) == "InvalidInstanceID.NotFound":
            return None  # not visible yet (eventual consistency) or long gone
        raise
    found = [i for r in reservations for i in r["Instances"]]
    return found[0] if found else None


def reclaimed(instance: dict[str, Any]) -> bool:
    """EC2 took the spot instance back (a retry may pass), as opposed to it shutting itself down."""
    reason = instance.get("StateReason") or {}
    return interruption(reason.get("Code", ""), reason.get("Message", "")) is not None


def _ended(instance: dict[str, Any]) -> str:
    reason = instance.get("StateReason", {}).get("Message") or "no reason given"
    return f"{instance['InstanceId']} ended before it was ready ({instance['State']['Name']}: {reason})"


def wait_running(ec2: Any, launched: Launched, say: Say) -> None:
    """Running, with both status checks ok (bounded patience each); notes its address."""
    started = time.monotonic()
    state = "pending"
    while True:
        instance = describe_instance(ec2, launched.instance_id)
        state = instance["State"]["Name"] if instance else "pending"
        if state == "running" and instance:
            launched.address = instance.get("PublicIpAddress") or instance.get(
                "PrivateIpAddress", ""
            )
            launched.private = not instance.get("PublicIpAddress")
            break
        if state in ("shutting-down", "terminated", "stopping", "stopped") and instance:
            raise (SpotInterrupted if reclaimed(instance) else BakeryError)(_ended(instance))
        if time.monotonic() - started > RUNNING_PATIENCE_S:
            raise BakeryError(
                f"{launched.instance_id} is still {state} after {duration(RUNNING_PATIENCE_S)}"
            )
        time.sleep(POLL_S)
    say(
        f"verify: {launched.instance_id} is running at {launched.address}"
        + (" (no public address: reaching its private one)" if launched.private else "")
    )
    started = time.monotonic()
    while True:
        statuses = ec2.describe_instance_status(
            InstanceIds=[launched.instance_id], IncludeAllInstances=True
        )["InstanceStatuses"]
        system = statuses[0].get("SystemStatus", {}).get("Status") if statuses else None
        own = statuses[0].get("InstanceStatus", {}).get("Status") if statuses else None
        if system == own == "ok":
            break
        if "impaired" in (system, own):
            raise BakeryError(
                f"{launched.instance_id} failed its status checks (system {system}, instance {own})"
            )
        if time.monotonic() - started > STATUS_PATIENCE_S:
            raise BakeryError(
                f"{launched.instance_id}: status checks not ok after {duration(STATUS_PATIENCE_S)}"
                f" (system {system}, instance {own})"
            )
        time.sleep(POLL_S)
    say(f"verify: {launched.instance_id} passed its system and instance status checks")
