"""invoke publish against the emulator in three regions: copies, shares (image and snapshots),
SSM parameters; a rerun changes nothing; an interrupted run finishes on the next one.

Emulator gaps met here (moto 5.2), and how each test deals with them:
- copy_image ignores CopyImageTags, TagSpecifications, Encrypted and KmsKeyId: the copies it
  makes carry no tags and are not encrypted. The tests assert the request publish sends, and
  the tags publish writes itself (it tags every copy and its snapshots, in AWS too, where
  CopyImageTags does not reach the snapshots).
- create_image makes unencrypted snapshots, describe_snapshots reports no KmsKeyId, and
  alias/aws/ebs describes as a CUSTOMER key: the source AMI's key checks go through
  distribute_support.kms_shim, which makes those responses say what AWS says (labelled there).
  The destination keys are real emulator keys with real policies.
"""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import botocore.exceptions
import pytest
from distribute_support import (
    ACCOUNTS,
    BUILD,
    ORG,
    OU,
    PARAMETER,
    REGIONS,
    baked_ami,
    customer_keys,
    definition,
    failed_ami,
    launch_permissions,
    load,
    parameter,
    recorded,
    volume_permissions,
)

from bakery import catalog, keypolicy
from bakery.errors import BakeryError
from bakery.publish import publish

pytestmark = pytest.mark.emulator


@pytest.fixture
def keys(emulator: str) -> dict[str, str]:
    return customer_keys()


@pytest.fixture
def image(tmp_path: Path, keys: dict[str, str]):
    return load(definition(tmp_path, kms_key_ids=keys))


def admit_accounts(keys: dict[str, str]) -> None:
    """Give each key the statements publish asks for (as an administrator would)."""
    for region, arn in keys.items():
        kms = boto3.client("kms", region)
        policy = json.loads(kms.get_key_policy(KeyId=arn, PolicyName="default")["Policy"])
        missing = keypolicy.Targets(ACCOUNTS, (ORG,), (OU,))
        policy = keypolicy.merged(policy, keypolicy.statements(missing))
        kms.put_key_policy(KeyId=arn, PolicyName="default", Policy=json.dumps(policy))


def copies(region: str, source_id: str) -> list[dict]:
    return boto3.client("ec2", region).describe_images(
        Owners=["self"], Filters=[{"Name": f"tag:{catalog.COPIED_FROM}", "Values": [source_id]}]
    )["Images"]


def named(region: str, name: str) -> list[dict]:
    return boto3.client("ec2", region).describe_images(
        Owners=["self"], Filters=[{"Name": "name", "Values": [name]}]
    )["Images"]


def test_publish_copies_shares_and_writes_parameters(image, keys) -> None:
    source = baked_ami()
    admit_accounts(keys)
    lines: list[str] = []
    with recorded() as calls:
        outcomes = publish(image, say=lines.append, poll_seconds=0.01)

    assert list(outcomes) == list(REGIONS)
    assert outcomes[BUILD].ami_id == source["ImageId"]
    for region in REGIONS:
        ami_id = outcomes[region].ami_id
        if region != BUILD:
            [copy] = copies(region, source["ImageId"])
            assert copy["ImageId"] == ami_id
            tags = catalog.tags_of(copy)
            assert tags[catalog.COPIED_FROM_REGION] == BUILD
            assert tags[catalog.FINGERPRINT] == catalog.tags_of(source)[catalog.FINGERPRINT]
            assert tags[catalog.VERIFICATION] == catalog.PASSED
            assert tags["Project"] == "private-llm"
        ami = boto3.client("ec2", region).describe_images(ImageIds=[ami_id])["Images"][0]
        assert launch_permissions(region, ami_id) == sorted(
            [{"UserId": a} for a in ACCOUNTS]
            + [{"OrganizationArn": ORG}, {"OrganizationalUnitArn": OU}],
            key=lambda p: sorted(p.items()),
        )
        for snapshot in catalog.snapshots(ami):
            assert volume_permissions(region, snapshot) == set(ACCOUNTS)
            snap = boto3.client("ec2", region).describe_snapshots(SnapshotIds=[snapshot])
            assert catalog.tags_of(snap["Snapshots"][0])[catalog.IMAGE] == "deepseek-r1-7b"
        param = parameter(region)
        assert (param["Value"], param["DataType"]) == (ami_id, "aws:ec2:image")

    # What the emulator ignores, publish still asks for: encrypted with the region's key, tags.
    [request] = [c for c in calls.of("CopyImage") if c.region == "eu-west-1"]
    assert request.params["SourceRegion"] == BUILD
    assert request.params["Encrypted"] is True
    assert request.params["KmsKeyId"] == keys["eu-west-1"]
    assert request.params["CopyImageTags"] is True
    assert request.params["Name"] == source["Name"]
    # One modify call per image and per snapshot, whatever the number of accounts.
    assert len(calls.of("ModifyImageAttribute")) == len(REGIONS)
    assert any(line.startswith("published deepseek-r1-7b:") for line in lines)
    assert keypolicy.ASG_NOTE in lines


