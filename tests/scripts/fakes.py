"""Stand-ins for the system commands the provisioning scripts call.

Run as `python fakes.py NAME ARGS...` from a wrapper named NAME in the sandbox's fake-bin
directory. Each logs its argv as one JSON line to $FAKE_LOG, then acts on the sandbox tree
($BAKERY_ROOT) the way the real command acts on /, or on its own state ($FAKE_STATE).
A spy (`spy:REAL NAME ARGS...`) logs and runs the real command.
Modules that are slow to import are imported where they are used: every call is a new process.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ROOT = Path(os.environ.get("BAKERY_ROOT", "/nonexistent"))
STATE = Path(os.environ.get("FAKE_STATE", "/nonexistent"))


def err(message: str, code: int = 1) -> int:
    print(message, file=sys.stderr)
    return code


def sandbox(path: str) -> Path:
    return ROOT / path.lstrip("/")


# --- users and groups: the sandbox's /etc/passwd and /etc/group -------------------------------


def _table(name: str) -> list[list[str]]:
    path = sandbox(f"/etc/{name}")
    if not path.exists():
        return []
    return [line.split(":") for line in path.read_text().splitlines() if line]


def _write_table(name: str, rows: list[list[str]]) -> None:
    sandbox(f"/etc/{name}").write_text("".join(":".join(r) + "\n" for r in rows))


def _next_id(rows: list[list[str]], column: int) -> str:
    used = {int(r[column]) for r in rows}
    return str(next(i for i in range(999, 100, -1) if i not in used))


def getent(args: list[str]) -> int:
    db, key = args
    for row in _table(db):
        if row[0] == key:
            print(":".join(row))
            return 0
    return 2


def groupadd(args: list[str]) -> int:
    name = args[-1]
    groups = _table("group")
    if any(g[0] == name for g in groups):
        return err(f"groupadd: group '{name}' already exists", 9)
    groups.append([name, "x", _next_id(groups, 2), ""])
    _write_table("group", groups)
    return 0


def _options(args: list[str], with_value: set[str]) -> tuple[dict[str, str], list[str]]:
    opts: dict[str, str] = {}
    rest: list[str] = []
    it = iter(args)
    for a in it:
        if a in with_value:
            opts[a] = next(it)
        elif a.startswith("-"):
            opts[a] = ""
        else:
            rest.append(a)
    return opts, rest


def _add_member(groups: list[list[str]], group: str, user: str) -> bool:
    for g in groups:
        if g[0] == group:
            members = [m for m in g[3].split(",") if m]
            if user not in members:
                g[3] = ",".join([*members, user])
            return True
    return False


def useradd(args: list[str]) -> int:
    opts, (name,) = _options(args, {"--home-dir", "--shell", "--groups", "-d", "-s", "-G"})
    users, groups = _table("passwd"), _table("group")
    if any(u[0] == name for u in users):
        return err(f"useradd: user '{name}' already exists", 9)
    uid = _next_id(users, 2)
    gid = "65534"
    if "--user-group" in opts:
        gid = _next_id(groups, 2)
        groups.append([name, "x", gid, ""])
    for group in filter(None, opts.get("--groups", "").split(",")):
        if not _add_member(groups, group, name):
            return err(f"useradd: group '{group}' does not exist", 6)
    users.append([name, "x", uid, gid, "", opts.get("--home-dir", "/"), opts.get("--shell", "")])
    _write_table("passwd", users)
    _write_table("group", groups)
    return 0


def usermod(args: list[str]) -> int:
    opts, (name,) = _options(args, {"--groups", "-G"})
    groups = _table("group")
    for group in opts["--groups"].split(","):
        if not _add_member(groups, group, name):
            return err(f"usermod: group '{group}' does not exist", 6)
    _write_table("group", groups)
    return 0


def chown(args: list[str]) -> int:
    # Only logged: the sandbox's users do not exist on the machine running the tests.
    return 0


def runuser(args: list[str]) -> int:
    # runuser -u USER -- COMMAND...: runs COMMAND as the caller (the test has no such user).
    if args[0] != "-u" or args[2] != "--":
        return err(f"fake runuser: unsupported arguments {args}", 2)
    os.execvp(args[3], args[3:])
    return 127  # not reached


# --- systemd ---------------------------------------------------------------------------------

UNIT_DIRS = ("/etc/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system")


def _unit_file(unit: str) -> Path | None:
    for d in UNIT_DIRS:
        if (path := sandbox(f"{d}/{unit}")).exists():
            return path
    return None


def systemctl(args: list[str]) -> int:
    words = [a for a in args if not a.startswith("--")]
    verb, units = words[0], words[1:]
    enabled, active = STATE / "systemctl" / "enabled", STATE / "systemctl" / "active"
    enabled.mkdir(parents=True, exist_ok=True)
    active.mkdir(parents=True, exist_ok=True)
    if verb == "daemon-reload":
        return 0
    (unit,) = units
    path = _unit_file(unit)
    if verb in ("enable", "start", "is-enabled") and path is None:
        return err(f"Failed to {verb} unit: Unit file {unit} does not exist.")
    assert path is not None or verb == "is-active"
    if verb == "is-enabled":
        if (enabled / unit).exists():
            return 0
        # As systemd: a unit without an [Install] section is "static", which counts as enabled.
        return 0 if "[Install]" not in path.read_text() else 1  # type: ignore[union-attr]
    if verb == "is-active":
        return 0 if (active / unit).exists() else 3
    if verb == "enable":
        if "[Install]" not in path.read_text():  # type: ignore[union-attr]
            print(f"The unit files have no installation config ({unit}).", file=sys.stderr)
            return 0
        (enabled / unit).touch()
        return 0
    if verb == "start":
        (active / unit).touch()
        return 0
    return err(f"fake systemctl: unsupported verb {verb}", 2)


# --- packages --------------------------------------------------------------------------------

UBUNTU_PERSISTENCED_UNIT = """[Unit]
Description=NVIDIA Persistence Daemon
StopWhenUnneeded=true

