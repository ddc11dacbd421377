"""images/*.toml -> typed, validated image definitions.

Every mistake is reported as one line naming the file, the key and what is allowed.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError

IMAGES_DIR = Path(__file__).resolve().parents[2] / "images"

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
INSTANCE_TYPE_RE = re.compile(
    r"^[a-z][a-z0-9-]*\.(nano|micro|small|medium|large|metal(-\d+xl)?|\d*xlarge)$"
)
SSM_NAME_RE = re.compile(r"^/[A-Za-z0-9_.\-/]+$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
DIGEST_REF_RE = re.compile(r"^[a-z0-9][a-z0-9._/:-]*@sha256:[0-9a-f]{64}$")
MODEL_RE = re.compile(r"^[a-z0-9][a-z0-9._/-]*(:[A-Za-z0-9._-]+)?$")
VERSION_RE = re.compile(r"^\d+\.\d+\.\d+$")
# install-ollama.sh unpacks by the suffix; file:// names a file of the machine that bakes.
OLLAMA_URL_RE = re.compile(r"^(https://\S+|file:///\S+)\.(tgz|tar\.zst)$")
GGUF_URL_RE = re.compile(r"^((s3|https)://|file:///)[^\s|]+$")  # | separates OLLAMA_IMPORT's fields
ACCOUNT_RE = re.compile(r"^\d{12}$")
ORG_ARN_RE = re.compile(r"^arn:aws:organizations::\d{12}:organization/o-[a-z0-9]{10,32}$")
OU_ARN_RE = re.compile(
    r"^arn:aws:organizations::\d{12}:ou/o-[a-z0-9]{10,32}/ou-[0-9a-z]{4,32}-[a-z0-9]{8,32}$"
)
REGION_RE = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d$")
TAG_KEY_RE = re.compile(r"^[\w .:/=+\-@]{1,128}$")
SUBNET_ID_RE = re.compile(r"^subnet-([0-9a-f]{8}|[0-9a-f]{17})$")
SUBNET_TAG_RE = re.compile(r"^tag:([^=]{1,128})=(.{1,256})$")
SECURITY_GROUP_RE = re.compile(r"^sg-([0-9a-f]{8}|[0-9a-f]{17})$")
PROFILE_NAME_RE = re.compile(r"^[\w+=,.@-]{1,128}$")
COMMUNICATORS = ("ssh", "session_manager")
SUBNET_WHAT = "a subnet ID (subnet-...) or a tag filter (tag:KEY=VALUE)"
CERTIFICATE_ARN_RE = re.compile(r"^arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate/[A-Za-z0-9-]+$")
HTTPS_URL_RE = re.compile(r"^https://[^\s/?#]+(/[^\s?#]*)?$")
OIDC_CLIENT_ID_RE = re.compile(r"^[\x21-\x7e]{1,255}$")  # printable, no spaces
# An SSM parameter name (or /aws/reference/secretsmanager/NAME): the secret's name, never its value.
PARAMETER_NAME_RE = re.compile(r"^/?[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")

# GPU families the verify and launch steps know how to check (the name nvidia-smi reports).
GPU_BY_FAMILY = {
    "g4dn": "T4",
    "g5": "A10G",
    "g6": "L4",
    "g6e": "L40S",
    "gr6": "L4",
    "p3": "V100",
    "p4d": "A100",
    "p4de": "A100",
    "p5": "H100",
    "p5e": "H200",
    "p5en": "H200",
}


def gpu_name(instance_type: str) -> str | None:
    return GPU_BY_FAMILY.get(instance_type.split(".", 1)[0])


@dataclass(frozen=True)
class Base:
    ssm_parameter: str | None
    filter_name: str | None
    filter_owners: tuple[str, ...]
    ssh_username: str

    def describe(self) -> str:
        if self.ssm_parameter:
            return f"SSM parameter {self.ssm_parameter}"
        return f"newest AMI named {self.filter_name!r} owned by {', '.join(self.filter_owners)}"


@dataclass(frozen=True)
class Network:
    """Where a bake or verify instance runs, and how the tool reaches it."""

    subnet: str | None = None  # a subnet ID or tag:KEY=VALUE; None: the default VPC
    security_group_ids: tuple[str, ...] = ()  # none: the run makes its own group
    communicator: str = "ssh"  # or "session_manager": no public address, no port 22
    instance_profile: str | None = None  # a named profile; None: made for the run if needed

    @property
    def session_manager(self) -> bool:
        return self.communicator == "session_manager"


@dataclass(frozen=True)
class Build:
    instance_types: tuple[str, ...]
    root_volume_gib: int
    kms_key_id: str | None
    timeout_minutes: int
    network: Network = Network()


@dataclass(frozen=True)
class Nvidia:
    """install = true: `driver_branch` is installed and checked. install = false: the base's
    driver is used as it is, at least `min_driver_branch` when that is set."""

    driver_branch: str | None
    install: bool
    min_driver_branch: str | None = None


@dataclass(frozen=True)
class Ollama:
    version: str
    sha256: str  # of the file at url, as downloaded
    keep_alive: str
    url: str  # the release archive (.tgz or .tar.zst); default: GitHub's release of version

    @property
    def archive(self) -> Download:
        return Download(self.url, self.sha256)


def release_url(version: str) -> str:
    return f"https://github.com/ollama/ollama/releases/download/v{version}/ollama-linux-amd64.tgz"


@dataclass(frozen=True)
class Model:
    name: str
    gguf_url: str | None = None
    gguf_sha256: str | None = None

    @property
    def gguf(self) -> Download | None:
        return (
            Download(self.gguf_url, self.gguf_sha256)
            if self.gguf_url and self.gguf_sha256
            else None
        )


@dataclass(frozen=True)
class Download:
    """A file fetched at bake time and checked before use: https://, s3:// or file://."""

    url: str
    sha256: str

    @property
    def local_path(self) -> Path | None:
        """The build host's file behind a file:// URL (the bake uploads it), else None."""
        return Path(self.url.removeprefix("file://")) if self.url.startswith("file://") else None


