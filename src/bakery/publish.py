"""invoke publish: the newest verified AMI of an image, copied to the definition's regions,
shared with its accounts, organizations and OUs, and its ID written to an SSM parameter in
every region.

Idempotent by reading before writing, so a rerun changes nothing and an interrupted run
finishes on the next one without duplicates:
- a region's copy is found by name (AMI names are unique per account and region; a copy
  keeps its source's name) and confirmed by its bakery:copied-from tag; only a region without
  one gets copy_image (with a ClientToken, so a retried request cannot make a second copy);
- tags, launch permissions, volume permissions and the SSM parameter are read first and only
  the difference is written: one call per image, snapshot and parameter, whatever the number
  of accounts.
Every check that can refuse (verification, regions, KMS keys and their policies) runs, in
every region, before the first change.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import botocore.exceptions

from . import TOOL, aws, catalog, distribute, keypolicy, share
from .config import ImageDef
from .distribute import Region, Say, Targets
from .errors import BakeryError, Interrupted

DEFAULT_WAIT_MINUTES = 120  # a cross-region copy of a 100 GiB AMI can take most of an hour
POLL_SECONDS = 15
PROGRESS_SECONDS = 60
FAILED = ("failed", "error", "invalid", "deregistered")


@dataclass
class Outcome:
    region: str
    ami_id: str
    copy: str  # "source" | "new copy" | "existing copy"
    changes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Plan:
    image: ImageDef
    source: dict[str, Any]
    build_region: str
    targets: Targets
    wait_s: int
    poll_s: float
    say: Say

    @property
    def source_id(self) -> str:
        return str(self.source["ImageId"])


def publish(
    image: ImageDef,
    *,
    ami_id: str | None = None,
    wait_minutes: int = DEFAULT_WAIT_MINUTES,
    update_key_policy: bool = False,
    poll_seconds: float = POLL_SECONDS,
    say: Say = print,
) -> dict[str, Outcome]:
    if wait_minutes < 0:
        raise BakeryError(f"--wait-minutes {wait_minutes}: must be 0 or more")
    say = distribute.locked(say)
    aws.identity()
    build = aws.region()
    regions = distribute.regions_of(image, build)
    targets = distribute.targets_of(image)
    clients = distribute.clients(regions)
    source = _source(clients[build].ec2, image, ami_id)
    plan = Plan(image, source, build, targets, wait_minutes * 60, poll_seconds, say)
    say(
        f"publish: {image.name}: {plan.source_id} ({source.get('Name', '')}) from {build} to"
        f" {', '.join(regions)}; sharing with {targets.count()}"
    )

    keys = _keys(plan, clients)
    keypolicy.settle(keys, update=update_key_policy, say=say)
    if update_key_policy:
        keypolicy.update({r: c.kms for r, c in clients.items()}, keys, say)

    outcomes = distribute.each_region(
        clients,
        lambda region, stop: _publish_in(plan, region, stop),
        what="publish",
        resume="rerun the same command to finish: it resumes where this run stopped",
    )
    _summary(plan, outcomes)
    return outcomes


def _source(ec2: Any, image: ImageDef, ami_id: str | None) -> dict[str, Any]:
    if ami_id:
        ami = catalog.get(ec2, ami_id)
    else:
        ami = catalog.newest(ec2, image.name, verification=catalog.PASSED)
        if ami is None:
            raise BakeryError(
                f"no verified AMI of {image.name} in {ec2.meta.region_name}: run invoke bake"
                f" --image {image.name}, then invoke verify --image {image.name}"
            )
    distribute.require_verified(ami, image.name)
    return ami


def _keys(plan: Plan, clients: dict[str, Region]) -> list[keypolicy.Key]:
    """Read every key that matters, all regions at once; the first problem, in region order."""

    def read(region: Region) -> list[keypolicy.Key]:
        if region.name == plan.build_region:
            if not plan.targets:
                return []
            return share.snapshot_keys(region.ec2, region.kms, plan.source, plan.targets, plan.say)
        key_id = plan.image.distribute.kms_key_ids.get(region.name)
        where = f"{plan.image.path}: distribute.kms_key_ids"
        if not key_id:
            if plan.targets:
                raise BakeryError(
                    f"{where} has no key for {region.name}: copies are encrypted, and an encrypted"
                    " AMI can be shared only under a customer managed key of its region (the AWS"
                    " managed aws/ebs key cannot be shared)"
                )
            return []
        return [keypolicy.inspect(region.kms, key_id, plan.targets, f"{where}.{region.name}")]

    with ThreadPoolExecutor(max_workers=min(16, len(clients))) as pool:
        found = list(pool.map(read, clients.values()))
    return [key for keys in found for key in keys]


def _publish_in(plan: Plan, region: Region, stop: threading.Event) -> Outcome:
    if region.name == plan.build_region:
        ami, outcome = plan.source, Outcome(region.name, plan.source_id, "source")
    else:
        ami, outcome = _copy(plan, region, stop)
        outcome.changes += _tag(region.ec2, ami, _copy_tags(plan))
    if plan.targets:
        outcome.changes += share.grant(region.ec2, ami, plan.targets)
    if plan.image.distribute.ssm_parameter:
        outcome.changes += _parameter(region.ssm, plan.image, outcome.ami_id)
    plan.say(
        f"publish: {region.name}: {outcome.ami_id}: "
        + ("; ".join(outcome.changes) if outcome.changes else "nothing to change")
    )
    return outcome


def _copy(plan: Plan, region: Region, stop: threading.Event) -> tuple[dict[str, Any], Outcome]:
    existing = find_copy(region.ec2, plan.source)
    if existing is not None:
        outcome = Outcome(region.name, existing["ImageId"], "existing copy")
        if existing.get("State") == "available":
            return existing, outcome
        plan.say(
            f"publish: {region.name}: {existing['ImageId']} is {existing.get('State')}, resuming the wait"
        )
    else:
        made = region.ec2.copy_image(**copy_request(plan, region.name))
        outcome = Outcome(region.name, made["ImageId"], "new copy", ["copied"])
        plan.say(f"publish: {region.name}: copying {plan.source_id} as {made['ImageId']}")
    ami = wait_available(
        region.ec2,
        outcome.ami_id,
        source_id=plan.source_id,
        timeout_s=plan.wait_s,
        poll_s=plan.poll_s,
        stop=stop,
        say=plan.say,
    )
    return ami, outcome


def copy_request(plan: Plan, region: str) -> dict[str, Any]:
    """copy_image's arguments, called in the destination region."""
    origin = {catalog.COPIED_FROM: plan.source_id, catalog.COPIED_FROM_REGION: plan.build_region}
    snapshot_tags = catalog.tool_tags(plan.image.name) | origin
    key = plan.image.distribute.kms_key_ids.get(region)
    request: dict[str, Any] = {
        "SourceImageId": plan.source_id,
        "SourceRegion": plan.build_region,
        "Name": plan.source["Name"],
        "Encrypted": True,
        "CopyImageTags": True,
        # Same request, same token: a retried request cannot make a second copy.
        "ClientToken": _token(plan.source_id, region, key),
        # CopyImageTags brings the AMI's own tags; these make the copy findable from the start.
        "TagSpecifications": [
            catalog.tag_spec("image", origin),
            catalog.tag_spec("snapshot", snapshot_tags),
        ],
    }
    if key:
        request["KmsKeyId"] = key
    if plan.source.get("Description"):
        request["Description"] = plan.source["Description"]
    return request


