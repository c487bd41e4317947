"""Files people hand the server: a FIFO never blocks a reload or a check, a huge line gives a
short error, and the running server keeps its policy and answers signals."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from support.procs import REPO, WARNING_IPV4, SinkholeFactory

from blackbox.dnsclient import addresses, ask, unique, v4

pytestmark = pytest.mark.blackbox

POLICY = """\
id: steady
authority: Test Court
block:
  - old.example
"""
# file:line:col: error: message, or file: error: message for a file that cannot be read.
ERROR_LINE = re.compile(r"^(?P<file>.+?)(?::(?P<line>\d+):(?P<col>\d+))?: error: (?P<message>.+)$")
HUGE = 5 * 1024 * 1024  # one line of a policy file, in characters


def is_blocked(server: object, name: str) -> bool:
    return addresses(ask(v4(server), name)) == [WARNING_IPV4]  # type: ignore[arg-type]


def check(config: Path, timeout: float = 30.0) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "resolver", "check", "--config", str(config)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return result, time.monotonic() - started


def setup(tmp_path: Path, policies: list[str]) -> Path:
    (tmp_path / "policies").mkdir()
    settings = {"listen": ["127.0.0.1:5300"], "upstreams": ["127.0.0.1:5301"], "policies": policies}
    path = tmp_path / "sinkhole.yaml"
    path.write_text(yaml.safe_dump(settings, sort_keys=False))
    return path


def test_a_fifo_in_the_policy_glob_fails_the_reload_and_keeps_serving(
    sinkhole_factory: SinkholeFactory,
) -> None:
    server = sinkhole_factory({"p.yaml": POLICY})
    assert is_blocked(server, "old.example")
    fifo = server.policies_dir / "q.yaml"
    os.mkfifo(fifo)
    mark = server.mark()
    server.send_signal(signal.SIGHUP)
    failed = server.wait_event("policy_reload_failed", 10.0, start=mark)
    assert failed["file"] == str(fifo)
    assert "FIFO" in failed["error"]
    assert not server.events("policy_reloaded")
    assert is_blocked(server, "old.example")  # the old policy, still in force
    new = unique("after-fifo")
    assert not is_blocked(server, new)

    # The FIFO gone, a later SIGHUP reloads as usual, and SIGTERM stops the server.
    fifo.unlink()
    mark = server.mark()
    server.write_policy("p.yaml", POLICY + f"  - {new}\n")
    server.send_signal(signal.SIGHUP)
    server.wait_event("policy_reloaded", 10.0, start=mark)
    assert is_blocked(server, new)
    assert server.stop(signal.SIGTERM) == 0


def test_check_on_a_fifo_policy_ends_at_once_naming_it(tmp_path: Path) -> None:
    config = setup(tmp_path, ["policies/court.yaml"])
    fifo = tmp_path / "policies" / "court.yaml"
    os.mkfifo(fifo)
    result, seconds = check(config)
    assert result.returncode != 0, result.stdout
    assert seconds < 10.0
    found = [m.groupdict() for m in map(ERROR_LINE.match, result.stdout.splitlines()) if m]
    assert [e["file"] for e in found] == [str(fifo)], result.stdout
    assert "FIFO" in found[0]["message"]


def test_a_five_megabyte_line_gives_a_short_error(
    tmp_path: Path, sinkhole_factory: SinkholeFactory
) -> None:
    config = setup(tmp_path, ["policies/*.yaml"])
    huge = POLICY + "  - " + "a" * HUGE + ".example\n"
    (tmp_path / "policies" / "p.yaml").write_text(huge)
    result, _ = check(config)
    assert result.returncode != 0
    lines = [line for line in result.stdout.splitlines() if ": error: " in line]
    assert len(lines) == 1, result.stdout[:2000]
    assert ERROR_LINE.match(lines[0])
    assert lines[0].startswith(f"{tmp_path / 'policies' / 'p.yaml'}:5:5: error: ")
    assert len(lines[0]) < 1024, len(lines[0])
    assert len(result.stdout) + len(result.stderr) < 4096

    # The same file on a reload: one log line of about a kilobyte, though it holds the error
    # twice (the one the build stopped at, and the list of every error found).
    server = sinkhole_factory({"p.yaml": POLICY})
    mark = server.mark()
    path = server.write_policy("p.yaml", huge)
    server.send_signal(signal.SIGHUP)
    line = server.wait_line(lambda text: "policy_reload_failed" in text, 20.0, start=mark)
    record = json.loads(line)
    assert (record["file"], record["line"]) == (str(path), 5)
    assert len(line.encode()) < 1536, len(line)
    assert is_blocked(server, "old.example")
