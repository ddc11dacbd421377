"""Every option of `invoke launch`, checked before anything is written or applied.

An option left out falls back to the image definition's [launch] table where it has the key;
the command line wins. Each launch applies exactly what it is given: leaving out --allow-cidr
closes the UI again, leaving out the load balancer's options removes it.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .. import config
from ..config import ImageDef
from ..errors import BakeryError, ConfigError

DEFAULT_CAPACITY = 1
DEFAULT_WAIT_MINUTES = 15  # spot GPU capacity can take a while; the group keeps trying after
MAX_WAIT_MINUTES = 720
FLEET_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,31}$")  # the module's `name`
EVERYWHERE = "0.0.0.0/0"


@dataclass(frozen=True)
class Ingress:
    """Who may reach the UI: named IPv4 networks, and the whole internet only on request. With
    the load balancer, they reach its listeners (sign-in first), never the instances."""

    cidrs: tuple[str, ...] = ()
    public: bool = False

    @property
    def open(self) -> bool:
        return bool(self.cidrs) or self.public

    def describe(self) -> str:
        return ", ".join(
            [*self.cidrs, *([f"{EVERYWHERE} (the whole internet)"] if self.public else [])]
        )


def allowed_networks(
    values: Iterable[str], yes_public: bool = False, *, signed_in: bool = False
) -> Ingress:
    """--allow-cidr values: IPv4 networks (a bare address is a /32). Without sign-in in front,
    a /0 needs --yes-public: the UI has no authentication of its own."""
    cidrs: list[str] = []
    public = False
    for raw in values:
        text = str(raw).strip()
        try:
            net = ipaddress.ip_network(text, strict=True)
        except ValueError:
            try:
                loose = ipaddress.ip_network(text, strict=False)
            except ValueError:
                raise BakeryError(
                    f"--allow-cidr {raw!r} is not an IPv4 network (e.g. 203.0.113.0/24, or an address for a /32)"
                ) from None
            raise BakeryError(
                f"--allow-cidr {raw!r} has host bits set: the network is {loose}"
            ) from None
        if net.version != 4:
            raise BakeryError(
                f"--allow-cidr {raw!r} is an IPv6 network: the UI can be opened to IPv4 networks only"
            )
        if net.prefixlen == 0:
            if not yes_public and not signed_in:
                raise BakeryError(
                    f"--allow-cidr {net} would open the UI to the whole internet, and it has no"
                    " authentication: name narrower networks, put sign-in in front"
                    " (--certificate-arn and the --oidc-* options), or add --yes-public if you mean it"
                )
            public = True
        elif str(net) not in cidrs:
            cidrs.append(str(net))
    if yes_public and signed_in:
        raise BakeryError(
            "--yes-public applies only without the load balancer: behind it everyone signs in,"
            f" and --allow-cidr {EVERYWHERE} needs no confirmation"
        )
    if yes_public and not public:
        raise BakeryError(f"--yes-public applies only with --allow-cidr {EVERYWHERE}")
    return Ingress(tuple(cidrs), public)


def _whole(option: str, value: Any, what: str) -> int:
    try:
        return int(str(value).strip())
    except ValueError:
        raise BakeryError(f"{option} {value!r} is not a whole number of {what}") from None


def check_capacity(value: Any) -> int:
    number = _whole("--capacity", value, "instances")
    if number < 0:
        raise BakeryError(f"--capacity {number}: give 0 or more instances")
    return number


def check_wait_minutes(value: Any) -> int:
    number = _whole("--wait-minutes", value, "minutes")
    if not 0 <= number <= MAX_WAIT_MINUTES:
        raise BakeryError(f"--wait-minutes {number} is out of range (0 to {MAX_WAIT_MINUTES})")
    return number


def check_subnets(values: Iterable[str]) -> tuple[str, ...]:
    subnets: list[str] = []
    for value in values:
        text = str(value).strip()
        if not config.SUBNET_ID_RE.match(text):
            raise BakeryError(
                f"--subnet {value!r} is not a subnet ID (subnet- and 8 or 17 hex digits)"
            )
        if text not in subnets:
            subnets.append(text)
    return tuple(subnets)


def check_port(option: str, value: Any) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        raise BakeryError(f"{option} {value!r} is not a port number") from None
    if not 1 <= number <= 65535:
        raise BakeryError(f"{option} {number} is not a port number (1 to 65535)")
    return number


def fleet_name(image: ImageDef) -> str:
    """The fleet is named after its image: the group, the template, the security group."""
    if not FLEET_NAME_RE.match(image.name):
        raise ConfigError(
            image.path,
            "",
            f"the image name {image.name!r} cannot name a fleet: the fleet module needs a letter"
            " first and at most 32 letters, digits and hyphens",
        )
    return image.name


# --- capacity: fixed, or scaling between two bounds -----------------------------------------


@dataclass(frozen=True)
class Capacity:
    minimum: int
    maximum: int
    desired: int | None  # None: the group's own, moved by the scaling policy
    requests_per_instance: int = 10

    @property
    def scales(self) -> bool:
        return self.maximum > self.minimum

    def describe(self) -> str:
        if not self.scales:
            return f"capacity {self.maximum}"
        return (
            f"capacity {self.minimum} to {self.maximum}, scaling on {self.requests_per_instance}"
            " requests per instance per minute"
        )


def capacity(
    image: ImageDef,
    fixed: Any = None,
    minimum: Any = None,
    maximum: Any = None,
    *,
    balanced: bool,
) -> Capacity:
    """--capacity N (a fixed fleet), or --min-capacity and --max-capacity (a scaling one, behind
    the load balancer, whose requests per instance it follows); else the definition's
    launch.min_capacity and launch.max_capacity; else a fixed fleet of DEFAULT_CAPACITY."""
    launch = image.launch
    per = launch.requests_per_instance
    if fixed is not None and (minimum is not None or maximum is not None):
        raise BakeryError(
            "--capacity sets a fixed fleet and --min-capacity/--max-capacity a scaling one: give one or the other"
        )
    if fixed is not None:
        count = check_capacity(fixed)
        return Capacity(count, count, count, per)
    if minimum is None and maximum is None:
        if launch.min_capacity is None or launch.max_capacity is None:
            return Capacity(DEFAULT_CAPACITY, DEFAULT_CAPACITY, DEFAULT_CAPACITY, per)
        low, high = launch.min_capacity, launch.max_capacity
        where = f"launch.min_capacity and launch.max_capacity of {image.path}"
    elif minimum is None or maximum is None:
        raise BakeryError("--min-capacity and --max-capacity go together (a scaling fleet)")
    else:
        low = _whole("--min-capacity", minimum, "instances")
        high = _whole("--max-capacity", maximum, "instances")
        where = "--min-capacity and --max-capacity"
        if low < 1:
            raise BakeryError(
                f"--min-capacity {low}: a scaling fleet keeps at least 1 instance (requests per"
                " instance cannot be measured on none; --capacity 0 keeps the fleet without GPUs)"
            )
        if high < low:
            raise BakeryError(f"--max-capacity {high} is below --min-capacity {low}")
    if not balanced:
        raise BakeryError(
            f"{where} make a fleet that scales on the load balancer's requests per instance: put"
            " the load balancer in front (--certificate-arn and the --oidc-* options, or the same"
            " keys in the definition's [launch]), or give --capacity N for a fixed fleet"
        )
    return Capacity(low, high, None, per)


# --- the load balancer: one HTTPS address, sign-in through OIDC ------------------------------

SIGN_IN_OPTIONS = {  # the option: the definition's [launch] key
    "--certificate-arn": "certificate_arn",
    "--oidc-issuer": "oidc_issuer",
    "--oidc-client-id": "oidc_client_id",
    "--oidc-client-secret-param": "oidc_client_secret_param",
}


@dataclass(frozen=True)
class SignIn:
    certificate_arn: str
    issuer: str
    client_id: str
    secret_parameter: str  # a NAME: the module reads the value, nothing here ever does
    # From the definition, or else read from the issuer's discovery document.
    authorization_endpoint: str | None = None
    token_endpoint: str | None = None
    user_info_endpoint: str | None = None
    allow_model_pulls: bool = False


def sign_in(
    image: ImageDef,
    certificate_arn: str | None = None,
    oidc_issuer: str | None = None,
    oidc_client_id: str | None = None,
    oidc_client_secret_param: str | None = None,
) -> SignIn | None:
    """The load balancer's options, the command line's over the definition's; None when none
    is given (no load balancer). Values given on the command line are checked here as the
    definition's are by config."""
    given = {
        "--certificate-arn": certificate_arn,
        "--oidc-issuer": oidc_issuer,
        "--oidc-client-id": oidc_client_id,
        "--oidc-client-secret-param": oidc_client_secret_param,
    }
    checks = {
        "--certificate-arn": (
            config.CERTIFICATE_ARN_RE,
            "an ACM certificate ARN (arn:aws:acm:REGION:ACCOUNT:certificate/ID)",
        ),
        "--oidc-issuer": (config.HTTPS_URL_RE, "an https:// URL (the OIDC issuer)"),
        "--oidc-client-id": (config.OIDC_CLIENT_ID_RE, "a client ID (printable, no spaces)"),
    }
    values: dict[str, str | None] = {}
    for option, value in given.items():
        if value is not None:
            text = str(value).strip()
            if option == "--oidc-client-secret-param":
                # Never echoed: if a secret was given by mistake, it stays off the screen.
                if not config.PARAMETER_NAME_RE.match(text):
                    raise BakeryError(
                        "--oidc-client-secret-param takes the NAME of an SSM SecureString"
                        " parameter holding the client secret (or /aws/reference/secretsmanager/"
                        "SECRET_NAME), never the secret itself; what was given is not such a name"
                    )
            else:
                pattern, what = checks[option]
                if not pattern.match(text):
                    raise BakeryError(f"{option} {text!r} is not {what}")
            values[option] = text
        else:
            values[option] = getattr(image.launch, SIGN_IN_OPTIONS[option])
    if not any(values.values()):
        return None
    missing = [option for option, value in values.items() if not value]
    if missing:
        raise BakeryError(
            "the load balancer needs "
            + ", ".join(SIGN_IN_OPTIONS)
            + f" (or the same keys in [launch] of {image.path}): {', '.join(missing)} missing"
        )
    launch = image.launch
    own_endpoints = values["--oidc-issuer"] == launch.oidc_issuer
    return SignIn(
        certificate_arn=str(values["--certificate-arn"]),
        issuer=str(values["--oidc-issuer"]),
        client_id=str(values["--oidc-client-id"]),
        secret_parameter=str(values["--oidc-client-secret-param"]),
        # The definition's endpoints belong to the definition's issuer only.
        authorization_endpoint=launch.oidc_authorization_endpoint if own_endpoints else None,
        token_endpoint=launch.oidc_token_endpoint if own_endpoints else None,
        user_info_endpoint=launch.oidc_user_info_endpoint if own_endpoints else None,
        allow_model_pulls=launch.allow_model_pulls,
    )