@dataclass(frozen=True)
class UI:
    image: str | None
    git: str | None
    commit: str | None
    ollama_url_env: str
    port: int
    archive: Download | None = None

    @property
    def source(self) -> str:
        if self.archive:
            return f"archive {self.archive.url} (sha256 {self.archive.sha256[:12]})"
        return self.image or f"{self.git}@{self.commit}"

    @property
    def tag(self) -> str:
        """The bakery:ui tag: the image reference, git#commit, or the archive's name and sha256."""
        if self.archive:
            return f"{self.archive.url.rsplit('/', 1)[-1]}@sha256:{self.archive.sha256}"[-256:]
        return (self.image or f"{self.git}#{self.commit}")[-256:]


@dataclass(frozen=True)
class Playbook:
    """A team playbook Packer's ansible provisioner runs after the project's own scripts."""

    path: Path
    check: str | None  # a shell command that succeeds on the image when the playbook applied


@dataclass(frozen=True)
class Qemu:
    """The local VM: where `--target qemu` bakes and verifies the same provisioners."""

    base: Download | None  # a cloud image (qcow2) to start from...
    debootstrap: str | None  # ...or a Debian release built here with debootstrap
    ssh_username: str
    memory_mib: int
    cpus: int
    disk_gib: int
    accelerator: str  # auto | kvm | tcg

    def describe(self) -> str:
        if self.debootstrap:
            return f"Debian {self.debootstrap} built with debootstrap"
        assert self.base is not None
        return f"{self.base.url} (sha256 {self.base.sha256[:12]})"


@dataclass(frozen=True)
class Verify:
    instance_types: tuple[str, ...]
    availability_zones: tuple[str, ...]
    min_gpu_memory_gib: int
    min_free_disk_gib: int
    generation_timeout_s: int
    network: Network = Network()


# MiB/s: EBS initializes a volume made from a snapshot at this rate (100-300), else lazily.
DEFAULT_VOLUME_INITIALIZATION_RATE = 300


