"""Runs the real terraform binary on a copy of the module, so nothing is written in the tree.

Terraform writes `.terraform.lock.hcl` next to the configuration whatever TF_DATA_DIR says,
so every run works on a temporary copy of `terraform/` (and of the test root, in the
repository's layout, so relative module sources resolve).

Providers: TF_PLUGIN_MIRROR (default /opt/tf-plugins) when that directory exists, through the
CLI config the tool writes (bakery.terraform.write_cli_config: it serves OpenTofu too) in
TF_CLI_CONFIG_FILE; otherwise the normal registry install. The mirror is a
test-time detail of machines without internet, never something the module needs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tooling import require_tool  # a missing tool fails the test, never skips it

from bakery import terraform as tf

REPO = Path(__file__).resolve().parents[2]
MODULE = REPO / "terraform"
ROOTS = REPO / "tests" / "terraform" / "roots"
DEFAULT_MIRROR = "/opt/tf-plugins"


def terraform_env(work: Path, plugin_cache: Path) -> dict[str, str]:
    """The environment for terraform (or tofu): quiet, non-interactive, providers from the
    mirror if any, through the same CLI config the tool writes."""
    env = dict(os.environ)
    env.update(
        TF_IN_AUTOMATION="1",
        TF_INPUT="0",
        CHECKPOINT_DISABLE="1",
        TF_PLUGIN_CACHE_DIR=str(plugin_cache),
    )
    plugin_cache.mkdir(parents=True, exist_ok=True)
    mirror = Path(os.environ.get("TF_PLUGIN_MIRROR", DEFAULT_MIRROR))
    if mirror.is_dir():
        env["TF_CLI_CONFIG_FILE"] = str(tf.write_cli_config(work, mirror))
    else:
        (work / "terraformrc").write_text("")
        env["TF_CLI_CONFIG_FILE"] = str(work / "terraformrc")
    return env


def stage(work: Path, root: str | None = None) -> Path:
    """Copies the module (and a test root) under `work` in the repository's layout.

    Returns the directory to run terraform in: the root's copy, or the module's copy.
    """
    ignore = shutil.ignore_patterns(".terraform", ".terraform.lock.hcl", "*.tfstate*")
    shutil.copytree(MODULE, work / "terraform", ignore=ignore)
    if root is None:
        return work / "terraform"
    dest = work / "tests" / "terraform" / "roots" / root
    shutil.copytree(ROOTS / root, dest, ignore=ignore)
    return dest


class Terraform:
    """terraform -chdir=<dir>, with its data dir and state kept in the temporary work dir."""

    def __init__(self, chdir: Path, env: Mapping[str, str], binary: str | None = None) -> None:
        self.binary = binary or require_tool("terraform")
        self.chdir = chdir
        self.env = dict(env)
        self.env["TF_DATA_DIR"] = str(chdir / ".terraform")

    def run(
        self, *args: str, check: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [self.binary, f"-chdir={self.chdir}", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"terraform {' '.join(args)} exited {proc.returncode}\n"
                f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
            )
        return proc

    def init(self, *extra: str) -> None:
        self.run("init", "-no-color", "-input=false", *extra)

    def write_vars(self, values: Mapping[str, Any], name: str = "test.auto") -> Path:
        path = self.chdir / f"{name}.tfvars.json"
        path.write_text(json.dumps(values, indent=2))
        return path

    def apply(self, values: Mapping[str, Any]) -> dict[str, Any]:
        self.write_vars(values)
        self.run("apply", "-no-color", "-input=false", "-auto-approve")
        return self.outputs()

    def plan(self, name: str, values: Mapping[str, Any]) -> subprocess.CompletedProcess[str]:
        """A saved plan `<name>.tfplan`, from `<name>.tfvars.json`; several may run at once."""
        var_file = self.write_vars(values, name)
        return self.run(
            "plan",
            "-no-color",
            "-input=false",
            "-lock=false",
            f"-var-file={var_file.name}",
            f"-out={name}.tfplan",
            check=False,
        )

    def show_plan(self, name: str) -> dict[str, Any]:
        return json.loads(self.run("show", "-json", f"{name}.tfplan").stdout)

    def destroy(self) -> None:
        self.run("destroy", "-no-color", "-input=false", "-auto-approve")

    def outputs(self) -> dict[str, Any]:
        raw = json.loads(self.run("output", "-json").stdout)
        return {name: item["value"] for name, item in raw.items()}


def plugin_cache(base_temp: Path) -> Path:
    """One provider cache per pytest session (pass tmp_path_factory.getbasetemp())."""
    return Path(os.environ.get("TF_PLUGIN_CACHE_DIR") or base_temp / "tf-plugin-cache")


# -- the AMI catalog, as `invoke bake` and `invoke verify` leave it --------------------------

CATALOG_TAGS = {"bakery:managed-by": "gpu-ami-bakery", "bakery:fingerprint": "0" * 16}


def register_ami(ec2: Any, name: str, tags: Mapping[str, str]) -> str:
    """Registers an AMI in the emulator, tagged like the bakery's (moto keeps its own root mapping)."""
    image_id: str = ec2.register_image(
        Name=name,
        Architecture="x86_64",
        VirtualizationType="hvm",
        RootDeviceName="/dev/sda1",
        BlockDeviceMappings=[
            {"DeviceName": "/dev/sda1", "Ebs": {"VolumeSize": 100, "VolumeType": "gp3"}}
        ],
    )["ImageId"]
    if tags:
        ec2.create_tags(
            Resources=[image_id], Tags=[{"Key": k, "Value": v} for k, v in tags.items()]
        )
    return image_id


def default_network(ec2: Any) -> tuple[str, list[str]]:
    """The emulator's default VPC and its subnets."""
    vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0][
        "VpcId"
    ]
    subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"]
    return vpc, sorted(s["SubnetId"] for s in subnets)
