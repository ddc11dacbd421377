"""launch's checks before anything is applied (CIDRs, capacity, subnets, the AMI), the way to
the UI it prints, and its bounded wait for instances in service."""

from __future__ import annotations

import json
import shlex
from typing import Any

import pytest

from bakery import catalog, config
from bakery.errors import BakeryError, ConfigError
from bakery.fleet import ami as amis
from bakery.fleet import group as groups
from bakery.fleet import options

IMAGE = "deepseek-r1-7b"


# -- --allow-cidr -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "yes_public", "expected"),
    [
        ([], False, options.Ingress()),
        (["203.0.113.0/24"], False, options.Ingress(("203.0.113.0/24",))),
        (["198.51.100.7"], False, options.Ingress(("198.51.100.7/32",))),
        ([" 10.0.0.0/8 "], False, options.Ingress(("10.0.0.0/8",))),
        (["203.0.113.0/24", "203.0.113.0/24"], False, options.Ingress(("203.0.113.0/24",))),
        (["0.0.0.0/0"], True, options.Ingress((), True)),
        (["203.0.113.0/24", "0.0.0.0/0"], True, options.Ingress(("203.0.113.0/24",), True)),
    ],
    ids=["none", "network", "address-is-a-32", "spaces", "twice", "public", "public-and-network"],
)
def test_allowed_networks(values: list[str], yes_public: bool, expected: options.Ingress) -> None:
    assert options.allowed_networks(values, yes_public) == expected


@pytest.mark.parametrize(
    ("values", "yes_public", "message"),
    [
        (
            ["203.0.113.0/33"],
            False,
            "--allow-cidr '203.0.113.0/33' is not an IPv4 network (e.g. 203.0.113.0/24, or an address for a /32)",
        ),
        (
            ["office"],
            False,
            "--allow-cidr 'office' is not an IPv4 network (e.g. 203.0.113.0/24, or an address for a /32)",
        ),
        (
            ["203.0.113.7/24"],
            False,
            "--allow-cidr '203.0.113.7/24' has host bits set: the network is 203.0.113.0/24",
        ),
        (
            ["2001:db8::/32"],
            False,
            "--allow-cidr '2001:db8::/32' is an IPv6 network: the UI can be opened to IPv4 networks only",
        ),
        (
            ["0.0.0.0/0"],
            False,
            "--allow-cidr 0.0.0.0/0 would open the UI to the whole internet, and it has no"
            " authentication: name narrower networks, put sign-in in front (--certificate-arn and"
            " the --oidc-* options), or add --yes-public if you mean it",
        ),
        (
            ["203.0.113.0/24"],
            True,
            "--yes-public applies only with --allow-cidr 0.0.0.0/0",
        ),
    ],
    ids=["prefix-too-long", "not-an-address", "host-bits", "ipv6", "world", "yes-public-alone"],
)
def test_allowed_networks_refuses(values: list[str], yes_public: bool, message: str) -> None:
    with pytest.raises(BakeryError) as e:
        options.allowed_networks(values, yes_public)
    assert str(e.value) == message


# -- the other options --------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [("0", 0), ("1", 1), (3, 3), (" 12 ", 12)])
def test_capacity(value: Any, expected: int) -> None:
    assert options.check_capacity(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("two", "--capacity 'two' is not a whole number of instances"),
        ("1.5", "--capacity '1.5' is not a whole number of instances"),
        ("-1", "--capacity -1: give 0 or more instances"),
    ],
)
def test_capacity_refused(value: str, message: str) -> None:
    with pytest.raises(BakeryError) as e:
        options.check_capacity(value)
    assert str(e.value) == message


def test_wait_minutes() -> None:
    assert options.check_wait_minutes("0") == 0
    with pytest.raises(BakeryError, match=r"--wait-minutes 721 is out of range \(0 to 720\)"):
        options.check_wait_minutes("721")
    with pytest.raises(BakeryError, match="--wait-minutes 'soon' is not a whole number"):
        options.check_wait_minutes("soon")


def test_subnets() -> None:
    assert options.check_subnets(["subnet-0123456789abcdef0", "subnet-0123abcd"]) == (
        "subnet-0123456789abcdef0",
        "subnet-0123abcd",
    )
    with pytest.raises(BakeryError) as e:
        options.check_subnets(["default"])
    assert str(e.value) == "--subnet 'default' is not a subnet ID (subnet- and 8 or 17 hex digits)"


def test_fleet_is_named_after_the_image() -> None:
    assert options.fleet_name(config.load(IMAGE)) == IMAGE


def test_an_image_name_that_cannot_name_a_fleet(tmp_path: Any) -> None:
    image = config.load(IMAGE)
    renamed = type(image)(**{**image.__dict__, "name": "7b-" + "x" * 40})
    with pytest.raises(ConfigError, match="cannot name a fleet"):
        options.fleet_name(renamed)