@dataclass(frozen=True)
class Launch:
    instance_types: tuple[str, ...]
    volume_initialization_rate: int | None = DEFAULT_VOLUME_INITIALIZATION_RATE  # None: off
    # A scaling fleet (both, or neither: a fixed --capacity).
    min_capacity: int | None = None
    max_capacity: int | None = None
    requests_per_instance: int = 10
    # The load balancer: on when a certificate is named, with sign-in through OIDC.
    certificate_arn: str | None = None
    oidc_issuer: str | None = None
    oidc_client_id: str | None = None
    oidc_client_secret_param: str | None = None  # its NAME: never the secret
    # The issuer's endpoints; read from its discovery document when not given.
    oidc_authorization_endpoint: str | None = None
    oidc_token_endpoint: str | None = None
    oidc_user_info_endpoint: str | None = None
    allow_model_pulls: bool = False


@dataclass(frozen=True)
class Distribute:
    regions: tuple[str, ...]
    accounts: tuple[str, ...]
    organization_arns: tuple[str, ...]
    ou_arns: tuple[str, ...]
    kms_key_ids: dict[str, str]
    ssm_parameter: str | None
    keep: int
    deprecate_after_days: int


@dataclass(frozen=True)
class ImageDef:
    name: str
    path: Path
    description: str
    base: Base
    build: Build
    nvidia: Nvidia | None  # None: a CPU image (no driver step, Ollama does not wait for a GPU)
    ollama: Ollama
    models: tuple[Model, ...]
    ui: UI
    verify: Verify
    launch: Launch
    distribute: Distribute
    tags: dict[str, str] = field(default_factory=dict)
    qemu: Qemu | None = None
    playbooks: tuple[Playbook, ...] = ()

    @property
    def model_names(self) -> list[str]:
        return [m.name for m in self.models]


class _Table:
    """A TOML table being read: every key taken is remembered, the rest are unknown keys."""

    def __init__(self, path: Path, prefix: str, data: Any) -> None:
        self.path, self.prefix = path, prefix
        if not isinstance(data, dict):
            raise ConfigError(path, prefix, "must be a table")
        self.data, self.taken = data, set()

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def fail(self, name: str, message: str) -> ConfigError:
        return ConfigError(self.path, self.key(name), message)

    def get(
        self, name: str, kind: type | tuple[type, ...], default: Any = ..., *, what: str = ""
    ) -> Any:
        self.taken.add(name)
        if name not in self.data:
            if default is ...:
                raise self.fail(name, f"is required ({what or _kind(kind)})")
            return default
        value = self.data[name]
        if (kind is int and isinstance(value, bool)) or not isinstance(value, kind):
            raise self.fail(name, f"must be {what or _kind(kind)}, not {_show(value)}")
        return value

    def text(
        self,
        name: str,
        pattern: re.Pattern[str] | None = None,
        default: Any = ...,
        *,
        what: str = "",
    ) -> Any:
        value = self.get(name, str, default, what=what or "a string")
        if value is not default and pattern is not None and not pattern.match(value):
            raise self.fail(name, f"{_show(value)} is not {what}")
        return value

    def texts(
        self,
        name: str,
        pattern: re.Pattern[str],
        default: Any = ...,
        *,
        what: str,
        min_items: int = 0,
    ) -> tuple[str, ...]:
        values = self.get(name, list, default, what=f"a list, each {what}")
        if len(values) < min_items:
            raise self.fail(
                name, f"needs at least {min_items} item{'s' * (min_items > 1)} ({what})"
            )
        for i, value in enumerate(values):
            if not isinstance(value, str) or not pattern.match(value):
                raise ConfigError(
                    self.path, f"{self.key(name)}[{i}]", f"{_show(value)} is not {what}"
                )
        if len(set(values)) != len(values):
            raise self.fail(name, "lists an item twice")
        return tuple(values)

    def number(self, name: str, default: Any = ..., *, low: int, high: int, what: str = "") -> Any:
        value = self.get(name, int, default, what=what or f"an integer from {low} to {high}")
        if value is None:  # an optional number, left out
            return None
        if not low <= value <= high:
            raise self.fail(name, f"{value} is out of range ({low} to {high})")
        return int(value)

    def table(self, name: str, required: bool = True) -> _Table:
        self.taken.add(name)
        if name not in self.data and not required:
            return _Table(self.path, self.key(name), {})
        if name not in self.data:
            raise self.fail(name, "is required (a table)")
        return _Table(self.path, self.key(name), self.data[name])

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.taken)
        if unknown:
            allowed = ", ".join(sorted(self.taken))
            raise self.fail(unknown[0], f"unknown key (allowed here: {allowed})")


