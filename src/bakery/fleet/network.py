"""The VPC and subnets a fleet launches into: --subnet, else the default VPC's."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import botocore.exceptions

from .. import aws
from ..errors import BakeryError


@dataclass(frozen=True)
class Network:
    vpc_id: str
    subnet_ids: tuple[str, ...]
    default: bool

    def describe(self) -> str:
        which = "the default VPC" if self.default else "--subnet"
        return f"{self.vpc_id} ({which}, {len(self.subnet_ids)} subnets)"


def network(ec2: Any, subnets: tuple[str, ...]) -> Network:
    region = ec2.meta.region_name
    if subnets:
        try:
            found = ec2.describe_subnets(SubnetIds=list(subnets))["Subnets"]
        except botocore.exceptions.ClientError as e:
            if not aws.error_code(e).startswith("InvalidSubnetID"):
                raise
            missing = [s for s in subnets if s in aws.describe(e)] or list(subnets)
            raise BakeryError(
                f"--subnet {', '.join(missing)}: no such subnet in {region}"
            ) from None
        vpcs = sorted({s["VpcId"] for s in found})
        if len(vpcs) > 1:
            where = ", ".join(f"{s['SubnetId']} in {s['VpcId']}" for s in found)
            raise BakeryError(f"--subnet: the subnets must be in one VPC ({where})")
        return Network(vpcs[0], tuple(subnets), default=False)
    vpcs = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"]
    if not vpcs:
        raise BakeryError(
            f"no default VPC in {region}: pass --subnet ID (repeat it, ideally one per Availability Zone)"
        )
    vpc = vpcs[0]["VpcId"]
    found = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"]
    if not found:
        raise BakeryError(f"the default VPC {vpc} in {region} has no subnet: pass --subnet ID")
    ordered = sorted(found, key=lambda s: (s.get("AvailabilityZone", ""), s["SubnetId"]))
    return Network(vpc, tuple(s["SubnetId"] for s in ordered), default=True)
