#!/usr/bin/env bash
# Step 9, last: refuses an image that still carries the build instance's identity or too little
# free disk. Lists every problem, one a line, and fails when there is any: SSH host keys,
# authorized_keys, cloud-init instance state, shell histories, the Ollama identity key,
# a non-empty /etc/machine-id, free space on / below MIN_FREE_DISK_GIB.
# Env: MIN_FREE_DISK_GIB (whole GiB that must stay free on /).
set -o errexit -o nounset -o pipefail
shopt -s nullglob

: "${MIN_FREE_DISK_GIB:?is required: the GiB that must stay free on /}"

readonly NAME=validate
readonly ROOT="${BAKERY_ROOT:-}"
# As removed by cleanup.sh.
readonly HISTORIES=(.bash_history .zsh_history .python_history .lesshst .viminfo)

[[ $MIN_FREE_DISK_GIB =~ ^[0-9]+$ ]] || {
  printf '%s: error: MIN_FREE_DISK_GIB must be whole GiB, got %s\n' "$NAME" "'$MIN_FREE_DISK_GIB'" >&2
  exit 1
}

problems=()
# left WHAT PATH...: one problem for each path that exists.
left() {
  local what=$1 path
  shift
  for path in "$@"; do
    if [[ -e $path || -L $path ]]; then
      problems+=("$what left: ${path#"$ROOT"}")
    fi
  done
}

left "SSH host key" "${ROOT}"/etc/ssh/ssh_host_*
left "authorized_keys" "${ROOT}"/root/.ssh/authorized_keys* "${ROOT}"/home/*/.ssh/authorized_keys*
left "cloud-init instance state" "${ROOT}"/var/lib/cloud/instance "${ROOT}"/var/lib/cloud/instances/* \
  "${ROOT}"/var/lib/cloud/data/* "${ROOT}"/var/lib/cloud/sem/*
for home in "${ROOT}/root" "${ROOT}"/home/*; do
  left "shell history" "${HISTORIES[@]/#/$home/}"
done
left "Ollama identity key" "${ROOT}"/usr/share/ollama/.ollama/id_ed25519*
if [[ -s ${ROOT}/etc/machine-id ]]; then
  problems+=("machine ID left: /etc/machine-id is not empty")
fi

avail=$(df --output=avail --block-size=1 "${ROOT}/" | tail -n 1)
free_gib=$((avail / 1024 ** 3))
if ((free_gib < MIN_FREE_DISK_GIB)); then
  problems+=("free disk on / is ${free_gib} GiB, below the floor of ${MIN_FREE_DISK_GIB} GiB")
fi

if ((${#problems[@]})); then
  for problem in "${problems[@]}"; do
    printf '%s: %s\n' "$NAME" "$problem" >&2
  done
  printf '%s: error: %d problem(s): the image is not fit to ship\n' "$NAME" "${#problems[@]}" >&2
  exit 1
fi
printf '%s: ok (%s GiB free on /, floor %s GiB)\n' "$NAME" "$free_gib" "$MIN_FREE_DISK_GIB"
