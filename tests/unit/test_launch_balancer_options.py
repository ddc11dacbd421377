"""The load balancer's and the scaling fleet's options of `invoke launch`: the command line over
the definition, what each refuses (one line, the secret never echoed), and the AWS checks of the
certificate and the client secret's parameter against the emulator; OIDC discovery against a
local server."""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest
import requests

from bakery import config
from bakery.errors import BakeryError
from bakery.fleet import options, signin

IMAGE = "deepseek-r1-7b"
CERTIFICATE = "arn:aws:acm:us-east-1:123456789012:certificate/11111111-2222-3333-4444-555555555555"
ISSUER = "https://login.example.com"
SECRET_VALUE = "Zm9v-this-is-the-client-secret-itself"


def image(**launch: Any) -> config.ImageDef:
    base = config.load(IMAGE)
    return dataclasses.replace(base, launch=dataclasses.replace(base.launch, **launch))


FULL = {
    "certificate_arn": CERTIFICATE,
    "oidc_issuer": ISSUER,
    "oidc_client_id": "bakery",
    "oidc_client_secret_param": "/bakery/oidc",
}


# -- sign-in -----------------------------------------------------------------------------------


def test_no_sign_in_option_means_no_load_balancer() -> None:
    assert options.sign_in(image()) is None


def test_the_definition_gives_the_sign_in() -> None:
    found = options.sign_in(image(**FULL))
    assert found == options.SignIn(CERTIFICATE, ISSUER, "bakery", "/bakery/oidc")


def test_the_command_line_wins() -> None:
    found = options.sign_in(image(**FULL), oidc_client_id="other", oidc_client_secret_param="/x")
    assert found is not None
    assert (found.client_id, found.secret_parameter) == ("other", "/x")


def test_the_definitions_endpoints_go_with_its_issuer_only() -> None:
    endpoints = {
        "oidc_authorization_endpoint": f"{ISSUER}/authorize",
        "oidc_token_endpoint": f"{ISSUER}/token",
        "oidc_user_info_endpoint": f"{ISSUER}/userinfo",
    }
    own = options.sign_in(image(**FULL, **endpoints))
    assert own is not None and own.token_endpoint == f"{ISSUER}/token"
    other = options.sign_in(image(**FULL, **endpoints), oidc_issuer="https://id.example.org")
    assert other is not None and other.token_endpoint is None  # read from the other issuer


def test_a_missing_sign_in_option_is_named() -> None:
    with pytest.raises(BakeryError) as e:
        options.sign_in(image(), certificate_arn=CERTIFICATE, oidc_issuer=ISSUER)
    assert str(e.value).endswith("--oidc-client-id, --oidc-client-secret-param missing")
    assert "the load balancer needs --certificate-arn, --oidc-issuer" in str(e.value)


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        (
            "certificate_arn",
            "chat.example.com",
            "--certificate-arn 'chat.example.com' is not an ACM",
        ),
        ("oidc_issuer", "http://login.example.com", "is not an https:// URL (the OIDC issuer)"),
        ("oidc_client_id", "two words", "is not a client ID"),
    ],
)
def test_bad_sign_in_values_are_refused(option: str, value: str, message: str) -> None:
    with pytest.raises(BakeryError) as e:
        options.sign_in(image(**{**FULL, option: None}), **{option: value})
    assert message in str(e.value)


def test_a_secret_given_instead_of_its_name_is_refused_and_not_echoed() -> None:
    pasted = "s3cr3t value with spaces/+="
    with pytest.raises(BakeryError) as e:
        options.sign_in(image(**FULL), oidc_client_secret_param=pasted)
    assert "takes the NAME of an SSM SecureString parameter" in str(e.value)
    assert pasted not in str(e.value)


# -- capacity ----------------------------------------------------------------------------------


def test_capacity_defaults_to_one_fixed_instance() -> None:
    assert options.capacity(image(), balanced=False) == options.Capacity(1, 1, 1)


def test_capacity_n_is_a_fixed_fleet() -> None:
    assert options.capacity(image(), "3", balanced=False) == options.Capacity(3, 3, 3)


def test_min_and_max_make_a_scaling_fleet_behind_the_balancer() -> None:
    size = options.capacity(image(requests_per_instance=20), None, "1", "4", balanced=True)
    assert size == options.Capacity(1, 4, None, 20)
    assert size.scales
    assert size.describe() == ("capacity 1 to 4, scaling on 20 requests per instance per minute")