[Service]
Type=forking
ExecStart=/usr/bin/nvidia-persistenced --user nvidia-persistenced --no-persistence-mode --verbose
ExecStopPost=/bin/rm -rf /var/run/nvidia-persistenced
"""


def _make_executable(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)


def _installed(package: str) -> None:
    dpkg = STATE / "dpkg"
    dpkg.mkdir(parents=True, exist_ok=True)
    (dpkg / package).touch()
    if package.startswith("nvidia-headless-"):
        branch = package.split("-")[2]
        if not (STATE / "dkms-fails").exists():
            (STATE / "modinfo-version").write_text(f"{branch}.95.05\n")
        _make_executable(sandbox("/usr/bin/nvidia-persistenced"), "#!/bin/sh\n")
        unit = sandbox("/usr/lib/systemd/system/nvidia-persistenced.service")
        unit.parent.mkdir(parents=True, exist_ok=True)
        unit.write_text(UBUNTU_PERSISTENCED_UNIT)
        if getent(["passwd", "nvidia-persistenced"]) != 0:
            useradd(["--system", "--user-group", "nvidia-persistenced"])
    if package == "docker.io":
        import shutil

        fake_bin = Path(os.environ["FAKE_BIN"])
        shutil.copy(fake_bin / ".docker", fake_bin / "docker")
        (fake_bin / "docker").chmod(0o755)
        unit = sandbox("/usr/lib/systemd/system/docker.service")
        unit.parent.mkdir(parents=True, exist_ok=True)
        unit.write_text(
            "[Service]\nExecStart=/usr/bin/dockerd\n[Install]\nWantedBy=multi-user.target\n"
        )


def apt_get(args: list[str]) -> int:
    words, it = [], iter(args)
    for a in it:
        if a == "-o":
            next(it)  # an option's value
        elif not a.startswith("-"):
            words.append(a)
    if words[0] == "update":
        return 0
    if words[0] != "install":
        return err(f"fake apt-get: unsupported {args}", 2)
    unavailable = STATE / "apt-unavailable"
    for package in words[1:]:
        if unavailable.exists() and package in unavailable.read_text().split():
            return err(f"E: Unable to locate package {package}", 100)
    for package in words[1:]:
        _installed(package)
    return 0


def dpkg_query(args: list[str]) -> int:
    package = args[-1]
    if (STATE / "dpkg" / package).exists():
        print("install ok installed", end="")
        return 0
    return err(f"dpkg-query: no packages found matching {package}")


def modinfo(args: list[str]) -> int:
    version = STATE / "modinfo-version"
    if args[-1] != "nvidia" or not version.exists():
        return err(f"modinfo: ERROR: Module {args[-1]} not found.")
    print(version.read_text().strip())
    return 0


# --- docker ----------------------------------------------------------------------------------


def docker(args: list[str]) -> int:
    import hashlib

    images_file = STATE / "docker-images.json"
    images = json.loads(images_file.read_text()) if images_file.exists() else {}

    def save() -> None:
        images_file.write_text(json.dumps(images))

    if args == ["--version"]:
        print("Docker version 27.5.1, build 27.5.1-0ubuntu3")
        return 0
    if args[0] == "version":
        print("27.5.1")
        return 0
    if args[0] == "pull":
        images[args[1]] = "sha256:" + hashlib.sha256(args[1].encode()).hexdigest()
        save()
        return 0
    if args[0] == "tag":
        if args[1] not in images:
            return err(f"Error response from daemon: No such image: {args[1]}")
        images[args[2]] = images[args[1]]
        save()
        return 0
    if args[:2] == ["image", "inspect"]:
        name = args[-1]
        if name not in images:
            return err(f"Error: No such image: {name}")
        print(images[name])
        return 0
    if args[:2] in (["image", "prune"], ["builder", "prune"]):
        return 0
    if args[0] == "build":
        opts, (context,) = _options(args[1:], {"--tag", "--label"})
        dockerfile = Path(context) / "Dockerfile"
        if not dockerfile.exists():
            return err("ERROR: failed to read dockerfile: no such file")
        content = dockerfile.read_bytes()
        images[opts["--tag"]] = "sha256:" + hashlib.sha256(content).hexdigest()
        (STATE / "docker-built-dockerfile").write_bytes(content)
        save()
        return 0
    return err(f"fake docker: unsupported {args}", 2)


# --- cloud-init, aws, sshd -------------------------------------------------------------------


def cloud_init(args: list[str]) -> int:
    import glob
    import shutil

    if args[0] == "status":
        return _cloud_init_status(args)
    if args[0] != "clean":
        return err(f"fake cloud-init: unsupported {args}", 2)
    doomed = [sandbox(f"/var/lib/cloud/{d}") for d in ("instance", "instances", "data", "sem")]
    if "--seed" in args:
        doomed.append(sandbox("/var/lib/cloud/seed"))
    if "--logs" in args:
        doomed += [Path(p) for p in glob.glob(str(sandbox("/var/log/cloud-init*.log")))]
    for path in doomed:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
    return 0


def _cloud_init_status(args: list[str]) -> int:
    """State cloud-init-status: its exit code, a newline, then what --long prints."""
    state = STATE / "cloud-init-status"
    code, _, long = (state.read_text() if state.exists() else "0\nstatus: done\n").partition("\n")
    if "--long" in args:
        print(long, end="")
    else:
        print("..." if "--wait" in args else "", end="")
        print("\n" + long.splitlines()[0])
    return int(code)


def aws(args: list[str]) -> int:
    import shutil

    _, rest = _options(args, set())
    if rest[:2] != ["s3", "cp"]:
        return err(f"fake aws: unsupported {args}", 2)
    src, dst = rest[2], rest[3]
    obj = STATE / "s3" / src.removeprefix("s3://")
    if not obj.exists():
        return err(
            f"fatal error: An error occurred (404) when calling the HeadObject operation: {src}"
        )
    shutil.copy(obj, dst)
    return 0


SSHD_DEFAULTS = {
    "passwordauthentication": "yes",
    "kbdinteractiveauthentication": "yes",
    "permitrootlogin": "without-password",
}


def _sshd_read(path: Path, settings: dict[str, str]) -> None:
    import glob

    # As sshd: Include expands in lexical order where it stands; the first value of a keyword wins.
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, value = line.partition(" ")
        keyword, value = keyword.lower(), value.strip()
        if keyword == "include":
            for pattern in value.split():
                for match in sorted(glob.glob(str(sandbox(pattern)))):
                    _sshd_read(Path(match), settings)
        else:
            settings.setdefault(keyword, value.lower() if keyword in SSHD_DEFAULTS else value)


def sshd(args: list[str]) -> int:
    opts, _ = _options(args, {"-f"})
    if "-T" not in opts:
        return err(f"fake sshd: unsupported {args}", 2)
    config = Path(opts.get("-f", str(sandbox("/etc/ssh/sshd_config"))))
    settings: dict[str, str] = {}
    _sshd_read(config, settings)
    for keyword, default in SSHD_DEFAULTS.items():
        settings.setdefault(keyword, default)
    for keyword in sorted(settings):
        print(f"{keyword} {settings[keyword]}")
    return 0


HANDLERS = {
    "apt-get": apt_get,
    "aws": aws,
    "chown": chown,
    "cloud-init": cloud_init,
    "docker": docker,
    "dpkg-query": dpkg_query,
    "getent": getent,
    "groupadd": groupadd,
    "modinfo": modinfo,
    "runuser": runuser,
    "sshd": sshd,
    "systemctl": systemctl,
    "useradd": useradd,
    "usermod": usermod,
}


def log(argv: list[str]) -> None:
    with open(os.environ["FAKE_LOG"], "a") as f:
        f.write(json.dumps(argv) + "\n")


def main() -> int:
    name, args = sys.argv[1], sys.argv[2:]
    if name.startswith("spy:"):
        real = name.removeprefix("spy:")
        log([os.path.basename(real), *args])
        os.execv(real, [real, *args])
    log([name, *args])
    return HANDLERS[name](args)


if __name__ == "__main__":
    sys.exit(main())
