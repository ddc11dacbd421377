"""KMS: an encrypted AMI can be shared only when its key is a customer managed key whose policy
lets the target accounts use it (kms:DescribeKey, kms:CreateGrant, kms:Decrypt, kms:ReEncrypt*).

Keys are read first, in every region, before anything changes. A key that falls short is
refused with the exact statement to add, or the statement is added (--update-key-policy).

What counts as admitting a target, kept simple and on the safe side: an Allow statement
(Action, Principal; no NotAction or NotPrincipal) whose actions cover the four, and whose
principal is the account (its root ARN or its ID) or "*" with a kms:CallerAccount condition
naming it; an organization through "*" with an aws:PrincipalOrgID condition; an OU through
"*" with an aws:PrincipalOrgPaths pattern that covers it (or its organization's statement).
A statement with any other condition does not count; Deny statements are not evaluated.
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass, field
from typing import Any

import botocore.exceptions

from . import aws
from .distribute import Say, Targets
from .errors import BakeryError

ACTIONS = ["kms:CreateGrant", "kms:Decrypt", "kms:DescribeKey", "kms:ReEncrypt*"]
_NEEDED = (
    "kms:creategrant",
    "kms:decrypt",
    "kms:describekey",
    "kms:reencryptfrom",
    "kms:reencryptto",
)
SIDS = {
    "accounts": "GpuAmiBakeryShareWithAccounts",
    "organizations": "GpuAmiBakeryShareWithOrganizations",
    "ous": "GpuAmiBakeryShareWithOrganizationalUnits",
}
ASG_NOTE = (
    "note: an Auto Scaling group in a target account launches through its service-linked role,"
    " which needs a grant on the key of its region; in that account run: aws kms create-grant"
    " --region REGION --key-id KEY_ARN --grantee-principal arn:aws:iam::ACCOUNT:role/aws-service-role/"
    "autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling --operations Decrypt"
    " GenerateDataKeyWithoutPlaintext ReEncryptFrom ReEncryptTo CreateGrant DescribeKey"
)


@dataclass
class Key:
    """One key as read: who uses it (for messages), what it is, who its policy leaves out."""

    region: str
    key_id: str
    used_by: str  # "distribute.kms_key_ids.eu-west-1", or "ami-... (snap-...)"
    ami: dict[str, Any] | None = (
        None  # the AMI whose snapshot the key encrypts, if that is how it was found
    )
    arn: str = ""
    aws_managed: bool = False
    state: str = "Enabled"
    policy: dict[str, Any] = field(default_factory=dict)
    missing: Targets = field(default_factory=Targets)

    @property
    def partition(self) -> str:
        return self.arn.split(":")[1] if self.arn.count(":") > 2 else "aws"


def inspect(
    kms: Any, key_id: str, targets: Targets, used_by: str, ami: dict[str, Any] | None = None
) -> Key:
    """Read a key (describe_key, then get_key_policy when there is someone to share with)."""
    region = kms.meta.region_name
    key = Key(region, key_id, used_by, ami)
    if key_id.startswith("arn:") and key_id.split(":")[3] != region:
        raise BakeryError(
            f"{used_by}: {key_id} is a key of {key_id.split(':')[3]}, not of {region}"
            " (KMS keys are regional: name a key of that region)"
        )
    try:
        meta = kms.describe_key(KeyId=key_id)["KeyMetadata"]
    except botocore.exceptions.ClientError as e:
        if aws.error_code(e) == "NotFoundException":
            raise BakeryError(f"{used_by}: KMS key {key_id} does not exist in {region}") from None
        raise BakeryError(f"{used_by}: cannot read KMS key {key_id}: {aws.describe(e)}") from None
    key.arn, key.state = meta["Arn"], meta.get("KeyState", "Enabled")
    key.aws_managed = meta.get("KeyManager") == "AWS"
    if key.aws_managed or not targets:
        key.missing = targets
        return key
    key.policy = json.loads(kms.get_key_policy(KeyId=key.arn, PolicyName="default")["Policy"])
    key.missing = not_admitted(key.policy, targets, key.partition)
    return key


def refusals(keys: list[Key]) -> list[str]:
    """What no key policy change can fix: AWS managed keys, keys that are not enabled."""
    found = []
    for key in keys:
        if key.aws_managed and key.missing and key.ami is not None:
            ami_id, region, name = key.ami["ImageId"], key.region, key.ami.get("Name", "NAME")
            found.append(
                f"{key.used_by} is encrypted with the AWS managed key {key.arn}, which cannot be"
                f" shared: re-encrypt it with a customer managed key (aws ec2 copy-image --region"
                f" {region} --source-region {region} --source-image-id {ami_id} --name"
                f" {name}-cmk --encrypted --kms-key-id KEY_ARN), or set build.kms_key_id and bake"
                " again"
            )
        elif key.aws_managed and key.missing:
            found.append(
                f"{key.used_by}: {key.arn} is an AWS managed key, which cannot be shared: name a"
                " customer managed key"
            )
        elif key.state != "Enabled":
            found.append(f"{key.used_by}: KMS key {key.arn} is {key.state}, not Enabled")
    return found


def settle(keys: list[Key], *, update: bool, say: Say) -> None:
    """Refuse, or print and refuse, or add the missing statements; before anything changes."""
    refused = refusals(keys)
    if refused:
        more = f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""
        raise BakeryError(refused[0] + more)
    short = _unique([k for k in keys if k.missing])
    if not short:
        return
    if not update:
        for key in short:
            say(
                f"KMS key {key.arn} ({key.region}) needs these statements in its key policy"
                " (add them, or replace the statement with the same Sid):"
            )
            say(json.dumps(_ours(key), indent=2))
        who = Targets(
            *(
                tuple(dict.fromkeys(x for k in short for x in getattr(k.missing, f)))
                for f in ("accounts", "organization_arns", "ou_arns")
            )
        )
        one = len(short) == 1
        raise BakeryError(
            f"the key polic{'y' if one else 'ies'} of {len(short)} KMS key{'' if one else 's'}"
            f" ({', '.join(k.region for k in short)}) {'does' if one else 'do'} not let"
            f" {who.describe(limit=4)} use {'it' if one else 'them'}: add the statements printed"
            " above, or rerun with --update-key-policy"
        )


def update(kms_by_region: dict[str, Any], keys: list[Key], say: Say) -> None:
    """put_key_policy with the missing statements merged in, once per key."""
    for key in _unique([k for k in keys if k.missing]):
        policy = merged(key.policy, statements(key.missing, key.partition))
        kms_by_region[key.region].put_key_policy(
            KeyId=key.arn, PolicyName="default", Policy=json.dumps(policy, indent=2)
        )
        say(
            f"KMS key {key.arn} ({key.region}): its policy now lets {key.missing.describe()} use it"
        )


def _ours(key: Key) -> list[dict[str, Any]]:
    """Our statements of the key's policy as they must read once the missing are in."""
    new = statements(key.missing, key.partition)
    sids = {s["Sid"] for s in new}
    return [s for s in merged(key.policy, new)["Statement"] if s.get("Sid") in sids]


