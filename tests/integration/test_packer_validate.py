"""The real packer binary validates every image's rendered template (local and AWS variants)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from tooling import require_tool

from bakery import config, packer, render

pytestmark = pytest.mark.packer
SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


@pytest.fixture(scope="module")
def packer_bin() -> str:
    return require_tool("packer")


@pytest.mark.parametrize("name", config.names())
@pytest.mark.parametrize("local", [False, True], ids=["aws", "local"])
def test_rendered_template_passes_fmt_and_validate(
    tmp_path: Path, packer_bin: str, name: str, local: bool
) -> None:
    version = packer.version(packer_bin)
    rendered = render.render(config.load(name), version, local=local, out=tmp_path / name)
    fmt = subprocess.run(
        [packer_bin, "fmt", "-check", "-diff", str(rendered.directory)],
        capture_output=True,
        text=True,
    )
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr
    variables = {
        "region": "us-east-1",
        "source_ami": "ami-0123456789abcdef0",
        "build_id": "validate",
    }
    variables |= {"ec2_endpoint": "http://127.0.0.1:1"} if local else {"scripts_dir": str(SCRIPTS)}
    if version >= render.MODERN:
        packer.check(packer.init_command(packer_bin, rendered), "init")
    out = subprocess.run(
        packer.validate_command(packer_bin, rendered, variables), capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr
