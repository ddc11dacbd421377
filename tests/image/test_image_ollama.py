"""Ollama as the image serves it: pinned version, systemd unit, loopback only, keep-alive,
the baked models with their recorded digests, a real generation (on whatever the host has:
its time budget and tokens/s hold on a CPU too), and the model in GPU memory.

On a baked image Ollama's absence is a defect, so every test here starts with
`ollama.require()` (or `ollama.up()`) and fails with "ollama is not installed" when the
binary is missing. Checks that need a running systemd skip when PID 1 is something else.
HTTP calls run `curl` on the host: Ollama only listens on the host's loopback.
"""

from __future__ import annotations

import re
from typing import Any

import image_probe as probe
import pytest

UNIT = "ollama.service"


def test_ollama_version(host: Any, ollama: probe.Ollama, expect: dict[str, Any]) -> None:
    path = ollama.require()
    wanted = expect["ollama"]["version"]
    r = host.run("OLLAMA_HOST=%s %s --version", ollama.address, path)
    text = probe.output(r)
    versions = probe.parse_ollama_versions(text)
    assert versions, f"`ollama --version` reports no version (exit {r.rc}): {text[:300]}"
    assert set(versions) == {wanted}, f"expected Ollama {wanted}; `ollama --version`: {text}"


def test_ollama_unit_enabled(
    host: Any, ollama: probe.Ollama, systemd_skip_reason: str | None
) -> None:
    ollama.require()
    # `systemctl is-enabled` reads unit files: it works without a running systemd.
    systemctl = probe.find_command(host, "systemctl")
    if systemctl is None:
        pytest.skip(
            f"{systemd_skip_reason or 'systemd is PID 1'}, and there is no systemctl to read "
            "unit files with"
        )
    r = host.run("%s is-enabled %s", systemctl, UNIT)
    assert r.stdout.strip() == "enabled", f"{UNIT} is not enabled: {probe.output(r)}"


def test_ollama_unit_active(
    host: Any, ollama: probe.Ollama, systemd_skip_reason: str | None
) -> None:
    ollama.require()
    if systemd_skip_reason:
        pytest.skip(systemd_skip_reason)
    r = host.run("systemctl is-active %s", UNIT)
    status = host.run("systemctl status --no-pager -n 20 %s", UNIT).stdout[-1500:]
    assert r.stdout.strip() == "active", f"{UNIT} is {r.stdout.strip() or 'unknown'}: {status}"


def _ollama_serve_pid(
    host: Any, root: probe.Root, ollama: probe.Ollama, comms: dict[int, str]
) -> int:
    """The `ollama serve` that listens on the expected address (the first one, when the
    sockets' owners cannot be read)."""
    serves = [
        pid
        for pid in probe.ollama_pids(comms)
        if " serve" in " " + host.run("tr '\\0' ' ' < /proc/%s/cmdline", str(pid)).stdout
    ]
    if not serves:
        pytest.fail("no `ollama serve` process runs on the host", pytrace=False)
    ip, port = probe.split_address(ollama.address)
    if root.available:
        owners = probe.socket_owners(root)
        for listener in probe.tcp_listeners(host):
            if (listener.ip, listener.port) == (ip, port):
                holders = [pid for pid in serves if pid in owners.get(listener.inode, ())]
                if holders:
                    return holders[0]
    return serves[0]


def test_ollama_keep_alive(
    host: Any,
    root: probe.Root,
    ollama: probe.Ollama,
    comms: dict[int, str],
    expect: dict[str, Any],
) -> None:
    """The server runs with the configured OLLAMA_KEEP_ALIVE (read from its environment)."""
    ollama.require()
    pid = _ollama_serve_pid(host, root, ollama, comms)
    wanted = expect["ollama"]["keep_alive"]
    value = probe.parse_environ(root.run("cat /proc/%s/environ", str(pid)).stdout).get(
        "OLLAMA_KEEP_ALIVE"
    )
    assert value is not None, (
        f"OLLAMA_KEEP_ALIVE is not set for `ollama serve` (pid {pid}): models unload after "
        f"Ollama's default of 5m, expected {wanted}"
    )
    both_negative = value.startswith("-") and wanted.startswith("-")
    assert value == wanted or both_negative, f"OLLAMA_KEEP_ALIVE={value}, expected {wanted}"


