"""invoke destroy: terraform destroy, then a check by name, ID and tags that nothing of the
fleet is left, then the working folder goes."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import aws
from .. import terraform as tf
from ..config import ImageDef, rel
from ..errors import BakeryError, Interrupted
from . import group as group_
from . import tfroot
from .root import root_for, where

Say = Callable[[str], None]


def destroy(
    image: ImageDef, *, region: str | None = None, use_emulator: bool = False, say: Say = print
) -> dict[str, Any] | None:
    """`invoke destroy`: terraform destroy, then a check that nothing of the fleet is left."""
    binary = tf.binary()
    tf.version(binary)
    with where(use_emulator, say) as endpoint:
        aws.identity(region)
        root = root_for(image, region, endpoint)
        outputs = root.launched(binary, say)
        if outputs is None:
            say(f"destroy: {root.nothing()}")
            return None
        if not (root.work / tfroot.TFVARS).is_file():
            raise BakeryError(
                f"{rel(root.work)} holds a fleet's state but not its {tfroot.TFVARS}: run"
                f" {root.command('launch')} again to rewrite it, then destroy"
            )
        say(f"destroy: {image.name} in {root.region} (state {root.state()})")
        (root.work / tfroot.MAIN).write_text(root.main_tf())  # the emulator may have moved
        runner = tf.Terraform(root.work, binary, say)
        runner.prepare()
        try:
            runner.init()
            runner.destroy()
        except tf.Stopped as e:
            raise Interrupted(
                f"destroy of {image.name} interrupted during {e.program} {e.verb}; run it again to"
                " finish (the state records what is left)"
            ) from None
        left = group_.leftovers(
            aws.client("autoscaling", root.region),
            aws.client("ec2", root.region),
            aws.client("iam", root.region),
            aws.client("elbv2", root.region),
            image=image.name,
            name=outputs.get("autoscaling_group_name") or root.name,
            outputs=outputs,
        )
        if left:
            raise BakeryError(
                f"{runner.name} destroy finished, but these are still there: {'; '.join(left)}"
            )
        _remove(root.work)
        say(
            f"destroy: nothing of {image.name}'s fleet is left in {root.region} (group, launch"
            " template, security groups, instance role and profile, instances, load balancer and"
            f" target group); removed {rel(root.work)}"
        )
        if root.local:
            say("local: the emulator's records were deleted; no instance really ran there")
        return outputs


def _remove(work: Path) -> None:
    """The working folder, and the parents it leaves empty (up to the state directory)."""
    shutil.rmtree(work, ignore_errors=True)
    top = tfroot.state_dir().resolve()
    parent = work.resolve().parent
    while parent != top and top in parent.parents:
        try:
            parent.rmdir()
        except OSError:
            break
        parent = parent.parent
