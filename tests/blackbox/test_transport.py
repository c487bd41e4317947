"""Transport: TCP pipelining, idle timeout, connection limit, UDP truncation."""

from __future__ import annotations

import socket
import time

import dns.flags
import dns.message
import dns.rcode
import pytest
from support.procs import WARNING_IPV4, FakeUpstream, Sinkhole, SinkholeFactory

from blackbox.dnsclient import addresses, ask, frame, make, recv_frame, unique, v4
from blackbox.standard import BLOCKED, POLICIES, UPSTREAM_IPV4

pytestmark = pytest.mark.blackbox


def connect(server: Sinkhole, timeout: float = 2.0) -> socket.socket:
    return socket.create_connection((server.host, server.port), timeout=timeout)


def closed_by_peer(sock: socket.socket) -> bool:
    """True when the peer has closed (EOF or reset) the connection."""
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def test_pipelined_queries_on_one_connection_are_all_answered(
    standard: Sinkhole, fake_upstream: FakeUpstream
) -> None:
    cached = unique()
    ask(v4(standard), cached)
    names = [BLOCKED, unique(), cached, unique("nx"), "www." + BLOCKED, unique(), unique("cname")]
    queries = {0x100 + i: make(name, "A", qid=0x100 + i) for i, name in enumerate(names)}
    with connect(standard) as sock:
        sock.sendall(b"".join(frame(q.to_wire()) for q in queries.values()))
        answers = {}
        for _ in queries:
            r = dns.message.from_wire(recv_frame(sock))
            answers[r.id] = r
    assert set(answers) == set(queries)
    for qid, q in queries.items():
        assert q.is_response(answers[qid])
    by_name = {names[qid - 0x100]: r for qid, r in answers.items()}
    assert addresses(by_name[BLOCKED]) == [WARNING_IPV4]
    assert addresses(by_name["www." + BLOCKED]) == [WARNING_IPV4]
    assert addresses(by_name[cached]) == [UPSTREAM_IPV4]
    assert addresses(by_name[names[1]]) == [UPSTREAM_IPV4]
    assert by_name[names[3]].rcode() == dns.rcode.NXDOMAIN


def test_queries_split_across_writes_are_answered(standard: Sinkhole) -> None:
    wire = frame(make(BLOCKED, "A", qid=77).to_wire()) * 2
    with connect(standard) as sock:
        for i in range(0, len(wire), 5):
            sock.sendall(wire[i : i + 5])
            time.sleep(0.005)
        for _ in range(2):
            r = dns.message.from_wire(recv_frame(sock))
            assert r.id == 77
            assert addresses(r) == [WARNING_IPV4]


def test_an_idle_connection_is_closed(sinkhole_factory: SinkholeFactory) -> None:
    server = sinkhole_factory(POLICIES, tcp_idle_timeout=0.5)
    with connect(server, timeout=3.0) as sock:
        sock.sendall(frame(make(BLOCKED, "A").to_wire()))
        recv_frame(sock)
        answered = time.monotonic()
        assert closed_by_peer(sock), "the server did not close the idle connection"
        idle = time.monotonic() - answered
    assert 0.3 <= idle < 2.5, f"closed after {idle:.2f} s idle; configured 0.5 s"


def test_connections_beyond_the_limit_are_closed_when_none_is_idle(
    sinkhole_factory: SinkholeFactory,
) -> None:
    """At the cap an idle connection makes room (tests/blackbox/test_tcp_limits.py); when
    every connection waits for an upstream answer, a new one is closed."""
    server = sinkhole_factory(
        POLICIES, tcp_max_connections=2, tcp_idle_timeout=30, query_timeout=3.0
    )
    held = [connect(server, timeout=5.0), connect(server, timeout=5.0)]
    try:
        for sock in held:
            sock.sendall(frame(make(BLOCKED, "A").to_wire()))
            assert addresses(dns.message.from_wire(recv_frame(sock))) == [WARNING_IPV4]
            sock.sendall(frame(make(unique("silent"), "A").to_wire()))  # waits for SERVFAIL
        time.sleep(0.2)
        with connect(server) as third:
            try:
                third.sendall(frame(make(BLOCKED, "A").to_wire()))
            except (BrokenPipeError, ConnectionResetError):
                pass
            assert closed_by_peer(third), "a third connection was served with a limit of 2"
        # The two connections within the limit still work and get their answers.
        for sock in held:
            assert dns.message.from_wire(recv_frame(sock)).rcode() == dns.rcode.SERVFAIL
            sock.sendall(frame(make(BLOCKED, "AAAA").to_wire()))
            assert dns.message.from_wire(recv_frame(sock)).rcode() == dns.rcode.NOERROR
    finally:
        for sock in held:
            sock.close()

    # Once they are closed, a new connection is served.
    def served() -> bool:
        try:
            return addresses(ask(v4(server), BLOCKED, tcp=True, timeout=1.0)) == [WARNING_IPV4]
        except (ConnectionError, EOFError, OSError):
            return False

    deadline = time.monotonic() + 3.0
    while not served():
        assert time.monotonic() < deadline, "no connection served after the others closed"
        time.sleep(0.05)


def test_udp_answer_over_512_without_edns_is_truncated(standard: Sinkhole) -> None:
    name = unique("big")
    ask(v4(standard), name, tcp=True)  # fills the cache
    r = ask(v4(standard), name)
    assert r.flags & dns.flags.TC
    assert r.answer == []
    assert r.edns == -1
    r = ask(v4(standard), name, edns=True, payload=512)
    assert r.flags & dns.flags.TC
    assert r.edns == 0


def test_udp_answer_over_512_without_edns_is_truncated_on_a_cache_miss(standard: Sinkhole) -> None:
    r = ask(v4(standard), unique("big"))
    assert r.flags & dns.flags.TC
    assert r.answer == []
