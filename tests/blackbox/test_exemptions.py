"""Exemptions: an `allow:` entry under a blocked name is forwarded, the rest stays blocked."""

from __future__ import annotations

import dns.rcode
import pytest
from support.procs import WARNING_IPV4, FakeUpstream, Sinkhole

from blackbox.dnsclient import addresses, ask, unique, v4
from blackbox.standard import BLOCKED, EXEMPT, UPSTREAM_IPV4

pytestmark = pytest.mark.blackbox


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_a_name_under_an_exemption_is_forwarded(
    standard: Sinkhole, fake_upstream: FakeUpstream, tcp: bool
) -> None:
    name = unique("fwd", EXEMPT)
    r = ask(v4(standard), name, tcp=tcp)
    assert r.rcode() == dns.rcode.NOERROR
    assert addresses(r) == [UPSTREAM_IPV4]
    assert fake_upstream.count(name, "A") == 1


def test_the_exempt_name_itself_is_forwarded(
    standard: Sinkhole, fake_upstream: FakeUpstream
) -> None:
    r = ask(v4(standard), EXEMPT, "TXT", edns=True)
    assert r.rcode() == dns.rcode.NOERROR
    assert r.answer == []
    # The fake upstream answers TXT with NODATA and its own SOA (owner "example."); a
    # blocking answer would carry an SOA owned by the question name.
    assert fake_upstream.count(EXEMPT, "TXT") == 1
    assert r.authority[0].name.to_text() == "example."


def test_siblings_of_the_exemption_stay_blocked(
    standard: Sinkhole, fake_upstream: FakeUpstream
) -> None:
    name = unique("fwd", BLOCKED)
    r = ask(v4(standard), name)
    assert addresses(r) == [WARNING_IPV4]
    assert fake_upstream.count(name) == 0
    assert addresses(ask(v4(standard), BLOCKED)) == [WARNING_IPV4]
