"""The NVIDIA driver and GPU, as the image should find them on a GPU instance.

Every test here is marked `gpu`: on a host with no NVIDIA GPU at all (no /dev/nvidia0 and no
nvidia module) they skip with "no NVIDIA GPU on this host"; they never pass there.
"""

from __future__ import annotations

from typing import Any

import image_probe as probe
import pytest

pytestmark = pytest.mark.gpu


def test_nvidia_kernel_module_loaded(gpu: probe.GpuPresence) -> None:
    if gpu.modules is None:
        assert gpu.sys_module, "no /proc/modules and no /sys/module/nvidia: module not loaded"
    else:
        assert "nvidia" in gpu.modules, (
            "/dev/nvidia0 exists but no nvidia module is listed in /proc/modules"
        )


def test_nvidia_smi_answers(smi: probe.Smi) -> None:
    gpus = smi.require()
    assert gpus, "nvidia-smi lists no GPU"


def test_gpu_name(smi: probe.Smi, expect: dict[str, Any]) -> None:
    gpus = smi.require()
    wanted = expect["nvidia"]["gpu_name"]
    if wanted is None:
        seen = ", ".join(g.name for g in gpus)
        pytest.skip(
            f"nvidia.gpu_name is null in the expectations: GPU model not checked (seen: {seen})"
        )
    wrong = [f"GPU {g.index}: {g.name}" for g in gpus if wanted.lower() not in g.name.lower()]
    assert not wrong, f"expected a GPU whose name contains {wanted!r}; got {wrong}"


def test_driver_branch(smi: probe.Smi, expect: dict[str, Any]) -> None:
    branch = expect["nvidia"]["driver_branch"]
    wrong = [
        f"GPU {g.index}: {g.driver_version}"
        for g in smi.require()
        if g.driver_version.split(".")[0] != branch
    ]
    assert not wrong, f"expected driver branch {branch}; got {wrong}"


def test_gpu_memory(smi: probe.Smi, expect: dict[str, Any]) -> None:
    minimum = expect["nvidia"]["min_gpu_memory_gib"]
    small = [
        f"GPU {g.index}: {g.memory_total_mib / 1024:.1f} GiB"
        for g in smi.require()
        if g.memory_total_mib / 1024 < minimum
    ]
    assert not small, f"expected at least {minimum} GiB of GPU memory; got {small}"


def test_persistence_mode_enabled(smi: probe.Smi) -> None:
    off = [
        f"GPU {g.index}: {g.persistence_mode}"
        for g in smi.require()
        if g.persistence_mode != "Enabled"
    ]
    assert not off, f"persistence mode is not Enabled: {off}"
