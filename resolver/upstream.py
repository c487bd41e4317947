"""Forwarding to upstream resolvers: the only path that waits on the network.

Each upstream has a pool of connected UDP sockets on random source ports; every
query gets a random ID on a randomly chosen socket, and a reply is accepted only
from the upstream's address (the kernel filters connected sockets) with the same
ID and question. Identical questions in flight are coalesced. A try that times
out moves to the next upstream; when the query's time budget is spent, every
waiter gets SERVFAIL. A truncated reply is retried over TCP.
"""

from __future__ import annotations

import asyncio
import random
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from resolver import wire
from resolver.cache import Answer
from resolver.config import Endpoint
from resolver.errors import FormError
from resolver.tcpframe import Framer, frame

POOL_SIZE = 8
SOCKET_USES = 2000  # queries per socket before it is replaced by one on a new port
HOLD_DOWN = 5.0  # seconds an upstream that keeps failing is tried last
FAILURES_TO_HOLD = 3


class Sink(Protocol):
    """Where an answer goes: a UDP listener (with the client address) or a TCP connection."""

    def deliver(self, query: wire.Query, reply: bytes, addr: object) -> None: ...


class Upstream:
    __slots__ = ("endpoint", "failures", "held_until", "label", "sockets")

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.label = str(endpoint)
        self.sockets: list[UpstreamSocket] = []
        self.failures = 0
        self.held_until = 0.0


class Pending:
    """One question in flight, with everyone waiting for its answer."""

    __slots__ = (
        "deadline",
        "key",
        "order",
        "qid",
        "query",
        "sock",
        "started",
        "timer",
        "tries",
        "waiters",
    )

    def __init__(
        self, key: bytes, query: wire.Query, order: list[Upstream], started: float, deadline: float
    ) -> None:
        self.key = key
        self.query = query
        self.order = order
        self.started = started
        self.deadline = deadline
        self.tries = 0
        self.waiters: list[tuple[wire.Query, Sink, object]] = []
        self.sock: UpstreamSocket | None = None
        self.qid = 0
        self.timer: asyncio.TimerHandle | None = None


class UpstreamSocket(asyncio.DatagramProtocol):
    """One connected UDP socket to one upstream; replies are matched by ID and question."""

    def __init__(self, forwarder: Forwarder, upstream: Upstream) -> None:
        self.forwarder = forwarder
        self.upstream = upstream
        self.pending: dict[int, Pending] = {}
        self.transport: asyncio.DatagramTransport | None = None
        self.uses = 0
        self.retired = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: object) -> None:
        pending = self.pending.get(wire.reply_qid(data))
        if pending is None:
            self.forwarder.stats.unexpected += 1
            return
        try:
            reply = wire.parse_reply(data, pending.qid, pending.query.question)
        except FormError:
            self.forwarder.stats.unexpected += 1  # spoofed or broken: keep waiting for the real one
            return
        del self.pending[pending.qid]
        self.forwarder.on_reply(pending, reply)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and the like: the try will time out and fail over.
        self.forwarder.stats.socket_errors += 1

    def send(self, pending: Pending) -> None:
        qid = wire.random_id()
        while qid in self.pending:
            qid = wire.random_id()
        pending.qid = qid
        pending.sock = self
        self.pending[qid] = pending
        self.uses += 1
        assert self.transport is not None
        self.transport.sendto(wire.build_upstream_query(pending.query, qid))


@dataclass
class ForwarderStats:
    sent: int = 0
    timeouts: int = 0
    failed: int = 0
    unexpected: int = 0
    socket_errors: int = 0
    tcp_retries: int = 0
    coalesced: int = 0


