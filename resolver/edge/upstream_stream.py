"""One persistent TLS connection to an encrypted upstream, queries pipelined on it: the
machinery DNS over TLS and DNS over HTTPS share (upstream_tls.py, upstream_https.py
give the protocol spoken on it, a ``Session`` per connection).

The connection is opened with the first query and kept while it is used. Queries go
out as they come, at most MAX_IN_FLIGHT unanswered at once (and no more than the
session allows: HTTP/2's stream limit and flow control); the others wait their turn
in order. The queries of one turn of the event loop leave in one write. Replies come
back in any order.

The connection is closed after IDLE_TIMEOUT with nothing in flight (RFC 7766 section
6.2.2: the client closes idle connections), or when no byte has come back for the
transport's timeout while queries are out (a dead peer). When it closes with queries
unanswered (the upstream may close an idle connection just as a query leaves), those
are sent again once, on a new connection; a query lost twice has failed.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from resolver.core.upstream_spec import SecureUpstream
from resolver.edge.upstream_secure import (
    IDLE_TIMEOUT,
    Channel,
    Failed,
    Received,
    Wanted,
    client_context,
)

MAX_IN_FLIGHT = 100  # queries out on one connection at once (Unbound's default stream cap)


@dataclass
class Fed:
    """What a session made of bytes from the upstream."""

    replies: list[tuple[int, bytes]] = field(default_factory=list)  # (ID, reply with that ID)
    failures: list[tuple[int, str]] = field(default_factory=list)  # (ID, why it got none)
    send: bytes = b""  # to send back (HTTP/2 acknowledgements)
    closing: bool = False  # the upstream is ending the connection


class Session(Protocol):
    """The protocol spoken on one connection."""

    def start(self) -> bytes:
        """The bytes that open the conversation (HTTP/2's preface; none for DoT)."""
        ...

    def room(self) -> int:
        """How many more queries it can carry now."""
        ...

    def encode(self, qid: int, message: bytes) -> bytes:
        """The bytes that carry query ``qid``."""
        ...

    def feed(self, data: bytes) -> Fed: ...


class Connection(asyncio.Protocol):
    """One TLS connection: bytes in, to the channel."""

    def __init__(self, channel: StreamChannel) -> None:
        self.channel = channel
        self.transport: asyncio.Transport | None = None
        self.session: Session | None = None  # once the handshake has chosen the protocol
        self.heard = time.monotonic()  # when a byte last came in

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.heard = time.monotonic()
        self.channel.incoming(self, data)

    def eof_received(self) -> bool:
        return False  # TLS cannot stay half open

    def connection_lost(self, exc: Exception | None) -> None:
        self.channel.lost(self)


class StreamChannel(Channel):
    """A persistent, pipelined connection to one upstream; subclasses give the protocol."""

    ALPN: tuple[str, ...] = ()

    def session(self, alpn: str | None) -> Session:
        """The session for a connection whose handshake chose ``alpn``; ConnectionError
        when the upstream does not speak the protocol."""
        raise NotImplementedError

    def __init__(
        self,
        spec: SecureUpstream,
        received: Received,
        failed: Failed,
        wanted: Wanted,
        timeout: float,
        log: Any = None,
    ) -> None:
        super().__init__(spec, received, failed, wanted, timeout, log)
        self.context: ssl.SSLContext | None = None  # made at the first connection
        self.waiting: deque[tuple[int, bytes]] = deque()  # (ID, query) not sent yet
        self.in_flight: dict[int, bytes] = {}  # sent on the connection, not answered yet
        self.resent: set[int] = set()  # sent again after a connection was lost
        self.conn: Connection | None = None
        self.connecting: asyncio.Task[None] | None = None
        self.outbox: list[bytes] = []  # this turn's queries, written together
        self.idle: asyncio.TimerHandle | None = None
        self.watch: asyncio.TimerHandle | None = None  # for a connection that went silent

    # --- queries out ------------------------------------------------------------

    def send(self, qid: int, message: bytes) -> None:
        message = self.padded(message)
        if self.conn is None:
            if self.connecting is None and self.held_off():
                self.refuse(qid, f"not connected ({self.last_error})")
                return
            self.waiting.append((qid, message))
            self._connect()
            return
        if self.waiting or not self._room():
            self.waiting.append((qid, message))
            return
        self._write(qid, message)

    def _room(self) -> bool:
        conn = self.conn
        return (
            conn is not None
            and conn.session is not None
            and len(self.in_flight) < MAX_IN_FLIGHT
            and conn.session.room() > 0
        )

    def _write(self, qid: int, message: bytes) -> None:
        assert self.conn is not None and self.conn.session is not None
        self.in_flight[qid] = message
        if not self.outbox:
            asyncio.get_running_loop().call_soon(self._flush)
        self.outbox.append(self.conn.session.encode(qid, message))
        if self.idle is not None:
            self.idle.cancel()
            self.idle = None
        if self.watch is None:
            self.watch = asyncio.get_running_loop().call_later(self.timeout, self._check_silence)

    def _flush(self) -> None:
        data, self.outbox = b"".join(self.outbox), []
        conn = self.conn
        if data and conn is not None and conn.transport is not None:
            conn.transport.write(data)

    def _drain(self) -> None:
        """Send waiting queries while the connection has room."""
        while self.waiting and self._room():
            qid, message = self.waiting.popleft()
            if self.wanted(qid):
                self._write(qid, message)
        if not self.in_flight and not self.waiting and self.idle is None and self.conn:
            self.idle = asyncio.get_running_loop().call_later(IDLE_TIMEOUT, self._close_idle)

    # --- the connection ---------------------------------------------------------

    def _connect(self) -> None:
        if self.connecting is None:
            self.connecting = asyncio.get_running_loop().create_task(self._open())

    async def _open(self) -> None:
        spec = self.spec
        loop = asyncio.get_running_loop()
        transport: asyncio.BaseTransport | None = None
        try:
            if self.context is None:
                self.context = client_context(spec, list(self.ALPN))
            opened, conn = await asyncio.wait_for(
                loop.create_connection(
                    lambda: Connection(self),
                    spec.host,
                    spec.port,
                    ssl=self.context,
                    server_hostname=spec.check_name,
                    ssl_handshake_timeout=self.timeout,
                ),
                self.timeout,
            )
            transport = opened
            tls = opened.get_extra_info("ssl_object")
            conn.session = self.session(tls.selected_alpn_protocol() if tls else None)
        except (OSError, TimeoutError) as exc:  # ssl.SSLError and ConnectionError are OSErrors
            if transport is not None:
                transport.close()
            self.connecting = None
            reason = self.connect_failed(exc)
            waiting, self.waiting = self.waiting, deque()
            for qid, _ in waiting:
                self.failed(qid, reason)
            return
        self.connecting = None
        self.connected()
        self.connections += 1
        self.conn = conn
        start = conn.session.start()
        if start and conn.transport is not None:
            conn.transport.write(start)
        self._drain()

    def incoming(self, conn: Connection, data: bytes) -> None:
        if conn is not self.conn or conn.session is None:
            return  # a connection closed here already
        fed = conn.session.feed(data)
        if fed.send and conn.transport is not None:
            conn.transport.write(fed.send)
        for qid, message in fed.replies:
            self.in_flight.pop(qid, None)
            self.resent.discard(qid)
            self.received(message)
        for qid, reason in fed.failures:
            self.in_flight.pop(qid, None)
            self.resent.discard(qid)
            self.failed(qid, reason)
        if fed.closing and conn.transport is not None:
            conn.transport.close()  # lost() follows: what is unanswered goes once more
            return
        self._drain()

    def lost(self, conn: Connection) -> None:
        """The connection closed: its unanswered queries are sent again once, on a new one."""
        if conn is not self.conn:
            return  # closed here, idle
        self.conn = None
        self.outbox = []
        self._stop_timers()
        lost, self.in_flight = self.in_flight, {}
        again: list[tuple[int, bytes]] = []
        for qid, message in lost.items():
            if not self.wanted(qid):
                continue
            if qid in self.resent:
                self.resent.discard(qid)
                self.refuse(qid, "the connection closed twice before its answer")
            else:
                self.resent.add(qid)
                again.append((qid, message))
        self.waiting.extendleft(reversed(again))
        if self.waiting:
            self._connect()

    def _check_silence(self) -> None:
        """Queries are out: the connection must have said something within the timeout."""
        self.watch = None
        conn = self.conn
        if conn is None or not self.in_flight:
            return
        quiet = time.monotonic() - conn.heard
        if quiet < self.timeout:
            self.watch = asyncio.get_running_loop().call_later(
                self.timeout - quiet, self._check_silence
            )
            return
        if self.log is not None:
            self.log.warning("upstream_connection_silent", upstream=self.label, seconds=quiet)
        if conn.transport is not None:
            conn.transport.abort()  # lost() follows: the queries go once more

    def _close_idle(self) -> None:
        self.idle = None
        conn, self.conn = self.conn, None
        self._stop_timers()
        if conn is not None and conn.transport is not None:
            conn.transport.close()

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
