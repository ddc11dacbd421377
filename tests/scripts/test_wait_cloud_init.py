"""wait-cloud-init.sh: nothing calls apt before cloud-init has finished first boot."""

from __future__ import annotations

import re

import pytest

SCRIPT = "wait-cloud-init.sh"
WARNINGS = "status: done\nextended_status: degraded done\nrecoverable_errors:\nWARNING:\n  - deprecated key\n"


def test_waits_for_cloud_init_and_goes_on(sandbox) -> None:
    result = sandbox.run_ok(SCRIPT)
    assert sandbox.calls("cloud-init") == [["cloud-init", "status", "--wait"]]
    # The seconds are wall time (the fake answers at once, a loaded machine still takes 1 s).
    assert re.search(r"^wait-cloud-init: cloud-init is done \(waited \d+s\)$", result.stdout, re.M)


def test_recoverable_errors_are_reported_and_the_bake_goes_on(sandbox) -> None:
    sandbox.set_state("cloud-init-status", "2\n" + WARNINGS)
    result = sandbox.run_ok(SCRIPT)
    assert "cloud-init is done with recoverable errors" in result.stdout
    assert "  - deprecated key" in result.stdout  # what cloud-init itself reports
    assert ["cloud-init", "status", "--long"] in sandbox.calls("cloud-init")


@pytest.mark.parametrize("code", ["1", "3"])
def test_a_failed_first_boot_stops_the_bake(sandbox, code: str) -> None:
    sandbox.set_state("cloud-init-status", f"{code}\nstatus: error\nerrors:\n  - modules failed\n")
    result = sandbox.run(SCRIPT)
    assert result.returncode == 1
    assert f"cloud-init failed (cloud-init status --wait exit {code}" in result.stderr
    assert "  - modules failed" in result.stderr


def test_a_host_without_cloud_init_is_not_waited_for(sandbox) -> None:
    sandbox.remove_fake("cloud-init")
    result = sandbox.run_ok(SCRIPT)
    assert "no cloud-init on this host: nothing to wait for" in result.stdout
    assert sandbox.calls() == []


def test_second_run_changes_nothing(sandbox) -> None:
    sandbox.run_ok(SCRIPT)
    sandbox.assert_idempotent(SCRIPT)
