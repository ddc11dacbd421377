"""The module as code: formatting, validation, checkov, documentation, and input validation.

None of these needs the emulator. A missing terraform or checkov fails the test (require_tool).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from tfharness import (
    MODULE,
    ROOTS,
    Terraform,
    plugin_cache,
    require_tool,
    stage,
    terraform_env,
)
from tooling import NO_TOFU, tofu

TF_FILES = sorted(MODULE.glob("*.tf"))


def _blocks(kind: str) -> dict[str, str]:
    """Top-level `kind "name" { ... }` blocks of the module's .tf files, by name (formatted code)."""
    blocks: dict[str, str] = {}
    for path in TF_FILES:
        for match in re.finditer(
            rf'^{kind} "([^"]+)" {{\n(.*?)^}}$', path.read_text(), re.MULTILINE | re.DOTALL
        ):
            blocks[match.group(1)] = match.group(2)
    return blocks


VARIABLES = _blocks("variable")
OUTPUTS = _blocks("output")


@pytest.mark.terraform
@pytest.mark.parametrize("path", [MODULE, ROOTS], ids=["module", "test-roots"])
def test_terraform_fmt(path: Path) -> None:
    proc = subprocess.run(
        [require_tool("terraform"), "fmt", "-check", "-recursive", "-diff", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.terraform
@pytest.mark.parametrize("program", ["terraform", "tofu"])
@pytest.mark.parametrize("subdir", [".", "examples/spot-fleet"], ids=["module", "example"])
def test_terraform_validate(
    subdir: str, program: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    binary = require_tool("terraform") if program == "terraform" else tofu()
    if binary is None:
        pytest.skip(NO_TOFU)
    tf = Terraform(
        stage(tmp_path) / subdir,
        terraform_env(tmp_path, plugin_cache(tmp_path_factory.getbasetemp())),
        binary,
    )
    tf.init("-backend=false")
    tf.run("validate", "-no-color")


def _checkov() -> str:
    """$CHECKOV when set, else require_tool's search (PATH, .venv, .tools/checkov)."""
    configured = os.environ.get("CHECKOV")
    if configured:
        if not Path(configured).is_file():
            pytest.fail(f"CHECKOV={configured} does not exist")
        return configured
    return require_tool("checkov")


@pytest.fixture(scope="module")
def checkov_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("checkov")
    proc = subprocess.run(
        [
            _checkov(),
            "--directory",
            str(MODULE),
            "--framework",
            "terraform",
            "--skip-download",  # no Prisma Cloud: the bundled checks only
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        cwd=out,
        check=False,
        timeout=300,
    )
    try:
        report: dict[str, Any] = json.loads(proc.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"checkov gave no JSON report (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return report


def test_checkov_finds_no_failed_check(checkov_report: dict[str, Any]) -> None:
    failed = [
        f"{c['check_id']} {c['resource']}: {c['check_name']}"
        for c in checkov_report["results"]["failed_checks"]
    ]
    assert failed == []
    assert checkov_report["summary"]["parsing_errors"] == 0
    assert checkov_report["summary"]["passed"] > 0


def test_checkov_skips_carry_a_reason(checkov_report: dict[str, Any]) -> None:
    skipped = checkov_report["results"]["skipped_checks"]
    without_reason = [
        f"{c['check_id']} {c['resource']}"
        for c in skipped
        if len(c.get("check_result", {}).get("suppress_comment", "").strip()) < 20
    ]
    assert without_reason == []


def test_every_checkov_skip_in_the_code_has_a_reason() -> None:
    for path in TF_FILES:
        for line in path.read_text().splitlines():
            if "checkov:skip" in line:
                assert re.search(r"#checkov:skip=CKV2?_[A-Z0-9_]+:\S.{20,}", line), line


@pytest.mark.parametrize("name", sorted(VARIABLES))
def test_variable_is_typed_and_described(name: str) -> None:
    body = VARIABLES[name]
    assert re.search(r"^  type\s+=", body, re.MULTILINE), f"variable {name} has no type"
    description = re.search(r'^  description = "(.+)"$', body, re.MULTILINE)
    assert description and len(description.group(1)) > 20, f"variable {name} is not described"


@pytest.mark.parametrize("name", sorted(OUTPUTS))
def test_output_is_described_and_uses_try(name: str) -> None:
    body = OUTPUTS[name]
    assert re.search(r'^  description = ".{10,}"$', body, re.MULTILINE)
    assert re.search(r"^  value\s+= try\(.*, null\)$", body, re.MULTILINE)


@pytest.mark.parametrize(
    ("kind", "names"), [("input", sorted(VARIABLES)), ("output", sorted(OUTPUTS))]
)
def test_readme_lists_every(kind: str, names: list[str]) -> None:
    readme = (MODULE / "README.md").read_text()
    missing = [n for n in names if f"| `{n}` |" not in readme]
    assert missing == [], f"README.md does not list these {kind}s"


def test_no_literal_ami_id_in_the_module() -> None:
    for path in [*TF_FILES, MODULE / "user-data.sh.tftpl"]:
        assert not re.search(r"\bami-[0-9a-f]{8,17}\b", path.read_text()), path


def test_no_key_pair() -> None:
    """Access is through Session Manager: no key pair, and no SSH rule to go with one."""
    code = "\n".join(p.read_text() for p in TF_FILES)
    assert "key_name" not in code


# -- input validation: variables.tf alone plans in milliseconds, without a provider ----------

VALID = {
    "name": "fleet",
    "image_name": "deepseek-r1-7b",
    "vpc_id": "vpc-0123456789abcdef0",
    "subnet_ids": ["subnet-0123456789abcdef0"],
}

OIDC = {
    "issuer": "https://login.example.com",
    "client_id": "bakery",
    "client_secret_ssm_parameter": "/bakery/oidc-client-secret",
    "authorization_endpoint": "https://login.example.com/authorize",
    "token_endpoint": "https://login.example.com/token",
    "user_info_endpoint": "https://login.example.com/userinfo",
}
COGNITO = {
    "user_pool_arn": "arn:aws:cognito-idp:us-east-1:123456789012:userpool/us-east-1_abc",
    "user_pool_client_id": "client",
    "user_pool_domain": "bakery",
}

REFUSED_INPUTS = {
    "ollama-port": ({"ui_port": 11434}, "other than 11434"),
    "port-out-of-range": ({"ui_port": 70000}, "ui_port must be a port number"),
    "world-open-ui": ({"ui_ingress_cidrs": ["0.0.0.0/0"]}, "none may be a /0"),
    "not-a-cidr": ({"ui_ingress_cidrs": ["203.0.113.1"]}, "must be IPv4 CIDR blocks"),
    "one-instance-type": ({"instance_types": ["g5.xlarge"]}, "at least two distinct"),
    "duplicate-instance-types": ({"instance_types": ["g5.xlarge", "g5.xlarge"]}, "at least two"),
    "bad-allocation-strategy": ({"spot_allocation_strategy": "cheapest"}, "must be one of"),
    "on-demand-over-100": ({"on_demand_percentage_above_base_capacity": 101}, "from 0 to 100"),
    "negative-desired": ({"desired_capacity": -1}, "desired_capacity must be a whole number"),
    "low-iops": ({"root_volume_iops": 100}, "from 3000 to 80000"),
    "low-throughput": ({"root_volume_throughput": 100}, "from 125 to 2000"),
    "init-rate-too-high": ({"volume_initialization_rate": 500}, "from 100 to 300"),
    "kms-key-not-arn": ({"kms_key_id": "alias/bakery"}, "must be a KMS key or alias ARN"),
    "bad-env-name": ({"ui_ollama_url_env": "OLLAMA-URL"}, "environment variable name"),
    "bad-model-name": ({"models": ["deepseek r1"]}, "must be Ollama model names"),
    "long-name": ({"name": "a" * 33}, "at most 32"),
    "bad-vpc": ({"vpc_id": "default"}, "vpc_id must be a VPC ID"),
    "no-subnets": ({"subnet_ids": []}, "at least one subnet"),
    "bad-ssm-name": ({"ami_ssm_parameter": "bakery ami"}, "must be an SSM parameter name"),
    "bad-timeout": ({"wait_for_capacity_timeout": "ten minutes"}, "a duration such as"),
    "bad-boundary": ({"iam_role_permissions_boundary": "boundary"}, "must be an IAM policy ARN"),
    "bad-extra-policy": ({"iam_role_additional_policies": {"x": "CloudWatch"}}, "IAM policy ARNs"),
    "bad-extra-sg": ({"additional_security_group_ids": ["default"]}, "security group IDs"),
    "bad-image-name": ({"image_name": "DeepSeek R1"}, "name of an image definition"),
    "bad-certificate": (
        {"load_balancer_certificate_arn": "chat.example.com"},
        "ACM certificate ARN",
    ),
    "one-lb-subnet": ({"load_balancer_subnet_ids": ["subnet-0123456789abcdef0"]}, "at least two"),
    "plain-http-issuer": (
        {"oidc": {**OIDC, "issuer": "http://login.example.com"}},
        "https:// URLs",
    ),
    "secret-not-a-name": (
        {"oidc": {**OIDC, "client_secret_ssm_parameter": "s3cr3t value!"}},
        "never the secret itself",
    ),
    "short-heartbeat": ({"lifecycle_hook_heartbeat_timeout": 5}, "from 30 to 7200"),
    "long-drain": ({"deregistration_delay": 7200}, "from 0 to 3600"),
    "no-lb-ingress": ({"load_balancer_ingress_cidrs": []}, "at least one IPv4 CIDR"),
    "zero-target": ({"target_requests_per_instance": 0}, "more than 0"),
    "bad-user-pool": ({"cognito": {**COGNITO, "user_pool_arn": "pool"}}, "user pool ARN"),
}


@pytest.fixture(scope="module")
def variables_only(tmp_path_factory: pytest.TempPathFactory) -> Terraform:
    work = tmp_path_factory.mktemp("variables")
    (work / "variables.tf").write_text((MODULE / "variables.tf").read_text())
    return Terraform(work, terraform_env(work, plugin_cache(tmp_path_factory.getbasetemp())))


@pytest.mark.terraform
def test_valid_inputs_pass(variables_only: Terraform) -> None:
    result = variables_only.plan("valid", VALID)
    assert result.returncode == 0, result.stderr


@pytest.mark.terraform
@pytest.mark.parametrize("case", list(REFUSED_INPUTS))
def test_input_is_refused(variables_only: Terraform, case: str) -> None:
    overrides, message = REFUSED_INPUTS[case]
    result = variables_only.plan(case, {**VALID, **overrides})
    assert result.returncode != 0
    assert message in " ".join(result.stderr.split()), result.stderr
