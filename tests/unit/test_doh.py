"""The pure parts of DNS over HTTPS: the GET parameter and the answer's max-age."""

from __future__ import annotations

import base64

import dns.message
import dns.rrset
import pytest

from resolver.edge.doh import max_age, query_from_get


def test_the_dns_parameter_without_padding() -> None:
    wire = dns.message.make_query("example.com", "A").to_wire()
    text = base64.urlsafe_b64encode(wire).rstrip(b"=")
    assert query_from_get(b"ct=x&dns=" + text) == wire
    assert query_from_get(b"dns=" + base64.urlsafe_b64encode(wire)) == wire  # padded too


@pytest.mark.parametrize("query", [b"", b"dns=", b"other=AAAA", b"dns=%%%", b"dns=A"])
def test_no_query_in_the_parameter(query: bytes) -> None:
    assert not query_from_get(query)


def test_max_age_is_the_smallest_ttl() -> None:
    q = dns.message.make_query("example.com", "A")
    r = dns.message.make_response(q)
    r.answer.append(dns.rrset.from_text("example.com.", 300, "IN", "CNAME", "b.example."))
    r.answer.append(dns.rrset.from_text("b.example.", 40, "IN", "A", "192.0.2.1"))
    assert max_age(r.to_wire()) == 40
    assert max_age(dns.message.make_response(q).to_wire()) == 0
    assert max_age(b"\x00" * 5) == 0