def test_rerun_changes_nothing(image, keys) -> None:
    baked_ami()
    admit_accounts(keys)
    publish(image, say=lambda _: None, poll_seconds=0.01)
    lines: list[str] = []
    with recorded() as calls:
        publish(image, say=lines.append, poll_seconds=0.01)
    assert calls.mutating() == []
    assert calls.made, "the rerun read the state"
    assert any("nothing changed (already published)" in line for line in lines)


class Crash(botocore.exceptions.EndpointConnectionError):
    """A connection lost mid-run, after AWS accepted the request."""


@pytest.mark.parametrize(
    ("event", "after"),
    [
        pytest.param("after-call.ec2.CopyImage", 1, id="after-the-first-copy"),
        pytest.param("after-call.ec2.ModifyImageAttribute", 2, id="after-two-shares"),
        pytest.param("before-call.ssm.PutParameter", 3, id="before-the-third-parameter"),
    ],
)
def test_interrupted_run_completes_on_rerun(image, keys, event: str, after: int) -> None:
    from bakery import aws

    source = baked_ami()
    admit_accounts(keys)
    seen = []

    def crash(**_: object) -> None:
        seen.append(1)
        if len(seen) == after:
            raise Crash(endpoint_url="https://ec2.amazonaws.com")

    remove = aws.on_event(event, crash)
    try:
        with pytest.raises(BakeryError, match="Could not connect to the endpoint URL"):
            publish(image, say=lambda _: None, poll_seconds=0.01)
    finally:
        remove()

    outcomes = publish(image, say=lambda _: None, poll_seconds=0.01)
    for region in REGIONS[1:]:
        [copy] = named(region, source["Name"])  # exactly one copy, now tagged
        assert catalog.tags_of(copy)[catalog.COPIED_FROM] == source["ImageId"]
        assert outcomes[region].ami_id == copy["ImageId"]
    for region in REGIONS:
        assert parameter(region)["Value"] == outcomes[region].ami_id
        assert len(launch_permissions(region, outcomes[region].ami_id)) == 4
    with recorded() as calls:
        publish(image, say=lambda _: None, poll_seconds=0.01)
    assert calls.mutating() == []


NOT_PASSED = {
    "never-verified": (lambda **kw: baked_ami(verified=False, **kw), "never verified"),
    "failed": (failed_ami, "bakery:verification is 'failed'"),
}


@pytest.mark.parametrize(("make", "state"), NOT_PASSED.values(), ids=NOT_PASSED.keys())
def test_refuses_an_ami_that_did_not_pass(image, make, state: str) -> None:
    ami = make()
    with recorded() as calls, pytest.raises(BakeryError) as e:
        publish(image, ami_id=ami["ImageId"], say=lambda _: None)
    assert str(e.value) == (
        f"{ami['ImageId']} is not verified ({state}): run invoke verify --image"
        " deepseek-r1-7b first; only verified AMIs leave this account"
    )
    assert calls.mutating() == []


@pytest.mark.parametrize(("make", "_"), NOT_PASSED.values(), ids=NOT_PASSED.keys())
def test_newest_verified_is_taken_over_a_newer_one_that_did_not_pass(image, keys, make, _) -> None:
    verified = baked_ami(run="20250101-000000-aaaaaa")
    make(run="20250102-000000-bbbbbb")
    admit_accounts(keys)
    outcomes = publish(image, say=lambda _: None, poll_seconds=0.01)
    assert outcomes[BUILD].ami_id == verified["ImageId"]


