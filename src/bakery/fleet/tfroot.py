"""The root module `invoke launch` generates for one image in one region, and where it lives.

The working folder is .bakery/launch/<image>/<region>/ (.bakery/local/launch/... for the
emulator), outside terraform/ because Terraform writes .terraform.lock.hcl and .terraform/
next to the configuration. It holds:

- main.tf: the provider (the region; the emulator's endpoints in --local), the S3 backend when
  one is configured, and `module "fleet"` with a relative source to terraform/;
- terraform.auto.tfvars.json: the fleet's inputs, from the image definition, the options and
  the catalog (fleet_inputs): names and URLs only, never a secret;
- terraform.tfstate, unless the state is kept in S3.

The S3 backend is configured by environment variables (see S3Backend.from_env).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import render
from ..config import REGION_RE, ImageDef
from ..errors import BakeryError
from . import signin as signing
from .ami import models_of
from .network import Network
from .options import EVERYWHERE, Capacity, Ingress, SignIn

MODULE = render.REPO / "terraform"
STATE_DIR_ENV = "BAKERY_STATE_DIR"
MAIN = "main.tf"
TFVARS = "terraform.auto.tfvars.json"
LOCAL_STATE = "terraform.tfstate"

PROVIDER_CONSTRAINT = ">= 5.100, < 7.0"  # the module's
# The services the module's resources and data sources call.
EMULATED_SERVICES = ("autoscaling", "ec2", "elbv2", "iam", "ssm", "sts")

# The root's variables: each is the fleet module's input of the same name.
VARIABLES: dict[str, str] = {
    "name": "string",
    "image_name": "string",
    "require_verified": "bool",
    "models": "list(string)",
    "instance_types": "list(string)",
    "min_size": "number",
    "max_size": "number",
    "desired_capacity": "number",
    "vpc_id": "string",
    "subnet_ids": "list(string)",
    "ui_port": "number",
    "ui_ollama_url_env": "string",
    "ui_ingress_cidrs": "list(string)",
    "ui_public_ingress": "bool",
    "root_volume_size": "number",
    "volume_initialization_rate": "number",
    "create_load_balancer": "bool",
    "load_balancer_certificate_arn": "string",
    "load_balancer_ingress_cidrs": "list(string)",
    "oidc": "any",  # the module's object type checks it
    "allow_model_pulls": "bool",
    "target_requests_per_instance": "number",
    "tags": "map(string)",
}
NULLABLE = (
    "models",
    "root_volume_size",
    "volume_initialization_rate",
    "desired_capacity",
    "load_balancer_certificate_arn",
    "oidc",
)

BUCKET_ENV = "BAKERY_TF_BACKEND_BUCKET"
KEY_PREFIX_ENV = "BAKERY_TF_BACKEND_KEY_PREFIX"
BACKEND_REGION_ENV = "BAKERY_TF_BACKEND_REGION"
DYNAMODB_TABLE_ENV = "BAKERY_TF_BACKEND_DYNAMODB_TABLE"
DEFAULT_KEY_PREFIX = "gpu-ami-bakery"

BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
KEY_PREFIX_RE = re.compile(r"^[A-Za-z0-9!_.*'()-]+(/[A-Za-z0-9!_.*'()-]+)*$")
TABLE_RE = re.compile(r"^[A-Za-z0-9_.-]{3,255}$")


def state_dir() -> Path:
    """Where working folders live: BAKERY_STATE_DIR, else .bakery/ in the repository."""
    return Path(os.environ.get(STATE_DIR_ENV) or render.REPO / ".bakery")


def folder(image: str, region: str, *, local: bool) -> Path:
    return state_dir() / ("local/launch" if local else "launch") / image / region


@dataclass(frozen=True)
class S3Backend:
    bucket: str
    key: str
    region: str
    dynamodb_table: str | None = None

    @staticmethod
    def from_env(image: str, region: str) -> S3Backend | None:
        """BAKERY_TF_BACKEND_BUCKET turns it on; the other variables refine it."""
        bucket = os.environ.get(BUCKET_ENV, "").strip()
        if not bucket:
            return None
        if not BUCKET_RE.match(bucket):
            raise BakeryError(f"{BUCKET_ENV}={bucket!r} is not an S3 bucket name")
        prefix = os.environ.get(KEY_PREFIX_ENV, "").strip().strip("/") or DEFAULT_KEY_PREFIX
        if not KEY_PREFIX_RE.match(prefix):
            raise BakeryError(
                f"{KEY_PREFIX_ENV}={prefix!r} is not an S3 key prefix (letters, digits, !_.*'()- and /)"
            )
        bucket_region = os.environ.get(BACKEND_REGION_ENV, "").strip() or region
        if not REGION_RE.match(bucket_region):
            raise BakeryError(f"{BACKEND_REGION_ENV}={bucket_region!r} is not an AWS region name")
        table = os.environ.get(DYNAMODB_TABLE_ENV, "").strip() or None
        if table and not TABLE_RE.match(table):
            raise BakeryError(f"{DYNAMODB_TABLE_ENV}={table!r} is not a DynamoDB table name")
        key = f"{prefix}/launch/{image}/{region}/terraform.tfstate"
        return S3Backend(bucket, key, bucket_region, table)

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def _q(value: str) -> str:
    """An HCL string literal (the values here never hold ${ or %{)."""
    return json.dumps(value)


def _attributes(pairs: list[tuple[str, str]], indent: str) -> list[str]:
    """Lines `name = value`, aligned as terraform fmt aligns them."""
    width = max(len(k) for k, _ in pairs)
    return [f"{indent}{k.ljust(width)} = {v}" for k, v in pairs]


def main_tf(
    *,
    image: str,
    region: str,
    module_source: str,
    endpoint: str | None = None,
    backend: S3Backend | None = None,
) -> str:
    """main.tf of the working folder: terraform fmt-clean and the same for the same inputs."""
    where = "the local AWS emulator" if endpoint else region
    lines = [
        f"# Generated by `invoke launch` (gpu-ami-bakery) for the fleet of {image} in {where}.",
        "# Rewritten by every launch and destroy: change the image definition or the options",
        f"# instead. The values are in {TFVARS}.",
        "",
        "terraform {",
        '  required_version = ">= 1.5"',
        "",
        "  required_providers {",
        "    aws = {",
        '      source  = "hashicorp/aws"',
        f"      version = {_q(PROVIDER_CONSTRAINT)}",
        "    }",
        "  }",
    ]
    if backend is not None:
        pairs = [
            ("bucket", _q(backend.bucket)),
            ("key", _q(backend.key)),
            ("region", _q(backend.region)),
            ("encrypt", "true"),
        ]
        pairs += (
            [("dynamodb_table", _q(backend.dynamodb_table))]
            if backend.dynamodb_table
            else [("use_lockfile", "true")]
        )
        lines += ["", '  backend "s3" {', *_attributes(pairs, "    ")]
        if endpoint:
            table = backend.dynamodb_table
            emulator = [
                ("use_path_style", "true"),
                ("skip_credentials_validation", "true"),
                ("skip_metadata_api_check", "true"),
                ("skip_region_validation", "true"),
                ("skip_requesting_account_id", "true"),
                ("skip_s3_checksum", "true"),
            ]
            lines += [
                "",
                "    # The emulator's S3 (--local), with its fake credentials.",
                *_attributes(
                    [("access_key", _q("testing")), ("secret_key", _q("testing")), *emulator],
                    "    ",
                ),
                "",
                "    endpoints = {",
                *_attributes(
                    [(s, _q(endpoint)) for s in ("s3", "dynamodb") if s == "s3" or table],
                    "      ",
                ),
                "    }",
            ]
        lines.append("  }")
    lines += ["}", "", 'provider "aws" {', f"  region = {_q(region)}"]
    if endpoint:
        lines += [
            "",
            "  # The local AWS emulator (--local): fake credentials, no account or region checks,",
            "  # and few retries: its errors are not transient.",
            *_attributes(
                [
                    ("access_key", _q("testing")),
                    ("secret_key", _q("testing")),
                    ("max_retries", "2"),
                    ("skip_credentials_validation", "true"),
                    ("skip_metadata_api_check", "true"),
                    ("skip_region_validation", "true"),
                    ("skip_requesting_account_id", "true"),
                ],
                "  ",
            ),
            "",
            "  endpoints {",
            *_attributes([(s, _q(endpoint)) for s in EMULATED_SERVICES], "    "),
            "  }",
        ]
    lines += [
        "}",
        "",
        "# Each is the fleet module's input of the same name (terraform/README.md),",
        f"# set in {TFVARS}.",
    ]
    for name, kind in VARIABLES.items():
        if name in NULLABLE:
            lines += [
                f'variable "{name}" {{',
                *_attributes([("type", kind), ("default", "null")], "  "),
                "}",
            ]
        else:
            lines.append(f'variable "{name}" {{ type = {kind} }}')
    lines += [
        "",
        'module "fleet" {',
        f"  source = {_q(module_source)}",
        "",
        *_attributes([(name, f"var.{name}") for name in VARIABLES], "  "),
        "}",
        "",
        'output "fleet" {',
        *_attributes(
            [
                ("description", _q("Every output of the fleet module (invoke status reads them).")),
                ("value", "module.fleet"),
            ],
            "  ",
        ),
        "}",
    ]
    return "\n".join(lines) + "\n"


def module_source(work: Path) -> str:
    """terraform/, relative to the working folder (Terraform wants ./ or ../ for local paths)."""
    rel = os.path.relpath(MODULE, work)
    return rel if rel.startswith("../") else f"./{rel}"


def fleet_inputs(
    image: ImageDef,
    name: str,
    ami: dict[str, Any],
    *,
    capacity: Capacity,
    ingress: Ingress,
    net: Network,
    allow_unverified: bool,
    root_volume_size: int | None = None,
    signin: SignIn | None = None,
) -> dict[str, Any]:
    """terraform.auto.tfvars.json: the module's inputs from the definition, the options and the
    catalog. Behind the load balancer, --allow-cidr names who reaches it (everyone signs in),
    and the instances take the UI port from it alone."""
    balanced = signin is not None
    reach = [*ingress.cidrs, *([EVERYWHERE] if ingress.public else [])]
    return {
        "name": name,
        "image_name": image.name,
        "require_verified": not allow_unverified,
        "models": models_of(ami, image),
        "instance_types": list(image.launch.instance_types),
        "min_size": capacity.minimum,
        "max_size": capacity.maximum,
        "desired_capacity": capacity.desired,
        "vpc_id": net.vpc_id,
        "subnet_ids": list(net.subnet_ids),
        "ui_port": image.ui.port,
        "ui_ollama_url_env": image.ui.ollama_url_env,
        "ui_ingress_cidrs": [] if balanced else list(ingress.cidrs),
        "ui_public_ingress": False if balanced else ingress.public,
        "root_volume_size": root_volume_size,
        # The launch template initializes each volume from its snapshot at this rate (null: lazily).
        "volume_initialization_rate": image.launch.volume_initialization_rate,
        "create_load_balancer": balanced,
        "load_balancer_certificate_arn": signin.certificate_arn if signin else None,
        "load_balancer_ingress_cidrs": (reach or [EVERYWHERE]) if balanced else [EVERYWHERE],
        "oidc": signing.module_input(signin) if signin else None,
        "allow_model_pulls": signin.allow_model_pulls if signin else False,
        "target_requests_per_instance": capacity.requests_per_instance,
        "tags": dict(sorted(image.tags.items())),
    }


def tfvars_json(values: dict[str, Any]) -> str:
    unknown = sorted(set(values) - set(VARIABLES))
    missing = sorted(set(VARIABLES) - set(values))
    if unknown or missing:  # a programming error, not the user's
        raise ValueError(f"tfvars: unknown {unknown}, missing {missing}")
    return json.dumps({k: values[k] for k in VARIABLES}, indent=2) + "\n"


def write(work: Path, main: str, tfvars: str) -> None:
    work.mkdir(parents=True, exist_ok=True)
    (work / MAIN).write_text(main)
    (work / TFVARS).write_text(tfvars)


# -- what the folder already holds ----------------------------------------------------------


def recorded_backend(work: Path) -> str | None:
    """Where the folder's state is: 's3://bucket/key', 'local' (a state file that holds
    resources), or None (nothing launched from here)."""
    cache = work / ".terraform" / "terraform.tfstate"  # terraform's record of the backend
    try:
        data = json.loads(cache.read_text())
    except (OSError, ValueError):
        data = {}
    backend = data.get("backend") or {}
    if backend.get("type") == "s3":
        config = backend.get("config") or {}
        return f"s3://{config.get('bucket')}/{config.get('key')}"
    return "local" if local_resources(work) else None


def local_resources(work: Path) -> int:
    """How many resources the folder's local state file holds (0 when there is none)."""
    try:
        state = json.loads((work / LOCAL_STATE).read_text())
    except (OSError, ValueError):
        return 0
    return sum(1 for r in state.get("resources", []) if r.get("mode") == "managed")
