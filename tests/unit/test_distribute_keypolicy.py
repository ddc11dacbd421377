"""Which key policies admit which targets, the statements publish asks for, and merging them."""

from __future__ import annotations

import json

import pytest

from bakery import keypolicy
from bakery.distribute import Targets

A, B = "111111111111", "222222222222"
ORG = "arn:aws:organizations::123456789012:organization/o-abcdefghij"
OU = "arn:aws:organizations::123456789012:ou/o-abcdefghij/ou-ab12-cdefghij"
FOUR = ["kms:DescribeKey", "kms:CreateGrant", "kms:Decrypt", "kms:ReEncrypt*"]
OWNER = {
    "Sid": "Enable IAM User Permissions",
    "Effect": "Allow",
    "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
    "Action": "kms:*",
    "Resource": "*",
}


def allow(principal, actions=FOUR, **extra) -> dict:
    return {"Effect": "Allow", "Principal": principal, "Action": actions, "Resource": "*", **extra}


def policy(*statements: dict) -> dict:
    return {"Version": "2012-10-17", "Statement": [OWNER, *statements]}


@pytest.mark.parametrize(
    ("statements", "missing"),
    [
        pytest.param([], (A,), id="owner-only"),
        pytest.param([allow({"AWS": f"arn:aws:iam::{A}:root"})], (), id="root-arn"),
        pytest.param([allow({"AWS": [A]})], (), id="bare-account-id"),
        pytest.param(
            [allow({"AWS": f"arn:aws:iam::{A}:role/admin"})], (A,), id="a-role-is-not-the-account"
        ),
        pytest.param([allow({"AWS": A}, "kms:*")], (), id="kms-star"),
        pytest.param([allow({"AWS": A}, "*")], (), id="star"),
        pytest.param(
            [
                allow(
                    {"AWS": A},
                    ["kms:DescribeKey", "kms:CreateGrant", "kms:Decrypt", "kms:ReEncryptFrom"],
                )
            ],
            (A,),
            id="reencrypt-to-missing",
        ),
        pytest.param(
            [
                allow({"AWS": A}, ["kms:DescribeKey", "kms:CreateGrant"]),
                allow({"AWS": A}, ["kms:Decrypt", "kms:ReEncryptFrom", "kms:ReEncryptTo"]),
            ],
            (),
            id="split-over-two-statements",
        ),
        pytest.param([allow("*")], (), id="anyone"),
        pytest.param(
            [allow("*", Condition={"StringEquals": {"kms:CallerAccount": [A]}})],
            (),
            id="caller-account",
        ),
        pytest.param(
            [allow("*", Condition={"StringEquals": {"kms:CallerAccount": B}})],
            (A,),
            id="caller-account-of-another",
        ),
        pytest.param(
            [allow({"AWS": A}, Condition={"Bool": {"kms:GrantIsForAWSResource": "true"}})],
            (A,),
            id="unknown-condition-does-not-count",
        ),
        pytest.param([{**allow({"AWS": A}), "Effect": "Deny"}], (A,), id="deny"),
        pytest.param(
            [{"Effect": "Allow", "NotPrincipal": {"AWS": B}, "Action": FOUR, "Resource": "*"}],
            (A,),
            id="not-principal-is-not-evaluated",
        ),
    ],
)
def test_accounts(statements: list[dict], missing: tuple[str, ...]) -> None:
    assert keypolicy.not_admitted(policy(*statements), Targets((A,))) == Targets(missing)


def test_organizations_and_ous() -> None:
    org_statement = allow("*", Condition={"StringEquals": {"aws:PrincipalOrgID": "o-abcdefghij"}})
    ou_statement = allow(
        {"AWS": "*"},
        Condition={
            "ForAnyValue:StringLike": {
                "aws:PrincipalOrgPaths": ["o-abcdefghij/*/ou-ab12-cdefghij/*"]
            }
        },
    )
    targets = Targets((), (ORG,), (OU,))
    assert keypolicy.not_admitted(policy(), targets) == targets
    assert keypolicy.not_admitted(policy(org_statement), targets) == Targets()
    assert keypolicy.not_admitted(policy(ou_statement), targets) == Targets((), (ORG,))


def test_statements_are_what_not_admitted_accepts() -> None:
    targets = Targets((A, B), (ORG,), (OU,))
    added = keypolicy.merged(policy(), keypolicy.statements(targets))
    assert keypolicy.not_admitted(added, targets) == Targets()
    assert [s["Sid"] for s in added["Statement"]] == [
        "Enable IAM User Permissions",
        *keypolicy.SIDS.values(),
    ]
    assert added["Statement"][1] == {
        "Sid": keypolicy.SIDS["accounts"],
        "Effect": "Allow",
        "Action": ["kms:CreateGrant", "kms:Decrypt", "kms:DescribeKey", "kms:ReEncrypt*"],
        "Resource": "*",
        "Principal": {"AWS": [f"arn:aws:iam::{A}:root", f"arn:aws:iam::{B}:root"]},
    }


def test_merging_widens_our_statement_and_is_idempotent() -> None:
    once = keypolicy.merged(policy(), keypolicy.statements(Targets((A,), (ORG,))))
    wider = keypolicy.merged(once, keypolicy.statements(Targets((B,))))
    assert len(wider["Statement"]) == 3
    assert wider["Statement"][1]["Principal"]["AWS"] == [
        f"arn:aws:iam::{A}:root",
        f"arn:aws:iam::{B}:root",
    ]
    assert keypolicy.merged(wider, keypolicy.statements(Targets((B,)))) == wider
    assert json.loads(json.dumps(wider)) == wider
    assert policy()["Statement"] == [OWNER], "the input is not modified"


def test_partition_of_the_key_names_the_roots() -> None:
    [statement] = keypolicy.statements(Targets((A,)), "aws-cn")
    assert statement["Principal"] == {"AWS": [f"arn:aws-cn:iam::{A}:root"]}
    assert keypolicy.not_admitted(policy(statement), Targets((A,)), "aws-cn") == Targets()
