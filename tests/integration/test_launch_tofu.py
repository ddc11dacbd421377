"""OpenTofu as the tool's Terraform: `invoke launch --local` and `invoke destroy --local` with
TERRAFORM pointing at a real tofu, its AWS provider from the same mirror as Terraform's (which
holds it under registry.terraform.io, while tofu asks for registry.opentofu.org).

The rest of the launch tests run Terraform; this one story runs tofu, once.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import boto3
import pytest
from cli import invoke
from launch_support import (
    FLEET,
    IMAGE,
    NOTHING,
    cli_env,
    fleet_resources,
    work_dir,
)
from tooling import NO_TOFU, tofu, use_emulator
from verify_support import register_ami

from bakery import catalog

pytestmark = [pytest.mark.emulator, pytest.mark.terraform, pytest.mark.slow]


@dataclass
class Story:
    ami: str
    launched: subprocess.CompletedProcess[str]
    lock_file: str
    launched_ami: str  # what the group's launch template launches
    destroyed: subprocess.CompletedProcess[str]
    left: dict[str, list[str]]


@pytest.fixture(scope="module")
def story(emulator_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Story]:
    binary = tofu()
    if binary is None:
        pytest.skip(NO_TOFU)
    state_dir = tmp_path_factory.mktemp("tofu-state")
    env = cli_env(state_dir, TERRAFORM=binary)
    with pytest.MonkeyPatch.context() as mp:
        use_emulator(mp, emulator_server, managed_policies=True)
        ami = register_ami(**{catalog.VERIFICATION: catalog.PASSED})
        launched = invoke("launch", "--image", IMAGE, "--local", env=env)
        assert launched.returncode == 0, launched.stdout[-3000:] + launched.stderr
        lock_file = (work_dir(state_dir) / ".terraform.lock.hcl").read_text()
        [group] = boto3.client("autoscaling").describe_auto_scaling_groups(
            AutoScalingGroupNames=[FLEET]
        )["AutoScalingGroups"]
        spec = group["MixedInstancesPolicy"]["LaunchTemplate"]["LaunchTemplateSpecification"]
        [version] = boto3.client("ec2").describe_launch_template_versions(
            LaunchTemplateId=spec["LaunchTemplateId"], Versions=[str(spec["Version"])]
        )["LaunchTemplateVersions"]
        destroyed = invoke("destroy", "--image", IMAGE, "--local", env=env)
        yield Story(
            ami,
            launched,
            lock_file,
            version["LaunchTemplateData"]["ImageId"],
            destroyed,
            fleet_resources(),
        )


def test_launch_runs_tofu(story: Story) -> None:
    assert "OpenTofu has been successfully initialized!" in story.launched.stdout


def test_tofu_installs_the_aws_provider_under_its_own_registry(story: Story) -> None:
    assert 'provider "registry.opentofu.org/hashicorp/aws"' in story.lock_file


def test_the_group_launches_the_verified_ami(story: Story) -> None:
    assert story.launched_ami == story.ami


def test_destroy_with_tofu_leaves_nothing(story: Story) -> None:
    assert story.destroyed.returncode == 0, story.destroyed.stdout[-3000:] + story.destroyed.stderr
    assert "OpenTofu has been successfully initialized!" in story.destroyed.stdout
    assert story.left == NOTHING
