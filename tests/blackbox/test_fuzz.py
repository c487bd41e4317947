"""Fuzzing: thousands of random and mutated packets must not stop the server from answering.

The generator is seeded, so a failure reproduces with the same packets.
"""

from __future__ import annotations

import random
import select
import socket
import struct
import time
from collections.abc import Callable

import dns.edns
import dns.message
import dns.rcode
import pytest
from support.procs import WARNING_IPV4, FakeUpstream, Sinkhole, SinkholeFactory

from blackbox.dnsclient import addresses, ask, frame, make, unique, v4
from blackbox.standard import BLOCKED, NXDOMAIN_ACTION, POLICIES, UPSTREAM_IPV4

pytestmark = pytest.mark.blackbox

SEED = 20240229
UDP_PACKETS = 3000
TCP_CONNECTIONS = 20
TCP_MESSAGES_PER_CONNECTION = 25


def seeds() -> list[bytes]:
    """Valid queries the mutations start from."""
    out = []
    for name, rdtype, edns, dnssec in (
        (BLOCKED, "A", False, False),
        ("www." + BLOCKED, "AAAA", True, False),
        (NXDOMAIN_ACTION, "TXT", True, True),
        ("fuzz.example", "A", True, False),
        ("nx-fuzz.example", "MX", False, False),
        ("Big-Fuzz.Example", "A", True, False),
    ):
        q = make(name, rdtype, edns=edns, dnssec=dnssec)
        if edns:
            q.use_edns(0, q.ednsflags, 1232, options=[dns.edns.GenericOption(10, b"12345678")])
        out.append(q.to_wire())
    return out


def mutate(rng: random.Random, base: bytes) -> bytes:
    data = bytearray(base)
    if len(data) < 12:  # an earlier truncation: grow a header back first
        data += rng.randbytes(12 - len(data))
    kind = rng.randrange(8)
    if kind == 0:  # flip a few bits
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(data))
            data[i] ^= 1 << rng.randrange(8)
    elif kind == 1:  # truncate
        del data[rng.randrange(len(data)) :]
    elif kind == 2:  # random section counts
        struct.pack_into(
            "!HHHH", data, 4, *(rng.choice((0, 1, 2, 3, 255, 65535)) for _ in range(4))
        )
    elif kind == 3:  # overwrite a byte with an interesting value
        data[rng.randrange(len(data))] = rng.choice((0, 0x3F, 0x40, 0x80, 0xC0, 0xFF))
    elif kind == 4:  # append junk
        data += rng.randbytes(rng.randint(1, 64))
    elif kind == 5:  # random flags (QR kept clear half the time)
        flags = rng.getrandbits(16)
        if rng.random() < 0.5:
            flags &= 0x7FFF
        struct.pack_into("!H", data, 2, flags)
    elif kind == 6:  # splice a random slice into a random place
        i, j = sorted(rng.randrange(len(data) + 1) for _ in range(2))
        k = rng.randrange(len(data) + 1)
        data[k:k] = data[i:j]
    else:  # a compression pointer somewhere after the header
        k = rng.randrange(12, len(data)) if len(data) > 12 else 12
        data[k : k + 2] = bytes((0xC0 | rng.randrange(64), rng.randrange(256)))
    return bytes(data)


def packets(rng: random.Random, count: int) -> list[bytes]:
    base = seeds()
    out = []
    for _ in range(count):
        roll = rng.random()
        if roll < 0.1:
            out.append(rng.randbytes(rng.randint(0, 600)))
        elif roll < 0.15:
            out.append(rng.randbytes(12) + rng.choice(base)[12:])
        else:
            data = rng.choice(base)
            for _ in range(rng.choice((1, 1, 1, 2, 3))):
                data = mutate(rng, data) or data
            out.append(data)
    return out


def check_answer(data: bytes, problems: list[str], sent: bytes) -> None:
    """Anything the server sends must be a well-formed DNS response."""
    if len(data) < 12 or not data[2] & 0x80:
        problems.append(f"not a response: {data[:40].hex()} to {sent[:40].hex()}")
        return
    try:
        dns.message.from_wire(data)
    except Exception as exc:
        problems.append(f"unparsable answer ({exc}): {data[:60].hex()} to {sent[:60].hex()}")


