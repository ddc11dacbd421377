"""The user-data template, rendered by Terraform, linted by shellcheck and run in a sandbox.

The sandbox puts fakes first on PATH (docker, systemctl and logger record their arguments;
dd records them and then reads for real), serves a fake IMDS and a fake Ollama on free
localhost ports, and points BAKERY_ROOT at a temporary tree holding fake model blobs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from tfharness import Terraform, plugin_cache, require_tool, stage, terraform_env

MODELS = ["deepseek-r1:7b", "qwen3:0.6b"]
# Not the defaults, so the test sees that the inputs reach the script.
UI_PORT = 3100
UI_ENV = "NEXT_PUBLIC_OLLAMA_URL"
UI_IMAGE = "bakery/ui:baked"
SEP = "\x1f"  # the fakes join their arguments with it


# -- rendering -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def render(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """Renders the template through the render test root; returns the script's path."""
    work = tmp_path_factory.mktemp("render")
    tf = Terraform(
        stage(work, "render"), terraform_env(work, plugin_cache(tmp_path_factory.getbasetemp()))
    )
    tf.init()
    count = 0

    def _render(**values: Any) -> Path:
        nonlocal count
        count += 1
        tf.write_vars(values)
        tf.run("apply", "-no-color", "-input=false", "-auto-approve")
        script = work / f"user-data-{count}.sh"
        script.write_text(tf.run("output", "-raw", "user_data").stdout)
        script.chmod(0o755)
        return script

    return _render


@pytest.fixture(scope="module")
def script(render: Callable[..., Path]) -> Path:
    return render(ui_port=UI_PORT, ui_ollama_url_env=UI_ENV, models=MODELS)


@pytest.mark.terraform
@pytest.mark.parametrize(
    "values",
    [
        {"ui_port": UI_PORT, "ui_ollama_url_env": UI_ENV, "models": MODELS},
        {"models": []},
    ],
    ids=["two-models", "no-models"],
)
def test_rendered_script_is_shellcheck_clean(
    render: Callable[..., Path], values: dict[str, Any]
) -> None:
    rendered = render(**values)
    proc = subprocess.run(
        [require_tool("shellcheck"), "--shell=bash", "--severity=style", str(rendered)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout


@pytest.mark.terraform
def test_rendered_script_pulls_nothing(script: Path) -> None:
    text = script.read_text()
    assert not re.search(r"\b(docker|ollama)\s+(image\s+)?pull\b", text)
    assert "/api/pull" not in text


@pytest.mark.terraform
def test_rendered_script_is_strict(script: Path) -> None:
    assert "set -o errexit -o nounset -o pipefail" in script.read_text()


# -- fake servers ----------------------------------------------------------------------------


@dataclass
class FakeImds:
    """IMDSv2: tokens expire; instance-action and rebalance answer 404 until a notice is set."""

    notices: dict[str, str] = field(default_factory=dict)
    tokens: dict[str, float] = field(default_factory=dict)  # token: expiry (monotonic)
    token_puts: int = 0
    gets: list[tuple[str, int]] = field(default_factory=list)  # (path, status)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handler(self) -> type[BaseHTTPRequestHandler]:
        imds = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: str = "") -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_PUT(self) -> None:
                ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds")
                if self.path != "/latest/api/token" or not ttl:
                    self._send(400)
                    return
                with imds.lock:
                    imds.token_puts += 1
                    token = f"token-{imds.token_puts}"
                    imds.tokens[token] = time.monotonic() + int(ttl)
                self._send(200, token)

            def do_GET(self) -> None:
                path = self.path.removeprefix("/latest/meta-data/")
                token = self.headers.get("X-aws-ec2-metadata-token", "")
                with imds.lock:
                    valid = imds.tokens.get(token, 0) > time.monotonic()
                    status = 401 if not valid else 200 if path in imds.notices else 404
                    imds.gets.append((path, status))
                    body = imds.notices.get(path, "") if status == 200 else ""
                self._send(status, body)

        return Handler


@dataclass
class FakeOllama:
    generate: list[dict[str, Any]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)

    def handler(self) -> type[BaseHTTPRequestHandler]:
        ollama = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                ollama.paths.append(f"GET {self.path}")
                if self.path == "/api/version":
                    self._send(200, {"version": "0.13.1"})
                else:
                    self._send(404, {"error": "not found"})

            def do_POST(self) -> None:
                ollama.paths.append(f"POST {self.path}")
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                if self.path == "/api/generate":
                    ollama.generate.append(body)
                    self._send(
                        200, {"model": body.get("model"), "done": True, "done_reason": "load"}
                    )
                else:
                    self._send(404, {"error": "not found"})

        return Handler


@pytest.fixture(scope="module")
def serve() -> Iterator[Callable[[type[BaseHTTPRequestHandler]], str]]:
    servers: list[ThreadingHTTPServer] = []

    def _serve(handler: type[BaseHTTPRequestHandler]) -> str:
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield _serve
    for server in servers:
        server.shutdown()
        server.server_close()


# -- the sandbox -----------------------------------------------------------------------------

FAKE_DOCKER = """#!/bin/bash
(IFS=$'\\x1f'; printf '%s\\n' "$*") >>"$FAKE_LOG/docker.log"
case "$1 ${2:-}" in
  "container inspect") [[ -f $FAKE_LOG/container-$3 ]] ;;
  "rm --force") rm -f "$FAKE_LOG/container-$3" ;;
  "run "*)
    name=''
    while (($#)); do [[ $1 == --name ]] && name=$2; shift; done
    touch "$FAKE_LOG/container-$name"
    echo 0123456789ab
    ;;
esac
"""
FAKE_RECORDER = """#!/bin/bash
(IFS=$'\\x1f'; printf '%s\\n' "$*") >>"$FAKE_LOG/{name}.log"
"""
FAKE_DD = """#!/bin/bash
(IFS=$'\\x1f'; printf '%s\\n' "$*") >>"$FAKE_LOG/dd.log"
exec {real_dd} "$@"
"""
# name: size in bytes; with BAKERY_WARM_CHUNK_MIB=1 the first is read in three chunks.
BLOBS = {"sha256-" + "a" * 64: 2 * 1024 * 1024 + 512 * 1024, "sha256-" + "b" * 64: 4096}


@dataclass
class Sandbox:
    root: Path
    logs: Path
    env: dict[str, str]
    imds: FakeImds
    ollama: FakeOllama

    def calls(self, tool: str) -> list[list[str]]:
        log = self.logs / f"{tool}.log"
        if not log.exists():
            return []
        return [line.split(SEP) for line in log.read_text().splitlines()]

    def boot(self, script: Path, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(script)],
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )


