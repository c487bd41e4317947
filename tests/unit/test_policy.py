"""The compiled policy: which entry decides a name, and what a blocked query is answered."""

from __future__ import annotations

import ipaddress

import dnslib
import pytest

from resolver.core import wire
from resolver.core.matcher import CompiledPolicy, Scope
from resolver.core.verdict import Action, Answers, PolicyInfo, Verdict

from .packets import parsed

ANSWERS = Answers(
    (ipaddress.IPv4Address("192.0.2.80"), ipaddress.IPv4Address("192.0.2.81")),
    (ipaddress.IPv6Address("2001:db8::80"),),
    45,
)


def make_verdict(
    action: Action = Action.WARNING_PAGE,
    order: int = 0,
    *,
    policy_id: str = "p",
    policy_reference: str = "",
    reference: str = "",
    ede: int = wire.EDE_CENSORED,
    answers: Answers = ANSWERS,
) -> Verdict:
    info = PolicyInfo(id=policy_id, source=f"{policy_id}.yaml", reference=policy_reference, ede=ede)
    return Verdict(info, action, answers, order, reference)


def w(text: str) -> bytes:
    return wire.text_to_name(text)


def build(*entries: tuple[str, Verdict]) -> CompiledPolicy:
    """Entries written as policies write them: ``name``, ``=name`` or ``*.name``."""
    compiled: list[tuple[bytes, Scope, Verdict]] = []
    for text, verdict in entries:
        if text.startswith("="):
            compiled.append((w(text[1:]), Scope.EXACT, verdict))
        elif text.startswith("*."):
            compiled.append((w(text[2:]), Scope.BELOW, verdict))
        else:
            compiled.append((w(text), Scope.SUBTREE, verdict))
    return CompiledPolicy.build(compiled)


# --- scopes -----------------------------------------------------------------------


def test_subtree_covers_the_name_and_everything_under_it() -> None:
    v = make_verdict()
    policy = build(("example.com", v))
    assert policy.match(w("example.com")) is v
    assert policy.match(w("www.example.com")) is v
    assert policy.match(w("a.b.c.example.com")) is v
    for other in ("com", "notexample.com", "example.com.au", "example.org", "xexample.com"):
        assert policy.match(w(other)) is None, other


def test_exact_covers_only_the_name() -> None:
    v = make_verdict()
    policy = build(("=example.com", v))
    assert policy.match(w("example.com")) is v
    assert policy.match(w("www.example.com")) is None
    assert policy.match(w("com")) is None


def test_below_covers_only_names_under_it() -> None:
    v = make_verdict()
    policy = build(("*.example.com", v))
    assert policy.match(w("example.com")) is None
    assert policy.match(w("www.example.com")) is v
    assert policy.match(w("a.b.example.com")) is v


def test_exact_and_below_together_cover_the_subtree() -> None:
    v = make_verdict()
    policy = build(("=example.com", v), ("*.example.com", v))
    assert policy.match(w("example.com")) is v
    assert policy.match(w("www.example.com")) is v
    assert policy.names() == 1
    assert policy.entries == 2


def test_root_query_matches_nothing() -> None:
    assert build(("example.com", make_verdict())).match(b"\x00") is None


# --- precedence -------------------------------------------------------------------


def test_most_specific_name_wins_allow_under_block() -> None:
    block = make_verdict(Action.NXDOMAIN, 0)
    allow = make_verdict(Action.ALLOW, 1)
    policy = build(("example.com", block), ("good.example.com", allow))
    assert policy.match(w("example.com")) is block
    assert policy.match(w("other.example.com")) is block
    assert policy.match(w("good.example.com")) is allow
    assert policy.match(w("x.good.example.com")) is allow


def test_most_specific_name_wins_block_under_allow() -> None:
    allow = make_verdict(Action.ALLOW, 0)
    block = make_verdict(Action.NXDOMAIN, 1)
    policy = build(("bad.example.com", block), ("example.com", allow))
    assert policy.match(w("bad.example.com")) is block
    assert policy.match(w("x.bad.example.com")) is block
    assert policy.match(w("fine.example.com")) is allow


def test_exact_entry_on_a_deeper_name_beats_parent_subtree() -> None:
    parent = make_verdict(Action.NXDOMAIN, 0)
    exact = make_verdict(Action.NODATA, 1)
    policy = build(("example.com", parent), ("=www.example.com", exact))
    assert policy.match(w("www.example.com")) is exact
    assert policy.match(w("a.www.example.com")) is parent


def test_below_entry_is_skipped_for_its_own_name() -> None:
    parent = make_verdict(Action.NXDOMAIN, 5)
    below = make_verdict(Action.REFUSE, 0)
    policy = build(("example.com", parent), ("*.www.example.com", below))
    assert policy.match(w("www.example.com")) is parent
    assert policy.match(w("a.www.example.com")) is below


