"""invoke gc: what failed or interrupted bake and verify runs left behind, found and removed.

A leftover is made by the tool: tagged bakery:managed-by plus bakery:run-id (every resource
of a bake or verify run carries its run id; the fleet that `invoke launch` makes does not,
and is never touched), or named with Packer's temporary prefix "packer_" (Packer 1.6.6
does not tag its key pair and security group). It is stale when its bakery:expires-at has
passed or, without one, when it is older than --older-than. Kinds, in removal order:
instances (not terminated), unfinished AMIs (no fingerprint) and failed copies, snapshots
tagged by the tool that no AMI uses, available volumes, key pairs and security groups that
nothing uses any more, and (IAM is global: once, with the build region) the instance profiles
and roles a run made under /bakery/.
Finished AMIs are prune's, never gc's. The plan is printed; only --apply removes.

cleanup.sweep removes one run's resources right after it failed; gc is its counterpart for
what escaped it, so it reads everything first, prints a plan, and goes by age, not run id.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import botocore.exceptions

from . import TOOL, aws, catalog, config, distribute, instanceprofile
from .distribute import Region, Say
from .errors import BakeryError

DEFAULT_OLDER_THAN = "6h"
KINDS = ["instance", "AMI", "snapshot", "volume", "key pair", "security group", "instance profile"]
LIVE = ["pending", "running", "stopping", "stopped"]
PACKER_PREFIX = "packer_"
FILTER_VALUES = 200
_AGE_RE = re.compile(r"^(\d+)([mhd])$")
_RUN_TIME_RE = re.compile(r"^(\d{8}-\d{6})")  # bake.new_build_id(): 20250101-120000-abc123
_OURS = [{"Name": f"tag:{catalog.MANAGED_BY}", "Values": [TOOL]}]
_RUN = [*_OURS, {"Name": "tag-key", "Values": [catalog.RUN_ID]}]


@dataclass(frozen=True)
class Leftover:
    region: str
    kind: str
    id: str
    why: str


def parse_age(text: str) -> dt.timedelta:
    match = _AGE_RE.match(text.strip())
    if not match:
        raise BakeryError(f"--older-than {text!r}: give a number and a unit, e.g. 30m, 6h or 2d")
    number, unit = int(match[1]), match[2]
    return dt.timedelta(**{{"m": "minutes", "h": "hours", "d": "days"}[unit]: number})


def default_regions(build_region: str) -> list[str]:
    """The build region and every region an image definition distributes to."""
    regions = [build_region]
    for name in config.names():
        regions += config.load(name).distribute.regions
    return distribute.check_regions(regions, "regions")


def find(region: Region, older_than: dt.timedelta, now: dt.datetime) -> list[Leftover]:
    """Every stale leftover of one region; reads only, a few calls whatever their number."""
    ec2, name = region.ec2, region.name
    found: list[Leftover] = []

    def add(kind: str, ident: str, why: str) -> None:
        found.append(Leftover(name, kind, ident, why))

    instances = [
        i
        for page in ec2.get_paginator("describe_instances").paginate(
            Filters=[*_RUN, {"Name": "instance-state-name", "Values": LIVE}]
        )
        for r in page["Reservations"]
        for i in r["Instances"]
    ]
    doomed: set[str] = set()
    for i in instances:
        why = _stale(i.get("LaunchTime"), catalog.tags_of(i), now, older_than)
        if why:
            doomed.add(i["InstanceId"])
            add("instance", i["InstanceId"], f"{_run(i)}{why}")

    # Every AMI of the account, in pages: the unfinished ones are ours to remove, and all of
    # them tell which snapshots are in use.
    amis = [
        a
        for page in ec2.get_paginator("describe_images").paginate(Owners=["self"])
        for a in page["Images"]
    ]
    going_snapshots: dict[str, str] = {}
    for ami in amis:
        tags = catalog.tags_of(ami)
        if tags.get(catalog.MANAGED_BY) != TOOL and catalog.COPIED_FROM not in tags:
            continue
        if ami.get("State") in ("failed", "error", "invalid"):
            why: str | None = f"state {ami['State']}"
        elif catalog.FINGERPRINT in tags or catalog.COPIED_FROM in tags:
            continue  # finished (or a copy of a finished one): prune's
        else:
            why = _stale(ami.get("CreationDate"), tags, now, older_than)
            why = why and f"unfinished bake (no {catalog.FINGERPRINT}), {why}"
        if why:
            add("AMI", ami["ImageId"], f"{_run(ami)}{why}")
            going_snapshots |= {s: ami["ImageId"] for s in catalog.snapshots(ami)}

    snapshots = [
        s
        for page in ec2.get_paginator("describe_snapshots").paginate(
            OwnerIds=["self"], Filters=_OURS
        )
        for s in page["Snapshots"]
    ]
    for sid, ami_id in going_snapshots.items():  # whether tagged or not: Packer tags last
        add("snapshot", sid, f"of {ami_id}, which goes too")
    stale = {}
    for snap in snapshots:
        why = _stale(snap.get("StartTime"), catalog.tags_of(snap), now, older_than)
        if why and snap["SnapshotId"] not in going_snapshots:
            stale[snap["SnapshotId"]] = (snap, why)
    in_use = {s for ami in amis for s in catalog.snapshots(ami)}
    for sid in in_use & set(stale):
        del stale[sid]
    for snap, why in stale.values():
        origin = re.search(r"for (ami-[0-9a-f]+)", snap.get("Description", ""))
        what = f"its AMI {origin[1]} is gone" if origin else "no AMI uses it"
        add("snapshot", snap["SnapshotId"], f"{_run(snap)}{what}, {why}")

    for page in ec2.get_paginator("describe_volumes").paginate(
        Filters=[*_RUN, {"Name": "status", "Values": ["available"]}]
    ):
        for volume in page["Volumes"]:
            why = _stale(volume.get("CreateTime"), catalog.tags_of(volume), now, older_than)
            if why:
                add("volume", volume["VolumeId"], f"{_run(volume)}unattached, {why}")

    pairs = {}
    for pair in ec2.describe_key_pairs()["KeyPairs"]:
        tags = catalog.tags_of(pair)
        ours = tags.get(catalog.MANAGED_BY) == TOOL and catalog.RUN_ID in tags
        if not ours and not pair["KeyName"].startswith(PACKER_PREFIX):
            continue
        why = _stale(pair.get("CreateTime"), tags, now, older_than)
        if why:
            pairs[pair["KeyName"]] = (pair, why if ours else f"Packer temporary key pair, {why}")
    for key_name in _key_pairs_in_use(ec2, list(pairs), doomed):
        del pairs[key_name]
    for key_name, (_, why) in pairs.items():
        add("key pair", key_name, why)

    groups = {}
    for filters in (_RUN, [{"Name": "group-name", "Values": [PACKER_PREFIX + "*"]}]):
        for page in ec2.get_paginator("describe_security_groups").paginate(Filters=filters):
            for group in page["SecurityGroups"]:
                why = _group_stale(group, now, older_than)
                if why:
                    groups[group["GroupId"]] = (group, why)
    for group_id in _groups_in_use(ec2, list(groups), doomed):
        del groups[group_id]
    for group, why in groups.values():
        add("security group", group["GroupId"], f"{group.get('GroupName', '')}: {why}")
    return found


def _stale(
    created: Any, tags: dict[str, str], now: dt.datetime, older_than: dt.timedelta
) -> str | None:
    """Why a resource is stale, or None: its expiry decides when it has one, else its age."""
    expires = catalog.parse_time(tags.get(catalog.EXPIRES_AT))
    if expires is not None:
        return f"expired at {catalog.show_time(expires)}" if expires <= now else None
    when = catalog.parse_time(created)
    if when is None or now - when < older_than:
        return None
    return f"{_age(now - when)} old"


def _group_stale(group: dict[str, Any], now: dt.datetime, older_than: dt.timedelta) -> str | None:
    """Security groups have no creation time: their run id's time, or their expiry, tells."""
    tags = catalog.tags_of(group)
    run = tags.get(catalog.RUN_ID, "")
    if tags.get(catalog.MANAGED_BY) == TOOL and run:
        started = _RUN_TIME_RE.match(run)
        created = (
            dt.datetime.strptime(started[1], "%Y%m%d-%H%M%S").replace(tzinfo=dt.UTC)
            if started
            else None
        )
        if created is None and catalog.EXPIRES_AT not in tags:
            return None  # no way to tell its age: left alone
        why = _stale(created, tags, now, older_than)
        return why and f"run {run}, {why}"
    if group.get("GroupName", "").startswith(PACKER_PREFIX) and not tags:
        return "Packer temporary group (untagged: no age to tell), used by nothing"
    return None


