"""invoke verify: the spot GPU instance the image tests run on: launch, reach, test, always end.

One run creates a security group (SSH from the runner's address only; with Session Manager,
nothing inbound; none when the definition or --security-group names groups), a temporary key
pair, with Session Manager an instance profile, and one spot instance that boots as a fleet
instance does (the fleet's user-data, its volume initialization rate), all tagged with the
tool's tags, the run's id and an expiry time. Every way out (passed, failed, error, timeout,
Ctrl-C, SIGTERM) ends the instance and removes the rest by ID, then sweeps the run id for
anything else; what still escapes, `gc` finds by tag.

The AMI is marked only from the suite's JUnit report, and only after a real host was tested:
passed when every check ran and passed, failed (with the first failing check) otherwise.

Launching with fallback is spot.py's; the SSH access and --host's reach are sshaccess.py's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import botocore.exceptions

from . import TOOL, aws, catalog, cleanup, config, instanceprofile, local, network, usage, userdata
from . import expectations as expect
from .bake import new_build_id
from .config import ImageDef
from .errors import BakeryError, Interrupted, SpotInterrupted
from .expectations import Verdict
from .interrupts import TimedOut, shielded, sigterm_as_interrupt, watchdog
from .spot import (
    Boot,
    Created,
    Launched,
    Plan,
    describe_instance,
    launch_with_fallback,
    plan,
    reclaimed,
    wait_running,
)
from .spot import launch_params as launch_params  # re-exported: tests use verify.NAME
from .sshaccess import (
    Access,
    check_reachable,
    close_master,
    create_access,
    host_name,
    parse_host,
    reach_over_ssh,
    runner_cidr,
    session_manager_proxy,
    ssh_network,
)
from .sshaccess import console_host_keys as console_host_keys  # re-exported: tests use verify.NAME
from .waiting import POLL_S, duration

Say = Callable[[str], None]
Reach = Callable[[Any, Launched, Access, Say], None]

DEFAULT_TIMEOUT_MIN = 45
TERMINATE_PATIENCE_S = 10 * 60
TTL_GRACE_S = 30 * 60  # bakery:expires-at = start + --timeout + this
AMI_ID_RE = re.compile(r"^ami-([0-9a-f]{8}|[0-9a-f]{17})$")

VERIFIED_AT, VERIFY_GPU, VERIFY_TIMINGS, VERIFY_REPORT, VERIFY_FAILURE, VERIFY_COLD_LOAD = (
    catalog.VERIFY_TAGS
)


# --- options ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    ami_id: str | None = None
    timeout_s: float = DEFAULT_TIMEOUT_MIN * 60
    subnet: str | None = None  # a subnet ID or tag:KEY=VALUE, over the definition's
    ssh_cidr: str | None = None
    security_groups: tuple[str, ...] = ()  # over the definition's


def check_ami_id(ami_id: str | None) -> str | None:
    if ami_id is not None and not AMI_ID_RE.match(ami_id):
        raise BakeryError(f"--ami {ami_id!r} is not an AMI ID (ami- and 8 or 17 hex digits)")
    return ami_id


def check_timeout(minutes: Any) -> float:
    try:
        value = int(minutes)
    except (TypeError, ValueError):
        raise BakeryError(f"--timeout {minutes!r} is not a whole number of minutes") from None
    if not 5 <= value <= 720:
        raise BakeryError(f"--timeout {value} is out of range (5 to 720 minutes)")
    return value * 60.0


# --- what to verify, where ----------------------------------------------------------------


def pick_ami(ec2: Any, image: ImageDef, ami_id: str | None, say: Say) -> dict[str, Any]:
    region = ec2.meta.region_name
    if ami_id:
        ami = catalog.get(ec2, ami_id)
        tags = catalog.tags_of(ami)
        if tags.get(catalog.MANAGED_BY) != TOOL:
            raise BakeryError(
                f"{ami_id} was not baked by {TOOL} (no {catalog.MANAGED_BY} tag); verify marks only"
                " the tool's own AMIs (--host runs the image tests against any host)"
            )
        if tags.get(catalog.IMAGE) != image.name:
            raise BakeryError(
                f"{ami_id} is an AMI of {tags.get(catalog.IMAGE)!r}, not of {image.name!r}"
            )
        if catalog.FINGERPRINT not in tags:
            raise BakeryError(f"{ami_id} is an unfinished bake (no {catalog.FINGERPRINT} tag)")
        if ami.get("State") != "available":
            raise BakeryError(f"{ami_id} is {ami.get('State')}, not available")
        if catalog.VERIFICATION in tags:
            say(
                f"verify: {ami_id} was verified before ({tags[catalog.VERIFICATION]}); verifying it again"
            )
        return ami
    ami = catalog.newest(ec2, image.name, unverified=True)
    if ami:
        return ami
    latest = catalog.newest(ec2, image.name)
    if latest:
        state = catalog.tags_of(latest)[catalog.VERIFICATION]
        raise BakeryError(
            f"no unverified AMI of {image.name} in {region}: the newest, {latest['ImageId']}, is"
            f" already verified ({state}); pass --ami ID to verify one again"
        )
    raise BakeryError(
        f"no AMI of {image.name} in {region} yet: bake one first (invoke bake --image {image.name})"
    )


# --- clean-up -----------------------------------------------------------------------------


def _wait_terminated(ec2: Any, ids: list[str], say: Say) -> bool:
    started = time.monotonic()
    while True:
        try:
            live = [
                i
                for i in ids
                if (d := describe_instance(ec2, i)) is not None
                and d["State"]["Name"] != "terminated"
            ]
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:
            say(f"clean-up: cannot see whether {', '.join(ids)} ended: {aws.describe(e)}")
            return False
        if not live:
            return True
        if time.monotonic() - started > TERMINATE_PATIENCE_S:
            say(
                f"clean-up: {', '.join(live)} still terminating after"
                f" {duration(TERMINATE_PATIENCE_S)}; the security group may be left for gc"
            )
            return False
        time.sleep(POLL_S)


@dataclass
class Cleaned:
    removed: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)  # what could not be removed (gc's work)

    def __str__(self) -> str:
        said = "; ".join(self.removed) or "nothing was left"
        return said + (f" (left for gc: {'; '.join(self.left)})" if self.left else "")


def clean(ec2: Any, created: Created, directory: Path | None, say: Say) -> Cleaned:
    """End the instance, then remove the key pair and security group by ID, then sweep the run
    id for anything else (a launch whose answer was lost, or a describe that lagged)."""
    done = Cleaned()
    note = (
        "verify: still cleaning up; interrupt again to abandon the clean-up (invoke gc"
        f" removes what is left once its {catalog.EXPIRES_AT} has passed)"
    )
    with shielded(say, note):
        if directory:
            shutil.rmtree(directory, ignore_errors=True)  # the private key first: it is local
        if not (created.group_id or created.key_name or created.instance_ids or created.profile):
            return done
        say(f"verify: ending what run {created.run_id} created")
        renewed = False

        def attempt(what: str, call: Callable[[], Any], retry: str = "") -> None:
            nonlocal ec2, renewed
            for _ in range(12):
                try:
                    call()
                    done.removed.append(what)
                    return
                except botocore.exceptions.ClientError as e:
                    if aws.error_code(e).endswith("NotFound"):
                        return
                    if aws.expired(e) and not renewed:
                        # The clean-up must still happen: once, with credentials read afresh.
                        say(f"clean-up: {aws.describe(e)}; reading the credentials again")
                        ec2, renewed = aws.refreshed(ec2), True
                        continue
                    if aws.error_code(e) != retry:
                        say(
                            f"clean-up: could not remove {what}: {aws.describe(e)} (invoke gc will retry)"
                        )
                        done.left.append(what)
                        return
                except botocore.exceptions.BotoCoreError as e:
                    say(
                        f"clean-up: could not remove {what}: {aws.describe(e)} (invoke gc will retry)"
                    )
                    done.left.append(what)
                    return
                time.sleep(POLL_S)
            say(f"clean-up: could not remove {what}: still in use (invoke gc will retry)")
            done.left.append(what)

        if created.instance_ids:
            ids = list(created.instance_ids)
            attempt(
                f"instance {', '.join(ids)} (terminated)",
                lambda: ec2.terminate_instances(InstanceIds=ids),
            )
            if not _wait_terminated(ec2, ids, say):
                done.left.append(f"instance {', '.join(ids)} (terminating)")
        if created.key_name:
            name = created.key_name
            attempt(f"key pair {name}", lambda: ec2.delete_key_pair(KeyName=name))
        if created.group_id:
            group = created.group_id
            attempt(
                f"security group {group}",
                lambda: ec2.delete_security_group(GroupId=group),
                retry="DependencyViolation",  # the ended instance's interface lingers a little
            )
        if created.profile:
            removed, left = instanceprofile.delete(
                aws.client("iam"), created.profile, lambda line: say(f"clean-up: {line}")
            )
            done.removed += removed
            done.left += left
        try:
            if created.in_flight:  # its instance, if any, may not show by tag at once
                say("clean-up: a launch was under way; looking for its instance by the run id")
                time.sleep(2 * POLL_S)
            done.removed += cleanup.sweep(ec2, created.run_id, images=False, say=say)
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:
            say(f"clean-up: the sweep of run {created.run_id} failed: {aws.describe(e)}")
            done.left.append(f"whatever else carries {catalog.RUN_ID}={created.run_id}")
        say(f"verify: removed {done}" if done.removed else f"verify: nothing was removed {done}")
        return done


# --- the run ------------------------------------------------------------------------------


@dataclass
class Result:
    image: str
    ami_id: str
    region: str
    local: bool
    launched: Launched | None = None
    verdict: Verdict | None = None
    marked: str | None = None  # catalog.PASSED | catalog.FAILED | None
    timings: dict[str, Any] = field(default_factory=dict)
    boot: dict[str, float] = field(default_factory=dict)  # seconds after launch
    cleaned: Cleaned | None = None
    host: str | None = None
    initialization_rate: int | None = None  # MiB/s the volume was initialized at; None: lazily


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def marks(result: Result) -> tuple[bool, dict[str, str]]:
    """The verification tags for the verdict: passed or failed, each with its own keys."""
    assert result.verdict is not None
    v, launched = result.verdict, result.launched
    gpu = result.timings.get("gpu_name") or (launched.gpu if launched else None) or "unknown GPU"
    where = f"{launched.instance_type} {gpu}" if launched else str(gpu)
    common = {VERIFY_GPU: expect.clip(where), VERIFY_REPORT: v.sha256}
    cold = result.timings.get("cold_load_s")
    if isinstance(cold, int | float) and not isinstance(cold, bool):
        rate = result.initialization_rate
        how = f"volume initialized at {rate} MiB/s" if rate else "volume loaded lazily"
        common[VERIFY_COLD_LOAD] = f"{cold:.0f}s from boot to models loaded, {how}"
    if v.passed:
        line = expect.compact_timings(result.timings, ssh=result.boot.get("ready"))
        return True, common | {VERIFIED_AT: _now(), VERIFY_TIMINGS: expect.clip(line)}
    return False, common | {VERIFY_FAILURE: expect.clip(v.first_problem or "unknown failure")}


def verify(
    image: ImageDef,
    options: Options,
    *,
    use_emulator: bool = False,
    say: Say = print,
    reach: Reach = reach_over_ssh,
    run_suite: expect.RunSuite = expect.run_pytest,
    ssm_proxy: Callable[[str], str] = session_manager_proxy,
) -> Result:
    """Verify one AMI of the image on a spot GPU instance (see the module's docstring).

    Everything that can be refused is checked before anything is created."""
    check_ami_id(options.ami_id)
    if not use_emulator and reach is reach_over_ssh and not shutil.which("ssh"):
        raise BakeryError(
            "verify reaches the instance with the OpenSSH client, and ssh is not on PATH: install it"
        )
    started_here = use_emulator and not os.environ.get("AWS_ENDPOINT_URL")
    with local.emulator(say) if use_emulator else contextlib.nullcontext():
        aws.identity()
        ec2 = aws.client("ec2")
        try:
            ami = pick_ami(ec2, image, options.ami_id, say)
        except BakeryError as e:
            if started_here and not options.ami_id:
                raise BakeryError(
                    f"{e}; the emulator started for this task starts empty: run one (moto_server -p 5000),"
                    " export AWS_ENDPOINT_URL=http://127.0.0.1:5000, bake into it with --local, then verify --local"
                ) from None
            raise
        choice = network.choose(image, "verify", options.subnet, options.security_groups)
        via_ssm = choice.network.session_manager
        if via_ssm and options.ssh_cidr:
            raise BakeryError(
                '--ssh-cidr applies only with communicator = "ssh": through Session Manager'
                " nothing is admitted inbound"
            )
        proxy = ssm_proxy(ec2.meta.region_name) if via_ssm and not use_emulator else None
        cidr = None if via_ssm else runner_cidr(options.ssh_cidr, use_emulator, say)
        where = plan(ec2, image, choice, cidr)
        boot = _boot(image, choice.network)
        return _run(
            ec2, image, ami, where, options, use_emulator, say, reach, run_suite, boot, proxy
        )


def _boot(image: ImageDef, net: config.Network) -> Boot:
    """As a fleet instance boots: the fleet's user-data (so the UI starts and the models load
    as they do there) and its volume initialization rate; a named instance profile, checked."""
    profile = None
    if net.instance_profile:
        iam = aws.client("iam")
        profile = instanceprofile.check_named(
            iam, net.instance_profile, "verify.instance_profile"
        ).name
    return Boot(userdata.render(image), image.launch.volume_initialization_rate, profile)


def _tags(image: ImageDef, ami: dict[str, Any], run_id: str, expires: str) -> dict[str, str]:
    return (
        catalog.tool_tags(image.name, **{catalog.RUN_ID: run_id, catalog.EXPIRES_AT: expires})
        | image.tags
        | {"Name": f"bakery-verify {image.name} {ami['ImageId']}"}
    )


def _run(
    ec2: Any,
    image: ImageDef,
    ami: dict[str, Any],
    where: Plan,
    options: Options,
    use_emulator: bool,
    say: Say,
    reach: Reach,
    run_suite: expect.RunSuite,
    boot: Boot,
    proxy: str | None,
) -> Result:
    ami_id = ami["ImageId"]
    result = Result(image.name, ami_id, ec2.meta.region_name, use_emulator)
    result.initialization_rate = boot.initialization_rate
    paths = expect.paths_for(image).fresh()
    created = Created(new_build_id())
    deadline = time.monotonic() + options.timeout_s
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=options.timeout_s + TTL_GRACE_S)
    tags = _tags(image, ami, created.run_id, expires.strftime("%Y-%m-%dT%H:%M:%SZ"))
    directory = Path(tempfile.mkdtemp(prefix="bakery-verify-"))
    access = Access(image.base.ssh_username, directory, proxy_command=proxy)
    say(
        f"verify: {image.name}: {ami_id} ({ami.get('Name', 'unnamed')}) in {result.region},"
        f" run {created.run_id}, timeout {duration(options.timeout_s)}"
    )
    phase = "creating the security group and key pair"
    failure: BaseException | None = None
    with sigterm_as_interrupt():
        try:
            returncode = -1
            with watchdog(options.timeout_s):
                create_access(ec2, image, where, created, access, tags, say)
                if where.session_manager and not boot.instance_profile:
                    phase = "making the instance profile"
                    boot = _with_run_profile(boot, created, tags, say)
                phase = "launching"
                launched = result.launched = launch_with_fallback(
                    ec2, ami, where, created, tags, say, boot
                )
                t0 = time.monotonic()
                # It boots with the fleet's user-data (Boot.user_data): the boot checks apply.
                expectations = expect.expectations(
                    image, ami, gpu_name=launched.gpu, booted_with_user_data=True
                )
                expect.write(paths.expect, expectations)
                phase = f"waiting for {launched.instance_id} to run and pass its status checks"
                wait_running(ec2, launched, say)
                result.boot["status_ok"] = time.monotonic() - t0
                if not use_emulator:
                    phase = f"waiting for SSH and cloud-init on {launched.instance_id}"
                    reach(ec2, launched, access, say)
                    result.boot["ready"] = time.monotonic() - t0
                    result.host = access.url(host_name(launched, access))
                    phase = "running the image tests"
                    say(
                        f"verify: running the image tests: pytest {expect.SUITE.relative_to(expect.REPO)} --hosts={result.host}"
                    )
                    command = expect.suite_command(
                        result.host, paths, ssh_config=access.ssh_config, identity=access.key
                    )
                    returncode = run_suite(command, max(deadline - time.monotonic(), 1))
                    close_master(access, host_name(launched, access))
            if not use_emulator:
                phase = "judging the report"
                result.verdict = expect.judge(paths, returncode)
                result.timings = expect.read_timings(paths.timings)
                if not result.verdict.passed:
                    _still_there(ec2, result.launched)
                passed, details = marks(result)
                phase = f"marking {ami_id}"
                catalog.mark_verification(ec2, catalog.get(ec2, ami_id), passed, details)
                result.marked = catalog.PASSED if passed else catalog.FAILED
        except BaseException as e:  # every way out ends the instance first, then goes on
            failure = e
        finally:
            result.cleaned = clean(ec2, created, directory, say)
            _record_usage(ec2, ami_id, created, say)
    _record(paths, result)
    ended = (
        "ended the instance and removed what it created"
        if not result.cleaned.left
        else "the clean-up left some resources for gc (see above)"
    )
    if phase.startswith("marking"):
        ended += f"; check {ami_id}'s {catalog.VERIFICATION} tag (the marking was cut short)"
    else:
        ended += f"; {ami_id} is not marked"
    if isinstance(failure, TimedOut):
        raise BakeryError(
            f"verify of {image.name} timed out after {duration(options.timeout_s)} (--timeout) while"
            f" {phase}; {ended}"
        )
    if isinstance(failure, KeyboardInterrupt):
        raise Interrupted(f"verify of {image.name} interrupted while {phase}; {ended}")
    if aws.expired(failure or Exception()):
        raise BakeryError(
            f"the AWS credentials expired while {phase} ({aws.describe(failure)}); {ended}:"
            " renew them (a longer session, or a role the SDK refreshes) and verify again"
        )
    if failure is not None:
        raise failure
    summary(result, paths, say)
    if use_emulator:
        say(
            "local: no machine exists behind the emulator: the image tests were not run;"
            f" {ami_id} is not marked verified"
        )
    elif result.verdict and not result.verdict.passed:
        raise BakeryError(
            f"{ami_id} failed verification: {result.verdict.first_problem}"
            f" (tagged {catalog.VERIFICATION}={catalog.FAILED})"
        )
    return result


def _with_run_profile(boot: Boot, created: Created, tags: dict[str, str], say: Say) -> Boot:
    document = instanceprofile.policy(session_manager=True, s3_urls=[])
    assert document is not None
    iam = aws.client("iam")
    created.profile = instanceprofile.create(iam, created.run_id, tags, document, say).name
    return dataclasses.replace(boot, instance_profile=created.profile)


def _record_usage(ec2: Any, ami_id: str, created: Created, say: Say) -> None:
    """The instance's hours (it has ended), as a tag for `invoke cost`, whatever the verdict."""
    if not created.instance_ids:
        return
    try:
        usage.record(ec2, catalog.get(ec2, ami_id), usage.VERIFY, created.run_id)
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError, BakeryError) as e:
        say(f"verify: warning: the instance's hours were not recorded: {aws.describe(e)}")


