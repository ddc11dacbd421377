#!/usr/bin/env bash
# Step 0, before anything calls apt: wait for cloud-init to finish. Ubuntu cloud images rewrite
# the apt sources and may run apt during first boot; a provisioner that calls apt before
# cloud-init is done races it (hashicorp/packer#2639). `cloud-init status --wait` answers:
#   0  done                                  go on
#   2  done, with recoverable errors         go on, printing what cloud-init reports
#      (cloud-init >= 23.4; a base's own warnings, e.g. a deprecated key, must not stop a bake)
#   *  failed                                stop, printing what cloud-init reports
# A host without cloud-init has nothing to wait for: it says so and goes on.
# Env: none. The bake's timeout (build.timeout_minutes) bounds the wait.
set -o errexit -o nounset -o pipefail

readonly NAME=wait-cloud-init

log() { printf '%s: %s\n' "$NAME" "$*"; }
die() {
  printf '%s: error: %s\n' "$NAME" "$*" >&2
  exit 1
}

# What cloud-init says about its run, indented, for the log.
report() {
  cloud-init status --long 2>&1 | sed 's/^/  /' || true
}

if ! command -v cloud-init >/dev/null 2>&1; then
  log "no cloud-init on this host: nothing to wait for"
  exit 0
fi

log "waiting for cloud-init to finish first boot (it may rewrite the apt sources)"
started=$SECONDS
rc=0
# --wait prints a dot every few seconds: kept out of the log, the outcome is what matters.
cloud-init status --wait >/dev/null || rc=$?
waited=$((SECONDS - started))
case $rc in
  0) log "cloud-init is done (waited ${waited}s)" ;;
  2)
    log "cloud-init is done with recoverable errors (waited ${waited}s); going on. It reports:"
    report
    ;;
  *)
    report >&2
    die "cloud-init failed (cloud-init status --wait exit $rc after ${waited}s): the instance did" \
      "not finish first boot, so its apt sources cannot be trusted"
    ;;
esac
