"""pull-models.sh: a bake-time server as the ollama user, pulls and imports, models.json, and
the server stopped whatever happens."""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import json
import os
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


@pytest.fixture
def run(sandbox, installed_ollama, port):
    """run(**env): the script against a bake server on a free port."""

    def run(**env: str):
        return sandbox.run(SCRIPT, BAKERY_OLLAMA_HOST=f"127.0.0.1:{port}", **env)

    yield run
    # A server the script failed to stop (the test has failed on it already) must not outlive it.
    pid_file = sandbox.tmp / "ollama-serve.pid"
    if pid_file.exists():
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)


def manifest_digest(sandbox, *parts: str) -> str:
    path = sandbox.path(f"{MODELS}/manifests/registry.ollama.ai/{'/'.join(parts)}")
    return hashlib.sha256(path.read_bytes()).hexdigest()


def gguf(tmp_path, content: bytes = b"GGUF fake weights") -> tuple[str, str]:
    path = tmp_path / "tiny.gguf"
    path.write_bytes(content)
    return path.as_uri(), hashlib.sha256(content).hexdigest()


def test_pulls_and_records_models(sandbox, run, port) -> None:
    result = run(OLLAMA_PULL="deepseek-r1:7b tinyllama")
    assert result.returncode == 0, result.output

    # The server ran as the ollama user, with a clean environment.
    (runuser,) = sandbox.calls("runuser")
    assert runuser[:6] == ["runuser", "-u", "ollama", "--", "env", "-i"]
    assert runuser[-1] == "serve" and f"OLLAMA_HOST=127.0.0.1:{port}" in runuser
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
    assert sandbox.mode("/var/lib/bakery/models.json") == 0o644
    assert not port_open(port), "the bake server is stopped"
    assert "ollama serve stopped" in result.stdout
    assert list(sandbox.tmpdir.iterdir()) == []


def test_second_run_changes_nothing(sandbox, run, port) -> None:
    assert run(OLLAMA_PULL="deepseek-r1:7b").returncode == 0
    sandbox.assert_idempotent(
        SCRIPT, OLLAMA_PULL="deepseek-r1:7b", BAKERY_OLLAMA_HOST=f"127.0.0.1:{port}"
    )
    assert not port_open(port)


def test_failed_pull_stops_the_server(sandbox, run, port) -> None:
    result = run(OLLAMA_PULL="deepseek-r1:7b missing-model")
    assert result.returncode != 0
    assert "pull of missing-model failed" in result.stderr
    assert "file does not exist" in result.stderr
    assert not port_open(port)
    assert not sandbox.path("/var/lib/bakery/models.json").exists()
    assert list(sandbox.tmpdir.iterdir()) == []


def test_imports_gguf(sandbox, run, tmp_path) -> None:
    url, sha = gguf(tmp_path)
    result = run(OLLAMA_PULL="", OLLAMA_IMPORT=f"tiny|{url}|{sha}")
    assert result.returncode == 0, result.output
    (create,) = [c for c in sandbox.calls("ollama") if c[1] == "create"]
    assert create[:4] == ["ollama", "create", "tiny", "-f"]
    names = [m["name"] for m in json.loads(sandbox.read("/var/lib/bakery/models.json"))]
    assert names == ["tiny:latest"]
    blob = sandbox.path(f"{MODELS}/blobs/sha256-{sha}")
    assert blob.read_bytes() == b"GGUF fake weights"


def test_import_with_wrong_sha256_creates_nothing(sandbox, run, port, tmp_path) -> None:
    url, _ = gguf(tmp_path)
    result = run(OLLAMA_PULL="", OLLAMA_IMPORT=f"tiny|{url}|{'a' * 64}")
    assert result.returncode != 0
    assert f"tiny: sha256 mismatch for {url}: expected {'a' * 64}" in result.stderr
    assert [c for c in sandbox.calls("ollama") if "create" in c] == []
    assert not port_open(port)


def test_import_from_s3(sandbox, run) -> None:
    content = b"GGUF from s3"
    sandbox.set_state("s3/models-bucket/tiny.gguf", content.decode())
    sha = hashlib.sha256(content).hexdigest()
    result = run(OLLAMA_PULL="", OLLAMA_IMPORT=f"team/tiny:q4|s3://models-bucket/tiny.gguf|{sha}")
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


def test_model_store_must_be_traversable(sandbox, run) -> None:
    sandbox.path("/usr/share").chmod(0o700)
    result = run(OLLAMA_PULL="deepseek-r1:7b")
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
