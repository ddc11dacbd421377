#!/usr/bin/env python3
"""The mutation pass over the core modules, module by module, with mutmut.

    .venv/bin/pip install -e '.[mutation]'
    nice -n 19 .venv/bin/python benchmarks/mutants.py                  # every core module
    nice -n 19 .venv/bin/python benchmarks/mutants.py fingerprint cleanup distribute.require_verified
    .venv/bin/python benchmarks/mutants.py --budget-minutes 40        # what fits; the rest "not run"
    .venv/bin/python benchmarks/mutants.py --no-run                   # the report of what mutants/ holds

Not a test: it prints a table and writes build/mutation/report.md (and one mutmut log per
target). A target is a module of src/bakery (`cleanup`) or one function of it
(`publish._source`, `distribute.Targets.minus`). mutmut copies the package and the files the
tests read into mutants/, records which tests call each function (one run of the tests that
[tool.mutmut] in pyproject.toml selects: the in-process ones), then runs each mutant against
only the tests that called its function. A test that runs `invoke` in a subprocess imports the
unmutated package and cannot count here; mutants reached only that way are "no tests".

score = killed / (killed + survived), timeouts counted as killed. Survivors are listed with
their diff; those named in benchmarks/mutants-triage.txt (one `MUTANT reason` a line) are
marked triaged, so a reader sees at once which ones nobody has looked at.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TRIAGE = Path(__file__).with_name("mutants-triage.txt")
REPORT = REPO / "build" / "mutation" / "report.md"  # the scheduled job's artifact holds its folder
# Most important first: a budget that runs out leaves the least important ones not run.
CORE = [
    "fingerprint", "cleanup", "distribute", "share", "publish", "catalog",
    "config", "spot", "prune", "gc", "bake",
]  # fmt: skip
KILLED = {"killed", "timeout", "caught by type check"}
# The tests run in mutmut's copy (mutants/), which has no .tools: they find its Packer on PATH.
ENV = {**os.environ, "PATH": os.pathsep.join([str(REPO / ".tools" / "bin"), os.environ["PATH"]])}


@dataclass
class Target:
    name: str
    status: str = "not run"  # "ran" | "not run" | "failed"
    counts: Counter[str] = field(default_factory=Counter)
    survivors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def module(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def pattern(self) -> str:
        """mutmut's names: bakery.MODULE.x_FUNC__mutmut_N, methods as xǁCLASSǁMETHOD."""
        module, _, function = self.name.partition(".")
        if not function:
            return f"bakery.{module}.*"
        mangled = "ǁ".join(function.split("."))
        mangled = f"xǁ{mangled}" if "." in function else f"x_{mangled}"
        return f"bakery.{module}.{mangled}__mutmut_*"

    @property
    def arguments(self) -> list[str]:
        """For one function, its name with a star: mutmut then runs only its tests clean
        first (a pattern that names no function has it run them all). The star also takes in
        functions whose names start with this one's; the report counts this one's alone."""
        if "." not in self.name:
            return [self.pattern]
        return [self.pattern.removesuffix("__mutmut_*") + "*"]

    @property
    def killed(self) -> int:
        return sum(self.counts[s] for s in KILLED)

    @property
    def score(self) -> float | None:
        tested = self.killed + self.counts["survived"]
        return self.killed / tested if tested else None


def statuses(target: Target) -> dict[str, str]:
    from mutmut.stats import status_by_exit_code

    meta = REPO / "mutants" / "src" / "bakery" / f"{target.module}.py.meta"
    codes = json.loads(meta.read_text())["exit_code_by_key"]
    return {
        name: status_by_exit_code[code]
        for name, code in codes.items()
        if fnmatch.fnmatchcase(name, target.pattern)
    }


def read(target: Target) -> None:
    """The results mutants/ holds for the target, from this or an earlier run."""
    found = statuses(target)
    target.counts = Counter(found.values())
    target.survivors = sorted((n for n, s in found.items() if s == "survived"), key=_natural)
    unchecked = target.counts.pop("not checked", 0)
    target.status = "not run" if unchecked == len(found) else "ran"
    if target.status == "ran" and unchecked:
        target.status = f"ran {len(found) - unchecked} of {len(found)}"
        target.counts["not checked"] = unchecked