# -- the AMI: picked as the module picks it, refused when it should not launch ------------------


class FakeEC2:
    """describe_images through a paginator, as catalog.images calls it."""

    def __init__(self, images: list[dict[str, Any]]) -> None:
        self.images = images

    def get_paginator(self, name: str) -> Any:
        assert name == "describe_images"
        images = self.images

        class Pages:
            def paginate(self, **kwargs: Any) -> list[dict[str, Any]]:
                return [{"Images": images}]

        return Pages()


def ami(n: int, *, verification: str | None = None, finished: bool = True, **tags: str) -> dict:
    all_tags = catalog.tool_tags(IMAGE, **tags)
    if finished:
        all_tags[catalog.FINGERPRINT] = "f" * 64
    if verification:
        all_tags[catalog.VERIFICATION] = verification
    return {
        "ImageId": f"ami-{n:017x}",
        "Name": f"{IMAGE}-{n}",
        "State": "available",
        "CreationDate": f"2025-06-{n:02d}T00:00:00.000Z",
        "Tags": catalog.tag_list(all_tags),
    }


def pick(images: list[dict], allow_unverified: bool = False) -> tuple[str, list[str]]:
    said: list[str] = []
    chosen = amis.pick_ami(
        FakeEC2(images),
        config.load(IMAGE),
        "us-east-1",
        allow_unverified=allow_unverified,
        say=said.append,
    )
    return chosen["ImageId"], said


def refused(images: list[dict], allow_unverified: bool = False) -> str:
    with pytest.raises(BakeryError) as e:
        pick(images, allow_unverified)
    return str(e.value)


def test_the_newest_verified_ami() -> None:
    assert pick([ami(2, verification="passed"), ami(1, verification="passed")]) == (
        "ami-00000000000000002",
        [],
    )


def test_a_newer_unverified_ami_is_named_and_skipped() -> None:
    chosen, said = pick([ami(3), ami(2, verification="failed"), ami(1, verification="passed")])
    assert chosen == "ami-00000000000000001"
    assert said == [
        "launch: the newest AMI, ami-00000000000000003, is not verified; launching"
        " ami-00000000000000001, the newest verified one"
    ]


def test_an_unverified_ami_is_refused() -> None:
    assert refused([ami(2)]) == (
        "no verified AMI of deepseek-r1-7b in us-east-1: the newest, ami-00000000000000002, is not"
        " verified; verify it (invoke verify --image deepseek-r1-7b), or pass --allow-unverified"
        " to launch it anyway"
    )


def test_a_failed_ami_is_refused_with_its_reason() -> None:
    message = refused(
        [ami(2, verification="failed", **{"bakery:verify-failure": "test_gpu_name: no GPU"})]
    )
    assert message == (
        "no verified AMI of deepseek-r1-7b in us-east-1: the newest, ami-00000000000000002, failed"
        " verification (test_gpu_name: no GPU); bake a fixed one and verify it (invoke bake --image"
        " deepseek-r1-7b --force), or pass --allow-unverified to launch it anyway"
    )


def test_an_unverified_ami_with_allow_unverified() -> None:
    chosen, said = pick([ami(2), ami(1, verification="passed")], allow_unverified=True)
    assert chosen == "ami-00000000000000002"
    assert said == [
        "launch: ami-00000000000000002 is not verified; launching it anyway (--allow-unverified):"
        " nothing has proven that it serves on a GPU"
    ]


def test_an_unfinished_bake_is_never_launched() -> None:
    message = refused([ami(3, finished=False), ami(2)], allow_unverified=True)
    assert message.startswith(
        "ami-00000000000000003, the newest AMI tagged for deepseek-r1-7b in us-east-1, is an"
        " unfinished bake (no bakery:fingerprint tag)"
    )


@pytest.mark.parametrize("allow_unverified", [False, True])
def test_no_ami_at_all(allow_unverified: bool) -> None:
    assert refused([ami(1, finished=False)], allow_unverified) == (
        "no AMI of deepseek-r1-7b in us-east-1 yet: bake and verify one first"
        " (invoke bake --image deepseek-r1-7b, then invoke verify --image deepseek-r1-7b)"
    )


def test_root_volume_size_of_the_ami() -> None:
    image = {
        "RootDeviceName": "/dev/sda1",
        "BlockDeviceMappings": [
            {"DeviceName": "/dev/sdb", "Ebs": {"VolumeSize": 500}},
            {"DeviceName": "/dev/sda1", "Ebs": {"VolumeSize": 100}},
        ],
    }
    assert amis.root_volume_gib(image) == 100
    assert amis.root_volume_gib({"RootDeviceName": "/dev/sda1"}) is None


