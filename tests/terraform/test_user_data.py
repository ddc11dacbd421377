"""The user-data template, rendered by Terraform, linted by shellcheck and run in a sandbox.

The boot runs against the real Ollama serving the tiny test image's bake (the `tiny_bake`
fixture: install-ollama.sh and pull-models.sh run for real): BAKERY_ROOT is a copy of that
root, whose model store the boot reads and whose `ollama serve` it loads the model into.
Fakes stand first on PATH for what cannot run here: docker (no Docker daemon on this machine,
and no baked UI image), systemctl (systemd is not PID 1: ollama.service cannot be started, so
the sandbox's server stands in for it) and logger (the journal); dd records its arguments and
then reads for real. IMDS is a fake on a free port (there is no EC2 here), and so is the UI
(no Docker to run its container: the fake answers /api/tags from the real Ollama, as the UI
does) and the AWS API endpoint. A pass-through in front of the real Ollama, and the fakes, write
one shared timeline, which shows the order of what the script did across them.

The emulator (moto) does not implement CompleteLifecycleAction, so the script's AWS calls are
checked here instead: their order, the exact call against botocore's model of the API (Stubber),
and their signature against botocore's own Signature Version 4.
"""

from __future__ import annotations

import datetime as dt
import http.client
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import botocore.auth
import botocore.awsrequest
import botocore.credentials
import botocore.serialize
import pytest
from botocore.stub import Stubber
from tfharness import Terraform, plugin_cache, require_tool, stage, terraform_env
from tooling import OllamaServer, free_port

MODELS = ["deepseek-r1:7b", "qwen3:0.6b"]  # for the renders that do not boot
# Not the defaults, so the test sees that the inputs reach the script.
UI_PORT = 3100
UI_ENV = "NEXT_PUBLIC_OLLAMA_URL"
UI_IMAGE = "bakery/ui:baked"
SEP = "\x1f"  # the fakes join their arguments with it

# Behind the load balancer: what the module passes for a fleet named "fleet".
HOOK = "bakery-ready"
GROUP = "fleet"
TARGET_GROUP = (
    "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/fleet/0123456789abcdef"
)
HOOKED = {
    "lifecycle_hook_name": HOOK,
    "autoscaling_group_name": GROUP,
    "target_group_arn": TARGET_GROUP,
}
# The instance as the fake IMDS describes it, and its role's (fake) credentials.
INSTANCE_ID = "i-0123456789abcdef0"
REGION = "us-east-1"
ROLE = "fleet-role"
CREDENTIALS = {
    "Code": "Success",
    "AccessKeyId": "ASIAFAKEFAKEFAKEFAKE",
    "SecretAccessKey": "fake/secret/key/for/the/sandbox/only/0000",
    "Token": "fake-session-token",
    "Expiration": "2099-01-01T00:00:00Z",
}


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
        {"models": MODELS, **HOOKED},
    ],
    ids=["two-models", "no-models", "behind-a-load-balancer"],
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


@pytest.fixture(scope="module")
def hooked_script(render: Callable[..., Path], tiny_bake: Any) -> Path:
    """The user-data of the tiny image's fleet behind a load balancer."""
    return render(
        ui_port=UI_PORT, ui_ollama_url_env=UI_ENV, models=tiny_bake.image.model_names, **HOOKED
    )


@pytest.fixture(scope="module")
def hooked_unbaked_script(render: Callable[..., Path]) -> Path:
    """Behind a load balancer, loading a model the image does not hold: the real Ollama refuses
    it (404), as it would a model lost from the disk."""
    return render(ui_port=UI_PORT, ui_ollama_url_env=UI_ENV, models=["not-baked:latest"], **HOOKED)


# -- fake servers ----------------------------------------------------------------------------


@dataclass
class Timeline:
    """What the fake servers saw, in the order they saw it, across all of them."""

    events: list[tuple[int, str]] = field(default_factory=list)
    counter: Any = field(default_factory=itertools.count)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, what: str) -> None:
        with self.lock:
            self.events.append((next(self.counter), what))

    def index(self, what: str, last: bool = False) -> int:
        """Position of the first (or last) event that starts with `what`."""
        found = [n for n, e in self.events if e.startswith(what)]
        assert found, f"no {what!r} in {self.events}"
        return found[-1] if last else found[0]

    def count(self, what: str) -> int:
        return sum(1 for _, e in self.events if e.startswith(what))


