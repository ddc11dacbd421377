"""install-ollama.sh: a checked download, the ollama user, and a unit that waits for the GPU."""

from __future__ import annotations

import os

import pytest

SCRIPT = "install-ollama.sh"
UNIT_DIR = "/etc/systemd/system"


def env_for(release, **extra: str) -> dict[str, str]:
    env = {
        "OLLAMA_VERSION": release.version,
        "OLLAMA_SHA256": release.sha256,
        "OLLAMA_DOWNLOAD_URL": release.url,
        "OLLAMA_KEEP_ALIVE": "-1",
    }
    env.update(extra)
    return env


@pytest.fixture
def release(ollama_release):
    return ollama_release("0.13.1")


def test_installs_binary_user_and_units(sandbox, release, repo) -> None:
    result = sandbox.run_ok(SCRIPT, **env_for(release))

    assert [c for c in sandbox.calls("curl") if release.url in c]
    binary = sandbox.path("/usr/bin/ollama")
    assert sandbox.mode("/usr/bin/ollama") == 0o755
    assert sandbox.path("/usr/lib/ollama/cuda_v12/libggml-cuda.so").read_text() == "0.13.1"
    if os.geteuid() == 0:
        assert binary.stat().st_uid == 0, "the tarball's owner (uid 1000) must not be kept"
    assert "installed ollama 0.13.1" in result.stdout

    passwd = {line.split(":")[0]: line.split(":") for line in sandbox.read("/etc/passwd").split()}
    assert passwd["ollama"][5:] == ["/usr/share/ollama", "/bin/false"]
    groups = {line.split(":")[0]: line.split(":")[3] for line in sandbox.read("/etc/group").split()}
    assert "ollama" in groups["render"].split(",") and "ollama" in groups["video"].split(",")
    assert sandbox.mode("/usr/share/ollama") == 0o755
    assert ["chown", "ollama:ollama", str(sandbox.path("/usr/share/ollama"))] in sandbox.calls()

    rootfs = repo / "scripts" / "rootfs"
    for path, mode in (
        (f"{UNIT_DIR}/ollama.service", 0o644),
        (f"{UNIT_DIR}/ollama.service.d/10-bakery.conf", 0o644),
        (f"{UNIT_DIR}/ollama.service.d/15-wait-for-nvidia.conf", 0o644),
        ("/usr/local/libexec/bakery/wait-for-nvidia", 0o755),
    ):
        assert sandbox.read(path) == (rootfs / path.lstrip("/")).read_text(), path
        assert sandbox.mode(path) == mode, path
    assert sandbox.read(f"{UNIT_DIR}/ollama.service.d/20-keep-alive.conf").splitlines()[1:] == [
        "[Service]",
        "Environment=OLLAMA_KEEP_ALIVE=-1",
    ]
    assert ["systemctl", "daemon-reload"] in sandbox.calls("systemctl")
    assert ["systemctl", "enable", "ollama.service"] in sandbox.calls("systemctl")
    assert ["systemctl", "start", "ollama.service"] not in sandbox.calls("systemctl")
    assert list(sandbox.tmpdir.iterdir()) == []


def test_cpu_image_unit_does_not_wait_for_a_gpu(sandbox, release) -> None:
    sandbox.run_ok(SCRIPT, **env_for(release))
    sandbox.run_ok(SCRIPT, **env_for(release, OLLAMA_WAIT_FOR_GPU="false"))
    assert not sandbox.path(f"{UNIT_DIR}/ollama.service.d/15-wait-for-nvidia.conf").exists()
    assert sandbox.path(f"{UNIT_DIR}/ollama.service.d/10-bakery.conf").is_file()
    sandbox.assert_idempotent(SCRIPT, **env_for(release, OLLAMA_WAIT_FOR_GPU="false"))


def test_unit_binds_loopback_and_waits_for_the_gpu(repo) -> None:
    rootfs = repo / "scripts" / "rootfs"
    units = rootfs / "etc/systemd/system/ollama.service.d"
    assert (
        "Environment=OLLAMA_HOST=127.0.0.1:11434"
        in (units / "10-bakery.conf").read_text().splitlines()
    )
    lines = (units / "15-wait-for-nvidia.conf").read_text().splitlines()
    assert "After=nvidia-persistenced.service" in lines
    (pre,) = [line for line in lines if line.startswith("ExecStartPre=")]
    helper = rootfs / pre.removeprefix("ExecStartPre=").lstrip("/")
    assert helper.is_file() and os.access(helper, os.X_OK)


