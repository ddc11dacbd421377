""".gitlab-ci.yml read as data: it cannot drift from the tasks, the images, the job image's
files, the spot exit code, or the IAM policy of the README.

(tests/integration/test_gitlab_ci.py runs gitlab-ci-local on the same file.)
"""

from __future__ import annotations

import ast
import importlib.util
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.session
import pytest
import yaml
from botocore import xform_name
from tooling import require_tool

from bakery import config
from bakery.errors import SpotInterrupted
from bakery.tasks import namespace

REPO = Path(__file__).resolve().parents[2]
KEYWORDS = {"workflow", "stages", "variables", "default", "include"}
AWS_JOBS = ["bake", "verify", "publish", "prune", "gc"]
CHECK_JOBS = ["lint", "render", "test", "terraform"]


class _Loader(yaml.SafeLoader):
    """YAML as GitLab reads it: `!reference [job, key]` becomes a Reference (a list)."""


class Reference(list):
    """GitLab's `!reference [job, key, ...]`: that key's value, put in place."""


_Loader.add_constructor(
    "!reference", lambda loader, node: Reference(loader.construct_sequence(node))
)

CI: dict[str, Any] = yaml.load((REPO / ".gitlab-ci.yml").read_text(), Loader=_Loader)


def _merged(base: Any, over: Any) -> Any:
    """GitLab's `extends`: mappings merge deeply, anything else is replaced."""
    if isinstance(base, dict) and isinstance(over, dict):
        return {k: _merged(base[k], v) if k in base else v for k, v in over.items()} | {
            k: v for k, v in base.items() if k not in over
        }
    return over


def job(name: str) -> dict[str, Any]:
    """A job with its `extends` chain resolved (`default:` is not merged in)."""
    data = dict(CI[name])
    parents = data.pop("extends", [])
    resolved: dict[str, Any] = {}
    for parent in [parents] if isinstance(parents, str) else parents:
        resolved = _merged(resolved, job(parent))
    return _merged(resolved, data)


JOBS = sorted(k for k in CI if k not in KEYWORDS and not k.startswith("."))
TEMPLATES_AND_JOBS = sorted(k for k in CI if k not in KEYWORDS)


# --- every `invoke` the pipeline runs exists in tasks.py, with every option it passes ------


def _script_lines(data: dict[str, Any]) -> Iterator[str]:
    for key in ("before_script", "script", "after_script"):
        entries = data.get(key) or []
        for entry in [entries] if isinstance(entries, str) else entries:
            # A block scalar holds several commands; a backslash joins continued lines.
            yield from str(entry).replace("\\\n", " ").splitlines()


def _variables(name: str) -> dict[str, str]:
    """Every value a variable may have in this job: global, job and rules:variables."""
    data = job(name)
    values: dict[str, list[str]] = {}
    for source in [CI.get("variables", {}), data.get("variables", {})] + [
        rule.get("variables", {}) for rule in data.get("rules", []) if isinstance(rule, dict)
    ]:
        for key, value in source.items():
            text = value.get("value", "") if isinstance(value, dict) else value
            values.setdefault(key, []).append(str(text))
    return {k: " ".join(v) for k, v in values.items()}


