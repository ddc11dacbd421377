"""gitlab-ci-local on .gitlab-ci.yml: GitLab's schema, which jobs each kind of pipeline runs,
and (with its shell executor and a stub `invoke`) the forced rebuild and the skip chain.

gitlab-ci-local cannot compare against a remote default branch here, so every call passes
--no-evaluate-rule-changes: a `changes` rule then counts as matched, which is why `ci-image`
shows up in merge request and push pipelines. The branch variables are passed explicitly so
that the result does not depend on the checkout (CI checks out a detached HEAD).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from tooling import require_tool

from bakery import config

REPO = Path(__file__).resolve().parents[2]
IMAGES = sorted(config.names())
CHECKS = {"lint", "render", "test", "terraform"}
PER_IMAGE = {
    f"{job}: [{image}]" for job in ("bake", "verify", "publish", "prune") for image in IMAGES
}
ON_MAIN = ["--variable", "CI_COMMIT_BRANCH=main", "--variable", "CI_DEFAULT_BRANCH=main"]


@pytest.fixture(scope="module")
def gcl() -> str:
    return require_tool("gitlab-ci-local")


GIT = [
    "git",
    "-c",
    "user.name=test",
    "-c",
    "user.email=test@example.com",
    "-c",
    "commit.gpgsign=false",
]


def git_repo(path: Path) -> Path:
    """Commits what `path` holds into a new repository (gitlab-ci-local reads git)."""
    for command in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "test"]):
        subprocess.run([*GIT, *command], cwd=path, check=True, capture_output=True)
    return path


@pytest.fixture(scope="module")
def listing(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository with a copy of .gitlab-ci.yml: gitlab-ci-local writes its state
    (.gitlab-ci-local/) next to the file, and this checkout stays untouched."""
    path = tmp_path_factory.mktemp("listing")
    shutil.copy(REPO / ".gitlab-ci.yml", path)
    return git_repo(path)


