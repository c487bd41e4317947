"""Forwarding: upstream answers passed on with our header, minimal sections, TCP retry, failures."""

from __future__ import annotations

import itertools
import socket
import time

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import pytest
from support.procs import FakeUpstream, Sinkhole, SinkholeFactory, dead_port

from blackbox.dnsclient import addresses, ask, ede, make, send, unique, v4, v6
from blackbox.standard import UPSTREAM_IPV4, UPSTREAM_IPV6, UPSTREAM_TTL

pytestmark = pytest.mark.blackbox

EDE_NO_REACHABLE_AUTHORITY = 22


@pytest.mark.parametrize("edns", [False, True], ids=["plain", "edns"])
@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_positive_answer_comes_from_upstream(
    standard: Sinkhole, fake_upstream: FakeUpstream, edns: bool, tcp: bool
) -> None:
    name = unique()
    q = make(name, "A", edns=edns, qid=0x1234)
    r = send(v4(standard), q, tcp=tcp)
    assert r.id == 0x1234
    assert r.rcode() == dns.rcode.NOERROR
    assert addresses(r) == [UPSTREAM_IPV4]
    assert r.answer[0].ttl == UPSTREAM_TTL
    assert r.flags & dns.flags.QR
    assert r.flags & dns.flags.RA
    assert r.flags & dns.flags.RD
    assert not r.flags & dns.flags.AA, "a forwarder must not claim authority"
    # The upstream sent NS and glue; a positive answer leaves them out.
    assert r.authority == []
    assert r.additional == []
    assert r.edns == (0 if edns else -1)
    assert fake_upstream.count(name, "A") == 1


def test_aaaa_over_ipv6(standard: Sinkhole, fake_upstream: FakeUpstream) -> None:
    name = unique()
    r = ask(v6(standard), name, "AAAA")
    assert addresses(r) == [UPSTREAM_IPV6]
    assert fake_upstream.count(name, "AAAA") == 1


def test_rd_is_copied_on_forwarded_answers(standard: Sinkhole) -> None:
    r = ask(v4(standard), unique(), "A", rd=False)
    assert addresses(r) == [UPSTREAM_IPV4]
    assert not r.flags & dns.flags.RD


def test_the_question_keeps_the_clients_letter_case(standard: Sinkhole) -> None:
    name = unique("MiXeD")
    q = make(name, "A")
    r = send(v4(standard), q)
    assert r.question[0].name.labels == q.question[0].name.labels
    assert r.answer[0].name.labels == q.question[0].name.labels


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_nxdomain_keeps_the_soa(standard: Sinkhole, tcp: bool) -> None:
    r = ask(v4(standard), unique("nx"), "A", tcp=tcp, edns=True)
    assert r.rcode() == dns.rcode.NXDOMAIN
    assert r.answer == []
    assert len(r.authority) == 1
    assert r.authority[0].rdtype == dns.rdatatype.SOA
    assert r.authority[0].name == dns.name.from_text("example.")
    assert not r.flags & dns.flags.AA


def test_nodata_keeps_the_soa(standard: Sinkhole) -> None:
    r = ask(v4(standard), unique("nodata"), "A")
    assert r.rcode() == dns.rcode.NOERROR
    assert r.answer == []
    assert [rrset.rdtype for rrset in r.authority] == [dns.rdatatype.SOA]


def test_cname_chain_is_passed_on(standard: Sinkhole) -> None:
    name = unique("cname")
    r = ask(v4(standard), name, "A")
    types = [(rrset.name.to_text(), rrset.rdtype) for rrset in r.answer]
    assert types == [(name + ".", dns.rdatatype.CNAME), ("target.example.", dns.rdatatype.A)]
    assert addresses(r) == ["198.51.100.9"]


