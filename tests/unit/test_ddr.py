"""Discovery of Designated Resolvers (RFC 9462): the SVCB records, read back by dnspython,
and the engine answering resolver.arpa itself, before the policy, never forwarding."""

from __future__ import annotations

import ipaddress

import dns.message
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.svcbbase
import pytest
from hypothesis import given
from hypothesis import strategies as st

from resolver.core import wire
from resolver.core.cache import Cache, CacheSettings
from resolver.core.clients import ClientAcl
from resolver.core.ddr import (
    DDR_NAME,
    TYPE_SVCB,
    Designated,
    designations,
    svcb_rdata,
    under_resolver_arpa,
)
from resolver.core.endpoint import Endpoint
from resolver.core.engine import Engine
from resolver.core.matcher import CompiledPolicy, Scope
from resolver.core.outcome import Outcome
from resolver.core.snapshot import Snapshot
from resolver.core.verdict import Action, Answers, PolicyInfo, Verdict

from .test_engine import RecordingLog


def read(rdata: bytes) -> dns.rdata.Rdata:
    return dns.rdata.from_wire(dns.rdataclass.IN, dns.rdatatype.SVCB, rdata, 0, len(rdata))


def test_svcb_rdata_reads_back_as_dnspython_writes_it() -> None:
    rdata = svcb_rdata(
        1,
        wire.text_to_name("dns.example.net"),
        ("h2",),
        443,
        ["192.0.2.1", "2001:db8::1"],
        "/dns-query{?dns}",
    )
    expected = (
        '1 dns.example.net. alpn="h2" port="443" ipv4hint="192.0.2.1" ipv6hint="2001:db8::1" '
        'dohpath="/dns-query{?dns}"'
    )
    assert read(rdata).to_text() == expected
    assert read(rdata).to_wire() == rdata  # dnspython writes the same octets


def test_designations_doh_first_one_record_per_port() -> None:
    records = designations(
        "dns.example.net",
        [Endpoint("0.0.0.0", 853), Endpoint("::", 853)],
        [Endpoint("192.0.2.1", 443), Endpoint("2001:db8::1", 443), Endpoint("192.0.2.1", 8443)],
    )
    assert [read(r).to_text() for r in records] == [
        '1 dns.example.net. alpn="h2" port="443" ipv4hint="192.0.2.1" ipv6hint="2001:db8::1" '
        'dohpath="/dns-query{?dns}"',
        '2 dns.example.net. alpn="h2" port="8443" ipv4hint="192.0.2.1" dohpath="/dns-query{?dns}"',
        '3 dns.example.net. alpn="dot" port="853"',  # wildcard addresses give no hints
    ]


def test_without_a_name_the_target_is_the_root() -> None:
    [record] = designations("", [Endpoint("127.0.0.1", 853)], [])
    assert str(read(record).target) == "."


@pytest.mark.parametrize(
    ("name", "under"),
    [
        ("_dns.resolver.arpa", True),
        ("resolver.arpa", True),
        ("a.b.resolver.arpa", True),
        ("xresolver.arpa", False),
        ("arpa", False),
        ("resolver.arpa.example", False),
    ],
)
def test_under_resolver_arpa(name: str, under: bool) -> None:
    assert under_resolver_arpa(wire.text_to_name(name)) is under


def test_a_label_ending_in_the_same_octets_is_not_under_it() -> None:
    # One label "x\x08resolver" then "arpa": the octets end like resolver.arpa, the labels do not.
    name = b"\x0ax\x08resolver\x04arpa\x00"
    assert name.endswith(wire.text_to_name("resolver.arpa"))
    assert not under_resolver_arpa(name)


@given(st.lists(st.from_regex(r"[a-z0-9_-]{1,20}", fullmatch=True), max_size=4))
def test_under_resolver_arpa_matches_the_labels(labels: list[str]) -> None:
    name = ".".join([*labels, "resolver", "arpa"])
    assert under_resolver_arpa(wire.text_to_name(name))
    assert not under_resolver_arpa(wire.text_to_name(".".join([*labels, "arpa"]) or "arpa"))


def ask(
    engine: Engine, name: str, rdtype: str, client: str = "127.0.0.1", edns: bool = True
) -> dns.message.Message:
    q = dns.message.make_query(name, rdtype, use_edns=0 if edns else None)
    result = engine.handle(q.to_wire(), client, 1000, False)
    assert isinstance(result, bytes), result
    return dns.message.from_wire(result)


def engine_blocking(*names: str, log: RecordingLog | None = None) -> Engine:
    answers = Answers((ipaddress.IPv4Address("192.0.2.80"),), (), 60)
    verdict = Verdict(PolicyInfo(id="p", source="p.yaml"), Action.NXDOMAIN, answers, 0)
    policy = CompiledPolicy.build([(wire.text_to_name(n), Scope.SUBTREE, verdict) for n in names])
    acl = ClientAcl([ipaddress.ip_network("127.0.0.0/8")])
    return Engine(Snapshot(policy), Cache(CacheSettings()), acl, query_log=log, log_all=True)


def test_the_engine_answers_the_svcb_question_itself() -> None:
    log = RecordingLog()
    engine = engine_blocking("arpa", log=log)  # even a policy over all of arpa does not hide it
    engine.designated = Designated(
        designations("dns.example.net", [Endpoint("127.0.0.1", 853)], [])
    )
    r = ask(engine, "_DNS.resolver.arpa", "SVCB")
    assert r.rcode() == 0
    [rrset] = r.answer
    assert rrset.rdtype == TYPE_SVCB and rrset.ttl == 300
    assert [rd.to_text() for rd in rrset] == [
        '1 dns.example.net. alpn="dot" port="853" ipv4hint="127.0.0.1"'
    ]
    assert r.opt is not None and not r.options  # EDNS echoed, no EDE: nothing was blocked
    assert engine.counters.local == 1 and engine.counters.blocked == 0
    assert log.records == [("127.0.0.1", "_dns.resolver.arpa", Outcome.LOCAL, None, 0)]


@pytest.mark.parametrize(
    ("name", "rdtype"),
    [("_dns.resolver.arpa", "A"), ("resolver.arpa", "SVCB"), ("x.resolver.arpa", "AAAA")],
)
def test_other_questions_get_nodata(name: str, rdtype: str) -> None:
    engine = engine_blocking()
    engine.designated = Designated(
        designations("dns.example.net", [Endpoint("127.0.0.1", 853)], [])
    )
    r = ask(engine, name, rdtype, edns=False)
    assert r.rcode() == 0 and r.answer == []
    [soa] = r.authority
    assert soa.rdtype == dns.rdatatype.SOA and soa.name.to_text() == "resolver.arpa."


def test_nodata_when_nothing_is_designated() -> None:
    r = ask(engine_blocking(), "_dns.resolver.arpa", "SVCB")
    assert r.rcode() == 0 and r.answer == []


def test_the_acl_comes_first() -> None:
    engine = engine_blocking()
    engine.designated = Designated(
        designations("dns.example.net", [Endpoint("127.0.0.1", 853)], [])
    )
    assert ask(engine, "_dns.resolver.arpa", "SVCB", client="192.0.2.9").rcode() == 5  # REFUSED


def test_the_ddr_name_is_in_wire_form() -> None:
    assert DDR_NAME == b"\x04_dns\x08resolver\x04arpa\x00"


def test_other_names_are_not_answered_locally() -> None:
    engine = engine_blocking()
    q = dns.message.make_query("resolver.arpa.example", "A")
    assert isinstance(engine.handle(q.to_wire(), "127.0.0.1", 1000, False), wire.Query)
    assert engine.counters.local == 0
