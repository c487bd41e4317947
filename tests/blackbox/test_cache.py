"""The answer cache: hits stay local, TTLs count down, negatives are cached, size is bounded."""

from __future__ import annotations

import time

import dns.flags
import dns.message
import dns.rcode
import pytest
from support.procs import FakeUpstream, Sinkhole, SinkholeFactory, wait_until

from blackbox.dnsclient import addresses, ask, ede, unique, v4
from blackbox.standard import UPSTREAM_IPV4, UPSTREAM_TTL

pytestmark = pytest.mark.blackbox


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_a_second_query_is_answered_from_the_cache(
    standard: Sinkhole, fake_upstream: FakeUpstream, tcp: bool
) -> None:
    name = unique()
    first = ask(v4(standard), name, tcp=tcp)
    second = ask(v4(standard), name.upper(), tcp=tcp)
    assert addresses(first) == addresses(second) == [UPSTREAM_IPV4]
    assert fake_upstream.count(name, "A") == 1
    assert second.answer[0].ttl <= UPSTREAM_TTL
    assert not second.flags & dns.flags.AA


def test_ttl_counts_down(standard: Sinkhole, fake_upstream: FakeUpstream) -> None:
    name = unique("ttl5")
    assert ask(v4(standard), name).answer[0].ttl == 5
    seen = wait_until(lambda: ask(v4(standard), name).answer[0].ttl < 5, timeout=3.0, interval=0.1)
    assert seen, "the cached TTL did not decrease within 3 s"
    assert fake_upstream.count(name, "A") == 1


def test_an_expired_answer_is_fetched_again(
    standard: Sinkhole, fake_upstream: FakeUpstream
) -> None:
    name = unique("ttl1")
    ask(v4(standard), name)

    def fetched_again() -> bool:
        ask(v4(standard), name)
        return fake_upstream.count(name, "A") >= 2

    assert wait_until(fetched_again, timeout=4.0, interval=0.2)


def test_nxdomain_is_cached(standard: Sinkhole, fake_upstream: FakeUpstream) -> None:
    name = unique("nx")
    for _ in range(3):
        r = ask(v4(standard), name)
        assert r.rcode() == dns.rcode.NXDOMAIN
        assert len(r.authority) == 1
    assert fake_upstream.count(name, "A") == 1


def test_nodata_is_cached(standard: Sinkhole, fake_upstream: FakeUpstream) -> None:
    name = unique("nodata")
    for _ in range(3):
        r = ask(v4(standard), name, "AAAA")
        assert r.rcode() == dns.rcode.NOERROR
        assert r.answer == []
    assert fake_upstream.count(name, "AAAA") == 1


def test_servfail_is_not_cached(standard: Sinkhole, fake_upstream: FakeUpstream) -> None:
    name = unique("fail")
    for _ in range(2):
        assert ask(v4(standard), name).rcode() == dns.rcode.SERVFAIL
    assert fake_upstream.count(name, "A") == 2


def test_query_types_are_cached_apart(standard: Sinkhole, fake_upstream: FakeUpstream) -> None:
    name = unique()
    assert addresses(ask(v4(standard), name, "A")) == [UPSTREAM_IPV4]
    assert addresses(ask(v4(standard), name, "AAAA")) == ["2001:db8::7"]
    assert addresses(ask(v4(standard), name, "A")) == [UPSTREAM_IPV4]
    assert fake_upstream.count(name, "A") == 1
    assert fake_upstream.count(name, "AAAA") == 1


def test_the_do_bit_is_cached_apart(standard: Sinkhole, fake_upstream: FakeUpstream) -> None:
    name = unique()
    plain = ask(v4(standard), name, "A", edns=True)
    signed = ask(v4(standard), name, "A", dnssec=True)
    assert not plain.ednsflags & dns.flags.DO
    assert signed.ednsflags & dns.flags.DO
    assert fake_upstream.count(name, "A") == 2
    ask(v4(standard), name, "A", edns=True)
    ask(v4(standard), name, "A", dnssec=True)
    assert fake_upstream.count(name, "A") == 2


def test_edns_and_plain_clients_share_an_entry(
    standard: Sinkhole, fake_upstream: FakeUpstream
) -> None:
    name = unique()
    assert ask(v4(standard), name, "A").edns == -1
    assert ask(v4(standard), name, "A", edns=True).edns == 0
    assert fake_upstream.count(name, "A") == 1


def test_max_entries_evicts_the_least_recently_used(
    sinkhole_factory: SinkholeFactory, fake_upstream: FakeUpstream
) -> None:
    server = sinkhole_factory(cache={"max_entries": 2})
    a, b, c = unique(), unique(), unique()

    def forwarded() -> tuple[int, int, int]:
        return fake_upstream.count(a), fake_upstream.count(b), fake_upstream.count(c)

    ask(v4(server), a)
    ask(v4(server), b)
    ask(v4(server), a)  # a is now the most recently used
    assert forwarded() == (1, 1, 0)
    ask(v4(server), c)  # evicts b, the least recently used
    assert forwarded() == (1, 1, 1)
    ask(v4(server), a)  # still cached
    assert forwarded() == (1, 1, 1)
    ask(v4(server), b)  # evicted: forwarded again, and evicts c
    assert forwarded() == (1, 2, 1)
    ask(v4(server), c)
    assert forwarded() == (1, 2, 2)


def _until_stale(server: Sinkhole, name: str) -> dns.message.Message:
    """Ask ``name`` until the answer no longer comes from the live cache entry (its TTL is
    1 s): the first answer that needed the upstream, which no longer answers."""

    def past_expiry() -> dns.message.Message | None:
        r = ask(v4(server), name, edns=True, timeout=4.0)
        return r if r.rcode() != dns.rcode.NOERROR or ede(r) else None

    r = wait_until(past_expiry, timeout=8.0, interval=0.2)
    assert r is not None, "the answer never expired"
    return r


def test_an_expired_answer_is_served_stale_when_no_upstream_answers(
    sinkhole_factory: SinkholeFactory, fake_upstream: FakeUpstream
) -> None:
    """RFC 8767: the upstream answered once (TTL 1) and is silent since; once the answer
    has expired, the client still gets it, after the query's time budget, with TTL 30
    and EDE 3 (Stale Answer), logged as its own outcome."""
    server = sinkhole_factory(upstream_timeout=0.3, query_timeout=1.0, query_log="blocked")
    name = unique("once")
    assert ask(v4(server), name).answer[0].ttl == 1
    started = time.monotonic()
    r = _until_stale(server, name)
    assert time.monotonic() - started >= 1.0
    assert r.rcode() == dns.rcode.NOERROR
    assert addresses(r) == [UPSTREAM_IPV4]
    assert [rrset.ttl for rrset in r.answer] == [30]
    assert [code for code, _ in ede(r)] == [3]
    assert fake_upstream.count(name, "A") >= 2  # asked again, in vain
    logged = wait_until(
        lambda: [e for e in server.events("query") if e.get("outcome") == "stale"], timeout=3.0
    )
    assert logged and logged[0]["qname"] == name


def test_no_stale_answer_when_stale_max_is_zero(
    sinkhole_factory: SinkholeFactory, fake_upstream: FakeUpstream
) -> None:
    server = sinkhole_factory(upstream_timeout=0.3, query_timeout=1.0, cache={"stale_max": 0})
    name = unique("once")
    assert ask(v4(server), name).answer[0].ttl == 1
    r = _until_stale(server, name)
    assert r.rcode() == dns.rcode.SERVFAIL
    assert [code for code, _ in ede(r)] == [22]
