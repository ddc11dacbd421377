"""install-nvidia-driver.sh: checks or installs the driver branch, turns persistence mode on."""

from __future__ import annotations

import platform

import pytest

SCRIPT = "install-nvidia-driver.sh"
ROOTFS_UNIT = "etc/systemd/system/nvidia-persistenced.service"
KERNEL = platform.release()  # what `uname -r` says to the script
PACKAGES = ["nvidia-headless-580-server-open", "nvidia-utils-580-server", f"linux-headers-{KERNEL}"]


def exec_start(unit: str) -> str:
    (line,) = [line for line in unit.splitlines() if line.startswith("ExecStart=")]
    return line.removeprefix("ExecStart=")


def dlami_base(sandbox) -> None:
    """A base AMI that carries driver 580 (as the DLAMI does)."""
    sandbox.set_state("modinfo-version", "580.95.05\n")
    sandbox.write("/usr/bin/nvidia-persistenced", "#!/bin/sh\n", 0o755)


BASE = {"NVIDIA_DRIVER_INSTALL": "false", "NVIDIA_MIN_DRIVER_BRANCH": "580"}


def test_base_driver_checked_and_persistence_enabled(sandbox, repo) -> None:
    dlami_base(sandbox)
    result = sandbox.run_ok(SCRIPT, **BASE)

    assert "nvidia kernel module 580.95.05" in result.stdout
    assert "(the base's driver, branch 580 >= 580; recorded by version-info)" in result.stdout
    assert sandbox.calls("apt-get") == []
    assert ["modinfo", "-k", KERNEL, "-F", "version", "nvidia"] in sandbox.calls("modinfo")
    unit = sandbox.read("/" + ROOTFS_UNIT)
    assert unit == (repo / "scripts/rootfs" / ROOTFS_UNIT).read_text()
    assert sandbox.mode("/" + ROOTFS_UNIT) == 0o644
    assert exec_start(unit) == (
        "/usr/bin/nvidia-persistenced --user nvidia-persistenced --persistence-mode --verbose"
    )
    assert "WantedBy=multi-user.target" in unit
    assert "nvidia-" in sandbox.read("/etc/apt/apt.conf.d/51bakery-nvidia")
    assert ["systemctl", "daemon-reload"] in sandbox.calls("systemctl")
    assert ["systemctl", "enable", "nvidia-persistenced.service"] in sandbox.calls("systemctl")
    assert (sandbox.state / "systemctl/enabled/nvidia-persistenced.service").exists()
    # The daemon's unprivileged user, which the unit's --user names.
    assert "\nnvidia-persistenced:" in sandbox.read("/etc/passwd")


def test_base_driver_second_run_changes_nothing(sandbox) -> None:
    dlami_base(sandbox)
    sandbox.run_ok(SCRIPT, **BASE)
    sandbox.assert_idempotent(SCRIPT, **BASE)


def test_base_without_driver_fails_clearly(sandbox) -> None:
    before = sandbox.snapshot()
    result = sandbox.run(SCRIPT, **BASE)
    assert result.returncode != 0
    assert "no NVIDIA driver on this base AMI" in result.stderr
    assert "install = true" in result.stderr
    assert sandbox.snapshot() == before
    assert sandbox.calls("apt-get") == [] and sandbox.calls("systemctl") == []


@pytest.mark.parametrize("minimum", ["580", None], ids=["at-least-580", "any"])
def test_base_with_a_newer_branch_is_taken(sandbox, minimum: str | None) -> None:
    """The DLAMI moved from 580 to 595: a newer release of the base is not a failed bake."""
    dlami_base(sandbox)
    sandbox.set_state("modinfo-version", "595.45.04\n")
    result = sandbox.run_ok(SCRIPT, NVIDIA_DRIVER_INSTALL="false", NVIDIA_MIN_DRIVER_BRANCH=minimum)
    assert "nvidia kernel module 595.45.04" in result.stdout
    assert "done: driver 595.45.04" in result.stdout


def test_base_with_an_older_branch_than_the_minimum_fails(sandbox) -> None:
    dlami_base(sandbox)
    sandbox.set_state("modinfo-version", "570.133.20\n")
    result = sandbox.run(SCRIPT, **BASE)
    assert result.returncode != 0
    assert "is 570.133.20, older than min_driver_branch 580" in result.stderr


