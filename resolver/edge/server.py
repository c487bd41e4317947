"""Client-facing listeners: UDP and TCP (RFC 7766), IPv4 and IPv6. Transports only move bytes.

TCP holds its own against clients that do not play fair:
- Answers owed to a connection are bounded: past WRITE_HIGH octets not yet taken by the
  client it is no longer read (the rest of what it sent waits) until they drop to
  WRITE_LOW; past OWED_LIMIT, or when all paused connections together owe
  TOTAL_OWED_LIMIT, it is closed. One left unread for tcp_idle_timeout is cut.
- A query must arrive whole within tcp_query_timeout of its first octet, and a
  connection with no complete query for tcp_idle_timeout is closed: a byte now and
  then does not keep one open (slowloris).
- At most tcp_max_per_client connections from one address; at tcp_max_connections
  the connection idle the longest is closed to make room (RFC 7766 section 6.2.3).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from time import monotonic

from resolver.core.engine import Engine
from resolver.core.flight import Waiter
from resolver.core.ratelimit import RateLimiter
from resolver.core.tcpframe import Framer, frame
from resolver.edge.dispatch import Dispatcher

MAX_PIPELINE = 64  # queries one TCP connection may have waiting for upstream at once
WRITE_HIGH = 64 * 1024  # octets owed to a connection before it is no longer read
WRITE_LOW = 16 * 1024  # ... and read again
OWED_LIMIT = 1024 * 1024  # owed to one connection (answers arriving while paused): closed
TOTAL_OWED_LIMIT = 32 * 1024 * 1024  # owed to all paused connections together
SLICE = 4096  # input octets answered between looks at the write buffer
QUERY_TIMEOUT = 5.0  # seconds a query may take to arrive whole, from its first octet
MAX_PER_CLIENT = 64  # connections from one address


class UdpListener(asyncio.DatagramProtocol):
    def __init__(
        self, engine: Engine, dispatcher: Dispatcher, limiter: RateLimiter | None = None
    ) -> None:
        self.engine = engine
        self.dispatcher = dispatcher
        self.transport: asyncio.DatagramTransport | None = None
        # Bound once: the per-packet path below does no attribute chains.
        self._handle = engine.handle
        self._wait = dispatcher.wait
        self._admit = limiter.admit if limiter is not None else None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._sendto = self.transport.sendto  # type: ignore[union-attr]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        clock = monotonic()
        result = self._handle(data, addr[0], int(clock), False)
        if result.__class__ is bytes:
            if self._admit is not None:
                result = self._admit(result, addr[0], clock)
                if result is None:
                    return
            self._sendto(result, addr)
        elif result is not None:
            self._wait(result, self, addr, addr[0], False)  # type: ignore[arg-type]

    def send(self, waiter: Waiter, reply: bytes) -> None:
        """A waiting query's reply (sized for UDP by the engine)."""
        if self._admit is not None:
            admitted = self._admit(reply, waiter.client, monotonic())
            if admitted is None:
                return
            reply = admitted
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(reply, waiter.addr)  # type: ignore[arg-type]

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP errors from clients that went away: nothing to do


@dataclass(slots=True)
class TcpStats:
    """Counters of the TCP defences (``tcp_`` + name in the stats)."""

    evicted: int = 0  # idle connections closed to make room at tcp_max_connections
    client_limited: int = 0  # connections refused: tcp_max_per_client open from that address
    query_timeouts: int = 0  # closed: a query did not arrive whole within tcp_query_timeout
    paused: int = 0  # times a connection was no longer read: its answers were not taken
    overflowed: int = 0  # closed: owed more than OWED_LIMIT (or all together too much)
    stalled: int = 0  # closed: answers owed and not taken for tcp_idle_timeout


