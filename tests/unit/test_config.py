"""Image definitions: the shipped ones load; every mistake is one line naming file and key."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from bakery import config
from bakery.errors import ConfigError

IMAGES = Path(__file__).resolve().parents[2] / "images"
GOOD = (IMAGES / "deepseek-r1-7b.toml").read_text()


@pytest.mark.parametrize("name", config.names())
def test_shipped_definitions_load(name: str) -> None:
    image = config.load(name)
    assert image.name == name
    assert image.models and image.verify.instance_types and len(image.launch.instance_types) >= 2


def test_two_bases_prove_the_format_is_not_one_images() -> None:
    installs = {config.load(n).nvidia.install for n in config.names()}
    assert installs == {True, False}


def write(tmp_path: Path, text: str, name: str = "img.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def error_of(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        config.load(path)
    message = str(info.value)
    assert "\n" not in message
    return message


def edit(old: str, new: str) -> str:
    assert old in GOOD, old
    return GOOD.replace(old, new, 1)


CASES = [
    pytest.param(edit("[build]", "[build\n"), "is not valid TOML", id="malformed-toml"),
    pytest.param(
        edit("root_volume_gib = 100", "root_volume_gib = 100\nroot_volume_gb = 5"),
        "build.root_volume_gb: unknown key (allowed here:",
        id="unknown-key",
    ),
    pytest.param(
        edit('"c5.xlarge"', '"c5.xlargee"'),
        "build.instance_types[1]: 'c5.xlargee' is not an EC2 instance type (e.g. c6i.xlarge)",
        id="bad-instance-type",
    ),
    pytest.param(
        edit(
            'instance_types = ["g5.xlarge", "g5.2xlarge", "g6.xlarge"]',
            'instance_types = ["c6i.xlarge"]',
        ),
        "verify.instance_types[0]: 'c6i.xlarge' is not an NVIDIA GPU instance type",
        id="verify-needs-gpu",
    ),
    pytest.param(
        edit(
            'instance_types = ["g5.xlarge", "g5.2xlarge", "g6.xlarge", "g6e.xlarge"]',
            'instance_types = ["g5.xlarge"]',
        ),
        "launch.instance_types: needs at least two GPU instance types",
        id="launch-needs-two",
    ),
    pytest.param(
        edit(
            'ssm_parameter = "/aws/service/deeplearning',
            'ami = "ami-0123456789abcdef0"\nssm_x = "/aws/service/deeplearning',
        ),
        "base.ssm_parameter: set exactly one of base.ssm_parameter or base.filter (never a literal AMI ID)",
        id="literal-ami",
    ),
    pytest.param(edit('sha256 = "4997', 'sha256 = "XYZ'), "ollama.sha256: 'XYZ", id="bad-sha"),
    pytest.param(
        edit('commit = "99d7cc1a01d8357c48842c60ff6302d82bd2e9bb"', 'commit = "main"'),
        "ui.commit: 'main' is not a full 40-hex commit",
        id="unpinned-ui",
    ),
    pytest.param(
        edit("port = 3000", "port = 11434"), "ui.port: 11434 is Ollama's port", id="ollama-port"
    ),
    pytest.param(
        edit("install = false", 'install = "no"'),
        "nvidia.install: must be true or false, not 'no'",
        id="wrong-type",
    ),
    pytest.param(
        edit("root_volume_gib = 100", "root_volume_gib = 8"),
        "build.root_volume_gib: 8 is out of range (30 to 16384)",
        id="range",
    ),
    pytest.param(
        edit("accounts = []", 'accounts = ["12345"]'),
        "distribute.accounts[0]: '12345' is not a 12-digit AWS account ID",
        id="bad-account",
    ),
    pytest.param(
        edit('Project = "private-llm"', '"bakery:image" = "x"'),
        "tags.bakery:image: is not a tag key you may set",
        id="reserved-tag",
    ),
    pytest.param(
        edit('[[models]]\nname = "deepseek-r1:7b"', ""),
        "models: needs at least one [[models]] entry",
        id="no-models",
    ),
    pytest.param(
        GOOD.replace("[ui]\n", "[uii]\n"),
        "ui: is required (a table)",
        id="missing-table",
    ),
    pytest.param(
        GOOD + "\n[qemu]\nmemory_mib = 1024\n",
        "qemu.base: is required: a disk image {url, sha256}",
        id="qemu-without-base",
    ),
    pytest.param(
        GOOD + '\n[qemu]\nbase = { url = "https://example.com/disk.img" }\n',
        "qemu.base.sha256: is required",
        id="qemu-base-without-sha256",
    ),
    pytest.param(
        GOOD + '\n[qemu]\ndebootstrap = "bookworm"\naccelerator = "hvf"\n',
        "qemu.accelerator: 'hvf' is not auto, kvm or tcg",
        id="qemu-bad-accelerator",
    ),
    pytest.param(
        GOOD + '\n[qemu]\ndebootstrap = "bookworm"\ncpu = 2\n',
        "qemu.cpu: unknown key (allowed here:",
        id="qemu-unknown-key",
    ),
    pytest.param(
        GOOD + '\n[[ansible]]\nplaybook = "no-such-playbook.yml"\n',
        "ansible[0].playbook: 'no-such-playbook.yml' does not exist",
        id="ansible-missing-playbook",
    ),
    pytest.param(
        edit('min_driver_branch = "580"', 'driver_branch = "580"'),
        "nvidia.driver_branch: pins a branch only with install = true; with install = false the"
        " base's driver is used as it is: write min_driver_branch = '580' to refuse older branches",
        id="old-meaning-of-driver-branch",
    ),
    pytest.param(
        edit("install = false", "install = true"),
        "nvidia.driver_branch: is required with install = true (the branch to install)",
        id="install-without-branch",
    ),
    pytest.param(
        edit("install = false", 'install = true\ndriver_branch = "580"'),
        "nvidia.min_driver_branch: applies only with install = false",
        id="minimum-with-install",
    ),
    pytest.param(
        edit("[build]", '[build]\nsubnet = "private"'),
        "build.subnet: 'private' is not a subnet ID (subnet-...) or a tag filter (tag:KEY=VALUE)",
        id="bad-subnet",
    ),
    pytest.param(
        edit("[verify]", '[verify]\nsecurity_group_ids = ["default"]'),
        "verify.security_group_ids[0]: 'default' is not a security group ID (sg-...)",
        id="bad-security-group",
    ),
    pytest.param(
        edit("[verify]", '[verify]\ncommunicator = "ssm"'),
        "verify.communicator: 'ssm' is not 'ssh' or 'session_manager'",
        id="bad-communicator",
    ),
    pytest.param(
        edit("volume_initialization_rate = 300", "volume_initialization_rate = 500"),
        'launch.volume_initialization_rate: 500 is not MiB/s from 100 to 300, or "off"',
        id="initialization-rate-range",
    ),
    pytest.param(
        edit("volume_initialization_rate = 300", 'volume_initialization_rate = "fast"'),
        "launch.volume_initialization_rate: 'fast' is not MiB/s from 100 to 300",
        id="initialization-rate-word",
    ),
    pytest.param(
        edit("[launch]", "[launch]\nmin_capacity = 1"),
        "launch.max_capacity: set min_capacity and max_capacity together",
        id="min-without-max",
    ),
    pytest.param(
        edit("[launch]", "[launch]\nmin_capacity = 3\nmax_capacity = 2"),
        "launch.max_capacity: 2 is below min_capacity (3)",
        id="max-below-min",
    ),
    pytest.param(
        edit("[launch]", "[launch]\nmin_capacity = 0\nmax_capacity = 2"),
        "launch.min_capacity: 0 is out of range (1 to 1000)",
        id="scaling-from-zero",
    ),
    pytest.param(
        edit("[launch]", '[launch]\ncertificate_arn = "chat.example.com"'),
        "launch.certificate_arn: 'chat.example.com' is not an ACM certificate ARN",
        id="certificate-not-an-arn",
    ),
    pytest.param(
        edit("[launch]", '[launch]\noidc_issuer = "http://login.example.com"'),
        "launch.oidc_issuer: 'http://login.example.com' is not an https:// URL",
        id="plain-http-issuer",
    ),
    pytest.param(
        edit("[launch]", '[launch]\noidc_client_secret_param = "hunter2 secret!"'),
        "launch.oidc_client_secret_param: is not the NAME of an SSM SecureString parameter",
        id="secret-instead-of-its-name",
    ),
    pytest.param(
        edit(
            "[launch]",
            '[launch]\noidc_issuer = "https://id.example.com"\n'
            'oidc_token_endpoint = "https://id.example.com/token"',
        ),
        "launch.oidc_authorization_endpoint: set all three OIDC endpoints, or none",
        id="one-endpoint",
    ),
    pytest.param(
        edit("[launch]", '[launch]\nallow_model_pulls = "yes"'),
        "launch.allow_model_pulls: must be true or false, not 'yes'",
        id="pulls-not-a-bool",
    ),
]


def test_launch_table_with_a_load_balancer_loads(tmp_path: Path) -> None:
    text = edit(
        "[launch]",
        "[launch]\n"
        'certificate_arn = "arn:aws:acm:eu-west-1:123456789012:certificate/abc-123"\n'
        'oidc_issuer = "https://id.example.com"\n'
        'oidc_client_id = "bakery"\n'
        'oidc_client_secret_param = "/bakery/oidc-client-secret"\n'
        "min_capacity = 1\nmax_capacity = 4\nrequests_per_instance = 30\n"
        "allow_model_pulls = true",
    )
    launch = config.load(write(tmp_path, text)).launch
    assert (launch.min_capacity, launch.max_capacity, launch.requests_per_instance) == (1, 4, 30)
    assert launch.oidc_client_secret_param == "/bakery/oidc-client-secret"
    assert launch.allow_model_pulls is True
    assert launch.oidc_token_endpoint is None  # read from the issuer at launch


def test_a_secret_written_instead_of_its_name_is_not_echoed(tmp_path: Path) -> None:
    path = write(
        tmp_path, edit("[launch]", '[launch]\noidc_client_secret_param = "hunter2 secret!"')
    )
    assert "hunter2" not in error_of(path)


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_definition_errors_name_file_key_and_what_is_allowed(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = write(tmp_path, text)
    message = error_of(path)
    assert message.startswith(str(path)), message
    assert expected in message, message


def test_network_settings_load(tmp_path: Path) -> None:
    text = edit(
        "[verify]",
        '[verify]\nsubnet = "tag:Tier=private"\nsecurity_group_ids = ["sg-0123456789abcdef0"]\n'
        'communicator = "session_manager"\ninstance_profile = "bakery-verify"',
    )
    image = config.load(write(tmp_path, text))
    assert image.verify.network == config.Network(
        "tag:Tier=private", ("sg-0123456789abcdef0",), "session_manager", "bakery-verify"
    )
    assert image.verify.network.session_manager
    assert image.build.network == config.Network()  # ssh, default VPC, own group


def test_volume_initialization_can_be_off(tmp_path: Path) -> None:
    text = edit("volume_initialization_rate = 300", 'volume_initialization_rate = "off"')
    assert config.load(write(tmp_path, text)).launch.volume_initialization_rate is None
    text = edit("volume_initialization_rate = 300\n", "")
    assert config.load(write(tmp_path, text)).launch.volume_initialization_rate == 300


def test_the_bases_driver_with_or_without_a_minimum(tmp_path: Path) -> None:
    assert config.load("deepseek-r1-7b").nvidia == config.Nvidia(None, False, "580")
    text = edit('min_driver_branch = "580"  # refuse a base with an older branch\n', "")
    assert config.load(write(tmp_path, text)).nvidia == config.Nvidia(None, False, None)
    assert config.load("deepseek-r1-7b-ubuntu2404").nvidia == config.Nvidia("580", True, None)


def test_gguf_import_needs_url_and_checksum(tmp_path: Path) -> None:
    text = GOOD.replace(
        '[[models]]\nname = "deepseek-r1:7b"',
        '[[models]]\nname = "deepseek-r1:7b"\n\n[[models]]\nname = "team-model"\ngguf = { url = "s3://b/m.gguf" }',
    )
    assert "models[1].gguf.sha256: a GGUF import needs both url and sha256" in error_of(
        write(tmp_path, text)
    )


def test_gguf_import_loads(tmp_path: Path) -> None:
    sha = "a" * 64
    text = GOOD.replace(
        '[[models]]\nname = "deepseek-r1:7b"',
        f'[[models]]\nname = "deepseek-r1:7b"\n\n[[models]]\nname = "team-model"\ngguf = {{ url = "s3://b/m.gguf", sha256 = "{sha}" }}',
    )
    image = config.load(write(tmp_path, text))
    assert image.models[1] == config.Model("team-model", "s3://b/m.gguf", sha)


@pytest.mark.parametrize(
    "url",
    ["s3://b/m.gguf", "https://models.example.com/m.gguf", "file:///srv/models/m.gguf"],
    ids=["s3", "https", "file"],
)
def test_gguf_url_schemes(tmp_path: Path, url: str) -> None:
    text = GOOD.replace(
        '[[models]]\nname = "deepseek-r1:7b"',
        f'[[models]]\nname = "team-model"\ngguf = {{ url = "{url}", sha256 = "{"b" * 64}" }}',
    )
    assert config.load(write(tmp_path, text)).models[0].gguf_url == url


@pytest.mark.parametrize(
    "url",
    ["file://relative/m.gguf", "ftp://host/m.gguf", "https://host/a|b.gguf"],
    ids=["relative-file", "ftp", "pipe"],
)
def test_gguf_url_must_be_s3_https_or_absolute_file(tmp_path: Path, url: str) -> None:
    text = GOOD.replace(
        '[[models]]\nname = "deepseek-r1:7b"',
        f'[[models]]\nname = "team-model"\ngguf = {{ url = "{url}", sha256 = "{"b" * 64}" }}',
    )
    assert (
        f"models[0].gguf.url: '{url}' is not an s3://, https:// or file:///absolute/path URL"
        in error_of(write(tmp_path, text))
    )


def test_file_urls_need_distinct_file_names(tmp_path: Path) -> None:
    text = edit('keep_alive = "-1"', 'keep_alive = "-1"\nurl = "file:///srv/a/m.tgz"').replace(
        '[[models]]\nname = "deepseek-r1:7b"',
        f'[[models]]\nname = "team-model"\ngguf = {{ url = "file:///srv/b/m.tgz", sha256 = "{"b" * 64}" }}',
    )
    assert (
        "models[0].gguf.url: file:///srv/b/m.tgz has the file name of ollama.url (file:///srv/a/m.tgz)"
        in error_of(write(tmp_path, text))
    )


def test_ollama_url_defaults_to_the_release_of_the_version() -> None:
    ollama = config.load("deepseek-r1-7b").ollama
    assert ollama.url == (
        "https://github.com/ollama/ollama/releases/download/v0.13.1/ollama-linux-amd64.tgz"
    )


@pytest.mark.parametrize(
    "url",
    [
        "https://mirror.example.com/ollama/v0.14.0/ollama-linux-amd64.tar.zst",
        "file:///srv/mirror/ollama-linux-amd64.tgz",
    ],
    ids=["https-zst", "file-tgz"],
)
def test_ollama_url_takes_a_mirror_or_a_local_file(tmp_path: Path, url: str) -> None:
    text = edit('keep_alive = "-1"', f'keep_alive = "-1"\nurl = "{url}"')
    assert config.load(write(tmp_path, text)).ollama.url == url


@pytest.mark.parametrize(
    "url",
    [
        "http://mirror.example.com/ollama-linux-amd64.tgz",
        "https://mirror.example.com/ollama-linux-amd64.zip",
        "file://ollama-linux-amd64.tgz",
    ],
    ids=["http", "zip", "relative-file"],
)
def test_ollama_url_errors(tmp_path: Path, url: str) -> None:
    text = edit('keep_alive = "-1"', f'keep_alive = "-1"\nurl = "{url}"')
    assert (
        f"ollama.url: '{url}' is not an https:// or file:/// URL of a .tgz or .tar.zst"
        in error_of(write(tmp_path, text))
    )


def test_base_filter_form(tmp_path: Path) -> None:
    text = edit(
        'ssm_parameter = "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-22.04/latest/ami-id"',
        'filter = { name = "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*", owners = ["099720109477"] }',
    )
    base = config.load(write(tmp_path, text)).base
    assert (base.ssm_parameter, base.filter_owners) == (None, ("099720109477",))


def test_unknown_image_name_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError) as info:
        config.load("no-such-image")
    assert "no such image definition (images: deepseek-r1-7b, deepseek-r1-7b-ubuntu2404)" in str(
        info.value
    )


def test_file_name_must_be_an_image_name(tmp_path: Path) -> None:
    assert "file name must be an image name" in error_of(write(tmp_path, GOOD, "Bad_Name.toml"))


def test_good_fixture_is_valid_toml() -> None:
    assert tomllib.loads(GOOD)["base"]["ssh_username"] == "ubuntu"