@pytest.mark.parametrize("allow_first", [True, False])
@pytest.mark.parametrize(("allow_order", "block_order"), [(0, 1), (1, 0)])
def test_same_name_allow_beats_block(allow_first: bool, allow_order: int, block_order: int) -> None:
    allow = make_verdict(Action.ALLOW, allow_order)
    block = make_verdict(Action.WARNING_PAGE, block_order)
    pairs = [("example.com", allow), ("example.com", block)]
    policy = build(*(pairs if allow_first else pairs[::-1]))
    assert policy.match(w("example.com")) is allow
    assert policy.match(w("www.example.com")) is allow


@pytest.mark.parametrize("low_first", [True, False])
def test_same_name_lower_policy_order_wins(low_first: bool) -> None:
    first = make_verdict(Action.NXDOMAIN, 0, policy_id="first")
    second = make_verdict(Action.WARNING_PAGE, 1, policy_id="second")
    pairs = [("example.com", first), ("example.com", second)]
    policy = build(*(pairs if low_first else pairs[::-1]))
    assert policy.match(w("example.com")) is first
    assert policy.match(w("a.example.com")) is first


def test_same_name_different_scopes_split_the_decision() -> None:
    block = make_verdict(Action.NXDOMAIN, 1)
    allow_exact = make_verdict(Action.ALLOW, 2)
    policy = build(("example.com", block), ("=example.com", allow_exact))
    assert policy.match(w("example.com")) is allow_exact
    assert policy.match(w("www.example.com")) is block

    allow_below = make_verdict(Action.ALLOW, 2)
    policy = build(("*.example.com", allow_below), ("example.com", block))
    assert policy.match(w("example.com")) is block
    assert policy.match(w("www.example.com")) is allow_below


def test_same_name_subtree_and_exact_by_order() -> None:
    early = make_verdict(Action.NODATA, 0)
    late = make_verdict(Action.NXDOMAIN, 1)
    policy = build(("example.com", late), ("=example.com", early))
    assert policy.match(w("example.com")) is early
    assert policy.match(w("x.example.com")) is late
    policy = build(("=example.com", late), ("example.com", early))
    assert policy.match(w("example.com")) is early
    assert policy.match(w("x.example.com")) is early


def test_locate_names_the_deciding_entry() -> None:
    block = make_verdict(Action.NXDOMAIN, 0)
    allow = make_verdict(Action.ALLOW, 1)
    exact = make_verdict(Action.NODATA, 0)
    policy = build(
        ("example.com", block),
        ("good.example.com", allow),
        ("=www.example.com", exact),
        ("*.cdn.example.com", block),
    )
    assert policy.locate(w("a.b.example.com")) == (block, w("example.com"))
    assert policy.locate(w("x.good.example.com")) == (allow, w("good.example.com"))
    assert policy.locate(w("www.example.com")) == (exact, w("www.example.com"))
    assert policy.locate(w("a.www.example.com")) == (block, w("example.com"))
    # The shared verdict is found at the *.cdn entry, not at example.com.
    assert policy.locate(w("x.cdn.example.com")) == (block, w("cdn.example.com"))
    assert policy.locate(w("cdn.example.com")) == (block, w("example.com"))
    assert policy.locate(w("example.org")) == (None, b"")


# --- rendering --------------------------------------------------------------------

QTYPES = {"A": wire.TYPE_A, "AAAA": wire.TYPE_AAAA, "MX": 15, "ANY": wire.TYPE_ANY}
MODES = [(False, False), (True, False), (True, True)]  # (EDNS, DO)


def render(verdict: Verdict, qtype: int, edns: bool, do: bool, **kw: object) -> dnslib.DNSRecord:
    q = parsed("Blocked.Example.COM", qtype, edns=edns, do=do, **kw)
    raw = verdict.render(q)
    assert raw[12 : 12 + len(q.question)] == q.question
    return dnslib.DNSRecord.parse(raw)


def check_header(reply: dnslib.DNSRecord, rcode: int) -> None:
    h = reply.header
    assert h.id == 0x1234
    assert (h.qr, h.aa, h.tc, h.rd, h.ra) == (1, 0, 0, 1, 1)
    assert h.rcode == rcode
    assert str(reply.q.qname) == "Blocked.Example.COM."


def check_soa(reply: dnslib.DNSRecord, ttl: int) -> None:
    assert len(reply.auth) == 1
    soa = reply.auth[0]
    assert soa.rtype == wire.TYPE_SOA
    assert str(soa.rname).lower() == "blocked.example.com."
    assert soa.ttl == ttl
    assert soa.rdata.times[-1] == ttl  # MINIMUM: the negative-caching TTL


def check_edns(reply: dnslib.DNSRecord, edns: bool, do: bool, code: int, text: str) -> None:
    if not edns:
        assert reply.header.ar == 0
        return
    assert reply.header.ar == 1
    opt = reply.ar[0]
    assert opt.rtype == wire.TYPE_OPT
    assert opt.rclass == wire.EDNS_UDP_SIZE
    assert bool(opt.ttl & wire.EDNS_DO) is do
    assert opt.ttl >> 24 == 0
    (option,) = opt.rdata
    assert option.code == wire.EDE_OPTION
    assert int.from_bytes(option.data[:2], "big") == code
    assert option.data[2:].decode() == text