def make_sandbox(tmp_path: Path, serve: Callable[[type[BaseHTTPRequestHandler]], str]) -> Sandbox:
    real_dd = shutil.which("dd")
    assert real_dd, "dd is needed to read the blobs"
    bin_dir, logs, root = tmp_path / "bin", tmp_path / "logs", tmp_path / "root"
    for d in (bin_dir, logs, root):
        d.mkdir()
    fakes = {
        "docker": FAKE_DOCKER,
        "systemctl": FAKE_RECORDER.format(name="systemctl"),
        "logger": FAKE_RECORDER.format(name="logger"),
        "dd": FAKE_DD.format(real_dd=real_dd),
        # Present so that a call would be recorded; the script must not use it.
        "ollama": FAKE_RECORDER.format(name="ollama"),
    }
    for name, text in fakes.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    models = root / "usr/share/ollama/.ollama/models"
    (models / "blobs").mkdir(parents=True)
    (models / "manifests/registry.ollama.ai/library/deepseek-r1").mkdir(parents=True)
    (models / "manifests/registry.ollama.ai/library/deepseek-r1/7b").write_text("{}")
    for name, size in BLOBS.items():
        (models / "blobs" / name).write_bytes(os.urandom(size))

    imds, ollama = FakeImds(), FakeOllama()
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "LANG": "C.UTF-8",
        "FAKE_LOG": str(logs),
        "BAKERY_ROOT": str(root),
        "IMDS_ENDPOINT": serve(imds.handler()),
        "OLLAMA_ENDPOINT": serve(ollama.handler()),
        "BAKERY_OLLAMA_WAIT_S": "10",
        "BAKERY_WARM_CHUNK_MIB": "1",
    }
    return Sandbox(root=root, logs=logs, env=env, imds=imds, ollama=ollama)


@pytest.fixture
def sandbox(tmp_path: Path, serve: Callable[[type[BaseHTTPRequestHandler]], str]) -> Sandbox:
    return make_sandbox(tmp_path, serve)


@dataclass
class Booted:
    sandbox: Sandbox
    result: subprocess.CompletedProcess[str]


def _boot(sandbox: Sandbox, script: Path) -> Booted:
    result = sandbox.boot(script)
    assert result.returncode == 0, result.stderr
    return Booted(sandbox, result)


@pytest.fixture(scope="module")
def booted(
    tmp_path_factory: pytest.TempPathFactory,
    serve: Callable[[type[BaseHTTPRequestHandler]], str],
    script: Path,
) -> Booted:
    """One boot, for the checks that only read what it did."""
    return _boot(make_sandbox(tmp_path_factory.mktemp("booted"), serve), script)


