"""AMIs are found, tagged and described through their tags: the catalog has no database.

Any machine with credentials can answer "which is the newest verified deepseek-r1-7b here?".
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import botocore.exceptions

from . import TOOL
from .aws import describe, error_code
from .errors import BakeryError

MANAGED_BY = "bakery:managed-by"
IMAGE = "bakery:image"
RUN_ID = "bakery:run-id"  # every resource one bake/verify run creates; what its clean-up sweeps
FINGERPRINT = "bakery:fingerprint"  # written last: an AMI without it is an unfinished bake
SOURCE_AMI = "bakery:source-ami"
BASE = "bakery:base"
MODELS = "bakery:models"
MODEL = "bakery:model/"  # + model name -> digest
VERSIONS = "bakery:versions"  # "ollama=0.13.1 nvidia=595.58.03": what the bake found
UI = "bakery:ui"
UI_IMAGE_ID = "bakery:ui-image-id"  # docker image ID of bakery/ui:baked, as baked
PROVISIONED = "bakery:provisioned"
TOOL_VERSION = "bakery:tool-version"
GIT_COMMIT = "bakery:git-commit"
BUILT_AT = "bakery:built-at"
EXPIRES_AT = "bakery:expires-at"  # on temporary resources: when gc may remove them
COPIED_FROM = "bakery:copied-from"  # on a regional copy: the source AMI id
COPIED_FROM_REGION = "bakery:copied-from-region"

VERIFICATION = "bakery:verification"  # "passed" | "failed"; absent: not verified
PASSED, FAILED = "passed", "failed"
VERIFY_TAGS = (
    "bakery:verified-at",
    "bakery:verify-gpu",
    "bakery:verify-timings",
    "bakery:verify-report-sha256",
    "bakery:verify-failure",
    "bakery:verify-cold-load",  # boot -> models loaded from a fresh volume, and its rate
)


def versions_of(tags: dict[str, str]) -> dict[str, str]:
    """The bakery:versions tag as {component: version}."""
    return dict(p.split("=", 1) for p in tags.get(VERSIONS, "").split() if "=" in p)


def tool_tags(image: str | None = None, **extra: str) -> dict[str, str]:
    tags = {MANAGED_BY: TOOL}
    if image:
        tags[IMAGE] = image
    return tags | extra


def tag_list(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in sorted(tags.items())]


def tag_spec(kind: str, tags: dict[str, str]) -> dict[str, Any]:
    """Tags for a resource a create call makes (its TagSpecifications entry)."""
    return {"ResourceType": kind, "Tags": tag_list(tags)}


def tags_of(resource: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource.get("Tags", [])}


def images(ec2: Any, image: str | None = None, **tags: str) -> list[dict[str, Any]]:
    """Our AMIs (owned by this account, tagged by the tool), newest first."""
    filters = [{"Name": f"tag:{MANAGED_BY}", "Values": [TOOL]}]
    if image:
        filters.append({"Name": f"tag:{IMAGE}", "Values": [image]})
    filters += [{"Name": f"tag:{k}", "Values": [v]} for k, v in tags.items()]
    found: list[dict[str, Any]] = []
    for page in ec2.get_paginator("describe_images").paginate(Owners=["self"], Filters=filters):
        found += page["Images"]
    return sorted(found, key=lambda i: (i.get("CreationDate", ""), i["ImageId"]), reverse=True)


def with_fingerprint(ec2: Any, image: str, fingerprint: str) -> dict[str, Any] | None:
    for ami in images(ec2, image, **{FINGERPRINT: fingerprint}):
        if ami.get("State") in ("available", "pending"):
            return ami
    return None


def newest(
    ec2: Any, image: str, *, verification: str | None = None, unverified: bool = False
) -> dict[str, Any] | None:
    """The newest finished AMI of an image, optionally with a given verification state."""
    for ami in images(ec2, image):
        tags = tags_of(ami)
        if FINGERPRINT not in tags or ami.get("State") != "available":
            continue
        if verification and tags.get(VERIFICATION) != verification:
            continue
        if unverified and VERIFICATION in tags:
            continue
        return ami
    return None


def get(ec2: Any, ami_id: str) -> dict[str, Any]:
    try:
        found = ec2.describe_images(ImageIds=[ami_id])["Images"]
    except botocore.exceptions.ClientError as e:
        if error_code(e).startswith("InvalidAMIID"):
            found = []
        else:
            raise BakeryError(f"cannot describe {ami_id}: {describe(e)}") from None
    if not found:
        raise BakeryError(
            f"AMI {ami_id} does not exist in {ec2.meta.region_name} (or is not visible to this account)"
        )
    return found[0]


def snapshots(ami: dict[str, Any]) -> list[str]:
    return [
        m["Ebs"]["SnapshotId"]
        for m in ami.get("BlockDeviceMappings", [])
        if m.get("Ebs", {}).get("SnapshotId")
    ]


def tag(ec2: Any, ami: dict[str, Any], tags: dict[str, str]) -> None:
    """Tag an AMI and its snapshots alike (snapshots outlive AMIs in billing surprises)."""
    for key, value in tags.items():
        if len(value) > 256:
            raise BakeryError(f"tag {key} would be {len(value)} characters long (AWS allows 256)")
    ec2.create_tags(Resources=[ami["ImageId"], *snapshots(ami)], Tags=tag_list(tags))


def untag(ec2: Any, ami: dict[str, Any], keys: list[str]) -> None:
    if keys:
        ec2.delete_tags(
            Resources=[ami["ImageId"], *snapshots(ami)], Tags=[{"Key": k} for k in keys]
        )


def mark_verification(ec2: Any, ami: dict[str, Any], passed: bool, details: dict[str, str]) -> None:
    """Passed or failed, never both: the other outcome's leftovers are removed first."""
    stale = [k for k in VERIFY_TAGS if k not in details and k in tags_of(ami)]
    untag(ec2, ami, stale)
    tag(ec2, ami, {VERIFICATION: PASSED if passed else FAILED, **details})


def parse_time(value: Any) -> dt.datetime | None:
    """An AWS timestamp or one of our ISO time tags as an aware datetime; None if absent or bad."""
    if not value:
        return None
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    try:
        parsed = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def show_time(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%MZ")
