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


def test_driver_is_the_one_baked(smi: probe.Smi, expect: dict[str, Any]) -> None:
    """The driver the bake recorded (a base's driver moves with its releases: the DLAMI went
    from 580 to 595), and the definition's branch: pinned (install = true) or a minimum."""
    n = expect["nvidia"]
    recorded, branch, minimum = n["driver_version"], n["driver_branch"], n["min_driver_branch"]
    if recorded is None and branch is None and minimum is None:
        pytest.skip(
            "no driver version recorded on the AMI and no branch in the definition: the driver"
            " version is not checked"
        )
    wrong = []
    for g in smi.require():
        major = g.driver_version.split(".")[0]
        if recorded is not None and g.driver_version != recorded:
            wrong.append(f"GPU {g.index}: {g.driver_version}, the bake recorded {recorded}")
        elif branch is not None and major != branch:
            wrong.append(f"GPU {g.index}: {g.driver_version}, not branch {branch}")
        elif minimum is not None and not (major.isdigit() and int(major) >= int(minimum)):
            wrong.append(f"GPU {g.index}: {g.driver_version}, older than branch {minimum}")
    assert not wrong, f"not the driver the image was baked with: {wrong}"


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
