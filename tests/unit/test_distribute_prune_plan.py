"""prune's decisions (pure), and the exact requests it sends (botocore Stubber: the emulator
has no enable_image_deprecation, so this is where that request is checked)."""

from __future__ import annotations

import datetime as dt

import boto3
import pytest
from botocore.stub import Stubber

from bakery import catalog, prune
from bakery.distribute import Region

NOW = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)
LATER = NOW + dt.timedelta(days=90)


def ami(n: int, *, verified: bool = False, deprecated: str | None = None) -> dict:
    tags = [{"Key": catalog.VERIFICATION, "Value": catalog.PASSED}] if verified else []
    found = {
        "ImageId": f"ami-{n:017x}",
        "CreationDate": f"2025-05-{30 - n:02d}T00:00:00.000Z",
        "Tags": tags,
        "BlockDeviceMappings": [
            {"DeviceName": "/dev/sda1", "Ebs": {"SnapshotId": f"snap-{n:017x}"}}
        ],
    }
    if deprecated:
        found["DeprecationTime"] = deprecated
    return found


def decide(amis: list[dict], protected: dict | None = None, keep: int = 2) -> list[tuple[str, str]]:
    decisions = prune.decide(
        amis, region="us-east-1", keep=keep, protected=protected or {}, now=NOW, deprecate_at=LATER
    )
    return [(d.action, d.why) for d in decisions]


def test_keep_the_newest_deprecate_the_rest() -> None:
    assert decide([ami(0), ami(1), ami(2)]) == [
        ("keep", "one of the newest 2"),
        ("keep", "one of the newest 2"),
        ("deprecate", "older than the newest 2; deprecated at 2025-08-30T00:00Z"),
    ]


def test_the_newest_verified_is_kept_wherever_it_is() -> None:
    got = decide([ami(0), ami(1), ami(2, verified=True), ami(3, verified=True)])
    assert got[2] == ("keep", "newest verified")
    assert got[3][0] == "deprecate", "only the newest verified one"


def test_protected_reasons_are_joined() -> None:
    got = decide([ami(0), ami(1), ami(2)], {ami(2)["ImageId"]: ["SSM /x", "in use by i-1"]})
    assert got[2] == ("keep", "SSM /x; in use by i-1")


@pytest.mark.parametrize(
    ("deprecated", "expected"),
    [
        pytest.param(
            "2025-05-31T00:00:00.000Z",
            ("deregister", "deprecated since 2025-05-31T00:00Z"),
            id="past",
        ),
        pytest.param(
            "2025-06-02T00:00:00.000Z",
            ("wait", "deprecated at 2025-06-02T00:00Z; deregistered by a prune after that"),
            id="future",
        ),
    ],
)
def test_deprecated_ones(deprecated: str, expected: tuple[str, str]) -> None:
    assert decide([ami(0), ami(1), ami(2, deprecated=deprecated)])[2] == expected


def region_with_stub() -> tuple[Region, Stubber]:
    ec2 = boto3.client(
        "ec2", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    return Region("us-east-1", ec2, None, None), Stubber(ec2)


def test_apply_sends_exactly_these_requests() -> None:
    region, stub = region_with_stub()
    old, expired = ami(2), ami(3, deprecated="2025-05-31T00:00:00.000Z")
    decisions = prune.decide(
        [ami(0), ami(1), old, expired],
        region="us-east-1",
        keep=2,
        protected={},
        now=NOW,
        deprecate_at=LATER,
    )
    stub.add_response(
        "enable_image_deprecation",
        {"Return": True},
        {"ImageId": old["ImageId"], "DeprecateAt": LATER},
    )
    stub.add_response(
        "deregister_image",
        {"Return": True},
        {"ImageId": expired["ImageId"], "DeleteAssociatedSnapshots": True},
    )
    stub.add_response(
        "describe_snapshots",
        {"Snapshots": []},  # AWS deleted them with the AMI
        {"OwnerIds": ["self"], "Filters": [{"Name": "snapshot-id", "Values": [f"snap-{3:017x}"]}]},
    )
    with stub:
        prune.apply(decisions, {"us-east-1": region}, LATER, lambda _: None)
    stub.assert_no_pending_responses()


def test_apply_falls_back_where_delete_associated_snapshots_is_unknown() -> None:
    region, stub = region_with_stub()
    expired = ami(3, deprecated="2025-05-31T00:00:00.000Z")
    [decision] = [
        d
        for d in prune.decide(
            [ami(0), ami(1), expired],
            region="us-east-1",
            keep=2,
            protected={},
            now=NOW,
            deprecate_at=LATER,
        )
        if d.action == "deregister"
    ]
    snapshot = f"snap-{3:017x}"
    stub.add_client_error(
        "deregister_image",
        "InvalidParameter",
        "The parameter DeleteAssociatedSnapshots is not recognized",
        expected_params={"ImageId": expired["ImageId"], "DeleteAssociatedSnapshots": True},
    )
    stub.add_response("deregister_image", {"Return": True}, {"ImageId": expired["ImageId"]})
    stub.add_response(
        "describe_snapshots",
        {"Snapshots": [{"SnapshotId": snapshot}]},
        {"OwnerIds": ["self"], "Filters": [{"Name": "snapshot-id", "Values": [snapshot]}]},
    )
    stub.add_response("delete_snapshot", {}, {"SnapshotId": snapshot})
    with stub:
        prune.apply([decision], {"us-east-1": region}, LATER, lambda _: None)
    stub.assert_no_pending_responses()
