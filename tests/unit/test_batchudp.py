"""The batched UDP listener's parts: address conversion, the buffer layout, and the
listener itself driven by hand on loopback sockets (a stand-in loop, a stub engine)."""

from __future__ import annotations

import ctypes
import errno
import ipaddress
import select
import socket
import struct
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dns.message
import pytest

from resolver.core import wire
from resolver.core.errors import ConfigError
from resolver.core.flight import Waiter
from resolver.edge import batchudp, mmsg
from resolver.edge.batchudp import BatchUdpListener
from resolver.edge.mmsg import (
    NAME,
    AddressCache,
    Buffers,
    _Iovec,
    _Mmsghdr,
    _Msghdr,
    sockaddr_to_address,
)
from resolver.sources.config import parse_config

pytestmark = pytest.mark.skipif(
    not mmsg.batching_available(), reason="recvmmsg/sendmmsg exist on Linux only"
)

FAMILY = socket.AF_INET.to_bytes(2, sys.byteorder)
FAMILY6 = socket.AF_INET6.to_bytes(2, sys.byteorder)


# --- address conversion -----------------------------------------------------------


def sockaddr_in(host: str, port: int) -> bytes:
    return FAMILY + struct.pack("!H", port) + socket.inet_pton(socket.AF_INET, host) + bytes(8)


def sockaddr_in6(host: str, port: int, flowinfo: int = 0, scope_id: int = 0) -> bytes:
    return (
        FAMILY6
        + struct.pack("!HI", port, flowinfo)
        + socket.inet_pton(socket.AF_INET6, host)
        + scope_id.to_bytes(4, sys.byteorder)
    )


def test_sockaddr_in_becomes_host_and_port() -> None:
    assert sockaddr_to_address(sockaddr_in("192.0.2.1", 53)) == ("192.0.2.1", 53)
    assert sockaddr_to_address(sockaddr_in("127.0.0.1", 65535)) == ("127.0.0.1", 65535)


def test_sockaddr_in6_keeps_flowinfo_and_scope_id() -> None:
    raw = sockaddr_in6("fe80::1", 5353, flowinfo=0x12345, scope_id=7)
    assert sockaddr_to_address(raw) == ("fe80::1", 5353, 0x12345, 7)
    assert sockaddr_to_address(sockaddr_in6("2001:db8::7", 1)) == ("2001:db8::7", 1, 0, 0)


def test_v4_mapped_address_is_written_as_the_kernel_gives_it() -> None:
    address = sockaddr_to_address(sockaddr_in6("::ffff:192.0.2.9", 40000))
    assert address == ("::ffff:192.0.2.9", 40000, 0, 0)


@pytest.mark.parametrize(
    "raw",
    [b"", b"\x02", socket.AF_UNIX.to_bytes(2, sys.byteorder) + bytes(14), FAMILY + bytes(4)],
)
def test_other_or_short_sockaddrs_have_no_address(raw: bytes) -> None:
    assert sockaddr_to_address(raw) is None


def test_address_cache_converts_each_sockaddr_once() -> None:
    cache = AddressCache()
    raw = sockaddr_in("198.51.100.3", 1234)
    first = cache.get(raw)
    assert first == ("198.51.100.3", 1234)
    assert cache.get(bytes(raw)) is first
    assert cache.get(b"\x00") is None
    assert cache.get(b"\x00") is None


@pytest.mark.parametrize(
    "address",
    [("192.0.2.1", 53), ("127.0.0.1", 65535), ("fe80::1", 5353, 0x12345, 7), ("::1", 1, 0, 0)],
)
def test_address_tuples_become_the_kernel_sockaddr(address: tuple[Any, ...]) -> None:
    raw = mmsg.address_to_sockaddr(address)
    assert raw is not None and sockaddr_to_address(raw) == address
    assert AddressCache().raw(address) == raw


def test_address_tuples_with_a_scope_name_or_nonsense() -> None:
    raw = mmsg.address_to_sockaddr(("fe80::1%lo", 53, 0, 1))
    assert raw == sockaddr_in6("fe80::1", 53, scope_id=1)
    for bad in [("not an address", 53), ("192.0.2.1",), ("192.0.2.1", 70000), (1, 2)]:
        assert mmsg.address_to_sockaddr(bad) is None


def test_address_cache_is_bounded() -> None:
    cache = AddressCache(limit=10)
    for port in range(25):
        assert cache.get(sockaddr_in("127.0.0.1", port)) == ("127.0.0.1", port)
        assert len(cache.seen) <= 10


