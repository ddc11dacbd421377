"""The user-data template, rendered by Terraform, linted by shellcheck and run in a sandbox.

The boot runs against the real Ollama serving the tiny test image's bake (the `tiny_bake`
fixture: install-ollama.sh and pull-models.sh run for real): BAKERY_ROOT is a copy of that
root, whose model store the boot reads and whose `ollama serve` it loads the model into.
Fakes stand first on PATH for what cannot run here: docker (no Docker daemon on this machine,
and no baked UI image), systemctl (systemd is not PID 1: ollama.service cannot be started, so
the sandbox's server stands in for it) and logger (the journal); dd records its arguments and
then reads for real. IMDS is a fake on a free port (there is no EC2 here).
"""

from __future__ import annotations

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
from tooling import OllamaServer, free_port

MODELS = ["deepseek-r1:7b", "qwen3:0.6b"]  # for the renders that do not boot
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
def script(render: Callable[..., Path], tiny_bake: Any) -> Path:
    """The user-data of a fleet of the tiny image (UI settings changed from the defaults)."""
    return render(ui_port=UI_PORT, ui_ollama_url_env=UI_ENV, models=tiny_bake.image.model_names)


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
# A blob of another size than the tiny model's (which are under 1 MiB): with
# BAKERY_WARM_CHUNK_MIB=1 it is read in three chunks. OLLAMA_NOPRUNE keeps the server from
# removing it as unreferenced.
BIG_BLOB = ("sha256-" + "a" * 64, 2 * 1024 * 1024 + 512 * 1024)
MODELS_DIR = "usr/share/ollama/.ollama/models"


@dataclass
class Sandbox:
    root: Path
    logs: Path
    env: dict[str, str]
    imds: FakeImds
    ollama: Any  # tooling.OllamaServer, or None for the watcher

    @property
    def blobs(self) -> dict[str, int]:
        return {p.name: p.stat().st_size for p in (self.root / MODELS_DIR / "blobs").iterdir()}

    def requests(self) -> list[str]:
        """'GET /api/version', ... as the real server logged them, in order."""
        text = self.ollama.log.read_text(errors="replace")
        return [
            f"{m[0]} {m[1]}" for m in re.findall(r'\| (GET|POST|HEAD|DELETE)\s+"([^"]+)"', text)
        ]

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


def make_sandbox(
    tmp_path: Path,
    serve: Callable[[type[BaseHTTPRequestHandler]], str],
    baked: Any = None,
) -> Sandbox:
    """A sandbox; with `baked` (the tiny_bake fixture), its root is a copy of the bake and the
    real Ollama serves it (stop it with sandbox.ollama.stop())."""
    real_dd = shutil.which("dd")
    assert real_dd, "dd is needed to read the blobs"
    bin_dir, logs, root = tmp_path / "bin", tmp_path / "logs", tmp_path / "root"
    for d in (bin_dir, logs):
        d.mkdir()
    if baked is not None:
        baked.copy(root)
    else:
        root.mkdir()
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
    imds, ollama = FakeImds(), None
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "LANG": "C.UTF-8",
        "FAKE_LOG": str(logs),
        "BAKERY_ROOT": str(root),
        "IMDS_ENDPOINT": serve(imds.handler()),
        "OLLAMA_ENDPOINT": "http://127.0.0.1:9",  # nothing: only a baked root has an Ollama
        "BAKERY_OLLAMA_WAIT_S": "10",
        "BAKERY_WARM_CHUNK_MIB": "1",
    }
    if baked is not None:
        name, size = BIG_BLOB
        (root / MODELS_DIR / "blobs" / name).write_bytes(os.urandom(size))
        address = f"127.0.0.1:{free_port()}"
        ollama = OllamaServer(root, address, logs / "ollama-serve.log", {"OLLAMA_NOPRUNE": "1"})
        ollama.start()
        env["OLLAMA_ENDPOINT"] = ollama.url
    return Sandbox(root=root, logs=logs, env=env, imds=imds, ollama=ollama)


@pytest.fixture
def sandbox(
    tmp_path: Path, serve: Callable[[type[BaseHTTPRequestHandler]], str], tiny_bake: Any
) -> Iterator[Sandbox]:
    box = make_sandbox(tmp_path, serve, tiny_bake)
    yield box
    box.ollama.stop()


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
    tiny_bake: Any,
) -> Iterator[Booted]:
    """One boot, for the checks that only read what it did; its Ollama serves until the module
    ends, so that what the boot loaded can be asked for."""
    box = make_sandbox(tmp_path_factory.mktemp("booted"), serve, tiny_bake)
    try:
        yield _boot(box, script)
    finally:
        box.ollama.stop()


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
    assert [r for r in booted.sandbox.requests() if "/api/pull" in r] == []


@pytest.mark.terraform
def test_the_model_is_loaded_and_kept_resident(booted: Booted, tiny_bake: Any) -> None:
    """The preload (keep_alive -1) leaves the model in memory: /api/ps lists it with an expiry
    centuries away (Ollama's "never"), not the 5 minutes of its default."""
    (loaded,) = booted.sandbox.ollama.get("/api/ps")["models"]
    assert loaded["name"] == f"{tiny_bake.model}:latest"
    assert loaded["digest"] == tiny_bake.record[0]["digest"]
    assert int(loaded["expires_at"][:4]) > time.gmtime().tm_year + 100, loaded["expires_at"]
    assert loaded["size"] > 0


@pytest.mark.terraform
def test_ollama_is_asked_before_loading(booted: Booted) -> None:
    requests = booted.sandbox.requests()
    assert requests.count("POST /api/generate") == 1, requests
    assert requests.index("GET /api/version") < requests.index("POST /api/generate")


def _chunks(booted: Booted, blob: str) -> list[tuple[int, int, str]]:
    reads = [
        dict(arg.split("=", 1) for arg in call if "=" in arg) for call in booted.sandbox.calls("dd")
    ]
    return sorted(
        (int(r["skip"]), int(r["count"]), r["bs"]) for r in reads if r["if"].endswith("/" + blob)
    )


@pytest.mark.terraform
def test_every_blob_is_read_in_full(booted: Booted) -> None:
    blobs = booted.sandbox.blobs
    assert len(blobs) >= 4, blobs  # the GGUF, the template, the config and the big one
    for blob, size in blobs.items():
        chunks = _chunks(booted, blob)
        covered = sum(count for _, count, _ in chunks) * 1024 * 1024
        assert {bs for _, _, bs in chunks} == {"1M"}, blob
        assert [skip for skip, _, _ in chunks] == list(range(len(chunks))), blob
        assert covered >= size, blob
    assert len(_chunks(booted, BIG_BLOB[0])) == 3


@pytest.mark.terraform
def test_readiness_file(booted: Booted, tiny_bake: Any) -> None:
    ready = (booted.sandbox.root / "run/bakery/ready").read_text()
    assert re.search(r"^seconds_since_boot=\d+$", ready, re.MULTILINE)
    assert f"models={tiny_bake.model}" in ready


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
def test_boot_fails_without_ollama_and_says_so(
    tmp_path: Path, serve: Callable[[type[BaseHTTPRequestHandler]], str], script: Path
) -> None:
    sandbox = make_sandbox(tmp_path, serve)  # no bake: nothing answers at OLLAMA_ENDPOINT
    result = sandbox.boot(script, BAKERY_OLLAMA_WAIT_S="1")
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
