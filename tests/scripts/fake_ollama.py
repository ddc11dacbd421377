"""A stand-in for the ollama binary, shipped as bin/ollama in a fake release tarball, for what
the real Ollama (.tools/ollama) cannot show here: another version than the one release on this
machine (a version mismatch, an upgrade), and pulls from Ollama's registry, which this machine
cannot reach (including a pull the registry refuses). Everything else runs the real one.

`python fake_ollama.py VERSION LOG ARGS...` (the tarball's bin/ollama is a wrapper that fixes
VERSION and LOG: the bake-time server runs with a cleared environment).
  --version          what ollama prints without a running server
  serve              a small HTTP server on $OLLAMA_HOST with /api/version, /api/tags and
                     /api/pull (a model named missing* is refused); models under
                     $HOME/.ollama/models, as ollama
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

VERSION, LOG = sys.argv[1], sys.argv[2]
ARGS = sys.argv[3:]


def log(argv: list[str]) -> None:
    with open(LOG, "a") as f:
        f.write(json.dumps(argv) + "\n")


def host() -> tuple[str, int]:
    address, _, port = os.environ.get("OLLAMA_HOST", "127.0.0.1:11434").rpartition(":")
    return address, int(port)


def models_dir() -> Path:
    return Path(os.environ.get("OLLAMA_MODELS") or Path(os.environ["HOME"]) / ".ollama" / "models")


def manifest_path(name: str) -> Path:
    model, _, tag = name.rpartition(":")
    parts = model.split("/")
    if len(parts) == 1:
        parts = ["registry.ollama.ai", "library", *parts]
    elif len(parts) == 2:
        parts = ["registry.ollama.ai", *parts]
    return models_dir().joinpath("manifests", *parts, tag or "latest")


def store(name: str, content: bytes) -> None:
    digest = hashlib.sha256(content).hexdigest()
    blob = models_dir() / "blobs" / f"sha256-{digest}"
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(content)
    full = name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"
    manifest = manifest_path(full)
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text(json.dumps({"name": full, "layers": [{"digest": f"sha256:{digest}"}]}))


def tags() -> list[dict[str, object]]:
    root = models_dir() / "manifests"
    out = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []:
        data = path.read_bytes()
        name = json.loads(data)["name"]
        digest = hashlib.sha256(data).hexdigest()
        out.append({"name": name, "model": name, "digest": digest, "size": len(data)})
    return out


class Handler(BaseHTTPRequestHandler):
    def reply(self, code: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        log(["ollama-server", "GET", self.path])
        if self.path == "/api/version":
            self.reply(200, {"version": VERSION})
        elif self.path == "/api/tags":
            self.reply(200, {"models": tags()})
        else:
            self.reply(404, {"error": "not found"})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        log(["ollama-server", "POST", self.path, body.get("model", "")])
        if self.path == "/api/pull":
            if body["model"].startswith("missing"):
                self.reply(500, {"error": "pull model manifest: file does not exist"})
                return
            store(body["model"], f"weights of {body['model']}".encode())
            self.reply(200, {"status": "success"})
        else:
            self.reply(404, {"error": "not found"})

    def log_message(self, format: str, *args: object) -> None:
        pass


def serve() -> int:
    # As ollama: an identity key pair in ~/.ollama, made at the first start.
    key = Path(os.environ["HOME"]) / ".ollama" / "id_ed25519"
    if not key.exists():
        key.parent.mkdir(parents=True, exist_ok=True)
        key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nfake\n")
        key.chmod(0o600)
        key.with_suffix(".pub").write_text("ssh-ed25519 AAAAfake\n")
    models_dir().mkdir(parents=True, exist_ok=True)
    # For the test's teardown, should the script under test fail to stop the server.
    Path(LOG).with_name("ollama-serve.pid").write_text(str(os.getpid()))
    ThreadingHTTPServer(host(), Handler).serve_forever()
    return 0


def main() -> int:
    log(["ollama", *ARGS])
    if ARGS in (["--version"], ["-v"]):
        print("Warning: could not connect to a running Ollama instance", file=sys.stderr)
        print(f"Warning: client version is {VERSION}", file=sys.stderr)
        return 0
    if ARGS[:1] == ["serve"]:
        return serve()
    print(f"fake ollama: unsupported {ARGS}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
