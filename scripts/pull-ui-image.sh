#!/usr/bin/env bash
# Step 5: the chat UI's container image, baked in and tagged bakery/ui:baked (the name the
# launch user-data runs, with --pull never). One of three pinned sources:
#   UI_IMAGE                      repo@sha256:<64 hex>: docker pull
#   UI_GIT_URL + UI_GIT_COMMIT    a full 40-hex commit: git clone, checkout, docker build
#   UI_ARCHIVE_URL + _SHA256      an image archive (docker save; https:// or file://), checked
#                                 before `docker load`: for teams without a registry
# Records {"id", "ref", "source"} in /var/lib/bakery/ui-image.json; nothing is fetched again
# when the recorded image is still there and came from the same source.
# Env: UI_IMAGE, or UI_GIT_URL and UI_GIT_COMMIT, or UI_ARCHIVE_URL and UI_ARCHIVE_SHA256
# (empty counts as unset).
set -o errexit -o nounset -o pipefail

readonly NAME=pull-ui-image
readonly ROOT="${BAKERY_ROOT:-}"
readonly TAG=bakery/ui:baked
readonly RECORD="${ROOT}/var/lib/bakery/ui-image.json"
readonly UI_IMAGE="${UI_IMAGE:-}" UI_GIT_URL="${UI_GIT_URL:-}" UI_GIT_COMMIT="${UI_GIT_COMMIT:-}"
readonly UI_ARCHIVE_URL="${UI_ARCHIVE_URL:-}" UI_ARCHIVE_SHA256="${UI_ARCHIVE_SHA256:-}"

log() { printf '%s: %s\n' "$NAME" "$*"; }
die() {
  printf '%s: error: %s\n' "$NAME" "$*" >&2
  exit 1
}

sources_set=0
for value in "$UI_IMAGE" "$UI_GIT_URL$UI_GIT_COMMIT" "$UI_ARCHIVE_URL$UI_ARCHIVE_SHA256"; do
  [[ -z $value ]] || sources_set=$((sources_set + 1))
done
((sources_set <= 1)) ||
  die "set one UI source: UI_IMAGE, UI_GIT_URL + UI_GIT_COMMIT, or UI_ARCHIVE_URL + UI_ARCHIVE_SHA256"
if [[ -n $UI_ARCHIVE_URL$UI_ARCHIVE_SHA256 ]]; then
  [[ $UI_ARCHIVE_URL =~ ^(https|file):// ]] ||
    die "UI_ARCHIVE_URL must be an https:// or file:// URL, got '$UI_ARCHIVE_URL'"
  [[ $UI_ARCHIVE_SHA256 =~ ^[0-9a-f]{64}$ ]] ||
    die "UI_ARCHIVE_SHA256 must be 64 lowercase hex digits, got '$UI_ARCHIVE_SHA256'"
  source="archive+${UI_ARCHIVE_URL}#sha256=${UI_ARCHIVE_SHA256}"
elif [[ -n $UI_IMAGE ]]; then
  [[ $UI_IMAGE =~ ^[a-z0-9][a-z0-9._/:-]*@sha256:[0-9a-f]{64}$ ]] ||
    die "UI_IMAGE must be pinned by digest (repo@sha256:<64 hex>), got '$UI_IMAGE'"
  source=$UI_IMAGE
elif [[ -n $UI_GIT_URL$UI_GIT_COMMIT ]]; then
  [[ -n $UI_GIT_URL ]] || die "UI_GIT_COMMIT is set but UI_GIT_URL is not"
  [[ $UI_GIT_COMMIT =~ ^[0-9a-f]{40}$ ]] ||
    die "UI_GIT_COMMIT must be a full 40-hex commit (a branch or tag can move), got '$UI_GIT_COMMIT'"
  source="git+${UI_GIT_URL}@${UI_GIT_COMMIT}"
else
  die "no UI source: set UI_IMAGE (repo@sha256:...), UI_GIT_URL and UI_GIT_COMMIT, or UI_ARCHIVE_URL and UI_ARCHIVE_SHA256"
fi
command -v docker >/dev/null 2>&1 || die "docker is missing: install-docker.sh runs before this step"

workdir=$(mktemp -d -t bakery-ui.XXXXXX)
trap 'rm -rf "$workdir"' EXIT

# write_record ID FILE: the record of image ID, in a stable form (sorted keys).
write_record() {
  python3 -c 'import json, sys
print(json.dumps({"id": sys.argv[1], "ref": sys.argv[2], "source": sys.argv[3]}, indent=2, sort_keys=True))' \
    "$1" "$TAG" "$source" >"$2"
}

image_id() { docker image inspect --format '{{.Id}}' "$TAG" 2>/dev/null || true; }

id=$(image_id)
if [[ -n $id && -f $RECORD ]]; then
  write_record "$id" "$workdir/record.json"
  if cmp -s "$workdir/record.json" "$RECORD"; then
    log "$TAG is already $id, from $source"
    exit 0
  fi
fi

if [[ -n $UI_ARCHIVE_URL ]]; then
  log "loading $TAG from $UI_ARCHIVE_URL"
  curl --fail --silent --show-error --location --retry 5 --retry-delay 5 \
    --output "$workdir/ui.tar" "$UI_ARCHIVE_URL"
  actual=$(sha256sum "$workdir/ui.tar" | cut -d ' ' -f 1)
  [[ $actual == "$UI_ARCHIVE_SHA256" ]] ||
    die "sha256 mismatch for $UI_ARCHIVE_URL: expected $UI_ARCHIVE_SHA256, got $actual; nothing was loaded"
  loaded=$(docker load --input "$workdir/ui.tar")
  # "Loaded image: repo:tag" or "Loaded image ID: sha256:..."; the archive's first image.
  ref=$(sed -n -E 's/^Loaded image( ID)?: (.*)$/\2/p' <<<"$loaded" | head -n 1)
  [[ -n $ref ]] || die "docker load named no image: $loaded"
  docker tag "$ref" "$TAG"
elif [[ -n $UI_IMAGE ]]; then
  log "pulling $UI_IMAGE"
  docker pull "$UI_IMAGE"
  docker tag "$UI_IMAGE" "$TAG"
else
  command -v git >/dev/null 2>&1 || die "git is missing: it is needed to build the UI from $UI_GIT_URL"
  log "building $TAG from $UI_GIT_URL at $UI_GIT_COMMIT"
  # No credential prompt: a wrong or private URL fails instead of waiting for input.
  GIT_TERMINAL_PROMPT=0 git clone --quiet --no-checkout "$UI_GIT_URL" "$workdir/src"
  git -C "$workdir/src" checkout --quiet --detach "$UI_GIT_COMMIT" ||
    die "commit $UI_GIT_COMMIT is not in $UI_GIT_URL"
  head=$(git -C "$workdir/src" rev-parse HEAD)
  [[ $head == "$UI_GIT_COMMIT" ]] || die "checked out $head, not $UI_GIT_COMMIT"
  docker build --pull --tag "$TAG" \
    --label "org.opencontainers.image.source=$UI_GIT_URL" \
    --label "org.opencontainers.image.revision=$UI_GIT_COMMIT" \
    "$workdir/src"
  # The builder stage (node_modules and all) would otherwise ship in every copy of the image.
  docker builder prune --force >/dev/null
  docker image prune --force >/dev/null
fi

id=$(image_id)
[[ -n $id ]] || die "$TAG is not in docker's image store after the pull or build"
write_record "$id" "$workdir/record.json"
mkdir -p "${RECORD%/*}"
install -m 0644 "$workdir/record.json" "$RECORD"
log "done: $TAG is $id, from $source"
