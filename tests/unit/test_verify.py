"""verify's pieces without AWS: the verdict from JUnit reports, expectations, timings, option
checks, host URLs, console host keys, the launch request and the marks."""

from __future__ import annotations

import importlib.util
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from bakery import catalog, config, verify
from bakery import expectations as expect
from bakery.errors import BakeryError

IMAGE = config.load("deepseek-r1-7b")


def report(tmp_path: Path, cases: str, **counts: int) -> Path:
    path = tmp_path / "verify-report.xml"
    attrs = " ".join(f'{k}="{v}"' for k, v in counts.items())
    path.write_text(
        '<?xml version="1.0" encoding="utf-8"?><testsuites name="pytest tests">'
        f'<testsuite name="pytest" {attrs}>{cases}</testsuite></testsuites>'
    )
    return path


def case(name: str, inner: str = "", module: str = "tests.image.test_image_gpu") -> str:
    return f'<testcase classname="{module}" name="{name}" time="0.1">{inner}</testcase>'


# --- verdict --------------------------------------------------------------------------------


def test_all_passed(tmp_path: Path) -> None:
    v = expect.read_verdict(report(tmp_path, case("test_a") + case("test_b")))
    assert (v.passed, v.tests, v.first_problem) == (True, 2, None)
    assert v.counts == "2 passed, 0 failed, 0 errors, 0 skipped of 2"
    assert len(v.sha256) == 64


def test_failed_names_the_first_failing_check(tmp_path: Path) -> None:
    cases = (
        case("test_ok")
        + case(
            "test_gpu_name",
            '<failure message="AssertionError: GPU is Tesla T4, expected A10G&#10;assert False">'
            "long traceback</failure>",
        )
        + case("test_later", '<failure message="second">x</failure>')
    )
    v = expect.read_verdict(report(tmp_path, cases))
    assert not v.passed
    assert v.first_problem == (
        "tests/image/test_image_gpu.py::test_gpu_name: AssertionError: GPU is Tesla T4, expected A10G"
    )
    assert (v.failures, v.errors, v.skipped) == (2, 0, 0)


def test_error_in_a_fixture_counts_as_failing(tmp_path: Path) -> None:
    cases = case("test_ok") + case(
        "test_x", '<error message="failed on setup with &quot;OSError&quot;">trace</error>'
    )
    v = expect.read_verdict(report(tmp_path, cases))
    assert not v.passed and v.errors == 1
    assert (
        v.first_problem == 'tests/image/test_image_gpu.py::test_x: failed on setup with "OSError"'
    )


def test_a_skipped_check_is_not_verified(tmp_path: Path) -> None:
    cases = case("test_ok") + case(
        "test_ui_image_present",
        '<skipped type="pytest.skip" message="no Docker daemon">skip</skipped>',
        module="tests.image.test_image_ui",
    )
    v = expect.read_verdict(report(tmp_path, cases))
    assert not v.passed
    assert v.first_problem == (
        "tests/image/test_image_ui.py::test_ui_image_present: skipped: no Docker daemon"
    )


def test_a_failure_is_named_before_an_earlier_skip(tmp_path: Path) -> None:
    cases = case(
        "test_gpu_name", '<skipped type="pytest.skip" message="no GPU">s</skipped>'
    ) + case(
        "test_ollama_version", '<failure message="Failed: ollama is not installed">f</failure>'
    )
    v = expect.read_verdict(report(tmp_path, cases))
    assert v.first_problem == (
        "tests/image/test_image_gpu.py::test_ollama_version: Failed: ollama is not installed"
    )


def test_no_checks_is_not_passed(tmp_path: Path) -> None:
    v = expect.read_verdict(report(tmp_path, ""))
    assert (v.tests, v.passed) == (0, False)


