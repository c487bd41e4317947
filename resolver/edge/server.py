"""Client-facing listeners: UDP and TCP (RFC 7766), IPv4 and IPv6. Transports only move bytes."""

from __future__ import annotations

import asyncio
import time
from time import monotonic

from resolver.core.engine import Engine
from resolver.core.flight import Waiter
from resolver.core.tcpframe import Framer, frame
from resolver.edge.dispatch import Dispatcher

MAX_PIPELINE = 64  # queries one TCP connection may have waiting for upstream at once


class UdpListener(asyncio.DatagramProtocol):
    def __init__(self, engine: Engine, dispatcher: Dispatcher) -> None:
        self.engine = engine
        self.dispatcher = dispatcher
        self.transport: asyncio.DatagramTransport | None = None
        # Bound once: the per-packet path below does no attribute chains.
        self._handle = engine.handle
        self._wait = dispatcher.wait

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._sendto = self.transport.sendto  # type: ignore[union-attr]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        result = self._handle(data, addr[0], int(monotonic()), False)
        if result.__class__ is bytes:
            self._sendto(result, addr)
        elif result is not None:
            self._wait(result, self, addr, addr[0], False)  # type: ignore[arg-type]

    def send(self, waiter: Waiter, reply: bytes) -> None:
        """A waiting query's reply (sized for UDP by the engine)."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(reply, waiter.addr)  # type: ignore[arg-type]

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP errors from clients that went away: nothing to do


class TcpServerState:
    """What all TCP connections of one process share: limits and the open set."""

    def __init__(
        self, engine: Engine, dispatcher: Dispatcher, idle_timeout: float, max_connections: int
    ) -> None:
        self.engine = engine
        self.dispatcher = dispatcher
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self.connections: set[TcpConnection] = set()
        self.rejected = 0


class TcpConnection(asyncio.Protocol):
    """One client connection: many queries, pipelined, answered as they complete."""

    def __init__(self, state: TcpServerState) -> None:
        self.state = state
        self.framer = Framer()
        self.transport: asyncio.Transport | None = None
        self.client = ""
        self.waiting = 0
        self.idle: asyncio.TimerHandle | None = None
        self.paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if len(self.state.connections) >= self.state.max_connections:
            self.state.rejected += 1
            transport.abort()  # type: ignore[attr-defined]
            return
        self.state.connections.add(self)
        peer = transport.get_extra_info("peername")
        self.client = peer[0] if peer else ""
        self._arm_idle()

    def connection_lost(self, exc: Exception | None) -> None:
        self.state.connections.discard(self)
        if self.idle is not None:
            self.idle.cancel()
        self.transport = None

    def _arm_idle(self) -> None:
        if self.idle is not None:
            self.idle.cancel()
        loop = asyncio.get_running_loop()
        self.idle = loop.call_later(self.state.idle_timeout, self._on_idle)

    def _on_idle(self) -> None:
        if self.waiting:
            self._arm_idle()  # answers are still owed; wait for them
        elif self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        self._arm_idle()
        engine = self.state.engine
        now = int(time.monotonic())
        out = []
        for message in self.framer.feed(data):
            result = engine.handle(message, self.client, now, True)
            if isinstance(result, bytes):
                out.append(self.framed(result))
            elif result is not None:
                self.waiting += 1
                self.state.dispatcher.wait(result, self, None, self.client, True)
        if out and self.transport is not None:
            self.transport.write(b"".join(out))
        if self.waiting >= MAX_PIPELINE and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def send(self, waiter: Waiter, reply: bytes) -> None:
        """A waiting query's reply."""
        self.waiting -= 1
        if self.transport is None or self.transport.is_closing():
            return
        self.transport.write(self.framed(reply))
        if self.paused and self.waiting < MAX_PIPELINE // 2:
            self.paused = False
            self.transport.resume_reading()

    def framed(self, reply: bytes) -> bytes:
        """A reply as it goes on the stream (DNS over TLS pads it first)."""
        return frame(reply)

    def eof_received(self) -> bool:
        # Half-close: keep the connection until owed answers are written.
        return bool(self.waiting)
