"""A UDP listener that moves datagrams in batches: one recvmmsg(2) and one sendmmsg(2) each.

Under load, most of a UDP server's time goes to one receive and one send system call
per query. Here the socket is watched with ``loop.add_reader``; when datagrams queue
up, a wake-up reads up to BATCH of them into buffers allocated once, answers each
through ``Engine.handle`` and sends all the replies of the batch in one call. At low
load it reads one datagram at a time with plain recvfrom and sendto, which cost less
for a single datagram. Queries that must wait go to the Dispatcher exactly as with
UdpListener.
A reply the kernel cannot take right now (EAGAIN) waits in a bounded queue flushed
by ``add_writer``; anything dropped is counted in ``stats``.

Linux only, through ctypes function calls. No ctypes callbacks are created (they
need writable and executable memory), so it runs under MemoryDenyWriteExecute=yes.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import select
import socket
from collections import deque
from dataclasses import dataclass
from time import monotonic
from typing import TYPE_CHECKING

from resolver.core.engine import Engine
from resolver.core.flight import Waiter
from resolver.core.ratelimit import RateLimiter
from resolver.edge.mmsg import (
    BATCH,
    CALLS,
    HDR_SIZE,
    MSG_DONTWAIT,
    MSG_TRUNC,
    NAME,
    Address,
    AddressCache,
    Buffers,
)

if TYPE_CHECKING:
    from resolver.edge.dispatch import Dispatcher
    from resolver.edge.faults import Faults

SEND_EACH = 1  # batches this small send each reply at once with sendto
ROUNDS = 4  # full batches read per wake-up before the loop serves others
QUEUE_LIMIT = 4096  # replies held while the socket's send buffer is full


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
        dispatcher: Dispatcher,
        sock: socket.socket,
        loop: asyncio.AbstractEventLoop | None = None,
        batch: int = BATCH,
        faults: Faults | None = None,
        limiter: RateLimiter | None = None,
    ) -> None:
        if CALLS is None:
            raise OSError(errno.ENOSYS, "recvmmsg/sendmmsg are not available here")
        self.engine = engine
        self.dispatcher = dispatcher
        self.faults = faults
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
        self._wait = dispatcher.wait
        self._admit = limiter.admit if limiter is not None else None  # rate limiting, when on
        self._recvmmsg, self._sendmmsg = CALLS
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
        except Exception as exc:
            self._fault("udp_read", exc)

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
            clock = monotonic()
            try:
                result = self._handle(data, addr[0], int(clock), False)
                if self._admit is not None and result.__class__ is bytes:
                    result = self._admit(result, addr[0], clock)
            except Exception as exc:
                self._fault("engine", exc)
                result = None
            if result.__class__ is bytes:
                self._reply(result, addr)
            elif result is not None:
                self._wait(result, self, addr, addr[0], False)  # type: ignore[arg-type]
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
        admit = self._admit
        clock = monotonic()
        now = int(clock)
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
                if admit is not None and result.__class__ is bytes:
                    result = admit(result, addr[0], clock)
                    if result is None:
                        continue  # over the client network's rate: dropped
            except Exception as exc:
                self._fault("engine", exc)
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
                self._wait(result, self, addr, addr[0], False)  # type: ignore[arg-type]
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
            sent: int = self._sendmmsg(self.fd, send_at + start * HDR_SIZE, count - start, 0)
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

    def send(self, waiter: Waiter, reply: bytes) -> None:
        """A waiting query's reply (sized for UDP by the engine). The replies sent in
        one turn of the event loop leave together at its end."""
        if self.closed:
            return
        if self._admit is not None:
            admitted = self._admit(reply, waiter.client, monotonic())
            if admitted is None:
                return
            reply = admitted
        late = self._late
        late.append((reply, waiter.addr))  # type: ignore[arg-type]
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
        except Exception as exc:
            self._fault("udp_write", exc)

    def _fault(self, where: str, exc: Exception) -> None:
        """An exception nobody expected: counted, and logged (see Faults)."""
        self.stats.errors += 1
        if self.faults is not None:
            self.faults.report(where, exc)
