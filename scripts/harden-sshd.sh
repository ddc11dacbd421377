#!/usr/bin/env bash
# Step 6: sshd takes keys only and no root login. Installs the drop-in 10-bakery.conf, makes sure
# sshd_config includes sshd_config.d (Ubuntu's does; checked, not assumed), and checks the
# effective settings with `sshd -T`. sshd is not reloaded: the settings apply from the first
# boot of the image, and the build's own connection is left alone.
# Env: BAKERY_ROOTFS.
set -o errexit -o nounset -o pipefail

: "${BAKERY_ROOTFS:?is required: the directory Packer uploaded scripts/rootfs to}"

readonly NAME=harden-sshd
readonly ROOT="${BAKERY_ROOT:-}"
readonly CONFIG="${ROOT}/etc/ssh/sshd_config"
readonly DROP_IN=/etc/ssh/sshd_config.d/10-bakery.conf
readonly INCLUDE='Include /etc/ssh/sshd_config.d/*.conf'
# As `sshd -T` prints them.
readonly SETTINGS=("passwordauthentication no" "kbdinteractiveauthentication no" "permitrootlogin no")

log() { printf '%s: %s\n' "$NAME" "$*"; }
die() {
  printf '%s: error: %s\n' "$NAME" "$*" >&2
  exit 1
}

[[ -d $BAKERY_ROOTFS ]] || die "BAKERY_ROOTFS=$BAKERY_ROOTFS is not a directory"
[[ -f $CONFIG ]] || die "/etc/ssh/sshd_config is missing: is openssh-server installed?"
command -v sshd >/dev/null 2>&1 || die "sshd is not installed"

src="$BAKERY_ROOTFS$DROP_IN"
dst="$ROOT$DROP_IN"
if [[ -f $dst ]] && cmp -s "$src" "$dst" && [[ $(stat -c '%a' "$dst") == 644 ]]; then
  log "$DROP_IN is up to date"
else
  install -D -m 0644 "$src" "$dst"
  log "installed $DROP_IN"
fi

# sshd keeps the first value it reads: the Include must come before any setting, so a missing
# one goes on top.
if grep -Eqi '^[[:space:]]*Include[[:space:]]+/etc/ssh/sshd_config\.d/\*\.conf[[:space:]]*$' "$CONFIG"; then
  log "sshd_config includes sshd_config.d"
else
  tmp=$(mktemp "$CONFIG.bakery.XXXXXX")
  {
    printf '%s\n' "# Added by gpu-ami-bakery (harden-sshd.sh): drop-ins first, since the first value wins." "$INCLUDE"
    cat "$CONFIG"
  } >"$tmp"
  chmod --reference="$CONFIG" "$tmp"
  mv -f "$tmp" "$CONFIG"
  log "added '$INCLUDE' at the top of /etc/ssh/sshd_config"
fi

# What sshd will really do, whatever else is in its configuration (cloud-init's drop-ins, say).
# sshd -T wants its privilege separation directory, which ssh.service makes when it starts.
if [[ ! -d ${ROOT}/run/sshd ]]; then
  mkdir -p "${ROOT}/run/sshd"
  chmod 0755 "${ROOT}/run/sshd"
fi
effective=$(sshd -T -f "$CONFIG") || die "sshd -T rejects the configuration"
problems=()
for setting in "${SETTINGS[@]}"; do
  if ! grep -qxF -- "$setting" <<<"$effective"; then
    problems+=("sshd would run with '$(grep -m1 "^${setting% *} " <<<"$effective" || echo "${setting% *} unset")', not '$setting'")
  fi
done
if ((${#problems[@]})); then
  for problem in "${problems[@]}"; do
    printf '%s: error: %s\n' "$NAME" "$problem" >&2
  done
  exit 1
fi
log "done: effective settings: ${SETTINGS[*]}"
