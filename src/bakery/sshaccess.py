"""Short-lived SSH access to the verify instance, and the reach of a --host.

A run's access is a security group that admits SSH from the runner's address only (or, with
Session Manager, nothing at all: ssh goes through `aws ssm start-session` with the
AWS-StartSSHSession document as its ProxyCommand), a temporary ed25519 key pair, and an
ssh_config whose known_hosts is pinned from the host keys the instance printed on its console.
All of it is removed with the run.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import botocore.exceptions
import requests

from . import TOOL, aws, catalog
from .config import ImageDef
from .errors import BakeryError
from .spot import Created, Launched, Plan
from .waiting import POLL_S, duration

Say = Callable[[str], None]

SSH_PATIENCE_S = 10 * 60  # status ok -> port 22 answers and the key is accepted
CLOUD_INIT_PATIENCE_S = 30 * 60  # logged in -> `cloud-init status --wait` returns
CHECKIP_URL = "https://checkip.amazonaws.com"
LOCAL_CIDR = "127.0.0.1/32"
WIDEST_SSH_PREFIX = 16
HOST_SCHEMES = ("ssh", "safe-ssh", "paramiko", "local")
SSH_SESSION_DOCUMENT = "AWS-StartSSHSession"
SSM_TOOLS = ("aws", "session-manager-plugin")


# --- who may connect --------------------------------------------------------------------------


def ssh_network(value: str) -> str:
    """--ssh-cidr: an IPv4 address (taken as /32) or a network no wider than /16."""
    try:
        net = ipaddress.ip_network(value.strip(), strict=True)
    except ValueError as e:
        raise BakeryError(f"--ssh-cidr {value!r} is not an IPv4 address or network: {e}") from None
    if net.version != 4:
        raise BakeryError(
            f"--ssh-cidr {value!r}: only IPv4 is supported (the instance has no IPv6)"
        )
    if net.prefixlen < WIDEST_SSH_PREFIX:
        raise BakeryError(
            f"--ssh-cidr {net} would open SSH to {net.num_addresses} addresses; give the runner's"
            f" address (a /32) or a network no wider than /{WIDEST_SSH_PREFIX}"
        )
    return str(net)


def runner_cidr(given: str | None, use_emulator: bool, say: Say) -> str:
    if given:
        return ssh_network(given)
    if use_emulator:
        say(
            f"local: the security group admits SSH from {LOCAL_CIDR} only: no runner address is"
            " looked up for the emulator (--ssh-cidr sets one)"
        )
        return LOCAL_CIDR
    try:
        answer = requests.get(CHECKIP_URL, timeout=10)
        answer.raise_for_status()
        address = ipaddress.ip_address(answer.text.strip())
    except (requests.RequestException, ValueError) as e:
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise BakeryError(
            f"cannot find this runner's public address from {CHECKIP_URL} ({why}); pass --ssh-cidr ADDRESS/32"
        ) from None
    if address.version != 4:
        raise BakeryError(
            f"{CHECKIP_URL} answered an IPv6 address ({address}); pass --ssh-cidr with the runner's IPv4 address"
        )
    say(f"verify: this runner's public address is {address} ({CHECKIP_URL})")
    return f"{address}/32"


# --- the run's access -------------------------------------------------------------------------


@dataclass
class Access:
    """Short-lived SSH access to the instance: its key, ssh_config and known_hosts, in a 0700
    directory that the run removes."""

    user: str
    directory: Path
    port: int = 22
    proxy_command: str | None = None  # Session Manager: the instance is named by its ID

    @property
    def key(self) -> Path:
        return self.directory / "id_ed25519"

    @property
    def ssh_config(self) -> Path:
        return self.directory / "ssh_config"

    @property
    def known_hosts(self) -> Path:
        return self.directory / "known_hosts"

    def url(self, address: str) -> str:
        return f"ssh://{self.user}@{address}" + (f":{self.port}" if self.port != 22 else "")

    def known_as(self, address: str) -> str:
        """How known_hosts names the host."""
        return address if self.port == 22 else f"[{address}]:{self.port}"

    def write_config(self, strict: str) -> None:
        def q(path: Path) -> str:
            return f'"{path}"'

        self.ssh_config.write_text(
            "# gpu-ami-bakery verify: one run's SSH settings; removed with the run\n"
            "Host *\n"
            f"  Port {self.port}\n"
            + (f"  ProxyCommand {self.proxy_command}\n" if self.proxy_command else "")
            + f"  IdentityFile {q(self.key)}\n"
            "  IdentitiesOnly yes\n"
            f"  UserKnownHostsFile {q(self.known_hosts)}\n"
            "  GlobalKnownHostsFile /dev/null\n"
            f"  StrictHostKeyChecking {strict}\n"
            "  HashKnownHosts no\n"
            "  UpdateHostKeys no\n"
            "  BatchMode yes\n"
            "  PasswordAuthentication no\n"
            f"  ConnectTimeout {30 if self.proxy_command else 10}\n"
            "  ServerAliveInterval 15\n"
            "  ServerAliveCountMax 4\n"
            f"  ControlPath {q(self.directory / '%C')}\n"
            "  LogLevel ERROR\n"
        )


def session_manager_proxy(region: str) -> str:
    """ssh's ProxyCommand through Session Manager (the AWS CLI and its plugin must be there)."""
    missing = [t for t in SSM_TOOLS if not shutil.which(t)]
    if missing:
        raise BakeryError(
            f'verify with communicator = "session_manager" reaches the instance through the AWS'
            f" CLI and its Session Manager plugin, and {' and '.join(missing)} is not on PATH:"
            " install them (docs.aws.amazon.com/systems-manager: install the Session Manager plugin)"
        )
    aws_cli = shutil.which("aws")
    return (
        f"{aws_cli} ssm start-session --region {region} --target %h"
        f" --document-name {SSH_SESSION_DOCUMENT} --parameters portNumber=%p"
    )


