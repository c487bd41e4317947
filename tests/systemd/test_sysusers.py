"""systemd/sinkhole.sysusers: systemd-sysusers accepts it and creates the unit's User=."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from .conftest import REPO
from .test_unit import one

SYSUSERS = REPO / "systemd" / "sinkhole.sysusers"


def test_sysusers_creates_the_service_user(tmp_path: Path) -> None:
    tool = shutil.which("systemd-sysusers")
    if tool is None:
        pytest.fail("systemd-sysusers is missing: install the 'systemd' package", pytrace=False)
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