@pytest.mark.parametrize(("make", "_"), NOT_PASSED.values(), ids=NOT_PASSED.keys())
def test_no_verified_ami(image, make, _) -> None:
    make()
    with recorded() as calls, pytest.raises(BakeryError) as e:
        publish(image, say=lambda _: None)
    assert str(e.value) == (
        "no verified AMI of deepseek-r1-7b in us-east-1: run invoke bake --image"
        " deepseek-r1-7b, then invoke verify --image deepseek-r1-7b"
    )
    assert calls.mutating() == []


def test_refuses_an_ami_baked_against_the_emulator(image) -> None:
    """A local bake (provisioned=false) is never marked verified by verify; should such a
    mark appear anyway, publish still refuses it."""
    local = baked_ami(provisioned=False)
    with pytest.raises(BakeryError, match=r"baked against the emulator \(bakery:provisioned"):
        publish(image, ami_id=local["ImageId"], say=lambda _: None)


def test_key_policy_missing_accounts_prints_the_statement_and_refuses(image, keys) -> None:
    baked_ami()
    lines: list[str] = []
    with recorded() as calls, pytest.raises(BakeryError) as e:
        publish(image, say=lines.append)
    assert str(e.value) == (
        "the key policies of 2 KMS keys (eu-west-1, ap-southeast-2) do not let 111111111111,"
        f" 222222222222, {ORG}, {OU} use them: add the statements printed above, or rerun with"
        " --update-key-policy"
    )
    assert calls.mutating() == []
    printed = "\n".join(lines)
    assert f"KMS key {keys['eu-west-1']} (eu-west-1) needs these statements" in printed
    start = printed.index("[", printed.index(keys["eu-west-1"]))
    statements, _ = json.JSONDecoder().raw_decode(printed[start:])
    assert statements[0]["Principal"] == {"AWS": [f"arn:aws:iam::{a}:root" for a in ACCOUNTS]}
    assert statements[0]["Action"] == [
        "kms:CreateGrant",
        "kms:Decrypt",
        "kms:DescribeKey",
        "kms:ReEncrypt*",
    ]
    assert statements[1]["Condition"] == {"StringEquals": {"aws:PrincipalOrgID": ["o-abcdefghij"]}}
    assert statements[2]["Condition"] == {
        "ForAnyValue:StringLike": {"aws:PrincipalOrgPaths": ["o-abcdefghij/*/ou-ab12-cdefghij/*"]}
    }
    assert all(parameter(r) is None for r in REGIONS), "nothing changed"


def test_update_key_policy_adds_the_statements_once(image, keys) -> None:
    baked_ami()
    with recorded() as calls:
        publish(image, update_key_policy=True, say=lambda _: None, poll_seconds=0.01)
    assert len(calls.of("PutKeyPolicy")) == 2
    for region, arn in keys.items():
        policy = json.loads(
            boto3.client("kms", region).get_key_policy(KeyId=arn, PolicyName="default")["Policy"]
        )
        sids = [s.get("Sid") for s in policy["Statement"]]
        assert sids.count(keypolicy.SIDS["accounts"]) == 1
        assert "Enable IAM User Permissions" in sids, "the existing statements stay"
    with recorded() as calls:
        publish(image, update_key_policy=True, say=lambda _: None, poll_seconds=0.01)
    assert calls.mutating() == []


def test_a_new_account_widens_our_statement(tmp_path: Path, image, keys) -> None:
    baked_ami()
    publish(image, update_key_policy=True, say=lambda _: None, poll_seconds=0.01)
    wider = load(definition(tmp_path, accounts=(*ACCOUNTS, "333333333333"), kms_key_ids=keys))
    with recorded() as calls:
        publish(wider, update_key_policy=True, say=lambda _: None, poll_seconds=0.01)
    assert len(calls.of("PutKeyPolicy")) == 2
    assert len(calls.of("ModifyImageAttribute")) == 3
    assert calls.of("CopyImage") == []
    policy = json.loads(
        boto3.client("kms", "eu-west-1").get_key_policy(
            KeyId=keys["eu-west-1"], PolicyName="default"
        )["Policy"]
    )
    [ours] = [s for s in policy["Statement"] if s.get("Sid") == keypolicy.SIDS["accounts"]]
    assert ours["Principal"]["AWS"] == [
        f"arn:aws:iam::{a}:root" for a in (*ACCOUNTS, "333333333333")
    ]


