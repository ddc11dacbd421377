"""What the verify tests share: an AMI in the emulator, fake suites, and what is left running."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3

from bakery import catalog

IMAGE = "deepseek-r1-7b"
DIGEST = "a" * 64


def register_ami(image: str = IMAGE, *, digest: str = "unknown", **extra: str) -> str:
    """A finished AMI of the image in the emulator, tagged as a bake tags it."""
    ec2 = boto3.client("ec2")
    stock = ec2.describe_images(  # a filtered look-up: listing all 1300 stock AMIs takes seconds
        Owners=["amazon"], Filters=[{"Name": "name", "Values": ["amzn2-ami-hvm-*"]}]
    )["Images"][0]["ImageId"]
    instance = ec2.run_instances(ImageId=stock, InstanceType="c6i.xlarge", MinCount=1, MaxCount=1)[
        "Instances"
    ][0]["InstanceId"]
    ami = ec2.create_image(InstanceId=instance, Name=f"bakery-{image}-test")["ImageId"]
    ec2.terminate_instances(InstanceIds=[instance])
    tags = catalog.tool_tags(
        image,
        **{
            catalog.FINGERPRINT: "f" * 64,
            catalog.MODEL + "deepseek-r1:7b": digest,
            catalog.PROVISIONED: "true",
            catalog.RUN_ID: "bake-run",
        },
    )
    ec2.create_tags(Resources=[ami], Tags=catalog.tag_list(tags | extra))
    return ami


def ami_tags(ami: str) -> dict[str, str]:
    return catalog.tags_of(boto3.client("ec2").describe_images(ImageIds=[ami])["Images"][0])


def verify_tags(ami: str) -> dict[str, str]:
    """The AMI's verification tags only."""
    return {
        k: v
        for k, v in ami_tags(ami).items()
        if k == catalog.VERIFICATION or k in catalog.VERIFY_TAGS
    }


def leftovers() -> dict[str, list[str]]:
    """What a verify run may create, still there: live instances, key pairs, our groups."""
    ec2 = boto3.client("ec2")
    return {
        "instances": [
            i["InstanceId"]
            for r in ec2.describe_instances()["Reservations"]
            for i in r["Instances"]
            if i["State"]["Name"] != "terminated"
        ],
        "key_pairs": [k["KeyName"] for k in ec2.describe_key_pairs()["KeyPairs"]],
        "security_groups": [
            g["GroupId"]
            for g in ec2.describe_security_groups()["SecurityGroups"]
            if g["GroupName"] != "default"
        ],
        "volumes": [
            v["VolumeId"]
            for v in ec2.describe_volumes()["Volumes"]
            if any(t["Key"] == catalog.MANAGED_BY for t in v.get("Tags", []))
        ],
    }


NOTHING_LEFT = {"instances": [], "key_pairs": [], "security_groups": [], "volumes": []}


def option(command: list[str], name: str) -> str:
    return next(a.split("=", 1)[1] for a in command if a.startswith(f"--{name}="))


def junit(cases: list[tuple[str, str, str | None, str]]) -> str:
    """A pytest-like JUnit report; each case (module, name, outcome or None, message)."""
    body = []
    counts = {"failure": 0, "error": 0, "skipped": 0}
    for module, name, outcome, message in cases:
        inner = ""
        if outcome:
            counts[outcome] += 1
            inner = f'<{outcome} message="{message}">{message}\ndetail line</{outcome}>'
        body.append(f'<testcase classname="{module}" name="{name}" time="0.1">{inner}</testcase>')
    return (
        '<?xml version="1.0" encoding="utf-8"?><testsuites name="pytest tests">'
        f'<testsuite name="pytest" errors="{counts["error"]}" failures="{counts["failure"]}"'
        f' skipped="{counts["skipped"]}" tests="{len(cases)}" time="1.0">'
        + "".join(body)
        + "</testsuite></testsuites>"
    )


PASSING = [
    ("tests.image.test_image_gpu", "test_gpu_name", None, ""),
    ("tests.image.test_image_ollama", "test_ollama_version", None, ""),
]
FAILING = [
    ("tests.image.test_image_gpu", "test_gpu_name", None, ""),
    (
        "tests.image.test_image_ollama",
        "test_ollama_version",
        "failure",
        "AssertionError: ollama 0.12.0 is not 0.13.1",
    ),
    ("tests.image.test_image_ui", "test_ui_answers", "failure", "AssertionError: no answer"),
]
TIMINGS = {
    "boot_to_ollama_ready_s": 38.2,
    "cold_load_s": 131,
    "ttft_s": 0.412,
    "tokens_per_s": 92.34,
    "gpu_name": "NVIDIA A10G",
}


class FakeSuite:
    """Stands in for pytest tests/image: writes the report and timings it is given, and
    remembers what it saw while the instance existed."""

    def __init__(self, cases: list[tuple[str, str, str | None, str]], returncode: int = 0) -> None:
        self.cases, self.returncode = cases, returncode
        self.command: list[str] = []
        self.seen: dict[str, Any] = {}

    def __call__(self, command: list[str], timeout_s: float) -> int:
        self.command = command
        key = Path(option(command, "ssh-identity-file"))
        self.seen = {
            "key_mode": oct(key.stat().st_mode & 0o777),
            "key_text": key.read_text().splitlines()[0],
            "expect": json.loads(Path(option(command, "expect")).read_text()),
            "running": [
                i["InstanceId"]
                for r in boto3.client("ec2").describe_instances()["Reservations"]
                for i in r["Instances"]
                if i["State"]["Name"] == "running"
            ],
        }
        Path(option(command, "junitxml")).write_text(junit(self.cases))
        Path(option(command, "timings")).write_text(json.dumps(TIMINGS))
        return self.returncode


def no_reach(ec2: Any, launched: Any, access: Any, say: Any) -> None:
    """There is no machine behind the emulator: nothing to reach over SSH."""
