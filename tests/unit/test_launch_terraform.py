"""The terraform runner: an interrupt reaches terraform once, from us, and we wait for it to
stop (killing it mid-apply could lose the state); a failure ends with terraform's own words."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bakery import terraform as tf
from bakery.errors import BakeryError

# Stands in for terraform: counts the interrupts it gets, and takes a moment to stop cleanly.
FAKE_TERRAFORM = """\
#!/bin/sh
trap 'echo "fake: interrupt received"; sleep 0.3; echo "fake: state written"; exit 1' INT
echo "fake: applying $*"
while true; do sleep 0.05; done
"""

RUNNER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from bakery import terraform as tf

    runner = tf.Terraform(Path(sys.argv[2]), sys.argv[1], say=lambda line: print(line, flush=True))
    try:
        runner.check("apply", "-auto-approve")
    except tf.Stopped as e:
        print(f"runner: stopped during {e.verb}", flush=True)
        sys.exit(130)
    """
)


def fake(tmp_path: Path, text: str) -> str:
    path = tmp_path / "terraform"
    path.write_text(text)
    path.chmod(0o755)
    return str(path)


def test_an_interrupt_lets_terraform_stop_cleanly(tmp_path: Path) -> None:
    binary = fake(tmp_path, FAKE_TERRAFORM)
    proc = subprocess.Popen(
        [sys.executable, "-c", RUNNER, binary, str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    lines = [proc.stdout.readline().rstrip("\n")]
    assert lines[0].startswith("fake: applying -chdir="), lines
    proc.send_signal(signal.SIGINT)  # as Ctrl-C would, to our process only
    out, _ = proc.communicate(timeout=30)
    lines += out.splitlines()
    assert proc.returncode == 130, lines
    assert lines[1:] == [
        "terraform: interrupted; waiting for terraform to stop cleanly and write its state"
        " (interrupt again to make it stop at once)",
        "fake: interrupt received",
        "fake: state written",
        "runner: stopped during apply",
    ]


def test_a_failure_is_terraforms_first_error(tmp_path: Path) -> None:
    binary = fake(
        tmp_path,
        "#!/bin/sh\necho 'Planning...'\necho '│ Error: Unsupported argument' >&2\n"
        "echo '│ An argument named \"x\" is not expected here.' >&2\nexit 1\n",
    )
    said: list[str] = []
    runner = tf.Terraform(tmp_path, binary, say=said.append)
    with pytest.raises(BakeryError) as e:
        runner.check("plan")
    assert str(e.value).endswith(
        ': Error: Unsupported argument An argument named "x" is not expected here.'
    )
    assert "Planning..." in said  # the output was shown as it came


def test_version_too_old(tmp_path: Path) -> None:
    binary = fake(tmp_path, '#!/bin/sh\necho \'{"terraform_version": "1.4.6"}\'\n')
    with pytest.raises(BakeryError) as e:
        tf.version(binary)
    assert str(e.value) == (
        f"terraform 1.4.6 at {binary} is too old: the fleet module needs >= 1.5.0"
    )


def test_version(tmp_path: Path) -> None:
    binary = fake(tmp_path, '#!/bin/sh\necho \'{"terraform_version": "1.11.4"}\'\n')
    assert tf.version(binary) == (1, 11, 4)


def test_a_tofu_failure_and_interrupt_name_tofu(tmp_path: Path) -> None:
    # Stands in for a tofu that fails: the message must name the program that ran.
    binary = str(tmp_path / "tofu")
    Path(binary).write_text(
        "#!/bin/sh\necho '│ Error: No valid credential sources found' >&2\nexit 1\n"
    )
    Path(binary).chmod(0o755)
    runner = tf.Terraform(tmp_path, binary, say=lambda line: None)
    with pytest.raises(BakeryError) as e:
        runner.check("apply")
    assert str(e.value).startswith("tofu apply failed in ")
    assert str(tf.Stopped("destroy", runner.name)) == "tofu destroy interrupted"
