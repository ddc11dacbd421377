"""`invoke launch/status/connect/destroy --local` as a user runs them, against the emulator,
with the real terraform and AWS provider: bake, launch with the UI closed, status, launch
again with one CIDR allowed, then with 0.0.0.0/0 and --yes-public, connect, destroy (with the
AMI gone), destroy again.

The fixture runs that story once (each terraform run takes seconds) and records what the
emulator holds after each step; the tests read those records, one check each.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from cli import invoke
from launch_support import (
    FLEET,
    IMAGE,
    NOTHING,
    UI_CIDR,
    cli_env,
    fleet_resources,
    tags,
    work_dir,
)
from tooling import require_tool, use_emulator

from bakery import catalog, config

pytestmark = [pytest.mark.emulator, pytest.mark.terraform, pytest.mark.packer, pytest.mark.slow]

UI_PORT = config.load(IMAGE).ui.port
OLLAMA_PORT = 11434


@dataclass
class Step:
    """One launch and what the emulator and the working folder held after it."""

    result: subprocess.CompletedProcess[str]
    group: dict[str, Any] | None = None
    template: dict[str, Any] | None = None  # the version the group launches
    template_tags: dict[str, str] = field(default_factory=dict)
    security_group: dict[str, Any] | None = None
    role_tags: dict[str, str] = field(default_factory=dict)
    instances: list[dict[str, Any]] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    tfvars: dict[str, Any] = field(default_factory=dict)


@dataclass
class Story:
    ami: str
    closed: Step
    status: subprocess.CompletedProcess[str]
    opened: Step
    public: Step
    connect: subprocess.CompletedProcess[str]
    destroyed: subprocess.CompletedProcess[str]
    left: dict[str, list[str]]
    folder_left: bool
    destroyed_again: subprocess.CompletedProcess[str]


def record(result: subprocess.CompletedProcess[str], work: Path) -> Step:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    ec2, autoscaling, iam = boto3.client("ec2"), boto3.client("autoscaling"), boto3.client("iam")
    step = Step(result)
    [step.group] = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[FLEET])[
        "AutoScalingGroups"
    ]
    spec = step.group["MixedInstancesPolicy"]["LaunchTemplate"]["LaunchTemplateSpecification"]
    [step.template] = ec2.describe_launch_template_versions(
        LaunchTemplateId=spec["LaunchTemplateId"], Versions=[str(spec["Version"])]
    )["LaunchTemplateVersions"]
    [template] = ec2.describe_launch_templates(LaunchTemplateIds=[spec["LaunchTemplateId"]])[
        "LaunchTemplates"
    ]
    step.template_tags = tags(template)
    [step.security_group] = ec2.describe_security_groups(
        Filters=[
            {"Name": "tag:Name", "Values": [FLEET]},
            {"Name": "tag:bakery:image", "Values": [IMAGE]},
        ]
    )["SecurityGroups"]
    [role] = [r for r in iam.list_roles()["Roles"] if r["RoleName"].startswith(f"{FLEET}-")]
    step.role_tags = tags(iam.get_role(RoleName=role["RoleName"])["Role"])
    ids = [i["InstanceId"] for i in step.group["Instances"]]
    if ids:
        reservations = ec2.describe_instances(InstanceIds=ids)["Reservations"]
        step.instances = [i for r in reservations for i in r["Instances"]]
    step.files = sorted(p.name for p in work.iterdir())
    step.tfvars = json.loads((work / "terraform.auto.tfvars.json").read_text())
    return step


@pytest.fixture(scope="module")
def story(emulator_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Story]:
    require_tool("terraform")
    require_tool("packer")
    state_dir = tmp_path_factory.mktemp("launch-state")
    env = cli_env(state_dir)
    work = work_dir(state_dir)
    with pytest.MonkeyPatch.context() as mp:
        use_emulator(mp, emulator_server, managed_policies=True)

        baked = invoke("bake", "--image", IMAGE, "--local", env=env)
        assert baked.returncode == 0, baked.stdout + baked.stderr
        ec2 = boto3.client("ec2")
        [ami] = ec2.describe_images(Owners=["self"])["Images"]
        # Stands in for `invoke verify` on a GPU instance, which cannot run behind the emulator:
        # the AMI is tagged as a passed verification tags it.
        catalog.mark_verification(
            ec2,
            ami,
            True,
            {"bakery:verified-at": "2025-06-01T00:00:00Z", "bakery:verify-gpu": "A10G"},
        )

        closed = record(invoke("launch", "--image", IMAGE, "--local", env=env), work)
        status = invoke("status", "--image", IMAGE, "--local", env=env)
        opened = record(
            invoke("launch", "--image", IMAGE, "--local", "--allow-cidr", UI_CIDR, env=env), work
        )
        public = record(
            invoke(
                "launch",
                *("--image", IMAGE, "--local", "--allow-cidr", "0.0.0.0/0", "--yes-public"),
                env=env,
            ),
            work,
        )
        connect = invoke("connect", "--image", IMAGE, "--local", env=env)
        # As if prune had removed the AMI since: destroy must not need it any more.
        ec2.deregister_image(ImageId=ami["ImageId"])
        destroyed = invoke("destroy", "--image", IMAGE, "--local", env=env)
        left = fleet_resources()
        folder_left = work.exists()
        again = invoke("destroy", "--image", IMAGE, "--local", env=env)
        yield Story(
            ami["ImageId"],
            closed,
            status,
            opened,
            public,
            connect,
            destroyed,
            left,
            folder_left,
            again,
        )


# -- the first launch: the UI closed -----------------------------------------------------------


def test_launch_takes_the_verified_ami(story: Story) -> None:
    assert story.closed.template["LaunchTemplateData"]["ImageId"] == story.ami
    assert f"launch: {IMAGE} in us-east-1: {story.ami} (" in story.closed.result.stdout
    assert "verified), models deepseek-r1:7b" in story.closed.result.stdout


def test_group_is_all_spot(story: Story) -> None:
    distribution = story.closed.group["MixedInstancesPolicy"]["InstancesDistribution"]
    assert distribution["OnDemandBaseCapacity"] == 0
    assert distribution["OnDemandPercentageAboveBaseCapacity"] == 0


def test_group_spans_the_definitions_gpu_types(story: Story) -> None:
    overrides = story.closed.group["MixedInstancesPolicy"]["LaunchTemplate"]["Overrides"]
    types = [o["InstanceType"] for o in overrides]
    assert types == list(config.load(IMAGE).launch.instance_types)
    assert len(set(types)) >= 2
    assert all(config.gpu_name(t) for t in types)


def test_group_rebalances_capacity(story: Story) -> None:
    assert story.closed.group["CapacityRebalance"] is True


def test_capacity_defaults_to_one(story: Story) -> None:
    group = story.closed.group
    assert (group["MinSize"], group["DesiredCapacity"], group["MaxSize"]) == (1, 1, 1)


def test_template_requires_imdsv2(story: Story) -> None:
    assert (
        story.closed.template["LaunchTemplateData"]["MetadataOptions"]["HttpTokens"] == "required"
    )


def test_template_volume_is_encrypted(story: Story) -> None:
    [mapping] = story.closed.template["LaunchTemplateData"]["BlockDeviceMappings"]
    assert mapping["Ebs"]["Encrypted"] is True


def test_template_volume_initializes_at_the_definitions_rate(story: Story) -> None:
    """launch.volume_initialization_rate (300) reaches the launch template through the
    provider: a fleet instance's volume is read at that rate from its snapshot, not lazily."""
    [mapping] = story.closed.template["LaunchTemplateData"]["BlockDeviceMappings"]
    assert mapping["Ebs"]["VolumeInitializationRate"] == 300


