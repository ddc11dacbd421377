"""publish's requests and its wait, without AWS: the copy request, progress, time-out."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from bakery import catalog, config, publish
from bakery.distribute import Targets
from bakery.errors import BakeryError

REPO = Path(__file__).resolve().parents[2]
SOURCE = {
    "ImageId": "ami-0123456789abcdef0",
    "Name": "deepseek-r1-7b-20250101-000000-abc123",
    "Description": "DeepSeek R1 7B",
    "Tags": [{"Key": catalog.IMAGE, "Value": "deepseek-r1-7b"}],
}
KEY = "arn:aws:kms:eu-west-1:123456789012:key/11111111-2222-3333-4444-555555555555"


def plan(tmp_path: Path, keys: dict[str, str]) -> publish.Plan:
    text = (REPO / "images" / "deepseek-r1-7b.toml").read_text()
    table = "\n[distribute.kms_key_ids]\n" + "".join(f'"{r}" = "{k}"\n' for r, k in keys.items())
    path = tmp_path / "deepseek-r1-7b.toml"
    path.write_text(text.replace("\n[tags]", table + "\n[tags]"))
    image = config.load(path)
    return publish.Plan(image, SOURCE, "us-east-1", Targets(), 600, 15, lambda _: None)


def test_copy_request(tmp_path: Path) -> None:
    request = publish.copy_request(plan(tmp_path, {"eu-west-1": KEY}), "eu-west-1")
    token = request.pop("ClientToken")
    assert token.startswith("gpu-ami-bakery-") and len(token) <= 64
    assert request == {
        "SourceImageId": SOURCE["ImageId"],
        "SourceRegion": "us-east-1",
        "Name": SOURCE["Name"],
        "Description": "DeepSeek R1 7B",
        "Encrypted": True,
        "KmsKeyId": KEY,
        "CopyImageTags": True,
        "TagSpecifications": [
            {
                "ResourceType": "image",
                "Tags": [
                    {"Key": catalog.COPIED_FROM, "Value": SOURCE["ImageId"]},
                    {"Key": catalog.COPIED_FROM_REGION, "Value": "us-east-1"},
                ],
            },
            {
                "ResourceType": "snapshot",
                "Tags": [
                    {"Key": catalog.COPIED_FROM, "Value": SOURCE["ImageId"]},
                    {"Key": catalog.COPIED_FROM_REGION, "Value": "us-east-1"},
                    {"Key": catalog.IMAGE, "Value": "deepseek-r1-7b"},
                    {"Key": catalog.MANAGED_BY, "Value": "gpu-ami-bakery"},
                ],
            },
        ],
    }


def test_the_token_is_the_same_for_the_same_request_only(tmp_path: Path) -> None:
    p = plan(tmp_path, {"eu-west-1": KEY})
    token = publish.copy_request(p, "eu-west-1")["ClientToken"]
    assert publish.copy_request(p, "eu-west-1")["ClientToken"] == token
    assert publish.copy_request(p, "eu-west-2")["ClientToken"] != token


class Images:
    """describe_images answering from a script of states; a clock that the waits advance."""

    def __init__(self, states: list[str]) -> None:
        self.states, self.now = states, 0.0
        self.meta = type("Meta", (), {"region_name": "eu-west-1"})()

    def describe_images(self, ImageIds: list[str]) -> dict:
        state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        return {
            "Images": [
                {
                    "ImageId": ImageIds[0],
                    "State": state,
                    "StateReason": {"Message": "snapshot copy failed"},
                }
            ]
        }


class Stop(threading.Event):
    def __init__(self, clock: Images) -> None:
        super().__init__()
        self.clock = clock

    def wait(self, timeout: float | None = None) -> bool:
        self.clock.now += timeout or 0
        return False


def wait(images: Images, timeout_s: float, lines: list[str]) -> dict:
    return publish.wait_available(
        images,
        "ami-0copy",
        source_id="ami-0source",
        timeout_s=timeout_s,
        poll_s=15,
        stop=Stop(images),
        say=lines.append,
        clock=lambda: images.now,
    )


def test_wait_reports_progress_and_returns_the_available_image() -> None:
    images, lines = Images(["pending"] * 9 + ["available"]), []
    assert wait(images, 3600, lines)["State"] == "available"
    assert lines == [
        "publish: eu-west-1: ami-0copy is pending after 1m00s (waiting up to 1h00m)",
        "publish: eu-west-1: ami-0copy is pending after 2m00s (waiting up to 1h00m)",
    ]


def test_wait_times_out_with_one_line_naming_the_ami() -> None:
    images, lines = Images(["pending"]), []
    with pytest.raises(BakeryError) as e:
        wait(images, 120, lines)
    assert str(e.value) == (
        "the copy ami-0copy of ami-0source is still pending after 2m00s (--wait-minutes 2): it"
        " goes on in AWS; rerun to resume the wait"
    )


def test_a_failed_copy_says_why_and_what_to_do() -> None:
    with pytest.raises(BakeryError) as e:
        wait(Images(["pending", "failed"]), 600, [])
    assert str(e.value) == (
        "the copy ami-0copy of ami-0source is failed (snapshot copy failed): deregister it (aws"
        " ec2 deregister-image --region eu-west-1 --image-id ami-0copy), then rerun"
    )
