#!/usr/bin/env python3
"""The tiny test model served by the real Ollama on this machine's CPU: import, cold load, first
token and tokens/s, each measured here and, for the generation, beside the same figures as the
image tests compute them (tests/image/image_probe.py's generate(), the code that makes the
ttft_s and tokens_per_s a verify run tags on an AMI).

    .venv/bin/python benchmarks/serve.py [--runs 5]

Not a test: it prints tables. The model is tests/tiny_gguf.py's (a 441 KB qwen2 with random
weights) and the Ollama is .tools/ollama's (./.ci/setup makes it): the figures say how this
machine's CPU serves a tiny model through the product's own bake steps, not how a GPU serves
deepseek-r1:7b. How they are taken:
  bake steps   wall time of the real install-ollama.sh and pull-models.sh in a sandbox root,
               with the environment the rendered Packer gives them (as the tests run them)
  import       `ollama create` from a Modelfile whose FROM is the GGUF, on an empty store
  cold load    a server just started, then the user-data's preload request (keep_alive -1):
               its wall time, and the runner's start as Ollama logs it ("llama runner started")
  generation   the image suite's request (200 tokens, temperature 0) on a loaded model.
               Here: Python's clock, first token = the first chunk with text, tokens/s = the
               tokens after the first over the time from the first chunk to the last. The image
               tests: bash's clock on the host per chunk, tokens/s = eval_count / eval_duration.
               Runs alternate between the two methods.
  one thread   the same generation with num_thread 1: ggml's threads wait on each other, which
               costs most on a machine whose cores are busy with other work.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "src"), str(REPO / "tests"), str(REPO / "tests" / "image")]

import image_probe as probe  # noqa: E402  (the image suite's own code)
import pytest  # noqa: E402
import testinfra  # noqa: E402
import tiny_gguf  # noqa: E402
import tooling  # noqa: E402
from provision import Sandbox  # noqa: E402

from bakery import config  # noqa: E402

LOCAL = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def bake(work: Path) -> tuple[Any, Path, tooling.OllamaRelease, dict[str, float]]:
    """The tiny image's Ollama steps, for real, in a sandbox: (image, root, release, seconds)."""
    release = tooling.ollama_release()
    gguf = work / "tiny-qwen2.gguf"
    sha = tiny_gguf.write(gguf)
    image = config.load(tooling.tiny_definition(work, release, gguf, sha))
    (work / "bake").mkdir()
    sandbox = Sandbox(work / "bake")
    seconds = {}
    for script in ("install-ollama.sh", "pull-models.sh"):
        env = {
            **tooling.step_env(image, script),
            "BAKERY_OLLAMA_HOST": f"127.0.0.1:{tooling.free_port()}",
        }
        seconds[script], _ = timed(lambda s=script, e=env: sandbox.run_ok(s, **e))
    return image, sandbox.root, release, seconds


def server(root: Path, log: Path, **extra: str) -> tooling.OllamaServer:
    return tooling.OllamaServer(root, f"127.0.0.1:{tooling.free_port()}", log, extra).start()


def import_once(root: Path, gguf: Path, work: Path) -> float:
    """`ollama create` of the GGUF on an empty model store."""
    home = Path(tempfile.mkdtemp(dir=work, prefix="import-"))
    s = server(root, work / "import.log", HOME=str(home))
    try:
        (home / "Modelfile").write_text(f"FROM {gguf}\n")
        command = [str(root / "usr/bin/ollama"), "create", "tiny", "-f", str(home / "Modelfile")]
        env = {**os.environ, "OLLAMA_HOST": s.address, "HOME": str(home)}
        seconds, _ = timed(
            lambda: subprocess.run(command, env=env, capture_output=True, check=True)
        )
        return seconds
    finally:
        s.stop()


def cold_load_once(root: Path, model: str, work: Path) -> tuple[float, float]:
    """A server just started, then the preload: (wall s, the runner start Ollama logs, s)."""
    log = Path(tempfile.mkstemp(dir=work, prefix="cold-", suffix=".log")[1])
    s = server(root, log)
    try:
        seconds, answer = timed(lambda: s.post("/api/generate", {"model": model, "keep_alive": -1}))
        assert answer.get("done_reason") == "load", answer
    finally:
        s.stop()
    started = re.findall(r"llama runner started in ([0-9.]+) seconds", log.read_text())
    assert started, f"no 'llama runner started' line in {log}"
    return seconds, float(started[0])


