"""A booted local VM: a copy-on-write overlay of the disk (the built image is never written),
a NoCloud seed, SSH forwarded on loopback only, the serial console in a file. Leaving the
`boot` context in any way (return, error, timeout, Ctrl-C, SIGTERM) stops qemu and removes the
overlay, the seed and the console: nothing is left running or on disk."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import BakeryError
from ..interrupts import shielded
from . import require
from .base import Base

Say = Callable[[str], None]
STOP_GRACE_S = 10


@dataclass
class Machine:
    process: subprocess.Popen[bytes]
    ssh_port: int
    console: Path
    scratch: Path
    started: float  # time.monotonic() when qemu started

    def console_text(self) -> str:
        try:
            return self.console.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def check_running(self) -> None:
        if self.process.poll() is not None:
            tail = " | ".join(self.console_text().strip().splitlines()[-3:])[-400:]
            raise BakeryError(
                f"qemu exited ({self.process.returncode}) before the VM was ready; console: {tail or 'empty'}"
            )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def command(
    base: Base | None,
    disk: Path,
    seed: Path | None,
    *,
    memory_mib: int,
    cpus: int,
    accelerator: str,
    ssh_port: int,
    console: Path,
    qemu: str = "qemu-system-x86_64",
) -> list[str]:
    args = [
        qemu,
        "-machine", f"type=pc,accel={accelerator}",
        "-m", f"{memory_mib}M",
        "-smp", str(cpus),
        "-nodefaults",
        "-display", "none",
        "-serial", f"file:{console}",
        "-drive", f"file={disk},if=virtio,format=qcow2,discard=unmap",
        "-netdev", f"user,id=net0,hostfwd=tcp:127.0.0.1:{ssh_port}-:22",
        "-device", "virtio-net-pci,netdev=net0",
        "-no-reboot",
    ]  # fmt: skip
    if seed is not None:
        args += ["-drive", f"file={seed},media=cdrom,readonly=on"]
    if base is not None and base.kernel is not None and base.initrd is not None:
        args += [
            "-kernel", str(base.kernel),
            "-initrd", str(base.initrd),
            "-append", "root=/dev/vda rw console=ttyS0",
        ]  # fmt: skip
    return args


@contextlib.contextmanager
def boot(
    disk: Path,
    base: Base | None,
    *,
    seed: Callable[[Path], Path] | None,
    memory_mib: int,
    cpus: int,
    accelerator: str,
    say: Say,
) -> Iterator[Machine]:
    """Boot DISK (never written: an overlay takes the writes); seed(scratch) makes the seed."""
    qemu = require("qemu-system-x86_64", "qemu-system-x86")
    qemu_img = require("qemu-img", "qemu-utils")
    scratch = Path(tempfile.mkdtemp(prefix="bakery-vm-"))
    process = None
    try:
        overlay = scratch / "overlay.qcow2"
        made = subprocess.run(
            [
                qemu_img,
                "create",
                "-q",
                "-f",
                "qcow2",
                "-F",
                "qcow2",
                "-b",
                str(disk.resolve()),
                str(overlay),
            ],
            capture_output=True,
            text=True,
        )
        if made.returncode != 0:
            raise BakeryError(
                f"qemu-img could not make an overlay of {disk}: {made.stderr.strip()}"
            )
        console = scratch / "console.log"
        port = free_port()
        args = command(
            base,
            overlay,
            seed(scratch) if seed else None,
            memory_mib=memory_mib,
            cpus=cpus,
            accelerator=accelerator,
            ssh_port=port,
            console=console,
            qemu=qemu,
        )
        # Its own session: a Ctrl-C reaches us, and we stop qemu ourselves (below).
        process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            start_new_session=True,
        )  # fmt: skip
        say(
            f"qemu: booted {disk.name} ({accelerator}, {cpus} CPUs, {memory_mib} MiB); SSH on 127.0.0.1:{port}"
        )
        yield Machine(process, port, console, scratch, time.monotonic())
    finally:
        with shielded(say, "qemu: stopping the VM first; Ctrl-C again to abandon it"):
            if process is not None:
                stop(process, say)
        with contextlib.suppress(OSError):
            for path in sorted(scratch.rglob("*"), reverse=True):
                path.rmdir() if path.is_dir() else path.unlink()
            scratch.rmdir()


def stop(process: subprocess.Popen[bytes], say: Say) -> None:
    """SIGTERM (qemu stops the VM at once), then SIGKILL; ours, so a lost guest is no reason
    to wait."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    say("qemu: the VM is stopped")
