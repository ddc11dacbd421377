#!/usr/bin/env bash
# Step 3: Ollama from its release archive, checked against a pinned sha256 before anything is
# extracted, with the `ollama` system user and a systemd unit that waits for the GPU.
# The archive is a .tgz or (Ollama >= 0.14 also ships it) a .tar.zst, told apart by the URL's
# suffix; the sha256 is of the file as downloaded. A .tar.zst needs zstd on the build host.
# The download is skipped when the installed ollama already reports OLLAMA_VERSION.
# Env: OLLAMA_VERSION (e.g. 0.13.1), OLLAMA_SHA256 (of the archive at OLLAMA_DOWNLOAD_URL),
#      OLLAMA_KEEP_ALIVE (e.g. -1, 5m), BAKERY_ROOTFS,
#      OLLAMA_DOWNLOAD_URL (optional; https://, or file:// of a file on this host; default:
#      the GitHub release's ollama-linux-amd64.tgz of OLLAMA_VERSION),
#      OLLAMA_WAIT_FOR_GPU (true, the default: the unit waits for the NVIDIA device; false).
set -o errexit -o nounset -o pipefail

: "${OLLAMA_VERSION:?is required, e.g. 0.13.1}"
: "${OLLAMA_SHA256:?is required: the sha256 of the archive (listed in sha256sum.txt of the release)}"
: "${OLLAMA_KEEP_ALIVE:?is required, e.g. -1 (keep models loaded) or 5m}"
: "${BAKERY_ROOTFS:?is required: the directory Packer uploaded scripts/rootfs to}"

readonly NAME=install-ollama
# false for a CPU image (no [nvidia] in the definition): Ollama then does not wait for a GPU.
readonly OLLAMA_WAIT_FOR_GPU="${OLLAMA_WAIT_FOR_GPU:-true}"
readonly ROOT="${BAKERY_ROOT:-}"
readonly URL="${OLLAMA_DOWNLOAD_URL:-https://github.com/ollama/ollama/releases/download/v${OLLAMA_VERSION}/ollama-linux-amd64.tgz}"
readonly EXPECTED_SHA256="${OLLAMA_SHA256,,}"
readonly UNIT_DIR="${ROOT}/etc/systemd/system"

log() { printf '%s: %s\n' "$NAME" "$*"; }
die() {
  printf '%s: error: %s\n' "$NAME" "$*" >&2
  exit 1
}

changed=0
# install_file SRC DST MODE: copies SRC over DST unless DST already has that content and mode.
install_file() {
  local src=$1 dst=$2 mode=$3
  if [[ -f $dst && ! -L $dst ]] && cmp -s "$src" "$dst" &&
    [[ $(stat -c '%a' "$dst") == "${mode#0}" ]]; then
    return 0
  fi
  install -D -m "$mode" "$src" "$dst"
  changed=1
  log "installed ${dst#"$ROOT"}"
}

# The version the installed binary reports; empty when there is none. Without a running server
# ollama says "Warning: client version is X", with one "ollama version is X".
installed_version() {
  local bin="${ROOT}/usr/bin/ollama" out
  [[ -x $bin ]] || return 0
  out=$("$bin" --version 2>&1) || true
  if [[ $out =~ client\ version\ is\ ([^[:space:]]+) || $out =~ ollama\ version\ is\ ([^[:space:]]+) ]]; then
    printf '%s\n' "${BASH_REMATCH[1]}"
  fi
}

[[ $OLLAMA_VERSION =~ ^[0-9]+\.[0-9]+\.[0-9]+(-rc[0-9]+)?$ ]] ||
  die "OLLAMA_VERSION must look like 0.13.1, got '$OLLAMA_VERSION'"
[[ $EXPECTED_SHA256 =~ ^[0-9a-f]{64}$ ]] ||
  die "OLLAMA_SHA256 must be 64 hex digits, got '$OLLAMA_SHA256'"
# A number of seconds or a Go duration; the value lands in a unit file, so nothing else.
[[ $OLLAMA_KEEP_ALIVE =~ ^-?([0-9]+|([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+)$ ]] ||
  die "OLLAMA_KEEP_ALIVE must be seconds or a duration such as -1, 300, 5m or 1h30m, got '$OLLAMA_KEEP_ALIVE'"
[[ $OLLAMA_WAIT_FOR_GPU == true || $OLLAMA_WAIT_FOR_GPU == false ]] ||
  die "OLLAMA_WAIT_FOR_GPU must be true or false, got '$OLLAMA_WAIT_FOR_GPU'"
[[ -d $BAKERY_ROOTFS ]] || die "BAKERY_ROOTFS=$BAKERY_ROOTFS is not a directory"
case $URL in
  *.tgz) compression=--gzip archive=ollama.tgz ;;
  *.tar.zst) compression=--zstd archive=ollama.tar.zst ;;
  *) die "OLLAMA_DOWNLOAD_URL must name a .tgz or .tar.zst archive, got '$URL'" ;;