def test_ollama_listens_on_expected_address(
    root: probe.Root,
    ollama: probe.Ollama,
    listeners: list[probe.Listener],
    comms: dict[int, str],
) -> None:
    ollama.require()
    ip, port = probe.split_address(ollama.address)
    owners = probe.socket_owners(root)
    hits = [lst for lst in listeners if lst.ip == ip and lst.port == port]
    assert hits, f"nothing listens on {ollama.address}; listening: " + (
        ", ".join(probe.describe(lst, owners, comms) for lst in listeners) or "nothing"
    )
    holders = {comms.get(pid) for lst in hits for pid in owners.get(lst.inode, ())}
    assert "ollama" in holders, (
        f"{ollama.address} is held by "
        + ", ".join(probe.describe(lst, owners, comms) for lst in hits)
        + ", not by ollama"
    )


def test_ollama_listens_on_no_other_address(
    root: probe.Root,
    ollama: probe.Ollama,
    listeners: list[probe.Listener],
    comms: dict[int, str],
) -> None:
    """Loopback only: no socket of an ollama process (its runners use other loopback ports),
    and nothing on Ollama's port, listens on a non-loopback address."""
    ollama.require()
    _, port = probe.split_address(ollama.address)
    pids = set(probe.ollama_pids(comms))
    if not pids:
        pytest.fail(
            "no ollama process runs on the host: cannot tell where it listens", pytrace=False
        )
    owners = probe.socket_owners(root)
    exposed = [
        lst
        for lst in listeners
        if not lst.loopback and (owners.get(lst.inode, set()) & pids or lst.port == port)
    ]
    assert not exposed, "Ollama is reachable beyond loopback: " + ", ".join(
        probe.describe(lst, owners, comms) for lst in exposed
    )


def _journal_listening_s(root: probe.Root) -> float | None:
    r = root.run(
        "journalctl -b -u %s -o short-monotonic --no-pager 2>/dev/null | grep -m1 'Listening on'",
        UNIT,
    )
    m = re.match(r"^\[\s*([0-9.]+)\]", r.stdout.strip())
    return float(m.group(1)) if m else None


def _active_enter_s(host: Any) -> float | None:
    r = host.run("systemctl show -p ActiveEnterTimestampMonotonic --value %s", UNIT)
    value = r.stdout.strip()
    return int(value) / 1e6 if r.rc == 0 and value.isdigit() and int(value) > 0 else None


def _process_start_s(host: Any, pid: int) -> float | None:
    stat = host.file(f"/proc/{pid}/stat").content_string
    ticks = host.run("getconf CLK_TCK").stdout.strip()
    fields = stat.rpartition(")")[2].split()
    if not ticks.isdigit() or len(fields) < 20:
        return None
    return int(fields[19]) / int(ticks)  # field 22 of stat: start, in ticks after boot


@pytest.mark.slow
def test_ollama_ready_after_boot(
    host: Any,
    root: probe.Root,
    ollama: probe.Ollama,
    comms: dict[int, str],
    systemd_skip_reason: str | None,
    timings: dict[str, Any],
) -> None:
    """Ollama answers (waiting for it if the host just booted), and boot → ready is recorded.
    Only the generation test asserts against a budget."""
    ready = ollama.up()
    value = source = None
    if systemd_skip_reason is None:
        if root.available:
            value = _journal_listening_s(root)
            source = "journal: first 'Listening on' of ollama.service this boot"
        if value is None:
            value = _active_enter_s(host)
            source = "systemd: ActiveEnterTimestampMonotonic of ollama.service"
    if value is None and ready.failed_polls > 0:
        value = ready.uptime_at_answer_s
        source = "uptime at the first answer to /api/version (polled each second)"
    if value is None:
        pids = probe.ollama_pids(comms)
        value = _process_start_s(host, pids[0]) if pids else None
        source = "start of the ollama process (/proc/PID/stat), as systemd's ActiveEnter"
    if value is None:
        pytest.skip(
            "Ollama answers, but boot → ready is not measurable here: "
            f"{systemd_skip_reason or 'no journal line or unit timestamp'}, and it already "
            "answered at the first poll"
        )
    timings["values"]["boot_to_ollama_ready_s"] = round(value, 3)
    timings["notes"]["boot_to_ollama_ready_source"] = source


def test_model_present(model: dict[str, Any], ollama: probe.Ollama) -> None:
    have = ollama.tags()
    assert probe.model_key(model["name"]) in have, (
        f"{model['name']} is not in /api/tags; present: {sorted(have) or 'none'}"
    )


