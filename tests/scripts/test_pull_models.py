"""pull-models.sh: a bake-time server as the ollama user, pulls and imports, models.json, and
the server stopped whatever happens.

Imports run the real Ollama (.tools/ollama) on the tiny GGUF (tests/tiny_gguf.py); pulls need
Ollama's registry, which is not reachable here, so they run against the fake one."""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import json
import os
import shutil
import signal
import socket
import threading

import pytest

SCRIPT = "pull-models.sh"
MODELS = "/usr/share/ollama/.ollama/models"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def port() -> int:
    return free_port()


def _run_in(sandbox, port):
    def run(**env: str):
        return sandbox.run(SCRIPT, BAKERY_OLLAMA_HOST=f"127.0.0.1:{port}", **env)

    return run


@pytest.fixture
def run(sandbox, installed_ollama, port):
    """run(**env): the script against the real Ollama's bake server on a free port."""
    return _run_in(sandbox, port)


# The fake Ollama stands in for Ollama's registry, which this machine cannot reach: the pull
# tests (and the failed pull, injected) need it.
@pytest.fixture
def run_with_fake_registry(sandbox, installed_fake_ollama, port):
    yield _run_in(sandbox, port)
    # A server the script failed to stop (the test has failed on it already) must not outlive it.
    pid_file = sandbox.tmp / "ollama-serve.pid"
    if pid_file.exists():
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)


def tags_digest(sandbox, name: str, port: int) -> str:
    """The digest /api/tags reports for name, from a server started on the bake's model store."""
    from tooling import OllamaServer

    with OllamaServer(sandbox.root, f"127.0.0.1:{port}", sandbox.tmp / "check.log") as server:
        (entry,) = [m for m in server.get("/api/tags")["models"] if m["name"] == name]
    return entry["digest"]


def manifest_digest(sandbox, *parts: str) -> str:
    path = sandbox.path(f"{MODELS}/manifests/registry.ollama.ai/{'/'.join(parts)}")
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_imports_the_gguf_and_records_its_digest(sandbox, run, port, tiny_model) -> None:
    result = run(OLLAMA_PULL="", OLLAMA_IMPORT=f"tiny|{tiny_model.url}|{tiny_model.sha256}")
    assert result.returncode == 0, result.output

    # The server ran as the ollama user, with a clean environment, and was stopped.
    (runuser,) = sandbox.calls("runuser")
    assert runuser[:6] == ["runuser", "-u", "ollama", "--", "env", "-i"]
    assert runuser[-1] == "serve" and f"OLLAMA_HOST=127.0.0.1:{port}" in runuser
    assert not port_open(port), "the bake server is stopped"
    assert "ollama serve stopped" in result.stdout
    # The file was copied, checked, then imported through a Modelfile naming the copy.
    fetch = [c for c in sandbox.calls("curl") if tiny_model.url in c]
    assert fetch and "--output" in fetch[0]
    assert f"creating tiny from {tiny_model.path.name}" in result.stdout
    blob = sandbox.path(f"{MODELS}/blobs/sha256-{tiny_model.sha256}")
    assert blob.read_bytes() == tiny_model.path.read_bytes()

    record = json.loads(sandbox.read("/var/lib/bakery/models.json"))
    assert [m["name"] for m in record] == ["tiny:latest"]
    assert record[0]["digest"] == tags_digest(sandbox, "tiny:latest", port)
    assert record[0]["digest"] == manifest_digest(sandbox, "library/tiny/latest")
    assert sandbox.mode("/var/lib/bakery/models.json") == 0o644
    assert list(sandbox.tmpdir.iterdir()) == []


def test_second_import_run_changes_nothing(sandbox, run, port, tiny_model) -> None:
    env = {"OLLAMA_PULL": "", "OLLAMA_IMPORT": f"tiny|{tiny_model.url}|{tiny_model.sha256}"}
    assert run(**env).returncode == 0
    sandbox.assert_idempotent(SCRIPT, **env, BAKERY_OLLAMA_HOST=f"127.0.0.1:{port}")
    assert [c for c in sandbox.calls("curl") if tiny_model.url in c] == [], "no second fetch"
    assert not port_open(port)


def test_import_with_wrong_sha256_fails_before_the_import(sandbox, run, port, tiny_model) -> None:
    result = run(OLLAMA_PULL="", OLLAMA_IMPORT=f"tiny|{tiny_model.url}|{'a' * 64}")
    assert result.returncode != 0
    assert (
        f"tiny: sha256 mismatch for {tiny_model.url}: expected {'a' * 64}, got {tiny_model.sha256}"
        in result.stderr
    )
    assert "creating tiny" not in result.stdout
    assert not sandbox.path(f"{MODELS}/blobs/sha256-{tiny_model.sha256}").exists()
    assert not sandbox.path(f"{MODELS}/manifests").exists() or not any(
        p.is_file() for p in sandbox.path(f"{MODELS}/manifests").rglob("*")
    )
    assert not sandbox.path("/var/lib/bakery/models.json").exists()
    assert not port_open(port)
    assert list(sandbox.tmpdir.iterdir()) == []


