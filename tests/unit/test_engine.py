"""The per-query decision: bytes in, reply bytes / a Query to forward / None out."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta

import dns.edns
import dns.message
import dns.rcode
import dns.rdata
import dns.rrset
import dnslib
import pytest
from support.engine_driver import Replies, forward

from resolver.core import outbound, wire
from resolver.core.cache import Cache, CacheSettings
from resolver.core.clients import ClientAcl
from resolver.core.engine import Engine
from resolver.core.flight import Waiter
from resolver.core.matcher import CompiledPolicy, Scope
from resolver.core.outcome import Outcome
from resolver.core.snapshot import Snapshot
from resolver.core.verdict import Action, Answers, PolicyInfo, Verdict

from .packets import header, query, question

T0 = 2_000_000
FUTURE = datetime(2030, 1, 1, tzinfo=UTC)
CLIENT = "127.0.0.1"
ANSWERS = Answers(
    (ipaddress.IPv4Address("192.0.2.80"),), (ipaddress.IPv6Address("2001:db8::80"),), 60
)
MANY = Answers(tuple(ipaddress.IPv4Address(f"192.0.2.{i}") for i in range(1, 41)), (), 60)


class RecordingLog:
    """A query log that keeps what it was told."""

    def __init__(self) -> None:
        self.records: list[tuple[str, str, Outcome, str | None, int]] = []

    def record(
        self,
        client: str,
        query: wire.Query,
        outcome: Outcome,
        verdict: Verdict | None,
        rcode: int,
        upstream: str = "",
        latency: float = 0.0,
    ) -> None:
        policy = verdict.policy_id if verdict is not None else None
        self.records.append((client, query.text_name(), outcome, policy, rcode))


def verdict(action: Action, order: int = 0, answers: Answers = ANSWERS) -> Verdict:
    return Verdict(PolicyInfo(id=f"p{order}", source="p.yaml"), action, answers, order)


def snapshot(*entries: tuple[str, Action]) -> Snapshot:
    compiled = [(wire.text_to_name(n), Scope.SUBTREE, verdict(a)) for n, a in entries]
    compiled.append(
        (wire.text_to_name("big.example"), Scope.SUBTREE, verdict(Action.WARNING_PAGE, 1, MANY))
    )
    return Snapshot(CompiledPolicy.build(compiled))


def make_engine(log: RecordingLog | None = None, log_all: bool = False) -> Engine:
    snap = snapshot(
        ("blocked.example", Action.WARNING_PAGE),
        ("nx.example", Action.NXDOMAIN),
        ("drop.example", Action.DROP),
        ("allowed.blocked.example", Action.ALLOW),
    )
    acl = ClientAcl([ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("fe80::/10")])
    return Engine(snap, Cache(CacheSettings()), acl, query_log=log, log_all=log_all)


def upstream_reply(q: wire.Query, records: int = 1, ttl: int = 300) -> outbound.Reply:
    """What the forwarder would get back for ``q``: ``records`` A records."""
    message = dns.message.make_query(q.text_name(), "A")
    response = dns.message.make_response(message)
    rrset = dns.rrset.from_text(q.text_name() + ".", ttl, "IN", "A", "198.51.100.1")
    for i in range(2, records + 1):
        rrset.add(dns.rdata.from_text("IN", "A", f"198.51.{100 + i // 250}.{i % 250}"))
    response.answer.append(rrset)
    return outbound.parse_reply(response.to_wire(), message.id, q.question)


def reply_of(result: object) -> dnslib.DNSRecord:
    assert isinstance(result, bytes), result
    return dnslib.DNSRecord.parse(result)


def test_blocked_name_gets_the_warning_page() -> None:
    log = RecordingLog()
    engine = make_engine(log)
    reply = reply_of(engine.handle(query("WWW.Blocked.Example", qid=77), CLIENT, T0, False))
    assert reply.header.id == 77
    assert reply.header.rcode == wire.NOERROR
    assert [str(rr.rdata) for rr in reply.rr] == ["192.0.2.80"]
    assert str(reply.q.qname) == "WWW.Blocked.Example."
    assert engine.counters.blocked == 1
    assert log.records == [(CLIENT, "www.blocked.example", Outcome.BLOCKED, "p0", 0)]


def test_blocked_nxdomain() -> None:
    reply = reply_of(make_engine().handle(query("nx.example", edns=True), CLIENT, T0, False))
    assert reply.header.rcode == wire.NXDOMAIN
    assert reply.auth[0].rtype == wire.TYPE_SOA


def test_drop_returns_none() -> None:
    engine = make_engine()
    assert engine.handle(query("a.drop.example"), CLIENT, T0, False) is None
    assert engine.counters.dropped == 1


def test_allowed_name_under_a_block_is_forwarded() -> None:
    result = make_engine().handle(query("x.allowed.blocked.example"), CLIENT, T0, False)
    assert isinstance(result, wire.Query)
    assert result.qname == wire.text_to_name("x.allowed.blocked.example")


def test_responses_are_ignored() -> None:
    engine = make_engine()
    response = query("blocked.example", flags=wire.QR | wire.RD)
    assert engine.handle(response, CLIENT, T0, False) is None
    assert engine.handle(response, "192.0.2.1", T0, False) is None
    assert engine.counters.responses_ignored == 2


@pytest.mark.parametrize("data", [b"", b"\x12", b"\x12\x34\x01\x00", header()[:11]])
def test_shorter_than_a_header_gets_no_answer(data: bytes) -> None:
    assert make_engine().handle(data, CLIENT, T0, False) is None


@pytest.mark.parametrize(
    "data",
    [
        header(qid=0xAB) + b"\xff\xff",
        header(qid=0xAB, qd=0) + question(),
        header(qid=0xAB, ar=1) + question(),
        header(qid=0xAB) + b"\x03abc",
    ],
)
def test_garbage_with_readable_header_gets_formerr(data: bytes) -> None:
    engine = make_engine()
    raw = engine.handle(data, CLIENT, T0, False)
    reply = reply_of(raw)
    assert reply.header.id == 0xAB
    assert reply.header.qr == 1
    assert reply.header.rcode == wire.FORMERR
    assert engine.counters.formerr == 1


def test_bad_edns_version_gets_badvers() -> None:
    data = header(ar=1) + question() + b"\x00" + bytes.fromhex("0029100000010000") + b"\x00\x00"
    raw = make_engine().handle(data, CLIENT, T0, False)
    assert isinstance(raw, bytes)
    assert dns.message.from_wire(raw).rcode() == dns.rcode.BADVERS


@pytest.mark.parametrize("opcode", [1, 2, 4, 5])
def test_other_opcode_gets_notimp(opcode: int) -> None:
    engine = make_engine()
    data = query("example.com", qid=0x77, flags=wire.RD | (opcode << 11))
    reply = reply_of(engine.handle(data, CLIENT, T0, False))
    assert reply.header.id == 0x77
    assert reply.header.qr == 1
    assert reply.header.opcode == opcode
    assert reply.header.rcode == wire.NOTIMP
    assert engine.counters.notimp == 1


def test_other_class_gets_notimp_with_the_question() -> None:
    reply = reply_of(make_engine().handle(query("example.com", qclass=3), CLIENT, T0, False))
    assert reply.header.rcode == wire.NOTIMP
    assert str(reply.q.qname) == "example.com."
    assert reply.q.qclass == 3


@pytest.mark.parametrize("client", ["192.0.2.1", "10.1.2.3", "2001:db8::1", "not-an-address"])
def test_client_outside_the_acl_is_refused(client: str) -> None:
    engine = make_engine()
    reply = reply_of(engine.handle(query("example.com", qid=9), client, T0, False))
    assert reply.header.id == 9
    assert reply.header.rcode == wire.REFUSED
    assert str(reply.q.qname) == "example.com."
    assert engine.counters.refused_clients == 1


def test_client_outside_the_acl_sending_garbage() -> None:
    raw = make_engine().handle(header(qid=5) + b"\xff", "192.0.2.1", T0, False)
    reply = reply_of(raw)
    assert reply.header.rcode == wire.REFUSED
    assert reply.header.q == 0


@pytest.mark.parametrize("client", ["::ffff:127.0.0.1", "fe80::1%eth0", "127.9.9.9"])
def test_clients_inside_the_acl(client: str) -> None:
    assert isinstance(make_engine().handle(query(), client, T0, False), wire.Query)


@pytest.mark.parametrize("qtype", [wire.TYPE_AXFR, wire.TYPE_IXFR])
def test_zone_transfers_are_refused(qtype: int) -> None:
    for tcp in (False, True):
        reply = reply_of(make_engine().handle(query("example.com", qtype), CLIENT, T0, tcp))
        assert reply.header.rcode == wire.REFUSED


def test_cache_miss_returns_the_query_and_a_hit_returns_bytes() -> None:
    log = RecordingLog()
    engine = make_engine(log, log_all=True)
    first = engine.handle(query("www.example.com", qid=1), CLIENT, T0, False)
    assert isinstance(first, wire.Query)
    forward(engine, first, upstream_reply(first), T0)
    reply = reply_of(engine.handle(query("WWW.example.com", qid=2), CLIENT, T0 + 5, False))
    assert reply.header.id == 2
    assert str(reply.q.qname) == "WWW.example.com."
    assert [(str(rr.rdata), rr.ttl) for rr in reply.rr] == [("198.51.100.1", 295)]
    assert engine.counters.cached == 1
    assert log.records == [
        (CLIENT, "www.example.com", Outcome.FORWARDED, None, 0),
        (CLIENT, "www.example.com", Outcome.CACHED, None, 0),
    ]
    assert engine.counters.forwarded == 1


def test_repeated_cache_hits_count_down_and_expire() -> None:
    engine = make_engine()
    data = query("www.example.com")
    first = engine.handle(data, CLIENT, T0, False)
    assert isinstance(first, wire.Query)
    forward(engine, first, upstream_reply(first, ttl=10), T0)
    for elapsed in (0, 0, 1, 1, 4, 9):
        reply = reply_of(engine.handle(data, CLIENT, T0 + elapsed, False))
        assert reply.rr[0].ttl == 10 - elapsed
    assert isinstance(engine.handle(data, CLIENT, T0 + 10, False), wire.Query)


def test_repeated_query_from_a_client_outside_the_acl_is_refused() -> None:
    engine = make_engine()
    data = query("blocked.example")
    reply_of(engine.handle(data, CLIENT, T0, False))
    assert reply_of(engine.handle(data, "192.0.2.1", T0, False)).header.rcode == wire.REFUSED


def test_new_snapshot_applies_to_repeated_queries() -> None:
    engine = make_engine()
    data = query("blocked.example")
    assert reply_of(engine.handle(data, CLIENT, T0, False)).rr
    engine.snapshot = snapshot(("blocked.example", Action.NXDOMAIN))
    assert reply_of(engine.handle(data, CLIENT, T0, False)).header.rcode == wire.NXDOMAIN
    engine.snapshot = snapshot()
    assert isinstance(engine.handle(data, CLIENT, T0, False), wire.Query)


def test_replies_of_the_old_policy_are_freed_a_slice_at_a_time() -> None:
    """A swap retires the replay table whole (never replayed again) and ``release``
    frees it in slices, so no single step holds up the queries that follow."""
    engine = make_engine()
    for i in range(25):
        for _ in range(2):
            reply_of(engine.handle(query(f"n{i}.blocked.example"), CLIENT, T0, False))
    engine.snapshot = snapshot(("blocked.example", Action.NXDOMAIN))
    [old] = engine.retired
    n = len(old)
    assert n > 10
    data = query("n3.blocked.example")
    assert reply_of(engine.handle(data, CLIENT, T0, False)).header.rcode == wire.NXDOMAIN
    reply_of(engine.handle(data, CLIENT, T0, False))
    engine.snapshot = snapshot()  # a second swap before the first table is freed
    assert [len(table) for table in engine.retired] == [n, 1]
    assert engine.release(10) is True
    assert [len(table) for table in engine.retired] == [n - 9]  # the newest first
    while engine.release(10):
        assert len(engine.retired) == 1
    assert engine.retired == [] and old == {}
    assert engine.release(10) is False
    engine.snapshot = snapshot()  # nothing to replay: nothing retired
    assert engine.retired == []


def test_a_reload_while_the_question_is_out_applies_to_its_answer() -> None:
    engine = make_engine()
    first = engine.handle(query("www.example.com"), CLIENT, T0, False)
    assert isinstance(first, wire.Query)
    sink = Replies()
    waiter = Waiter(first, sink, (CLIENT, 53), CLIENT, False, float(T0))
    question = engine.ask(waiter)
    assert question is not None
    engine.snapshot = snapshot(("example.com", Action.NXDOMAIN))  # while it is out
    work = engine.complete(question, upstream_reply(first), "upstream", float(T0))
    assert reply_of(work.sends[0][1]).header.rcode == wire.NXDOMAIN
    assert engine.counters.forwarded == 0


def test_a_dated_policy_coming_into_force_while_the_question_is_out_applies() -> None:
    engine = make_engine()
    info = PolicyInfo(id="dated", source="p.yaml", effective_from=FUTURE)
    dated = Verdict(info, Action.NXDOMAIN, ANSWERS, 0)
    name = wire.text_to_name("example.com")
    engine.snapshot = Snapshot(CompiledPolicy.build([(name, Scope.SUBTREE, dated)]))
    engine.policy_clock(FUTURE - timedelta(seconds=1))  # not in force yet
    first = engine.handle(query("www.example.com"), CLIENT, T0, False)
    assert isinstance(first, wire.Query)
    question = engine.ask(Waiter(first, Replies(), (CLIENT, 53), CLIENT, False, float(T0)))
    assert question is not None
    assert engine.policy_clock(FUTURE)  # in force from now, while the question is out
    work = engine.complete(question, upstream_reply(first), "upstream", float(T0))
    assert reply_of(work.sends[0][1]).header.rcode == wire.NXDOMAIN


def test_an_allowed_name_is_not_screened_again_when_answered() -> None:
    engine = make_engine()
    first = engine.handle(query("x.allowed.blocked.example"), CLIENT, T0, False)
    assert isinstance(first, wire.Query)
    reply = reply_of(forward(engine, first, upstream_reply(first), T0))
    assert [str(rr.rdata) for rr in reply.rr] == ["198.51.100.1"]
    assert engine.counters.forwarded == 1


# --- size limits ---------------------------------------------------------------------


def _big_cached(engine: Engine, records: int, **kw: object) -> bytes:
    data = query("many.example.com", **kw)  # type: ignore[arg-type]
    q = engine.handle(data, CLIENT, T0, True)
    assert isinstance(q, wire.Query)
    forward(engine, q, upstream_reply(q, records), T0, tcp=True)
    return data


def test_cached_answer_over_512_is_truncated_over_udp_without_edns() -> None:
    engine = make_engine()
    data = _big_cached(engine, 40)
    full = reply_of(engine.handle(data, CLIENT, T0, True))
    assert full.header.tc == 0
    assert len(full.rr) == 40
    raw = engine.handle(data, CLIENT, T0, False)
    assert isinstance(raw, bytes)
    assert len(raw) <= 512
    truncated = reply_of(raw)
    assert truncated.header.tc == 1
    assert truncated.rr == []
    assert str(truncated.q.qname) == "many.example.com."
    # The TCP answer is still complete after a UDP one for the same bytes.
    assert len(reply_of(engine.handle(data, CLIENT, T0, True)).rr) == 40


def test_cached_answer_fits_in_a_larger_edns_size() -> None:
    engine = make_engine()
    data = _big_cached(engine, 40, edns=True, udp=4096)
    reply = reply_of(engine.handle(data, CLIENT, T0, False))
    assert reply.header.tc == 0
    assert len(reply.rr) == 40


def test_edns_limit_is_at_most_our_own_size() -> None:
    engine = make_engine()
    data = _big_cached(engine, 100, edns=True, udp=4096)  # about 1.6 kB > 1232
    reply = reply_of(engine.handle(data, CLIENT, T0, False))
    assert reply.header.tc == 1
    assert reply.header.ar == 1  # the OPT record survives truncation
    assert len(reply_of(engine.handle(data, CLIENT, T0, True)).rr) == 100


def test_blocked_answer_over_512_is_truncated_over_udp() -> None:
    engine = make_engine()
    data = query("www.big.example")
    raw = engine.handle(data, CLIENT, T0, False)
    assert isinstance(raw, bytes)
    assert len(raw) <= 512
    assert reply_of(raw).header.tc == 1
    assert len(reply_of(engine.handle(data, CLIENT, T0, True)).rr) == 40
    assert reply_of(engine.handle(data, CLIENT, T0, False)).header.tc == 1


# --- serve-stale (RFC 8767) -------------------------------------------------------


def _chain_reply(q: wire.Query, target: str, ttl: int = 30) -> outbound.Reply:
    """An upstream answer for ``q``: a CNAME to ``target`` and the target's A record."""
    message = dns.message.make_query(q.text_name(), "A")
    response = dns.message.make_response(message)
    response.answer.append(
        dns.rrset.from_text(q.text_name() + ".", ttl, "IN", "CNAME", target + ".")
    )
    response.answer.append(dns.rrset.from_text(target + ".", ttl, "IN", "A", "198.51.100.1"))
    return outbound.parse_reply(response.to_wire(), message.id, q.question)


