"""DNS over TLS to an upstream (RFC 7858): one persistent connection, queries pipelined.

Queries go out on one TLS connection, opened with the first query and kept while it is
used; replies come back in any order and are matched by message ID (the forwarder
gives every query on the connection its own). At most MAX_IN_FLIGHT queries are out on
the connection at once; the others wait their turn in order. The queries of one turn
of the event loop leave in one write (one TLS record).

The connection is closed after IDLE_TIMEOUT with nothing in flight (RFC 7766 section
6.2.2: the client closes idle connections), or when no byte has come back for the
transport's timeout while queries are out (a dead peer). When the upstream closes it,
the queries still out are sent again once on a new one (it may have closed an idle
connection just as a query left); a query lost twice has failed. No 0x20 over TLS: an
off-path attacker cannot inject into the connection, and some DoT servers do not keep
the case anyway.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from typing import Any, cast

from resolver.core.outbound import reply_qid
from resolver.core.tcpframe import Framer, frame
from resolver.edge.upstream_secure import IDLE_TIMEOUT, Channel, client_context

ALPN = ["dot"]  # RFC 7858 needs no ALPN; "dot" is the identifier of RFC 9461
MAX_IN_FLIGHT = 100  # queries out on the connection at once (Unbound's default stream cap)


class DotStream(asyncio.Protocol):
    """One TLS connection: framed replies in, to the channel."""

    def __init__(self, channel: TlsChannel) -> None:
        self.channel = channel
        self.framer = Framer()
        self.transport: asyncio.Transport | None = None
        self.heard = time.monotonic()  # when a byte last came in

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.heard = time.monotonic()
        for message in self.framer.feed(data):
            self.channel.reply(message)

    def eof_received(self) -> bool:
        return False  # TLS cannot stay half open

    def connection_lost(self, exc: Exception | None) -> None:
        self.channel.lost(self)


class TlsChannel(Channel):
    """The DoT transport of one upstream."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.context: ssl.SSLContext | None = None  # made at the first connection
        self.waiting: deque[tuple[int, bytes]] = deque()  # (ID, framed query) not sent yet
        self.in_flight: dict[int, bytes] = {}  # sent on the connection, not answered yet
        self.resent: set[int] = set()  # sent again after a connection was lost
        self.stream: DotStream | None = None
        self.connecting: asyncio.Task[None] | None = None
        self.outbox: list[bytes] = []  # this turn's queries, written together
        self.idle: asyncio.TimerHandle | None = None
        self.watch: asyncio.TimerHandle | None = None  # for a connection that went silent

    # --- queries out ------------------------------------------------------------

    def send(self, qid: int, message: bytes) -> None:
        data = frame(self.padded(message))
        if self.stream is None:
            if self.connecting is None and self.held_off():
                self.refuse(qid, f"not connected ({self.last_error})")
                return
            self.waiting.append((qid, data))
            self._connect()
            return
        if self.waiting or len(self.in_flight) >= MAX_IN_FLIGHT:
            self.waiting.append((qid, data))
            return
        self._write(qid, data)

    def _write(self, qid: int, data: bytes) -> None:
        self.in_flight[qid] = data
        if not self.outbox:
            asyncio.get_running_loop().call_soon(self._flush)
        self.outbox.append(data)
        if self.idle is not None:
            self.idle.cancel()
            self.idle = None
        if self.watch is None:
            self.watch = asyncio.get_running_loop().call_later(self.timeout, self._check_silence)

    def _flush(self) -> None:
        data, self.outbox = b"".join(self.outbox), []
        stream = self.stream
        if data and stream is not None and stream.transport is not None:
            stream.transport.write(data)

    def _drain(self) -> None:
        """Send waiting queries while the connection has room."""
        while self.waiting and len(self.in_flight) < MAX_IN_FLIGHT:
            qid, data = self.waiting.popleft()
            if self.wanted(qid):
                self._write(qid, data)
        if not self.in_flight and not self.waiting and self.idle is None:
            self.idle = asyncio.get_running_loop().call_later(IDLE_TIMEOUT, self._close_idle)

    # --- the connection ---------------------------------------------------------

    def _connect(self) -> None:
        if self.connecting is None:
            self.connecting = asyncio.get_running_loop().create_task(self._open())

    async def _open(self) -> None:
        spec = self.spec
        loop = asyncio.get_running_loop()
        try:
            if self.context is None:
                self.context = client_context(spec, ALPN)
            _, stream = await asyncio.wait_for(
                loop.create_connection(
                    lambda: DotStream(self),
                    spec.host,
                    spec.port,
                    ssl=self.context,
                    server_hostname=spec.check_name,
                    ssl_handshake_timeout=self.timeout,
                ),
                self.timeout,
            )
        except (OSError, TimeoutError) as exc:  # ssl.SSLError is an OSError
            self.connecting = None
            reason = self.connect_failed(exc)
            waiting, self.waiting = self.waiting, deque()
            for qid, _ in waiting:
                self.failed(qid, reason)
            return
        self.connecting = None
        self.connected()
        self.connections += 1
        self.stream = stream
        self._drain()

    def reply(self, message: bytes) -> None:
        qid = reply_qid(message)
        self.in_flight.pop(qid, None)
        self.resent.discard(qid)
        self.received(message)
        self._drain()

    def lost(self, stream: DotStream) -> None:
        """The connection closed: its unanswered queries are sent again once, on a new one."""
        if stream is not self.stream:
            return  # closed here, idle
        self.stream = None
        self.outbox = []
        self._stop_timers()
        lost, self.in_flight = self.in_flight, {}
        again: list[tuple[int, bytes]] = []
        for qid, data in lost.items():
            if not self.wanted(qid):
                continue
            if qid in self.resent:
                self.resent.discard(qid)
                self.refuse(qid, "the connection closed twice before its answer")
            else:
                self.resent.add(qid)
                again.append((qid, data))
        self.waiting.extendleft(reversed(again))
        if self.waiting:
            self._connect()

    def _check_silence(self) -> None:
        """Queries are out: the connection must have said something within the timeout."""
        self.watch = None
        stream = self.stream
        if stream is None or not self.in_flight:
            return
        quiet = time.monotonic() - stream.heard
        if quiet < self.timeout:
            self.watch = asyncio.get_running_loop().call_later(
                self.timeout - quiet, self._check_silence
            )
            return
        if self.log is not None:
            self.log.warning("upstream_connection_silent", upstream=self.label, seconds=quiet)
        if stream.transport is not None:
            stream.transport.abort()  # lost() follows: the queries go once more, elsewhere

    def _close_idle(self) -> None:
        self.idle = None
        stream, self.stream = self.stream, None
        self._stop_timers()
        if stream is not None and stream.transport is not None:
            stream.transport.close()

    def _stop_timers(self) -> None:
        for timer in (self.idle, self.watch):
            if timer is not None:
                timer.cancel()
        self.idle = self.watch = None

    def close(self) -> None:
        if self.connecting is not None:
            self.connecting.cancel()
            self.connecting = None
        self.waiting.clear()
        self.in_flight.clear()
        self._close_idle()