def invocations() -> list[tuple[str, str, list[str]]]:
    """(job, task, options) of every `invoke TASK ...` in every job and template, options
    taken from the command and from the values of the variables it expands."""
    found = []
    for name in TEMPLATES_AND_JOBS:
        variables = _variables(name)
        for line in _script_lines(CI[name]):
            for match in re.finditer(r"(?:^|[;&|(]\s*|\s)invoke\s+(?P<rest>.*)", line):
                command = re.split(r"\s(?:&&|\|\||\|)\s|;", match["rest"])[0]
                task, _, arguments = command.strip().partition(" ")
                expansions = dict.fromkeys(re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", arguments))
                expanded = " ".join([arguments, *(variables.get(v, "") for v in expansions)])
                options = re.findall(r"(?<![\w-])--([a-z][a-z0-9-]*)", expanded)
                found.append((name, task, options))
    return found


INVOCATIONS = invocations()


def test_the_pipeline_invokes_what_it_should() -> None:
    """Guards the parser above: an empty list would pass everything below."""
    assert {(j, t) for j, t, _ in INVOCATIONS} == {
        ("render", "render"),
        ("bake", "bake"),
        ("verify", "verify"),
        ("publish", "publish"),
        ("prune", "prune"),
        ("gc", "gc"),
    }
    assert ("bake", "bake", ["image", "force"]) in INVOCATIONS  # through rules:variables


@pytest.mark.parametrize(
    ("job_name", "task", "options"), INVOCATIONS, ids=[f"{j}-{t}" for j, t, _ in INVOCATIONS]
)
def test_invoked_task_and_options_exist(job_name: str, task: str, options: list[str]) -> None:
    assert task in namespace.task_names, f"{job_name}: invoke {task}: no such task in tasks.py"
    known = {n for a in namespace.tasks[task].get_arguments() for n in a.names}
    unknown = sorted(set(options) - known)
    assert unknown == [], f"{job_name}: invoke {task} has no option --{', --'.join(unknown)}"


# --- the shell of every job passes shellcheck --------------------------------------------


def _commands(entries: Any) -> list[str]:
    """A script key's commands, as GitLab reads them: `!reference` tags put in place and
    nested lists flattened."""
    if entries is None:
        return []
    found: list[str] = []
    for entry in [entries] if isinstance(entries, str) else entries:
        if isinstance(entry, Reference):
            value: Any = job(entry[0])
            for key in entry[1:]:
                value = value[key]
            found += _commands(value)
        elif isinstance(entry, list):
            found += _commands(entry)
        else:
            found.append(str(entry))
    return found


def shell_of(name: str) -> str:
    """bash in the job image; Docker's own images (ci-image's) are Alpine: busybox sh."""
    image = job(name).get("image", CI["default"]["image"])
    image = image["name"] if isinstance(image, dict) else image
    return "sh" if image.startswith("docker:") else "bash"


def shell_scripts(name: str) -> dict[str, str]:
    """What the runner executes for a job, as shell scripts: before_script and script in one
    shell (before_script from `default:` unless the job has its own), after_script in another.
    GitLab's own `$[[ ... ]]` expressions are expanded before any shell runs: a placeholder
    stands in. The pipeline's and the job's variables are declared (GitLab exports them)."""
    data = job(name)
    sections = {
        "script": _commands(data.get("before_script", CI["default"].get("before_script")))
        + _commands(data.get("script")),
        "after_script": _commands(data.get("after_script", CI["default"].get("after_script"))),
    }
    shell = shell_of(name)
    strict = "set -eo pipefail" if shell == "bash" else "set -e"  # as the runner starts each
    matrix = [k for entry in data.get("parallel", {}).get("matrix", []) for k in entry]
    declared = [f"export {v}" for v in sorted({*_variables(name), *matrix}) if v.isidentifier()]
    return {
        section: "\n".join(
            [f"#!/bin/{shell}", strict, *declared]
            + [re.sub(r"\$\[\[.*?\]\]", "GITLAB_EXPRESSION", c) for c in commands]
        )
        + "\n"
        for section, commands in sections.items()
        if commands
    }


SHELL_SECTIONS = [(n, s) for n in JOBS for s in shell_scripts(n)]


def test_every_job_has_its_shell_checked() -> None:
    """Guards the extraction above: a job whose script was not found would pass unchecked."""
    assert {n for n, s in SHELL_SECTIONS if s == "script"} == set(JOBS)
    assert shell_of("ci-image") == "sh" and shell_of("bake") == "bash"
    assert ". ci/aws-oidc.sh" in shell_scripts("bake")["script"]


@pytest.mark.parametrize(
    ("name", "section"), SHELL_SECTIONS, ids=[f"{n}-{s}" for n, s in SHELL_SECTIONS]
)
def test_job_shell_passes_shellcheck(name: str, section: str, tmp_path: Path) -> None:
    script = tmp_path / f"{name.replace(' ', '_')}-{section}.sh"
    script.write_text(shell_scripts(name)[section])
    # -x follows `. ci/...` from the repository root, where the runner starts the job.
    checked = subprocess.run(
        [require_tool("shellcheck"), "-x", "--format=gcc", str(script)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    numbered = "\n".join(
        f"{i:3} {line}" for i, line in enumerate(script.read_text().splitlines(), 1)
    )
    assert checked.returncode == 0, (
        f"{name} {section}:\n{checked.stdout}{checked.stderr}\n{numbered}"
    )


# --- per-image jobs ----------------------------------------------------------------------

PER_IMAGE = ["bake", "verify", "publish", "prune"]


@pytest.mark.parametrize("name", PER_IMAGE)
def test_matrix_lists_exactly_the_image_definitions(name: str) -> None:
    matrix = job(name)["parallel"]["matrix"]
    assert matrix == [{"IMAGE": sorted(config.names())}], (
        "the IMAGE matrix of .per-image must list images/*.toml exactly"
    )


@pytest.mark.parametrize("name", PER_IMAGE)
def test_one_job_per_image_at_a_time(name: str) -> None:
    assert job(name)["resource_group"] == "image-$IMAGE"


@pytest.mark.parametrize(
    ("name", "needed"),
    [("verify", ["bake"]), ("publish", ["bake", "verify"]), ("prune", ["bake", "publish"])],
)
def test_later_jobs_need_the_matching_matrix_job(name: str, needed: list[str]) -> None:
    needs = job(name)["needs"]
    assert [n["job"] for n in needs] == needed
    for need in needs:
        assert need["parallel"] == {"matrix": [{"IMAGE": ["$[[ matrix.IMAGE ]]"]}]}
    # The dotenv report (BAKERY_BAKED, BAKERY_AMI_ID) comes from bake's artifacts.
    assert needs[0].get("artifacts", True) is True


@pytest.mark.parametrize("name", ["verify", "publish", "prune"])
def test_later_jobs_end_early_when_nothing_was_baked(name: str) -> None:
    assert job(name)["script"][0] == ". ci/skip-unless-baked.sh"
    assert job(name).get("when", "on_success") == "on_success"


def test_bake_reports_its_outcome_as_dotenv() -> None:
    bake = job("bake")
    assert bake["artifacts"]["reports"]["dotenv"] == "build/bake.env"
    assert 'cp "build/$IMAGE/bake.env" build/bake.env' in bake["script"]


def test_force_is_a_rule_of_bake() -> None:
    forced, plain = job("bake")["rules"]
    assert forced["if"].endswith('&& $BAKERY_FORCE_REBUILD == "true"')
    assert forced["if"].startswith(plain["if"])
    assert forced["variables"] == {"BAKERY_BAKE_OPTIONS": "--force"}
    assert job("bake")["variables"]["BAKERY_BAKE_OPTIONS"] == ""


@pytest.mark.parametrize("name", JOBS)
def test_only_a_spot_interruption_is_retried(name: str) -> None:
    retry = job(name).get("retry")
    if name in ("bake", "verify"):
        assert retry == {"max": 2, "exit_codes": [SpotInterrupted.exit_code]}
    else:
        assert retry is None


def test_the_docs_name_the_exit_code_that_is_retried() -> None:
    """What a reader is told is what the pipeline retries (the code itself, 75, is checked
    through a task in tests/unit/test_spot.py)."""
    code = SpotInterrupted.exit_code
    assert f"The tool exits {code} (EX_TEMPFAIL" in (REPO / "docs" / "gitlab-ci.md").read_text()
    assert f"a spot interruption (exit code {code})" in (REPO / "README.md").read_text()
    assert f"Exit code {code} (SpotInterrupted" in (REPO / ".gitlab-ci.yml").read_text()


def test_gc_runs_after_the_images_whatever_they_did() -> None:
    gc = job("gc")
    stages = CI["stages"]
    assert gc["stage"] == "gc"
    assert all(stages.index(job(n)["stage"]) < stages.index("gc") for n in AWS_JOBS if n != "gc")
    assert "needs" not in gc  # stage order: after every prune
    assert [r["when"] for r in gc["rules"]] == ["always"]


def _benchmark(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(
        f"benchmarks_{name}", REPO / "benchmarks" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_mutation_report_runs_on_schedules_only_and_without_aws() -> None:
    data = job("mutation")
    assert [r["if"] for r in data["rules"]] == [
        '$CI_PIPELINE_SOURCE == "schedule" && $CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH'
    ]
    assert "id_tokens" not in data
    assert data.get("before_script", CI["default"]["before_script"]) == [". ci/job-env.sh"]
    assert data["needs"] == [{"job": "ci-image", "optional": True}], "holds up no other job"
    assert data["script"][0].startswith("python benchmarks/mutants.py ")
    report = _benchmark("mutants").REPORT.relative_to(REPO)
    assert data["artifacts"]["paths"] == [f"{report.parent}/"]
    assert data["artifacts"]["when"] == "always"


# --- credentials -------------------------------------------------------------------------


@pytest.mark.parametrize("name", AWS_JOBS)
def test_aws_jobs_use_the_oidc_role(name: str) -> None:
    data = job(name)
    assert data["id_tokens"] == {"AWS_ID_TOKEN": {"aud": "sts.amazonaws.com"}}
    assert data["before_script"] == [". ci/job-env.sh", ". ci/aws-oidc.sh"]
    assert data["interruptible"] is False
    assert all("$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH" in r["if"] for r in data["rules"])


@pytest.mark.parametrize("name", CHECK_JOBS)
def test_checks_have_no_credentials_and_are_interruptible(name: str) -> None:
    data = job(name)
    assert "id_tokens" not in data
    assert data["interruptible"] is True
    assert [r["if"] for r in data["rules"]] == [
        '$CI_PIPELINE_SOURCE == "merge_request_event" || $CI_PIPELINE_SOURCE == "push"'
    ]


def test_no_stored_keys() -> None:
    text = (REPO / ".gitlab-ci.yml").read_text()
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        assert name not in text


# --- the job image -----------------------------------------------------------------------


def test_job_image_tag_is_the_hash_of_its_files() -> None:
    printed = subprocess.run(
        ["sh", str(REPO / "ci" / "image-tag")], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{12}", printed)
    pinned = CI["variables"]["BAKERY_CI_IMAGE_TAG"].partition("@")[0]
    assert pinned == printed, (
        f"ci/image/ or pyproject.toml changed: set BAKERY_CI_IMAGE_TAG to {printed} in"
        " .gitlab-ci.yml (the pipeline then builds that image)"
    )
    assert CI["default"]["image"] == "$CI_REGISTRY_IMAGE/ci:$BAKERY_CI_IMAGE_TAG"


def test_image_build_follows_its_files() -> None:
    paths = next(r for r in job("ci-image")["rules"] if "changes" in r)["changes"]["paths"]
    assert paths == ["ci/image/**/*", "pyproject.toml"]
    for name in [*CHECK_JOBS, "bake"]:
        assert {"job": "ci-image", "optional": True} in job(name)["needs"]


def test_dockerfile_pins_versions_and_checksums() -> None:
    text = (REPO / "ci" / "image" / "Dockerfile").read_text()
    assert re.search(r"^FROM python:\d+\.\d+\.\d+-slim-bookworm", text, re.M)
    for tool in ("PACKER", "TERRAFORM"):
        assert re.search(rf"^ARG {tool}_VERSION=\d+\.\d+\.\d+$", text, re.M)
        assert re.search(rf"^ARG {tool}_SHA256=[0-9a-f]{{64}}$", text, re.M)
        assert f'echo "${{{tool}_SHA256}}  ' in text
    packer = re.search(r"^ARG PACKER_VERSION=(\d+)\.(\d+)", text, re.M)
    assert packer and (int(packer[1]), int(packer[2])) >= (1, 11)


# --- the IAM policy of the README covers what the code calls -------------------------

DOC = (REPO / "README.md").read_text()
POLICIES = [json.loads(b) for b in re.findall(r"```json\n(.*?)```", DOC, re.S)]
# The pipeline runs publish without --update-key-policy: no key policy is ever written.
NOT_IN_CI = {"kms:PutKeyPolicy"}


def _permissions() -> dict[str, Any]:
    (policy,) = [p for p in POLICIES if not any("Principal" in s for s in p["Statement"])]
    return policy


def _allowed() -> set[str]:
    actions: set[str] = set()
    for statement in _permissions()["Statement"]:
        assert statement["Effect"] == "Allow"
        listed = statement["Action"]
        actions |= {a.lower() for a in ([listed] if isinstance(listed, str) else listed)}
    return actions


def _modules_behind_the_ci_tasks() -> list[Path]:
    """bakery.tasks.{images,verify,distribute} and every bakery module they import."""
    src = REPO / "src" / "bakery"
    todo = [src / "tasks" / f"{m}.py" for m in ("images", "verify", "distribute")]
    seen: set[Path] = set()
    while todo:
        path = todo.pop()
        if path in seen or not path.exists():
            continue
        seen.add(path)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = path.parent if node.level == 1 else path.parent.parent
                if node.module:
                    todo.append(base / (node.module.replace(".", "/") + ".py"))
                todo += [base / f"{alias.name}.py" for alias in node.names]
    return sorted(seen)


def aws_calls() -> dict[str, set[str]]:
    """IAM action candidates (ec2/ssm/kms/iam) -> the modules calling them; STS's
    GetCallerIdentity needs no permission."""
    session = botocore.session.get_session()
    operations: dict[str, list[str]] = {}
    for service in ("ec2", "ssm", "kms", "iam"):
        for op in session.get_service_model(service).operation_names:
            operations.setdefault(xform_name(op), []).append(f"{service}:{op}")
    calls: dict[str, set[str]] = {}
    for path in _modules_behind_the_ci_tasks():
        text = path.read_text()
        # Not a client's call: a target's own verify (bakery.targets), which KMS's name shadows.
        text = re.sub(r"\)\.verify\(", ").run_verify(", text)
        names = re.findall(r"\.([a-z_]+)\(", text)
        names += re.findall(r"get_paginator\(\s*\"([a-z_]+)\"", text)
        names += ["describe_instances"] * bool(re.search(r"get_waiter\(\s*\"instance_", text))
        for name in names:
            for action in operations.get(name, []):
                calls.setdefault(action, set()).add(path.name)
    return calls


CALLS = aws_calls()


def test_the_code_scan_finds_the_calls() -> None:
    assert {"ec2:RunInstances", "ec2:CopyImage", "ssm:PutParameter", "kms:GetKeyPolicy"} <= set(
        CALLS
    )


@pytest.mark.parametrize("action", sorted(CALLS))
def test_permission_policy_allows_every_call(action: str) -> None:
    if action in NOT_IN_CI:
        assert action.lower() not in _allowed()
        assert action.split(":")[1] in DOC, f"the README should say why {action} is absent"
        return
    # Ambiguous method names (delete_tags is EC2's and Auto Scaling's) need one of them.
    op = action.partition(":")[2]
    candidates = [a for a in CALLS if a.partition(":")[2] == op] or [action]
    assert any(c.lower() in _allowed() for c in candidates), (
        f"{', '.join(sorted(CALLS[action]))} call {action}, which the policy in the README lacks"
    )


def test_trust_policy_is_for_the_default_branch_only() -> None:
    (trust,) = [p for p in POLICIES if any("Principal" in s for s in p["Statement"])]
    (statement,) = trust["Statement"]
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    condition = statement["Condition"]["StringEquals"]
    assert condition["gitlab.com:aud"] == "sts.amazonaws.com"
    assert re.fullmatch(
        r"project_path:[^:*]+:ref_type:branch:ref:main", condition["gitlab.com:sub"]
    )
