"""invoke cost: what the fleet costs per hour now and at its maximum, what the newest AMI's bake
and verify cost, and the price per million output tokens at the rate verify measured, all from
the EC2 spot price history (Linux/UNIX) of the pools involved.

Prices are per instance-hour in USD, as the spot price history gives them. Left out, and said
so: EBS volumes and snapshots, the load balancer and its capacity units, data transfer, and the
price of any on-demand instance (the history has spot prices only).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .. import aws, catalog, usage
from ..config import ImageDef
from . import group as groups
from .options import fleet_name
from .root import where

Say = Callable[[str], None]

PRODUCT = "Linux/UNIX"
EXCLUDED = [
    "EBS volumes and snapshots",
    "the load balancer and its capacity units",
    "data transfer",
    "on-demand instances (spot price history only)",
]
TPS_RE = re.compile(r"\btps=(\d+(?:\.\d+)?)\b")


@dataclass(frozen=True, order=True)
class Pool:
    instance_type: str
    zone: str


def spot_prices(ec2: Any, pools: Iterable[Pool], at: dt.datetime) -> dict[Pool, float]:
    """The spot price of each pool in effect at `at` (the last change before it); a pool the
    history does not answer for (a type not offered there, or older than its 90 days) is left out."""
    wanted = set(pools)
    if not wanted:
        return {}
    found: dict[Pool, tuple[dt.datetime, float]] = {}
    pages = ec2.get_paginator("describe_spot_price_history").paginate(
        InstanceTypes=sorted({p.instance_type for p in wanted}),
        ProductDescriptions=[PRODUCT],
        Filters=[{"Name": "availability-zone", "Values": sorted({p.zone for p in wanted})}],
        StartTime=at,
        EndTime=at,
    )
    for page in pages:
        for entry in page["SpotPriceHistory"]:
            pool = Pool(entry["InstanceType"], entry["AvailabilityZone"])
            if pool not in wanted or not entry.get("ProductDescription", "").startswith(PRODUCT):
                continue
            when = catalog.parse_time(entry.get("Timestamp")) or at
            if when <= at and (pool not in found or when > found[pool][0]):
                found[pool] = (when, float(entry["SpotPrice"]))
    return {pool: price for pool, (_, price) in found.items()}


# --- the fleet --------------------------------------------------------------------------------


@dataclass
class Fleet:
    group: str | None  # None: nothing launched, the definition's pools
    pools: list[Pool]
    max_size: int
    instances: list[dict[str, Any]]  # id, type, zone, market


def fleet_of(autoscaling: Any, ec2: Any, image: ImageDef, region: str) -> Fleet:
    """The launched group's pools (its types in its subnets' zones) and instances; without a
    group, the definition's types in the region's zones, and its maximum."""
    name = fleet_name(image)
    found = groups.describe_group(autoscaling, name)
    if found is None:
        zones = [
            z["ZoneName"]
            for z in ec2.describe_availability_zones(
                Filters=[{"Name": "state", "Values": ["available"]}]
            )["AvailabilityZones"]
        ]
        pools = [Pool(t, z) for t in image.launch.instance_types for z in sorted(zones)]
        return Fleet(None, pools, image.launch.max_capacity or 1, [])
    overrides = (
        (found.get("MixedInstancesPolicy") or {}).get("LaunchTemplate", {}).get("Overrides", [])
    )
    types = [o["InstanceType"] for o in overrides if o.get("InstanceType")]
    subnets = [s for s in found.get("VPCZoneIdentifier", "").split(",") if s]
    zones = sorted(
        {s["AvailabilityZone"] for s in ec2.describe_subnets(SubnetIds=subnets)["Subnets"]}
        if subnets
        else set(found.get("AvailabilityZones", []))
    )
    described = groups.describe_instances(ec2, [i["InstanceId"] for i in found["Instances"]])
    instances = []
    for member in found["Instances"]:
        detail = described.get(member["InstanceId"], {})
        instances.append(
            {
                "id": member["InstanceId"],
                "type": detail.get("InstanceType") or member.get("InstanceType"),
                "zone": member.get("AvailabilityZone")
                or detail.get("Placement", {}).get("AvailabilityZone"),
                "market": "spot" if detail.get("InstanceLifecycle") == "spot" else "on-demand",
            }
        )
    return Fleet(name, [Pool(t, z) for t in types for z in zones], int(found["MaxSize"]), instances)


# --- the report -------------------------------------------------------------------------------


def priced_runs(ec2: Any, used: list[usage.Usage]) -> list[tuple[usage.Usage, float | None]]:
    """Each instance of a bake or verify with its pool's spot price when it launched."""
    return [
        (
            u,
            spot_prices(ec2, [Pool(u.instance_type, u.zone)], u.started).get(
                Pool(u.instance_type, u.zone)
            ),
        )
        for u in used
    ]


