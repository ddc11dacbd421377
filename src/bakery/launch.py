"""invoke launch, status, connect and destroy: terraform/ driven from the catalog.

One fleet per image and region, in a working folder of its own (see tfroot). `launch` checks
every input and finds the AMI before anything is written or applied, so bad input leaves
nothing behind; then terraform init + apply, a bounded wait for instances in service, and how
to reach the UI. Each launch applies exactly the options given: leaving out --allow-cidr
closes the UI again, and --capacity defaults to 1.

The AMI is picked as the module picks it (this account's newest available AMI tagged for the
image, verified unless --allow-unverified), so what was checked here is what launches.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import botocore.exceptions

from . import aws, catalog, fleet, local, tfroot
from . import terraform as tf
from .config import ImageDef, rel
from .errors import BakeryError, ConfigError, Interrupted

Say = Callable[[str], None]

DEFAULT_CAPACITY = 1
DEFAULT_WAIT_MINUTES = 15  # spot GPU capacity can take a while; the group keeps trying after
MAX_WAIT_MINUTES = 720
SSM_POLICY = "AmazonSSMManagedInstanceCore"  # the module attaches it to the instance role
FLEET_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,31}$")  # the module's `name`
SUBNET_ID_RE = re.compile(r"^subnet-([0-9a-f]{8}|[0-9a-f]{17})$")


# --- inputs: all checked before anything is written or applied -----------------------------


@dataclass(frozen=True)
class Ingress:
    """Who may reach the UI port: named IPv4 networks, and the whole internet only on request."""

    cidrs: tuple[str, ...] = ()
    public: bool = False

    @property
    def open(self) -> bool:
        return bool(self.cidrs) or self.public

    def describe(self) -> str:
        return ", ".join(
            [*self.cidrs, *(["0.0.0.0/0 (the whole internet)"] if self.public else [])]
        )


def allowed_networks(values: Iterable[str], yes_public: bool = False) -> Ingress:
    """--allow-cidr values: IPv4 networks (a bare address is a /32); a /0 needs --yes-public."""
    cidrs: list[str] = []
    public = False
    for raw in values:
        text = str(raw).strip()
        try:
            net = ipaddress.ip_network(text, strict=True)
        except ValueError:
            try:
                loose = ipaddress.ip_network(text, strict=False)
            except ValueError:
                raise BakeryError(
                    f"--allow-cidr {raw!r} is not an IPv4 network (e.g. 203.0.113.0/24, or an address for a /32)"
                ) from None
            raise BakeryError(
                f"--allow-cidr {raw!r} has host bits set: the network is {loose}"
            ) from None
        if net.version != 4:
            raise BakeryError(
                f"--allow-cidr {raw!r} is an IPv6 network: the UI can be opened to IPv4 networks only"
            )
        if net.prefixlen == 0:
            if not yes_public:
                raise BakeryError(
                    f"--allow-cidr {net} would open the UI to the whole internet, and it has no"
                    " authentication: name narrower networks, or add --yes-public if you mean it"
                )
            public = True
        elif str(net) not in cidrs:
            cidrs.append(str(net))
    if yes_public and not public:
        raise BakeryError("--yes-public applies only with --allow-cidr 0.0.0.0/0")
    return Ingress(tuple(cidrs), public)


def check_capacity(value: Any) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        raise BakeryError(f"--capacity {value!r} is not a whole number of instances") from None
    if number < 0:
        raise BakeryError(f"--capacity {number}: give 0 or more instances")
    return number


def check_wait_minutes(value: Any) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        raise BakeryError(f"--wait-minutes {value!r} is not a whole number of minutes") from None
    if not 0 <= number <= MAX_WAIT_MINUTES:
        raise BakeryError(f"--wait-minutes {number} is out of range (0 to {MAX_WAIT_MINUTES})")
    return number


def check_subnets(values: Iterable[str]) -> tuple[str, ...]:
    subnets: list[str] = []
    for value in values:
        text = str(value).strip()
        if not SUBNET_ID_RE.match(text):
            raise BakeryError(
                f"--subnet {value!r} is not a subnet ID (subnet- and 8 or 17 hex digits)"
            )
        if text not in subnets:
            subnets.append(text)
    return tuple(subnets)


def check_port(option: str, value: Any) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        raise BakeryError(f"{option} {value!r} is not a port number") from None
    if not 1 <= number <= 65535:
        raise BakeryError(f"{option} {number} is not a port number (1 to 65535)")
    return number


def fleet_name(image: ImageDef) -> str:
    """The fleet is named after its image: the group, the template, the security group."""
    if not FLEET_NAME_RE.match(image.name):
        raise ConfigError(
            image.path,
            "",
            f"the image name {image.name!r} cannot name a fleet: the fleet module needs a letter"
            " first and at most 32 letters, digits and hyphens",
        )
    return image.name


# --- the AMI, the network, the emulator -----------------------------------------------------


def _state_of(ami: dict[str, Any]) -> str:
    tags = catalog.tags_of(ami)
    verdict = tags.get(catalog.VERIFICATION)
    if verdict == catalog.PASSED:
        return "verified"
    if verdict == catalog.FAILED:
        why = tags.get("bakery:verify-failure")
        return "failed verification" + (f" ({why})" if why else "")
    return "not verified"


def _is(ami: dict[str, Any]) -> str:
    """'is verified', 'is not verified' or 'failed verification (why)'."""
    state = _state_of(ami)
    return state if state.startswith("failed") else f"is {state}"


def pick_ami(
    ec2: Any, image: ImageDef, region: str, *, allow_unverified: bool, say: Say = print
) -> dict[str, Any]:
    """The AMI the module will launch, refused here when it should not be."""
    available = [a for a in catalog.images(ec2, image.name) if a.get("State") == "available"]
    finished = [a for a in available if catalog.FINGERPRINT in catalog.tags_of(a)]
    if not finished:
        raise BakeryError(
            f"no AMI of {image.name} in {region} yet: bake and verify one first"
            f" (invoke bake --image {image.name}, then invoke verify --image {image.name})"
        )
    newest = finished[0]
    if allow_unverified:
        chosen = available[0]  # the module's rule: the newest, finished or not
        if catalog.FINGERPRINT not in catalog.tags_of(chosen):
            raise BakeryError(
                f"{chosen['ImageId']}, the newest AMI tagged for {image.name} in {region}, is an"
                " unfinished bake (no bakery:fingerprint tag) and the fleet would launch it:"
                " remove it (invoke gc) or let its bake finish"
            )
        if _state_of(chosen) != "verified":
            say(
                f"launch: {chosen['ImageId']} {_is(chosen)}; launching it anyway"
                " (--allow-unverified): nothing has proven that it serves on a GPU"
            )
        return chosen
    verified = [a for a in available if catalog.tags_of(a).get(catalog.VERIFICATION) == "passed"]
    if not verified:
        hint = (
            f"bake a fixed one and verify it (invoke bake --image {image.name} --force)"
            if _state_of(newest).startswith("failed")
            else f"verify it (invoke verify --image {image.name})"
        )
        raise BakeryError(
            f"no verified AMI of {image.name} in {region}: the newest, {newest['ImageId']},"
            f" {_is(newest)}; {hint}, or pass --allow-unverified to launch it anyway"
        )
    chosen = verified[0]
    if newest["ImageId"] != chosen["ImageId"]:
        say(
            f"launch: the newest AMI, {newest['ImageId']}, {_is(newest)}; launching"
            f" {chosen['ImageId']}, the newest verified one"
        )
    return chosen


def models_of(ami: dict[str, Any], image: ImageDef) -> list[str]:
    """What the AMI carries (its bakery:models tag); the definition's list if it has none."""
    tag = catalog.tags_of(ami).get(catalog.MODELS)
    if tag is None:
        return image.model_names
    return [m.strip() for m in tag.split(",") if m.strip()]


