"""The root module `invoke launch` generates: main.tf and terraform.auto.tfvars.json, exactly
(golden files), the S3 backend settings, where the working folder lives, and what it records."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from bakery import catalog, config
from bakery import terraform as tf
from bakery.errors import BakeryError
from bakery.fleet import ami, options, tfroot
from bakery.fleet.network import Network
from bakery.fleet.root import Root

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "launch"
UPDATE = os.environ.get("BAKERY_UPDATE_GOLDEN") == "1"  # regenerate after a deliberate change
ENDPOINT = "http://127.0.0.1:5000"
IMAGE = "deepseek-r1-7b"
AMI = {
    "ImageId": "ami-0123456789abcdef0",
    "Name": "deepseek-r1-7b-20250601-120000-abcdef",
    "RootDeviceName": "/dev/sda1",
    "BlockDeviceMappings": [{"DeviceName": "/dev/sda1", "Ebs": {"VolumeSize": 100}}],
    "Tags": [
        {"Key": catalog.MODELS, "Value": "deepseek-r1:7b"},
        {"Key": catalog.VERIFICATION, "Value": catalog.PASSED},
    ],
}
NETWORK = Network(
    "vpc-0123456789abcdef0", ("subnet-0123456789abcdef0", "subnet-0fedcba9876543210"), True
)
BACKEND = tfroot.S3Backend(
    "acme-tf-state", "gpu-ami-bakery/launch/deepseek-r1-7b/eu-west-1/terraform.tfstate", "us-east-1"
)


SIGN_IN = options.SignIn(
    "arn:aws:acm:eu-west-1:123456789012:certificate/abc-123",
    "https://id.example.com",
    "bakery",
    "/bakery/oidc-client-secret",
    "https://id.example.com/authorize",
    "https://id.example.com/token",
    "https://id.example.com/userinfo",
)


def fixed(count: int) -> options.Capacity:
    return options.Capacity(count, count, count)


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert text == path.read_text(), f"{name} differs from its golden file"


@pytest.mark.parametrize(
    ("golden", "region", "source", "endpoint", "backend"),
    [
        ("aws.main.tf", "eu-west-1", "../../../../terraform", None, None),
        ("aws-s3.main.tf", "eu-west-1", "../../../../terraform", None, BACKEND),
        (
            "aws-s3-dynamodb.main.tf",
            "eu-west-1",
            "../../../../terraform",
            None,
            tfroot.S3Backend(BACKEND.bucket, BACKEND.key, "us-east-1", "acme-tf-locks"),
        ),
        ("local.main.tf", "us-east-1", "../../../../../terraform", ENDPOINT, None),
        ("local-s3.main.tf", "us-east-1", "../../../../../terraform", ENDPOINT, BACKEND),
    ],
    ids=["aws", "aws-s3", "aws-s3-dynamodb", "local", "local-s3"],
)
def test_main_tf(
    golden: str, region: str, source: str, endpoint: str | None, backend: tfroot.S3Backend | None
) -> None:
    text = tfroot.main_tf(
        image=IMAGE, region=region, module_source=source, endpoint=endpoint, backend=backend
    )
    check_golden(golden, text)


def test_main_tf_never_holds_an_ami_id() -> None:
    for path in GOLDEN.glob("*.tf"):
        assert not re.search(r"\bami-[0-9a-f]{8,17}\b", path.read_text()), path


def test_every_root_variable_is_a_module_input() -> None:
    module_inputs = (tfroot.MODULE / "variables.tf").read_text()
    missing = [v for v in tfroot.VARIABLES if f'variable "{v}"' not in module_inputs]
    assert missing == []


@pytest.mark.parametrize(
    ("golden", "kwargs"),
    [
        (
            "closed.tfvars.json",
            {"capacity": fixed(1), "ingress": options.Ingress(), "allow_unverified": False},
        ),
        (
            "open-unverified-local.tfvars.json",
            {
                "capacity": fixed(2),
                "ingress": options.Ingress(("198.51.100.7/32", "203.0.113.0/24")),
                "allow_unverified": True,
                "root_volume_size": 100,
            },
        ),
        (
            "public-zero.tfvars.json",
            {"capacity": fixed(0), "ingress": options.Ingress((), True), "allow_unverified": False},
        ),
        (
            "balanced-scaling.tfvars.json",
            {
                "capacity": options.Capacity(1, 4, None, 20),
                "ingress": options.Ingress(("203.0.113.0/24",)),
                "allow_unverified": False,
                "signin": SIGN_IN,
            },
        ),
    ],
    ids=["closed", "open-unverified-local", "public-zero", "balanced-scaling"],
)
def test_tfvars(golden: str, kwargs: dict) -> None:
    image = config.load(IMAGE)
    values = tfroot.fleet_inputs(image, IMAGE, AMI, net=NETWORK, **kwargs)
    check_golden(golden, tfroot.tfvars_json(values))


def test_tfvars_come_from_the_definition_and_the_ami() -> None:
    image = config.load(IMAGE)
    values = tfroot.fleet_inputs(
        image,
        IMAGE,
        AMI,
        capacity=fixed(3),
        ingress=options.Ingress(),
        net=NETWORK,
        allow_unverified=False,
    )
    assert values["instance_types"] == list(image.launch.instance_types)
    assert (values["ui_port"], values["ui_ollama_url_env"]) == (
        image.ui.port,
        image.ui.ollama_url_env,
    )
    assert values["tags"] == image.tags
    assert values["models"] == ["deepseek-r1:7b"]  # the AMI's bakery:models tag
    assert (values["min_size"], values["desired_capacity"], values["max_size"]) == (3, 3, 3)


def test_behind_the_balancer_the_ui_takes_it_alone() -> None:
    values = tfroot.fleet_inputs(
        config.load(IMAGE),
        IMAGE,
        AMI,
        capacity=options.Capacity(1, 4, None),
        ingress=options.Ingress(("203.0.113.0/24",)),
        net=NETWORK,
        allow_unverified=False,
        signin=SIGN_IN,
    )
    assert (values["ui_ingress_cidrs"], values["ui_public_ingress"]) == ([], False)
    assert values["load_balancer_ingress_cidrs"] == ["203.0.113.0/24"]
    assert values["desired_capacity"] is None  # the scaling policy's, never reset by a launch
    assert values["oidc"]["client_secret_ssm_parameter"] == SIGN_IN.secret_parameter


def test_behind_the_balancer_everyone_may_reach_the_sign_in_by_default() -> None:
    values = tfroot.fleet_inputs(
        config.load(IMAGE),
        IMAGE,
        AMI,
        capacity=fixed(1),
        ingress=options.Ingress(),
        net=NETWORK,
        allow_unverified=False,
        signin=SIGN_IN,
    )
    assert values["load_balancer_ingress_cidrs"] == ["0.0.0.0/0"]


def test_models_fall_back_to_the_definition() -> None:
    image = config.load(IMAGE)
    assert ami.models_of({"Tags": []}, image) == image.model_names


def test_tfvars_refuse_an_unknown_variable() -> None:
    with pytest.raises(ValueError, match="unknown"):
        tfroot.tfvars_json({**dict.fromkeys(tfroot.VARIABLES), "ami_id": "x"})


# -- where it lives ---------------------------------------------------------------------------


def test_working_folders(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(tfroot.STATE_DIR_ENV, str(tmp_path))
    assert (
        tfroot.folder(IMAGE, "eu-west-1", local=False) == tmp_path / "launch" / IMAGE / "eu-west-1"
    )
    assert tfroot.folder(IMAGE, "us-east-1", local=True) == (
        tmp_path / "local" / "launch" / IMAGE / "us-east-1"
    )


def test_default_state_dir_is_in_the_repository(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(tfroot.STATE_DIR_ENV, raising=False)
    assert tfroot.state_dir() == tfroot.MODULE.parent / ".bakery"


def test_module_source_is_relative(tmp_path: Path) -> None:
    work = tfroot.MODULE.parent / ".bakery" / "launch" / IMAGE / "eu-west-1"
    assert tfroot.module_source(work) == "../../../../terraform"
    assert tfroot.module_source(tfroot.MODULE.parent) == "./terraform"


# -- the S3 backend ---------------------------------------------------------------------------

BACKEND_ENV = (
    tfroot.BUCKET_ENV,
    tfroot.KEY_PREFIX_ENV,
    tfroot.BACKEND_REGION_ENV,
    tfroot.DYNAMODB_TABLE_ENV,
)


@pytest.fixture
def backend_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in BACKEND_ENV:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_no_bucket_no_backend(backend_env: pytest.MonkeyPatch) -> None:
    assert tfroot.S3Backend.from_env(IMAGE, "eu-west-1") is None


def test_backend_defaults(backend_env: pytest.MonkeyPatch) -> None:
    backend_env.setenv(tfroot.BUCKET_ENV, "acme-tf-state")
    assert tfroot.S3Backend.from_env(IMAGE, "eu-west-1") == tfroot.S3Backend(
        "acme-tf-state",
        "gpu-ami-bakery/launch/deepseek-r1-7b/eu-west-1/terraform.tfstate",
        "eu-west-1",
        None,
    )


def test_backend_settings(backend_env: pytest.MonkeyPatch) -> None:
    backend_env.setenv(tfroot.BUCKET_ENV, "acme-tf-state")
    backend_env.setenv(tfroot.KEY_PREFIX_ENV, "/platform/llm/")
    backend_env.setenv(tfroot.BACKEND_REGION_ENV, "us-east-1")
    backend_env.setenv(tfroot.DYNAMODB_TABLE_ENV, "acme-tf-locks")
    backend = tfroot.S3Backend.from_env(IMAGE, "eu-west-1")
    assert backend == tfroot.S3Backend(
        "acme-tf-state",
        "platform/llm/launch/deepseek-r1-7b/eu-west-1/terraform.tfstate",
        "us-east-1",
        "acme-tf-locks",
    )
    assert backend.describe() == (
        "s3://acme-tf-state/platform/llm/launch/deepseek-r1-7b/eu-west-1/terraform.tfstate"
    )


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        (
            tfroot.BUCKET_ENV,
            "Acme_State",
            "BAKERY_TF_BACKEND_BUCKET='Acme_State' is not an S3 bucket name",
        ),
        (
            tfroot.KEY_PREFIX_ENV,
            "a b",
            "BAKERY_TF_BACKEND_KEY_PREFIX='a b' is not an S3 key prefix",
        ),
        (
            tfroot.BACKEND_REGION_ENV,
            "europe",
            "BAKERY_TF_BACKEND_REGION='europe' is not an AWS region name",
        ),
        (
            tfroot.DYNAMODB_TABLE_ENV,
            "x",
            "BAKERY_TF_BACKEND_DYNAMODB_TABLE='x' is not a DynamoDB table name",
        ),
    ],
    ids=["bucket", "prefix", "region", "table"],
)
def test_backend_refuses(
    backend_env: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    backend_env.setenv(tfroot.BUCKET_ENV, "acme-tf-state")
    backend_env.setenv(name, value)
    with pytest.raises(BakeryError) as e:
        tfroot.S3Backend.from_env(IMAGE, "eu-west-1")
    assert str(e.value).startswith(message)


# -- what a folder records ----------------------------------------------------------------------


def _state(work: Path, resources: int) -> None:
    work.mkdir(parents=True, exist_ok=True)
    state = {"resources": [{"mode": "managed"}] * resources + [{"mode": "data"}]}
    (work / tfroot.LOCAL_STATE).write_text(json.dumps(state))


def test_recorded_backend(tmp_path: Path) -> None:
    assert tfroot.recorded_backend(tmp_path / "none") is None
    _state(tmp_path / "empty", 0)
    assert tfroot.recorded_backend(tmp_path / "empty") is None
    _state(tmp_path / "local", 3)
    assert tfroot.recorded_backend(tmp_path / "local") == "local"
    s3 = tmp_path / "s3" / ".terraform"
    s3.mkdir(parents=True)
    (s3 / "terraform.tfstate").write_text(
        json.dumps({"backend": {"type": "s3", "config": {"bucket": "b", "key": "k/x"}}})
    )
    assert tfroot.recorded_backend(tmp_path / "s3") == "s3://b/k/x"


def test_a_changed_backend_is_refused(tmp_path: Path) -> None:
    work = tmp_path / "launch" / IMAGE / "eu-west-1"
    _state(work, 8)
    root = Root(config.load(IMAGE), IMAGE, "eu-west-1", work, BACKEND, None)
    with pytest.raises(BakeryError) as e:
        root.check_backend()
    assert "keeps its state in" in str(e.value)
    assert f"BAKERY_TF_BACKEND_BUCKET now names {BACKEND.describe()}" in str(e.value)
    assert "init -migrate-state" in str(e.value)


# -- terraform itself -------------------------------------------------------------------------


def _package(root: Path, relative: str) -> Path:
    """A provider package in a mirror's layout: a platform folder (unpacked) or a zip (packed)."""
    path = root / relative
    if path.suffix == ".zip":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"PK")
    else:
        path.mkdir(parents=True)
        (path / "terraform-provider-aws_v5.100.0_x5").write_text("provider")
    return path