def drain(sock: socket.socket, wait: float, on_data: Callable[[bytes], None]) -> None:
    deadline = time.monotonic() + wait
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        ready, _, _ = select.select([sock], [], [], left)
        if not ready:
            return
        on_data(sock.recv(65535))


def exchange_tcp(server: Sinkhole, streams: list[bytes], timeout: float) -> list[bytes]:
    """Send each stream on its own connection, half-close, and read until each is closed."""
    conns = [socket.create_connection((server.host, server.port), timeout=2.0) for _ in streams]
    received = {conn: b"" for conn in conns}
    try:
        for conn, stream in zip(conns, streams, strict=True):
            try:
                conn.sendall(stream)
                conn.shutdown(socket.SHUT_WR)
            except (ConnectionResetError, BrokenPipeError):
                pass
        open_conns = set(conns)
        deadline = time.monotonic() + timeout
        while open_conns and time.monotonic() < deadline:
            ready, _, _ = select.select(list(open_conns), [], [], deadline - time.monotonic())
            for conn in ready:
                try:
                    chunk = conn.recv(65535)
                except ConnectionResetError:
                    chunk = b""
                if chunk:
                    received[conn] += chunk
                else:
                    open_conns.discard(conn)
    finally:
        for conn in conns:
            conn.close()
    return [received[conn] for conn in conns]


def test_fuzzed_packets_do_not_break_the_server(
    sinkhole_factory: SinkholeFactory, fake_upstream: FakeUpstream
) -> None:
    server: Sinkhole = sinkhole_factory(POLICIES, tcp_idle_timeout=0.5, query_log="off")
    rng = random.Random(SEED)
    problems: list[str] = []
    by_id: dict[bytes, bytes] = {}

    def on_data(data: bytes) -> None:
        check_answer(data, problems, by_id.get(data[:2], b""))

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for i, packet in enumerate(packets(rng, UDP_PACKETS)):
            by_id[packet[:2]] = packet
            sock.sendto(packet, v4(server))
            if i % 50 == 49:
                drain(sock, 0.005, on_data)
        drain(sock, 0.3, on_data)
    assert server.alive, (
        f"the server died during the UDP fuzz (seed {SEED})\n{server.diagnostics()}"
    )

    # TCP: all connections at once, each a stream of framed packets then a half-close.
    streams = []
    for _ in range(TCP_CONNECTIONS):
        stream = b"".join(frame(p) for p in packets(rng, TCP_MESSAGES_PER_CONNECTION))
        if rng.random() < 0.3:
            stream += rng.randbytes(rng.randint(1, 40))  # a torn or nonsense frame at the end
        streams.append(stream)
    for received in exchange_tcp(server, streams, timeout=5.0):
        pos = 0
        while pos + 2 <= len(received):
            (size,) = struct.unpack_from("!H", received, pos)
            if pos + 2 + size <= len(received):
                check_answer(received[pos + 2 : pos + 2 + size], problems, b"")
            pos += 2 + size
    assert server.alive, (
        f"the server died during the TCP fuzz (seed {SEED})\n{server.diagnostics()}"
    )
    first = "\n".join(problems[:5])
    assert not problems, f"seed {SEED}: {len(problems)} bad answers, first:\n{first}"

    # Normal service continues on both transports.
    assert addresses(ask(v4(server), BLOCKED)) == [WARNING_IPV4]
    assert addresses(ask(v4(server), BLOCKED, tcp=True)) == [WARNING_IPV4]
    name = unique()
    r = ask(v4(server), name)
    assert r.rcode() == dns.rcode.NOERROR
    assert addresses(r) == [UPSTREAM_IPV4]
    assert fake_upstream.count(name, "A") == 1
    assert addresses(ask(v4(server), unique(), tcp=True)) == [UPSTREAM_IPV4]
