"""invoke verify: the spot GPU instance the image tests run on: launch, reach, test, always end.

One run creates a security group (SSH from the runner's address only), a temporary key pair
and one spot instance, all tagged with the tool's tags, the run's id and an expiry time. Every
way out (passed, failed, error, timeout, Ctrl-C, SIGTERM) ends the instance and removes the
rest by ID, then sweeps the run id for anything else; what still escapes, `gc` finds by tag.

The AMI is marked only from the suite's JUnit report, and only after a real host was tested:
passed when every check ran and passed, failed (with the first failing check) otherwise.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import botocore.exceptions
import requests

from . import TOOL, aws, catalog, cleanup, config, local, spot
from . import expectations as expect
from .bake import new_build_id
from .config import ImageDef
from .errors import BakeryError, ConfigError, Interrupted, SpotInterrupted
from .expectations import Verdict

Say = Callable[[str], None]

DEFAULT_TIMEOUT_MIN = 45
POLL_S = 5.0
RUNNING_PATIENCE_S = 10 * 60  # pending -> running
STATUS_PATIENCE_S = 15 * 60  # running -> both status checks ok
SSH_PATIENCE_S = 10 * 60  # status ok -> port 22 answers and the key is accepted
CLOUD_INIT_PATIENCE_S = 30 * 60  # logged in -> `cloud-init status --wait` returns
TERMINATE_PATIENCE_S = 10 * 60
TTL_GRACE_S = 30 * 60  # bakery:expires-at = start + --timeout + this
CHECKIP_URL = "https://checkip.amazonaws.com"
LOCAL_CIDR = "127.0.0.1/32"
WIDEST_SSH_PREFIX = 16
HOST_SCHEMES = ("ssh", "safe-ssh", "paramiko", "local")
AMI_ID_RE = re.compile(r"^ami-([0-9a-f]{8}|[0-9a-f]{17})$")
SUBNET_ID_RE = re.compile(r"^subnet-([0-9a-f]{8}|[0-9a-f]{17})$")

VERIFIED_AT, VERIFY_GPU, VERIFY_TIMINGS, VERIFY_REPORT, VERIFY_FAILURE = catalog.VERIFY_TAGS

# RunInstances errors that another zone or type may not have: say so and try the next.
CAPACITY_CODES = {
    "InsufficientInstanceCapacity",
    "InsufficientCapacity",
    "InsufficientHostCapacity",
    "InsufficientFreeAddressesInSubnet",
    "SpotMaxPriceTooLow",
    "Unsupported",
    "UnfulfillableCapacity",
}
# Regional limits: every zone would answer alike, so the next type is tried, not the next zone.
QUOTA_CODES = {"MaxSpotInstanceCountExceeded", "VcpuLimitExceeded", "InstanceLimitExceeded"}
THROTTLE_CODES = {"RequestLimitExceeded", "Throttling", "ThrottlingException"}


class _TimedOut(BaseException):
    """The --timeout watchdog fired (a BaseException, so no `except Exception` swallows it)."""


# --- options ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    ami_id: str | None = None
    timeout_s: float = DEFAULT_TIMEOUT_MIN * 60
    subnet: str | None = None
    ssh_cidr: str | None = None


def check_ami_id(ami_id: str | None) -> str | None:
    if ami_id is not None and not AMI_ID_RE.match(ami_id):
        raise BakeryError(f"--ami {ami_id!r} is not an AMI ID (ami- and 8 or 17 hex digits)")
    return ami_id


def check_timeout(minutes: Any) -> float:
    try:
        value = int(minutes)
    except (TypeError, ValueError):
        raise BakeryError(f"--timeout {minutes!r} is not a whole number of minutes") from None
    if not 5 <= value <= 720:
        raise BakeryError(f"--timeout {value} is out of range (5 to 720 minutes)")
    return value * 60.0


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


# --- signals and the watchdog -------------------------------------------------------------


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (CI cancelling a job) takes the same way out as Ctrl-C."""
    if not _main_thread():  # signals only reach the main thread; the waits are bounded anyway
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _watchdog(timeout_s: float) -> Iterator[None]:
    """Raises _TimedOut in the main thread when --timeout runs out, whatever it is waiting on
    (a child process it waits for is killed on the way out)."""
    if not _main_thread():
        yield
        return

    def fire(signum: int, frame: object) -> None:
        raise _TimedOut

    previous = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, timeout_s)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def _shielded(say: Say) -> Iterator[None]:
    """During clean-up the first Ctrl-C (or SIGTERM) is noted, not obeyed; the second is."""
    if not _main_thread():
        yield
        return
    pressed = []

    def handler(signum: int, frame: object) -> None:
        pressed.append(signum)
        if len(pressed) == 1:
            say(
                "verify: still cleaning up; interrupt again to abandon the clean-up (invoke gc"
                f" removes what is left once its {catalog.EXPIRES_AT} has passed)"
            )
            return
        raise KeyboardInterrupt

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _duration(seconds: float) -> str:
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole % 60 == 0:
        minutes = whole // 60
        return f"{minutes} minute{'s' * (minutes != 1)}"
    return f"{whole // 60}m{whole % 60:02d}s"


