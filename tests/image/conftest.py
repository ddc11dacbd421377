"""The image suite: options, expectations, the session-wide testinfra host, timings.

Run it against one host that testinfra reaches:

    pytest tests/image --hosts=ssh://ubuntu@10.0.0.5 --expect expect.json --timings t.json
    pytest tests/image --hosts=local:// --expect tests/image/expect.example.json
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import image_probe as probe
import pytest
import testinfra

TIMING_KEYS = ("boot_to_ollama_ready_s", "cold_load_s", "ttft_s", "tokens_per_s", "gpu_name")
# Which test measures which timing: when it does not pass, the timings file says why.
TIMING_SOURCES = {
    "test_ollama_ready_after_boot": ("boot_to_ollama_ready_s",),
    "test_user_data_ready": ("cold_load_s",),
    "test_generation_answers_within_budget": ("ttft_s", "tokens_per_s"),
    "test_nvidia_smi_answers": ("gpu_name",),
}
EXPECT_KEY = pytest.StashKey[dict]()
TIMINGS_KEY = pytest.StashKey[dict]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("image", "gpu-ami-bakery image suite")
    group.addoption(
        "--expect",
        metavar="PATH",
        help="expectations JSON written by `invoke verify` (required)",
    )
    group.addoption(
        "--timings",
        metavar="PATH",
        help="write measured timings here as JSON (null: not measurable, see 'notes')",
    )


# --- expectations -------------------------------------------------------------------------


def _need(data: dict[str, Any], path: str, kind: Any, nullable: bool = False) -> Any:
    node: Any = data
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            raise pytest.UsageError(f"--expect: missing key {path!r}")
        node = node[part]
    if node is None and nullable:
        return None
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(node, bool) or not isinstance(node, kinds):
        want = "/".join(k.__name__ for k in kinds) + (" or null" if nullable else "")
        raise pytest.UsageError(f"--expect: {path} must be {want}, not {node!r}")
    return node


def load_expectations(path: str) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text())
    except OSError as e:
        raise pytest.UsageError(f"--expect {path}: cannot read it ({e.strerror})") from None
    except ValueError as e:
        raise pytest.UsageError(f"--expect {path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise pytest.UsageError(f"--expect {path}: must hold a JSON object")
    _need(data, "image", str)
    if _need(data, "nvidia", dict, nullable=True) is not None:  # null: a CPU image
        _need(data, "nvidia.driver_version", str, nullable=True)
        _need(data, "nvidia.driver_branch", str, nullable=True)
        _need(data, "nvidia.min_driver_branch", str, nullable=True)
        _need(data, "nvidia.gpu_name", str, nullable=True)
        _need(data, "nvidia.min_gpu_memory_gib", (int, float))
    _need(data, "ollama.version", str)
    try:
        probe.split_address(_need(data, "ollama.address", str))
    except ValueError as e:
        raise pytest.UsageError(f"--expect: ollama.address: {e}") from None
    _need(data, "ollama.keep_alive", str)
    if not _need(data, "ollama.record", str).startswith("/"):
        raise pytest.UsageError("--expect: ollama.record must be an absolute path on the host")
    models = _need(data, "ollama.models", list)
    if not models:
        raise pytest.UsageError("--expect: ollama.models must list at least one model")
    for i, model in enumerate(models):
        if not isinstance(model, dict) or not isinstance(model.get("name"), str):
            raise pytest.UsageError(f"--expect: ollama.models[{i}] needs a string 'name'")
        digest = model.get("digest")
        if digest is not None and not re.fullmatch(r"(sha256:)?[0-9a-fA-F]{64}", str(digest)):
            raise pytest.UsageError(
                f"--expect: ollama.models[{i}].digest is not a sha256 hex digest: {digest!r}"
            )
    _need(data, "ollama.generation_timeout_s", (int, float))
    _need(data, "ui.image", str)
    _need(data, "ui.id", str, nullable=True)
    env = _need(data, "ui.ollama_url_env", str)
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", env):
        raise pytest.UsageError(f"--expect: ui.ollama_url_env is not a variable name: {env!r}")
    _need(data, "ui.port", int)
    _need(data, "min_free_disk_gib", (int, float))
    for i, book in enumerate(data.get("playbooks") or []):
        if not (
            isinstance(book, dict)
            and isinstance(book.get("name"), str)
            and isinstance(book.get("check"), str | None)
        ):
            raise pytest.UsageError(
                f"--expect: playbooks[{i}] must be {{name, check}}, not {book!r}"
            )
    return data


def pytest_configure(config: pytest.Config) -> None:
    expect = config.getoption("expect", None)
    if not expect:
        raise pytest.UsageError(
            "the image suite needs --expect PATH: the expectations JSON that `invoke verify` "
            "writes (see tests/image/expect.example.json and tests/image/README.md)"
        )
    hosts = config.getoption("hosts", None)
    if not hosts:
        raise pytest.UsageError(
            "the image suite needs --hosts: the host under test, e.g. "
            "--hosts=ssh://ubuntu@10.0.0.5 or --hosts=local://"
        )
    if "," in hosts:
        raise pytest.UsageError(f"the image suite checks one host per run, not {hosts!r}")
    config.stash[EXPECT_KEY] = load_expectations(expect)
    config.stash[TIMINGS_KEY] = {"values": dict.fromkeys(TIMING_KEYS), "notes": {}, "per_model": {}}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """One test per model of the expectations."""
    if "model" in metafunc.fixturenames:
        models = metafunc.config.stash[EXPECT_KEY]["ollama"]["models"]
        metafunc.parametrize("model", models, ids=[m["name"] for m in models])
    if "playbook" in metafunc.fixturenames:
        books = metafunc.config.stash[EXPECT_KEY].get("playbooks") or []
        metafunc.parametrize("playbook", books, ids=[b["name"] for b in books])


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Markers go into the JUnit XML as a property, for whoever reads the record."""
    for item in items:
        marks = sorted(
            {m.name for m in item.iter_markers() if m.name in ("gpu", "slow", "real_ui")}
        )
        item.user_properties.append(("markers", ",".join(marks)))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Generator:
    outcome = yield
    report = outcome.get_result()
    keys = TIMING_SOURCES.get(getattr(item, "originalname", item.name), ())
    if keys and (report.failed or report.skipped):
        if report.skipped and isinstance(report.longrepr, tuple):
            why = "skipped: " + report.longrepr[2].removeprefix("Skipped: ")
        else:
            why = "failed: " + probe.first_line(report.longreprtext or "")
        notes = item.config.stash[TIMINGS_KEY]["notes"]
        for key in keys:
            notes.setdefault(key, f"{item.name} {why}"[:300])


