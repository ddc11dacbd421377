"""invoke bake: resolve the base, fingerprint, skip or build with Packer, tag the provenance."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
import secrets
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import botocore.exceptions

from . import (
    __version__,
    aws,
    catalog,
    cleanup,
    instanceprofile,
    local,
    network,
    packer,
    quotas,
    render,
    spot,
    usage,
)
from .config import ImageDef
from .errors import BakeryError, ConfigError, Interrupted, SpotInterrupted
from .fingerprint import fingerprint

REPO = render.REPO
SCRIPTS = REPO / "scripts"
VERSION_INFO = "version-info.json"  # written by scripts/version-info.sh, downloaded by Packer

Say = Callable[[str], None]


@dataclass(frozen=True)
class Base:
    ami_id: str
    name: str
    via: str  # how it was found, for the provenance tag


@dataclass
class Outcome:
    action: str  # "built" | "skipped"
    ami_id: str
    region: str
    fingerprint: str
    manifest: dict[str, Any]


def resolve_base(ec2: Any, ssm: Any, image: ImageDef, *, parameter: str | None = None) -> Base:
    """The base AMI as of now: from the SSM parameter, or the newest AMI matching the filter."""
    if image.base.ssm_parameter:
        name = parameter or image.base.ssm_parameter
        try:
            ami_id = ssm.get_parameter(Name=name)["Parameter"]["Value"]
        except ssm.exceptions.ParameterNotFound:
            raise ConfigError(
                image.path, "base.ssm_parameter", f"{name} does not exist in {ssm.meta.region_name}"
            ) from None
        ami = catalog.get(ec2, ami_id)
        return Base(ami_id, ami.get("Name", ""), f"ssm:{image.base.ssm_parameter}")
    found = ec2.describe_images(
        Owners=list(image.base.filter_owners),
        Filters=[
            {"Name": "name", "Values": [image.base.filter_name]},
            {"Name": "state", "Values": ["available"]},
        ],
    )["Images"]
    if not found:
        raise ConfigError(
            image.path,
            "base.filter",
            f"no AMI in {ec2.meta.region_name} matches {image.base.describe()}",
        )
    newest = max(found, key=lambda i: (i.get("CreationDate", ""), i["ImageId"]))
    return Base(newest["ImageId"], newest.get("Name", ""), f"filter:{image.base.filter_name}")


def git_commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        commit = git("rev-parse", "--short=12", "HEAD")
        return commit + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def provenance(
    image: ImageDef, base: Base, fp: str, build_id: str, info: dict[str, Any] | None
) -> dict[str, str]:
    """Tags of a finished AMI. The fingerprint is written with them, last: it marks it complete."""
    digests = {m["name"]: m.get("digest", "") for m in (info or {}).get("models", [])}
    # Without version info (a local bake): the pinned branch, or "base" for the base's driver.
    versions = {"ollama": image.ollama.version}
    if image.nvidia:
        versions["nvidia"] = image.nvidia.driver_branch or "base"
    if info:
        versions["ollama"] = info.get("ollama") or versions["ollama"]
        if info.get("nvidia_driver") or image.nvidia:
            versions["nvidia"] = info.get("nvidia_driver") or versions["nvidia"]
    tags = catalog.tool_tags(
        image.name,
        **{
            catalog.RUN_ID: build_id,
            catalog.SOURCE_AMI: base.ami_id,
            catalog.BASE: base.via[:256],
            catalog.MODELS: ",".join(image.model_names),
            catalog.VERSIONS: " ".join(f"{k}={v}" for k, v in versions.items()),
            catalog.UI: image.ui.tag,
            catalog.PROVISIONED: "true" if info is not None else "false",
            catalog.TOOL_VERSION: __version__,
            catalog.GIT_COMMIT: git_commit(),
            catalog.BUILT_AT: dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
    )
    if info and (info.get("ui") or {}).get("id"):
        tags[catalog.UI_IMAGE_ID] = info["ui"]["id"]
    for name in image.model_names:
        # Ollama lists an untagged reference as name:latest.
        tags[catalog.MODEL + name] = digests.get(name) or digests.get(f"{name}:latest") or "unknown"
    return tags | image.tags


def new_build_id() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)


def build_network(ec2: Any, choice: network.Choice, say: Say) -> dict[str, str]:
    """Packer's subnet_id and security_group_ids for the build: the chosen subnet with the most
    free addresses, or Packer's own choice in the default VPC (which must exist)."""
    where = network.placement(ec2, choice)
    subnet = where.subnet_ids[0] if where.chosen else ""
    if subnet:
        zone = next(z for z, s in where.subnets.items() if s == subnet)
        say(f"bake: build instance in {subnet} ({zone}, {where.vpc_id}; {choice.subnet_from})")
    groups = list(where.security_group_ids)
    if groups:
        say(f"bake: security groups {', '.join(groups)} ({choice.groups_from}); Packer makes none")
    return {"subnet_id": subnet, "security_group_ids": json.dumps(groups)}


