"""Bad input to `invoke bake`: one line naming what is wrong and where, non-zero, no traceback,
and nothing created in AWS."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest
from cli import REPO, invoke, one_line_error

from bakery import tools

GOOD = (REPO / "images" / "deepseek-r1-7b.toml").read_text()


def definition(tmp_path: Path, text: str) -> str:
    path = tmp_path / "team-image.toml"
    path.write_text(text)
    return str(path)


def nothing_created() -> None:
    ec2 = boto3.client("ec2")
    assert ec2.describe_images(Owners=["self"])["Images"] == []
    assert [i for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]] == []


def test_malformed_toml(tmp_path: Path, emulator: str) -> None:
    path = definition(tmp_path, GOOD.replace("[ollama]", "[ollama"))
    line = one_line_error(invoke("bake", "--image", path, "--local"))
    assert line.startswith(f"error: {path}: is not valid TOML:")
    nothing_created()


def test_unknown_key(tmp_path: Path, emulator: str) -> None:
    path = definition(tmp_path, GOOD.replace("[ollama]", "[ollama]\nchecksum = 'x'"))
    line = one_line_error(invoke("bake", "--image", path, "--local"))
    assert line.startswith(f"error: {path}: ollama.checksum: unknown key (allowed here: ")
    nothing_created()


def test_malformed_instance_type(tmp_path: Path, emulator: str) -> None:
    path = definition(tmp_path, GOOD.replace('"m5.xlarge"', '"m5-xlarge"'))
    line = one_line_error(invoke("bake", "--image", path, "--local"))
    assert (
        line
        == f"error: {path}: build.instance_types[3]: 'm5-xlarge' is not an EC2 instance type (e.g. c6i.xlarge)"
    )


def test_instance_type_that_does_not_exist(tmp_path: Path, emulator: str) -> None:
    path = definition(tmp_path, GOOD.replace('"m5.xlarge"', '"m5z.xlarge"'))
    line = one_line_error(invoke("bake", "--image", path, "--local"))
    assert (
        line
        == f"error: {path}: build.instance_types: m5z.xlarge: no such instance type in us-east-1"
    )
    nothing_created()


def test_unknown_image(emulator: str) -> None:
    line = one_line_error(invoke("bake", "--image", "llama-70b", "--local"))
    assert (
        line
        == "error: images/llama-70b.toml: no such image definition (images: deepseek-r1-7b, deepseek-r1-7b-ubuntu2404)"
    )


def test_missing_image_argument() -> None:
    line = one_line_error(invoke("bake", "--local"))
    assert line == "error: --image is required (images: deepseek-r1-7b, deepseek-r1-7b-ubuntu2404)"


def test_no_packer(emulator: str, tmp_path: Path) -> None:
    # (The checkout's .tools/bin has a packer: PACKER names one that is not there instead; a
    # packer found nowhere is tests/unit/test_tools.py's.)
    line = one_line_error(
        invoke(
            "bake",
            "--image",
            "deepseek-r1-7b",
            "--local",
            env={"PACKER": str(tmp_path / "packer")},
        )
    )
    assert line == (
        f"error: PACKER={tmp_path / 'packer'} is not an executable file: fix it, or unset PACKER"
        f" to use the newest packer on PATH or in {tools.TOOLS_BIN}"
    )


def fake_packer(tmp_path: Path, version: str) -> str:
    path = tmp_path / "packer"
    path.write_text(f"#!/bin/sh\necho 'Packer v{version}'\n")
    path.chmod(0o755)
    return str(path)


def test_packer_too_old_for_aws(tmp_path: Path, no_aws: None) -> None:
    line = one_line_error(
        invoke("bake", "--image", "deepseek-r1-7b", env={"PACKER": fake_packer(tmp_path, "1.6.6")})
    )
    assert "is too old for real AWS bakes: need >= 1.7.0" in line


def test_no_credentials(tmp_path: Path, no_aws: None) -> None:
    line = one_line_error(
        invoke("bake", "--image", "deepseek-r1-7b", env={"PACKER": fake_packer(tmp_path, "1.11.2")})
    )
    assert line.startswith("error: no AWS credentials found")


def test_unreachable_emulator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    line = one_line_error(invoke("bake", "--image", "deepseek-r1-7b", "--local"))
    assert (
        line
        == "error: AWS_ENDPOINT_URL=http://127.0.0.1:9 does not answer: start the emulator or unset it"
    )