def _kind(kind: type | tuple[type, ...]) -> str:
    names = {
        str: "a string",
        int: "an integer",
        bool: "true or false",
        list: "a list",
        dict: "a table",
    }
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str) else f"{type(value).__name__} {value!r}"


def _gpu_types(table: _Table, name: str, default: Any = ...) -> tuple[str, ...]:
    types = table.texts(
        name, INSTANCE_TYPE_RE, default, what="an EC2 instance type (e.g. g5.xlarge)", min_items=1
    )
    for i, t in enumerate(types):
        if gpu_name(t) is None:
            known = ", ".join(sorted(GPU_BY_FAMILY))
            raise ConfigError(
                table.path,
                f"{table.key(name)}[{i}]",
                f"{t!r} is not an NVIDIA GPU instance type (families: {known})",
            )
    return types


def _base(t: _Table) -> Base:
    ssm = t.text("ssm_parameter", SSM_NAME_RE, None, what="an SSM parameter name (/path/to/ami-id)")
    filt = t.get("filter", dict, None)
    if (ssm is None) == (filt is None):
        raise t.fail(
            "ssm_parameter",
            "set exactly one of base.ssm_parameter or base.filter (never a literal AMI ID)",
        )
    name, owners = None, ()
    if filt is not None:
        f = t.table("filter")
        name = f.text("name", re.compile(r"^\S+$"), what="an AMI name pattern (wildcards allowed)")
        owners = f.texts(
            "owners",
            re.compile(r"^(\d{12}|amazon|aws-marketplace|self)$"),
            what="an owner account ID or alias",
            min_items=1,
        )
        f.done()
    user = t.text("ssh_username", re.compile(r"^[a-z_][a-z0-9_-]{0,31}$"), what="a Linux user name")
    t.done()
    return Base(ssm, name, owners, user)


DOWNLOAD_URL_RE = re.compile(r"^(https://\S+|s3://\S+|file:///\S+)$")


def _download(
    t: _Table, name: str, *, schemes: str = "https://, s3:// or file:///"
) -> Download | None:
    """An optional {url, sha256} table."""
    if name not in t.data:
        t.taken.add(name)
        return None
    d = t.table(name)
    url = d.text("url", DOWNLOAD_URL_RE, what=f"a {schemes} URL")
    sha = d.text("sha256", SHA256_RE, what="a sha256 (64 lowercase hex)")
    d.done()
    return Download(url, sha)


def _qemu(t: _Table) -> Qemu | None:
    if not t.data:
        t.done()
        return None
    base = _download(t, "base")
    release = None
    if base is None:
        release = t.text(
            "debootstrap",
            re.compile(r"^(bookworm|trixie)$"),
            None,
            what="a Debian release (bookworm)",
        )
    else:
        t.taken.add("debootstrap")
        if "debootstrap" in t.data:
            raise t.fail(
                "debootstrap", "set either qemu.base = {url, sha256} or qemu.debootstrap, not both"
            )
    if base is None and release is None:
        raise t.fail(
            "base",
            'is required: a disk image {url, sha256} (e.g. an Ubuntu cloud image), or qemu.debootstrap = "bookworm"',
        )
    qemu = Qemu(
        base=base,
        debootstrap=release,
        ssh_username=t.text(
            "ssh_username",
            re.compile(r"^[a-z_][a-z0-9_-]{0,31}$"),
            "debian" if release else ...,
            what="a Linux user name",
        ),
        memory_mib=t.number("memory_mib", 2048, low=512, high=262144),
        cpus=t.number("cpus", 2, low=1, high=64),
        disk_gib=t.number("disk_gib", 8, low=2, high=2048),
        accelerator=t.text(
            "accelerator", re.compile(r"^(auto|kvm|tcg)$"), "auto", what="auto, kvm or tcg"
        ),
    )
    t.done()
    return qemu