def find_iam(iam: Any, region: str, older_than: dt.timedelta, now: dt.datetime) -> list[Leftover]:
    """The instance profiles and roles runs made (under /bakery/, tagged by the tool) that are
    past their expiry or older than older_than. A profile and its role share their name."""
    made: dict[str, tuple[Any, dict[str, str]]] = {}
    for page in iam.get_paginator("list_instance_profiles").paginate(
        PathPrefix=instanceprofile.PATH
    ):
        for p in page["InstanceProfiles"]:
            name = p["InstanceProfileName"]
            profile = iam.get_instance_profile(InstanceProfileName=name)["InstanceProfile"]
            made[name] = (p.get("CreateDate"), catalog.tags_of(profile))
    for page in iam.get_paginator("list_roles").paginate(PathPrefix=instanceprofile.PATH):
        for r in page["Roles"]:
            if r["RoleName"] not in made:
                role = iam.get_role(RoleName=r["RoleName"])["Role"]
                made[r["RoleName"]] = (r.get("CreateDate"), catalog.tags_of(role))
    found = []
    for name, (created, tags) in sorted(made.items()):
        if tags.get(catalog.MANAGED_BY) != TOOL:
            continue  # under our path, but not ours: never touched
        why = _stale(created, tags, now, older_than)
        if why:
            found.append(Leftover(region, "instance profile", name, f"{_run_of(tags)}{why}"))
    return found


