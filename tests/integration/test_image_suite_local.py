"""The image suite (tests/image) run against this machine, which is not a baked image.

This machine has no NVIDIA GPU, no Ollama, no running systemd, and (usually) a docker CLI
without a daemon and no sshd. The suite must say so check by check: GPU checks skip with
"no NVIDIA GPU on this host", Ollama checks fail with "not installed", docker checks fail or
skip with the reason, and nothing that needs an absent piece passes. A socket this test opens
on 0.0.0.0 must make the public-listener check fail and name its port.

Then the same suite against the real Ollama serving the tiny test image, with a missing model
and an altered bake record injected: the Ollama checks pass where the host holds, and fail
naming the difference where it does not.

The last tests feed the suite's parsers fixed inputs (tcp6 tables, streamed generations...)
that this machine cannot produce.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from ipaddress import ip_address
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
SUITE = REPO / "tests" / "image"
NO_GPU = "no NVIDIA GPU on this host"


def _probe() -> ModuleType:
    name = "_image_probe_of_the_suite"
    spec = importlib.util.spec_from_file_location(name, SUITE / "image_probe.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


probe = _probe()


@dataclass
class Case:
    module: str
    name: str
    outcome: str  # passed, failed, error, skipped
    message: str
    markers: set[str]

    def __str__(self) -> str:
        return f"{self.module}::{self.name} {self.outcome}: {self.message[:160]}"


@dataclass
class Run:
    rc: int
    output: str
    cases: dict[str, Case]
    timings: dict[str, Any]
    public_port: int

    def where(self, module: str) -> list[Case]:
        return [c for c in self.cases.values() if c.module == module]


def _has_gpu() -> bool:
    modules = Path("/proc/modules")
    loaded = modules.exists() and any(
        line.split()[0] == "nvidia" for line in modules.read_text().splitlines() if line
    )
    return Path("/dev/nvidia0").exists() or loaded or Path("/sys/module/nvidia").exists()


def _which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/local/sbin:/usr/sbin:/sbin")


def _docker_daemon_reachable() -> bool:
    docker = _which("docker")
    if docker is None:
        return False
    try:
        r = subprocess.run([docker, "info"], capture_output=True, timeout=20)
    except subprocess.TimeoutExpired:
        return False
    return r.returncode == 0


def _parse_junit(path: Path) -> dict[str, Case]:
    cases = {}
    for tc in ET.parse(path).getroot().iter("testcase"):
        outcome, message = "passed", ""
        for tag, name in (("failure", "failed"), ("error", "error"), ("skipped", "skipped")):
            node = tc.find(tag)
            if node is not None:
                outcome, message = name, node.get("message") or node.text or ""
                break
        markers = {
            m
            for p in tc.iter("property")
            if p.get("name") == "markers"
            for m in (p.get("value") or "").split(",")
            if m
        }
        module = tc.get("classname", "").rsplit(".", 1)[-1]
        case = Case(module, tc.get("name", ""), outcome, message, markers)
        cases[f"{module}::{case.name}"] = case
    return cases


def _run_suite(tmp: Path, expect: dict[str, Any], path_prefix: str = "", select: str = "") -> Run:
    """The suite against this machine, with a socket listening on 0.0.0.0 meanwhile; `select`
    is a marker expression (-m)."""
    (tmp / "expect.json").write_text(json.dumps(expect))
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    if path_prefix:
        env["PATH"] = f"{path_prefix}:{env.get('PATH', '/usr/bin:/bin')}"
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as public:
        public.bind(("0.0.0.0", 0))
        public.listen()
        port = public.getsockname()[1]
        proc = subprocess.run(
            [
                sys.executable, "-m", "pytest", "tests/image", "--hosts=local://",
                "--expect", str(tmp / "expect.json"),
                "--junitxml", str(tmp / "junit.xml"),
                "--timings", str(tmp / "timings.json"),
                "-p", "no:cacheprovider",
                *(["-m", select] if select else []),
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=150,
            env=env,
        )  # fmt: skip
    output = proc.stdout + proc.stderr
    assert (tmp / "junit.xml").exists(), (
        f"the suite did not run (exit {proc.returncode}):\n{output}"
    )
    timings = json.loads((tmp / "timings.json").read_text())
    return Run(proc.returncode, output, _parse_junit(tmp / "junit.xml"), timings, port)


def _bare_machine() -> None:
    if _has_gpu():
        pytest.skip("this machine has an NVIDIA GPU: this test expects one without")
    if _which("ollama"):
        pytest.skip("this machine has ollama installed: this test expects one without")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    _bare_machine()
    expect = json.loads((SUITE / "expect.example.json").read_text())
    expect["min_free_disk_gib"] = 1  # so the free-disk check passes here for real
    return _run_suite(tmp_path_factory.mktemp("image-suite"), expect)


def test_suite_exits_nonzero(run: Run) -> None:
    assert run.rc == 1, f"expected exit 1 (checks failed), got {run.rc}:\n{run.output[-3000:]}"


def test_every_check_ran_to_an_outcome(run: Run) -> None:
    """No setup errors, and the suite holds the checks it is meant to hold."""
    errors = [str(c) for c in run.cases.values() if c.outcome == "error"]
    assert not errors, errors
    modules = {c.module for c in run.cases.values()}
    assert modules == {
        "test_image_gpu", "test_image_ollama", "test_image_ui", "test_image_hardening",
        "test_image_boot", "test_image_playbooks",
    }  # fmt: skip
    names = {c.name.split("[")[0] for c in run.cases.values()}
    for check in (
        "test_nvidia_kernel_module_loaded", "test_persistence_mode_enabled",
        "test_ollama_version", "test_ollama_unit_active", "test_model_digest",
        "test_generation_answers_within_budget", "test_model_fully_on_gpu",
        "test_ui_reads_configured_ollama_url_env", "test_nothing_listens_publicly_but_sshd",
        "test_sshd_refuses_passwords", "test_free_disk_space",
    ):  # fmt: skip
        assert check in names, f"{check} is missing from the suite"


def test_gpu_checks_skip_with_the_no_gpu_reason(run: Run) -> None:
    gpu = [c for c in run.cases.values() if "gpu" in c.markers]
    assert len(gpu) >= 7, f"expected the 6 GPU checks and the model-on-GPU check, got {gpu}"
    wrong = [str(c) for c in gpu if c.outcome != "skipped" or NO_GPU not in c.message]
    assert not wrong, wrong


def test_ollama_checks_fail_not_installed(run: Run) -> None:
    ollama = [c for c in run.where("test_image_ollama") if "gpu" not in c.markers]
    assert len(ollama) >= 11, ollama
    wrong = [str(c) for c in ollama if c.outcome != "failed" or "not installed" not in c.message]
    assert not wrong, wrong


def test_docker_checks_say_why_they_cannot_run(run: Run) -> None:
    docker = [c for c in run.where("test_image_ui") if c.name.startswith("test_ui_")]
    assert len(docker) == 4, docker
    if _which("docker") is None:
        wrong = [
            str(c) for c in docker if c.outcome != "failed" or "not installed" not in c.message
        ]
    elif not _docker_daemon_reachable():
        wrong = [
            str(c) for c in docker if c.outcome != "skipped" or "no Docker daemon" not in c.message
        ]
    else:  # a daemon without the UI image: nothing may pass on the image's behalf
        wrong = [str(c) for c in docker if c.outcome == "passed" and "image" in c.name]
    assert not wrong, wrong


def test_checks_of_absent_things_do_not_pass(run: Run) -> None:
    """Whatever this machine lacks, no check of it passes."""
    absent = {
        "gpu": True,
        "ollama": True,
        "systemd": Path("/proc/1/comm").read_text() != "systemd\n",
    }
    needs = [c for c in run.cases.values() if "gpu" in c.markers]
    needs += run.where("test_image_ollama")
    if not _docker_daemon_reachable():
        needs += [c for c in run.where("test_image_ui") if c.name.startswith("test_ui_")]
    if _which("sshd") is None:
        sshd = [c for c in run.cases.values() if c.name.startswith("test_sshd_")]
        assert sshd and all("sshd is not installed" in c.message for c in sshd), sshd
        needs += sshd
    if _which("cloud-init") is None and not Path("/var/lib/cloud").exists():
        cloud = run.cases["test_image_hardening::test_cloud_init_state_is_this_instance_only"]
        assert "cloud-init is not installed" in cloud.message, cloud
        needs.append(cloud)
    passed = [str(c) for c in needs if c.outcome == "passed"]
    assert absent["gpu"] and absent["ollama"] and not passed, passed


def test_public_listener_is_reported(run: Run) -> None:
    case = run.cases["test_image_ui::test_nothing_listens_publicly_but_sshd"]
    assert case.outcome == "failed", case
    assert f"0.0.0.0:{run.public_port}" in case.message, case


def test_checks_that_can_run_here_do_run(run: Run) -> None:
    disk = run.cases["test_image_hardening::test_free_disk_space"]
    free_gib = shutil.disk_usage("/").free / 2**30
    assert disk.outcome == ("passed" if free_gib >= 1 else "failed"), disk


def test_timings_are_null_with_reasons(run: Run) -> None:
    t = run.timings
    for key in ("boot_to_ollama_ready_s", "ttft_s", "tokens_per_s", "gpu_name"):
        assert t[key] is None, (key, t)
        assert t["notes"][key], (key, t)
    assert "not installed" in t["notes"]["ttft_s"]  # a generation needs Ollama, not a GPU
    assert "not installed" in t["notes"]["boot_to_ollama_ready_s"]
    assert NO_GPU in t["notes"]["gpu_name"]


def test_missing_expect_is_a_usage_error() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "tests/image",
            "--hosts=local://",
            "-p",
            "no:cacheprovider",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert "needs --expect PATH" in proc.stderr


# --- the same suite against the real Ollama, with mismatches injected -----------------------
# The tiny test image's bake (tiny_bake: the real install-ollama.sh and pull-models.sh) served
# by the real Ollama on a free loopback port. The expectations add a model the host does not
# have, and the bake's record is a copy with the tiny model's digest altered: the checks must
# pass where the host holds and fail, naming the difference, where it does not. The slow
# checks (the generation, the boot wait) run in test_verify_host_ollama.py, through
# `invoke verify --host local://` with nothing injected.

ABSENT = "qwen3:8b"


@dataclass
class RealRun:
    run: Run
    model: str
    digest: str


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory, tiny_bake: Any) -> Any:
    from tooling import OllamaServer, free_port

    tmp = tmp_path_factory.mktemp("real-ollama")
    address = f"127.0.0.1:{free_port()}"
    (recorded,) = tiny_bake.record
    tampered = tmp / "models.json"
    tampered.write_text(json.dumps([{**recorded, "digest": "0" * 64}]))
    expect = json.loads((SUITE / "expect.example.json").read_text())
    expect["ollama"]["address"] = address
    expect["ollama"]["record"] = str(tampered)
    expect["ollama"]["models"] = [
        {"name": tiny_bake.model, "digest": recorded["digest"]},
        {"name": ABSENT, "digest": None},
    ]
    with OllamaServer(tiny_bake.root, address, tmp / "serve.log"):
        run = _run_suite(
            tmp, expect, path_prefix=str(tiny_bake.root / "usr/bin"), select="not slow"
        )
    yield RealRun(run, tiny_bake.model, recorded["digest"])


def test_real_ollama_checks_judge_the_host(real: RealRun) -> None:
    c, m = real.run.cases, real.model
    expected = {
        "test_ollama_version": "passed",
        "test_ollama_keep_alive": "passed",
        "test_ollama_listens_on_expected_address": "passed",
        "test_ollama_listens_on_no_other_address": "passed",
        f"test_model_present[{m}]": "passed",
        f"test_model_digest[{m}]": "passed",
        f"test_model_digest_is_the_bakes[{m}]": "failed",  # the altered record
        f"test_model_present[{ABSENT}]": "failed",
        f"test_model_digest[{ABSENT}]": "skipped",
        f"test_model_digest_is_the_bakes[{ABSENT}]": "failed",
    }
    got = {name: c[f"test_image_ollama::{name}"].outcome for name in expected}
    assert got == expected, [str(c[f"test_image_ollama::{n}"]) for n in expected]


def test_real_ollama_failures_name_the_difference(real: RealRun) -> None:
    c = real.run.cases
    tampered = c[f"test_image_ollama::test_model_digest_is_the_bakes[{real.model}]"].message
    assert f"has digest {real.digest}, the bake recorded {'0' * 64}" in tampered
    absent = c[f"test_image_ollama::test_model_present[{ABSENT}]"].message
    assert f"{ABSENT} is not in /api/tags; present: ['{real.model}:latest']" in absent
    unrecorded = c[f"test_image_ollama::test_model_digest_is_the_bakes[{ABSENT}]"].message
    assert f"{ABSENT} is not in the bake's record" in unrecorded
    assert "digest is not checked" in c[f"test_image_ollama::test_model_digest[{ABSENT}]"].message


def test_real_ollama_systemd_checks_skip_or_fail_honestly(real: RealRun) -> None:
    c = real.run.cases
    active = c["test_image_ollama::test_ollama_unit_active"]
    enabled = c["test_image_ollama::test_ollama_unit_enabled"]
    pid1 = Path("/proc/1/comm").read_text().strip()
    if pid1 != "systemd":
        assert active.outcome == "skipped", active
        assert f"host not booted with systemd: PID 1 is {pid1}" in active.message, active
    else:  # systemd runs, and has no ollama.service (the unit is in the sandbox root)
        assert active.outcome == "failed", active
    # This machine's systemd has no ollama.service (the unit is in the sandbox root): enabled
    # can never pass (it fails, or skips without systemctl to read unit files with).
    assert enabled.outcome in ("failed", "skipped"), enabled


# --- the suite's parsers, on inputs this machine cannot produce -----------------------------

TCP6 = """\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:2CAA 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000   999        0 4242 1 0 100 0 0 10 0
   1: 00000000000000000000000000000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 17 1 0 100 0 0 10 0
   2: 0000000000000000FFFF00000100007F:0BB8 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 18 1 0 100 0 0 10 0
   3: 00000000000000000000000001000000:2CAA 00000000000000000000000001000000:D431 01 00000000:00000000 00:00000000 00000000   999        0 19 1 0 100 0 0 10 0