def test_installed_branch_must_be_the_pinned_one(sandbox) -> None:
    """The packages are there (nothing to install), yet the module is of another branch."""
    for package in PACKAGES:
        sandbox.set_state(f"dpkg/{package}")
    sandbox.set_state("modinfo-version", "570.133.20\n")
    sandbox.write("/usr/bin/nvidia-persistenced", "#!/bin/sh\n", 0o755)
    result = sandbox.run(SCRIPT, NVIDIA_DRIVER_BRANCH="580", NVIDIA_DRIVER_INSTALL="true")
    assert result.returncode != 0
    assert "570.133.20, not branch 580" in result.stderr


def test_install_from_ubuntu_archive(sandbox) -> None:
    result = sandbox.run_ok(SCRIPT, NVIDIA_DRIVER_BRANCH="580", NVIDIA_DRIVER_INSTALL="true")

    apt = sandbox.calls("apt-get")
    assert [c[-1] for c in apt[:1]] == ["update"]
    install = apt[1]
    assert install[-3:] == PACKAGES
    assert {"--yes", "--no-install-recommends", "DPkg::Lock::Timeout=600"} <= set(install)
    assert len(apt) == 2
    assert "driver 580.95.05" in result.stdout
    # Ubuntu's own unit (no [Install], --no-persistence-mode) is overridden in /etc.
    ubuntu_unit = sandbox.read("/usr/lib/systemd/system/nvidia-persistenced.service")
    assert "--no-persistence-mode" in exec_start(ubuntu_unit)
    our_unit = sandbox.read("/etc/systemd/system/nvidia-persistenced.service")
    assert "--persistence-mode" in exec_start(our_unit).split()
    assert (sandbox.state / "systemctl/enabled/nvidia-persistenced.service").exists()
    # The package made the daemon's user: the script does not make a second one.
    assert sandbox.calls("useradd") == []
    assert sandbox.read("/etc/passwd").count("\nnvidia-persistenced:") == 1


def test_install_second_run_changes_nothing(sandbox) -> None:
    env = {"NVIDIA_DRIVER_BRANCH": "580", "NVIDIA_DRIVER_INSTALL": "true"}
    sandbox.run_ok(SCRIPT, **env)
    sandbox.assert_idempotent(SCRIPT, **env)
    assert sandbox.calls("apt-get") == []


def test_install_fails_when_dkms_built_nothing(sandbox) -> None:
    sandbox.set_state("dkms-fails")
    result = sandbox.run(SCRIPT, NVIDIA_DRIVER_BRANCH="580", NVIDIA_DRIVER_INSTALL="true")
    assert result.returncode != 0
    assert f"no nvidia kernel module for kernel {KERNEL} after the install" in result.stderr


def test_install_fails_when_a_package_is_missing(sandbox) -> None:
    sandbox.set_state("apt-unavailable", f"linux-headers-{KERNEL}")
    result = sandbox.run(SCRIPT, NVIDIA_DRIVER_BRANCH="580", NVIDIA_DRIVER_INSTALL="true")
    assert result.returncode != 0
    assert f"Unable to locate package linux-headers-{KERNEL}" in result.stderr


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"NVIDIA_DRIVER_INSTALL": "true"}, "NVIDIA_DRIVER_BRANCH: is required"),
        ({"NVIDIA_DRIVER_BRANCH": "580"}, "NVIDIA_DRIVER_INSTALL: is required"),
        ({"NVIDIA_DRIVER_BRANCH": "580", "NVIDIA_DRIVER_INSTALL": "yes"}, "must be true or false"),
        ({"NVIDIA_DRIVER_BRANCH": "latest", "NVIDIA_DRIVER_INSTALL": "true"}, "such as 580"),
        (
            {"NVIDIA_DRIVER_BRANCH": "580", "NVIDIA_DRIVER_INSTALL": "false"},
            "pins a branch only with NVIDIA_DRIVER_INSTALL=true",
        ),
        ({"NVIDIA_MIN_DRIVER_BRANCH": "new", "NVIDIA_DRIVER_INSTALL": "false"}, "such as 580"),
        (
            {
                "NVIDIA_DRIVER_BRANCH": "580",
                "NVIDIA_MIN_DRIVER_BRANCH": "580",
                "NVIDIA_DRIVER_INSTALL": "true",
            },
            "applies only with NVIDIA_DRIVER_INSTALL=false",
        ),
    ],
    ids=[
        "no-branch",
        "no-install",
        "install-not-bool",
        "branch-not-number",
        "pin-without-install",
        "minimum-not-number",
        "minimum-with-install",
    ],
)
def test_bad_environment_fails_clearly(sandbox, env, message) -> None:
    result = sandbox.run(SCRIPT, **env)
    assert result.returncode != 0
    assert message in result.stderr
    assert sandbox.calls() == []