def _run_of(tags: dict[str, str]) -> str:
    run = tags.get(catalog.RUN_ID)
    return f"run {run}, " if run else ""


def _key_pairs_in_use(ec2: Any, names: list[str], doomed: set[str]) -> set[str]:
    used = set()
    for batch in _batches(names):
        filters = [
            {"Name": "key-name", "Values": batch},
            {"Name": "instance-state-name", "Values": [*LIVE, "shutting-down"]},
        ]
        for page in ec2.get_paginator("describe_instances").paginate(Filters=filters):
            for r in page["Reservations"]:
                used |= {i["KeyName"] for i in r["Instances"] if i["InstanceId"] not in doomed}
    return used


def _groups_in_use(ec2: Any, group_ids: list[str], doomed: set[str]) -> set[str]:
    used = set()
    for batch in _batches(group_ids):
        for page in ec2.get_paginator("describe_network_interfaces").paginate(
            Filters=[{"Name": "group-id", "Values": batch}]
        ):
            for eni in page["NetworkInterfaces"]:
                if eni.get("Attachment", {}).get("InstanceId") in doomed:
                    continue
                used |= {g["GroupId"] for g in eni.get("Groups", [])}
    return used


def remove(region: Region, leftovers: list[Leftover], say: Say) -> list[str]:
    """Remove one region's leftovers, instances first; return what could not be removed."""
    ec2, failed = region.ec2, []

    def attempt(what: str, call: Any) -> None:
        try:
            call()
            say(f"gc: {region.name}: removed {what}")
        except distribute.FAILURES as e:
            failed.append(f"{what}: {distribute.explain(e)}")
            say(f"gc: {region.name}: could not remove {what}: {distribute.explain(e)}")

    of = {kind: [x.id for x in leftovers if x.kind == kind] for kind in KINDS}
    if of["instance"]:
        attempt(
            f"instances {', '.join(of['instance'])}",
            lambda: ec2.terminate_instances(InstanceIds=of["instance"]),
        )
        try:
            ec2.get_waiter("instance_terminated").wait(
                InstanceIds=of["instance"], WaiterConfig={"Delay": 5, "MaxAttempts": 120}
            )
        except botocore.exceptions.WaiterError:
            say(f"gc: {region.name}: instances still terminating after 10 minutes; rerun gc later")
    for ami_id in of["AMI"]:
        attempt(f"AMI {ami_id}", lambda a=ami_id: ec2.deregister_image(ImageId=a))
    for sid in of["snapshot"]:
        attempt(f"snapshot {sid}", lambda s=sid: ec2.delete_snapshot(SnapshotId=s))
    for vid in of["volume"]:
        attempt(f"volume {vid}", lambda v=vid: ec2.delete_volume(VolumeId=v))
    for key_name in of["key pair"]:  # by name: unique per region, and every endpoint takes it
        attempt(f"key pair {key_name}", lambda k=key_name: ec2.delete_key_pair(KeyName=k))
    for gid in of["security group"]:
        attempt(f"security group {gid}", lambda g=gid: ec2.delete_security_group(GroupId=g))
    return failed