class TcpServerState:
    """What all TCP connections of one process share: limits and the open set."""

    def __init__(
        self,
        engine: Engine,
        dispatcher: Dispatcher,
        idle_timeout: float,
        max_connections: int,
        query_timeout: float = QUERY_TIMEOUT,
        max_per_client: int = MAX_PER_CLIENT,
    ) -> None:
        self.engine = engine
        self.dispatcher = dispatcher
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self.query_timeout = query_timeout
        self.max_per_client = max_per_client
        # Open connections, the one active longest ago first (a dict keeps that order).
        self.connections: dict[TcpConnection, None] = {}
        self.per_client: dict[str, int] = {}
        self.owed = 0  # octets counted against TOTAL_OWED_LIMIT (paused connections)
        self.rejected = 0
        self.stats = TcpStats()

    def make_room(self) -> bool:
        """At the cap: close the connection idle the longest (no answer owed from an
        upstream); False when every connection is waiting for one."""
        for conn in self.connections:
            if not conn.waiting:
                self.stats.evicted += 1
                conn.abort()
                return True
        return False


class TcpConnection(asyncio.Protocol):
    """One client connection: many queries, pipelined, answered as they complete."""

    def __init__(self, state: TcpServerState) -> None:
        self.state = state
        self.framer = Framer()
        self.transport: asyncio.Transport | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.client = ""
        self.waiting = 0
        self.registered = False
        self.read_paused = False
        self.write_paused = False
        self.stash: bytes | None = None  # input not answered yet: the client owes us reading
        self.charged = 0  # octets of this connection in state.owed
        self.active = 0.0  # loop time of the last complete query (or of answers taken)
        self.partial_since: float | None = None  # loop time of a partial query's first octet
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = 0.0

    # --- opening and closing ----------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        state = self.state
        peer = transport.get_extra_info("peername")
        self.client = peer[0] if peer else ""
        if state.per_client.get(self.client, 0) >= state.max_per_client:
            state.stats.client_limited += 1
            self.abort()
            return
        if len(state.connections) >= state.max_connections and not state.make_room():
            state.rejected += 1
            self.abort()
            return
        self.registered = True
        state.connections[self] = None
        state.per_client[self.client] = state.per_client.get(self.client, 0) + 1
        transport.set_write_buffer_limits(WRITE_HIGH, WRITE_LOW)  # type: ignore[attr-defined]
        self.loop = asyncio.get_running_loop()
        self.active = self.loop.time()
        self._arm(self.active + state.idle_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._unregister()
        self.transport = None

    def abort(self) -> None:
        """Close at once, dropping whatever is owed."""
        self._unregister()
        if self.transport is not None:
            self.transport.abort()
            self.transport = None

    def _unregister(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if not self.registered:
            return
        self.registered = False
        state = self.state
        state.connections.pop(self, None)
        left = state.per_client.get(self.client, 1) - 1
        if left:
            state.per_client[self.client] = left
        else:
            state.per_client.pop(self.client, None)
        state.owed -= self.charged
        self.charged = 0

    # --- deadlines: one timer, moved lazily ---------------------------------------

    def _arm(self, at: float) -> None:
        """Make sure the timer fires by ``at``."""
        if self.timer is not None:
            if self.timer_at <= at:
                return
            self.timer.cancel()
        assert self.loop is not None
        self.timer_at = at
        self.timer = self.loop.call_at(at, self._on_timer)

    def _on_timer(self) -> None:
        self.timer = None
        if self.transport is None or self.loop is None:
            return
        state = self.state
        now = self.loop.time()
        if self.partial_since is not None and now >= self.partial_since + state.query_timeout:
            state.stats.query_timeouts += 1
            self.abort()
            return
        idle_until = self.active + state.idle_timeout
        if now >= idle_until:
            if self.waiting:  # answers are still owed from upstream; wait for them
                idle_until = now + state.idle_timeout
            elif self.stash is not None or self.transport.get_write_buffer_size():
                state.stats.stalled += 1  # its answers have not been taken all this time
                self.abort()
                return
            else:
                self._unregister()
                self.transport.close()
                return
        if self.partial_since is not None:
            idle_until = min(idle_until, self.partial_since + state.query_timeout)
        self._arm(idle_until)

    # --- reading ------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.stash is not None:  # paused, yet more came: it waits with the rest
            self.stash += data
            return
        self._consume(data)
        self._update_reading()

    def _consume(self, data: bytes) -> None:
        """Answer the queries in ``data``; stop where the client owes too much reading
        and keep the rest in ``stash``."""
        state = self.state
        handle = state.engine.handle
        client = self.client
        now = int(time.monotonic())
        framer = self.framer
        size = len(data)
        pos = 0
        complete = False
        while pos < size:
            chunk = data if pos == 0 and size <= SLICE else data[pos : pos + SLICE]
            pos += len(chunk)
            messages = framer.feed(chunk)
            if not messages:
                continue
            complete = True
            out = []
            for message in messages:
                result = handle(message, client, now, True)
                if isinstance(result, bytes):
                    out.append(self.framed(result))
                elif result is not None:
                    self.waiting += 1
                    state.dispatcher.wait(result, self, None, client, True)
            if self.transport is None:
                return
            if out:
                self.transport.write(b"".join(out))
            if self.write_paused:
                if pos < size:
                    self.stash = data[pos:]
                self._charge()
                break
        if self.transport is None or self.loop is None:
            return
        if complete:
            self.active = self.loop.time()
            if self.registered:  # most recently active: last in line for eviction
                del state.connections[self]
                state.connections[self] = None
        if self.stash is not None:
            self.partial_since = None  # we stopped reading; the client is not slow
        elif framer.pending:
            if complete or self.partial_since is None:
                self.partial_since = self.loop.time()
                self._arm(self.partial_since + state.query_timeout)
        else:
            self.partial_since = None

    def _update_reading(self) -> None:
        transport = self.transport
        if transport is None:
            return
        if self.read_paused:
            if not self.write_paused and self.stash is None and self.waiting < MAX_PIPELINE // 2:
                self.read_paused = False
                transport.resume_reading()
        elif self.write_paused or self.stash is not None or self.waiting >= MAX_PIPELINE:
            self.read_paused = True
            transport.pause_reading()

    # --- writing ------------------------------------------------------------------

    def send(self, waiter: Waiter, reply: bytes) -> None:
        """A waiting query's reply."""
        self.waiting -= 1
        if self.transport is None or self.transport.is_closing():
            return
        self.transport.write(self.framed(reply))
        if self.write_paused:
            self._charge()
        self._update_reading()

    def pause_writing(self) -> None:
        """The transport holds WRITE_HIGH octets the client has not taken."""
        self.write_paused = True
        self.state.stats.paused += 1

    def resume_writing(self) -> None:
        """The client took its answers down to WRITE_LOW: answer the rest, read again."""
        self.write_paused = False
        if self.loop is not None:
            self.active = self.loop.time()
        if self.stash is not None:
            stash, self.stash = self.stash, None
            self._consume(stash)
        if not self.write_paused and self.registered:
            self.state.owed -= self.charged
            self.charged = 0
        self._update_reading()

    def _charge(self) -> None:
        """Count what this paused connection owes; close it past the limits."""
        if self.transport is None or not self.registered:
            return
        owed = self.transport.get_write_buffer_size() + len(self.stash or b"")
        state = self.state
        state.owed += owed - self.charged
        self.charged = owed
        if owed > OWED_LIMIT or state.owed > TOTAL_OWED_LIMIT:
            state.stats.overflowed += 1
            self.abort()

    def framed(self, reply: bytes) -> bytes:
        """A reply as it goes on the stream (DNS over TLS pads it first)."""
        return frame(reply)

    def eof_received(self) -> bool:
        # Half-close: keep the connection until owed answers are written.
        return bool(self.waiting) or self.stash is not None
