"""Packer: version detection and gating, and the exact command lines the tool runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from bakery import packer
from bakery.errors import BakeryError
from bakery.render import Rendered

RENDERED = Rendered(Path("build/img"), Path("build/img/img.pkrvars.hcl"), ())
VARS = {"region": "eu-west-1", "source_ami": "ami-0abc", "build_id": "20261126-000000-abcdef"}


def test_build_command_line() -> None:
    assert packer.build_command("/usr/bin/packer", RENDERED, VARS) == [
        "/usr/bin/packer",
        "build",
        "-color=false",
        "-on-error=cleanup",
        "-var-file=build/img/img.pkrvars.hcl",
        "-var",
        "region=eu-west-1",
        "-var",
        "source_ami=ami-0abc",
        "-var",
        "build_id=20261126-000000-abcdef",
        "build/img",
    ]


def test_validate_command_line() -> None:
    assert packer.validate_command("packer", RENDERED, {"region": "us-east-1"}) == [
        "packer",
        "validate",
        "-var-file=build/img/img.pkrvars.hcl",
        "-var",
        "region=us-east-1",
        "build/img",
    ]


def test_init_command_line() -> None:
    assert packer.init_command("packer", RENDERED) == ["packer", "init", "build/img"]


@pytest.mark.parametrize(
    ("output", "version"),
    [
        ("Packer v1.6.6\n", (1, 6, 6)),
        ("Packer v1.11.2\n\nYour version of Packer is out of date!", (1, 11, 2)),
        ("1.12.0", (1, 12, 0)),
    ],
)
def test_parse_version(output: str, version: tuple[int, int, int]) -> None:
    assert packer.parse_version(output) == version


def fake_packer(tmp_path: Path, version: str) -> str:
    path = tmp_path / "packer"
    path.write_text(f"#!/bin/sh\necho 'Packer v{version}'\n")
    path.chmod(0o755)
    return str(path)


def test_too_old_packer_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BakeryError, match=r"packer 1\.5\.0 at .* is too old: need >= 1\.6\.6"):
        packer.version(fake_packer(tmp_path, "1.5.0"))


def test_packer_without_required_plugins_is_refused_for_real_aws(tmp_path: Path) -> None:
    path = fake_packer(tmp_path, "1.6.6")
    with pytest.raises(BakeryError, match=r"too old for real AWS bakes: need >= 1\.7\.0"):
        packer.require_for_aws(packer.version(path), path)


def test_modern_packer_is_accepted(tmp_path: Path) -> None:
    path = fake_packer(tmp_path, "1.11.2")
    packer.require_for_aws(packer.version(path), path)


def test_failure_line_prefers_packers_error() -> None:
    result = packer.Result(
        1,
        False,
        False,
        [
            "==> amazon-ebs.image: Waiting",
            "Build 'amazon-ebs.image' errored after 2s: boom",
            "==> Builds finished",
        ],
    )
    assert packer.failure(result) == "Build 'amazon-ebs.image' errored after 2s: boom"


def test_manifest_picks_this_builds_artifact(tmp_path: Path) -> None:
    (tmp_path / "packer-manifest.json").write_text(
        '{"builds": [{"artifact_id": "us-east-1:ami-old", "custom_data": {"build_id": "a"}},'
        ' {"artifact_id": "us-east-1:ami-new", "custom_data": {"build_id": "b"}}]}'
    )
    assert packer.manifest(tmp_path, "a") == {"region": "us-east-1", "ami_id": "ami-old"}
    with pytest.raises(BakeryError, match="has no artifact for build c"):
        packer.manifest(tmp_path, "c")
