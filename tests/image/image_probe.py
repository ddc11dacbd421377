"""What the host under test has, read through testinfra (`host.run`, `host.file`).

Every probe runs on the host itself, so the same code works over ssh:// and local://.
Nothing here asserts: probes return facts, and the tests decide what passes, fails or skips.
Parsers are pure functions so the integration test can exercise them on fixed inputs.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass, field
from typing import Any

import pytest

NO_GPU_REASON = "no NVIDIA GPU on this host"
# Files made at first boot are newer than boot; baked ones date from the bake, which is at
# least minutes before an instance of the AMI boots. The slack absorbs small clock steps.
BOOT_SLACK_S = 60
# Where binaries live when the connection's PATH is short (non-login ssh, sudo secure_path).
EXTRA_PATHS = ("/usr/local/bin", "/usr/bin", "/bin", "/usr/local/sbin", "/usr/sbin", "/sbin")


def find_command(host: Any, name: str) -> str | None:
    """The path of `name` on the host, or None."""
    try:
        return str(host.find_command(name, extrapaths=EXTRA_PATHS))
    except ValueError:
        return None


def first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


def output(result: Any) -> str:
    """stdout and stderr of a testinfra CommandResult, for messages."""
    return (result.stdout + result.stderr).strip()


# --- root ---------------------------------------------------------------------------------


class Root:
    """Runs commands as root: directly when already root (or testinfra's --sudo), else with
    passwordless sudo (`host.sudo()`), else the test skips saying why."""

    def __init__(self, host: Any) -> None:
        self.host = host
        self._mode: str | None = None
        self.why_not = ""

    @property
    def mode(self) -> str:
        if self._mode is None:
            uid = self.host.run("id -u").stdout.strip()
            if uid == "0":
                self._mode = "direct"
            elif self.host.run("sudo -n true").rc == 0:
                self._mode = "sudo"
            else:
                user = self.host.run("id -un").stdout.strip() or f"uid {uid}"
                self._mode = "none"
                self.why_not = (
                    f"needs root on the host: connected as {user} and `sudo -n` is refused "
                    "(connect as root, or as a user with passwordless sudo, or pass --sudo)"
                )
        return self._mode

    @property
    def available(self) -> bool:
        return self.mode != "none"

    def run(self, command: str, *args: str) -> Any:
        if self.mode == "direct":
            return self.host.run(command, *args)
        if self.mode == "sudo":
            with self.host.sudo():
                return self.host.run(command, *args)
        pytest.skip(self.why_not)


# --- boot, init system ----------------------------------------------------------------------


def boot_time(host: Any) -> int:
    """Boot time (epoch seconds) from /proc/stat's btime."""
    for line in host.file("/proc/stat").content_string.splitlines():
        if line.startswith("btime "):
            return int(line.split()[1])
    raise AssertionError("/proc/stat has no btime line")


def uptime_s(host: Any) -> float:
    return float(host.file("/proc/uptime").content_string.split()[0])


def pid1_comm(host: Any) -> str:
    f = host.file("/proc/1/comm")
    return f.content_string.strip() if f.exists else "unknown (no /proc/1/comm)"


def systemd_skip_reason(host: Any) -> str | None:
    comm = pid1_comm(host)
    if comm == "systemd":
        return None
    return f"host not booted with systemd: PID 1 is {comm}"


# --- GPU ----------------------------------------------------------------------------------


def loaded_modules(host: Any) -> set[str] | None:
    """Names in /proc/modules; None when the kernel has no /proc/modules."""
    f = host.file("/proc/modules")
    if not f.exists:
        return None
    return {line.split()[0] for line in f.content_string.splitlines() if line.strip()}


@dataclass
class GpuPresence:
    dev_nvidia0: bool
    modules: set[str] | None
    sys_module: bool

    @property
    def module_loaded(self) -> bool:
        return bool(self.modules and "nvidia" in self.modules) or self.sys_module

    @property
    def present(self) -> bool:
        return self.dev_nvidia0 or self.module_loaded

    @property
    def absent_reason(self) -> str:
        where = (
            "no nvidia module in /proc/modules"
            if self.modules is not None
            else ("no /proc/modules and no /sys/module/nvidia")
        )
        return f"{NO_GPU_REASON} (no /dev/nvidia0, {where})"


def gpu_presence(host: Any) -> GpuPresence:
    return GpuPresence(
        dev_nvidia0=host.file("/dev/nvidia0").exists,
        modules=loaded_modules(host),
        sys_module=host.file("/sys/module/nvidia").exists,
    )


@dataclass
class Gpu:
    index: int
    name: str
    driver_version: str
    memory_total_mib: float
    persistence_mode: str


@dataclass
class Smi:
    path: str | None
    rc: int = -1
    text: str = ""
    gpus: list[Gpu] = field(default_factory=list)

    def require(self) -> list[Gpu]:
        if self.path is None:
            pytest.fail("nvidia-smi is not installed on the host, though it has an NVIDIA GPU")
        if self.rc != 0 or not self.gpus:
            pytest.fail(f"nvidia-smi did not answer (exit {self.rc}): {self.text[:500]}")
        return self.gpus


SMI_QUERY = "index,name,driver_version,memory.total,persistence_mode"


def parse_smi_csv(text: str) -> list[Gpu]:
    gpus = []
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 5:
            continue
        index, name, driver, mem, persistence = parts
        try:
            gpus.append(Gpu(int(index), name, driver, float(mem), persistence))
        except ValueError:
            continue
    return gpus


def query_smi(host: Any) -> Smi:
    path = find_command(host, "nvidia-smi")
    if path is None:
        return Smi(path=None)
    r = host.run("timeout 60 %s --query-gpu=%s --format=csv,noheader,nounits", path, SMI_QUERY)
    return Smi(path=path, rc=r.rc, text=output(r), gpus=parse_smi_csv(r.stdout))


# --- sockets ------------------------------------------------------------------------------

TCP_LISTEN = "0A"


@dataclass(frozen=True)
class Listener:
    ip: str
    port: int
    inode: int

    @property
    def loopback(self) -> bool:
        return is_loopback(self.ip)

    def __str__(self) -> str:
        return f"[{self.ip}]:{self.port}" if ":" in self.ip else f"{self.ip}:{self.port}"


def is_loopback(ip: str) -> bool:
    addr = ipaddress.ip_address(ip)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_loopback


def _hex_ip(hexaddr: str) -> str:
    raw = bytes.fromhex(hexaddr)
    # The kernel prints each 32-bit word in host order (little-endian on x86 and arm64).
    swapped = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(swapped))