def _unique(keys: list[Key]) -> list[Key]:
    return list({(k.region, k.arn): k for k in keys}.values())


def statements(missing: Targets, partition: str = "aws") -> list[dict[str, Any]]:
    """The statements that admit what is missing, as the policy should carry them."""
    base = {"Effect": "Allow", "Action": list(ACTIONS), "Resource": "*"}
    found = []
    if missing.accounts:
        roots = [f"arn:{partition}:iam::{a}:root" for a in missing.accounts]
        found.append({"Sid": SIDS["accounts"], **base, "Principal": {"AWS": roots}})
    if missing.organization_arns:
        orgs = [arn.rsplit("/", 1)[1] for arn in missing.organization_arns]
        condition = {"StringEquals": {"aws:PrincipalOrgID": orgs}}
        found.append(
            {
                "Sid": SIDS["organizations"],
                **base,
                "Principal": {"AWS": "*"},
                "Condition": condition,
            }
        )
    if missing.ou_arns:
        paths = [_ou_pattern(arn) for arn in missing.ou_arns]
        condition = {"ForAnyValue:StringLike": {"aws:PrincipalOrgPaths": paths}}
        found.append(
            {"Sid": SIDS["ous"], **base, "Principal": {"AWS": "*"}, "Condition": condition}
        )
    return found


