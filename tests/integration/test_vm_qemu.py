"""--target qemu end to end: the real Packer 1.9 and qemu plugin bake the tiny image into a
Debian 12 VM disk with the project's own provisioning scripts and a team playbook, then verify
boots it with the fleet's user-data on a NoCloud seed and runs tests/image over real SSH.

Slow (software emulation: minutes per boot) and marked `vm`: `pytest -m "not vm"` is the fast
suite. The module bakes once; the tests after the bake read what it made.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import vm_support
from cli import REPO, invoke

from bakery import config

pytestmark = [pytest.mark.vm, pytest.mark.slow]
BAKE_TIMEOUT_S = 60 * 60
VERIFY_TIMEOUT_S = 45 * 60
NAME = "tiny-qwen2-vm"
BUILD = REPO / "build" / NAME
# What the local VM must prove for real (tests/image node names; each must PASS, not skip).
MUST_PASS = [
    "test_image_hardening.py::test_ssh_host_keys_not_baked",
    "test_image_hardening.py::test_authorized_keys_written_this_boot",
    "test_image_hardening.py::test_authorized_keys_hold_only_this_boots_keys",
    "test_image_hardening.py::test_sshd_refuses_passwords",
    "test_image_ollama.py::test_ollama_version",
    "test_image_ollama.py::test_ollama_unit_enabled",
    "test_image_ollama.py::test_ollama_unit_active",
    "test_image_ollama.py::test_ollama_listens_on_expected_address",
    "test_image_ollama.py::test_ollama_listens_on_no_other_address",
    "test_image_ollama.py::test_model_present",
    "test_image_ollama.py::test_model_digest",
    "test_image_ollama.py::test_generation_answers_within_budget",
    "test_image_ui.py::test_ui_image_present",
    "test_image_ui.py::test_ui_image_id",
    "test_image_ui.py::test_nothing_listens_publicly_but_sshd",
    "test_image_boot.py::test_user_data_ready",
    "test_image_boot.py::test_ui_container_running",
    "test_image_boot.py::test_ui_answers",
    "test_image_boot.py::test_ui_lists_models_through_ollama",
    "test_image_playbooks.py::test_playbook_applied",
]


@pytest.fixture(scope="module")
def vm_image(tmp_path_factory: pytest.TempPathFactory, ollama_tarball, tiny_model) -> Path:
    out = tmp_path_factory.mktemp("vm-image")
    archive, archive_sha = vm_support.standin_ui_archive(out / "ui")
    return vm_support.vm_definition(
        out, ollama_tarball, tiny_model.path, tiny_model.sha256, archive, archive_sha
    )


def qemu_processes(marker: str) -> list[str]:
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        program = cmdline.split(" ")[0]
        if "qemu-system" in program and marker in cmdline:
            found.append(f"{proc.name}: {cmdline[:200]}")
    return found


@pytest.fixture(scope="module")
def baked(vm_image: Path) -> subprocess.CompletedProcess[str]:
    result = invoke(
        "bake", "--image", str(vm_image), "--target", "qemu", "--force", timeout=BAKE_TIMEOUT_S
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    return result


def test_bake_runs_the_provisioners_and_records_provenance(baked, vm_image: Path) -> None:
    manifest = json.loads((BUILD / "qemu" / "manifest.json").read_text())
    assert (BUILD / "qemu" / f"{NAME}.qcow2").is_file()
    assert manifest["target"] == "qemu" and manifest["base"]["name"].startswith("Debian bookworm")
    info = manifest["version_info"]
    assert info["ollama"] == "0.13.1"
    assert info["os"]["id"] == "debian" and info["os"]["version_id"] == "12"
    assert info["docker"], "docker.io from Debian, installed by install-docker.sh"
    (model,) = info["models"]
    assert model["name"] == "tiny-qwen2:latest" and len(model["digest"]) == 64
    assert manifest["tags"]["bakery:model/tiny-qwen2"] == model["digest"]
    assert manifest["tags"]["bakery:fingerprint"] == manifest["fingerprint"]
    assert manifest["tags"]["bakery:ui-image-id"] == info["ui"]["id"]
    ui = config.load(vm_image).ui
    assert ui.archive and manifest["tags"]["bakery:ui"] == ui.tag  # the archive, by its sha256
    assert "Provisioning with Ansible" in baked.stdout and "Team baseline (sample)" in baked.stdout
    assert "the provisioning scripts ran for real" in baked.stdout
    assert qemu_processes(NAME) == [], "the build VM is stopped"
    assert not (BUILD / "qemu" / "out").exists()


def test_second_bake_with_the_same_inputs_does_nothing(baked, vm_image: Path) -> None:
    disk = BUILD / "qemu" / f"{NAME}.qcow2"
    before = disk.stat().st_mtime_ns
    again = invoke("bake", "--image", str(vm_image), "--target", "qemu", timeout=600)
    assert again.returncode == 0, again.stderr
    assert "nothing to do" in again.stdout
    assert disk.stat().st_mtime_ns == before


@pytest.fixture(scope="module")
def verified(baked, vm_image: Path) -> subprocess.CompletedProcess[str]:
    return invoke("verify", "--image", str(vm_image), "--target", "qemu", timeout=VERIFY_TIMEOUT_S)


def _cases(report: Path) -> dict[str, str]:
    """node id (file::name, parameters dropped) -> passed | failed | skipped."""
    out = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        file = case.get("classname", "").rsplit(".", 1)[-1] + ".py"
        name = case.get("name", "").split("[", 1)[0]
        state = "passed"
        for child in case:
            if child.tag in ("failure", "error"):
                state = "failed"
            elif child.tag == "skipped":
                state = "skipped"
        if out.get(f"{file}::{name}") != "failed":
            out[f"{file}::{name}"] = state
    return out


def test_verify_passes_the_image_tests_for_real(verified) -> None:
    assert verified.returncode == 0, verified.stdout[-4000:] + verified.stderr[-2000:]
    record = json.loads((BUILD / "verify.json").read_text())
    assert record["target"] == "qemu" and record["marked"] is None
    assert record["verdict"]["passed"] is True and record["verdict"]["failures"] == 0
    cases = _cases(BUILD / "verify-report.xml")
    not_passed = {
        name: cases.get(name, "missing") for name in MUST_PASS if cases.get(name) != "passed"
    }
    assert not_passed == {}, f"must pass for real in the VM: {not_passed}"
    gpu = {name: state for name, state in cases.items() if name.startswith("test_image_gpu.py")}
    assert gpu and set(gpu.values()) == {"skipped"}, "no GPU in a local VM: every GPU check skips"
    assert "nothing in AWS is marked" in verified.stdout


def test_verify_records_boot_and_serving_timings(verified) -> None:
    record = json.loads((BUILD / "verify.json").read_text())
    boot = record["boot_s"]
    assert 0 < boot["host_keys"] <= boot["ssh"] <= boot["cloud_init"]
    assert boot["guest_ollama_active"] > 0 and boot["guest_model_loaded"] > 0
    assert record["timings"]["ttft_s"] > 0 and record["timings"]["tokens_per_s"] > 0


def _interrupt_when(args: list[str], line: str, timeout_s: float) -> tuple[int, str]:
    """Run invoke ARGS, send SIGINT once LINE appears in its output; (exit code, output)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "invoke", *args], cwd=REPO, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    seen, deadline = [], time.monotonic() + timeout_s
    assert proc.stdout is not None
    for text in proc.stdout:
        seen.append(text)
        if line in text:
            proc.send_signal(signal.SIGINT)
            break
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"{line!r} did not appear within {timeout_s} s: {''.join(seen)[-2000:]}")
    rest, _ = proc.communicate(timeout=600)
    return proc.returncode, "".join(seen) + rest