def test_judge_refuses_a_missing_or_empty_report(tmp_path: Path) -> None:
    paths = expect.Paths(tmp_path)
    with pytest.raises(BakeryError, match=r"ended \(exit 4\) without a report"):
        expect.judge(paths, 4)
    report(tmp_path, "")
    with pytest.raises(BakeryError, match=r"ran no checks \(exit 5\)"):
        expect.judge(paths, 5)
    (tmp_path / "verify-report.xml").write_text("<testsuites")
    with pytest.raises(BakeryError, match="is not valid XML"):
        expect.judge(paths, 1)


def test_a_real_pytest_report(tmp_path: Path) -> None:
    """The verdict reads what pytest's own --junitxml writes."""
    tests = tmp_path / "t"
    tests.mkdir()
    (tests / "test_x.py").write_text(
        "import pytest\n"
        "def test_ok(): pass\n"
        "def test_bad(): assert 1 == 2, 'one is not two'\n"
        "def test_skip(): pytest.skip('no GPU')\n"
    )
    xml = tmp_path / "r.xml"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(tests),
            f"--junitxml={xml}",
            "-p",
            "no:cacheprovider",
            "-q",
        ],
        cwd=tmp_path,
        capture_output=True,
    )
    v = expect.read_verdict(xml)
    assert (v.tests, v.failures, v.skipped, v.passed) == (3, 1, 1, False)
    assert v.first_problem is not None and v.first_problem.endswith(
        "test_x.py::test_bad: AssertionError: one is not two"
    )


# --- expectations and timings ---------------------------------------------------------------


def test_expectations_from_definition_and_ami_tags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BAKERY_ROOT", raising=False)
    ami = {
        "Tags": [
            {"Key": catalog.MODEL + "deepseek-r1:7b", "Value": "c" * 64},
            {"Key": catalog.UI_IMAGE_ID, "Value": "sha256:" + "d" * 64},
            {"Key": catalog.VERSIONS, "Value": "ollama=0.13.1 nvidia=595.45.04"},
        ]
    }
    e = expect.expectations(IMAGE, ami, gpu_name="A10G")
    assert e == {
        "image": "deepseek-r1-7b",
        "nvidia": {
            "driver_version": "595.45.04",
            "driver_branch": None,
            "min_driver_branch": "580",
            "gpu_name": "A10G",
            "min_gpu_memory_gib": 16,
        },
        "ollama": {
            "version": "0.13.1",
            "address": "127.0.0.1:11434",
            "keep_alive": "-1",
            "record": "/var/lib/bakery/models.json",
            "models": [{"name": "deepseek-r1:7b", "digest": "c" * 64}],
            "generation_timeout_s": 120,
        },
        "ui": {
            "image": "bakery/ui:baked",
            "id": "sha256:" + "d" * 64,
            "ollama_url_env": "OLLAMA_URL",
            "port": 3000,
        },
        "min_free_disk_gib": 20,
        "playbooks": [],
        "booted_with_user_data": False,
    }


def test_a_local_bakes_driver_is_not_a_version_and_a_pinned_branch_is_expected() -> None:
    ami = {"Tags": [{"Key": catalog.VERSIONS, "Value": "ollama=0.13.1 nvidia=base"}]}
    assert expect.expectations(IMAGE, ami)["nvidia"]["driver_version"] is None
    pinned = config.load("deepseek-r1-7b-ubuntu2404")
    nvidia = expect.expectations(pinned, ami)["nvidia"]
    assert (nvidia["driver_branch"], nvidia["min_driver_branch"]) == ("580", None)


def test_the_ready_file_is_the_one_the_fleet_user_data_writes() -> None:
    """The cold load is read from the ready file: the suite's path is the template's."""
    tests = Path(__file__).resolve().parents[1]
    template = (tests.parent / "terraform" / "user-data.sh.tftpl").read_text()
    assert 'readonly STATE_DIR="$BAKERY_ROOT/run/bakery"' in template
    assert 'mv -f "$STATE_DIR/ready.tmp" "$STATE_DIR/ready"' in template
    assert 'READY = "/run/bakery/ready"' in (tests / "image" / "test_image_boot.py").read_text()


