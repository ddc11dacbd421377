"""--target qemu: bake the definition into a local VM disk with Packer's qemu builder (the same
build block and provisioners as the AMI), then verify it: boot the disk with the fleet's
user-data on a NoCloud seed, pin the SSH host key the console shows, run tests/image over SSH.

What a local VM proves and what it cannot: the scripts, systemd units, Ollama serving the
model, the UI container, sshd settings and the user-data run for real; a GPU, its driver,
spot capacity and EBS exist only on AWS, and the GPU checks skip saying so.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import catalog, packer, render, userdata
from .. import expectations as expect
from ..bake import (
    SCRIPTS,
    VERSION_INFO,
    Base,
    Outcome,
    _version_info,
    git_commit,
    new_build_id,
    provenance,
)
from ..config import ImageDef
from ..errors import BakeryError, Interrupted
from ..fingerprint import fingerprint
from ..interrupts import TimedOut, sigterm_as_interrupt, watchdog
from ..sshaccess import Access, close_master, console_host_keys
from ..vm import accel, machine, require, seed
from ..vm import base as vmbase
from ..waiting import duration
from . import require_qemu_table

Say = Callable[[str], None]
SOURCE_DISK = "bakery:source-disk"
DEFAULT_VERIFY_TIMEOUT_MIN = 45
SSH_WAIT_S = 15 * 60  # software emulation boots slowly
# Image-suite markers of checks a local VM cannot give a real answer to: they skip, counted
# and listed, and do not fail its verdict (tests/image/conftest.py records the markers).
CANNOT_RUN_IN_A_VM = ("gpu", "real_ui")
__all__ = ["bake", "verify"]


def paths(image: ImageDef) -> tuple[Path, Path, Path]:
    """build/NAME/qemu/: the rendered template, NAME.qcow2 and manifest.json."""
    directory = render.BUILD / image.name / "qemu"
    return directory, directory / f"{image.name}.qcow2", directory / "manifest.json"


def _check_local_files(image: ImageDef) -> None:
    for path in render.uploads(image):
        if not Path(path).is_file():
            raise BakeryError(f"{image.path}: file://{path} does not exist on this machine")


def _keypair(directory: Path, comment: str) -> tuple[Path, str]:
    key = directory / "id_ed25519"
    made = subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(key)],
        capture_output=True,
        text=True,
    )
    if made.returncode != 0:
        raise BakeryError(f"ssh-keygen failed: {made.stderr.strip()}")
    return key, key.with_suffix(".pub").read_text().strip()


def _tags_list(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in sorted(tags.items())]


# --- bake ------------------------------------------------------------------------------------


def bake(image: ImageDef, *, force: bool = False, say: Say = print, **aws_only: Any) -> Outcome:
    given = [f"--{k.replace('_', '-')}" for k, v in aws_only.items() if v]
    if given:
        raise BakeryError(
            f"{', '.join(given)}: not with --target qemu (they place an AWS instance)"
        )
    require_qemu_table(image)
    assert image.qemu is not None
    qemu_bin = require("qemu-system-x86_64", "qemu-system-x86")
    require("qemu-img", "qemu-utils")
    require("xorriso", "xorriso")  # Packer writes the NoCloud seed with it
    require("ssh-keygen", "openssh-client")
    ansible = require("ansible-playbook", "ansible-core (pip)") if image.playbooks else None
    _check_local_files(image)
    packer_bin = packer.binary()
    version = packer.version(packer_bin)
    if version < render.MODERN:
        raise BakeryError(
            f"packer {'.'.join(map(str, version))} at {packer_bin} cannot bake --target qemu: need >= 1.7"
            " (required_plugins installs the qemu plugin); set PACKER= to a newer one"
        )
    base = vmbase.get(image.qemu, say)
    rendered = render.render(image, version, target="qemu")
    directory, disk, manifest_path = paths(image)
    fp = fingerprint(
        (*rendered.files, *(p.path for p in image.playbooks)), SCRIPTS, f"qemu-base:{base.sha256}"
    )
    say(f"bake: {image.name} --target qemu: base {base.name}, fingerprint {fp[:12]}")
    previous = _read_manifest(manifest_path)
    if previous and previous.get("fingerprint") == fp and disk.is_file() and not force:
        say(
            f"bake: nothing to do: {expect.rel(disk)} already has fingerprint {fp[:12]}"
            f" (built {previous.get('built_at', '?')}); --force rebuilds"
        )
        return Outcome("skipped", str(disk), "local", fp, previous)

    chosen = accel.choose(image.qemu.accelerator, base, qemu_bin, say)
    build_id = new_build_id()
    out = directory / "out"
    shutil.rmtree(out, ignore_errors=True)
    scratch = Path(tempfile.mkdtemp(prefix="bakery-qemu-bake-"))
    # A version-info.json left by an earlier bake must never stand in for this one's.
    (directory / VERSION_INFO).unlink(missing_ok=True)
    started = time.monotonic()
    try:
        key, public = _keypair(scratch, f"bakery-build-{build_id}")
        variables = {
            "build_id": build_id,
            "scripts_dir": str(SCRIPTS),
            "base_disk": f"file://{base.disk}",
            "base_checksum": f"sha256:{base.sha256}",
            "accelerator": chosen,
            "output_directory": str(out),
            "console_log": str(directory / "bake-console.log"),
            "ssh_private_key_file": str(key),
            "ssh_public_key": public,
            # Build plumbing (this machine's paths), so -var, not the fingerprinted var file.
            "uploads": json.dumps(render.uploads(image)),
        }
        if base.kernel and base.initrd:
            variables |= {"kernel": str(base.kernel), "initrd": str(base.initrd)}
        if image.playbooks:
            variables |= {
                "playbooks": json.dumps([str(p.path) for p in image.playbooks]),
                "ansible_playbook": str(ansible),
            }
        packer.check(packer.init_command(packer_bin, rendered), "init")
        packer.check(packer.validate_command(packer_bin, rendered, variables), "validate")
        result = packer.run(
            packer.build_command(packer_bin, rendered, variables),
            timeout_s=image.build.timeout_minutes * 60,
        )
        if result.interrupted:
            raise Interrupted(f"bake of {image.name} --target qemu interrupted")
        if result.timed_out:
            raise BakeryError(
                f"bake of {image.name} --target qemu timed out after {image.build.timeout_minutes} minutes"
                " (build.timeout_minutes)"
            )
        if result.returncode != 0:
            raise BakeryError(f"packer build failed: {packer.failure(result)}")
        built = out / f"{image.name}.qcow2"
        if not built.is_file():
            raise BakeryError(f"packer finished but left no {expect.rel(built)}")
        info = _version_info(directory)
        built.replace(disk)
    except BaseException as failure:
        _stop_strays(str(out), say)
        shutil.rmtree(out, ignore_errors=True)
        if isinstance(failure, KeyboardInterrupt):
            raise Interrupted(f"bake of {image.name} --target qemu interrupted") from None
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    tags = provenance(image, Base("", base.name, f"qemu:{base.name}"), fp, build_id, info)
    tags.pop(catalog.SOURCE_AMI, None)
    tags |= {SOURCE_DISK: f"sha256:{base.sha256}", catalog.FINGERPRINT: fp}
    manifest = {
        "action": "built",
        "target": "qemu",
        "image": image.name,
        "disk": expect.rel(disk),
        "fingerprint": fp,
        "build_id": build_id,
        "base": {"name": base.name, "sha256": base.sha256},
        "accelerator": chosen,
        "built_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "git_commit": git_commit(),
        "tags": tags,  # the provenance an AMI of the same bake would carry
        "version_info": info,
    }
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    took = time.monotonic() - started
    say(f"baked {image.name} --target qemu: {expect.rel(disk)} in {duration(took)} ({chosen})")
    say(f"  fingerprint  {fp[:12]}")
    say(f"  base         {base.name}")
    models = ", ".join(
        f"{m['name']} ({m.get('digest', '')[:12]})" for m in info.get("models") or []
    )
    say(f"  models       {models or 'none'}")
    say(f"  manifest     {expect.rel(manifest_path)}")
    say(
        "local VM: the provisioning scripts ran for real; what only AWS has (GPU, driver, spot, EBS)"
        f" was not exercised. next: invoke verify --image {image.name} --target qemu"
    )
    return Outcome("built", str(disk), "local", fp, manifest)


def _read_manifest(path: Path) -> dict[str, Any] | None:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return None


def _stop_strays(marker: str, say: Say) -> None:
    """A qemu Packer started and could not stop (it was killed): found by its output path."""
    for proc in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if "qemu-system" in cmdline and marker in cmdline:
                os.kill(int(proc.name), signal.SIGKILL)
                say(f"bake: stopped a qemu process Packer left ({proc.name})")


# --- verify ----------------------------------------------------------------------------------


@dataclass
class Verified:
    image: str
    disk: str
    passed: bool
    verdict: expect.Verdict | None
    timings: dict[str, Any]
    boot_s: dict[str, float]


def verify(
    image: ImageDef,
    *,
    timeout: Any = DEFAULT_VERIFY_TIMEOUT_MIN,
    say: Say = print,
    run_suite: expect.RunSuite = expect.run_pytest,
    **aws_only: Any,
) -> Verified:
    given = [f"--{k.replace('_', '-')}" for k, v in aws_only.items() if v]
    if given:
        raise BakeryError(
            f"{', '.join(given)}: not with --target qemu (they choose an AWS instance)"
        )
    from ..verify import check_timeout

    timeout_s = check_timeout(timeout)
    require_qemu_table(image)
    assert image.qemu is not None
    _, disk, manifest_path = paths(image)
    manifest = _read_manifest(manifest_path)
    if manifest is None or not disk.is_file():
        raise BakeryError(
            f"no local VM disk for {image.name} ({expect.rel(disk)}): run invoke bake --image {image.name} --target qemu"
        )
    qemu_bin = require("qemu-system-x86_64", "qemu-system-x86")
    require("ssh", "openssh-client")
    base = vmbase.get(image.qemu, say)
    chosen = accel.choose(image.qemu.accelerator, base, qemu_bin, say)
    user_data = userdata.render(image)
    paths_ = expect.paths_for(image).fresh()
    expect.write(
        paths_.expect,
        expect.expectations(
            image, {"Tags": _tags_list(manifest["tags"])}, booted_with_user_data=True
        ),
    )
    run_id = new_build_id()
    scratch = Path(tempfile.mkdtemp(prefix="bakery-qemu-verify-"))
    boot_s: dict[str, float] = {}
    returncode, phase = -1, "booting"
    say(
        f"verify: {image.name} --target qemu: {expect.rel(disk)}, run {run_id}, timeout {duration(timeout_s)}"
    )
    try:
        with sigterm_as_interrupt(), watchdog(timeout_s):
            scratch.chmod(0o700)
            key, public = _keypair(scratch, f"bakery-verify-{run_id}")

            def make_seed(where: Path) -> Path:
                return seed.write(
                    where / "seed.iso",
                    instance_id=f"bakery-verify-{run_id}",
                    hostname="bakery-verify",
                    public_key=public,
                    user_data=user_data,
                )

            with machine.boot(
                disk,
                base,
                seed=make_seed,
                memory_mib=image.qemu.memory_mib,
                cpus=image.qemu.cpus,
                accelerator=chosen,
                say=say,
            ) as vm:
                access = Access(image.qemu.ssh_username, scratch, vm.ssh_port)
                phase = "waiting for the host keys on the serial console"
                _pin_host_keys(vm, access, say)
                boot_s["host_keys"] = time.monotonic() - vm.started
                access.write_config("yes")
                phase = "waiting for SSH and cloud-init"
                _wait_ssh(vm, access, say)
                boot_s["ssh"] = time.monotonic() - vm.started
                status = _ssh(access, "cloud-init status --wait --long || true", 20 * 60)
                boot_s["cloud_init"] = time.monotonic() - vm.started
                say(f"verify: cloud-init: {' '.join(status.split())[:200]}")
                boot_s |= _guest_boot_timings(access)
                phase = "running the image tests"
                url = access.url("127.0.0.1")
                say(f"verify: running the image tests: pytest tests/image --hosts={url}")
                returncode = run_suite(
                    expect.suite_command(url, paths_, ssh_config=access.ssh_config, identity=key),
                    timeout_s,
                )
                close_master(access, "127.0.0.1")
    except TimedOut:
        raise BakeryError(
            f"verify of {image.name} --target qemu timed out after {duration(timeout_s)} while {phase};"
            " the VM is stopped"
        ) from None
    except KeyboardInterrupt:
        raise Interrupted(
            f"verify of {image.name} --target qemu interrupted while {phase}; the VM is stopped"
        ) from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    verdict = expect.judge(paths_, returncode, allow_skipped=CANNOT_RUN_IN_A_VM)
    timings = expect.read_timings(paths_.timings)
    result = Verified(image.name, expect.rel(disk), verdict.passed, verdict, timings, boot_s)
    _record(paths_, result, manifest, chosen)
    say(f"verify {image.name} --target qemu: {'PASSED' if verdict.passed else 'FAILED'}")
    say(f"  disk         {result.disk} (fingerprint {manifest['fingerprint'][:12]}, {chosen})")
    say(f"  checks       {verdict.counts}")
    if verdict.skipped_allowed:
        say(
            f"  not here     {verdict.skipped_allowed} checks a local VM cannot run"
            f" ({', '.join(CANNOT_RUN_IN_A_VM)}): skipped, not passed"
        )
    if verdict.first_problem:
        say(f"  first        {verdict.first_problem}")
    say("  boot         " + ", ".join(f"{k.replace('_', ' ')} {v:.0f}s" for k, v in boot_s.items()))
    say(f"  timings      {expect.compact_timings(timings)}")
    say(f"  verdict      {expect.rel(paths_.record)} (nothing in AWS is marked)")
    if not verdict.passed:
        raise BakeryError(
            f"the local VM of {image.name} failed the image tests: {verdict.first_problem}"
        )
    return result


def _pin_host_keys(vm: machine.Machine, access: Access, say: Say) -> None:
    """The keys cloud-init prints to the console: the only ones SSH will accept."""
    deadline = time.monotonic() + SSH_WAIT_S
    while time.monotonic() < deadline:
        vm.check_running()
        keys = console_host_keys(vm.console_text())
        if keys:
            known = access.known_as("127.0.0.1")
            access.known_hosts.write_text("".join(f"{known} {kind} {key}\n" for kind, key in keys))
            say(
                f"verify: pinned {len(keys)} host keys from the serial console ({', '.join(k for k, _ in keys)})"
            )
            return
        time.sleep(2)
    raise BakeryError(f"no SSH host keys on the VM's console within {duration(SSH_WAIT_S)}")


def _ssh(access: Access, command: str, timeout_s: float) -> str:
    proc = subprocess.run(
        ["ssh", "-F", str(access.ssh_config), "-l", access.user, "127.0.0.1", command],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        stdin=subprocess.DEVNULL,
    )
    if proc.returncode != 0:
        raise BakeryError(
            f"ssh {command!r} failed ({proc.returncode}): {proc.stderr.strip()[:300]}"
        )
    return proc.stdout


def _wait_ssh(vm: machine.Machine, access: Access, say: Say) -> None:
    deadline = time.monotonic() + SSH_WAIT_S
    last = ""
    while time.monotonic() < deadline:
        vm.check_running()
        try:
            _ssh(access, "true", 30)
            say(f"verify: SSH answered {time.monotonic() - vm.started:.0f}s after boot")
            return
        except (BakeryError, subprocess.TimeoutExpired) as e:
            last = str(e)
        time.sleep(3)
    raise BakeryError(f"SSH did not answer within {duration(SSH_WAIT_S)}: {last}")


def _guest_boot_timings(access: Access) -> dict[str, float]:
    """Seconds after the guest's boot: Ollama's unit active, and the user-data's readiness."""
    script = (
        "systemctl show ollama.service -p ActiveEnterTimestampMonotonic --value; "
        "sed -n 's/^seconds_since_boot=//p' /run/bakery/ready 2>/dev/null || true"
    )
    lines = _ssh(access, script, 60).split()
    found: dict[str, float] = {}
    if lines and lines[0].isdigit() and int(lines[0]) > 0:
        found["guest_ollama_active"] = int(lines[0]) / 1e6
    if len(lines) > 1 and lines[1].isdigit():
        found["guest_model_loaded"] = float(lines[1])
    return found


def _record(paths_: expect.Paths, result: Verified, manifest: dict[str, Any], chosen: str) -> None:
    v = result.verdict
    data = {
        "image": result.image,
        "target": "qemu",
        "disk": result.disk,
        "fingerprint": manifest.get("fingerprint"),
        "accelerator": chosen,
        "verdict": expect.verdict_record(v),
        "marked": None,  # a local VM never marks anything in AWS
        "timings": result.timings,
        "boot_s": {k: round(s, 1) for k, s in result.boot_s.items()},
    }
    paths_.record.write_text(json.dumps(data, indent=2) + "\n")
