#!/usr/bin/env bash
# Step 8: removes what belongs to the build instance rather than to the image, so that every
# instance of the AMI starts as a first boot: SSH host keys, authorized_keys, cloud-init state,
# shell histories, the Ollama identity key made by the bake-time server, apt lists, the build's
# /tmp/bakery-* files, and /etc/machine-id (emptied, not removed). Keeps /var/lib/bakery.
# The build's SSH connection stays up; nothing after this step may need a new one.
# Env: none.
set -o errexit -o nounset -o pipefail
shopt -s nullglob

readonly NAME=cleanup
readonly ROOT="${BAKERY_ROOT:-}"
# Also checked by validate.sh.
readonly HISTORIES=(.bash_history .zsh_history .python_history .lesshst .viminfo)

log() { printf '%s: %s\n' "$NAME" "$*"; }

remove() {
  local path
  for path in "$@"; do
    if [[ -e $path || -L $path ]]; then
      rm -rf -- "$path"
      log "removed ${path#"$ROOT"}"
    fi
  done
}

# Regenerated on first boot (cloud-init's ssh module): two instances must not share them.
remove "${ROOT}"/etc/ssh/ssh_host_*
# The build's key pair; cloud-init installs the launch key pair's at first boot.
remove "${ROOT}"/root/.ssh/authorized_keys* "${ROOT}"/home/*/.ssh/authorized_keys*
for home in "${ROOT}/root" "${ROOT}"/home/*; do
  remove "${HISTORIES[@]/#/$home/}"
done
# Made by the bake-time `ollama serve`, and again at first start when missing.
remove "${ROOT}"/usr/share/ollama/.ollama/id_ed25519 "${ROOT}"/usr/share/ollama/.ollama/id_ed25519.pub

if command -v cloud-init >/dev/null 2>&1; then
  cloud-init clean --logs --seed
  log "cloud-init clean --logs --seed"
else
  remove "${ROOT}"/var/lib/cloud/{instance,instances,data,sem,seed} "${ROOT}"/var/log/cloud-init*.log
fi

# Stale in a week; `apt-get update` fetches them again when needed.
remove "${ROOT}"/var/lib/apt/lists/* "${ROOT}"/var/cache/apt/*.bin "${ROOT}"/var/cache/apt/archives/*.deb
# The uploaded rootfs and anything a step left behind.
remove "${ROOT}"/tmp/bakery-*

# Emptied, not removed: at boot systemd fills an empty one with a fresh ID (machine-id(5)), and
# Ubuntu's /var/lib/dbus/machine-id is a link to it.
if [[ -s ${ROOT}/etc/machine-id ]]; then
  : >"${ROOT}/etc/machine-id"
  log "emptied /etc/machine-id"
fi
log "done"
