"""The module applied with its defaults against the local AWS emulator, then read back with boto3.

One apply serves every read-only check here, so the fixture is module-scoped and resets the
emulator itself (the shared `emulator` fixture is per test). Tests that change the stack are in
test_fleet_lifecycle.py.
"""

from __future__ import annotations

import base64
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

INSTANCE_TYPES = ["g5.xlarge", "g6.xlarge", "g6e.xlarge"]


@dataclass
class Fleet:
    outputs: dict[str, Any]
    verified_ami: str
    other_amis: dict[str, str]
    ec2: Any
    autoscaling: Any
    iam: Any

    def group(self) -> dict[str, Any]:
        name = self.outputs["autoscaling_group_name"]
        return self.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name])[
            "AutoScalingGroups"
        ][0]

    def template_data(self) -> dict[str, Any]:
        versions = self.ec2.describe_launch_template_versions(
            LaunchTemplateId=self.outputs["launch_template_id"], Versions=["$Latest"]
        )["LaunchTemplateVersions"]
        return versions[0]["LaunchTemplateData"]

    def security_group(self) -> dict[str, Any]:
        return self.ec2.describe_security_groups(GroupIds=[self.outputs["security_group_id"]])[
            "SecurityGroups"
        ][0]


@pytest.fixture(scope="module")
def fleet(emulator_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with pytest.MonkeyPatch.context() as mp:
        use_emulator(mp, emulator_server, managed_policies=True)
        ec2 = boto3.client("ec2")
        image = {"bakery:image": "deepseek-r1-7b", "bakery:models": "deepseek-r1:7b"}
        verified = register_ami(
            ec2, "verified", {**CATALOG_TAGS, **image, "bakery:verification": "passed"}
        )
        # Registered later, so more recent: the catalog lookup must still skip them.
        others = {
            "failed": register_ami(
                ec2, "failed", {**CATALOG_TAGS, **image, "bakery:verification": "failed"}
            ),
            "unverified": register_ami(ec2, "unverified", {**CATALOG_TAGS, **image}),
            "other-image": register_ami(
                ec2,
                "other",
                {**CATALOG_TAGS, **image, "bakery:image": "other", "bakery:verification": "passed"},
            ),
        }
        vpc, subnets = default_network(ec2)

        work = tmp_path_factory.mktemp("fleet")
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
                        "name": "bakery-test",
                        "image_name": "deepseek-r1-7b",
                        "vpc_id": vpc,
                        "subnet_ids": subnets,
                        "instance_types": INSTANCE_TYPES,
                        "desired_capacity": 0,
                    },
                },
            }
        )["fleets"]["main"]
        yield Fleet(
            outputs=outputs,
            verified_ami=verified,
            other_amis=others,
            ec2=ec2,
            autoscaling=boto3.client("autoscaling"),
            iam=boto3.client("iam"),
        )
        # No destroy: the next test resets the emulator, and test_fleet_lifecycle.py
        # checks what `terraform destroy` leaves behind.


@pytest.mark.parametrize(
    "output",
    [
        "autoscaling_group_name",
        "autoscaling_group_arn",
        "launch_template_id",
        "launch_template_latest_version",
        "security_group_id",
        "ami_id",
        "iam_role_arn",
        "iam_instance_profile_arn",
    ],
)
def test_output_is_set(fleet: Fleet, output: str) -> None:
    assert fleet.outputs[output]


def test_catalog_lookup_picks_the_verified_ami(fleet: Fleet) -> None:
    assert fleet.outputs["ami_id"] == fleet.verified_ami, fleet.other_amis


def test_models_come_from_the_ami_tag(fleet: Fleet) -> None:
    assert fleet.outputs["models"] == ["deepseek-r1:7b"]


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("OnDemandBaseCapacity", 0),
        ("OnDemandPercentageAboveBaseCapacity", 0),
        ("SpotAllocationStrategy", "price-capacity-optimized"),
    ],
)
def test_group_is_all_spot(fleet: Fleet, key: str, expected: object) -> None:
    distribution = fleet.group()["MixedInstancesPolicy"]["InstancesDistribution"]
    assert distribution[key] == expected


def test_group_spans_the_gpu_types(fleet: Fleet) -> None:
    overrides = fleet.group()["MixedInstancesPolicy"]["LaunchTemplate"]["Overrides"]
    types = [o["InstanceType"] for o in overrides]
    assert types == INSTANCE_TYPES
    assert len(set(types)) >= 2


def test_group_launches_the_latest_template_version(fleet: Fleet) -> None:
    spec = fleet.group()["MixedInstancesPolicy"]["LaunchTemplate"]["LaunchTemplateSpecification"]
    assert spec["LaunchTemplateId"] == fleet.outputs["launch_template_id"]
    assert str(spec["Version"]) == str(fleet.outputs["launch_template_latest_version"])


