"""The pure parts of `sinkhole verify`: queries and answers as bytes, the judgement of one
answer, the names asked under a site, and when a run counts as not checked."""

from __future__ import annotations

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import dns.rrset
import pytest

from resolver.core.verdict import Action
from resolver.tools.dnsanswer import Outcome, build_query, parse_answer, question
from resolver.tools.verify_judge import (
    ERROR,
    OK,
    VIOLATION,
    Blocked,
    Exempt,
    Judgement,
    Listed,
    Mandate,
    NotBlocked,
    Signature,
    parse_expect,
)
from resolver.tools.verify_plan import Plan, Probe, under_names
from resolver.tools.verify_report import COMPLIANT, NOT_COMPLIANT, UNCHECKED, ServerReport

NAME = "www.example.org"
WARNING = Mandate(
    Action.WARNING_PAGE, "court", ("192.0.2.80",), ("2001:db8::80",), "", 16, "Order 1"
)
NXDOMAIN = Mandate(Action.NXDOMAIN, "isp", ("192.0.2.80",), (), "", 17, "isp list")


def answer(
    rcode: int = dns.rcode.NOERROR,
    records: tuple[str, ...] = (),
    ede: tuple[int, str] | None = None,
    tc: bool = False,
) -> Outcome:
    """An outcome holding a response built by dnspython, read back by dnsanswer."""
    query = dns.message.make_query(NAME, "A", use_edns=0)
    response = dns.message.make_response(query)
    response.set_rcode(rcode)
    for record in records:
        rtype, data = record.split(" ", 1)
        response.answer.append(dns.rrset.from_text(NAME + ".", 60, "IN", rtype, data))
    if ede is not None:
        response.use_edns(0, options=[dns.edns.EDEOption(ede[0], ede[1])])
    if tc:
        response.flags |= dns.flags.TC
    return Outcome(parse_answer(response.to_wire()))


def test_queries_are_what_dnspython_reads() -> None:
    data = build_query(question("WWW.Example.ORG.", 28), 0xBEEF)
    message = dns.message.from_wire(data)
    assert message.id == 0xBEEF
    assert message.flags & dns.flags.RD
    assert str(message.question[0]) == "www.example.org. IN AAAA"
    assert message.edns == 0 and message.payload == 1232


def test_answers_are_read_with_their_edes_and_ttls() -> None:
    found = answer(records=("A 192.0.2.80", "CNAME target.example."), ede=(16, "Order 1"))
    assert found.answer is not None
    assert found.answer.addresses(1) == {"192.0.2.80"}
    assert found.answer.targets() == ("target.example",)
    assert found.answer.ede == ((16, "Order 1"),)
    assert found.answer.ttl == 60
    assert found.describe() == ("NOERROR A 192.0.2.80, CNAME target.example. (EDE 16: Order 1)")
    assert answer(dns.rcode.NXDOMAIN, tc=True).describe() == "NXDOMAIN TC=1 no answer"


def test_blocked_names_get_the_mandated_answer() -> None:
    blocked = Blocked(WARNING)
    ok = blocked.judge("A", "udp", answer(records=("A 192.0.2.80",), ede=(16, "Order 1")))
    assert (ok.status, ok.how) == (OK, "as mandated: the warning page")
    wrong = blocked.judge("AAAA", "tcp", answer(records=("AAAA 2001:db8::7",)))
    assert (wrong.status, wrong.how) == (VIOLATION, "not the warning page")
    assert blocked.expected("AAAA", "udp") == "NOERROR AAAA 2001:db8::80"

    rcode_only = Blocked(NXDOMAIN)
    labelled = rcode_only.judge("A", "udp", answer(dns.rcode.NXDOMAIN, ede=(17, "isp list")))
    assert labelled.how == "as mandated: NXDOMAIN, with EDE 17 (Filtered) 'isp list'"
    bare = rcode_only.judge("A", "udp", answer(dns.rcode.NXDOMAIN))
    assert bare.status == OK
    assert "without the policy's EDE (a name that does not exist gets the same)" in bare.how


def test_unanswered_checks_are_errors_not_violations() -> None:
    blocked = Blocked(WARNING)
    assert blocked.judge("A", "udp", Outcome(timeout=True)).status == ERROR
    assert blocked.judge("A", "tcp", Outcome(error="connection refused")).status == ERROR
    refused = blocked.judge("A", "udp", answer(dns.rcode.REFUSED))
    assert refused.status == ERROR and "does the server serve us?" in refused.how
    # REFUSED is the answer of a refuse action, and a labelled REFUSED a block of the wrong kind.
    assert (
        Blocked(Mandate(Action.REFUSE, "p")).judge("A", "udp", answer(dns.rcode.REFUSED)).status
        == OK
    )
    assert blocked.judge("A", "udp", answer(dns.rcode.REFUSED, ede=(15, "x"))).status == VIOLATION


