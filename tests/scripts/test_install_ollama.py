"""install-ollama.sh: a checked download, the ollama user, and a unit that waits for the GPU.

The release is the real one .ci/toolchain made for this machine (the `ollama_tarball`
fixture), as a .tgz and, made from it here, as a .tar.zst.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess

import pytest

SCRIPT = "install-ollama.sh"
UNIT_DIR = "/etc/systemd/system"


def env_for(release, url: str | None = None, sha256: str | None = None, **extra: str):
    env = {
        "OLLAMA_VERSION": release.version,
        "OLLAMA_SHA256": sha256 or release.sha256,
        "OLLAMA_DOWNLOAD_URL": url or release.url,
        "OLLAMA_KEEP_ALIVE": "-1",
    }
    env.update(extra)
    return env


@pytest.fixture
def zst(tmp_path, ollama_tarball, tool):
    """The same release as a .tar.zst (as Ollama >= 0.14 ships it): (url, sha256)."""
    path = tmp_path / "zst" / "ollama-linux-amd64.tar.zst"
    path.parent.mkdir()
    tar = subprocess.run(
        ["gzip", "--decompress", "--stdout", str(ollama_tarball.path)],
        capture_output=True,
        check=True,
    ).stdout
    subprocess.run([tool("zstd"), "--quiet", "-o", str(path)], input=tar, check=True)
    return path.as_uri(), hashlib.sha256(path.read_bytes()).hexdigest()


def test_installs_the_release_user_and_units(sandbox, ollama_tarball, repo) -> None:
    result = sandbox.run_ok(SCRIPT, **env_for(ollama_tarball))

    assert [c for c in sandbox.calls("curl") if ollama_tarball.url in c]
    assert sandbox.mode("/usr/bin/ollama") == 0o755
    assert sandbox.path("/usr/lib/ollama").is_dir()
    version = subprocess.run(
        [str(sandbox.path("/usr/bin/ollama")), "--version"],
        capture_output=True,
        text=True,
        env={"OLLAMA_HOST": "127.0.0.1:9", "HOME": str(sandbox.tmp / "home")},
    )
    assert f"client version is {ollama_tarball.version}" in version.stdout + version.stderr
    assert f"installed ollama {ollama_tarball.version} (sha256 {ollama_tarball.sha256})" in (
        result.stdout
    )

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


def test_second_run_changes_nothing(sandbox, ollama_tarball) -> None:
    sandbox.run_ok(SCRIPT, **env_for(ollama_tarball))
    sandbox.assert_idempotent(SCRIPT, **env_for(ollama_tarball))
    assert sandbox.calls("curl") == [], "no second download"


def test_installs_a_tar_zst_checked_as_downloaded(sandbox, ollama_tarball, zst) -> None:
    url, sha256 = zst
    result = sandbox.run_ok(SCRIPT, **env_for(ollama_tarball, url, sha256))
    assert f"installed ollama {ollama_tarball.version} (sha256 {sha256})" in result.stdout
    (tar,) = sandbox.calls("tar")
    assert "--zstd" in tar
    assert sandbox.mode("/usr/bin/ollama") == 0o755
    sandbox.assert_idempotent(SCRIPT, **env_for(ollama_tarball, url, sha256))


def test_tar_zst_with_the_sha256_of_the_tgz_installs_nothing(sandbox, ollama_tarball, zst) -> None:
    url, sha256 = zst
    before = sandbox.snapshot()
    result = sandbox.run(SCRIPT, **env_for(ollama_tarball, url, ollama_tarball.sha256))
    assert result.returncode != 0
    assert f"expected {ollama_tarball.sha256}, got {sha256}" in result.stderr
    assert sandbox.calls("tar") == []
    assert sandbox.snapshot() == before


def test_tar_zst_without_zstd_fails_before_the_download(sandbox, ollama_tarball, zst) -> None:
    (sandbox.realbin / "zstd").unlink()
    url, sha256 = zst
    result = sandbox.run(SCRIPT, **env_for(ollama_tarball, url, sha256))
    assert result.returncode != 0
    assert f"{url} is a .tar.zst, which needs zstd on the build host" in result.stderr
    assert sandbox.calls("curl") == []


def test_unit_files_pass_systemd_analyze_verify(sandbox, ollama_tarball, repo, tool) -> None:
    """Every unit in scripts/rootfs, installed by the scripts into a root that has what a base
    image has (systemd's own units, coreutils' rm) and the driver's daemon (as the DLAMI)."""
    sandbox.write("/usr/bin/nvidia-persistenced", "#!/bin/sh\n", 0o755)
    sandbox.set_state("modinfo-version", "580.95.05\n")
    sandbox.run_ok(
        "install-nvidia-driver.sh", NVIDIA_MIN_DRIVER_BRANCH="580", NVIDIA_DRIVER_INSTALL="false"
    )
    sandbox.run_ok(SCRIPT, **env_for(ollama_tarball))
    shutil.copytree(
        "/usr/lib/systemd/system", sandbox.path("/usr/lib/systemd/system"), symlinks=True
    )
    shutil.copy2("/usr/bin/rm", sandbox.path("/usr/bin/rm"))
    sandbox.path("/bin").symlink_to("usr/bin")

    units = sorted(p.name for p in (repo / "scripts/rootfs/etc/systemd/system").glob("*.service"))
    assert units == ["nvidia-persistenced.service", "ollama.service"]
    result = subprocess.run(
        [tool("systemd-analyze"), "verify", f"--root={sandbox.root}", *units],
        capture_output=True,
        text=True,
    )
    # An unknown key is only a warning: any output at all is a finding.
    assert (result.returncode, result.stdout + result.stderr) == (0, "")

    sandbox.path("/usr/bin/ollama").unlink()  # the check can fail: a unit naming a missing binary
    result = subprocess.run(
        [tool("systemd-analyze"), "verify", f"--root={sandbox.root}", "ollama.service"],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "Command /usr/bin/ollama is not executable" in result.stderr


def test_cpu_image_unit_does_not_wait_for_a_gpu(sandbox, ollama_tarball) -> None:
    sandbox.run_ok(SCRIPT, **env_for(ollama_tarball))
    sandbox.run_ok(SCRIPT, **env_for(ollama_tarball, OLLAMA_WAIT_FOR_GPU="false"))
    assert not sandbox.path(f"{UNIT_DIR}/ollama.service.d/15-wait-for-nvidia.conf").exists()
    assert sandbox.path(f"{UNIT_DIR}/ollama.service.d/10-bakery.conf").is_file()
    sandbox.assert_idempotent(SCRIPT, **env_for(ollama_tarball, OLLAMA_WAIT_FOR_GPU="false"))


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


def test_wrong_sha256_installs_nothing(sandbox, ollama_tarball) -> None:
    before = sandbox.snapshot()
    result = sandbox.run(SCRIPT, **env_for(ollama_tarball, sha256="0" * 64))
    assert result.returncode != 0
    assert "sha256 mismatch" in result.stderr
    assert f"expected {'0' * 64}, got {ollama_tarball.sha256}" in result.stderr
    assert sandbox.calls("tar") == []
    assert sandbox.snapshot() == before
    assert list(sandbox.tmpdir.iterdir()) == [], "the download is not left behind"


# The fake release: an archive whose files belong to its builder (uid 1000); the real one was
# packed with owner 0, so it cannot show that the owner is not kept.
@pytest.mark.skipif(
    os.geteuid() != 0, reason="only root can own files as root: the owner cannot be checked"
)
def test_archive_owner_is_not_kept(sandbox, fake_ollama_release) -> None:
    release = fake_ollama_release("0.13.1")
    sandbox.run_ok(SCRIPT, **env_for(release))
    assert sandbox.path("/usr/lib/ollama/cuda_v12/libggml-cuda.so").read_text() == "0.13.1"
    owner = sandbox.path("/usr/bin/ollama").stat().st_uid
    assert owner == 0, "the tarball's owner (uid 1000) must not be kept"


# The fake release: an upgrade needs an older version, and only one real release is here.
def test_upgrade_replaces_the_old_runners(sandbox, fake_ollama_release) -> None:
    old, new = fake_ollama_release("0.12.0"), fake_ollama_release("0.13.1")
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


# The fake release: an archive of another version than the definition names (injected).
def test_version_mismatch_with_the_url_fails(sandbox, fake_ollama_release) -> None:
    other = fake_ollama_release("0.12.0")
    result = sandbox.run(SCRIPT, **env_for(other, OLLAMA_VERSION="0.13.1"))
    assert result.returncode != 0
    assert "reports version '0.12.0', not 0.13.1" in result.stderr


def test_missing_groups_are_created(sandbox, ollama_tarball) -> None:
    sandbox.write("/etc/group", "root:x:0:\nvideo:x:44:\n")
    sandbox.run_ok(SCRIPT, **env_for(ollama_tarball))
    assert sandbox.calls("groupadd") == [["groupadd", "--system", "render"]]
    assert "render:x:" in sandbox.read("/etc/group")


def test_existing_user_gets_the_groups(sandbox, ollama_tarball) -> None:
    sandbox.write("/etc/passwd", "ollama:x:990:990::/usr/share/ollama:/bin/false\n")
    sandbox.write("/etc/group", "video:x:44:\nrender:x:993:ollama\nollama:x:990:\n")
    sandbox.run_ok(SCRIPT, **env_for(ollama_tarball))
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
        (
            "",
            {"OLLAMA_DOWNLOAD_URL": "https://mirror.example.com/ollama.zip"},
            "must name a .tgz or .tar.zst archive",
        ),
    ],
    ids=[
        "no-version",
        "no-sha256",
        "no-keep-alive",
        "bad-sha256",
        "unit-injection",
        "bad-version",
        "zip",
    ],
)
def test_bad_environment_fails_clearly(sandbox, ollama_tarball, drop, extra, message) -> None:
    env = env_for(ollama_tarball, **extra)
    env.pop(drop, None)
    result = sandbox.run(SCRIPT, **env)
    assert result.returncode != 0
    assert message in result.stderr
    assert sandbox.calls() == []
