"""invoke share (and --revoke) against the emulator, and the KMS checks that guard sharing.

The AMI's own key goes through distribute_support.kms_shim: the emulator makes unencrypted
snapshots, reports no snapshot KmsKeyId and has no AWS managed keys (alias/aws/ebs describes
as a CUSTOMER key); the shim makes those responses say what AWS says. Key policies are the
emulator's own, read and written for real.
"""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest
from distribute_support import (
    ACCOUNTS,
    BUILD,
    ORG,
    baked_ami,
    customer_keys,
    definition,
    failed_ami,
    kms_shim,
    launch_permissions,
    load,
    recorded,
    volume_permissions,
)

from bakery import catalog, distribute, keypolicy
from bakery.errors import BakeryError
from bakery.publish import publish
from bakery.share import share

pytestmark = pytest.mark.emulator
TARGETS = distribute.Targets(ACCOUNTS, (ORG,))


def quiet(_: str) -> None:
    pass


def test_share_adds_only_what_is_missing_and_revoke_takes_it_back(emulator: str) -> None:
    ami = baked_ami()
    ami_id, [snapshot] = ami["ImageId"], catalog.snapshots(ami)
    share(ami_id, distribute.Targets(ACCOUNTS[:1]), say=quiet)
    lines: list[str] = []
    with recorded() as calls:
        changes = share(ami_id, TARGETS, say=lines.append)
    assert changes == [
        "launch permission for 1 account, 1 organization",
        f"{snapshot} for 1 account",
    ]
    assert lines == [  # no KMS key to share, so no note about Auto Scaling's grants
        f"share: {ami_id} in {BUILD}: shared: launch permission for 1 account, 1 organization;"
        f" {snapshot} for 1 account"
    ]
    [modify] = calls.of("ModifyImageAttribute")
    assert (modify.params["UserIds"], modify.params["OrganizationArns"]) == (
        [ACCOUNTS[1]],
        [ORG],
    )
    assert volume_permissions(BUILD, snapshot) == set(ACCOUNTS)

    with recorded() as calls:
        assert share(ami_id, TARGETS, say=lines.append) == []
    assert calls.mutating() == []
    assert lines[-1] == f"share: {ami_id} in {BUILD}: nothing to change (already shared)"

    lines.clear()
    revoked = share(ami_id, distribute.Targets(ACCOUNTS[:1]), remove=True, say=lines.append)
    assert revoked == ["launch permission of 1 account", f"{snapshot} of 1 account"]
    assert lines == [
        f"share: {ami_id} in {BUILD}: revoked launch permission of 1 account; {snapshot} of 1"
        " account",
        "share: KMS key policies are left as they are (other AMIs may need them): remove an"
        " account from a key's policy by hand when nothing shared with it remains",
    ]
    assert launch_permissions(BUILD, ami_id) == [{"OrganizationArn": ORG}, {"UserId": ACCOUNTS[1]}]
    assert volume_permissions(BUILD, snapshot) == {ACCOUNTS[1]}
    with recorded() as calls:
        share(ami_id, distribute.Targets(ACCOUNTS[:1]), remove=True, say=lines.append)
    assert calls.mutating() == []


@pytest.mark.parametrize(
    ("make", "state"),
    [
        (lambda: baked_ami(verified=False), "never verified"),
        (failed_ami, "bakery:verification is 'failed'"),
    ],
    ids=["never-verified", "failed"],
)
def test_share_refuses_an_ami_that_did_not_pass_but_revoke_works_on_any(
    emulator: str, make, state: str
) -> None:
    ami_id = make()["ImageId"]
    with recorded() as calls, pytest.raises(BakeryError) as e:
        share(ami_id, TARGETS, say=quiet)
    assert str(e.value) == (
        f"{ami_id} is not verified ({state}): run invoke verify --image deepseek-r1-7b first;"
        " only verified AMIs leave this account"
    )
    assert calls.mutating() == []
    assert launch_permissions(BUILD, ami_id) == []
    assert share(ami_id, TARGETS, remove=True, say=quiet) == []


