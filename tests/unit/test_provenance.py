"""Provenance tags of a finished AMI, from the version info a real bake brings back."""

from __future__ import annotations

import dataclasses

from bakery import bake, catalog, config

BASE = bake.Base(
    "ami-0base", "Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04)", "ssm:/aws/service/x"
)
INFO = {
    "models": [{"name": "deepseek-r1:7b", "digest": "sha256:" + "a" * 64}],
    "nvidia_driver": "580.95.05",
    "ollama": "0.13.1",
    "ui": {"id": "sha256:" + "b" * 64, "ref": "bakery/ui:baked", "source": "git+https://x@y"},
}


def test_provisioned_bake_records_digests_versions_and_ui_image() -> None:
    image = config.load("deepseek-r1-7b")
    tags = bake.provenance(image, BASE, "f" * 64, "20261126-000000-abcdef", INFO)
    assert tags[catalog.MODEL + "deepseek-r1:7b"] == "sha256:" + "a" * 64
    assert tags[catalog.VERSIONS] == "ollama=0.13.1 nvidia=580.95.05"
    assert tags[catalog.UI_IMAGE_ID] == "sha256:" + "b" * 64
    assert tags[catalog.PROVISIONED] == "true"
    assert tags[catalog.SOURCE_AMI] == "ami-0base"
    assert tags[catalog.MANAGED_BY] == "gpu-ami-bakery"
    assert tags["Project"] == "private-llm"
    assert all(len(v) <= 256 for v in tags.values())
    assert catalog.FINGERPRINT not in tags, "the fingerprint is added last, by bake()"


def test_local_bake_says_nothing_was_provisioned() -> None:
    tags = bake.provenance(config.load("deepseek-r1-7b"), BASE, "f" * 64, "b", None)
    assert tags[catalog.PROVISIONED] == "false"
    assert tags[catalog.MODEL + "deepseek-r1:7b"] == "unknown"
    assert catalog.UI_IMAGE_ID not in tags
    assert tags[catalog.VERSIONS] == "ollama=0.13.1 nvidia=base"  # the base's, not known here
    pinned = bake.provenance(config.load("deepseek-r1-7b-ubuntu2404"), BASE, "f" * 64, "b", None)
    assert pinned[catalog.VERSIONS] == "ollama=0.13.1 nvidia=580"


def test_the_driver_the_bake_found_is_recorded_whatever_its_branch() -> None:
    """The DLAMI moved from 580 to 595: the tag says what the base really shipped."""
    info = {**INFO, "nvidia_driver": "595.45.04"}
    tags = bake.provenance(config.load("deepseek-r1-7b"), BASE, "f" * 64, "b", info)
    assert catalog.versions_of(tags) == {"ollama": "0.13.1", "nvidia": "595.45.04"}


def test_untagged_model_reference_finds_its_latest_digest() -> None:
    image = config.load("deepseek-r1-7b")
    image = image.__class__(**{**image.__dict__, "models": (config.Model("llama3"),)})
    info = {**INFO, "models": [{"name": "llama3:latest", "digest": "sha256:" + "c" * 64}]}
    tags = bake.provenance(image, BASE, "f" * 64, "b", info)
    assert tags[catalog.MODEL + "llama3"] == "sha256:" + "c" * 64


def test_the_ui_tag_names_the_source_the_definition_chose() -> None:
    image = config.load("deepseek-r1-7b")
    built = bake.provenance(image, BASE, "f" * 64, "b", INFO)
    assert built[catalog.UI] == f"{image.ui.git}#{image.ui.commit}"
    pulled = dataclasses.replace(image.ui, image="ghcr.io/x/ui:1", git=None, commit=None)
    assert pulled.tag == "ghcr.io/x/ui:1"
    archive = config.Download("file:///srv/ui/ui-standin.tar", "c" * 64)
    loaded = dataclasses.replace(image.ui, git=None, commit=None, archive=archive)
    assert loaded.tag == "ui-standin.tar@sha256:" + "c" * 64