def test_a_dropped_name_must_not_be_answered() -> None:
    dropped = Blocked(Mandate(Action.DROP, "p"))
    assert dropped.judge("A", "udp", Outcome(timeout=True)).status == OK
    assert dropped.judge("A", "udp", answer(records=("A 192.0.2.1",))).status == VIOLATION
    assert dropped.tries("udp") == 1
    # An exemption from a drop that gets no answer: nothing can be told.
    assert Exempt(dropped.mandate).judge("A", "udp", Outcome(timeout=True)).status == ERROR


def test_exemptions_are_judged_by_the_block_signature() -> None:
    exempt = Exempt(NXDOMAIN)
    upstream = exempt.judge("A", "udp", answer(dns.rcode.NXDOMAIN))
    assert upstream.status == OK
    assert upstream.how.startswith("not blocked: NXDOMAIN with no sign of the block")
    other_label = exempt.judge("A", "udp", answer(dns.rcode.NXDOMAIN, ede=(15, "upstream")))
    assert other_label.status == OK
    blocked = exempt.judge("A", "udp", answer(dns.rcode.NXDOMAIN, ede=(17, "isp list")))
    assert (blocked.status, blocked.how) == (
        VIOLATION,
        "carries the block's signature: EDE 17 (Filtered) 'isp list'",
    )
    page = Exempt(WARNING).judge("AAAA", "tcp", answer(records=("AAAA 2001:db8::80",)))
    assert (page.status, page.how) == (
        VIOLATION,
        "carries the block's signature: the block's address 2001:db8::80",
    )
    moved = Exempt(Mandate(Action.REDIRECT, "p", cname="landing.example"))
    found = moved.judge("A", "udp", answer(records=("CNAME landing.example.",)))
    assert found.how == "carries the block's signature: the block's CNAME landing.example."
    # The addresses of an rcode-only action are not part of its signature.
    assert "192.0.2.80" not in NXDOMAIN.signature.addresses


def test_allowed_names_carry_no_block_at_all() -> None:
    allowed = NotBlocked(Signature(frozenset({"192.0.2.80"}), any_block_ede=True))
    assert allowed.judge("A", "udp", answer(records=("A 198.51.100.7",))).status == OK
    assert allowed.judge("A", "udp", answer(ede=(17, "anything"))).status == VIOLATION
    assert allowed.judge("A", "udp", answer(records=("A 192.0.2.80",))).status == VIOLATION


@pytest.mark.parametrize(
    ("outcome", "status"),
    [
        (answer(dns.rcode.NXDOMAIN), OK),
        (answer(), OK),  # NODATA
        (answer(records=("A 0.0.0.0",)), OK),
        (answer(records=("A 127.0.0.1",)), OK),
        (answer(records=("A 198.51.100.7",), ede=(15, "")), OK),
        (answer(records=("A 198.51.100.7",)), VIOLATION),
        (answer(dns.rcode.SERVFAIL), VIOLATION),
        (Outcome(timeout=True), ERROR),
    ],
)
def test_any_block(outcome: Outcome, status: str) -> None:
    assert Listed().judge("A", "udp", outcome).status == status


def test_a_register_with_a_warning_page() -> None:
    listed = parse_expect(["warning-page=192.0.2.80"])
    assert listed.judge("A", "udp", answer(records=("A 192.0.2.80",))).status == OK
    assert listed.judge("A", "udp", answer(records=("A 192.0.2.81",))).status == VIOLATION
    # No IPv6 page given: AAAA must be a block of any kind.
    assert listed.expected("AAAA", "udp").startswith("a block")
    assert listed.judge("AAAA", "udp", answer()).status == OK


def test_a_register_enforced_without_edes() -> None:
    """An RPZ resolver: the warning page, NXDOMAIN and NODATA with no EDE, AA set, no SOA.
    With the page's addresses given, any-block takes the bare page for the block it is."""
    page = answer(records=("A 192.0.2.80",))
    assert Listed().judge("A", "udp", page).how == "resolved: not blocked"  # cannot tell
    known = parse_expect(["any-block", "warning-page=192.0.2.80,2001:db8::80"])
    judged = known.judge("A", "udp", page)
    assert (judged.status, judged.how) == (OK, "blocked: the warning page, no block EDE")
    assert known.judge("A", "udp", answer(records=("A 198.51.100.7",))).status == VIOLATION
    assert known.judge("AAAA", "udp", answer(dns.rcode.NXDOMAIN)).status == OK
    assert "or the warning page 192.0.2.80" in known.expected("A", "udp")