def _still_there(ec2: Any, launched: Launched | None) -> None:
    """A spot instance reclaimed mid-test fails checks that say nothing about the AMI."""
    if launched is None:
        return
    instance = describe_instance(ec2, launched.instance_id)
    if instance and instance["State"]["Name"] != "running":
        reason = instance.get("StateReason", {}).get("Message") or "no reason given"
        raise (SpotInterrupted if reclaimed(instance) else BakeryError)(
            f"{launched.instance_id} went {instance['State']['Name']} during the image tests ({reason});"
            " the AMI is not marked: run verify again"
        )


def _record(paths: expect.Paths, result: Result) -> None:
    """build/NAME/verify.json: what this run did, for CI and for people."""
    v, launched = result.verdict, result.launched
    data = {
        "image": result.image,
        "ami_id": result.ami_id or None,
        "region": result.region or None,
        "local": result.local,
        "host": result.host,
        "instance": None
        if launched is None
        else {
            "id": launched.instance_id,
            "type": launched.instance_type,
            "gpu": launched.gpu,
            "zone": launched.zone,
            "address": launched.address or None,
        },
        "verdict": None
        if v is None
        else {
            "passed": v.passed,
            "tests": v.tests,
            "failures": v.failures,
            "errors": v.errors,
            "skipped": v.skipped,
            "first_problem": v.first_problem,
            "report_sha256": v.sha256,
        },
        "marked": result.marked,
        "timings": result.timings,
        "boot_s": {k: round(s, 1) for k, s in result.boot.items()},
        "removed": result.cleaned.removed if result.cleaned else [],
        "left": result.cleaned.left if result.cleaned else [],
    }
    paths.directory.mkdir(parents=True, exist_ok=True)
    paths.record.write_text(json.dumps(data, indent=2) + "\n")


