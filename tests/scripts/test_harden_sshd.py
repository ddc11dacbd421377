"""harden-sshd.sh: a drop-in that wins over cloud-init's, an Include that is there, and the
effective settings checked (the fake sshd -T keeps the first value, as sshd does)."""

from __future__ import annotations

import re
from pathlib import Path

SCRIPT = "harden-sshd.sh"
DROP_IN = "/etc/ssh/sshd_config.d/10-bakery.conf"
# The start of Ubuntu 22.04's and 24.04's sshd_config.
UBUNTU_CONFIG = """\
# This is the sshd server system-wide configuration file.  See
# sshd_config(5) for more information.

Include /etc/ssh/sshd_config.d/*.conf

#PermitRootLogin prohibit-password
KbdInteractiveAuthentication no
UsePAM yes
"""


def ubuntu(sandbox, config: str = UBUNTU_CONFIG) -> None:
    sandbox.write("/etc/ssh/sshd_config", config)
    # What cloud-init writes when user-data sets ssh_pwauth: true.
    sandbox.write("/etc/ssh/sshd_config.d/50-cloud-init.conf", "PasswordAuthentication yes\n")


def test_installs_drop_in_that_wins(sandbox, repo) -> None:
    ubuntu(sandbox)
    result = sandbox.run_ok(SCRIPT)
    assert sandbox.read(DROP_IN) == (repo / "scripts/rootfs" / DROP_IN.lstrip("/")).read_text()
    assert sandbox.mode(DROP_IN) == 0o644
    assert sandbox.read("/etc/ssh/sshd_config") == UBUNTU_CONFIG, "left as it was"
    assert ["sshd", "-T", "-f", str(sandbox.path("/etc/ssh/sshd_config"))] in sandbox.calls()
    assert "passwordauthentication no" in result.stdout


def test_second_run_changes_nothing(sandbox) -> None:
    ubuntu(sandbox)
    sandbox.run_ok(SCRIPT)
    sandbox.assert_idempotent(SCRIPT)


def test_missing_include_is_added_on_top_once(sandbox) -> None:
    config = UBUNTU_CONFIG.replace("Include /etc/ssh/sshd_config.d/*.conf\n", "")
    config += "PasswordAuthentication yes\n"
    ubuntu(sandbox, config)
    sandbox.run_ok(SCRIPT)
    lines = sandbox.read("/etc/ssh/sshd_config").splitlines()
    settings = [line for line in lines if line and not line.startswith("#")]
    assert settings[0] == "Include /etc/ssh/sshd_config.d/*.conf"
    assert lines[2:] == config.splitlines()
    sandbox.run_ok(SCRIPT)
    assert sandbox.read("/etc/ssh/sshd_config").count("Include ") == 1


def test_setting_read_before_the_include_fails(sandbox) -> None:
    config = "PasswordAuthentication yes\nPermitRootLogin yes\n" + UBUNTU_CONFIG
    ubuntu(sandbox, config)
    result = sandbox.run(SCRIPT)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert errors == [
        "harden-sshd: error: sshd would run with 'passwordauthentication yes', "
        "not 'passwordauthentication no'",
        "harden-sshd: error: sshd would run with 'permitrootlogin yes', not 'permitrootlogin no'",
    ]


def test_drop_in_sorts_before_cloud_init(repo) -> None:
    # sshd keeps the first value: ours must be read before 50-cloud-init.conf.
    script = (repo / "scripts" / SCRIPT).read_text()
    [installed] = re.findall(r"(?m)^readonly DROP_IN=(\S+)$", script)
    shipped = sorted(p.name for p in (repo / "scripts/rootfs/etc/ssh/sshd_config.d").iterdir())
    assert Path(installed).name in shipped
    assert all(name < "50-cloud-init.conf" for name in shipped), shipped


def test_missing_rootfs_fails_clearly(sandbox) -> None:
    ubuntu(sandbox)
    result = sandbox.run(SCRIPT, BAKERY_ROOTFS=None)
    assert result.returncode != 0
    assert "BAKERY_ROOTFS: is required" in result.stderr