def _token(*parts: str | None) -> str:
    digest = hashlib.sha256("\0".join(p or "" for p in parts).encode()).hexdigest()
    return f"{TOOL}-{digest[:40]}"


def find_copy(ec2: Any, source: dict[str, Any]) -> dict[str, Any] | None:
    """This region's copy of the source, if one was started: found by name, confirmed by tag."""
    region, source_id = ec2.meta.region_name, source["ImageId"]
    run_id = catalog.tags_of(source).get(catalog.RUN_ID)
    found = ec2.describe_images(
        Owners=["self"], Filters=[{"Name": "name", "Values": [source["Name"]]}]
    )["Images"]
    for ami in found:
        tags = catalog.tags_of(ami)
        origin = tags.get(catalog.COPIED_FROM)
        # Untagged: a copy whose tags were not written yet (interrupted right after the copy).
        if origin == source_id or (origin is None and tags.get(catalog.RUN_ID) in (None, run_id)):
            if ami.get("State") in FAILED:
                raise BakeryError(
                    f"the copy {ami['ImageId']} of {source_id} is {ami['State']}"
                    f" ({ami.get('StateReason', {}).get('Message', 'no reason given')}): deregister"
                    f" it (aws ec2 deregister-image --region {region} --image-id {ami['ImageId']}),"
                    " then rerun"
                )
            return ami
        raise BakeryError(
            f"an AMI named {source['Name']!r} already exists here ({ami['ImageId']}) and is not a"
            f" copy of {source_id} ({catalog.COPIED_FROM} is {origin!r}): AMI names are unique"
            " per region; rename or deregister it"
        )
    return None