def test_security_group_has_no_ingress(story: Story) -> None:
    assert story.closed.security_group["IpPermissions"] == []


@pytest.mark.parametrize("resource", ["group", "template", "security group", "role"])
def test_every_resource_carries_the_tools_tags(story: Story, resource: str) -> None:
    found = {
        "group": {t["Key"]: t["Value"] for t in story.closed.group["Tags"]},
        "template": story.closed.template_tags,
        "security group": tags(story.closed.security_group),
        "role": story.closed.role_tags,
    }[resource]
    expected = {
        "bakery:managed-by": "gpu-ami-bakery",
        "bakery:image": IMAGE,
        **config.load(IMAGE).tags,
    }
    assert expected.items() <= found.items()


def test_launch_prints_the_session_manager_command(story: Story) -> None:
    [instance] = story.closed.instances
    assert (
        f"  aws ssm start-session --region us-east-1 --target {instance['InstanceId']}"
        " --document-name AWS-StartPortForwardingSession --parameters"
        f' \'{{"portNumber":["{UI_PORT}"],"localPortNumber":["{UI_PORT}"]}}\''
    ) in story.closed.result.stdout.splitlines()


def test_launch_says_what_local_mode_did_not_do(story: Story) -> None:
    out = story.closed.result.stdout
    assert "local: no instance really boots behind the emulator" in out
    assert "local: root_volume_size = " in out


