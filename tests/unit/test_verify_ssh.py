"""verify's SSH readiness step with a stand-in `ssh` on PATH and a local listening port: the
port wait, login retries, host key pinning from the console, and cloud-init's verdicts."""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from bakery import sshaccess, verify
from bakery.errors import BakeryError

CONSOLE = """-----BEGIN SSH HOST KEY KEYS-----
ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPinned root@ip-172-31-0-4
-----END SSH HOST KEY KEYS-----
"""

FAKE_SSH = """#!{python}
# Stands in for OpenSSH: logs its call, answers with the next exit status of FAKE_SSH_RCS,
# and, like StrictHostKeyChecking accept-new, records the host key it "saw".
import json, os, re, sys
args = sys.argv[1:]
config = open(args[args.index("-F") + 1]).read()
strict = re.search(r"StrictHostKeyChecking (\\S+)", config).group(1)
known = re.search(r'UserKnownHostsFile "([^"]+)"', config).group(1)
port = re.search(r"Port (\\d+)", config).group(1)
with open(os.environ["FAKE_SSH_LOG"], "a") as log:
    log.write(json.dumps({{"args": args, "strict": strict}}) + "\\n")
counter = os.environ["FAKE_SSH_LOG"] + ".n"
n = int(open(counter).read()) if os.path.exists(counter) else 0
open(counter, "w").write(str(n + 1))
rcs = os.environ["FAKE_SSH_RCS"].split(",")
rc = int(rcs[min(n, len(rcs) - 1)])
if rc == 255:
    print("ubuntu@127.0.0.1: Permission denied (publickey).", file=sys.stderr)
    sys.exit(255)
if strict == "accept-new" and not os.path.exists(known):
    open(known, "w").write(f"[127.0.0.1]:{{port}} ssh-ed25519 {{os.environ['FAKE_SSH_HOSTKEY']}}\\n")
print(os.environ.get("FAKE_SSH_OUT", "status: done"))
sys.exit(rc)
"""


class Console:
    """A stand-in EC2 client: its console output is `before` until someone logged in over
    SSH (cloud-init prints the host keys late in the boot), `after` from then on."""

    def __init__(self, before: str, after: str | None = None) -> None:
        self.before, self.after = before, before if after is None else after

    def get_console_output(self, InstanceId: str, Latest: bool) -> dict[str, str]:
        logged_in = Path(os.environ["FAKE_SSH_LOG"]).exists()
        return {"Output": self.after if logged_in else self.before}


@pytest.fixture
def port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield s.getsockname()[1]


@pytest.fixture
def fake_ssh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    ssh = bin_dir / "ssh"
    ssh.write_text(FAKE_SSH.format(python=sys.executable))
    ssh.chmod(0o755)
    log = tmp_path / "ssh.log"
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setenv("FAKE_SSH_LOG", str(log))
    monkeypatch.setenv("FAKE_SSH_HOSTKEY", "AAAAC3NzaC1lZDI1NTE5AAAAIPinned")
    monkeypatch.setenv("FAKE_SSH_RCS", "0")
    monkeypatch.setattr(sshaccess, "POLL_S", 0.01)
    return log