def profile_document(image: ImageDef) -> dict[str, Any] | None:
    """What the build instance itself needs: Session Manager, and the s3:// model files."""
    return instanceprofile.policy(
        session_manager=image.build.network.session_manager,
        s3_urls=[m.gguf_url for m in image.models if m.gguf_url and m.gguf_url.startswith("s3://")],
    )


def bake(
    image: ImageDef,
    *,
    use_emulator: bool = False,
    force: bool = False,
    subnet: str | None = None,
    security_groups: tuple[str, ...] = (),
    say: Say = print,
) -> Outcome:
    choice = network.choose(image, "build", subnet, security_groups)  # the syntax, first
    packer_bin = packer.binary()
    packer_version = packer.version(packer_bin)
    if not use_emulator:
        packer.require_for_aws(packer_version, packer_bin)
    with local.emulator(say) if use_emulator else contextlib.nullcontext() as endpoint:
        aws.identity()
        region = aws.region()
        ec2, ssm = aws.client("ec2"), aws.client("ssm")
        aws.check_instance_types(ec2, image, "build")
        parameter = None
        if use_emulator and image.base.ssm_parameter:
            parameter = local.stand_in_base(ssm, ec2, image.base.ssm_parameter, say)
        base = resolve_base(ec2, ssm, image, parameter=parameter)
        rendered = render.render(image, packer_version, local=use_emulator)
        fp = fingerprint(rendered.files, SCRIPTS, base.ami_id)
        say(f"bake: {image.name}: base {base.ami_id} ({base.name}), fingerprint {fp[:12]}")

        existing = catalog.with_fingerprint(ec2, image.name, fp)
        if existing and not force:
            state = catalog.tags_of(existing).get(catalog.VERIFICATION, "not verified")
            say(
                f"bake: nothing to do: {existing['ImageId']} in {region} already has fingerprint {fp[:12]}"
                f" (built {existing.get('CreationDate', '?')}, verification: {state}); --force rebuilds"
            )
            return _write(
                rendered.directory,
                "skipped",
                existing["ImageId"],
                region,
                fp,
                image,
                base,
                use_emulator,
            )

        # Where it builds, checked before anything is made (a skipped bake needs no network).
        placed = build_network(ec2, choice, say)
        document = profile_document(image)
        named = image.build.network.instance_profile
        if named:
            instanceprofile.check_named(aws.client("iam"), named, "build.instance_profile")
        build_id = new_build_id()
        variables = {"region": region, "source_ami": base.ami_id, "build_id": build_id}
        variables |= placed | {"iam_instance_profile": named or ""}
        variables |= (
            {"ec2_endpoint": str(endpoint)}
            if use_emulator
            # The build host's files for file:// URLs: plumbing, so -var, not fingerprinted.
            else {"scripts_dir": str(SCRIPTS), "uploads": json.dumps(render.uploads(image))}
        )
        if packer_version >= render.MODERN:
            packer.check(packer.init_command(packer_bin, rendered), "init")
        packer.check(packer.validate_command(packer_bin, rendered, variables), "validate")
        if use_emulator:
            _say_emulator_limits(packer_version, say)
        # A version-info.json left by an earlier bake must never stand in for this one's.
        (rendered.directory / VERSION_INFO).unlink(missing_ok=True)
        started = time.monotonic()
        made: str | None = None
        try:
            if document and not named:
                tags = catalog.tool_tags(image.name, **{catalog.RUN_ID: build_id}) | {
                    catalog.EXPIRES_AT: _expiry(image)
                }
                made = instanceprofile.create(aws.client("iam"), build_id, tags, document, say).name
                variables["iam_instance_profile"] = made
            result = packer.run(
                packer.build_command(packer_bin, rendered, variables),
                timeout_s=image.build.timeout_minutes * 60,
            )
            if result.interrupted:
                raise Interrupted(f"bake of {image.name} interrupted")
            if result.timed_out:
                raise BakeryError(
                    f"bake of {image.name} timed out after {image.build.timeout_minutes} minutes (build.timeout_minutes)"
                )
            if result.returncode != 0:
                raise build_failure(image, result, _state_reasons(ec2, build_id), region)
            artifact = packer.manifest(rendered.directory, build_id)
            ami = catalog.get(ec2, artifact["ami_id"])
            info = None if use_emulator else _version_info(rendered.directory)
            _secure(ec2, ami, say)
            _record_usage(ec2, ami, build_id, say)
            catalog.tag(
                ec2, ami, provenance(image, base, fp, build_id, info) | {catalog.FINGERPRINT: fp}
            )
        except BaseException as failure:
            _sweep(ec2, build_id, say)
            if isinstance(failure, KeyboardInterrupt):
                raise Interrupted(f"bake of {image.name} interrupted") from None
            raise
        finally:
            if made:
                _remove_profile(made, say)
        outcome = _write(
            rendered.directory,
            "built",
            ami["ImageId"],
            region,
            fp,
            image,
            base,
            use_emulator,
            build_id,
            info,
        )
        _summary(outcome, image, base, time.monotonic() - started, use_emulator, say)
        return outcome


