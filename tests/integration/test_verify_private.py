"""verify in a locked-down account, against the emulator: no default VPC, a private subnet,
Session Manager instead of inbound SSH, the fleet's boot (user-data, volume initialization
rate), and credentials that expire mid-run. The SSH step and the image suite are stood in for
(there is no machine behind the emulator); everything AWS-side is the real code path."""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import network_support
import pytest
from botocore.awsrequest import AWSResponse
from cli import invoke, one_line_error
from verify_support import (
    IMAGE,
    NOTHING_LEFT,
    PASSING,
    FakeSuite,
    leftovers,
    no_reach,
    register_ami,
)

from bakery import aws, catalog, config, instanceprofile, userdata, verify
from bakery.errors import BakeryError

pytestmark = pytest.mark.emulator
DEFINITION = config.load(IMAGE)
PROXY = "aws ssm start-session --target %h --document-name AWS-StartSSHSession"


class Said(list):
    def __call__(self, line: str) -> None:
        self.append(line)

    def text(self) -> str:
        return "\n".join(self)


def with_verify_network(**changes: Any) -> config.ImageDef:
    network = dataclasses.replace(DEFINITION.verify.network, **changes)
    return dataclasses.replace(
        DEFINITION, verify=dataclasses.replace(DEFINITION.verify, network=network)
    )


@pytest.fixture
def launches(emulator: str) -> Iterator[list[dict[str, Any]]]:
    """The RunInstances requests as boto3 sends them (after validation, before the wire)."""
    sent: list[dict[str, Any]] = []
    undo = aws.on_event(
        "provide-client-params.ec2.RunInstances", lambda params, **_: sent.append(dict(params))
    )
    yield sent
    undo()


class Inspecting(FakeSuite):
    """A passing suite that also records, while the instance runs, what it was launched with."""

    def __call__(self, command: list[str], timeout_s: float) -> int:
        ec2 = boto3.client("ec2")
        [instance] = [
            i
            for r in ec2.describe_instances()["Reservations"]
            for i in r["Instances"]
            if i["State"]["Name"] == "running" and i["InstanceType"].startswith("g")
        ]
        groups = ec2.describe_security_groups(
            GroupIds=[g["GroupId"] for g in instance["SecurityGroups"]]
        )["SecurityGroups"]
        user_data = ec2.describe_instance_attribute(
            InstanceId=instance["InstanceId"], Attribute="userData"
        )["UserData"].get("Value", "")
        profile = (instance.get("IamInstanceProfile") or {}).get("Arn", "").rsplit("/", 1)[-1]
        self.found = {
            "instance": instance,
            "groups": groups,
            "user_data": base64.b64decode(user_data).decode(),
            "profile": profile,
        }
        if profile:
            iam = boto3.client("iam")
            role = iam.get_instance_profile(InstanceProfileName=profile)["InstanceProfile"]
            self.found["profile_path"] = role["Path"]
            self.found["policy"] = iam.get_role_policy(
                RoleName=role["Roles"][0]["RoleName"], PolicyName=instanceprofile.POLICY_NAME
            )["PolicyDocument"]
            self.found["profile_tags"] = {t["Key"]: t["Value"] for t in role.get("Tags", [])}
        return super().__call__(command, timeout_s)


def run(
    said: Said,
    suite: Callable[[list[str], float], int],
    image: config.ImageDef = DEFINITION,
    **options: Any,
) -> verify.Result:
    return verify.verify(
        image,
        verify.Options(timeout_s=600, **options),
        say=said,
        reach=no_reach,
        run_suite=suite,
        ssm_proxy=lambda region: PROXY,  # the AWS CLI and its plugin need not be here
    )


def iam_leftovers() -> list[str]:
    iam = boto3.client("iam")
    profiles = iam.list_instance_profiles(PathPrefix=instanceprofile.PATH)["InstanceProfiles"]
    roles = iam.list_roles(PathPrefix=instanceprofile.PATH)["Roles"]
    return [p["InstanceProfileName"] for p in profiles] + [r["RoleName"] for r in roles]


def test_no_default_vpc_and_no_subnet_is_one_line_saying_what_to_pass(emulator: str) -> None:
    register_ami()
    network_support.delete_default_vpc()
    line = one_line_error(invoke("verify", "--image", IMAGE, "--local"))
    assert line == (
        "error: us-east-1 has no default VPC: pass --subnet subnet-ID or --subnet tag:KEY=VALUE (a"
        " subnet with a route to the internet or to VPC endpoints), or set verify.subnet in"
        " images/deepseek-r1-7b.toml"
    )
    assert leftovers() == NOTHING_LEFT


