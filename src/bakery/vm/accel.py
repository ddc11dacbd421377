"""KVM or software emulation (TCG). /dev/kvm existing is not enough: on some hosts KVM_CREATE_VM
succeeds but a KVM guest never runs (seen on these machines: the host spins in the kernel).
So KVM is chosen only when a probe boot of the base's kernel prints on the serial console
within a deadline; a base without its own kernel probes the firmware's first words instead."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from ..errors import BakeryError
from .base import Base
from .machine import stop

Say = Callable[[str], None]
PROBE_DEADLINE_S = 15
# What a KVM guest prints first: the kernel's banner, or SeaBIOS's own.
SIGNS = (b"Linux version", b"SeaBIOS")


def choose(wanted: str, base: Base, qemu: str, say: Say) -> str:
    """The accelerator for [qemu] accelerator = auto | kvm | tcg, saying which and why."""
    if wanted == "tcg":
        say("qemu: software emulation (tcg), as [qemu] accelerator says: slow but works anywhere")
        return "tcg"
    why = _kvm_unusable(base, qemu)
    if why is None:
        say("qemu: KVM answered a probe boot: hardware acceleration (kvm)")
        return "kvm"
    if wanted == "kvm":
        raise BakeryError(f'qemu.accelerator = "kvm", but {why}; use "auto" or "tcg"')
    say(f"qemu: {why}: software emulation (tcg), much slower than KVM")
    return "tcg"


def _kvm_unusable(base: Base, qemu: str) -> str | None:
    """Why KVM cannot be used here, or None when a probe guest printed within the deadline."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "/dev/kvm is missing or not accessible"
    with tempfile.TemporaryDirectory(prefix="bakery-kvm-probe-") as scratch:
        console = Path(scratch) / "console"
        args = [qemu, "-machine", "accel=kvm", "-m", "256M", "-nodefaults", "-display", "none",
                "-serial", f"file:{console}", "-no-reboot"]  # fmt: skip
        if base.kernel is not None:
            args += ["-kernel", str(base.kernel), "-append", "console=ttyS0 panic=-1"]
        else:
            args += ["-device", "isa-debugcon,iobase=0x402,chardev=dbg",
                     "-chardev", f"file,id=dbg,path={console}"]  # fmt: skip
        process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            start_new_session=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + PROBE_DEADLINE_S
            while time.monotonic() < deadline:
                if process.poll() is not None:
                    err = (process.stderr.read() if process.stderr else b"").decode(
                        errors="replace"
                    )
                    return f"a KVM probe guest failed to start ({err.strip().splitlines()[-1:] or 'no message'})"
                if console.exists() and any(s in console.read_bytes() for s in SIGNS):
                    return None
                time.sleep(0.2)
            return f"a KVM probe guest printed nothing within {PROBE_DEADLINE_S} s"
        finally:
            stop(process, lambda _: None)
