"""What the launch tests share: the emulator set up for the fleet module, the CLI's
environment, and what of a fleet the emulator holds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3

IMAGE = "deepseek-r1-7b"
FLEET = IMAGE  # the fleet is named after its image
UI_CIDR = "203.0.113.0/24"
BACKEND_VARIABLES = (
    "BAKERY_TF_BACKEND_BUCKET",
    "BAKERY_TF_BACKEND_KEY_PREFIX",
    "BAKERY_TF_BACKEND_REGION",
    "BAKERY_TF_BACKEND_DYNAMODB_TABLE",
)


def cli_env(state_dir: Path, **extra: str) -> dict[str, str]:
    """The CLI's environment: working folders under state_dir, no S3 backend unless given."""
    return {"BAKERY_STATE_DIR": str(state_dir), **dict.fromkeys(BACKEND_VARIABLES, ""), **extra}


def work_dir(state_dir: Path) -> Path:
    return state_dir / "local" / "launch" / IMAGE / "us-east-1"


def fleet_resources() -> dict[str, list[str]]:
    """What of the fleet module's resources the emulator holds."""
    ec2, autoscaling, iam = boto3.client("ec2"), boto3.client("autoscaling"), boto3.client("iam")
    groups = autoscaling.describe_auto_scaling_groups()["AutoScalingGroups"]
    security_groups = ec2.describe_security_groups()["SecurityGroups"]
    live = ec2.describe_instances(
        Filters=[
            {"Name": "tag:aws:autoscaling:groupName", "Values": [FLEET]},
            {
                "Name": "instance-state-name",
                "Values": ["pending", "running", "stopping", "stopped"],
            },
        ]
    )["Reservations"]
    return {
        "autoscaling groups": [g["AutoScalingGroupName"] for g in groups],
        "launch templates": [
            t["LaunchTemplateName"] for t in ec2.describe_launch_templates()["LaunchTemplates"]
        ],
        "security groups": [g["GroupId"] for g in security_groups if g["GroupName"] != "default"],
        "iam roles": [
            r["RoleName"]
            for r in iam.list_roles()["Roles"]
            if r["RoleName"].startswith(f"{FLEET}-")
        ],
        "instance profiles": [
            p["InstanceProfileName"]
            for p in iam.list_instance_profiles()["InstanceProfiles"]
            if p["InstanceProfileName"].startswith(f"{FLEET}-")
        ],
        "instances": [i["InstanceId"] for r in live for i in r["Instances"]],
    }


NOTHING = {
    "autoscaling groups": [],
    "launch templates": [],
    "security groups": [],
    "iam roles": [],
    "instance profiles": [],
    "instances": [],
}


def tags(resource: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource.get("Tags", [])}