esac

workdir=$(mktemp -d -t bakery-ollama.XXXXXX)
trap 'rm -rf "$workdir"' EXIT

current=$(installed_version)
if [[ $current == "$OLLAMA_VERSION" ]]; then
  log "ollama $OLLAMA_VERSION is already installed"
else
  if [[ $compression == --zstd ]] && ! command -v zstd >/dev/null; then
    die "$URL is a .tar.zst, which needs zstd on the build host (apt-get install zstd)," \
      "or take the release's .tgz"
  fi
  log "downloading ollama $OLLAMA_VERSION from $URL${current:+ (replacing $current)}"
  curl --fail --silent --show-error --location --retry 5 --retry-delay 5 \
    --output "$workdir/$archive" "$URL"
  actual=$(sha256sum "$workdir/$archive" | cut -d ' ' -f 1)
  [[ $actual == "$EXPECTED_SHA256" ]] ||
    die "sha256 mismatch for $URL: expected $EXPECTED_SHA256, got $actual; nothing was installed"
  # Runners of an older release must not be mixed with the new ones.
  rm -rf "${ROOT}/usr/lib/ollama"
  mkdir -p "${ROOT}/usr"
  # Owned by root whoever built the archive; /usr/bin and /usr/lib keep their own owner and mode.
  tar --extract "$compression" --file "$workdir/$archive" --directory "${ROOT}/usr" \
    --no-same-owner --no-overwrite-dir
  current=$(installed_version)
  [[ $current == "$OLLAMA_VERSION" ]] ||
    die "the installed ollama reports version '${current:-none}', not $OLLAMA_VERSION:" \
      "does OLLAMA_DOWNLOAD_URL match OLLAMA_VERSION?"
  log "installed ollama $OLLAMA_VERSION (sha256 $actual)"
fi

# The user and groups of the official installer: render and video for GPU device nodes.
for group in render video; do
  if ! getent group "$group" >/dev/null; then
    groupadd --system "$group"
    log "created group $group"
  fi
done
if ! getent passwd ollama >/dev/null; then
  useradd --system --user-group --no-create-home --home-dir /usr/share/ollama \
    --shell /bin/false --groups render,video ollama
  log "created user ollama"
fi
for group in render video; do
  members=$(getent group "$group" | cut -d : -f 4)
  if [[ ",$members," != *",ollama,"* ]]; then
    usermod --append --groups "$group" ollama
    log "added ollama to group $group"
  fi
done
# Made here rather than by useradd --create-home so that the path honours BAKERY_ROOT.
# Models live below it (.ollama/models): every directory on the way must stay traversable.
home="${ROOT}/usr/share/ollama"
if [[ ! -d $home ]]; then
  mkdir -p "$home"
  chmod 0755 "$home"
  chown ollama:ollama "$home"
  log "created /usr/share/ollama"
fi

install_file "$BAKERY_ROOTFS/etc/systemd/system/ollama.service" "$UNIT_DIR/ollama.service" 0644
install_file "$BAKERY_ROOTFS/etc/systemd/system/ollama.service.d/10-bakery.conf" \
  "$UNIT_DIR/ollama.service.d/10-bakery.conf" 0644
if [[ $OLLAMA_WAIT_FOR_GPU == true ]]; then
  install_file "$BAKERY_ROOTFS/etc/systemd/system/ollama.service.d/15-wait-for-nvidia.conf" \
    "$UNIT_DIR/ollama.service.d/15-wait-for-nvidia.conf" 0644
  install_file "$BAKERY_ROOTFS/usr/local/libexec/bakery/wait-for-nvidia" \
    "${ROOT}/usr/local/libexec/bakery/wait-for-nvidia" 0755
elif [[ -e $UNIT_DIR/ollama.service.d/15-wait-for-nvidia.conf ]]; then
  # A CPU image: Ollama must not wait for a GPU that will never come.
  rm -f "$UNIT_DIR/ollama.service.d/15-wait-for-nvidia.conf"
  changed=1
  log "removed /etc/systemd/system/ollama.service.d/15-wait-for-nvidia.conf (a CPU image)"
fi
printf '%s\n' \
  "# Written by install-ollama.sh from the image definition ([ollama] keep_alive)." \
  "[Service]" \
  "Environment=OLLAMA_KEEP_ALIVE=$OLLAMA_KEEP_ALIVE" >"$workdir/20-keep-alive.conf"
install_file "$workdir/20-keep-alive.conf" "$UNIT_DIR/ollama.service.d/20-keep-alive.conf" 0644

if ((changed)); then
  systemctl daemon-reload
fi
# Enabled, not started: the build host has no GPU and the unit waits for one (in a GPU image).
if ! systemctl is-enabled --quiet ollama.service; then
  systemctl enable ollama.service
fi
log "done: ollama $OLLAMA_VERSION, ollama.service enabled (keep-alive $OLLAMA_KEEP_ALIVE)"
