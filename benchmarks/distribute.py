#!/usr/bin/env python3
"""API calls and wall time of publish and prune, against an in-process emulator (moto).

    .venv/bin/python benchmarks/distribute.py

Not a test: it prints tables. publish to 1, 10 and 50 accounts across 1, 3 and 10 regions
(first run and rerun), and prune over 10, 100 and 1000 AMIs (plan, then --apply). The calls
are counted on the clients the tool makes (a botocore event hook); read-only calls are
Describe*/Get*/List*, the rest change something. Wall times are the emulator's, in one
process: they show how the work scales, not how long AWS takes.

One stand-in, as in the tests: the emulator has no AMI deprecation (enable_image_deprecation
is not implemented), so a hook answers EnableImageDeprecation here (counted like any call),
and reports the deprecation times of the AMIs set up as deprecated long ago.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import boto3
from moto import mock_aws

from bakery import aws, catalog, config, keypolicy, prune, publish
from bakery.distribute import Targets

BUILD = "us-east-1"
OTHER_REGIONS = [
    "eu-west-1",
    "ap-southeast-2",
    "us-west-2",
    "eu-central-1",
    "ap-northeast-1",
    "ca-central-1",
    "sa-east-1",
    "eu-north-1",
    "ap-south-1",
]
STOCK_AMI = "ami-12c6146b"
READ_ONLY = ("Describe", "Get", "List")
NOW = dt.datetime.now(dt.UTC)


@contextmanager
def counted() -> Iterator[Counter[str]]:
    calls: Counter[str] = Counter()

    def count(model: Any, **_: Any) -> None:
        calls[model.name] += 1

    remove = aws.on_event("before-parameter-build", count)
    try:
        yield calls
    finally:
        remove()


def split(calls: Counter[str]) -> tuple[int, int]:
    reads = sum(n for op, n in calls.items() if op.startswith(READ_ONLY))
    return reads, sum(calls.values()) - reads


@contextmanager
def deprecation_stand_in(expired: set[str]) -> Iterator[None]:
    """EnableImageDeprecation answered here; DescribeImages tells expired AMIs' deprecation."""

    class Http:
        status_code, headers, content = 200, {}, b""

    def enable(**_: Any) -> tuple[Any, dict[str, Any]]:
        return Http(), {"Return": True}

    def describe(parsed: dict[str, Any], **_: Any) -> None:
        for image in parsed.get("Images", []):
            if image["ImageId"] in expired:
                image["DeprecationTime"] = "2020-01-01T00:00:00.000Z"

    removers = [
        aws.on_event("before-call.ec2.EnableImageDeprecation", enable),
        aws.on_event("after-call.ec2.DescribeImages", describe),
    ]
    try:
        yield
    finally:
        for remove in removers:
            remove()


@contextmanager
def emulator() -> Iterator[None]:
    os.environ.pop("AWS_ENDPOINT_URL", None)
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION=BUILD
    )
    with mock_aws():
        aws.reset()
        yield
    aws.reset()


def image_def(**distribute: Any) -> config.ImageDef:
    image = config.load("deepseek-r1-7b")
    return dataclasses.replace(
        image, distribute=dataclasses.replace(image.distribute, **distribute)
    )


def source_ami(ec2: Any, run: str, *, verified: bool) -> str:
    """An AMI tagged as a bake leaves it (and verify marks it)."""
    instance = ec2.run_instances(ImageId=STOCK_AMI, MinCount=1, MaxCount=1)
    instance_id = instance["Instances"][0]["InstanceId"]
    ami_id = ec2.create_image(InstanceId=instance_id, Name=f"deepseek-r1-7b-{run}")["ImageId"]
    ec2.terminate_instances(InstanceIds=[instance_id])
    tags = catalog.tool_tags(
        "deepseek-r1-7b",
        **{
            catalog.RUN_ID: run,
            catalog.FINGERPRINT: run.rjust(64, "0"),
            catalog.PROVISIONED: "true",
        },
    )
    if verified:
        tags[catalog.VERIFICATION] = catalog.PASSED
    ec2.create_tags(Resources=[ami_id], Tags=catalog.tag_list(tags))
    return ami_id


def bench_publish(accounts: int, regions: int) -> tuple[Counter[str], float, Counter[str], float]:
    with emulator():
        others = OTHER_REGIONS[: regions - 1]
        ids = tuple(f"{100000000000 + i}" for i in range(accounts))
        keys = {}
        for region in others:  # customer keys whose policies admit the accounts already
            kms = boto3.client("kms", region)
            arn = kms.create_key()["KeyMetadata"]["Arn"]
            policy = keypolicy.merged(
                {"Version": "2012-10-17", "Statement": []}, keypolicy.statements(Targets(ids))
            )
            kms.put_key_policy(
                KeyId=arn, PolicyName="default", Policy=str(policy).replace("'", '"')
            )
            keys[region] = arn
        source_ami(boto3.client("ec2", BUILD), "20250101-000000-000001", verified=True)
        image = image_def(regions=tuple(others), accounts=ids, kms_key_ids=keys)
        runs = []
        for _ in range(2):
            with counted() as calls:
                started = time.perf_counter()
                publish.publish(image, say=lambda _: None, poll_seconds=0.01)
                runs.append((calls, time.perf_counter() - started))
        (first, t1), (again, t2) = runs
        return first, t1, again, t2