def parse_proc_net_tcp(text: str) -> list[Listener]:
    """LISTEN sockets of a /proc/net/tcp or /proc/net/tcp6 table."""
    found = []
    for line in text.splitlines()[1:]:
        cols = line.split()
        if len(cols) < 10 or cols[3] != TCP_LISTEN:
            continue
        hexip, hexport = cols[1].split(":")
        found.append(Listener(_hex_ip(hexip), int(hexport, 16), int(cols[9])))
    return found


def parse_ss(text: str) -> list[Listener]:
    """`ss -Hltn` lines (fallback when /proc/net/tcp is unreadable); no inodes."""
    found = []
    for line in text.splitlines():
        cols = line.split()
        if len(cols) < 4:
            continue
        local = cols[3]
        ip, _, port = local.rpartition(":")
        ip = ip.strip("[]").split("%")[0]
        if ip == "*":
            ip = "0.0.0.0"
        try:
            found.append(Listener(str(ipaddress.ip_address(ip)), int(port), 0))
        except ValueError:
            continue
    return found


def tcp_listeners(host: Any) -> list[Listener]:
    tables = [host.file(p) for p in ("/proc/net/tcp", "/proc/net/tcp6")]
    if tables[0].exists:
        found: list[Listener] = []
        for t in tables:
            if t.exists:
                found += parse_proc_net_tcp(t.content_string)
        return found
    if find_command(host, "ss"):
        return parse_ss(host.check_output("ss -Hltn"))
    pytest.fail("cannot list listening sockets: no /proc/net/tcp and no ss on the host")


def parse_proc_comms(text: str) -> dict[int, str]:
    """`grep -H '' /proc/[0-9]*/comm` → {pid: comm}."""
    comms = {}
    for line in text.splitlines():
        m = re.match(r"/proc/(\d+)/comm:(.*)$", line)
        if m:
            comms[int(m.group(1))] = m.group(2).strip()
    return comms