@pytest.fixture
def booted_here(sandbox: Sandbox, script: Path) -> Booted:
    """A boot of this test's own, for the checks that boot again."""
    return _boot(sandbox, script)


def _docker_run(sandbox: Sandbox) -> list[str]:
    (run,) = [c for c in sandbox.calls("docker") if c[0] == "run"]
    return run


def _option_values(argv: list[str], option: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == option]


# -- boot ------------------------------------------------------------------------------------


@pytest.mark.terraform
def test_ui_reads_ollama_through_the_configured_variable(booted: Booted) -> None:
    env = _option_values(_docker_run(booted.sandbox), "-e")
    assert f"{UI_ENV}=http://127.0.0.1:11434" in env
    assert f"PORT={UI_PORT}" in env


@pytest.mark.terraform
@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--pull", "never"),
        ("--network", "host"),
        ("--restart", "unless-stopped"),
        ("--name", "bakery-ui"),
    ],
)
def test_ui_container_options(booted: Booted, option: str, value: str) -> None:
    assert _option_values(_docker_run(booted.sandbox), option) == [value]


@pytest.mark.terraform
def test_ui_runs_the_baked_image_detached(booted: Booted) -> None:
    run = _docker_run(booted.sandbox)
    assert run[-1] == UI_IMAGE
    assert "-d" in run


@pytest.mark.terraform
def test_nothing_is_pulled_at_boot(booted: Booted) -> None:
    assert [c for c in booted.sandbox.calls("docker") if "pull" in c[:2]] == []
    assert booted.sandbox.calls("ollama") == []
    assert [p for p in booted.sandbox.ollama.paths if "/api/pull" in p] == []


@pytest.mark.terraform
def test_each_model_is_loaded_and_kept(booted: Booted) -> None:
    assert booted.sandbox.ollama.generate == [{"model": m, "keep_alive": -1} for m in MODELS]


@pytest.mark.terraform
def test_ollama_is_asked_before_loading(booted: Booted) -> None:
    paths = booted.sandbox.ollama.paths
    assert paths.index("GET /api/version") < paths.index("POST /api/generate")


@pytest.mark.terraform
@pytest.mark.parametrize("blob", sorted(BLOBS))
def test_every_blob_is_read_in_full(booted: Booted, blob: str) -> None:
    reads = [
        dict(arg.split("=", 1) for arg in call if "=" in arg) for call in booted.sandbox.calls("dd")
    ]
    chunks = sorted(
        (int(r["skip"]), int(r["count"]), r["bs"]) for r in reads if r["if"].endswith("/" + blob)
    )
    covered = sum(count for _, count, _ in chunks) * 1024 * 1024
    assert {bs for _, _, bs in chunks} == {"1M"}
    assert [skip for skip, _, _ in chunks] == list(range(len(chunks)))
    assert covered >= BLOBS[blob]


@pytest.mark.terraform
def test_readiness_file(booted: Booted) -> None:
    ready = (booted.sandbox.root / "run/bakery/ready").read_text()
    assert re.search(r"^seconds_since_boot=\d+$", ready, re.MULTILINE)
    assert f"models={' '.join(MODELS)}" in ready


@pytest.mark.terraform
def test_readiness_is_logged_with_seconds_since_boot(booted: Booted) -> None:
    messages = [c[-1] for c in booted.sandbox.calls("logger")]
    assert any(re.fullmatch(r"ready \d+s after boot: .*", m) for m in messages), messages


@pytest.mark.terraform
def test_watcher_unit_is_installed_and_started(booted: Booted) -> None:
    unit = (booted.sandbox.root / "etc/systemd/system/bakery-spot-watch.service").read_text()
    assert "ExecStart=/usr/local/sbin/bakery-boot watch" in unit
    assert os.access(booted.sandbox.root / "usr/local/sbin/bakery-boot", os.X_OK)
    systemctl = booted.sandbox.calls("systemctl")
    assert ["enable", "bakery-spot-watch.service"] in systemctl
    assert ["restart", "bakery-spot-watch.service"] in systemctl


@pytest.mark.terraform
def test_rerun_replaces_the_ui_container(booted_here: Booted, script: Path) -> None:
    sandbox = booted_here.sandbox
    again = sandbox.boot(script)
    assert again.returncode == 0, again.stderr
    docker = [c[:2] for c in sandbox.calls("docker")]
    assert docker.count(["rm", "--force"]) == 1
    assert [c for c in docker if c[0] == "run"] == [["run", "-d"], ["run", "-d"]]
    assert len(list(sandbox.logs.glob("container-*"))) == 1


