"""Fixtures shared by every test folder: the local AWS emulator, the repository root, and the
real Ollama serving the tiny test image (ollama_tarball, tiny_model, tiny_image, tiny_bake,
host_ollama; the helpers behind them are in tests/tooling.py)."""

from __future__ import annotations

import json
import os
import shutil
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import tooling

from bakery import aws, expectations

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def emulator_server() -> Iterator[str]:
    """One moto server for the session; `emulator` resets it before each test."""
    from moto.server import ThreadedMotoServer

    from bakery import local

    local.teach_fleet_network_interfaces()  # as the emulator --local starts does (see there)
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def emulator(emulator_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A clean emulator, with the environment pointing boto3 (and child processes) at it."""
    tooling.use_emulator(monkeypatch, emulator_server)
    yield emulator_server
    aws.reset()


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture
def no_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No credentials anywhere in the chain, and no instance metadata to fall back on."""
    for key in list(os.environ):
        if key.startswith("AWS_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


# --- the real Ollama and the tiny test image (helpers: tests/tooling.py) ----------------------


@dataclass(frozen=True)
class TinyModel:
    path: Path
    sha256: str

    @property
    def url(self) -> str:
        return self.path.as_uri()


@dataclass(frozen=True)
class Baked:
    """The Ollama steps of the tiny image's bake, run for real in a sandbox root: the real
    install-ollama.sh and pull-models.sh with the environment the rendered Packer gives them
    (system commands such as useradd and systemctl are the sandbox's fakes)."""

    image: Any  # bakery.config.ImageDef
    definition: Path
    root: Path
    release: tooling.OllamaRelease

    @property
    def model(self) -> str:
        return self.image.model_names[0]

    @property
    def record(self) -> list[dict[str, str]]:
        """/var/lib/bakery/models.json, as pull-models.sh wrote it."""
        return json.loads((self.root / "var/lib/bakery/models.json").read_text())

    def copy(self, dest: Path) -> Path:
        """A root of one's own, for a test that writes into it (a boot, a second server)."""
        shutil.copytree(self.root, dest, symlinks=True)
        return dest


@pytest.fixture(scope="session")
def ollama_tarball() -> tooling.OllamaRelease:
    return tooling.ollama_release()


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    """The tiny qwen2 GGUF (tests/tiny_gguf.py), made once per session."""
    import tiny_gguf  # numpy and gguf: only for the sessions that need the model

    path = tmp_path_factory.mktemp("tiny-model") / "tiny-qwen2.gguf"
    return TinyModel(path, tiny_gguf.write(path))


@pytest.fixture(scope="session")
def tiny_image(
    tmp_path_factory: pytest.TempPathFactory,
    ollama_tarball: tooling.OllamaRelease,
    tiny_model: TinyModel,
) -> Path:
    """The filled tests/images/tiny-qwen2.toml (load it by path)."""
    out = tmp_path_factory.mktemp("tiny-image")
    return tooling.tiny_definition(out, ollama_tarball, tiny_model.path, tiny_model.sha256)


@pytest.fixture(scope="session")
def tiny_bake(
    tmp_path_factory: pytest.TempPathFactory,
    tiny_image: Path,
    ollama_tarball: tooling.OllamaRelease,
) -> Baked:
    from provision import Sandbox

    from bakery import config

    image = config.load(tiny_image)
    sandbox = Sandbox(tmp_path_factory.mktemp("tiny-bake"))
    for script in ("install-ollama.sh", "pull-models.sh"):
        sandbox.run_ok(
            script,
            **tooling.step_env(image, script),
            BAKERY_OLLAMA_HOST=f"127.0.0.1:{tooling.free_port()}",
        )
    return Baked(image, tiny_image, sandbox.root, ollama_tarball)


@pytest.fixture(scope="module")
def host_ollama(tmp_path_factory: pytest.TempPathFactory, tiny_bake: Baked) -> Iterator[str]:
    """The tiny bake's Ollama serving on 127.0.0.1:11434, the address the image suite expects,
    for one module at a time: a lock keeps other test sessions on this machine off the port."""
    address = expectations.OLLAMA_ADDRESS
    port = int(address.rsplit(":", 1)[1])
    log = tmp_path_factory.mktemp("host-ollama") / "serve.log"
    with tooling.port_lock(port), tooling.OllamaServer(tiny_bake.root, address, log):
        yield address
