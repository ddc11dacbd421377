#!/usr/bin/env bash
# Step 2: Docker, for the UI container. Ubuntu's docker.io, installed only when the base has no
# docker at all (the DLAMI brings its own); the service is enabled and left running for the
# UI image step.
# Env: none.
set -o errexit -o nounset -o pipefail

readonly NAME=install-docker
# cloud-init and unattended-upgrades may hold the dpkg lock during an instance's first minutes.
readonly APT_OPTS=(-o DPkg::Lock::Timeout=600 -o Acquire::Retries=3)
export DEBIAN_FRONTEND=noninteractive

log() { printf '%s: %s\n' "$NAME" "$*"; }

if command -v docker >/dev/null 2>&1; then
  log "docker is already installed: $(docker --version)"
else
  log "installing docker.io"
  apt-get "${APT_OPTS[@]}" update
  apt-get "${APT_OPTS[@]}" install --yes --no-install-recommends docker.io
fi

if ! systemctl is-enabled --quiet docker.service; then
  systemctl enable docker.service
fi
if ! systemctl is-active --quiet docker.service; then
  systemctl start docker.service
fi
log "done: docker.service enabled and running"