def process_comms(host: Any) -> dict[int, str]:
    return parse_proc_comms(host.run("grep -H '' /proc/[0-9]*/comm 2>/dev/null").stdout)


def parse_fd_listing(text: str) -> dict[int, set[int]]:
    """`ls -l /proc/[0-9]*/fd` → {socket inode: {pids}}."""
    owners: dict[int, set[int]] = {}
    pid = None
    for line in text.splitlines():
        head = re.match(r"^/proc/(\d+)/fd:$", line.strip())
        if head:
            pid = int(head.group(1))
            continue
        m = re.search(r"socket:\[(\d+)\]", line)
        if m and pid is not None:
            owners.setdefault(int(m.group(1)), set()).add(pid)
    return owners


def socket_owners(root: Root) -> dict[int, set[int]]:
    """Which processes hold each socket inode (needs root to see every process's fds)."""
    return parse_fd_listing(root.run("ls -l /proc/[0-9]*/fd 2>/dev/null").stdout)


def describe(listener: Listener, owners: dict[int, set[int]], comms: dict[int, str]) -> str:
    pids = sorted(owners.get(listener.inode, ()))
    who = ", ".join(f"{comms.get(p, '?')}[{p}]" for p in pids) or "owner unknown"
    return f"{listener} ({who})"


# --- Ollama -------------------------------------------------------------------------------


def split_address(address: str) -> tuple[str, int]:
    """'127.0.0.1:11434' or '[::1]:11434' → (ip, port); raises ValueError."""
    m = re.fullmatch(r"\[([^\]]+)\]:(\d+)|([^:\[\]]+):(\d+)", address)
    if not m:
        raise ValueError(f"not an ip:port address: {address!r}")
    ip = m.group(1) or m.group(3)
    port = int(m.group(2) or m.group(4))
    return str(ipaddress.ip_address(ip)), port


def url_host(address: str) -> str:
    ip, port = split_address(address)
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def model_key(name: str) -> str:
    """Ollama names without a tag mean ':latest'."""
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


def bare_digest(digest: str) -> str:
    return digest.lower().removeprefix("sha256:")


def bake_record(host: Any, path: str) -> dict[str, str] | None:
    """{model: digest} of the bake's record on the host (pull-models.sh's models.json); None
    when the file is missing."""
    f = host.file(path)
    if not f.exists:
        return None
    try:
        entries = json.loads(f.content_string)
        return {model_key(e["name"]): e["digest"] for e in entries}
    except (ValueError, KeyError, TypeError) as e:
        pytest.fail(f"{path} is not the bake's record of models: {e}", pytrace=False)


def parse_ollama_versions(text: str) -> list[str]:
    """Versions in `ollama --version` output ('ollama version is X', 'client version is Y')."""
    return re.findall(r"version is v?(\S+)", text)


@dataclass
class Http:
    rc: int
    status: int
    body: str
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.rc == 0 and 200 <= self.status < 300

    def json(self) -> Any:
        return json.loads(self.body)

    def describe(self) -> str:
        if self.rc != 0:
            return f"curl exit {self.rc}: {self.error or self.body}"[:500]
        return f"HTTP {self.status}: {self.body[:300]}"


def curl(host: Any, url: str, body: dict[str, Any] | None = None, max_time: int = 10) -> Http:
    """An HTTP request made on the host (Ollama only listens on the host's loopback)."""
    marker = "\n__HTTP_STATUS__ "
    if body is None:
        r = host.run("curl -sS --max-time %s -w %s %s", str(max_time), marker + "%{http_code}", url)
    else:
        r = host.run(
            "curl -sS --max-time %s -w %s -H 'Content-Type: application/json' -d %s %s",
            str(max_time),
            marker + "%{http_code}",
            json.dumps(body),
            url,
        )
    text, _, status = r.stdout.rpartition(marker.strip("\n"))
    try:
        code = int(status.strip())
    except ValueError:
        code = 0
    return Http(rc=r.rc, status=code, body=text.strip(), error=r.stderr.strip())