def root_volume_gib(ami: dict[str, Any]) -> int | None:
    for mapping in ami.get("BlockDeviceMappings", []):
        if mapping.get("DeviceName") == ami.get("RootDeviceName"):
            size = mapping.get("Ebs", {}).get("VolumeSize")
            return int(size) if size else None
    return None


@dataclass(frozen=True)
class Network:
    vpc_id: str
    subnet_ids: tuple[str, ...]
    default: bool

    def describe(self) -> str:
        which = "the default VPC" if self.default else "--subnet"
        return f"{self.vpc_id} ({which}, {len(self.subnet_ids)} subnets)"


def network(ec2: Any, subnets: tuple[str, ...]) -> Network:
    region = ec2.meta.region_name
    if subnets:
        try:
            found = ec2.describe_subnets(SubnetIds=list(subnets))["Subnets"]
        except botocore.exceptions.ClientError as e:
            if not aws.error_code(e).startswith("InvalidSubnetID"):
                raise
            missing = [s for s in subnets if s in aws.describe(e)] or list(subnets)
            raise BakeryError(
                f"--subnet {', '.join(missing)}: no such subnet in {region}"
            ) from None
        vpcs = sorted({s["VpcId"] for s in found})
        if len(vpcs) > 1:
            where = ", ".join(f"{s['SubnetId']} in {s['VpcId']}" for s in found)
            raise BakeryError(f"--subnet: the subnets must be in one VPC ({where})")
        return Network(vpcs[0], tuple(subnets), default=False)
    vpcs = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"]
    if not vpcs:
        raise BakeryError(
            f"no default VPC in {region}: pass --subnet ID (repeat it, ideally one per Availability Zone)"
        )
    vpc = vpcs[0]["VpcId"]
    found = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"]
    if not found:
        raise BakeryError(f"the default VPC {vpc} in {region} has no subnet: pass --subnet ID")
    ordered = sorted(found, key=lambda s: (s.get("AvailabilityZone", ""), s["SubnetId"]))
    return Network(vpc, tuple(s["SubnetId"] for s in ordered), default=True)


