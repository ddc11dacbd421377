"""What publish, share, prune and gc have in common: who an AMI is shared with, which regions
it lives in, one set of clients per region, and running a step in every region at once.

The steps live beside it: share.py (launch and volume permissions), keypolicy.py (KMS),
publish.py (copy, share, SSM), prune.py (deprecate, deregister) and gc.py (leftovers).
"""

from __future__ import annotations

import difflib
import functools
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any, TypeVar

import boto3
import botocore.exceptions
import botocore.parsers

from . import TOOL, aws, catalog
from .config import ACCOUNT_RE, ORG_ARN_RE, OU_ARN_RE, ImageDef
from .errors import BakeryError, Interrupted

Say = Callable[[str], None]
T = TypeVar("T")
# What an AWS call can end with, short of a bug: refused, unreachable, or answered with
# something that is not an AWS response (an HTML error page from an endpoint or a proxy).
FAILURES = (
    botocore.exceptions.ClientError,
    botocore.exceptions.BotoCoreError,
    botocore.parsers.ResponseParserError,
)


def explain(e: BaseException) -> str:
    """One of FAILURES as one line."""
    if isinstance(e, botocore.exceptions.ClientError):
        return f"AWS refused {e.operation_name}: {aws.describe(e)}"
    if isinstance(e, botocore.parsers.ResponseParserError):
        return "the endpoint's answer is not an AWS response (an HTTP error page?)"
    return aws.describe(e)


@dataclass(frozen=True)
class Targets:
    """Who an AMI is shared with: accounts, organizations and organizational units."""

    accounts: tuple[str, ...] = ()
    organization_arns: tuple[str, ...] = ()
    ou_arns: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.accounts or self.organization_arns or self.ou_arns)

    def minus(self, other: Targets) -> Targets:
        return Targets(
            tuple(a for a in self.accounts if a not in other.accounts),
            tuple(o for o in self.organization_arns if o not in other.organization_arns),
            tuple(u for u in self.ou_arns if u not in other.ou_arns),
        )

    def both(self, other: Targets) -> Targets:
        return self.minus(self.minus(other))

    def describe(self, limit: int | None = None) -> str:
        names = [*self.accounts, *self.organization_arns, *self.ou_arns]
        if limit is not None and len(names) > limit:
            return ", ".join(names[: limit - 1]) + f" and {len(names) - limit + 1} more"
        return ", ".join(names)

    def count(self) -> str:
        parts = [
            (len(self.accounts), "account"),
            (len(self.organization_arns), "organization"),
            (len(self.ou_arns), "OU"),
        ]
        return ", ".join(f"{n} {what}{'s' * (n > 1)}" for n, what in parts if n) or "nobody"

    def launch_permission(self) -> dict[str, list[str]]:
        """The principals as modify_image_attribute's arguments (empty lists left out)."""
        args = {
            "UserIds": list(self.accounts),
            "OrganizationArns": list(self.organization_arns),
            "OrganizationalUnitArns": list(self.ou_arns),
        }
        return {k: v for k, v in args.items() if v}


def targets(
    accounts: Iterable[str] = (),
    organization_arns: Iterable[str] = (),
    ou_arns: Iterable[str] = (),
    *,
    names: tuple[str, str, str] = ("--account", "--organization-arn", "--ou-arn"),
) -> Targets:
    """Checked principals, each kind in order and once; a malformed one is a one-line error."""
    checks = [
        (accounts, ACCOUNT_RE, "a 12-digit AWS account ID"),
        (
            organization_arns,
            ORG_ARN_RE,
            "an organization ARN (arn:aws:organizations::<account>:organization/o-...)",
        ),
        (
            ou_arns,
            OU_ARN_RE,
            "an organizational unit ARN (arn:aws:organizations::<account>:ou/o-.../ou-...)",
        ),
    ]
    found: list[tuple[str, ...]] = []
    for (values, pattern, what), name in zip(checks, names, strict=True):
        for value in values:
            if not pattern.match(value):
                raise BakeryError(f"{name} {value!r}: not {what}")
        found.append(tuple(dict.fromkeys(values)))
    return Targets(*found)


def targets_of(image: ImageDef) -> Targets:
    d = image.distribute
    return Targets(d.accounts, d.organization_arns, d.ou_arns)


@functools.cache
def _known_regions() -> dict[str, str]:
    """Every EC2 region botocore knows, with its partition."""
    session = boto3.session.Session()
    return {
        r: partition
        for partition in session.get_available_partitions()
        for r in session.get_available_regions("ec2", partition_name=partition)
    }


