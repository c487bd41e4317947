"""A UDP listener that moves datagrams in batches: one recvmmsg(2) and one sendmmsg(2) each.

Under load, most of a UDP server's time goes to one receive and one send system call
per query. Here the socket is watched with ``loop.add_reader``; when datagrams queue
up, a wake-up reads up to BATCH of them into buffers allocated once, answers each
through ``Engine.handle`` and sends all the replies of the batch in one call. At low
load it reads one datagram at a time with plain recvfrom and sendto, which cost less
for a single datagram. Cache misses go to the forwarder exactly as with UdpListener.
A reply the kernel cannot take right now (EAGAIN) waits in a bounded queue flushed
by ``add_writer``; anything dropped is counted in ``stats``.

Linux only, through ctypes function calls. No ctypes callbacks are created (they
need writable and executable memory), so it runs under MemoryDenyWriteExecute=yes.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import errno
import os
import select
import socket
import sys
from collections import deque
from dataclasses import dataclass
from time import monotonic
from typing import TYPE_CHECKING, Any

from resolver import wire
from resolver.engine import Engine, udp_limit

if TYPE_CHECKING:
    from resolver.upstream import Forwarder

BATCH = 64  # datagrams per recvmmsg / sendmmsg
SLOT = 4096  # bytes per datagram buffer: a larger query is dropped (MSG_TRUNC)
SEND_EACH = 1  # batches this small send each reply at once with sendto
ROUNDS = 4  # full batches read per wake-up before the loop serves others
QUEUE_LIMIT = 4096  # replies held while the socket's send buffer is full
ADDRESS_CACHE = 4096  # sockaddr bytes -> address tuple, cleared when full
MSG_DONTWAIT = 0x40
MSG_TRUNC = 0x20

Address = tuple[Any, ...]


class _Iovec(ctypes.Structure):
    _fields_ = (("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t))


class _Msghdr(ctypes.Structure):
    _fields_ = (
        ("msg_name", ctypes.c_void_p),
        ("msg_namelen", ctypes.c_uint32),
        ("msg_iov", ctypes.c_void_p),
        ("msg_iovlen", ctypes.c_size_t),
        ("msg_control", ctypes.c_void_p),
        ("msg_controllen", ctypes.c_size_t),
        ("msg_flags", ctypes.c_int),
    )


class _Mmsghdr(ctypes.Structure):
    _fields_ = (("msg_hdr", _Msghdr), ("msg_len", ctypes.c_uint))


class _SockaddrIn6(ctypes.Structure):
    _fields_ = (
        ("family", ctypes.c_ushort),
        ("port", ctypes.c_uint16),
        ("flowinfo", ctypes.c_uint32),
        ("addr", ctypes.c_ubyte * 16),
        ("scope_id", ctypes.c_uint32),
    )


NAME = ctypes.sizeof(_SockaddrIn6)  # room for sockaddr_in6 (and so for sockaddr_in)
_SIZE = ctypes.sizeof(ctypes.c_size_t)  # read through a view of "L": size_t is unsigned long
_HDR = ctypes.sizeof(_Mmsghdr)
_IOV = ctypes.sizeof(_Iovec)


def _load() -> tuple[Any, Any] | None:
    """libc's recvmmsg and sendmmsg, or None where they do not exist."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        recv, send = libc.recvmmsg, libc.sendmmsg
    except (OSError, AttributeError):
        return None
    recv.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_void_p)
    recv.restype = ctypes.c_int
    send.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int)
    send.restype = ctypes.c_int
    return recv, send


_CALLS = _load()


def batching_available() -> bool:
    """Whether this platform has recvmmsg and sendmmsg."""
    return _CALLS is not None


def sockaddr_to_address(raw: bytes) -> Address | None:
    """A kernel sockaddr_in / sockaddr_in6 as Python's socket module writes addresses:
    (host, port) or (host, port, flowinfo, scope_id); None for another family."""
    if len(raw) < 2:
        return None
    family = int.from_bytes(raw[:2], sys.byteorder)
    if family == socket.AF_INET and len(raw) >= 8:
        return socket.inet_ntop(socket.AF_INET, raw[4:8]), int.from_bytes(raw[2:4], "big")
    if family == socket.AF_INET6 and len(raw) >= 28:
        return (
            socket.inet_ntop(socket.AF_INET6, raw[8:24]),
            int.from_bytes(raw[2:4], "big"),
            int.from_bytes(raw[4:8], "big"),
            int.from_bytes(raw[24:28], sys.byteorder),
        )
    return None


