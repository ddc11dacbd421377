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

from . import aws, catalog, config, instanceprofile, network, quotas
from .config import ImageDef
from .errors import BakeryError, SpotInterrupted
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
    """Where the instance may go and how it is reached, decided before anything is created."""

    vpc_id: str
    subnets: dict[str, str]  # zone -> subnet, in the order they are tried
    instance_types: tuple[str, ...]
    cidr: str | None  # who may reach port 22; None with Session Manager (nothing may)
    security_group_ids: tuple[str, ...] = ()  # the user's; empty: the run makes one
    session_manager: bool = False


def plan(ec2: Any, image: ImageDef, choice: network.Choice, cidr: str | None) -> Plan:
    aws.check_instance_types(ec2, image, "verify")
    where = network.placement(ec2, choice, image.verify.availability_zones, image)
    return Plan(
        where.vpc_id,
        where.subnets,
        image.verify.instance_types,
        None if choice.network.session_manager else cidr,
        where.security_group_ids,
        choice.network.session_manager,
    )


# --- what one run creates ---------------------------------------------------------------------


@dataclass
class Created:
    """What one run has created so far, for its clean-up to end by ID."""

    run_id: str
    group_id: str | None = None
    key_name: str | None = None
    profile: str | None = None  # an instance profile made for the run
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


def block_devices(
    ami: dict[str, Any], initialization_rate: int | None = None
) -> list[dict[str, Any]]:
    """The AMI's EBS volumes, encrypted (the account's default key unless the snapshot has one),
    deleted with the instance, and initialized from their snapshots at `initialization_rate`
    MiB/s when one is set (as the fleet's launch template does), else lazily."""
    keep = ("SnapshotId", "VolumeSize", "VolumeType", "Iops", "Throughput")
    rate = {"VolumeInitializationRate": initialization_rate} if initialization_rate else {}
    return [
        {
            "DeviceName": m["DeviceName"],
            "Ebs": {k: m["Ebs"][k] for k in keep if k in m["Ebs"]}
            | {"Encrypted": True, "DeleteOnTermination": True}
            | (rate if "SnapshotId" in m["Ebs"] else {}),
        }
        for m in ami.get("BlockDeviceMappings", [])
        if m.get("Ebs")
    ]


@dataclass(frozen=True)
class Boot:
    """How the instance boots: as a fleet instance does (its user-data, its volume
    initialization rate), with the run's instance profile when it needs one."""

    user_data: str | None = None
    initialization_rate: int | None = None
    instance_profile: str | None = None


def launch_params(
    ami: dict[str, Any],
    instance_type: str,
    subnet: str,
    created: Created,
    tags: dict[str, str],
    boot: Boot = Boot(),
    security_group_ids: tuple[str, ...] = (),
) -> dict[str, Any]:
    params: dict[str, Any] = {
        "ImageId": ami["ImageId"],
        "InstanceType": instance_type,
        "MinCount": 1,
        "MaxCount": 1,
        "KeyName": created.key_name,
        "SubnetId": subnet,
        "SecurityGroupIds": list(security_group_ids) or [created.group_id],
        "InstanceMarketOptions": {
            "MarketType": "spot",
            "SpotOptions": {
                "SpotInstanceType": "one-time",
                "InstanceInterruptionBehavior": "terminate",
            },
        },
        "MetadataOptions": {"HttpTokens": "required", "HttpEndpoint": "enabled"},
        "BlockDeviceMappings": block_devices(ami, boot.initialization_rate),
        "InstanceInitiatedShutdownBehavior": "terminate",
        "TagSpecifications": [
            catalog.tag_spec("instance", tags),
            catalog.tag_spec("volume", tags),
            catalog.tag_spec("spot-instances-request", tags),
        ],
    }
    if boot.user_data is not None:
        params["UserData"] = boot.user_data  # boto3 base64-encodes it
    if boot.instance_profile:
        params["IamInstanceProfile"] = {"Name": boot.instance_profile}
    return params


def _capacity(e: botocore.exceptions.ClientError) -> bool:
    message = aws.describe(e).lower()
    return aws.error_code(e) in CAPACITY_CODES or "capacity-not-available" in message


