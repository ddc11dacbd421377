"""The S3 backend (BAKERY_TF_BACKEND_BUCKET) with --local: the state goes to the emulator's S3,
not to the working folder; launch, status and destroy all find it there. The AMI is
unverified, so this is also --allow-unverified carried through to a real apply."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from cli import invoke
from launch_support import (
    IMAGE,
    NOTHING,
    cli_env,
    fleet_resources,
    work_dir,
)
from tooling import require_tool, use_emulator
from verify_support import register_ami

pytestmark = [pytest.mark.emulator, pytest.mark.terraform, pytest.mark.slow]

BUCKET = "acme-tf-state"
KEY = f"gpu-ami-bakery/launch/{IMAGE}/us-east-1/terraform.tfstate"


@dataclass
class Story:
    ami: str
    launched: subprocess.CompletedProcess[str]
    state_after_launch: dict[str, Any]
    local_files: list[str]
    groups: list[str]
    status: subprocess.CompletedProcess[str]
    destroyed: subprocess.CompletedProcess[str]
    state_after_destroy: dict[str, Any]
    left: dict[str, list[str]]


def state_in_s3() -> dict[str, Any]:
    return json.loads(boto3.client("s3").get_object(Bucket=BUCKET, Key=KEY)["Body"].read())


@pytest.fixture(scope="module")
def story(emulator_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Story]:
    require_tool("terraform")
    state_dir = tmp_path_factory.mktemp("launch-s3")
    env = cli_env(state_dir, BAKERY_TF_BACKEND_BUCKET=BUCKET)
    with pytest.MonkeyPatch.context() as mp:
        use_emulator(mp, emulator_server, managed_policies=True)
        ami = register_ami()  # finished, not verified
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        args = ["--image", IMAGE, "--local"]
        launched = invoke("launch", *args, "--allow-unverified", "--capacity", "0", env=env)
        assert launched.returncode == 0, launched.stdout[-3000:] + launched.stderr
        after_launch = state_in_s3()
        local_files = sorted(p.name for p in work_dir(state_dir).iterdir())
        groups = [
            g["AutoScalingGroupName"]
            for g in boto3.client("autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"]
        ]
        status = invoke("status", *args, env=env)
        destroyed = invoke("destroy", *args, env=env)
        yield Story(
            ami,
            launched,
            after_launch,
            local_files,
            groups,
            status,
            destroyed,
            state_in_s3(),
            fleet_resources(),
        )


def test_launch_says_the_ami_is_unverified(story: Story) -> None:
    assert (
        f"launch: {story.ami} is not verified; launching it anyway (--allow-unverified): nothing"
        " has proven that it serves on a GPU"
    ) in story.launched.stdout.splitlines()


def test_the_state_is_in_s3(story: Story) -> None:
    assert story.state_after_launch["outputs"]["fleet"]["value"]["ami_id"] == story.ami
    assert f"state s3://{BUCKET}/{KEY}" in story.launched.stdout


def test_no_state_in_the_working_folder(story: Story) -> None:
    assert "terraform.tfstate" not in story.local_files
    assert "main.tf" in story.local_files


def test_the_fleet_was_applied(story: Story) -> None:
    assert story.groups == [IMAGE]


def test_status_reads_the_state_from_s3(story: Story) -> None:
    assert story.status.returncode == 0, story.status.stderr
    assert f"status: {IMAGE} in us-east-1 (state s3://{BUCKET}/{KEY})" in story.status.stdout
    assert f"  group        {IMAGE}: 0 of 0 in service (min 0, max 0)" in story.status.stdout


def test_destroy_empties_the_state_and_leaves_nothing(story: Story) -> None:
    assert story.destroyed.returncode == 0, story.destroyed.stdout[-3000:] + story.destroyed.stderr
    assert story.state_after_destroy["resources"] == []
    assert story.left == NOTHING