def test_cli_verify_in_a_private_subnet_without_a_default_vpc(emulator: str) -> None:
    register_ami()
    private = network_support.locked_down()
    result = invoke("verify", "--image", IMAGE, "--local", "--subnet", "tag:Tier=private")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"in {private.zone} from ami-" in result.stdout
    instances = [
        i
        for r in boto3.client("ec2").describe_instances()["Reservations"]
        for i in r["Instances"]
        if i["InstanceType"].startswith("g")
    ]
    assert [i["SubnetId"] for i in instances] == [private.subnet_id]
    assert leftovers() == NOTHING_LEFT


def test_session_manager_in_a_private_subnet_admits_nothing_and_boots_as_the_fleet(
    emulator: str, launches: list[dict[str, Any]]
) -> None:
    register_ami()
    private = network_support.locked_down()
    said, suite = Said(), Inspecting(PASSING)
    image = with_verify_network(subnet="tag:Tier=private", communicator="session_manager")
    result = run(said, suite, image)

    assert result.marked == catalog.PASSED
    instance = suite.found["instance"]
    assert instance["SubnetId"] == private.subnet_id
    assert "PublicIpAddress" not in instance
    # The run's group admits nothing: the session goes out through the SSM agent.
    [group] = suite.found["groups"]
    assert group["IpPermissions"] == []
    assert catalog.tags_of(group)[catalog.MANAGED_BY] == "gpu-ami-bakery"
    assert "admits nothing (Session Manager)" in said.text()
    # The instance profile made for the run: the agent's permissions only, tagged, deleted after.
    assert suite.found["profile"].startswith("bakery-")
    assert suite.found["profile_path"] == instanceprofile.PATH
    [statement] = suite.found["policy"]["Statement"]
    assert sorted(statement["Action"]) == sorted(instanceprofile.SESSION_MANAGER_ACTIONS)
    assert suite.found["profile_tags"][catalog.MANAGED_BY] == "gpu-ami-bakery"
    assert catalog.EXPIRES_AT in suite.found["profile_tags"]
    # ssh goes through Session Manager, to the instance by its ID.
    assert result.host == f"ssh://ubuntu@{instance['InstanceId']}"
    assert suite.seen["expect"]["ui"]["port"] == 3000
    # Booted as a fleet instance: its user-data, its volume initialization rate.
    assert suite.found["user_data"] == userdata.render(image)
    [sent] = launches
    [root] = sent["BlockDeviceMappings"]
    assert root["Ebs"]["VolumeInitializationRate"] == 300
    assert sent["IamInstanceProfile"] == {"Name": suite.found["profile"]}
    assert "initialized at 300 MiB/s" in said.text()
    assert leftovers() == NOTHING_LEFT
    assert iam_leftovers() == []
    assert f"instance profile {suite.found['profile']}" in said.text()


def test_ssh_cidr_with_session_manager_is_refused_before_anything_is_made(emulator: str) -> None:
    register_ami()
    image = with_verify_network(communicator="session_manager")
    with pytest.raises(BakeryError, match="--ssh-cidr applies only with communicator"):
        run(Said(), FakeSuite(PASSING), image, ssh_cidr="203.0.113.7/32")
    assert leftovers() == NOTHING_LEFT and iam_leftovers() == []


def test_named_groups_are_used_and_none_is_made(emulator: str) -> None:
    register_ami()
    private = network_support.locked_down()
    ec2 = boto3.client("ec2")
    mine = ec2.create_security_group(
        GroupName="team-verify", Description="from the VPN", VpcId=private.vpc_id
    )["GroupId"]
    said, suite = Said(), Inspecting(PASSING)
    run(
        said,
        suite,
        subnet=private.subnet_id,
        security_groups=(mine,),
        ssh_cidr="203.0.113.7/32",
    )
    assert [g["GroupId"] for g in suite.found["groups"]] == [mine]
    assert f"using your security groups {mine}" in said.text()
    groups = [g["GroupId"] for g in ec2.describe_security_groups()["SecurityGroups"]]
    assert mine in groups  # the user's own group stays


