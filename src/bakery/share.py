"""Launch permissions on an AMI and createVolumePermission on its snapshots: read what is
there, then add (or remove) only the difference, in one call per image and per snapshot.

Snapshots are shared with accounts only (EBS has no organization sharing); launching needs
only the AMI, copying it or making volumes from it in the target account needs the snapshots.
"""

from __future__ import annotations

from typing import Any

from . import aws, catalog, distribute, keypolicy
from .distribute import Say, Targets
from .errors import BakeryError


def launch_permissions(ec2: Any, ami_id: str) -> tuple[Targets, bool]:
    """Who may launch the AMI now, and whether it is public."""
    found = ec2.describe_image_attribute(ImageId=ami_id, Attribute="launchPermission")
    perms = found.get("LaunchPermissions", [])
    return (
        Targets(
            tuple(p["UserId"] for p in perms if "UserId" in p),
            tuple(p["OrganizationArn"] for p in perms if "OrganizationArn" in p),
            tuple(p["OrganizationalUnitArn"] for p in perms if "OrganizationalUnitArn" in p),
        ),
        any(p.get("Group") == "all" for p in perms),
    )


def volume_permissions(ec2: Any, snapshot_id: str) -> set[str]:
    found = ec2.describe_snapshot_attribute(
        SnapshotId=snapshot_id, Attribute="createVolumePermission"
    )
    return {p["UserId"] for p in found.get("CreateVolumePermissions", []) if "UserId" in p}


def grant(ec2: Any, ami: dict[str, Any], targets: Targets) -> list[str]:
    """Share the AMI and its snapshots with whoever lacks it; return what changed."""
    changes = []
    ami_id = ami["ImageId"]
    have, public = launch_permissions(ec2, ami_id)
    if public:
        raise BakeryError(f"{ami_id} is public: make it private before sharing it")
    add = targets.minus(have)
    if add:
        ec2.modify_image_attribute(
            ImageId=ami_id,
            Attribute="launchPermission",
            OperationType="add",
            **add.launch_permission(),
        )
        changes.append(f"launch permission for {add.count()}")
    for snapshot in catalog.snapshots(ami) if targets.accounts else []:
        have_volume = volume_permissions(ec2, snapshot)
        missing = [a for a in targets.accounts if a not in have_volume]
        if missing:
            ec2.modify_snapshot_attribute(
                SnapshotId=snapshot,
                Attribute="createVolumePermission",
                OperationType="add",
                UserIds=missing,
            )
            changes.append(f"{snapshot} for {len(missing)} account{'s' * (len(missing) > 1)}")
    return changes


def revoke(ec2: Any, ami: dict[str, Any], targets: Targets) -> list[str]:
    """Take back what the targets hold of the AMI and its snapshots; return what changed."""
    changes = []
    ami_id = ami["ImageId"]
    have, _ = launch_permissions(ec2, ami_id)
    remove = targets.both(have)
    if remove:
        ec2.modify_image_attribute(
            ImageId=ami_id,
            Attribute="launchPermission",
            OperationType="remove",
            **remove.launch_permission(),
        )
        changes.append(f"launch permission of {remove.count()}")
    for snapshot in catalog.snapshots(ami) if targets.accounts else []:
        have_volume = volume_permissions(ec2, snapshot)
        present = [a for a in targets.accounts if a in have_volume]
        if present:
            ec2.modify_snapshot_attribute(
                SnapshotId=snapshot,
                Attribute="createVolumePermission",
                OperationType="remove",
                UserIds=present,
            )
            changes.append(f"{snapshot} of {len(present)} account{'s' * (len(present) > 1)}")
    return changes


def snapshot_keys(
    ec2: Any, kms: Any, ami: dict[str, Any], targets: Targets, say: Say
) -> list[keypolicy.Key]:
    """The KMS keys of the AMI's snapshots, read (one describe_snapshots call for all)."""
    ids = catalog.snapshots(ami)
    if not ids:
        return []
    keys: dict[str, keypolicy.Key] = {}
    for snap in ec2.describe_snapshots(SnapshotIds=ids)["Snapshots"]:
        used_by = f"{ami['ImageId']} ({snap['SnapshotId']})"
        key_id = snap.get("KmsKeyId")
        if key_id and key_id not in keys:
            keys[key_id] = keypolicy.inspect(kms, key_id, targets, used_by, ami)
        elif not key_id and snap.get("Encrypted"):
            say(
                f"warning: the API did not report which KMS key encrypts {snap['SnapshotId']} of"
                f" {ami['ImageId']}: its key policy was not checked"
            )
    return list(keys.values())


def share(
    ami_id: str,
    targets: Targets,
    *,
    region: str | None = None,
    remove: bool = False,
    update_key_policy: bool = False,
    say: Say = print,
) -> list[str]:
    """invoke share: one AMI, in one region, with (or, remove=True, from) the targets."""
    if not targets:
        raise BakeryError("name someone to share with: --account, --organization-arn or --ou-arn")
    account = aws.identity()["account"]
    name = distribute.check_regions([aws.region(region)], "--region")[0]
    ec2, kms = aws.client("ec2", name), aws.client("kms", name)
    ami = catalog.get(ec2, ami_id)
    if ami.get("OwnerId") != account:
        raise BakeryError(
            f"{ami_id} belongs to account {ami.get('OwnerId')}: only its owner shares it"
        )
    if remove:
        changes = revoke(ec2, ami, targets)
        say(
            f"share: {ami_id} in {name}: revoked "
            + (
                "; ".join(changes)
                if changes
                else f"nothing ({targets.describe(limit=4)} held no permission)"
            )
        )
        if targets.accounts:
            say(
                "share: KMS key policies are left as they are (other AMIs may need them): remove"
                " an account from a key's policy by hand when nothing shared with it remains"
            )
        return changes
    distribute.require_verified(ami)
    keys = snapshot_keys(ec2, kms, ami, targets, say)
    keypolicy.settle(keys, update=update_key_policy, say=say)
    if update_key_policy:
        keypolicy.update({name: kms}, keys, say)
    changes = grant(ec2, ami, targets)
    say(
        f"share: {ami_id} in {name}: "
        + ("shared: " + "; ".join(changes) if changes else "nothing to change (already shared)")
    )
    if changes and targets.accounts and keys:
        say(keypolicy.ASG_NOTE)
    return changes
