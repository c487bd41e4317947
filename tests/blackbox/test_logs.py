"""Log lines: JSON for services, readable on a terminal or with log_format: console; the
started line short at info, its details at debug."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from support.procs import (
    START_TIMEOUT,
    FakeUpstream,
    Process,
    SinkholeFactory,
    free_port,
    standard_settings,
    write_config,
)

import resolver
from blackbox.dnsclient import addresses, ask

pytestmark = pytest.mark.blackbox

POLICY = "id: court\nauthority: Test Court\nblock:\n  - logged.example\n"


def config_with(tmp_path: Path, upstream: FakeUpstream, **settings: Any) -> tuple[Path, int]:
    (tmp_path / "policies").mkdir(exist_ok=True)
    (tmp_path / "policies" / "p.yaml").write_text(POLICY)
    port = free_port()
    keys = standard_settings([upstream.endpoint])
    keys.update(listen=[f"127.0.0.1:{port}"], pid_file=False, **settings)
    return write_config(tmp_path, keys), port


def test_json_lines_by_default_with_a_short_started_line(
    sinkhole_factory: SinkholeFactory, fake_upstream: FakeUpstream
) -> None:
    server = sinkhole_factory({"p.yaml": POLICY, "q.yaml": "id: q\nblock: [q.example]\n"})
    started = server.started
    assert (started["level"], started["policies"], started["zones"]) == ("info", 2, 0)
    assert started["names"] == 2
    assert started["listen"] == [f"127.0.0.1:{server.port}"]
    assert started["upstreams"] == [fake_upstream.endpoint]
    assert started["compiled"] is bool(resolver.compiled_modules())  # this install's build
    assert len(json.dumps(started)) < 400
    assert not server.events("started_details")  # debug only
    for line in list(server.lines):
        assert isinstance(json.loads(line), dict), line


def test_the_details_at_debug(sinkhole_factory: SinkholeFactory) -> None:
    server = sinkhole_factory({"p.yaml": POLICY}, log_level="debug")
    details = server.wait_event("started_details", 5.0)
    assert details["level"] == "debug"
    [policy] = details["policies"]
    assert (policy["id"], policy["entries"], len(policy["sha256"])) == ("court", 1, 64)
    assert details["query_log"] == "blocked"
    assert details["compiled"] == resolver.compiled_modules()


def test_console_lines_when_asked(tmp_path: Path, fake_upstream: FakeUpstream) -> None:
    config, port = config_with(tmp_path, fake_upstream, log_format="console")
    argv = [sys.executable, "-m", "resolver", "serve", "--config", str(config)]
    proc = Process(argv, tmp_path, "sinkhole-console")
    try:
        started = proc.wait_line(lambda line: " started " in line, START_TIMEOUT)
        assert addresses(ask(("127.0.0.1", port), "logged.example")) == ["192.0.2.80"]
        blocked = proc.wait_line(lambda line: "logged.example" in line, 5.0)
    finally:
        assert proc.stop(signal.SIGTERM) == 0, proc.diagnostics()
    assert "[info     ]" in started and f"listen=['127.0.0.1:{port}']" in started
    assert "policies=1" in started and "names=1" in started
    assert "\x1b[" not in "".join(proc.lines)  # no colours: not a terminal
    assert not started.startswith("{")
    # The query log stays JSON lines (built without structlog, for speed).
    assert json.loads(blocked)["qname"] == "logged.example"


def on_terminal(config: Path, until: bytes) -> tuple[str, int]:
    """Serve with stdout on a pseudo-terminal until ``until`` is written, then SIGTERM:
    what it wrote and its exit status."""
    controller, terminal = pty.openpty()
    popen = subprocess.Popen(
        [sys.executable, "-m", "resolver", "serve", "--config", str(config)],
        cwd=config.parent,
        stdin=subprocess.DEVNULL,
        stdout=terminal,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    os.close(terminal)
    seen = b""
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while until not in seen and time.monotonic() < deadline:
            ready, _, _ = select.select([controller], [], [], 0.1)
            if ready:
                try:
                    seen += os.read(controller, 65536)
                except OSError:  # the terminal closed: the server exited
                    break
    finally:
        popen.send_signal(signal.SIGTERM)
        code = popen.wait(10.0)
        os.close(controller)
    return seen.decode("utf-8", "replace"), code


def test_console_lines_with_colours_on_a_terminal(
    tmp_path: Path, fake_upstream: FakeUpstream
) -> None:
    config, _ = config_with(tmp_path, fake_upstream, query_log="off")
    text, code = on_terminal(config, b"started")
    assert "started" in text, text
    assert "\x1b[" in text and "{" not in text.split("started")[0], text
    assert code == 0


def test_json_when_asked_even_on_a_terminal(tmp_path: Path, fake_upstream: FakeUpstream) -> None:
    config, _ = config_with(tmp_path, fake_upstream, log_format="json", query_log="off")
    text, code = on_terminal(config, b'"started"')
    assert json.loads(text.splitlines()[0])["event"] == "started", text
    assert code == 0
