"""pull-ui-image.sh: the UI image from a pinned digest or a pinned commit, tagged bakery/ui:baked."""

from __future__ import annotations

import hashlib
import json
import subprocess

import pytest

SCRIPT = "pull-ui-image.sh"
RECORD = "/var/lib/bakery/ui-image.json"
IMAGE = "ghcr.io/example/ollama-ui@sha256:" + "ab" * 32


def image_id(ref: str) -> str:
    """The image ID the fake docker gives a pulled ref."""
    return "sha256:" + hashlib.sha256(ref.encode()).hexdigest()


@pytest.fixture
def ui_repo(tmp_path, tool):
    """A git repository with two commits that change the Dockerfile: (url, first, second)."""
    repo = tmp_path / "ui-repo"
    repo.mkdir()
    env = {"GIT_CONFIG_NOSYSTEM": "1", "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}

    def git(*args: str) -> str:
        out = subprocess.run(
            [tool("git"), "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
            cwd=repo, env=env, check=True, capture_output=True, text=True,
        )  # fmt: skip
        return out.stdout.strip()

    git("init", "--quiet", "--initial-branch=main")
    commits = []
    for version in ("v1", "v2"):
        (repo / "Dockerfile").write_text(f"FROM node:20-alpine\nLABEL ui={version}\n")
        git("add", "Dockerfile")
        git("commit", "--quiet", "-m", version)
        commits.append(git("rev-parse", "HEAD"))
    return repo.as_uri(), commits[0], commits[1]


def test_pulls_pinned_image(sandbox) -> None:
    sandbox.add_docker()
    sandbox.run_ok(SCRIPT, UI_IMAGE=IMAGE, UI_GIT_URL="", UI_GIT_COMMIT="")
    assert ["docker", "pull", IMAGE] in sandbox.calls("docker")
    assert ["docker", "tag", IMAGE, "bakery/ui:baked"] in sandbox.calls("docker")
    assert json.loads(sandbox.read(RECORD)) == {
        "id": image_id(IMAGE),
        "ref": "bakery/ui:baked",
        "source": IMAGE,
    }
    assert sandbox.mode(RECORD) == 0o644


def test_pinned_image_second_run_changes_nothing(sandbox) -> None:
    sandbox.add_docker()
    sandbox.run_ok(SCRIPT, UI_IMAGE=IMAGE)
    sandbox.assert_idempotent(SCRIPT, UI_IMAGE=IMAGE)


def test_builds_pinned_commit(sandbox, ui_repo) -> None:
    url, first, _second = ui_repo
    sandbox.add_docker()
    sandbox.run_ok(SCRIPT, UI_IMAGE="", UI_GIT_URL=url, UI_GIT_COMMIT=first)

    (build,) = [c for c in sandbox.calls("docker") if c[1] == "build"]
    assert build[1:5] == ["build", "--pull", "--tag", "bakery/ui:baked"]
    assert f"org.opencontainers.image.revision={first}" in build
    assert sandbox.calls("docker")[-3:-1] == [
        ["docker", "builder", "prune", "--force"],
        ["docker", "image", "prune", "--force"],
    ], "the builder stage is pruned after the build"
    # The first commit's Dockerfile, not the branch head's.
    built = (sandbox.state / "docker-built-dockerfile").read_bytes()
    assert built == b"FROM node:20-alpine\nLABEL ui=v1\n"
    assert json.loads(sandbox.read(RECORD)) == {
        "id": "sha256:" + hashlib.sha256(built).hexdigest(),
        "ref": "bakery/ui:baked",
        "source": f"git+{url}@{first}",
    }
    assert list(sandbox.tmpdir.iterdir()) == [], "the clone is removed"


def test_pinned_commit_second_run_changes_nothing(sandbox, ui_repo) -> None:
    url, first, _ = ui_repo
    sandbox.add_docker()
    sandbox.run_ok(SCRIPT, UI_GIT_URL=url, UI_GIT_COMMIT=first)
    sandbox.assert_idempotent(SCRIPT, UI_GIT_URL=url, UI_GIT_COMMIT=first)
    assert sandbox.calls("git") == []


def test_new_source_replaces_the_image(sandbox, ui_repo) -> None:
    url, first, second = ui_repo
    sandbox.add_docker()
    sandbox.run_ok(SCRIPT, UI_GIT_URL=url, UI_GIT_COMMIT=first)
    sandbox.run_ok(SCRIPT, UI_GIT_URL=url, UI_GIT_COMMIT=second)
    assert json.loads(sandbox.read(RECORD))["source"] == f"git+{url}@{second}"
    assert b"ui=v2" in (sandbox.state / "docker-built-dockerfile").read_bytes()


def test_unknown_commit_fails(sandbox, ui_repo) -> None:
    url, _, _ = ui_repo
    sandbox.add_docker()
    result = sandbox.run(SCRIPT, UI_GIT_URL=url, UI_GIT_COMMIT="0" * 40)
    assert result.returncode != 0
    assert f"commit {'0' * 40} is not in {url}" in result.stderr
    assert [c for c in sandbox.calls("docker") if c[1] == "build"] == []
    assert not sandbox.path(RECORD).exists()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "no UI source"),
        ({"UI_IMAGE": "", "UI_GIT_URL": "", "UI_GIT_COMMIT": ""}, "no UI source"),
        ({"UI_IMAGE": "ghcr.io/example/ollama-ui:latest"}, "must be pinned by digest"),
        ({"UI_GIT_URL": "https://example.com/ui.git", "UI_GIT_COMMIT": "main"}, "full 40-hex"),
        ({"UI_GIT_COMMIT": "a" * 40}, "UI_GIT_URL is not"),
        ({"UI_IMAGE": IMAGE, "UI_GIT_URL": "https://example.com/ui.git"}, "set one UI source"),
        (
            {"UI_ARCHIVE_URL": "file:///ui.tar", "UI_ARCHIVE_SHA256": "a" * 64, "UI_IMAGE": IMAGE},
            "set one UI source",
        ),
        (
            {"UI_ARCHIVE_URL": "http://example.com/ui.tar", "UI_ARCHIVE_SHA256": "a" * 64},
            "https:// or file://",
        ),
        ({"UI_ARCHIVE_URL": "file:///ui.tar", "UI_ARCHIVE_SHA256": "abc"}, "64 lowercase hex"),
    ],
    ids=[
        "unset",
        "empty",
        "tag-not-digest",
        "branch-not-commit",
        "no-url",
        "both",
        "archive-and-image",
        "archive-plain-http",
        "archive-bad-sha256",
    ],
)
def test_bad_environment_fails_clearly(sandbox, env, message) -> None:
    sandbox.add_docker()
    result = sandbox.run(SCRIPT, **env)
    assert result.returncode != 0
    assert message in result.stderr
    assert sandbox.calls() == []