def test_model_digest(model: dict[str, Any], ollama: probe.Ollama) -> None:
    ollama.require()
    if model.get("digest") is None:
        pytest.skip(
            f"no digest recorded for {model['name']}: its presence is checked by "
            "test_model_present, its digest is not checked"
        )
    entry = ollama.tags().get(probe.model_key(model["name"]))
    assert entry is not None, f"{model['name']} is not in /api/tags"
    assert probe.bare_digest(entry.get("digest", "")) == probe.bare_digest(model["digest"]), (
        f"{model['name']} has digest {entry.get('digest')}, recorded {model['digest']}"
    )


def test_model_digest_is_the_bakes(
    host: Any, model: dict[str, Any], ollama: probe.Ollama, expect: dict[str, Any]
) -> None:
    """The digest /api/tags reports is the one the bake recorded on the image
    (/var/lib/bakery/models.json, written by pull-models.sh): the model was not changed since."""
    ollama.require()
    path = expect["ollama"]["record"]
    recorded = probe.bake_record(host, path)
    if recorded is None:
        pytest.fail(f"{path} is missing: the bake writes it (pull-models.sh)", pytrace=False)
    name = probe.model_key(model["name"])
    assert name in recorded, (
        f"{model['name']} is not in the bake's record {path}; it lists {sorted(recorded) or 'none'}"
    )
    entry = ollama.tags().get(name)
    assert entry is not None, f"{model['name']} is not in /api/tags"
    assert probe.bare_digest(entry.get("digest", "")) == probe.bare_digest(recorded[name]), (
        f"{model['name']} has digest {entry.get('digest')}, the bake recorded {recorded[name]} in {path}"
    )


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


@pytest.mark.slow
def test_generation_answers_within_budget(
    model: dict[str, Any],
    ollama: probe.Ollama,
    expect: dict[str, Any],
    timings: dict[str, Any],
) -> None:
    """A real streamed generation of a loaded model: non-empty text within
    generation_timeout_s. A model not loaded yet is loaded first and that load timed apart
    (load_s): the budget is not spent on reading weights. Records the time to first token (host
    clock) and tokens/s (eval_count / eval_duration)."""
    budget = expect["ollama"]["generation_timeout_s"]
    g = ollama.generation(model["name"])
    measured = {
        "loaded_before": g.loaded_before,
        "load_s": _round(g.load_s, 3),
        "ttft_s": _round(g.ttft_s, 3),
        "tokens_per_s": _round(g.tokens_per_s, 2),
        "elapsed_s": _round(g.elapsed_s, 3),
        "eval_count": g.eval_count,
    }
    timings["per_model"][model["name"]] = measured
    if model["name"] == expect["ollama"]["models"][0]["name"]:  # flat values: first model
        timings["values"]["ttft_s"] = measured["ttft_s"]
        timings["values"]["tokens_per_s"] = measured["tokens_per_s"]
        if g.ttft_s is None:
            timings["notes"]["ttft_s"] = "no token chunk was timed: " + (g.error or "no text")
        if g.tokens_per_s is None:
            timings["notes"]["tokens_per_s"] = "no eval_count/eval_duration in the last chunk"
    assert not g.load_error, (
        f"{model['name']} could not be loaded before generating: {g.load_error}"
    )
    assert not g.error, f"generation with {model['name']} failed: {g.error}"
    assert g.done and g.text.strip(), f"{model['name']} returned no text (done={g.done})"
    assert g.elapsed_s is not None and g.elapsed_s <= budget, (
        f"{model['name']} took {g.elapsed_s} s, budget {budget} s"
    )


@pytest.mark.gpu
@pytest.mark.slow
def test_model_fully_on_gpu(model: dict[str, Any], ollama: probe.Ollama) -> None:
    """After a real generation, /api/ps shows the whole model in VRAM (no CPU fallback)."""
    g = ollama.generation(model["name"])
    assert not g.ps_error, f"GET /api/ps failed: {g.ps_error}"
    assert g.ps_entry is not None, f"{model['name']} is not loaded after generating (/api/ps)"
    size, vram = g.ps_entry.get("size", 0), g.ps_entry.get("size_vram", 0)
    assert size > 0, f"/api/ps reports size {size} for {model['name']}"
    if vram == 0:
        pytest.fail(
            f"{model['name']} runs on the CPU (size_vram 0 of {size} bytes): the CPU fallback "
            "of an Ollama that started before the NVIDIA devices existed?",
            pytrace=False,
        )
    assert vram == size, f"{model['name']} is only partly on the GPU: {vram} of {size} bytes"
