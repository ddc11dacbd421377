"""Rendering: golden files per image and Packer generation, determinism, HCL literals."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from bakery import config, render

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
UPDATE = os.environ.get("BAKERY_UPDATE_GOLDEN") == "1"  # regenerate after a deliberate change

VARIANTS = [
    pytest.param((1, 6, 6), False, "packer-1.6.6", id="packer-1.6.6"),
    pytest.param((1, 11, 2), False, "packer-1.11.2", id="packer-1.11.2"),
    pytest.param((1, 6, 6), True, "local", id="local"),
    pytest.param((1, 11, 2), True, "local-packer-1.11.2", id="local-packer-1.11.2"),
]


@pytest.mark.parametrize("name", config.names())
@pytest.mark.parametrize(("version", "local", "variant"), VARIANTS)
def test_rendering_matches_golden_files(
    tmp_path: Path, name: str, version, local: bool, variant: str
) -> None:
    rendered = render.render(config.load(name), version, local=local, out=tmp_path)
    expected_dir = GOLDEN / name / variant
    got = {p.name: p.read_text() for p in rendered.files}
    if UPDATE:
        expected_dir.mkdir(parents=True, exist_ok=True)
        for stale in expected_dir.iterdir():
            stale.unlink()
        for file_name, text in got.items():
            (expected_dir / file_name).write_text(text)
    expected = {p.name: p.read_text() for p in sorted(expected_dir.iterdir())}
    assert sorted(got) == sorted(expected)
    for file_name in expected:
        assert got[file_name] == expected[file_name], (
            f"{name}/{variant}/{file_name} differs from its golden file"
        )


def with_session_manager(image: config.ImageDef) -> config.ImageDef:
    network = config.Network(communicator="session_manager")
    return dataclasses.replace(image, build=dataclasses.replace(image.build, network=network))


def test_session_manager_rendering_matches_golden_files(tmp_path: Path) -> None:
    image = with_session_manager(config.load("deepseek-r1-7b"))
    rendered = render.render(image, (1, 11, 2), out=tmp_path)
    expected_dir = GOLDEN / "deepseek-r1-7b" / "packer-1.11.2-session-manager"
    if UPDATE:
        expected_dir.mkdir(parents=True, exist_ok=True)
        (expected_dir / "source.pkr.hcl").write_text((tmp_path / "source.pkr.hcl").read_text())
    assert (tmp_path / "source.pkr.hcl").read_text() == (
        expected_dir / "source.pkr.hcl"
    ).read_text()
    assert [p.name for p in rendered.files] == [
        p.name
        for p in render.render(
            config.load("deepseek-r1-7b"), (1, 11, 2), out=tmp_path / "ssh"
        ).files
    ]


@pytest.mark.parametrize("version", [(1, 6, 6), (1, 11, 2)], ids=["packer-1.6.6", "packer-1.11.2"])
def test_session_manager_needs_no_public_address_and_no_inbound_rule(
    tmp_path: Path, version
) -> None:
    render.render(with_session_manager(config.load("deepseek-r1-7b")), version, out=tmp_path)
    source = (tmp_path / "source.pkr.hcl").read_text()
    assert 'ssh_interface = "session_manager"' in source
    assert "iam_instance_profile = var.iam_instance_profile" in source
    assert "associate_public_ip_address" not in source
    # Packer's temporary group gets no rule with session_manager; nothing asks for one.
    assert "temporary_security_group_source" not in source


def test_same_inputs_give_byte_identical_output(tmp_path: Path) -> None:
    image = config.load("deepseek-r1-7b")
    first = render.render(image, (1, 11, 2), out=tmp_path / "a")
    second = render.render(image, (1, 11, 2), out=tmp_path / "b")
    assert [p.read_bytes() for p in first.files] == [p.read_bytes() for p in second.files]


def test_version_specific_blocks_are_gated(tmp_path: Path) -> None:
    image = config.load("deepseek-r1-7b")
    old = render.render(image, (1, 6, 6), out=tmp_path / "old")
    new = render.render(image, (1, 11, 2), out=tmp_path / "new")
    old_text = "".join(p.read_text() for p in old.files)
    new_text = "".join(p.read_text() for p in new.files)
    for modern_only in (
        "required_plugins",
        "imds_support",
        "metadata_options",
        "spot_allocation_strategy",
    ):
        assert modern_only not in old_text
        assert modern_only in new_text
    assert not (tmp_path / "old" / "plugins.pkr.hcl").exists()


def test_only_the_local_rendering_skips_the_run_tags_on_the_ami(tmp_path: Path) -> None:
    """The emulator gap (moto's CreateImage cannot tag snapshots) is worked around for the
    emulator only: what real AWS bakes get keeps the plugin's default."""
    image = config.load("deepseek-r1-7b")
    aws = render.render(image, (1, 11, 2), out=tmp_path / "aws")
    emulator = render.render(image, (1, 11, 2), local=True, out=tmp_path / "local")
    assert "skip_ami_run_tags" not in "".join(p.read_text() for p in aws.files)
    assert "skip_ami_run_tags = true" in (emulator.directory / "source.pkr.hcl").read_text()


def test_rerender_removes_files_of_another_packer_generation(tmp_path: Path) -> None:
    image = config.load("deepseek-r1-7b")
    render.render(image, (1, 11, 2), out=tmp_path)
    render.render(image, (1, 6, 6), out=tmp_path)
    assert not (tmp_path / "plugins.pkr.hcl").exists()


def test_local_rendering_has_no_provisioners_and_says_why(tmp_path: Path) -> None:
    rendered = render.render(config.load("deepseek-r1-7b"), (1, 6, 6), local=True, out=tmp_path)
    build = (tmp_path / "build.pkr.hcl").read_text()
    source = (tmp_path / "source.pkr.hcl").read_text()
    assert "provisioner" not in build
    assert 'communicator            = "none"' in source
    assert "no machine behind it" in source
    assert "ollama_version" not in rendered.var_file.read_text()


@pytest.mark.parametrize(
    ("value", "literal"),
    [
        ("plain", '"plain"'),
        ("${var.x}", '"$${var.x}"'),
        ("%{ if }", '"%%{ if }"'),
        ('quote " and \\', '"quote \\" and \\\\"'),
        (True, "true"),
        (30, "30"),
        (["a", "b"], '["a", "b"]'),
        ({}, "{}"),
    ],
)
def test_hcl_literals_escape_template_sequences(value, literal: str) -> None:
    assert render.hcl(value) == literal


def test_assignments_align_like_packer_fmt() -> None:
    text = render.assignments({"a": 1, "long_name": 2, "m": {"k": "v"}, "z": 3})
    assert text == 'a         = 1\nlong_name = 2\nm = {\n  "k" = "v"\n}\nz = 3\n'


def test_build_host_files_are_uploaded_and_fetched_from_staging(tmp_path: Path) -> None:
    """file:// URLs name files of the machine that bakes: the bake uploads them, and the scripts
    fetch (and check) them from the staging folder."""
    good = (config.IMAGES_DIR / "deepseek-r1-7b.toml").read_text()
    sha = "b" * 64
    text = good.replace('keep_alive = "-1"', 'keep_alive = "-1"\nurl = "file:///srv/o/ollama.tgz"')
    text = text.replace(
        '[[models]]\nname = "deepseek-r1:7b"',
        f'[[models]]\nname = "team"\ngguf = {{ url = "file:///srv/m/team.gguf", sha256 = "{sha}" }}',
    )
    (tmp_path / "img.toml").write_text(text)
    image = config.load(tmp_path / "img.toml")
    assert render.uploads(image) == ["/srv/m/team.gguf", "/srv/o/ollama.tgz"]
    values = render.variables(image, "aws")
    assert "uploads" not in values, "this machine's paths are -var plumbing, not fingerprinted"
    assert values["ollama_download_url"] == f"file://{render.STAGING}/ollama.tgz"
    assert values["ollama_import"] == f"team|file://{render.STAGING}/team.gguf|{sha}"
    build = render.render(image, (1, 11, 2), out=tmp_path / "out").directory / "build.pkr.hcl"
    assert 'destination = "/tmp/bakery-files/"' in build.read_text()
