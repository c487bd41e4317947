"""allow_clients: a client outside the allowed networks is refused and nothing is forwarded."""

from __future__ import annotations

import dns.rcode
import pytest
from support.procs import FakeUpstream, SinkholeFactory

from blackbox.dnsclient import ask, make, send, unique, v4
from blackbox.standard import BLOCKED, POLICIES

pytestmark = pytest.mark.blackbox


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_a_client_outside_allow_clients_is_refused(
    sinkhole_factory: SinkholeFactory, fake_upstream: FakeUpstream, tcp: bool
) -> None:
    server = sinkhole_factory(POLICIES, allow_clients=["10.0.0.0/8"])
    forwarded = unique()
    for name in (forwarded, BLOCKED, unique("nx")):
        q = make(name, "A", qid=0x0BAD)
        r = send(v4(server), q, tcp=tcp)
        assert r.id == 0x0BAD
        assert r.rcode() == dns.rcode.REFUSED
        assert r.answer == []
    assert ask(v4(server), forwarded, "AAAA", edns=True, tcp=tcp).rcode() == dns.rcode.REFUSED
    assert fake_upstream.count(forwarded) == 0


def test_a_client_inside_allow_clients_is_served(
    sinkhole_factory: SinkholeFactory, fake_upstream: FakeUpstream
) -> None:
    server = sinkhole_factory(POLICIES, allow_clients=["10.0.0.0/8", "127.0.0.0/30"])
    name = unique()
    assert ask(v4(server), name).rcode() == dns.rcode.NOERROR
    assert fake_upstream.count(name) == 1
