"""EC2's spot vCPU quotas: which one an instance type draws on, and how to raise it.

Spot capacity is limited per region by vCPU quotas shared by instance families (Service Quotas,
service code ec2). A type refused for its quota says nothing about the next type unless that
one draws on another quota: launches skip the types that share an exhausted one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Quota codes as Service Quotas lists them for ec2 (get-service-quota --quota-code CODE).
_SPOT = (
    (re.compile(r"^(g|vt)\d"), "All G and VT Spot Instance Requests", "L-3819A6DF"),
    (re.compile(r"^p\d"), "All P Spot Instance Requests", "L-7212CCBC"),
    (
        re.compile(r"^[acdhimrtz]\d"),
        "All Standard (A, C, D, H, I, M, R, T, Z) Spot Instance Requests",
        "L-34B43A08",
    ),
)
# What RunInstances and CreateFleet answer when the quota is used up (a quota of 0, the
# default for G and VT spot in new accounts, answers MaxSpotInstanceCountExceeded).
CODES = ("VcpuLimitExceeded", "MaxSpotInstanceCountExceeded")


@dataclass(frozen=True)
class Quota:
    name: str
    code: str | None  # None: a family this table does not know

    def raise_it(self, region: str) -> str:
        if self.code is None:
            return (
                f"raise the {self.name} spot vCPU quota in {region} (Service Quotas console,"
                " Amazon EC2)"
            )
        return (
            f"raise it with: aws service-quotas request-service-quota-increase --service-code ec2"
            f" --quota-code {self.code} --region {region} --desired-value VCPUS"
        )


def spot_quota(instance_type: str) -> Quota:
    family = instance_type.split(".", 1)[0]
    for pattern, name, code in _SPOT:
        if pattern.match(family):
            return Quota(name, code)
    return Quota(f"{family} family", None)


def explain(code: str, instance_type: str, region: str) -> str:
    """One line: the quota that refused the type, and how to raise it."""
    quota = spot_quota(instance_type)
    named = f'"{quota.name}" ({quota.code})' if quota.code else quota.name
    return (
        f"{instance_type}: {code}: the spot vCPU quota {named} in {region} is used up (new"
        f" accounts start with 0); {quota.raise_it(region)}"
    )
