"""The instance-hours a bake or verify run used, recorded on the AMI as a tag, so that
`invoke cost` can price them later from the spot price history of their pool and time.

A tag value lists one entry per instance, e.g.
  bakery:verify-instance-hours = "g5.xlarge us-east-1b spot 0.3125 2026-12-01T10:00Z"
(type, Availability Zone, market, hours, launch time). The hours run from the instance's launch
until the run had ended it, which bills at least a minute (EC2 bills Linux per second, with a
one-minute minimum). Each run writes its own: a second verify of one AMI replaces the first's.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from . import catalog

BAKE = "bakery:bake-instance-hours"
VERIFY = "bakery:verify-instance-hours"
MINIMUM_S = 60
TAG_MAX = 256
ENTRY_RE = re.compile(
    r"^(?P<type>[a-z][a-z0-9-]*\.[a-z0-9-]+) (?P<zone>[a-z]{2}(-[a-z]+)+-\d[a-z]) "
    r"(?P<market>spot|on-demand) (?P<hours>\d+(\.\d+)?) (?P<at>\d{4}-\d\d-\d\dT\d\d:\d\dZ)$"
)


@dataclass(frozen=True)
class Usage:
    instance_type: str
    zone: str
    market: str  # "spot" | "on-demand"
    hours: float
    started: dt.datetime

    def entry(self) -> str:
        return (
            f"{self.instance_type} {self.zone} {self.market} {self.hours:.4f}"
            f" {catalog.show_time(self.started)}"
        )


def of_instances(instances: Iterable[dict[str, Any]], ended: dt.datetime) -> list[Usage]:
    """What each instance (an EC2 description) used from its launch until `ended`."""
    used = []
    for instance in instances:
        launched = catalog.parse_time(instance.get("LaunchTime"))
        if launched is None:
            continue
        seconds = max((ended - launched).total_seconds(), MINIMUM_S)
        used.append(
            Usage(
                instance["InstanceType"],
                instance.get("Placement", {}).get("AvailabilityZone", "?"),
                "spot" if instance.get("InstanceLifecycle") == "spot" else "on-demand",
                round(seconds / 3600, 4),
                launched,
            )
        )
    return used


def tag_value(used: Iterable[Usage]) -> str:
    """The entries that fit in one tag value (AWS allows 256 characters)."""
    value = ""
    for entry in (u.entry() for u in used):
        joined = f"{value}, {entry}" if value else entry
        if len(joined) > TAG_MAX:
            break
        value = joined
    return value


def record(ec2: Any, ami: dict[str, Any], key: str, run_id: str) -> list[Usage]:
    """Tag the AMI with what the run's instances used until now (they have ended)."""
    used = of_instances(run_instances(ec2, run_id), dt.datetime.now(dt.UTC))
    if used:
        catalog.tag(ec2, ami, {key: tag_value(used)})
    return used


def parse(value: str | None) -> list[Usage]:
    """The entries of a tag value; an entry that does not parse is left out."""
    used = []
    for entry in (value or "").split(","):
        found = ENTRY_RE.match(entry.strip())
        if found:
            started = catalog.parse_time(found["at"])
            assert started is not None  # the pattern is an ISO time
            used.append(
                Usage(found["type"], found["zone"], found["market"], float(found["hours"]), started)
            )
    return used


def run_instances(ec2: Any, run_id: str) -> list[dict[str, Any]]:
    """The instances a run made, found by its run-id tag (they show for a while once ended)."""
    pages = ec2.get_paginator("describe_instances").paginate(
        Filters=[{"Name": f"tag:{catalog.RUN_ID}", "Values": [run_id]}]
    )
    return [i for page in pages for r in page["Reservations"] for i in r["Instances"]]