def test_record_path_follows_bakery_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BAKERY_ROOT", "/tmp/sandbox/root")
    record = expect.expectations(IMAGE, None)["ollama"]["record"]
    assert record == "/tmp/sandbox/root/var/lib/bakery/models.json"


@pytest.mark.parametrize("tag", [None, "unknown", ""], ids=["no-tag", "local-bake", "empty"])
def test_unknown_digest_is_null(tag: str | None) -> None:
    ami = {"Tags": [] if tag is None else [{"Key": catalog.MODEL + "deepseek-r1:7b", "Value": tag}]}
    assert expect.expectations(IMAGE, ami)["ollama"]["models"] == [
        {"name": "deepseek-r1:7b", "digest": None}
    ]
    assert expect.expectations(IMAGE, None)["nvidia"]["gpu_name"] is None
    assert expect.expectations(IMAGE, ami)["ui"]["id"] is None


def test_expectations_satisfy_the_suites_loader(tmp_path: Path) -> None:
    """tests/image/conftest.py's load_expectations accepts what verify writes."""
    pytest.importorskip("testinfra")
    suite = Path(__file__).resolve().parents[1] / "image"
    sys.path.insert(0, str(suite))  # its conftest imports image_probe from beside it
    try:
        spec = importlib.util.spec_from_file_location("image_suite_conftest", suite / "conftest.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(suite))
    path = expect.write(tmp_path / "expect.json", expect.expectations(IMAGE, None, gpu_name="L4"))
    assert module.load_expectations(str(path))["nvidia"]["gpu_name"] == "L4"


def test_compact_timings() -> None:
    t = {"boot_to_ollama_ready_s": 38.2, "cold_load_s": 95, "ttft_s": 0.412, "tokens_per_s": 92.34}
    assert expect.compact_timings(t) == "ready=38s cold=95s ttft=0.41s tps=92.3"
    assert expect.compact_timings({"ttft_s": None}, ssh=95.4) == (
        "ready=? cold=? ttft=? tps=? ssh=95s"
    )


def test_clip_keeps_tags_within_256() -> None:
    assert expect.clip("x" * 300) == "x" * 253 + "..."
    assert expect.clip("short") == "short"


def test_suite_command(tmp_path: Path) -> None:
    paths = expect.Paths(tmp_path)
    command = expect.suite_command(
        "ssh://ubuntu@198.51.100.4", paths, ssh_config=tmp_path / "cfg", identity=tmp_path / "key"
    )
    assert command[:4] == [sys.executable, "-m", "pytest", "tests/image"]
    assert command[4:] == [
        "--hosts=ssh://ubuntu@198.51.100.4",
        f"--expect={tmp_path}/expect.json",
        f"--timings={tmp_path}/timings.json",
        f"--junitxml={tmp_path}/verify-report.xml",
        "-p",
        "no:cacheprovider",
        f"--ssh-config={tmp_path}/cfg",
        f"--ssh-identity-file={tmp_path}/key",
    ]


# --- options --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("203.0.113.7", "203.0.113.7/32"),
        ("203.0.113.0/28", "203.0.113.0/28"),
        ("10.0.0.0/16", "10.0.0.0/16"),
    ],
)
def test_ssh_cidr_accepted(value: str, expected: str) -> None:
    assert verify.ssh_network(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0.0.0.0/0", "would open SSH to 4294967296 addresses"),
        ("10.0.0.0/8", "would open SSH to 16777216 addresses"),
        ("2001:db8::1", "only IPv4 is supported"),
        ("my-laptop", "is not an IPv4 address or network"),
    ],
)
def test_ssh_cidr_refused(value: str, message: str) -> None:
    with pytest.raises(BakeryError, match=message):
        verify.ssh_network(value)


def test_local_cidr_looks_nothing_up() -> None:
    said: list[str] = []
    assert verify.runner_cidr(None, True, said.append) == "127.0.0.1/32"
    assert "no runner address is looked up" in said[0]