def check_emulator_policies(iam: Any, endpoint: str) -> None:
    """moto knows AWS managed policies only when started with MOTO_IAM_LOAD_MANAGED_POLICIES=true."""
    arn = f"arn:aws:iam::aws:policy/{SSM_POLICY}"
    try:
        iam.get_policy(PolicyArn=arn)
    except botocore.exceptions.ClientError as e:
        if aws.error_code(e) != "NoSuchEntity":
            raise
        raise BakeryError(
            f"the emulator at {endpoint} has no AWS managed policies, and the fleet's role attaches"
            f" {SSM_POLICY}: start it with MOTO_IAM_LOAD_MANAGED_POLICIES=true"
        ) from None


def check_emulator_bucket(s3: Any, backend: tfroot.S3Backend, endpoint: str) -> None:
    try:
        s3.head_bucket(Bucket=backend.bucket)
    except botocore.exceptions.ClientError:
        raise BakeryError(
            f"{tfroot.BUCKET_ENV}={backend.bucket}: the emulator at {endpoint} has no such bucket"
            " (--local keeps the state in the emulator's S3): create it there, or unset the variable"
        ) from None


@contextlib.contextmanager
def _where(use_emulator: bool, say: Say) -> Iterator[str | None]:
    if not use_emulator:
        yield None
        return
    with local.emulator(say, aws_managed_policies=True) as endpoint:
        yield endpoint


# --- the working folder ---------------------------------------------------------------------