def test_the_definitions_min_and_max_apply_unless_capacity_is_given() -> None:
    scaling = image(min_capacity=2, max_capacity=5)
    assert options.capacity(scaling, balanced=True) == options.Capacity(2, 5, None)
    assert options.capacity(scaling, "1", balanced=True) == options.Capacity(1, 1, 1)


@pytest.mark.parametrize(
    ("args", "balanced", "message"),
    [
        (("2", "1", "3"), True, "give one or the other"),
        ((None, "1", None), True, "--min-capacity and --max-capacity go together"),
        ((None, "0", "3"), True, "a scaling fleet keeps at least 1 instance"),
        ((None, "3", "2"), True, "--max-capacity 2 is below --min-capacity 3"),
        ((None, "one", "2"), True, "--min-capacity 'one' is not a whole number of instances"),
        ((None, "1", "3"), False, "make a fleet that scales on the load balancer's requests"),
    ],
    ids=["both-kinds", "min-alone", "min-zero", "max-below-min", "not-a-number", "no-balancer"],
)
def test_capacity_refuses(args: tuple[Any, Any, Any], balanced: bool, message: str) -> None:
    with pytest.raises(BakeryError) as e:
        options.capacity(image(), *args, balanced=balanced)
    assert message in str(e.value)


# -- who reaches it ----------------------------------------------------------------------------


def test_behind_sign_in_the_whole_internet_needs_no_confirmation() -> None:
    assert options.allowed_networks(["0.0.0.0/0"], signed_in=True) == options.Ingress((), True)


def test_yes_public_is_refused_behind_sign_in() -> None:
    with pytest.raises(BakeryError) as e:
        options.allowed_networks(["0.0.0.0/0"], True, signed_in=True)
    assert "--yes-public applies only without the load balancer" in str(e.value)


# -- the certificate and the secret, in AWS (the emulator) ------------------------------------