# --- what to verify, where ----------------------------------------------------------------


def pick_ami(ec2: Any, image: ImageDef, ami_id: str | None, say: Say) -> dict[str, Any]:
    region = ec2.meta.region_name
    if ami_id:
        ami = catalog.get(ec2, ami_id)
        tags = catalog.tags_of(ami)
        if tags.get(catalog.MANAGED_BY) != TOOL:
            raise BakeryError(
                f"{ami_id} was not baked by {TOOL} (no {catalog.MANAGED_BY} tag); verify marks only"
                " the tool's own AMIs (--host runs the image tests against any host)"
            )
        if tags.get(catalog.IMAGE) != image.name:
            raise BakeryError(
                f"{ami_id} is an AMI of {tags.get(catalog.IMAGE)!r}, not of {image.name!r}"
            )
        if catalog.FINGERPRINT not in tags:
            raise BakeryError(f"{ami_id} is an unfinished bake (no {catalog.FINGERPRINT} tag)")
        if ami.get("State") != "available":
            raise BakeryError(f"{ami_id} is {ami.get('State')}, not available")
        if catalog.VERIFICATION in tags:
            say(
                f"verify: {ami_id} was verified before ({tags[catalog.VERIFICATION]}); verifying it again"
            )
        return ami
    ami = catalog.newest(ec2, image.name, unverified=True)
    if ami:
        return ami
    latest = catalog.newest(ec2, image.name)
    if latest:
        state = catalog.tags_of(latest)[catalog.VERIFICATION]
        raise BakeryError(
            f"no unverified AMI of {image.name} in {region}: the newest, {latest['ImageId']}, is"
            f" already verified ({state}); pass --ami ID to verify one again"
        )
    raise BakeryError(
        f"no AMI of {image.name} in {region} yet: bake one first (invoke bake --image {image.name})"
    )


@dataclass(frozen=True)
class Plan:
    """Where the instance may go, decided before anything is created."""

    vpc_id: str
    subnets: dict[str, str]  # zone -> subnet, in the order they are tried
    instance_types: tuple[str, ...]
    cidr: str


def check_instance_types(ec2: Any, image: ImageDef) -> None:
    types = list(image.verify.instance_types)
    try:
        ec2.describe_instance_types(InstanceTypes=types)
    except botocore.exceptions.ClientError as e:
        if aws.error_code(e) != "InvalidInstanceType":
            raise BakeryError(
                f"cannot check the verify instance types: {aws.describe(e)}"
            ) from None
        bad = [t for t in types if t in aws.describe(e)] or types
        raise ConfigError(
            image.path,
            "verify.instance_types",
            f"{', '.join(bad)}: no such instance type in {ec2.meta.region_name}",
        ) from None


def plan(ec2: Any, image: ImageDef, subnet: str | None, cidr: str) -> Plan:
    region = ec2.meta.region_name
    check_instance_types(ec2, image)
    if subnet:
        try:
            found = ec2.describe_subnets(SubnetIds=[subnet])["Subnets"]
        except botocore.exceptions.ClientError as e:
            if not aws.error_code(e).startswith("InvalidSubnet"):
                raise
            found = []
        if not found:
            raise BakeryError(f"--subnet {subnet} does not exist in {region}")
        return Plan(
            found[0]["VpcId"],
            {found[0]["AvailabilityZone"]: subnet},
            image.verify.instance_types,
            cidr,
        )
    vpcs = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"]
    if not vpcs:
        raise BakeryError(
            f"{region} has no default VPC: pass --subnet ID (a subnet this runner can reach over SSH)"
        )
    vpc = vpcs[0]["VpcId"]
    defaults = {
        s["AvailabilityZone"]: s["SubnetId"]
        for s in ec2.describe_subnets(
            Filters=[
                {"Name": "vpc-id", "Values": [vpc]},
                {"Name": "default-for-az", "Values": ["true"]},
            ]
        )["Subnets"]
    }
    zones = [
        z["ZoneName"]
        for z in ec2.describe_availability_zones(
            Filters=[{"Name": "state", "Values": ["available"]}]
        )["AvailabilityZones"]
        if z.get("ZoneType", "availability-zone") == "availability-zone"
    ]
    wanted = list(image.verify.availability_zones)
    for i, zone in enumerate(wanted):
        if zone not in zones:
            raise ConfigError(
                image.path,
                f"verify.availability_zones[{i}]",
                f"{zone!r} is not an available zone of {region} (zones: {', '.join(sorted(zones))})",
            )
    order = wanted or sorted(zones)
    subnets = {z: defaults[z] for z in order if z in defaults}
    if not subnets:
        raise BakeryError(
            f"the default VPC {vpc} has no default subnet in {', '.join(order)}: pass --subnet ID"
        )
    return Plan(vpc, subnets, image.verify.instance_types, cidr)


# --- what one run creates -----------------------------------------------------------------