def _static_metadata() -> dict[str, str]:
    return {
        "instance-id": INSTANCE_ID,
        "placement/region": REGION,
        "services/domain": "amazonaws.com",
        "iam/security-credentials/": ROLE,
        f"iam/security-credentials/{ROLE}": json.dumps(CREDENTIALS),
    }


@dataclass
class FakeImds:
    """IMDSv2: tokens expire; instance-action and rebalance answer 404 until a notice is set;
    the instance's identity and role credentials, as EC2 serves them."""

    notices: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=_static_metadata)
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
                    known = {**imds.metadata, **imds.notices}
                    status = 401 if not valid else 200 if path in known else 404
                    imds.gets.append((path, status))
                    body = known.get(path, "") if status == 200 else ""
                self._send(status, body)

        return Handler


@dataclass
class OllamaTap:
    """Passes every request on to the real Ollama at `upstream` and its answer back, and puts
    each on the timeline once answered: 'ollama POST /api/generate 200'."""

    timeline: Timeline
    upstream: str

    def handler(self) -> type[BaseHTTPRequestHandler]:
        tap = self
        host, port = urllib.parse.urlsplit(tap.upstream).netloc.split(":")

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _pass(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
                connection = http.client.HTTPConnection(host, int(port), timeout=120)
                connection.request(self.command, self.path, body or None, dict(self.headers))
                answer = connection.getresponse()
                data = answer.read()
                tap.timeline.add(f"ollama {self.command} {self.path} {answer.status}")
                self.send_response(answer.status)
                for name, value in answer.getheaders():
                    if name.lower() not in ("transfer-encoding", "content-length", "connection"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                connection.close()

            do_GET = do_POST = do_HEAD = _pass

        return Handler


@dataclass
class FakeUi:
    """Stands in for the UI container (no Docker here): /api/tags answers 503 for the first
    `unready` requests (still starting), then what Ollama's /api/tags answers, as the UI's
    route does (a fixed list where no Ollama runs)."""

    timeline: Timeline
    ollama: str | None = None
    unready: int = 1
    requests: int = 0

    def handler(self) -> type[BaseHTTPRequestHandler]:
        ui = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                ui.requests += 1
                status, data = 503, b"starting"
                if ui.requests > ui.unready:
                    status, data = 200, b'{"models": []}'
                    if ui.ollama:
                        with urllib.request.urlopen(ui.ollama + "/api/tags", timeout=10) as r:
                            data = r.read()
                ui.timeline.add(f"ui {self.path} {status}")
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler


@dataclass
class AwsCall:
    headers: dict[str, str]
    body: bytes
    url: str

    @property
    def params(self) -> dict[str, str]:
        return dict(urllib.parse.parse_qsl(self.body.decode(), strict_parsing=True))


@dataclass
class FakeAws:
    """An AWS Query API endpoint: records each call; answers `errors` first, then success."""

    timeline: Timeline
    calls: list[AwsCall] = field(default_factory=list)
    errors: list[tuple[int, str]] = field(default_factory=list)  # (HTTP status, AWS code)

    def handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                call = AwsCall(
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                    f"http://{self.headers['Host']}{self.path}",
                )
                fake.calls.append(call)
                action = call.params.get("Action", "?")
                if fake.errors:
                    status, code = fake.errors.pop(0)
                    fake.timeline.add(f"aws {action} {code}")
                    data = f"<ErrorResponse><Error><Code>{code}</Code></Error></ErrorResponse>"
                else:
                    status = 200
                    fake.timeline.add(f"aws {action}")
                    data = f"<{action}Response><ResponseMetadata/></{action}Response>"
                self.send_response(status)
                self.send_header("Content-Type", "text/xml")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data.encode())

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
    ui: FakeUi
    aws: FakeAws
    timeline: Timeline

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
    imds, ollama, timeline = FakeImds(), None, Timeline()
    ui, aws = FakeUi(timeline), FakeAws(timeline)
    aws_endpoint = serve(aws.handler())
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "LANG": "C.UTF-8",
        "FAKE_LOG": str(logs),
        "BAKERY_ROOT": str(root),
        "IMDS_ENDPOINT": serve(imds.handler()),
        "OLLAMA_ENDPOINT": "http://127.0.0.1:9",  # nothing: only a baked root has an Ollama
        "UI_ENDPOINT": serve(ui.handler()),
        "AWS_ENDPOINT_URL_AUTO_SCALING": aws_endpoint,
        "AWS_ENDPOINT_URL_ELASTIC_LOAD_BALANCING_V2": aws_endpoint,
        "BAKERY_OLLAMA_WAIT_S": "10",
        "BAKERY_UI_WAIT_S": "10",
        "BAKERY_AWS_RETRY_S": "0",
        "BAKERY_WARM_CHUNK_MIB": "1",
    }
    if baked is not None:
        name, size = BIG_BLOB
        (root / MODELS_DIR / "blobs" / name).write_bytes(os.urandom(size))
        address = f"127.0.0.1:{free_port()}"
        ollama = OllamaServer(root, address, logs / "ollama-serve.log", {"OLLAMA_NOPRUNE": "1"})
        ollama.start()
        ui.ollama = ollama.url
        env["OLLAMA_ENDPOINT"] = serve(OllamaTap(timeline, ollama.url).handler())
    return Sandbox(
        root=root,
        logs=logs,
        env=env,
        imds=imds,
        ollama=ollama,
        ui=ui,
        aws=aws,
        timeline=timeline,
    )


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


