"""Run packer: find it, know its version, build its command lines, run them with live output."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from . import tools
from .errors import BakeryError
from .interrupts import sigterm_as_interrupt
from .render import MODERN, Rendered

MINIMUM = (1, 6, 6)
# How long Packer gets to clean up after an interrupt before it is killed.
CLEANUP_GRACE_S = 300


def binary() -> str:
    """$PACKER, else the newest packer on PATH or in .tools/bin (see tools.find)."""
    return tools.find(["packer"], "PACKER", "Packer >= 1.11 (HashiCorp's releases)", read_version)


def parse_version(text: str) -> tools.Version:
    return tools.parse_version(text, "packer")


def read_version(packer: str) -> tools.Version:
    """What `packer version` says, whatever it is."""
    try:
        out = subprocess.run(
            [packer, "version"], capture_output=True, text=True, timeout=60, env=environment()
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise BakeryError(f"cannot run {packer}: {getattr(e, 'strerror', None) or e}") from None
    return parse_version(out.stdout or out.stderr)


def version(packer: str) -> tuple[int, int, int]:
    """The version, refused when this tool cannot work with it."""
    found = read_version(packer)
    if found < MINIMUM:
        raise BakeryError(
            f"packer {tools.show(found)} at {packer} is too old: need >= {tools.show(MINIMUM)} (>= 1.11 for real AWS)"
        )
    return found


def require_for_aws(found: tuple[int, int, int], packer: str) -> None:
    """Real bakes need required_plugins (IMDSv2 on the build instance, spot allocation strategy)."""
    if found < MODERN:
        raise BakeryError(
            f"packer {tools.show(found)} at {packer} is too old for real AWS bakes: need >= {tools.show(MODERN)} (1.11+"
            " recommended) for the amazon plugin's IMDSv2 options; it is enough for --local"
        )


def environment() -> dict[str, str]:
    # No calls home from packer: there may be no internet, and there is nothing to learn there.
    return {**os.environ, "CHECKPOINT_DISABLE": "1", "PACKER_NO_COLOR": "1"}


def _var_args(variables: Mapping[str, str]) -> list[str]:
    return [arg for name, value in variables.items() for arg in ("-var", f"{name}={value}")]


def init_command(packer: str, rendered: Rendered) -> list[str]:
    return [packer, "init", str(rendered.directory)]


def validate_command(packer: str, rendered: Rendered, variables: Mapping[str, str]) -> list[str]:
    return [
        packer,
        "validate",
        f"-var-file={rendered.var_file}",
        *_var_args(variables),
        str(rendered.directory),
    ]


def build_command(packer: str, rendered: Rendered, variables: Mapping[str, str]) -> list[str]:
    return [
        packer,
        "build",
        "-color=false",
        "-on-error=cleanup",
        f"-var-file={rendered.var_file}",
        *_var_args(variables),
        str(rendered.directory),
    ]


def check(command: list[str], what: str) -> None:
    """Run a short packer command; fail with its own words."""
    out = subprocess.run(command, capture_output=True, text=True, env=environment())
    if out.returncode != 0:
        lines = [ln.strip() for ln in (out.stderr + out.stdout).splitlines() if ln.strip()]
        detail = "; ".join(ln for ln in lines if not ln.startswith("(source code"))[:400]
        raise BakeryError(f"packer {what} failed: {detail}")


@dataclass
class Result:
    returncode: int
    interrupted: bool  # Ctrl-C / SIGTERM
    timed_out: bool
    tail: list[str]


def run(
    command: list[str],
    *,
    on_line: Callable[[str], None] | None = None,
    timeout_s: float | None = None,
) -> Result:
    """Run packer with its output streamed line by line.

    Packer runs in its own process group so that an interrupt reaches it once, from us: it
    then cleans up its instance, key pair and security group, and we wait for that (within
    CLEANUP_GRACE_S) before killing it. A timeout is an interrupt sent by a timer.
    """
    say = on_line or (lambda line: print(line, flush=True))
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=environment(),
        start_new_session=True,
    )
    timed_out = threading.Event()
    stopping = threading.Event()

    def stop(reason: str) -> None:
        if stopping.is_set() or proc.poll() is not None:
            return
        stopping.set()
        say(
            f"bake: {reason}; waiting for packer to clean up its instance, key pair and security group"
        )
        proc.send_signal(signal.SIGINT)
        killer = threading.Timer(CLEANUP_GRACE_S, _kill, (proc, say))
        killer.daemon = True
        killer.start()

    def on_timeout() -> None:
        timed_out.set()
        stop(f"packer ran past {timeout_s / 60:.0f} minutes")

    timer = threading.Timer(timeout_s, on_timeout) if timeout_s else None
    if timer:
        timer.daemon = True
        timer.start()
    tail: list[str] = []
    interrupted = False
    try:
        with sigterm_as_interrupt():
            while True:
                try:
                    assert proc.stdout is not None
                    for line in proc.stdout:
                        say(line.rstrip("\n"))
                        tail = [*tail[-29:], line.rstrip("\n")]
                    proc.wait()
                    break
                except KeyboardInterrupt:
                    interrupted = True
                    stop("interrupted")
    finally:
        if timer:
            timer.cancel()
    return Result(proc.returncode, interrupted, timed_out.is_set(), tail)


def _kill(proc: subprocess.Popen[str], say: Callable[[str], None]) -> None:
    if proc.poll() is None:
        say(
            f"bake: packer did not finish cleaning up within {CLEANUP_GRACE_S} s; killing it (the sweep removes what it left)"
        )
        os.killpg(proc.pid, signal.SIGKILL)


def manifest(directory: Path, build_id: str) -> dict[str, str]:
    """The AMI of this build from the manifest post-processor ({region, ami_id})."""
    path = directory / "packer-manifest.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise BakeryError(f"packer finished but its manifest {path} is unreadable: {e}") from None
    for entry in reversed(data.get("builds", [])):
        if entry.get("custom_data", {}).get("build_id") == build_id:
            region, _, ami = entry["artifact_id"].partition(":")
            return {"region": region, "ami_id": ami}
    raise BakeryError(f"{path} has no artifact for build {build_id}")


def failure(result: Result) -> str:
    """The line of packer's output that says why the build failed."""
    for marker in ("errored", "Error:", "error", "==>"):
        hits = [ln.strip() for ln in result.tail if marker in ln]
        if hits:
            return hits[-1]
    return f"exit {result.returncode}, no output"