class Forwarder:
    def __init__(
        self,
        endpoints: tuple[Endpoint, ...],
        answer: Callable[[wire.Query, wire.Reply, int], Answer],
        try_timeout: float,
        query_timeout: float,
        on_failure: Callable[[str, str], None] | None = None,
        on_answer: Callable[[wire.Query, Sink, object, int, str, float], None] | None = None,
        pool_size: int = POOL_SIZE,
        serve: Callable[[wire.Query, Answer, Sink, object, int], bytes | None] | None = None,
    ) -> None:
        self.upstreams = [Upstream(e) for e in endpoints]
        self.answer = answer
        # The reply for one waiter (policy on the answer: CNAME chain, response IPs); None:
        # no reply at all. Without it every waiter gets the answer as it is.
        self.serve = serve
        self.try_timeout = try_timeout
        self.query_timeout = query_timeout
        self.on_failure = on_failure
        self.on_answer = on_answer
        self.pool_size = pool_size
        self.inflight: dict[bytes, Pending] = {}
        self.stats = ForwarderStats()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        for upstream in self.upstreams:
            for _ in range(self.pool_size):
                upstream.sockets.append(await self._open(upstream))

    async def _open(self, upstream: Upstream) -> UpstreamSocket:
        assert self._loop is not None
        e = upstream.endpoint
        family = socket.AF_INET6 if ":" in e.host else socket.AF_INET
        _, protocol = await self._loop.create_datagram_endpoint(
            lambda: UpstreamSocket(self, upstream), remote_addr=(e.host, e.port), family=family
        )
        return protocol

    def close(self) -> None:
        for upstream in self.upstreams:
            for sock in upstream.sockets:
                if sock.transport is not None:
                    sock.transport.close()
        for task in self._tasks:
            task.cancel()

    @property
    def busy(self) -> int:
        return len(self.inflight)

    # --- the query life cycle ---------------------------------------------

    def submit(self, query: wire.Query, sink: Sink, addr: object) -> None:
        """Answer ``query`` from upstream; the answer goes to ``sink.deliver``."""
        key = query.cache_key
        pending = self.inflight.get(key)
        if pending is not None:
            self.stats.coalesced += 1
            pending.waiters.append((query, sink, addr))
            return
        if not self.upstreams:
            self._reply_failure_to(query, sink, addr)
            return
        now = time.monotonic()
        pending = Pending(key, query, self._order(now), now, now + self.query_timeout)
        pending.waiters.append((query, sink, addr))
        self.inflight[key] = pending
        self._try(pending, now)

    def _order(self, now: float) -> list[Upstream]:
        """Upstreams in configured order, the ones held down for failing moved last."""
        ups = self.upstreams
        if len(ups) == 1 or all(u.held_until <= now for u in ups):
            return ups
        return [u for u in ups if u.held_until <= now] + [u for u in ups if u.held_until > now]

    def _try(self, pending: Pending, now: float) -> None:
        remaining = pending.deadline - now
        if remaining <= 0.001:
            self._fail(pending)
            return
        upstream = pending.order[pending.tries % len(pending.order)]
        pending.tries += 1
        sock = random.choice(upstream.sockets)
        sock.send(pending)
        self.stats.sent += 1
        if sock.uses >= SOCKET_USES and not sock.retired:
            self._replace(upstream, sock)
        assert self._loop is not None
        pending.timer = self._loop.call_later(
            min(self.try_timeout, remaining), self._timeout, pending
        )

    def _timeout(self, pending: Pending) -> None:
        self.stats.timeouts += 1
        sock = pending.sock
        if sock is not None:
            sock.pending.pop(pending.qid, None)
            self._note_failure(sock.upstream, "timeout")
        self._try(pending, time.monotonic())

    def _note_failure(self, upstream: Upstream, reason: str) -> None:
        upstream.failures += 1
        if upstream.failures >= FAILURES_TO_HOLD and upstream.held_until <= time.monotonic():
            upstream.held_until = time.monotonic() + HOLD_DOWN
            if self.on_failure is not None:
                self.on_failure(upstream.label, reason)

    def on_reply(self, pending: Pending, reply: wire.Reply) -> None:
        if pending.timer is not None:
            pending.timer.cancel()
        assert pending.sock is not None
        upstream = pending.sock.upstream
        if reply.flags & wire.TC:
            self._spawn(self._retry_tcp(pending, upstream))
            return
        if reply.rcode in (wire.SERVFAIL, wire.REFUSED) and pending.tries < len(pending.order):
            self._note_failure(upstream, "servfail" if reply.rcode == wire.SERVFAIL else "refused")
            self._try(pending, time.monotonic())
            return
        upstream.failures = 0
        self._finish(pending, reply, upstream.label)

    def _finish(self, pending: Pending, reply: wire.Reply, label: str) -> None:
        if self.inflight.get(pending.key) is pending:
            del self.inflight[pending.key]
        now = time.monotonic()
        answer = self.answer(pending.query, reply, int(now))
        latency = now - pending.started
        serve = self.serve
        for query, sink, addr in pending.waiters:
            if serve is None:
                sink.deliver(query, answer.render(query, int(now)), addr)
            else:
                out = serve(query, answer, sink, addr, int(now))
                if out is not None:
                    sink.deliver(query, out, addr)
            if self.on_answer is not None:
                self.on_answer(query, sink, addr, answer.rcode, label, latency)

    def _fail(self, pending: Pending) -> None:
        if self.inflight.get(pending.key) is pending:
            del self.inflight[pending.key]
        self.stats.failed += 1
        for query, sink, addr in pending.waiters:
            self._reply_failure_to(query, sink, addr)

    def _reply_failure_to(self, query: wire.Query, sink: Sink, addr: object) -> None:
        ede = wire.build_ede(wire.EDE_NO_REACHABLE_AUTHORITY, "no upstream answered")
        sink.deliver(query, wire.build_reply(query, wire.SERVFAIL, ede=ede), addr)
        if self.on_answer is not None:
            self.on_answer(query, sink, addr, wire.SERVFAIL, "", 0.0)

    # --- rare paths: TCP retry, socket rotation ----------------------------

    def _spawn(self, coro: object) -> None:
        task = asyncio.ensure_future(coro)  # type: ignore[call-overload]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _retry_tcp(self, pending: Pending, upstream: Upstream) -> None:
        self.stats.tcp_retries += 1
        remaining = pending.deadline - time.monotonic()
        try:
            reply = await asyncio.wait_for(
                self._query_tcp(pending.query, upstream), max(remaining, 0.001)
            )
        except (OSError, TimeoutError, FormError, asyncio.IncompleteReadError):
            self._note_failure(upstream, "tcp")
            self._try(pending, time.monotonic())
            return
        self._finish(pending, reply, upstream.label)

    async def _query_tcp(self, query: wire.Query, upstream: Upstream) -> wire.Reply:
        e = upstream.endpoint
        reader, writer = await asyncio.open_connection(e.host, e.port)
        try:
            qid = wire.random_id()
            writer.write(frame(wire.build_upstream_query(query, qid)))
            framer = Framer()
            while True:
                chunk = await reader.read(65537)
                if not chunk:
                    raise FormError("upstream closed the connection")
                for message in framer.feed(chunk):
                    return wire.parse_reply(message, qid, query.question)
        finally:
            writer.close()

    def _replace(self, upstream: Upstream, old: UpstreamSocket) -> None:
        old.retired = True

        async def swap() -> None:
            new = await self._open(upstream)
            upstream.sockets[upstream.sockets.index(old)] = new
            # Late replies for queries still on the old socket are still accepted.
            await asyncio.sleep(self.query_timeout)
            if old.transport is not None:
                old.transport.close()

        self._spawn(swap())
