"""The cold load, as the image suite reads it from the fleet user-data's ready file."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

SUITE = Path(__file__).resolve().parents[1] / "image"


def _boot_tests() -> ModuleType:
    pytest.importorskip("testinfra")
    sys.path.insert(0, str(SUITE))  # it imports image_probe from beside it
    try:
        spec = importlib.util.spec_from_file_location(
            "image_boot_tests", SUITE / "test_image_boot.py"
        )
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(SUITE))


class Root:
    """Stands in for the host's root shell: answers `cat READY` with what the user-data wrote."""

    def __init__(self, ready: str | None) -> None:
        self.ready = ready

    def run(self, command: str, *args: str) -> Any:
        if self.ready is None:
            return SimpleNamespace(rc=1, stdout="", stderr="No such file or directory")
        return SimpleNamespace(rc=0, stdout=self.ready, stderr="")


EXPECT = {"ollama": {"models": [{"name": "deepseek-r1:7b"}]}, "ui": {"port": 3000}}


def test_seconds_from_boot_to_models_loaded_are_the_cold_load() -> None:
    boot = _boot_tests()
    timings: dict[str, Any] = {"values": {}, "notes": {}}
    ready = "seconds_since_boot=131\nmodels=deepseek-r1:7b\nui_port=3000\n"
    boot.test_user_data_ready(Root(ready), EXPECT, timings)
    assert timings["values"]["cold_load_s"] == 131
    assert "/run/bakery/ready" in timings["notes"]["cold_load_source"]


def test_no_ready_file_fails_and_measures_nothing() -> None:
    boot = _boot_tests()
    timings: dict[str, Any] = {"values": {}, "notes": {}}
    with pytest.raises(AssertionError, match="the user-data did not finish"):
        boot.test_user_data_ready(Root(None), EXPECT, timings)
    assert "cold_load_s" not in timings["values"]