def calls(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def reach(tmp_path: Path, port: int, console: Console) -> tuple[verify.Access, list[str]]:
    access = verify.Access("ubuntu", tmp_path / "run", port=port)
    access.directory.mkdir()
    access.write_config("accept-new")
    said: list[str] = []
    launched = verify.Launched("i-1", "g5.xlarge", "us-east-1a", address="127.0.0.1")
    verify.reach_over_ssh(console, launched, access, said.append)
    return access, said


def test_trust_on_first_use_then_checked_against_the_console(
    tmp_path: Path, port: int, fake_ssh: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_SSH_RCS", "255,255,0")  # the key is not accepted at first
    access, said = reach(tmp_path, port, Console("", CONSOLE))
    made = calls(fake_ssh)
    assert len(made) == 3
    assert made[0]["args"] == [
        "-F",
        str(access.ssh_config),
        "ubuntu@127.0.0.1",
        "--",
        "cloud-init",
        "status",
        "--wait",
    ]
    assert [c["strict"] for c in made] == ["accept-new"] * 3
    assert "verify: SSH host key checked against the console output" in said
    assert said[-1] == f"verify: ssh://ubuntu@127.0.0.1:{port} is ready (cloud-init done)"
    assert "  StrictHostKeyChecking yes\n" in access.ssh_config.read_text()


def test_host_keys_pinned_from_the_console_before_the_first_login(
    tmp_path: Path, port: int, fake_ssh: Path
) -> None:
    access, said = reach(tmp_path, port, Console(CONSOLE))
    assert [c["strict"] for c in calls(fake_ssh)] == ["yes"]
    assert access.known_hosts.read_text() == (
        f"[127.0.0.1]:{port} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPinned\n"
    )
    assert "verify: SSH host keys pinned from i-1's console output" in said


def test_no_keys_on_the_console_is_trust_on_first_use(
    tmp_path: Path, port: int, fake_ssh: Path
) -> None:
    _, said = reach(tmp_path, port, Console("Linux version 6.8"))
    assert (
        "verify: SSH host key accepted on first use (the console output did not list the keys yet)"
        in said
    )


def test_a_host_key_the_console_did_not_print_is_refused(
    tmp_path: Path, port: int, fake_ssh: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_SSH_HOSTKEY", "AAAAC3NzaC1lZDI1NTE5AAAAIMitm")
    with pytest.raises(
        BakeryError, match="the SSH host key presented is not one i-1 printed on its console"
    ):
        reach(tmp_path, port, Console("", CONSOLE))


def test_cloud_init_error_is_left_to_the_image_tests(
    tmp_path: Path, port: int, fake_ssh: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fleet's user-data runs in cloud-init: when it fails, the image tests (the fleet
    boot, the UI) fail with the reason and the AMI is marked failed, rather than not marked."""
    monkeypatch.setenv("FAKE_SSH_RCS", "1")
    monkeypatch.setenv("FAKE_SSH_OUT", "status: error")
    _, said = reach(tmp_path, port, Console(""))
    assert (
        "verify: cloud-init on i-1 ended in error (exit 1: status: error); the image tests judge"
        " the boot" in said
    )


def test_cloud_init_recoverable_errors_go_on(
    tmp_path: Path, port: int, fake_ssh: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_SSH_RCS", "2")
    monkeypatch.setenv("FAKE_SSH_OUT", "status: degraded done")
    _, said = reach(tmp_path, port, Console(""))
    assert (
        "verify: cloud-init finished with recoverable errors (status: degraded done); testing anyway"
        in said
    )


def test_login_refused_until_patience_runs_out(
    tmp_path: Path, port: int, fake_ssh: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_SSH_RCS", "255")
    monkeypatch.setattr(sshaccess, "SSH_PATIENCE_S", 0.3)
    with pytest.raises(BakeryError) as e:
        reach(tmp_path, port, Console(""))
    assert str(e.value) == (
        f"cannot log in to ssh://ubuntu@127.0.0.1:{port} with the run's key:"
        " ubuntu@127.0.0.1: Permission denied (publickey)."
    )


def test_closed_port_until_patience_runs_out(
    tmp_path: Path, fake_ssh: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]  # bound, never listening: connections are refused
        monkeypatch.setattr(sshaccess, "SSH_PATIENCE_S", 0.2)
        with pytest.raises(BakeryError) as e:
            reach(tmp_path, closed, Console(""))
    assert str(e.value) == (
        f"cannot reach 127.0.0.1:{closed} after 0 s: connection refused"
        " (is it reachable from this runner? --subnet and --ssh-cidr decide)"
    )
    assert not fake_ssh.exists(), "ssh is not tried before the port answers"


# --- through Session Manager -------------------------------------------------------------------


def test_ssh_config_goes_through_session_manager(tmp_path: Path) -> None:
    proxy = "/usr/bin/aws ssm start-session --target %h --document-name AWS-StartSSHSession"
    access = verify.Access("ubuntu", tmp_path, proxy_command=proxy)
    access.write_config("yes")
    text = access.ssh_config.read_text()
    assert f"  ProxyCommand {proxy}\n" in text
    assert "  ConnectTimeout 30\n" in text  # a session takes a few seconds to open
    launched = verify.Launched("i-0abc", "g5.xlarge", "us-east-1a", address="10.20.1.5")
    assert sshaccess.host_name(launched, access) == "i-0abc"
    assert access.url("i-0abc") == "ssh://ubuntu@i-0abc"


def test_the_proxy_needs_the_aws_cli_and_its_plugin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # neither is there
    with pytest.raises(BakeryError) as e:
        sshaccess.session_manager_proxy("eu-west-1")
    assert "aws and session-manager-plugin is not on PATH" in str(e.value)
    for tool in ("aws", "session-manager-plugin"):
        (tmp_path / tool).write_text("#!/bin/sh\n")
        (tmp_path / tool).chmod(0o755)
    assert sshaccess.session_manager_proxy("eu-west-1") == (
        f"{tmp_path}/aws ssm start-session --region eu-west-1 --target %h"
        " --document-name AWS-StartSSHSession --parameters portNumber=%p"
    )


def test_reach_through_session_manager_waits_for_the_agent_not_port_22(
    tmp_path: Path, fake_ssh: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No socket to port 22 is tried (nothing is admitted inbound): the instance's SSM agent
    must be online, then ssh (through the proxy) logs in as before."""
    ssm = boto3.client(
        "ssm", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    stub = Stubber(ssm)
    filters = {"Filters": [{"Key": "InstanceIds", "Values": ["i-1"]}]}
    stub.add_response("describe_instance_information", {"InstanceInformationList": []}, filters)
    stub.add_response(
        "describe_instance_information",
        {"InstanceInformationList": [{"InstanceId": "i-1", "PingStatus": "Online"}]},
        filters,
    )
    monkeypatch.setattr(sshaccess.aws, "client", lambda service, *a: ssm)
    access = verify.Access("ubuntu", tmp_path / "run", proxy_command="unused-by-the-fake-ssh")
    access.directory.mkdir()
    access.write_config("accept-new")
    said: list[str] = []
    launched = verify.Launched("i-1", "g5.xlarge", "us-east-1a", address="10.20.1.5")
    with stub:
        verify.reach_over_ssh(Console(CONSOLE), launched, access, said.append)
        stub.assert_no_pending_responses()
    assert "verify: i-1 is online in Systems Manager" in said
    assert calls(fake_ssh)[0]["args"][2] == "ubuntu@i-1"
    assert said[-1] == "verify: ssh://ubuntu@i-1 is ready (cloud-init done)"
