"""Who to share with and where: checked before anything is asked of AWS."""

from __future__ import annotations

import pytest

from bakery import distribute
from bakery.errors import BakeryError

ORG = "arn:aws:organizations::123456789012:organization/o-abcdefghij"
OU = "arn:aws:organizations::123456789012:ou/o-abcdefghij/ou-ab12-cdefghij"


def test_targets_keep_order_and_drop_repeats() -> None:
    t = distribute.targets(["222222222222", "111111111111", "222222222222"], [ORG], [OU])
    assert t == distribute.Targets(("222222222222", "111111111111"), (ORG,), (OU,))
    assert t.count() == "2 accounts, 1 organization, 1 OU"
    assert t.launch_permission() == {
        "UserIds": ["222222222222", "111111111111"],
        "OrganizationArns": [ORG],
        "OrganizationalUnitArns": [OU],
    }


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param(
            {"accounts": ["11111111111"]},
            "--account '11111111111': not a 12-digit AWS account ID",
            id="short-account",
        ),
        pytest.param(
            {"accounts": ["11111111111a"]},
            "--account '11111111111a': not a 12-digit AWS account ID",
            id="letter",
        ),
        pytest.param(
            {"organization_arns": [OU]},
            f"--organization-arn {OU!r}: not an organization ARN",
            id="ou-as-org",
        ),
        pytest.param(
            {"ou_arns": [ORG]}, f"--ou-arn {ORG!r}: not an organizational unit ARN", id="org-as-ou"
        ),
    ],
)
def test_malformed_targets(kwargs: dict, message: str) -> None:
    with pytest.raises(BakeryError) as e:
        distribute.targets(**kwargs)
    assert str(e.value).startswith(message)


def test_set_arithmetic() -> None:
    have = distribute.Targets(("111111111111",), (ORG,))
    want = distribute.Targets(("111111111111", "222222222222"), (ORG,), (OU,))
    assert want.minus(have) == distribute.Targets(("222222222222",), (), (OU,))
    assert want.both(have) == have
    assert not distribute.Targets()
    assert (
        distribute.Targets(("1" * 12,) * 6).describe(limit=4)
        == ", ".join(["1" * 12] * 3) + " and 3 more"
    )


def test_regions_are_checked_and_kept_in_order() -> None:
    assert distribute.check_regions(["us-east-1", "eu-west-1", "us-east-1"], "where") == [
        "us-east-1",
        "eu-west-1",
    ]
    with pytest.raises(
        BakeryError,
        match=r"^where: unknown region 'eu-wets-1': not an EC2 region \(did you mean eu-west-1\?\)$",
    ):
        distribute.check_regions(["eu-wets-1"], "where")
    with pytest.raises(
        BakeryError, match="span the partitions aws, aws-cn; an AMI cannot be copied"
    ):
        distribute.check_regions(["us-east-1", "cn-north-1"], "where")
