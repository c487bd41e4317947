"""What the server writes down is what happened: the rcode a blocked query was sent, the
time a SERVFAIL took, and an ``upstream_failed`` event whenever the upstreams fail."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import dns.exception
import dns.message
import dns.rcode
import pytest
from support.procs import Sinkhole, SinkholeFactory, dead_port, free_port, wait_until

from blackbox.dnsclient import ask, unique, v4
from blackbox.standard import (
    BLOCKED,
    DROP_ACTION,
    NODATA_ACTION,
    NXDOMAIN_ACTION,
    POLICIES,
    REFUSE_ACTION,
)

pytestmark = pytest.mark.blackbox


def query_lines(server: Sinkhole, name: str, count: int) -> list[dict[str, Any]]:
    """The first ``count`` query-log lines for ``name`` (written in batches: waited for)."""

    def found() -> list[dict[str, Any]] | None:
        lines = [e for e in server.events("query") if e.get("qname") == name]
        return lines if len(lines) >= count else None

    lines = wait_until(found, 5.0)
    assert lines, f"fewer than {count} query-log lines for {name}:\n{server.diagnostics()}"
    return list(lines[:count])


@pytest.mark.parametrize(
    ("name", "rcode"),
    [
        (NXDOMAIN_ACTION, "NXDOMAIN"),
        (REFUSE_ACTION, "REFUSED"),
        (NODATA_ACTION, "NOERROR"),
        (BLOCKED, "NOERROR"),
    ],
)
def test_a_blocked_answer_is_logged_with_the_rcode_sent(
    sinkhole_factory: SinkholeFactory, name: str, rcode: str
) -> None:
    """Asked twice (the second answer is replayed) over UDP and once over TCP."""
    server = sinkhole_factory(POLICIES)
    sent = [ask(v4(server), name), ask(v4(server), name), ask(v4(server), name, tcp=True)]
    assert {dns.rcode.to_text(r.rcode()) for r in sent} == {rcode}
    for line in query_lines(server, name, 3):
        assert line["outcome"] == "blocked" and line["rcode"] == rcode, line


def test_a_dropped_query_is_logged_without_an_rcode(sinkhole_factory: SinkholeFactory) -> None:
    server = sinkhole_factory(POLICIES)
    for _ in range(2):
        with pytest.raises(dns.exception.Timeout):
            ask(v4(server), DROP_ACTION, timeout=0.3)
    for line in query_lines(server, DROP_ACTION, 2):
        assert line["action"] == "drop" and "rcode" not in line, line


def test_a_servfail_is_logged_with_the_time_it_took(sinkhole_factory: SinkholeFactory) -> None:
    """The fake upstream never answers silent-* names: SERVFAIL after query_timeout (1 s)."""
    server = sinkhole_factory(POLICIES, query_log="all")
    name = unique("silent")
    assert ask(v4(server), name, timeout=3.0).rcode() == dns.rcode.SERVFAIL
    [line] = query_lines(server, name, 1)
    assert line["outcome"] == "servfail" and line["rcode"] == "SERVFAIL"
    assert 900.0 <= line["latency_ms"] <= 2000.0, line


# --- upstream_failed --------------------------------------------------------------------


class RefusingUpstream:
    """An upstream on loopback that answers REFUSED to every query (a resolver whose ACL
    leaves us out), from a thread of the test."""

    def __init__(self) -> None:
        self.port = free_port()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.settimeout(0.1)
        self.asked = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                data, peer = self.sock.recvfrom(4096)
            except OSError:
                continue
            reply = dns.message.make_response(dns.message.from_wire(data))
            reply.set_rcode(dns.rcode.REFUSED)
            self.asked += 1
            self.sock.sendto(reply.to_wire(), peer)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(2.0)
        self.sock.close()


@pytest.fixture
def refusing() -> Iterator[RefusingUpstream]:
    upstream = RefusingUpstream()
    yield upstream
    upstream.close()


def failed_events(server: Sinkhole, start: int) -> list[dict[str, Any]]:
    return [e for e in server.events("upstream_failed")][start:]


def test_an_upstream_that_refuses_everything_is_reported(
    sinkhole_factory: SinkholeFactory, refusing: RefusingUpstream
) -> None:
    server = sinkhole_factory(POLICIES, upstreams=[refusing.endpoint])
    for _ in range(3):
        assert ask(v4(server), unique()).rcode() == dns.rcode.REFUSED
    failed = server.wait_event("upstream_failed", 5.0)
    assert failed["upstream"] == refusing.endpoint and failed["reason"] == "refused"


@pytest.mark.parametrize("kind", ["silent", "unreachable"])
def test_an_upstream_that_does_not_answer_is_reported(
    sinkhole_factory: SinkholeFactory, kind: str
) -> None:
    """Silent: the fake upstream ignores silent-* names. Unreachable: nothing listens on
    the port (the kernel answers ICMP port unreachable)."""
    if kind == "silent":
        server = sinkhole_factory(POLICIES)
        name = unique("silent")
    else:
        server = sinkhole_factory(POLICIES, upstreams=[f"127.0.0.1:{dead_port()}"])
        name = unique()
    upstream = server.started["upstreams"][0]
    assert ask(v4(server), name, timeout=3.0).rcode() == dns.rcode.SERVFAIL
    failed = server.wait_event("upstream_failed", 5.0)
    assert failed["upstream"] == upstream and failed["reason"] == "timeout"
