"""invoke gc against the emulator: what a failed bake and a failed verify left, planned and
removed; what is in use, young, finished or not the tool's, left alone.

The emulator stamps creation times with the present, so the tests move gc's clock instead
(`now`, seven hours ahead: everything made here is then 7h old).
"""

from __future__ import annotations

import datetime as dt
import re

import boto3
import pytest
from distribute_support import BUILD, STOCK_AMI, baked_ami, recorded

from bakery import TOOL, catalog, instanceprofile
from bakery.gc import gc

pytestmark = pytest.mark.emulator
LATER = dt.datetime.now(dt.UTC) + dt.timedelta(hours=7)
BAKE_RUN = "20250101-000000-bake01"
VERIFY_RUN = "20250102-000000-verif1"
LIVE_RUN = "20250103-000000-live01"


def quiet(_: str) -> None:
    pass


def tags(run: str | None = None, **extra: str) -> list[dict[str, str]]:
    found = {catalog.MANAGED_BY: TOOL, catalog.IMAGE: "deepseek-r1-7b", **extra}
    if run:
        found[catalog.RUN_ID] = run
    return catalog.tag_list(found)


def spec(kind: str, tag_list: list[dict[str, str]]) -> list[dict]:
    return [{"ResourceType": kind, "Tags": tag_list}] if tag_list else []


