#!/usr/bin/env bash
# Step 7: what the image carries, as JSON: /var/lib/bakery/version-info.json, and a copy in
# /tmp/version-info.json for Packer to download as a build artifact. Deterministic (sorted keys,
# no timestamps): the same image gives the same file.
# Keys: os, kernel, nvidia_driver (modinfo: the build host has no GPU), cuda (the toolkit under
# /usr/local/cuda, null without one), ollama, docker, models (models.json), ui (ui-image.json).
# Env: NVIDIA_DRIVER_EXPECTED (true, the default; false for a CPU image, where no driver is fine).
set -o errexit -o nounset -o pipefail

readonly NAME=version-info
readonly NVIDIA_DRIVER_EXPECTED="${NVIDIA_DRIVER_EXPECTED:-true}"
readonly ROOT="${BAKERY_ROOT:-}"
readonly OUT="${ROOT}/var/lib/bakery/version-info.json"
readonly COPY="${ROOT}/tmp/version-info.json"

log() { printf '%s: %s\n' "$NAME" "$*"; }

# Without a running server ollama says "Warning: client version is X", with one "ollama version is X".
ollama_version() {
  local bin="${ROOT}/usr/bin/ollama" out
  [[ -x $bin ]] || return 0
  out=$("$bin" --version 2>&1) || true
  if [[ $out =~ client\ version\ is\ ([^[:space:]]+) || $out =~ ollama\ version\ is\ ([^[:space:]]+) ]]; then
    printf '%s\n' "${BASH_REMATCH[1]}"
  fi
}

kernel=$(uname -r)
driver=$(modinfo -k "$kernel" -F version nvidia 2>/dev/null || true)
ollama=$(ollama_version)
docker=$(docker version --format '{{.Server.Version}}' 2>/dev/null || true)

workdir=$(mktemp -d -t bakery-version-info.XXXXXX)
trap 'rm -rf "$workdir"' EXIT

python3 - "$ROOT" "$workdir/version-info.json" "$kernel" "$driver" "$ollama" "$docker" "$NVIDIA_DRIVER_EXPECTED" <<'PY'
import json
import os
import shlex
import sys

root, out, kernel, driver, ollama, docker, driver_expected = sys.argv[1:]
problems = []


def load(path, what):
    try:
        with open(root + path) as f:
            return json.load(f)
    except FileNotFoundError:
        problems.append(f"{path} is missing ({what})")
    except ValueError as e:
        problems.append(f"{path} is not JSON: {e}")
    return None


os_release = {}
try:
    with open(root + "/etc/os-release") as f:
        for line in f:
            key, sep, value = line.strip().partition("=")
            if sep and not key.startswith("#"):
                os_release[key] = " ".join(shlex.split(value))
except FileNotFoundError:
    problems.append("/etc/os-release is missing")

cuda = None
if os.path.exists(root + "/usr/local/cuda/version.json"):
    cuda = (load("/usr/local/cuda/version.json", "CUDA toolkit") or {}).get("cuda", {}).get("version")

info = {
    "cuda": cuda,
    "docker": docker or None,
    "kernel": kernel,
    "models": load("/var/lib/bakery/models.json", "written by pull-models.sh"),
    "nvidia_driver": driver or None,
    "ollama": ollama or None,
    "os": {k.lower(): os_release.get(k) for k in ("ID", "VERSION_ID", "PRETTY_NAME")},
    "ui": load("/var/lib/bakery/ui-image.json", "written by pull-ui-image.sh"),
}
for key in ("docker", "ollama") + (("nvidia_driver",) if driver_expected == "true" else ()):
    if info[key] is None:
        problems.append(f"no {key} version found")
if problems:
    sys.exit("".join(f"version-info: error: {p}\n" for p in problems).rstrip("\n"))
with open(out, "w") as f:
    json.dump(info, f, indent=2, sort_keys=True)
    f.write("\n")
PY

mkdir -p "${OUT%/*}" "${COPY%/*}"
for target in "$OUT" "$COPY"; do
  if ! cmp -s "$workdir/version-info.json" "$target"; then
    install -m 0644 "$workdir/version-info.json" "$target"
    log "wrote ${target#"$ROOT"}"
  fi
done
cat "$OUT"