@dataclass
class Created:
    run_id: str
    group_id: str | None = None
    key_name: str | None = None
    instance_ids: list[str] = field(default_factory=list)
    in_flight: bool = False  # a RunInstances call was under way: its answer may be lost


@dataclass
class Launched:
    instance_id: str
    instance_type: str
    zone: str
    address: str = ""
    private: bool = False  # no public address: reached on its private one

    @property
    def gpu(self) -> str | None:
        return config.gpu_name(self.instance_type)


@dataclass
class Access:
    """Short-lived SSH access to the instance: its key, ssh_config and known_hosts, in a 0700
    directory that the run removes."""

    user: str
    directory: Path
    port: int = 22

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
            f"  IdentityFile {q(self.key)}\n"
            "  IdentitiesOnly yes\n"
            f"  UserKnownHostsFile {q(self.known_hosts)}\n"
            "  GlobalKnownHostsFile /dev/null\n"
            f"  StrictHostKeyChecking {strict}\n"
            "  HashKnownHosts no\n"
            "  UpdateHostKeys no\n"
            "  BatchMode yes\n"
            "  PasswordAuthentication no\n"
            "  ConnectTimeout 10\n"
            "  ServerAliveInterval 15\n"
            "  ServerAliveCountMax 4\n"
            f"  ControlPath {q(self.directory / '%C')}\n"
            "  LogLevel ERROR\n"
        )


def _tags(image: ImageDef, ami: dict[str, Any], run_id: str, expires: str) -> dict[str, str]:
    return (
        catalog.tool_tags(image.name, **{catalog.RUN_ID: run_id, catalog.EXPIRES_AT: expires})
        | image.tags
        | {"Name": f"bakery-verify {image.name} {ami['ImageId']}"}
    )


