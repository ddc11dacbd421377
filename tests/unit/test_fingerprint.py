"""The fingerprint: stable for the same inputs, sensitive to every input that changes the image."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from bakery import config, render
from bakery.fingerprint import fingerprint

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def scripts(tmp_path: Path) -> Path:
    target = tmp_path / "scripts"
    (target / "rootfs" / "etc").mkdir(parents=True)
    (target / "install-ollama.sh").write_text("#!/usr/bin/env bash\necho install\n")
    (target / "install-ollama.sh").chmod(0o755)
    (target / "rootfs" / "etc" / "unit.conf").write_text("[Service]\n")
    return target


def fp(
    tmp_path: Path,
    scripts: Path,
    image: config.ImageDef | None = None,
    source: str = "ami-1",
    out: str = "r",
) -> str:
    rendered = render.render(image or config.load("deepseek-r1-7b"), (1, 11, 2), out=tmp_path / out)
    return fingerprint(rendered.files, scripts, source)


def test_same_inputs_same_fingerprint(tmp_path: Path, scripts: Path) -> None:
    assert fp(tmp_path, scripts) == fp(tmp_path, scripts, out="elsewhere")


def test_fingerprint_is_a_sha256(tmp_path: Path, scripts: Path) -> None:
    value = fp(tmp_path, scripts)
    assert len(value) == 64 and int(value, 16) >= 0


def test_shipped_scripts_tree_is_fingerprintable(tmp_path: Path) -> None:
    assert fp(tmp_path, REPO / "scripts") == fp(tmp_path, REPO / "scripts", out="again")


def _image(**changes: object) -> config.ImageDef:
    image = config.load("deepseek-r1-7b")
    for path, value in changes.items():
        section, field = path.split("__")
        image = dataclasses.replace(
            image, **{section: dataclasses.replace(getattr(image, section), **{field: value})}
        )
    return image


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"ollama__version": "0.13.2"}, id="ollama-version"),
        pytest.param({"ollama__keep_alive": "24h"}, id="keep-alive"),
        pytest.param({"nvidia__min_driver_branch": "595"}, id="min-driver-branch"),
        pytest.param({"ui__commit": "0" * 40}, id="ui-commit"),
        pytest.param({"build__root_volume_gib": 200}, id="volume"),
    ],
)
def test_definition_values_change_the_fingerprint(
    tmp_path: Path, scripts: Path, change: dict
) -> None:
    assert fp(tmp_path, scripts) != fp(tmp_path, scripts, image=_image(**change), out="changed")


def test_models_change_the_fingerprint(tmp_path: Path, scripts: Path) -> None:
    image = dataclasses.replace(
        config.load("deepseek-r1-7b"), models=(config.Model("deepseek-r1:8b"),)
    )
    assert fp(tmp_path, scripts) != fp(tmp_path, scripts, image=image, out="changed")


def test_source_ami_changes_the_fingerprint(tmp_path: Path, scripts: Path) -> None:
    assert fp(tmp_path, scripts, source="ami-1") != fp(tmp_path, scripts, source="ami-2")


def test_script_content_changes_the_fingerprint(tmp_path: Path, scripts: Path) -> None:
    before = fp(tmp_path, scripts)
    (scripts / "install-ollama.sh").write_text("#!/usr/bin/env bash\necho changed\n")
    assert fp(tmp_path, scripts) != before


def test_rootfs_file_changes_the_fingerprint(tmp_path: Path, scripts: Path) -> None:
    before = fp(tmp_path, scripts)
    (scripts / "rootfs" / "etc" / "unit.conf").write_text("[Service]\nUser=x\n")
    assert fp(tmp_path, scripts) != before


def test_executable_bit_changes_the_fingerprint(tmp_path: Path, scripts: Path) -> None:
    before = fp(tmp_path, scripts)
    (scripts / "install-ollama.sh").chmod(0o644)
    assert fp(tmp_path, scripts) != before


def test_template_change_changes_the_fingerprint(tmp_path: Path, scripts: Path) -> None:
    rendered = render.render(config.load("deepseek-r1-7b"), (1, 11, 2), out=tmp_path / "r")
    before = fingerprint(rendered.files, scripts, "ami-1")
    source = tmp_path / "r" / "source.pkr.hcl"
    source.write_text(
        source.read_text().replace("throughput            = 250", "throughput            = 500")
    )
    assert fingerprint(rendered.files, scripts, "ami-1") != before


def test_packer_generation_changes_the_fingerprint(tmp_path: Path, scripts: Path) -> None:
    image = config.load("deepseek-r1-7b")
    old = render.render(image, (1, 6, 6), out=tmp_path / "old")
    new = render.render(image, (1, 11, 2), out=tmp_path / "new")
    assert fingerprint(old.files, scripts, "ami-1") != fingerprint(new.files, scripts, "ami-1")


def test_pycache_is_ignored(tmp_path: Path, scripts: Path) -> None:
    before = fp(tmp_path, scripts)
    (scripts / "__pycache__").mkdir()
    (scripts / "__pycache__" / "x.pyc").write_bytes(b"\0")
    assert fp(tmp_path, scripts) == before
    shutil.rmtree(scripts / "__pycache__")


def test_renaming_a_script_changes_the_fingerprint(tmp_path: Path, scripts: Path) -> None:
    """The same content under another name runs differently (render names each script)."""
    before = fp(tmp_path, scripts)
    (scripts / "install-ollama.sh").rename(scripts / "install-ollama-v2.sh")
    assert fp(tmp_path, scripts) != before


@pytest.mark.parametrize("mode", [0o744, 0o654, 0o645], ids=["owner", "group", "other"])
def test_each_executable_bit_counts(tmp_path: Path, scripts: Path, mode: int) -> None:
    script = scripts / "install-ollama.sh"
    script.chmod(0o644)
    plain = fp(tmp_path, scripts)
    script.chmod(mode)
    assert fp(tmp_path, scripts) != plain


# The fingerprint of the inputs below, as this scheme computes it. A different value means
# every image rebuilds at the next scheduled bake: change the scheme only on purpose, with a
# new SCHEME, and then this value.
STABLE = "28cde5b400465d7fe0c45e8f4a890e7724eed25238a7d0f2febfa1ec72d23d6d"


def test_the_scheme_is_stable_across_releases(tmp_path: Path) -> None:
    rendered = tmp_path / "rendered"
    rendered.mkdir()
    (rendered / "source.pkr.hcl").write_text('source "amazon-ebs" "image" {}\n')
    (rendered / "image.pkrvars.hcl").write_text('image_name = "image"\n')
    scripts = tmp_path / "scripts"
    (scripts / "rootfs" / "etc").mkdir(parents=True)
    (scripts / "install.sh").write_text("#!/usr/bin/env bash\necho install\n")
    (scripts / "install.sh").chmod(0o755)
    (scripts / "rootfs" / "etc" / "unit.conf").write_text("[Service]\n")
    (scripts / "rootfs" / "etc" / "unit.conf").chmod(0o644)
    files = [rendered / "source.pkr.hcl", rendered / "image.pkrvars.hcl"]
    assert fingerprint(files, scripts, "ami-0123456789abcdef0") == STABLE
