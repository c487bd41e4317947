"""systemd/sinkhole.sysusers: systemd-sysusers accepts it and creates the unit's User=."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from support.system import program

from .conftest import REPO
from .test_unit import one

SYSUSERS = REPO / "systemd" / "sinkhole.sysusers"


@pytest.mark.system("systemd-sysusers")
def test_sysusers_creates_the_service_user(tmp_path: Path) -> None:
    tool = program("systemd-sysusers")
    (tmp_path / "etc").mkdir()
    result = subprocess.run(
        [tool, f"--root={tmp_path}", "--dry-run", "-"],
        input=SYSUSERS.read_text(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    user = one("User")
    assert f"Creating user '{user}'" in output
    assert f"Creating group '{user}'" in output
    assert "Failed" not in output and "Unknown" not in output, output