def summary(result: Result, paths: expect.Paths, say: Say) -> None:
    v, launched = result.verdict, result.launched
    if result.local:
        verdict = "lifecycle checked against the emulator; image tests not run"
    else:
        verdict = "PASSED" if v and v.passed else "FAILED"
    say(f"verify {result.image}: {verdict}")
    if result.ami_id:
        say(f"  ami          {result.ami_id} in {result.region}")
    if launched:
        say(
            f"  instance     {launched.instance_id} spot {launched.instance_type}"
            f" ({launched.gpu}) in {launched.zone}"
        )
    if result.host:
        say(f"  host         {result.host}")
    if v:
        say(f"  checks       {v.counts}")
        if v.first_problem:
            say(f"  first        {v.first_problem}")
        ready = result.boot.get("ready")
        say(
            f"  timings      {expect.compact_timings(result.timings)}"
            + (f"; SSH and cloud-init ready {duration(ready)} after launch" if ready else "")
        )
        notes = result.timings.get("notes")
        for key, why in notes.items() if isinstance(notes, dict) else []:
            say(f"  unmeasured   {key}: {why}")
        say(f"  report       {expect.rel(paths.report)} (sha256 {v.sha256[:12]})")
    elif "status_ok" in result.boot:
        say(f"  boot         status checks ok {duration(result.boot['status_ok'])} after launch")
    say(f"  expectations {expect.rel(paths.expect)}")
    if result.cleaned is not None:
        say(f"  cleaned      {result.cleaned}")
    if result.marked:
        say(f"  marked       {catalog.VERIFICATION}={result.marked}")
    elif not result.local and result.launched is None:
        say("  marked       nothing (--host never marks an AMI)")


