"""The batched UDP listener (udp_batch: true) in the real server: answers over IPv4 and
IPv6, bursts sent without waiting, and batches that mix every kind of datagram."""

from __future__ import annotations

import socket
import struct
import time

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest
from support.procs import WARNING_IPV4, WARNING_IPV6, FakeUpstream, Sinkhole, SinkholeFactory

from blackbox.dnsclient import Where, addresses, ask, unique, v4, v6
from blackbox.standard import BLOCKED, DROP_ACTION, POLICIES

pytestmark = pytest.mark.blackbox

UPSTREAM_A = "198.51.100.7"
UPSTREAM_AAAA = "2001:db8::7"
BURST = 5000
QR, RD = 0x8000, 0x0100


@pytest.fixture(scope="module")
def server(session_sinkhole_factory: SinkholeFactory) -> Sinkhole:
    return session_sinkhole_factory(POLICIES, ipv6=True, udp_batch=True, query_log="off")


def test_the_server_says_it_batches(server: Sinkhole) -> None:
    assert server.started["udp_batch"] is True


@pytest.mark.parametrize("family", ["v4", "v6"])
def test_blocked_names_are_answered(server: Sinkhole, family: str) -> None:
    where = v4(server) if family == "v4" else v6(server)
    a = ask(where, BLOCKED, "A")
    assert a.rcode() == dns.rcode.NOERROR and addresses(a) == [WARNING_IPV4]
    aaaa = ask(where, "deep.sub." + BLOCKED, "AAAA")
    assert aaaa.rcode() == dns.rcode.NOERROR and addresses(aaaa) == [WARNING_IPV6]


@pytest.mark.parametrize("family", ["v4", "v6"])
def test_forwarded_names_are_answered(
    server: Sinkhole, fake_upstream: FakeUpstream, family: str
) -> None:
    where = v4(server) if family == "v4" else v6(server)
    name = unique()
    a = ask(where, name, "A")
    assert a.rcode() == dns.rcode.NOERROR and addresses(a) == [UPSTREAM_A]
    assert ask(where, name, "A").rcode() == dns.rcode.NOERROR  # now from the cache
    assert addresses(ask(where, name, "AAAA")) == [UPSTREAM_AAAA]
    assert fake_upstream.count(name, "A") == 1


def header(qid: int, flags: int, qd: int = 1) -> bytes:
    return struct.pack("!HHHHHH", qid, flags, qd, 0, 0, 0)


def query(qid: int, name: str, rdtype: str = "A") -> bytes:
    return dns.message.make_query(name, rdtype, id=qid).to_wire()


def exchange(
    where: Where, packets: list[bytes], expected: int, sockets: int = 1, timeout: float = 15.0
) -> dict[tuple[int, int], bytes]:
    """Send every packet without waiting for answers (round robin over ``sockets`` client
    sockets), reading answers as they come; returns {(socket index, ID): answer} once
    ``expected`` answers are in or the time is up."""
    family = socket.AF_INET6 if ":" in where[0] else socket.AF_INET
    clients = [socket.socket(family, socket.SOCK_DGRAM) for _ in range(sockets)]
    got: dict[tuple[int, int], bytes] = {}

    def drain() -> None:
        for index, sock in enumerate(clients):
            while True:
                try:
                    data = sock.recv(65535)
                except BlockingIOError:
                    break
                got[(index, struct.unpack_from("!H", data)[0])] = data

    try:
        for sock in clients:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            sock.setblocking(False)
        for n, data in enumerate(packets):
            clients[n % sockets].sendto(data, where)
            if n % 64 == 63:
                drain()
        deadline = time.monotonic() + timeout
        while len(got) < expected and time.monotonic() < deadline:
            drain()
            time.sleep(0.005)
        time.sleep(0.2)  # anything unexpected (an extra answer) would arrive by now
        drain()
    finally:
        for sock in clients:
            sock.close()
    return got