@pytest.mark.parametrize(
    ("url", "parsed"),
    [
        ("ssh://ubuntu@198.51.100.4", ("ssh", "198.51.100.4", None)),
        ("ssh://ubuntu@127.0.0.1:2222", ("ssh", "127.0.0.1", 2222)),
        ("paramiko://gpu-box", ("paramiko", "gpu-box", None)),
        ("safe-ssh://root@[2001:db8::4]:22", ("safe-ssh", "2001:db8::4", 22)),
        ("local://", ("local", "", None)),
    ],
)
def test_parse_host(url: str, parsed: tuple[str, str, int | None]) -> None:
    assert verify.parse_host(url) == parsed


@pytest.mark.parametrize("url", ["docker://ollama", "198.51.100.4", "ssh://", "ssh://u@h:port"])
def test_parse_host_refuses(url: str) -> None:
    with pytest.raises(BakeryError, match=r"^--host "):
        verify.parse_host(url)


def test_timeout_minutes() -> None:
    assert verify.check_timeout(45) == 2700
    assert verify.check_timeout("10") == 600
    for bad in (4, 721, "soon"):
        with pytest.raises(BakeryError, match=r"^--timeout "):
            verify.check_timeout(bad)


# --- SSH ------------------------------------------------------------------------------------

CONSOLE = """[   10.1] cloud-init[812]: Cloud-init v. 24.1 finished
-----BEGIN SSH HOST KEY KEYS-----
ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTY= root@ip-172-31-0-4
ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOld root@ip-172-31-0-4\r
-----END SSH HOST KEY KEYS-----
"""


def test_console_host_keys() -> None:
    assert verify.console_host_keys(CONSOLE) == [
        ("ecdsa-sha2-nistp256", "AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTY="),
        ("ssh-ed25519", "AAAAC3NzaC1lZDI1NTE5AAAAIOld"),
    ]
    assert verify.console_host_keys("Linux version 6.8\nno keys yet") == []


def test_ssh_config_is_strict_and_scoped(tmp_path: Path) -> None:
    access = verify.Access("ubuntu", tmp_path)
    access.write_config("yes")
    text = access.ssh_config.read_text()
    for line in (
        f'IdentityFile "{tmp_path}/id_ed25519"',
        "IdentitiesOnly yes",
        f'UserKnownHostsFile "{tmp_path}/known_hosts"',
        "GlobalKnownHostsFile /dev/null",
        "StrictHostKeyChecking yes",
        "BatchMode yes",
        "PasswordAuthentication no",
    ):
        assert f"  {line}\n" in text
    assert access.url("198.51.100.4") == "ssh://ubuntu@198.51.100.4"


# --- the launch request and the marks --------------------------------------------------------

AMI = {
    "ImageId": "ami-0123456789abcdef0",
    "BlockDeviceMappings": [
        {
            "DeviceName": "/dev/sda1",
            "Ebs": {
                "SnapshotId": "snap-1",
                "VolumeSize": 100,
                "VolumeType": "gp3",
                "Iops": 3000,
                "Throughput": 125,
                "Encrypted": False,
                "DeleteOnTermination": False,
            },
        },
        {"DeviceName": "/dev/sdb", "VirtualName": "ephemeral0"},
    ],
}


