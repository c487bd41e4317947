"""Blocked answers: the replayed (fast) path gives the same bytes as the full path, and both
say exactly what an answer built independently with dnslib says."""

from __future__ import annotations

import ipaddress

import dns.edns
import dns.flags
import dns.message
from dnslib import AAAA, QTYPE, RR, SOA, A, DNSRecord
from hypothesis import given
from hypothesis import strategies as st

from resolver.core import wire
from resolver.core.cache import Cache, CacheSettings
from resolver.core.clients import ClientAcl
from resolver.core.engine import Engine
from resolver.core.matcher import CompiledPolicy, Scope
from resolver.core.snapshot import Snapshot
from resolver.core.verdict import Action, Answers, PolicyInfo, Verdict

ANSWERS = Answers(
    (ipaddress.IPv4Address("192.0.2.80"),), (ipaddress.IPv6Address("2001:db8::80"),), 60
)
INFO = PolicyInfo(id="order", source="o.yaml", reference="Order 7", ede=wire.EDE_CENSORED)
ACTIONS = [Action.WARNING_PAGE, Action.NXDOMAIN, Action.NODATA, Action.REFUSE]
QTYPES = ["A", "AAAA", "MX", "TXT", "HTTPS", "ANY"]

labels = st.text("abcXYZ019-", min_size=1, max_size=10).filter(
    lambda s: not s.startswith("-") and not s.endswith("-")
)


def engine_for(action: Action) -> Engine:
    verdict = Verdict(INFO, action, ANSWERS, 0)
    policy = CompiledPolicy.build([(wire.text_to_name("blocked.example"), Scope.SUBTREE, verdict)])
    acl = ClientAcl([ipaddress.ip_network("127.0.0.0/8")])
    return Engine(Snapshot(policy), Cache(CacheSettings()), acl)


def reference(query: dns.message.Message, action: Action) -> DNSRecord:
    """The answer the policy mandates, built with dnslib from the rules in the README."""
    request = DNSRecord.parse(query.to_wire())
    reply = request.reply(ra=1, aa=0)
    reply.header.rd = request.header.rd
    qtype = QTYPE[request.q.qtype]
    if action is Action.REFUSE:
        reply.header.rcode = 5
    elif action is Action.WARNING_PAGE and qtype in ("A", "AAAA"):
        rdata = A("192.0.2.80") if qtype == "A" else AAAA("2001:db8::80")
        reply.add_answer(RR(request.q.qname, request.q.qtype, ttl=60, rdata=rdata))
    else:
        reply.header.rcode = 3 if action is Action.NXDOMAIN else 0
        soa = SOA("sinkhole.invalid.", "hostmaster.sinkhole.invalid.", (1, 1800, 900, 604800, 60))
        reply.add_auth(RR(request.q.qname, QTYPE.SOA, ttl=60, rdata=soa))
    return reply


@given(
    st.lists(labels, min_size=0, max_size=3),
    st.sampled_from(QTYPES),
    st.sampled_from(ACTIONS),
    st.booleans(),
    st.booleans(),
    st.booleans(),
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFF),
)
def test_replayed_and_full_answers_agree_with_an_independent_build(
    prefix: list[str],
    qtype: str,
    action: Action,
    edns: bool,
    do: bool,
    rd: bool,
    first_id: int,
    second_id: int,
) -> None:
    name = ".".join([*prefix, "Blocked.Example"])
    query = dns.message.make_query(
        name, qtype, use_edns=0 if edns else None, want_dnssec=do and edns
    )
    if not rd:
        query.flags &= ~dns.flags.RD
    engine = engine_for(action)
    query.id = first_id
    full = engine.handle(query.to_wire(), "127.0.0.1", 1000, False)
    query.id = second_id
    replayed = engine.handle(query.to_wire(), "127.0.0.1", 1000, False)
    assert isinstance(full, bytes) and isinstance(replayed, bytes)
    assert full[2:] == replayed[2:]  # the fast path is the full path, byte for byte
    assert replayed[:2] == second_id.to_bytes(2, "big")

    ours = DNSRecord.parse(replayed)
    expected = reference(query, action)
    assert ours.header.id == second_id
    assert (ours.header.qr, ours.header.aa, ours.header.ra, ours.header.rd) == (
        1,
        0,
        1,
        int(rd),
    )
    assert ours.header.rcode == expected.header.rcode
    assert ours.q == expected.q  # the question, with the client's letter case
    assert [str(rr) for rr in ours.rr] == [str(rr) for rr in expected.rr]
    assert [str(rr) for rr in ours.auth] == [str(rr) for rr in expected.auth]
    parsed = dns.message.from_wire(replayed)
    if edns:
        assert parsed.edns == 0 and bool(parsed.ednsflags & dns.flags.DO) == do
        assert [(o.code, o.text) for o in parsed.options if isinstance(o, dns.edns.EDEOption)] == [
            (dns.edns.EDECode.CENSORED, "Order 7")
        ]
    else:
        assert parsed.edns == -1 and not ours.ar