@dataclass
class Root:
    """One image's fleet in one region: where its root module lives and how terraform runs there."""

    image: ImageDef
    name: str
    region: str
    work: Path
    backend: tfroot.S3Backend | None
    endpoint: str | None

    @property
    def local(self) -> bool:
        return self.endpoint is not None

    def state(self) -> str:
        if self.backend:
            return self.backend.describe()
        return str(rel(self.work / tfroot.LOCAL_STATE))

    def main_tf(self) -> str:
        return tfroot.main_tf(
            image=self.image.name,
            region=self.region,
            module_source=tfroot.module_source(self.work),
            endpoint=self.endpoint,
            backend=self.backend,
        )

    def check_backend(self, program: str = "terraform") -> None:
        """The state stays where it is: a changed backend setting is refused, not migrated."""
        recorded = tfroot.recorded_backend(self.work)
        wanted = self.backend.describe() if self.backend else "local"
        if recorded is not None and recorded != wanted:
            now = (
                f"{tfroot.BUCKET_ENV} now names {wanted}"
                if self.backend
                else f"{tfroot.BUCKET_ENV} is not set now"
            )
            where = f"{rel(self.work / tfroot.LOCAL_STATE)}" if recorded == "local" else recorded
            raise BakeryError(
                f"the fleet of {self.image.name} in {self.region} keeps its state in {where}, but"
                f" {now}: set the backend variables as they were, or move the state yourself"
                f" ({program} -chdir={rel(self.work)} init -migrate-state)"
            )


def _root(image: ImageDef, region: str | None, endpoint: str | None) -> Root:
    where = aws.region(region)
    backend = tfroot.S3Backend.from_env(image.name, where)
    work = tfroot.folder(image.name, where, local=endpoint is not None)
    return Root(image, fleet_name(image), where, work, backend, endpoint)


def fleet_inputs(
    image: ImageDef,
    name: str,
    ami: dict[str, Any],
    *,
    capacity: int,
    ingress: Ingress,
    net: Network,
    allow_unverified: bool,
    root_volume_size: int | None = None,
) -> dict[str, Any]:
    """terraform.auto.tfvars.json: the module's inputs from the definition and the catalog."""
    return {
        "name": name,
        "image_name": image.name,
        "require_verified": not allow_unverified,
        "models": models_of(ami, image),
        "instance_types": list(image.launch.instance_types),
        "min_size": capacity,
        "max_size": capacity,
        "desired_capacity": capacity,
        "vpc_id": net.vpc_id,
        "subnet_ids": list(net.subnet_ids),
        "ui_port": image.ui.port,
        "ui_ollama_url_env": image.ui.ollama_url_env,
        "ui_ingress_cidrs": list(ingress.cidrs),
        "ui_public_ingress": ingress.public,
        "root_volume_size": root_volume_size,
        # The launch template initializes each volume from its snapshot at this rate (null: lazily).
        "volume_initialization_rate": image.launch.volume_initialization_rate,
        "tags": dict(sorted(image.tags.items())),
    }


# --- the tasks ------------------------------------------------------------------------------


@dataclass
class Outcome:
    outputs: dict[str, Any]
    instances: list[dict[str, Any]]
    work: Path


