"""How the module resolves its AMI, and what it refuses, seen in `terraform plan` against the emulator.

Each plan spends seconds loading the provider, so the test root instantiates the module once
per scenario (for_each) and a few plans cover every scenario.

That the catalog lookup skips failed and unverified AMIs is checked in test_fleet_emulator.py.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from tfharness import (
    CATALOG_TAGS,
    Terraform,
    default_network,
    plugin_cache,
    register_ami,
    reset_emulator,
    stage,
    terraform_env,
)

pytestmark = [pytest.mark.terraform, pytest.mark.emulator, pytest.mark.slow]

SSM_PARAMETER = "/bakery/deepseek-r1-7b/ami-id"
KMS_KEY = "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555"

# Scenarios that must plan: inputs of the module besides the common ones.
ACCEPTED: dict[str, dict[str, Any]] = {
    "published": {
        "ami_ssm_parameter": SSM_PARAMETER,
        "models": ["deepseek-r1:7b"],
        "root_volume_size": 200,
        "volume_initialization_rate": 300,
        "kms_key_id": KMS_KEY,
    },
    "unverified-allowed": {"image_name": "candidate", "require_verified": False},
}
# Scenarios that must be refused: (inputs, group, the message that says why). Terraform stops
# planning a resource in every instance of the module once one instance fails on it, so each
# group is planned apart: launch template preconditions, then the group's.
REFUSED: dict[str, tuple[dict[str, Any], str, str]] = {
    "published-without-models": (
        {"ami_ssm_parameter": SSM_PARAMETER},
        "template",
        "has no bakery:models tag",
    ),
    "root-volume-below-snapshot": (
        {"root_volume_size": 8},
        "template",
        "is smaller than the root snapshot",
    ),
    "desired-above-max": (
        {"desired_capacity": 2, "max_size": 1},
        "group",
        "must lie between min_size",
    ),
}


@dataclass
class Plans:
    amis: dict[str, str]
    accepted: dict[str, Any]
    refused: dict[str, subprocess.CompletedProcess[str]]

    def template(self, scenario: str) -> dict[str, Any]:
        """The launch template the accepted plan would create for a scenario."""
        address = f'module.fleet["{scenario}"].aws_launch_template.this'
        (change,) = [c for c in self.accepted["resource_changes"] if c["address"] == address]
        return dict(change["change"]["after"])


@pytest.fixture(scope="module")
def plans(emulator_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plans]:
    with pytest.MonkeyPatch.context() as mp:
        reset_emulator(emulator_server)
        for key, value in {
            "AWS_ENDPOINT_URL": emulator_server,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }.items():
            mp.setenv(key, value)
        ec2 = boto3.client("ec2")
        image = {
            **CATALOG_TAGS,
            "bakery:image": "deepseek-r1-7b",
            "bakery:models": "deepseek-r1:7b",
        }
        amis = {
            "verified": register_ami(ec2, "verified", {**image, "bakery:verification": "passed"}),
            # As an AMI shared from another account looks here: no tags.
            "published": register_ami(ec2, "published", {}),
            "candidate": register_ami(
                ec2,
                "candidate",
                {**image, "bakery:image": "candidate", "bakery:verification": "failed"},
            ),
        }
        boto3.client("ssm").put_parameter(
            Name=SSM_PARAMETER, Type="String", DataType="aws:ec2:image", Value=amis["published"]
        )
        vpc, subnets = default_network(ec2)

        work = tmp_path_factory.mktemp("plans")
        tf = Terraform(
            stage(work, "emulator"),
            terraform_env(work, plugin_cache(tmp_path_factory.getbasetemp())),
        )
        tf.init()

        def fleets(scenarios: dict[str, dict[str, Any]]) -> dict[str, Any]:
            common = {"image_name": "deepseek-r1-7b", "vpc_id": vpc, "subnet_ids": subnets}
            return {
                "endpoint": emulator_server,
                "fleets": {
                    name: {**common, "name": f"plan-{name}", **inputs}
                    for name, inputs in scenarios.items()
                },
            }

        accepted = tf.plan("accepted", fleets(ACCEPTED))
        assert accepted.returncode == 0, accepted.stderr
        refused = {
            group: tf.plan(
                f"refused-{group}",
                fleets({name: inputs for name, (inputs, g, _) in REFUSED.items() if g == group}),
            )
            for group in ("template", "group")
        }
        yield Plans(amis=amis, accepted=tf.show_plan("accepted"), refused=refused)


def test_ssm_parameter_selects_the_published_ami(plans: Plans) -> None:
    assert plans.template("published")["image_id"] == plans.amis["published"]


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("volume_size", 200),
        ("volume_initialization_rate", 300),
        ("kms_key_id", KMS_KEY),
        ("encrypted", "true"),
        ("volume_type", "gp3"),
    ],
)
def test_root_volume_inputs_reach_the_template(plans: Plans, key: str, expected: object) -> None:
    (mapping,) = plans.template("published")["block_device_mappings"]
    (ebs,) = mapping["ebs"]
    assert ebs[key] == expected


def test_require_verified_false_accepts_an_unverified_ami(plans: Plans) -> None:
    assert plans.template("unverified-allowed")["image_id"] == plans.amis["candidate"]


@pytest.mark.parametrize("scenario", list(REFUSED))
def test_refused(plans: Plans, scenario: str) -> None:
    _, group, message = REFUSED[scenario]
    result = plans.refused[group]
    assert result.returncode != 0
    assert message in " ".join(result.stderr.split()), result.stderr


def test_published_ami_refusal_names_the_ami(plans: Plans) -> None:
    assert plans.amis["published"] in plans.refused["template"].stderr
