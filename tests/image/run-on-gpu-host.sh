#!/usr/bin/env bash
# Runs the image suite against the machine it runs on (a lent GPU machine, local://) and
# keeps the record: expectations, JUnit XML, timings, the pytest log and a summary.
#
#   tests/image/run-on-gpu-host.sh GPU_NAME OUT_DIR      e.g. tests/image/run-on-gpu-host.sh H200 "$OUT"
#
# Needs python3 with pytest, and pytest-testinfra importable (PYTHONPATH=/tmp/site where its
# wheel was installed). The machine is not a baked image: no Ollama, docker, sshd or systemd
# there, so many checks fail or skip, each saying why. Exits 0 when the suite ran (the point
# is the record, not green); non-zero only when it could not run.
set -o errexit -o nounset -o pipefail

if [[ $# -ne 2 ]]; then
  echo "usage: $0 GPU_NAME OUT_DIR   (GPU_NAME as nvidia-smi names it, e.g. H200)" >&2
  exit 2
fi
gpu_name=$1
out=$2
python=${PYTHON:-python3}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
mkdir -p "$out"
out=$(cd "$out" && pwd)

if ! "$python" -c 'import pytest, testinfra' 2>"$out/import-error.txt"; then
  echo "cannot import pytest and testinfra with $python (PYTHONPATH=${PYTHONPATH:-}):" >&2
  cat "$out/import-error.txt" >&2
  echo "install the wheel pytest_testinfra-10.2.2-py3-none-any.whl (needs pytest>=7)" >&2
  exit 3
fi
rm -f "$out/import-error.txt"

# Expectations for this machine: the image's pins, with the GPU it has; digests, the UI image
# id and the driver a bake would have recorded are unknown here (null), which the suite reports
# as not checked (the driver is checked against the minimum branch). It did not boot with the
# fleet's user-data: the boot checks skip saying so.
"$python" - "$gpu_name" "$out/expect.json" <<'PY'
import json, sys
gpu_name, path = sys.argv[1], sys.argv[2]
expect = {
    "image": "deepseek-r1-7b",
    "nvidia": {
        "driver_version": None,
        "driver_branch": None,
        "min_driver_branch": "580",
        "gpu_name": gpu_name,
        "min_gpu_memory_gib": 16,
    },
    "ollama": {
        "version": "0.13.1",
        "address": "127.0.0.1:11434",
        "keep_alive": "-1",
        "record": "/var/lib/bakery/models.json",
        "models": [{"name": "deepseek-r1:7b", "digest": None}],
        "generation_timeout_s": 120,
    },
    "ui": {"image": "bakery/ui:baked", "id": None, "ollama_url_env": "OLLAMA_URL", "port": 3000},
    "playbooks": [],
    "booted_with_user_data": False,
    "min_free_disk_gib": 20,
}
with open(path, "w") as f:
    json.dump(expect, f, indent=2)
PY

{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "kernel: $(uname -r)"
  echo "pid1: $(cat /proc/1/comm 2>/dev/null || echo unknown)"
  echo "python: $("$python" --version 2>&1)"
  echo "pytest: $("$python" -m pytest --version 2>&1 | head -n1)"
  echo "nvidia-smi: $(nvidia-smi --query-gpu=name,driver_version,memory.total,persistence_mode \
    --format=csv,noheader 2>&1 | head -n4 | tr '\n' ';')"
} >"$out/host.txt"
cat "$out/host.txt"

cd "$repo"
set +o errexit
"$python" -m pytest tests/image --hosts=local:// \
  --expect "$out/expect.json" \
  --junitxml "$out/junit.xml" \
  --timings "$out/timings.json" \
  -p no:cacheprovider -rA 2>&1 | tee "$out/pytest.log"
rc=${PIPESTATUS[0]}
set -o errexit
echo "pytest exit status: $rc" | tee -a "$out/host.txt"

if [[ ! -s "$out/junit.xml" ]]; then
  echo "the suite did not run (exit $rc): see $out/pytest.log" >&2
  exit 1
fi

"$python" - "$out/junit.xml" "$out/timings.json" <<'PY' | tee "$out/summary.txt"
import json, sys
import xml.etree.ElementTree as ET

counts = {}
print(f"{'outcome':8} {'check':58} reason")
for case in ET.parse(sys.argv[1]).getroot().iter("testcase"):
    outcome, reason = "passed", ""
    for tag in ("failure", "error", "skipped"):
        node = case.find(tag)
        if node is not None:
            outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[tag]
            reason = (node.get("message") or node.text or "").strip().splitlines()[0:1]
            reason = reason[0] if reason else ""
            break
    marks = [p.get("value") for p in case.iter("property") if p.get("name") == "markers"]
    name = case.get("classname", "").rsplit(".", 1)[-1] + "::" + case.get("name", "")
    if marks and marks[0]:
        name += f" [{marks[0]}]"
    counts[outcome] = counts.get(outcome, 0) + 1
    print(f"{outcome:8} {name:58} {reason[:200]}")
print("totals:", ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
try:
    print("timings:", json.dumps(json.load(open(sys.argv[2])), indent=2))
except OSError as e:
    print("timings: not written:", e)
PY
exit 0