def wait_available(
    ec2: Any,
    ami_id: str,
    *,
    source_id: str,
    timeout_s: float,
    poll_s: float,
    stop: threading.Event,
    say: Say,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """Poll until the copy is available, saying how it goes about once a minute."""
    region = ec2.meta.region_name
    started = told = clock()
    while True:
        try:
            found = ec2.describe_images(ImageIds=[ami_id])["Images"]
        except botocore.exceptions.ClientError as e:
            if not aws.error_code(e).startswith("InvalidAMIID"):
                raise
            found = []  # a copy can take a moment to become visible
        state = found[0]["State"] if found else "not visible yet"
        if state == "available":
            return dict(found[0])
        if state in FAILED:
            reason = found[0].get("StateReason", {}).get("Message", "no reason given")
            raise BakeryError(
                f"the copy {ami_id} of {source_id} is {state} ({reason}): deregister it (aws ec2"
                f" deregister-image --region {region} --image-id {ami_id}), then rerun"
            )
        elapsed = clock() - started
        if elapsed >= timeout_s:
            raise BakeryError(
                f"the copy {ami_id} of {source_id} is still {state} after {_duration(elapsed)}"
                f" (--wait-minutes {round(timeout_s / 60)}): it goes on in AWS; rerun to resume"
                " the wait"
            )
        if clock() - told >= PROGRESS_SECONDS:
            say(
                f"publish: {region}: {ami_id} is {state} after {_duration(elapsed)} (waiting up to"
                f" {_duration(timeout_s)})"
            )
            told = clock()
        if stop.wait(min(poll_s, max(timeout_s - elapsed, 0.0))):
            raise Interrupted(f"stopped waiting for {ami_id}")


def _copy_tags(plan: Plan) -> dict[str, str]:
    """What a copy and its snapshots carry: the source's tags and where it came from."""
    tags = {k: v for k, v in catalog.tags_of(plan.source).items() if not k.startswith("aws:")}
    return tags | {
        catalog.COPIED_FROM: plan.source_id,
        catalog.COPIED_FROM_REGION: plan.build_region,
    }


def _tag(ec2: Any, ami: dict[str, Any], wanted: dict[str, str]) -> list[str]:
    """Write the tags the AMI or its snapshots lack, in one call."""
    stale = [ami["ImageId"]] if _lacks(ami, wanted) else []
    ids = catalog.snapshots(ami)
    if ids:
        snapshots = ec2.describe_snapshots(SnapshotIds=ids)["Snapshots"]
        stale += [s["SnapshotId"] for s in snapshots if _lacks(s, wanted)]
    if not stale:
        return []
    ec2.create_tags(Resources=stale, Tags=catalog.tag_list(wanted))
    return [f"tagged {', '.join(stale)}"]


def _lacks(resource: dict[str, Any], wanted: dict[str, str]) -> bool:
    tags = catalog.tags_of(resource)
    return any(tags.get(k) != v for k, v in wanted.items())


def _parameter(ssm: Any, image: ImageDef, ami_id: str) -> list[str]:
    """Point the SSM parameter at the AMI, unless it already does."""
    name = image.distribute.ssm_parameter
    try:
        current = ssm.get_parameter(Name=name)["Parameter"]["Value"]
    except ssm.exceptions.ParameterNotFound:
        current = None
    if current == ami_id:
        return []
    request = {
        "Name": name,
        "Value": ami_id,
        "Type": "String",
        "DataType": "aws:ec2:image",
        "Description": f"{image.name}: the AMI published by {TOOL}",
    }
    if current is None:  # tags only on create: AWS refuses Tags with Overwrite
        ssm.put_parameter(**request, Tags=catalog.tag_list(catalog.tool_tags(image.name)))
        return [f"{name} = {ami_id}"]
    ssm.put_parameter(**request, Overwrite=True)
    return [f"{name} = {ami_id} (was {current})"]


def _summary(plan: Plan, outcomes: dict[str, Outcome]) -> None:
    say = plan.say
    changed = any(o.changes for o in outcomes.values())
    say(
        f"published {plan.image.name}: {plan.source_id} in {len(outcomes)} region"
        f"{'s' * (len(outcomes) > 1)}, shared with {plan.targets.count()}"
        + ("" if changed else "; nothing changed (already published)")
    )
    width = max(len(r) for r in outcomes)
    say(f"  {'REGION':<{width}}  {'AMI':<21}  {'COPY':<13}  CHANGES")
    for o in outcomes.values():
        changes = "; ".join(o.changes) or "-"
        say(f"  {o.region:<{width}}  {o.ami_id:<21}  {o.copy:<13}  {changes}")
    if plan.image.distribute.ssm_parameter:
        say(f"  SSM parameter {plan.image.distribute.ssm_parameter} (aws:ec2:image) in each region")
    if changed and plan.targets.accounts:
        say(keypolicy.ASG_NOTE)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"