def _say_emulator_limits(packer_version: tuple[int, int, int], say: Say) -> None:
    say(
        'local: Packer builds against the emulator with communicator "none": no machine exists'
        " behind it, so the provisioning scripts will not run"
    )
    if packer_version >= render.MODERN:
        say(
            "local: the run tags are not put on the AMI as it is created (skip_ami_run_tags): the"
            " emulator's CreateImage cannot tag snapshots; tags and snapshot_tags still tag the AMI"
            " and its snapshots, and bakes on AWS keep the plugin's default"
        )


# What Packer prints when its spot fleet request is refused: CreateFleet's error codes, or
# their messages ("There is no Spot capacity available that matches your request.").
_PACKER_QUOTA = re.compile(
    r"VcpuLimitExceeded|vCPU (capacity|limit)|MaxSpotInstanceCountExceeded|max spot instance count",
    re.I,
)
_PACKER_CAPACITY = re.compile(
    r"InsufficientInstanceCapacity|no Spot capacity available|capacity-not-available|UnfulfillableCapacity|sufficient \S+ capacity",
    re.I,
)
_PACKER_UNSUPPORTED = re.compile(
    r"\bUnsupported: |not supported in your requested Availability Zone", re.I
)


def build_failure(
    image: ImageDef, result: packer.Result, reasons: list[str], region: str = ""
) -> BakeryError:
    """Why `packer build` failed: EC2 reclaiming the spot build instance (seen in Packer's
    output or in the state reason of the run's instances) is worth a retry; spot quotas and
    capacity are said in one line with what to do; the rest is Packer's own words."""
    reclaimed = spot.interruption(*result.tail, *reasons)
    if reclaimed:
        return SpotInterrupted(
            f"EC2 reclaimed the spot build instance of {image.name} ({reclaimed}); nothing is wrong"
            " with the image: bake again"
        )
    types = image.build.instance_types
    said = "\n".join(result.tail)
    if _PACKER_QUOTA.search(said):
        code = "MaxSpotInstanceCountExceeded" if "max spot" in said.lower() else "VcpuLimitExceeded"
        named = dict.fromkeys(quotas.spot_quota(t).name for t in types)
        first = next(t for t in types if quotas.spot_quota(t).name == next(iter(named)))
        return BakeryError(
            "the spot build instance was refused: "
            + quotas.explain(code, first, region)
            + (
                f" (the other build types draw on {', '.join(list(named)[1:])})"
                if len(named) > 1
                else ""
            )
        )
    if _PACKER_CAPACITY.search(said):
        return BakeryError(
            f"no spot capacity for any of build.instance_types ({', '.join(types)}) in {region}"
            f" where the build runs: add types to build.instance_types in {image.path}, bake in"
            " another zone with --subnet, or bake again later"
        )
    if _PACKER_UNSUPPORTED.search(said):
        return BakeryError(
            f"build.instance_types ({', '.join(types)}) are not offered in the build subnet's zone:"
            " pass --subnet (or set build.subnet) to a subnet in a zone that offers them"
        )
    return BakeryError(f"packer build failed: {packer.failure(result)}")


def _state_reasons(ec2: Any, build_id: str) -> list[str]:
    """The state reasons of the build's instances (found by the run-id tag); best effort."""
    try:
        reservations = ec2.describe_instances(
            Filters=[{"Name": f"tag:{catalog.RUN_ID}", "Values": [build_id]}]
        )["Reservations"]
    except botocore.exceptions.ClientError:
        return []
    return [
        f"{i['InstanceId']} {i['State']['Name']}: {_reason(i.get('StateReason') or {})}"
        for r in reservations
        for i in r["Instances"]
        if i.get("StateReason")
    ]


def _reason(reason: dict[str, str]) -> str:
    code, message = reason.get("Code", ""), reason.get("Message", "")
    return message if message.startswith(code) else f"{code}: {message}"


def _version_info(directory: Path) -> dict[str, Any]:
    path = directory / VERSION_INFO
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise BakeryError(f"the build did not bring back {path}: {e}") from None


