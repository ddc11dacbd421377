"""Real Packer binaries validate every image's rendering (AWS and local), and the version gating
is checked by them: the oldest supported Packer (Debian's 1.6.6) refuses each block that only
modern Packer with the amazon plugin understands, and the modern one (1.9.4 from ./.ci/setup,
with the amazon plugin installed where `packer init` finds it offline) accepts them."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import pytest
from tooling import modern_packer, oldest_packer

from bakery import config, packer, render

pytestmark = pytest.mark.packer
SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
BINARIES = {"oldest": oldest_packer, "modern": modern_packer}


def build_variables(local: bool) -> dict[str, str]:
    values = {"region": "us-east-1", "source_ami": "ami-0123456789abcdef0", "build_id": "validate"}
    return values | (
        {"ec2_endpoint": "http://127.0.0.1:1"} if local else {"scripts_dir": str(SCRIPTS)}
    )


def validate(
    packer_bin: str, rendered: render.Rendered, local: bool
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        packer.validate_command(packer_bin, rendered, build_variables(local)),
        capture_output=True,
        text=True,
        env=packer.environment(),
    )


@pytest.mark.parametrize("which", list(BINARIES))
@pytest.mark.parametrize("name", config.names())
@pytest.mark.parametrize("local", [False, True], ids=["aws", "local"])
def test_rendered_template_passes_fmt_init_and_validate(
    tmp_path: Path, which: str, name: str, local: bool
) -> None:
    packer_bin = BINARIES[which]()
    version = packer.version(packer_bin)
    rendered = render.render(config.load(name), version, local=local, out=tmp_path / name)
    assert (rendered.directory / "plugins.pkr.hcl").exists() == (version >= render.MODERN)
    fmt = subprocess.run(
        [packer_bin, "fmt", "-check", "-diff", str(rendered.directory)],
        capture_output=True,
        text=True,
        env=packer.environment(),
    )
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr
    if version >= render.MODERN:
        # Offline: the plugin must already be where required_plugins looks (no download here).
        packer.check(packer.init_command(packer_bin, rendered), "init")
    out = validate(packer_bin, rendered, local)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.fixture(scope="module")
def modern_under_old_packer(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """What the oldest Packer says of a modern rendering, with and without its packer block
    (the block stops it before it reads the sources)."""
    old = oldest_packer()
    said = {}
    for local in (False, True):
        out = tmp_path_factory.mktemp("modern-local" if local else "modern-aws")
        rendered = render.render(config.load("deepseek-r1-7b"), (1, 9, 4), local=local, out=out)
        whole = validate(old, rendered, local)
        assert whole.returncode != 0
        (out / "plugins.pkr.hcl").unlink()
        sources = validate(old, rendered, local)
        assert sources.returncode != 0
        kind = "local" if local else "aws"
        said[kind] = whole.stdout + whole.stderr
        said[f"{kind} sources"] = " ".join((sources.stdout + sources.stderr).split())
    return said


def test_oldest_packer_refuses_required_plugins(modern_under_old_packer: dict[str, str]) -> None:
    assert (
        'Blocks of type "required_plugins" are not expected here' in modern_under_old_packer["aws"]
    )


@pytest.mark.parametrize(
    ("rendering", "construct"),
    [
        ("aws", 'An argument named "imds_support" is not expected here'),
        ("aws", 'An argument named "spot_allocation_strategy" is not expected here'),
        ("aws", 'Blocks of type "metadata_options" are not expected here'),
        ("aws", 'An argument named "temporary_security_group_source_public_ip" is not expected'),
        ("local", 'An argument named "skip_ami_run_tags" is not expected here'),
    ],
)
def test_oldest_packer_refuses_each_modern_only_setting(
    modern_under_old_packer: dict[str, str], rendering: str, construct: str
) -> None:
    assert construct in modern_under_old_packer[f"{rendering} sources"]


@pytest.mark.parametrize("which", list(BINARIES))
def test_session_manager_template_validates_with_the_network_and_profile(
    tmp_path: Path, which: str
) -> None:
    """What bake passes for a private subnet: subnet, groups and profile as -var values."""
    packer_bin = BINARIES[which]()
    image = config.load("deepseek-r1-7b")
    network = config.Network(communicator="session_manager")
    image = dataclasses.replace(image, build=dataclasses.replace(image.build, network=network))
    version = packer.version(packer_bin)
    rendered = render.render(image, version, out=tmp_path / "sm")
    if version >= render.MODERN:
        packer.check(packer.init_command(packer_bin, rendered), "init")
    variables = build_variables(False) | {
        "subnet_id": "subnet-0123456789abcdef0",
        "security_group_ids": '["sg-0123456789abcdef0"]',
        "iam_instance_profile": "bakery-validate",
    }

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            packer.validate_command(packer_bin, rendered, variables),
            capture_output=True,
            text=True,
            env=packer.environment(),
        )

    out = run()
    assert out.returncode == 0, out.stdout + out.stderr
    # Without a profile Packer refuses it: bake always passes one with session_manager.
    del variables["iam_instance_profile"]
    out = run()
    assert out.returncode != 0 and "session_manager" in out.stdout + out.stderr
