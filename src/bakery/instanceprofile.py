"""The instance profile of a bake or verify instance, when it needs one: Session Manager (the
SSM agent registers the instance) and reads of exactly the definition's s3:// model files.

Named in the definition (`instance_profile`), it is checked and used as it is. Otherwise the
run makes one: a role and a profile both named bakery-<run id>, under the IAM path /bakery/,
tagged with the tool's tags, the run id and an expiry, and deleted when the run ends; `gc`
removes what escapes (an interrupted clean-up).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import botocore.exceptions

from . import TOOL, aws, catalog
from .errors import BakeryError

Say = Callable[[str], None]

PATH = "/bakery/"
POLICY_NAME = "bakery-run"
# What the SSM agent needs to register and carry sessions (AWS Systems Manager user guide,
# "Verify or add instance permissions for Session Manager"), without the rest of
# AmazonSSMManagedInstanceCore (documents, associations, inventory, patching).
SESSION_MANAGER_ACTIONS = (
    "ssm:UpdateInstanceInformation",
    "ssmmessages:CreateControlChannel",
    "ssmmessages:CreateDataChannel",
    "ssmmessages:OpenControlChannel",
    "ssmmessages:OpenDataChannel",
)
TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "ec2.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ],
}
S3_URL_RE = re.compile(r"^s3://([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])/(.+)$")


@dataclass(frozen=True)
class Profile:
    name: str
    created: bool  # made by this run (and so removed by it)


def s3_object_arn(url: str) -> str:
    match = S3_URL_RE.match(url)
    if not match:
        raise BakeryError(f"{url!r} is not an s3://BUCKET/KEY URL")
    return f"arn:aws:s3:::{match[1]}/{match[2]}"


def policy(*, session_manager: bool, s3_urls: list[str]) -> dict[str, Any] | None:
    """The run profile's permissions: only what the instance does; None when it needs none."""
    statements: list[dict[str, Any]] = []
    if session_manager:
        statements.append(
            {
                "Sid": "SessionManager",
                "Effect": "Allow",
                "Action": list(SESSION_MANAGER_ACTIONS),
                "Resource": "*",
            }
        )
    if s3_urls:
        statements.append(
            {
                "Sid": "ReadTheModelFiles",
                "Effect": "Allow",
                "Action": "s3:GetObject",
                "Resource": sorted({s3_object_arn(u) for u in s3_urls}),
            }
        )
    return {"Version": "2012-10-17", "Statement": statements} if statements else None


def _iam_tags(tags: dict[str, str]) -> list[dict[str, str]]:
    # IAM allows fewer characters in tag values than EC2: only the tool's own tags go on.
    ours = {k: v for k, v in tags.items() if k.startswith("bakery:")}
    return catalog.tag_list(ours)


def _say_denied(e: botocore.exceptions.ClientError, name: str) -> BakeryError:
    return BakeryError(
        f"cannot make the run's instance profile {name}: {aws.describe(e)} (name one that exists"
        " instead: instance_profile in the definition's [build] or [verify])"
    )


def create(
    iam: Any, run_id: str, tags: dict[str, str], document: dict[str, Any], say: Say
) -> Profile:
    """Role, inline policy and profile for one run. What is made is removed again if a later
    step fails here; the caller removes the profile when the run ends."""
    name = f"bakery-{run_id}"[:64]
    made: list[str] = []
    try:
        iam.create_role(
            RoleName=name,
            Path=PATH,
            AssumeRolePolicyDocument=json.dumps(TRUST),
            Description=f"{TOOL} run {run_id}: the instance's own permissions; deleted after",
            MaxSessionDuration=3600,
            Tags=_iam_tags(tags),
        )
        made.append("role")
        iam.put_role_policy(
            RoleName=name, PolicyName=POLICY_NAME, PolicyDocument=json.dumps(document)
        )
        iam.create_instance_profile(InstanceProfileName=name, Path=PATH, Tags=_iam_tags(tags))
        made.append("profile")
        iam.add_role_to_instance_profile(InstanceProfileName=name, RoleName=name)
        iam.get_waiter("instance_profile_exists").wait(
            InstanceProfileName=name, WaiterConfig={"Delay": 2, "MaxAttempts": 30}
        )
    except botocore.exceptions.ClientError as e:
        if made:
            delete(iam, name, lambda line: say(f"clean-up: {line}"))
        raise _say_denied(e, name) from None
    allowed = ", ".join(s["Sid"] for s in document["Statement"])
    say(f"instance profile {name} made for this run ({allowed}; deleted after)")
    return Profile(name, created=True)


def check_named(iam: Any, name: str, where: str) -> Profile:
    """A named profile exists and has a role (else EC2 refuses it at launch, less clearly)."""
    try:
        profile = iam.get_instance_profile(InstanceProfileName=name)["InstanceProfile"]
    except botocore.exceptions.ClientError as e:
        if aws.error_code(e) == "NoSuchEntity":
            raise BakeryError(f"{where}: instance profile {name!r} does not exist") from None
        raise BakeryError(
            f"{where}: cannot look up instance profile {name!r}: {aws.describe(e)}"
        ) from None
    if not profile.get("Roles"):
        raise BakeryError(f"{where}: instance profile {name!r} has no role")
    return Profile(name, created=False)


def delete(iam: Any, name: str, say: Say) -> tuple[list[str], list[str]]:
    """Remove a run's profile and role (whatever of them exists): (removed, left)."""
    removed: list[str] = []
    left: list[str] = []

    def attempt(what: str, call: Callable[[], Any]) -> None:
        try:
            call()
            removed.append(what)
        except botocore.exceptions.ClientError as e:
            if aws.error_code(e) != "NoSuchEntity":
                say(f"could not remove {what}: {aws.describe(e)} (invoke gc will retry)")
                left.append(what)

    attempt(f"instance profile {name}", lambda: _remove_profile(iam, name))
    attempt(f"role {name}", lambda: _remove_role(iam, name))
    return removed, left


def _remove_profile(iam: Any, name: str) -> None:
    profile = iam.get_instance_profile(InstanceProfileName=name)["InstanceProfile"]
    for role in profile.get("Roles", []):
        iam.remove_role_from_instance_profile(InstanceProfileName=name, RoleName=role["RoleName"])
    iam.delete_instance_profile(InstanceProfileName=name)


def _remove_role(iam: Any, name: str) -> None:
    for policy_name in iam.list_role_policies(RoleName=name)["PolicyNames"]:
        iam.delete_role_policy(RoleName=name, PolicyName=policy_name)
    iam.delete_role(RoleName=name)


def wait_usable(call: Callable[[], Any], patience_s: float = 60) -> Any:
    """Run a launch call, retrying while EC2 does not see a new profile yet (IAM is eventually
    consistent: a profile is usable a few seconds after it exists)."""
    started = time.monotonic()
    while True:
        try:
            return call()
        except botocore.exceptions.ClientError as e:
            fresh = "iaminstanceprofile" in aws.describe(e).lower().replace(" ", "")
            if not fresh or aws.error_code(e) != "InvalidParameterValue":
                raise
            if time.monotonic() - started > patience_s:
                raise
            time.sleep(3)