def _secure(ec2: Any, ami: dict[str, Any], say: Say) -> None:
    """AMIs are never public, their volumes are encrypted, and they launch with IMDSv2 only
    (older Packer cannot register that)."""
    if ami.get("Public"):
        raise BakeryError(f"{ami['ImageId']} is public; refusing to finish the bake")
    for mapping in ami.get("BlockDeviceMappings", []):
        encrypted = mapping.get("Ebs", {}).get("Encrypted")
        if encrypted is False:
            raise BakeryError(
                f"{ami['ImageId']}: {mapping['DeviceName']} is not encrypted; refusing to finish the bake"
            )
        if encrypted is None and "Ebs" in mapping:
            say(
                f"bake: warning: the API did not report whether {mapping['DeviceName']} of {ami['ImageId']} is encrypted"
            )
    if ami.get("ImdsSupport") != "v2.0":
        ec2.modify_image_attribute(ImageId=ami["ImageId"], ImdsSupport={"Value": "v2.0"})


def _expiry(image: ImageDef) -> str:
    """When gc may remove what this bake made: past its timeout, with room for Packer's clean-up."""
    at = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=image.build.timeout_minutes + 30)
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def _remove_profile(name: str, say: Say) -> None:
    iam = aws.client("iam")
    removed, _ = instanceprofile.delete(iam, name, lambda line: say(f"clean-up: {line}"))
    if not removed:
        try:  # the credentials may have expired during a long build: read them again, once
            removed, _ = instanceprofile.delete(aws.refreshed(iam), name, say)
        except botocore.exceptions.BotoCoreError as e:
            say(f"clean-up: could not remove instance profile {name}: {aws.describe(e)}")
    if removed:
        say("bake: removed " + " and ".join(removed))


def _record_usage(ec2: Any, ami: dict[str, Any], build_id: str, say: Say) -> None:
    """The build instance's hours, as a tag for `invoke cost`; a bake never fails over it."""
    try:
        used = usage.record(ec2, ami, usage.BAKE, build_id)
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError, BakeryError) as e:
        say(f"bake: warning: the build instance's hours were not recorded: {aws.describe(e)}")
        return
    if not used:
        say(f"bake: warning: no instance of build {build_id} found: its hours were not recorded")


def _sweep(ec2: Any, build_id: str, say: Say) -> None:
    say(f"bake: cleaning up what build {build_id} left in AWS")
    try:
        removed = cleanup.sweep(ec2, build_id, images=True, say=say)
    except botocore.exceptions.ClientError as e:
        if not aws.expired(e):
            raise
        # The clean-up must still happen: with the credentials read again (a renewed session).
        say(f"clean-up: {aws.describe(e)}; reading the credentials again")
        removed = cleanup.sweep(aws.refreshed(ec2), build_id, images=True, say=say)
    say("bake: removed " + "; ".join(removed) if removed else "bake: nothing was left behind")


def _write(
    directory: Path,
    action: str,
    ami_id: str,
    region: str,
    fp: str,
    image: ImageDef,
    base: Base,
    use_emulator: bool,
    build_id: str | None = None,
    info: dict[str, Any] | None = None,
) -> Outcome:
    manifest = {
        "action": action,
        "image": image.name,
        "ami_id": ami_id,
        "region": region,
        "fingerprint": fp,
        "build_id": build_id,
        "source_ami": base.ami_id,
        "base": base.via,
        "models": image.model_names,
        "local": use_emulator,
        "provisioned": info is not None,
        "version_info": info,
    }
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    # For CI (a GitLab dotenv report): later jobs skip when nothing was built.
    (directory / "bake.env").write_text(
        f"BAKERY_AMI_ID={ami_id}\nBAKERY_BAKED={'true' if action == 'built' else 'false'}\n"
    )
    return Outcome(action, ami_id, region, fp, manifest)


def _summary(
    outcome: Outcome, image: ImageDef, base: Base, seconds: float, use_emulator: bool, say: Say
) -> None:
    info = outcome.manifest["version_info"] or {}
    models = (
        ", ".join(f"{m['name']} ({m.get('digest', '')[:12]})" for m in info.get("models", []))
        or ", ".join(image.model_names) + " (not pulled)"
    )
    say(f"baked {image.name}: {outcome.ami_id} in {outcome.region}")
    say(f"  fingerprint  {outcome.fingerprint[:12]}")
    say(f"  base         {base.ami_id} {base.name} ({base.via})")
    say(f"  models       {models}")
    say(f"  took         {int(seconds) // 60}m{int(seconds) % 60:02d}s")
    say(f"  manifest     {Path('build', image.name, 'manifest.json')}")
    if use_emulator:
        say(
            "local: this AMI is a record in the emulator only. No instance ran, so no provisioning script"
            " ran: it holds no NVIDIA driver, Ollama, model weights or UI image, and it is not verified."
        )
    else:
        say(f"next: invoke verify --image {image.name}")