def test_revoking_from_those_who_hold_nothing_says_so_naming_four_at_most(emulator: str) -> None:
    ami_id = baked_ami()["ImageId"]
    five = distribute.Targets((*ACCOUNTS, "333333333333", "444444444444"), (ORG,))
    lines: list[str] = []
    with recorded() as calls:
        assert share(ami_id, five, remove=True, say=lines.append) == []
    assert calls.mutating() == []
    assert lines[0] == (
        f"share: {ami_id} in {BUILD}: revoked nothing (111111111111, 222222222222, 333333333333"
        " and 2 more held no permission)"
    )


def test_share_names_whom_to_share_with_before_any_call(emulator: str) -> None:
    ami_id = baked_ami()["ImageId"]
    with recorded() as calls, pytest.raises(BakeryError) as e:
        share(ami_id, distribute.Targets(), say=quiet)
    assert str(e.value) == ("name someone to share with: --account, --organization-arn or --ou-arn")
    assert calls.made == []


def test_an_unknown_region_is_named_with_its_option(emulator: str) -> None:
    with pytest.raises(BakeryError) as e:
        share(baked_ami()["ImageId"], TARGETS, region="us-easst-1", say=quiet)
    assert str(e.value) == (
        "--region: unknown region 'us-easst-1': not an EC2 region (did you mean us-east-1?)"
    )


def test_share_works_in_the_region_named_not_the_default(emulator: str) -> None:
    """The AMI, its snapshot and its key live in eu-west-1; the environment says us-east-1."""
    region = "eu-west-1"
    ami = baked_ami(region)
    [snapshot] = catalog.snapshots(ami)
    key = boto3.client("kms", region).create_key()["KeyMetadata"]["Arn"]
    lines: list[str] = []
    with kms_shim(set(), {snapshot: key}):
        changes = share(
            ami["ImageId"], TARGETS, region=region, update_key_policy=True, say=lines.append
        )
    assert changes == [
        "launch permission for 2 accounts, 1 organization",
        f"{snapshot} for 2 accounts",
    ]
    assert launch_permissions(region, ami["ImageId"]) != []
    assert volume_permissions(region, snapshot) == set(ACCOUNTS)
    assert f"KMS key {key} ({region})" in " ".join(lines)


def test_a_snapshot_whose_key_is_not_reported_is_said_and_sharing_goes_on(emulator: str) -> None:
    ami = baked_ami()
    [snapshot] = catalog.snapshots(ami)
    lines: list[str] = []
    with kms_shim(set(), {snapshot: None}):
        changes = share(ami["ImageId"], TARGETS, say=lines.append)
    assert lines[0] == (
        f"warning: the API did not report which KMS key encrypts {snapshot} of"
        f" {ami['ImageId']}: its key policy was not checked"
    )
    assert changes == [
        "launch permission for 2 accounts, 1 organization",
        f"{snapshot} for 2 accounts",
    ]


def test_share_refuses_an_ami_of_someone_else(emulator: str) -> None:
    stock = "ami-12c6146b"  # a stock AMI of the emulator
    [image] = boto3.client("ec2", BUILD).describe_images(ImageIds=[stock])["Images"]
    with pytest.raises(BakeryError) as e:
        share(stock, TARGETS, say=quiet)
    assert str(e.value) == (
        f"{stock} belongs to account {image['OwnerId']}: only its owner shares it"
    )


def test_share_refuses_an_ami_not_made_by_the_tool(emulator: str) -> None:
    ec2 = boto3.client("ec2", BUILD)
    instance = ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1)
    ami_id = ec2.create_image(InstanceId=instance["Instances"][0]["InstanceId"], Name="hand-made")
    with pytest.raises(BakeryError, match="was not made by gpu-ami-bakery"):
        share(ami_id["ImageId"], TARGETS, say=quiet)


