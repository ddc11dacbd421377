"""The image suite's inputs and outputs: what it is told to expect, what its report says.

In: build/NAME/expect.json, from the image definition and the AMI's tags (the contract is
tests/image/conftest.py's load_expectations). Out: the JUnit report and the timings file the
suite writes, read back into a verdict and one compact line of timings.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import catalog, render, userdata
from .config import ImageDef
from .errors import BakeryError

OLLAMA_ADDRESS = "127.0.0.1:11434"  # Ollama's own default; the image never exposes it
RECORD = "/var/lib/bakery/models.json"  # the bake's record of the models (pull-models.sh)
UI_IMAGE = userdata.UI_IMAGE  # the tag the bake gives the UI's container image
DIGEST_RE = re.compile(r"^(sha256:)?[0-9a-f]{64}$")
DRIVER_RE = re.compile(r"^\d+\.\d+(\.\d+)*$")
TAG_MAX = 256

REPO = render.REPO
SUITE = REPO / "tests" / "image"
BUILD = REPO / "build"


def expectations(
    image: ImageDef,
    ami: dict[str, Any] | None = None,
    *,
    gpu_name: str | None = None,
    booted_with_user_data: bool = False,
) -> dict[str, Any]:
    """What the suite checks the host against. The model digests and the UI image's ID come
    from the AMI's tags (null when the bake could not read them, e.g. a local bake)."""
    tags = catalog.tags_of(ami) if ami else {}

    def digest(model: str) -> str | None:
        value = tags.get(catalog.MODEL + model, "")
        return value if DIGEST_RE.match(value) else None

    recorded = catalog.versions_of(tags).get("nvidia", "")
    return {
        "image": image.name,
        "nvidia": None
        if image.nvidia is None  # a CPU image
        else {
            # The driver the bake found (a base's driver moves with its releases), if recorded.
            "driver_version": recorded if DRIVER_RE.match(recorded) else None,
            "driver_branch": image.nvidia.driver_branch if image.nvidia.install else None,
            "min_driver_branch": image.nvidia.min_driver_branch,
            "gpu_name": gpu_name,
            "min_gpu_memory_gib": image.verify.min_gpu_memory_gib,
        },
        "ollama": {
            "version": image.ollama.version,
            "address": OLLAMA_ADDRESS,
            "keep_alive": image.ollama.keep_alive,
            # BAKERY_ROOT prefixes the host's paths, as in the provisioning scripts and the
            # user-data: tests point it at a sandbox root served by local://.
            "record": os.environ.get("BAKERY_ROOT", "") + RECORD,
            "models": [{"name": name, "digest": digest(name)} for name in image.model_names],
            "generation_timeout_s": image.verify.generation_timeout_s,
        },
        "ui": {
            "image": UI_IMAGE,
            "id": tags.get(catalog.UI_IMAGE_ID) or None,  # the bake records it when it can
            "ollama_url_env": image.ui.ollama_url_env,
            "port": image.ui.port,
        },
        "min_free_disk_gib": image.verify.min_free_disk_gib,
        "playbooks": [{"name": p.path.name, "check": p.check} for p in image.playbooks],
        # The host ran the fleet's user-data at first boot: the UI runs, the models are loaded.
        "booted_with_user_data": booted_with_user_data,
    }


def write(path: Path, expect: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(expect, indent=2) + "\n")
    return path


@dataclass(frozen=True)
class Verdict:
    """The suite's JUnit report, judged: passed only if every check ran and passed."""

    tests: int
    failures: int
    errors: int
    skipped: int
    first_problem: (
        str | None
    )  # "file::test: message" of the first failing, erroring or skipped check
    sha256: str
    # Skipped checks that carry a marker the caller accepts as "cannot run here" (a local VM
    # has no GPU); they count as skipped, never as passed.
    skipped_allowed: int = 0

    @property
    def passed(self) -> bool:
        return (
            self.tests > 0
            and self.failures == self.errors == 0
            and self.skipped == self.skipped_allowed
        )

    @property
    def counts(self) -> str:
        ok = self.tests - self.failures - self.errors - self.skipped
        return (
            f"{ok} passed, {self.failures} failed, {self.errors} errors, {self.skipped} skipped"
            f" of {self.tests}"
        )


def verdict_record(v: Verdict | None) -> dict[str, Any] | None:
    """The verdict as build/NAME/verify.json holds it."""
    if v is None:
        return None
    return {
        "passed": v.passed,
        "tests": v.tests,
        "failures": v.failures,
        "errors": v.errors,
        "skipped": v.skipped,
        "skipped_cannot_run_here": v.skipped_allowed,
        "first_problem": v.first_problem,
        "report_sha256": v.sha256,
    }


def _check_name(case: ET.Element) -> str:
    module = case.get("classname", "")
    path = module.replace(".", "/") + ".py" if module else "?"
    return f"{path}::{case.get('name', '?')}"


def _first_line(text: str | None) -> str:
    for line in (text or "").splitlines():
        if line.strip():
            return line.strip()
    return ""


def _markers(case: ET.Element) -> set[str]:
    """The markers tests/image/conftest.py records as a JUnit property."""
    for prop in case.iter("property"):
        if prop.get("name") == "markers":
            return set(filter(None, (prop.get("value") or "").split(",")))
    return set()