def test_import_from_s3(sandbox, run, tiny_model) -> None:
    (sandbox.state / "s3/models-bucket").mkdir(parents=True)
    shutil.copy(tiny_model.path, sandbox.state / "s3/models-bucket/tiny.gguf")
    result = run(
        OLLAMA_PULL="",
        OLLAMA_IMPORT=f"team/tiny:q4|s3://models-bucket/tiny.gguf|{tiny_model.sha256}",
    )
    assert result.returncode == 0, result.output
    (cp,) = sandbox.calls("aws")
    assert cp[1:5] == ["s3", "cp", "--only-show-errors", "s3://models-bucket/tiny.gguf"]
    names = [m["name"] for m in json.loads(sandbox.read("/var/lib/bakery/models.json"))]
    assert names == ["team/tiny:q4"]


def test_s3_import_without_aws_cli_fails_before_starting(sandbox, run) -> None:
    sandbox.remove_fake("aws")
    result = run(OLLAMA_PULL="", OLLAMA_IMPORT=f"tiny|s3://bucket/tiny.gguf|{'a' * 64}")
    assert result.returncode != 0
    assert "needs the aws CLI" in result.stderr
    assert sandbox.calls("runuser") == []


def test_model_store_must_be_traversable(sandbox, run, tiny_model) -> None:
    sandbox.path("/usr/share").chmod(0o700)
    result = run(OLLAMA_PULL="", OLLAMA_IMPORT=f"tiny|{tiny_model.url}|{tiny_model.sha256}")
    assert result.returncode != 0
    assert "/usr/share (mode 700, owner uid" in result.stderr
    assert "not traversable by the ollama user" in result.stderr


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "nothing to bake"),
        ({"OLLAMA_PULL": " ", "OLLAMA_IMPORT": ""}, "nothing to bake"),
        ({"OLLAMA_PULL": "deepseek-r1:7b;reboot"}, "is not a model reference"),
        ({"OLLAMA_IMPORT": "tiny|https://example.com/t.gguf"}, "is not name|url|sha256"),
        ({"OLLAMA_IMPORT": f"tiny|ftp://host/t.gguf|{'a' * 64}"}, "url must be s3://"),
    ],
    ids=["unset", "blank", "bad-ref", "no-sha", "bad-scheme"],
)
def test_bad_environment_fails_clearly(sandbox, run, env, message) -> None:
    result = run(**env)
    assert result.returncode != 0
    assert message in result.stderr
    assert sandbox.calls("runuser") == []


class _OtherOllama(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_refuses_to_pull_into_another_server(sandbox, run, port) -> None:
    other = http.server.ThreadingHTTPServer(("127.0.0.1", port), _OtherOllama)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        result = run(OLLAMA_PULL="deepseek-r1:7b")
    finally:
        other.shutdown()
        other.server_close()
    assert result.returncode != 0
    assert f"something already answers on http://127.0.0.1:{port}" in result.stderr
    assert sandbox.calls("runuser") == []


# --- pulls from Ollama's registry (the fake Ollama stands in for it) -----------------------


# fake_ollama: a registry pull; this machine cannot reach Ollama's registry.
def test_pulls_and_records_models(sandbox, run_with_fake_registry, port) -> None:
    result = run_with_fake_registry(OLLAMA_PULL="deepseek-r1:7b tinyllama")
    assert result.returncode == 0, result.output
    pulls = [c for c in sandbox.calls("ollama-server") if c[1] == "POST"]
    assert pulls == [
        ["ollama-server", "POST", "/api/pull", "deepseek-r1:7b"],
        ["ollama-server", "POST", "/api/pull", "tinyllama"],
    ]
    assert json.loads(sandbox.read("/var/lib/bakery/models.json")) == [
        {"digest": manifest_digest(sandbox, "library/deepseek-r1/7b"), "name": "deepseek-r1:7b"},
        {
            "digest": manifest_digest(sandbox, "library/tinyllama/latest"),
            "name": "tinyllama:latest",
        },
    ]
    assert not port_open(port), "the bake server is stopped"
    assert list(sandbox.tmpdir.iterdir()) == []


# fake_ollama: a registry pull run twice; this machine cannot reach Ollama's registry.
def test_second_pull_run_changes_nothing(sandbox, run_with_fake_registry, port) -> None:
    assert run_with_fake_registry(OLLAMA_PULL="deepseek-r1:7b").returncode == 0
    sandbox.assert_idempotent(
        SCRIPT, OLLAMA_PULL="deepseek-r1:7b", BAKERY_OLLAMA_HOST=f"127.0.0.1:{port}"
    )
    assert not port_open(port)


# fake_ollama: a pull the registry refuses (injected: "missing-model" is answered with an error).
def test_failed_pull_stops_the_server(sandbox, run_with_fake_registry, port) -> None:
    result = run_with_fake_registry(OLLAMA_PULL="deepseek-r1:7b missing-model")
    assert result.returncode != 0
    assert "pull of missing-model failed" in result.stderr
    assert "file does not exist" in result.stderr
    assert not port_open(port)
    assert not sandbox.path("/var/lib/bakery/models.json").exists()
    assert list(sandbox.tmpdir.iterdir()) == []
