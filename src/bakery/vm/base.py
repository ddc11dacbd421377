"""The disk a local VM starts from: a downloaded cloud image checked against its sha256, or a
Debian release built here with debootstrap. Both are cached outside the checkout, keyed by what
went into them, and made in a scratch folder that is removed on any failure or Ctrl-C."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..config import Qemu
from ..errors import BakeryError
from . import require

Say = Callable[[str], None]
MIRROR = os.environ.get("BAKERY_DEBIAN_MIRROR", "http://deb.debian.org/debian")
# What a base needs to be baked and verified like an EC2 instance: systemd and udev, sshd,
# cloud-init (NoCloud), python3 (testinfra, version-info), curl (the scripts' downloads), a
# kernel. debootstrap does not resolve virtual packages: dbus and python3-cffi-backend are named.
PACKAGES = (
    "systemd,systemd-sysv,systemd-resolved,dbus,udev,kmod,openssh-server,cloud-init,"
    "python3,python3-cffi-backend,sudo,ca-certificates,curl,iproute2,procps,zstd,gnupg,"
    "linux-image-amd64"
)
RAW_GIB = 4  # the ext4 image; the VM's disk grows to [qemu] disk_gib and cloud-init resizes /
# Files the base carries, written before the disk image is made (why, next to each).
FILES = {
    # The disk has no partition table: the root file system is the whole of /dev/vda.
    "etc/fstab": "/dev/vda / ext4 defaults,errors=remount-ro 0 1\n",
    "etc/hostname": "debian\n",
    "etc/systemd/network/10-dhcp.network": "[Match]\nName=en* eth*\n\n[Network]\nDHCP=yes\n",
    # Only NoCloud: without this, cloud-init probes for EC2 and others at every boot.
    "etc/cloud/cloud.cfg.d/90-bakery-nocloud.cfg": "datasource_list: [NoCloud, None]\n",
    # Debian's resolved answers LLMNR on every address (port 5355): nothing listens publicly.
    "etc/systemd/resolved.conf.d/90-bakery.conf": "[Resolve]\nLLMNR=no\nMulticastDNS=no\n",
    # minbase has no locales but C.UTF-8; cloud-init's default (en_US.UTF-8) fails without them.
    "etc/cloud/cloud.cfg.d/91-bakery-locale.cfg": "locale: C.UTF-8\n",
    "etc/apt/sources.list": (
        "deb http://deb.debian.org/debian {release} main\n"
        "deb http://deb.debian.org/debian {release}-updates main\n"
        "deb http://security.debian.org/debian-security {release}-security main\n"
    ),
}
UNITS = ("systemd-networkd.service", "systemd-resolved.service", "ssh.service")
RECIPE = 1  # bump when the way a base is made changes


@dataclass(frozen=True)
class Base:
    disk: Path
    sha256: str
    name: str  # what it is, for messages and the manifest
    kernel: Path | None = None  # a debootstrap base has no boot loader: boot its kernel directly
    initrd: Path | None = None


def cache_dir() -> Path:
    root = os.environ.get("BAKERY_CACHE") or Path(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "gpu-ami-bakery"
    )
    return Path(root) / "bases"


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def get(qemu: Qemu, say: Say) -> Base:
    if qemu.debootstrap:
        return debian(qemu.debootstrap, say)
    assert qemu.base is not None
    return downloaded(qemu.base.url, qemu.base.sha256, say)


def downloaded(url: str, sha256: str, say: Say) -> Base:
    """A cloud image, fetched once into the cache and checked before every use of the cache."""
    target = cache_dir() / "downloads" / sha256 / Path(url).name
    if target.is_file() and sha256_of(target) == sha256:
        return Base(target, sha256, f"{url} (cached)")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    say(f"qemu: downloading the base {url}")
    try:
        with urllib.request.urlopen(url, timeout=60) as response, partial.open("wb") as out:
            shutil.copyfileobj(response, out, 1 << 20)
    except (OSError, ValueError) as e:
        partial.unlink(missing_ok=True)
        raise BakeryError(f"qemu.base: cannot download {url}: {getattr(e, 'reason', e)}") from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    actual = sha256_of(partial)
    if actual != sha256:
        partial.unlink()
        raise BakeryError(
            f"qemu.base: {url} has sha256 {actual}, not {sha256} (qemu.base.sha256); nothing was kept"
        )
    partial.rename(target)
    return Base(target, sha256, url)


def _key(release: str) -> str:
    recipe = json.dumps(
        {
            "recipe": RECIPE,
            "release": release,
            "packages": PACKAGES,
            "files": FILES,
            "units": UNITS,
        },
        sort_keys=True,
    )
    return hashlib.sha256(recipe.encode()).hexdigest()[:16]


def debian(release: str, say: Say) -> Base:
    """Debian RELEASE from debootstrap: cached by recipe; about two minutes to make here."""
    home = cache_dir() / f"debian-{release}-{_key(release)}"
    record = home / "base.json"
    if record.is_file():
        data = json.loads(record.read_text())
        return Base(
            home / "disk.qcow2",
            data["sha256"],
            data["name"],
            home / "vmlinuz",
            home / "initrd.img",
        )
    for program, package in (("debootstrap", "debootstrap"), ("mkfs.ext4", "e2fsprogs")):
        require(program, package)
    if os.geteuid() != 0:
        raise BakeryError(
            f"qemu.debootstrap: building the Debian {release} base needs root (debootstrap);"
            " run as root, or give qemu.base = {url, sha256} of a cloud image"
        )
    home.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f"debian-{release}-", dir=home.parent))
    try:
        _build(release, scratch, say)
        scratch.rename(home)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return debian(release, say)


def _run(command: list[str], what: str, log: Path) -> None:
    with log.open("a") as out:
        proc = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        tail = " ".join(log.read_text().splitlines()[-3:])[:400]
        raise BakeryError(f"qemu: {what} failed (exit {proc.returncode}): {tail}")


def _build(release: str, scratch: Path, say: Say) -> None:
    root, log = scratch / "root", scratch / "build.log"
    say(f"qemu: building the Debian {release} base with debootstrap from {MIRROR} (log: {log})")
    _run(
        ["debootstrap", "--variant=minbase", f"--include={PACKAGES}", release, str(root), MIRROR],
        "debootstrap",
        log,
    )
    for name, text in FILES.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text.format(release=release))
    resolv = root / "etc" / "resolv.conf"
    resolv.unlink(missing_ok=True)
    resolv.symlink_to("../run/systemd/resolve/stub-resolv.conf")
    _run(["systemctl", f"--root={root}", "enable", *UNITS], "enabling the base's units", log)
    # Every machine made from the base is a first boot: its own host keys and machine ID.
    for key in (root / "etc" / "ssh").glob("ssh_host_*"):
        key.unlink()
    (root / "etc" / "machine-id").write_text("")
    shutil.rmtree(root / "var" / "cache" / "apt" / "archives", ignore_errors=True)
    (root / "var" / "cache" / "apt" / "archives" / "partial").mkdir(parents=True)
    kernels = sorted((root / "boot").glob("vmlinuz-*"))
    initrds = sorted((root / "boot").glob("initrd.img-*"))
    if not kernels or not initrds:
        raise BakeryError(f"qemu: the Debian {release} base has no kernel or initrd in /boot")
    shutil.copyfile(kernels[-1], scratch / "vmlinuz")
    shutil.copyfile(initrds[-1], scratch / "initrd.img")
    raw = scratch / "disk.raw"
    _run(
        ["mkfs.ext4", "-q", "-F", "-L", "root", "-d", str(root), str(raw), f"{RAW_GIB}G"],
        "mkfs.ext4",
        log,
    )
    _run(
        ["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(scratch / "disk.qcow2")],
        "qemu-img convert",
        log,
    )
    raw.unlink()
    shutil.rmtree(root)
    name = f"Debian {release} (debootstrap, {kernels[-1].name.removeprefix('vmlinuz-')})"
    record = {"name": name, "sha256": sha256_of(scratch / "disk.qcow2"), "mirror": MIRROR}
    (scratch / "base.json").write_text(json.dumps(record, indent=2) + "\n")
    say(f"qemu: built {name}")
