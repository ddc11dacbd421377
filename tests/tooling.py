"""Helpers for test modules, importable from any test folder as `tooling`.

(Every conftest.py is the module `conftest` when test folders are not packages, so shared
helpers live here rather than in a conftest.)
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import string
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bakery import aws, local, packer, render, terraform, tools
from bakery.errors import BakeryError

REPO = Path(__file__).resolve().parents[1]
MODERN_PACKER = (1, 9, 4)  # what ./.ci/setup builds: the last MPL Packer


def require_tool(name: str) -> str:
    """The path of a tool the suite needs; a missing one fails the test (./.ci/setup installs it)."""
    local_bins = [
        REPO / ".venv" / "bin",
        REPO / ".tools" / "checkov" / "bin",
        REPO / ".tools" / "node_modules" / ".bin",
    ]
    path = shutil.which(name) or shutil.which(name, path=os.pathsep.join(map(str, local_bins)))
    if not path:
        pytest.fail(f"{name} is not installed: run ./.ci/setup (it installs what the tests need)")
    return path


def use_emulator(mp: pytest.MonkeyPatch, url: str, *, managed_policies: bool = False) -> None:
    """A fresh emulator account, with boto3 (and child processes) pointed at it.

    managed_policies: the fleet's role attaches AmazonSSMManagedInstanceCore, which moto knows
    only when MOTO_IAM_LOAD_MANAGED_POLICIES=true as an account's IAM backend is made. The test
    emulator runs in this process (conftest), so the variable is set here, before the reset
    drops every backend made before. Real accounts have these policies.
    """
    if managed_policies:
        mp.setenv(local.MANAGED_POLICIES_ENV, "true")
    urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST")).close()
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION"):
        mp.delenv(key, raising=False)
    for key, value in {
        **local.FAKE_CREDENTIALS,
        "AWS_ENDPOINT_URL": url,
        "AWS_DEFAULT_REGION": local.DEFAULT_REGION,
    }.items():
        mp.setenv(key, value)
    aws.reset()


@functools.cache
def _packers() -> dict[str, tools.Version]:
    """Every packer on PATH (each folder, not only the first hit) and in .tools/bin, by version."""
    folders = [*os.environ.get("PATH", "").split(os.pathsep), str(tools.TOOLS_BIN)]
    found: dict[str, tools.Version] = {}
    for folder in folders:
        path = shutil.which("packer", path=folder) if folder else None
        if path and all(os.path.realpath(path) != os.path.realpath(p) for p in found):
            with contextlib.suppress(BakeryError):
                found[path] = packer.read_version(path)
    return found


def oldest_packer() -> str:
    """The oldest supported Packer (Debian's 1.6.6: no required_plugins).

    A missing one skips, saying so: ./.ci/setup installs it (so `.ci/run` checks it), but the
    GitLab job image (ci/image) carries only the Packer users run."""
    old = {p: v for p, v in _packers().items() if v < render.MODERN}
    if not old:
        pytest.skip(
            f"no Packer older than {tools.show(render.MODERN)} on PATH (Debian's 1.6.6, the oldest"
            " supported, which ./.ci/setup installs): not checked against it in this run"
        )
    return min(old, key=old.__getitem__)


def modern_packer() -> str:
    """The newest Packer here, which must take required_plugins (the 1.9.4 that ./.ci/setup
    builds into .tools/bin, or a newer one of your own); a missing one fails."""
    found = _packers()
    newest = max(found, key=found.__getitem__, default=None)
    if newest is None or found[newest] < MODERN_PACKER:
        pytest.fail(
            f"no Packer >= {tools.show(MODERN_PACKER)} on PATH or in .tools/bin: run ./.ci/setup"
            " (it builds Packer 1.9.4 and the amazon plugin from their Go modules)"
        )
    return newest


def tofu() -> str | None:
    """$TOFU, else tofu on PATH or in .tools/bin, else None (callers skip, saying why)."""
    configured = os.environ.get("TOFU")
    if configured:
        if not shutil.which(configured):
            pytest.fail(f"TOFU={configured} is not an executable file")
        return configured
    found = tools.candidates("tofu")
    return tools.newest(found, terraform.read_version) if found else None


NO_TOFU = (
    "no OpenTofu: no tofu on PATH or in .tools/bin, and TOFU is not set (./.ci/toolchain builds"
    " OpenTofu only where no terraform is installed)"
)


# --- the real Ollama and the tiny test image ---------------------------------------------------
# One place for what the tests (and benchmarks/serve.py, and the local VM) need to serve the
# tiny model under the real Ollama, through the product's own paths:
#   ollama_release()        the Ollama tarball .ci/toolchain made for this machine (else: fail)
#   tiny_definition(...)    tests/images/tiny-qwen2.toml filled for this machine (string.Template)
#   step_env(image, step)   a provisioning step's environment, as the rendered Packer passes it
#   unit_environment(root)  the Environment= of ollama.service and its drop-ins under a root
#   OllamaServer            `ollama serve` started and stopped (its runners too) on an address
#   port_lock(port)         one test session at a time on a fixed port (11434), across sessions
# tests/conftest.py turns them into fixtures: ollama_tarball, tiny_model, tiny_image, tiny_bake,
# host_ollama.

OLLAMA_TOOLS = REPO / ".tools" / "ollama"
TINY_DEFINITION = REPO / "tests" / "images" / "tiny-qwen2.toml"
LOCK_DIR = Path(os.environ.get("BAKERY_TEST_LOCK_DIR", "/tmp"))


@dataclass(frozen=True)
class OllamaRelease:
    """An Ollama release archive in the release layout (bin/ollama, lib/ollama/)."""

    version: str
    path: Path
    sha256: str

    @property
    def url(self) -> str:
        return self.path.as_uri()


def ollama_release() -> OllamaRelease:
    """The tarball .ci/toolchain left in .tools/ollama (the release, or built from source
    where releases cannot be downloaded); a missing or altered one fails the test."""
    tarball = OLLAMA_TOOLS / "ollama-linux-amd64.tgz"
    if not tarball.is_file():
        pytest.fail(
            f"{tarball.relative_to(REPO)} is missing: run ./.ci/setup (it builds or downloads"
            " the Ollama the tests run)"
        )
    version = (OLLAMA_TOOLS / "version").read_text().strip()
    recorded = (OLLAMA_TOOLS / "sha256").read_text().strip()
    actual = hashlib.sha256(tarball.read_bytes()).hexdigest()
    if actual != recorded:
        pytest.fail(
            f"{tarball} has sha256 {actual}, .tools/ollama/sha256 says {recorded}: run ./.ci/setup"
        )
    return OllamaRelease(version, tarball.resolve(), actual)


def tiny_definition(out_dir: Path, release: OllamaRelease, gguf: Path, gguf_sha256: str) -> Path:
    """tests/images/tiny-qwen2.toml with this machine's Ollama and tiny GGUF filled in, written
    to out_dir (load it by path: config.load(path))."""
    text = string.Template(TINY_DEFINITION.read_text()).substitute(
        ollama_version=release.version,
        ollama_url=release.url,
        ollama_sha256=release.sha256,
        gguf_url=gguf.resolve().as_uri(),
        gguf_sha256=gguf_sha256,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / TINY_DEFINITION.name
    path.write_text(text)
    return path


def step_env(image: Any, script: str) -> dict[str, str]:
    """The environment render.STEPS gives a provisioning script, its ${var.x} resolved from the
    definition's Packer variables (what Packer passes to the script on the build instance).
    The sandbox runs on the machine that bakes, so the files a bake would upload to the
    staging folder are where they already are: their staged file:// URLs point back there."""
    values = render.variables(image, "aws")
    (env,) = [e for s, e in render.STEPS if s == script]
    out = {}
    for item in env:
        key, _, template = item.partition("=")
        value = re.sub(r"\$\{var\.(\w+)\}", lambda m: _packer_string(values[m.group(1)]), template)
        for upload in render.uploads(image):
            value = value.replace(
                f"file://{render.STAGING}/{Path(upload).name}", f"file://{upload}"
            )
        out[key] = value
    return out


def _packer_string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def unit_environment(root: Path, unit: str = "ollama.service") -> dict[str, str]:
    """Environment= of a unit and its drop-ins (in systemd's order) as installed under root;
    empty where none is installed."""
    unit_dir = root / "etc/systemd/system"
    files = [unit_dir / unit, *sorted((unit_dir / f"{unit}.d").glob("*.conf"))]
    env: dict[str, str] = {}
    for path in filter(Path.is_file, files):
        for line in path.read_text().splitlines():
            if line.startswith("Environment="):
                for assignment in shlex.split(line.removeprefix("Environment=")):
                    key, _, value = assignment.partition("=")
                    env[key] = value
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# Loopback requests never go through a proxy from the environment.
_local = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def answers(url: str, timeout: float = 1) -> bool:
    try:
        with _local.open(url, timeout=timeout):
            return True
    except urllib.error.HTTPError:
        return True  # something answers, if not with what was asked
    except OSError:
        return False


class OllamaServer:
    """`ollama serve` from a root's /usr/bin/ollama, with HOME at the ollama user's home under
    that root (so its models are the bake's), as the unit starts it: the unit's environment,
    then `extra`. It runs as the test's user: the sandbox's ollama user is not a real one."""

    def __init__(
        self, root: Path, address: str, log: Path, extra: dict[str, str] | None = None
    ) -> None:
        self.root, self.address, self.log = root, address, log
        self.env = {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": str(root / "usr/share/ollama"),
            "LANG": "C.UTF-8",
            **unit_environment(root),
            "OLLAMA_HOST": address,
            **(extra or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def start(self, timeout: float = 60) -> OllamaServer:
        if answers(f"{self.url}/api/version"):
            pytest.fail(f"something already answers on {self.url}: stop it and run again")
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [str(self.root / "usr/bin/ollama"), "serve"],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its runners are in its process group: stop() ends them
            )
        deadline = time.monotonic() + timeout
        while not answers(f"{self.url}/api/version"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = self.log.read_text(errors="replace")[-2000:]
                self.stop()
                pytest.fail(f"ollama serve did not answer on {self.url}:\n{tail}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # a runner that outlived the server
        self.proc = None

    def get(self, api: str) -> Any:
        with _local.open(f"{self.url}{api}", timeout=30) as r:
            return json.load(r)

    def post(self, api: str, body: dict[str, Any], timeout: float = 300) -> Any:
        request = urllib.request.Request(
            f"{self.url}{api}",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with _local.open(request, timeout=timeout) as r:
            return json.load(r)

    def __enter__(self) -> OllamaServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def port_lock(port: int, wait_s: float = 600) -> Iterator[None]:
    """Holds an exclusive lock named for the port, so that test sessions on this machine (other
    checkouts, CI) take turns with a fixed port such as Ollama's 11434."""
    path = LOCK_DIR / f"gpu-ami-bakery-port-{port}.lock"
    with path.open("a") as f:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.fail(f"port {port} stayed locked by another test session ({path})")
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