@pytest.fixture
def leftovers(emulator: str) -> dict[str, str]:
    # Seven hours after the leftovers are made, not after this module was imported: a long
    # suite runs other modules in between.
    global LATER
    LATER = dt.datetime.now(dt.UTC) + dt.timedelta(hours=7)
    ec2 = boto3.client("ec2", BUILD)
    made: dict[str, str] = {}

    def group(name: str, tag_list: list[dict[str, str]]) -> str:
        return ec2.create_security_group(
            GroupName=name, Description="test", TagSpecifications=spec("security-group", tag_list)
        )["GroupId"]

    def instance(tag_list: list[dict[str, str]], group_id: str | None = None, key: str = "") -> str:
        extra = {"SecurityGroupIds": [group_id]} if group_id else {}
        extra |= {"KeyName": key} if key else {}
        return ec2.run_instances(
            ImageId=STOCK_AMI,
            MinCount=1,
            MaxCount=1,
            TagSpecifications=spec("instance", tag_list),
            **extra,
        )["Instances"][0]["InstanceId"]

    # A bake that died hard (kill -9): Packer's instance, volume, key pair and group (1.6.6
    # leaves the last two untagged), and an AMI that never got its fingerprint.
    made["bake key pair"] = ec2.create_key_pair(KeyName="packer_6123abcd")["KeyName"]
    made["bake group"] = group("packer_6123abcd", [])
    made["bake instance"] = instance(tags(BAKE_RUN), made["bake group"], "packer_6123abcd")
    made["bake volume"] = ec2.create_volume(
        AvailabilityZone=f"{BUILD}a", Size=8, TagSpecifications=spec("volume", tags(BAKE_RUN))
    )["VolumeId"]
    unfinished = ec2.create_image(InstanceId=made["bake instance"], Name="deepseek-r1-7b-x")
    made["unfinished AMI"] = unfinished["ImageId"]
    ec2.create_tags(Resources=[made["unfinished AMI"]], Tags=tags(BAKE_RUN))
    image = ec2.describe_images(ImageIds=[made["unfinished AMI"]])["Images"][0]
    made["unfinished AMI snapshot"] = catalog.snapshots(image)[0]
    # A snapshot whose AMI was deregistered by hand.
    volume = ec2.create_volume(AvailabilityZone=f"{BUILD}a", Size=8)["VolumeId"]
    made["orphan snapshot"] = ec2.create_snapshot(
        VolumeId=volume,
        Description="Created by CreateImage(i-0123456789abcdef0) for ami-0123456789abcdef0",
        TagSpecifications=spec("snapshot", tags(BAKE_RUN)),
    )["SnapshotId"]
    ec2.delete_volume(VolumeId=volume)

    # A verify that died: its resources carry an expiry, already past.
    expired = {catalog.EXPIRES_AT: "2025-01-02T03:00:00Z"}
    made["verify group"] = group(f"bakery-verify-{VERIFY_RUN}", tags(VERIFY_RUN, **expired))
    made["verify key pair"] = ec2.create_key_pair(
        KeyName=f"bakery-verify-{VERIFY_RUN}",
        TagSpecifications=spec("key-pair", tags(VERIFY_RUN, **expired)),
    )["KeyName"]
    made["verify instance"] = instance(
        tags(VERIFY_RUN, **expired), made["verify group"], f"bakery-verify-{VERIFY_RUN}"
    )

    # Never gc's: a verify still running (expires tomorrow), the fleet (no run id), a finished
    # AMI and its snapshot, someone's Packer build in progress, someone else's key pair.
    tomorrow = {catalog.EXPIRES_AT: (LATER + dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")}
    made["live group"] = group(f"bakery-verify-{LIVE_RUN}", tags(LIVE_RUN, **tomorrow))
    made["live instance"] = instance(tags(LIVE_RUN, **tomorrow), made["live group"])
    made["fleet instance"] = instance(tags(None))
    finished = baked_ami()
    made["finished AMI"] = finished["ImageId"]
    made["finished snapshot"] = catalog.snapshots(finished)[0]
    made["busy packer group"] = group("packer_busy", [])
    made["busy packer instance"] = instance([], made["busy packer group"])
    made["other key pair"] = ec2.create_key_pair(KeyName="alice")["KeyName"]

    # Instance profiles runs made (IAM: global, listed with the first region): the dead
    # verify's, past its expiry; the live one's; and a role under /bakery/ that is not the tool's.
    iam = boto3.client("iam")
    document = instanceprofile.policy(session_manager=True, s3_urls=[])
    assert document is not None
    for key, run, extra in (
        ("verify profile", VERIFY_RUN, expired),
        ("live profile", LIVE_RUN, tomorrow),
    ):
        run_tags = {t["Key"]: t["Value"] for t in tags(run, **extra)}
        made[key] = instanceprofile.create(iam, run, run_tags, document, quiet).name
    made["foreign role"] = iam.create_role(
        RoleName="bakery-hand-made", Path=instanceprofile.PATH, AssumeRolePolicyDocument="{}"
    )["Role"]["RoleName"]
    return made


GONE = [
    "bake instance",
    "verify instance",
    "unfinished AMI",
    "unfinished AMI snapshot",
    "orphan snapshot",
    "bake volume",
    "bake key pair",
    "verify key pair",
    "bake group",
    "verify group",
    "verify profile",
]


def test_plan_lists_the_leftovers_and_changes_nothing(leftovers: dict[str, str]) -> None:
    lines: list[str] = []
    with recorded() as calls:
        found = gc(regions=[BUILD], now=LATER, say=lines.append)
    assert calls.mutating() == []
    assert sorted(x.id for x in found) == sorted(leftovers[k] for k in GONE)
    why = {x.id: x.why for x in found}
    assert why[leftovers["verify instance"]] == f"run {VERIFY_RUN}, expired at 2025-01-02T03:00Z"
    assert re.fullmatch(rf"run {BAKE_RUN}, (6h59m|7h00m) old", why[leftovers["bake instance"]])
    assert why[leftovers["orphan snapshot"]].startswith(
        f"run {BAKE_RUN}, its AMI ami-0123456789abcdef0 is gone, "
    )
    assert why[leftovers["bake group"]] == (
        "packer_6123abcd: Packer temporary group (untagged: no age to tell), used by nothing"
    )
    assert why[leftovers["verify profile"]] == f"run {VERIFY_RUN}, expired at 2025-01-02T03:00Z"
    assert lines[-1] == "gc: plan only: 11 to remove; rerun with --apply to remove them"


def test_apply_removes_them_and_only_them(leftovers: dict[str, str]) -> None:
    gc(regions=[BUILD], act=True, now=LATER, say=quiet)
    ec2 = boto3.client("ec2", BUILD)
    live = {
        i["InstanceId"]
        for r in ec2.describe_instances()["Reservations"]
        for i in r["Instances"]
        if i["State"]["Name"] != "terminated"
    }
    assert live == {
        leftovers["live instance"],
        leftovers["fleet instance"],
        leftovers["busy packer instance"],
    }
    assert {a["ImageId"] for a in ec2.describe_images(Owners=["self"])["Images"]} == {
        leftovers["finished AMI"]
    }
    snapshots = {s["SnapshotId"] for s in ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]}
    assert leftovers["finished snapshot"] in snapshots
    assert not snapshots & {leftovers["orphan snapshot"], leftovers["unfinished AMI snapshot"]}
    assert {p["KeyName"] for p in ec2.describe_key_pairs()["KeyPairs"]} == {"alice"}
    groups = {g["GroupId"] for g in ec2.describe_security_groups()["SecurityGroups"]}
    assert leftovers["live group"] in groups and leftovers["busy packer group"] in groups
    assert not groups & {leftovers["bake group"], leftovers["verify group"]}
    iam = boto3.client("iam")
    profiles = iam.list_instance_profiles(PathPrefix=instanceprofile.PATH)["InstanceProfiles"]
    assert [p["InstanceProfileName"] for p in profiles] == [leftovers["live profile"]]
    roles = {r["RoleName"] for r in iam.list_roles(PathPrefix=instanceprofile.PATH)["Roles"]}
    assert roles == {leftovers["live profile"], leftovers["foreign role"]}

    with recorded() as calls:
        assert gc(regions=[BUILD], act=True, now=LATER, say=quiet) == []
    assert calls.mutating() == []


def test_young_leftovers_wait(leftovers: dict[str, str]) -> None:
    found = gc(regions=[BUILD], older_than="2d", now=LATER, say=quiet)
    # The verify's expiry has passed; the bake's leftovers are 7h old, and its Packer group
    # (untagged: no age) is still used by its instance, which stays.
    assert sorted(x.id for x in found) == sorted(
        [
            leftovers["verify instance"],
            leftovers["verify key pair"],
            leftovers["verify group"],
            leftovers["verify profile"],
        ]
    )
