"""What the engine counts and logs for each answer: tallies by type, rcode, policy and
transport (replays included), the rcode sent in the query log, and answer times."""

from __future__ import annotations

from collections import Counter

import dns.message
import dns.rrset
import pytest
from support.engine_driver import Replies, forward

from resolver.core import outbound, wire
from resolver.core.engine import Engine
from resolver.core.flight import Waiter
from resolver.core.outcome import Outcome
from resolver.core.tally import LATENCY_BOUNDS, NO_ANSWER, Latency, Tallies
from resolver.core.verdict import Action

from .packets import header, query
from .test_engine import CLIENT, T0, RecordingLog, make_engine, snapshot, upstream_reply

TYPE_HINFO = 13


def empty_reply(q: wire.Query) -> outbound.Reply:
    """An upstream's NOERROR answer with no records (an SOA: cached), to any type."""
    message = dns.message.make_query(q.text_name(), q.qtype)
    response = dns.message.make_response(message)
    soa = "ns.example. h.example. 1 3600 600 86400 300"
    response.authority.append(dns.rrset.from_text("example.com.", 300, "IN", "SOA", soa))
    return outbound.parse_reply(response.to_wire(), message.id, q.question)


def answers(engine: Engine) -> Counter[tuple[str, int, int]]:
    """Answers by (transport, type, rcode), as /metrics groups the tallies."""
    out: Counter[tuple[str, int, int]] = Counter()
    for (qtype, rcode, _, _), udp, tcp in engine.tallies.rows():
        if rcode != NO_ANSWER:
            out["udp", qtype, rcode] += udp
            out["tcp", qtype, rcode] += tcp
    return +out


def blocks(engine: Engine) -> Counter[tuple[str, str]]:
    out: Counter[tuple[str, str]] = Counter()
    for (_, _, policy, action), udp, tcp in engine.tallies.rows():
        if policy:
            out[policy, action] += udp + tcp
    return +out


def test_blocked_answers_are_counted_once_each_replays_included() -> None:
    engine = make_engine()
    data = query("www.blocked.example")
    for _ in range(3):  # decided, then replayed twice
        engine.handle(data, CLIENT, T0, False)
    engine.handle(data, CLIENT, T0, True)
    engine.handle(query("nx.example", wire.TYPE_AAAA), CLIENT, T0, False)
    assert engine.handle(query("drop.example"), CLIENT, T0, False) is None
    assert answers(engine) == {
        ("udp", wire.TYPE_A, wire.NOERROR): 3,
        ("tcp", wire.TYPE_A, wire.NOERROR): 1,
        ("udp", wire.TYPE_AAAA, wire.NXDOMAIN): 1,
    }
    assert blocks(engine) == {("p0", "warning-page"): 4, ("p0", "nxdomain"): 1, ("p0", "drop"): 1}
    outcomes = engine.outcomes()
    assert outcomes[Outcome.BLOCKED] == 5 and outcomes[Outcome.DROPPED] == 1


def test_forwarded_and_cached_answers_and_cache_misses() -> None:
    engine = make_engine()
    data = query("www.example.com", TYPE_HINFO)
    first = engine.handle(data, CLIENT, T0, True)
    assert isinstance(first, wire.Query)
    forward(engine, first, empty_reply(first), T0, tcp=True)
    for _ in range(2):  # from the cache, then replayed
        assert isinstance(engine.handle(data, CLIENT, T0, False), bytes)
    assert answers(engine) == {("tcp", 0, wire.NOERROR): 1, ("udp", 0, wire.NOERROR): 2}
    assert blocks(engine) == {}
    outcomes = engine.outcomes()
    assert outcomes[Outcome.FORWARDED] == 1 and outcomes[Outcome.CACHED] == 2
    assert engine.counters.cache_misses == 1