def _playbooks(path: Path, data: Any) -> tuple[Playbook, ...]:
    if data is None:
        return ()
    if not isinstance(data, list):
        raise ConfigError(path, "ansible", "must be a list of [[ansible]] tables")
    books = []
    for i, item in enumerate(data):
        t = _Table(path, f"ansible[{i}]", item)
        given = t.text("playbook", re.compile(r"^\S+\.ya?ml$"), what="a playbook file (.yml)")
        playbook = (path.parent / given) if not Path(given).is_absolute() else Path(given)
        if not playbook.is_file():
            raise t.fail("playbook", f"{given!r} does not exist (relative to {path.parent})")
        check = t.text("check", None, None, what="a shell command")
        t.done()
        books.append(Playbook(playbook.resolve(), check))
    return tuple(books)


BRANCH_RE = re.compile(r"^\d{3}$")


def _nvidia(t: _Table) -> Nvidia:
    install = t.get("install", bool)
    branch = t.text("driver_branch", BRANCH_RE, None, what="a driver branch (e.g. 580)")
    minimum = t.text("min_driver_branch", BRANCH_RE, None, what="a driver branch (e.g. 580)")
    if install and branch is None:
        raise t.fail("driver_branch", "is required with install = true (the branch to install)")
    if install and minimum is not None:
        raise t.fail(
            "min_driver_branch",
            "applies only with install = false; with install = true driver_branch pins the branch",
        )
    if not install and branch is not None:
        # The meaning driver_branch had before: a pin the base's next release breaks.
        raise t.fail(
            "driver_branch",
            "pins a branch only with install = true; with install = false the base's driver is"
            f" used as it is: write min_driver_branch = {branch!r} to refuse older branches",
        )
    t.done()
    return Nvidia(branch, install, minimum)


def subnet_choice(value: str) -> str:
    """A subnet ID or tag:KEY=VALUE, else ValueError (the caller names where it came from)."""
    if not isinstance(value, str) or not (SUBNET_ID_RE.match(value) or SUBNET_TAG_RE.match(value)):
        raise ValueError(f"{_show(value)} is not {SUBNET_WHAT}")
    return value


def _network(t: _Table) -> Network:
    subnet = t.get("subnet", str, None, what=SUBNET_WHAT)
    if subnet is not None:
        try:
            subnet_choice(subnet)
        except ValueError as e:
            raise t.fail("subnet", str(e)) from None
    groups = t.texts(
        "security_group_ids", SECURITY_GROUP_RE, (), what="a security group ID (sg-...)"
    )
    communicator = t.text("communicator", None, "ssh", what=" or ".join(map(repr, COMMUNICATORS)))
    if communicator not in COMMUNICATORS:
        raise t.fail(
            "communicator", f"{communicator!r} is not {' or '.join(map(repr, COMMUNICATORS))}"
        )
    profile = t.text("instance_profile", PROFILE_NAME_RE, None, what="an instance profile name")
    return Network(subnet, groups, communicator, profile)


def _initialization_rate(t: _Table) -> int | None:
    value = t.get(
        "volume_initialization_rate",
        (int, str),
        DEFAULT_VOLUME_INITIALIZATION_RATE,
        what='MiB/s from 100 to 300, or "off"',
    )
    if value == "off":
        return None
    if isinstance(value, str | bool) or not 100 <= value <= 300:
        shown = value if type(value) is int else _show(value)
        raise t.fail(
            "volume_initialization_rate", f'{shown} is not MiB/s from 100 to 300, or "off"'
        )
    return int(value)


