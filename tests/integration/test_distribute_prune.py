"""invoke prune against the emulator: the plan, --apply, every protection, in two regions.

Emulator gaps met here (moto 5.2), and how the tests deal with them:
- No AMI deprecation: enable_image_deprecation answers HTTP 500 and describe_images never
  reports DeprecationTime. test_the_emulator_still_lacks_image_deprecation proves the gap is
  still there; the other tests run through distribute_support.deprecation_shim, which answers
  EnableImageDeprecation itself (recording the request) and adds the recorded DeprecationTime
  to DescribeImages responses. The exact request prune sends is asserted in
  tests/unit/test_distribute_prune.py with botocore's Stubber.
- deregister_image accepts DeleteAssociatedSnapshots but leaves the snapshots: prune checks
  what is left after deregistering and deletes it (in AWS that check finds nothing), so the
  tests assert the snapshots are gone either way.
- CreationDate is stamped to the second: the shim dates the test's AMIs, so their order is
  the test's, not the clock's.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import boto3
import botocore.config
import botocore.parsers
import pytest
from distribute_support import (
    BUILD,
    PARAMETER,
    STOCK_AMI,
    baked_ami,
    definition,
    deprecation_shim,
    load,
    recorded,
)

from bakery import catalog
from bakery.prune import DEPRECATE, DEREGISTER, KEEP, WAIT, prune

pytestmark = pytest.mark.emulator
NOW = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)
EU = "eu-west-1"


def quiet(_: str) -> None:
    pass


@pytest.fixture
def world(tmp_path: Path, emulator: str):
    """Nine AMIs in us-east-1 (newest first), three in eu-west-1, each with a reason to stay or go."""
    names = ["new0", "new1", "verified", "ssm", "running", "template", "old", "expired", "soon"]
    amis = {}
    for i, name in enumerate(names):
        amis[name] = baked_ami(verified=name == "verified", run=f"2025010{9 - i}-000000-{i:06x}")
    for i, name in enumerate(["eu-newest", "eu-second", "eu-old"]):
        amis[name] = baked_ami(
            EU, verified=name == "eu-newest", run=f"2025020{9 - i}-000000-{i:06x}"
        )
    created = {
        a["ImageId"]: f"2025-05-{30 - i:02d}T00:00:00.000Z" for i, a in enumerate(amis.values())
    }
    ec2 = boto3.client("ec2", BUILD)
    boto3.client("ssm", BUILD).put_parameter(
        Name=PARAMETER, Value=amis["ssm"]["ImageId"], Type="String", DataType="aws:ec2:image"
    )
    ec2.run_instances(ImageId=amis["running"]["ImageId"], MinCount=1, MaxCount=1)
    ec2.create_launch_template(
        LaunchTemplateName="fleet", LaunchTemplateData={"ImageId": amis["template"]["ImageId"]}
    )
    deprecated = {
        amis["expired"]["ImageId"]: NOW - dt.timedelta(days=1),
        amis["soon"]["ImageId"]: NOW + dt.timedelta(days=10),
    }
    image = load(definition(tmp_path, regions=(EU,), kms_key_ids={}, keep=2))
    with deprecation_shim(deprecated, created) as times:
        yield image, amis, times


def actions(decisions) -> dict[str, tuple[str, str]]:
    return {d.ami_id: (d.action, d.why) for d in decisions}


def test_plan_protects_and_changes_nothing(world) -> None:
    image, amis, _ = world
    lines: list[str] = []
    with recorded() as calls:
        decisions = prune(image, now=NOW, say=lines.append)
    assert calls.mutating() == []
    got = {name: actions(decisions)[a["ImageId"]] for name, a in amis.items()}
    running = boto3.client("ec2", BUILD).describe_instances(
        Filters=[{"Name": "image-id", "Values": [amis["running"]["ImageId"]]}]
    )["Reservations"][0]["Instances"][0]["InstanceId"]
    assert got == {
        "new0": (KEEP, "one of the newest 2"),
        "new1": (KEEP, "one of the newest 2"),
        "verified": (KEEP, "newest verified"),
        "ssm": (KEEP, f"SSM {PARAMETER}"),
        "running": (KEEP, f"in use by {running}"),
        "template": (KEEP, "launch template fleet (default version)"),
        "old": (DEPRECATE, "older than the newest 2; deprecated at 2025-08-30T00:00Z"),
        "expired": (DEREGISTER, "deprecated since 2025-05-31T00:00Z"),
        "soon": (WAIT, "deprecated at 2025-06-11T00:00Z; deregistered by a prune after that"),
        "eu-newest": (KEEP, "newest verified"),
        "eu-second": (KEEP, "one of the newest 2"),
        "eu-old": (DEPRECATE, "older than the newest 2; deprecated at 2025-08-30T00:00Z"),
    }
    assert lines[-1] == (
        "prune: plan only: 2 to deprecate, 1 to deregister (with 1 snapshot); rerun with --apply"
        " to act"
    )
    assert any(line.split()[:2] == ["us-east-1", amis["old"]["ImageId"]] for line in lines)


def test_apply_deprecates_deregisters_and_deletes_the_snapshots(world) -> None:
    image, amis, times = world
    expired = amis["expired"]
    [snapshot] = catalog.snapshots(expired)
    with recorded() as calls:
        prune(image, act=True, now=NOW, say=quiet)
    assert sorted(c.params["ImageId"] for c in calls.of("EnableImageDeprecation")) == sorted(
        [amis["old"]["ImageId"], amis["eu-old"]["ImageId"]]
    )
    assert times[amis["old"]["ImageId"]] == NOW + dt.timedelta(days=90)
    [deregister] = calls.of("DeregisterImage")
    assert deregister.params == {"ImageId": expired["ImageId"], "DeleteAssociatedSnapshots": True}
    ec2 = boto3.client("ec2", BUILD)
    left = ec2.describe_images(Owners=["self"])["Images"]
    assert expired["ImageId"] not in {a["ImageId"] for a in left}
    assert len(left) == 8, "nothing else was deregistered"
    gone = ec2.describe_snapshots(Filters=[{"Name": "snapshot-id", "Values": [snapshot]}])
    assert gone["Snapshots"] == []
    mutated = {c.operation for c in calls.made if c.mutating}
    assert mutated <= {"EnableImageDeprecation", "DeregisterImage", "DeleteSnapshot"}

    with recorded() as calls:
        decisions = prune(image, act=True, now=NOW, say=quiet)
    assert calls.mutating() == [], "a second run has nothing left to do"
    assert actions(decisions)[amis["old"]["ImageId"]][0] == WAIT


def test_keep_option_overrides_the_definition(world) -> None:
    image, amis, _ = world
    decisions = prune(image, keep=7, now=NOW, say=quiet)
    assert actions(decisions)[amis["old"]["ImageId"]] == (KEEP, "one of the newest 7")
    assert actions(decisions)[amis["expired"]["ImageId"]][0] == DEREGISTER


def test_reads_grow_with_regions_not_with_amis(world) -> None:
    image, _, _ = world
    with recorded() as calls:
        prune(image, now=NOW, say=quiet)
    per_region = {}
    for c in calls.made:
        if c.service != "sts":
            per_region.setdefault(c.region, []).append(c.operation)
    # A few calls per region (pages), whatever the number of AMIs in it (nine here, three there).
    assert sorted(per_region[BUILD]) == sorted(per_region[EU])


def test_the_emulator_still_lacks_image_deprecation(emulator: str) -> None:
    """Proof of the gap the shim stands in for. If this fails, moto gained AMI deprecation:
    drop deprecation_shim and test prune against the emulator itself."""
    ec2 = boto3.client(
        "ec2", BUILD, config=botocore.config.Config(retries={"max_attempts": 1, "mode": "standard"})
    )
    with pytest.raises(botocore.parsers.ResponseParserError) as e:
        ec2.enable_image_deprecation(ImageId=STOCK_AMI, DeprecateAt=NOW + dt.timedelta(days=1))
    assert "500 Internal Server Error" in str(e.value)  # moto: NotImplementedError