# --- the buffers ------------------------------------------------------------------


def test_structures_have_the_kernel_layout() -> None:
    """struct iovec / msghdr / mmsghdr as the Linux headers lay them out."""
    word = ctypes.sizeof(ctypes.c_void_p)
    assert ctypes.sizeof(_Iovec) == 2 * word
    assert _Msghdr.msg_namelen.offset == word
    assert _Msghdr.msg_iov.offset == 2 * word
    assert _Msghdr.msg_flags.offset == 6 * word
    assert ctypes.sizeof(_Msghdr) == 7 * word
    assert _Mmsghdr.msg_len.offset == ctypes.sizeof(_Msghdr)
    assert ctypes.sizeof(_Mmsghdr) == (64 if word == 8 else 32)
    assert NAME == 28  # sizeof(struct sockaddr_in6)


@pytest.mark.parametrize(("family", "namelen"), [(socket.AF_INET, 16), (socket.AF_INET6, 28)])
def test_headers_point_at_their_slots(family: int, namelen: int) -> None:
    b = Buffers(family, count=8, slot=512)
    names = ctypes.addressof(b.names)
    for i in range(8):
        recv, send = b.recv[i].msg_hdr, b.send[i].msg_hdr
        assert recv.msg_name == send.msg_name == names + i * NAME
        assert recv.msg_namelen == send.msg_namelen == namelen
        assert recv.msg_iov == ctypes.addressof(b.recv_iov) + i * ctypes.sizeof(_Iovec)
        assert send.msg_iov == ctypes.addressof(b.send_iov) + i * ctypes.sizeof(_Iovec)
        assert recv.msg_iovlen == send.msg_iovlen == 1
        assert b.recv_iov[i].iov_base == ctypes.addressof(b.data) + i * 512
        assert b.recv_iov[i].iov_len == 512
        assert b.send_iov[i].iov_base == ctypes.addressof(b.out) + i * 512
    assert b.recv_at == ctypes.addressof(b.recv)
    assert b.send_at == ctypes.addressof(b.send)


def test_views_read_and_write_the_header_fields() -> None:
    b = Buffers(socket.AF_INET, count=8, slot=512)
    for i in range(8):
        b.recv[i].msg_len = 100 + i
        b.recv[i].msg_hdr.msg_flags = mmsg.MSG_TRUNC if i == 5 else 0
        b.reply_lengths[i] = 300 + i
    assert b.lengths[:8].tolist() == [100 + i for i in range(8)]
    assert [bool(b.flags[i] & mmsg.MSG_TRUNC) for i in range(8)] == [i == 5 for i in range(8)]
    assert [b.send_iov[i].iov_len for i in range(8)] == [300 + i for i in range(8)]


def test_staged_copies_out_a_reply_and_its_address() -> None:
    b = Buffers(socket.AF_INET, count=4, slot=256)
    raw = sockaddr_in("192.0.2.44", 999)
    b.out_view[512:517] = b"hello"
    b.reply_lengths[2] = 5
    b.names_view[2 * NAME : 2 * NAME + 16] = raw
    assert b.staged(2) == (b"hello", raw)


# --- the listener, driven by hand ---------------------------------------------------


class FakeLoop:
    """Records the listener's reader, writer and end-of-turn callbacks; the test calls them."""

    def __init__(self) -> None:
        self.readers: dict[int, Callable[[], None]] = {}
        self.writers: dict[int, Callable[[], None]] = {}
        self.soon: list[Callable[[], None]] = []

    def call_soon(self, callback: Callable[[], None]) -> None:
        self.soon.append(callback)

    def end_turn(self) -> None:
        soon, self.soon = self.soon, []
        for callback in soon:
            callback()

    def add_reader(self, fd: int, callback: Callable[[], None]) -> None:
        self.readers[fd] = callback

    def remove_reader(self, fd: int) -> bool:
        return self.readers.pop(fd, None) is not None

    def add_writer(self, fd: int, callback: Callable[[], None]) -> None:
        self.writers[fd] = callback

    def remove_writer(self, fd: int) -> bool:
        return self.writers.pop(fd, None) is not None


def real_query(name: str = "forwarded.example", payload: int | None = None) -> wire.Query:
    if payload is None:
        message = dns.message.make_query(name, "A")
    else:
        message = dns.message.make_query(name, "A", use_edns=0, payload=payload)
    return wire.parse_query(message.to_wire())


