"""install-docker.sh: Ubuntu's docker.io only where there is no docker; the service on."""

from __future__ import annotations

SCRIPT = "install-docker.sh"


def test_installs_docker_io_when_absent(sandbox) -> None:
    sandbox.run_ok(SCRIPT)
    apt = sandbox.calls("apt-get")
    assert [c[-1] for c in apt] == ["update", "docker.io"]
    assert {"install", "--yes", "--no-install-recommends"} <= set(apt[1])
    changes = [c for c in sandbox.calls("systemctl") if "--quiet" not in c]
    assert changes == [
        ["systemctl", "enable", "docker.service"],
        ["systemctl", "start", "docker.service"],
    ]


def test_debian_kernel_with_apparmor_gets_its_parser(sandbox) -> None:
    # Debian enables AppArmor in its kernel; without apparmor_parser `docker run` fails
    # ("AppArmor enabled on system but the docker-default profile could not be loaded").
    sandbox.write("/sys/module/apparmor/parameters/enabled", "Y\n")
    sandbox.run_ok(SCRIPT)
    install = sandbox.calls("apt-get")[1]
    assert install[-2:] == ["docker.io", "apparmor"]


def test_second_run_changes_nothing(sandbox) -> None:
    sandbox.run_ok(SCRIPT)
    sandbox.assert_idempotent(SCRIPT)
    assert sandbox.calls("apt-get") == []


def test_existing_docker_is_kept(sandbox) -> None:
    # The DLAMI's docker: present and running, but not enabled.
    sandbox.add_docker()
    sandbox.write("/usr/lib/systemd/system/docker.service", "[Service]\n[Install]\n")
    sandbox.set_state("systemctl/active/docker.service")
    result = sandbox.run_ok(SCRIPT)
    assert "docker is already installed: Docker version 27.5.1" in result.stdout
    assert sandbox.calls("apt-get") == []
    assert ["systemctl", "enable", "docker.service"] in sandbox.calls("systemctl")
    assert ["systemctl", "start", "docker.service"] not in sandbox.calls("systemctl")