def merged(policy: dict[str, Any], new: list[dict[str, Any]]) -> dict[str, Any]:
    """The policy with the new statements in: a statement of ours (same Sid) is widened, not
    repeated; everything else is left as it was."""
    result = json.loads(json.dumps(policy)) or {"Version": "2012-10-17"}
    body = result.setdefault("Statement", [])
    if isinstance(body, dict):
        body = result["Statement"] = [body]
    for statement in new:
        mine = next((s for s in body if s.get("Sid") == statement["Sid"]), None)
        if mine is None:
            body.append(statement)
            continue
        mine["Action"] = sorted({*_list(mine.get("Action")), *statement["Action"]})
        if "Condition" in statement:
            for op, pairs in statement["Condition"].items():
                for k, values in pairs.items():
                    old = _list(mine.setdefault("Condition", {}).setdefault(op, {}).get(k))
                    mine["Condition"][op][k] = sorted({*old, *values})
        else:
            old = _list((mine.get("Principal") or {}).get("AWS"))
            mine["Principal"] = {"AWS": sorted({*old, *statement["Principal"]["AWS"]})}
    return result


def not_admitted(policy: dict[str, Any], targets: Targets, partition: str = "aws") -> Targets:
    """The targets the policy does not let use the key for all four actions."""
    covered: dict[str, set[str]] = {}
    body = policy.get("Statement", [])
    for s in [body] if isinstance(body, dict) else body:
        if s.get("Effect") != "Allow" or "Action" not in s or "Principal" not in s:
            continue
        patterns = [p.lower() for p in _list(s["Action"])]
        actions = {n for n in _NEEDED if any(fnmatch.fnmatchcase(n, p) for p in patterns)}
        for who in _admits(s, targets, partition) if actions else []:
            covered.setdefault(who, set()).update(actions)

    def admitted(*names: str) -> bool:
        return any(covered.get(n, set()) >= set(_NEEDED) for n in names)

    return Targets(
        tuple(a for a in targets.accounts if not admitted(a)),
        tuple(o for o in targets.organization_arns if not admitted(o)),
        tuple(u for u in targets.ou_arns if not admitted(u, "org:" + _org_of(u))),
    )


def _admits(statement: dict[str, Any], targets: Targets, partition: str) -> list[str]:
    """Which targets (and "org:o-..." for organizations) one Allow statement names."""
    principal = statement["Principal"]
    names = (
        ["*"]
        if principal == "*"
        else _list(principal.get("AWS") if isinstance(principal, dict) else None)
    )
    anyone = "*" in names
    conditions = {
        op.lower(): {k.lower(): _list(v) for k, v in pairs.items()}
        for op, pairs in (statement.get("Condition") or {}).items()
    }
    if not conditions:
        if anyone:
            return [*targets.accounts, *targets.organization_arns, *targets.ou_arns]
        return [
            a for a in targets.accounts if a in names or f"arn:{partition}:iam::{a}:root" in names
        ]
    if len(conditions) != 1 or not anyone:
        return []
    ((op, pairs),) = conditions.items()
    if len(pairs) != 1:
        return []
    ((key, values),) = pairs.items()
    if op == "stringequals" and key == "kms:calleraccount":
        return [a for a in targets.accounts if a in values]
    if op == "stringequals" and key == "aws:principalorgid":
        orgs = [arn for arn in targets.organization_arns if arn.rsplit("/", 1)[1] in values]
        return [*orgs, *(f"org:{o}" for o in values)]
    if op == "foranyvalue:stringlike" and key == "aws:principalorgpaths":
        return [
            u for u in targets.ou_arns if any(fnmatch.fnmatchcase(_ou_path(u), p) for p in values)
        ]
    return []


def _ou_pattern(ou_arn: str) -> str:
    org, ou = ou_arn.rsplit("/", 2)[1:]
    return f"{org}/*/{ou}/*"


def _ou_path(ou_arn: str) -> str:
    """A path of the OU as aws:PrincipalOrgPaths spells one (the root ID is not in the ARN)."""
    org, ou = ou_arn.rsplit("/", 2)[1:]
    return f"{org}/r-root/{ou}/"


def _org_of(ou_arn: str) -> str:
    return ou_arn.rsplit("/", 2)[1]


def _list(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)