@pytest.mark.terraform
def test_rerun_does_not_duplicate_the_unit(booted_here: Booted, script: Path) -> None:
    unit = booted_here.sandbox.root / "etc/systemd/system/bakery-spot-watch.service"
    first = unit.read_text()
    assert booted_here.sandbox.boot(script).returncode == 0
    assert unit.read_text() == first


@pytest.mark.terraform
def test_boot_fails_without_ollama_and_says_so(sandbox: Sandbox, script: Path) -> None:
    result = sandbox.boot(script, OLLAMA_ENDPOINT="http://127.0.0.1:9", BAKERY_OLLAMA_WAIT_S="1")
    assert result.returncode != 0
    assert not (sandbox.root / "run/bakery/ready").exists()
    assert any(c[-1].startswith("not ready:") for c in sandbox.calls("logger"))


# -- the spot notice watcher -----------------------------------------------------------------


def _wait_for(condition: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


@dataclass
class Watched:
    sandbox: Sandbox
    notice: str
    rebalance: str
    notices_before: int
    gets_after_notice: int


@pytest.fixture(scope="module")
def watched(
    tmp_path_factory: pytest.TempPathFactory,
    serve: Callable[[type[BaseHTTPRequestHandler]], str],
    script: Path,
) -> Iterator[Watched]:
    """Runs `<script> watch` polling every 0.1 s with 2 s tokens, then issues the notices."""
    sandbox = make_sandbox(tmp_path_factory.mktemp("watched"), serve)
    imds = sandbox.imds
    notice = '{"action": "terminate", "time": "2026-11-26T12:00:00Z"}'
    rebalance = '{"noticeTime": "2026-11-26T11:58:00Z"}'

    def notices_logged() -> list[str]:
        return [
            c[-1]
            for c in sandbox.calls("logger")
            if c[-1].startswith(("spot interruption notice:", "rebalance recommendation:"))
        ]

    def gets(path: str) -> int:
        with imds.lock:
            return sum(1 for p, _ in imds.gets if p == path)

    proc = subprocess.Popen(
        ["bash", str(script), "watch"],
        env={**sandbox.env, "BAKERY_WATCH_INTERVAL_S": "0.1", "BAKERY_IMDS_TOKEN_TTL_S": "2"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _wait_for(lambda: gets("spot/instance-action") >= 5)
        before = len(notices_logged())
        with imds.lock:
            imds.notices["spot/instance-action"] = notice
        _wait_for(lambda: any(m.startswith("spot") for m in notices_logged()))
        seen = gets("spot/instance-action")
        with imds.lock:
            imds.notices["events/recommendations/rebalance"] = rebalance
        _wait_for(lambda: any(m.startswith("rebalance") for m in notices_logged()))
        # Keep polling past the token's lifetime, with both notices standing.
        _wait_for(lambda: gets("spot/instance-action") >= seen + 10 and imds.token_puts >= 3)
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=5)
    yield Watched(sandbox, notice, rebalance, before, gets("spot/instance-action") - seen)


@pytest.mark.terraform
def test_no_notice_is_logged_while_imds_answers_404(watched: Watched) -> None:
    assert watched.notices_before == 0


@pytest.mark.terraform
def test_interruption_notice_is_logged_once(watched: Watched) -> None:
    messages = [c[-1] for c in watched.sandbox.calls("logger")]
    assert messages.count(f"spot interruption notice: {watched.notice}") == 1
    assert watched.gets_after_notice >= 10  # it kept polling after logging it


@pytest.mark.terraform
def test_rebalance_recommendation_is_logged_once(watched: Watched) -> None:
    messages = [c[-1] for c in watched.sandbox.calls("logger")]
    assert messages.count(f"rebalance recommendation: {watched.rebalance}") == 1


@pytest.mark.terraform
def test_notices_are_logged_as_warnings(watched: Watched) -> None:
    (call,) = [
        c for c in watched.sandbox.calls("logger") if c[-1].startswith("spot interruption notice:")
    ]
    assert _option_values(call, "--priority") == ["user.warning"]
    assert _option_values(call, "--tag") == ["bakery"]


@pytest.mark.terraform
def test_token_is_renewed_before_it_expires(watched: Watched) -> None:
    imds = watched.sandbox.imds
    assert imds.token_puts >= 3
    assert [p for p, status in imds.gets if status == 401] == []


@pytest.mark.terraform
def test_package_renders_what_the_module_renders(render: Callable[..., Path]) -> None:
    """bakery.userdata (what verify and the local VM boot with) is the module's own rendering."""
    from bakery import config, userdata

    image = config.load("deepseek-r1-7b")
    expected = render(
        ui_port=image.ui.port, ui_ollama_url_env=image.ui.ollama_url_env, models=image.model_names
    ).read_text()
    assert userdata.render(image) == expected