def _spec(kind: str, tags: dict[str, str]) -> dict[str, Any]:
    return {"ResourceType": kind, "Tags": catalog.tag_list(tags)}


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
    group = ec2.create_security_group(
        GroupName=name,
        Description=f"{TOOL} verify {image.name}: SSH from the runner only (run {created.run_id})",
        VpcId=plan_.vpc_id,
        TagSpecifications=[_spec("security-group", tags)],
    )
    created.group_id = group["GroupId"]
    ec2.authorize_security_group_ingress(
        GroupId=created.group_id,
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 22,
                "ToPort": 22,
                "IpRanges": [{"CidrIp": plan_.cidr, "Description": "SSH from the verify runner"}],
            }
        ],
        TagSpecifications=[_spec("security-group-rule", tags)],
    )
    say(f"verify: security group {created.group_id} admits tcp/22 from {plan_.cidr} only")
    pair = ec2.create_key_pair(
        KeyName=name, KeyType="ed25519", TagSpecifications=[_spec("key-pair", tags)]
    )
    created.key_name = name
    fd = os.open(access.key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(pair["KeyMaterial"].rstrip("\n") + "\n")
    access.write_config("accept-new")
    say(f"verify: temporary key pair {name} (ed25519; private key in a 0600 file, deleted after)")


def _launch_client(region: str) -> Any:
    """An EC2 client that makes one attempt per RunInstances call. botocore retries capacity
    errors (HTTP 500) with backoff, up to the configured attempts, where trying the next zone
    or type is the better move; throttling is retried by launch() itself."""
    runner = aws.client("ec2", region)
    hyphenized = runner.meta.service_model.service_id.hyphenize()
    runner.meta.events.unregister(
        f"needs-retry.{hyphenized}", unique_id=f"retry-config-{hyphenized}"
    )
    return runner


def block_devices(ami: dict[str, Any]) -> list[dict[str, Any]]:
    """The AMI's EBS volumes, encrypted (the account's default key unless the snapshot has one)
    and deleted with the instance."""
    keep = ("SnapshotId", "VolumeSize", "VolumeType", "Iops", "Throughput")
    return [
        {
            "DeviceName": m["DeviceName"],
            "Ebs": {k: m["Ebs"][k] for k in keep if k in m["Ebs"]}
            | {"Encrypted": True, "DeleteOnTermination": True},
        }
        for m in ami.get("BlockDeviceMappings", [])
        if m.get("Ebs")
    ]


def launch_params(
    ami: dict[str, Any],
    instance_type: str,
    subnet: str,
    created: Created,
    tags: dict[str, str],
) -> dict[str, Any]:
    return {
        "ImageId": ami["ImageId"],
        "InstanceType": instance_type,
        "MinCount": 1,
        "MaxCount": 1,
        "KeyName": created.key_name,
        "SubnetId": subnet,
        "SecurityGroupIds": [created.group_id],
        "InstanceMarketOptions": {
            "MarketType": "spot",
            "SpotOptions": {
                "SpotInstanceType": "one-time",
                "InstanceInterruptionBehavior": "terminate",
            },
        },
        "MetadataOptions": {"HttpTokens": "required", "HttpEndpoint": "enabled"},
        "BlockDeviceMappings": block_devices(ami),
        "InstanceInitiatedShutdownBehavior": "terminate",
        "TagSpecifications": [
            _spec("instance", tags),
            _spec("volume", tags),
            _spec("spot-instances-request", tags),
        ],
    }


def _capacity(e: botocore.exceptions.ClientError) -> bool:
    message = aws.describe(e).lower()
    return aws.error_code(e) in CAPACITY_CODES or "capacity-not-available" in message


def _run_instances(runner: Any, params: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """One launch: (answer, "") or (None, the capacity or quota error's code); throttling is
    waited out; any other error is raised."""
    for pause in (2, 4, 8, 0):
        try:
            return runner.run_instances(**params), ""
        except botocore.exceptions.ClientError as e:
            code = aws.error_code(e)
            if code in THROTTLE_CODES and pause:
                time.sleep(pause)
                continue
            if _capacity(e) or code in QUOTA_CODES:
                return None, code or "capacity-not-available"
            raise
    raise AssertionError("unreachable: the last pause raises or returns")


def launch(
    ec2: Any,
    ami: dict[str, Any],
    plan_: Plan,
    created: Created,
    tags: dict[str, str],
    say: Say,
) -> Launched:
    """The first type x zone with spot capacity, in the definition's order of preference."""
    runner = _launch_client(ec2.meta.region_name)
    tried: dict[str, dict[str, list[str]]] = {}  # type -> error code -> zones
    for instance_type in plan_.instance_types:
        for zone, subnet in plan_.subnets.items():
            params = launch_params(ami, instance_type, subnet, created, tags)
            params["ClientToken"] = f"{created.run_id}-{instance_type}-{zone}"[:64]
            created.in_flight = True
            try:
                answer, code = _run_instances(runner, params)
            except botocore.exceptions.ClientError as e:
                created.in_flight = False  # refused: nothing was launched
                raise BakeryError(
                    f"cannot launch {instance_type} in {zone}: {aws.describe(e)}"
                ) from None
            created.in_flight = False
            if answer is not None:
                instance = answer["Instances"][0]
                created.instance_ids.append(instance["InstanceId"])
                say(
                    f"verify: launched spot {instance_type} {instance['InstanceId']} in {zone}"
                    f" from {ami['ImageId']} (IMDSv2 required, encrypted volumes)"
                )
                return Launched(instance["InstanceId"], instance_type, zone)
            if code in QUOTA_CODES:
                tried.setdefault(instance_type, {})[code] = ["every zone"]
                say(
                    f"verify: {instance_type}: {code}, a regional limit that every zone would"
                    " answer alike; trying the next type"
                )
                break
            tried.setdefault(instance_type, {}).setdefault(code, []).append(zone)
            say(f"verify: no spot capacity for {instance_type} in {zone} ({code}); trying the next")
    detail = "; ".join(
        f"{t}: " + ", ".join(f"{code} in {' '.join(zones)}" for code, zones in codes.items())
        for t, codes in tried.items()
    )
    raise BakeryError(
        f"no spot capacity for any verify instance type in {ec2.meta.region_name} ({detail})"
    )


# --- waiting ------------------------------------------------------------------------------


def _describe(ec2: Any, instance_id: str) -> dict[str, Any] | None:
    try:
        reservations = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
    except botocore.exceptions.ClientError as e:
        if aws.error_code(e) == "InvalidInstanceID.NotFound":
            return None  # not visible yet (eventual consistency) or long gone
        raise
    found = [i for r in reservations for i in r["Instances"]]
    return found[0] if found else None


def _reclaimed(instance: dict[str, Any]) -> bool:
    """EC2 took the spot instance back (a retry may pass), as opposed to it shutting itself down."""
    reason = instance.get("StateReason") or {}
    return spot.interruption(reason.get("Code", ""), reason.get("Message", "")) is not None


def _ended(instance: dict[str, Any]) -> str:
    reason = instance.get("StateReason", {}).get("Message") or "no reason given"
    return f"{instance['InstanceId']} ended before it was ready ({instance['State']['Name']}: {reason})"


def wait_running(ec2: Any, launched: Launched, say: Say) -> None:
    """Running, with both status checks ok (bounded patience each); notes its address."""
    started = time.monotonic()
    state = "pending"
    while True:
        instance = _describe(ec2, launched.instance_id)
        state = instance["State"]["Name"] if instance else "pending"
        if state == "running" and instance:
            launched.address = instance.get("PublicIpAddress") or instance.get(
                "PrivateIpAddress", ""
            )
            launched.private = not instance.get("PublicIpAddress")
            break
        if state in ("shutting-down", "terminated", "stopping", "stopped") and instance:
            raise (SpotInterrupted if _reclaimed(instance) else BakeryError)(_ended(instance))
        if time.monotonic() - started > RUNNING_PATIENCE_S:
            raise BakeryError(
                f"{launched.instance_id} is still {state} after {_duration(RUNNING_PATIENCE_S)}"
            )
        time.sleep(POLL_S)
    say(
        f"verify: {launched.instance_id} is running at {launched.address}"
        + (" (no public address: reaching its private one)" if launched.private else "")
    )
    started = time.monotonic()
    while True:
        statuses = ec2.describe_instance_status(
            InstanceIds=[launched.instance_id], IncludeAllInstances=True
        )["InstanceStatuses"]
        system = statuses[0].get("SystemStatus", {}).get("Status") if statuses else None
        own = statuses[0].get("InstanceStatus", {}).get("Status") if statuses else None
        if system == own == "ok":
            break
        if "impaired" in (system, own):
            raise BakeryError(
                f"{launched.instance_id} failed its status checks (system {system}, instance {own})"
            )
        if time.monotonic() - started > STATUS_PATIENCE_S:
            raise BakeryError(
                f"{launched.instance_id}: status checks not ok after {_duration(STATUS_PATIENCE_S)}"
                f" (system {system}, instance {own})"
            )
        time.sleep(POLL_S)
    say(f"verify: {launched.instance_id} passed its system and instance status checks")


# --- reaching it over SSH -----------------------------------------------------------------

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


def reach_over_ssh(ec2: Any, launched: Launched, access: Access, say: Say) -> None:
    """The SSH port answers, the run's key is accepted by the host whose keys the instance
    printed on its console (else trusted on first use, then checked against the console),
    and cloud-init has finished. Afterwards the ssh_config accepts only the pinned host key."""
    address, started = launched.address, time.monotonic()
    last = ""
    while True:
        try:
            socket.create_connection((address, access.port), timeout=5).close()
            break
        except OSError as e:
            last = (e.strerror or type(e).__name__).lower()
        if time.monotonic() - started > SSH_PATIENCE_S:
            raise BakeryError(
                f"cannot reach {address}:{access.port} after {_duration(SSH_PATIENCE_S)}: {last}"
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
                f" {_duration(CLOUD_INIT_PATIENCE_S)}"
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
        raise BakeryError(
            f"cloud-init on {launched.instance_id} ended in error (exit {result.returncode}):"
            f" {_last_line(result.stdout + result.stderr) or 'no output'}"
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


Reach = Callable[[Any, Launched, Access, Say], None]


# --- clean-up -----------------------------------------------------------------------------


def _wait_terminated(ec2: Any, ids: list[str], say: Say) -> bool:
    started = time.monotonic()
    while True:
        try:
            live = [
                i
                for i in ids
                if (d := _describe(ec2, i)) is not None and d["State"]["Name"] != "terminated"
            ]
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:
            say(f"clean-up: cannot see whether {', '.join(ids)} ended: {aws.describe(e)}")
            return False
        if not live:
            return True
        if time.monotonic() - started > TERMINATE_PATIENCE_S:
            say(
                f"clean-up: {', '.join(live)} still terminating after"
                f" {_duration(TERMINATE_PATIENCE_S)}; the security group may be left for gc"
            )
            return False
        time.sleep(POLL_S)


@dataclass
class Cleaned:
    removed: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)  # what could not be removed (gc's work)

    def __str__(self) -> str:
        said = "; ".join(self.removed) or "nothing was left"
        return said + (f" (left for gc: {'; '.join(self.left)})" if self.left else "")


def clean(ec2: Any, created: Created, directory: Path | None, say: Say) -> Cleaned:
    """End the instance, then remove the key pair and security group by ID, then sweep the run
    id for anything else (a launch whose answer was lost, or a describe that lagged)."""
    done = Cleaned()
    with _shielded(say):
        if directory:
            shutil.rmtree(directory, ignore_errors=True)  # the private key first: it is local
        if not (created.group_id or created.key_name or created.instance_ids):
            return done
        say(f"verify: ending what run {created.run_id} created")

        def attempt(what: str, call: Callable[[], Any], retry: str = "") -> None:
            for _ in range(12):
                try:
                    call()
                    done.removed.append(what)
                    return
                except botocore.exceptions.ClientError as e:
                    if aws.error_code(e).endswith("NotFound"):
                        return
                    if aws.error_code(e) != retry:
                        say(
                            f"clean-up: could not remove {what}: {aws.describe(e)} (invoke gc will retry)"
                        )
                        done.left.append(what)
                        return
                except botocore.exceptions.BotoCoreError as e:
                    say(
                        f"clean-up: could not remove {what}: {aws.describe(e)} (invoke gc will retry)"
                    )
                    done.left.append(what)
                    return
                time.sleep(POLL_S)
            say(f"clean-up: could not remove {what}: still in use (invoke gc will retry)")
            done.left.append(what)

        if created.instance_ids:
            ids = list(created.instance_ids)
            attempt(
                f"instance {', '.join(ids)} (terminated)",
                lambda: ec2.terminate_instances(InstanceIds=ids),
            )
            if not _wait_terminated(ec2, ids, say):
                done.left.append(f"instance {', '.join(ids)} (terminating)")
        if created.key_name:
            name = created.key_name
            attempt(f"key pair {name}", lambda: ec2.delete_key_pair(KeyName=name))
        if created.group_id:
            group = created.group_id
            attempt(
                f"security group {group}",
                lambda: ec2.delete_security_group(GroupId=group),
                retry="DependencyViolation",  # the ended instance's interface lingers a little
            )
        try:
            if created.in_flight:  # its instance, if any, may not show by tag at once
                say("clean-up: a launch was under way; looking for its instance by the run id")
                time.sleep(2 * POLL_S)
            done.removed += cleanup.sweep(ec2, created.run_id, images=False, say=say)
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:
            say(f"clean-up: the sweep of run {created.run_id} failed: {aws.describe(e)}")
            done.left.append(f"whatever else carries {catalog.RUN_ID}={created.run_id}")
        say(f"verify: removed {done}" if done.removed else f"verify: nothing was removed {done}")
        return done


# --- the run ------------------------------------------------------------------------------


@dataclass
class Result:
    image: str
    ami_id: str
    region: str
    local: bool
    launched: Launched | None = None
    verdict: Verdict | None = None
    marked: str | None = None  # catalog.PASSED | catalog.FAILED | None
    timings: dict[str, Any] = field(default_factory=dict)
    boot: dict[str, float] = field(default_factory=dict)  # seconds after launch
    cleaned: Cleaned | None = None
    host: str | None = None


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def marks(result: Result) -> tuple[bool, dict[str, str]]:
    """The verification tags for the verdict: passed or failed, each with its own keys."""
    assert result.verdict is not None
    v, launched = result.verdict, result.launched
    gpu = result.timings.get("gpu_name") or (launched.gpu if launched else None) or "unknown GPU"
    where = f"{launched.instance_type} {gpu}" if launched else str(gpu)
    common = {VERIFY_GPU: expect.clip(where), VERIFY_REPORT: v.sha256}
    if v.passed:
        line = expect.compact_timings(result.timings, ssh=result.boot.get("ready"))
        return True, common | {VERIFIED_AT: _now(), VERIFY_TIMINGS: expect.clip(line)}
    return False, common | {VERIFY_FAILURE: expect.clip(v.first_problem or "unknown failure")}


def verify(
    image: ImageDef,
    options: Options,
    *,
    use_emulator: bool = False,
    say: Say = print,
    reach: Reach = reach_over_ssh,
    run_suite: expect.RunSuite = expect.run_pytest,
) -> Result:
    """Verify one AMI of the image on a spot GPU instance (see the module's docstring).

    Everything that can be refused is checked before anything is created."""
    check_ami_id(options.ami_id)
    if not use_emulator and reach is reach_over_ssh and not shutil.which("ssh"):
        raise BakeryError(
            "verify reaches the instance with the OpenSSH client, and ssh is not on PATH: install it"
        )
    started_here = use_emulator and not os.environ.get("AWS_ENDPOINT_URL")
    with local.emulator(say) if use_emulator else contextlib.nullcontext():
        aws.identity()
        ec2 = aws.client("ec2")
        try:
            ami = pick_ami(ec2, image, options.ami_id, say)
        except BakeryError as e:
            if started_here and not options.ami_id:
                raise BakeryError(
                    f"{e}; the emulator started for this task starts empty: run one (moto_server -p 5000),"
                    " export AWS_ENDPOINT_URL=http://127.0.0.1:5000, bake into it with --local, then verify --local"
                ) from None
            raise
        cidr = runner_cidr(options.ssh_cidr, use_emulator, say)
        where = plan(ec2, image, options.subnet, cidr)
        return _run(ec2, image, ami, where, options, use_emulator, say, reach, run_suite)


def _run(
    ec2: Any,
    image: ImageDef,
    ami: dict[str, Any],
    where: Plan,
    options: Options,
    use_emulator: bool,
    say: Say,
    reach: Reach,
    run_suite: expect.RunSuite,
) -> Result:
    ami_id = ami["ImageId"]
    result = Result(image.name, ami_id, ec2.meta.region_name, use_emulator)
    paths = expect.paths_for(image).fresh()
    created = Created(new_build_id())
    deadline = time.monotonic() + options.timeout_s
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=options.timeout_s + TTL_GRACE_S)
    tags = _tags(image, ami, created.run_id, expires.strftime("%Y-%m-%dT%H:%M:%SZ"))
    directory = Path(tempfile.mkdtemp(prefix="bakery-verify-"))
    access = Access(image.base.ssh_username, directory)
    say(
        f"verify: {image.name}: {ami_id} ({ami.get('Name', 'unnamed')}) in {result.region},"
        f" run {created.run_id}, timeout {_duration(options.timeout_s)}"
    )
    phase = "creating the security group and key pair"
    failure: BaseException | None = None
    with _sigterm_as_interrupt():
        try:
            returncode = -1
            with _watchdog(options.timeout_s):
                create_access(ec2, image, where, created, access, tags, say)
                phase = "launching"
                launched = result.launched = launch(ec2, ami, where, created, tags, say)
                t0 = time.monotonic()
                expect.write(paths.expect, expect.expectations(image, ami, gpu_name=launched.gpu))
                phase = f"waiting for {launched.instance_id} to run and pass its status checks"
                wait_running(ec2, launched, say)
                result.boot["status_ok"] = time.monotonic() - t0
                if not use_emulator:
                    phase = f"waiting for SSH and cloud-init on {launched.instance_id}"
                    reach(ec2, launched, access, say)
                    result.boot["ready"] = time.monotonic() - t0
                    result.host = access.url(launched.address)
                    phase = "running the image tests"
                    say(
                        f"verify: running the image tests: pytest {expect.SUITE.relative_to(expect.REPO)} --hosts={result.host}"
                    )
                    command = expect.suite_command(
                        result.host, paths, ssh_config=access.ssh_config, identity=access.key
                    )
                    returncode = run_suite(command, max(deadline - time.monotonic(), 1))
                    _close_master(access, launched.address)
            if not use_emulator:
                phase = "judging the report"
                result.verdict = expect.judge(paths, returncode)
                result.timings = expect.read_timings(paths.timings)
                if not result.verdict.passed:
                    _still_there(ec2, result.launched)
                passed, details = marks(result)
                phase = f"marking {ami_id}"
                catalog.mark_verification(ec2, catalog.get(ec2, ami_id), passed, details)
                result.marked = catalog.PASSED if passed else catalog.FAILED
        except BaseException as e:  # every way out ends the instance first, then goes on
            failure = e
        finally:
            result.cleaned = clean(ec2, created, directory, say)
    _record(paths, result)
    ended = (
        "ended the instance and removed what it created"
        if not result.cleaned.left
        else "the clean-up left some resources for gc (see above)"
    )
    if phase.startswith("marking"):
        ended += f"; check {ami_id}'s {catalog.VERIFICATION} tag (the marking was cut short)"
    else:
        ended += f"; {ami_id} is not marked"
    if isinstance(failure, _TimedOut):
        raise BakeryError(
            f"verify of {image.name} timed out after {_duration(options.timeout_s)} (--timeout) while"
            f" {phase}; {ended}"
        )
    if isinstance(failure, KeyboardInterrupt):
        raise Interrupted(f"verify of {image.name} interrupted while {phase}; {ended}")
    if failure is not None:
        raise failure
    summary(result, paths, say)
    if use_emulator:
        say(
            "local: no machine exists behind the emulator: the image tests were not run;"
            f" {ami_id} is not marked verified"
        )
    elif result.verdict and not result.verdict.passed:
        raise BakeryError(
            f"{ami_id} failed verification: {result.verdict.first_problem}"
            f" (tagged {catalog.VERIFICATION}={catalog.FAILED})"
        )
    return result


def _close_master(access: Access, address: str) -> None:
    """The suite's ssh leaves a control master behind for a minute: end it now."""
    if shutil.which("ssh"):
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            subprocess.run(
                ["ssh", "-F", str(access.ssh_config), "-O", "exit", f"{access.user}@{address}"],
                capture_output=True,
                timeout=5,
                check=False,
            )


def _still_there(ec2: Any, launched: Launched | None) -> None:
    """A spot instance reclaimed mid-test fails checks that say nothing about the AMI."""
    if launched is None:
        return
    instance = _describe(ec2, launched.instance_id)
    if instance and instance["State"]["Name"] != "running":
        reason = instance.get("StateReason", {}).get("Message") or "no reason given"
        raise (SpotInterrupted if _reclaimed(instance) else BakeryError)(
            f"{launched.instance_id} went {instance['State']['Name']} during the image tests ({reason});"
            " the AMI is not marked: run verify again"
        )


def _record(paths: expect.Paths, result: Result) -> None:
    """build/NAME/verify.json: what this run did, for CI and for people."""
    v, launched = result.verdict, result.launched
    data = {
        "image": result.image,
        "ami_id": result.ami_id or None,
        "region": result.region or None,
        "local": result.local,
        "host": result.host,
        "instance": None
        if launched is None
        else {
            "id": launched.instance_id,
            "type": launched.instance_type,
            "gpu": launched.gpu,
            "zone": launched.zone,
            "address": launched.address or None,
        },
        "verdict": None
        if v is None
        else {
            "passed": v.passed,
            "tests": v.tests,
            "failures": v.failures,
            "errors": v.errors,
            "skipped": v.skipped,
            "first_problem": v.first_problem,
            "report_sha256": v.sha256,
        },
        "marked": result.marked,
        "timings": result.timings,
        "boot_s": {k: round(s, 1) for k, s in result.boot.items()},
        "removed": result.cleaned.removed if result.cleaned else [],
        "left": result.cleaned.left if result.cleaned else [],
    }
    paths.directory.mkdir(parents=True, exist_ok=True)
    paths.record.write_text(json.dumps(data, indent=2) + "\n")


def summary(result: Result, paths: expect.Paths, say: Say) -> None:
    v, launched = result.verdict, result.launched
    if result.local:
        verdict = "lifecycle checked against the emulator; image tests not run"
    else:
        verdict = "PASSED" if v and v.passed else "FAILED"
    say(f"verify {result.image}: {verdict}")
    if result.ami_id:
        say(f"  ami          {result.ami_id} in {result.region}")
    if launched:
        say(
            f"  instance     {launched.instance_id} spot {launched.instance_type}"
            f" ({launched.gpu}) in {launched.zone}"
        )
    if result.host:
        say(f"  host         {result.host}")
    if v:
        say(f"  checks       {v.counts}")
        if v.first_problem:
            say(f"  first        {v.first_problem}")
        ready = result.boot.get("ready")
        say(
            f"  timings      {expect.compact_timings(result.timings)}"
            + (f"; SSH and cloud-init ready {_duration(ready)} after launch" if ready else "")
        )
        notes = result.timings.get("notes")
        for key, why in notes.items() if isinstance(notes, dict) else []:
            say(f"  unmeasured   {key}: {why}")
        say(f"  report       {expect.rel(paths.report)} (sha256 {v.sha256[:12]})")
    elif "status_ok" in result.boot:
        say(f"  boot         status checks ok {_duration(result.boot['status_ok'])} after launch")
    say(f"  expectations {expect.rel(paths.expect)}")
    if result.cleaned is not None:
        say(f"  cleaned      {result.cleaned}")
    if result.marked:
        say(f"  marked       {catalog.VERIFICATION}={result.marked}")
    elif not result.local and result.launched is None:
        say("  marked       nothing (--host never marks an AMI)")


# --- --host: the suite alone --------------------------------------------------------------


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


def against_host(
    image: ImageDef,
    url: str,
    *,
    ami_id: str | None = None,
    gpu: str | None = None,
    ssh_key: str | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_MIN * 60,
    say: Say = print,
    run_suite: expect.RunSuite = expect.run_pytest,
) -> Result:
    """The image tests alone against a host that exists: no AWS resources, no marks."""
    check_ami_id(ami_id)
    scheme, host, port = parse_host(url)
    key = Path(ssh_key).expanduser() if ssh_key else None
    if key and not key.is_file():
        raise BakeryError(f"--ssh-key {ssh_key}: no such file")
    ami = None
    region = ""
    if ami_id:
        aws.identity()
        ec2 = aws.client("ec2")
        ami, region = catalog.get(ec2, ami_id), ec2.meta.region_name
    if scheme != "local":
        check_reachable(url, host, port)
    paths = expect.paths_for(image).fresh()
    expect.write(paths.expect, expect.expectations(image, ami, gpu_name=gpu))
    result = Result(image.name, ami_id or "", region, False, host=url)
    say(
        f"verify: running the image tests against {url} (no instance is launched, nothing is marked)"
    )
    try:
        with _sigterm_as_interrupt(), _watchdog(timeout_s):
            returncode = run_suite(expect.suite_command(url, paths, identity=key), timeout_s)
    except _TimedOut:
        raise BakeryError(
            f"the image tests against {url} timed out after {_duration(timeout_s)} (--timeout)"
        ) from None
    except KeyboardInterrupt:
        raise Interrupted(f"the image tests against {url} were interrupted") from None
    result.verdict = expect.judge(paths, returncode)
    result.timings = expect.read_timings(paths.timings)
    _record(paths, result)
    summary(result, paths, say)
    if not result.verdict.passed:
        raise BakeryError(f"{url} failed the image tests: {result.verdict.first_problem}")
    return result


# --- the task's entry ---------------------------------------------------------------------


def _apply(flags: list[str]) -> str:
    return "applies" if len(flags) == 1 else "apply"


def main(
    image: ImageDef,
    *,
    ami: str | None = None,
    host: str | None = None,
    use_emulator: bool = False,
    timeout: Any = DEFAULT_TIMEOUT_MIN,
    subnet: str | None = None,
    ssh_cidr: str | None = None,
    gpu: str | None = None,
    ssh_key: str | None = None,
    say: Say = print,
) -> Result:
    """`invoke verify`: the options checked together, then an instance run or --host."""
    timeout_s = check_timeout(timeout)
    check_ami_id(ami)
    if host:
        only_launch = [
            f
            for f, v in (("--local", use_emulator), ("--subnet", subnet), ("--ssh-cidr", ssh_cidr))
            if v
        ]
        if only_launch:
            raise BakeryError(
                f"{' and '.join(only_launch)} {_apply(only_launch)} only when verify launches an"
                " instance, not with --host"
            )
        return against_host(
            image, host, ami_id=ami, gpu=gpu, ssh_key=ssh_key, timeout_s=timeout_s, say=say
        )
    only_host = [f for f, v in (("--gpu", gpu), ("--ssh-key", ssh_key)) if v]
    if only_host:
        raise BakeryError(
            f"{' and '.join(only_host)} {_apply(only_host)} only with --host (a launched instance's GPU follows"
            " from its type, and its key is made for the run)"
        )
    if subnet and not SUBNET_ID_RE.match(subnet):
        raise BakeryError(
            f"--subnet {subnet!r} is not a subnet ID (subnet- and 8 or 17 hex digits)"
        )
    options = Options(ami, timeout_s, subnet, ssh_network(ssh_cidr) if ssh_cidr else None)
    return verify(image, options, use_emulator=use_emulator, say=say)