def test_servfail_and_error_answers_are_counted() -> None:
    engine = make_engine()
    q = engine.handle(query("www.example.com"), CLIENT, T0, False)
    assert isinstance(q, wire.Query)
    forward(engine, q, None, T0)  # no upstream answered
    engine.handle(query("example.com"), "192.0.2.1", T0, False)  # refused client
    engine.handle(header(qid=1) + b"\xff\xff", CLIENT, T0, False)  # FORMERR, no question
    engine.handle(query("example.com", wire.TYPE_AXFR), CLIENT, T0, True)
    assert answers(engine) == {
        ("udp", wire.TYPE_A, wire.SERVFAIL): 1,
        ("udp", wire.TYPE_A, wire.REFUSED): 1,
        ("udp", 0, wire.FORMERR): 1,
        ("tcp", 0, wire.REFUSED): 1,  # AXFR counts as other
    }


@pytest.mark.parametrize(
    ("name", "rcode"),
    [
        ("blocked.example", wire.NOERROR),
        ("nx.example", wire.NXDOMAIN),
        ("drop.example", NO_ANSWER),
    ],
)
def test_the_query_log_has_the_rcode_sent(name: str, rcode: int) -> None:
    log = RecordingLog()
    engine = make_engine(log)
    for _ in range(2):  # decided, then replayed (drops are never replayed)
        engine.handle(query(name), CLIENT, T0, False)
    assert [r[4] for r in log.records] == [rcode, rcode]
    assert {r[2] for r in log.records} == {Outcome.BLOCKED}


def test_answer_times_of_waiting_queries() -> None:
    engine = make_engine()
    for name, reply, waited in (("a.example", True, 0.0004), ("b.example", False, 1.2)):
        q = engine.handle(query(name), CLIENT, T0, False)
        assert isinstance(q, wire.Query)
        waiter = Waiter(q, Replies(), (CLIENT, 53), CLIENT, False, float(T0))
        question = engine.ask(waiter)
        assert question is not None
        engine.complete(question, upstream_reply(q) if reply else None, "up", T0 + waited)
    forwarded = engine.latency[Outcome.FORWARDED]
    assert forwarded.counts[0] == 1 and sum(forwarded.counts) == 1
    assert forwarded.total == pytest.approx(0.0004)
    failed = engine.latency[Outcome.SERVFAIL]
    assert failed.counts[LATENCY_BOUNDS.index(2.5)] == 1 and sum(failed.counts) == 1


def test_latency_buckets_hold_their_upper_bound() -> None:
    histogram = Latency()
    for seconds in (0.001, 0.0010001, 5.0, 60.0):
        histogram.add(seconds)
    assert histogram.counts[0] == 1  # le="0.001"
    assert histogram.counts[1] == 1
    assert histogram.counts[LATENCY_BOUNDS.index(5.0)] == 1
    assert histogram.counts[-1] == 1  # +Inf


def test_uncommon_types_share_one_tally() -> None:
    tallies = Tallies()
    for qtype in (TYPE_HINFO, 65280, 99):
        tallies.count(qtype, wire.NOERROR, None, False)
    tallies.count(65, wire.NOERROR, None, False)  # HTTPS keeps its own
    assert sorted((key[0], udp) for key, udp, _ in tallies.rows()) == [(0, 3), (65, 1)]


def test_a_reload_totals_the_tallies_and_lets_the_old_verdicts_go() -> None:
    engine = make_engine()
    data = query("www.blocked.example")
    for _ in range(3):
        engine.handle(data, CLIENT, T0, False)
    engine.snapshot = snapshot(("blocked.example", Action.NXDOMAIN))
    assert not engine.tallies.live and not engine.tallies.replayed  # no verdict kept
    for _ in range(2):
        engine.handle(data, CLIENT, T0, False)
    assert answers(engine) == {
        ("udp", wire.TYPE_A, wire.NOERROR): 3,
        ("udp", wire.TYPE_A, wire.NXDOMAIN): 2,
    }
    assert blocks(engine) == {("p0", "warning-page"): 3, ("p0", "nxdomain"): 2}
    assert engine.outcomes()[Outcome.BLOCKED] == 5