AWS = "hashicorp/aws/5.100.0/linux_amd64"
NULL_ZIP = "hashicorp/null/terraform-provider-null_3.2.4_linux_amd64.zip"


def test_cli_config_gives_both_registries_the_mirror(tmp_path: Path) -> None:
    mirror, folder = tmp_path / "mirror", tmp_path / "work"
    aws = _package(mirror, f"registry.terraform.io/{AWS}")
    null = _package(mirror, f"registry.terraform.io/{NULL_ZIP}")
    folder.mkdir()
    path = tf.write_cli_config(folder, mirror)
    links = folder / tf.MIRROR_LINKS
    for registry in ("registry.terraform.io", "registry.opentofu.org"):
        assert (links / registry / AWS).is_symlink()
        assert (links / registry / AWS).resolve() == aws.resolve()
        assert (links / registry / NULL_ZIP).resolve() == null.resolve()
        # Only packages are links: neither program follows one higher up.
        assert not (links / registry / "hashicorp").is_symlink()
    text = path.read_text()
    assert f'path    = "{links}"' in text
    both = '["registry.terraform.io/hashicorp/*", "registry.opentofu.org/hashicorp/*"]'
    assert f"include = {both}" in text
    assert f"exclude = {both}" in text


def test_each_registry_keeps_its_own_packages_and_stale_links_go(tmp_path: Path) -> None:
    mirror, folder = tmp_path / "mirror", tmp_path / "work"
    terraform_aws = _package(mirror, f"registry.terraform.io/{AWS}")
    tofu_aws = _package(mirror, f"registry.opentofu.org/{AWS}")
    folder.mkdir()
    stale = folder / tf.MIRROR_LINKS / "registry.opentofu.org" / "hashicorp" / "gone"
    stale.mkdir(parents=True)
    tf.write_cli_config(folder, mirror)
    links = folder / tf.MIRROR_LINKS
    assert (links / "registry.terraform.io" / AWS).resolve() == terraform_aws.resolve()
    assert (links / "registry.opentofu.org" / AWS).resolve() == tofu_aws.resolve()
    assert not stale.exists()


