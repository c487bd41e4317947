"""systemd/sinkhole.service: systemd accepts it, it is hardened, and it runs the real CLI."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support.system import program

from resolver.service.cli import build_parser
from resolver.service.pidfile import default_path
from resolver.sources.config import Config

from .conftest import REPO

UNIT = REPO / "systemd" / "sinkhole.service"
INSTALLED = "/usr/local/bin/sinkhole"
CONFIG = "/etc/sinkhole/config.yaml"
LEVELS = ("PERFECT", "SAFE", "OK", "MEDIUM", "EXPOSED", "UNSAFE", "DANGEROUS")


analyzed = pytest.mark.system("systemd-analyze")


def systemd_analyze() -> str:
    return program("systemd-analyze")


def directives(text: str) -> list[tuple[str, str, str]]:
    """(section, key, value) for every assignment, in order; repeated keys are kept."""
    section = ""
    out = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, _, value = line.partition("=")
        out.append((section, key.strip(), value.strip()))
    return out


def service(key: str) -> list[str]:
    return [v for s, k, v in directives(UNIT.read_text()) if s == "Service" and k == key]


def one(key: str) -> str:
    values = service(key)
    assert len(values) == 1, f"{key}= set {len(values)} times"
    return values[0]


def sinkhole_binary() -> str:
    """Where this machine's `sinkhole` command really is."""
    found = shutil.which("sinkhole") or str(Path(sys.executable).parent / "sinkhole")
    path = os.path.realpath(found)
    if not os.access(path, os.X_OK):
        pytest.fail(
            f"no executable `sinkhole` (looked at {found}): pip install -e .", pytrace=False
        )
    return path


def unit_to_verify(directory: Path) -> Path:
    """The unit itself when /usr/local/bin/sinkhole exists, else a copy using the real binary.

    Only the ExecStartPre= and ExecStart= lines may differ, and only by the binary's path.
    """
    if os.access(INSTALLED, os.X_OK):
        return UNIT
    original = UNIT.read_text()
    copy = directory / UNIT.name
    copy.write_text(original.replace(INSTALLED, sinkhole_binary()))
    old_lines, new_lines = original.splitlines(), copy.read_text().splitlines()
    assert len(old_lines) == len(new_lines)
    changed = [(a, b) for a, b in zip(old_lines, new_lines, strict=True) if a != b]
    assert sorted(a.partition("=")[0] for a, _ in changed) == ["ExecStart", "ExecStartPre"]
    for a, b in changed:
        assert b.replace(sinkhole_binary(), INSTALLED) == a
    return copy


def verify(unit: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [systemd_analyze(), "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@analyzed
def test_systemd_analyze_verify_passes(tmp_path: Path) -> None:
    result = verify(unit_to_verify(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", f"systemd-analyze verify warned:\n{result.stderr}"


@analyzed
def test_verify_would_report_an_unknown_directive(tmp_path: Path) -> None:
    """The check above is meaningful: verify reports unknown keys on stderr (with exit code 0)."""
    good = tmp_path / "good"
    good.mkdir()
    unit = unit_to_verify(good)
    broken = tmp_path / UNIT.name
    broken.write_text(unit.read_text().replace("[Service]\n", "[Service]\nNoSuchSetting=yes\n"))
    result = verify(broken)
    assert "Unknown key" in result.stderr and "NoSuchSetting" in result.stderr, result.stderr


@analyzed
def test_security_exposure_is_ok() -> None:
    """`systemd-analyze security --offline=true` rates the unit OK (or better)."""
    analyze = systemd_analyze()
    help_text = subprocess.run(
        [analyze, "--help"], capture_output=True, text=True, timeout=30, check=False
    ).stdout
    assert "--offline" in help_text, (
        "this systemd-analyze cannot review a unit file offline (v250+)"
    )
    result = subprocess.run(
        [analyze, "security", "--offline=true", "--no-pager", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    match = re.search(
        r"Overall exposure level for sinkhole\.service: (\d+\.\d) (\w+)", result.stdout
    )
    assert match, result.stdout + result.stderr
    exposure, level = float(match[1]), match[2]
    assert level in LEVELS
    assert LEVELS.index(level) <= LEVELS.index("OK"), result.stdout
    assert exposure <= 1.6, result.stdout  # 1.4 with systemd 252; see systemd/README.md
    over = subprocess.run(
        [analyze, "security", "--offline=true", "--threshold=49", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert over.returncode == 0, "exposure above 4.9 (--threshold=49)"


def test_commands_are_the_cli() -> None:
    """ExecStartPre= checks and ExecStart= serves the same config file, as the CLI parses them."""
    pre = shlex.split(one("ExecStartPre"))
    start = shlex.split(one("ExecStart"))
    assert pre[0] == start[0] == INSTALLED
    parser = build_parser()
    checked = parser.parse_args(pre[1:])
    served = parser.parse_args(start[1:])
    assert (checked.command, checked.config, checked.json) == ("check", CONFIG, False)
    assert (served.command, served.config) == ("serve", CONFIG)
    assert one("ExecReload") == "/bin/kill -HUP $MAINPID"


def test_the_pid_file_is_where_sinkhole_reload_run_by_root_looks() -> None:
    assert one("RuntimeDirectory") == "sinkhole"
    daemon = default_path({"RUNTIME_DIRECTORY": "/run/sinkhole"}, 61234)  # a dynamic user
    assert daemon == default_path({}, 0) == Path("/run/sinkhole/sinkhole.pid")


def test_service_settings() -> None:
    assert one("Type") == "notify"
    assert one("NotifyAccess") == "main"
    assert one("DynamicUser") == "yes"
    assert one("User") == "sinkhole"
    assert one("AmbientCapabilities") == "CAP_NET_BIND_SERVICE"
    assert one("CapabilityBoundingSet") == "CAP_NET_BIND_SERVICE"
    # AF_UNIX is needed for NOTIFY_SOCKET, AF_INET/AF_INET6 for DNS.
    assert set(one("RestrictAddressFamilies").split()) == {"AF_INET", "AF_INET6", "AF_UNIX"}
    assert one("Restart") == "on-failure"
    assert int(one("LimitNOFILE")) >= 8 * Config().tcp_max_connections
    for key in (
        "NoNewPrivileges",
        "ProtectHome",
        "PrivateTmp",
        "PrivateDevices",
        "ProtectKernelTunables",
        "ProtectKernelModules",
        "ProtectKernelLogs",
        "ProtectControlGroups",
        "ProtectClock",
        "ProtectHostname",
        "RestrictNamespaces",
        "RestrictRealtime",
        "RestrictSUIDSGID",
        "LockPersonality",
        "MemoryDenyWriteExecute",
    ):
        assert one(key) == "yes", key
    assert one("ProtectSystem") == "strict"
    assert one("PrivateMounts") == "yes"
    assert one("ProtectProc") == "invisible"
    assert one("ProcSubset") == "pid"  # tests/systemd/test_sandbox.py serves under both
    assert one("SystemCallArchitectures") == "native"
    assert service("SystemCallFilter")[0] == "@system-service"


def size(text: str) -> int:
    """Bytes of a systemd size (4G, 512M ...)."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    if text[-1:] in units:
        return int(text[:-1]) * units[text[-1]]
    return int(text)


def test_resource_limits() -> None:
    """Memory and task caps that a runaway cannot pass, far above what a busy server uses
    (tests/systemd/test_sandbox.py counts the tasks)."""
    memory_high, memory_max = size(one("MemoryHigh")), size(one("MemoryMax"))
    assert 1 << 30 <= memory_high < memory_max
    assert int(one("TasksMax")) >= 256
