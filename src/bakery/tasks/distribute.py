"""publish, share, prune and gc: the AMI's life after verification."""

from __future__ import annotations

import contextlib

from .. import distribute, local
from .. import gc as collect
from .. import prune as pruning
from .. import publish as publishing
from .. import share as sharing
from ..errors import BakeryError
from ._common import IMAGE_HELP, LOCAL_HELP, bakery_task, image_arg


def _where(use_emulator: bool) -> contextlib.AbstractContextManager[object]:
    return local.emulator() if use_emulator else contextlib.nullcontext()


@bakery_task(
    help={
        "image": IMAGE_HELP,
        "ami": "publish this AMI of the image instead of its newest verified one (it must be verified)",
        "wait-minutes": f"how long to wait for each region's copy to become available (default {publishing.DEFAULT_WAIT_MINUTES}); a rerun resumes the wait",
        "update-key-policy": "add the statements the target accounts need to each customer managed KMS key's policy, instead of printing them and stopping",
        "local": LOCAL_HELP,
    }
)
def publish(
    c,
    image=None,
    ami=None,
    wait_minutes=None,
    update_key_policy=False,
    local=False,
):
    """Copy the newest verified AMI to the definition's regions, share it, write the SSM parameter."""
    definition = image_arg(image)
    with _where(local):
        publishing.publish(
            definition,
            ami_id=ami,
            wait_minutes=publishing.DEFAULT_WAIT_MINUTES
            if wait_minutes is None
            else _int("--wait-minutes", wait_minutes),
            update_key_policy=update_key_policy,
        )


@bakery_task(
    iterable=["account", "organization_arn", "ou_arn"],
    help={
        "ami": "the AMI to share (it must be verified, unless --revoke)",
        "account": "a 12-digit account ID to share with (repeat for more)",
        "organization-arn": "an organization ARN to share with (repeat for more)",
        "ou-arn": "an organizational unit ARN to share with (repeat for more)",
        "region": "the AMI's region (default: the configured region)",
        "revoke": "take the permissions back instead (the KMS key policies are left as they are)",
        "update-key-policy": "add the statements the accounts need to the customer managed KMS key's policy, instead of printing them and stopping",
        "local": LOCAL_HELP,
    },
)
def share(
    c,
    ami=None,
    account=None,
    organization_arn=None,
    ou_arn=None,
    region=None,
    revoke=False,
    update_key_policy=False,
    local=False,
):
    """Share one AMI (and its snapshots) with accounts, organizations or OUs; --revoke undoes."""
    if not ami:
        raise BakeryError("--ami is required (the AMI to share)")
    targets = distribute.targets(account or (), organization_arn or (), ou_arn or ())
    with _where(local):
        sharing.share(
            ami, targets, region=region, remove=revoke, update_key_policy=update_key_policy
        )


@bakery_task(
    help={
        "image": IMAGE_HELP,
        "keep": "how many of the newest AMIs to keep in each region (default: distribute.keep)",
        "apply": "act on the plan (without it, only print the plan)",
        "local": LOCAL_HELP,
    }
)
def prune(c, image=None, keep=None, apply=False, local=False):
    """Plan (or --apply) deprecating older AMIs and deregistering those past their deprecation."""
    definition = image_arg(image)
    with _where(local):
        pruning.prune(definition, keep=None if keep is None else _int("--keep", keep), act=apply)


@bakery_task(
    iterable=["region"],
    help={
        "older-than": f"how old a leftover must be, e.g. 30m, 6h, 2d (default {collect.DEFAULT_OLDER_THAN}); a bakery:expires-at tag overrides it",
        "region": "a region to look in (repeat for more; default: the configured region and every definition's distribute.regions)",
        "apply": "remove what the plan lists (without it, only print the plan)",
        "local": LOCAL_HELP,
    },
)
def gc(c, older_than=collect.DEFAULT_OLDER_THAN, region=None, apply=False, local=False):
    """Plan (or --apply) removing what failed or interrupted bake and verify runs left behind."""
    collect.parse_age(older_than)
    with _where(local):
        collect.gc(regions=region or None, older_than=older_than, act=apply)


def _int(option: str, value: object) -> int:
    try:
        return int(str(value))
    except ValueError:
        raise BakeryError(f"{option} {value!r}: not a whole number") from None
