"""Fixtures shared by every test folder: the local AWS emulator and the repository root."""

from __future__ import annotations

import os
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

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
    urllib.request.urlopen(
        urllib.request.Request(f"{emulator_server}/moto-api/reset", method="POST")
    ).close()
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", emulator_server)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    from bakery import aws

    aws.reset()
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