def _scratch() -> set[str]:
    tmp = Path(os.environ.get("TMPDIR", "/tmp"))
    return {p.name for p in tmp.glob("bakery-vm-*")} | {p.name for p in tmp.glob("bakery-qemu-*")}


def test_ctrl_c_during_verify_stops_the_vm_and_removes_its_disks(baked, vm_image: Path) -> None:
    before = _scratch()
    code, out = _interrupt_when(
        ["verify", "--image", str(vm_image), "--target", "qemu"], "qemu: booted", 600
    )
    assert code == 130, out[-2000:]
    assert "the VM is stopped" in out
    assert qemu_processes(NAME) == []
    assert _scratch() - before == set()


def test_ctrl_c_during_a_forced_bake_leaves_no_vm_and_keeps_the_last_disk(
    baked, vm_image: Path
) -> None:
    disk = BUILD / "qemu" / f"{NAME}.qcow2"
    before, mtime = _scratch(), disk.stat().st_mtime_ns
    code, out = _interrupt_when(
        ["bake", "--image", str(vm_image), "--target", "qemu", "--force"],
        "Waiting for SSH to become available",
        900,
    )
    assert code == 130, out[-2000:]
    assert "nothing to do" not in out, "--force rebuilds"
    assert qemu_processes(NAME) == []
    assert not (BUILD / "qemu" / "out").exists()
    assert _scratch() - before == set()
    assert disk.stat().st_mtime_ns == mtime, "the last good disk is kept"
