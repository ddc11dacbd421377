"""`invoke verify` as a user runs it: --local end to end, --host, and bad input (one line,
non-zero exit, nothing left running)."""

from __future__ import annotations

import json

import pytest
from cli import REPO, invoke, one_line_error
from tooling import require_tool
from verify_support import IMAGE, NOTHING_LEFT, leftovers, register_ami, verify_tags

from bakery import catalog


def test_local_runs_the_lifecycle_and_marks_nothing(emulator: str) -> None:
    ami = register_ami()
    result = invoke("verify", "--image", IMAGE, "--local")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert f"local: using the emulator at {emulator}" in out
    assert "local: the security group admits SSH from 127.0.0.1/32 only" in out
    assert "verify: launched spot g5.xlarge i-" in out
    assert "passed its system and instance status checks" in out
    assert "verify: removed instance i-" in out
    assert out.rstrip().endswith(
        f"local: no machine exists behind the emulator: the image tests were not run; {ami} is not marked verified"
    )
    assert verify_tags(ami) == {}
    assert leftovers() == NOTHING_LEFT
    record = json.loads((REPO / "build" / IMAGE / "verify.json").read_text())
    assert (record["local"], record["verdict"], record["marked"]) == (True, None, None)
    assert record["instance"]["type"] == "g5.xlarge"
    assert (
        json.loads((REPO / "build" / IMAGE / "expect.json").read_text())["nvidia"]["gpu_name"]
        == "A10G"
    )


@pytest.mark.packer
def test_local_verifies_what_a_local_bake_made(emulator: str) -> None:
    require_tool("packer")
    baked = invoke("bake", "--image", IMAGE, "--local")
    assert baked.returncode == 0, baked.stderr
    result = invoke("verify", "--image", IMAGE, "--local")
    assert result.returncode == 0, result.stdout + result.stderr
    [line] = [ln for ln in result.stdout.splitlines() if ln.startswith("verify: launched")]
    ami = line.split(" from ")[1].split()[0]
    assert verify_tags(ami) == {}
    assert leftovers() == NOTHING_LEFT


def test_ami_that_does_not_exist(emulator: str) -> None:
    line = one_line_error(
        invoke("verify", "--image", IMAGE, "--local", "--ami", "ami-0000000000000000f")
    )
    assert (
        line
        == "error: AMI ami-0000000000000000f does not exist in us-east-1 (or is not visible to this account)"
    )
    assert leftovers() == NOTHING_LEFT


def test_image_with_no_ami_yet(emulator: str) -> None:
    line = one_line_error(invoke("verify", "--image", IMAGE, "--local"))
    assert (
        line
        == f"error: no AMI of {IMAGE} in us-east-1 yet: bake one first (invoke bake --image {IMAGE})"
    )
    assert leftovers() == NOTHING_LEFT


def test_only_verified_amis_left(emulator: str) -> None:
    ami = register_ami(**{catalog.VERIFICATION: "passed"})
    line = one_line_error(invoke("verify", "--image", IMAGE, "--local"))
    assert line == (
        f"error: no unverified AMI of {IMAGE} in us-east-1: the newest, {ami}, is already verified"
        " (passed); pass --ami ID to verify one again"
    )


def test_ami_of_another_image(emulator: str) -> None:
    ami = register_ami("deepseek-r1-7b-ubuntu2404")
    line = one_line_error(invoke("verify", "--image", IMAGE, "--local", "--ami", ami))
    assert line == f"error: {ami} is an AMI of 'deepseek-r1-7b-ubuntu2404', not of '{IMAGE}'"
    assert leftovers() == NOTHING_LEFT


def test_unreachable_host(no_aws: None) -> None:
    line = one_line_error(invoke("verify", "--image", IMAGE, "--host", "ssh://ubuntu@127.0.0.1:1"))
    assert line == "error: cannot reach 127.0.0.1:1: connection refused (ssh://ubuntu@127.0.0.1:1)"
    assert not (REPO / "build" / IMAGE / "verify-report.xml").exists()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["--host", "docker://ollama"],
            "error: --host 'docker://ollama': give ssh://[USER@]HOST[:PORT], safe-ssh://..., paramiko://... or local://",
        ),
        (
            ["--host", "local://", "--local"],
            "error: --local applies only when verify launches an instance, not with --host",
        ),
        (
            ["--gpu", "A10G", "--local"],
            "error: --gpu applies only with --host (a launched instance's GPU follows from its type, and its key is made for the run)",
        ),
        (
            ["--ami", "ami-12", "--local"],
            "error: --ami 'ami-12' is not an AMI ID (ami- and 8 or 17 hex digits)",
        ),
        (["--timeout", "2", "--local"], "error: --timeout 2 is out of range (5 to 720 minutes)"),
        (
            ["--timeout", "soon", "--local"],
            "error: --timeout 'soon' is not a whole number of minutes",
        ),
        (
            ["--ssh-cidr", "0.0.0.0/0", "--local"],
            "error: --ssh-cidr 0.0.0.0/0 would open SSH to 4294967296 addresses; give the runner's address (a /32) or a network no wider than /16",
        ),
        (
            ["--ssh-cidr", "203.0.113.7/24", "--local"],
            "error: --ssh-cidr '203.0.113.7/24' is not an IPv4 address or network: 203.0.113.7/24 has host bits set",
        ),
        (
            ["--subnet", "sub-1", "--local"],
            "error: --subnet 'sub-1' is not a subnet ID (subnet-...) or a tag filter (tag:KEY=VALUE)",
        ),
    ],
    ids=[
        "host-scheme",
        "host-and-local",
        "gpu-without-host",
        "ami-id",
        "timeout",
        "timeout-text",
        "ssh-cidr-world",
        "ssh-cidr-host-bits",
        "subnet-id",
    ],
)
def test_bad_options_create_nothing(emulator: str, args: list[str], expected: str) -> None:
    register_ami()
    line = one_line_error(invoke("verify", "--image", IMAGE, *args))
    assert line == expected
    assert leftovers() == NOTHING_LEFT


def test_subnet_that_does_not_exist(emulator: str) -> None:
    register_ami()
    line = one_line_error(
        invoke("verify", "--image", IMAGE, "--local", "--subnet", "subnet-0123456789abcdef0")
    )
    assert line == "error: --subnet subnet-0123456789abcdef0 does not exist in us-east-1"
    assert leftovers() == NOTHING_LEFT


def test_no_credentials(no_aws: None) -> None:
    line = one_line_error(invoke("verify", "--image", IMAGE, "--ssh-cidr", "203.0.113.7"))
    assert line.startswith("error: no AWS credentials found")


def test_host_local_runs_the_real_suite_and_marks_nothing(no_aws: None) -> None:
    """This machine has no GPU and no Ollama: the suite runs for real and fails; no AWS."""
    result = invoke("verify", "--image", IMAGE, "--host", "local://", timeout=120)
    line = one_line_error(result)
    assert line.startswith("error: local:// failed the image tests: tests/image/")
    out = result.stdout
    assert (
        "verify: running the image tests against local:// (no instance is launched, nothing is marked)"
        in out
    )
    assert f"verify {IMAGE}: FAILED" in out
    assert "  host         local://" in out
    assert f"  report       build/{IMAGE}/verify-report.xml (sha256 " in out
    assert "  marked       nothing (--host never marks an AMI)" in out
    record = json.loads((REPO / "build" / IMAGE / "verify.json").read_text())
    assert record["verdict"]["passed"] is False and record["marked"] is None
    expect = json.loads((REPO / "build" / IMAGE / "expect.json").read_text())
    assert expect["nvidia"]["gpu_name"] is None
