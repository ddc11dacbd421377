"""The AMI the fleet module will launch, picked as the module picks it (this account's newest
available AMI tagged for the image, verified unless --allow-unverified), so that what is checked
here is what launches, and refused here when it should not be."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import catalog
from ..config import ImageDef
from ..errors import BakeryError

Say = Callable[[str], None]


def state_of(ami: dict[str, Any]) -> str:
    tags = catalog.tags_of(ami)
    verdict = tags.get(catalog.VERIFICATION)
    if verdict == catalog.PASSED:
        return "verified"
    if verdict == catalog.FAILED:
        why = tags.get("bakery:verify-failure")
        return "failed verification" + (f" ({why})" if why else "")
    return "not verified"


def how_verified(ami: dict[str, Any]) -> str:
    """'is verified', 'is not verified' or 'failed verification (why)'."""
    state = state_of(ami)
    return state if state.startswith("failed") else f"is {state}"


def pick_ami(
    ec2: Any, image: ImageDef, region: str, *, allow_unverified: bool, say: Say = print
) -> dict[str, Any]:
    """The AMI the module will launch, refused here when it should not be."""
    available = [a for a in catalog.images(ec2, image.name) if a.get("State") == "available"]
    finished = [a for a in available if catalog.FINGERPRINT in catalog.tags_of(a)]
    if not finished:
        raise BakeryError(
            f"no AMI of {image.name} in {region} yet: bake and verify one first"
            f" (invoke bake --image {image.name}, then invoke verify --image {image.name})"
        )
    newest = finished[0]
    if allow_unverified:
        chosen = available[0]  # the module's rule: the newest, finished or not
        if catalog.FINGERPRINT not in catalog.tags_of(chosen):
            raise BakeryError(
                f"{chosen['ImageId']}, the newest AMI tagged for {image.name} in {region}, is an"
                " unfinished bake (no bakery:fingerprint tag) and the fleet would launch it:"
                " remove it (invoke gc) or let its bake finish"
            )
        if state_of(chosen) != "verified":
            say(
                f"launch: {chosen['ImageId']} {how_verified(chosen)}; launching it anyway"
                " (--allow-unverified): nothing has proven that it serves on a GPU"
            )
        return chosen
    verified = [a for a in available if catalog.tags_of(a).get(catalog.VERIFICATION) == "passed"]
    if not verified:
        hint = (
            f"bake a fixed one and verify it (invoke bake --image {image.name} --force)"
            if state_of(newest).startswith("failed")
            else f"verify it (invoke verify --image {image.name})"
        )
        raise BakeryError(
            f"no verified AMI of {image.name} in {region}: the newest, {newest['ImageId']},"
            f" {how_verified(newest)}; {hint}, or pass --allow-unverified to launch it anyway"
        )
    chosen = verified[0]
    if newest["ImageId"] != chosen["ImageId"]:
        say(
            f"launch: the newest AMI, {newest['ImageId']}, {how_verified(newest)}; launching"
            f" {chosen['ImageId']}, the newest verified one"
        )
    return chosen


def models_of(ami: dict[str, Any], image: ImageDef) -> list[str]:
    """What the AMI carries (its bakery:models tag); the definition's list if it has none."""
    tag = catalog.tags_of(ami).get(catalog.MODELS)
    if tag is None:
        return image.model_names
    return [m.strip() for m in tag.split(",") if m.strip()]


def root_volume_gib(ami: dict[str, Any]) -> int | None:
    for mapping in ami.get("BlockDeviceMappings", []):
        if mapping.get("DeviceName") == ami.get("RootDeviceName"):
            size = mapping.get("Ebs", {}).get("VolumeSize")
            return int(size) if size else None
    return None
