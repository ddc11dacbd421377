"""invoke cost's arithmetic with distinct prices (the emulator has one price for every pool):
which spot price applies when, the fleet now and at its maximum, a run's cost, the price per
million output tokens, and the usage tags bake and verify write."""

from __future__ import annotations

import datetime as dt

import boto3
import pytest
from botocore.stub import Stubber

from bakery import usage
from bakery.fleet import cost
from bakery.fleet.cost import Fleet, Pool

NOW = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)
A, B = "eu-west-1a", "eu-west-1b"
PRICES = {
    Pool("g5.xlarge", A): 0.45,
    Pool("g5.xlarge", B): 0.52,
    Pool("g6.xlarge", A): 0.31,
    Pool("g6.xlarge", B): 0.60,
}
FLEET = Fleet(
    "deepseek-r1-7b",
    sorted(PRICES),
    4,
    [
        {"id": "i-1", "type": "g5.xlarge", "zone": B, "market": "spot"},
        {"id": "i-2", "type": "g6.xlarge", "zone": A, "market": "spot"},
    ],
)
RATE = {"ami_id": "ami-1", "tokens_per_s": 80.0, "instance_type": "g5.xlarge"}


def summary(**changes: object) -> dict:
    args = {
        "image": "deepseek-r1-7b",
        "region": "eu-west-1",
        "now": NOW,
        "fleet": FLEET,
        "prices": PRICES,
        "runs": None,
        "rate": RATE,
        **changes,
    }
    return cost.summarize(**args)  # type: ignore[arg-type]


# -- the price in effect ----------------------------------------------------------------------


def entry(kind: str, zone: str, price: str, when: dt.datetime, product: str = "Linux/UNIX") -> dict:
    return {
        "InstanceType": kind,
        "AvailabilityZone": zone,
        "SpotPrice": price,
        "Timestamp": when,
        "ProductDescription": product,
    }