def read_verdict(report: Path, allow_skipped: tuple[str, ...] = ()) -> Verdict:
    """Read a pytest JUnit report (xunit2). A missing or unreadable report is an error, not a
    verdict: the suite did not get to judge the host. Skips of checks marked with one of
    `allow_skipped` do not fail the verdict (they are still counted and reported)."""
    try:
        data = report.read_bytes()
        root = ET.fromstring(data)
    except OSError as e:
        raise BakeryError(f"the image suite wrote no report at {report}: {e.strerror}") from None
    except ET.ParseError as e:
        raise BakeryError(f"the image suite's report {report} is not valid XML: {e}") from None
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    tests = failures = errors = skipped = allowed = 0
    first_failed: str | None = None
    first_skipped: str | None = None
    for suite in suites:
        for case in suite.iter("testcase"):
            tests += 1
            for kind in ("failure", "error", "skipped"):
                found = case.find(kind)
                if found is None:
                    continue
                failures += kind == "failure"
                errors += kind == "error"
                skipped += kind == "skipped"
                why = _first_line(found.get("message")) or _first_line(found.text) or kind
                if kind == "skipped" and _markers(case) & set(allow_skipped):
                    allowed += 1
                elif kind == "skipped" and first_skipped is None:
                    first_skipped = f"{_check_name(case)}: skipped: {why}"
                elif kind != "skipped" and first_failed is None:
                    first_failed = f"{_check_name(case)}: {why}"
                break
    first = first_failed or first_skipped  # a failure says more than a skip
    return Verdict(
        tests, failures, errors, skipped, first, hashlib.sha256(data).hexdigest(), allowed
    )


def read_timings(path: Path) -> dict[str, Any]:
    """The suite's timings file; {} when it wrote none (a run that ended early)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def compact_timings(timings: dict[str, Any], **extra: float | None) -> str:
    """'ready=38s cold=95s ttft=0.41s tps=92.3' (a '?' where the suite could not measure)."""

    def num(value: Any, fmt: str, unit: str = "") -> str:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return f"{value:{fmt}}{unit}"
        return "?"

    parts = [
        f"ready={num(timings.get('boot_to_ollama_ready_s'), '.0f', 's')}",
        f"cold={num(timings.get('cold_load_s'), '.0f', 's')}",
        f"ttft={num(timings.get('ttft_s'), '.2f', 's')}",
        f"tps={num(timings.get('tokens_per_s'), '.1f')}",
    ]
    parts += [f"{k}={num(v, '.0f', 's')}" for k, v in extra.items()]
    return " ".join(parts)


def clip(value: str, limit: int = TAG_MAX) -> str:
    """A tag value AWS accepts (at most 256 characters)."""
    return value if len(value) <= limit else value[: limit - 3] + "..."


# --- files of a run -----------------------------------------------------------------------


@dataclass(frozen=True)
class Paths:
    directory: Path

    @property
    def expect(self) -> Path:
        return self.directory / "expect.json"

    @property
    def timings(self) -> Path:
        return self.directory / "timings.json"

    @property
    def report(self) -> Path:
        return self.directory / "verify-report.xml"

    @property
    def record(self) -> Path:
        return self.directory / "verify.json"

    def fresh(self) -> Paths:
        """No report or timings of an earlier run can be mistaken for this one's."""
        self.directory.mkdir(parents=True, exist_ok=True)
        for path in (self.timings, self.report, self.record):
            path.unlink(missing_ok=True)
        return self


def paths_for(image: ImageDef) -> Paths:
    return Paths(BUILD / image.name)


def rel(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


# --- the image suite ----------------------------------------------------------------------


def suite_command(
    host_url: str, paths: Paths, *, ssh_config: Path | None = None, identity: Path | None = None
) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "pytest",
        str(SUITE.relative_to(REPO)),
        f"--hosts={host_url}",
        f"--expect={paths.expect}",
        f"--timings={paths.timings}",
        f"--junitxml={paths.report}",
        "-p",
        "no:cacheprovider",
    ]
    if ssh_config:
        command.append(f"--ssh-config={ssh_config}")
    if identity:
        command.append(f"--ssh-identity-file={identity}")
    return command


def run_pytest(command: list[str], timeout_s: float) -> int:
    """The image suite, its output streamed to ours; its exit status."""
    if not SUITE.is_dir():
        raise BakeryError(f"the image suite is not at {SUITE} (verify runs from a checkout)")
    try:
        return subprocess.run(command, cwd=REPO, timeout=timeout_s, check=False).returncode
    except subprocess.TimeoutExpired:
        raise BakeryError(f"the image suite ran past {timeout_s:.0f} s and was stopped") from None


RunSuite = Callable[[list[str], float], int]


def judge(paths: Paths, returncode: int, allow_skipped: tuple[str, ...] = ()) -> Verdict:
    if not paths.report.exists():
        raise BakeryError(
            f"the image suite ended (exit {returncode}) without a report at {rel(paths.report)}: see its output above"
        )
    verdict = read_verdict(paths.report, allow_skipped)
    if verdict.tests == 0:
        raise BakeryError(
            f"the image suite ran no checks (exit {returncode}); see its output above"
        )
    return verdict