def test_a_group_of_another_vpc_is_refused(emulator: str) -> None:
    register_ami()
    private = network_support.private_subnet()
    other = boto3.client("ec2").create_security_group(
        GroupName="elsewhere", Description="x", VpcId=private.vpc_id
    )["GroupId"]
    with pytest.raises(BakeryError) as e:
        run(Said(), FakeSuite(PASSING), security_groups=(other,), ssh_cidr="203.0.113.7/32")
    assert str(e.value).startswith(f"--security-group: {other} is in {private.vpc_id}, not in vpc-")


def test_lazy_loading_when_the_rate_is_off(emulator: str, launches: list[dict[str, Any]]) -> None:
    register_ami()
    image = dataclasses.replace(
        DEFINITION, launch=dataclasses.replace(DEFINITION.launch, volume_initialization_rate=None)
    )
    run(Said(), FakeSuite(PASSING), image, ssh_cidr="203.0.113.7/32")
    [sent] = launches
    assert all("VolumeInitializationRate" not in m["Ebs"] for m in sent["BlockDeviceMappings"])


# --- credentials that expire mid-run -----------------------------------------------------------


@pytest.fixture
def expire_once(emulator: str) -> Iterator[Callable[..., None]]:
    """expire_once(Operation, ...): the first call of each named operation answers ExpiredToken
    (as AWS does when a session's credentials ran out); calls after it go through."""
    undo: list[Callable[[], None]] = []

    def install(*operations: str) -> None:
        pending = set(operations)

        def hook(model: Any, **_: Any) -> Any:
            if model.name not in pending:
                return None
            pending.discard(model.name)
            parsed = {
                "Error": {
                    "Code": "ExpiredToken",
                    "Message": "The security token included in the request is expired",
                },
                "ResponseMetadata": {"HTTPStatusCode": 400},
            }
            return AWSResponse("https://ec2", 400, {}, None), parsed

        undo.append(aws.on_event("before-call.ec2", hook))

    yield install
    for u in undo:
        u()


def test_expired_credentials_mid_run_still_end_everything(
    emulator: str, expire_once: Callable[..., None]
) -> None:
    ami = register_ami()
    # Mid-run (waiting for the status checks) and again at the first clean-up call.
    expire_once("DescribeInstanceStatus", "TerminateInstances")
    said = Said()
    with pytest.raises(BakeryError) as e:
        run(said, FakeSuite(PASSING), ssh_cidr="203.0.113.7/32")
    assert str(e.value).startswith("the AWS credentials expired while waiting for i-")
    assert "(ExpiredToken: The security token included in the request is expired)" in str(e.value)
    assert "ended the instance and removed what it created" in str(e.value)
    assert (
        "clean-up: ExpiredToken: The security token included in the request is expired; reading the credentials again"
        in said
    )
    assert any(line.startswith("verify: removed instance i-") for line in said)
    assert leftovers() == NOTHING_LEFT
    assert catalog.VERIFICATION not in catalog.tags_of(
        boto3.client("ec2").describe_images(ImageIds=[ami])["Images"][0]
    )


def test_a_tag_filter_that_matches_nothing_is_one_line(emulator: str) -> None:
    register_ami()
    with pytest.raises(BakeryError) as e:
        run(Said(), FakeSuite(PASSING), subnet="tag:Tier=nowhere", ssh_cidr="203.0.113.7/32")
    assert str(e.value) == "--subnet tag:Tier=nowhere matches no available subnet in us-east-1"
    assert leftovers() == NOTHING_LEFT


def test_a_tag_filter_across_two_vpcs_is_refused(emulator: str) -> None:
    register_ami()
    first = network_support.private_subnet("us-east-1a")
    ec2 = boto3.client("ec2")
    other_vpc = ec2.create_vpc(CidrBlock="10.30.0.0/16")["Vpc"]["VpcId"]
    ec2.create_subnet(
        VpcId=other_vpc,
        CidrBlock="10.30.1.0/24",
        AvailabilityZone="us-east-1b",
        TagSpecifications=[
            {"ResourceType": "subnet", "Tags": [{"Key": "Tier", "Value": "private"}]}
        ],
    )
    image = with_verify_network(subnet="tag:Tier=private")
    with pytest.raises(BakeryError) as e:
        run(Said(), FakeSuite(PASSING), image, ssh_cidr="203.0.113.7/32")
    message = str(e.value)
    assert message.startswith(
        "verify.subnet (images/deepseek-r1-7b.toml) tag:Tier=private matches subnets in 2 VPCs"
    )
    assert first.vpc_id in message and other_vpc in message
    assert leftovers() == NOTHING_LEFT
