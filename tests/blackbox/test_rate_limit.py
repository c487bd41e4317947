"""Response rate limiting of UDP answers per client network, and the cap on questions
waiting for an upstream."""

from __future__ import annotations

import re
import socket
import time
import urllib.request

import dns.flags
import dns.message
import dns.rcode
import pytest
from support.procs import WARNING_IPV4, Sinkhole, SinkholeFactory, free_port

from blackbox.dnsclient import addresses, ask, ede, make, unique, v4
from blackbox.standard import BLOCKED, POLICIES

pytestmark = pytest.mark.blackbox

RATE = 20  # answers a second per client network in these tests
BURST = 300  # queries sent at once from one address


def metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3.0) as response:
        text = response.read().decode()
    found = re.search(re.escape(name) + r" ([0-9.e+]+)$", text, re.MULTILINE)
    assert found, f"no sample {name}"
    return float(found.group(1))


def burst(server: Sinkhole, source: str, count: int = BURST) -> list[dns.message.Message]:
    """``count`` queries from ``source`` sent without waiting; every reply that came back."""
    queries = [make(BLOCKED, "A", qid=i).to_wire() for i in range(count)]
    replies = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.bind((source, 0))
        sock.settimeout(0.5)
        for i, query in enumerate(queries):
            sock.sendto(query, v4(server))
            if i % 50 == 49:
                time.sleep(0.002)  # the server's socket buffer is not what is measured
        while True:
            try:
                replies.append(dns.message.from_wire(sock.recv(4096)))
            except TimeoutError:
                return replies


@pytest.mark.parametrize("batch", [True, False], ids=["batched", "one-by-one"])
def test_a_burst_from_one_network_is_limited_and_slips_truncated_answers(
    sinkhole_factory: SinkholeFactory, batch: bool
) -> None:
    port = free_port()
    server = sinkhole_factory(
        POLICIES,
        udp_batch=batch,
        query_log="off",
        metrics=f"127.0.0.1:{port}",
        rate_limit={"responses_per_second": RATE, "slip": 2, "exempt": ["127.0.0.2/32"]},
    )
    started = time.monotonic()
    replies = burst(server, "127.0.0.1")
    elapsed = time.monotonic() - started
    full = [r for r in replies if not r.flags & dns.flags.TC]
    truncated = [r for r in replies if r.flags & dns.flags.TC]
    limited = BURST - len(full)
    print(f"{len(full)} answered, {len(truncated)} truncated, {limited - len(truncated)} dropped")
    assert all(addresses(r) == [WARNING_IPV4] for r in full)
    assert len(full) <= RATE + RATE * elapsed + 1, "more answers than the rate allows"
    assert len(full) >= RATE, "the burst allowance was not answered"
    assert all(r.answer == [] and r.question for r in truncated)
    assert abs(len(truncated) - limited / 2) <= 2, "not every second limited answer slipped"
    assert metric(port, "sinkhole_rate_limited_truncated_total") == len(truncated)
    assert metric(port, "sinkhole_rate_limited_dropped_total") == limited - len(truncated)

    # An exempt address is not limited at all; another network has its own allowance.
    exempt = burst(server, "127.0.0.2")
    assert len(exempt) == BURST and not any(r.flags & dns.flags.TC for r in exempt)
    other = burst(server, "127.0.1.1", RATE)
    assert len(other) == RATE and not any(r.flags & dns.flags.TC for r in other)


def test_refused_answers_to_clients_not_allowed_are_limited(
    sinkhole_factory: SinkholeFactory,
) -> None:
    server = sinkhole_factory(
        POLICIES,
        allow_clients=["10.0.0.0/8"],
        query_log="off",
        rate_limit={"responses_per_second": RATE, "slip": 0, "exempt": []},
    )
    replies = burst(server, "127.0.0.1")
    assert all(r.rcode() == dns.rcode.REFUSED for r in replies)
    assert RATE <= len(replies) <= 2 * RATE, f"{len(replies)} REFUSED answers to one burst"


def test_rate_limiting_is_off_for_loopback_by_default(sinkhole_factory: SinkholeFactory) -> None:
    server = sinkhole_factory(POLICIES, query_log="off")
    replies = burst(server, "127.0.0.1", 2000)
    assert len(replies) == 2000 and not any(r.flags & dns.flags.TC for r in replies)


def test_past_max_inflight_a_miss_gets_servfail_at_once(
    sinkhole_factory: SinkholeFactory,
) -> None:
    port = free_port()
    server = sinkhole_factory(
        POLICIES, max_inflight=2, query_timeout=3.0, metrics=f"127.0.0.1:{port}"
    )
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for i in range(2):  # two questions the upstream never answers
            sock.sendto(make(unique("silent"), "A", qid=i).to_wire(), v4(server))
        time.sleep(0.2)
        started = time.monotonic()
        r = ask(v4(server), unique(), edns=True, timeout=2.0)
        took = time.monotonic() - started
    assert r.rcode() == dns.rcode.SERVFAIL
    assert took < 1.0, f"SERVFAIL after {took:.2f} s: the miss waited for an upstream"
    assert ede(r) and ede(r)[0][0] == 0
    assert metric(port, "sinkhole_upstream_inflight_limited_total") == 1
    # Blocked names need no upstream: still answered.
    assert addresses(ask(v4(server), BLOCKED)) == [WARNING_IPV4]
