"""What every task shares: one-line errors, the image argument, the emulator switch."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import botocore.exceptions
from invoke import Exit, task

from .. import aws, config
from ..errors import BakeryError

IMAGE_HELP = "image definition: a name (images/NAME.toml) or a path"
LOCAL_HELP = "short for --target emulator: a local AWS emulator (AWS_ENDPOINT_URL, else one started for the task)"
TARGET_HELP = (
    "where the image is built and verified: aws (default), emulator (the control plane against"
    " a local AWS emulator) or qemu (a local VM from the definition's [qemu] table)"
)


def bakery_task(*args: Any, **kwargs: Any) -> Callable[..., Any]:
    """invoke.task, where a BakeryError (or an AWS error) ends the task with one line, no traceback."""

    def decorate(fn: Callable[..., Any]) -> Any:
        @functools.wraps(fn)
        def wrapper(*a: Any, **kw: Any) -> Any:
            try:
                return fn(*a, **kw)
            except BakeryError as e:
                raise Exit(f"error: {e}", code=e.exit_code) from None
            except KeyboardInterrupt:
                raise Exit("interrupted", code=130) from None
            except botocore.exceptions.NoCredentialsError:
                raise Exit(
                    "error: no AWS credentials found; configure the standard AWS chain, or use --local",
                    code=1,
                ) from None
            except botocore.exceptions.NoRegionError:
                raise Exit(
                    "error: no AWS region configured: set AWS_REGION or a region in your profile",
                    code=1,
                ) from None
            except botocore.exceptions.EndpointConnectionError as e:
                raise Exit(
                    f"error: cannot reach {e.kwargs.get('endpoint_url', 'AWS')}", code=1
                ) from None
            except botocore.exceptions.ClientError as e:
                op = getattr(e, "operation_name", "an AWS call")
                raise Exit(f"error: AWS refused {op}: {aws.describe(e)}", code=1) from None
            except botocore.exceptions.BotoCoreError as e:
                raise Exit(f"error: {aws.describe(e)}", code=1) from None

        # No generated short flags: -h would shadow --help and -i/-a read ambiguously in CI files.
        return task(*args, **{"auto_shortflags": False, **kwargs})(wrapper)

    return decorate


def image_arg(image: str | None) -> config.ImageDef:
    if not image:
        raise BakeryError(f"--image is required (images: {', '.join(config.names())})")
    return config.load(image)
