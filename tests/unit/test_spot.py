"""A spot interruption ends bake and verify with exit code 75 (CI retries it); nothing else does."""

from __future__ import annotations

from typing import Any

import pytest
from invoke import Exit

from bakery import bake, config, spot, verify
from bakery.errors import BakeryError, SpotInterrupted
from bakery.packer import Result
from bakery.tasks._common import bakery_task

INTERRUPTED = {
    "state-reason-termination": "Server.SpotInstanceTermination: Spot instance termination",
    "state-reason-stop": "Server.SpotInstanceShutdown: Spot instance shutdown",
    "packer-waiter": "==> amazon-ebs.image: Error waiting for instance (i-0abc) to become ready:"
    " instance terminated: Server.SpotInstanceTermination",
    "request-no-capacity": "status instance-terminated-no-capacity: Your Spot Instance was terminated",
    "request-by-price": "instance-terminated-by-price",
    "request-oversubscribed": "instance-terminated-capacity-oversubscribed",
    "notice": "spot request sir-0123 is marked-for-termination",
}
NOT_INTERRUPTED = {
    "api-terminate": "Client.UserInitiatedShutdown: User initiated shutdown",
    "shut-itself-down": "Client.InstanceInitiatedShutdown: Instance initiated shutdown",
    "launch-capacity": "InsufficientInstanceCapacity: no capacity in us-east-1a",
    "request-capacity": "capacity-not-available",
    "user-terminated": "instance-terminated-by-user",
    "script-failed": "==> amazon-ebs.image: Script exited with non-zero exit status: 1",
    "empty": "",
}


@pytest.mark.parametrize("text", INTERRUPTED.values(), ids=INTERRUPTED.keys())
def test_interruption_is_seen(text: str) -> None:
    assert spot.interruption("unrelated line", text) == text.strip()


@pytest.mark.parametrize("text", NOT_INTERRUPTED.values(), ids=NOT_INTERRUPTED.keys())
def test_other_endings_are_not_interruptions(text: str) -> None:
    assert spot.interruption(text) is None


def test_the_first_matching_line_is_the_evidence() -> None:
    text = "==> building\nserver.spotinstancetermination: gone\nmarked-for-stop"
    assert spot.interruption(text) == "server.spotinstancetermination: gone"


def test_spot_interrupted_exits_75_through_a_task() -> None:
    @bakery_task()
    def failing(c: Any) -> None:
        raise SpotInterrupted("EC2 reclaimed it")

    with pytest.raises(Exit) as exc:
        failing.body(None)
    assert exc.value.code == 75  # EX_TEMPFAIL: what .gitlab-ci.yml retries
    assert issubclass(SpotInterrupted, BakeryError)


# --- bake: packer failed, and the build instance was reclaimed --------------------------------


def _result(*lines: str) -> Result:
    return Result(returncode=1, interrupted=False, timed_out=False, tail=list(lines))


IMAGE = config.load("deepseek-r1-7b")  # build.instance_types: c6i, c5, m6i, m5 (.xlarge)


def test_bake_failure_from_packer_output_is_an_interruption() -> None:
    error = bake.build_failure(
        IMAGE, _result("==> amazon-ebs.image: Server.SpotInstanceTermination"), []
    )
    assert isinstance(error, SpotInterrupted)
    assert "EC2 reclaimed the spot build instance of deepseek-r1-7b" in str(error)


def test_bake_failure_from_the_instance_state_reason_is_an_interruption() -> None:
    failed = _result("Build 'amazon-ebs.image' errored after 12 minutes: Script disconnected")
    reasons = ["i-0abc terminated: Server.SpotInstanceTermination: Spot instance termination"]
    assert isinstance(bake.build_failure(IMAGE, failed, reasons), SpotInterrupted)


def test_other_bake_failures_are_not_retried() -> None:
    failed = _result("==> amazon-ebs.image: Script exited with non-zero exit status: 1")
    reasons = ["i-0abc terminated: Client.UserInitiatedShutdown: User initiated shutdown"]
    error = bake.build_failure(IMAGE, failed, reasons)
    assert type(error) is BakeryError
    assert str(error).startswith("packer build failed: ")


# What Packer prints when CreateFleet refuses the spot request (amazon plugin,
# step_run_spot_instance.go: "Error waiting for fleet request (ID) to become ready:" followed by
# the fleet errors' messages, as EC2 words them).
FLEET = "==> amazon-ebs.image: Error waiting for fleet request (fleet-0abc) to become ready:"
PACKER_FLEET_ERRORS = {
    "vcpu-limit": FLEET + "You have requested more vCPU capacity than your current vCPU limit of 0"
    " allows for the instance bucket that the specified instance type belongs to.",
    "max-spot-count": FLEET + "Max spot instance count exceeded",
}