def _models(path: Path, data: Any) -> tuple[Model, ...]:
    if not isinstance(data, list) or not data:
        raise ConfigError(path, "models", "needs at least one [[models]] entry")
    models = []
    for i, item in enumerate(data):
        t = _Table(path, f"models[{i}]", item)
        name = t.text("name", MODEL_RE, what="an Ollama model reference (e.g. deepseek-r1:7b)")
        gguf = t.table("gguf", required=False)
        url = gguf.text(
            "url", GGUF_URL_RE, None, what="an s3://, https:// or file:///absolute/path URL"
        )
        sha = gguf.text("sha256", SHA256_RE, None, what="a sha256 (64 lowercase hex)")
        if (url is None) != (sha is None):
            raise gguf.fail("sha256" if url else "url", "a GGUF import needs both url and sha256")
        gguf.done()
        t.done()
        models.append(Model(name, url, sha))
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise ConfigError(path, "models", "lists a model twice")
    return tuple(models)


def _ui(t: _Table) -> UI:
    image = t.text(
        "image",
        DIGEST_REF_RE,
        None,
        what="an image reference pinned by digest (repo@sha256:<64 hex>)",
    )
    git = t.text("git", re.compile(r"^https://\S+$"), None, what="an https:// git URL")
    commit = t.text("commit", COMMIT_RE, None, what="a full 40-hex commit")
    if image and (git or commit):
        raise t.fail("image", "set either ui.image or ui.git + ui.commit, not both")
    archive = _download(t, "archive")
    if archive and (image or git or commit):
        raise t.fail("archive", "set one UI source: ui.archive, ui.image, or ui.git + ui.commit")
    if not archive and not image and not (git and commit):
        raise t.fail(
            "image",
            "is required (a digest-pinned image), or ui.git with ui.commit (a pinned source),"
            " or ui.archive = {url, sha256} (an image archive for docker load)",
        )
    env = t.text(
        "ollama_url_env",
        re.compile(r"^[A-Z_][A-Z0-9_]*$"),
        "OLLAMA_URL",
        what="an environment variable name",
    )
    port = t.number("port", 3000, low=1024, high=65535)
    if port == 11434:
        raise t.fail("port", "11434 is Ollama's port, which is never exposed")
    t.done()
    return UI(image, git, commit, env, port, archive)


def _parameter_name(t: _Table, name: str) -> str | None:
    """The NAME of the parameter holding a secret; what was written is never echoed, since it
    may be the secret itself, put there by mistake."""
    value = t.get(name, str, None)
    if value is not None and not PARAMETER_NAME_RE.match(value):
        raise t.fail(
            name,
            "is not the NAME of an SSM SecureString parameter holding the secret (or"
            " /aws/reference/secretsmanager/SECRET_NAME); the secret itself never goes here",
        )
    return str(value) if value is not None else None


def _launch(t: _Table) -> Launch:
    types = _gpu_types(t, "instance_types")
    if len(types) < 2:
        raise t.fail(
            "instance_types",
            "needs at least two GPU instance types (spot capacity diversification)",
        )
    low = t.number("min_capacity", None, low=1, high=1000)
    high = t.number("max_capacity", None, low=1, high=1000)
    if (low is None) != (high is None):
        raise t.fail(
            "max_capacity" if low is not None else "min_capacity",
            "set min_capacity and max_capacity together (a scaling fleet), or neither (--capacity)",
        )
    if low is not None and high is not None and low > high:
        raise t.fail("max_capacity", f"{high} is below min_capacity ({low})")
    url = "an https:// URL"
    launch = Launch(
        instance_types=types,
        volume_initialization_rate=_initialization_rate(t),
        min_capacity=low,
        max_capacity=high,
        requests_per_instance=t.number("requests_per_instance", 10, low=1, high=100000),
        certificate_arn=t.text(
            "certificate_arn",
            CERTIFICATE_ARN_RE,
            None,
            what="an ACM certificate ARN (arn:aws:acm:REGION:ACCOUNT:certificate/ID)",
        ),
        oidc_issuer=t.text("oidc_issuer", HTTPS_URL_RE, None, what=f"{url} (the issuer)"),
        oidc_client_id=t.text(
            "oidc_client_id", OIDC_CLIENT_ID_RE, None, what="a client ID (printable, no spaces)"
        ),
        oidc_client_secret_param=_parameter_name(t, "oidc_client_secret_param"),
        oidc_authorization_endpoint=t.text(
            "oidc_authorization_endpoint", HTTPS_URL_RE, None, what=url
        ),
        oidc_token_endpoint=t.text("oidc_token_endpoint", HTTPS_URL_RE, None, what=url),
        oidc_user_info_endpoint=t.text("oidc_user_info_endpoint", HTTPS_URL_RE, None, what=url),
        allow_model_pulls=t.get("allow_model_pulls", bool, False),
    )
    endpoints = {
        k: getattr(launch, k)
        for k in ("oidc_authorization_endpoint", "oidc_token_endpoint", "oidc_user_info_endpoint")
    }
    given = [k for k, v in endpoints.items() if v]
    if given and len(given) < len(endpoints):
        missing = next(k for k, v in endpoints.items() if not v)
        raise t.fail(missing, "set all three OIDC endpoints, or none (read from the issuer)")
    if given and not launch.oidc_issuer:
        raise t.fail(given[0], "applies only with oidc_issuer")
    t.done()
    return launch