def run(gcl: str, *args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CI_", "GITLAB_", "GCL_"))}
    return subprocess.run(
        [gcl, "--no-evaluate-rule-changes", *args],
        cwd=cwd,
        env={**env, "FORCE_COLOR": "0", "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def jobs(gcl: str, cwd: Path, *variables: str) -> dict[str, dict[str, object]]:
    """The jobs a pipeline with these variables runs (when != never), by name."""
    args = [a for v in variables for a in ("--variable", v)]
    out = run(gcl, "--list-json", *ON_MAIN, *args, cwd=cwd)
    assert out.returncode == 0, out.stdout + out.stderr
    return {j["name"]: j for j in json.loads(out.stdout) if j["when"] != "never"}


def test_file_is_valid_against_gitlabs_schema(gcl: str, listing: Path) -> None:
    out = run(gcl, "--list", *ON_MAIN, cwd=listing)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "json schema validated" in out.stdout + out.stderr


@pytest.mark.parametrize("source", ["merge_request_event", "push"])
def test_merge_requests_and_pushes_run_only_checks(gcl: str, listing: Path, source: str) -> None:
    assert set(jobs(gcl, listing, f"CI_PIPELINE_SOURCE={source}")) == CHECKS | {"ci-image"}


@pytest.mark.parametrize(
    "variables",
    [
        ["CI_PIPELINE_SOURCE=schedule"],
        ["CI_PIPELINE_SOURCE=web"],
        ["CI_PIPELINE_SOURCE=schedule", "BAKERY_FORCE_REBUILD=true"],
    ],
    ids=["schedule", "web", "schedule-forced"],
)
def test_schedules_run_the_chain_of_every_image_then_gc(
    gcl: str, listing: Path, variables: list[str]
) -> None:
    listed = jobs(gcl, listing, *variables)
    scheduled = {"mutation"} if "CI_PIPELINE_SOURCE=schedule" in variables else set()
    assert set(listed) == PER_IMAGE | {"gc"} | scheduled
    assert {name: job["when"] for name, job in listed.items()} == {
        **dict.fromkeys(PER_IMAGE | scheduled, "on_success"),
        "gc": "always",
    }
    needs = {name: [n["job"] for n in job.get("needs") or []] for name, job in listed.items()}
    for image in IMAGES:
        assert needs[f"verify: [{image}]"] == ["bake"]
        assert needs[f"publish: [{image}]"] == ["bake", "verify"]
        assert needs[f"prune: [{image}]"] == ["bake", "publish"]


def test_a_schedule_on_another_branch_runs_nothing(gcl: str, listing: Path) -> None:
    out = run(
        gcl,
        "--list-json",
        "--variable",
        "CI_PIPELINE_SOURCE=schedule",
        "--variable",
        "CI_COMMIT_BRANCH=feature",
        "--variable",
        "CI_DEFAULT_BRANCH=main",
        cwd=listing,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert [j["name"] for j in json.loads(out.stdout) if j["when"] != "never"] == []


# --- the scheduled jobs, run by gitlab-ci-local's shell executor with a stub `invoke` ---------

STUB_INVOKE = """#!/bin/sh
# Stands in for the tool: says how it was called; `bake` writes bake.env as the real one does.
echo "stub-invoke: $*"
if [ "$1" = bake ]; then
  mkdir -p "build/$3"
  printf 'BAKERY_AMI_ID=ami-0123456789abcdef0\\nBAKERY_BAKED=%s\\n' "$STUB_BAKED" >"build/$3/bake.env"
fi
"""


@pytest.fixture
def sandbox(tmp_path: Path, gcl: str) -> Path:
    """A git repository holding .gitlab-ci.yml without its job image (gitlab-ci-local would run
    the jobs in containers), the real ci/skip-unless-baked.sh, and stubs for the environment
    and credential scripts and for `invoke`."""
    require_tool("rsync")  # gitlab-ci-local copies files with it to run jobs
    pipeline = yaml.safe_load((REPO / ".gitlab-ci.yml").read_text())
    del pipeline["default"]["image"]
    (tmp_path / ".gitlab-ci.yml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
    (tmp_path / "ci").mkdir()
    shutil.copy(REPO / "ci" / "skip-unless-baked.sh", tmp_path / "ci")
    (tmp_path / "ci" / "job-env.sh").write_text('export PATH="$PWD/stub-bin:$PATH"\n')
    (tmp_path / "ci" / "aws-oidc.sh").write_text('echo "stub: no AWS here"\n')
    (tmp_path / "stub-bin").mkdir()
    (tmp_path / "stub-bin" / "invoke").write_text(STUB_INVOKE)
    (tmp_path / "stub-bin" / "invoke").chmod(0o755)
    return git_repo(tmp_path)


def run_jobs(gcl: str, sandbox: Path, *args: str) -> str:
    out = run(
        gcl, *args, *ON_MAIN, "--variable", "CI_PIPELINE_SOURCE=schedule", cwd=sandbox, timeout=180
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout + out.stderr


def test_forced_rebuild_passes_force_to_bake(gcl: str, sandbox: Path) -> None:
    image = IMAGES[0]
    log = run_jobs(
        gcl, sandbox, "--job", f"bake: [{image}]",
        "--variable", "BAKERY_FORCE_REBUILD=true", "--variable", "STUB_BAKED=true",
    )  # fmt: skip
    assert f"stub-invoke: bake --image {image} --force\n" in log


def test_scheduled_bake_without_force(gcl: str, sandbox: Path) -> None:
    image = IMAGES[0]
    log = run_jobs(gcl, sandbox, "--job", f"bake: [{image}]", "--variable", "STUB_BAKED=true")
    assert f"stub-invoke: bake --image {image}\n" in log


def test_unchanged_fingerprint_ends_the_rest_of_the_chain(gcl: str, sandbox: Path) -> None:
    image = IMAGES[0]
    log = run_jobs(
        gcl, sandbox, "--needs", "--job", f"prune: [{image}]", "--variable", "STUB_BAKED=false"
    )
    assert f"stub-invoke: bake --image {image}\n" in log
    for job in ("verify", "publish", "prune"):
        assert f"{job}: [{image}]: skipped: the bake of {image} built nothing" in log
    for task in ("verify", "publish", "prune"):
        assert f"stub-invoke: {task}" not in log


def test_a_new_ami_goes_through_verify_publish_and_prune(gcl: str, sandbox: Path) -> None:
    image, ami, subnet = IMAGES[0], "ami-0123456789abcdef0", "subnet-0123456789abcdef0"
    log = run_jobs(
        gcl, sandbox, "--needs", "--job", f"prune: [{image}]",
        "--variable", "STUB_BAKED=true", "--variable", f"BAKERY_VERIFY_SUBNET={subnet}",
    )  # fmt: skip
    assert f"stub-invoke: verify --image {image} --ami {ami} --subnet {subnet}\n" in log
    assert f"stub-invoke: publish --image {image} --ami {ami}\n" in log
    assert f"stub-invoke: prune --image {image} --apply\n" in log


# --- the sourced job scripts, alone -------------------------------------------------------


def source(
    script: str, env: dict[str, str], then: str = "echo went-on"
) -> subprocess.CompletedProcess[str]:
    """`. ci/SCRIPT` in bash (as a job's script lines run), with only `env` set."""
    return subprocess.run(
        ["bash", "-c", f". ci/{script} && {then}"],
        cwd=REPO,
        env={"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), **env},
        capture_output=True,
        text=True,
        timeout=30,
    )


SKIP_ENV = {"CI_JOB_NAME": "verify: [x]", "IMAGE": "x", "BAKERY_AMI_ID": "ami-0123456789abcdef0"}


def test_skip_script_goes_on_after_a_bake() -> None:
    out = source("skip-unless-baked.sh", {**SKIP_ENV, "BAKERY_BAKED": "true"})
    assert out.returncode == 0 and out.stdout.endswith("went-on\n"), out.stdout + out.stderr


def test_skip_script_ends_the_job_green_when_nothing_was_baked() -> None:
    out = source("skip-unless-baked.sh", {**SKIP_ENV, "BAKERY_BAKED": "false"})
    assert out.returncode == 0 and "went-on" not in out.stdout
    assert "skipped: the bake of x built nothing" in out.stdout


@pytest.mark.parametrize("baked", ["", "yes"], ids=["missing", "garbled"])
def test_skip_script_fails_without_the_bake_report(baked: str) -> None:
    out = source("skip-unless-baked.sh", {**SKIP_ENV, "BAKERY_BAKED": baked})
    assert out.returncode == 1 and "went-on" not in out.stdout
    assert "dotenv report (build/bake.env) did not reach" in out.stderr


OIDC_ENV = {
    "AWS_ID_TOKEN": "header.payload.signature",
    "AWS_ROLE_ARN": "arn:aws:iam::111122223333:role/gpu-ami-bakery-ci",
    "AWS_REGION": "eu-west-1",
    "CI_PROJECT_ID": "42",
    "CI_JOB_ID": "7",
}


def test_oidc_script_exports_the_web_identity_variables() -> None:
    out = source(
        "aws-oidc.sh",
        OIDC_ENV,
        then='stat -c %a "$AWS_WEB_IDENTITY_TOKEN_FILE"; cat "$AWS_WEB_IDENTITY_TOKEN_FILE"; echo;'
        ' echo "$AWS_ROLE_ARN $AWS_ROLE_SESSION_NAME $AWS_REGION $AWS_DEFAULT_REGION";'
        ' rm -r "$(dirname "$AWS_WEB_IDENTITY_TOKEN_FILE")"',
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[1:] == [
        "600",
        "header.payload.signature",
        "arn:aws:iam::111122223333:role/gpu-ami-bakery-ci gitlab-42-job-7 eu-west-1 eu-west-1",
    ]


@pytest.mark.parametrize(
    "stored", ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"]
)
def test_oidc_script_refuses_stored_credentials(stored: str) -> None:
    out = source("aws-oidc.sh", {**OIDC_ENV, stored: "x"})
    assert out.returncode == 1 and "went-on" not in out.stdout
    assert "this pipeline reaches AWS through the OIDC role only" in out.stderr


@pytest.mark.parametrize("missing", ["AWS_ID_TOKEN", "AWS_ROLE_ARN", "AWS_REGION"])
def test_oidc_script_names_what_is_missing(missing: str) -> None:
    env = {k: v for k, v in OIDC_ENV.items() if k != missing}
    out = source("aws-oidc.sh", env)
    assert out.returncode != 0 and "went-on" not in out.stdout
    assert missing in out.stderr