def test_the_price_in_effect_is_the_last_change_before_the_time() -> None:
    ec2 = boto3.client(
        "ec2", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    history = [
        entry("g5.xlarge", A, "0.4000", NOW - 3 * HOUR),
        entry("g5.xlarge", A, "0.4500", NOW - HOUR),  # the one in effect
        entry("g5.xlarge", A, "0.9000", NOW - HOUR, "Windows"),  # another product
        entry("g5.xlarge", A, "0.9900", NOW + HOUR),  # after the time asked for
        entry("g6.xlarge", A, "0.3100", NOW - 2 * HOUR),
        entry("g6.xlarge", B, "0.6000", NOW - 2 * HOUR),  # a pool not asked for
    ]
    with Stubber(ec2) as stub:
        stub.add_response(
            "describe_spot_price_history",
            {"SpotPriceHistory": history},
            {
                "InstanceTypes": ["g5.xlarge", "g6.xlarge"],
                "ProductDescriptions": ["Linux/UNIX"],
                "Filters": [{"Name": "availability-zone", "Values": [A]}],
                "StartTime": NOW,
                "EndTime": NOW,
            },
        )
        found = cost.spot_prices(ec2, [Pool("g5.xlarge", A), Pool("g6.xlarge", A)], NOW)
    assert found == {Pool("g5.xlarge", A): 0.45, Pool("g6.xlarge", A): 0.31}


def test_a_pool_without_history_has_no_price() -> None:
    ec2 = boto3.client(
        "ec2", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    with Stubber(ec2) as stub:
        stub.add_response("describe_spot_price_history", {"SpotPriceHistory": []})
        assert cost.spot_prices(ec2, [Pool("p5.48xlarge", A)], NOW) == {}


# -- the fleet ---------------------------------------------------------------------------------


def test_now_is_the_running_instances_pools() -> None:
    fleet = summary()["fleet"]
    assert fleet["now_per_hour"] == pytest.approx(0.52 + 0.31)
    assert [i["price_per_hour"] for i in fleet["instances"]] == [0.52, 0.31]


def test_at_max_is_max_size_in_the_cheapest_and_the_dearest_pool() -> None:
    top = summary()["fleet"]["at_max"]
    assert top["low_per_hour"] == pytest.approx(4 * 0.31)
    assert top["low_pool"] == {"instance_type": "g6.xlarge", "zone": A}
    assert top["high_per_hour"] == pytest.approx(4 * 0.60)
    assert top["high_pool"] == {"instance_type": "g6.xlarge", "zone": B}


def test_now_is_unknown_while_an_instance_has_no_price() -> None:
    fleet = Fleet(
        "f",
        FLEET.pools,
        4,
        [*FLEET.instances, {"id": "i-3", "type": "p5.48xlarge", "zone": A, "market": "spot"}],
    )
    found = summary(fleet=fleet)["fleet"]
    assert found["now_per_hour"] is None
    assert found["priced_instances"] == 2


def test_nothing_running_costs_nothing_now() -> None:
    found = summary(fleet=Fleet(None, FLEET.pools, 1, []))["fleet"]
    assert found["now_per_hour"] == 0
    assert found["at_max"]["high_per_hour"] == pytest.approx(0.60)


# -- tokens and runs ---------------------------------------------------------------------------


def test_price_per_million_output_tokens_in_the_types_cheapest_zone() -> None:
    tokens = summary()["tokens"]
    assert (tokens["zone"], tokens["price_per_hour"]) == (A, 0.45)
    # $0.45 an hour at 80 tokens/s: 288,000 tokens an hour.
    assert tokens["per_million_output_tokens"] == pytest.approx(0.45 / 288_000 * 1_000_000)
    assert cost.money(tokens["per_million_output_tokens"]) == "1.5625"


def test_no_rate_no_price_per_token() -> None:
    assert summary(rate=None)["tokens"] is None
    assert summary(rate={**RATE, "instance_type": "p5.48xlarge"})["tokens"] is None


def test_a_run_costs_its_hours_at_its_price() -> None:
    bake = usage.Usage("c6i.xlarge", A, "spot", 0.75, NOW - 5 * HOUR)
    verify = [
        usage.Usage("g5.xlarge", A, "spot", 0.5, NOW - 2 * HOUR),
        usage.Usage("g6.xlarge", B, "spot", 0.25, NOW - 2 * HOUR),
    ]
    runs = {
        "ami_id": "ami-1",
        "verification": "passed",
        "bake": [(bake, 0.068)],
        "verify": [(verify[0], 0.45), (verify[1], 0.60)],
    }
    ami = summary(runs=runs)["ami"]
    assert ami["bake"]["cost"] == pytest.approx(0.75 * 0.068)
    assert ami["verify"]["cost"] == pytest.approx(0.5 * 0.45 + 0.25 * 0.60)


def test_a_run_with_an_unpriced_instance_has_no_total() -> None:
    run = cost.run_cost([(usage.Usage("g5.xlarge", A, "spot", 1.0, NOW), None)])
    assert run is not None and run["cost"] is None


def test_an_on_demand_run_is_not_priced_at_spot() -> None:
    run = cost.run_cost([(usage.Usage("g5.xlarge", A, "on-demand", 1.0, NOW), 0.45)])
    assert run is not None and run["instances"][0]["cost"] is None


def test_the_table_shows_the_json_numbers() -> None:
    data = summary()
    text = "\n".join(cost.table(data))
    assert "  now      2 instances" in text and " 0.83 /hour" in text
    assert "at max   4 x 0.31 (g6.xlarge eu-west-1a) = 1.24 /hour" in text
    assert "up to 4 x 0.6 (g6.xlarge eu-west-1b) = 2.4 /hour" in text
    assert ": 1.5625 per million output tokens" in text


@pytest.mark.parametrize(
    ("value", "shown"),
    [(0.4123, "0.4123"), (1.2048, "1.2048"), (0.00001, "1e-05"), (None, "?"), (0.0, "0")],
)
def test_money(value: float | None, shown: str) -> None:
    assert cost.money(value) == shown


# -- the usage tags ----------------------------------------------------------------------------


def test_usage_from_instances_bills_at_least_a_minute() -> None:
    launched = NOW - dt.timedelta(seconds=20)
    (used,) = usage.of_instances(
        [
            {
                "InstanceType": "g5.xlarge",
                "Placement": {"AvailabilityZone": A},
                "InstanceLifecycle": "spot",
                "LaunchTime": launched,
            }
        ],
        NOW,
    )
    assert used == usage.Usage("g5.xlarge", A, "spot", round(60 / 3600, 4), launched)


def test_usage_tag_round_trips() -> None:
    used = [
        usage.Usage("g5.xlarge", A, "spot", 0.3125, NOW.replace(minute=0)),
        usage.Usage("c6i.xlarge", B, "on-demand", 1.0, NOW.replace(minute=30)),
    ]
    value = usage.tag_value(used)
    assert value == (
        "g5.xlarge eu-west-1a spot 0.3125 2026-12-02T12:00Z,"
        " c6i.xlarge eu-west-1b on-demand 1.0000 2026-12-02T12:30Z"
    )
    assert usage.parse(value) == used


def test_usage_tag_keeps_to_256_characters() -> None:
    many = [usage.Usage("g5.12xlarge", A, "spot", 12.3456, NOW)] * 10
    value = usage.tag_value(many)
    assert len(value) <= 256
    assert len(usage.parse(value)) == 4
