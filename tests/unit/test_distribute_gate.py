"""distribute.require_verified: the one gate share and publish pass an AMI through before it
leaves the account. Every refusal names the AMI and why, in one line."""

from __future__ import annotations

from typing import Any

import pytest

from bakery import catalog, distribute
from bakery.errors import BakeryError

FINISHED = {
    catalog.MANAGED_BY: "gpu-ami-bakery",
    catalog.IMAGE: "deepseek-r1-7b",
    catalog.FINGERPRINT: "f" * 64,
    catalog.PROVISIONED: "true",
    catalog.VERIFICATION: catalog.PASSED,
}
NOT_VERIFIED = (
    "run invoke verify --image deepseek-r1-7b first; only verified AMIs leave this account"
)


def ami(state: str | None = "available", **tags: str | None) -> dict[str, Any]:
    merged = {k: v for k, v in (FINISHED | tags).items() if v is not None}
    found: dict[str, Any] = {"ImageId": "ami-1", "Tags": catalog.tag_list(merged)}
    if state is not None:
        found["State"] = state
    return found


def refusal(found: dict[str, Any], image: str | None = "deepseek-r1-7b") -> str:
    with pytest.raises(BakeryError) as e:
        distribute.require_verified(found, image)
    return str(e.value)


@pytest.mark.parametrize("image", ["deepseek-r1-7b", None], ids=["publish", "share"])
def test_a_verified_finished_ami_passes(image: str | None) -> None:
    distribute.require_verified(ami(), image)


def test_an_ami_without_the_provisioned_tag_passes() -> None:
    distribute.require_verified(ami(**{catalog.PROVISIONED: None}), "deepseek-r1-7b")


@pytest.mark.parametrize("managed_by", [None, "someone-else"], ids=["untagged", "other-tool"])
def test_an_ami_the_tool_did_not_make(managed_by: str | None) -> None:
    assert refusal(ami(**{catalog.MANAGED_BY: managed_by})) == (
        "ami-1 was not made by gpu-ami-bakery (no bakery:managed-by tag): only verified AMIs"
        " of the catalog leave this account"
    )


def test_an_ami_of_another_image() -> None:
    assert refusal(ami(**{catalog.IMAGE: "other"})) == (
        "ami-1 is an AMI of 'other', not of 'deepseek-r1-7b'"
    )


def test_without_an_image_any_image_of_the_catalog_may_pass() -> None:
    distribute.require_verified(ami(**{catalog.IMAGE: "other"}), None)


def test_an_unfinished_bake() -> None:
    assert refusal(ami(**{catalog.FINGERPRINT: None})) == (
        "ami-1 is an unfinished bake (no bakery:fingerprint tag)"
    )


@pytest.mark.parametrize(
    ("verification", "state"),
    [
        (None, "never verified"),
        ("", "never verified"),
        (catalog.FAILED, "bakery:verification is 'failed'"),
        ("PASSED", "bakery:verification is 'PASSED'"),
    ],
    ids=["never", "empty", "failed", "not-the-word"],
)
def test_only_passed_passes(verification: str | None, state: str) -> None:
    found = ami(**{catalog.VERIFICATION: verification})
    assert refusal(found) == f"ami-1 is not verified ({state}): {NOT_VERIFIED}"


def test_the_hint_names_a_placeholder_when_the_ami_names_no_image() -> None:
    found = ami(**{catalog.IMAGE: None, catalog.VERIFICATION: None})
    assert refusal(found, None) == (
        "ami-1 is not verified (never verified): run invoke verify --image NAME first;"
        " only verified AMIs leave this account"
    )


def test_an_ami_baked_against_the_emulator() -> None:
    assert refusal(ami(**{catalog.PROVISIONED: "false"})) == (
        "ami-1 was baked against the emulator (bakery:provisioned is 'false'): it holds no"
        " driver, model or UI, so it never leaves this account"
    )


@pytest.mark.parametrize("state", ["pending", "deregistered", None])
def test_only_an_available_ami(state: str | None) -> None:
    assert refusal(ami(state)) == f"ami-1 is {state}, not available"


def test_the_first_reason_is_the_one_given() -> None:
    """An AMI wrong in every way is refused for not being the catalog's."""
    found = ami(
        "pending",
        **{catalog.MANAGED_BY: None, catalog.FINGERPRINT: None, catalog.VERIFICATION: None},
    )
    assert refusal(found).startswith("ami-1 was not made by gpu-ami-bakery")