def bench_prune(amis: int) -> tuple[Counter[str], float, Counter[str], float, int, int]:
    with emulator():
        ec2 = boto3.client("ec2", BUILD)
        response = ec2.run_instances(ImageId=STOCK_AMI, MinCount=1, MaxCount=1)
        instance_id = response["Instances"][0]["InstanceId"]
        made = []
        for n in range(amis):
            ami_id = ec2.create_image(InstanceId=instance_id, Name=f"deepseek-r1-7b-{n:06d}")
            made.append(ami_id["ImageId"])
        ec2.terminate_instances(InstanceIds=[instance_id])
        tags = catalog.tool_tags("deepseek-r1-7b", **{catalog.FINGERPRINT: "0" * 64})
        for start in range(0, amis, 500):
            ec2.create_tags(Resources=made[start : start + 500], Tags=catalog.tag_list(tags))
        ordered = [a["ImageId"] for a in catalog.images(ec2, "deepseek-r1-7b")]  # newest first
        ec2.create_tags(
            Resources=ordered[:1], Tags=[{"Key": catalog.VERIFICATION, "Value": catalog.PASSED}]
        )
        expired = set(ordered[-(amis // 3) :])  # as if a prune long ago had deprecated them
        image = image_def(regions=(), keep=3)
        with deprecation_stand_in(expired):
            with counted() as plan_calls:
                started = time.perf_counter()
                decisions = prune.prune(image, say=lambda _: None)
                plan_s = time.perf_counter() - started
            with counted() as apply_calls:
                started = time.perf_counter()
                prune.prune(image, act=True, say=lambda _: None)
                apply_s = time.perf_counter() - started
        deprecate = sum(d.action == prune.DEPRECATE for d in decisions)
        deregister = sum(d.action == prune.DEREGISTER for d in decisions)
        return plan_calls, plan_s, apply_calls, apply_s, deprecate, deregister


def table(rows: list[list[str]], header: list[str]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    for row in [header, *rows]:
        print("  ".join(str(x).rjust(w) for x, w in zip(row, widths, strict=True)))


def ops(calls: Counter[str], keep: Callable[[str], bool] = lambda _: True) -> str:
    return ", ".join(f"{op} {n}" for op, n in sorted(calls.items()) if keep(op))


def main() -> None:
    print("publish: first run (copies, shares, SSM), then a rerun; calls are all API calls")
    rows = []
    biggest: Counter[str] = Counter()
    for regions in (1, 3, 10):
        for accounts in (1, 10, 50):
            first, t1, again, t2 = bench_publish(accounts, regions)
            r1, w1 = split(first)
            r2, w2 = split(again)
            rows.append([accounts, regions, r1 + w1, w1, f"{t1:.2f}s", r2 + w2, w2, f"{t2:.2f}s"])
            biggest = first
    table(
        rows,
        ["accounts", "regions", "calls", "changes", "wall", "rerun calls", "changes", "wall"],
    )
    print(f"  50 accounts x 10 regions, first run, by operation: {ops(biggest)}")
    print()
    print("prune: one region, keep 3; a third of the older AMIs deprecated long ago")
    rows = []
    for amis in (10, 100, 1000):
        plan, plan_s, apply, apply_s, deprecate, deregister = bench_prune(amis)
        reads, writes = split(apply)
        rows.append(
            [
                amis,
                sum(plan.values()),
                f"{plan_s:.2f}s",
                deprecate,
                deregister,
                reads,
                writes,
                f"{apply_s:.2f}s",
            ]
        )
        last = apply
    table(
        rows,
        [
            "AMIs",
            "plan calls",
            "wall",
            "to deprecate",
            "to deregister",
            "apply reads",
            "apply changes",
            "wall",
        ],
    )
    print(
        f"  1000 AMIs, --apply, reads by operation: {ops(last, lambda op: op.startswith(READ_ONLY))}"
    )
    print(
        f"  1000 AMIs, --apply, changes by operation: {ops(last, lambda op: not op.startswith(READ_ONLY))}"
    )
    print(
        "  (one EnableImageDeprecation / DeregisterImage per AMI acted on: EC2 has no batch form;"
        " the emulator leaves snapshots behind DeleteAssociatedSnapshots, hence its DeleteSnapshot"
        " calls, which AWS does not need)"
    )


if __name__ == "__main__":
    main()