def launch(
    image: ImageDef,
    *,
    capacity: Any = DEFAULT_CAPACITY,
    allow_cidr: Iterable[str] = (),
    yes_public: bool = False,
    allow_unverified: bool = False,
    subnets: Iterable[str] = (),
    region: str | None = None,
    wait_minutes: Any = DEFAULT_WAIT_MINUTES,
    use_emulator: bool = False,
    say: Say = print,
) -> Outcome:
    """`invoke launch`: everything checked, then terraform init + apply, a wait, the way in."""
    count = check_capacity(capacity)
    ingress = allowed_networks(allow_cidr, yes_public)
    patience_min = check_wait_minutes(wait_minutes)
    subnet_ids = check_subnets(subnets)
    fleet_name(image)
    binary = tf.binary()
    tf_version = tf.version(binary)
    started_here = use_emulator and not os.environ.get("AWS_ENDPOINT_URL")
    with _where(use_emulator, say) as endpoint:
        aws.identity(region)
        root = _root(image, region, endpoint)
        if root.backend and not root.backend.dynamodb_table and tf_version < tf.LOCKFILE_MINIMUM:
            raise BakeryError(
                f"the S3 backend locks with use_lockfile, which needs {tf.name(binary)} >="
                f" {'.'.join(map(str, tf.LOCKFILE_MINIMUM))} (this is {'.'.join(map(str, tf_version))}):"
                f" upgrade, or set {tfroot.DYNAMODB_TABLE_ENV}"
            )
        root.check_backend(tf.name(binary))
        ec2 = aws.client("ec2", root.region)
        aws.check_instance_types(ec2, image, "launch")
        try:
            ami = pick_ami(ec2, image, root.region, allow_unverified=allow_unverified, say=say)
        except BakeryError as e:
            if started_here:
                raise BakeryError(
                    f"{e}; the emulator started for this task starts empty: run one"
                    " (MOTO_IAM_LOAD_MANAGED_POLICIES=true moto_server -p 5000), export"
                    " AWS_ENDPOINT_URL=http://127.0.0.1:5000, bake into it with --local, then launch --local"
                ) from None
            raise
        net = network(ec2, subnet_ids)
        root_size = None
        if endpoint is not None:
            check_emulator_policies(aws.client("iam", root.region), endpoint)
            if root.backend:
                check_emulator_bucket(aws.client("s3", root.backend.region), root.backend, endpoint)
            # moto launches nothing from a block device without a size (AWS takes the
            # snapshot's). Set whatever the capacity, so that scaling changes no template.
            root_size = root_volume_gib(ami)
        values = fleet_inputs(
            image,
            root.name,
            ami,
            capacity=count,
            ingress=ingress,
            net=net,
            allow_unverified=allow_unverified,
            root_volume_size=root_size,
        )
        _announce(root, ami, values, ingress, net, say)
        if root_size is not None:
            say(
                f"local: root_volume_size = {root_size} GiB (the AMI's): the emulator launches nothing"
                " from a block device without a size; on AWS it stays null (the snapshot's size)"
            )
        tfroot.write(root.work, root.main_tf(), tfroot.tfvars_json(values))
        runner = tf.Terraform(root.work, binary, say)
        runner.prepare()
        try:
            runner.init()
        except tf.Stopped:
            raise Interrupted(
                f"launch of {image.name} interrupted during {runner.name} init; nothing was applied"
            ) from None
        try:
            runner.apply()
        except tf.Stopped:
            raise Interrupted(
                f"launch of {image.name} interrupted during {runner.name} apply; the state ({root.state()})"
                f" records what was created: launch again to finish, or {_command(root, 'destroy')}"
            ) from None
        except BakeryError as e:
            raise BakeryError(
                f"{e} (what was created is in the state, {root.state()}: fix and launch again, or"
                f" {_command(root, 'destroy')})"
            ) from None
        outputs = runner.outputs().get("fleet") or {}
        if outputs.get("ami_id") and outputs["ami_id"] != ami["ImageId"]:
            say(
                f"launch: warning: the module resolved {outputs['ami_id']}, not {ami['ImageId']}:"
                f" an AMI was tagged while this ran; {_command(root, 'status')} shows which runs"
            )
        instances = _wait_and_tell(root, outputs, count, patience_min, ingress, say)
        return Outcome(outputs, instances, root.work)


def _announce(
    root: Root,
    ami: dict[str, Any],
    values: dict[str, Any],
    ingress: Ingress,
    net: Network,
    say: Say,
) -> None:
    image = root.image
    say(
        f"launch: {image.name} in {root.region}: {ami['ImageId']} ({ami.get('Name', 'unnamed')},"
        f" {_state_of(ami)}), models {', '.join(values['models']) or 'none'}"
    )
    say(
        f"launch: capacity {values['desired_capacity']}, all spot, across"
        f" {', '.join(values['instance_types'])}; {net.describe()}"
    )
    port = image.ui.port
    if ingress.public:
        say(
            f"launch: --yes-public: the UI on port {port} will be open to the whole internet, and it"
            " has no authentication: anyone who finds the address can use the GPUs and make Ollama"
            " pull models"
        )
    if ingress.cidrs and not ingress.public:
        say(
            f"launch: the UI port {port} open to {', '.join(ingress.cidrs)} only (no authentication)"
        )
    if not ingress.open:
        say(
            f"launch: the UI port {port} closed to the network (no --allow-cidr): Session Manager only"
        )
    say("launch: Ollama's port 11434 is never opened")
    say(f"launch: working folder {rel(root.work)}; state {root.state()}")


