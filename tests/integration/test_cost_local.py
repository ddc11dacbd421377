"""`invoke cost --local` as a user runs it, after bake, verify and launch --local recorded what
they used: the table's arithmetic, and the JSON's, checked against the emulator's own spot price
history. The emulator gives one made-up price for every pool, so the unit tests of
bakery.fleet.cost check the same arithmetic with distinct prices too."""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from cli import invoke, one_line_error
from launch_support import FLEET, IMAGE, cli_env
from tooling import require_tool, use_emulator

from bakery import catalog, usage
from bakery.fleet.cost import money

pytestmark = [pytest.mark.emulator, pytest.mark.terraform, pytest.mark.packer, pytest.mark.slow]

TPS = 92.3
MAX = 2  # --capacity 2: a fixed fleet's maximum is its size


@dataclass
class Costed:
    ami: dict[str, Any]
    before_launch: subprocess.CompletedProcess[str]
    table: subprocess.CompletedProcess[str]
    report: dict[str, Any]
    instances: list[dict[str, Any]]


def price_of(instance_type: str, zone: str) -> float | None:
    """The pool's price as the emulator's spot price history gives it; None where the type is
    not offered in the zone."""
    entries = boto3.client("ec2").describe_spot_price_history(
        InstanceTypes=[instance_type], Filters=[{"Name": "availability-zone", "Values": [zone]}]
    )["SpotPriceHistory"]
    assert len(entries) <= 1
    return float(entries[0]["SpotPrice"]) if entries else None


@pytest.fixture(scope="module")
def costed(emulator_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Costed]:
    require_tool("terraform")
    require_tool("packer")
    env = cli_env(tmp_path_factory.mktemp("cost-state"))
    with pytest.MonkeyPatch.context() as mp:
        use_emulator(mp, emulator_server, managed_policies=True)
        for step in (("bake",), ("verify",)):
            done = invoke(*step, "--image", IMAGE, "--local", env=env)
            assert done.returncode == 0, done.stdout[-3000:] + done.stderr
        ec2 = boto3.client("ec2")
        [ami] = ec2.describe_images(Owners=["self"])["Images"]
        # Stands in for `invoke verify` on a GPU instance, which cannot run behind the emulator:
        # the AMI is tagged as a passed verification tags it, with the rate it measured.
        catalog.mark_verification(
            ec2,
            ami,
            True,
            {
                "bakery:verified-at": "2025-06-01T00:00:00Z",
                "bakery:verify-gpu": "g5.xlarge NVIDIA A10G",
                "bakery:verify-timings": f"ready=38s ttft=0.41s tps={TPS} ssh=12s",
            },
        )
        before = invoke("cost", "--image", IMAGE, "--local", env=env)
        # One zone where the emulator offers every type of the fleet, so each instance has a price.
        (subnet,) = ec2.describe_subnets(
            Filters=[
                {"Name": "availability-zone", "Values": ["us-east-1a"]},
                {"Name": "default-for-az", "Values": ["true"]},
            ]
        )["Subnets"]
        launched = invoke(
            "launch",
            "--image",
            IMAGE,
            "--local",
            "--capacity",
            "2",
            "--wait-minutes",
            "1",
            "--subnet",
            subnet["SubnetId"],
            env=env,
        )
        assert launched.returncode == 0, launched.stdout[-3000:] + launched.stderr
        group = boto3.client("autoscaling").describe_auto_scaling_groups(
            AutoScalingGroupNames=[FLEET]
        )["AutoScalingGroups"][0]
        # The emulator launches the group's instances with no type at all (AWS launches one of
        # the overrides, see test_fleet_lifecycle.py): give them the types AWS would have.
        for member, kind in zip(group["Instances"], ["g5.xlarge", "g6.xlarge"], strict=True):
            ec2.modify_instance_attribute(
                InstanceId=member["InstanceId"], InstanceType={"Value": kind}
            )
        table = invoke("cost", "--image", IMAGE, "--local", env=env)
        as_json = invoke("cost", "--image", IMAGE, "--local", "--json", env=env)
        assert as_json.returncode == 0, as_json.stderr
        ids = [m["InstanceId"] for m in group["Instances"]]
        instances = [
            {
                "InstanceType": i["InstanceType"],
                "AvailabilityZone": i["Placement"]["AvailabilityZone"],
            }
            for r in ec2.describe_instances(InstanceIds=ids)["Reservations"]
            for i in r["Instances"]
        ]
        [ami] = ec2.describe_images(ImageIds=[ami["ImageId"]])["Images"]
        yield Costed(ami, before, table, json.loads(as_json.stdout), instances)
        invoke("destroy", "--image", IMAGE, "--local", env=env)