"""
TCP4 = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:2CAA 00000000:0000 0A 00000000:00000000 00:00000000 00000000   999        0 20516 1 0 100 0 0 10 0
   1: 00000000:0BB8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 634 1 0 100 0 0 10 0
"""


def test_parse_proc_net_tcp() -> None:
    v6 = [(ip_address(x.ip), x.port, x.loopback, x.inode) for x in probe.parse_proc_net_tcp(TCP6)]
    assert v6 == [
        (ip_address("::1"), 11434, True, 4242),
        (ip_address("::"), 22, False, 17),
        (ip_address("::ffff:127.0.0.1"), 3000, True, 18),  # IPv4-mapped loopback
    ]
    v4 = [(str(x), x.loopback) for x in probe.parse_proc_net_tcp(TCP4)]
    assert v4 == [("127.0.0.1:11434", True), ("0.0.0.0:3000", False)]


def test_parse_fd_listing_and_comms() -> None:
    fds = "/proc/12/fd:\ntotal 0\nlrwx------ 1 ollama ollama 64 Nov 26 10:46 3 -> socket:[4242]\n"
    assert probe.parse_fd_listing(fds) == {4242: {12}}
    assert probe.parse_proc_comms("/proc/12/comm:ollama\n/proc/1/comm:systemd\n") == {
        12: "ollama",
        1: "systemd",
    }


