"""invoke prune: in every region of an image, keep the newest AMIs, deprecate the older ones,
and deregister (with their snapshots) those whose deprecation time has passed.

Never touched, whatever their age: the newest verified AMI, the AMI the image's SSM parameter
points to, an AMI a non-terminated instance runs, and the AMI of a launch template's default
or latest version. Everything is read first, a region's reads once per region (pages, not
one call per AMI); the plan is printed, and only --apply acts.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import botocore.exceptions

from . import aws, catalog, distribute
from .config import ImageDef
from .distribute import Region, Say
from .errors import BakeryError

KEEP, DEPRECATE, WAIT, DEREGISTER = "keep", "deprecate", "wait", "deregister"
LIVE = ["pending", "running", "shutting-down", "stopping", "stopped"]
FILTER_VALUES = 200  # values per EC2 filter in one request


@dataclass(frozen=True)
class Decision:
    region: str
    ami_id: str
    created: str
    verified: bool
    action: str
    why: str
    snapshots: tuple[str, ...] = ()


def decide(
    amis: list[dict[str, Any]],
    *,
    region: str,
    keep: int,
    protected: dict[str, list[str]],
    now: dt.datetime,
    deprecate_at: dt.datetime,
) -> list[Decision]:
    """The plan for one region's finished AMIs, newest first. Pure: reads nothing."""
    decisions = []
    verified_seen = False
    for index, ami in enumerate(amis):
        ami_id, tags = ami["ImageId"], catalog.tags_of(ami)
        verified = tags.get(catalog.VERIFICATION) == catalog.PASSED
        reasons = list(protected.get(ami_id, []))
        if verified and not verified_seen:
            reasons.insert(0, "newest verified")
            verified_seen = True
        deprecation = catalog.parse_time(ami.get("DeprecationTime"))
        if reasons:
            action, why = KEEP, "; ".join(reasons)
        elif index < keep:
            action, why = KEEP, f"one of the newest {keep}"
        elif deprecation is None:
            action, why = (
                DEPRECATE,
                f"older than the newest {keep}; deprecated at {catalog.show_time(deprecate_at)}",
            )
        elif deprecation > now:
            action, why = (
                WAIT,
                f"deprecated at {catalog.show_time(deprecation)}; deregistered by a prune after that",
            )
        else:
            action, why = DEREGISTER, f"deprecated since {catalog.show_time(deprecation)}"
        decisions.append(
            Decision(
                region,
                ami_id,
                ami.get("CreationDate", "?"),
                verified,
                action,
                why,
                tuple(catalog.snapshots(ami)),
            )
        )
    return decisions


def plan(
    image: ImageDef, keep: int, clients: dict[str, Region], now: dt.datetime
) -> list[Decision]:
    """Read every region (at once) and decide."""
    deprecate_at = now + dt.timedelta(days=image.distribute.deprecate_after_days)

    def one(region: Region, _stop: threading.Event) -> list[Decision]:
        amis = [
            a
            for a in catalog.images(region.ec2, image.name)
            if catalog.FINGERPRINT in catalog.tags_of(a) and a.get("State") == "available"
        ]
        protected: dict[str, list[str]] = {}
        for ami_id, why in _pointed_at(region, image, amis):
            if why not in protected.setdefault(ami_id, []):
                protected[ami_id].append(why)
        # Instances are asked about the AMIs that could go, in batches: not one call per AMI.
        candidates = [a["ImageId"] for a in amis[keep:] if a["ImageId"] not in protected]
        for ami_id, why in _in_use(region.ec2, candidates):
            protected.setdefault(ami_id, []).append(why)
        return decide(
            amis,
            region=region.name,
            keep=keep,
            protected=protected,
            now=now,
            deprecate_at=deprecate_at,
        )

    found = distribute.each_region(
        clients, one, what="prune (reading)", resume="nothing was changed"
    )
    return [d for decisions in found.values() for d in decisions]


def _pointed_at(
    region: Region, image: ImageDef, amis: list[dict[str, Any]]
) -> Iterable[tuple[str, str]]:
    """AMIs the image's SSM parameter and launch templates point to (one pass per region)."""
    ours = {a["ImageId"] for a in amis}
    name = image.distribute.ssm_parameter
    if name:
        try:
            value = region.ssm.get_parameter(Name=name)["Parameter"]["Value"]
        except region.ssm.exceptions.ParameterNotFound:
            value = None
        if value in ours:
            yield value, f"SSM {name}"
    pages = region.ec2.get_paginator("describe_launch_template_versions").paginate(
        Versions=["$Default", "$Latest"]
    )
    for page in pages:
        for version in page["LaunchTemplateVersions"]:
            ami_id = version.get("LaunchTemplateData", {}).get("ImageId")
            if ami_id in ours:
                which = "default" if version.get("DefaultVersion") else "latest"
                yield ami_id, f"launch template {version['LaunchTemplateName']} ({which} version)"


def _in_use(ec2: Any, ami_ids: list[str]) -> Iterable[tuple[str, str]]:
    users: dict[str, list[str]] = {}
    for start in range(0, len(ami_ids), FILTER_VALUES):
        filters = [
            {"Name": "image-id", "Values": ami_ids[start : start + FILTER_VALUES]},
            {"Name": "instance-state-name", "Values": LIVE},
        ]
        for page in ec2.get_paginator("describe_instances").paginate(Filters=filters):
            for reservation in page["Reservations"]:
                for instance in reservation["Instances"]:
                    users.setdefault(instance["ImageId"], []).append(instance["InstanceId"])
    for ami_id, instances in users.items():
        more = f" and {len(instances) - 2} more" if len(instances) > 2 else ""
        yield ami_id, f"in use by {', '.join(instances[:2])}{more}"