def test_bake_recorded_its_instance_hours(costed: Costed) -> None:
    (used,) = usage.parse(catalog.tags_of(costed.ami)[usage.BAKE])
    assert used.market == "spot" and used.hours >= usage.MINIMUM_S / 3600


def test_verify_recorded_its_instance_hours(costed: Costed) -> None:
    (used,) = usage.parse(catalog.tags_of(costed.ami)[usage.VERIFY])
    assert used.instance_type == "g5.xlarge"
    assert used.started <= dt.datetime.now(dt.UTC)


def test_nothing_launched_costs_nothing_now(costed: Costed) -> None:
    assert costed.before_launch.returncode == 0, costed.before_launch.stderr
    out = costed.before_launch.stdout
    assert "fleet (not launched: the definition's pools)" in out
    assert re.search(r"^  now      0 instances\s+0 /hour$", out, re.MULTILINE), out
    assert "at max   1 x" in out  # the definition's maximum: one instance


def test_now_is_the_sum_of_the_running_instances_pools(costed: Costed) -> None:
    fleet = costed.report["fleet"]
    assert len(fleet["instances"]) == len(costed.instances) == 2
    prices = [price_of(i["InstanceType"], i["AvailabilityZone"]) for i in costed.instances]
    assert None not in prices
    expected = sum(p or 0.0 for p in prices)
    assert fleet["now_per_hour"] == pytest.approx(expected)
    assert "  now      2 instances" in costed.table.stdout
    assert re.search(
        rf"^  now      2 instances\s+{re.escape(money(expected))} /hour$",
        costed.table.stdout,
        re.MULTILINE,
    )


def test_at_max_spans_the_cheapest_and_dearest_pool(costed: Costed) -> None:
    top = costed.report["fleet"]["at_max"]
    for pool in costed.report["pools"]:
        assert pool["price_per_hour"] == price_of(pool["instance_type"], pool["zone"])
    prices = [p["price_per_hour"] for p in costed.report["pools"] if p["price_per_hour"]]
    assert prices
    assert top["instances"] == MAX
    assert top["low_per_hour"] == pytest.approx(MAX * min(prices))
    assert top["high_per_hour"] == pytest.approx(MAX * max(prices))
    assert f"= {money(MAX * min(prices))} /hour" in costed.table.stdout


def test_the_fleets_pools_are_its_types_in_its_zones(costed: Costed) -> None:
    pools = {(p["instance_type"], p["zone"]) for p in costed.report["pools"]}
    types = ["g5.xlarge", "g5.2xlarge", "g6.xlarge", "g6e.xlarge"]
    assert pools == {(t, "us-east-1a") for t in types}


@pytest.mark.parametrize("step", ["bake", "verify"])
def test_a_runs_cost_is_its_hours_at_its_pools_price(costed: Costed, step: str) -> None:
    run = costed.report["ami"][step]
    (instance,) = run["instances"]
    price = price_of(instance["instance_type"], instance["zone"])
    assert instance["price_per_hour"] == price
    assert run["cost"] == pytest.approx(instance["hours"] * price)
    assert f"{step:<7}  total {money(run['cost'])}" in costed.table.stdout


def test_price_per_million_output_tokens(costed: Costed) -> None:
    tokens = costed.report["tokens"]
    assert tokens["tokens_per_s"] == TPS
    assert tokens["instance_type"] == "g5.xlarge"
    price = price_of("g5.xlarge", tokens["zone"])
    expected = price / (TPS * 3600) * 1_000_000
    assert tokens["per_million_output_tokens"] == pytest.approx(expected)
    assert f": {money(expected)} per million output tokens" in costed.table.stdout


def test_the_table_says_what_is_left_out_and_where_it_ran(costed: Costed) -> None:
    out = costed.table.stdout
    assert "left out: EBS volumes and snapshots, the load balancer" in out
    assert out.rstrip().endswith("the numbers show the arithmetic, not what AWS charges")


def test_json_is_json_alone(costed: Costed) -> None:
    assert costed.report["currency"] == "USD"
    assert costed.report["image"] == IMAGE


def test_an_unknown_image_is_one_line(emulator: str) -> None:
    line = one_line_error(invoke("cost", "--image", "nope", "--local"))
    assert "no such image definition" in line