def run(target: Target, jobs: int, logs: Path) -> None:
    started = time.monotonic()
    log = logs / f"{target.name}.log"
    with log.open("w") as out:
        done = subprocess.run(
            [sys.executable, "-m", "mutmut", "run", "--max-children", str(jobs), *target.arguments],
            cwd=REPO,
            env=ENV,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    target.seconds = time.monotonic() - started
    if done.returncode != 0:
        target.status = "failed"
        print(f"mutmut failed on {target.name} (exit {done.returncode}): see {log}")
        return
    read(target)


def _natural(name: str) -> tuple[str, int]:
    stem, _, number = name.rpartition("_")
    return stem, int(number) if number.isdigit() else 0


def diff(mutant: str) -> str:
    shown = subprocess.run(
        [sys.executable, "-m", "mutmut", "show", mutant],
        cwd=REPO,
        capture_output=True,
        text=True,
    ).stdout
    return "\n".join(
        line
        for line in shown.splitlines()
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    )


def triaged() -> dict[str, str]:
    found = {}
    for line in TRIAGE.read_text().splitlines() if TRIAGE.exists() else []:
        if line.strip() and not line.startswith("#"):
            name, _, reason = line.strip().partition(" ")
            found[name] = reason.strip()
    return found


def table(targets: list[Target]) -> list[str]:
    head = f"{'target':<28} {'mutants':>7} {'killed':>6} {'survived':>8} {'no tests':>8} {'other':>5} {'score':>6} {'minutes':>7}"
    lines = [head]
    for t in targets:
        if t.status == "not run" or t.status == "failed":
            lines.append(f"{t.name:<28} {t.status}")
            continue
        total = sum(t.counts.values())
        other = total - t.killed - t.counts["survived"] - t.counts["no tests"]
        score = f"{t.score:.0%}" if t.score is not None else "-"
        minutes = f"{t.seconds / 60:.1f}" if t.seconds else "-"  # not known with --no-run
        lines.append(
            f"{t.name:<28} {total:>7} {t.killed:>6} {t.counts['survived']:>8}"
            f" {t.counts['no tests']:>8} {other:>5} {score:>6} {minutes:>7}"
            + ("" if t.status == "ran" else f"  ({t.status})")
        )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("targets", nargs="*", default=CORE, help="modules or module.function")
    parser.add_argument("--jobs", type=int, default=2, help="mutants run at once (default 2)")
    parser.add_argument(
        "--budget-minutes",
        type=float,
        default=0,
        help="start no target after this many minutes; those left are reported as not run",
    )
    parser.add_argument("--report", type=Path, default=REPORT)
    parser.add_argument(
        "--no-run", action="store_true", help="run nothing: report what mutants/ holds"
    )
    args = parser.parse_args()

    logs = args.report.parent
    logs.mkdir(parents=True, exist_ok=True)
    targets = [Target(name) for name in args.targets]
    started = time.monotonic()
    for target in targets:
        if args.no_run:
            read(target)
            continue
        if args.budget_minutes and time.monotonic() - started > args.budget_minutes * 60:
            print(f"{target.name}: not run (budget of {args.budget_minutes:g} minutes spent)")
            continue
        print(f"{target.name}: running {target.pattern}", flush=True)
        run(target, args.jobs, logs)
        print("\n".join(table([target])[1:]), flush=True)

    reasons = triaged()
    report = ["# Mutation report", "", "```", *table(targets), "```", ""]
    untriaged = 0
    for t in targets:
        if not t.survivors:
            continue
        report += [f"## Survivors in {t.name}", ""]
        for mutant in t.survivors:
            reason = reasons.get(mutant)
            untriaged += reason is None
            report += [
                f"- `{mutant}`: " + (f"triaged: {reason}" if reason else "**not triaged**"),
                "",
                "```diff",
                diff(mutant),
                "```",
                "",
            ]
    survivors = {m for t in targets for m in t.survivors}
    ran = [t for t in targets if t.status.startswith("ran")]
    stale = sorted(
        m
        for m in reasons
        if m not in survivors and any(fnmatch.fnmatchcase(m, t.pattern) for t in ran)
    )
    if stale:
        report += ["## Triage lines that match no survivor (killed now, or renumbered)", ""]
        report += [f"- `{m}`" for m in stale] + [""]
    args.report.write_text("\n".join(report))

    print()
    print("\n".join(table(targets)))
    print(
        f"\n{len(survivors)} survivors, {untriaged} not triaged in {TRIAGE.name};"
        f" report: {args.report.relative_to(REPO) if args.report.is_relative_to(REPO) else args.report}"
    )
    return 1 if any(t.status == "failed" for t in targets) else 0


if __name__ == "__main__":
    sys.exit(main())
