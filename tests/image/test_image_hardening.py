"""Nothing of the bake instance rides along in the image.

On a host booted from the AMI, first boot creates host keys, authorized_keys and cloud-init
state again, so the checks are "not baked" (newer than this boot, this instance only) rather
than "absent". A file is older than boot when its mtime is more than BOOT_SLACK_S before the
boot time in /proc/stat. Run them on a fresh instance: a reboot makes first-boot files old.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import image_probe as probe
import pytest

HISTORY_FILES = (
    ".bash_history",
    ".zsh_history",
    ".sh_history",
    ".ash_history",
    ".history",
    ".local/share/fish/fish_history",
    ".python_history",
    ".node_repl_history",
    ".psql_history",
    ".mysql_history",
    ".sqlite_history",
    ".lesshst",
    ".viminfo",
)
INSTANCE_DATA = "/run/cloud-init/instance-data.json"
KEY_RE = re.compile(r"((?:sk-)?(?:ssh|ecdsa)-[\w@.-]+)\s+(AAAA[A-Za-z0-9+/=]+)")


def _older_than_boot(found: dict[str, int], boot: int) -> list[str]:
    return [
        f"{path} ({boot - mtime} s before boot)"
        for path, mtime in sorted(found.items())
        if mtime < boot - probe.BOOT_SLACK_S
    ]


def _authorized_keys_paths(homes: list[str]) -> list[str]:
    return [
        f"{h.rstrip('/')}/.ssh/{name}"
        for h in homes
        for name in ("authorized_keys", "authorized_keys2")
    ]


def test_ssh_host_keys_not_baked(
    boot_time: int, mtimes: Callable[[list[str]], dict[str, int]]
) -> None:
    """Host keys, if any, were made at this boot (none at all also holds)."""
    old = _older_than_boot(mtimes(["/etc/ssh/ssh_host_*"]), boot_time)
    assert not old, f"SSH host keys baked into the image: {old}"


def test_authorized_keys_written_this_boot(
    boot_time: int, homes: list[str], mtimes: Callable[[list[str]], dict[str, int]]
) -> None:
    old = _older_than_boot(mtimes(_authorized_keys_paths(homes)), boot_time)
    assert not old, f"authorized_keys files older than this boot (baked): {old}"


def _instance_data(host: Any, root: probe.Root) -> dict[str, Any] | None:
    r = root.run("cat %s 2>/dev/null", INSTANCE_DATA)
    try:
        data = json.loads(r.stdout) if r.rc == 0 else None
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def test_authorized_keys_hold_only_this_boots_keys(
    host: Any,
    root: probe.Root,
    homes: list[str],
    mtimes: Callable[[list[str]], dict[str, int]],
) -> None:
    """Every key in every authorized_keys file is one the platform gave this instance
    (cloud-init's instance data): cloud-init adds keys to a file, it does not replace it."""
    files = sorted(mtimes(_authorized_keys_paths(homes)))
    if not files:
        pytest.skip(
            "no authorized_keys file on this host: no keys to compare (that none is baked is "
            "test_authorized_keys_written_this_boot's check)"
        )
    data = _instance_data(host, root)
    given = (data or {}).get("v1", {}).get("public_ssh_keys")
    if not isinstance(given, list):
        pytest.skip(
            f"this boot's keys are unknown (no public_ssh_keys in {INSTANCE_DATA}): "
            f"cannot tell the keys of {', '.join(files)} apart"
        )
    allowed = {m.group(2) for k in given for m in [KEY_RE.search(str(k))] if m}
    foreign = []
    for path in files:
        for line in root.run("cat -- %s", path).stdout.splitlines():
            m = KEY_RE.search(line)
            if m and not line.lstrip().startswith("#") and m.group(2) not in allowed:
                comment = line[m.end() :].strip()
                foreign.append(f"{path}: {m.group(1)} …{m.group(2)[-12:]} {comment}".strip())
    assert not foreign, f"keys not given to this instance: {foreign}"


def test_cloud_init_state_is_this_instance_only(host: Any, root: probe.Root) -> None:
    has_cli = probe.find_command(host, "cloud-init") is not None
    if not has_cli and not host.file("/var/lib/cloud").exists:
        pytest.skip(
            "cloud-init is not installed on this host (no cloud-init command, no "
            "/var/lib/cloud): no instance state to check"
        )
    r = root.run("ls -1 /var/lib/cloud/instances 2>/dev/null")
    dirs = sorted(r.stdout.split())
    assert len(dirs) <= 1, f"cloud-init holds state of several instances: {dirs}"
    current = root.run("cat /var/lib/cloud/data/instance-id 2>/dev/null").stdout.strip()
    if not current:
        current = str(((_instance_data(host, root) or {}).get("v1") or {}).get("instance_id") or "")
    if current:
        assert dirs == [current], (
            f"cloud-init state is for {dirs or 'no instance'}, this instance is {current}"
        )


def test_no_shell_history_older_than_boot(
    boot_time: int, homes: list[str], mtimes: Callable[[list[str]], dict[str, int]]
) -> None:
    paths = [f"{h.rstrip('/')}/{name}" for h in homes for name in HISTORY_FILES]
    old = _older_than_boot(mtimes(paths), boot_time)
    assert not old, f"history files from the bake: {old}"


@pytest.fixture(scope="module")
def sshd_t(host: Any, root: probe.Root) -> Any:
    """`sshd -T` (the effective settings), run as root; skips without sshd."""
    sshd = probe.find_command(host, "sshd")
    if sshd is None:
        pytest.skip("sshd is not installed on this host: its settings cannot be checked")
    return root.run("%s -T", sshd)


@pytest.mark.parametrize("setting", ["passwordauthentication", "kbdinteractiveauthentication"])
def test_sshd_refuses_passwords(sshd_t: Any, setting: str) -> None:
    assert sshd_t.rc == 0, f"`sshd -T` failed (exit {sshd_t.rc}): {probe.output(sshd_t)[:500]}"
    sshd_settings = {}
    for line in sshd_t.stdout.splitlines():
        key, _, value = line.strip().partition(" ")
        sshd_settings[key.lower()] = value.strip().lower()
    assert setting in sshd_settings, f"`sshd -T` does not report {setting}"
    assert sshd_settings[setting] == "no", f"sshd has {setting} {sshd_settings[setting]}"


def test_free_disk_space(host: Any, expect: dict[str, Any]) -> None:
    lines = host.check_output("df -Pk /").splitlines()
    avail_gib = int(lines[-1].split()[3]) / 1024 / 1024
    minimum = expect["min_free_disk_gib"]
    assert avail_gib >= minimum, f"{avail_gib:.1f} GiB free on /, expected at least {minimum}"