def address_to_sockaddr(address: Address) -> bytes | None:
    """The kernel sockaddr for an address tuple as Python's socket module writes it
    (the inverse of sockaddr_to_address); None when it is not one."""
    try:
        host: str = address[0].split("%", 1)[0]
        port: int = address[1]
        if len(address) == 2:
            return (
                _FAMILY4
                + port.to_bytes(2, "big")
                + socket.inet_pton(socket.AF_INET, host)
                + bytes(8)
            )
        flowinfo: int = address[2]
        scope_id: int = address[3]
        return (
            _FAMILY6
            + port.to_bytes(2, "big")
            + flowinfo.to_bytes(4, "big")
            + socket.inet_pton(socket.AF_INET6, host)
            + scope_id.to_bytes(4, sys.byteorder)
        )
    except (OSError, ValueError, TypeError, IndexError, AttributeError, OverflowError):
        return None


_FAMILY4 = socket.AF_INET.to_bytes(2, sys.byteorder)
_FAMILY6 = socket.AF_INET6.to_bytes(2, sys.byteorder)


class AddressCache:
    """Sockaddr bytes to address tuples and back, bounded: most traffic comes from few
    clients."""

    __slots__ = ("limit", "raws", "seen")

    def __init__(self, limit: int = ADDRESS_CACHE) -> None:
        self.limit = limit
        self.seen: dict[bytes, Address | None] = {}
        self.raws: dict[Address, bytes | None] = {}

    def get(self, raw: bytes) -> Address | None:
        try:
            return self.seen[raw]
        except KeyError:
            pass
        found = sockaddr_to_address(raw)
        if len(self.seen) >= self.limit:
            self.seen.clear()
        self.seen[raw] = found
        return found

    def raw(self, address: Address) -> bytes | None:
        """The sockaddr bytes of ``address``."""
        try:
            return self.raws[address]
        except KeyError:
            pass
        found = address_to_sockaddr(address)
        if len(self.raws) >= self.limit:
            self.raws.clear()
        self.raws[address] = found
        return found


