"""version-info.sh: what the image carries, as deterministic JSON, with a copy for Packer."""

from __future__ import annotations

import json
import platform

SCRIPT = "version-info.sh"
MODELS = [{"digest": "c" * 64, "name": "deepseek-r1:7b"}]
UI = {
    "id": "sha256:" + "d" * 64,
    "ref": "bakery/ui:baked",
    "source": "git+https://x/ui.git@" + "e" * 40,
}


def baked(sandbox) -> None:
    """A tree as the earlier steps leave it (ollama from the installed_ollama fixture)."""
    sandbox.write(
        "/etc/os-release",
        'PRETTY_NAME="Ubuntu 24.04.3 LTS"\nNAME="Ubuntu"\nVERSION_ID="24.04"\nID=ubuntu\n',
    )
    sandbox.write("/var/lib/bakery/models.json", json.dumps(MODELS))
    sandbox.write("/var/lib/bakery/ui-image.json", json.dumps(UI))
    sandbox.set_state("modinfo-version", "580.95.05\n")
    sandbox.add_docker()


def test_writes_sorted_json_and_a_copy(sandbox, installed_ollama) -> None:
    baked(sandbox)
    sandbox.write("/usr/local/cuda/version.json", json.dumps({"cuda": {"version": "12.8.1"}}))
    result = sandbox.run_ok(SCRIPT)

    text = sandbox.read("/var/lib/bakery/version-info.json")
    info = json.loads(text)
    assert info == {
        "cuda": "12.8.1",
        "docker": "27.5.1",
        "kernel": platform.release(),
        "models": MODELS,
        "nvidia_driver": "580.95.05",
        "ollama": "0.13.1",
        "os": {"id": "ubuntu", "pretty_name": "Ubuntu 24.04.3 LTS", "version_id": "24.04"},
        "ui": UI,
    }
    assert text == json.dumps(info, indent=2, sort_keys=True) + "\n"
    assert sandbox.read("/tmp/version-info.json") == text
    assert sandbox.mode("/tmp/version-info.json") == 0o644
    assert text in result.stdout


def test_second_run_changes_nothing(sandbox, installed_ollama) -> None:
    baked(sandbox)
    sandbox.run_ok(SCRIPT)
    sandbox.assert_idempotent(SCRIPT)


def test_no_cuda_toolkit_is_null(sandbox, installed_ollama) -> None:
    baked(sandbox)
    sandbox.run_ok(SCRIPT)
    assert json.loads(sandbox.read("/var/lib/bakery/version-info.json"))["cuda"] is None


def test_missing_pieces_fail_listed(sandbox, installed_ollama) -> None:
    baked(sandbox)
    sandbox.path("/var/lib/bakery/models.json").unlink()
    (sandbox.state / "modinfo-version").unlink()
    result = sandbox.run(SCRIPT)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert errors == [
        "version-info: error: /var/lib/bakery/models.json is missing (written by pull-models.sh)",
        "version-info: error: no nvidia_driver version found",
    ]
    assert not sandbox.path("/tmp/version-info.json").exists()