def _wait_and_tell(
    root: Root,
    outputs: dict[str, Any],
    count: int,
    patience_min: int,
    ingress: Ingress,
    say: Say,
) -> list[dict[str, Any]]:
    image, name = root.image, outputs.get("autoscaling_group_name") or root.name
    autoscaling, ec2 = aws.client("autoscaling", root.region), aws.client("ec2", root.region)
    if count == 0:
        say(
            f"launch: capacity 0: the group {name} and its launch template are ready, no instance"
            f" runs ({_command(root, 'launch', '--capacity', '1')} starts one)"
        )
        _say_local(root, say)
        return []
    if patience_min == 0:
        say(
            f"launch: not waiting for instances (--wait-minutes 0): {_command(root, 'status')}"
            " shows when they are in service"
        )
        _say_local(root, say)
        return []
    ready = fleet.wait_in_service(autoscaling, name, count, patience_min * 60.0, say)
    described = fleet.describe_instances(ec2, [i["InstanceId"] for i in ready])
    instances = [described[i["InstanceId"]] for i in ready if i["InstanceId"] in described]
    for line in fleet.reach_lines(
        instances,
        image=image.name,
        region=root.region,
        port=image.ui.port,
        open_to=ingress.describe() if ingress.open else None,
    ):
        say(line)
    if instances:
        say(
            "launch: in service means EC2 runs the instance; the UI answers once it reports ready"
            " (journal tag bakery, /run/bakery/ready), usually minutes after boot"
        )
    _say_local(root, say)
    if len(ready) < count:
        why = fleet.last_failure(autoscaling, name)
        raise BakeryError(
            f"{len(ready)} of {count} instances of {image.name} in service after {patience_min} min"
            f" (--wait-minutes){f': {why}' if why else ''}; the fleet is applied and the group keeps"
            f" trying: {_command(root, 'status')}"
        )
    return instances


def _say_local(root: Root, say: Say) -> None:
    if root.local:
        say(
            "local: no instance really boots behind the emulator: the fleet exists as API objects"
            " only, nothing serves on any address shown, and no spot capacity was sought"
        )


def _command(root: Root, task: str, *options: str) -> str:
    """How to run another task on this fleet, as a user types it."""
    return " ".join(
        ["invoke", task, "--image", root.image.name, *options] + (["--local"] if root.local else [])
    )


# --- what was launched ----------------------------------------------------------------------


def _launched(root: Root, binary: str, say: Say) -> dict[str, Any] | None:
    """The fleet module's outputs from the state, or None when nothing is launched."""
    root.check_backend(tf.name(binary))
    runner = tf.Terraform(root.work, binary, say)
    if root.backend is None:
        if not tfroot.local_resources(root.work):
            return None
    elif tfroot.recorded_backend(root.work) is None:
        # Another machine launched it: read the state from S3.
        root.work.mkdir(parents=True, exist_ok=True)
        (root.work / tfroot.MAIN).write_text(root.main_tf())
        runner.prepare()
        runner.capture("init", "-input=false")
    outputs = runner.outputs().get("fleet")
    return outputs or None


def _nothing(root: Root) -> str:
    return f"nothing launched for {root.image.name} in {root.region} (no fleet in {root.state()})"


@dataclass
class Status:
    outputs: dict[str, Any]
    group: dict[str, Any] | None
    instances: list[dict[str, Any]]


