"""Jinja2: packer/*.j2 -> build/<image>/ (Packer HCL2 files plus <image>.pkrvars.hcl).

Jinja decides structure (which provisioners, which version-specific blocks); values reach
Packer as variables. Same inputs give byte-identical files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from .config import IMAGES_DIR, Download, ImageDef

REPO = Path(__file__).resolve().parents[2]
TEMPLATES = REPO / "packer"
BUILD = REPO / "build"

# Packer 1.7 brought `packer { required_plugins }`; with it the amazon plugin >= 1.3.8 and
# its imds_support, metadata_options and spot_allocation_strategy. Older Packer (1.6.6 is what
# Debian ships) has the amazon builder built in and refuses those options.
MODERN = (1, 7, 0)

TARGETS = ("aws", "emulator", "qemu")
# Where a target's rendered files go, and which source template it renders.
SOURCE_TEMPLATE = {
    "aws": "source.pkr.hcl.j2",
    "emulator": "source.pkr.hcl.j2",
    "qemu": "source-qemu.pkr.hcl.j2",
}
SOURCE_KIND = {"aws": "amazon-ebs", "emulator": "amazon-ebs", "qemu": "qemu"}
# Where the bake uploads the build host's files that a definition names by file:// URL.
STAGING = "/tmp/bakery-files"

# Provisioning steps in order: script, then the environment it receives (and nothing else).
# cloud-init first: Ubuntu cloud images rewrite the apt sources during first boot.
STEPS: list[tuple[str, list[str]]] = [
    ("wait-cloud-init.sh", []),
    (
        "install-nvidia-driver.sh",
        [
            "NVIDIA_DRIVER_INSTALL=${var.nvidia_driver_install}",
            "NVIDIA_DRIVER_BRANCH=${var.nvidia_driver_branch}",
            "NVIDIA_MIN_DRIVER_BRANCH=${var.nvidia_min_driver_branch}",
        ],
    ),
    ("install-docker.sh", []),
    (
        "install-ollama.sh",
        [
            "OLLAMA_VERSION=${var.ollama_version}",
            "OLLAMA_SHA256=${var.ollama_sha256}",
            "OLLAMA_DOWNLOAD_URL=${var.ollama_download_url}",
            "OLLAMA_KEEP_ALIVE=${var.ollama_keep_alive}",
            "OLLAMA_WAIT_FOR_GPU=${var.gpu}",
        ],
    ),
    ("pull-models.sh", ["OLLAMA_PULL=${var.ollama_pull}", "OLLAMA_IMPORT=${var.ollama_import}"]),
    (
        "pull-ui-image.sh",
        [
            "UI_IMAGE=${var.ui_image}",
            "UI_GIT_URL=${var.ui_git_url}",
            "UI_GIT_COMMIT=${var.ui_git_commit}",
            "UI_ARCHIVE_URL=${var.ui_archive_url}",
            "UI_ARCHIVE_SHA256=${var.ui_archive_sha256}",
        ],
    ),
    ("harden-sshd.sh", []),
    ("version-info.sh", ["NVIDIA_DRIVER_EXPECTED=${var.gpu}"]),
    ("cleanup.sh", []),
    ("validate.sh", ["MIN_FREE_DISK_GIB=${var.min_free_disk_gib}"]),
]


@dataclass(frozen=True)
class Rendered:
    directory: Path
    var_file: Path
    files: tuple[Path, ...]


def hcl(value: Any) -> str:
    """A Python value as an HCL2 literal (JSON is HCL, once template sequences are escaped)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value).replace("${", "$${").replace("%{", "%%{")
    if isinstance(value, list | tuple):
        return "[" + ", ".join(hcl(v) for v in value) + "]"
    if isinstance(value, dict):
        if not value:
            return "{}"
        width = max(len(hcl(k)) for k in value)
        body = "".join(f"  {hcl(k):<{width}} = {hcl(v)}\n" for k, v in sorted(value.items()))
        return "{\n" + body + "}"
    raise TypeError(f"no HCL literal for {type(value).__name__}")


def staged(download: Download | None) -> str:
    """The URL a provisioning script fetches: a build host's file:// is uploaded to STAGING."""
    if download is None:
        return ""
    local = download.local_path
    return f"file://{STAGING}/{local.name}" if local else download.url


def uploads(image: ImageDef) -> list[str]:
    """The build host's files the bake uploads to STAGING (the definition's file:// URLs)."""
    downloads = (image.ui.archive, image.ollama.archive, *(m.gguf for m in image.models))
    found = [d.local_path for d in downloads if d and d.local_path]
    return sorted({str(p) for p in found})