@pytest.mark.emulator
def test_an_issued_certificate_gives_its_domain(
    emulator: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import moto.settings

    # The emulator issues a requested certificate after ACM_VALIDATION_WAIT seconds (60).
    monkeypatch.setattr(moto.settings, "ACM_VALIDATION_WAIT", -1)
    acm = boto3.client("acm")
    arn = acm.request_certificate(DomainName="chat.example.com")["CertificateArn"]
    assert signin.certificate_domain(acm, arn) == "chat.example.com"


@pytest.mark.emulator
def test_a_pending_certificate_is_refused(emulator: str) -> None:
    acm = boto3.client("acm")
    arn = acm.request_certificate(DomainName="chat.example.com")["CertificateArn"]
    with pytest.raises(BakeryError) as e:
        signin.certificate_domain(acm, arn)
    assert "is PENDING_VALIDATION, not ISSUED" in str(e.value)


@pytest.mark.emulator
def test_a_missing_certificate_is_refused(emulator: str) -> None:
    with pytest.raises(BakeryError) as e:
        signin.certificate_domain(boto3.client("acm"), CERTIFICATE)
    assert (
        str(e.value) == f"--certificate-arn {CERTIFICATE}: no such certificate in ACM in us-east-1"
    )


@pytest.mark.emulator
def test_a_certificate_of_another_region_is_refused(emulator: str) -> None:
    other = CERTIFICATE.replace("us-east-1", "eu-west-1")
    with pytest.raises(BakeryError) as e:
        signin.certificate_domain(boto3.client("acm"), other)
    assert "is in eu-west-1: the load balancer needs a certificate in the fleet's region" in str(
        e.value
    )


@pytest.mark.emulator
def test_a_securestring_parameter_is_accepted_unread(emulator: str) -> None:
    ssm = boto3.client("ssm")
    ssm.put_parameter(Name="/bakery/oidc", Type="SecureString", Value=SECRET_VALUE)
    reads: list[str] = []
    ssm.meta.events.register("before-call.ssm.*", lambda model, **_: reads.append(model.name))
    where = signin.check_secret(ssm, boto3.client("secretsmanager"), "/bakery/oidc")
    assert where == "SSM SecureString parameter /bakery/oidc"
    assert reads == ["DescribeParameters"]  # the value is never fetched here


@pytest.mark.emulator
def test_a_plain_string_parameter_is_refused(emulator: str) -> None:
    ssm = boto3.client("ssm")
    ssm.put_parameter(Name="/bakery/oidc", Type="String", Value=SECRET_VALUE)
    with pytest.raises(BakeryError) as e:
        signin.check_secret(ssm, boto3.client("secretsmanager"), "/bakery/oidc")
    assert "is a String parameter: store the client secret as a SecureString" in str(e.value)
    assert SECRET_VALUE not in str(e.value)


@pytest.mark.emulator
def test_a_missing_parameter_is_refused_without_echoing_it(emulator: str) -> None:
    with pytest.raises(BakeryError) as e:
        signin.check_secret(boto3.client("ssm"), boto3.client("secretsmanager"), SECRET_VALUE)
    assert "no SSM parameter by that name in us-east-1" in str(e.value)
    assert SECRET_VALUE not in str(e.value)


@pytest.mark.emulator
def test_a_secrets_manager_secret_is_found_by_reference(emulator: str) -> None:
    boto3.client("secretsmanager").create_secret(Name="bakery-oidc", SecretString=SECRET_VALUE)
    where = signin.check_secret(
        boto3.client("ssm"),
        boto3.client("secretsmanager"),
        "/aws/reference/secretsmanager/bakery-oidc",
    )
    assert where == "Secrets Manager secret bakery-oidc"


@pytest.mark.emulator
def test_a_missing_secrets_manager_secret_is_refused(emulator: str) -> None:
    with pytest.raises(BakeryError) as e:
        signin.check_secret(
            boto3.client("ssm"), boto3.client("secretsmanager"), "/aws/reference/secretsmanager/x"
        )
    assert "no Secrets Manager secret x in us-east-1" in str(e.value)


# -- OIDC discovery ----------------------------------------------------------------------------


@pytest.fixture
def issuer() -> Iterator[tuple[str, dict[str, Any]]]:
    """A discovery document served on localhost; the test edits it before asking."""
    document: dict[str, Any] = {}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            found = self.path == signin.DISCOVERY and document
            data = json.dumps(document).encode() if found else b"{}"
            self.send_response(200 if found else 404)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    document.update(
        issuer=url,
        authorization_endpoint=f"https://{url[7:]}/authorize",
        token_endpoint=f"https://{url[7:]}/token",
        userinfo_endpoint=f"https://{url[7:]}/userinfo",
    )
    yield url, document
    server.shutdown()
    server.server_close()


def test_discovery_gives_the_three_endpoints(issuer: tuple[str, dict[str, Any]]) -> None:
    url, document = issuer
    assert signin.discover(url) == {
        "authorization_endpoint": document["authorization_endpoint"],
        "token_endpoint": document["token_endpoint"],
        "user_info_endpoint": document["userinfo_endpoint"],
    }


def test_discovery_fills_a_sign_in(issuer: tuple[str, dict[str, Any]]) -> None:
    url, document = issuer
    filled = signin.with_endpoints(options.SignIn(CERTIFICATE, url, "bakery", "/x"))
    assert filled.user_info_endpoint == document["userinfo_endpoint"]
    assert signin.module_input(filled)["client_secret_ssm_parameter"] == "/x"


def test_discovery_refuses_another_issuer(issuer: tuple[str, dict[str, Any]]) -> None:
    url, document = issuer
    document["issuer"] = "https://evil.example.com"
    with pytest.raises(BakeryError) as e:
        signin.discover(url)
    assert "its discovery document names another issuer ('https://evil.example.com')" in str(
        e.value
    )


def test_discovery_refuses_a_plain_http_endpoint(issuer: tuple[str, dict[str, Any]]) -> None:
    url, document = issuer
    document["token_endpoint"] = "http://login.example.com/token"
    with pytest.raises(BakeryError) as e:
        signin.discover(url)
    assert "has no https token_endpoint" in str(e.value)


def test_discovery_that_cannot_be_read_says_what_to_do(
    issuer: tuple[str, dict[str, Any]],
) -> None:
    url, document = issuer
    document.clear()
    with pytest.raises(BakeryError) as e:
        signin.discover(url)
    assert "cannot read" in str(e.value) and "launch.oidc_authorization_endpoint" in str(e.value)


def test_discovery_has_a_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    # Stands in for requests: records the timeout it is given and fails as an issuer that
    # never answers would.
    class Session:
        def get(self, url: str, timeout: float) -> Any:
            seen.update(url=url, timeout=timeout)
            raise requests.ConnectTimeout("no answer")

    with pytest.raises(BakeryError):
        signin.discover(ISSUER + "/", Session())
    assert seen == {
        "url": f"{ISSUER}/.well-known/openid-configuration",
        "timeout": signin.DISCOVERY_TIMEOUT_S,
    }


def test_a_wildcard_certificate_names_no_single_address() -> None:
    assert signin.url_of("chat.example.com") == "https://chat.example.com"
    assert signin.url_of("*.example.com") == "https://<a name under example.com>"
