#!/usr/bin/env bash
# Step 1: the NVIDIA driver, and persistence mode on at boot.
#   NVIDIA_DRIVER_INSTALL=true   install NVIDIA_DRIVER_BRANCH from Ubuntu's archive (skipped when
#                                present) and check that branch
#   NVIDIA_DRIVER_INSTALL=false  install nothing: take the driver the base AMI carries, whatever
#                                its branch (its releases move on), at least
#                                NVIDIA_MIN_DRIVER_BRANCH when that is set
# The driver found is logged here and recorded by version-info.sh (nvidia_driver), from which
# the image tests check it.
# Env: NVIDIA_DRIVER_INSTALL (true|false), NVIDIA_DRIVER_BRANCH (e.g. 580; with install=true),
#      NVIDIA_MIN_DRIVER_BRANCH (optional; with install=false), BAKERY_ROOTFS.
# The build host has no GPU: every check reads files (modinfo, dpkg), never nvidia-smi.
set -o errexit -o nounset -o pipefail

: "${NVIDIA_DRIVER_INSTALL:?is required: true (install the branch) or false (the base AMI has it)}"
: "${BAKERY_ROOTFS:?is required: the directory Packer uploaded scripts/rootfs to}"

readonly NAME=install-nvidia-driver
readonly ROOT="${BAKERY_ROOT:-}"
readonly BRANCH=${NVIDIA_DRIVER_BRANCH:-}
readonly MIN_BRANCH=${NVIDIA_MIN_DRIVER_BRANCH:-}
# cloud-init and unattended-upgrades may hold the dpkg lock during an instance's first minutes.
readonly APT_OPTS=(-o DPkg::Lock::Timeout=600 -o Acquire::Retries=3)
export DEBIAN_FRONTEND=noninteractive

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

is_installed() {
  # shellcheck disable=SC2016 # a dpkg-query format, not a shell expansion
  [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) == "install ok installed" ]]
}

[[ $NVIDIA_DRIVER_INSTALL == true || $NVIDIA_DRIVER_INSTALL == false ]] ||
  die "NVIDIA_DRIVER_INSTALL must be true or false, got '$NVIDIA_DRIVER_INSTALL'"
if [[ $NVIDIA_DRIVER_INSTALL == true ]]; then
  [[ -n $BRANCH ]] || die "NVIDIA_DRIVER_BRANCH: is required with NVIDIA_DRIVER_INSTALL=true"
  [[ $BRANCH =~ ^[0-9]+$ ]] ||
    die "NVIDIA_DRIVER_BRANCH must be a driver branch such as 580, got '$BRANCH'"
  [[ -z $MIN_BRANCH ]] ||
    die "NVIDIA_MIN_DRIVER_BRANCH applies only with NVIDIA_DRIVER_INSTALL=false"
else
  [[ -z $BRANCH ]] ||
    die "NVIDIA_DRIVER_BRANCH pins a branch only with NVIDIA_DRIVER_INSTALL=true;" \
      "the base's driver is taken as it is (NVIDIA_MIN_DRIVER_BRANCH sets a floor)"
  [[ -z $MIN_BRANCH || $MIN_BRANCH =~ ^[0-9]+$ ]] ||
    die "NVIDIA_MIN_DRIVER_BRANCH must be a driver branch such as 580, got '$MIN_BRANCH'"
fi
[[ -d $BAKERY_ROOTFS ]] || die "BAKERY_ROOTFS=$BAKERY_ROOTFS is not a directory"

# Nothing here upgrades the kernel: the running one is the one the image boots.
kernel=$(uname -r)

# The version of the nvidia module built for that kernel; empty when there is none.
module_version() { modinfo -k "$kernel" -F version nvidia 2>/dev/null || true; }

if [[ $NVIDIA_DRIVER_INSTALL == true ]]; then
  # -server-open: the open kernel module (NVIDIA's choice from Turing on: T4, A10G, L4, L40S,
  # that is g4dn, g5, g6, g6e; not Volta p3) of the datacenter release train, supported longest.
  # headless: no X stack. DKMS builds the module against the running kernel's headers.
  # The branch is part of every package name, so upgrades stay within it.
  packages=(
    "nvidia-headless-${BRANCH}-server-open"
    "nvidia-utils-${BRANCH}-server"
    "linux-headers-${kernel}"
  )
  missing=()
  for package in "${packages[@]}"; do
    is_installed "$package" || missing+=("$package")
  done
  if ((${#missing[@]} == 0)); then
    log "already installed: ${packages[*]}"
  else
    log "installing ${packages[*]} (missing: ${missing[*]})"
    apt-get "${APT_OPTS[@]}" update
    apt-get "${APT_OPTS[@]}" install --yes --no-install-recommends "${packages[@]}"
  fi
fi

version=$(module_version)
if [[ -z $version ]]; then
  if [[ $NVIDIA_DRIVER_INSTALL == true ]]; then
    die "no nvidia kernel module for kernel $kernel after the install: did the DKMS build fail?" \
      "(see /var/lib/dkms/nvidia/*/build/make.log)"
  fi
  die "no NVIDIA driver on this base AMI: modinfo finds no nvidia module for kernel $kernel." \
    "Use a base that carries the driver, or set [nvidia] install = true with a driver_branch"
fi
found_branch=${version%%.*}
[[ $found_branch =~ ^[0-9]+$ ]] ||
  die "the nvidia kernel module for kernel $kernel reports version '$version', not BRANCH.MINOR..."
if [[ $NVIDIA_DRIVER_INSTALL == true ]]; then
  [[ $found_branch == "$BRANCH" ]] ||
    die "the nvidia kernel module for kernel $kernel is $version, not branch $BRANCH"
  log "nvidia kernel module $version for kernel $kernel (branch $BRANCH, installed)"
else
  if [[ -n $MIN_BRANCH ]] && ((10#$found_branch < 10#$MIN_BRANCH)); then
    die "the base AMI's nvidia kernel module for kernel $kernel is $version, older than" \
      "min_driver_branch $MIN_BRANCH: use a newer base, or lower [nvidia] min_driver_branch"
  fi
  log "nvidia kernel module $version for kernel $kernel (the base's driver, branch $found_branch" \
    "${MIN_BRANCH:+>= $MIN_BRANCH}; recorded by version-info)"
fi

[[ -x ${ROOT}/usr/bin/nvidia-persistenced ]] ||
  die "/usr/bin/nvidia-persistenced is missing: the driver's utilities are not installed"
# Ubuntu's driver packages create the daemon's user; other installs may not.
if ! getent passwd nvidia-persistenced >/dev/null; then
  useradd --system --user-group --no-create-home --home-dir /nonexistent \
    --shell /usr/sbin/nologin nvidia-persistenced
  log "created user nvidia-persistenced"
fi

install_file "$BAKERY_ROOTFS/etc/systemd/system/nvidia-persistenced.service" \
  "${ROOT}/etc/systemd/system/nvidia-persistenced.service" 0644
install_file "$BAKERY_ROOTFS/etc/apt/apt.conf.d/51bakery-nvidia" \
  "${ROOT}/etc/apt/apt.conf.d/51bakery-nvidia" 0644
if ((changed)); then
  systemctl daemon-reload
fi
# Enabled only: without a GPU the daemon cannot start here. It starts at boot.
if ! systemctl is-enabled --quiet nvidia-persistenced.service; then
  systemctl enable nvidia-persistenced.service
fi
log "done: driver $version, nvidia-persistenced enabled (persistence mode on at boot)"
