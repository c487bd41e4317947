"""TCP under hostile clients: a client that never reads its answers, slow clients that
trickle a byte a second, and many connections from one address."""

from __future__ import annotations

import re
import select
import socket
import time
import urllib.request

import dns.message
import pytest
from support.procs import WARNING_IPV4, Sinkhole, SinkholeFactory, free_port, wait_until

from blackbox.dnsclient import addresses, frame, make, recv_frame
from blackbox.standard import BLOCKED, POLICIES

pytestmark = pytest.mark.blackbox

PIPELINED = 200_000  # queries one client sends without reading an answer
RSS_GROWTH_LIMIT = 4 * 1024  # KiB the server may grow by while they arrive
TRICKLERS = 600  # connections that send one byte a second
TRICKLE_SOURCES = 10  # loopback addresses they come from (127.0.0.2 ...)
QUERY_TIMEOUT = 2.0


def vmrss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for process {pid}")


def metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3.0) as response:
        text = response.read().decode()
    found = re.search(re.escape(name) + r" ([0-9.e+]+)$", text, re.MULTILINE)
    assert found, f"no sample {name}"
    return float(found.group(1))


def connect(server: Sinkhole, source: str = "127.0.0.1", timeout: float = 3.0) -> socket.socket:
    return socket.create_connection((server.host, server.port), timeout, (source, 0))


