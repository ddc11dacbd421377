"""The local AWS emulator behind --local: the real control plane, no machines behind it.

Uses the emulator that AWS_ENDPOINT_URL points at when set; otherwise starts one (moto) for
the duration of the task and stops it after, so nothing it held survives.
"""

from __future__ import annotations

import contextlib
import os
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator

from . import aws
from .errors import BakeryError

# The emulator answers for this account; real credentials must never reach it.
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
DEFAULT_REGION = "us-east-1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _reachable(url: str) -> bool:
    try:
        urllib.request.urlopen(f"{url.rstrip('/')}/moto-api/data.json", timeout=3).close()
    except urllib.error.HTTPError:
        return True  # something answers HTTP there; the API calls will tell what it is
    except (urllib.error.URLError, OSError):
        return False
    return True


@contextlib.contextmanager
def emulator(say=print) -> Iterator[str]:
    """Point boto3 (and the packer/terraform we start) at an emulator; yield its URL."""
    saved = {
        k: os.environ.get(k)
        for k in [
            *FAKE_CREDENTIALS,
            "AWS_ENDPOINT_URL",
            "AWS_REGION",
            "AWS_DEFAULT_REGION",
            "AWS_PROFILE",
            "AWS_SESSION_TOKEN",
        ]
    }
    server = None
    url = os.environ.get("AWS_ENDPOINT_URL")
    try:
        if url:
            if not _reachable(url):
                raise BakeryError(
                    f"AWS_ENDPOINT_URL={url} does not answer: start the emulator or unset it"
                )
            say(f"local: using the emulator at {url} (AWS_ENDPOINT_URL)")
        else:
            try:
                from moto.server import ThreadedMotoServer
            except ImportError:
                raise BakeryError(
                    "--local needs the emulator: pip install 'gpu-ami-bakery[local]' (moto[server])"
                ) from None
            port = _free_port()
            server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
            server.start()
            url = f"http://127.0.0.1:{port}"
            say(f"local: started an emulator at {url}; it stops when this task ends")
        os.environ.update(FAKE_CREDENTIALS)
        os.environ.pop("AWS_PROFILE", None)
        os.environ.pop("AWS_SESSION_TOKEN", None)
        os.environ["AWS_ENDPOINT_URL"] = url
        if not (os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")):
            os.environ["AWS_DEFAULT_REGION"] = DEFAULT_REGION
        aws.reset()
        yield url
    finally:
        if server is not None:
            server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        aws.reset()
