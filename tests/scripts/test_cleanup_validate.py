"""cleanup.sh removes the build instance's identity; validate.sh refuses an image that kept any."""

from __future__ import annotations

import os

import pytest

CLEANUP = "cleanup.sh"
MACHINE_ID_MODE = 0o444 if os.geteuid() == 0 else 0o644
VALIDATE = "validate.sh"

# Path in the tree: what validate.sh says about it while it is there.
LEFTOVERS = {
    "/etc/ssh/ssh_host_ed25519_key": "SSH host key left: /etc/ssh/ssh_host_ed25519_key",
    "/etc/ssh/ssh_host_rsa_key.pub": "SSH host key left: /etc/ssh/ssh_host_rsa_key.pub",
    "/root/.ssh/authorized_keys": "authorized_keys left: /root/.ssh/authorized_keys",
    "/home/ubuntu/.ssh/authorized_keys": "authorized_keys left: /home/ubuntu/.ssh/authorized_keys",
    "/home/ops/.ssh/authorized_keys2": "authorized_keys left: /home/ops/.ssh/authorized_keys2",
    "/var/lib/cloud/instances/i-0abc/user-data.txt": (
        "cloud-init instance state left: /var/lib/cloud/instances/i-0abc"
    ),
    "/var/lib/cloud/data/instance-id": (
        "cloud-init instance state left: /var/lib/cloud/data/instance-id"
    ),
    "/root/.bash_history": "shell history left: /root/.bash_history",
    "/home/ubuntu/.bash_history": "shell history left: /home/ubuntu/.bash_history",
    "/home/ubuntu/.python_history": "shell history left: /home/ubuntu/.python_history",
    "/usr/share/ollama/.ollama/id_ed25519": (
        "Ollama identity key left: /usr/share/ollama/.ollama/id_ed25519"
    ),
}
# Removed by cleanup.sh, of no concern to validate.sh.
CLUTTER = (
    "/var/lib/apt/lists/archive.ubuntu.com_ubuntu_dists_noble_InRelease",
    "/var/cache/apt/archives/docker.io_27.5.1_amd64.deb",
    "/var/cache/apt/pkgcache.bin",
    "/tmp/bakery-rootfs/etc/ssh/sshd_config.d/10-bakery.conf",
    "/var/log/cloud-init.log",
    "/var/lib/cloud/seed/nocloud/meta-data",
)
# What the image must keep.
KEPT = (
    "/var/lib/bakery/models.json",
    "/var/lib/bakery/version-info.json",
    "/usr/share/ollama/.ollama/models/blobs/sha256-abc",
    "/home/ubuntu/.profile",
    "/etc/ssh/sshd_config",
    "/tmp/version-info.json",
)


def dirty(sandbox) -> None:
    """The build instance as the provisioning steps leave it."""
    for path in (*LEFTOVERS, *CLUTTER, *KEPT):
        sandbox.write(path, f"content of {path}\n")
    sandbox.path("/var/lib/cloud/instance").symlink_to("/var/lib/cloud/instances/i-0abc")
    # 0444 as on Ubuntu; root (as the scripts run in the image) writes to it all the same.
    sandbox.write("/etc/machine-id", "0123456789abcdef0123456789abcdef\n", MACHINE_ID_MODE)


def test_cleanup_removes_the_instance_identity(sandbox) -> None:
    dirty(sandbox)
    sandbox.run_ok(CLEANUP)
    for path in (*LEFTOVERS, *CLUTTER, "/var/lib/cloud/instance"):
        assert not sandbox.path(path).exists(), path
    for path in KEPT:
        assert sandbox.read(path) == f"content of {path}\n", path
    assert sandbox.read("/etc/machine-id") == ""
    assert sandbox.mode("/etc/machine-id") == MACHINE_ID_MODE
    assert ["cloud-init", "clean", "--logs", "--seed"] in sandbox.calls()


def test_cleanup_second_run_changes_nothing(sandbox) -> None:
    dirty(sandbox)
    sandbox.run_ok(CLEANUP)
    sandbox.assert_idempotent(CLEANUP)


def test_cleanup_without_cloud_init_removes_its_state(sandbox) -> None:
    dirty(sandbox)
    sandbox.remove_fake("cloud-init")
    sandbox.run_ok(CLEANUP)
    for path in ("/var/lib/cloud/instance", "/var/lib/cloud/instances", "/var/log/cloud-init.log"):
        assert not sandbox.path(path).exists(), path


def test_validate_lists_every_leftover(sandbox) -> None:
    dirty(sandbox)
    result = sandbox.run(VALIDATE, MIN_FREE_DISK_GIB="0")
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    expected = {f"validate: {problem}" for problem in LEFTOVERS.values()}
    expected |= {
        "validate: cloud-init instance state left: /var/lib/cloud/instance",
        "validate: machine ID left: /etc/machine-id is not empty",
    }
    assert set(lines[:-1]) == expected
    assert len(lines[:-1]) == len(expected), "one line a problem"
    assert lines[-1] == f"validate: error: {len(expected)} problem(s): the image is not fit to ship"


def test_validate_passes_after_cleanup(sandbox) -> None:
    dirty(sandbox)
    sandbox.run_ok(CLEANUP)
    result = sandbox.run_ok(VALIDATE, MIN_FREE_DISK_GIB="0")
    assert result.stdout.startswith("validate: ok (")


def test_validate_passes_on_a_clean_tree(sandbox) -> None:
    for path in KEPT:
        sandbox.write(path, "x")
    sandbox.write("/etc/machine-id", "")
    assert sandbox.run(VALIDATE, MIN_FREE_DISK_GIB="0").returncode == 0


def test_validate_enforces_the_disk_floor(sandbox) -> None:
    result = sandbox.run(VALIDATE, MIN_FREE_DISK_GIB="1000000")
    assert result.returncode == 1
    (problem,) = [line for line in result.stderr.splitlines() if "free disk" in line]
    assert problem.startswith("validate: free disk on / is ")
    assert problem.endswith(" GiB, below the floor of 1000000 GiB")


@pytest.mark.parametrize(
    ("value", "message"),
    [(None, "MIN_FREE_DISK_GIB: is required"), ("20G", "must be whole GiB")],
    ids=["unset", "not-a-number"],
)
def test_validate_needs_a_floor(sandbox, value, message) -> None:
    result = sandbox.run(VALIDATE, MIN_FREE_DISK_GIB=value)
    assert result.returncode != 0
    assert message in result.stderr