def test_truncated_upstream_reply_is_retried_over_tcp(
    standard: Sinkhole, fake_upstream: FakeUpstream
) -> None:
    name = unique("big")
    big = [f"198.51.100.{i}" for i in range(1, 41)]
    r = ask(v4(standard), name, "A", tcp=True)
    assert r.rcode() == dns.rcode.NOERROR
    assert sorted(addresses(r)) == sorted(big)
    assert fake_upstream.count(name, "A", "udp") == 1
    assert fake_upstream.count(name, "A", "tcp") == 1
    # 40 records fit in our EDNS limit (1232 octets): a UDP client with EDNS gets them all.
    r = ask(v4(standard), name, "A", edns=True, payload=4096)
    assert not r.flags & dns.flags.TC
    assert sorted(addresses(r)) == sorted(big)
    # Without EDNS the limit is 512 octets: the client is told to retry over TCP.
    r = ask(v4(standard), name, "A")
    assert r.flags & dns.flags.TC
    assert r.answer == []
    assert r.question[0].name == dns.name.from_text(name)


def test_silent_upstream_gives_servfail_in_bounded_time(standard: Sinkhole) -> None:
    # The standard configuration: upstream_timeout 0.3 s, query_timeout 1.0 s.
    started = time.monotonic()
    r = ask(v4(standard), unique("silent"), "A", edns=True, timeout=3.0)
    elapsed = time.monotonic() - started
    assert r.rcode() == dns.rcode.SERVFAIL
    assert elapsed < 1.5, f"SERVFAIL after {elapsed:.2f} s"
    assert [code for code, _ in ede(r)] == [EDE_NO_REACHABLE_AUTHORITY]


def test_upstream_servfail_passes_through(standard: Sinkhole, fake_upstream: FakeUpstream) -> None:
    name = unique("fail")
    r = ask(v4(standard), name, "A")
    assert r.rcode() == dns.rcode.SERVFAIL
    assert r.answer == []
    assert fake_upstream.count(name, "A") >= 1


def test_failover_to_the_second_upstream(
    sinkhole_factory: SinkholeFactory, fake_upstream: FakeUpstream
) -> None:
    dead = f"127.0.0.1:{dead_port()}"
    server = sinkhole_factory(upstreams=[dead, fake_upstream.endpoint])
    for _ in range(3):
        name = unique()
        started = time.monotonic()
        r = ask(v4(server), name, "A", timeout=3.0)
        assert r.rcode() == dns.rcode.NOERROR
        assert addresses(r) == [UPSTREAM_IPV4]
        assert time.monotonic() - started < 1.0
        assert fake_upstream.count(name, "A") == 1


def test_a_burst_of_misses_is_answered_query_by_query(
    standard: Sinkhole, fake_upstream: FakeUpstream
) -> None:
    """300 new names sent at once (several batches each way): every client query gets
    the answer to its own question, with its own ID, and each name is forwarded once."""
    names = [unique("burst") for _ in range(300)]
    ids = {name: 1000 + i for i, name in enumerate(names)}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.settimeout(5.0)
        for name in names:
            sock.sendto(make(name, "A", qid=ids[name]).to_wire(), v4(standard))
        answered = {}
        while len(answered) < len(names):
            r = dns.message.from_wire(sock.recv(65535))
            answered[r.question[0].name.to_text(omit_final_dot=True)] = r
    for name in names:
        r = answered[name]
        assert r.id == ids[name]
        assert r.rcode() == dns.rcode.NOERROR and addresses(r) == [UPSTREAM_IPV4]
    assert sorted(n for _, n, _ in fake_upstream.queries() if "burst" in n) == sorted(
        name + "." for name in names
    )


