"""One image's fleet in one region: its working folder (see tfroot), where its state is, how
terraform runs there, and the emulator it runs against with --local."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import botocore.exceptions

from .. import aws, local
from .. import terraform as tf
from ..config import ImageDef, rel
from ..errors import BakeryError
from . import tfroot
from .options import fleet_name

Say = Callable[[str], None]

SSM_POLICY = "AmazonSSMManagedInstanceCore"  # the module attaches it to the instance role


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

    def command(self, task: str, *options: str) -> str:
        """How to run another task on this fleet, as a user types it."""
        return " ".join(
            ["invoke", task, "--image", self.image.name, *options]
            + (["--local"] if self.local else [])
        )

    def nothing(self) -> str:
        return (
            f"nothing launched for {self.image.name} in {self.region} (no fleet in {self.state()})"
        )

    def say_local(self, say: Say) -> None:
        if self.local:
            say(
                "local: no instance really boots behind the emulator: the fleet exists as API"
                " objects only, nothing serves on any address shown, and no spot capacity was sought"
            )

    def launched(self, binary: str, say: Say) -> dict[str, Any] | None:
        """The fleet module's outputs from the state, or None when nothing is launched."""
        self.check_backend(tf.name(binary))
        runner = tf.Terraform(self.work, binary, say)
        if self.backend is None:
            if not tfroot.local_resources(self.work):
                return None
        elif tfroot.recorded_backend(self.work) is None:
            # Another machine launched it: read the state from S3.
            self.work.mkdir(parents=True, exist_ok=True)
            (self.work / tfroot.MAIN).write_text(self.main_tf())
            runner.prepare()
            runner.capture("init", "-input=false")
        outputs = runner.outputs().get("fleet")
        return outputs or None

    def applied_inputs(self) -> dict[str, Any]:
        """The inputs of the last launch (its tfvars), {} when there are none."""
        try:
            return dict(json.loads((self.work / tfroot.TFVARS).read_text()))
        except (OSError, ValueError):
            return {}


def root_for(image: ImageDef, region: str | None, endpoint: str | None) -> Root:
    where = aws.region(region)
    backend = tfroot.S3Backend.from_env(image.name, where)
    work = tfroot.folder(image.name, where, local=endpoint is not None)
    return Root(image, fleet_name(image), where, work, backend, endpoint)


@contextlib.contextmanager
def where(use_emulator: bool, say: Say) -> Iterator[str | None]:
    """AWS (None), or the emulator's endpoint: AWS_ENDPOINT_URL's, else one started here."""
    if not use_emulator:
        yield None
        return
    with local.emulator(say, aws_managed_policies=True) as endpoint:
        yield endpoint


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