@pytest.mark.parametrize(("edns", "do"), MODES)
@pytest.mark.parametrize("qtype", list(QTYPES))
def test_render_warning_page(qtype: str, edns: bool, do: bool) -> None:
    v = make_verdict(Action.WARNING_PAGE, policy_id="kr", policy_reference="KCSC 2010-08")
    reply = render(v, QTYPES[qtype], edns, do)
    check_header(reply, wire.NOERROR)
    if qtype == "A":
        assert [str(rr.rdata) for rr in reply.rr] == ["192.0.2.80", "192.0.2.81"]
    elif qtype == "AAAA":
        assert [str(rr.rdata) for rr in reply.rr] == ["2001:db8::80"]
    if qtype in ("A", "AAAA"):
        assert all(rr.ttl == 45 and rr.rtype == QTYPES[qtype] for rr in reply.rr)
        assert all(str(rr.rname) == "Blocked.Example.COM." for rr in reply.rr)
        assert reply.auth == []
    else:
        assert reply.rr == []
        check_soa(reply, 45)
    check_edns(reply, edns, do, wire.EDE_CENSORED, "KCSC 2010-08")


def test_render_warning_page_without_ipv6_is_nodata() -> None:
    v = make_verdict(answers=Answers((ipaddress.IPv4Address("192.0.2.80"),), (), 30))
    reply = render(v, wire.TYPE_AAAA, False, False)
    check_header(reply, wire.NOERROR)
    assert reply.rr == []
    check_soa(reply, 30)


@pytest.mark.parametrize(("edns", "do"), MODES)
@pytest.mark.parametrize("qtype", list(QTYPES))
@pytest.mark.parametrize(
    ("action", "rcode"), [(Action.NXDOMAIN, wire.NXDOMAIN), (Action.NODATA, wire.NOERROR)]
)
def test_render_negative(action: Action, rcode: int, qtype: str, edns: bool, do: bool) -> None:
    v = make_verdict(action, policy_id="malware", ede=wire.EDE_FILTERED)
    reply = render(v, QTYPES[qtype], edns, do)
    check_header(reply, rcode)
    assert reply.rr == []
    check_soa(reply, 45)
    check_edns(reply, edns, do, wire.EDE_FILTERED, "malware")


@pytest.mark.parametrize(("edns", "do"), MODES)
@pytest.mark.parametrize("qtype", list(QTYPES))
def test_render_refuse(qtype: str, edns: bool, do: bool) -> None:
    v = make_verdict(
        Action.REFUSE, ede=wire.EDE_BLOCKED, policy_reference="p-ref", reference="e-ref"
    )
    reply = render(v, QTYPES[qtype], edns, do)
    check_header(reply, wire.REFUSED)
    assert reply.rr == []
    assert reply.auth == []
    check_edns(reply, edns, do, wire.EDE_BLOCKED, "e-ref")


@pytest.mark.parametrize(
    ("policy_reference", "reference", "text"),
    [("", "", "pid"), ("policy ref", "", "policy ref"), ("policy ref", "entry ref", "entry ref")],
)
def test_ede_text_prefers_entry_then_policy_reference_then_id(
    policy_reference: str, reference: str, text: str
) -> None:
    v = make_verdict(policy_id="pid", policy_reference=policy_reference, reference=reference)
    assert v.ede_text == text
    check_edns(render(v, wire.TYPE_A, True, False), True, False, wire.EDE_CENSORED, text)


def test_render_copies_cd_and_clears_other_flags() -> None:
    v = make_verdict(Action.NXDOMAIN)
    q = parsed("x.example", flags=wire.CD | wire.AD)
    reply = dnslib.DNSRecord.parse(v.render(q))
    assert (reply.header.cd, reply.header.rd, reply.header.ad) == (1, 0, 0)


def test_render_reuses_tail_for_other_queries() -> None:
    v = make_verdict(Action.WARNING_PAGE)
    first = dnslib.DNSRecord.parse(v.render(parsed("one.example", qid=1)))
    second = dnslib.DNSRecord.parse(v.render(parsed("Two.Longer.Example", qid=2)))
    assert first.header.id == 1
    assert second.header.id == 2
    assert [str(rr.rname) for rr in second.rr] == ["Two.Longer.Example."] * 2
    assert [str(rr.rdata) for rr in second.rr] == ["192.0.2.80", "192.0.2.81"]


def test_rank_and_policy_id() -> None:
    assert make_verdict(Action.ALLOW, 9).rank > make_verdict(Action.NXDOMAIN, 0).rank
    assert make_verdict(Action.NXDOMAIN, 0).rank > make_verdict(Action.NXDOMAIN, 1).rank
    assert make_verdict(policy_id="abc").policy_id == "abc"


@pytest.mark.parametrize("action", list(Action))
def test_action_labels_round_trip(action: Action) -> None:
    assert Action.from_label(action.label) is action
