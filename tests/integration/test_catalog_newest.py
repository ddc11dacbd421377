"""catalog.newest against the emulator: the newest finished, available AMI of one image, with
the verification state asked for; what does not qualify is passed over, not an end."""

from __future__ import annotations

import boto3
import pytest
from distribute_support import BUILD, baked_ami

from bakery import catalog

pytestmark = pytest.mark.emulator


def unfinished(ami: dict) -> dict:
    """As a bake leaves an AMI it did not finish: no fingerprint (it is written last)."""
    ec2 = boto3.client("ec2", BUILD)
    catalog.untag(ec2, ami, [catalog.FINGERPRINT])
    return ec2.describe_images(ImageIds=[ami["ImageId"]])["Images"][0]


def newest(**kwargs: object) -> str | None:
    found = catalog.newest(boto3.client("ec2", BUILD), "deepseek-r1-7b", **kwargs)
    return found["ImageId"] if found else None


def test_a_newer_unfinished_ami_is_passed_over(emulator: str) -> None:
    finished = baked_ami(run="20250101-000000-aaaaaa")
    unfinished(baked_ami(run="20250102-000000-bbbbbb"))
    assert newest() == newest(verification=catalog.PASSED) == finished["ImageId"]


def test_an_ami_of_another_image_is_not_this_images(emulator: str) -> None:
    ours = baked_ami(run="20250101-000000-aaaaaa")
    other = baked_ami(run="20250102-000000-bbbbbb")
    catalog.tag(boto3.client("ec2", BUILD), other, {catalog.IMAGE: "other-image"})
    assert newest() == ours["ImageId"]


def test_unverified_passes_over_a_newer_verified_ami(emulator: str) -> None:
    """What `invoke verify` picks when asked for the newest AMI nobody has verified yet."""
    waiting = baked_ami(run="20250101-000000-aaaaaa", verified=False)
    baked_ami(run="20250102-000000-bbbbbb")  # newer, passed
    assert newest(unverified=True) == waiting["ImageId"]
    assert newest(verification=catalog.PASSED) != waiting["ImageId"]