def create_access(
    ec2: Any,
    image: ImageDef,
    plan_: Plan,
    created: Created,
    access: Access,
    tags: dict[str, str],
    say: Say,
) -> None:
    name = f"bakery-verify-{created.run_id}"
    if plan_.security_group_ids:
        say(
            f"verify: using your security groups {', '.join(plan_.security_group_ids)} (they decide"
            " who reaches the instance); none is made for the run"
        )
    else:
        what = (
            "nothing inbound: Session Manager needs no open port"
            if plan_.session_manager
            else "SSH from the runner only"
        )
        group = ec2.create_security_group(
            GroupName=name,
            Description=f"{TOOL} verify {image.name}: {what} (run {created.run_id})",
            VpcId=plan_.vpc_id,
            TagSpecifications=[catalog.tag_spec("security-group", tags)],
        )
        created.group_id = group["GroupId"]
        if plan_.session_manager or plan_.cidr is None:
            say(f"verify: security group {created.group_id} admits nothing (Session Manager)")
        else:
            ec2.authorize_security_group_ingress(
                GroupId=created.group_id,
                IpPermissions=[
                    {
                        "IpProtocol": "tcp",
                        "FromPort": 22,
                        "ToPort": 22,
                        "IpRanges": [
                            {"CidrIp": plan_.cidr, "Description": "SSH from the verify runner"}
                        ],
                    }
                ],
                TagSpecifications=[catalog.tag_spec("security-group-rule", tags)],
            )
            say(f"verify: security group {created.group_id} admits tcp/22 from {plan_.cidr} only")
    pair = ec2.create_key_pair(
        KeyName=name, KeyType="ed25519", TagSpecifications=[catalog.tag_spec("key-pair", tags)]
    )
    created.key_name = name
    fd = os.open(access.key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(pair["KeyMaterial"].rstrip("\n") + "\n")
    access.write_config("accept-new")
    say(f"verify: temporary key pair {name} (ed25519; private key in a 0600 file, deleted after)")


# --- reaching it over SSH ---------------------------------------------------------------------

HOST_KEYS_RE = re.compile(
    r"-----BEGIN SSH HOST KEY KEYS-----(.*?)-----END SSH HOST KEY KEYS-----", re.S
)
KEY_LINE_RE = re.compile(r"((?:ssh|ecdsa|sk)-[\w@.-]+)\s+(AAAA[0-9A-Za-z+/=]+)")


def console_host_keys(text: str) -> list[tuple[str, str]]:
    """The host keys cloud-init printed to the console (the last boot's block)."""
    blocks = HOST_KEYS_RE.findall(text or "")
    return KEY_LINE_RE.findall(blocks[-1]) if blocks else []


def _console_keys(ec2: Any, instance_id: str) -> list[tuple[str, str]]:
    for latest in (True, False):
        try:
            answer = ec2.get_console_output(InstanceId=instance_id, Latest=latest)
        except botocore.exceptions.ClientError:
            continue  # Latest is Nitro-only; the plain call may lag: both are best effort
        keys = console_host_keys(answer.get("Output") or "")
        if keys:
            return keys
    return []


def _ssh(
    access: Access, address: str, args: list[str], timeout_s: float
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ssh", "-F", str(access.ssh_config), f"{access.user}@{address}", "--", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def host_name(launched: Launched, access: Access) -> str:
    """What ssh connects to: the instance ID through Session Manager, else its address."""
    return launched.instance_id if access.proxy_command else launched.address


def _wait_registered(launched: Launched, started: float, say: Say) -> None:
    """Session Manager can open a session once the instance's SSM agent is online."""
    ssm = aws.client("ssm")
    status = "not registered"
    while True:
        try:
            found = ssm.describe_instance_information(
                Filters=[{"Key": "InstanceIds", "Values": [launched.instance_id]}]
            )["InstanceInformationList"]
        except botocore.exceptions.ClientError as e:
            raise BakeryError(
                f"cannot ask Systems Manager about {launched.instance_id}: {aws.describe(e)}"
            ) from None
        status = found[0].get("PingStatus", "unknown") if found else "not registered"
        if status == "Online":
            say(f"verify: {launched.instance_id} is online in Systems Manager")
            return
        if time.monotonic() - started > SSH_PATIENCE_S:
            raise BakeryError(
                f"{launched.instance_id} is {status} in Systems Manager after"
                f" {duration(SSH_PATIENCE_S)}: its subnet needs a route to the SSM endpoints (a NAT"
                " gateway, or VPC endpoints for ssm, ssmmessages and ec2messages)"
            )
        time.sleep(POLL_S)


def reach_over_ssh(ec2: Any, launched: Launched, access: Access, say: Say) -> None:
    """The SSH port answers, the run's key is accepted by the host whose keys the instance
    printed on its console (else trusted on first use, then checked against the console),
    and cloud-init has finished. Afterwards the ssh_config accepts only the pinned host key."""
    address, started = host_name(launched, access), time.monotonic()
    last = ""
    if access.proxy_command:
        _wait_registered(launched, started, say)
    while not access.proxy_command:
        try:
            socket.create_connection((address, access.port), timeout=5).close()
            break
        except OSError as e:
            last = (e.strerror or type(e).__name__).lower()
        if time.monotonic() - started > SSH_PATIENCE_S:
            raise BakeryError(
                f"cannot reach {address}:{access.port} after {duration(SSH_PATIENCE_S)}: {last}"
                " (is it reachable from this runner? --subnet and --ssh-cidr decide)"
            )
        time.sleep(POLL_S)
    pinned = _console_keys(ec2, launched.instance_id)
    if pinned:
        host = access.known_as(address)
        access.known_hosts.write_text("".join(f"{host} {t} {k}\n" for t, k in pinned))
        access.write_config("yes")
        say(f"verify: SSH host keys pinned from {launched.instance_id}'s console output")
    while True:
        try:
            result = _ssh(
                access, address, ["cloud-init", "status", "--wait"], CLOUD_INIT_PATIENCE_S
            )
        except subprocess.TimeoutExpired:
            raise BakeryError(
                f"cloud-init on {launched.instance_id} did not finish within"
                f" {duration(CLOUD_INIT_PATIENCE_S)}"
            ) from None
        if result.returncode != 255:
            break
        last = _last_line(result.stderr) or "ssh exit 255"
        if (
            "host key verification failed" in last.lower()
            or "remote host identification" in last.lower()
        ):
            raise BakeryError(
                f"{address}: the SSH host key is not the one the instance printed; refusing to test it"
            )
        if time.monotonic() - started > SSH_PATIENCE_S:
            raise BakeryError(f"cannot log in to {access.url(address)} with the run's key: {last}")
        time.sleep(POLL_S)
    if result.returncode == 127:
        say("verify: no cloud-init on the host: ready once SSH answers")
    elif result.returncode == 2:
        say(
            f"verify: cloud-init finished with recoverable errors ({_last_line(result.stdout)}); testing anyway"
        )
    elif result.returncode != 0:
        # The fleet's user-data runs in cloud-init: its failure is the image's, and the image
        # tests (the fleet boot, the UI) say what failed. They judge; this only says so.
        say(
            f"verify: cloud-init on {launched.instance_id} ended in error (exit {result.returncode}:"
            f" {_last_line(result.stdout + result.stderr) or 'no output'}); the image tests judge"
            " the boot"
        )
    if not pinned:
        printed = set(_console_keys(ec2, launched.instance_id))
        known = access.known_hosts.read_text() if access.known_hosts.exists() else ""
        seen = {tuple(ln.split()[1:3]) for ln in known.splitlines() if ln.strip()}
        if printed and not seen & printed:
            raise BakeryError(
                f"{address}: the SSH host key presented is not one {launched.instance_id} printed on its console; refusing to test it"
            )
        say(
            "verify: SSH host key checked against the console output"
            if printed
            else "verify: SSH host key accepted on first use (the console output did not list the keys yet)"
        )
    access.write_config("yes")
    say(f"verify: {access.url(address)} is ready (cloud-init done)")


def close_master(access: Access, address: str) -> None:
    """The suite's ssh leaves a control master behind for a minute: end it now."""
    if shutil.which("ssh"):
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            subprocess.run(
                ["ssh", "-F", str(access.ssh_config), "-O", "exit", f"{access.user}@{address}"],
                capture_output=True,
                timeout=5,
                check=False,
            )


# --- --host: where it is, and whether it answers ----------------------------------------------


def parse_host(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port or None when the URL names none) of a --host URL."""
    scheme, sep, spec = url.partition("://")
    if not sep or scheme not in HOST_SCHEMES:
        raise BakeryError(
            f"--host {url!r}: give ssh://[USER@]HOST[:PORT], safe-ssh://..., paramiko://... or local://"
        )
    if scheme == "local":
        return scheme, "", None
    hostport = spec.rsplit("@", 1)[-1]
    if hostport.startswith("["):
        host, _, rest = hostport[1:].partition("]")
        port = rest.removeprefix(":")
    else:
        host, _, port = hostport.partition(":")
    if not host:
        raise BakeryError(f"--host {url!r} names no host")
    if port and not port.isdigit():
        raise BakeryError(f"--host {url!r}: {port!r} is not a port number")
    return scheme, host, int(port) if port else None


def _effective(host: str, port: int | None) -> tuple[str, int, bool]:
    """Where ssh would really connect: its config may rename the host, set the port, or jump
    through a proxy (then there is nothing to check from here)."""
    if not shutil.which("ssh"):
        return host, port or 22, False
    try:
        out = subprocess.run(
            ["ssh", "-G", *(["-p", str(port)] if port else []), host],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return host, port or 22, False
    conf = dict(line.split(" ", 1) for line in out.splitlines() if " " in line)
    proxied = any(conf.get(k, "none") != "none" for k in ("proxyjump", "proxycommand"))
    found = conf.get("port", "")
    return conf.get("hostname", host), int(found) if found.isdigit() else port or 22, proxied


def check_reachable(url: str, host: str, port: int | None, wait_s: float = 5) -> None:
    target, target_port, proxied = _effective(host, port)
    if proxied:
        return  # through a jump host: ssh itself will tell
    try:
        socket.create_connection((target, target_port), timeout=wait_s).close()
    except TimeoutError:
        raise BakeryError(
            f"cannot reach {target}:{target_port}: no answer within {wait_s:.0f} s ({url})"
        ) from None
    except socket.gaierror as e:
        raise BakeryError(
            f"cannot reach {target}:{target_port}: unknown host ({e.strerror}) ({url})"
        ) from None
    except OSError as e:
        why = (e.strerror or type(e).__name__).lower()
        raise BakeryError(f"cannot reach {target}:{target_port}: {why} ({url})") from None
