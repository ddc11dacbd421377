"""What the load balancer needs, checked where it lives before anything is applied: the ACM
certificate (issued, in the fleet's region), the client secret's parameter (it exists; its value
is never read here: the module's data source reads it at apply time), and the OIDC issuer's
endpoints, from its discovery document unless the definition names them."""

from __future__ import annotations

import dataclasses
from typing import Any

import botocore.exceptions
import requests

from .. import aws
from ..errors import BakeryError
from .options import SignIn

SECRETS_MANAGER_REFERENCE = "/aws/reference/secretsmanager/"
DISCOVERY = "/.well-known/openid-configuration"
DISCOVERY_TIMEOUT_S = 10
ENDPOINT_KEYS = {  # the discovery document's key: the SignIn field
    "authorization_endpoint": "authorization_endpoint",
    "token_endpoint": "token_endpoint",
    "userinfo_endpoint": "user_info_endpoint",
}


def certificate_domain(acm: Any, arn: str) -> str:
    """The certificate's domain name, once it is known to be issued and here."""
    region = acm.meta.region_name
    if arn.split(":")[3] != region:
        raise BakeryError(
            f"--certificate-arn {arn} is in {arn.split(':')[3]}: the load balancer needs a"
            f" certificate in the fleet's region, {region}"
        )
    try:
        certificate = acm.describe_certificate(CertificateArn=arn)["Certificate"]
    except botocore.exceptions.ClientError as e:
        if aws.error_code(e) != "ResourceNotFoundException":
            raise
        raise BakeryError(
            f"--certificate-arn {arn}: no such certificate in ACM in {region}"
        ) from None
    status = certificate.get("Status")
    if status != "ISSUED":
        raise BakeryError(
            f"--certificate-arn {arn} ({certificate.get('DomainName')}) is {status}, not ISSUED:"
            " the load balancer can serve only an issued certificate (finish its validation first)"
        )
    return str(certificate["DomainName"])


def check_secret(ssm: Any, secretsmanager: Any, name: str) -> str:
    """The client secret's parameter exists and is secret; says where it is (never its value)."""
    region = ssm.meta.region_name
    if name.startswith(SECRETS_MANAGER_REFERENCE):
        secret = name[len(SECRETS_MANAGER_REFERENCE) :]
        try:
            secretsmanager.describe_secret(SecretId=secret)
        except botocore.exceptions.ClientError as e:
            if aws.error_code(e) != "ResourceNotFoundException":
                raise
            raise BakeryError(
                f"--oidc-client-secret-param {name}: no Secrets Manager secret {secret} in {region}"
            ) from None
        return f"Secrets Manager secret {secret}"
    found = ssm.describe_parameters(ParameterFilters=[{"Key": "Name", "Values": [name]}])[
        "Parameters"
    ]
    if not found:
        # Not echoed: a name that does not exist may be a secret pasted by mistake.
        raise BakeryError(
            f"--oidc-client-secret-param: no SSM parameter by that name in {region} (the option"
            " takes the NAME of a SecureString parameter, or /aws/reference/secretsmanager/"
            "SECRET_NAME, never the secret itself)"
        )
    kind = found[0].get("Type")
    if kind != "SecureString":
        raise BakeryError(
            f"--oidc-client-secret-param {name} is a {kind} parameter: store the client secret"
            " as a SecureString (aws ssm put-parameter --type SecureString)"
        )
    return f"SSM SecureString parameter {name}"


def discover(issuer: str, session: Any = requests) -> dict[str, str]:
    """The issuer's authorization, token and user info endpoints, from its discovery document
    (OpenID Connect Discovery 1.0); the document must name the same issuer."""
    url = issuer.rstrip("/") + DISCOVERY
    try:
        answer = session.get(url, timeout=DISCOVERY_TIMEOUT_S)
        answer.raise_for_status()
        document = answer.json()
    except requests.RequestException as e:
        raise BakeryError(
            f"--oidc-issuer {issuer}: cannot read {url} ({type(e).__name__}); name the endpoints"
            " in the definition (launch.oidc_authorization_endpoint, oidc_token_endpoint,"
            " oidc_user_info_endpoint) where the issuer publishes no discovery document"
        ) from None
    except ValueError:
        raise BakeryError(f"--oidc-issuer {issuer}: {url} is not a JSON document") from None
    if not isinstance(document, dict) or document.get("issuer", "").rstrip("/") != issuer.rstrip(
        "/"
    ):
        named = document.get("issuer") if isinstance(document, dict) else None
        raise BakeryError(
            f"--oidc-issuer {issuer}: its discovery document names another issuer ({named!r});"
            " give the issuer exactly as the provider states it"
        )
    endpoints: dict[str, str] = {}
    for key, field in ENDPOINT_KEYS.items():
        value = document.get(key)
        if not isinstance(value, str) or not value.startswith("https://"):
            raise BakeryError(
                f"--oidc-issuer {issuer}: its discovery document has no https {key}"
                " (the load balancer needs it)"
            )
        endpoints[field] = value
    return endpoints


def with_endpoints(signin: SignIn, session: Any = requests) -> SignIn:
    if signin.authorization_endpoint and signin.token_endpoint and signin.user_info_endpoint:
        return signin
    return dataclasses.replace(signin, **discover(signin.issuer, session))


def module_input(signin: SignIn) -> dict[str, str]:
    """The fleet module's `oidc` input: names and URLs only, never the secret."""
    return {
        "issuer": signin.issuer,
        "client_id": signin.client_id,
        "client_secret_ssm_parameter": signin.secret_parameter,
        "authorization_endpoint": str(signin.authorization_endpoint),
        "token_endpoint": str(signin.token_endpoint),
        "user_info_endpoint": str(signin.user_info_endpoint),
    }


def url_of(domain: str) -> str:
    """The one address: https://<the certificate's name> (a wildcard names no single host)."""
    if domain.startswith("*."):
        return f"https://<a name under {domain[2:]}>"
    return f"https://{domain}"
