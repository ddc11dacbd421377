"""The fleet's user-data, rendered by Terraform's own templatefile() with the inputs the module
gives it, so that whatever boots an image for its tests (a verify instance, a local VM) runs
exactly what a fleet instance runs at first boot."""

from __future__ import annotations

import base64
import binascii
import json
import subprocess
import tempfile
from pathlib import Path

from . import terraform
from .config import ImageDef
from .errors import BakeryError

TEMPLATE = Path(__file__).resolve().parents[2] / "terraform" / "user-data.sh.tftpl"
UI_IMAGE = "bakery/ui:baked"  # the tag pull-ui-image.sh gives the baked UI image


def inputs(image: ImageDef) -> dict[str, object]:
    """What terraform/main.tf passes to templatefile() for a fleet of this image without a load
    balancer: no lifecycle hook to complete and no target group to leave, as a verify instance
    or a local VM has none (they boot outside any Auto Scaling group)."""
    return {
        "ui_image": UI_IMAGE,
        "ui_port": image.ui.port,
        "ui_ollama_url_env": image.ui.ollama_url_env,
        "models": image.model_names,
        "lifecycle_hook_name": "",
        "autoscaling_group_name": "",
        "target_group_arn": "",
    }


def render(image: ImageDef, template: Path = TEMPLATE) -> str:
    # base64: the console prints strings in HCL syntax, which escapes ${ and %{.
    expression = (
        f"base64encode(templatefile({json.dumps(str(template))}, {json.dumps(inputs(image))}))"
    )
    binary = terraform.binary()
    # console needs a working folder: an empty one, so no configuration of the caller's is read.
    with tempfile.TemporaryDirectory(prefix="bakery-userdata-") as work:
        try:
            out = subprocess.run(
                [binary, "console"],
                input=expression,
                capture_output=True,
                text=True,
                cwd=work,
                env=terraform.base_env(),
                timeout=120,
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            raise BakeryError(f"cannot run {binary} console: {e}") from None
    if out.returncode != 0:
        detail = " ".join(out.stderr.split())[:300]
        raise BakeryError(f"{terraform.name(binary)} could not render {template.name}: {detail}")
    try:
        return base64.b64decode(json.loads(out.stdout), validate=True).decode()
    except (ValueError, TypeError, binascii.Error):
        raise BakeryError(
            f"{terraform.name(binary)} console printed something other than the rendered {template.name}"
        ) from None
