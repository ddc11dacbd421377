"""Bad input to `invoke launch` (and friends) through the real CLI: one line on stderr, a
non-zero exit, no traceback, and nothing applied: no fleet resource in the emulator and no
working folder (so no terraform state) written."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import boto3
import pytest
from cli import invoke, one_line_error
from launch_support import IMAGE, NOTHING, cli_env, fleet_resources
from tooling import require_tool, use_emulator
from verify_support import register_ami

from bakery import catalog, tools

pytestmark = [pytest.mark.emulator]

KNOWN = "deepseek-r1-7b, deepseek-r1-7b-ubuntu2404"
NO_AMI = (
    f"error: no AMI of {IMAGE} in us-east-1 yet: bake and verify one first"
    f" (invoke bake --image {IMAGE}, then invoke verify --image {IMAGE})"
)


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


def nothing_applied(state_dir: Path) -> None:
    assert fleet_resources() == NOTHING
    assert not state_dir.exists(), sorted(str(p) for p in state_dir.rglob("*"))


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--local"], f"error: --image is required (images: {KNOWN})"),
        (
            ["--image", "nope", "--local"],
            f"error: images/nope.toml: no such image definition (images: {KNOWN})",
        ),
        (
            ["--image", IMAGE, "--local", "--allow-cidr", "203.0.113.0/33"],
            "error: --allow-cidr '203.0.113.0/33' is not an IPv4 network (e.g. 203.0.113.0/24, or an"
            " address for a /32)",
        ),
        (
            ["--image", IMAGE, "--local", "--allow-cidr", "203.0.113.9/24"],
            "error: --allow-cidr '203.0.113.9/24' has host bits set: the network is 203.0.113.0/24",
        ),
        (
            [
                "--image",
                IMAGE,
                "--local",
                "--allow-cidr",
                "203.0.113.0/24",
                "--allow-cidr",
                "0.0.0.0/0",
            ],
            "error: --allow-cidr 0.0.0.0/0 would open the UI to the whole internet, and it has no"
            " authentication: name narrower networks, put sign-in in front (--certificate-arn and"
            " the --oidc-* options), or add --yes-public if you mean it",
        ),
        (
            ["--image", IMAGE, "--local", "--yes-public"],
            "error: --yes-public applies only with --allow-cidr 0.0.0.0/0",
        ),
        (
            ["--image", IMAGE, "--local", "--capacity", "two"],
            "error: --capacity 'two' is not a whole number of instances",
        ),
        (
            ["--image", IMAGE, "--local", "--subnet", "default"],
            "error: --subnet 'default' is not a subnet ID (subnet- and 8 or 17 hex digits)",
        ),
        (
            ["--image", IMAGE, "--local", "--wait-minutes", "soon"],
            "error: --wait-minutes 'soon' is not a whole number of minutes",
        ),
    ],
    ids=[
        "no-image",
        "unknown-image",
        "malformed-cidr",
        "host-bits",
        "world-without-yes-public",
        "yes-public-alone",
        "capacity",
        "subnet",
        "wait-minutes",
    ],
)
def test_bad_option(emulator: str, state_dir: Path, args: list[str], expected: str) -> None:
    register_ami(**{catalog.VERIFICATION: catalog.PASSED})  # so only the option is wrong
    assert one_line_error(invoke("launch", *args, env=cli_env(state_dir))) == expected
    nothing_applied(state_dir)


def test_no_ami(emulator: str, state_dir: Path) -> None:
    assert one_line_error(
        invoke("launch", "--image", IMAGE, "--local", env=cli_env(state_dir))
    ) == (NO_AMI)
    nothing_applied(state_dir)


def test_unverified_ami_is_refused(emulator: str, state_dir: Path) -> None:
    ami = register_ami()
    line = one_line_error(invoke("launch", "--image", IMAGE, "--local", env=cli_env(state_dir)))
    assert line == (
        f"error: no verified AMI of {IMAGE} in us-east-1: the newest, {ami}, is not verified;"
        f" verify it (invoke verify --image {IMAGE}), or pass --allow-unverified to launch it anyway"
    )
    nothing_applied(state_dir)


def test_failed_ami_is_refused_with_its_reason(emulator: str, state_dir: Path) -> None:
    ami = register_ami(
        **{catalog.VERIFICATION: catalog.FAILED, "bakery:verify-failure": "test_gpu_name: no GPU"}
    )
    line = one_line_error(invoke("launch", "--image", IMAGE, "--local", env=cli_env(state_dir)))
    assert line.startswith(
        f"error: no verified AMI of {IMAGE} in us-east-1: the newest, {ami}, failed verification"
        " (test_gpu_name: no GPU);"
    )
    nothing_applied(state_dir)


def test_subnet_that_does_not_exist(emulator: str, state_dir: Path) -> None:
    register_ami(**{catalog.VERIFICATION: catalog.PASSED})
    args = ["--image", IMAGE, "--local", "--subnet", "subnet-0123456789abcdef0"]
    assert one_line_error(invoke("launch", *args, env=cli_env(state_dir))) == (
        "error: --subnet subnet-0123456789abcdef0: no such subnet in us-east-1"
    )
    nothing_applied(state_dir)


def test_emulator_without_aws_managed_policies(
    emulator: str, state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MOTO_IAM_LOAD_MANAGED_POLICIES", raising=False)
    use_emulator(monkeypatch, emulator)
    register_ami(**{catalog.VERIFICATION: catalog.PASSED})
    line = one_line_error(invoke("launch", "--image", IMAGE, "--local", env=cli_env(state_dir)))
    assert line == (
        f"error: the emulator at {emulator} has no AWS managed policies, and the fleet's role"
        " attaches AmazonSSMManagedInstanceCore: start it with MOTO_IAM_LOAD_MANAGED_POLICIES=true"
    )
    nothing_applied(state_dir)


def test_an_emulator_started_for_the_task_starts_empty(no_aws: None, state_dir: Path) -> None:
    line = one_line_error(invoke("launch", "--image", IMAGE, "--local", env=cli_env(state_dir)))
    assert line.startswith(NO_AMI + "; the emulator started for this task starts empty:")
    assert not state_dir.exists()


def test_terraform_missing(emulator: str, state_dir: Path, tmp_path: Path) -> None:
    # TERRAFORM names one that is not there: the checkout's .tools/bin may hold a tofu, so
    # "found nowhere" is tests/unit/test_tools.py's.
    register_ami(**{catalog.VERIFICATION: catalog.PASSED})
    env = cli_env(state_dir, TERRAFORM=str(tmp_path / "tofu"))
    line = one_line_error(invoke("launch", "--image", IMAGE, "--local", env=env))
    assert line == (
        f"error: TERRAFORM={tmp_path / 'tofu'} is not an executable file: fix it, or unset"
        f" TERRAFORM to use the newest terraform on PATH or in {tools.TOOLS_BIN}"
    )
    nothing_applied(state_dir)


# -- the other tasks, with nothing launched -------------------------------------------------------


def test_status_with_nothing_launched(emulator: str, state_dir: Path) -> None:
    result = invoke("status", "--image", IMAGE, "--local", env=cli_env(state_dir))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1].startswith(
        f"status: nothing launched for {IMAGE} in us-east-1 (no fleet in "
    )
    assert not state_dir.exists()


def test_destroy_with_nothing_launched(emulator: str, state_dir: Path) -> None:
    result = invoke("destroy", "--image", IMAGE, "--local", env=cli_env(state_dir))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1].startswith(
        f"destroy: nothing launched for {IMAGE} in us-east-1 (no fleet in "
    )
    assert not state_dir.exists()


def test_connect_with_nothing_launched(emulator: str, state_dir: Path) -> None:
    line = one_line_error(invoke("connect", "--image", IMAGE, "--local", env=cli_env(state_dir)))
    assert line.startswith(f"error: nothing launched for {IMAGE} in us-east-1 (no fleet in ")
    assert line.endswith(f": invoke launch --image {IMAGE} --local first")


@pytest.mark.parametrize(
    ("task", "args", "expected"),
    [
        (
            "status",
            ["--image", "nope"],
            f"error: images/nope.toml: no such image definition (images: {KNOWN})",
        ),
        ("destroy", [], f"error: --image is required (images: {KNOWN})"),
        (
            "connect",
            ["--image", IMAGE, "--local-port", "0"],
            "error: --local-port 0 is not a port number (1 to 65535)",
        ),
    ],
    ids=["status-unknown-image", "destroy-no-image", "connect-bad-port"],
)
def test_other_tasks_bad_input(
    emulator: str, state_dir: Path, task: str, args: list[str], expected: str
) -> None:
    assert one_line_error(invoke(task, *args, "--local", env=cli_env(state_dir))) == expected


# -- connect without the Session Manager plugin -----------------------------------------------------


def test_connect_without_the_session_manager_plugin(emulator: str, tmp_path: Path) -> None:
    """A fleet as launch leaves it on AWS (not --local): a state file in the working folder and
    an Auto Scaling group with an instance in service. boto3 reaches the emulator through
    AWS_ENDPOINT_URL; the PATH has the AWS CLI but not session-manager-plugin."""
    ec2, autoscaling = boto3.client("ec2"), boto3.client("autoscaling")
    stock = ec2.describe_images(
        Owners=["amazon"], Filters=[{"Name": "name", "Values": ["amzn2-ami-hvm-*"]}]
    )["Images"][0]["ImageId"]
    ec2.create_launch_template(
        LaunchTemplateName=IMAGE, LaunchTemplateData={"ImageId": stock, "InstanceType": "g5.xlarge"}
    )
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName=IMAGE,
        LaunchTemplate={"LaunchTemplateName": IMAGE, "Version": "$Latest"},
        MinSize=1,
        MaxSize=1,
        DesiredCapacity=1,
        AvailabilityZones=["us-east-1a"],
    )
    [member] = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[IMAGE])[
        "AutoScalingGroups"
    ][0]["Instances"]
    work = tmp_path / "state" / "launch" / IMAGE / "us-east-1"
    work.mkdir(parents=True)
    (work / "terraform.tfstate").write_text(
        json.dumps(
            {
                "version": 4,
                "terraform_version": "1.11.4",
                "serial": 1,
                "lineage": "00000000-0000-0000-0000-000000000000",
                "outputs": {
                    "fleet": {
                        "value": {"autoscaling_group_name": IMAGE},
                        "type": ["object", {"autoscaling_group_name": "string"}],
                    }
                },
                "resources": [
                    {
                        "module": "module.fleet",
                        "mode": "managed",
                        "type": "aws_autoscaling_group",
                        "name": "this",
                        "provider": 'provider["registry.terraform.io/hashicorp/aws"]',
                        "instances": [],
                    }
                ],
                "check_results": None,
            }
        )
    )
    aws_cli = tmp_path / "bin" / "aws"
    aws_cli.parent.mkdir()
    aws_cli.write_text("#!/bin/sh\nexit 0\n")
    aws_cli.chmod(0o755)
    terraform = str(Path(require_tool("terraform")).resolve().parent)
    path = os.pathsep.join(
        [str(aws_cli.parent), str(Path(sys.executable).parent), terraform, "/usr/bin", "/bin"]
    )
    result = invoke("connect", "--image", IMAGE, env=cli_env(tmp_path / "state", PATH=path))
    line = one_line_error(result)
    assert line == (
        "error: session-manager-plugin not on PATH: install the AWS CLI and its Session Manager"
        " plugin, then run the command above"
    )
    assert result.stdout.splitlines()[-1] == (
        f"connect: aws ssm start-session --region us-east-1 --target {member['InstanceId']}"
        " --document-name AWS-StartPortForwardingSession --parameters"
        ' \'{"portNumber":["3000"],"localPortNumber":["3000"]}\''
    )