def test_a_region_without_a_key_is_refused_before_anything_changes(tmp_path: Path, keys) -> None:
    image = load(definition(tmp_path, kms_key_ids={"eu-west-1": keys["eu-west-1"]}))
    baked_ami()
    with recorded() as calls, pytest.raises(BakeryError) as e:
        publish(image, say=lambda _: None)
    assert str(e.value).endswith(
        "distribute.kms_key_ids has no key for ap-southeast-2: copies are encrypted, and an"
        " encrypted AMI can be shared only under a customer managed key of its region (the AWS"
        " managed aws/ebs key cannot be shared)"
    )
    assert calls.mutating() == []


def test_without_targets_copies_and_publishes_with_the_default_key(
    tmp_path: Path, emulator
) -> None:
    image = load(definition(tmp_path, accounts=(), organization_arns=(), ou_arns=()))
    baked_ami()
    with recorded() as calls:
        outcomes = publish(image, say=lambda _: None, poll_seconds=0.01)
    assert "KmsKeyId" not in calls.of("CopyImage")[0].params
    assert calls.of("ModifyImageAttribute") == []
    assert all(parameter(r)["Value"] == outcomes[r].ami_id for r in REGIONS)
    assert PARAMETER.startswith("/bakery/")


def test_a_copy_that_outlasts_the_wait_is_one_line_and_the_rerun_resumes(image, keys) -> None:
    """The emulator's copies are available at once; a response hook makes eu-west-1's copy
    read as pending during the first run (as a big copy would), with --wait-minutes 0."""
    from bakery import aws

    source = baked_ami()
    admit_accounts(keys)

    def pending(parsed: dict, context: dict, **_: object) -> None:
        if context.get("client_region") == "eu-west-1":
            for ami in parsed.get("Images", []):
                ami["State"] = "pending"

    remove = aws.on_event("after-call.ec2.DescribeImages", pending)
    try:
        with pytest.raises(BakeryError) as e:
            publish(image, wait_minutes=0, say=lambda _: None, poll_seconds=0.01)
    finally:
        remove()
    [copy] = named("eu-west-1", source["Name"])
    assert str(e.value) == (
        f"publish failed in eu-west-1: the copy {copy['ImageId']} of {source['ImageId']} is still"
        " pending after 0m00s (--wait-minutes 0): it goes on in AWS; rerun to resume the wait"
    )
    assert parameter("eu-west-1") is None
    assert parameter("ap-southeast-2") is not None, "the other regions went on"

    with recorded() as calls:
        outcomes = publish(image, say=lambda _: None, poll_seconds=0.01)
    assert calls.of("CopyImage") == []
    assert outcomes["eu-west-1"].ami_id == copy["ImageId"]
    assert outcomes["eu-west-1"].copy == "existing copy"
    assert parameter("eu-west-1")["Value"] == copy["ImageId"]


def of_another_image(ami: dict) -> dict:
    ec2 = boto3.client("ec2", BUILD)
    catalog.tag(ec2, ami, {catalog.IMAGE: "other-image"})
    return ec2.describe_images(ImageIds=[ami["ImageId"]])["Images"][0]


def test_refuses_a_verified_ami_of_another_image(image) -> None:
    other = of_another_image(baked_ami())
    with recorded() as calls, pytest.raises(BakeryError) as e:
        publish(image, ami_id=other["ImageId"], say=lambda _: None)
    assert str(e.value) == f"{other['ImageId']} is an AMI of 'other-image', not of 'deepseek-r1-7b'"
    assert calls.mutating() == []


def test_the_newest_verified_ami_of_this_image_not_of_another(image, keys) -> None:
    ours = baked_ami(run="20250101-000000-aaaaaa")
    of_another_image(baked_ami(run="20250102-000000-bbbbbb"))
    admit_accounts(keys)
    outcomes = publish(image, say=lambda _: None, poll_seconds=0.01)
    assert outcomes[BUILD].ami_id == ours["ImageId"]
