"""Fixtures of the provisioning-script tests: a sandbox per test (tests/provision.py) and a
fake Ollama release, for the tests that inject what the real one cannot show (another
version, an upgrade, a stand-in for Ollama's registry)."""

from __future__ import annotations

import hashlib
import io
import sys
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from provision import Sandbox
from tooling import require_tool

HERE = Path(__file__).resolve().parent


@pytest.fixture
def sandbox(tmp_path: Path) -> Sandbox:
    return Sandbox(tmp_path)


@pytest.fixture
def tool() -> Callable[[str], str]:
    """require_tool, for test modules (they import nothing from conftest)."""
    return require_tool


# --- Ollama as install-ollama.sh leaves it ---------------------------------------------------


def _as_installed(sandbox: Sandbox, tarball: Path) -> None:
    """The release unpacked into /usr, and the ollama user and its home, without running
    install-ollama.sh."""
    with tarfile.open(tarball) as tar:
        tar.extractall(sandbox.path("/usr"), filter="data")
    users = sandbox.read("/etc/passwd") + "ollama:x:998:998::/usr/share/ollama:/bin/false\n"
    sandbox.write("/etc/passwd", users)
    sandbox.write(
        "/etc/group", "root:x:0:\nvideo:x:44:ollama\nrender:x:993:ollama\nollama:x:998:\n"
    )
    sandbox.path("/usr/share/ollama").mkdir(parents=True, exist_ok=True)


@pytest.fixture
def installed_ollama(sandbox: Sandbox, ollama_tarball) -> None:
    """The real Ollama of .tools/ollama, installed in the sandbox."""
    _as_installed(sandbox, ollama_tarball.path)


# --- a fake Ollama release, for what the real one cannot show ---------------------------------
# Only one real release is on this machine and Ollama's registry is not reachable from it: an
# older version (a version mismatch, an upgrade), an archive owned by its builder, and a pull
# from the registry need this stand-in. Every test that uses it says which of these it needs.


@dataclass(frozen=True)
class Release:
    version: str
    path: Path
    sha256: str

    @property
    def url(self) -> str:
        return self.path.as_uri()


def _add(tar: tarfile.TarFile, name: str, data: bytes | None, mode: int) -> None:
    info = tarfile.TarInfo(name)
    # As a CI builder would leave them: owned by someone else.
    info.uid, info.gid, info.uname, info.gname = 1000, 1000, "builder", "builder"
    info.mode = mode
    if data is None:
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
    else:
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


@pytest.fixture
def fake_ollama_release(tmp_path: Path, sandbox: Sandbox) -> Callable[[str], Release]:
    """make(version): an ollama-linux-amd64.tgz whose bin/ollama is fake_ollama.py, owned by
    uid 1000, with runner libraries named for the version."""

    def make(version: str) -> Release:
        wrapper = (
            f"#!/bin/sh\nexec '{sys.executable}' -S '{HERE / 'fake_ollama.py'}' "
            f"'{version}' '{sandbox.log}' \"$@\"\n"
        )
        path = tmp_path / "releases" / version / "ollama-linux-amd64.tgz"
        path.parent.mkdir(parents=True)
        with tarfile.open(path, "w:gz") as tar:
            for name, data, mode in (
                ("./", None, 0o755),
                ("./bin/", None, 0o755),
                ("./bin/ollama", wrapper.encode(), 0o755),
                ("./lib/", None, 0o755),
                ("./lib/ollama/", None, 0o755),
                (f"./lib/ollama/libggml-base-{version}.so", b"ggml", 0o755),
                ("./lib/ollama/cuda_v12/", None, 0o755),
                ("./lib/ollama/cuda_v12/libggml-cuda.so", version.encode(), 0o755),
            ):
                _add(tar, name, data, mode)
        return Release(version, path, hashlib.sha256(path.read_bytes()).hexdigest())

    return make


@pytest.fixture
def installed_fake_ollama(
    sandbox: Sandbox, fake_ollama_release: Callable[[str], Release]
) -> Release:
    """The fake 0.13.1 installed in the sandbox: its server stands in for Ollama's registry."""
    release = fake_ollama_release("0.13.1")
    _as_installed(sandbox, release.path)
    return release