@pytest.mark.parametrize("line", PACKER_FLEET_ERRORS.values(), ids=PACKER_FLEET_ERRORS.keys())
def test_bake_refused_for_the_spot_quota_names_it_and_how_to_raise_it(line: str) -> None:
    error = bake.build_failure(
        IMAGE, _result(line, "Build 'amazon-ebs.image' errored"), [], "eu-west-1"
    )
    assert type(error) is BakeryError
    message = str(error)
    assert message.startswith("the spot build instance was refused: c6i.xlarge: ")
    assert (
        '"All Standard (A, C, D, H, I, M, R, T, Z) Spot Instance Requests" (L-34B43A08)' in message
    )
    assert "--quota-code L-34B43A08 --region eu-west-1" in message
    assert "\n" not in message


def test_bake_without_spot_capacity_says_what_to_do() -> None:
    """InsufficientInstanceCapacity during Packer's fleet request (Packer retries it, then stops)."""
    line = FLEET + "There is no Spot capacity available that matches your request."
    error = bake.build_failure(IMAGE, _result(line), [], "us-east-1")
    assert str(error) == (
        "no spot capacity for any of build.instance_types (c6i.xlarge, c5.xlarge, m6i.xlarge,"
        " m5.xlarge) in us-east-1 where the build runs: add types to build.instance_types in"
        f" {IMAGE.path}, bake in another zone with --subnet, or bake again later"
    )


def test_bake_with_types_not_offered_in_the_zone_says_so() -> None:
    line = (
        FLEET + "Your requested instance type (c6i.xlarge) is not supported in your requested"
        " Availability Zone (us-east-1e)."
    )
    assert "not offered in the build subnet's zone" in str(
        bake.build_failure(IMAGE, _result(line), [])
    )


class _Ec2:
    def __init__(self, *instances: dict[str, Any]) -> None:
        self.instances = list(instances)
        self.calls: list[dict[str, Any]] = []

    def describe_instances(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        return {"Reservations": [{"Instances": self.instances}]}


def _instance(state: str, code: str = "", message: str = "") -> dict[str, Any]:
    reason = {"Code": code, "Message": message} if code else {}
    return {"InstanceId": "i-0abc", "State": {"Name": state}, "StateReason": reason}


def test_state_reasons_of_the_build_are_found_by_its_run_id() -> None:
    ec2 = _Ec2(
        _instance(
            "terminated",
            "Server.SpotInstanceTermination",
            "Server.SpotInstanceTermination: Spot instance termination",
        )
    )
    assert bake._state_reasons(ec2, "20250101-000000-abcdef") == [
        "i-0abc terminated: Server.SpotInstanceTermination: Spot instance termination"
    ]
    assert ec2.calls == [
        {"Filters": [{"Name": "tag:bakery:run-id", "Values": ["20250101-000000-abcdef"]}]}
    ]


# --- verify: the instance went away during the image tests or before it was ready -----------


def _launched() -> verify.Launched:
    return verify.Launched("i-0abc", "g5.xlarge", "us-east-1a")


def test_verify_instance_reclaimed_during_the_tests_is_an_interruption() -> None:
    ec2 = _Ec2(
        _instance(
            "terminated",
            "Server.SpotInstanceTermination",
            "Server.SpotInstanceTermination: Spot instance termination",
        )
    )
    with pytest.raises(SpotInterrupted, match="went terminated during the image tests"):
        verify._still_there(ec2, _launched())


def test_verify_instance_that_shut_itself_down_is_not_retried() -> None:
    ec2 = _Ec2(
        _instance(
            "terminated",
            "Client.InstanceInitiatedShutdown",
            "Client.InstanceInitiatedShutdown: Instance initiated shutdown",
        )
    )
    with pytest.raises(BakeryError) as exc:
        verify._still_there(ec2, _launched())
    assert type(exc.value) is BakeryError


def test_verify_instance_still_running_is_left_to_the_verdict() -> None:
    verify._still_there(_Ec2(_instance("running")), _launched())


def test_verify_instance_reclaimed_before_it_was_ready_is_an_interruption() -> None:
    ec2 = _Ec2(
        _instance(
            "shutting-down",
            "Server.SpotInstanceTermination",
            "Server.SpotInstanceTermination: Spot instance termination",
        )
    )
    with pytest.raises(SpotInterrupted, match="ended before it was ready"):
        verify.wait_running(ec2, _launched(), lambda line: None)
