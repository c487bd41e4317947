"""Listening addresses: a port held by any other program fails the start, naming the address.

Only the server's own workers share a port; a restart right after a stop still binds.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from support.procs import (
    FakeUpstream,
    Process,
    Sinkhole,
    SinkholeFactory,
    free_port,
    standard_settings,
    stop_all,
    wait_until,
    write_config,
)

from blackbox.dnsclient import addresses, ask

pytestmark = pytest.mark.blackbox

POLICY = "id: p\nblock:\n  - first.example\n"
WARNING = "192.0.2.80"
EXIT_WITHIN = 10.0
ASKS = 40  # fresh source port each: the chance all land on one of two workers is 2**-39


def json_lines(lines: list[str]) -> list[dict[str, Any]]:
    out = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            out.append(record)
    return out


def config_for(
    workdir: Path, upstream: FakeUpstream, listen: list[str], workers: int, **extra: Any
) -> Path:
    (workdir / "policies").mkdir(parents=True)
    settings = standard_settings([upstream.endpoint])
    settings.update(listen=listen, workers=workers, **extra)
    return write_config(workdir, settings)


def failed_start(
    workdir: Path, upstream: FakeUpstream, listen: list[str], workers: int, **extra: Any
) -> tuple[int, list[dict[str, Any]], Process]:
    """Start a server that is expected to give up: its exit status and log lines."""
    config = config_for(workdir, upstream, listen, workers, **extra)
    argv = [sys.executable, "-m", "resolver", "serve", "--config", str(config)]
    proc = Process(argv, workdir, "sinkhole-late")
    exited = wait_until(lambda: not proc.alive, EXIT_WITHIN)
    code = proc.stop(signal.SIGTERM)
    assert exited, f"still running after {EXIT_WITHIN} s\n{proc.diagnostics()}"
    with proc._cond:
        lines = list(proc.lines)
    return code, json_lines(lines), proc


def assert_refused(
    code: int, records: list[dict[str, Any]], proc: Process, address: str, transport: str
) -> None:
    failed = [r for r in records if r.get("event") == "listen_failed"]
    assert code == 1, proc.diagnostics()
    assert failed, proc.diagnostics()
    assert failed[0]["address"] == address, failed
    assert failed[0]["transport"] == transport, failed
    assert "in use" in failed[0]["error"], failed
    assert not [r for r in records if r.get("event") in ("started", "workers_ready")], records


@contextmanager
def foreign(kind: socket.SocketKind, host: str, port: int) -> Iterator[socket.socket]:
    """Another program's socket on ``host:port``, with SO_REUSEPORT as e.g. Unbound sets it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, kind) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
        if kind == socket.SOCK_STREAM:
            sock.listen(8)
        yield sock


def address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize(
    ("kind", "host", "transport"),
    [
        (socket.SOCK_DGRAM, "127.0.0.1", "udp"),
        (socket.SOCK_DGRAM, "::1", "udp"),
        (socket.SOCK_STREAM, "127.0.0.1", "tcp"),
    ],
    ids=["udp", "udp6", "tcp-only"],
)
def test_a_port_another_program_holds_fails_the_start(
    tmp_path: Path,
    fake_upstream: FakeUpstream,
    workers: int,
    kind: socket.SocketKind,
    host: str,
    transport: str,
) -> None:
    port = free_port(host)
    with foreign(kind, host, port):
        code, records, proc = failed_start(
            tmp_path / "late", fake_upstream, [address(host, port)], workers
        )
    assert_refused(code, records, proc, address(host, port), transport)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_second_server_on_the_same_port_fails_and_the_first_keeps_it(
    sinkhole_factory: SinkholeFactory, fake_upstream: FakeUpstream, tmp_path: Path, workers: int
) -> None:
    first = sinkhole_factory({"p.yaml": POLICY}, workers=2)
    first.wait_event("workers_ready", 10.0)
    listen = [address(first.host, first.port)]
    code, records, proc = failed_start(tmp_path / "late", fake_upstream, listen, workers)
    assert_refused(code, records, proc, listen[0], "udp")
    for tcp in (False, True):
        for _ in range(10):
            assert addresses(ask((first.host, first.port), "first.example", tcp=tcp)) == [WARNING]