def _ede_codes(raw: bytes) -> list[int]:
    message = dns.message.from_wire(raw)
    return [o.code for o in message.options if isinstance(o, dns.edns.EDEOption)]


def test_no_upstream_answer_serves_the_expired_answer_stale() -> None:
    log = RecordingLog()
    engine = make_engine(log)
    q = wire.parse_query(query("www.example.com", edns=True))
    forward(engine, q, upstream_reply(q, ttl=30), T0)
    later = wire.parse_query(query("WWW.example.com", qid=9, edns=True))
    raw = forward(engine, later, None, T0 + 3600)
    assert raw is not None
    message = dns.message.from_wire(raw)
    assert message.id == 9 and message.rcode() == dns.rcode.NOERROR
    assert message.question[0].name.to_text() == "WWW.example.com."
    assert [(rrset.ttl, [rd.to_text() for rd in rrset]) for rrset in message.answer] == [
        (30, ["198.51.100.1"])
    ]
    assert _ede_codes(raw) == [wire.EDE_STALE]
    assert engine.counters.stale == 1 and engine.counters.servfail == 0
    assert log.records[-1] == (CLIENT, "www.example.com", Outcome.STALE, None, wire.NOERROR)


def test_a_stale_nxdomain_carries_ede_19() -> None:
    engine = make_engine()
    q = wire.parse_query(query("gone.example.com", edns=True))
    message = dns.message.make_query("gone.example.com", "A")
    response = dns.message.make_response(message)
    response.set_rcode(dns.rcode.NXDOMAIN)
    soa = "ns.example.com. host.example.com. 1 3600 600 86400 60"
    response.authority.append(dns.rrset.from_text("example.com.", 60, "IN", "SOA", soa))
    forward(engine, q, outbound.parse_reply(response.to_wire(), message.id, q.question), T0)
    raw = forward(engine, q, None, T0 + 61)
    assert raw is not None
    assert dns.message.from_wire(raw).rcode() == dns.rcode.NXDOMAIN
    assert _ede_codes(raw) == [wire.EDE_STALE_NXDOMAIN]