def test_aws_managed_key_is_refused_with_how_to_reencrypt(emulator: str) -> None:
    ami = baked_ami()
    ebs = boto3.client("kms", BUILD).describe_key(KeyId="alias/aws/ebs")["KeyMetadata"]["Arn"]
    [snapshot] = catalog.snapshots(ami)
    with kms_shim({ebs}, {snapshot: ebs}), recorded() as calls, pytest.raises(BakeryError) as e:
        share(ami["ImageId"], TARGETS, say=quiet)
    assert str(e.value) == (
        f"{ami['ImageId']} ({snapshot}) is encrypted with the AWS managed key {ebs}, which cannot"
        " be shared: re-encrypt it with a customer managed key (aws ec2 copy-image --region"
        f" us-east-1 --source-region us-east-1 --source-image-id {ami['ImageId']} --name"
        f" {ami['Name']}-cmk --encrypted --kms-key-id KEY_ARN), or set build.kms_key_id and bake"
        " again"
    )
    assert calls.mutating() == []


def test_aws_managed_key_of_the_source_stops_publish_before_any_copy(
    tmp_path: Path, emulator: str
) -> None:
    keys = customer_keys()
    image = load(definition(tmp_path, kms_key_ids=keys))
    ami = baked_ami()
    ebs = boto3.client("kms", BUILD).describe_key(KeyId="alias/aws/ebs")["KeyMetadata"]["Arn"]
    [snapshot] = catalog.snapshots(ami)
    with kms_shim({ebs}, {snapshot: ebs}), recorded() as calls, pytest.raises(BakeryError) as e:
        publish(image, update_key_policy=True, say=quiet)
    assert "is encrypted with the AWS managed key" in str(e.value)
    assert calls.mutating() == [], "not even the key policies"


def test_aws_managed_key_named_for_a_region_is_refused(tmp_path: Path, emulator: str) -> None:
    keys = customer_keys()
    ebs = boto3.client("kms", "eu-west-1").describe_key(KeyId="alias/aws/ebs")["KeyMetadata"]["Arn"]
    image = load(definition(tmp_path, kms_key_ids=keys | {"eu-west-1": ebs}))
    baked_ami()
    with kms_shim({ebs}, {}), pytest.raises(BakeryError) as e:
        publish(image, say=quiet)
    assert str(e.value) == (
        f"{image.path}: distribute.kms_key_ids.eu-west-1: {ebs} is an AWS managed key, which"
        " cannot be shared: name a customer managed key"
    )


def test_customer_key_of_the_ami_must_admit_the_accounts(emulator: str) -> None:
    ami = baked_ami()
    kms = boto3.client("kms", BUILD)
    key = kms.create_key()["KeyMetadata"]["Arn"]
    [snapshot] = catalog.snapshots(ami)
    lines: list[str] = []
    with kms_shim(set(), {snapshot: key}):
        with recorded() as calls, pytest.raises(BakeryError) as e:
            share(ami["ImageId"], TARGETS, say=lines.append)
        assert calls.mutating() == []
        assert str(e.value) == (
            "the key policy of 1 KMS key (us-east-1) does not let 111111111111, 222222222222,"
            f" {ORG} use it: add the statements printed above, or rerun with --update-key-policy"
        )
        assert f"KMS key {key} (us-east-1) needs these statements" in lines[0]
        assert json.loads(lines[1])[0]["Sid"] == keypolicy.SIDS["accounts"]

        with recorded() as calls:
            share(ami["ImageId"], TARGETS, update_key_policy=True, say=lines.append)
        assert [c.operation for c in calls.made if c.mutating] == [
            "PutKeyPolicy",
            "ModifyImageAttribute",
            "ModifySnapshotAttribute",
        ]
        assert keypolicy.ASG_NOTE in lines
        with recorded() as calls:
            share(ami["ImageId"], TARGETS, update_key_policy=True, say=lines.append)
        assert calls.mutating() == []
        assert lines.count(keypolicy.ASG_NOTE) == 1, "said once, when the key was shared"
    policy = json.loads(kms.get_key_policy(KeyId=key, PolicyName="default")["Policy"])
    assert keypolicy.not_admitted(policy, TARGETS) == distribute.Targets()