# Polls on the host itself, so the moment of the first answer is measured there.
READY_SCRIPT = r"""
url=$1; tries=$2; n=0
while [ "$n" -lt "$tries" ]; do
  if curl -s -o /dev/null --max-time 2 "$url"; then
    echo "answered_after_failed_polls $n"; echo "uptime $(cut -d' ' -f1 /proc/uptime)"; exit 0
  fi
  n=$((n + 1)); sleep 1
done
echo "answered_after_failed_polls none"; echo "uptime $(cut -d' ' -f1 /proc/uptime)"
"""


@dataclass
class Readiness:
    answered: bool
    failed_polls: int  # polls that failed before the first answer
    uptime_at_answer_s: float | None
    waited_s: int


def wait_for_http(host: Any, url: str, wait_s: int) -> Readiness:
    """Polls url on the host each second until anything answers over HTTP."""
    r = host.run("sh -c %s _ %s %s", READY_SCRIPT, url, str(wait_s))
    fields = dict(line.split(" ", 1) for line in r.stdout.splitlines() if " " in line)
    polls = fields.get("answered_after_failed_polls", "none")
    if polls == "none":
        return Readiness(False, wait_s, None, wait_s)
    return Readiness(True, int(polls), float(fields["uptime"]), wait_s)


def wait_for_ollama(host: Any, address: str, wait_s: int) -> Readiness:
    return wait_for_http(host, f"http://{url_host(address)}/api/version", wait_s)


def ollama_pids(comms: dict[int, str]) -> list[int]:
    return sorted(pid for pid, comm in comms.items() if comm == "ollama")


def parse_environ(raw: str) -> dict[str, str]:
    env = {}
    for item in raw.split("\0"):
        key, sep, value = item.partition("=")
        if sep:
            env[key] = value
    return env


# Streams a generation on the host and stamps each chunk with the host's clock (bash's
# EPOCHREALTIME, no fork per line), so the time to first token does not include the
# round trips of the connection.
GENERATE_SCRIPT = r"""
set -o pipefail
body=$1; url=$2; max=$3
echo "START $EPOCHREALTIME"
curl -sS -N --max-time "$max" -H 'Content-Type: application/json' -d "$body" "$url" |
  while IFS= read -r line; do printf 'CHUNK %s %s\n' "$EPOCHREALTIME" "$line"; done
echo "CURL_RC ${PIPESTATUS[0]}"
echo "END $EPOCHREALTIME"
"""


@dataclass
class Generation:
    model: str
    loaded_before: bool | None = None  # in /api/ps before the generation (None: unknown)
    load_s: float | None = None  # the load this probe made first, when it was not loaded
    load_error: str = ""
    rc: int = -1
    error: str = ""
    text: str = ""
    done: bool = False
    elapsed_s: float | None = None
    ttft_s: float | None = None
    eval_count: int | None = None
    eval_duration_ns: int | None = None
    ps_entry: dict[str, Any] | None = None
    ps_error: str = ""

    @property
    def tokens_per_s(self) -> float | None:
        if self.eval_count and self.eval_duration_ns:
            return self.eval_count / (self.eval_duration_ns / 1e9)
        return None


def parse_generation(model: str, stdout: str) -> Generation:
    g = Generation(model=model)
    start = end = None
    pieces = []
    for line in stdout.splitlines():
        kind, _, rest = line.partition(" ")
        if kind == "START":
            start = _float(rest)
        elif kind == "END":
            end = _float(rest)
        elif kind == "CURL_RC":
            g.rc = int(rest.strip() or -1)
        elif kind == "CHUNK":
            stamp, _, payload = rest.partition(" ")
            try:
                chunk = json.loads(payload)
            except ValueError:
                g.error = g.error or f"not JSON from Ollama: {payload[:200]}"
                continue
            if "error" in chunk:
                g.error = str(chunk["error"])
            token = (chunk.get("response") or "") + (chunk.get("thinking") or "")
            if token:
                pieces.append(token)
                if g.ttft_s is None and start is not None and _float(stamp) is not None:
                    g.ttft_s = _float(stamp) - start  # type: ignore[operator]
            if chunk.get("done"):
                g.done = True
                g.eval_count = chunk.get("eval_count")
                g.eval_duration_ns = chunk.get("eval_duration")
    g.text = "".join(pieces)
    if start is not None and end is not None:
        g.elapsed_s = end - start
    return g