def run_cost(priced: list[tuple[usage.Usage, float | None]]) -> dict[str, Any] | None:
    """hours x price for each instance, and their sum (unknown if any is)."""
    if not priced:
        return None
    entries = []
    for u, price in priced:
        cost = None if price is None or u.market != "spot" else price * u.hours
        entries.append(
            {
                "instance_type": u.instance_type,
                "zone": u.zone,
                "market": u.market,
                "hours": u.hours,
                "started": catalog.show_time(u.started),
                "price_per_hour": price,
                "cost": cost,
            }
        )
    costs = [e["cost"] for e in entries]
    return {"instances": entries, "cost": None if None in costs else sum(costs)}


def measured(ec2: Any, image: str) -> dict[str, Any] | None:
    """The newest AMI verify measured tokens/s on, with the instance type it ran on."""
    for ami in catalog.images(ec2, image):
        tags = catalog.tags_of(ami)
        found = TPS_RE.search(tags.get("bakery:verify-timings", ""))
        if not found or tags.get(catalog.VERIFICATION) != catalog.PASSED:
            continue
        ran = usage.parse(tags.get(usage.VERIFY))
        kind = (
            ran[0].instance_type
            if ran
            else (tags.get("bakery:verify-gpu", "").split() or [None])[0]
        )
        return {"ami_id": ami["ImageId"], "tokens_per_s": float(found[1]), "instance_type": kind}
    return None


def report(
    ec2: Any, autoscaling: Any, image: ImageDef, region: str, now: dt.datetime
) -> dict[str, Any]:
    """What the report needs, read from AWS; the arithmetic is summarize's."""
    fleet = fleet_of(autoscaling, ec2, image, region)
    rate = measured(ec2, image.name)
    pools = set(fleet.pools) | {Pool(i["type"], i["zone"]) for i in fleet.instances if i["type"]}
    if rate and rate["instance_type"]:
        pools |= {Pool(rate["instance_type"], p.zone) for p in fleet.pools}
    newest = catalog.newest(ec2, image.name)
    runs: dict[str, Any] | None = None
    if newest:
        tags = catalog.tags_of(newest)
        runs = {
            "ami_id": newest["ImageId"],
            "verification": tags.get(catalog.VERIFICATION, "not verified"),
            "bake": priced_runs(ec2, usage.parse(tags.get(usage.BAKE))),
            "verify": priced_runs(ec2, usage.parse(tags.get(usage.VERIFY))),
        }
    return summarize(image.name, region, now, fleet, spot_prices(ec2, pools, now), runs, rate)


def summarize(
    image: str,
    region: str,
    now: dt.datetime,
    fleet: Fleet,
    prices: dict[Pool, float],
    runs: dict[str, Any] | None,
    rate: dict[str, Any] | None,
) -> dict[str, Any]:
    """The numbers: the fleet now (its instances' pools) and at its maximum (max_size in the
    cheapest and in the dearest of its pools), the runs' costs, and the price per million
    output tokens (verify's tokens/s on its type, in that type's cheapest zone of the fleet)."""
    running = [
        {**i, "price_per_hour": prices.get(Pool(i["type"], i["zone"])) if i["type"] else None}
        for i in fleet.instances
    ]
    fleet_prices = sorted((prices[p], p) for p in fleet.pools if p in prices)
    at_max = (
        {
            "instances": fleet.max_size,
            "low_per_hour": fleet_prices[0][0] * fleet.max_size,
            "low_pool": _pool(fleet_prices[0][1]),
            "high_per_hour": fleet_prices[-1][0] * fleet.max_size,
            "high_pool": _pool(fleet_prices[-1][1]),
        }
        if fleet_prices
        else None
    )
    ami = (
        {**runs, "bake": run_cost(runs["bake"]), "verify": run_cost(runs["verify"])}
        if runs
        else None
    )
    tokens = None
    if rate and rate["instance_type"] and rate["tokens_per_s"] > 0:
        priced = sorted(
            (prices[Pool(rate["instance_type"], z)], z)
            for z in {p.zone for p in fleet.pools}
            if Pool(rate["instance_type"], z) in prices
        )
        if priced:
            price, zone = priced[0]
            tokens = {
                **rate,
                "zone": zone,
                "price_per_hour": price,
                "per_million_output_tokens": price / (rate["tokens_per_s"] * 3600) * 1e6,
            }
    unpriced = any(i["price_per_hour"] is None for i in running)
    return {
        "image": image,
        "region": region,
        "currency": "USD",
        "prices_at": catalog.show_time(now),
        "product": PRODUCT,
        "pools": [{**_pool(p), "price_per_hour": prices.get(p)} for p in sorted(fleet.pools)],
        "fleet": {
            "group": fleet.group,
            "instances": running,
            # Unknown (None) while any running instance's pool has no price.
            "now_per_hour": None if unpriced else sum(i["price_per_hour"] for i in running),
            "priced_instances": sum(1 for i in running if i["price_per_hour"] is not None),
            "on_demand_instances": sum(1 for i in running if i["market"] != "spot"),
            "at_max": at_max,
        },
        "ami": ami,
        "tokens": tokens,
        "excluded": EXCLUDED,
    }