def pytest_sessionfinish(session: pytest.Session) -> None:
    path = session.config.getoption("timings", None)
    if not path or TIMINGS_KEY not in session.config.stash:
        return
    t = session.config.stash[TIMINGS_KEY]
    out: dict[str, Any] = dict(t["values"])
    notes = {}
    for key, note in t["notes"].items():
        if out.get(key) is None or key.endswith("_source"):
            notes[key] = note
    for key in TIMING_KEYS:
        if out[key] is None:
            notes.setdefault(key, "not measured: the test that measures it did not run")
    out["notes"] = notes
    out["per_model"] = t["per_model"]
    Path(path).write_text(json.dumps(out, indent=2) + "\n")


# --- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def host(pytestconfig: pytest.Config) -> Any:
    """The one host under test, for the whole session (testinfra's own is per module)."""
    opt = pytestconfig.option
    hosts = testinfra.get_hosts(
        [opt.hosts],
        connection=opt.connection,
        ssh_config=opt.ssh_config,
        ssh_identity_file=opt.ssh_identity_file,
        sudo=opt.sudo,
        sudo_user=opt.sudo_user,
        ansible_inventory=opt.ansible_inventory,
        force_ansible=opt.force_ansible,
    )
    if len(hosts) != 1:
        raise pytest.UsageError(f"--hosts={opt.hosts} names {len(hosts)} hosts; give one")
    return hosts[0]


@pytest.fixture(scope="session")
def expect(pytestconfig: pytest.Config) -> dict[str, Any]:
    return pytestconfig.stash[EXPECT_KEY]


@pytest.fixture(scope="session")
def timings(pytestconfig: pytest.Config) -> dict[str, Any]:
    """Measured values ('values'), why a value is null ('notes'), per-model detail."""
    return pytestconfig.stash[TIMINGS_KEY]


@pytest.fixture(scope="session")
def root(host: Any) -> probe.Root:
    return probe.Root(host)


@pytest.fixture(scope="session")
def gpu(host: Any) -> probe.GpuPresence:
    return probe.gpu_presence(host)


@pytest.fixture(autouse=True)
def _gpu_marked_tests_need_a_gpu(
    request: pytest.FixtureRequest, gpu: probe.GpuPresence, expect: dict[str, Any]
) -> None:
    if not request.node.get_closest_marker("gpu"):
        return
    if expect["nvidia"] is None:
        pytest.skip("a CPU image: its definition has no [nvidia] table")
    if not gpu.present:
        pytest.skip(gpu.absent_reason)


@pytest.fixture(scope="session")
def smi(host: Any, timings: dict[str, Any]) -> probe.Smi:
    s = probe.query_smi(host)
    if s.gpus:
        timings["values"]["gpu_name"] = s.gpus[0].name
    return s


@pytest.fixture(scope="session")
def boot_time(host: Any) -> int:
    return probe.boot_time(host)


@pytest.fixture(scope="session")
def systemd_skip_reason(host: Any) -> str | None:
    return probe.systemd_skip_reason(host)


@pytest.fixture(scope="session")
def ollama(host: Any, expect: dict[str, Any]) -> probe.Ollama:
    return probe.Ollama(host, expect)


@pytest.fixture(scope="session")
def docker(host: Any, root: probe.Root) -> probe.Docker:
    return probe.docker_state(host, root)


@pytest.fixture
def comms(host: Any) -> dict[int, str]:
    return probe.process_comms(host)


@pytest.fixture
def listeners(host: Any) -> list[probe.Listener]:
    return probe.tcp_listeners(host)


@pytest.fixture(scope="session")
def homes(host: Any) -> list[str]:
    """Home directories of every account in /etc/passwd, and /root."""
    found = {"/root"}
    for line in host.file("/etc/passwd").content_string.splitlines():
        parts = line.split(":")
        if len(parts) >= 7 and parts[5].startswith("/") and parts[5] != "/nonexistent":
            found.add(parts[5].rstrip("/") or "/")
    return sorted(found)


@pytest.fixture(scope="session")
def mtimes(root: probe.Root) -> Callable[[list[str]], dict[str, int]]:
    """{path: mtime} of the files that exist among paths and globs (read as root)."""

    def read(paths: list[str]) -> dict[str, int]:
        if not paths:
            return {}
        # Globs in the paths expand on the host; names split on newlines only.
        script = (
            'IFS="$(printf \'\\n_\')"; IFS="${IFS%_}"; '
            'for p in "$@"; do for f in $p; do '
            '[ -e "$f" ] && stat -c "%Y %n" -- "$f"; done; done; true'
        )
        r = root.run("sh -c %s _ " + " ".join(["%s"] * len(paths)), script, *paths)
        found = {}
        for line in r.stdout.splitlines():
            stamp, _, path = line.partition(" ")
            if stamp.isdigit():
                found[path] = int(stamp)
        return found

    return read
