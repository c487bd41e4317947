"""Blocked names: the warning page, negative answers, flags, EDNS and Extended DNS Errors."""

from __future__ import annotations

import dns.exception
import dns.flags
import dns.name
import dns.rcode
import dns.rdatatype
import pytest
from support.procs import WARNING_IPV4, WARNING_IPV6, WARNING_TTL, Sinkhole

from blackbox.dnsclient import Where, addresses, ask, ede, make, send, v4, v6
from blackbox.standard import (
    BLOCKED,
    DROP_ACTION,
    FILTERED,
    NODATA_ACTION,
    NXDOMAIN_ACTION,
    OPERATOR_BLOCKED,
    ORDERED,
    REFUSE_ACTION,
)

pytestmark = pytest.mark.blackbox

EDE_BLOCKED, EDE_CENSORED, EDE_FILTERED = 15, 16, 17
VIAS = ["udp-v4", "tcp-v4", "udp-v6", "tcp-v6"]


@pytest.fixture(params=VIAS)
def via(request: pytest.FixtureRequest, standard: Sinkhole) -> tuple[Where, bool]:
    """(listener address, over TCP) for each transport and address family."""
    transport, family = request.param.split("-")
    return (v4(standard) if family == "v4" else v6(standard)), transport == "tcp"


def assert_soa_authority(r: dns.message.Message, qname: str) -> None:
    assert len(r.authority) == 1, r
    soa = r.authority[0]
    assert soa.rdtype == dns.rdatatype.SOA
    assert soa.name == dns.name.from_text(qname)
    assert soa.ttl == WARNING_TTL


def test_a_gets_the_warning_page(via: tuple[Where, bool]) -> None:
    where, tcp = via
    r = ask(where, BLOCKED, "A", tcp=tcp)
    assert r.rcode() == dns.rcode.NOERROR
    assert addresses(r) == [WARNING_IPV4]
    assert r.answer[0].name == dns.name.from_text(BLOCKED)
    assert r.answer[0].ttl == WARNING_TTL
    assert r.authority == []


def test_aaaa_gets_the_warning_page(via: tuple[Where, bool]) -> None:
    where, tcp = via
    r = ask(where, BLOCKED, "AAAA", tcp=tcp)
    assert r.rcode() == dns.rcode.NOERROR
    assert addresses(r) == [WARNING_IPV6]
    assert r.answer[0].rdtype == dns.rdatatype.AAAA
    assert r.answer[0].ttl == WARNING_TTL


@pytest.mark.parametrize("name", ["www.blocked.example", "a.b.c.deep.blocked.example"])
def test_names_under_a_blocked_name_are_blocked(standard: Sinkhole, name: str) -> None:
    r = ask(v4(standard), name)
    assert addresses(r) == [WARNING_IPV4]
    assert r.answer[0].name == dns.name.from_text(name)


@pytest.mark.parametrize(
    "name", ["BLOCKED.EXAMPLE", "Blocked.Example.", "bLoCkEd.eXaMpLe", "WWW.Blocked.example."]
)
def test_letter_case_and_trailing_dot_do_not_matter(standard: Sinkhole, name: str) -> None:
    r = ask(v4(standard), name)
    assert addresses(r) == [WARNING_IPV4]


def test_the_question_is_echoed_with_the_clients_letter_case(standard: Sinkhole) -> None:
    q = make("WwW.BlOcKeD.eXaMpLe", "A")
    r = send(v4(standard), q)
    assert r.question[0].name.labels == (b"WwW", b"BlOcKeD", b"eXaMpLe", b"")
    assert r.answer[0].name.labels == (b"WwW", b"BlOcKeD", b"eXaMpLe", b"")


@pytest.mark.parametrize("rdtype", ["MX", "TXT", "HTTPS", "ANY", "NS", "SOA"])
@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_other_types_get_nodata_with_soa(standard: Sinkhole, rdtype: str, tcp: bool) -> None:
    r = ask(v4(standard), BLOCKED, rdtype, tcp=tcp)
    assert r.rcode() == dns.rcode.NOERROR
    assert r.answer == []
    assert_soa_authority(r, BLOCKED)


@pytest.mark.parametrize("rd", [True, False], ids=["rd1", "rd0"])
@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_header_flags_and_id(standard: Sinkhole, rd: bool, tcp: bool) -> None:
    q = make(BLOCKED, "A", rd=rd, qid=0x4242)
    r = send(v4(standard), q, tcp=tcp)
    assert r.id == 0x4242
    assert r.flags & dns.flags.QR
    assert r.flags & dns.flags.RA
    assert not r.flags & dns.flags.AA
    assert not r.flags & dns.flags.TC
    assert bool(r.flags & dns.flags.RD) is rd


def test_no_opt_record_without_edns(standard: Sinkhole) -> None:
    r = ask(v4(standard), BLOCKED, "A")
    assert r.edns == -1
    assert tuple(r.options) == ()
    assert r.additional == []


@pytest.mark.parametrize("dnssec", [False, True], ids=["do0", "do1"])
def test_opt_record_with_edns_copies_do(standard: Sinkhole, dnssec: bool) -> None:
    r = ask(v4(standard), BLOCKED, "A", edns=True, dnssec=dnssec)
    assert r.edns == 0
    assert bool(r.ednsflags & dns.flags.DO) is dnssec
    assert addresses(r) == [WARNING_IPV4]


@pytest.mark.parametrize(
    ("name", "code", "text"),
    [
        (BLOCKED, EDE_CENSORED, "Court order 42"),
        ("www." + BLOCKED, EDE_CENSORED, "Court order 42"),
        (ORDERED, EDE_CENSORED, "Court order 43"),
        (OPERATOR_BLOCKED, EDE_BLOCKED, "operator-list"),
        (FILTERED, EDE_FILTERED, "Family filter list"),
        (NXDOMAIN_ACTION, EDE_CENSORED, "Actions order"),
    ],
)
@pytest.mark.parametrize("rdtype", ["A", "TXT"])
def test_extended_dns_error(
    standard: Sinkhole, name: str, code: int, text: str, rdtype: str
) -> None:
    r = ask(v4(standard), name, rdtype, edns=True)
    assert ede(r) == [(code, text)]


def test_action_nxdomain(standard: Sinkhole) -> None:
    for rdtype in ("A", "AAAA", "MX"):
        r = ask(v4(standard), "sub." + NXDOMAIN_ACTION, rdtype)
        assert r.rcode() == dns.rcode.NXDOMAIN
        assert r.answer == []
        assert_soa_authority(r, "sub." + NXDOMAIN_ACTION)


def test_action_nodata(standard: Sinkhole) -> None:
    for rdtype in ("A", "AAAA", "TXT"):
        r = ask(v4(standard), NODATA_ACTION, rdtype)
        assert r.rcode() == dns.rcode.NOERROR
        assert r.answer == []
        assert_soa_authority(r, NODATA_ACTION)


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_action_refuse(standard: Sinkhole, tcp: bool) -> None:
    r = ask(v4(standard), REFUSE_ACTION, "A", tcp=tcp)
    assert r.rcode() == dns.rcode.REFUSED
    assert r.answer == []


def test_action_drop_sends_nothing(standard: Sinkhole) -> None:
    with pytest.raises(dns.exception.Timeout):
        ask(v4(standard), DROP_ACTION, "A", timeout=0.5)
    # The server is still answering.
    assert addresses(ask(v4(standard), BLOCKED)) == [WARNING_IPV4]