def status(
    image: ImageDef, *, region: str | None = None, use_emulator: bool = False, say: Say = print
) -> Status | None:
    binary = tf.binary()
    with _where(use_emulator, say) as endpoint:
        aws.identity(region)
        root = _root(image, region, endpoint)
        outputs = _launched(root, binary, say)
        if outputs is None:
            say(f"status: {_nothing(root)}")
            return None
        autoscaling = aws.client("autoscaling", root.region)
        ec2 = aws.client("ec2", root.region)
        name = outputs.get("autoscaling_group_name") or root.name
        group = fleet.describe_group(autoscaling, name)
        say(f"status: {image.name} in {root.region} (state {root.state()})")
        instances: list[dict[str, Any]] = []
        if group is None:
            say(
                f"  group        {name}: not found (deleted outside terraform?): invoke launch"
                f" recreates it, {_command(root, 'destroy')} forgets it"
            )
        else:
            say(f"  group        {fleet.describe_group_line(group)}")
            described = fleet.describe_instances(ec2, [i["InstanceId"] for i in group["Instances"]])
            for member in group["Instances"]:
                detail = described.get(member["InstanceId"], {})
                instances.append(detail or {"InstanceId": member["InstanceId"]})
                say(f"  instance     {fleet.describe_member(member, detail)}")
            if root.local and group["Instances"]:
                say(
                    "local: the emulator ignores the mixed instances policy and the template's"
                    " metadata options when it launches: its instances show no type from the list"
                    " and run on demand; AWS launches them as spot, of the listed types"
                )
        _say_ami(ec2, image, root.region, outputs.get("ami_id"), say)
        values = _applied_inputs(root)
        ingress = Ingress(
            tuple(values.get("ui_ingress_cidrs", [])), bool(values.get("ui_public_ingress"))
        )
        serving = [
            d
            for d in instances
            if group and d.get("InstanceId") in {i["InstanceId"] for i in fleet.in_service(group)}
        ]
        port = int(values.get("ui_port", image.ui.port))
        for line in fleet.reach_lines(
            serving,
            image=image.name,
            region=root.region,
            port=port,
            open_to=ingress.describe() if ingress.open else None,
        ):
            say(f"  {line}")
        _say_local(root, say)
        return Status(outputs, group, instances)


def _say_ami(ec2: Any, image: ImageDef, region: str, ami_id: str | None, say: Say) -> None:
    if not ami_id:
        return
    try:
        ami = catalog.get(ec2, ami_id)
    except BakeryError:
        say(f"  ami          {ami_id}: gone (deregistered?); running instances keep their volumes")
        return
    say(f"  ami          {ami_id} ({ami.get('Name', 'unnamed')}), {_state_of(ami)}")
    newest = catalog.newest(ec2, image.name, verification=catalog.PASSED)
    if newest and newest["ImageId"] != ami_id:
        say(
            f"  newer        {newest['ImageId']} is the newest verified AMI: invoke launch --image"
            f" {image.name} rolls it out to new instances"
        )


def _applied_inputs(root: Root) -> dict[str, Any]:
    try:
        return dict(json.loads((root.work / tfroot.TFVARS).read_text()))
    except (OSError, ValueError):
        return {}


