#!/usr/bin/env bash
# Step 2: Docker, for the UI container. The distribution's docker.io (Ubuntu's or Debian's),
# installed only when the base has no docker at all (the DLAMI brings its own), with AppArmor's
# parser where the kernel enforces AppArmor without it (Debian); the service is enabled and left
# running for the UI image step.
# Env: none.
set -o errexit -o nounset -o pipefail

readonly NAME=install-docker
# cloud-init and unattended-upgrades may hold the dpkg lock during an instance's first minutes.
readonly APT_OPTS=(-o DPkg::Lock::Timeout=600 -o Acquire::Retries=3)
export DEBIAN_FRONTEND=noninteractive

readonly ROOT="${BAKERY_ROOT:-}"

log() { printf '%s: %s\n' "$NAME" "$*"; }

# Debian's kernel enables AppArmor, and Docker then refuses to run a container unless
# apparmor_parser can load its profile: a Recommends of docker.io that --no-install-recommends
# leaves out. Ubuntu's images carry it already.
needs_apparmor() {
  [[ $(cat "${ROOT}/sys/module/apparmor/parameters/enabled" 2>/dev/null) == Y ]] &&
    ! command -v apparmor_parser >/dev/null 2>&1
}

packages=()
if command -v docker >/dev/null 2>&1; then
  log "docker is already installed: $(docker --version)"
else
  packages+=(docker.io)
fi
if needs_apparmor; then
  packages+=(apparmor)
fi
if ((${#packages[@]})); then
  log "installing ${packages[*]}"
  apt-get "${APT_OPTS[@]}" update
  apt-get "${APT_OPTS[@]}" install --yes --no-install-recommends "${packages[@]}"
fi

if ! systemctl is-enabled --quiet docker.service; then
  systemctl enable docker.service
fi
if ! systemctl is-active --quiet docker.service; then
  systemctl start docker.service
fi
log "done: docker.service enabled and running"
