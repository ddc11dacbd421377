"""The team's own playbooks ([[ansible]] in the definition) left what they promise: each
entry's `check` command succeeds on the host. One test per playbook; none when there are none."""

from __future__ import annotations

from typing import Any

import pytest
from image_probe import Root


def test_playbook_applied(playbook: dict[str, Any], root: Root) -> None:
    if playbook["check"] is None:
        pytest.skip(f"the definition gives playbook {playbook['name']} no check command")
    out = root.run(playbook["check"])
    assert out.rc == 0, (
        f"playbook {playbook['name']}: its check `{playbook['check']}` exited {out.rc}:"
        f" {(out.stderr or out.stdout).strip()[:300]}"
    )