def _float(text: str) -> float | None:
    try:
        return float(text.strip())
    except ValueError:
        return None


def loaded_models(host: Any, address: str) -> tuple[set[str] | None, str]:
    """The models in GPU/CPU memory (/api/ps), or None and why it could not be asked."""
    ps = curl(host, f"http://{url_host(address)}/api/ps")
    if not ps.ok:
        return None, ps.describe()
    names = set()
    for entry in ps.json().get("models") or []:
        names |= {model_key(entry.get("name", "")), model_key(entry.get("model", ""))}
    return names, ""


# A model's first load reads gigabytes from a volume that may be fresh from its snapshot.
LOAD_WAIT_S = 900


def load(host: Any, address: str, model: str) -> tuple[float | None, str]:
    """Load a model without generating (a generate request with no prompt): (seconds, error)."""
    body = {"model": model}
    r = host.run(
        "bash -c %s _ %s %s %s",
        'start=$EPOCHREALTIME; curl -sS --fail-with-body --max-time "$3" -H "Content-Type:'
        ' application/json" -d "$1" "$2" >/dev/null || exit $?; echo "LOADED $start $EPOCHREALTIME"',
        json.dumps(body),
        f"http://{url_host(address)}/api/generate",
        str(LOAD_WAIT_S),
    )
    fields = r.stdout.split()
    if r.rc != 0 or len(fields) != 3:
        return None, f"loading {model} failed (exit {r.rc}): {output(r)[:300]}"
    start, end = _float(fields[1]), _float(fields[2])
    return (end - start if start is not None and end is not None else None), ""


def generation_request(model: str) -> dict[str, Any]:
    """The body of the generation the suite times (benchmarks/serve.py times the same one)."""
    return {
        "model": model,
        "prompt": "Why is the sky blue? Answer in one short paragraph.",
        "stream": True,
        "options": {"num_predict": 200, "temperature": 0, "seed": 42},
    }


def generate(host: Any, address: str, model: str, timeout_s: int) -> Generation:
    body = generation_request(model)
    url = f"http://{url_host(address)}/api/generate"
    # The budget is for a loaded model: a model not loaded yet is loaded first, timed apart.
    loaded, why = loaded_models(host, address)
    before = None if loaded is None else model_key(model) in loaded
    load_s, load_error = (None, "") if before in (True, None) else load(host, address, model)
    # curl gets a little more than the budget, so an overrun is measured, not cut short.
    r = host.run(
        "bash -c %s _ %s %s %s", GENERATE_SCRIPT, json.dumps(body), url, str(timeout_s + 30)
    )
    g = parse_generation(model, r.stdout)
    g.loaded_before, g.load_s, g.load_error = before, load_s, load_error or why
    if r.rc != 0 and not g.error:
        g.error = output(r)[:500]
    if g.rc not in (0, -1) and not g.error:
        g.error = f"curl exit {g.rc}: {r.stderr.strip()[:300]}"
    ps = curl(host, f"http://{url_host(address)}/api/ps")
    if not ps.ok:
        g.ps_error = ps.describe()
    else:
        for entry in ps.json().get("models") or []:
            if model_key(model) in {
                model_key(entry.get("name", "")),
                model_key(entry.get("model", "")),
            }:
                g.ps_entry = entry
    return g


OLLAMA_READY_WAIT_S = 120
NOT_INSTALLED_OLLAMA = (
    "ollama is not installed on the host (no `ollama` on PATH, in /usr/local/bin or /usr/bin): "
    "a baked image must have it"
)