@pytest.mark.terraform
def test_boot_waits_for_the_ui_before_it_is_ready(booted: Booted) -> None:
    timeline = booted.sandbox.timeline
    assert timeline.count("ui /api/tags 503") == 1
    assert timeline.index("ollama POST /api/generate 200", last=True) < timeline.index(
        "ui /api/tags 200"
    )


@pytest.mark.terraform
def test_boot_fails_when_the_ui_never_answers(sandbox: Sandbox, script: Path) -> None:
    sandbox.ui.unready = 10**6
    result = sandbox.boot(script, BAKERY_UI_WAIT_S="1")
    assert result.returncode != 0
    assert not (sandbox.root / "run/bakery/ready").exists()
    assert any("the UI did not answer" in c[-1] for c in sandbox.calls("logger"))


# -- behind the load balancer: the launch lifecycle action ------------------------------------

EXPECTED_COMPLETE = {
    "LifecycleHookName": HOOK,
    "AutoScalingGroupName": GROUP,
    "LifecycleActionResult": "CONTINUE",
    "InstanceId": INSTANCE_ID,
}


@pytest.fixture(scope="module")
def hooked_boot(
    tmp_path_factory: pytest.TempPathFactory,
    serve: Callable[[type[BaseHTTPRequestHandler]], str],
    hooked_script: Path,
    tiny_bake: Any,
) -> Iterator[Booted]:
    box = make_sandbox(tmp_path_factory.mktemp("hooked"), serve, tiny_bake)
    try:
        yield _boot(box, hooked_script)
    finally:
        box.ollama.stop()


@pytest.mark.terraform
def test_plain_boot_calls_no_aws_api(booted: Booted) -> None:
    """Without a load balancer (a verify instance, a local VM) there is nothing to complete."""
    assert booted.sandbox.aws.calls == []


@pytest.mark.terraform
def test_lifecycle_action_is_completed_once(hooked_boot: Booted) -> None:
    assert [c.params["Action"] for c in hooked_boot.sandbox.aws.calls] == [
        "CompleteLifecycleAction"
    ]


@pytest.mark.terraform
def test_lifecycle_action_is_completed_after_the_models_and_the_ui(hooked_boot: Booted) -> None:
    timeline = hooked_boot.sandbox.timeline
    completed = timeline.index("aws CompleteLifecycleAction")
    assert timeline.index("ollama POST /api/generate 200", last=True) < completed
    assert timeline.index("ui /api/tags 503") < timeline.index("ui /api/tags 200") < completed
    assert (hooked_boot.sandbox.root / "run/bakery/ready").exists()