def connect(
    image: ImageDef,
    *,
    region: str | None = None,
    instance: str | None = None,
    local_port: Any = None,
    use_emulator: bool = False,
    say: Say = print,
) -> int:
    """`invoke connect`: a Session Manager port forward from localhost to the UI of one instance."""
    port_override = check_port("--local-port", local_port) if local_port is not None else None
    binary = tf.binary()
    with _where(use_emulator, say) as endpoint:
        aws.identity(region)
        root = _root(image, region, endpoint)
        outputs = _launched(root, binary, say)
        if outputs is None:
            raise BakeryError(f"{_nothing(root)}: {_command(root, 'launch')} first")
        name = outputs.get("autoscaling_group_name") or root.name
        group = fleet.describe_group(aws.client("autoscaling", root.region), name)
        ready = fleet.in_service(group) if group else []
        ids = [i["InstanceId"] for i in ready]
        if instance and instance not in ids:
            raise BakeryError(
                f"--instance {instance} is not an in-service instance of {name}"
                f" ({', '.join(ids) or 'none is in service'})"
            )
        if not ids:
            raise BakeryError(
                f"no instance of {name} is in service in {root.region}"
                f" ({group.get('DesiredCapacity', 0) if group else 0} desired): {_command(root, 'status')}"
            )
        target = instance or sorted(ids)[0]
        port = int(_applied_inputs(root).get("ui_port", image.ui.port))
        command = fleet.port_forward_command(target, root.region, port, port_override)
        if root.local:
            say(f"connect: {shlex.join(command)}")
            say(
                "local: no instance runs behind the emulator, so no session was started: this is"
                " the command connect runs against AWS"
            )
            return 0
        missing = [t for t in ("aws", "session-manager-plugin") if not shutil.which(t)]
        if missing:
            say(f"connect: {shlex.join(command)}")
            raise BakeryError(
                f"{' and '.join(missing)} not on PATH: install the AWS CLI and its Session Manager"
                " plugin, then run the command above"
            )
        say(
            f"connect: forwarding localhost:{port_override or port} to the UI of {target} (port {port});"
            f" open http://localhost:{port_override or port}; Ctrl-C ends it"
        )
        return _run_session(command)


def _run_session(command: list[str]) -> int:
    """The session in the foreground: Ctrl-C is how it ends, and the CLI handles it itself."""
    proc = subprocess.Popen(command)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return proc.wait()
    finally:
        signal.signal(signal.SIGINT, previous)


def destroy(
    image: ImageDef, *, region: str | None = None, use_emulator: bool = False, say: Say = print
) -> dict[str, Any] | None:
    """`invoke destroy`: terraform destroy, then a check that nothing of the fleet is left."""
    binary = tf.binary()
    tf.version(binary)
    with _where(use_emulator, say) as endpoint:
        aws.identity(region)
        root = _root(image, region, endpoint)
        outputs = _launched(root, binary, say)
        if outputs is None:
            say(f"destroy: {_nothing(root)}")
            return None
        if not (root.work / tfroot.TFVARS).is_file():
            raise BakeryError(
                f"{rel(root.work)} holds a fleet's state but not its {tfroot.TFVARS}: run"
                f" {_command(root, 'launch')} again to rewrite it, then destroy"
            )
        say(f"destroy: {image.name} in {root.region} (state {root.state()})")
        (root.work / tfroot.MAIN).write_text(root.main_tf())  # the emulator may have moved
        runner = tf.Terraform(root.work, binary, say)
        runner.prepare()
        try:
            runner.init()
            runner.destroy()
        except tf.Stopped as e:
            raise Interrupted(
                f"destroy of {image.name} interrupted during {e.program} {e.verb}; run it again to"
                " finish (the state records what is left)"
            ) from None
        left = fleet.leftovers(
            aws.client("autoscaling", root.region),
            aws.client("ec2", root.region),
            aws.client("iam", root.region),
            image=image.name,
            name=outputs.get("autoscaling_group_name") or root.name,
            outputs=outputs,
        )
        if left:
            raise BakeryError(
                f"{runner.name} destroy finished, but these are still there: {'; '.join(left)}"
            )
        _remove(root.work)
        say(
            f"destroy: nothing of {image.name}'s fleet is left in {root.region} (group, launch"
            f" template, security group, instance role and profile, instances); removed {rel(root.work)}"
        )
        if root.local:
            say("local: the emulator's records were deleted; no instance really ran there")
        return outputs


def _remove(work: Path) -> None:
    """The working folder, and the parents it leaves empty (up to the state directory)."""
    shutil.rmtree(work, ignore_errors=True)
    top = tfroot.state_dir().resolve()
    parent = work.resolve().parent
    while parent != top and top in parent.parents:
        try:
            parent.rmdir()
        except OSError:
            break
        parent = parent.parent