# -- the way to the UI --------------------------------------------------------------------------

PUBLIC = {"InstanceId": "i-0aaaaaaaaaaaaaaa1", "PublicIpAddress": "198.51.100.10"}
PRIVATE = {"InstanceId": "i-0aaaaaaaaaaaaaaa2", "PrivateIpAddress": "172.31.5.6"}


def test_url_when_networks_are_allowed() -> None:
    lines = groups.reach_lines(
        [PUBLIC, PRIVATE],
        image=IMAGE,
        region="eu-west-1",
        port=3000,
        open_to="203.0.113.0/24",
    )
    assert lines == [
        "the UI (no authentication; open to 203.0.113.0/24):",
        "  http://198.51.100.10:3000  (i-0aaaaaaaaaaaaaaa1)",
        "  i-0aaaaaaaaaaaaaaa2 has no public address: http://172.31.5.6:3000 from inside the VPC,"
        " or invoke connect --image deepseek-r1-7b",
    ]


def test_public_ui_says_so() -> None:
    lines = groups.reach_lines(
        [PUBLIC],
        image=IMAGE,
        region="eu-west-1",
        port=3000,
        open_to=options.Ingress((), True).describe(),
    )
    assert lines[0] == "the UI (no authentication; open to 0.0.0.0/0 (the whole internet)):"


def test_session_manager_command_when_the_ui_is_closed() -> None:
    lines = groups.reach_lines(
        [PUBLIC, PRIVATE], image=IMAGE, region="eu-west-1", port=3000, open_to=None
    )
    assert lines == [
        "the UI is closed to the network (no --allow-cidr): forward its port through Session Manager",
        "(invoke connect --image deepseek-r1-7b runs this for you; it needs the AWS CLI and its"
        " Session Manager plugin):",
        "  aws ssm start-session --region eu-west-1 --target i-0aaaaaaaaaaaaaaa1 --document-name"
        " AWS-StartPortForwardingSession --parameters"
        ' \'{"portNumber":["3000"],"localPortNumber":["3000"]}\'',
        "then open http://localhost:3000",
    ]


def test_the_command_is_one_a_shell_runs_as_printed() -> None:
    command = groups.port_forward_command("i-0aaaaaaaaaaaaaaa1", "eu-west-1", 3000, 8080)
    assert shlex.split(shlex.join(command)) == command
    assert json.loads(command[-1]) == {"portNumber": ["3000"], "localPortNumber": ["8080"]}


def test_nothing_in_service_nothing_to_print() -> None:
    assert groups.reach_lines([], image=IMAGE, region="x", port=3000, open_to=None) == []


# -- the wait ----------------------------------------------------------------------------------


class FakeAutoscaling:
    def __init__(self, rounds: list[list[tuple[str, str]]]) -> None:
        self.rounds, self.calls = rounds, 0

    def describe_auto_scaling_groups(self, AutoScalingGroupNames: list[str]) -> dict:
        members = self.rounds[min(self.calls, len(self.rounds) - 1)]
        self.calls += 1
        return {
            "AutoScalingGroups": [
                {
                    "AutoScalingGroupName": AutoScalingGroupNames[0],
                    "Instances": [
                        {"InstanceId": f"i-{n}", "LifecycleState": state, "HealthStatus": health}
                        for n, (state, health) in enumerate(members)
                    ],
                }
            ]
        }


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_wait_until_in_service() -> None:
    clock, said = Clock(), []
    group = FakeAutoscaling(
        [[], [("Pending", "Healthy")], [("InService", "Healthy")]],
    )
    ready = groups.wait_in_service(
        group, "fleet", 1, 600, said.append, sleep=clock.sleep, clock=clock
    )
    assert [i["InstanceId"] for i in ready] == ["i-0"]
    assert said == [
        "launch: 0 of 1 instances in service (0 in the group)",
        "launch: 0 of 1 instances in service (1 in the group)",
        "launch: 1 of 1 instances in service (1 in the group)",
    ]


def test_wait_is_bounded() -> None:
    clock, said = Clock(), []
    group = FakeAutoscaling([[("InService", "Healthy"), ("Pending", "Healthy")]])
    ready = groups.wait_in_service(
        group, "fleet", 2, 60, said.append, sleep=clock.sleep, clock=clock
    )
    assert len(ready) == 1
    assert 60 <= clock.now < 60 + groups.POLL_S
    assert said == ["launch: 1 of 2 instances in service (2 in the group)"]


def test_unhealthy_is_not_in_service() -> None:
    group = {"Instances": [{"LifecycleState": "InService", "HealthStatus": "Unhealthy"}]}
    assert groups.in_service(group) == []
