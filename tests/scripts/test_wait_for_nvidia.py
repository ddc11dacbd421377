"""wait-for-nvidia (ExecStartPre of ollama.service): bounded wait for /dev/nvidia0."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

HELPER = (
    Path(__file__).resolve().parents[2] / "scripts/rootfs/usr/local/libexec/bakery/wait-for-nvidia"
)


def test_present_device_returns_at_once(sandbox) -> None:
    sandbox.write("/dev/nvidia0", "")
    started = time.monotonic()
    result = sandbox.run(HELPER, BAKERY_NVIDIA_WAIT_S="30")
    assert result.returncode == 0, result.output
    assert time.monotonic() - started < 5
    assert "/dev/nvidia0 present after 0s" in result.stdout


def test_absent_device_fails_after_the_bound(sandbox) -> None:
    started = time.monotonic()
    result = sandbox.run(HELPER, BAKERY_NVIDIA_WAIT_S="1")
    elapsed = time.monotonic() - started
    assert result.returncode == 1
    assert "/dev/nvidia0 did not appear within 1s" in result.stderr
    assert 1 <= elapsed < 10


@pytest.mark.parametrize("value", ["1m", "-5", "1.5"])
def test_bad_bound_is_refused(sandbox, value) -> None:
    result = sandbox.run(HELPER, BAKERY_NVIDIA_WAIT_S=value)
    assert result.returncode == 2
    assert "must be whole seconds" in result.stderr
