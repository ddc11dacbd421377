"""cleanup.sweep against the emulator: what one failed or interrupted run left goes, by its
run-id tag, and a finished AMI (one with the fingerprint tag) and its snapshots never do, even
when they carry the same run id."""

from __future__ import annotations

from typing import Any

import boto3
import botocore.exceptions
import pytest
from distribute_support import STOCK_AMI, recorded

from bakery import aws, catalog, cleanup

pytestmark = pytest.mark.emulator
RUN, OTHER = "20250101-000000-aaaaaa", "20250101-000000-bbbbbb"


def ec2() -> Any:
    return boto3.client("ec2", "us-east-1")


def run_tags(run: str) -> list[dict[str, str]]:
    return catalog.tag_list(catalog.tool_tags("deepseek-r1-7b", **{catalog.RUN_ID: run}))


def ami_of(run: str, *, finished: bool) -> dict[str, Any]:
    """An AMI and its snapshot tagged as a bake leaves them: finished ones carry the
    fingerprint (written last), unfinished ones only the run's tags."""
    client = ec2()
    instance = client.run_instances(ImageId=STOCK_AMI, MinCount=1, MaxCount=1)["Instances"][0]
    name = f"deepseek-r1-7b-{run}-{'finished' if finished else 'unfinished'}"
    ami_id = client.create_image(InstanceId=instance["InstanceId"], Name=name)["ImageId"]
    client.terminate_instances(InstanceIds=[instance["InstanceId"]])
    ami = client.describe_images(ImageIds=[ami_id])["Images"][0]
    extra = {catalog.FINGERPRINT: "f" * 64} if finished else {}
    catalog.tag(client, ami, catalog.tool_tags("deepseek-r1-7b", **{catalog.RUN_ID: run}, **extra))
    return ami


def leftovers_of(run: str) -> dict[str, str]:
    """What a build instance leaves when its run dies: an instance, a volume, a key pair, a
    security group and a snapshot nobody registered, all tagged with the run id."""
    client = ec2()
    tags = run_tags(run)
    instance = client.run_instances(
        ImageId=STOCK_AMI,
        MinCount=1,
        MaxCount=1,
        TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
    )["Instances"][0]
    volume = client.create_volume(
        AvailabilityZone="us-east-1a",
        Size=8,
        TagSpecifications=[{"ResourceType": "volume", "Tags": tags}],
    )
    snapshot = client.create_snapshot(
        VolumeId=volume["VolumeId"],
        TagSpecifications=[{"ResourceType": "snapshot", "Tags": tags}],
    )
    client.create_key_pair(
        KeyName=f"packer_{run}", TagSpecifications=[{"ResourceType": "key-pair", "Tags": tags}]
    )
    group = client.create_security_group(
        GroupName=f"packer_{run}",
        Description="packer temp",
        TagSpecifications=[{"ResourceType": "security-group", "Tags": tags}],
    )
    return {
        "instance": instance["InstanceId"],
        "volume": volume["VolumeId"],
        "snapshot": snapshot["SnapshotId"],
        "key pair": f"packer_{run}",
        "security group": group["GroupId"],
    }


def image_ids() -> set[str]:
    return {i["ImageId"] for i in ec2().describe_images(Owners=["self"])["Images"]}


def snapshot_ids() -> set[str]:
    return {s["SnapshotId"] for s in ec2().describe_snapshots(OwnerIds=["self"])["Snapshots"]}


def state_of(instance_id: str) -> str:
    [reservation] = ec2().describe_instances(InstanceIds=[instance_id])["Reservations"]
    return reservation["Instances"][0]["State"]["Name"]


def still_there(left: dict[str, str]) -> set[str]:
    client = ec2()
    found = set()
    if state_of(left["instance"]) != "terminated":
        found.add("instance")
    if left["volume"] in {v["VolumeId"] for v in client.describe_volumes()["Volumes"]}:
        found.add("volume")
    if left["snapshot"] in snapshot_ids():
        found.add("snapshot")
    if left["key pair"] in {k["KeyName"] for k in client.describe_key_pairs()["KeyPairs"]}:
        found.add("key pair")
    groups = {g["GroupId"] for g in client.describe_security_groups()["SecurityGroups"]}
    if left["security group"] in groups:
        found.add("security group")
    return found


def test_a_finished_ami_of_the_same_run_and_its_snapshots_are_never_touched(
    emulator: str,
) -> None:
    finished = ami_of(RUN, finished=True)
    unfinished = ami_of(RUN, finished=False)
    left = leftovers_of(RUN)
    said: list[str] = []

    with recorded() as calls:  # on the clients made inside it
        removed = cleanup.sweep(aws.client("ec2", "us-east-1"), RUN, images=True, say=said.append)

    assert finished["ImageId"] in image_ids()
    assert set(catalog.snapshots(finished)) <= snapshot_ids()
    assert unfinished["ImageId"] not in image_ids()
    assert not set(catalog.snapshots(unfinished)) & snapshot_ids()
    assert still_there(left) == set()
    assert said == []
    assert sorted(removed) == sorted(
        [
            f"instances {left['instance']}",
            f"unfinished AMI {unfinished['ImageId']}",
            f"snapshot {left['snapshot']}",
            *(f"snapshot {s}" for s in catalog.snapshots(unfinished)),
            f"volume {left['volume']}",
            f"key pair {left['key pair']}",
            f"security group {left['security group']}",
        ]
    )
    # What AWS is asked, where the emulator is lenient: it ignores owner IDs it does not know
    # (AWS: an error; without an owner, every public snapshot) and reads filter names in any case.
    sent = {c.operation: c.params for c in calls.made}
    assert sent["DescribeImages"]["Owners"] == ["self"]
    assert sent["DescribeSnapshots"]["OwnerIds"] == ["self"]
    assert {"Name": "status", "Values": ["available"]} in sent["DescribeVolumes"]["Filters"]


