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
    stage,
    terraform_env,
)
from tooling import use_emulator

pytestmark = [pytest.mark.terraform, pytest.mark.emulator, pytest.mark.slow]

SSM_PARAMETER = "/bakery/deepseek-r1-7b/ami-id"
SECRET_PARAMETER = "/bakery/oidc-client-secret"
CERTIFICATE = "arn:aws:acm:us-east-1:123456789012:certificate/11111111-2222-3333-4444-555555555555"
OIDC = {
    "issuer": "https://login.example.com",
    "client_id": "bakery",
    "client_secret_ssm_parameter": SECRET_PARAMETER,
    "authorization_endpoint": "https://login.example.com/authorize",
    "token_endpoint": "https://login.example.com/token",
    "user_info_endpoint": "https://login.example.com/userinfo",
}
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
    "lb-no-certificate": (
        {"create_load_balancer": True, "oidc": OIDC},
        "load-balancer",
        "needs load_balancer_certificate_arn",
    ),
    "lb-no-sign-in": (
        {"create_load_balancer": True, "load_balancer_certificate_arn": CERTIFICATE},
        "load-balancer",
        "needs exactly one of oidc or cognito",
    ),
    "lb-two-sign-ins": (
        {
            "create_load_balancer": True,
            "load_balancer_certificate_arn": CERTIFICATE,
            "oidc": OIDC,
            "cognito": {
                "user_pool_arn": "arn:aws:cognito-idp:us-east-1:123456789012:userpool/us-east-1_x",
                "user_pool_client_id": "client",
                "user_pool_domain": "bakery",
            },
        },
        "load-balancer",
        "needs exactly one of oidc or cognito",
    ),
}
# What the load balancer brings; none of it may be planned while it is off.
LOAD_BALANCER_TYPES = {
    "aws_lb",
    "aws_lb_listener",
    "aws_lb_listener_rule",
    "aws_lb_target_group",
    "aws_autoscaling_lifecycle_hook",
    "aws_autoscaling_policy",
    "aws_iam_role_policy",
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
        use_emulator(mp, emulator_server)
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
        boto3.client("ssm").put_parameter(Name=SECRET_PARAMETER, Type="SecureString", Value="x")
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
            for group in ("template", "group", "load-balancer")
        }
        yield Plans(amis=amis, accepted=tf.show_plan("accepted"), refused=refused)


def test_without_the_load_balancer_nothing_of_it_is_planned(plans: Plans) -> None:
    planned = {c["type"] for c in plans.accepted["resource_changes"]}
    assert planned & LOAD_BALANCER_TYPES == set()
    assert "aws_security_group_rule" not in planned
    groups = [c for c in plans.accepted["resource_changes"] if c["type"] == "aws_security_group"]
    assert {c["name"] for c in groups} == {"this"}


def test_without_the_load_balancer_the_group_is_as_before(plans: Plans) -> None:
    (group,) = [
        c["change"]["after"]
        for c in plans.accepted["resource_changes"]
        if c["address"] == 'module.fleet["published"].aws_autoscaling_group.this'
    ]
    assert group["initial_lifecycle_hook"] == []
    assert group.get("health_check_type") in (None, "EC2")  # unset: AWS keeps EC2
    assert not group.get("target_group_arns")


def test_without_the_load_balancer_the_user_data_has_no_hook(plans: Plans) -> None:
    import base64

    script = base64.b64decode(plans.template("published")["user_data"]).decode()
    for name in ("LIFECYCLE_HOOK_NAME", "AUTOSCALING_GROUP_NAME", "TARGET_GROUP_ARN"):
        assert f"readonly {name}=''" in script


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