# --- --host: the suite alone --------------------------------------------------------------


def against_host(
    image: ImageDef,
    url: str,
    *,
    ami_id: str | None = None,
    gpu: str | None = None,
    ssh_key: str | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_MIN * 60,
    say: Say = print,
    run_suite: expect.RunSuite = expect.run_pytest,
) -> Result:
    """The image tests alone against a host that exists: no AWS resources, no marks."""
    check_ami_id(ami_id)
    scheme, host, port = parse_host(url)
    key = Path(ssh_key).expanduser() if ssh_key else None
    if key and not key.is_file():
        raise BakeryError(f"--ssh-key {ssh_key}: no such file")
    ami = None
    region = ""
    if ami_id:
        aws.identity()
        ec2 = aws.client("ec2")
        ami, region = catalog.get(ec2, ami_id), ec2.meta.region_name
    if scheme != "local":
        check_reachable(url, host, port)
    paths = expect.paths_for(image).fresh()
    expect.write(paths.expect, expect.expectations(image, ami, gpu_name=gpu))
    result = Result(image.name, ami_id or "", region, False, host=url)
    say(
        f"verify: running the image tests against {url} (no instance is launched, nothing is marked)"
    )
    try:
        with sigterm_as_interrupt(), watchdog(timeout_s):
            returncode = run_suite(expect.suite_command(url, paths, identity=key), timeout_s)
    except TimedOut:
        raise BakeryError(
            f"the image tests against {url} timed out after {duration(timeout_s)} (--timeout)"
        ) from None
    except KeyboardInterrupt:
        raise Interrupted(f"the image tests against {url} were interrupted") from None
    result.verdict = expect.judge(paths, returncode)
    result.timings = expect.read_timings(paths.timings)
    _record(paths, result)
    summary(result, paths, say)
    if not result.verdict.passed:
        raise BakeryError(f"{url} failed the image tests: {result.verdict.first_problem}")
    return result


