"""The verify lifecycle against the emulator, in process: launch with fallback, tags, marks,
and the clean-up on every way out. The SSH step and the image suite are stood in for (there
is no machine behind the emulator); everything AWS-side is the real code path."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from cli import REPO
from verify_support import (
    FAILING,
    IMAGE,
    NOTHING_LEFT,
    PASSING,
    FakeSuite,
    leftovers,
    no_reach,
    register_ami,
    verify_tags,
)

from bakery import aws, catalog, config, verify
from bakery.errors import BakeryError

pytestmark = pytest.mark.emulator
RUNNER = "203.0.113.7/32"
DEFINITION = config.load(IMAGE)  # verify.instance_types: g5.xlarge, g5.2xlarge, g6.xlarge


class Said(list):
    def __call__(self, line: str) -> None:
        self.append(line)

    def text(self) -> str:
        return "\n".join(self)


@pytest.fixture
def said() -> Said:
    return Said()


@pytest.fixture
def run_instances_errors(
    emulator: str,
) -> Iterator[Callable[[Callable[[str, str], str | None]], None]]:
    """Make RunInstances fail: decide(instance_type, subnet) returns an error code or None."""
    undo: list[Callable[[], None]] = []

    def install(decide: Callable[[str, str], str | None]) -> None:
        def hook(params: dict[str, Any], **_: Any) -> Any:
            body = params["body"]
            code = decide(body["InstanceType"], body.get("SubnetId", ""))
            if code is None:
                return None
            response = AWSResponse("https://ec2", 500, {}, None)
            parsed = {
                "Error": {"Code": code, "Message": f"injected {code} for {body['InstanceType']}"},
                "ResponseMetadata": {"HTTPStatusCode": 500},
            }
            return response, parsed

        undo.append(aws.on_event("before-call.ec2.RunInstances", hook))

    yield install
    for u in undo:
        u()


def run(
    said: Said,
    suite: Callable[[list[str], float], int],
    *,
    ami: str | None = None,
    timeout_s: float = 600,
) -> verify.Result:
    return verify.verify(
        DEFINITION,
        verify.Options(ami_id=ami, timeout_s=timeout_s, ssh_cidr=RUNNER),
        say=said,
        reach=no_reach,
        run_suite=suite,
    )


class Inspecting(FakeSuite):
    """A passing suite that also records the instance, its volumes and its security group."""

    def __call__(self, command: list[str], timeout_s: float) -> int:
        ec2 = boto3.client("ec2")
        [instance] = [
            i
            for r in ec2.describe_instances()["Reservations"]
            for i in r["Instances"]
            if i["State"]["Name"] == "running" and i["InstanceType"].startswith("g")
        ]
        volumes = ec2.describe_volumes(
            Filters=[{"Name": "attachment.instance-id", "Values": [instance["InstanceId"]]}]
        )["Volumes"]
        groups = ec2.describe_security_groups(
            GroupIds=[g["GroupId"] for g in instance["SecurityGroups"]]
        )["SecurityGroups"]
        keys = ec2.describe_key_pairs(KeyNames=[instance["KeyName"]])["KeyPairs"]
        self.found = {"instance": instance, "volumes": volumes, "groups": groups, "keys": keys}
        return super().__call__(command, timeout_s)


def test_capacity_error_on_the_first_type_moves_to_the_next(
    emulator: str, run_instances_errors: Any, said: Said
) -> None:
    ami = register_ami(digest="b" * 64)
    tried: list[tuple[str, str]] = []

    def decide(instance_type: str, subnet: str) -> str | None:
        tried.append((instance_type, subnet))
        return "InsufficientInstanceCapacity" if instance_type == "g5.xlarge" else None

    run_instances_errors(decide)
    suite = Inspecting(PASSING)
    result = run(said, suite)

    zones = [
        z["ZoneName"]
        for z in boto3.client("ec2").describe_availability_zones()["AvailabilityZones"]
    ]
    assert [t for t, _ in tried] == ["g5.xlarge"] * len(zones) + ["g5.2xlarge"]
    for zone in zones:
        assert (
            f"verify: no spot capacity for g5.xlarge in {zone} (InsufficientInstanceCapacity); trying the next"
            in said
        )
    assert result.launched is not None
    assert (result.launched.instance_type, result.launched.zone) == ("g5.2xlarge", sorted(zones)[0])

    instance = suite.found["instance"]
    assert instance["InstanceType"] == "g5.2xlarge"
    assert instance["InstanceLifecycle"] == "spot"
    assert instance["MetadataOptions"]["HttpTokens"] == "required"
    tags = catalog.tags_of(instance)
    assert tags[catalog.MANAGED_BY] == "gpu-ami-bakery"
    assert tags[catalog.IMAGE] == IMAGE
    assert tags["Project"] == "private-llm"  # the definition's own tags ride along
    run_id = tags[catalog.RUN_ID]
    expires = tags[catalog.EXPIRES_AT]
    assert expires.endswith("Z") and expires > time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    [volume] = suite.found["volumes"]
    assert volume["Encrypted"] is True
    assert {k: catalog.tags_of(volume).get(k) for k in (catalog.RUN_ID, catalog.EXPIRES_AT)} == {
        catalog.RUN_ID: run_id,
        catalog.EXPIRES_AT: expires,
    }
    [group] = suite.found["groups"]
    assert catalog.tags_of(group)[catalog.RUN_ID] == run_id
    assert [
        (
            p["IpProtocol"],
            p["FromPort"],
            p["ToPort"],
            [r["CidrIp"] for r in p["IpRanges"]],
            p["Ipv6Ranges"],
        )
        for p in group["IpPermissions"]
    ] == [("tcp", 22, 22, [RUNNER], [])]
    [key] = suite.found["keys"]
    assert key["KeyType"] == "ed25519"
    assert catalog.tags_of(key)[catalog.RUN_ID] == run_id

    # While it ran: the private key in a 0600 file, expectations for the type that launched.
    assert suite.seen["key_mode"] == "0o600"
    assert suite.seen["key_text"] == "-----BEGIN OPENSSH PRIVATE KEY-----"
    assert suite.seen["expect"]["nvidia"]["gpu_name"] == "A10G"
    assert suite.seen["expect"]["ollama"]["models"] == [
        {"name": "deepseek-r1:7b", "digest": "b" * 64}
    ]
    key_file = Path(
        next(a.split("=", 1)[1] for a in suite.command if a.startswith("--ssh-identity-file="))
    )
    assert not key_file.exists() and not key_file.parent.exists()

    # Passed: marked, with the GPU, the timings and the report's digest; everything ended.
    marks = verify_tags(ami)
    report = REPO / "build" / IMAGE / "verify-report.xml"
    assert marks.pop(catalog.VERIFICATION) == "passed"
    assert marks.pop("bakery:verify-gpu") == "g5.2xlarge NVIDIA A10G"
    assert marks.pop("bakery:verify-timings") == "ready=38s cold=131s ttft=0.41s tps=92.3 ssh=0s"
    assert marks.pop("bakery:verify-cold-load") == (
        "131s from boot to models loaded, volume initialized at 300 MiB/s"
    )
    assert (
        marks.pop("bakery:verify-report-sha256") == hashlib.sha256(report.read_bytes()).hexdigest()
    )
    assert set(marks) == {"bakery:verified-at"}
    assert leftovers() == NOTHING_LEFT
    assert any(
        line.startswith("verify: removed instance i-")
        and "key pair bakery-verify-" in line
        and "security group sg-" in line
        for line in said
    )
    assert "verify deepseek-r1-7b: PASSED" in said


def test_no_capacity_anywhere_lists_what_was_tried_and_cleans_up(
    emulator: str, run_instances_errors: Any, said: Said
) -> None:
    ami = register_ami()
    run_instances_errors(
        lambda t, s: (
            "MaxSpotInstanceCountExceeded" if t == "g5.2xlarge" else "InsufficientInstanceCapacity"
        )
    )
    with pytest.raises(BakeryError) as e:
        run(said, FakeSuite(PASSING))
    message = str(e.value)
    assert message.startswith(
        "no spot capacity for any verify instance type in us-east-1 (g5.xlarge: InsufficientInstanceCapacity in us-east-1a us-east-1b"
    )
    # g6.xlarge draws on the quota g5.2xlarge was refused for: not tried, and said why.
    assert (
        "g5.2xlarge: MaxSpotInstanceCountExceeded in every zone; g6.xlarge: skipped: same quota);"
        ' g5.2xlarge: MaxSpotInstanceCountExceeded: the spot vCPU quota "All G and VT Spot'
        ' Instance Requests" (L-3819A6DF) in us-east-1 is used up' in message
    )
    assert "\n" not in message
    assert (
        "verify: skipping g6.xlarge: it draws on the same exhausted quota (All G and VT Spot Instance Requests)"
        in said
    )
    assert any(line.startswith("verify: removed key pair bakery-verify-") for line in said)
    assert leftovers() == NOTHING_LEFT
    assert verify_tags(ami) == {}


def test_a_quota_refusal_names_the_quota_and_skips_the_types_that_share_it(
    emulator: str, run_instances_errors: Any, said: Said
) -> None:
    register_ami()
    tried: list[str] = []
    run_instances_errors(lambda t, s: tried.append(t) or "VcpuLimitExceeded")
    with pytest.raises(BakeryError) as e:
        run(said, FakeSuite(PASSING))
    assert tried == ["g5.xlarge"]  # g5.2xlarge and g6.xlarge share its quota
    assert str(e.value) == (
        'no verify instance type can launch: g5.xlarge: VcpuLimitExceeded: the spot vCPU quota "All'
        ' G and VT Spot Instance Requests" (L-3819A6DF) in us-east-1 is used up (new accounts start'
        " with 0); raise it with: aws service-quotas request-service-quota-increase --service-code"
        " ec2 --quota-code L-3819A6DF --region us-east-1 --desired-value VCPUS"
    )
    assert leftovers() == NOTHING_LEFT


def test_a_type_under_another_quota_still_serves(
    emulator: str, run_instances_errors: Any, said: Said
) -> None:
    register_ami()
    verify_section = dataclasses.replace(
        DEFINITION.verify, instance_types=("g5.xlarge", "g6.xlarge", "p5.4xlarge")
    )
    definition = dataclasses.replace(DEFINITION, verify=verify_section)
    run_instances_errors(lambda t, s: "VcpuLimitExceeded" if t.startswith("g") else None)
    result = verify.verify(
        definition,
        verify.Options(timeout_s=600, ssh_cidr=RUNNER),
        say=said,
        reach=no_reach,
        run_suite=FakeSuite(PASSING),
    )
    assert result.launched is not None and result.launched.instance_type == "p5.4xlarge"
    assert "verify: skipping g6.xlarge: it draws on the same exhausted quota" in said.text()
    assert leftovers() == NOTHING_LEFT


def test_a_type_not_offered_in_a_zone_moves_to_the_next_zone(
    emulator: str, run_instances_errors: Any, said: Said
) -> None:
    register_ami()
    zone_a = boto3.client("ec2").describe_subnets(
        Filters=[{"Name": "availability-zone", "Values": ["us-east-1a"]}]
    )["Subnets"][0]["SubnetId"]
    run_instances_errors(lambda t, s: "Unsupported" if s == zone_a else None)
    result = run(said, FakeSuite(PASSING))
    assert "verify: g5.xlarge is not offered in us-east-1a (Unsupported); trying the next" in said
    assert result.launched is not None and result.launched.zone == "us-east-1b"


def test_a_subnet_refused_at_launch_is_one_line(
    emulator: str, run_instances_errors: Any, said: Said
) -> None:
    register_ami()
    run_instances_errors(lambda t, s: "InvalidSubnetID.NotFound")
    with pytest.raises(BakeryError) as e:
        run(said, FakeSuite(PASSING))
    assert str(e.value).startswith("EC2 refused subnet subnet-")
    assert "(us-east-1a) for g5.xlarge: InvalidSubnetID.NotFound: injected" in str(e.value)
    assert leftovers() == NOTHING_LEFT


def test_other_launch_errors_stop_at_once(
    emulator: str, run_instances_errors: Any, said: Said
) -> None:
    register_ami()
    calls = []
    run_instances_errors(lambda t, s: calls.append(t) or "UnauthorizedOperation")
    with pytest.raises(
        BakeryError,
        match=r"^cannot launch g5.xlarge in us-east-1a: UnauthorizedOperation: injected",
    ):
        run(said, FakeSuite(PASSING))
    assert calls == ["g5.xlarge"]
    assert leftovers() == NOTHING_LEFT


def test_failed_check_marks_failed_with_the_first_one(emulator: str, said: Said) -> None:
    ami = register_ami()
    with pytest.raises(BakeryError) as e:
        run(said, FakeSuite(FAILING, returncode=1))
    first = "tests/image/test_image_ollama.py::test_ollama_version: AssertionError: ollama 0.12.0 is not 0.13.1"
    assert str(e.value) == f"{ami} failed verification: {first} (tagged bakery:verification=failed)"
    marks = verify_tags(ami)
    assert marks.pop(catalog.VERIFICATION) == "failed"
    assert marks.pop("bakery:verify-failure") == first
    assert set(marks) == {
        "bakery:verify-gpu",
        "bakery:verify-report-sha256",
        "bakery:verify-cold-load",
    }
    assert "  checks       1 passed, 2 failed, 0 errors, 0 skipped of 3" in said
    assert leftovers() == NOTHING_LEFT


def test_a_skipped_check_is_not_verified(emulator: str, said: Said) -> None:
    ami = register_ami()
    cases = [
        *PASSING,
        ("tests.image.test_image_ui", "test_ui_image_present", "skipped", "no Docker daemon"),
    ]
    with pytest.raises(
        BakeryError,
        match=re.escape(
            "failed verification: tests/image/test_image_ui.py::test_ui_image_present: skipped: no Docker daemon"
        ),
    ):
        run(said, FakeSuite(cases))
    assert verify_tags(ami)[catalog.VERIFICATION] == "failed"


@pytest.mark.parametrize(
    "order", [("pass", "fail"), ("fail", "pass")], ids=["pass-then-fail", "fail-then-pass"]
)
def test_verified_and_failed_marks_are_exclusive(
    emulator: str, said: Said, order: tuple[str, str]
) -> None:
    ami = register_ami()
    outcome = {
        "pass": (
            FakeSuite(PASSING),
            {
                "bakery:verified-at",
                "bakery:verify-gpu",
                "bakery:verify-timings",
                "bakery:verify-report-sha256",
                "bakery:verify-cold-load",
            },
        ),
        "fail": (
            FakeSuite(FAILING, 1),
            {
                "bakery:verify-failure",
                "bakery:verify-gpu",
                "bakery:verify-report-sha256",
                "bakery:verify-cold-load",
            },
        ),
    }
    for step in order:
        suite, keys = outcome[step]
        try:
            run(said, suite, ami=ami)
        except BakeryError:
            assert step == "fail"
        marks = verify_tags(ami)
        assert marks.pop(catalog.VERIFICATION) == {"pass": "passed", "fail": "failed"}[step]
        assert set(marks) == keys
    # the snapshot carries the same marks as the AMI
    image = boto3.client("ec2").describe_images(ImageIds=[ami])["Images"][0]
    snapshot = image["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]
    snap = boto3.client("ec2").describe_snapshots(SnapshotIds=[snapshot])["Snapshots"][0]
    assert (
        catalog.tags_of(snap)[catalog.VERIFICATION]
        == {"pass": "passed", "fail": "failed"}[order[-1]]
    )
    assert ("bakery:verify-failure" in catalog.tags_of(snap)) == (order[-1] == "fail")


def test_an_error_in_the_middle_of_the_tests_still_ends_everything(
    emulator: str, said: Said
) -> None:
    ami = register_ami()

    def broken(command: list[str], timeout_s: float) -> int:
        assert leftovers()["instances"], "the instance exists while the tests run"
        raise ConnectionResetError("connection reset by peer")

    with pytest.raises(ConnectionResetError):
        run(said, broken)
    assert any(line.startswith("verify: removed instance i-") for line in said)
    assert leftovers() == NOTHING_LEFT
    assert verify_tags(ami) == {}


def test_a_suite_that_writes_no_report_marks_nothing(emulator: str, said: Said) -> None:
    ami = register_ami()
    with pytest.raises(
        BakeryError,
        match=r"^the image suite ended \(exit 4\) without a report at build/deepseek-r1-7b/verify-report.xml",
    ):
        run(said, lambda command, timeout_s: 4)
    assert verify_tags(ami) == {}
    assert leftovers() == NOTHING_LEFT


def test_a_spot_instance_reclaimed_during_the_tests_marks_nothing(
    emulator: str, said: Said
) -> None:
    ami = register_ami()

    class Reclaimed(FakeSuite):
        def __call__(self, command: list[str], timeout_s: float) -> int:
            code = super().__call__(command, timeout_s)
            boto3.client("ec2").terminate_instances(InstanceIds=self.seen["running"])
            return code

    with pytest.raises(
        BakeryError,
        match=r"went terminated during the image tests .*the AMI is not marked: run verify again$",
    ):
        run(said, Reclaimed(FAILING, 1))
    assert verify_tags(ami) == {}
    assert leftovers() == NOTHING_LEFT


def test_timeout_ends_everything_and_says_so(emulator: str, said: Said) -> None:
    ami = register_ami()

    def hangs(command: list[str], timeout_s: float) -> int:
        time.sleep(60)
        return 0

    started = time.monotonic()
    with pytest.raises(BakeryError) as e:
        run(said, hangs, timeout_s=2)
    assert time.monotonic() - started < 30
    assert str(e.value) == (
        f"verify of {IMAGE} timed out after 2 s (--timeout) while running the image tests;"
        f" ended the instance and removed what it created; {ami} is not marked"
    )
    assert leftovers() == NOTHING_LEFT
    assert verify_tags(ami) == {}


BLOCKING = """
import os, sys, time
sys.path.insert(0, os.path.join("tests", "integration"))
from verify_support import no_reach
from bakery import config, verify
from bakery.errors import BakeryError

def blocking(command, timeout_s):
    open(os.environ["MARKER"], "w").close()
    time.sleep(120)
    return 0

try:
    verify.verify(config.load("deepseek-r1-7b"), verify.Options(ssh_cidr="203.0.113.7/32"),
                  say=lambda line: print(line, flush=True), reach=no_reach, run_suite=blocking)
except BakeryError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(e.exit_code)
"""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupt_during_the_tests_ends_everything(
    emulator: str, tmp_path: Path, signum: signal.Signals
) -> None:
    ami = register_ami()
    marker = tmp_path / "suite-running"
    proc = subprocess.Popen(
        [sys.executable, "-c", BLOCKING],
        cwd=REPO,
        env={**os.environ, "MARKER": str(marker)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the suite never started"
        time.sleep(0.1)
    assert leftovers()["instances"]
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, out + err
    assert err.strip() == (
        f"error: verify of {IMAGE} interrupted while running the image tests;"
        f" ended the instance and removed what it created; {ami} is not marked"
    )
    assert "verify: ending what run " in out
    assert "verify: removed instance i-" in out and "key pair bakery-verify-" in out
    assert leftovers() == NOTHING_LEFT
    assert verify_tags(ami) == {}