def _run_instances(runner: Any, params: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """One launch: (answer, "") or (None, the capacity or quota error's code); throttling is
    waited out, and so is a new instance profile EC2 does not see yet; any other error is
    raised."""
    for pause in (2, 4, 8, 0):
        try:
            return instanceprofile.wait_usable(lambda: runner.run_instances(**params)), ""
        except botocore.exceptions.ClientError as e:
            code = aws.error_code(e)
            if code in THROTTLE_CODES and pause:
                time.sleep(pause)
                continue
            if _capacity(e) or code in QUOTA_CODES:
                return None, code or "capacity-not-available"
            raise
    raise AssertionError("unreachable: the last pause raises or returns")


def _refused(
    e: botocore.exceptions.ClientError, instance_type: str, zone: str, subnet: str
) -> BakeryError:
    if aws.error_code(e).startswith("InvalidSubnet"):
        return BakeryError(
            f"EC2 refused subnet {subnet} ({zone}) for {instance_type}: {aws.describe(e)}; pass"
            " --subnet (or set verify.subnet) to a subnet of this region that exists"
        )
    return BakeryError(f"cannot launch {instance_type} in {zone}: {aws.describe(e)}")


def launch_with_fallback(
    ec2: Any,
    ami: dict[str, Any],
    plan_: Plan,
    created: Created,
    tags: dict[str, str],
    say: Say,
    boot: Boot = Boot(),
) -> Launched:
    """The first type x zone with spot capacity, in the definition's order of preference.
    A type refused for its vCPU quota skips the others that share the quota."""
    region = ec2.meta.region_name
    runner = _launch_client(region)
    tried: dict[str, dict[str, list[str]]] = {}  # type -> error code -> zones
    exhausted: dict[str, str] = {}  # quota name -> the line that says how to raise it
    for instance_type in plan_.instance_types:
        quota = quotas.spot_quota(instance_type)
        if quota.name in exhausted:
            tried.setdefault(instance_type, {})["skipped: same quota"] = []
            say(
                f"verify: skipping {instance_type}: it draws on the same exhausted quota ({quota.name})"
            )
            continue
        for zone, subnet in plan_.subnets.items():
            params = launch_params(
                ami, instance_type, subnet, created, tags, boot, plan_.security_group_ids
            )
            params["ClientToken"] = f"{created.run_id}-{instance_type}-{zone}"[:64]
            created.in_flight = True
            try:
                answer, code = _run_instances(runner, params)
            except botocore.exceptions.ClientError as e:
                created.in_flight = False  # refused: nothing was launched
                raise _refused(e, instance_type, zone, subnet) from None
            created.in_flight = False
            if answer is not None:
                instance = answer["Instances"][0]
                created.instance_ids.append(instance["InstanceId"])
                say(
                    f"verify: launched spot {instance_type} {instance['InstanceId']} in {zone}"
                    f" from {ami['ImageId']} (IMDSv2 required, encrypted volumes"
                    + (
                        f", initialized at {boot.initialization_rate} MiB/s"
                        if boot.initialization_rate
                        else ""
                    )
                    + ")"
                )
                return Launched(instance["InstanceId"], instance_type, zone)
            if code in QUOTA_CODES:
                tried.setdefault(instance_type, {})[code] = ["every zone"]
                if code in quotas.CODES:
                    exhausted[quota.name] = quotas.explain(code, instance_type, region)
                    say(f"verify: {exhausted[quota.name]}; trying a type under another quota")
                else:
                    say(
                        f"verify: {instance_type}: {code}, a regional limit that every zone would"
                        " answer alike; trying the next type"
                    )
                break
            tried.setdefault(instance_type, {}).setdefault(code, []).append(zone)
            if code == "Unsupported":
                say(
                    f"verify: {instance_type} is not offered in {zone} (Unsupported); trying the next"
                )
            else:
                say(
                    f"verify: no spot capacity for {instance_type} in {zone} ({code}); trying the next"
                )
    quota_only = all(
        set(codes) <= {*quotas.CODES, "skipped: same quota"} for codes in tried.values()
    )
    if exhausted and quota_only:
        # Every type waits on a quota: that, not capacity, is what to fix.
        raise BakeryError("no verify instance type can launch: " + "; ".join(exhausted.values()))
    detail = "; ".join(
        f"{t}: "
        + ", ".join(
            f"{code} in {' '.join(zones)}" if zones else code for code, zones in codes.items()
        )
        for t, codes in tried.items()
    )
    advice = "".join(f"; {line}" for line in exhausted.values())
    raise BakeryError(
        f"no spot capacity for any verify instance type in {region} ({detail}){advice}"
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
