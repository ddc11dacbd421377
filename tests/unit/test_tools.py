"""Which packer and which terraform (or tofu) the tool runs: the variable wins, else the newest
of PATH's and the checkout's .tools/bin; tofu only where no terraform is found."""

from __future__ import annotations

from pathlib import Path

import pytest
from tooling import modern_packer, oldest_packer

from bakery import packer, terraform, tools
from bakery.errors import BakeryError


def program(folder: Path, name: str, says: str) -> str:
    """Stands in for a program that prints `says` as its version: the versions and names of
    these cases (a tie, a broken binary, a tofu beside a terraform) exist on no machine here."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(f"#!/bin/sh\necho '{says}'\n")
    path.chmod(0o755)
    return str(path)


@pytest.fixture
def search(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> tuple[Path, Path]:
    """An empty PATH folder and an empty .tools/bin; the variables unset."""
    on_path, tools_bin = tmp_path / "path", tmp_path / "tools-bin"
    on_path.mkdir()
    tools_bin.mkdir()
    monkeypatch.setenv("PATH", str(on_path))
    monkeypatch.setattr(tools, "TOOLS_BIN", tools_bin)
    for name in ("PACKER", "TERRAFORM"):
        monkeypatch.delenv(name, raising=False)
    return on_path, tools_bin


def test_the_newest_real_packer_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    old, modern = oldest_packer(), modern_packer()
    (tmp_path / "path").mkdir()
    (tmp_path / "tools-bin").mkdir()
    (tmp_path / "path" / "packer").symlink_to(old)
    (tmp_path / "tools-bin" / "packer").symlink_to(modern)
    monkeypatch.setenv("PATH", str(tmp_path / "path"))
    monkeypatch.setattr(tools, "TOOLS_BIN", tmp_path / "tools-bin")
    monkeypatch.delenv("PACKER", raising=False)
    assert packer.binary() == str(tmp_path / "tools-bin" / "packer")
    # ... and the other way round: it is the version that decides, not the folder.
    (tmp_path / "path" / "packer").unlink()
    (tmp_path / "tools-bin" / "packer").unlink()
    (tmp_path / "path" / "packer").symlink_to(modern)
    (tmp_path / "tools-bin" / "packer").symlink_to(old)
    assert packer.binary() == str(tmp_path / "path" / "packer")


def test_packer_variable_wins_over_a_newer_one(
    monkeypatch: pytest.MonkeyPatch, search: tuple[Path, Path]
) -> None:
    on_path, tools_bin = search
    program(tools_bin, "packer", "Packer v1.11.2")
    chosen = program(on_path / "old", "packer", "Packer v1.6.6")
    monkeypatch.setenv("PACKER", chosen)
    assert packer.binary() == chosen


def test_a_tie_goes_to_path(search: tuple[Path, Path]) -> None:
    on_path, tools_bin = search
    first = program(on_path, "packer", "Packer v1.9.4")
    program(tools_bin, "packer", "Packer v1.9.4")
    assert packer.binary() == first


def test_one_that_cannot_say_its_version_loses(search: tuple[Path, Path]) -> None:
    on_path, tools_bin = search
    program(on_path, "packer", "Segmentation fault")
    working = program(tools_bin, "packer", "Packer v1.6.6")
    assert packer.binary() == working


def test_the_same_file_twice_runs_no_version(search: tuple[Path, Path]) -> None:
    on_path, tools_bin = search
    real = program(on_path, "packer", "never asked")
    (tools_bin / "packer").symlink_to(real)
    assert tools.candidates("packer") == [real]
    assert packer.binary() == real  # a broken version would have made newest() pick by order


def test_missing_packer_is_one_line_naming_both_places(search: tuple[Path, Path]) -> None:
    with pytest.raises(BakeryError) as e:
        packer.binary()
    assert str(e.value) == (
        f"packer is not installed (not on PATH, not in {search[1]}): install Packer >= 1.11"
        " (HashiCorp's releases), or set PACKER=/path/to/packer"
    )


def test_a_packer_variable_naming_nothing_is_refused(
    monkeypatch: pytest.MonkeyPatch, search: tuple[Path, Path], tmp_path: Path
) -> None:
    monkeypatch.setenv("PACKER", str(tmp_path / "absent"))
    with pytest.raises(BakeryError, match=r"PACKER=.*/absent is not an executable file: fix it"):
        packer.binary()


def test_terraform_is_preferred_to_a_newer_tofu(search: tuple[Path, Path]) -> None:
    on_path, tools_bin = search
    wanted = program(on_path, "terraform", '{"terraform_version": "1.5.7"}')
    program(tools_bin, "tofu", '{"terraform_version": "1.10.6"}')
    assert terraform.binary() == wanted


def test_tofu_stands_in_where_no_terraform_is_found(search: tuple[Path, Path]) -> None:
    _, tools_bin = search
    tofu = program(tools_bin, "tofu", '{"terraform_version": "1.10.6"}')
    assert terraform.binary() == tofu
    assert terraform.name(tofu) == "tofu"
    assert terraform.version(tofu) == (1, 10, 6)


def test_terraform_variable_may_name_tofu(
    monkeypatch: pytest.MonkeyPatch, search: tuple[Path, Path]
) -> None:
    on_path, tools_bin = search
    program(on_path, "terraform", '{"terraform_version": "1.11.4"}')
    tofu = program(tools_bin / "opentofu", "tofu-1.10.6", '{"terraform_version": "1.10.6"}')
    monkeypatch.setenv("TERRAFORM", tofu)
    assert terraform.binary() == tofu
    assert terraform.name(tofu) == "tofu"


def test_a_link_named_terraform_to_tofu_is_called_tofu(tmp_path: Path) -> None:
    tofu = program(tmp_path, "tofu-1.10.6", "")
    (tmp_path / "terraform").symlink_to(tofu)
    assert terraform.name(str(tmp_path / "terraform")) == "tofu"
    assert terraform.name("/usr/local/bin/terraform") == "terraform"


def test_neither_terraform_nor_tofu_is_one_line(search: tuple[Path, Path]) -> None:
    with pytest.raises(BakeryError) as e:
        terraform.binary()
    assert str(e.value) == (
        f"neither terraform nor tofu is installed (not on PATH, not in {search[1]}): install"
        " Terraform >= 1.5 or OpenTofu, or set TERRAFORM=/path/to/terraform (or to tofu)"
    )


def test_too_old_tofu_is_named_tofu(tmp_path: Path) -> None:
    old = program(tmp_path, "tofu", '{"terraform_version": "1.4.0"}')
    with pytest.raises(BakeryError, match=r"^tofu 1\.4\.0 at .* is too old: the fleet module"):
        terraform.version(old)