class Buffers:
    """The batch's memory, allocated once: datagram slots in and out, address slots,
    iovecs and two mmsghdr arrays.

    Header i of either array names address slot i: a reply staged at position j is
    sent to the address in slot j (copied there from slot i when j < i, that is when
    earlier datagrams of the batch got no immediate reply). Address lengths are fixed
    by the socket's family, so the kernel never shrinks them between calls.
    """

    def __init__(
        self,
        family: int,
        count: int = BATCH,
        slot: int = SLOT,
        named: bool = True,
        out_slot: int | None = None,
    ) -> None:
        self.count = count
        self.slot = slot  # bytes per datagram read
        self.out_slot = out_slot or slot  # bytes per datagram sent
        # A connected socket's datagrams carry no address (msg_name NULL).
        self.namelen = 0 if not named else 16 if family == socket.AF_INET else NAME
        self.data = (ctypes.c_char * (count * slot))()
        self.out = (ctypes.c_char * (count * self.out_slot))()
        self.names = (ctypes.c_char * (count * NAME))()
        self.recv_iov = (_Iovec * count)()
        self.send_iov = (_Iovec * count)()
        self.recv = (_Mmsghdr * count)()
        self.send = (_Mmsghdr * count)()
        data_at, out_at = ctypes.addressof(self.data), ctypes.addressof(self.out)
        names_at = ctypes.addressof(self.names)
        for i in range(count):
            self.recv_iov[i].iov_base = data_at + i * slot
            self.recv_iov[i].iov_len = slot
            self.send_iov[i].iov_base = out_at + i * self.out_slot
            for hdr, iov in (
                (self.recv[i].msg_hdr, self.recv_iov),
                (self.send[i].msg_hdr, self.send_iov),
            ):
                hdr.msg_name = names_at + i * NAME if named else None
                hdr.msg_namelen = self.namelen
                hdr.msg_iov = ctypes.addressof(iov) + i * _IOV
                hdr.msg_iovlen = 1
        self.recv_at = ctypes.addressof(self.recv)
        self.send_at = ctypes.addressof(self.send)
        self.data_view = memoryview(self.data).cast("B")
        self.out_view = memoryview(self.out).cast("B")
        self.names_view = memoryview(self.names).cast("B")
        # Strided views: element i is datagram i's msg_len, msg_flags; reply j's iov_len.
        recv_u32 = memoryview(self.recv).cast("B").cast("I")
        hdr_u32 = _HDR // 4
        self.lengths = recv_u32[_Mmsghdr.msg_len.offset // 4 :: hdr_u32]
        self.flags = recv_u32[_Msghdr.msg_flags.offset // 4 :: hdr_u32]
        self.reply_lengths = (
            memoryview(self.send_iov)
            .cast("B")
            .cast("L")[_Iovec.iov_len.offset // _SIZE :: _IOV // _SIZE]
        )

    def staged(self, j: int) -> tuple[bytes, bytes]:
        """Send header j's reply and sockaddr bytes, copied out."""
        start, name = j * self.out_slot, j * NAME
        reply = bytes(self.out_view[start : start + self.reply_lengths[j]])
        return reply, bytes(self.names_view[name : name + self.namelen])


@dataclass(slots=True)
class BatchStats:
    received: int = 0
    sent: int = 0
    recv_calls: int = 0
    send_calls: int = 0
    queued: int = 0  # replies that waited for the socket to become writable
    dropped: int = 0  # replies that could not be sent (queue full or a send error)
    oversized: int = 0  # datagrams larger than SLOT, not answered
    errors: int = 0  # unexpected exceptions caught in the callbacks


class ConnectedBatch:
    """Batch reads and writes on connected UDP sockets (the forwarder's upstream pool).

    One instance serves every socket of a process: callbacks never overlap, and every
    datagram read is copied out before the next call.
    """

    def __init__(self, count: int = BATCH, slot: int = SLOT, out_slot: int = SLOT) -> None:
        if _CALLS is None:
            raise OSError(errno.ENOSYS, "recvmmsg/sendmmsg are not available here")
        self.buffers = Buffers(socket.AF_INET, count, slot, named=False, out_slot=out_slot)
        self._recvmmsg, self._sendmmsg = _CALLS

    def receive(self, fd: int) -> list[bytes]:
        """The datagrams waiting on ``fd`` (at most one batch); [] when none. A socket
        error (an ICMP error reported on a connected socket) raises OSError. Datagrams
        larger than a slot are left out."""
        b = self.buffers
        n: int = self._recvmmsg(fd, b.recv_at, b.count, MSG_DONTWAIT, None)
        if n < 0:
            code = ctypes.get_errno()
            if code in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR):
                return []
            raise OSError(code, os.strerror(code))
        slot, view, flags = b.slot, b.data_view, b.flags
        return [
            view[i * slot : i * slot + length].tobytes()
            for i, length in enumerate(b.lengths[:n].tolist())
            if not flags[i] & MSG_TRUNC
        ]

    def send(self, fd: int, datagrams: list[bytes]) -> int:
        """Send ``datagrams`` (each at most ``out_slot`` bytes) in as few calls as the
        kernel allows; how many went out. The rest could not be sent now (full buffer,
        socket error)."""
        b = self.buffers
        slot, out, lengths = b.out_slot, b.out_view, b.reply_lengths
        total = 0
        while total < len(datagrams):
            chunk = datagrams[total : total + b.count]
            for j, datagram in enumerate(chunk):
                out[j * slot : j * slot + len(datagram)] = datagram
                lengths[j] = len(datagram)
            done = 0
            while done < len(chunk):
                sent: int = self._sendmmsg(fd, b.send_at + done * _HDR, len(chunk) - done, 0)
                if sent > 0:
                    done += sent
                elif sent < 0 and ctypes.get_errno() == errno.EINTR:
                    continue
                else:
                    return total + done
            total += done
        return total


class BatchUdpListener:
    """Serves one bound, non-blocking UDP socket, in batches when datagrams queue up.

    At low load a wake-up finds one datagram, and plain recvfrom and sendto (C calls)
    cost less than the batch calls through ctypes. So the listener reads singly until
    a wake-up finds another datagram waiting, then in batches until a batch comes back
    with one datagram or none. A lone reply in a batch goes out with sendto too.
    """

    def __init__(
        self,
        engine: Engine,
        forwarder: Forwarder,
        sock: socket.socket,
        loop: asyncio.AbstractEventLoop | None = None,
        batch: int = BATCH,
    ) -> None:
        if _CALLS is None:
            raise OSError(errno.ENOSYS, "recvmmsg/sendmmsg are not available here")
        self.engine = engine
        self.forwarder = forwarder
        self.sock = sock
        self.loop = loop or asyncio.get_running_loop()
        self.fd = sock.fileno()
        self.buffers = Buffers(sock.family, batch)
        self.late_buffers = Buffers(sock.family, batch)  # forwarded answers, sent per turn
        self._late: list[tuple[bytes, Address]] = []
        self.addresses = AddressCache()
        self.stats = BatchStats()
        self.queue: deque[tuple[bytes, Address]] = deque()
        self.closed = False
        self._handle = engine.handle
        self._submit = forwarder.submit
        self._recvmmsg, self._sendmmsg = _CALLS
        self.single = True  # one datagram at a time, until a wake-up finds several
        self._poller = select.poll()
        self._poller.register(self.fd, select.POLLIN)
        self._waiting = self._poller.poll
        sock.setblocking(False)
        self.loop.add_reader(self.fd, self._on_readable)

    # --- the transport surface the composition root uses ---------------------------

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._poller.unregister(self.fd)
        self.loop.remove_reader(self.fd)
        self.loop.remove_writer(self.fd)
        self.queue.clear()
        self.sock.close()

    def is_closing(self) -> bool:
        return self.closed

    # --- receiving -----------------------------------------------------------------

    def _on_readable(self) -> None:
        try:
            if self.single and not self._read_singly():
                return
            for turn in range(ROUNDS):
                n = self._batch()
                if turn == 0 and n <= 1:
                    self.single = True  # the queue has gone: back to single reads
                if n < self.buffers.count or self.closed:
                    break  # drained: the loop wakes us again when more arrives
        except Exception:
            self.stats.errors += 1

    def _read_singly(self) -> bool:
        """Answer one datagram; True (and batches from now on) when another is waiting
        behind it. A zero-timeout poll asks that without a failing read (an exception)."""
        stats = self.stats
        try:
            data, addr = self.sock.recvfrom(self.buffers.slot + 1)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            stats.errors += 1
            return False
        stats.received += 1
        if len(data) > self.buffers.slot:
            stats.oversized += 1
        else:
            try:
                result = self._handle(data, addr[0], int(monotonic()), False)
            except Exception:
                stats.errors += 1
                result = None
            if result.__class__ is bytes:
                self._reply(result, addr)
            elif result is not None:
                self._submit(result, self, addr)  # type: ignore[arg-type]
        if self.closed or not self._waiting(0):
            return False
        self.single = False
        return True

    def _batch(self) -> int:
        """Read one batch, answer it, send the replies; how many datagrams it read."""
        buffers = self.buffers
        n: int = self._recvmmsg(self.fd, buffers.recv_at, buffers.count, MSG_DONTWAIT, None)
        if n <= 0:
            if n < 0 and ctypes.get_errno() not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR):
                self.stats.errors += 1
            return 0
        stats = self.stats
        stats.received += n
        stats.recv_calls += 1
        handle = self._handle
        seen = self.addresses.seen
        slot, out_slot, namelen = buffers.slot, buffers.out_slot, buffers.namelen
        view, out, reply_lengths = buffers.data_view, buffers.out_view, buffers.reply_lengths
        names = bytes(buffers.names_view[: n * NAME])
        now = int(monotonic())
        i = j = 0
        for length in buffers.lengths[:n].tolist():
            start = i * slot
            name = i * NAME
            raw = names[name : name + namelen]
            addr = seen.get(raw)
            i += 1
            if addr is None:
                addr = self.addresses.get(raw)
                if addr is None:
                    continue  # not an internet address: nowhere to answer
            if length >= slot and buffers.flags[i - 1] & MSG_TRUNC:
                stats.oversized += 1
                continue
            try:
                result = handle(view[start : start + length].tobytes(), addr[0], now, False)
            except Exception:
                stats.errors += 1
                continue
            if result.__class__ is bytes:
                size = len(result)
                if n <= SEND_EACH or size > out_slot:  # small batches: each reply at once
                    self._reply(result, addr)
                    continue
                start = j * out_slot
                out[start : start + size] = result
                reply_lengths[j] = size
                if j != i - 1:  # earlier datagrams got no reply: move the address up
                    buffers.names_view[j * NAME : j * NAME + namelen] = raw
                j += 1
            elif result is not None:
                self._submit(result, self, addr)  # type: ignore[arg-type]
        if j:
            self._send_staged(buffers, j)
        return n

    # --- sending -------------------------------------------------------------------

    def _send_staged(self, buffers: Buffers, count: int) -> None:
        """Send the ``count`` staged replies with as few sendmmsg calls as the kernel allows."""
        if self.closed:
            return
        if self.queue:  # replies already waiting go first; these wait behind them
            self._queue_staged(buffers, 0, count)
            return
        start = 0
        send_at = buffers.send_at
        while start < count:
            sent: int = self._sendmmsg(self.fd, send_at + start * _HDR, count - start, 0)
            self.stats.send_calls += 1
            if sent > 0:
                self.stats.sent += sent
                start += sent
                continue
            code = ctypes.get_errno() if sent < 0 else errno.EAGAIN
            if code == errno.EINTR:
                continue
            if code in (errno.EAGAIN, errno.EWOULDBLOCK):
                self._queue_staged(buffers, start, count)
                return
            self.stats.dropped += 1  # this reply cannot be sent (e.g. the route is gone)
            start += 1

    def _queue_staged(self, buffers: Buffers, start: int, count: int) -> None:
        for j in range(start, count):
            reply, raw = buffers.staged(j)
            addr = self.addresses.get(raw)
            if addr is None:  # pragma: no cover - only replies to decoded addresses are staged
                self.stats.dropped += 1
            else:
                self._enqueue(reply, addr)

    def deliver(self, query: wire.Query, reply: bytes, addr: object) -> None:
        """A forwarded query's answer (the forwarder's Sink interface). The answers
        delivered in one turn of the event loop leave together at its end."""
        if self.closed:
            return
        if len(reply) > udp_limit(query):
            reply = wire.build_truncated(reply)
        late = self._late
        late.append((reply, addr))  # type: ignore[arg-type]
        if len(late) == 1:
            self.loop.call_soon(self._send_late)

    def _send_late(self) -> None:
        """Send the answers delivered this turn: one sendto for one, else in batches."""
        late, self._late = self._late, []
        if self.closed:
            return
        if len(late) == 1 or self.queue:
            for reply, addr in late:
                self._reply(reply, addr)
            return
        buffers = self.late_buffers
        slot, namelen, out = buffers.out_slot, buffers.namelen, buffers.out_view
        names, lengths, raw_of = buffers.names_view, buffers.reply_lengths, self.addresses.raw
        for first in range(0, len(late), buffers.count):
            j = 0
            for reply, addr in late[first : first + buffers.count]:
                raw = raw_of(addr)
                if raw is None or len(reply) > slot or len(raw) != namelen:
                    self._reply(reply, addr)
                    continue
                out[j * slot : j * slot + len(reply)] = reply
                lengths[j] = len(reply)
                names[j * NAME : j * NAME + namelen] = raw
                j += 1
            if j:
                self._send_staged(buffers, j)

    def _reply(self, reply: bytes, addr: Address) -> None:
        """One reply with sendto, or queued behind replies already waiting."""
        if self.queue:
            self._enqueue(reply, addr)
            return
        try:
            self.sock.sendto(reply, addr)
        except (BlockingIOError, InterruptedError):
            self._enqueue(reply, addr)
            return
        except OSError:
            self.stats.dropped += 1
            return
        self.stats.sent += 1

    def _enqueue(self, reply: bytes, addr: Address) -> None:
        if len(self.queue) >= QUEUE_LIMIT:
            self.stats.dropped += 1
            return
        if not self.queue:
            self.loop.add_writer(self.fd, self._on_writable)
        self.queue.append((reply, addr))
        self.stats.queued += 1

    def _on_writable(self) -> None:
        try:
            queue = self.queue
            while queue:
                reply, addr = queue[0]
                try:
                    self.sock.sendto(reply, addr)
                except (BlockingIOError, InterruptedError):
                    return
                except OSError:
                    self.stats.dropped += 1
                else:
                    self.stats.sent += 1
                queue.popleft()
            self.loop.remove_writer(self.fd)
        except Exception:
            self.stats.errors += 1