def test_parse_generation_stream() -> None:
    stream = "\n".join(
        [
            "START 100.000",
            'CHUNK 100.200 {"model":"deepseek-r1:7b","response":"","done":false}',
            'CHUNK 100.350 {"model":"deepseek-r1:7b","thinking":"Okay","done":false}',
            'CHUNK 100.400 {"model":"deepseek-r1:7b","response":" blue","done":false}',
            'CHUNK 101.000 {"response":"","done":true,"eval_count":50,"eval_duration":500000000}',
            "CURL_RC 0",
            "END 101.001",
        ]
    )
    g = probe.parse_generation("deepseek-r1:7b", stream)
    assert (g.text, g.done, g.rc, g.error) == ("Okay blue", True, 0, "")
    assert g.ttft_s == pytest.approx(0.35)
    assert g.tokens_per_s == pytest.approx(100.0)
    assert g.elapsed_s == pytest.approx(1.001)
    failed = probe.parse_generation("x", 'START 1\nCHUNK 2 {"error":"model not found"}\nEND 2')
    assert failed.error == "model not found" and not failed.text


def test_parse_smi_versions_env_and_ports() -> None:
    smi = probe.parse_smi_csv("0, NVIDIA H200, 580.159.04, 143771, Enabled\n")
    assert smi == [probe.Gpu(0, "NVIDIA H200", "580.159.04", 143771.0, "Enabled")]
    text = "Warning: could not connect to a running Ollama instance\n"
    text += "Warning: client version is 0.13.1\n"
    assert probe.parse_ollama_versions(text) == ["0.13.1"]
    assert probe.parse_ollama_versions("ollama version is 0.13.1\n") == ["0.13.1"]
    reads = 'process.env.OLLAMA_URL\nprocess.env["NEXT_PUBLIC_OLLAMA_URL\n'
    assert probe.parse_env_reads(reads) == {"OLLAMA_URL", "NEXT_PUBLIC_OLLAMA_URL"}
    ports = "ui\t127.0.0.1:3000->3000/tcp\nold\t0.0.0.0:3000->3000/tcp, :::3000->3000/tcp\n"
    ips = [probe.published_ip(m) for _, m in probe.parse_published_ports(ports)]
    assert ips == ["127.0.0.1", "0.0.0.0", "::"]
    assert probe.split_address("[::1]:11434") == ("::1", 11434)
    assert probe.model_key("deepseek-r1") == "deepseek-r1:latest"
