"""The provisioning scripts run in a sandbox: BAKERY_ROOT is a temporary tree, and PATH holds
only fakes of the system commands (tests/scripts/fakes.py) and a short list of real, harmless
tools. A script that calls anything else fails with "command not found".

Used by tests/scripts (one sandbox per test) and by tests/conftest.py's `tiny_bake`, which runs
the Ollama steps of the tiny test image's bake for real in one (see tests/tooling.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tooling import require_tool

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "scripts"
ROOTFS = SCRIPTS / "rootfs"
FAKES_PY = REPO / "tests" / "scripts" / "fakes.py"

FAKES = (
    "apt-get", "aws", "chown", "cloud-init", "docker", "dpkg-query", "getent", "groupadd",
    "modinfo", "runuser", "sshd", "systemctl", "useradd", "usermod",
)  # fmt: skip
# Real commands that are logged, then run.
SPIES = ("curl", "tar", "git")
# Real commands the scripts may use as they are: they only read, or write where told to.
REAL = (
    "basename", "bash", "cat", "chmod", "cmp", "cp", "cut", "df", "dirname", "env", "find",
    "grep", "gzip", "head", "install", "ln", "ls", "mkdir", "mktemp", "mv", "readlink", "rm",
    "rmdir", "sed", "seq", "sha256sum", "sleep", "sort", "stat", "tail", "touch", "tr",
    "truncate", "uname", "wc", "zstd",
)  # fmt: skip
# State-changing commands: none of them may run again when a script runs a second time.
STATE_CHANGING = {
    "apt-get", "aws", "chown", "groupadd", "useradd", "usermod", "tar",
    "ollama create", "systemctl enable", "systemctl start", "systemctl daemon-reload",
    "docker pull", "docker tag", "docker build", "docker image prune", "docker builder prune",
    "git clone", "ollama-server POST",
}  # fmt: skip


def _wrapper(path: Path, *argv: str) -> None:
    quoted = " ".join(f"'{a}'" for a in argv)
    path.write_text(f'#!/bin/sh\nexec {quoted} "$@"\n')
    path.chmod(0o755)


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


class Sandbox:
    """One tree, one fake-bin, one log of calls."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.root = tmp / "root"
        self.bin = tmp / "bin"
        self.realbin = tmp / "realbin"
        self.state = tmp / "state"
        self.tmpdir = tmp / "tmpdir"
        self.log = tmp / "calls.jsonl"
        for d in (self.root, self.bin, self.realbin, self.state, self.tmpdir, tmp / "home"):
            d.mkdir()
        python = [sys.executable, "-S", str(FAKES_PY)]
        for name in FAKES:
            _wrapper(self.bin / name, *python, name)
        # What `apt-get install docker.io` puts in place.
        shutil.move(self.bin / "docker", self.bin / ".docker")
        for name in SPIES:
            _wrapper(self.bin / name, *python, f"spy:{require_tool(name)}")
        for name in REAL:
            real = shutil.which(name, path="/usr/bin:/bin:/usr/sbin:/sbin")
            assert real, f"{name} is missing on this machine"
            (self.realbin / name).symlink_to(real)
        (self.realbin / "python3").symlink_to(sys.executable)
        self.write("/etc/passwd", "root:x:0:0:root:/root:/bin/bash\n")
        self.write("/etc/group", "root:x:0:\nvideo:x:44:\nrender:x:993:\n")

    # --- the tree ---------------------------------------------------------------------------

    def path(self, path: str) -> Path:
        return self.root / path.lstrip("/")

    def write(self, path: str, text: str, mode: int = 0o644) -> Path:
        target = self.path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        target.chmod(mode)
        return target

    def read(self, path: str) -> str:
        return self.path(path).read_text()

    def mode(self, path: str) -> int:
        return stat.S_IMODE(self.path(path).lstat().st_mode)

    def snapshot(self) -> dict[str, tuple[str, ...]]:
        """Every path under the root with its type, mode and content (or link target)."""
        out: dict[str, tuple[str, ...]] = {}
        for p in sorted(self.root.rglob("*")):
            st = p.lstat()
            rel = p.relative_to(self.root).as_posix()
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", oct(stat.S_IMODE(st.st_mode)))
            else:
                digest = hashlib.sha256(p.read_bytes()).hexdigest()
                out[rel] = ("file", oct(stat.S_IMODE(st.st_mode)), digest)
        return out

    # --- fakes ------------------------------------------------------------------------------

    def set_state(self, name: str, text: str = "") -> None:
        target = self.state / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)

    def add_docker(self) -> None:
        shutil.copy(self.bin / ".docker", self.bin / "docker")

    def remove_fake(self, name: str) -> None:
        (self.bin / name).unlink()

    def calls(self, name: str | None = None) -> list[list[str]]:
        if not self.log.exists():
            return []
        calls = [json.loads(line) for line in self.log.read_text().splitlines()]
        return [c for c in calls if name is None or c[0] == name]

    def state_changing_calls(self) -> list[list[str]]:
        return [
            c
            for c in self.calls()
            if c[0] in STATE_CHANGING
            or " ".join(c[:2]) in STATE_CHANGING
            or " ".join(c[:3]) in STATE_CHANGING
            # curl: a download, or a request that is not a read from the local bake server
            or (c[0] == "curl" and ("--data" in c or not c[-1].startswith("http://127.0.0.1")))
        ]

    def clear_calls(self) -> None:
        self.log.unlink(missing_ok=True)

    # --- running ----------------------------------------------------------------------------

    def env(self, **extra: str | None) -> dict[str, str]:
        """The scripts' environment; a None in extra removes the variable."""
        env = {
            "PATH": f"{self.bin}:{self.realbin}",
            "HOME": str(self.tmp / "home"),
            "LANG": "C.UTF-8",
            "TMPDIR": str(self.tmpdir),
            "BAKERY_ROOT": str(self.root),
            "BAKERY_ROOTFS": str(ROOTFS),
            "FAKE_LOG": str(self.log),
            "FAKE_STATE": str(self.state),
            "FAKE_BIN": str(self.bin),
            "GIT_CONFIG_NOSYSTEM": "1",
        }
        env.update(extra)  # type: ignore[arg-type]
        return {k: v for k, v in env.items() if v is not None}

    def run(self, script: str | Path, timeout: float = 60, **env: str | None) -> Run:
        path = SCRIPTS / script if isinstance(script, str) else script
        result = subprocess.run(
            [str(path)], env=self.env(**env), capture_output=True, text=True, timeout=timeout
        )
        return Run(result.returncode, result.stdout, result.stderr)

    def run_ok(self, script: str | Path, **env: str) -> Run:
        result = self.run(script, **env)
        assert result.returncode == 0, f"{script} failed:\n{result.output}"
        return result

    def assert_idempotent(self, script: str | Path, **env: str) -> None:
        """A second run changes no file and calls nothing that changes state."""
        before = self.snapshot()
        self.clear_calls()
        self.run_ok(script, **env)
        assert self.snapshot() == before
        assert self.state_changing_calls() == []
        assert list(self.tmpdir.iterdir()) == [], "temporary files left behind"