def test_upstream_queries_use_random_ports_and_ids(
    standard: Sinkhole, fake_upstream: FakeUpstream
) -> None:
    """One query at a time: each leaves from a socket of the pool picked at random, with
    an unpredictable ID (not a counter)."""
    before = len(fake_upstream.sources())
    for _ in range(40):
        ask(v4(standard), unique("ports"), "A")
    sources = fake_upstream.sources()[before:]
    assert len(sources) == 40
    ports = {port for port, _ in sources}
    ids = [qid for _, qid in sources]
    assert len(ports) >= 3, f"40 queries left from {len(ports)} source port(s)"
    assert len(set(ids)) >= 36
    steps = {(b - a) % 65536 for a, b in itertools.pairwise(ids)}
    assert len(steps) >= 30, "query IDs follow a pattern"


def test_records_outside_the_chain_never_reach_the_client(
    standard: Sinkhole, fake_upstream: FakeUpstream
) -> None:
    """The upstream slips bank.example A (and www.bank.example A) into the answer for
    another name: the client gets only its own name's record, from the upstream and
    from the cache alike."""
    name = unique("inject")
    for tcp in (False, True, False):
        r = ask(v4(standard), name, "A", tcp=tcp, edns=True)
        assert r.rcode() == dns.rcode.NOERROR
        assert [rrset.name.to_text(omit_final_dot=True) for rrset in r.answer] == [name]
        assert addresses(r) == [UPSTREAM_IPV4]
    assert fake_upstream.count(name, "A") == 1


def test_upstream_queries_carry_the_name_in_random_letter_case(
    standard: Sinkhole, fake_upstream: FakeUpstream
) -> None:
    """0x20: the upstream sees each name in a letter case of our choosing, the client its
    own case in the answer."""
    names = [unique("mixed") for _ in range(4)]
    for name in names:
        q = make(name, "A")
        r = send(v4(standard), q)
        assert addresses(r) == [UPSTREAM_IPV4]
        assert r.question[0].name.labels == q.question[0].name.labels
        assert r.answer[0].name.labels == q.question[0].name.labels
    received = [fake_upstream.received(name)[0] for name in names]
    assert all(got.lower() == name + "." for got, name in zip(received, names, strict=True))
    assert any(got != got.lower() for got in received), received
    assert len(set(received)) == len(names)


def test_an_upstream_that_changes_the_case_is_asked_without_0x20(
    sinkhole_factory: SinkholeFactory, fake_upstream: FakeUpstream
) -> None:
    """An upstream that answers in lower case whatever it was asked: its first replies are
    dropped as possibly forged, then it is asked plainly (logged once), and every query
    is answered, the later ones without waiting for a timeout."""
    server = sinkhole_factory(upstream_timeout=0.3, query_timeout=1.5)
    names = [unique("lowcase") for _ in range(5)]
    first = ask(v4(server), names[0], timeout=3.0)
    assert first.rcode() == dns.rcode.NOERROR and addresses(first) == [UPSTREAM_IPV4]
    event = server.wait_event("upstream_case_not_kept", timeout=2.0)
    assert event["upstream"] == fake_upstream.endpoint
    for name in names[1:]:
        started = time.monotonic()
        r = ask(v4(server), name, timeout=3.0)
        assert addresses(r) == [UPSTREAM_IPV4]
        assert time.monotonic() - started < 0.25
        assert fake_upstream.received(name) == [name + "."]  # as the client asked it
    assert len(server.events("upstream_case_not_kept")) == 1


def test_source_ports_keep_changing(
    sinkhole_factory: SinkholeFactory, fake_upstream: FakeUpstream
) -> None:
    """2,000 misses one after the other leave from many source ports, not from the same
    few sockets all along."""
    server = sinkhole_factory(query_log="off")
    prefix = unique("rotate").split(".")[0]
    before = len(fake_upstream.sources())
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2.0)
        for i in range(2000):
            sock.sendto(make(f"{prefix}-{i}.example", "A", qid=i).to_wire(), v4(server))
            while dns.message.from_wire(sock.recv(65535)).id != i:
                pass
    sources = [port for port, _ in fake_upstream.sources()[before:]]
    assert len(sources) >= 2000
    assert len(set(sources)) >= 16, f"2,000 queries left from {len(set(sources))} ports"