def test_launch_request_is_secure_by_default() -> None:
    created = verify.Created("20260101-000000-abcdef", group_id="sg-1", key_name="bakery-verify-x")
    params = verify.launch_params(AMI, "g5.xlarge", "subnet-1", created, {"bakery:run-id": "r"})
    assert params["MetadataOptions"] == {"HttpTokens": "required", "HttpEndpoint": "enabled"}
    assert params["InstanceMarketOptions"] == {
        "MarketType": "spot",
        "SpotOptions": {
            "SpotInstanceType": "one-time",
            "InstanceInterruptionBehavior": "terminate",
        },
    }
    assert params["BlockDeviceMappings"] == [
        {
            "DeviceName": "/dev/sda1",
            "Ebs": {
                "SnapshotId": "snap-1",
                "VolumeSize": 100,
                "VolumeType": "gp3",
                "Iops": 3000,
                "Throughput": 125,
                "Encrypted": True,
                "DeleteOnTermination": True,
            },
        }
    ]
    assert params["SecurityGroupIds"] == ["sg-1"] and params["SubnetId"] == "subnet-1"
    assert params["KeyName"] == "bakery-verify-x"
    assert {s["ResourceType"] for s in params["TagSpecifications"]} == {
        "instance",
        "volume",
        "spot-instances-request",
    }
    assert params["InstanceInitiatedShutdownBehavior"] == "terminate"


def result_with(tmp_path: Path, cases: str) -> verify.Result:
    r = verify.Result("deepseek-r1-7b", "ami-1", "us-east-1", False)
    r.launched = verify.Launched("i-1", "g6.xlarge", "us-east-1a")
    r.verdict = expect.read_verdict(report(tmp_path, cases))
    r.initialization_rate = 300
    r.timings = {
        "boot_to_ollama_ready_s": 41,
        "cold_load_s": 130,
        "ttft_s": 0.3,
        "tokens_per_s": 80,
        "gpu_name": "NVIDIA L4",
    }
    r.boot = {"ready": 95.4}
    return r


def test_passed_marks(tmp_path: Path) -> None:
    passed, details = verify.marks(result_with(tmp_path, case("test_ok")))
    assert passed
    assert set(details) == {
        "bakery:verified-at",
        "bakery:verify-gpu",
        "bakery:verify-timings",
        "bakery:verify-report-sha256",
        "bakery:verify-cold-load",
    }
    assert details["bakery:verify-gpu"] == "g6.xlarge NVIDIA L4"
    assert details["bakery:verify-timings"] == "ready=41s cold=130s ttft=0.30s tps=80.0 ssh=95s"
    assert details["bakery:verify-cold-load"] == (
        "130s from boot to models loaded, volume initialized at 300 MiB/s"
    )


def test_cold_load_tag_says_when_the_volume_loaded_lazily(tmp_path: Path) -> None:
    r = result_with(tmp_path, case("test_ok"))
    r.initialization_rate = None
    assert verify.marks(r)[1]["bakery:verify-cold-load"] == (
        "130s from boot to models loaded, volume loaded lazily"
    )
    r.timings["cold_load_s"] = None  # not measured: no tag rather than a guess
    assert "bakery:verify-cold-load" not in verify.marks(r)[1]


def test_failed_marks_carry_the_first_failing_check_within_256(tmp_path: Path) -> None:
    long = "AssertionError: " + "x" * 400
    passed, details = verify.marks(
        result_with(tmp_path, case("test_bad", f'<failure message="{long}">t</failure>'))
    )
    assert not passed
    assert set(details) == {
        "bakery:verify-failure",
        "bakery:verify-gpu",
        "bakery:verify-report-sha256",
        "bakery:verify-cold-load",  # a slow cold load says something about a failure too
    }
    assert len(details["bakery:verify-failure"]) == 256
    assert details["bakery:verify-failure"].startswith(
        "tests/image/test_image_gpu.py::test_bad: AssertionError: xxx"
    )


def test_expectations_file_is_json(tmp_path: Path) -> None:
    path = expect.write(tmp_path / "d" / "expect.json", expect.expectations(IMAGE))
    assert json.loads(path.read_text())["image"] == "deepseek-r1-7b"


def test_unreachable_host_is_one_line() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: refused
        with pytest.raises(BakeryError) as e:
            verify.check_reachable(f"ssh://ubuntu@127.0.0.1:{port}", "127.0.0.1", port)
    assert str(e.value) == (
        f"cannot reach 127.0.0.1:{port}: connection refused (ssh://ubuntu@127.0.0.1:{port})"
    )