def test_only_the_named_run_is_swept(emulator: str) -> None:
    other_ami = ami_of(OTHER, finished=False)
    other = leftovers_of(OTHER)
    ami_of(RUN, finished=False)

    cleanup.sweep(ec2(), RUN, images=True, say=lambda _: None)

    assert other_ami["ImageId"] in image_ids()
    assert set(catalog.snapshots(other_ami)) <= snapshot_ids()
    assert still_there(other) == set(other)


def test_without_images_amis_and_snapshots_stay(emulator: str) -> None:
    """verify sweeps with images=False: its run id is on no AMI it may remove."""
    unfinished = ami_of(RUN, finished=False)
    left = leftovers_of(RUN)

    removed = cleanup.sweep(ec2(), RUN, images=False, say=lambda _: None)

    assert unfinished["ImageId"] in image_ids()
    assert set(catalog.snapshots(unfinished)) <= snapshot_ids()
    assert still_there(left) == {"snapshot"}
    assert not any("AMI" in r or "snapshot" in r for r in removed)


def test_a_removal_that_fails_is_said_and_the_rest_goes_on(
    emulator: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    left = leftovers_of(RUN)
    client = ec2()

    def refuse(**_: Any) -> None:
        # The emulator removes every key pair it is asked to; AWS can refuse (throttling,
        # a policy): stand in for that one refusal.
        raise botocore.exceptions.ClientError(
            {"Error": {"Code": "UnauthorizedOperation", "Message": "no"}}, "DeleteKeyPair"
        )

    monkeypatch.setattr(client, "delete_key_pair", refuse)
    said: list[str] = []
    removed = cleanup.sweep(client, RUN, images=True, say=said.append)

    assert still_there(left) == {"key pair"}
    assert f"key pair {left['key pair']}" not in removed
    assert f"security group {left['security group']}" in removed
    assert said == [
        f"clean-up: could not remove key pair {left['key pair']}: UnauthorizedOperation: no"
        " (invoke gc will retry)"
    ]


def test_instances_in_every_state_but_terminated_are_ended(emulator: str) -> None:
    """A build instance may be pending (the interrupt came right after launch), stopping or
    stopped (Packer stops an EBS-backed instance before imaging it)."""
    left = leftovers_of(RUN)
    ec2().stop_instances(InstanceIds=[left["instance"]])
    assert state_of(left["instance"]) == "stopped"
    running, of_another_run = (
        ec2().run_instances(
            ImageId=STOCK_AMI,
            MinCount=1,
            MaxCount=1,
            TagSpecifications=[{"ResourceType": "instance", "Tags": run_tags(run)}],
        )["Instances"][0]["InstanceId"]
        for run in (RUN, OTHER)
    )
    with recorded() as calls:  # on the clients made inside it
        client = aws.client("ec2", "us-east-1")
        removed = cleanup.sweep(client, RUN, images=False, say=lambda _: None)

    assert state_of(left["instance"]) == state_of(running) == "terminated"
    # Waited for by ID: an instance of another run, still running, holds nothing up.
    assert state_of(of_another_run) == "running"
    [ended] = [line for line in removed if line.startswith("instances ")]
    assert sorted(ended.removeprefix("instances ").split(", ")) == sorted(
        [left["instance"], running]
    )
    # The emulator moves through pending and stopping at once: the request shows they count.
    describe = calls.of("DescribeInstances")[0]  # then the waiter's
    states = [f["Values"] for f in describe.params["Filters"] if f["Name"] == "instance-state-name"]
    assert states == [["pending", "running", "stopping", "stopped"]]


def test_instances_still_ending_after_ten_minutes_are_said_and_the_rest_goes_on(
    emulator: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    left = leftovers_of(RUN)
    client = ec2()
    waited: list[dict[str, Any]] = []

    class Stuck:
        """The emulator ends instances at once; AWS can take longer than the wait: stand in
        for that one waiter."""

        def wait(self, **kwargs: Any) -> None:
            waited.append(kwargs)
            raise botocore.exceptions.WaiterError(
                name="InstanceTerminated", reason="Max attempts exceeded", last_response={}
            )

    real = client.get_waiter
    monkeypatch.setattr(
        client, "get_waiter", lambda name: Stuck() if name == "instance_terminated" else real(name)
    )
    said: list[str] = []
    removed = cleanup.sweep(client, RUN, images=True, say=said.append)

    assert said == [
        "clean-up: instances still terminating after 10 minutes; security groups may be left for gc"
    ]
    [wait] = waited
    assert wait["InstanceIds"] == [left["instance"]]
    config = wait["WaiterConfig"]
    assert config["Delay"] * config["MaxAttempts"] == 600, "the 10 minutes the message names"
    assert f"key pair {left['key pair']}" in removed
    assert f"volume {left['volume']}" in removed