def variables(image: ImageDef, target: str) -> dict[str, Any]:
    """The definition's values as Packer variables (build-time values are passed with -var)."""
    values: dict[str, Any] = {"image_name": image.name}
    if target == "qemu":
        assert image.qemu is not None
        values |= {
            "ssh_username": image.qemu.ssh_username,
            "memory_mib": image.qemu.memory_mib,
            "cpus": image.qemu.cpus,
            "disk_gib": image.qemu.disk_gib,
        }
    else:
        values |= {
            "instance_types": list(image.build.instance_types),
            "root_volume_gib": image.build.root_volume_gib,
            "kms_key_id": image.build.kms_key_id or "",
            "ssh_username": image.base.ssh_username,
            "tags": dict(image.tags),
        }
    if target != "emulator":
        values["gpu"] = image.nvidia is not None
        if image.nvidia:
            values |= {
                "nvidia_driver_install": image.nvidia.install,
                "nvidia_driver_branch": image.nvidia.driver_branch or "",
                "nvidia_min_driver_branch": image.nvidia.min_driver_branch or "",
            }
        values |= {
            "ollama_version": image.ollama.version,
            "ollama_sha256": image.ollama.sha256,
            "ollama_download_url": staged(image.ollama.archive),
            "ollama_keep_alive": image.ollama.keep_alive,
            "ollama_pull": " ".join(m.name for m in image.models if not m.gguf_url),
            "ollama_import": " ".join(
                f"{m.name}|{staged(m.gguf)}|{m.gguf.sha256}" for m in image.models if m.gguf
            ),
            "ui_image": image.ui.image or "",
            "ui_git_url": image.ui.git or "",
            "ui_git_commit": image.ui.commit or "",
            "ui_archive_url": staged(image.ui.archive),
            "ui_archive_sha256": image.ui.archive.sha256 if image.ui.archive else "",
            "min_free_disk_gib": image.verify.min_free_disk_gib,
        }
    return values


def render(
    image: ImageDef,
    packer_version: tuple[int, int, int],
    *,
    target: str = "aws",
    local: bool = False,  # the emulator target, as earlier callers name it
    out: Path | None = None,
) -> Rendered:
    target = "emulator" if local else target
    directory = out or (BUILD / image.name / "qemu" if target == "qemu" else BUILD / image.name)
    directory.mkdir(parents=True, exist_ok=True)
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    modern = packer_version >= MODERN
    steps = [
        {"script": s, "env": e}
        for s, e in STEPS
        if image.nvidia or s != "install-nvidia-driver.sh"  # a CPU image has no driver step
    ]
    context = {
        "name": image.name,
        "local": target == "emulator",
        "target": target,
        "source": SOURCE_KIND[target],
        "modern": modern,
        "steps": steps,
        "gpu": image.nvidia is not None,
        "uploads": bool(uploads(image)),
        "direct_kernel": bool(image.qemu and image.qemu.debootstrap),
        "playbooks": [{"path": str(p.path), "name": p.path.stem} for p in image.playbooks],
        "session_manager": image.build.network.session_manager,
    }
    for stale in directory.glob("*.pkr.hcl"):
        stale.unlink()
    files = []
    templates = ["build.pkr.hcl.j2", "variables.pkr.hcl.j2", SOURCE_TEMPLATE[target]]
    if modern:
        templates.append("plugins.pkr.hcl.j2")
    for name in sorted(templates):
        written = directory / (
            "source.pkr.hcl" if name == SOURCE_TEMPLATE[target] else name.removesuffix(".j2")
        )
        written.write_text(env.get_template(name).render(context))
        files.append(written)
    var_file = directory / f"{image.name}.pkrvars.hcl"
    header = f"# Rendered from {_shown(image)}; edit the definition, not this file.\n"
    var_file.write_text(header + assignments(variables(image, target)))
    for stale in directory.glob("*.pkrvars.hcl"):
        if stale != var_file:
            stale.unlink()
    return Rendered(directory, var_file, (*files, var_file))


def _shown(image: ImageDef) -> str:
    """The definition as the header names it: never a machine's own path (it is fingerprinted)."""
    inside = image.path.resolve().parent == IMAGES_DIR
    return f"images/{image.name}.toml" if inside else image.path.name


def assignments(values: dict[str, Any]) -> str:
    """`name = value` lines aligned the way `packer fmt` aligns them (per run of one-liners)."""
    lines = [(k, hcl(v)) for k, v in values.items()]
    out, run = [], []
    for key, literal in [*lines, (None, "")]:
        if key is not None and "\n" not in literal:
            run.append((key, literal))
            continue
        width = max((len(k) for k, _ in run), default=0)
        out += [f"{k:<{width}} = {v}" for k, v in run]
        run = []
        if key is not None:
            out.append(f"{key} = {literal}")
    return "".join(line + "\n" for line in out)