class StubEngine:
    """Decides by the byte after the 2-byte ID: A answer (b"R" + data), D drop, F forward,
    X raise. Records the clients it saw."""

    def __init__(self) -> None:
        self.clients: list[str] = []
        self.forward_query = real_query()

    def handle(self, data: bytes, client: str, now: int, tcp: bool) -> bytes | wire.Query | None:
        assert not tcp
        self.clients.append(client)
        kind = data[2:3]
        if kind == b"D":
            return None
        if kind == b"F":
            return self.forward_query
        if kind == b"X":
            raise ValueError("engine failure")
        return b"R" + data


class StubDispatcher:
    def __init__(self) -> None:
        self.submitted: list[tuple[wire.Query, Any, object]] = []

    def wait(self, query: wire.Query, sink: Any, addr: object, client: str, tcp: bool) -> None:
        assert not tcp and client == addr[0]  # type: ignore[index]
        self.submitted.append((query, sink, addr))


def waiter(query: wire.Query, sink: Any, addr: object) -> Waiter:
    return Waiter(query, sink, addr, "", False, 0.0)


class Rig:
    """A listener on a loopback socket, a stand-in loop, and client sockets."""

    def __init__(self, family: int, host: str) -> None:
        self.loop = FakeLoop()
        self.engine = StubEngine()
        self.forwarder = StubDispatcher()
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.bind((host, 0))
        self.where = self.sock.getsockname()[:2]
        self.listener = BatchUdpListener(
            self.engine,  # type: ignore[arg-type]
            self.forwarder,  # type: ignore[arg-type]
            self.sock,
            self.loop,  # type: ignore[arg-type]
        )
        self.family, self.host = family, host
        self.clients: list[socket.socket] = []

    def client(self) -> socket.socket:
        sock = socket.socket(self.family, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.bind((self.host, 0))
        sock.settimeout(2.0)
        self.clients.append(sock)
        return sock

    def readable(self) -> None:
        """Run the reader callback once datagrams are waiting."""
        ready, _, _ = select.select([self.sock], [], [], 2.0)
        assert ready, "nothing arrived at the listener"
        self.loop.readers[self.sock.fileno()]()

    def close(self) -> None:
        self.listener.close()
        for sock in self.clients:
            sock.close()


@pytest.fixture(params=[(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")], ids=["v4", "v6"])
def rig(request: pytest.FixtureRequest) -> Iterator[Rig]:
    rig = Rig(*request.param)
    yield rig
    rig.close()


def packet(i: int, kind: bytes = b"A") -> bytes:
    return struct.pack("!H", i) + kind + b"payload"


def receive(sock: socket.socket, count: int) -> list[bytes]:
    return [sock.recv(65535) for _ in range(count)]


def nothing_waiting(sock: socket.socket) -> bool:
    ready, _, _ = select.select([sock], [], [], 0.05)
    return not ready


def test_a_single_datagram_is_answered_with_sendto(rig: Rig) -> None:
    client = rig.client()
    client.sendto(packet(1), rig.where)
    rig.readable()
    assert client.recv(65535) == b"R" + packet(1)
    stats = rig.listener.stats
    assert (stats.received, stats.sent, stats.recv_calls, stats.send_calls) == (1, 1, 0, 0)
    assert rig.listener.single
    assert rig.engine.clients == [rig.host]


def test_queued_datagrams_go_in_batches_to_the_right_clients(rig: Rig) -> None:
    clients = [rig.client() for _ in range(3)]
    for i in range(150):
        clients[i % 3].sendto(packet(i), rig.where)
    rig.readable()  # the single read finds more waiting: batches from here on
    assert not rig.listener.single
    for _ in range(5):
        if nothing_waiting(rig.sock):
            break
        rig.readable()
    for c, client in enumerate(clients):
        got = sorted(receive(client, 50))
        assert got == sorted(b"R" + packet(i) for i in range(c, 150, 3))
        assert nothing_waiting(client)
    stats = rig.listener.stats
    assert stats.received == stats.sent == 150
    assert 1 <= stats.send_calls <= stats.recv_calls <= 10  # batches, not one call a datagram
    assert (stats.dropped, stats.errors, stats.queued) == (0, 0, 0)


def test_single_reads_drop_fail_and_forward_like_batches(rig: Rig) -> None:
    client = rig.client()
    for i, kind in enumerate([b"D", b"X", b"F"]):
        client.sendto(packet(i, kind), rig.where)
        rig.readable()
        assert rig.listener.single
    assert nothing_waiting(client)
    stats = rig.listener.stats
    assert (stats.received, stats.sent, stats.errors, stats.recv_calls) == (3, 0, 1, 0)
    [(_, sink, addr)] = rig.forwarder.submitted
    assert sink is rig.listener and addr == client.getsockname()


def test_batches_stop_when_the_queue_has_gone(rig: Rig) -> None:
    client = rig.client()
    rig.listener.single = False
    client.sendto(packet(7), rig.where)
    rig.readable()
    assert client.recv(65535) == b"R" + packet(7)
    assert rig.listener.single  # a batch of one: back to single reads
    assert (rig.listener.stats.recv_calls, rig.listener.stats.send_calls) == (1, 0)


def test_gaps_in_a_batch_reach_the_right_clients(rig: Rig) -> None:
    """Dropped, forwarded and failing datagrams get no reply in the batch; every other
    reply still reaches the client that sent its query (addresses move up)."""
    a, b = rig.client(), rig.client()
    kinds = [b"D", b"A", b"F", b"X", b"A", b"D", b"A", b"A"]
    senders = [b, a, b, a, b, a, b, a]
    for i, kind in enumerate(kinds):
        senders[i].sendto(packet(i, kind), rig.where)
    rig.listener.single = False
    rig.readable()
    assert sorted(receive(a, 2)) == sorted([b"R" + packet(1), b"R" + packet(7)])
    assert sorted(receive(b, 2)) == sorted([b"R" + packet(4), b"R" + packet(6)])
    assert nothing_waiting(a) and nothing_waiting(b)
    stats = rig.listener.stats
    assert (stats.received, stats.sent, stats.errors) == (8, 4, 1)
    [(query, sink, addr)] = rig.forwarder.submitted
    assert query is rig.engine.forward_query and sink is rig.listener
    assert addr[:2] == b.getsockname()[:2]  # type: ignore[index]


def test_forwarded_answers_are_delivered_to_the_client(rig: Rig) -> None:
    client = rig.client()
    client.sendto(packet(3, b"F"), rig.where)
    rig.readable()
    [(query, sink, addr)] = rig.forwarder.submitted
    assert addr == client.getsockname()
    sink.send(waiter(query, sink, addr), b"answer")
    assert nothing_waiting(client)  # answers leave at the end of the loop's turn
    rig.loop.end_turn()
    assert client.recv(65535) == b"answer"
    assert rig.listener.stats.send_calls == 0  # a lone answer goes with sendto


def test_answers_delivered_in_one_turn_leave_in_one_batch(rig: Rig) -> None:
    clients = [rig.client() for _ in range(3)]
    query = real_query()
    for i in range(100):
        rig.listener.send(
            waiter(query, rig.listener, clients[i % 3].getsockname()), b"answer %d" % i
        )
    assert len(rig.loop.soon) == 1
    rig.loop.end_turn()
    for c, client in enumerate(clients):
        got = sorted(receive(client, len(range(c, 100, 3))))
        assert got == sorted(b"answer %d" % i for i in range(c, 100, 3))
        assert nothing_waiting(client)
    stats = rig.listener.stats
    assert stats.sent == 100 and stats.send_calls == 2  # a batch of 64, then 36


def test_replies_sent_after_close_go_nowhere(rig: Rig) -> None:
    client = rig.client()
    query = real_query("late.example")
    rig.listener.send(waiter(query, rig.listener, client.getsockname()), b"late")
    rig.listener.close()  # closed before the turn ended: nothing goes out
    rig.loop.end_turn()
    rig.listener.send(waiter(query, rig.listener, client.getsockname()), b"later")
    rig.loop.end_turn()
    assert nothing_waiting(client)


def test_oversized_datagrams_are_counted_not_answered(rig: Rig) -> None:
    client = rig.client()
    client.sendto(packet(1) + bytes(mmsg.SLOT), rig.where)
    rig.readable()  # a single read
    rig.listener.single = False
    client.sendto(packet(2) + bytes(mmsg.SLOT), rig.where)
    client.sendto(packet(3), rig.where)
    rig.readable()  # batch read
    assert client.recv(65535) == b"R" + packet(3)
    assert nothing_waiting(client)
    assert rig.listener.stats.oversized == 2


def set_errno_and_fail(code: int) -> Callable[..., int]:
    def sendmmsg(*args: object) -> int:
        ctypes.set_errno(code)
        return -1

    return sendmmsg


def test_a_full_send_buffer_queues_the_replies_until_writable(rig: Rig) -> None:
    client = rig.client()
    real = rig.listener._sendmmsg
    rig.listener._sendmmsg = set_errno_and_fail(errno.EAGAIN)
    for i in range(5):
        client.sendto(packet(i), rig.where)
    rig.listener.single = False
    rig.readable()
    assert rig.listener.stats.queued == 5 and len(rig.listener.queue) == 5
    assert rig.sock.fileno() in rig.loop.writers
    # Replies while others wait join the queue, in order.
    client.sendto(packet(9, b"F"), rig.where)
    rig.readable()
    [(query, sink, addr)] = rig.forwarder.submitted
    sink.send(waiter(query, sink, addr), b"forwarded")
    rig.loop.end_turn()
    assert len(rig.listener.queue) == 6
    assert nothing_waiting(client)
    rig.listener._sendmmsg = real
    rig.loop.writers[rig.sock.fileno()]()
    assert receive(client, 6) == [b"R" + packet(i) for i in range(5)] + [b"forwarded"]
    assert not rig.listener.queue and rig.sock.fileno() not in rig.loop.writers
    assert rig.listener.stats.sent == 6 and rig.listener.stats.dropped == 0


def test_a_send_error_drops_that_reply_and_counts_it(rig: Rig) -> None:
    client = rig.client()
    calls: list[int] = []
    real = rig.listener._sendmmsg

    def fail_first(fd: int, at: int, count: int, flags: int) -> int:
        calls.append(count)
        if len(calls) == 1:
            ctypes.set_errno(errno.EPERM)
            return -1
        return int(real(fd, at, count, flags))

    rig.listener._sendmmsg = fail_first
    for i in range(4):
        client.sendto(packet(i), rig.where)
    rig.listener.single = False
    rig.readable()
    assert calls == [4, 3]
    assert sorted(receive(client, 3)) == sorted(b"R" + packet(i) for i in (1, 2, 3))
    assert rig.listener.stats.dropped == 1 and rig.listener.stats.sent == 3


def test_the_queue_is_bounded(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(batchudp, "QUEUE_LIMIT", 3)
    client = rig.client()
    rig.listener._sendmmsg = set_errno_and_fail(errno.EAGAIN)
    for i in range(5):
        client.sendto(packet(i), rig.where)
    rig.listener.single = False
    rig.readable()
    assert len(rig.listener.queue) == 3
    assert rig.listener.stats.dropped == 2


def test_a_blocked_sendto_is_queued_too(rig: Rig) -> None:
    class Busy:
        """The socket, except that sendto finds the send buffer full."""

        def __init__(self, sock: socket.socket) -> None:
            self.sock = sock

        def sendto(self, data: bytes, addr: object) -> int:
            raise BlockingIOError(errno.EAGAIN, "full")

        def __getattr__(self, name: str) -> Any:
            return getattr(self.sock, name)

    client = rig.client()
    rig.listener.sock = Busy(rig.sock)  # type: ignore[assignment]
    client.sendto(packet(1), rig.where)
    rig.readable()
    assert len(rig.listener.queue) == 1
    rig.listener.sock = rig.sock
    rig.loop.writers[rig.sock.fileno()]()
    assert client.recv(65535) == b"R" + packet(1)


def test_callbacks_never_raise(rig: Rig) -> None:
    def broken(*args: object) -> int:
        raise RuntimeError("broken")

    rig.listener._recvmmsg = broken
    client = rig.client()
    client.sendto(packet(1), rig.where)
    rig.listener.single = False
    rig.readable()
    rig.listener.queue.append((b"x", ("no such host", 1)))
    rig.listener._on_writable()
    assert rig.listener.stats.errors >= 1


def test_addresses_match_what_recvfrom_reports(rig: Rig) -> None:
    client = rig.client()
    client.sendto(packet(1), rig.where)
    client.sendto(packet(2), rig.where)
    rig.listener.single = False
    rig.readable()
    [raw] = rig.listener.addresses.seen
    assert rig.listener.addresses.seen[raw] == client.getsockname()


def test_close_stops_reading_and_is_idempotent(rig: Rig) -> None:
    fd = rig.sock.fileno()
    assert fd in rig.loop.readers
    rig.listener.close()
    rig.listener.close()
    assert fd not in rig.loop.readers and rig.listener.is_closing()
    assert rig.sock.fileno() == -1


def test_a_real_engine_answers_through_the_batch_path(rig: Rig) -> None:
    from resolver.core.cache import Cache, CacheSettings
    from resolver.core.clients import ClientAcl
    from resolver.core.engine import Engine
    from resolver.core.matcher import CompiledPolicy, Scope
    from resolver.core.snapshot import Snapshot
    from resolver.core.verdict import Action, Answers, PolicyInfo, Verdict

    answers = Answers(
        (ipaddress.IPv4Address("192.0.2.80"),), (ipaddress.IPv6Address("2001:db8::80"),), 60
    )
    verdict = Verdict(PolicyInfo(id="p", source="p.yaml"), Action.WARNING_PAGE, answers, 0)
    policy = CompiledPolicy.build([(wire.text_to_name("blocked.example"), Scope.SUBTREE, verdict)])
    engine = Engine(
        Snapshot(policy),
        Cache(CacheSettings()),
        ClientAcl([ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")]),
    )
    rig.listener._handle = engine.handle
    client = rig.client()
    queries = [dns.message.make_query(f"h{i}.blocked.example", "A") for i in range(20)]
    for q in queries:
        client.sendto(q.to_wire(), rig.where)
    rig.listener.single = False
    rig.readable()
    for q in queries:
        reply = dns.message.from_wire(client.recv(65535))
        assert reply.id == q.id and reply.question == q.question
        assert [r.address for r in reply.answer[0]] == ["192.0.2.80"]
    assert engine.counters.blocked == 20


# --- the configuration key ------------------------------------------------------------


def config(text: str) -> Any:
    return parse_config(textwrap.dedent(text), "sinkhole.yaml", Path("/etc/sinkhole"))


def test_udp_batch_is_on_by_default_and_can_be_switched_off() -> None:
    assert config("upstreams: ['127.0.0.1:5399']\n").udp_batch is True
    assert config("upstreams: []\nudp_batch: false\n").udp_batch is False
    assert config("upstreams: []\nudp_batch: true\n").udp_batch is True


@pytest.mark.parametrize("value", ["maybe", "1", "[]", "''"])
def test_udp_batch_must_be_true_or_false(value: str) -> None:
    with pytest.raises(ConfigError) as info:
        config(f"upstreams: []\nudp_batch: {value}\n")
    assert "udp_batch must be true or false" in info.value.message
    assert info.value.line == 2


# --- connected sockets (the forwarder's upstream pool) -------------------------------


@pytest.fixture
def connected_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A non-blocking socket connected to a peer socket on loopback."""
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    peer.settimeout(2.0)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sock.connect(peer.getsockname())
    peer.connect(sock.getsockname())
    yield sock, peer
    sock.close()
    peer.close()


def test_connected_batch_sends_and_receives_many_per_call(
    connected_pair: tuple[socket.socket, socket.socket],
) -> None:
    sock, peer = connected_pair
    batch = mmsg.ConnectedBatch(count=8, slot=512)
    datagrams = [b"query %d" % i for i in range(20)]
    assert batch.send(sock.fileno(), datagrams) == 20  # three calls of at most 8
    assert [peer.recv(512) for _ in range(20)] == datagrams
    assert batch.receive(sock.fileno()) == []  # nothing waiting: not an error
    for i in range(10):
        peer.send(b"reply %d" % i)
    select.select([sock], [], [], 2.0)
    assert batch.receive(sock.fileno()) == [b"reply %d" % i for i in range(8)]
    assert batch.receive(sock.fileno()) == [b"reply 8", b"reply 9"]


def test_connected_batch_leaves_out_datagrams_larger_than_a_slot(
    connected_pair: tuple[socket.socket, socket.socket],
) -> None:
    sock, peer = connected_pair
    batch = mmsg.ConnectedBatch(count=8, slot=64)
    peer.send(bytes(100))
    peer.send(b"small")
    select.select([sock], [], [], 2.0)
    assert batch.receive(sock.fileno()) == [b"small"]


def test_connected_batch_reports_socket_errors(
    connected_pair: tuple[socket.socket, socket.socket],
) -> None:
    sock, peer = connected_pair
    batch = mmsg.ConnectedBatch(count=8, slot=512)
    peer.close()  # nobody listens there now: ICMP port unreachable comes back
    batch.send(sock.fileno(), [b"one", b"two"])
    select.select([sock], [], [], 2.0)
    with pytest.raises(ConnectionRefusedError):
        batch.receive(sock.fileno())
