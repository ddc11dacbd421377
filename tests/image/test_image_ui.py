"""The UI container image (nextjs-ollama-llm-ui) baked into the image, and what listens.

No docker CLI on the host: the image cannot be there, the tests fail. A docker CLI with no
reachable daemon: the image cannot be inspected, the tests skip saying so. The listening
socket check needs neither.
"""

from __future__ import annotations

from typing import Any

import image_probe as probe
import pytest

OLD_ENV = "NEXT_PUBLIC_OLLAMA_URL"  # what releases up to v1.2.0 read
SERVER_CODE = "/app/.next/server"
SSH_PORT = 22


def _image_id(root: probe.Root, docker: str, image: str) -> str:
    r = root.run("%s image inspect --format '{{.Id}}' %s", docker, image)
    if r.rc != 0:
        pytest.fail(
            f"UI image {image} is not present: {probe.first_line(probe.output(r))}",
            pytrace=False,
        )
    return r.stdout.strip()


def test_ui_image_present(root: probe.Root, docker: probe.Docker, expect: dict[str, Any]) -> None:
    cli = docker.require()
    assert _image_id(root, cli, expect["ui"]["image"]).startswith("sha256:")


def test_ui_image_id(root: probe.Root, docker: probe.Docker, expect: dict[str, Any]) -> None:
    cli = docker.require()
    ui = expect["ui"]
    have = _image_id(root, cli, ui["image"])
    if ui["id"] is None:
        pytest.skip(
            f"ui.id is null in the expectations: {ui['image']} is present as {have}, its id "
            "is not checked"
        )
    assert probe.bare_digest(have) == probe.bare_digest(ui["id"]), (
        f"{ui['image']} is {have}, recorded {ui['id']}"
    )


@pytest.mark.real_ui
def test_ui_reads_configured_ollama_url_env(
    root: probe.Root, docker: probe.Docker, expect: dict[str, Any]
) -> None:
    """Greps the built server code inside the image for the variable it really reads."""
    cli = docker.require()
    ui = expect["ui"]
    var = ui["ollama_url_env"]
    _image_id(root, cli, ui["image"])
    title = root.run(
        "%s image inspect --format %s %s",
        cli,
        '{{index .Config.Labels "org.opencontainers.image.title"}}',
        ui["image"],
    ).stdout.strip()
    if "stand-in" in title:
        pytest.skip(
            f"{ui['image']} is a stand-in ({title}), not nextjs-ollama-llm-ui's server code"
        )
    r = root.run(
        "timeout 300 %s run --rm --pull never --network none --entrypoint grep %s -rhoE %s %s",
        cli,
        ui["image"],
        probe.env_read_pattern(var),
        SERVER_CODE,
    )
    if r.rc not in (0, 1):
        pytest.fail(
            f"could not grep {SERVER_CODE} in {ui['image']} (exit {r.rc}): {probe.output(r)[:500]}",
            pytrace=False,
        )
    reads = probe.parse_env_reads(r.stdout)
    if var in reads:
        return
    if OLD_ENV in reads:
        pytest.fail(
            f"{ui['image']} reads {OLD_ENV}, not {var}: it was built from a release up to "
            "v1.2.0; rebuild it from a pinned commit after the rename",
            pytrace=False,
        )
    pytest.fail(
        f"{ui['image']}'s server code ({SERVER_CODE}) does not read process.env.{var}; "
        f"Ollama-related variables it reads: {sorted(reads) or 'none'} "
        "(NEXT_PUBLIC_* variables are inlined at build time)",
        pytrace=False,
    )


def test_ui_not_published_beyond_loopback(root: probe.Root, docker: probe.Docker) -> None:
    """No running container publishes a port on a non-loopback host address (this also
    covers a Docker daemon without userland proxy, where no listening socket shows up)."""
    cli = docker.require()
    r = root.run("%s ps --format %s", cli, "{{.Names}}\t{{.Ports}}")
    assert r.rc == 0, f"docker ps failed: {probe.output(r)}"
    public = [
        f"{name}: {mapping}"
        for name, mapping in probe.parse_published_ports(r.stdout)
        if not probe.is_loopback(probe.published_ip(mapping))
    ]
    assert not public, f"containers publish ports beyond loopback: {public}"


def test_nothing_listens_publicly_but_sshd(
    root: probe.Root, listeners: list[probe.Listener], comms: dict[int, str], expect: dict[str, Any]
) -> None:
    """No TCP socket listens on a non-loopback address, except sshd's port 22 and, once the
    user-data has started it, the UI's port (the security group decides who reaches it).
    (TCP only: DHCP clients hold UDP sockets on the interface address by design.)"""
    allowed = {SSH_PORT} | (
        {expect["ui"]["port"]} if expect.get("booted_with_user_data") else set()
    )
    exposed = [lst for lst in listeners if not lst.loopback and lst.port not in allowed]
    owners = probe.socket_owners(root) if exposed and root.available else {}
    assert not exposed, "listening beyond loopback: " + ", ".join(
        sorted({probe.describe(lst, owners, comms) for lst in exposed})
    )
