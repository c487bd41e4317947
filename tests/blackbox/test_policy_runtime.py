"""The policy language at run time: client scopes, redirects, dates and precedence,
answered by the real server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest
from support.procs import Sinkhole, SinkholeFactory, wait_until

from blackbox.dnsclient import addresses, ask, v4

pytestmark = pytest.mark.blackbox

WARNING = "192.0.2.80"
UPSTREAM = "198.51.100.7"


def ask_from(server: Sinkhole, source: str, name: str, rdtype: str = "A") -> dns.message.Message:
    """A query sent from another loopback address (the whole 127/8 is ours)."""
    q = dns.message.make_query(name, rdtype)
    return dns.query.udp(q, server.host, port=server.port, source=source, timeout=2.0)


def test_clients_limits_a_policy_to_some_client_networks(sinkhole_factory: SinkholeFactory) -> None:
    server = sinkhole_factory(
        {"school.yaml": "id: school\nclients: [127.0.0.2/32]\nblock: [games.example]\n"}
    )
    assert addresses(ask_from(server, "127.0.0.2", "games.example")) == [WARNING]
    assert addresses(ask_from(server, "127.0.0.2", "www.games.example")) == [WARNING]
    assert addresses(ask_from(server, "127.0.0.1", "games.example")) == [UPSTREAM]
    # Asked again, the first client still gets the block: no answer is shared across scopes.
    assert addresses(ask_from(server, "127.0.0.2", "games.example")) == [WARNING]
    assert addresses(ask_from(server, "127.0.0.1", "games.example")) == [UPSTREAM]


def test_except_clients_exempts_a_network(sinkhole_factory: SinkholeFactory) -> None:
    server = sinkhole_factory(
        {
            "order.yaml": "id: order\nauthority: A regulator\nexcept_clients: [127.0.0.3/32]\n"
            "block: [banned.example]\n"
        }
    )
    for _ in range(2):
        assert addresses(ask_from(server, "127.0.0.1", "banned.example")) == [WARNING]
        assert addresses(ask_from(server, "127.0.0.3", "banned.example")) == [UPSTREAM]


def test_an_entry_scope_overrides_the_policy(sinkhole_factory: SinkholeFactory) -> None:
    policy = (
        "id: p\nblock:\n  - everyone.example\n"
        "  - name: lab-only.example\n    clients: [127.0.0.4/32]\n"
    )
    server = sinkhole_factory({"p.yaml": policy})
    assert addresses(ask_from(server, "127.0.0.1", "everyone.example")) == [WARNING]
    assert addresses(ask_from(server, "127.0.0.1", "lab-only.example")) == [UPSTREAM]
    assert addresses(ask_from(server, "127.0.0.4", "lab-only.example")) == [WARNING]


def test_redirect_to_addresses_and_to_a_name(sinkhole_factory: SinkholeFactory) -> None:
    policy = (
        "id: r\naction: redirect\nredirect: {ipv4: [192.0.2.10], ipv6: ['2001:db8::10']}\n"
        "block:\n  - to-addresses.example\n"
        "  - name: to-name.example\n    redirect: {cname: walled.example}\n"
    )
    server = sinkhole_factory({"r.yaml": policy})
    assert addresses(ask(v4(server), "to-addresses.example")) == ["192.0.2.10"]
    assert addresses(ask(v4(server), "a.to-addresses.example", "AAAA")) == ["2001:db8::10"]
    answer = ask(v4(server), "to-name.example")
    cnames = [rr for rr in answer.answer if rr.rdtype == dns.rdatatype.CNAME]
    assert cnames and cnames[0][0].target.to_text() == "walled.example."


def test_a_dated_policy_switches_on_and_off_without_a_reload(
    sinkhole_factory: SinkholeFactory,
) -> None:
    start = datetime.now(UTC) + timedelta(seconds=3)
    end = start + timedelta(seconds=3)
    policy = (
        f"id: dated\neffective_from: {start.isoformat()}\nexpires: {end.isoformat()}\n"
        "block: [soon.example]\n"
    )
    server = sinkhole_factory({"d.yaml": policy})
    assert addresses(ask(v4(server), "soon.example")) == [UPSTREAM]
    on = wait_until(lambda: addresses(ask(v4(server), "soon.example")) == [WARNING], 10.0)
    assert on, "the policy did not come into force"
    assert datetime.now(UTC) >= start
    event = server.wait_event("policy_in_force", 2.0)
    assert event["policy"] == "dated"
    off = wait_until(lambda: addresses(ask(v4(server), "soon.example")) == [UPSTREAM], 10.0)
    assert off, "the policy did not expire"
    assert datetime.now(UTC) >= end
    assert server.wait_event("policy_expired", 2.0)["policy"] == "dated"
    assert not server.events("policy_reloaded")


def test_most_specific_wins_then_exemption_then_first_policy(
    sinkhole_factory: SinkholeFactory,
) -> None:
    first = "id: first\naction: nxdomain\nblock: [a.example, same.example]\n"
    second = "id: second\nblock: [x.a.example, same.example]\nallow: [ok.a.example]\n"
    server = sinkhole_factory({"1-first.yaml": first, "2-second.yaml": second})
    assert ask(v4(server), "y.a.example").rcode() == dns.rcode.NXDOMAIN  # first, a.example
    assert addresses(ask(v4(server), "x.a.example")) == [WARNING]  # more specific: second
    assert addresses(ask(v4(server), "ok.a.example")) == [UPSTREAM]  # exemption
    assert ask(v4(server), "same.example").rcode() == dns.rcode.NXDOMAIN  # first listed wins
