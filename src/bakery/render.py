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

from .config import ImageDef

REPO = Path(__file__).resolve().parents[2]
TEMPLATES = REPO / "packer"
BUILD = REPO / "build"

# Packer 1.7 brought `packer { required_plugins }`; with it the amazon plugin >= 1.3.8 and
# its imds_support, metadata_options and spot_allocation_strategy. Older Packer (1.6.6 is what
# Debian ships) has the amazon builder built in and refuses those options.
MODERN = (1, 7, 0)

# Provisioning steps in order: script, then the environment it receives (and nothing else).
STEPS: list[tuple[str, list[str]]] = [
    (
        "install-nvidia-driver.sh",
        [
            "NVIDIA_DRIVER_BRANCH=${var.nvidia_driver_branch}",
            "NVIDIA_DRIVER_INSTALL=${var.nvidia_driver_install}",
        ],
    ),
    ("install-docker.sh", []),
    (
        "install-ollama.sh",
        [
            "OLLAMA_VERSION=${var.ollama_version}",
            "OLLAMA_SHA256=${var.ollama_sha256}",
            "OLLAMA_KEEP_ALIVE=${var.ollama_keep_alive}",
        ],
    ),
    ("pull-models.sh", ["OLLAMA_PULL=${var.ollama_pull}", "OLLAMA_IMPORT=${var.ollama_import}"]),
    (
        "pull-ui-image.sh",
        [
            "UI_IMAGE=${var.ui_image}",
            "UI_GIT_URL=${var.ui_git_url}",
            "UI_GIT_COMMIT=${var.ui_git_commit}",
        ],
    ),
    ("harden-sshd.sh", []),
    ("version-info.sh", []),
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


def variables(image: ImageDef, local: bool) -> dict[str, Any]:
    """The definition's values as Packer variables (build-time values are passed with -var)."""
    values: dict[str, Any] = {
        "image_name": image.name,
        "instance_types": list(image.build.instance_types),
        "root_volume_gib": image.build.root_volume_gib,
        "kms_key_id": image.build.kms_key_id or "",
        "ssh_username": image.base.ssh_username,
        "tags": dict(image.tags),
    }
    if not local:
        values |= {
            "nvidia_driver_branch": image.nvidia.driver_branch,
            "nvidia_driver_install": image.nvidia.install,
            "ollama_version": image.ollama.version,
            "ollama_sha256": image.ollama.sha256,
            "ollama_keep_alive": image.ollama.keep_alive,
            "ollama_pull": " ".join(m.name for m in image.models if not m.gguf_url),
            "ollama_import": " ".join(
                f"{m.name}|{m.gguf_url}|{m.gguf_sha256}" for m in image.models if m.gguf_url
            ),
            "ui_image": image.ui.image or "",
            "ui_git_url": image.ui.git or "",
            "ui_git_commit": image.ui.commit or "",
            "min_free_disk_gib": image.verify.min_free_disk_gib,
        }
    return values


def render(
    image: ImageDef,
    packer_version: tuple[int, int, int],
    *,
    local: bool = False,
    out: Path | None = None,
) -> Rendered:
    directory = out or BUILD / image.name
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
    context = {
        "name": image.name,
        "local": local,
        "modern": modern,
        "steps": [{"script": s, "env": e} for s, e in STEPS],
    }
    for stale in directory.glob("*.pkr.hcl"):
        stale.unlink()
    files = []
    for template in sorted(TEMPLATES.glob("*.pkr.hcl.j2")):
        if template.name.startswith("plugins.") and not modern:
            continue
        target = directory / template.name.removesuffix(".j2")
        target.write_text(env.get_template(template.name).render(context))
        files.append(target)
    var_file = directory / f"{image.name}.pkrvars.hcl"
    header = f"# Rendered from images/{image.name}.toml; edit the definition, not this file.\n"
    var_file.write_text(header + assignments(variables(image, local)))
    for stale in directory.glob("*.pkrvars.hcl"):
        if stale != var_file:
            stale.unlink()
    return Rendered(directory, var_file, (*files, var_file))


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
