"""What the publish, share, prune and gc tests build on: an image definition that distributes,
AMIs made the way a bake makes them, KMS keys, a record of every API call, and the shims for
what the emulator (moto 5.2) lacks, each labelled with the gap it stands in for."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from cli import REPO

from bakery import TOOL, aws, catalog, config

BUILD = "us-east-1"
REGIONS = (BUILD, "eu-west-1", "ap-southeast-2")
ACCOUNTS = ("111111111111", "222222222222")
ORG = "arn:aws:organizations::123456789012:organization/o-abcdefghij"
OU = "arn:aws:organizations::123456789012:ou/o-abcdefghij/ou-ab12-cdefghij"
PARAMETER = "/bakery/deepseek-r1-7b/ami-id"
IMAGE = "deepseek-r1-7b"
READ_ONLY = ("Describe", "Get", "List")
STOCK_AMI = "ami-12c6146b"  # one of the emulator's stock AMIs, in every region (listing them all takes seconds)


def definition(
    tmp_path: Path,
    *,
    regions: tuple[str, ...] = REGIONS[1:],
    accounts: tuple[str, ...] = ACCOUNTS,
    organization_arns: tuple[str, ...] = (ORG,),
    ou_arns: tuple[str, ...] = (OU,),
    kms_key_ids: dict[str, str] | None = None,
    keep: int = 2,
    extra: str = "",
) -> Path:
    """images/deepseek-r1-7b.toml with its [distribute] table replaced, as tmp/deepseek-r1-7b.toml."""
    text = (REPO / "images" / f"{IMAGE}.toml").read_text()
    table = "\n".join(
        [
            "[distribute]",
            f"regions = {list(regions)!r}".replace("'", '"'),
            f"accounts = {list(accounts)!r}".replace("'", '"'),
            f"organization_arns = {list(organization_arns)!r}".replace("'", '"'),
            f"ou_arns = {list(ou_arns)!r}".replace("'", '"'),
            f'ssm_parameter = "{PARAMETER}"',
            f"keep = {keep}",
            extra,
            "[distribute.kms_key_ids]",
            *(f'"{r}" = "{k}"' for r, k in (kms_key_ids or {}).items()),
            "",
        ]
    )
    text = re.sub(r"\[distribute\].*?(?=\n\[tags\])", table, text, flags=re.S)
    path = tmp_path / f"{IMAGE}.toml"
    path.write_text(text)
    return path


def load(path: Path) -> config.ImageDef:
    return config.load(path)


def customer_keys(regions: tuple[str, ...] = REGIONS[1:]) -> dict[str, str]:
    """A customer managed key in each region (its default policy admits this account only)."""
    return {r: boto3.client("kms", r).create_key()["KeyMetadata"]["Arn"] for r in regions}


def baked_ami(
    region: str = BUILD, *, verified: bool = True, provisioned: bool = True, run: str = ""
) -> dict[str, Any]:
    """An AMI as `invoke bake` leaves one (tags on the AMI and its snapshots), and, with
    verified=True, as `invoke verify` marks one. The emulator cannot run either for real
    (no machine behind it, so no provisioning and no image tests), hence this stand-in."""
    ec2 = boto3.client("ec2", region)
    stock = STOCK_AMI
    instance = ec2.run_instances(ImageId=stock, MinCount=1, MaxCount=1, InstanceType="c6i.xlarge")
    instance_id = instance["Instances"][0]["InstanceId"]
    run = run or f"20250101-000000-{len(ec2.describe_images(Owners=['self'])['Images']):06x}"
    ami_id = ec2.create_image(InstanceId=instance_id, Name=f"{IMAGE}-{run}")["ImageId"]
    ec2.terminate_instances(InstanceIds=[instance_id])
    ami = ec2.describe_images(ImageIds=[ami_id])["Images"][0]
    tags = catalog.tool_tags(
        IMAGE,
        **{
            catalog.RUN_ID: run,
            catalog.FINGERPRINT: f"{run:0>64}"[-64:],
            catalog.SOURCE_AMI: stock,
            catalog.MODELS: "deepseek-r1:7b",
            catalog.PROVISIONED: "true" if provisioned else "false",
            "Project": "private-llm",
        },
    )
    if verified:
        tags[catalog.VERIFICATION] = catalog.PASSED
    catalog.tag(ec2, ami, tags)
    return ec2.describe_images(ImageIds=[ami_id])["Images"][0]


def failed_ami(region: str = BUILD, *, run: str = "") -> dict[str, Any]:
    """A baked AMI that `invoke verify` marked failed, as it marks one."""
    ami = baked_ami(region, verified=False, run=run)
    ec2 = boto3.client("ec2", region)
    catalog.mark_verification(ec2, ami, False, {"bakery:verify-failure": "test_gpu_name: no GPU"})
    return ec2.describe_images(ImageIds=[ami["ImageId"]])["Images"][0]


def amis(region: str, **filters: str) -> list[dict[str, Any]]:
    ec2 = boto3.client("ec2", region)
    found = ec2.describe_images(
        Owners=["self"],
        Filters=[{"Name": f"tag:{catalog.MANAGED_BY}", "Values": [TOOL]}]
        + [{"Name": f"tag:{k}", "Values": [v]} for k, v in filters.items()],
    )["Images"]
    return found


def all_amis(region: str) -> list[dict[str, Any]]:
    return boto3.client("ec2", region).describe_images(Owners=["self"])["Images"]


def launch_permissions(region: str, ami_id: str) -> list[dict[str, str]]:
    found = boto3.client("ec2", region).describe_image_attribute(
        ImageId=ami_id, Attribute="launchPermission"
    )["LaunchPermissions"]
    return sorted(found, key=lambda p: sorted(p.items()))


def volume_permissions(region: str, snapshot_id: str) -> set[str]:
    found = boto3.client("ec2", region).describe_snapshot_attribute(
        SnapshotId=snapshot_id, Attribute="createVolumePermission"
    )["CreateVolumePermissions"]
    return {p["UserId"] for p in found}


def parameter(region: str, name: str = PARAMETER) -> dict[str, Any] | None:
    ssm = boto3.client("ssm", region)
    try:
        return ssm.get_parameter(Name=name)["Parameter"]
    except ssm.exceptions.ParameterNotFound:
        return None


@dataclass
class Call:
    region: str
    service: str
    operation: str
    params: dict[str, Any]

    @property
    def mutating(self) -> bool:
        return not self.operation.startswith(READ_ONLY)


@dataclass
class Calls:
    """Every API call the code under test makes, through the clients aws.client() makes."""

    made: list[Call] = field(default_factory=list)

    def mutating(self) -> list[str]:
        return [f"{c.region} {c.service}.{c.operation}" for c in self.made if c.mutating]

    def of(self, operation: str) -> list[Call]:
        return [c for c in self.made if c.operation == operation]

    def clear(self) -> None:
        self.made.clear()


@contextmanager
def recorded() -> Iterator[Calls]:
    calls = Calls()

    def record(model: Any, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        region = context["client_region"]
        calls.made.append(Call(region, model.service_model.service_name, model.name, dict(params)))

    remove = aws.on_event("before-parameter-build", record)
    try:
        yield calls
    finally:
        remove()


@contextmanager
def deprecation_shim(
    deprecated: dict[str, dt.datetime] | None = None,
    created: dict[str, str] | None = None,
) -> Iterator[dict[str, dt.datetime]]:
    """SHIM for a gap of the emulator: moto 5.2 has no AMI deprecation (enable_image_deprecation
    answers HTTP 500, NotImplemented; describe_images never reports DeprecationTime).

    On the clients aws.client() makes, and only for these two operations: EnableImageDeprecation
    is answered here (recorded, no request reaches the emulator), and DescribeImages responses
    get the DeprecationTime that was recorded (or given in `deprecated`). `created` dates AMIs
    (the emulator stamps CreationDate to the second, too coarse to order AMIs made in one test).
    Everything else goes to the emulator. Yields the recorded deprecations."""
    times = dict(deprecated or {})

    def enable(params: dict[str, Any], **_: Any) -> tuple[Any, dict[str, Any]]:
        body = params["body"]  # the serialized request, as it would go to EC2
        when = dt.datetime.fromisoformat(body["DeprecateAt"].replace("Z", "+00:00"))
        times[body["ImageId"]] = when
        return _Http(), {"Return": True, "ResponseMetadata": {"HTTPStatusCode": 200}}

    def describe(parsed: dict[str, Any], **_: Any) -> None:
        for image in parsed.get("Images", []):
            if image["ImageId"] in times:
                image["DeprecationTime"] = times[image["ImageId"]].strftime(
                    "%Y-%m-%dT%H:%M:%S.000Z"
                )
            if created and image["ImageId"] in created:
                image["CreationDate"] = created[image["ImageId"]]

    removers = [
        aws.on_event("before-call.ec2.EnableImageDeprecation", enable),
        aws.on_event("after-call.ec2.DescribeImages", describe),
    ]
    try:
        yield times
    finally:
        for remove in removers:
            remove()


class _Http:
    status_code = 200
    headers: dict[str, str] = {}  # noqa: RUF012
    content = b""


@contextmanager
def kms_shim(aws_managed: set[str], snapshot_keys: dict[str, str | None]) -> Iterator[None]:
    """SHIM for gaps of the emulator: moto 5.2 describes alias/aws/ebs as a CUSTOMER key (it has
    no AWS managed keys), create_image makes unencrypted snapshots, and describe_snapshots never
    reports a snapshot's KmsKeyId.

    DescribeKey responses say KeyManager "AWS" for the keys in `aws_managed`; DescribeSnapshots
    responses say the snapshots in `snapshot_keys` (snapshot id -> key ARN) are encrypted with
    that key, as AWS says of a baked AMI's snapshots (a key of None: encrypted, key not
    reported). Nothing else is touched."""

    def key(parsed: dict[str, Any], **_: Any) -> None:
        meta = parsed.get("KeyMetadata", {})
        if meta.get("Arn") in aws_managed:
            meta["KeyManager"] = "AWS"

    def snapshots(parsed: dict[str, Any], **_: Any) -> None:
        for snap in parsed.get("Snapshots", []):
            if snap["SnapshotId"] in snapshot_keys:
                snap["Encrypted"] = True
                if key_arn := snapshot_keys[snap["SnapshotId"]]:
                    snap["KmsKeyId"] = key_arn

    removers = [
        aws.on_event("after-call.kms.DescribeKey", key),
        aws.on_event("after-call.ec2.DescribeSnapshots", snapshots),
    ]
    try:
        yield
    finally:
        for remove in removers:
            remove()