def connect_small(server: Sinkhole) -> socket.socket:
    """A connection with small socket buffers: the kernel holds little of what is not read."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
    sock.settimeout(3.0)
    sock.connect((server.host, server.port))
    return sock


def closed_by_peer(sock: socket.socket) -> bool:
    """True once the peer has closed or reset the connection (never blocks)."""
    try:
        return sock.recv(4096, socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def served(server: Sinkhole, source: str = "127.0.0.1", timeout: float = 2.0) -> bool:
    """A query over a new TCP connection from ``source`` gets its answer within ``timeout``."""
    try:
        with connect(server, source, timeout) as sock:
            sock.sendall(frame(make(BLOCKED, "A", qid=4242).to_wire()))
            reply = dns.message.from_wire(recv_frame(sock))
    except (OSError, EOFError):
        return False
    return reply.id == 4242 and addresses(reply) == [WARNING_IPV4]


def pipeline_without_reading(sock: socket.socket, data: bytes, stall: float) -> tuple[int, bool]:
    """Send ``data`` without ever reading; stop when the server takes nothing for ``stall``
    seconds. Returns (octets sent, whether the server closed the connection)."""
    sock.setblocking(False)
    sent = 0
    view = memoryview(data)
    last = time.monotonic()
    while sent < len(data):
        try:
            n = sock.send(view[sent : sent + 65536])
        except BlockingIOError:
            if time.monotonic() - last > stall:
                return sent, False
            select.select([], [sock], [], 0.1)
            continue
        except OSError:
            return sent, True
        sent += n
        last = time.monotonic()
    return sent, False


def test_a_client_that_never_reads_its_answers_cannot_grow_server_memory(
    sinkhole_factory: SinkholeFactory,
) -> None:
    port = free_port()
    server = sinkhole_factory(
        POLICIES, query_log="off", metrics=f"127.0.0.1:{port}", tcp_idle_timeout=3.0
    )
    query = frame(make(BLOCKED, "A", edns=True, qid=7).to_wire())  # replayed: answered at once
    with connect(server) as warm:  # the replay cache and the allocator settle first
        warm.sendall(query * 2000)
        for _ in range(2000):
            recv_frame(warm)
    before = vmrss_kib(server.pid)
    greedy = connect_small(server)
    try:
        sent, closed = pipeline_without_reading(greedy, query * PIPELINED, stall=2.0)
        peak = max(vmrss_kib(server.pid) for _ in range(10) if time.sleep(0.05) is None)
        growth = peak - before
        print(f"sent {sent // len(query)} of {PIPELINED} queries; closed {closed}; +{growth} KiB")
        assert growth < RSS_GROWTH_LIMIT, f"the server grew by {growth} KiB"
        assert closed or sent < len(query) * PIPELINED, "the server read every query"
        assert (
            metric(port, "sinkhole_tcp_paused_total")
            + metric(port, "sinkhole_tcp_overflowed_total")
            >= 1
        )
        assert served(server), "another client was not served meanwhile"
        # Not reading for tcp_idle_timeout: the connection is cut, its unsent answers freed.
        gone = wait_until(lambda: metric(port, "sinkhole_tcp_connections") == 0, 6.0, 0.2)
        assert gone, "the connection that never reads is still open"
    finally:
        greedy.close()


def test_trickling_connections_cannot_keep_tcp_from_others(
    sinkhole_factory: SinkholeFactory,
) -> None:
    server = sinkhole_factory(POLICIES, tcp_idle_timeout=10.0, tcp_query_timeout=QUERY_TIMEOUT)
    tricklers: list[tuple[socket.socket, float]] = []
    try:
        for i in range(TRICKLERS):
            source = f"127.0.0.{2 + i % TRICKLE_SOURCES}"
            sock = connect(server, source)
            sock.setblocking(False)
            try:
                sock.send(b"\x00")  # the first octet of a length that never completes
            except OSError:
                pass  # closed at once (over a cap): counts as closed below
            tricklers.append((sock, time.monotonic()))
        last_first_byte = tricklers[-1][1]

        started = time.monotonic()
        assert served(server, timeout=2.0), "a new client got no TCP answer within 2 s"
        print(f"a new client was answered in {time.monotonic() - started:.3f} s")

        deadline = last_first_byte + QUERY_TIMEOUT + 1.5
        next_trickle = time.monotonic() + 1.0
        while True:
            open_ones = [s for s, _ in tricklers if not closed_by_peer(s)]
            if not open_ones or time.monotonic() > deadline:
                break
            if time.monotonic() >= next_trickle:  # one more octet a second, as slowloris does
                for sock in open_ones:
                    try:
                        sock.send(b"\x20")
                    except OSError:
                        pass
                next_trickle += 1.0
            time.sleep(0.05)
        print(f"{len(open_ones)} trickling connections open after the deadline")
        assert not open_ones, f"{len(open_ones)} trickling connections outlived the deadline"
        assert served(server), "no client served after the trickling connections were closed"
    finally:
        for sock, _ in tricklers:
            sock.close()


def test_connections_from_one_address_are_capped(sinkhole_factory: SinkholeFactory) -> None:
    server = sinkhole_factory(POLICIES, tcp_idle_timeout=30.0, tcp_max_per_client=2)
    held = [connect(server), connect(server)]
    try:
        for sock in held:
            sock.sendall(frame(make(BLOCKED, "A").to_wire()))
            assert addresses(dns.message.from_wire(recv_frame(sock))) == [WARNING_IPV4]
        with connect(server) as third:
            try:
                third.sendall(frame(make(BLOCKED, "A").to_wire()))
            except OSError:
                pass
            assert wait_until(lambda: closed_by_peer(third), 2.0), (
                "a third connection from one address was kept with a cap of 2"
            )
        assert served(server, "127.0.0.2"), "another address was not served"
        for sock in held:  # the two within the cap still work
            sock.sendall(frame(make(BLOCKED, "AAAA").to_wire()))
            recv_frame(sock)
    finally:
        for sock in held:
            sock.close()
    assert wait_until(lambda: served(server), 3.0), "not served after the others closed"


def test_at_the_connection_cap_the_oldest_idle_connection_makes_room(
    sinkhole_factory: SinkholeFactory,
) -> None:
    server = sinkhole_factory(POLICIES, tcp_max_connections=2, tcp_idle_timeout=30)
    oldest, newer = connect(server), connect(server)
    try:
        for sock in (oldest, newer):
            sock.sendall(frame(make(BLOCKED, "A").to_wire()))
            assert addresses(dns.message.from_wire(recv_frame(sock))) == [WARNING_IPV4]
        newer.sendall(frame(make(BLOCKED, "AAAA").to_wire()))  # newer was active last
        recv_frame(newer)
        assert served(server), "a third connection was not served at the cap"
        assert wait_until(lambda: closed_by_peer(oldest), 2.0), "the oldest was not closed"
        newer.sendall(frame(make(BLOCKED, "A").to_wire()))
        assert addresses(dns.message.from_wire(recv_frame(newer))) == [WARNING_IPV4]
    finally:
        oldest.close()
        newer.close()


def test_a_client_that_reads_late_gets_every_answer_of_a_long_pipeline(
    sinkhole_factory: SinkholeFactory,
) -> None:
    """Back-pressure pauses reading, never loses a query: a client sends until the server
    stops taking its queries, then reads while it sends the rest; every one is answered."""
    port = free_port()
    server = sinkhole_factory(POLICIES, query_log="off", metrics=f"127.0.0.1:{port}")
    count = 150_000
    data = frame(make(BLOCKED, "A", edns=True, qid=9).to_wire()) * count
    with connect_small(server) as sock:
        sent, _ = pipeline_without_reading(sock, data, stall=0.5)
        buffer = bytearray()
        answers = pos = 0
        deadline = time.monotonic() + 30.0
        while answers < count:
            assert time.monotonic() < deadline, f"{answers} of {count} answers"
            want_write = [sock] if sent < len(data) else []
            readable, writable, _ = select.select([sock], want_write, [], 1.0)
            if writable:
                sent += sock.send(data[sent : sent + 65536])
            if readable:
                chunk = sock.recv(1 << 20)
                assert chunk, f"closed after {answers} answers"
                buffer += chunk
                while len(buffer) - pos >= 2:
                    end = pos + 2 + int.from_bytes(buffer[pos : pos + 2])
                    if end > len(buffer):
                        break
                    assert buffer[pos + 2 : pos + 4] == b"\x00\x09"  # the query's ID
                    answers, pos = answers + 1, end
                del buffer[:pos]
                pos = 0
    assert answers == count and not buffer
    assert metric(port, "sinkhole_tcp_paused_total") >= 1  # the server stopped reading
    assert metric(port, "sinkhole_tcp_overflowed_total") == 0