class Ollama:
    """Ollama on the host. Tests call `require()` (or `up()`) first: on a baked image a missing
    Ollama is a defect, so the test fails (in its body, as a failure, not a setup error)."""

    def __init__(self, host: Any, expect: dict[str, Any]) -> None:
        self.host = host
        self.address: str = expect["ollama"]["address"]
        self.timeout_s = int(expect["ollama"]["generation_timeout_s"])
        self._path: str | bool | None = False  # False: not looked up yet
        self._ready: Readiness | None = None
        self._tags: dict[str, dict[str, Any]] | None = None
        self._generations: dict[str, Generation] = {}

    @property
    def path(self) -> str | None:
        if self._path is False:
            self._path = find_command(self.host, "ollama")
        return self._path  # type: ignore[return-value]

    def url(self, api: str) -> str:
        return f"http://{url_host(self.address)}{api}"

    def require(self) -> str:
        if self.path is None:
            pytest.fail(NOT_INSTALLED_OLLAMA, pytrace=False)
        if find_command(self.host, "curl") is None:
            pytest.fail(
                "curl is not installed on the host: the suite reaches Ollama on the host's "
                "loopback with curl",
                pytrace=False,
            )
        return self.path

    def up(self) -> Readiness:
        """Waits (once per session) until Ollama answers; fails if it never does."""
        self.require()
        if self._ready is None:
            self._ready = wait_for_ollama(self.host, self.address, OLLAMA_READY_WAIT_S)
        if not self._ready.answered:
            pytest.fail(
                f"Ollama does not answer on {self.address} (waited {self._ready.waited_s} s)",
                pytrace=False,
            )
        return self._ready

    def tags(self) -> dict[str, dict[str, Any]]:
        self.up()
        if self._tags is None:
            r = curl(self.host, self.url("/api/tags"))
            if not r.ok:
                pytest.fail(f"GET /api/tags failed: {r.describe()}", pytrace=False)
            models = r.json().get("models") or []
            self._tags = {model_key(m["name"]): m for m in models}
        return self._tags

    def generation(self, model: str) -> Generation:
        """One real generation per model per session, shared by the tests that judge it."""
        self.up()
        if model not in self._generations:
            self._generations[model] = generate(self.host, self.address, model, self.timeout_s)
        return self._generations[model]


# --- docker -------------------------------------------------------------------------------


@dataclass
class Docker:
    path: str | None
    daemon_ok: bool = False
    why_not: str = ""  # why the daemon cannot be asked, when the CLI is there

    def require(self) -> str:
        """No docker CLI: a defect of the image (fail). CLI without a daemon: skip."""
        if self.path is None:
            pytest.fail(
                "docker is not installed on the host: the UI image cannot be present",
                pytrace=False,
            )
        if not self.daemon_ok:
            pytest.skip(self.why_not)
        return self.path


def docker_state(host: Any, root: Root) -> Docker:
    path = find_command(host, "docker")
    if path is None:
        return Docker(path=None)
    if not root.available:
        return Docker(
            path=path, why_not=f"docker CLI is installed, but asking its daemon {root.why_not}"
        )
    r = root.run("timeout 30 %s info --format '{{.ServerVersion}}'", path)
    if r.rc == 0 and r.stdout.strip():
        return Docker(path=path, daemon_ok=True)
    detail = first_line(output(r)) or f"exit {r.rc}"
    return Docker(
        path=path, why_not=f"docker CLI is installed but no Docker daemon is reachable: {detail}"
    )


def env_read_pattern(var: str) -> str:
    """ERE (for grep -E in the image) matching reads of `var` or of any *OLLAMA* variable."""
    return "process\\.env(\\.|\\[[\"'])(" + var + "|[A-Za-z0-9_]*OLLAMA)[A-Za-z0-9_]*"


def parse_env_reads(text: str) -> set[str]:
    """`process.env.X` / `process.env["X"]` matches, one a line → {'X', ...}."""
    names = set()
    for line in text.splitlines():
        m = re.match(r"""process\.env(?:\.|\[["'])(\w+)""", line.strip())
        if m:
            names.add(m.group(1))
    return names


def parse_published_ports(text: str) -> list[tuple[str, str]]:
    """`docker ps --format '{{.Names}}\\t{{.Ports}}'` → [(container, host_ip:port->...)]
    for each mapping published on a host address."""
    found = []
    for line in text.splitlines():
        name, _, ports = line.partition("\t")
        for mapping in ports.split(","):
            mapping = mapping.strip()
            if "->" in mapping:
                found.append((name, mapping))
    return found


def published_ip(mapping: str) -> str:
    """'0.0.0.0:3000->3000/tcp' → '0.0.0.0'; ':::3000->3000/tcp' → '::'."""
    hostpart = mapping.split("->", 1)[0]
    ip = hostpart.rpartition(":")[0].strip("[]")
    return ip or "::"