@pytest.mark.parametrize("past", [0, 30 + 86_400])
def test_servfail_when_nothing_stale_is_kept(past: int) -> None:
    """Nothing cached yet, or the answer expired longer than stale_max ago."""
    engine = make_engine()
    q = wire.parse_query(query("www.example.com", edns=True))
    if past:
        forward(engine, q, upstream_reply(q, ttl=30), T0)
    raw = forward(engine, q, None, T0 + past)
    assert raw is not None
    assert dns.message.from_wire(raw).rcode() == dns.rcode.SERVFAIL
    assert _ede_codes(raw) == [wire.EDE_NO_REACHABLE_AUTHORITY]
    assert engine.counters.servfail == 1 and engine.counters.stale == 0


def test_stale_max_zero_turns_serve_stale_off() -> None:
    engine = make_engine()
    engine.cache = Cache(CacheSettings(stale_max=0))
    q = wire.parse_query(query("www.example.com", edns=True))
    forward(engine, q, upstream_reply(q, ttl=30), T0)
    raw = forward(engine, q, None, T0 + 31)
    assert raw is not None
    assert dns.message.from_wire(raw).rcode() == dns.rcode.SERVFAIL


@pytest.mark.parametrize("blocked", ["www.example.com", "cdn.example.net"])
def test_a_stale_answer_the_policy_now_blocks_is_not_served(blocked: str) -> None:
    """The policy is checked again: a reload that blocks the name, or the CNAME target,
    while the answer sat in the cache keeps it from being served stale."""
    engine = make_engine()
    q = wire.parse_query(query("www.example.com", edns=True))
    forward(engine, q, _chain_reply(q, "cdn.example.net"), T0)
    engine.snapshot = snapshot((blocked, Action.WARNING_PAGE))
    raw = forward(engine, q, None, T0 + 60)
    assert raw is not None
    assert dns.message.from_wire(raw).rcode() == dns.rcode.SERVFAIL
    assert engine.counters.stale == 0


def test_a_stale_chain_the_policy_allows_is_served_whole() -> None:
    engine = make_engine()
    q = wire.parse_query(query("www.example.com", edns=True))
    forward(engine, q, _chain_reply(q, "cdn.example.net"), T0)
    raw = forward(engine, q, None, T0 + 60)
    assert raw is not None
    message = dns.message.from_wire(raw)
    assert [rrset.rdtype for rrset in message.answer] == [5, 1]  # CNAME, A
    assert {rrset.ttl for rrset in message.answer} == {30}