@pytest.mark.terraform
def test_lifecycle_action_is_the_exact_api_call(hooked_boot: Booted) -> None:
    """The call as botocore's model of the Auto Scaling API has it: Stubber checks the operation
    and every parameter (and botocore validates them), the version is the API's."""
    (call,) = hooked_boot.sandbox.aws.calls
    params = call.params
    client = boto3.client(
        "autoscaling", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x"
    )
    assert params.pop("Version") == client.meta.service_model.api_version
    operation = {api: py for py, api in client.meta.method_to_api_mapping.items()}[
        params.pop("Action")
    ]
    with Stubber(client) as stub:
        stub.add_response("complete_lifecycle_action", {}, expected_params=EXPECTED_COMPLETE)
        getattr(client, operation)(**params)
        stub.assert_no_pending_responses()


@pytest.mark.terraform
def test_lifecycle_action_is_signed_as_botocore_signs_it(hooked_boot: Booted) -> None:
    (call,) = hooked_boot.sandbox.aws.calls
    authorization = call.headers["authorization"]
    found = re.fullmatch(
        r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request,"
        r" SignedHeaders=([^,]+), Signature=([0-9a-f]{64})",
        authorization,
    )
    assert found, authorization
    key, day, region, service, signed, signature = found.groups()
    assert (key, region, service) == (CREDENTIALS["AccessKeyId"], REGION, "autoscaling")
    assert call.headers["x-amz-security-token"] == CREDENTIALS["Token"]
    request = botocore.awsrequest.AWSRequest(
        method="POST",
        url=call.url,
        data=call.body,
        headers={name: call.headers[name] for name in signed.split(";")},
    )
    stamp = call.headers["x-amz-date"]
    assert stamp.startswith(day)
    request.context["timestamp"] = stamp
    auth = botocore.auth.SigV4Auth(
        botocore.credentials.Credentials(
            CREDENTIALS["AccessKeyId"], CREDENTIALS["SecretAccessKey"], CREDENTIALS["Token"]
        ),
        service,
        region,
    )
    expected = auth.signature(
        auth.string_to_sign(request, auth.canonical_request(request)), request
    )
    assert signature == expected
    age = dt.datetime.now(dt.UTC) - dt.datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(
        tzinfo=dt.UTC
    )
    assert abs(age.total_seconds()) < 600


@pytest.mark.terraform
def test_no_lifecycle_call_when_loading_fails(
    sandbox: Sandbox, hooked_unbaked_script: Path
) -> None:
    result = sandbox.boot(hooked_unbaked_script)
    assert result.returncode != 0
    assert sandbox.timeline.count("ollama POST /api/generate 404") == 1
    assert sandbox.aws.calls == []
    assert not (sandbox.root / "run/bakery/ready").exists()
    assert any(c[-1].startswith("not ready:") for c in sandbox.calls("logger"))


@pytest.mark.terraform
def test_no_lifecycle_call_when_the_ui_never_answers(sandbox: Sandbox, hooked_script: Path) -> None:
    sandbox.ui.unready = 10**6
    result = sandbox.boot(hooked_script, BAKERY_UI_WAIT_S="1")
    assert result.returncode != 0
    assert sandbox.aws.calls == []


@pytest.mark.terraform
def test_access_denied_is_retried(sandbox: Sandbox, hooked_script: Path) -> None:
    """A new role's policy takes a while to reach every endpoint (IAM is eventually consistent)."""
    sandbox.aws.errors = [(403, "AccessDenied"), (400, "Throttling")]
    result = sandbox.boot(hooked_script)
    assert result.returncode == 0, result.stderr
    assert [e for _, e in sandbox.timeline.events if e.startswith("aws")] == [
        "aws CompleteLifecycleAction AccessDenied",
        "aws CompleteLifecycleAction Throttling",
        "aws CompleteLifecycleAction",
    ]


@pytest.mark.terraform
def test_retries_end_and_the_instance_is_not_ready(sandbox: Sandbox, hooked_script: Path) -> None:
    sandbox.aws.errors = [(403, "AccessDenied")] * 3
    result = sandbox.boot(hooked_script, BAKERY_AWS_ATTEMPTS="3")
    assert result.returncode != 0
    assert len(sandbox.aws.calls) == 3
    assert not (sandbox.root / "run/bakery/ready").exists()