def stream(address: str, body: dict[str, Any]) -> tuple[dict[str, float], probe.Generation]:
    """One streamed generation, timed on Python's clock: this script's figures, and the image
    tests' computation (probe.parse_generation) of the same chunks with the same stamps."""
    request = urllib.request.Request(
        f"http://{address}/api/generate",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    lines = [f"START {time.time():.6f}"]
    first = last = None
    tokens = 0
    with LOCAL.open(request, timeout=600) as response:
        for raw in response:
            now = time.time()
            lines.append(f"CHUNK {now:.6f} {raw.decode().strip()}")
            chunk = json.loads(raw)
            if chunk.get("response") or chunk.get("thinking"):
                first = now if first is None else first
                last = now
            tokens = chunk.get("eval_count", tokens)
    lines += ["CURL_RC 0", f"END {time.time():.6f}"]
    assert first is not None and last is not None, "no text was streamed"
    start = float(lines[0].split()[1])
    figures = {
        "ttft_s": first - start,
        # Tokens after the first over the time they took to arrive.
        "tokens_per_s": (tokens - 1) / (last - first) if last > first else float("nan"),
        "tokens": tokens,
        "elapsed_s": float(lines[-1].split()[1]) - start,
    }
    return figures, probe.parse_generation(body["model"], "\n".join(lines))


def spread(values: list[float], fmt: str) -> str:
    return "  ".join(f"{v:{fmt}}" for v in (statistics.median(values), min(values), max(values)))


def cpu_label() -> str:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown CPU",
    )
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"{model}, {os.cpu_count()} logical cores, load average {load} at the start"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="repetitions of each figure")
    runs = parser.parse_args().runs
    origin = (tooling.OLLAMA_TOOLS / "ollama-linux-amd64.tgz").resolve().parent / "origin"
    with tempfile.TemporaryDirectory(prefix="bakery-serve-bench-") as tmp:
        work = Path(tmp)
        try:
            image, root, release, bake_s = bake(work)
        except pytest.fail.Exception as e:  # tooling's "run ./.ci/setup"
            sys.exit(f"error: {e}")
        model = image.model_names[0]
        gguf = work / "tiny-qwen2.gguf"
        made = origin.read_text().strip() if origin.exists() else "unknown origin"
        print(
            f"CPU, tiny model: Ollama {release.version} ({made}) serving {model}"
            f" (tests/tiny_gguf.py: qwen2, {tiny_gguf.BLOCKS} blocks, embedding {tiny_gguf.EMBED},"
            f" F32, random weights, {gguf.stat().st_size // 1024} KB), {runs} runs each"
        )
        print(f"machine: {cpu_label()}; no GPU is used")
        print()

        imports = [import_once(root, gguf, work) for _ in range(runs)]
        loads = [cold_load_once(root, model, work) for _ in range(runs)]
        print(f"{'step':<44} {'median':>7}  {'min':>7}  {'max':>7}")
        print(f"{'bake: install-ollama.sh (one run)':<44} {bake_s['install-ollama.sh']:>7.3f}s")
        print(
            f"{'bake: pull-models.sh (one run, serve+import)':<44} {bake_s['pull-models.sh']:>7.3f}s"
        )
        print(f"{'import: ollama create from the GGUF':<44} {spread(imports, '7.3f')}  s")
        print(
            f"{'cold load: preload request, wall':<44} {spread([w for w, _ in loads], '7.3f')}  s"
        )
        print(
            f"{'cold load: runner start, as Ollama logs it':<44} {spread([d for _, d in loads], '7.3f')}  s"
        )
        print()

        s = server(root, work / "warm.log")
        host = testinfra.get_host("local://")
        try:
            s.post("/api/generate", {"model": model, "keep_alive": -1})
            body = probe.generation_request(model)
            here: list[tuple[dict[str, float], probe.Generation]] = []
            suite: list[probe.Generation] = []
            for _ in range(runs):
                here.append(stream(s.address, body))
                g = probe.generate(host, s.address, model, image.verify.generation_timeout_s)
                assert not g.error and g.ttft_s is not None and g.tokens_per_s, g
                suite.append(g)
            one_thread = {**body, "options": {**body["options"], "num_thread": 1}}
            one = [stream(s.address, one_thread)[1] for _ in range(runs)]
        finally:
            s.stop()
        tokens = int(here[0][0]["tokens"])
        print(f"generation of {tokens} tokens (loaded model)     first token (s)          tokens/s")
        print(
            f"{'':<44} {'median':>6}  {'min':>6}  {'max':>6}  {'median':>8}  {'min':>8}  {'max':>8}"
        )
        rows = [
            (
                "this script: wall clock",
                [f["ttft_s"] for f, _ in here],
                [f["tokens_per_s"] for f, _ in here],
            ),
            (
                "image tests' computation, same streams",
                [g.ttft_s for _, g in here],
                [g.tokens_per_s for _, g in here],
            ),
            (
                "image tests' probe.generate (own runs)",
                [g.ttft_s for g in suite],
                [g.tokens_per_s for g in suite],
            ),
            (
                "num_thread 1 (image tests' computation)",
                [g.ttft_s for g in one],
                [g.tokens_per_s for g in one],
            ),
        ]
        for label, ttft, tps in rows:
            print(f"{label:<44} {spread(ttft, '6.3f')}  {spread(tps, '8.1f')}")  # type: ignore[arg-type]
        ratios = [g.tokens_per_s / f["tokens_per_s"] for f, g in here]  # type: ignore[operator]
        print(
            "image tests' tokens/s (eval_count / eval_duration) over this script's wall-clock rate,"
            f" per stream: median {statistics.median(ratios):.3f}"
            f" (min {min(ratios):.3f}, max {max(ratios):.3f})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
