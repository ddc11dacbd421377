"""`invoke launch --local` with the load balancer, as a user runs it: a definition whose [launch]
names the OIDC issuer, its endpoints and a scaling range; the certificate (from the emulator's
ACM) and the client secret's parameter name on the command line; then status and destroy. And
the load balancer's bad input: one line, nothing applied, the secret never echoed.

The client secret's value is in the emulator's SSM only. It reaches the listener through the
module's data source at apply time, so it is in terraform.tfstate (as in any Terraform-managed
listener that uses it) and nowhere else: not in the output, the tfvars or main.tf.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from cli import REPO, invoke, one_line_error
from launch_support import FLEET, IMAGE, NOTHING, cli_env, fleet_resources
from tooling import require_tool, use_emulator
from verify_support import register_ami

from bakery import catalog

pytestmark = [pytest.mark.emulator, pytest.mark.terraform, pytest.mark.slow]

ISSUER = "https://login.example.com"
DOMAIN = "chat.example.com"
PARAMETER = "/bakery/oidc-client-secret"
SECRET = "the-client-secret-value-0123456789"
LAUNCH_KEYS = f"""[launch]
oidc_issuer = "{ISSUER}"
oidc_client_id = "bakery-chat"
oidc_authorization_endpoint = "{ISSUER}/authorize"
oidc_token_endpoint = "{ISSUER}/oauth/token"
oidc_user_info_endpoint = "{ISSUER}/userinfo"
min_capacity = 1
max_capacity = 3
requests_per_instance = 15
"""


def definition(directory: Path) -> Path:
    """The shipped definition, with the load balancer's keys in its [launch] table."""
    text = (REPO / "images" / f"{IMAGE}.toml").read_text()
    assert "\n[launch]\n" in text
    path = directory / f"{IMAGE}.toml"
    path.write_text(text.replace("\n[launch]\n", "\n" + LAUNCH_KEYS, 1))
    return path


