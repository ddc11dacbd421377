"""Apply with the UI opened to one CIDR and one instance, then destroy, against the emulator.

The fixture records what the emulator holds after `apply` and after `destroy`; the tests read
those records, so they do not depend on each other's order.

What moto does not do when the group launches (seen with moto 5.2.5), shown by the xfail test
below and worked around here, never in the module:
- it refuses to launch from a block device mapping without a size (AWS takes the snapshot's),
  so this test sets root_volume_size;
- the launched instance ignores the mixed instances policy (no instance type from the
  overrides, no spot market) and the launch template's metadata options and instance profile.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
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

NAME = "bakery-life"
UI_CIDR = "203.0.113.0/24"
INSTANCE_TYPES = ["g5.xlarge", "g6.xlarge"]


@dataclass
class Lifecycle:
    ami: str
    outputs: dict[str, Any]
    ingress: list[dict[str, Any]]
    instances: list[dict[str, Any]]
    volumes: dict[str, dict[str, Any]]
    left: dict[str, list[str]] = field(default_factory=dict)


def _instances(ec2: Any) -> list[dict[str, Any]]:
    reservations = ec2.describe_instances(
        Filters=[
            {"Name": "tag:bakery:managed-by", "Values": ["gpu-ami-bakery"]},
            {"Name": "instance-state-name", "Values": ["pending", "running"]},
        ]
    )["Reservations"]
    return [i for r in reservations for i in r["Instances"]]


def _leftovers(ec2: Any, autoscaling: Any, iam: Any, vpc: str) -> dict[str, list[str]]:
    groups = autoscaling.describe_auto_scaling_groups()["AutoScalingGroups"]
    templates = ec2.describe_launch_templates()["LaunchTemplates"]
    security_groups = ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [vpc]}])[
        "SecurityGroups"
    ]
    return {
        "autoscaling group": [g["AutoScalingGroupName"] for g in groups],
        "launch template": [t["LaunchTemplateName"] for t in templates],
        "security group": [g["GroupName"] for g in security_groups if g["GroupName"] != "default"],
        "iam role": [
            r["RoleName"] for r in iam.list_roles()["Roles"] if r["RoleName"].startswith(NAME)
        ],
        "instance profile": [
            p["InstanceProfileName"]
            for p in iam.list_instance_profiles()["InstanceProfiles"]
            if p["InstanceProfileName"].startswith(NAME)
        ],
        "instance": [i["InstanceId"] for i in _instances(ec2)],
    }


@pytest.fixture(scope="module")
def lifecycle(
    emulator_server: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Lifecycle]:
    with pytest.MonkeyPatch.context() as mp:
        use_emulator(mp, emulator_server, managed_policies=True)
        ec2, autoscaling, iam = (
            boto3.client("ec2"),
            boto3.client("autoscaling"),
            boto3.client("iam"),
        )
        ami = register_ami(
            ec2,
            "verified",
            {
                **CATALOG_TAGS,
                "bakery:image": "deepseek-r1-7b",
                "bakery:models": "deepseek-r1:7b",
                "bakery:verification": "passed",
            },
        )
        vpc, subnets = default_network(ec2)

        work = tmp_path_factory.mktemp("lifecycle")
        tf = Terraform(
            stage(work, "emulator"),
            terraform_env(work, plugin_cache(tmp_path_factory.getbasetemp())),
        )
        tf.init()
        outputs = tf.apply(
            {
                "endpoint": emulator_server,
                "fleets": {
                    "main": {
                        "name": NAME,
                        "image_name": "deepseek-r1-7b",
                        "vpc_id": vpc,
                        "subnet_ids": subnets,
                        "instance_types": INSTANCE_TYPES,
                        "ui_ingress_cidrs": [UI_CIDR],
                        "desired_capacity": 1,
                        "root_volume_size": 100,  # moto needs a size to launch (see the docstring)
                    },
                },
            }
        )["fleets"]["main"]
        instances = _instances(ec2)
        volume_ids = [
            m["Ebs"]["VolumeId"] for i in instances for m in i.get("BlockDeviceMappings", [])
        ]
        volumes = (
            {v["VolumeId"]: v for v in ec2.describe_volumes(VolumeIds=volume_ids)["Volumes"]}
            if volume_ids
            else {}
        )
        record = Lifecycle(
            ami=ami,
            outputs=outputs,
            ingress=ec2.describe_security_groups(GroupIds=[outputs["security_group_id"]])[
                "SecurityGroups"
            ][0]["IpPermissions"],
            instances=instances,
            volumes=volumes,
        )
        tf.destroy()
        record.left = _leftovers(ec2, autoscaling, iam, vpc)
        yield record


def test_ui_cidr_gets_exactly_one_rule(lifecycle: Lifecycle) -> None:
    (rule,) = lifecycle.ingress
    assert (rule["IpProtocol"], rule["FromPort"], rule["ToPort"]) == ("tcp", 3000, 3000)
    assert [r["CidrIp"] for r in rule["IpRanges"]] == [UI_CIDR]
    assert rule.get("Ipv6Ranges", []) == []
    assert rule.get("UserIdGroupPairs", []) == []


def test_ollama_port_stays_closed(lifecycle: Lifecycle) -> None:
    opened = [
        r for r in lifecycle.ingress if r.get("FromPort", 0) <= 11434 <= r.get("ToPort", 65535)
    ]
    assert opened == []


def test_one_instance_launched_from_the_ami(lifecycle: Lifecycle) -> None:
    (instance,) = lifecycle.instances
    assert instance["ImageId"] == lifecycle.ami


@pytest.mark.parametrize(
    ("key", "value"),
    [("bakery:managed-by", "gpu-ami-bakery"), ("bakery:image", "deepseek-r1-7b"), ("Name", NAME)],
)
def test_instance_carries_the_tags(lifecycle: Lifecycle, key: str, value: str) -> None:
    (instance,) = lifecycle.instances
    assert {t["Key"]: t["Value"] for t in instance["Tags"]}[key] == value


@pytest.mark.parametrize(
    ("key", "expected"), [("Encrypted", True), ("VolumeType", "gp3"), ("Size", 100), ("Iops", 3000)]
)
def test_instance_root_volume(lifecycle: Lifecycle, key: str, expected: object) -> None:
    (instance,) = lifecycle.instances
    (mapping,) = instance["BlockDeviceMappings"]
    assert lifecycle.volumes[mapping["Ebs"]["VolumeId"]][key] == expected


@pytest.mark.xfail(
    reason="moto launches ASG instances without the mixed instances policy's types, the spot"
    " market, or the launch template's metadata options (the template itself is checked in"
    " test_fleet_emulator.py)",
)  # strict (pyproject.toml): an emulator that learns it fails this loudly; then drop the mark
def test_instance_is_spot_of_an_override_type_with_imdsv2(lifecycle: Lifecycle) -> None:
    (instance,) = lifecycle.instances
    assert instance["InstanceType"] in INSTANCE_TYPES
    assert instance.get("InstanceLifecycle") == "spot"
    assert instance["MetadataOptions"]["HttpTokens"] == "required"


@pytest.mark.parametrize(
    "kind",
    [
        "autoscaling group",
        "launch template",
        "security group",
        "iam role",
        "instance profile",
        "instance",
    ],
)
def test_destroy_leaves_nothing(lifecycle: Lifecycle, kind: str) -> None:
    assert lifecycle.left[kind] == []
