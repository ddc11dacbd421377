"""The one place that makes boto3 sessions and clients.

Region and credentials come from the standard AWS chain; the endpoint from the standard
AWS_ENDPOINT_URL variable (botocore reads it), which is how --local reaches the emulator.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import boto3
import botocore.exceptions
from botocore.config import Config

from .errors import BakeryError, ConfigError

if TYPE_CHECKING:
    from .config import ImageDef

_CONFIG = Config(
    retries={"mode": "adaptive", "max_attempts": 10}, user_agent_extra="gpu-ami-bakery"
)


@functools.cache
def _session(region: str | None) -> boto3.Session:
    return boto3.Session(region_name=region)


def region(region: str | None = None) -> str:
    name = region or _session(None).region_name
    if not name:
        raise BakeryError(
            "no AWS region configured: set AWS_REGION (or AWS_DEFAULT_REGION) or a region in your profile"
        )
    return name


# botocore event handlers put on every client made from now on (tests and benchmarks count
# and shape API calls with them); see on_event.
_HANDLERS: list[tuple[str, Callable[..., Any]]] = []


def client(service: str, region_name: str | None = None) -> Any:
    made = _session(None).client(service, region_name=region(region_name), config=_CONFIG)
    for event, handler in _HANDLERS:
        made.meta.events.register(event, handler)
    return made


def on_event(event: str, handler: Callable[..., Any]) -> Callable[[], None]:
    """Register a botocore event handler (e.g. "before-call") on every client made from now
    on; returns the function that unregisters it (from clients made after that)."""
    entry = (event, handler)
    _HANDLERS.append(entry)
    return lambda: _HANDLERS.remove(entry) if entry in _HANDLERS else None


def reset() -> None:
    """Forget cached sessions (after the environment changed, e.g. an emulator started)."""
    _session.cache_clear()


def endpoint() -> str | None:
    return os.environ.get("AWS_ENDPOINT_URL") or None


def identity(region_name: str | None = None) -> dict[str, str]:
    """Who we are; the first call of every task that touches AWS, so bad credentials fail early."""
    try:
        ident = client("sts", region_name).get_caller_identity()
    except botocore.exceptions.NoCredentialsError:
        raise BakeryError(
            "no AWS credentials found (looked in the environment, the shared config and credentials"
            " files, SSO, web identity and the instance role); configure one, or use --local"
        ) from None
    except botocore.exceptions.ClientError as e:
        raise BakeryError(f"AWS rejected the credentials: {describe(e)}") from None
    except botocore.exceptions.EndpointConnectionError as e:
        raise BakeryError(f"cannot reach AWS at {e.kwargs.get('endpoint_url')}") from None
    return {"account": ident["Account"], "arn": ident["Arn"]}


# What AWS answers when the credentials of a running task expired (a session token past its
# end, a clock far off). Refreshable credentials (a role, web identity, SSO) renew themselves;
# a fresh session re-reads the chain, which picks up renewed ones from files or the environment.
EXPIRED_CODES = {"ExpiredToken", "ExpiredTokenException", "RequestExpired", "TokenRefreshRequired"}


def expired(e: BaseException) -> bool:
    return error_code(e) in EXPIRED_CODES


def refreshed(made: Any) -> Any:
    """A new client for the same service and region, from a new session (credentials re-read)."""
    reset()
    return client(made.meta.service_model.service_name, made.meta.region_name)


def error_code(e: BaseException) -> str:
    if isinstance(e, botocore.exceptions.ClientError):
        return str(e.response.get("Error", {}).get("Code", ""))
    return ""


def describe(e: BaseException) -> str:
    """A botocore error as one line: 'Code: message'."""
    if isinstance(e, botocore.exceptions.ClientError):
        err = e.response.get("Error", {})
        return f"{err.get('Code', 'Error')}: {err.get('Message', '').strip()}"
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def check_instance_types(ec2: Any, image: ImageDef, section: str) -> None:
    """Every type of the definition's `section`.instance_types exists in the client's region."""
    types = list(getattr(image, section).instance_types)
    try:
        ec2.describe_instance_types(InstanceTypes=types)
    except botocore.exceptions.ClientError as e:
        if error_code(e) != "InvalidInstanceType":
            raise BakeryError(f"cannot check the {section} instance types: {describe(e)}") from None
        bad = [t for t in types if t in describe(e)] or types
        raise ConfigError(
            image.path,
            f"{section}.instance_types",
            f"{', '.join(bad)}: no such instance type in {ec2.meta.region_name}",
        ) from None
