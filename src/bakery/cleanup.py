"""Find and remove what one run created, by its run-id tag: instances first, then the rest.

Used after a failed, timed-out or interrupted bake or verify; `gc` uses the same removal
for what escaped (found by the tool's tags and age instead of a run id).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import botocore.exceptions

from .aws import describe
from .catalog import FINGERPRINT, RUN_ID, snapshots, tags_of


def _by_tag(key: str, value: str) -> list[dict[str, Any]]:
    return [{"Name": f"tag:{key}", "Values": [value]}]


def sweep(ec2: Any, run_id: str, *, images: bool, say: Callable[[str], None] = print) -> list[str]:
    """Remove every resource tagged with this run id; return what was removed, one line each.

    images=True also deregisters AMIs of the run that never got their fingerprint (an
    unfinished bake) and deletes their snapshots. Finished AMIs are never touched here.
    """
    filters = _by_tag(RUN_ID, run_id)
    removed: list[str] = []

    def attempt(what: str, call: Callable[[], Any]) -> None:
        try:
            call()
            removed.append(what)
        except botocore.exceptions.ClientError as e:
            say(f"clean-up: could not remove {what}: {describe(e)} (invoke gc will retry)")

    live = ["pending", "running", "stopping", "stopped"]
    instance_ids = [
        i["InstanceId"]
        for page in ec2.get_paginator("describe_instances").paginate(
            Filters=[*filters, {"Name": "instance-state-name", "Values": live}]
        )
        for r in page["Reservations"]
        for i in r["Instances"]
    ]
    if instance_ids:
        attempt(
            f"instances {', '.join(instance_ids)}",
            lambda: ec2.terminate_instances(InstanceIds=instance_ids),
        )
        try:
            ec2.get_waiter("instance_terminated").wait(
                InstanceIds=instance_ids, WaiterConfig={"Delay": 5, "MaxAttempts": 120}
            )
        except botocore.exceptions.WaiterError:
            say(
                "clean-up: instances still terminating after 10 minutes; security groups may be left for gc"
            )

    kept_snapshots: set[str] = set()
    if images:
        for ami in ec2.describe_images(Owners=["self"], Filters=filters)["Images"]:
            if FINGERPRINT in tags_of(ami):
                kept_snapshots.update(snapshots(ami))
                continue
            attempt(
                f"unfinished AMI {ami['ImageId']}",
                lambda a=ami: ec2.deregister_image(ImageId=a["ImageId"]),
            )
        for snap in ec2.describe_snapshots(OwnerIds=["self"], Filters=filters)["Snapshots"]:
            if snap["SnapshotId"] not in kept_snapshots:
                attempt(
                    f"snapshot {snap['SnapshotId']}",
                    lambda s=snap: ec2.delete_snapshot(SnapshotId=s["SnapshotId"]),
                )
    for vol in ec2.describe_volumes(
        Filters=[*filters, {"Name": "status", "Values": ["available"]}]
    )["Volumes"]:
        attempt(
            f"volume {vol['VolumeId']}", lambda v=vol: ec2.delete_volume(VolumeId=v["VolumeId"])
        )
    for pair in ec2.describe_key_pairs(Filters=filters)["KeyPairs"]:
        attempt(
            f"key pair {pair['KeyName']}",
            lambda p=pair: ec2.delete_key_pair(KeyName=p["KeyName"]),
        )
    for group in ec2.describe_security_groups(Filters=filters)["SecurityGroups"]:
        attempt(
            f"security group {group['GroupId']}",
            lambda g=group: ec2.delete_security_group(GroupId=g["GroupId"]),
        )
    return removed