def check_regions(regions: Iterable[str], where: str) -> list[str]:
    """The regions, once each, in order; an unknown one, or a mix of partitions, is an error."""
    known = _known_regions()
    checked = list(dict.fromkeys(regions))
    for name in checked:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise BakeryError(f"{where}: unknown region {name!r}: not an EC2 region{hint}")
    partitions = {known[r] for r in checked}
    if len(partitions) > 1:
        raise BakeryError(
            f"{where}: {', '.join(checked)} span the partitions {', '.join(sorted(partitions))};"
            " an AMI cannot be copied or shared across partitions"
        )
    return checked


def regions_of(image: ImageDef, build_region: str) -> list[str]:
    """Where the image lives: its build region first, then distribute.regions."""
    return check_regions(
        [build_region, *image.distribute.regions], f"{image.path}: distribute.regions"
    )


@dataclass(frozen=True)
class Region:
    name: str
    ec2: Any
    kms: Any
    ssm: Any


def clients(regions: Iterable[str]) -> dict[str, Region]:
    """A client per service and region, made here, up front, in one thread: boto3 clients
    are thread-safe, sessions are not."""
    return {
        r: Region(r, aws.client("ec2", r), aws.client("kms", r), aws.client("ssm", r))
        for r in regions
    }


def locked(say: Say) -> Say:
    """say() for the worker threads: one whole line at a time."""
    lock = threading.Lock()

    def locked_say(line: str) -> None:
        with lock:
            say(line)

    return locked_say


def each_region(
    regions: dict[str, Region],
    step: Callable[[Region, threading.Event], T],
    *,
    what: str,
    resume: str,
) -> dict[str, T]:
    """Run step in every region at once; collect every region's failure into one line.

    step gets a stop event: set on Ctrl-C, so a waiting step gives up at its next poll."""
    stop = threading.Event()
    results: dict[str, T] = {}
    failures: dict[str, str] = {}
    pool = ThreadPoolExecutor(max_workers=min(16, len(regions)) or 1, thread_name_prefix="bakery")
    try:
        futures = {pool.submit(step, region, stop): name for name, region in regions.items()}
        for future in as_completed(futures):
            name = futures[future]
            try:
                results[name] = future.result()
            except BakeryError as e:
                failures[name] = str(e)
            except FAILURES as e:
                failures[name] = explain(e)
    except KeyboardInterrupt:
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
        raise Interrupted(f"{what} interrupted; {resume}") from None
    finally:
        pool.shutdown(wait=True)
    if len(failures) == 1:
        [(name, message)] = failures.items()
        raise BakeryError(f"{what} failed in {name}: {message}")
    if failures:
        told = "; ".join(f"{name}: {failures[name]}" for name in regions if name in failures)
        raise BakeryError(f"{what} failed in {len(failures)} of {len(regions)} regions: {told}")
    return {name: results[name] for name in regions}


def require_verified(ami: dict[str, Any], image: str | None = None) -> None:
    """Only verified AMIs of the catalog leave the building account."""
    ami_id, tags = ami["ImageId"], catalog.tags_of(ami)
    if tags.get(catalog.MANAGED_BY) != TOOL:
        raise BakeryError(
            f"{ami_id} was not made by {TOOL} (no {catalog.MANAGED_BY} tag): only verified AMIs of"
            " the catalog leave this account"
        )
    if image and tags.get(catalog.IMAGE) != image:
        raise BakeryError(f"{ami_id} is an AMI of {tags.get(catalog.IMAGE)!r}, not of {image!r}")
    if catalog.FINGERPRINT not in tags:
        raise BakeryError(f"{ami_id} is an unfinished bake (no {catalog.FINGERPRINT} tag)")
    verification = tags.get(catalog.VERIFICATION)
    if verification != catalog.PASSED:
        state = f"{catalog.VERIFICATION} is {verification!r}" if verification else "never verified"
        raise BakeryError(
            f"{ami_id} is not verified ({state}): run invoke verify --image"
            f" {tags.get(catalog.IMAGE, 'NAME')} first; only verified AMIs leave this account"
        )
    if tags.get(catalog.PROVISIONED) == "false":
        raise BakeryError(
            f"{ami_id} was baked against the emulator ({catalog.PROVISIONED} is 'false'): it holds"
            " no driver, model or UI, so it never leaves this account"
        )
    if ami.get("State") != "available":
        raise BakeryError(f"{ami_id} is {ami.get('State')}, not available")
