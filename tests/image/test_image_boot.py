"""What the fleet's user-data does at first boot, on a host that was booted with it (verify
on AWS and --target qemu pass it; --host says it was not, and these skip): the UI container
runs and answers through Ollama, and the readiness marker names the models it loaded."""

from __future__ import annotations

from typing import Any

import image_probe as probe
import pytest

READY = "/run/bakery/ready"
CONTAINER = "bakery-ui"


@pytest.fixture(autouse=True)
def _booted_with_user_data(expect: dict[str, Any]) -> None:
    if not expect.get("booted_with_user_data"):
        pytest.skip("the host was not booted with the fleet's user-data (verify --host)")


def test_user_data_ready(root: probe.Root, expect: dict[str, Any], timings: dict[str, Any]) -> None:
    """The user-data started the UI and loaded every model, reading the weights from a volume
    fresh from its snapshot: the seconds from boot to then are the cold load (cold_load_s),
    measured apart from generation."""
    r = root.run("cat %s", READY)
    assert r.rc == 0, f"no {READY}: the user-data did not finish (see journalctl -t bakery)"
    fields = dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)
    assert fields.get("models", "").split() == [m["name"] for m in expect["ollama"]["models"]]
    assert fields.get("ui_port") == str(expect["ui"]["port"])
    seconds = fields.get("seconds_since_boot", "")
    assert seconds.isdigit(), f"{READY} has no seconds_since_boot: {fields}"
    timings["values"]["cold_load_s"] = int(seconds)
    timings["notes"]["cold_load_source"] = (
        f"{READY}: seconds from boot until the user-data had every model loaded"
    )


def test_ui_container_running(
    root: probe.Root, docker: probe.Docker, expect: dict[str, Any]
) -> None:
    cli = docker.require()
    r = root.run("%s inspect --format '{{.State.Status}} {{.Config.Image}}' %s", cli, CONTAINER)
    assert r.rc == 0, f"no {CONTAINER} container: {probe.first_line(probe.output(r))}"
    assert r.stdout.split() == ["running", expect["ui"]["image"]]


def test_ui_answers(host: Any, expect: dict[str, Any]) -> None:
    page = probe.curl(host, f"http://127.0.0.1:{expect['ui']['port']}/")
    assert page.ok, f"the UI's / answered {page.describe()}"


def test_ui_lists_models_through_ollama(host: Any, expect: dict[str, Any]) -> None:
    """/api/tags of the UI is Ollama's, fetched by the UI's server from its OLLAMA_URL."""
    tags = probe.curl(host, f"http://127.0.0.1:{expect['ui']['port']}/api/tags")
    assert tags.ok, f"the UI's /api/tags answered {tags.describe()}"
    names = {m.get("name", "").removesuffix(":latest") for m in tags.json().get("models") or []}
    wanted = {m["name"].removesuffix(":latest") for m in expect["ollama"]["models"]}
    assert wanted <= names, f"the UI lists {sorted(names)}, not {sorted(wanted)}"
