"""publish, share, prune and gc through the real CLI: one end-to-end run from a local bake, and
bad input, which ends with one line, a non-zero exit and nothing changed in AWS."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest
from cli import invoke, one_line_error
from distribute_support import (
    BUILD,
    PARAMETER,
    REGIONS,
    baked_ami,
    customer_keys,
    definition,
    launch_permissions,
    parameter,
)
from tooling import require_tool

from bakery import catalog

pytestmark = pytest.mark.emulator


def nothing_changed(ami_id: str) -> None:
    for region in REGIONS:
        assert parameter(region) is None
        if region != BUILD:
            assert boto3.client("ec2", region).describe_images(Owners=["self"])["Images"] == []
    assert launch_permissions(BUILD, ami_id) == []


@pytest.mark.packer
def test_bake_publish_prune_gc_end_to_end(tmp_path: Path, emulator: str) -> None:
    require_tool("packer")
    path = str(definition(tmp_path, kms_key_ids=customer_keys()))
    baked = invoke("bake", "--image", path, "--local")
    assert baked.returncode == 0, baked.stdout + baked.stderr
    [ami] = boto3.client("ec2", BUILD).describe_images(Owners=["self"])["Images"]

    # AWS_ENDPOINT_URL points every command at the emulator; --local is the bake's business.
    refused = one_line_error(invoke("publish", "--image", path))
    assert (
        refused
        == f"error: no verified AMI of deepseek-r1-7b in {BUILD}: run invoke bake --image deepseek-r1-7b, then invoke verify --image deepseek-r1-7b"
    )
    # Stand-ins for what the emulator cannot do: a provisioned bake, a passed verify.
    catalog.tag(
        boto3.client("ec2", BUILD),
        ami,
        {catalog.PROVISIONED: "true", catalog.VERIFICATION: catalog.PASSED},
    )

    first = invoke("publish", "--image", path, "--update-key-policy")
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"published deepseek-r1-7b: {ami['ImageId']} in 3 regions" in first.stdout
    assert "AWSServiceRoleForAutoScaling" in first.stdout
    for region in REGIONS:
        assert parameter(region)["Value"].startswith("ami-")
    again = invoke("publish", "--image", path)
    assert again.returncode == 0, again.stderr
    assert "nothing changed (already published)" in again.stdout

    plan = invoke("prune", "--image", path)
    assert plan.returncode == 0, plan.stderr
    assert "prune: nothing to do" in plan.stdout
    assert "newest verified" in plan.stdout

    swept = invoke("gc", "--region", BUILD)
    assert swept.returncode == 0, swept.stderr
    assert "gc: nothing to remove" in swept.stdout


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        pytest.param(
            {"accounts": ("12345",)},
            "distribute.accounts[0]: '12345' is not a 12-digit AWS account ID",
            id="malformed-account",
        ),
        pytest.param(
            {"organization_arns": ("arn:aws:organizations::123456789012:org/o-abcdefghij",)},
            "distribute.organization_arns[0]: 'arn:aws:organizations::123456789012:org/o-abcdefghij'"
            " is not an organization ARN",
            id="malformed-organization-arn",
        ),
        pytest.param(
            {"ou_arns": ("ou-ab12-cdefghij",)},
            "distribute.ou_arns[0]: 'ou-ab12-cdefghij' is not an organizational unit ARN",
            id="malformed-ou-arn",
        ),
        pytest.param(
            {"regions": ("eu-west-9",)},
            "distribute.regions: unknown region 'eu-west-9': not an EC2 region (did you mean",
            id="unknown-region",
        ),
        pytest.param(
            {"kms_key_ids": "missing"},
            "distribute.kms_key_ids.eu-west-1: KMS key"
            " arn:aws:kms:eu-west-1:123456789012:key/00000000-0000-0000-0000-000000000000 does not"
            " exist in eu-west-1",
            id="missing-kms-key",
        ),
    ],
)
def test_publish_bad_definition(tmp_path: Path, emulator: str, change: dict, expected: str) -> None:
    ami = baked_ami()
    keys = customer_keys()
    if change.get("kms_key_ids") == "missing":
        change = {
            "kms_key_ids": keys
            | {
                "eu-west-1": "arn:aws:kms:eu-west-1:123456789012:key/00000000-0000-0000-0000-000000000000"
            }
        }
    path = definition(tmp_path, **({"kms_key_ids": keys} | change))
    line = one_line_error(invoke("publish", "--image", str(path)))
    assert line.startswith(f"error: {path}"), line
    assert expected in line
    nothing_changed(ami["ImageId"])


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        pytest.param(
            ["--account", "1234567890123"],
            "error: --account '1234567890123': not a 12-digit AWS account ID",
            id="malformed-account",
        ),
        pytest.param(
            ["--organization-arn", "o-abcdefghij"],
            "error: --organization-arn 'o-abcdefghij': not an organization ARN"
            " (arn:aws:organizations::<account>:organization/o-...)",
            id="malformed-organization-arn",
        ),
        pytest.param(
            ["--ou-arn", "arn:aws:organizations::123456789012:ou/o-abcdefghij/ou-x"],
            "error: --ou-arn 'arn:aws:organizations::123456789012:ou/o-abcdefghij/ou-x': not an"
            " organizational unit ARN (arn:aws:organizations::<account>:ou/o-.../ou-...)",
            id="malformed-ou-arn",
        ),
        pytest.param(
            ["--account", "111111111111", "--region", "eu-wst-1"],
            "error: --region: unknown region 'eu-wst-1': not an EC2 region (did you mean"
            " eu-west-1?)",
            id="unknown-region",
        ),
        pytest.param(
            [],
            "error: name someone to share with: --account, --organization-arn or --ou-arn",
            id="nobody",
        ),
    ],
)
def test_share_bad_input(emulator: str, args: list[str], expected: str) -> None:
    ami = baked_ami()
    line = one_line_error(invoke("share", "--ami", ami["ImageId"], *args))
    assert line == expected
    assert launch_permissions(BUILD, ami["ImageId"]) == []


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        pytest.param(
            ["prune", "--image", "deepseek-r1-7b", "--keep", "0"],
            "error: --keep 0: keep at least 1 AMI per region",
            id="keep-zero",
        ),
        pytest.param(
            ["prune", "--image", "deepseek-r1-7b", "--keep", "two"],
            "error: --keep 'two': not a whole number",
            id="keep-word",
        ),
        pytest.param(
            ["gc", "--older-than", "6 hours"],
            "error: --older-than '6 hours': give a number and a unit, e.g. 30m, 6h or 2d",
            id="older-than",
        ),
        pytest.param(
            ["gc", "--region", "mars-north-1"],
            "error: --region: unknown region 'mars-north-1': not an EC2 region (did you mean"
            " eu-north-1?)",
            id="gc-unknown-region",
        ),
        pytest.param(
            ["publish", "--image", "deepseek-r1-7b", "--wait-minutes", "soon"],
            "error: --wait-minutes 'soon': not a whole number",
            id="wait-minutes",
        ),
    ],
)
def test_option_bad_input(emulator: str, args: list[str], expected: str) -> None:
    line = one_line_error(invoke(*args))
    assert line == expected
    assert PARAMETER.startswith("/")


def test_prune_apply_against_the_emulator_itself_says_what_it_cannot_do(
    tmp_path: Path, emulator: str
) -> None:
    """No shim here: the emulator answers enable_image_deprecation with an HTTP 500 page, and
    prune reports it per AMI and in one line, as it would any endpoint's failure."""
    path = definition(tmp_path, regions=(), kms_key_ids={})
    amis = [baked_ami(run=f"2025010{n}-000000-00000{n}", verified=False) for n in (1, 2)]
    result = invoke("prune", "--image", str(path), "--keep", "1", "--apply")
    line = one_line_error(result)
    assert line.startswith(f"error: prune failed in {BUILD}: 1 failed (ami-")
    assert line.endswith(": the endpoint's answer is not an AWS response (an HTTP error page?))")
    assert "prune: us-east-1: could not deprecate ami-" in result.stdout
    left = boto3.client("ec2", BUILD).describe_images(Owners=["self"])["Images"]
    assert {a["ImageId"] for a in left} == {a["ImageId"] for a in amis}