def test_group_has_capacity_rebalance(fleet: Fleet) -> None:
    assert fleet.group()["CapacityRebalance"] is True


@pytest.mark.parametrize(
    ("key", "expected"), [("MinSize", 0), ("DesiredCapacity", 0), ("MaxSize", 1)]
)
def test_group_size(fleet: Fleet, key: str, expected: int) -> None:
    assert fleet.group()[key] == expected


def test_group_uses_every_subnet(fleet: Fleet) -> None:
    _, subnets = default_network(fleet.ec2)
    assert sorted(fleet.group()["VPCZoneIdentifier"].split(",")) == subnets


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("bakery:managed-by", "gpu-ami-bakery"),
        ("bakery:image", "deepseek-r1-7b"),
        ("Project", "bakery-tests"),
        ("Name", "bakery-test"),
    ],
)
def test_group_tags_propagate_at_launch(fleet: Fleet, key: str, value: str) -> None:
    tags = {t["Key"]: t for t in fleet.group()["Tags"]}
    assert tags[key]["Value"] == value
    assert tags[key]["PropagateAtLaunch"] is True


def test_template_uses_the_resolved_ami(fleet: Fleet) -> None:
    assert fleet.template_data()["ImageId"] == fleet.verified_ami


@pytest.mark.parametrize(
    ("key", "expected"),
    [("HttpTokens", "required"), ("HttpPutResponseHopLimit", 1), ("HttpEndpoint", "enabled")],
)
def test_template_requires_imdsv2(fleet: Fleet, key: str, expected: object) -> None:
    assert fleet.template_data()["MetadataOptions"][key] == expected


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("Encrypted", True),
        ("VolumeType", "gp3"),
        ("Iops", 3000),
        ("Throughput", 125),
        ("DeleteOnTermination", True),
    ],
)
def test_template_root_volume(fleet: Fleet, key: str, expected: object) -> None:
    (mapping,) = fleet.template_data()["BlockDeviceMappings"]
    assert mapping["DeviceName"] == "/dev/sda1"  # the AMI's root device
    assert mapping["Ebs"][key] == expected


def test_template_leaves_volume_initialization_rate_unset(fleet: Fleet) -> None:
    (mapping,) = fleet.template_data()["BlockDeviceMappings"]
    assert "VolumeInitializationRate" not in mapping["Ebs"]


def test_template_has_no_key_pair(fleet: Fleet) -> None:
    assert "KeyName" not in fleet.template_data()


def test_template_attaches_only_the_module_security_group(fleet: Fleet) -> None:
    assert fleet.template_data()["SecurityGroupIds"] == [fleet.outputs["security_group_id"]]


@pytest.mark.parametrize("resource_type", ["instance", "volume", "network-interface"])
def test_template_tags_what_it_launches(fleet: Fleet, resource_type: str) -> None:
    specs = {s["ResourceType"]: s["Tags"] for s in fleet.template_data()["TagSpecifications"]}
    tags = {t["Key"]: t["Value"] for t in specs[resource_type]}
    assert tags["bakery:managed-by"] == "gpu-ami-bakery"
    assert tags["bakery:image"] == "deepseek-r1-7b"
    assert tags["Project"] == "bakery-tests"


def test_template_user_data_is_the_rendered_script(fleet: Fleet) -> None:
    script = base64.b64decode(fleet.template_data()["UserData"]).decode()
    assert script.startswith("#!/bin/bash\n")
    assert "readonly UI_OLLAMA_URL_ENV='OLLAMA_URL'" in script
    assert "readonly UI_PORT='3000'" in script
    assert "  'deepseek-r1:7b'\n" in script  # from the AMI's bakery:models tag


def test_instance_profile_grants_session_manager(fleet: Fleet) -> None:
    profile_name = fleet.outputs["iam_instance_profile_arn"].rsplit("/", 1)[1]
    (role,) = fleet.iam.get_instance_profile(InstanceProfileName=profile_name)["InstanceProfile"][
        "Roles"
    ]
    attached = fleet.iam.list_attached_role_policies(RoleName=role["RoleName"])["AttachedPolicies"]
    assert [p["PolicyArn"] for p in attached] == [
        "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
    ]


def test_security_group_has_no_ingress(fleet: Fleet) -> None:
    assert fleet.security_group()["IpPermissions"] == []


def test_security_group_egress_is_open(fleet: Fleet) -> None:
    (rule,) = [r for r in fleet.security_group()["IpPermissionsEgress"] if r.get("IpRanges")]
    assert rule["IpProtocol"] == "-1"
    assert [r["CidrIp"] for r in rule["IpRanges"]] == ["0.0.0.0/0"]


def test_security_group_is_in_the_vpc(fleet: Fleet) -> None:
    vpc, _ = default_network(fleet.ec2)
    assert fleet.security_group()["VpcId"] == vpc
