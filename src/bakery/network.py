"""Where a bake or verify instance runs: its subnets (by ID, by tag filter, or the default
VPC's) and security groups, found and checked before anything is created.

A subnet is chosen on the command line (--subnet) or in the definition ([build] / [verify]
subnet); the command line wins. Without either, the default VPC is used, and an account
without one gets one line saying what to pass.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import botocore.exceptions

from . import aws, config
from .config import ImageDef, Network
from .errors import BakeryError, ConfigError


@dataclass(frozen=True)
class Placement:
    vpc_id: str
    subnets: dict[str, str]  # zone -> subnet, in the order they are tried
    security_group_ids: tuple[str, ...]  # the user's; empty: the run makes its own
    chosen: bool  # a subnet was named (else the default VPC's subnets)

    @property
    def subnet_ids(self) -> list[str]:
        return list(self.subnets.values())


@dataclass(frozen=True)
class Choice:
    """The network settings in force and where each came from, for messages."""

    network: Network
    subnet_from: str  # "--subnet" or "build.subnet (images/x.toml)"
    groups_from: str
    section: str  # "build" | "verify"
    path: str

    def describe(self) -> str:
        return f"{self.subnet_from} {self.network.subnet}"


def choose(
    image: ImageDef, section: str, subnet: str | None, security_groups: tuple[str, ...] = ()
) -> Choice:
    """The definition's [section] network, with the command line's subnet and groups over it."""
    network: Network = getattr(image, section).network
    where = f"({image.path})"
    subnet_from = f"{section}.subnet {where}"
    groups_from = f"{section}.security_group_ids {where}"
    if subnet:
        subnet_from = "--subnet"
        try:
            config.subnet_choice(subnet)
        except ValueError as e:
            raise BakeryError(f"--subnet {e}") from None
        network = dataclasses.replace(network, subnet=subnet)
    if security_groups:
        groups_from = "--security-group"
        for group in security_groups:
            if not config.SECURITY_GROUP_RE.match(group):
                raise BakeryError(f"--security-group {group!r} is not a security group ID (sg-...)")
        if len(set(security_groups)) != len(security_groups):
            raise BakeryError("--security-group names a group twice")
        network = dataclasses.replace(network, security_group_ids=tuple(security_groups))
    return Choice(network, subnet_from, groups_from, section, str(image.path))


def _subnets_of(ec2: Any, choice: Choice) -> list[dict[str, Any]]:
    value = choice.network.subnet or ""
    region = ec2.meta.region_name
    tag = config.SUBNET_TAG_RE.match(value)
    try:
        if tag:
            found = ec2.describe_subnets(
                Filters=[
                    {"Name": f"tag:{tag[1]}", "Values": [tag[2]]},
                    {"Name": "state", "Values": ["available"]},
                ]
            )["Subnets"]
        else:
            found = ec2.describe_subnets(SubnetIds=[value])["Subnets"]
    except botocore.exceptions.ClientError as e:
        if not aws.error_code(e).startswith("InvalidSubnet"):
            raise BakeryError(f"cannot look up {choice.describe()}: {aws.describe(e)}") from None
        found = []
    if not found:
        what = "matches no available subnet" if tag else "does not exist"
        raise BakeryError(f"{choice.describe()} {what} in {region}")
    vpcs = sorted({s["VpcId"] for s in found})
    if len(vpcs) > 1:
        raise BakeryError(
            f"{choice.describe()} matches subnets in {len(vpcs)} VPCs ({', '.join(vpcs)}):"
            " an instance's subnet and security groups must share one; narrow the filter"
        )
    # Most free addresses first (Packer's subnet_filter most_free), then by ID: deterministic.
    return sorted(found, key=lambda s: (-s.get("AvailableIpAddressCount", 0), s["SubnetId"]))


def _default_vpc_subnets(ec2: Any, choice: Choice) -> tuple[str, list[dict[str, Any]]]:
    region = ec2.meta.region_name
    vpcs = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"]
    if not vpcs:
        raise BakeryError(
            f"{region} has no default VPC: pass --subnet subnet-ID or --subnet tag:KEY=VALUE (a"
            f" subnet with a route to the internet or to VPC endpoints), or set {choice.section}.subnet"
            f" in {choice.path}"
        )
    vpc = vpcs[0]["VpcId"]
    found = ec2.describe_subnets(
        Filters=[
            {"Name": "vpc-id", "Values": [vpc]},
            {"Name": "default-for-az", "Values": ["true"]},
        ]
    )["Subnets"]
    return vpc, found


def _check_groups(ec2: Any, choice: Choice, vpc: str) -> tuple[str, ...]:
    groups = choice.network.security_group_ids
    if not groups:
        return ()
    region = ec2.meta.region_name
    try:
        found = ec2.describe_security_groups(GroupIds=list(groups))["SecurityGroups"]
    except botocore.exceptions.ClientError as e:
        if not aws.error_code(e).startswith("InvalidGroup"):
            raise BakeryError(f"cannot look up {choice.groups_from}: {aws.describe(e)}") from None
        missing = [g for g in groups if g in aws.describe(e)] or list(groups)
        raise BakeryError(
            f"{choice.groups_from}: {', '.join(missing)} does not exist in {region}"
        ) from None
    elsewhere = [f"{g['GroupId']} is in {g.get('VpcId')}" for g in found if g.get("VpcId") != vpc]
    if elsewhere:
        raise BakeryError(
            f"{choice.groups_from}: {'; '.join(elsewhere)}, not in {vpc} where the instance runs"
        )
    return groups


def placement(
    ec2: Any, choice: Choice, zones_wanted: tuple[str, ...] = (), image: ImageDef | None = None
) -> Placement:
    """The subnets (one per zone, in the order to try) and groups for an instance."""
    region = ec2.meta.region_name
    if choice.network.subnet:
        found = _subnets_of(ec2, choice)
        vpc, chosen = found[0]["VpcId"], True
    else:
        vpc, found = _default_vpc_subnets(ec2, choice)
        chosen = False
    by_zone: dict[str, str] = {}
    for subnet in found:
        by_zone.setdefault(subnet["AvailabilityZone"], subnet["SubnetId"])
    if choice.network.subnet and config.SUBNET_ID_RE.match(choice.network.subnet):
        zones_wanted = ()  # a subnet named by ID is taken as it is, whatever its zone
    order = list(zones_wanted) or sorted(by_zone)
    if zones_wanted and image is not None:
        available = _available_zones(ec2)
        for i, zone in enumerate(zones_wanted):
            if zone not in available:
                raise ConfigError(
                    image.path,
                    f"verify.availability_zones[{i}]",
                    f"{zone!r} is not an available zone of {region} (zones: {', '.join(sorted(available))})",
                )
    subnets = {z: by_zone[z] for z in order if z in by_zone}
    if not subnets:
        where = choice.describe() if chosen else f"the default VPC {vpc}"
        raise BakeryError(
            f"{where} has no subnet in {', '.join(order) or 'any zone'}: pass --subnet ID"
        )
    return Placement(vpc, subnets, _check_groups(ec2, choice, vpc), chosen)


def _available_zones(ec2: Any) -> list[str]:
    return [
        z["ZoneName"]
        for z in ec2.describe_availability_zones(
            Filters=[{"Name": "state", "Values": ["available"]}]
        )["AvailabilityZones"]
        if z.get("ZoneType", "availability-zone") == "availability-zone"
    ]