def test_working_folder(story: Story) -> None:
    assert {"main.tf", "terraform.auto.tfvars.json", "terraform.tfstate"} <= set(story.closed.files)
    assert story.closed.tfvars["ui_ingress_cidrs"] == []
    assert story.closed.tfvars["require_verified"] is True


def test_status(story: Story) -> None:
    assert story.status.returncode == 0, story.status.stderr
    lines = story.status.stdout.splitlines()
    [instance] = story.closed.instances
    assert (
        f"  group        {FLEET}: 1 of 1 in service (min 1, max 1), all spot across"
        in "\n".join(lines)
    )
    assert any(ln.startswith(f"  instance     {instance['InstanceId']}  ") for ln in lines)
    assert any(
        ln.startswith(f"  ami          {story.ami} (") and ln.endswith(", verified") for ln in lines
    )


# -- the second launch: one CIDR allowed ----------------------------------------------------------


def test_allow_cidr_opens_the_ui_port_to_that_cidr_only(story: Story) -> None:
    [rule] = story.opened.security_group["IpPermissions"]
    assert (rule["IpProtocol"], rule["FromPort"], rule["ToPort"]) == ("tcp", UI_PORT, UI_PORT)
    assert [r["CidrIp"] for r in rule["IpRanges"]] == [UI_CIDR]
    assert rule.get("Ipv6Ranges", []) == []


@pytest.mark.parametrize("step", ["closed", "opened", "public"])
def test_ollamas_port_is_never_open(story: Story, step: str) -> None:
    rules = getattr(story, step).security_group["IpPermissions"]
    assert not [r for r in rules if r.get("FromPort", 0) <= OLLAMA_PORT <= r.get("ToPort", -1)]


def test_allow_cidr_prints_the_ui_url(story: Story) -> None:
    [instance] = story.opened.instances
    lines = story.opened.result.stdout.splitlines()
    assert f"the UI (no authentication; open to {UI_CIDR}):" in lines
    assert f"  http://{instance['PublicIpAddress']}:{UI_PORT}  ({instance['InstanceId']})" in lines
    assert story.opened.tfvars["ui_ingress_cidrs"] == [UI_CIDR]


# -- the third launch: the whole internet, asked for in so many words -------------------------------


def test_yes_public_opens_the_ui_port_to_anywhere_and_nothing_else(story: Story) -> None:
    [rule] = story.public.security_group["IpPermissions"]
    assert (rule["IpProtocol"], rule["FromPort"], rule["ToPort"]) == ("tcp", UI_PORT, UI_PORT)
    assert [r["CidrIp"] for r in rule["IpRanges"]] == ["0.0.0.0/0"]
    assert (story.public.tfvars["ui_ingress_cidrs"], story.public.tfvars["ui_public_ingress"]) == (
        [],
        True,
    )


def test_yes_public_says_the_ui_has_no_authentication(story: Story) -> None:
    assert (
        f"launch: --yes-public: the UI on port {UI_PORT} will be open to the whole internet, and it"
        " has no authentication: anyone who finds the address can use the GPUs and make Ollama"
        " pull models"
    ) in story.public.result.stdout.splitlines()


def test_connect_local_prints_the_command_it_would_run(story: Story) -> None:
    assert story.connect.returncode == 0, story.connect.stderr
    [instance] = story.opened.instances
    assert (
        f"connect: aws ssm start-session --region us-east-1 --target {instance['InstanceId']}"
        in (story.connect.stdout)
    )
    assert "local: no instance runs behind the emulator, so no session was started" in (
        story.connect.stdout
    )


# -- destroy ----------------------------------------------------------------------------------


def test_destroy_succeeds_even_with_the_ami_gone(story: Story) -> None:
    assert story.destroyed.returncode == 0, story.destroyed.stdout[-3000:] + story.destroyed.stderr
    assert f"destroy: nothing of {IMAGE}'s fleet is left in us-east-1" in story.destroyed.stdout


def test_destroy_leaves_nothing(story: Story) -> None:
    assert story.left == NOTHING


def test_destroy_removes_the_working_folder(story: Story) -> None:
    assert not story.folder_left


def test_destroy_again_says_nothing_is_launched(story: Story) -> None:
    assert story.destroyed_again.returncode == 0, story.destroyed_again.stderr
    assert f"destroy: nothing launched for {IMAGE} in us-east-1 (no fleet in " in (
        story.destroyed_again.stdout
    )
