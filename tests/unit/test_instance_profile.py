"""The run's instance profile: only what the instance does, and EC2's late sight of a new one."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from bakery import instanceprofile
from bakery.errors import BakeryError


def test_session_manager_only() -> None:
    document = instanceprofile.policy(session_manager=True, s3_urls=[])
    assert document == {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "SessionManager",
                "Effect": "Allow",
                "Action": list(instanceprofile.SESSION_MANAGER_ACTIONS),
                "Resource": "*",
            }
        ],
    }
    assert all(
        a.split(":")[0] in ("ssm", "ssmmessages") for a in instanceprofile.SESSION_MANAGER_ACTIONS
    )


def test_model_files_exactly_and_nothing_else() -> None:
    urls = ["s3://team-models/a/b.gguf", "s3://other.bucket/c.gguf", "s3://team-models/a/b.gguf"]
    document = instanceprofile.policy(session_manager=False, s3_urls=urls)
    assert document is not None
    [statement] = document["Statement"]
    assert statement["Action"] == "s3:GetObject"  # no ListBucket, no wildcard keys
    assert statement["Resource"] == [
        "arn:aws:s3:::other.bucket/c.gguf",
        "arn:aws:s3:::team-models/a/b.gguf",
    ]


def test_no_profile_when_the_instance_needs_none() -> None:
    assert instanceprofile.policy(session_manager=False, s3_urls=[]) is None


@pytest.mark.parametrize("url", ["s3://bucket", "https://x/y", "s3://B/key"])
def test_not_an_object_url(url: str) -> None:
    with pytest.raises(BakeryError, match="is not an s3://BUCKET/KEY URL"):
        instanceprofile.s3_object_arn(url)


def _iam() -> Any:
    return boto3.client(
        "iam", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )


def test_a_named_profile_that_does_not_exist_is_one_line() -> None:
    iam = _iam()
    with Stubber(iam) as stub:
        stub.add_client_error(
            "get_instance_profile", "NoSuchEntity", "Instance Profile team cannot be found."
        )
        with pytest.raises(BakeryError) as e:
            instanceprofile.check_named(iam, "team", "verify.instance_profile")
    assert str(e.value) == "verify.instance_profile: instance profile 'team' does not exist"


def test_a_profile_ec2_does_not_see_yet_is_waited_for(monkeypatch: pytest.MonkeyPatch) -> None:
    """IAM is eventually consistent: RunInstances may refuse a profile made seconds ago."""
    monkeypatch.setattr(instanceprofile.time, "sleep", lambda s: None)
    ec2 = boto3.client(
        "ec2", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    with Stubber(ec2) as stub:
        stub.add_client_error(
            "run_instances",
            "InvalidParameterValue",
            "Value (bakery-1) for parameter iamInstanceProfile.name is invalid. Invalid IAM"
            " Instance Profile name",
        )
        stub.add_response("run_instances", {"Instances": [{"InstanceId": "i-1"}]})
        answer = instanceprofile.wait_usable(
            lambda: ec2.run_instances(ImageId="ami-1", MinCount=1, MaxCount=1)
        )
    assert answer["Instances"][0]["InstanceId"] == "i-1"


def test_other_invalid_parameters_are_not_waited_for() -> None:
    ec2 = boto3.client(
        "ec2", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    with Stubber(ec2) as stub:
        stub.add_client_error(
            "run_instances", "InvalidParameterValue", "Invalid value for InstanceType"
        )
        with pytest.raises(Exception, match="Invalid value for InstanceType"):
            instanceprofile.wait_usable(
                lambda: ec2.run_instances(ImageId="ami-1", MinCount=1, MaxCount=1)
            )


def test_a_refused_creation_leaves_nothing_and_names_the_way_out() -> None:
    iam = _iam()
    document = instanceprofile.policy(session_manager=True, s3_urls=[])
    assert document is not None
    with Stubber(iam) as stub:
        stub.add_response("create_role", {"Role": _role("bakery-r")})
        stub.add_client_error(
            "put_role_policy", "AccessDenied", "not authorized: iam:PutRolePolicy"
        )
        # What the creation made is removed again: the role (it has no profile yet).
        stub.add_client_error("get_instance_profile", "NoSuchEntity", "none")
        stub.add_response("list_role_policies", {"PolicyNames": []})
        stub.add_response("delete_role", {})
        with pytest.raises(BakeryError) as e:
            instanceprofile.create(iam, "r", {"bakery:run-id": "r"}, document, print)
        stub.assert_no_pending_responses()
    assert str(e.value) == (
        "cannot make the run's instance profile bakery-r: AccessDenied: not authorized:"
        " iam:PutRolePolicy (name one that exists instead: instance_profile in the definition's"
        " [build] or [verify])"
    )


def _role(name: str) -> dict[str, Any]:
    import datetime as dt

    return {
        "Path": "/bakery/",
        "RoleName": name,
        "RoleId": "AROA0000000000000000",
        "Arn": f"arn:aws:iam::123456789012:role/bakery/{name}",
        "CreateDate": dt.datetime(2026, 1, 1),
    }


def test_the_build_profile_follows_the_definition() -> None:
    import dataclasses

    from bakery import bake, config

    image = config.load("deepseek-r1-7b")
    assert bake.profile_document(image) is None  # ssh, models from Ollama's registry: none
    network = config.Network(communicator="session_manager")
    image = dataclasses.replace(image, build=dataclasses.replace(image.build, network=network))
    image = dataclasses.replace(
        image, models=(*image.models, config.Model("team", "s3://team-models/t.gguf", "a" * 64))
    )
    document = bake.profile_document(image)
    assert document is not None
    assert [s["Sid"] for s in document["Statement"]] == ["SessionManager", "ReadTheModelFiles"]
    assert document["Statement"][1]["Resource"] == ["arn:aws:s3:::team-models/t.gguf"]