@pytest.mark.parametrize(
    ("outcome", "how"),
    [
        (answer(), "NODATA, as expected, no block EDE"),
        (answer(ede=(15, "rpz")), "NODATA, as expected, with EDE 15 (Blocked) 'rpz'"),
        (answer(dns.rcode.NXDOMAIN), "not NODATA"),
        (answer(records=("CNAME elsewhere.example.",)), "not NODATA"),
        (answer(records=("A 192.0.2.80",)), "not NODATA"),
    ],
)
def test_a_register_enforced_with_nodata(outcome: Outcome, how: str) -> None:
    nodata = parse_expect(["nodata"])
    assert nodata.expected("A", "udp") == "NODATA (NOERROR, no answer)"
    assert nodata.judge("A", "udp", outcome).how == how


def test_any_one_of_several_answers() -> None:
    either = parse_expect(["warning-page=192.0.2.80", "nxdomain"])
    assert either.expected("A", "tcp") == "NOERROR A 192.0.2.80 or NXDOMAIN"
    assert either.judge("A", "udp", answer(records=("A 192.0.2.80",))).status == OK
    assert either.judge("A", "udp", answer(dns.rcode.NXDOMAIN)).status == OK
    wrong = either.judge("A", "udp", answer())
    assert (wrong.status, wrong.how) == (VIOLATION, "not the expected warning page or NXDOMAIN")
    # No IPv6 page: AAAA may be any block.
    assert either.judge("AAAA", "udp", answer()).status == OK


def test_parse_expect() -> None:
    assert parse_expect([]) == Listed(("any-block",))
    assert parse_expect(["nxdomain"]) == Listed(("nxdomain",))
    assert parse_expect(["nodata", "nxdomain", "nodata"]).expect == ("nodata", "nxdomain")
    both = parse_expect(["warning-page=192.0.2.80,2001:db8::80", "warning-page=192.0.2.81"])
    assert (both.ipv4, both.ipv6) == (("192.0.2.80", "192.0.2.81"), ("2001:db8::80",))
    assert both.expect == ("warning-page",)
    for bad, message in (
        (["warning-page"], "needs an address"),
        (["warning-page=host.example"], "not an IP address"),
        (["nxdomain=1"], "takes no value"),
        (["nodata=1"], "takes no value"),
        (["blocked"], "expected warning-page=ADDRESS, nxdomain, nodata or any-block"),
    ):
        with pytest.raises(ValueError, match=message):
            parse_expect(bad)


def test_names_under_a_site_are_the_same_every_run() -> None:
    first = under_names("casino.example", 0)
    assert first == under_names("casino.example", 0)
    assert first[0] == "www.casino.example"
    assert first[1] != under_names("casino.example", 1)[1]
    label = first[1].split(".", 1)[0]
    assert label.startswith("vp") and label.isalnum() and len(label) <= 63
    long = ".".join(["a" * 62] * 3 + ["b" * 61])  # 250 octets: no room for a label more
    assert under_names(long, 0) == []


def _report(outcomes: list[str], max_unanswered: float = 10.0) -> ServerReport:
    probe = Probe("x.example", "x.example", "p", Blocked(WARNING))
    report = ServerReport("127.0.0.1:53", Plan("127.0.0.1"), len(outcomes), max_unanswered)
    for status in outcomes:
        outcome = Outcome(timeout=True)
        report.record(probe, "A", "udp", outcome, Judgement(status, status))
    return report


def test_when_a_server_counts_as_not_checked() -> None:
    assert _report([OK] * 9 + [ERROR]).result == COMPLIANT  # 10%: within
    assert _report([OK] * 8 + [ERROR] * 2).result == UNCHECKED  # 20%
    assert _report([OK] * 9 + [ERROR], max_unanswered=5).result == UNCHECKED
    assert _report([OK] * 8 + [ERROR] + [VIOLATION]).result == NOT_COMPLIANT
    given_up = _report([ERROR] * 20)
    assert given_up.given_up.startswith("the first 20 checks all failed")
    assert given_up.result == UNCHECKED
    assert not _report([ERROR] * 19 + [OK]).given_up
    assert _report([]).result == UNCHECKED


def test_a_redirect_is_judged_by_what_a_client_gets() -> None:
    redirect = Blocked(Mandate(Action.REDIRECT, "p", cname="warning.example"))
    followed = redirect.judge("A", "udp", answer(records=("CNAME warning.example.", "A 192.0.2.1")))
    assert followed.status == OK
    bare = redirect.judge("A", "udp", answer(records=("CNAME warning.example.",)))
    assert bare.status == VIOLATION
    assert "bare CNAME warning.example." in bare.how
