"""Upstreams that misbehave: late answers are taken, broken ones cost a bounded effort."""

from __future__ import annotations

import time

import dns.rcode
import pytest
from support.procs import FakeUpstream, SinkholeFactory

from blackbox.dnsclient import addresses, ask, ede, unique, v4
from blackbox.standard import UPSTREAM_IPV4

pytestmark = pytest.mark.blackbox


def test_an_answer_to_an_earlier_try_is_taken(
    sinkhole_factory: SinkholeFactory, fake_upstream: FakeUpstream
) -> None:
    """The upstream answers every query 3 s late; tries time out after 1 s. The answer to
    the first try arrives before the query's 4 s budget is spent: the client gets it."""
    server = sinkhole_factory(upstream_timeout=1.0, query_timeout=4.0)
    name = unique("slow30")
    started = time.monotonic()
    reply = ask(v4(server), name, timeout=6.0)
    elapsed = time.monotonic() - started
    assert reply.rcode() == dns.rcode.NOERROR
    assert addresses(reply) == [UPSTREAM_IPV4]
    assert 2.8 < elapsed < 3.9, elapsed
    assert fake_upstream.count(name) >= 3  # later tries went out meanwhile


def test_truncated_answers_and_failing_tcp_cost_a_bounded_effort(
    sinkhole_factory: SinkholeFactory, fake_upstream: FakeUpstream
) -> None:
    """An upstream that answers UDP with TC set and resets every TCP connection: each
    client query costs a handful of upstream queries, not thousands, and ends in
    SERVFAIL within the query's time budget."""
    server = sinkhole_factory(upstream_timeout=1.0, query_timeout=4.0)
    names = [unique("tcreset") for _ in range(5)]
    started = time.monotonic()
    for name in names:
        reply = ask(v4(server), name, timeout=6.0, edns=True)
        assert reply.rcode() == dns.rcode.SERVFAIL
        assert [code for code, _ in ede(reply)] == [22]
    assert time.monotonic() - started < 5 * 4.5
    for name in names:
        assert 2 <= fake_upstream.count(name) <= 6, fake_upstream.count(name)
    assert fake_upstream.count(names[0], transport="tcp") >= 1