def test_second_run_changes_nothing(sandbox, release) -> None:
    sandbox.run_ok(SCRIPT, **env_for(release))
    sandbox.assert_idempotent(SCRIPT, **env_for(release))
    assert sandbox.calls("curl") == [], "no second download"


def test_wrong_sha256_installs_nothing(sandbox, release) -> None:
    before = sandbox.snapshot()
    result = sandbox.run(SCRIPT, **env_for(release, OLLAMA_SHA256="0" * 64))
    assert result.returncode != 0
    assert "sha256 mismatch" in result.stderr
    assert f"expected {'0' * 64}, got {release.sha256}" in result.stderr
    assert sandbox.calls("tar") == []
    assert sandbox.snapshot() == before
    assert list(sandbox.tmpdir.iterdir()) == [], "the download is not left behind"


def test_upgrade_replaces_the_old_runners(sandbox, ollama_release) -> None:
    old, new = ollama_release("0.12.0"), ollama_release("0.13.1")
    sandbox.run_ok(SCRIPT, **env_for(old))
    assert sandbox.path("/usr/lib/ollama/libggml-base-0.12.0.so").exists()

    sandbox.clear_calls()
    result = sandbox.run_ok(SCRIPT, **env_for(new, OLLAMA_KEEP_ALIVE="30m"))
    assert "(replacing 0.12.0)" in result.stdout
    assert not sandbox.path("/usr/lib/ollama/libggml-base-0.12.0.so").exists()
    assert sandbox.path("/usr/lib/ollama/libggml-base-0.13.1.so").exists()
    assert "OLLAMA_KEEP_ALIVE=30m" in sandbox.read(
        f"{UNIT_DIR}/ollama.service.d/20-keep-alive.conf"
    )
    assert ["systemctl", "daemon-reload"] in sandbox.calls("systemctl")
    assert sandbox.calls("useradd") == [] and sandbox.calls("usermod") == []


def test_version_mismatch_with_the_url_fails(sandbox, ollama_release) -> None:
    other = ollama_release("0.12.0")
    result = sandbox.run(SCRIPT, **env_for(other, OLLAMA_VERSION="0.13.1"))
    assert result.returncode != 0
    assert "reports version '0.12.0', not 0.13.1" in result.stderr


def test_missing_groups_are_created(sandbox, release) -> None:
    sandbox.write("/etc/group", "root:x:0:\nvideo:x:44:\n")
    sandbox.run_ok(SCRIPT, **env_for(release))
    assert sandbox.calls("groupadd") == [["groupadd", "--system", "render"]]
    assert "render:x:" in sandbox.read("/etc/group")


def test_existing_user_gets_the_groups(sandbox, release) -> None:
    sandbox.write("/etc/passwd", "ollama:x:990:990::/usr/share/ollama:/bin/false\n")
    sandbox.write("/etc/group", "video:x:44:\nrender:x:993:ollama\nollama:x:990:\n")
    sandbox.run_ok(SCRIPT, **env_for(release))
    assert sandbox.calls("useradd") == []
    assert sandbox.calls("usermod") == [["usermod", "--append", "--groups", "video", "ollama"]]


@pytest.mark.parametrize(
    ("drop", "extra", "message"),
    [
        ("OLLAMA_VERSION", {}, "OLLAMA_VERSION: is required"),
        ("OLLAMA_SHA256", {}, "OLLAMA_SHA256: is required"),
        ("OLLAMA_KEEP_ALIVE", {}, "OLLAMA_KEEP_ALIVE: is required"),
        ("", {"OLLAMA_SHA256": "abc"}, "must be 64 hex digits"),
        ("", {"OLLAMA_KEEP_ALIVE": "5m\nExecStartPre=/bin/sh"}, "OLLAMA_KEEP_ALIVE must be"),
        ("", {"OLLAMA_VERSION": "latest"}, "must look like 0.13.1"),
    ],
    ids=["no-version", "no-sha256", "no-keep-alive", "bad-sha256", "unit-injection", "bad-version"],
)
def test_bad_environment_fails_clearly(sandbox, release, drop, extra, message) -> None:
    env = env_for(release, **extra)
    env.pop(drop, None)
    result = sandbox.run(SCRIPT, **env)
    assert result.returncode != 0
    assert message in result.stderr
    assert sandbox.calls() == []