def gc(
    *,
    regions: Iterable[str] | None = None,
    older_than: str = DEFAULT_OLDER_THAN,
    act: bool = False,
    say: Say = print,
    now: dt.datetime | None = None,
) -> list[Leftover]:
    """invoke gc: print the leftovers; with act=True, remove them."""
    age = parse_age(older_than)
    say = distribute.locked(say)
    aws.identity()
    build = aws.region()
    names = distribute.check_regions(regions, "--region") if regions else default_regions(build)
    clients = distribute.clients(names)
    now = now or dt.datetime.now(dt.UTC)
    found = distribute.each_region(
        clients,
        lambda region, _stop: find(region, age, now),
        what="gc (reading)",
        resume="nothing was changed",
    )
    home = names[0]  # IAM is global: its leftovers are listed once, with the first region
    iam = aws.client("iam", home)
    found[home] = [*found.get(home, []), *find_iam(iam, home, age, now)]
    leftovers = sorted(
        (x for xs in found.values() for x in xs),
        key=lambda x: (names.index(x.region), KINDS.index(x.kind), x.id),
    )
    say(
        f"gc: leftovers of failed or interrupted runs in {', '.join(names)}: older than"
        f" {older_than}, or past their {catalog.EXPIRES_AT}"
    )
    if not leftovers:
        say("gc: nothing to remove")
        return leftovers
    width = max(len(x.region) for x in leftovers)
    say(f"  {'REGION':<{width}}  {'KIND':<14}  {'ID':<24}  WHY")
    for x in leftovers:
        say(f"  {x.region:<{width}}  {x.kind:<14}  {x.id:<24}  {x.why}")
    if not act:
        say(f"gc: plan only: {len(leftovers)} to remove; rerun with --apply to remove them")
        return leftovers

    def one(region: Region, _stop: threading.Event) -> None:
        failed = remove(region, [x for x in leftovers if x.region == region.name], say)
        if failed:
            raise BakeryError(f"{len(failed)} could not be removed ({'; '.join(failed)})")

    distribute.each_region(clients, one, what="gc", resume="rerun invoke gc --apply")
    failed = []
    for x in leftovers:
        if x.kind == "instance profile":  # after the instances that used them
            removed, left = instanceprofile.delete(iam, x.id, lambda line: say(f"gc: {line}"))
            failed += left
            for what in removed:
                say(f"gc: removed {what}")
    if failed:
        raise BakeryError(f"{len(failed)} could not be removed ({'; '.join(failed)})")
    say(f"gc: removed {len(leftovers)} leftovers")
    return leftovers


def _run(resource: dict[str, Any]) -> str:
    run = catalog.tags_of(resource).get(catalog.RUN_ID)
    return f"run {run}, " if run else ""


def _batches(values: list[str]) -> Iterable[list[str]]:
    for start in range(0, len(values), FILTER_VALUES):
        yield values[start : start + FILTER_VALUES]


def _age(delta: dt.timedelta) -> str:
    hours = int(delta.total_seconds() // 3600)
    return (
        f"{hours // 24}d{hours % 24}h"
        if hours >= 24
        else f"{hours}h{int(delta.total_seconds() % 3600 // 60):02d}m"
    )
