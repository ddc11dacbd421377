"""What the local VM tests bake in besides the tiny model: a stand-in UI image archive and a
sample team playbook. Importable from any test folder as `vm_support`.

The stand-in is NOT nextjs-ollama-llm-ui: the real UI's build fetches fonts from
fonts.googleapis.com, which these machines cannot reach. It is a static Go server
(tests/vm/standin-ui/main.go) that answers `/` and proxies `/api/tags` and `/api/chat` to
$OLLAMA_URL, as the real UI's server does, packed as a `docker save` archive for the
definition's `ui.archive` (the air-gapped path: `docker load`, no registry).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STANDIN_SRC = REPO / "tests" / "vm" / "standin-ui"
PLAYBOOK = REPO / "tests" / "vm" / "sample-playbook.yml"
# What the sample playbook leaves, checked by the image tests through [[ansible]] check.
PLAYBOOK_CHECK = "grep -qx 'kernel.dmesg_restrict = 1' /etc/sysctl.d/60-team-baseline.conf"
TAG = "bakery/ui-standin:test"


def _tar_bytes(members: list[tuple[str, bytes, int]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data, mode in members:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def standin_ui_archive(directory: Path) -> tuple[Path, str]:
    """Build the stand-in (go build, static) and pack it as a docker-load archive; (path, sha256)."""
    directory.mkdir(parents=True, exist_ok=True)
    binary = directory / "standin-ui"
    subprocess.run(
        ["go", "build", "-trimpath", "-ldflags=-s -w", "-o", str(binary), "."],
        cwd=STANDIN_SRC,
        check=True,
        env={**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=mod"},
        capture_output=True,
    )
    layer = _tar_bytes([("ui", binary.read_bytes(), 0o755)])
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {
                "Entrypoint": ["/ui"],
                "Env": ["PORT=3000"],
                "ExposedPorts": {"3000/tcp": {}},
                "Labels": {"org.opencontainers.image.title": "bakery stand-in UI (tests only)"},
            },
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [{"created_by": "tests/vm_support.py standin_ui_archive"}],
        },
        sort_keys=True,
    ).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps(
        [{"Config": config_name, "RepoTags": [TAG], "Layers": ["layer/layer.tar"]}]
    ).encode()
    archive = directory / "standin-ui.tar"
    archive.write_bytes(
        _tar_bytes(
            [
                ("manifest.json", manifest, 0o644),
                (config_name, config, 0o644),
                ("layer/layer.tar", layer, 0o644),
            ]
        )
    )
    return archive, hashlib.sha256(archive.read_bytes()).hexdigest()


VM_DEFINITION = REPO / "tests" / "images" / "tiny-qwen2-vm.toml"


def vm_definition(
    out_dir: Path, release: object, gguf: Path, gguf_sha256: str, archive: Path, archive_sha256: str
) -> Path:
    """tests/images/tiny-qwen2-vm.toml filled for this machine; load it by path. `release` is
    tooling.OllamaRelease (version, url, sha256)."""
    import string

    text = string.Template(VM_DEFINITION.read_text()).substitute(
        ollama_version=release.version,  # type: ignore[attr-defined]
        ollama_url=release.url,  # type: ignore[attr-defined]
        ollama_sha256=release.sha256,  # type: ignore[attr-defined]
        gguf_url=gguf.resolve().as_uri(),
        gguf_sha256=gguf_sha256,
        ui_archive_url=archive.resolve().as_uri(),
        ui_archive_sha256=archive_sha256,
        playbook=str(PLAYBOOK),
        playbook_check=PLAYBOOK_CHECK.replace("\\", "\\\\").replace('"', '\\"'),
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / VM_DEFINITION.name
    path.write_text(text)
    return path
