"""gc's age rules, without AWS."""

from __future__ import annotations

import datetime as dt

import pytest

from bakery import TOOL, catalog, gc
from bakery.errors import BakeryError

NOW = dt.datetime(2025, 6, 1, 12, tzinfo=dt.UTC)
SIX = dt.timedelta(hours=6)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30m", dt.timedelta(minutes=30)),
        ("6h", SIX),
        ("2d", dt.timedelta(days=2)),
        ("0m", dt.timedelta()),
    ],
)
def test_parse_age(text: str, expected: dt.timedelta) -> None:
    assert gc.parse_age(text) == expected


@pytest.mark.parametrize("text", ["6", "6 hours", "-1h", "1w", ""])
def test_parse_age_refuses(text: str) -> None:
    with pytest.raises(BakeryError, match=r"give a number and a unit, e\.g\. 30m, 6h or 2d"):
        gc.parse_age(text)


@pytest.mark.parametrize(
    ("created", "tags", "expected"),
    [
        pytest.param(NOW - dt.timedelta(hours=7), {}, "7h00m old", id="old"),
        pytest.param(NOW - dt.timedelta(hours=5), {}, None, id="young"),
        pytest.param("2025-05-30T12:00:00.000Z", {}, "2d0h old", id="iso-string"),
        pytest.param(None, {}, None, id="no-time"),
        pytest.param(
            NOW - dt.timedelta(hours=1),
            {catalog.EXPIRES_AT: "2025-06-01T11:00:00Z"},
            "expired at 2025-06-01T11:00Z",
            id="expired-young",
        ),
        pytest.param(
            NOW - dt.timedelta(days=3),
            {catalog.EXPIRES_AT: "2025-06-01T13:00:00Z"},
            None,
            id="not-expired-old",
        ),
    ],
)
def test_stale(created, tags: dict, expected: str | None) -> None:
    assert gc._stale(created, tags, NOW, SIX) == expected


@pytest.mark.parametrize(
    ("group", "expected"),
    [
        pytest.param(
            {
                "GroupName": "bakery-verify-x",
                "Tags": [
                    {"Key": catalog.MANAGED_BY, "Value": TOOL},
                    {"Key": catalog.RUN_ID, "Value": "20250601-000000-abcdef"},
                ],
            },
            "run 20250601-000000-abcdef, 12h00m old",
            id="run-time",
        ),
        pytest.param(
            {
                "GroupName": "x",
                "Tags": [
                    {"Key": catalog.MANAGED_BY, "Value": TOOL},
                    {"Key": catalog.RUN_ID, "Value": "some-run"},
                ],
            },
            None,
            id="run-without-time",
        ),
        pytest.param(
            {"GroupName": "packer_1234"},
            "Packer temporary group (untagged: no age to tell), used by nothing",
            id="packer",
        ),
        pytest.param(
            {"GroupName": "packer_1234", "Tags": [{"Key": "team", "Value": "x"}]},
            None,
            id="packer-of-someone-else",
        ),
        pytest.param({"GroupName": "default"}, None, id="not-ours"),
    ],
)
def test_group_stale(group: dict, expected: str | None) -> None:
    assert gc._group_stale(group, NOW, SIX) == expected
