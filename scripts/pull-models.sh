#!/usr/bin/env bash
# Step 4: the models, baked into the image. Pulls need a running server (ollama#5385): this
# starts `ollama serve` as the ollama user for the bake only (not through systemd: the unit
# waits for a GPU, and the build host has none), pulls and imports, records every model's
# name and digest in /var/lib/bakery/models.json, and stops the server, on failure too.
# Models already present are not fetched again.
# Env: OLLAMA_PULL   space-separated refs from Ollama's registry, e.g. "deepseek-r1:7b"
#      OLLAMA_IMPORT space-separated GGUF files as name|url|sha256, url s3:// (aws CLI),
#                    https:// or file:// (a file already on the build host); optional
#      BAKERY_OLLAMA_HOST where the bake-time server listens (default 127.0.0.1:11434)
set -o errexit -o nounset -o pipefail

readonly NAME=pull-models
readonly ROOT="${BAKERY_ROOT:-}"
readonly HOST="${BAKERY_OLLAMA_HOST:-127.0.0.1:11434}"
readonly API="http://${HOST}"
readonly OLLAMA="${ROOT}/usr/bin/ollama"
# The server's default model store: $HOME/.ollama/models of the ollama user.
readonly OLLAMA_HOME=/usr/share/ollama
readonly MODELS_DIR="$OLLAMA_HOME/.ollama/models"
readonly STATE_DIR="${ROOT}/var/lib/bakery"
readonly SERVE_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
readonly NAME_RE='^[A-Za-z0-9][A-Za-z0-9._/-]*(:[A-Za-z0-9._-]+)?$'

log() { printf '%s: %s\n' "$NAME" "$*"; }
die() {
  printf '%s: error: %s\n' "$NAME" "$*" >&2
  exit 1
}

# contains NEEDLE ITEM...: whether NEEDLE is one of the items.
contains() {
  local needle=$1 item
  shift
  for item in "$@"; do
    [[ $item == "$needle" ]] && return 0
  done
  return 1
}