@pytest.mark.parametrize("family", ["v4", "v6"])
def test_a_burst_sent_without_waiting_is_fully_answered(server: Sinkhole, family: str) -> None:
    where = v4(server) if family == "v4" else v6(server)
    sockets = 4
    names = {}
    packets = []
    for n in range(BURST):
        qid = n // sockets
        names[(n % sockets, qid)] = f"h{n % 700}.{BLOCKED}"
        packets.append(query(qid, names[(n % sockets, qid)]))
    got = exchange(where, packets, BURST, sockets)
    missing = sorted(set(names) - set(got))
    assert not missing, f"{len(missing)} of {BURST} queries got no answer, first {missing[:5]}"
    for key, data in got.items():
        reply = dns.message.from_wire(data)
        assert reply.question[0].name.to_text() == names[key] + "."
        assert addresses(reply) == [WARNING_IPV4]


def test_a_batch_of_every_kind_of_datagram(server: Sinkhole, fake_upstream: FakeUpstream) -> None:
    """Blocked, forwarded, malformed, dropped and response packets from three clients sent
    together: each gets what it would get alone, at the client that asked; the silent
    ones get nothing."""
    sockets = 3
    forwarded = [unique() for _ in range(20)]
    expect: dict[tuple[int, int], str] = {}
    packets = []
    for i in range(400):
        qid, where = 1000 + i, (i % sockets, 1000 + i)
        kind = i % 5
        if kind == 0:
            packets.append(query(qid, f"x{i}.{BLOCKED}"))
            expect[where] = "blocked"
        elif kind == 1:
            packets.append(header(qid, RD) + b"\x07blocked")  # the question is cut short
            expect[where] = "formerr"
        elif kind == 2:
            packets.append(query(qid, forwarded[i // 20], "A"))
            expect[where] = "forwarded"
        elif kind == 3:
            packets.append(header(qid, QR | RD) + query(qid, BLOCKED)[12:])  # a response
        else:
            packets.append(query(qid, f"x{i}.{DROP_ACTION}"))  # the policy drops it
    got = exchange(v4(server), packets, len(expect), sockets)
    assert set(got) == set(expect)
    for key, data in got.items():
        if expect[key] == "formerr":
            assert struct.unpack_from("!H", data, 2)[0] & 0x800F == 0x8000 | dns.rcode.FORMERR
            continue
        reply = dns.message.from_wire(data)
        assert reply.rcode() == dns.rcode.NOERROR
        wanted = WARNING_IPV4 if expect[key] == "blocked" else UPSTREAM_A
        assert addresses(reply) == [wanted]
    assert all(fake_upstream.count(name, "A") == 1 for name in forwarded)


@pytest.mark.parametrize("family", ["v4", "v6"])
def test_malformed_packets_get_formerr(server: Sinkhole, family: str) -> None:
    where = v4(server) if family == "v4" else v6(server)
    bodies = [b"\x3fabc", b"\xff\xff\xff", b"\x07blocked\x07example\x00\x00"]
    packets = [header(0x2000 + i, RD) + body for i, body in enumerate(bodies)]
    packets.append(header(0x2100, RD, qd=0))
    got = exchange(where, packets, len(packets))
    assert sorted(qid for _, qid in got) == [0x2000, 0x2001, 0x2002, 0x2100]
    for data in got.values():
        flags = struct.unpack_from("!H", data, 2)[0]
        assert flags & QR and flags & 0x000F == dns.rcode.FORMERR


def test_switched_off_the_server_answers_as_before(sinkhole_factory: SinkholeFactory) -> None:
    server = sinkhole_factory(POLICIES, ipv6=True, udp_batch=False)
    assert server.started["udp_batch"] is False
    assert addresses(ask(v4(server), BLOCKED)) == [WARNING_IPV4]
    assert addresses(ask(v6(server), BLOCKED, "AAAA")) == [WARNING_IPV6]
    assert addresses(ask(v4(server), unique())) == [UPSTREAM_A]
    got = exchange(v4(server), [query(i, f"h{i}.{BLOCKED}") for i in range(500)], 500)
    assert len(got) == 500
    assert not dns.flags.Flag.TC & dns.message.from_wire(got[(0, 1)]).flags
    assert dns.message.from_wire(got[(0, 1)]).question[0].rdtype == dns.rdatatype.A
