"""--target qemu refuses bad input with one line, before anything runs or is written: no qemu,
no [qemu] table, a malformed one, a base URL without its sha256, a base whose sha256 is wrong."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest
from cli import REPO, invoke, one_line_error

GOOD = (REPO / "images" / "deepseek-r1-7b.toml").read_text()


def definition(tmp_path: Path, qemu: str, name: str = "qemu-bad") -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(GOOD + "\n" + qemu)
    return path


def leftovers(name: str) -> list[str]:
    build = REPO / "build" / name
    return sorted(str(p.relative_to(REPO)) for p in build.rglob("*")) if build.exists() else []


@pytest.fixture(autouse=True)
def _no_build_dir_left() -> None:
    shutil.rmtree(REPO / "build" / "qemu-bad", ignore_errors=True)
    yield
    assert leftovers("qemu-bad") == [], "a refused bake writes nothing"


def test_missing_qemu(tmp_path: Path) -> None:
    image = definition(tmp_path, '[qemu]\ndebootstrap = "bookworm"\n')
    # PATH with git and friends but no qemu-system-x86_64.
    bare = tmp_path / "bin"
    bare.mkdir()
    for tool in ("git", "python3"):
        found = shutil.which(tool)
        if found:
            (bare / tool).symlink_to(found)
    line = one_line_error(
        invoke("bake", "--image", str(image), "--target", "qemu", env={"PATH": str(bare)})
    )
    assert line == (
        "error: qemu-system-x86_64 is not installed (needed by --target qemu):"
        " apt-get install qemu-system-x86"
    )


def test_no_qemu_table() -> None:
    line = one_line_error(invoke("bake", "--image", "deepseek-r1-7b", "--target", "qemu"))
    assert "has no [qemu] table: --target qemu needs its base disk" in line


@pytest.mark.parametrize(
    ("qemu", "message"),
    [
        (
            '[qemu]\nbase = { url = "https://example.com/noble.img" }\n',
            "qemu.base.sha256: is required",
        ),
        ("[qemu]\nmemory_mib = 4096\n", "qemu.base: is required"),
        (
            '[qemu]\ndebootstrap = "bookworm"\nmemory_mib = "lots"\n',
            "qemu.memory_mib: must be an integer",
        ),
        ('[qemu]\ndebootstrap = "buster"\n', "qemu.debootstrap: 'buster' is not a Debian release"),
        ('[qemu]\ndebootstrap = "bookworm"\ncpus = 0\n', "qemu.cpus: 0 is out of range (1 to 64)"),
    ],
    ids=["url-without-sha256", "no-base", "memory-not-a-number", "old-release", "zero-cpus"],
)
def test_malformed_qemu_table(tmp_path: Path, qemu: str, message: str) -> None:
    line = one_line_error(
        invoke("bake", "--image", str(definition(tmp_path, qemu)), "--target", "qemu")
    )
    assert message in line, line


def test_wrong_base_sha256_keeps_nothing(tmp_path: Path) -> None:
    disk = tmp_path / "base.qcow2"
    disk.write_bytes(b"not really a disk image\n")
    wrong = hashlib.sha256(b"something else").hexdigest()
    cache = tmp_path / "cache"
    image = definition(
        tmp_path,
        f'[qemu]\nbase = {{ url = "{disk.as_uri()}", sha256 = "{wrong}" }}\nssh_username = "ubuntu"\n',
    )
    line = one_line_error(
        invoke(
            "bake",
            "--image",
            str(image),
            "--target",
            "qemu",
            env={"BAKERY_CACHE": str(cache), "PACKER": str(REPO / ".tools" / "bin" / "packer")},
        )
    )
    actual = hashlib.sha256(disk.read_bytes()).hexdigest()
    assert line == (
        f"error: qemu.base: {disk.as_uri()} has sha256 {actual}, not {wrong} (qemu.base.sha256);"
        " nothing was kept"
    )
    assert [p for p in cache.rglob("*") if p.is_file()] == []


def test_verify_without_a_bake(tmp_path: Path) -> None:
    image = definition(tmp_path, '[qemu]\ndebootstrap = "bookworm"\n')
    line = one_line_error(invoke("verify", "--image", str(image), "--target", "qemu"))
    assert line == (
        "error: no local VM disk for qemu-bad (build/qemu-bad/qemu/qemu-bad.qcow2):"
        " run invoke bake --image qemu-bad --target qemu"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--ami", "ami-0123456789abcdef0"], "--ami: not with --target qemu"),
        (["--local"], "--local is short for --target emulator; it cannot go with --target qemu"),
        (["--host", "local://"], "--host runs the image tests alone: it takes no --target"),
    ],
    ids=["ami", "local", "host"],
)
def test_verify_options_that_do_not_fit(tmp_path: Path, args: list[str], message: str) -> None:
    image = definition(tmp_path, '[qemu]\ndebootstrap = "bookworm"\n')
    line = one_line_error(invoke("verify", "--image", str(image), "--target", "qemu", *args))
    assert message in line, line


def test_unknown_target() -> None:
    line = one_line_error(invoke("bake", "--image", "deepseek-r1-7b", "--target", "gcp"))
    assert line == "error: --target 'gcp' is not a target (aws, emulator, qemu)"


def test_kvm_probe_says_which_accelerator(tmp_path: Path) -> None:
    """The real probe on this machine: KVM only if a probe guest prints, else TCG, saying why."""
    from bakery.vm import accel
    from bakery.vm.base import Base

    qemu = shutil.which("qemu-system-x86_64")
    if qemu is None:
        pytest.fail("qemu-system-x86_64 is not installed: run ./.ci/setup")
    said: list[str] = []
    chosen = accel.choose("auto", Base(tmp_path / "none.qcow2", "", "probe"), qemu, said.append)
    assert chosen in ("kvm", "tcg")
    (line,) = said
    if chosen == "kvm":
        assert "KVM answered a probe boot" in line
    else:
        assert "software emulation (tcg)" in line
        assert any(why in line for why in ("/dev/kvm", "printed nothing", "failed to start")), line
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        assert chosen == "tcg"
