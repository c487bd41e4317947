"""Encrypted upstream entries: tls:// and https:// as written, the name checked, the
defaults, and what is refused with what reason."""

from __future__ import annotations

import pytest

from resolver.core.upstream_spec import SecureUpstream, is_secure, parse_secure


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tls://192.0.2.53", SecureUpstream("tls", "192.0.2.53", 853)),
        (
            "tls://192.0.2.53:8853#DNS.Example.",
            SecureUpstream("tls", "192.0.2.53", 8853, "dns.example"),
        ),
        (
            "TLS://[2001:DB8::53]#dns.example",
            SecureUpstream("tls", "2001:db8::53", 853, "dns.example"),
        ),
        ("tls://dns.example/", SecureUpstream("tls", "dns.example", 853)),
        (
            "https://dns.example/dns-query",
            SecureUpstream("https", "dns.example", 443, "", "/dns-query"),
        ),
        ("https://dns.example", SecureUpstream("https", "dns.example", 443, "", "/dns-query")),
        (
            "https://192.0.2.53:8443/q?x=1#dns.example",
            SecureUpstream("https", "192.0.2.53", 8443, "dns.example", "/q?x=1"),
        ),
        (
            "https://[::1]/dns-query",
            SecureUpstream("https", "::1", 443, "", "/dns-query"),
        ),
    ],
)
def test_accepted_forms(text: str, expected: SecureUpstream) -> None:
    assert is_secure(text)
    assert parse_secure(text) == expected


def test_the_name_checked_and_the_label() -> None:
    by_address = parse_secure("tls://192.0.2.53#dns.example")
    assert by_address.check_name == "dns.example"
    assert str(by_address) == "tls://192.0.2.53:853#dns.example"
    assert parse_secure("tls://192.0.2.53").check_name == "192.0.2.53"  # the address itself
    by_name = parse_secure("https://dns.example/dns-query")
    assert by_name.check_name == "dns.example"
    assert by_name.url == "https://dns.example:443/dns-query"
    assert str(parse_secure("https://[2001:db8::1]:8443/q")) == "https://[2001:db8::1]:8443/q"
    assert parse_secure("tls://192.0.2.53", "/etc/ca.pem").ca_file == "/etc/ca.pem"
    assert not is_secure("192.0.2.53:53")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("quic://192.0.2.53", "quic:// is not a transport sinkhole forwards over"),
        ("udp://192.0.2.53", "udp:// is not a transport"),
        ("tls://", "the host is missing"),
        ("tls://192.0.2.53:0", "port 0 out of range"),
        ("tls://192.0.2.53:70000", "out of range"),
        ("tls://192.0.2.53:dot", "port could not be cast"),
        ("tls://user@192.0.2.53", "a user name or password"),
        ("tls://192.0.2.53/dns-query", "DNS over TLS has no path"),
        ("tls://bad_host!/", "neither an IP address nor a host name"),
        ("tls://192.0.2.53#192.0.2.53", "give a host name"),
        ("tls://192.0.2.53#not a name", "is not the name to check"),
        ("https://dns.example/dns-query{?dns}", "without its template"),
        ("https://[2001:db8::1/dns-query", "invalid ipv6 url"),
    ],
)
def test_refused_with_a_reason(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=None) as info:
        parse_secure(text)
    assert reason in str(info.value), str(info.value)
