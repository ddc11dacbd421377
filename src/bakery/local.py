"""The local AWS emulator behind --local: the real control plane, no machines behind it.

Uses the emulator that AWS_ENDPOINT_URL points at when set; otherwise starts one (moto) for
the duration of the task and stops it after, so nothing it held survives.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

from . import aws
from .errors import BakeryError

# The emulator answers for this account; real credentials must never reach it.
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
DEFAULT_REGION = "us-east-1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _reachable(url: str) -> bool:
    """Something accepts connections there (cheap: the emulator's state can be large)."""
    parsed = urllib.parse.urlsplit(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        socket.create_connection((parsed.hostname or "127.0.0.1", port), timeout=3).close()
    except OSError:
        return False
    return True


# moto knows AWS managed policies (AmazonSSMManagedInstanceCore...) only when this is "true"
# as an account's IAM backend is made; it reads the variable in its own process.
MANAGED_POLICIES_ENV = "MOTO_IAM_LOAD_MANAGED_POLICIES"


def teach_fleet_network_interfaces() -> None:
    """moto 5.2 builds a fleet's instances from a launch template's top-level SubnetId and
    security groups only; EC2 also takes them from its first network interface, which is
    where Packer puts them when a subnet is given. Copy them up as a template is stored, so a
    local bake in a chosen subnet runs as it does on AWS (else the emulator looks for a
    default VPC). Applies to an emulator running in this process; idempotent."""
    from moto.ec2.models import launch_templates

    version = launch_templates.LaunchTemplateVersion
    if getattr(version.__init__, "_bakery", False):
        return
    original = version.__init__

    def init(self: Any, template: Any, number: int, data: dict[str, Any], description: str) -> None:
        nic = (data.get("NetworkInterfaces") or [{}])[0]
        if nic.get("SubnetId") and "SubnetId" not in data:
            groups = [g["GroupId"] if isinstance(g, dict) else g for g in nic.get("Groups") or []]
            data = {**data, "SubnetId": nic["SubnetId"], "GroupSet": groups}
        original(self, template, number, data, description)

    init._bakery = True  # type: ignore[attr-defined]
    version.__init__ = init  # type: ignore[method-assign]


@contextlib.contextmanager
def emulator(say=print, *, aws_managed_policies: bool = False) -> Iterator[str]:
    """Point boto3 (and the packer/terraform we start) at an emulator; yield its URL.

    aws_managed_policies: an emulator started here knows AWS managed policies (one found at
    AWS_ENDPOINT_URL must have been started with MOTO_IAM_LOAD_MANAGED_POLICIES=true)."""
    saved = {
        k: os.environ.get(k)
        for k in [
            MANAGED_POLICIES_ENV,
            *FAKE_CREDENTIALS,
            "AWS_ENDPOINT_URL",
            "AWS_REGION",
            "AWS_DEFAULT_REGION",
            "AWS_PROFILE",
            "AWS_SESSION_TOKEN",
        ]
    }
    server = None
    url = os.environ.get("AWS_ENDPOINT_URL")
    try:
        if url:
            if not _reachable(url):
                raise BakeryError(
                    f"AWS_ENDPOINT_URL={url} does not answer: start the emulator or unset it"
                )
            say(f"local: using the emulator at {url} (AWS_ENDPOINT_URL)")
        else:
            try:
                from moto.server import ThreadedMotoServer
            except ImportError:
                raise BakeryError(
                    "--local needs the emulator: pip install 'gpu-ami-bakery[local]' (moto[server])"
                ) from None
            logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no access log on our output
            if aws_managed_policies:
                os.environ[MANAGED_POLICIES_ENV] = "true"
            teach_fleet_network_interfaces()
            port = _free_port()
            server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
            server.start()
            url = f"http://127.0.0.1:{port}"
            say(f"local: started an emulator at {url}; it stops when this task ends")
        os.environ.update(FAKE_CREDENTIALS)
        os.environ.pop("AWS_PROFILE", None)
        os.environ.pop("AWS_SESSION_TOKEN", None)
        os.environ["AWS_ENDPOINT_URL"] = url
        if not (os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")):
            os.environ["AWS_DEFAULT_REGION"] = DEFAULT_REGION
        aws.reset()
        yield url
    finally:
        if server is not None:
            server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        aws.reset()


# Where a local run registers the base parameters the emulator lacks: AWS reserves /aws/, so
# the emulator refuses to hold its public parameters (Ubuntu's, the Deep Learning AMIs').
STAND_IN_PREFIX = "/bakery/emulator"


def stand_in_base(ssm: Any, ec2: Any, parameter: str, say: Callable[[str], None] = print) -> str:
    """The parameter a local run resolves the base through: the real one if the emulator has
    it, else a stand-in under STAND_IN_PREFIX pointing at one of the emulator's stock AMIs."""
    try:
        ssm.get_parameter(Name=parameter)
        return parameter
    except ssm.exceptions.ParameterNotFound:
        pass
    stand_in = STAND_IN_PREFIX + parameter
    try:
        value = ssm.get_parameter(Name=stand_in)["Parameter"]["Value"]
    except ssm.exceptions.ParameterNotFound:
        patterns = (
            ["*Deep Learning*Ubuntu*", "*Deep Learning*"] if "deeplearning" in parameter else []
        )
        patterns += ["ubuntu/images/*", "*"]
        stock = []
        for pattern in patterns:
            stock = ec2.describe_images(Filters=[{"Name": "name", "Values": [pattern]}])["Images"]
            if stock:
                break
        if not stock:
            raise BakeryError(
                "the emulator holds no AMI at all to stand in for the base image"
            ) from None
        chosen = sorted(stock, key=lambda i: i["ImageId"])[0]
        value = chosen["ImageId"]
        ssm.put_parameter(Name=stand_in, Value=value, Type="String", DataType="aws:ec2:image")
        say(
            f"local: the emulator has no public parameter {parameter}; registered {stand_in} ->"
            f" {value} ({chosen.get('Name', 'unnamed')}), one of its stock AMIs, as a stand-in base"
        )
    else:
        say(
            f"local: resolving the base through the stand-in {stand_in} -> {value} (registered earlier)"
        )
    return stand_in