def load(name_or_path: str | Path, images_dir: Path = IMAGES_DIR) -> ImageDef:
    """Load and check one image definition, by name (images/<name>.toml) or path."""
    path = Path(name_or_path)
    if path.suffix != ".toml":
        if not NAME_RE.match(str(name_or_path)):
            raise ConfigError(
                name_or_path, "", "is not an image name (lowercase letters, digits and dashes)"
            )
        path = images_dir / f"{name_or_path}.toml"
    if not path.is_file():
        known = ", ".join(names(images_dir)) or "none"
        raise ConfigError(rel(path), "", f"no such image definition (images: {known})")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(rel(path), "", f"is not valid TOML: {e}") from None
    except UnicodeDecodeError:
        raise ConfigError(rel(path), "", "is not UTF-8 text") from None
    return _parse(rel(path), path.stem, data)


def _parse(path: Path, name: str, data: dict[str, Any]) -> ImageDef:
    if not NAME_RE.match(name):
        raise ConfigError(
            path, "", "file name must be an image name (lowercase letters, digits, dashes)"
        )
    top = _Table(path, "", data)
    description = top.text("description", None, "")
    base = _base(top.table("base"))

    b = top.table("build")
    build = Build(
        instance_types=b.texts(
            "instance_types",
            INSTANCE_TYPE_RE,
            what="an EC2 instance type (e.g. c6i.xlarge)",
            min_items=1,
        ),
        root_volume_gib=b.number("root_volume_gib", 100, low=30, high=16384),
        kms_key_id=b.text(
            "kms_key_id",
            re.compile(r"^(alias/[\w/_-]+|arn:aws[\w-]*:kms:\S+|[0-9a-f-]{36})$"),
            None,
            what="a KMS key ID, ARN or alias/NAME",
        ),
        timeout_minutes=b.number("timeout_minutes", 120, low=10, high=720),
        network=_network(b),
    )
    b.done()

    n = top.table("nvidia", required=False)
    nvidia = _nvidia(n) if n.data else None  # no [nvidia]: a CPU image
    n.done()

    o = top.table("ollama")
    version = o.text("version", VERSION_RE, what="a release version (e.g. 0.13.1)")
    ollama = Ollama(
        version,
        o.text(
            "sha256",
            SHA256_RE,
            what="the sha256 of the archive at ollama.url (64 lowercase hex)",
        ),
        o.text(
            "keep_alive", re.compile(r"^-?\d+[smh]?$"), "-1", what="a duration (e.g. -1, 30m, 24h)"
        ),
        o.text(
            "url",
            OLLAMA_URL_RE,
            release_url(version),
            what="an https:// or file:/// URL of a .tgz or .tar.zst release archive",
        ),
    )
    o.done()

    top.taken.add("models")
    models = _models(path, data.get("models"))
    ui = _ui(top.table("ui"))

    v = top.table("verify")
    verify = Verify(
        instance_types=_gpu_types(v, "instance_types"),
        availability_zones=v.texts(
            "availability_zones",
            re.compile(r"^[a-z]{2}-[a-z]+-\d[a-z]$"),
            (),
            what="an availability zone name",
        ),
        min_gpu_memory_gib=v.number("min_gpu_memory_gib", 16, low=1, high=1024),
        min_free_disk_gib=v.number("min_free_disk_gib", 10, low=1, high=16384),
        generation_timeout_s=v.number("generation_timeout_s", 120, low=5, high=3600),
        network=_network(v),
    )
    v.done()

    launch = _launch(top.table("launch"))

    d = top.table("distribute", required=False)
    kms = d.get("kms_key_ids", dict, {}, what="a table of region = KMS key ARN")
    for region, key in kms.items():
        if not REGION_RE.match(region) or not isinstance(key, str) or not key.startswith("arn:aws"):
            raise ConfigError(
                path, f"distribute.kms_key_ids.{region}", "must map a region name to a KMS key ARN"
            )
    distribute = Distribute(
        regions=d.texts("regions", REGION_RE, (), what="an AWS region name (e.g. eu-west-1)"),
        accounts=d.texts("accounts", ACCOUNT_RE, (), what="a 12-digit AWS account ID"),
        organization_arns=d.texts(
            "organization_arns",
            ORG_ARN_RE,
            (),
            what="an organization ARN (arn:aws:organizations::<account>:organization/o-...)",
        ),
        ou_arns=d.texts(
            "ou_arns",
            OU_ARN_RE,
            (),
            what="an organizational unit ARN (arn:aws:organizations::<account>:ou/o-.../ou-...)",
        ),
        kms_key_ids=dict(kms),
        ssm_parameter=d.text("ssm_parameter", SSM_NAME_RE, None, what="an SSM parameter name"),
        keep=d.number("keep", 3, low=1, high=100),
        deprecate_after_days=d.number("deprecate_after_days", 90, low=1, high=3650),
    )
    if distribute.ssm_parameter and distribute.ssm_parameter.lower().startswith(("/aws", "/ssm")):
        raise d.fail("ssm_parameter", "names under /aws and /ssm are reserved by AWS")
    d.done()

    tags = top.get("tags", dict, {}, what="a table of string tags")
    for key, value in tags.items():
        if not TAG_KEY_RE.match(key) or key.lower().startswith(("aws:", "bakery:")):
            raise ConfigError(
                path, f"tags.{key}", "is not a tag key you may set (aws: and bakery: are reserved)"
            )
        if not isinstance(value, str) or len(value) > 256:
            raise ConfigError(path, f"tags.{key}", "must be a string of at most 256 characters")
    qemu = _qemu(top.table("qemu", required=False))
    top.taken.add("ansible")
    playbooks = _playbooks(path, data.get("ansible"))
    top.done()
    _one_file_per_name(
        path,
        [
            ("ollama.url", ollama.archive),
            *((f"models[{i}].gguf.url", m.gguf) for i, m in enumerate(models)),
            ("ui.archive.url", ui.archive),
        ],
    )
    return ImageDef(
        name,
        path,
        description,
        base,
        build,
        nvidia,
        ollama,
        models,
        ui,
        verify,
        launch,
        distribute,
        dict(tags),
        qemu,
        playbooks,
    )


def _one_file_per_name(path: Path, downloads: list[tuple[str, Download | None]]) -> None:
    """The bake uploads the build host's file:// files into one folder, by file name."""
    seen: dict[str, tuple[str, Path]] = {}
    for key, download in downloads:
        local = download.local_path if download else None
        if local is None:
            continue
        if local.name in seen and seen[local.name][1] != local:
            raise ConfigError(
                path,
                key,
                f"file://{local} has the file name of {seen[local.name][0]} (file://"
                f"{seen[local.name][1]}): the bake uploads both into one folder; rename one",
            )
        seen[local.name] = (key, local)


def names(images_dir: Path = IMAGES_DIR) -> list[str]:
    return sorted(p.stem for p in images_dir.glob("*.toml"))


def rel(path: Path) -> Path:
    """A path as messages show it: relative to the working directory when inside it."""
    try:
        return path.resolve().relative_to(Path.cwd())
    except ValueError:
        return path