def _pool(pool: Pool) -> dict[str, str]:
    return {"instance_type": pool.instance_type, "zone": pool.zone}


def money(value: float | None) -> str:
    """Dollars to six significant digits (spot prices have at most six decimals): 0.4123,
    1.2048, 1.67e-07 for the sub-cent costs of a short run at a tiny price."""
    return "?" if value is None else f"{value:.6g}"


def table(data: dict[str, Any]) -> list[str]:
    """The report as a table people read; every number is one of the JSON's, rounded."""
    fleet = data["fleet"]
    lines = [
        f"cost of {data['image']} in {data['region']}: spot prices ({data['product']}) at"
        f" {data['prices_at']}, {data['currency']} per instance-hour",
        "",
        f"{'pool':<28} {'$/hour':>12}",
    ]
    for pool in data["pools"]:
        name = f"{pool['instance_type']} {pool['zone']}"
        lines.append(f"{name:<28} {money(pool['price_per_hour']):>12}")
    lines.append("")
    where_ = f"group {fleet['group']}" if fleet["group"] else "not launched: the definition's pools"
    lines.append(f"fleet ({where_})")
    for i in fleet["instances"]:
        note = (
            ""
            if i["market"] == "spot"
            else "  (on demand: priced at spot, the real price is higher)"
        )
        lines.append(
            f"  now      {i['id']} {i['type']} {i['zone']:<12} {money(i['price_per_hour']):>12}{note}"
        )
    count = len(fleet["instances"])
    priced = "" if fleet["priced_instances"] == count else f", {fleet['priced_instances']} priced"
    total = f"{count} instances{priced}"
    lines.append(f"  now      {total:<43} {money(fleet['now_per_hour']):>12} /hour")
    top = fleet["at_max"]
    if top:
        low, high = top["low_pool"], top["high_pool"]
        lines.append(
            f"  at max   {top['instances']} x {money(top['low_per_hour'] / top['instances'])}"
            f" ({low['instance_type']} {low['zone']}) = {money(top['low_per_hour'])} /hour,"
            f" up to {top['instances']} x {money(top['high_per_hour'] / top['instances'])}"
            f" ({high['instance_type']} {high['zone']}) = {money(top['high_per_hour'])} /hour"
        )
    else:
        lines.append("  at max   ? (no spot price for any pool of the fleet)")
    ami = data["ami"]
    lines.append("")
    if ami:
        lines.append(f"newest AMI {ami['ami_id']} ({ami['verification']})")
        for step in ("bake", "verify"):
            run = ami[step]
            if not run:
                lines.append(
                    f"  {step:<7}  no instance-hours recorded (runs before this tool recorded them)"
                )
                continue
            for i in run["instances"]:
                lines.append(
                    f"  {step:<7}  {i['instance_type']} {i['zone']} {i['market']}, {i['hours']:.4f} h"
                    f" x {money(i['price_per_hour'])} = {money(i['cost'])}"
                )
            lines.append(f"  {step:<7}  total {money(run['cost'])}")
    else:
        lines.append(f"no AMI of {data['image']} in {data['region']}")
    tokens = data["tokens"]
    lines.append("")
    if tokens:
        lines.append(
            f"tokens   {tokens['tokens_per_s']:g} output tokens/s (verify of {tokens['ami_id']}, one"
            f" request at a time) on {tokens['instance_type']} at {money(tokens['price_per_hour'])}"
            f" /hour ({tokens['zone']}): {money(tokens['per_million_output_tokens'])} per million"
            " output tokens"
        )
    else:
        lines.append(
            "tokens   no tokens/s measured by a passed verify (or no spot price for its type)"
        )
    lines.append(f"left out: {', '.join(data['excluded'])}")
    return lines


def cost(
    image: ImageDef,
    *,
    region: str | None = None,
    as_json: bool = False,
    use_emulator: bool = False,
    say: Say = print,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """`invoke cost`: the report, as a table or as JSON (the same numbers, unrounded). With
    --json, stdout holds the JSON alone; anything else said goes to stderr."""
    note = say if not as_json else (lambda line: print(line, file=sys.stderr))
    with where(use_emulator, note) as endpoint:
        aws.identity(region)
        where_ = aws.region(region)
        data = report(
            aws.client("ec2", where_),
            aws.client("autoscaling", where_),
            image,
            where_,
            now or dt.datetime.now(dt.UTC),
        )
        if as_json:
            say(json.dumps(data, indent=2))
        else:
            for line in table(data):
                say(line)
            if endpoint is not None:
                say(
                    "local: the emulator's spot price history has one made-up price for every"
                    " pool, and it runs the group's instances on demand: the numbers show the"
                    " arithmetic, not what AWS charges"
                )
        return data
