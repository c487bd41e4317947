"""Policy CNAMEs are followed: the client gets the CNAME and the target's own records."""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest
from support.procs import WARNING_IPV4, WARNING_TTL, FakeUpstream, Sinkhole, SinkholeFactory
from support.system import program

from blackbox.dnsclient import ask, ede, unique, v4
from blackbox.standard import UPSTREAM_IPV4, UPSTREAM_IPV6

pytestmark = pytest.mark.blackbox

POLICY = """\
id: redirects
authority: Test Regulator
reference: Redirect order 7
block:
  - name: safe.example
    redirect: {cname: forcesafe.search.example}
  - name: gone.example
    redirect: {cname: nx-target.example}
  - name: twice.example
    redirect: {cname: safe.example}
  - name: to-blocked.example
    redirect: {cname: blocked.target.example}
  - name: big.example
    redirect: {cname: big-target.example}
  - name: loop-a.example
    redirect: {cname: loop-b.example}
  - name: loop-b.example
    redirect: {cname: loop-a.example}
  - blocked.target.example
"""


def long_chain() -> str:
    """hop0 -> hop1 -> ... -> hop9: nine policy CNAMEs, one more than allowed."""
    hops = [
        f"  - {{name: hop{i}.example, redirect: {{cname: hop{i + 1}.example}}}}" for i in range(9)
    ]
    return "\n".join(["id: chain", "block:", *hops]) + "\n"


def records(message: dns.message.Message) -> list[tuple[str, str, str]]:
    return [
        (rrset.name.to_text(), dns.rdatatype.to_text(rrset.rdtype), rd.to_text())
        for rrset in message.answer
        for rd in rrset
    ]


@pytest.fixture(scope="module")
def server(session_sinkhole_factory: SinkholeFactory) -> Sinkhole:
    return session_sinkhole_factory({"redirects.yaml": POLICY, "chain.yaml": long_chain()})


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_the_target_is_resolved_and_its_records_follow_the_cname(
    server: Sinkhole, tcp: bool
) -> None:
    reply = ask(v4(server), "www.safe.example", tcp=tcp, edns=True)
    assert reply.rcode() == dns.rcode.NOERROR
    assert records(reply) == [
        ("www.safe.example.", "CNAME", "forcesafe.search.example."),
        ("forcesafe.search.example.", "A", UPSTREAM_IPV4),
    ]
    assert reply.answer[0].ttl == WARNING_TTL  # the policy's TTL on its own record
    assert ede(reply) == [(16, "Redirect order 7")]  # the policy that rewrote
    aaaa = ask(v4(server), "safe.example", "AAAA", tcp=tcp)
    assert records(aaaa)[-1] == ("forcesafe.search.example.", "AAAA", UPSTREAM_IPV6)


def test_the_target_comes_from_the_cache_the_second_time(
    server: Sinkhole, fake_upstream: FakeUpstream
) -> None:
    name = unique("fresh", "safe.example")
    before = fake_upstream.count("forcesafe.search.example", "MX")
    first = ask(v4(server), name, "MX")
    second = ask(v4(server), unique("again", "safe.example"), "MX")
    assert records(first)[0][1:] == records(second)[0][1:] == ("CNAME", "forcesafe.search.example.")
    assert fake_upstream.count("forcesafe.search.example", "MX") - before <= 1
    assert fake_upstream.count(name) == 0  # the blocked name itself is never forwarded


def test_a_target_that_does_not_exist_gives_nxdomain_with_the_cname(server: Sinkhole) -> None:
    reply = ask(v4(server), "gone.example")
    assert reply.rcode() == dns.rcode.NXDOMAIN
    assert records(reply) == [("gone.example.", "CNAME", "nx-target.example.")]
    assert [rrset.rdtype for rrset in reply.authority] == [dns.rdatatype.SOA]


def test_a_chain_of_policy_cnames_is_followed(server: Sinkhole) -> None:
    reply = ask(v4(server), "twice.example")
    assert records(reply) == [
        ("twice.example.", "CNAME", "safe.example."),
        ("safe.example.", "CNAME", "forcesafe.search.example."),
        ("forcesafe.search.example.", "A", UPSTREAM_IPV4),
    ]


def test_a_blocked_target_gets_its_own_policy_answer(
    server: Sinkhole, fake_upstream: FakeUpstream
) -> None:
    reply = ask(v4(server), "to-blocked.example")
    assert records(reply) == [
        ("to-blocked.example.", "CNAME", "blocked.target.example."),
        ("blocked.target.example.", "A", WARNING_IPV4),
    ]
    assert fake_upstream.count("blocked.target.example") == 0


@pytest.mark.parametrize("name", ["loop-a.example", "hop0.example"])
def test_a_loop_or_a_chain_too_long_ends_in_servfail(server: Sinkhole, name: str) -> None:
    reply = ask(v4(server), name, edns=True)
    assert reply.rcode() == dns.rcode.SERVFAIL
    assert ede(reply) == [(0, "policy CNAME chain too long or looping")]


def test_eight_policy_cnames_are_still_followed(server: Sinkhole) -> None:
    reply = ask(v4(server), "hop1.example")  # hop1 -> ... -> hop9: eight CNAMEs
    assert reply.rcode() == dns.rcode.NOERROR
    assert [r[1] for r in records(reply)] == ["CNAME"] * 8 + ["A"]


def test_an_answer_too_large_for_udp_is_truncated_and_whole_over_tcp(server: Sinkhole) -> None:
    over_udp = ask(v4(server), "big.example")
    assert over_udp.flags & dns.flags.TC
    over_tcp = ask(v4(server), "big.example", tcp=True)
    assert len(records(over_tcp)) == 41  # the CNAME and the target's 40 addresses


def test_asking_for_the_cname_itself_gets_the_cname_alone(server: Sinkhole) -> None:
    reply = ask(v4(server), "safe.example", "CNAME")
    assert records(reply) == [("safe.example.", "CNAME", "forcesafe.search.example.")]


@pytest.mark.system("unshare", "getent")
def test_a_stub_resolver_gets_the_target_address(
    sinkhole_factory: SinkholeFactory, tmp_path: Path
) -> None:
    """glibc's resolver, as a browser on the network would use it: its /etc/resolv.conf
    (in a private mount namespace) points at sinkhole on port 53 of a loopback address."""
    host = f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.{random.randint(1, 254)}"
    sinkhole_factory({"redirects.yaml": POLICY}, host=host, port=53)
    resolv = tmp_path / "resolv.conf"
    resolv.write_text(f"nameserver {host}\noptions timeout:2 attempts:1\n")
    script = (
        f"mount --bind {resolv} /etc/resolv.conf && exec {program('getent')} ahosts safe.example"
    )
    done = subprocess.run(
        [program("unshare"), "--mount", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert done.returncode == 0, done.stderr
    addresses = {line.split()[0] for line in done.stdout.splitlines()}
    assert UPSTREAM_IPV4 in addresses