def test_a_metrics_port_in_use_is_named(tmp_path: Path, fake_upstream: FakeUpstream) -> None:
    port = free_port()
    with foreign(socket.SOCK_STREAM, "127.0.0.1", port):
        code, records, proc = failed_start(
            tmp_path / "late",
            fake_upstream,
            [address("127.0.0.1", free_port())],
            2,
            metrics=f"127.0.0.1:{port}",
        )
    failed = [r for r in records if r.get("event") == "listen_failed"]
    assert code == 1, proc.diagnostics()
    assert failed and failed[0]["address"] == f"127.0.0.1:{port}", proc.diagnostics()
    assert failed[0]["what"] == "metrics"


@pytest.mark.parametrize("what", ["metrics", "control"])
def test_an_http_port_in_use_is_named_by_one_process(
    tmp_path: Path, fake_upstream: FakeUpstream, what: str
) -> None:
    port = free_port()
    with foreign(socket.SOCK_STREAM, "127.0.0.1", port):
        code, records, proc = failed_start(
            tmp_path / "late",
            fake_upstream,
            [address("127.0.0.1", free_port())],
            1,
            **{what: f"127.0.0.1:{port}"},
        )
    failed = [r for r in records if r.get("event") == "listen_failed"]
    assert code == 1, proc.diagnostics()
    assert failed, proc.diagnostics()
    assert (failed[0]["address"], failed[0]["transport"]) == (f"127.0.0.1:{port}", "tcp")
    assert failed[0]["what"] == what and "in use" in failed[0]["error"], failed
    assert not [r for r in records if r.get("event") == "started"], records


def time_wait_on(port: int) -> bool:
    """A TCP connection in TIME_WAIT whose local port is ``port`` (from /proc/net/tcp)."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and fields[3] == "06":
            return True
    return False


def serving(workdir: Path, upstream: FakeUpstream, port: int, workers: int) -> Sinkhole:
    config = config_for(workdir, upstream, [f"127.0.0.1:{port}"], workers)
    (workdir / "policies" / "p.yaml").write_text(POLICY)
    server = Sinkhole(workdir, config, port)
    if workers > 1:
        server.wait_event("workers_ready", 10.0)
    return server


@pytest.mark.parametrize("workers", [1, 2])
def test_a_restart_right_after_a_stop_binds_again(
    tmp_path: Path, fake_upstream: FakeUpstream, workers: int
) -> None:
    port = free_port()
    servers = [serving(tmp_path / "first", fake_upstream, port, workers)]
    try:
        # A connection the server closes at its stop leaves TIME_WAIT on the server's port.
        client = socket.create_connection(("127.0.0.1", port))
        assert addresses(ask(("127.0.0.1", port), "first.example", tcp=True)) == [WARNING]
        assert servers[0].stop(signal.SIGTERM) == 0, servers[0].diagnostics()
        client.close()
        assert wait_until(lambda: time_wait_on(port), 5.0)
        servers.append(serving(tmp_path / "second", fake_upstream, port, workers))
        for tcp in (False, True):
            assert addresses(ask(("127.0.0.1", port), "first.example", tcp=tcp)) == [WARNING]
    finally:
        problems = stop_all(servers)
    assert not problems, problems


def answered_by(server: Sinkhole, name: str, tcp: bool) -> set[int]:
    """Ask ``name`` from many source ports; the workers whose query log shows it."""
    start = server.mark()
    for _ in range(ASKS):
        assert addresses(ask((server.host, server.port), name, tcp=tcp)) == [WARNING]

    def seen() -> set[int]:
        with server._cond:
            records = json_lines(server.lines[start:])
        return {r["worker"] for r in records if r.get("event") == "query" and r["qname"] == name}

    wait_until(lambda: seen() == {0, 1} or None, 5.0)
    return seen()


def test_workers_that_all_died_are_restarted_on_fresh_sockets(
    sinkhole_factory: SinkholeFactory,
) -> None:
    server = sinkhole_factory({"p.yaml": POLICY}, workers=2)
    server.wait_event("workers_ready", 10.0)
    for tcp in (False, True):
        assert answered_by(server, "first.example", tcp) == {0, 1}
    mark = server.mark()
    for started in server.events("started"):
        os.kill(started["pid"], signal.SIGKILL)

    def restarted() -> set[int]:
        with server._cond:
            records = json_lines(server.lines[mark:])
        return {r["worker"] for r in records if r.get("event") == "started"}

    assert wait_until(lambda: restarted() == {0, 1} or None, 15.0), server.diagnostics()
    assert not server.events("listen_failed"), server.diagnostics()
    for tcp in (False, True):
        assert answered_by(server, "first.example", tcp) == {0, 1}