# --- the task's entry ---------------------------------------------------------------------


def _apply(flags: list[str]) -> str:
    return "applies" if len(flags) == 1 else "apply"


def main(
    image: ImageDef,
    *,
    ami: str | None = None,
    host: str | None = None,
    use_emulator: bool = False,
    timeout: Any = DEFAULT_TIMEOUT_MIN,
    subnet: str | None = None,
    ssh_cidr: str | None = None,
    gpu: str | None = None,
    ssh_key: str | None = None,
    security_groups: tuple[str, ...] = (),
    say: Say = print,
) -> Result:
    """`invoke verify`: the options checked together, then an instance run or --host."""
    timeout_s = check_timeout(timeout)
    check_ami_id(ami)
    if host:
        only_launch = [
            f
            for f, v in (
                ("--local", use_emulator),
                ("--subnet", subnet),
                ("--ssh-cidr", ssh_cidr),
                ("--security-group", security_groups),
            )
            if v
        ]
        if only_launch:
            raise BakeryError(
                f"{' and '.join(only_launch)} {_apply(only_launch)} only when verify launches an"
                " instance, not with --host"
            )
        return against_host(
            image, host, ami_id=ami, gpu=gpu, ssh_key=ssh_key, timeout_s=timeout_s, say=say
        )
    only_host = [f for f, v in (("--gpu", gpu), ("--ssh-key", ssh_key)) if v]
    if only_host:
        raise BakeryError(
            f"{' and '.join(only_host)} {_apply(only_host)} only with --host (a launched instance's GPU follows"
            " from its type, and its key is made for the run)"
        )
    network.choose(image, "verify", subnet, tuple(security_groups))  # the syntax, before AWS
    options = Options(
        ami,
        timeout_s,
        subnet,
        ssh_network(ssh_cidr) if ssh_cidr else None,
        tuple(security_groups),
    )
    return verify(image, options, use_emulator=use_emulator, say=say)