@pytest.fixture
def issued(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The emulator issues a requested certificate after ACM_VALIDATION_WAIT seconds (60); it
    runs in this process (conftest), so the setting is changed here. Real ACM issues one once
    its DNS or e-mail validation is done."""
    import moto.settings

    monkeypatch.setattr(moto.settings, "ACM_VALIDATION_WAIT", -1)
    yield


@dataclass
class Story:
    work: Path
    launched: subprocess.CompletedProcess[str]
    status: subprocess.CompletedProcess[str]
    destroyed: subprocess.CompletedProcess[str]
    certificate: str
    listeners: list[dict[str, Any]]
    group: dict[str, Any]
    files: dict[str, str]
    left: dict[str, list[str]]
    load_balancers_left: list[str]


@pytest.fixture(scope="module")
def story(emulator_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Story]:
    require_tool("terraform")
    import moto.settings

    state = tmp_path_factory.mktemp("lb-state")
    env = cli_env(state)
    work = state / "local" / "launch" / IMAGE / "us-east-1"
    path = definition(tmp_path_factory.mktemp("lb-definition"))
    with pytest.MonkeyPatch.context() as mp, pytest.MonkeyPatch.context() as acm:
        acm.setattr(moto.settings, "ACM_VALIDATION_WAIT", -1)  # see the `issued` fixture
        use_emulator(mp, emulator_server, managed_policies=True)
        ami = register_ami()  # as a bake leaves it; then tagged as a passed verify tags it
        ec2 = boto3.client("ec2")
        catalog.mark_verification(
            ec2, catalog.get(ec2, ami), True, {"bakery:verified-at": "2025-06-01T00:00:00Z"}
        )
        certificate = boto3.client("acm").request_certificate(DomainName=DOMAIN)["CertificateArn"]
        boto3.client("ssm").put_parameter(Name=PARAMETER, Type="SecureString", Value=SECRET)
        launched = invoke(
            "launch",
            "--image",
            str(path),
            "--local",
            "--certificate-arn",
            certificate,
            "--oidc-client-secret-param",
            PARAMETER,
            "--wait-minutes",
            "1",
            env=env,
            timeout=600,
        )
        assert launched.returncode == 0, launched.stdout[-4000:] + launched.stderr
        elbv2 = boto3.client("elbv2")
        (balancer,) = elbv2.describe_load_balancers(Names=[FLEET])["LoadBalancers"]
        listeners = elbv2.describe_listeners(LoadBalancerArn=balancer["LoadBalancerArn"])[
            "Listeners"
        ]
        (group,) = boto3.client("autoscaling").describe_auto_scaling_groups(
            AutoScalingGroupNames=[FLEET]
        )["AutoScalingGroups"]
        files = {p.name: p.read_text() for p in work.iterdir() if p.is_file()}
        status = invoke("status", "--image", str(path), "--local", env=env)
        destroyed = invoke("destroy", "--image", str(path), "--local", env=env, timeout=600)
        acm.undo()  # the tests below get the emulator's own certificates again
        yield Story(
            work,
            launched,
            status,
            destroyed,
            certificate,
            listeners,
            group,
            files,
            fleet_resources(),
            [lb["LoadBalancerName"] for lb in elbv2.describe_load_balancers()["LoadBalancers"]],
        )


def test_launch_prints_the_one_address(story: Story) -> None:
    out = story.launched.stdout
    assert f"the UI: https://{DOMAIN} (sign in first" in out
    assert f"  DNS: a CNAME {DOMAIN} -> " in out
    assert f"with sign-in through {ISSUER} (client bakery-chat," in out


def test_launch_says_where_the_secret_is_read_from(story: Story) -> None:
    assert f"secret read by terraform from SSM SecureString parameter {PARAMETER}" in (
        story.launched.stdout
    )


def test_launch_says_model_pulls_are_refused(story: Story) -> None:
    assert "model pulls through the UI (/api/model) answer 403 at the load balancer" in (
        story.launched.stdout
    )


def test_the_https_listener_signs_in_then_forwards(story: Story) -> None:
    (https,) = [listener for listener in story.listeners if listener["Port"] == 443]
    actions = sorted(https["DefaultActions"], key=lambda a: a["Order"])
    assert [a["Type"] for a in actions] == ["authenticate-oidc", "forward"]
    assert actions[0]["AuthenticateOidcConfig"]["TokenEndpoint"] == f"{ISSUER}/oauth/token"
    assert [c["CertificateArn"] for c in https["Certificates"]] == [story.certificate]


def test_the_definitions_range_makes_a_scaling_fleet(story: Story) -> None:
    assert (story.group["MinSize"], story.group["MaxSize"]) == (1, 3)
    assert '"desired_capacity": null' in story.files["terraform.auto.tfvars.json"]
    assert '"target_requests_per_instance": 15' in story.files["terraform.auto.tfvars.json"]


@pytest.mark.parametrize("stream", ["stdout", "stderr"])
def test_the_secret_is_never_printed(story: Story, stream: str) -> None:
    for run in (story.launched, story.status, story.destroyed):
        assert SECRET not in getattr(run, stream)


def test_the_secret_is_only_in_the_state(story: Story) -> None:
    holding = sorted(name for name, text in story.files.items() if SECRET in text)
    assert holding == ["terraform.tfstate"]
    assert PARAMETER in story.files["terraform.auto.tfvars.json"]


def test_status_shows_the_address_and_the_scaling(story: Story) -> None:
    assert story.status.returncode == 0, story.status.stderr
    out = story.status.stdout
    assert f"  address      https://{DOMAIN}, sign-in through {ISSUER}; /api/model: 403" in out
    assert "  scaling      deepseek-r1-7b-requests-per-instance: about 15 requests" in out
    assert "  readiness    launch lifecycle hook bakery-ready" in out


def test_destroy_leaves_nothing(story: Story) -> None:
    assert story.destroyed.returncode == 0, story.destroyed.stdout[-3000:] + story.destroyed.stderr
    assert story.left == NOTHING
    assert story.load_balancers_left == []
    assert not story.work.exists()


# -- bad input: one line, nothing applied ------------------------------------------------------


@pytest.fixture
def verified(emulator: str) -> str:
    ami = register_ami()
    ec2 = boto3.client("ec2")
    catalog.mark_verification(
        ec2, catalog.get(ec2, ami), True, {"bakery:verified-at": "2025-06-01T00:00:00Z"}
    )
    return ami


def launch_with(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return invoke("launch", "--image", IMAGE, "--local", *args, env=cli_env(state))


def nothing_applied(state: Path) -> None:
    assert fleet_resources() == NOTHING
    assert not state.exists()


def test_a_missing_sign_in_option_is_named(tmp_path: Path) -> None:
    line = one_line_error(
        launch_with(
            tmp_path / "state",
            "--certificate-arn",
            "arn:aws:acm:us-east-1:123456789012:certificate/x",
        )
    )
    assert line.endswith("--oidc-issuer, --oidc-client-id, --oidc-client-secret-param missing")


def test_a_scaling_fleet_needs_the_load_balancer(tmp_path: Path) -> None:
    line = one_line_error(
        launch_with(tmp_path / "state", "--min-capacity", "1", "--max-capacity", "3")
    )
    assert "make a fleet that scales on the load balancer's requests per instance" in line


def sign_in_args(certificate: str, parameter: str) -> list[str]:
    return [
        "--certificate-arn",
        certificate,
        "--oidc-issuer",
        ISSUER,
        "--oidc-client-id",
        "bakery-chat",
        "--oidc-client-secret-param",
        parameter,
    ]


def test_a_certificate_not_yet_issued_is_refused(verified: str, tmp_path: Path) -> None:
    certificate = boto3.client("acm").request_certificate(DomainName=DOMAIN)["CertificateArn"]
    boto3.client("ssm").put_parameter(Name=PARAMETER, Type="SecureString", Value=SECRET)
    line = one_line_error(launch_with(tmp_path / "state", *sign_in_args(certificate, PARAMETER)))
    assert f"({DOMAIN}) is PENDING_VALIDATION, not ISSUED" in line
    nothing_applied(tmp_path / "state")


def test_a_secret_given_as_its_name_is_refused_unechoed(
    verified: str, issued: None, tmp_path: Path
) -> None:
    certificate = boto3.client("acm").request_certificate(DomainName=DOMAIN)["CertificateArn"]
    result = launch_with(tmp_path / "state", *sign_in_args(certificate, "Sup3rSecretValue"))
    line = one_line_error(result)
    assert "no SSM parameter by that name in us-east-1" in line
    assert "Sup3rSecretValue" not in result.stdout + result.stderr
    nothing_applied(tmp_path / "state")