def test_mirror_only_when_it_exists(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TF_PLUGIN_MIRROR", str(tmp_path / "absent"))
    runner = tf.Terraform(tmp_path, "terraform")
    assert runner.env.get("TF_CLI_CONFIG_FILE") == os.environ.get("TF_CLI_CONFIG_FILE")
    monkeypatch.setenv("TF_PLUGIN_MIRROR", str(tmp_path))
    runner = tf.Terraform(tmp_path, "terraform")
    assert runner.env["TF_CLI_CONFIG_FILE"] == str(tmp_path / tf.CLI_CONFIG)
    assert (runner.env["TF_IN_AUTOMATION"], runner.env["TF_INPUT"]) == ("1", "0")
    assert runner.env["CHECKPOINT_DISABLE"] == "1"


def test_failure_is_terraforms_first_error_on_one_line() -> None:
    output = [
        "module.fleet.aws_security_group.this: Creating...",
        "╷",
        "│ Error: creating Auto Scaling Group (deepseek-r1-7b): operation error Auto Scaling:",
        "│ CreateAutoScalingGroup, https response error StatusCode: 400, api error ValidationError:",
        "│ ",
        "│   with module.fleet.aws_autoscaling_group.this,",
        '│   on ../../../../terraform/main.tf line 253, in resource "aws_autoscaling_group" "this":',
        "╵",
    ]
    assert tf.failure(output) == (
        "Error: creating Auto Scaling Group (deepseek-r1-7b): operation error Auto Scaling:"
        " CreateAutoScalingGroup, https response error StatusCode: 400, api error ValidationError:"
    )