# "llama3" is listed by /api/tags as "llama3:latest".
full_name() {
  if [[ ${1##*/} == *:* ]]; then printf '%s\n' "$1"; else printf '%s:latest\n' "$1"; fi
}

read -r -a pulls <<<"${OLLAMA_PULL:-}"
read -r -a imports <<<"${OLLAMA_IMPORT:-}"
((${#pulls[@]} + ${#imports[@]} > 0)) ||
  die "nothing to bake: set OLLAMA_PULL (e.g. deepseek-r1:7b) and/or OLLAMA_IMPORT (name|url|sha256)"

# Everything is checked before the server starts.
wanted=()
for model in "${pulls[@]}"; do
  [[ $model =~ $NAME_RE ]] || die "OLLAMA_PULL: '$model' is not a model reference"
  wanted+=("$(full_name "$model")")
done
for entry in "${imports[@]}"; do
  IFS='|' read -r name url sha256 extra <<<"$entry"
  [[ -z $extra && -n $url && -n $sha256 ]] ||
    die "OLLAMA_IMPORT: '$entry' is not name|url|sha256"
  [[ $name =~ $NAME_RE ]] || die "OLLAMA_IMPORT: '$name' is not a model name"
  [[ $sha256 =~ ^[0-9a-f]{64}$ ]] || die "OLLAMA_IMPORT: $name: sha256 must be 64 lowercase hex digits"
  case $url in
    s3://*)
      command -v aws >/dev/null 2>&1 ||
        die "OLLAMA_IMPORT: $name comes from $url, which needs the aws CLI; this host has none" \
          "(bake from a base with it, or serve the file over https://)"
      ;;
    https://* | file://*) ;;
    *) die "OLLAMA_IMPORT: $name: url must be s3://, https:// or file://, got '$url'" ;;
  esac
  wanted+=("$(full_name "$name")")
done
[[ -x $OLLAMA ]] || die "/usr/bin/ollama is missing: install-ollama.sh runs before this step"
getent passwd ollama >/dev/null || die "there is no ollama user: install-ollama.sh runs before this step"

workdir=$(mktemp -d -t bakery-models.XXXXXX)
server_pid=""

stop_server() {
  [[ -n $server_pid ]] || return 0
  if kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in {1..50}; do
      kill -0 "$server_pid" 2>/dev/null || break
      sleep 0.2
    done
    kill -KILL "$server_pid" 2>/dev/null || true
  fi
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
  log "ollama serve stopped"
}

on_exit() {
  stop_server
  rm -rf "$workdir"
}
trap on_exit EXIT

serve_log_tail() {
  tail -n 20 "$workdir/serve.log" >&2 || true
}

start_server() {
  # Pulls sent to some other server on the port would not land in the image.
  if curl --fail --silent --max-time 2 --output /dev/null "$API/api/version"; then
    die "something already answers on $API: stop it (systemctl stop ollama?) and run again"
  fi
  log "starting ollama serve on $HOST as the ollama user, for the bake only"
  # A clean environment: nothing from the build's shell (a stray OLLAMA_MODELS, say) changes
  # where the models go.
  runuser -u ollama -- env -i "HOME=${ROOT}${OLLAMA_HOME}" "PATH=$SERVE_PATH" \
    "OLLAMA_HOST=$HOST" "$OLLAMA" serve >"$workdir/serve.log" 2>&1 &
  server_pid=$!
  local deadline=$((SECONDS + 120))
  until curl --fail --silent --max-time 2 --output /dev/null "$API/api/version"; do
    if ! kill -0 "$server_pid" 2>/dev/null; then
      serve_log_tail
      die "ollama serve exited before answering on $API (is something else on $HOST?)"
    fi
    if ((SECONDS >= deadline)); then
      serve_log_tail
      die "ollama serve did not answer on $API/api/version within 120s"
    fi
    sleep 0.2
  done
}

# Full names of the models the server has, one a line.
present_models() {
  curl --fail --silent --show-error "$API/api/tags" |
    python3 -c 'import json, sys; print("\n".join(m["name"] for m in json.load(sys.stdin).get("models") or []))'
}

pull() {
  log "pulling $1 (a few GB take minutes)"
  # One answer at the end (no progress stream); bounded, so a stalled registry fails the bake.
  if ! curl --fail-with-body --silent --show-error --max-time 7200 \
    -H 'Content-Type: application/json' --data "{\"model\": \"$1\", \"stream\": false}" \
    --output "$workdir/pull.json" "$API/api/pull"; then
    die "pull of $1 failed: $(cat "$workdir/pull.json" 2>/dev/null)"
  fi
}

# import NAME URL SHA256: fetches a GGUF file, checks it, and creates the model from it.
import_gguf() {
  local name=$1 url=$2 sha256=$3 file actual
  file="$workdir/$(basename "${url%%\?*}")"
  log "fetching $url for $name"
  case $url in
    s3://*) aws s3 cp --only-show-errors "$url" "$file" ;;
    *) curl --fail --silent --show-error --location --retry 5 --retry-delay 5 --output "$file" "$url" ;;
  esac
  actual=$(sha256sum "$file" | cut -d ' ' -f 1)
  [[ $actual == "$sha256" ]] ||
    die "$name: sha256 mismatch for $url: expected $sha256, got $actual; not imported"
  printf 'FROM %s\n' "$file" >"$workdir/Modelfile"
  log "creating $name from $(basename "$file")"
  OLLAMA_HOST=$HOST "$OLLAMA" create "$name" -f "$workdir/Modelfile"
  rm -f "$file"
}

# Each directory from / down to the model store must let the ollama user through
# (ollama#2701, #10672): world-executable, or the user's own.
check_traversable() {
  local uid dir="" part owner mode
  uid=$(getent passwd ollama | cut -d : -f 3)
  IFS=/ read -r -a parts <<<"${MODELS_DIR#/}"
  for part in "${parts[@]}"; do
    dir+="/$part"
    [[ -d ${ROOT}${dir} ]] || die "$dir is missing: the server made no model store"
    read -r owner mode < <(stat -c '%u %a' "${ROOT}${dir}")
    if (((8#$mode & 8#001) == 0)) && ! [[ $owner == "$uid" && $((8#$mode & 8#100)) != 0 ]]; then
      die "$dir (mode $mode, owner uid $owner) is not traversable by the ollama user"
    fi
  done
}

start_server
listed=$(present_models)
mapfile -t present <<<"$listed"
for model in "${pulls[@]}"; do
  if contains "$(full_name "$model")" "${present[@]}"; then
    log "$model is already present"
  else
    pull "$model"
  fi
done
for entry in "${imports[@]}"; do
  IFS='|' read -r name url sha256 <<<"$entry"
  if contains "$(full_name "$name")" "${present[@]}"; then
    log "$name is already present"
  else
    import_gguf "$name" "$url" "$sha256"
  fi
done

curl --fail --silent --show-error --output "$workdir/tags.json" "$API/api/tags"
python3 - "$workdir/tags.json" "$workdir/models.json" "${wanted[@]}" <<'PY'
import json
import sys

tags, out, wanted = sys.argv[1], sys.argv[2], sys.argv[3:]
with open(tags) as f:
    models = [{"name": m["name"], "digest": m["digest"]} for m in json.load(f).get("models") or []]
models.sort(key=lambda m: m["name"])
missing = sorted(set(wanted) - {m["name"] for m in models})
if missing:
    sys.exit("pull-models: error: not listed by /api/tags after the pull: " + ", ".join(missing))
with open(out, "w") as f:
    json.dump(models, f, indent=2, sort_keys=True)
    f.write("\n")
PY
stop_server
check_traversable

mkdir -p "$STATE_DIR"
if ! cmp -s "$workdir/models.json" "$STATE_DIR/models.json"; then
  install -m 0644 "$workdir/models.json" "$STATE_DIR/models.json"
  log "wrote /var/lib/bakery/models.json"
fi
log "done: $(python3 -c 'import json, sys; print(", ".join(m["name"] + " " + m["digest"][:12] for m in json.load(open(sys.argv[1]))))' "$STATE_DIR/models.json")"