def apply(
    decisions: list[Decision], clients: dict[str, Region], deprecate_at: dt.datetime, say: Say
) -> None:
    """Act on the plan, every region at once; every failure is told, none stops the rest."""
    by_region = {r: [d for d in decisions if d.region == r] for r in clients}

    def one(region: Region, _stop: threading.Event) -> list[str]:
        failed: list[str] = []
        gone: list[Decision] = []
        for d in by_region[region.name]:
            try:
                if d.action == DEPRECATE:
                    region.ec2.enable_image_deprecation(ImageId=d.ami_id, DeprecateAt=deprecate_at)
                    say(
                        f"prune: {region.name}: {d.ami_id} deprecated at {catalog.show_time(deprecate_at)}"
                    )
                elif d.action == DEREGISTER:
                    _deregister(region.ec2, d.ami_id)
                    gone.append(d)
                    say(f"prune: {region.name}: {d.ami_id} deregistered")
            except distribute.FAILURES as e:
                failed.append(f"{d.ami_id}: {distribute.explain(e)}")
                say(
                    f"prune: {region.name}: could not {d.action} {d.ami_id}: {distribute.explain(e)}"
                )
        failed += _delete_left_snapshots(region, [s for d in gone for s in d.snapshots], say)
        if failed:
            raise BakeryError(f"{len(failed)} failed ({'; '.join(failed)})")
        return failed

    distribute.each_region(
        clients, one, what="prune", resume="rerun invoke prune --apply to finish"
    )


def _deregister(ec2: Any, ami_id: str) -> None:
    try:
        ec2.deregister_image(ImageId=ami_id, DeleteAssociatedSnapshots=True)
    except botocore.exceptions.ClientError as e:
        # Where the endpoint does not know DeleteAssociatedSnapshots yet: deregister only;
        # the snapshots are deleted below.
        if aws.error_code(e) not in (
            "InvalidParameter",
            "UnknownParameter",
            "InvalidParameterCombination",
        ):
            raise
        ec2.deregister_image(ImageId=ami_id)


def _delete_left_snapshots(region: Region, snapshot_ids: list[str], say: Say) -> list[str]:
    """Delete the snapshots of deregistered AMIs that are still there (one read per 200)."""
    failed = []
    for start in range(0, len(snapshot_ids), FILTER_VALUES):
        batch = snapshot_ids[start : start + FILTER_VALUES]
        left = region.ec2.describe_snapshots(
            OwnerIds=["self"], Filters=[{"Name": "snapshot-id", "Values": batch}]
        )["Snapshots"]
        for snap in left:
            try:
                region.ec2.delete_snapshot(SnapshotId=snap["SnapshotId"])
                say(f"prune: {region.name}: {snap['SnapshotId']} deleted")
            except distribute.FAILURES as e:
                failed.append(f"{snap['SnapshotId']}: {distribute.explain(e)}")
                say(
                    f"prune: {region.name}: could not delete {snap['SnapshotId']}:"
                    f" {distribute.explain(e)}"
                )
    return failed


def prune(
    image: ImageDef,
    *,
    keep: int | None = None,
    act: bool = False,
    say: Say = print,
    now: dt.datetime | None = None,
) -> list[Decision]:
    """invoke prune: print the plan; with act=True, carry it out."""
    keep = image.distribute.keep if keep is None else keep
    if keep < 1:
        raise BakeryError(f"--keep {keep}: keep at least 1 AMI per region")
    say = distribute.locked(say)
    aws.identity()
    regions = distribute.regions_of(image, aws.region())
    clients = distribute.clients(regions)
    now = now or dt.datetime.now(dt.UTC)
    deprecate_at = now + dt.timedelta(days=image.distribute.deprecate_after_days)
    decisions = plan(image, keep, clients, now)
    _table(image, keep, decisions, say)
    todo = [d for d in decisions if d.action in (DEPRECATE, DEREGISTER)]
    counts = _counts(todo)
    if not todo:
        say("prune: nothing to do")
    elif not act:
        say(f"prune: plan only: {counts}; rerun with --apply to act")
    else:
        apply(todo, clients, deprecate_at, say)
        say(f"prune: done: {counts}")
    return decisions


def _counts(todo: list[Decision]) -> str:
    deprecate = sum(d.action == DEPRECATE for d in todo)
    deregister = [d for d in todo if d.action == DEREGISTER]
    snapshots = sum(len(d.snapshots) for d in deregister)
    return (
        f"{deprecate} to deprecate, {len(deregister)} to deregister"
        f" (with {snapshots} snapshot{'s' * (snapshots != 1)})"
    )


def _table(image: ImageDef, keep: int, decisions: list[Decision], say: Say) -> None:
    say(
        f"prune {image.name}: keep the newest {keep} per region; older ones are deprecated for"
        f" {image.distribute.deprecate_after_days} days (distribute.deprecate_after_days), then"
        " deregistered with their snapshots"
    )
    if not decisions:
        say("prune: no finished AMI of this image in its regions")
        return
    width = max(len(d.region) for d in decisions)
    say(
        f"  {'REGION':<{width}}  {'AMI':<21}  {'CREATED':<24}  {'VERIFIED':<8}  {'ACTION':<10}  WHY"
    )
    for d in decisions:
        say(
            f"  {d.region:<{width}}  {d.ami_id:<21}  {d.created:<24}  {'yes' if d.verified else 'no':<8}"
            f"  {d.action:<10}  {d.why}"
        )