@pytest.mark.terraform
@pytest.mark.parametrize("answers", [[], [(403, "AccessDenied")] * 2], ids=["done", "refused"])
def test_the_role_credentials_are_never_shown(
    sandbox: Sandbox, hooked_script: Path, answers: list[tuple[int, str]]
) -> None:
    sandbox.aws.errors = list(answers)
    result = sandbox.boot(hooked_script, BAKERY_AWS_ATTEMPTS="2")
    shown = result.stdout + result.stderr + "\n".join(SEP.join(c) for c in sandbox.calls("logger"))
    assert "complete the launch lifecycle action" in shown
    for secret in (CREDENTIALS["SecretAccessKey"], CREDENTIALS["Token"]):
        assert secret not in shown


@pytest.mark.terraform
def test_no_waiting_action_is_not_a_failure(sandbox: Sandbox, hooked_script: Path) -> None:
    """ValidationError: nothing holds the instance (it ran before the hook existed, or this is a
    second run after it went in service)."""
    sandbox.aws.errors = [(400, "ValidationError")]
    result = sandbox.boot(hooked_script)
    assert result.returncode == 0, result.stderr
    assert len(sandbox.aws.calls) == 1
    assert (sandbox.root / "run/bakery/ready").exists()
    assert any("AWS refused it: ValidationError" in c[-1] for c in sandbox.calls("logger"))


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
def test_plain_watcher_calls_no_aws_api(watched: Watched) -> None:
    assert watched.sandbox.aws.calls == []


@dataclass
class Left:
    sandbox: Sandbox
    calls_after_rebalance: int


@pytest.fixture(scope="module")
def left(
    tmp_path_factory: pytest.TempPathFactory,
    serve: Callable[[type[BaseHTTPRequestHandler]], str],
    hooked_script: Path,
) -> Iterator[Left]:
    """The watcher behind a load balancer: a rebalance recommendation, then the notice."""
    sandbox = make_sandbox(tmp_path_factory.mktemp("left"), serve)
    proc = subprocess.Popen(
        ["bash", str(hooked_script), "watch"],
        env={**sandbox.env, "BAKERY_WATCH_INTERVAL_S": "0.1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )

    def logged(prefix: str) -> bool:
        return any(c[-1].startswith(prefix) for c in sandbox.calls("logger"))

    try:
        with sandbox.imds.lock:
            sandbox.imds.notices["events/recommendations/rebalance"] = "{}"
        _wait_for(lambda: logged("rebalance recommendation:"))
        time.sleep(0.5)  # several polls with the recommendation standing
        after_rebalance = len(sandbox.aws.calls)
        with sandbox.imds.lock:
            sandbox.imds.notices["spot/instance-action"] = '{"action": "terminate"}'
        _wait_for(lambda: logged("leave the target group"))
        time.sleep(0.5)  # the notice stands: it must not leave twice
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=5)
    yield Left(sandbox, after_rebalance)


@pytest.mark.terraform
def test_a_rebalance_recommendation_alone_keeps_the_instance_in(left: Left) -> None:
    assert left.calls_after_rebalance == 0


@pytest.mark.terraform
def test_the_interruption_notice_takes_the_instance_out_once(left: Left) -> None:
    (call,) = left.sandbox.aws.calls
    client = boto3.client(
        "elbv2", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x"
    )
    operation = client.meta.service_model.operation_model("DeregisterTargets")
    # What botocore itself sends for the call: the same parameters, to the same API version.
    expected = botocore.serialize.create_serializer("query").serialize_to_request(
        {"TargetGroupArn": TARGET_GROUP, "Targets": [{"Id": INSTANCE_ID}]}, operation
    )["body"]
    assert call.params == expected
    assert "/elasticloadbalancing/aws4_request" in call.headers["authorization"]


@pytest.mark.terraform
def test_package_renders_what_the_module_renders(render: Callable[..., Path]) -> None:
    """bakery.userdata (what verify and the local VM boot with) is the module's own rendering."""
    from bakery import config, userdata

    image = config.load("deepseek-r1-7b")
    expected = render(
        ui_port=image.ui.port, ui_ollama_url_env=image.ui.ollama_url_env, models=image.model_names
    ).read_text()
    assert userdata.render(image) == expected
