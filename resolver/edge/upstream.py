"""Forwarding to upstream resolvers: the only path that waits on the network.

Each upstream has a pool of connected UDP sockets on random source ports; every
query gets a random ID on a randomly chosen socket, and a reply is accepted only
from the upstream's address (the kernel filters connected sockets) with the same
ID and question. Identical questions in flight are coalesced. A try that times
out moves to the next upstream; when the query's time budget is spent, every
waiter gets SERVFAIL. A truncated reply is retried over TCP.

Queries go out in batches: those decided in one turn of the event loop leave
together, on one socket of the pool chosen at random for that turn, in one
sendmmsg(2); replies are read with recvmmsg(2), as many as are waiting (plain
send and recv where those calls do not exist).
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from resolver.core import wire
from resolver.core.cache import RCODE, Answer, render
from resolver.core.endpoint import Endpoint
from resolver.core.errors import FormError
from resolver.core.tcpframe import Framer, frame
from resolver.edge.mmsg import BATCH, ConnectedBatch, batching_available

POOL_SIZE = 8
SOCKET_USES = 2000  # queries per socket before it is replaced by one on a new port
HOLD_DOWN = 5.0  # seconds an upstream that keeps failing is tried last
FAILURES_TO_HOLD = 3
READ_ROUNDS = 4  # full batches read from one socket per wake-up
REPLY_SLOT = 65536  # bytes per reply buffer: any UDP datagram fits
SWEEP = 0.05  # at most this late, a try that got no answer is given up


class Sink(Protocol):
    """Where an answer goes: a UDP listener (with the client address) or a TCP connection."""

    def deliver(self, query: wire.Query, reply: bytes, addr: object) -> None: ...


class Upstream:
    __slots__ = ("current", "endpoint", "failures", "held_until", "label", "sockets")

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.label = str(endpoint)
        self.sockets: list[UpstreamSocket] = []
        self.current: UpstreamSocket | None = None  # the socket this turn's queries use
        self.failures = 0
        self.held_until = 0.0


class Pending:
    """One question in flight, with everyone waiting for its answer."""

    __slots__ = (
        "deadline",
        "key",
        "number",
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
        self.number = 0  # of the try in flight (the forwarder's count)
        self.waiters: list[tuple[wire.Query, Sink, object]] = []
        self.sock: UpstreamSocket | None = None
        self.qid = 0
        self.timer: asyncio.TimerHandle | None = None


class UpstreamSocket:
    """One connected UDP socket to one upstream; replies are matched by ID and question."""

    __slots__ = ("fd", "forwarder", "outbox", "pending", "retired", "sock", "upstream", "uses")

    def __init__(self, forwarder: Forwarder, upstream: Upstream, sock: socket.socket) -> None:
        self.forwarder = forwarder
        self.upstream = upstream
        self.sock = sock
        self.fd = sock.fileno()
        self.pending: dict[int, Pending] = {}
        self.outbox: list[bytes] = []  # queries of this turn, sent together
        self.uses = 0
        self.retired = False

    def received(self, data: bytes) -> None:
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

    def send(self, pending: Pending) -> None:
        qid = wire.random_id()
        while qid in self.pending:
            qid = wire.random_id()
        pending.qid = qid
        pending.sock = self
        self.pending[qid] = pending
        self.uses += 1
        self.outbox.append(wire.build_upstream_query(pending.query, qid))
        if len(self.outbox) == 1:
            self.forwarder.outgoing(self)


@dataclass
class ForwarderStats:
    sent: int = 0
    timeouts: int = 0
    failed: int = 0
    unexpected: int = 0
    socket_errors: int = 0  # ICMP errors reported and sends the kernel refused
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
        self._outgoing: list[UpstreamSocket] = []  # sockets with queries to send this turn
        # Tries in the order they were sent, (deadline, try number), and the tries not yet
        # answered by number. One timer sweeps them instead of a timer per query. The
        # queue holds only numbers, so an answered query is freed at once (kept alive
        # for the whole timeout, queries would pile up for the garbage collector).
        self._expiry: deque[tuple[float, int]] = deque()
        self._open_tries: dict[int, Pending] = {}
        self._try_number = 0
        self._sweeper: asyncio.TimerHandle | None = None
        self._batch = ConnectedBatch(slot=REPLY_SLOT) if batching_available() else None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        for upstream in self.upstreams:
            for _ in range(self.pool_size):
                upstream.sockets.append(self._open(upstream))

    def _open(self, upstream: Upstream) -> UpstreamSocket:
        """A new socket connected to ``upstream``, on a port the kernel picks at random."""
        assert self._loop is not None
        e = upstream.endpoint
        family = socket.AF_INET6 if ":" in e.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.connect((e.host, e.port))
        except OSError:
            sock.close()
            raise
        us = UpstreamSocket(self, upstream, sock)
        self._loop.add_reader(us.fd, self._readable, us)
        return us

    def _close_socket(self, us: UpstreamSocket) -> None:
        if self._loop is not None and us.sock.fileno() >= 0:
            self._loop.remove_reader(us.fd)
        us.sock.close()

    def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        for upstream in self.upstreams:
            for sock in upstream.sockets:
                self._close_socket(sock)
        for task in self._tasks:
            task.cancel()

    # --- datagrams in and out ------------------------------------------------

    def _readable(self, us: UpstreamSocket) -> None:
        """Read every reply waiting on ``us`` (a few batches at most per wake-up)."""
        try:
            for _ in range(READ_ROUNDS):
                datagrams = self._receive(us)
                for data in datagrams:
                    us.received(data)
                if len(datagrams) < BATCH:
                    return
        except OSError:
            # ICMP port unreachable and the like: the try will time out and fail over.
            self.stats.socket_errors += 1

    def _receive(self, us: UpstreamSocket) -> list[bytes]:
        if self._batch is not None:
            return self._batch.receive(us.fd)
        datagrams: list[bytes] = []
        while len(datagrams) < BATCH:
            try:
                datagrams.append(us.sock.recv(REPLY_SLOT))
            except (BlockingIOError, InterruptedError):
                break
        return datagrams

    def outgoing(self, us: UpstreamSocket) -> None:
        """``us`` has queries to send: they go at the end of this turn of the loop."""
        if not self._outgoing:
            assert self._loop is not None
            self._loop.call_soon(self._send_outgoing)
        self._outgoing.append(us)

    def _send_outgoing(self) -> None:
        sockets, self._outgoing = self._outgoing, []
        for upstream in self.upstreams:
            upstream.current = None  # the next turn picks a socket afresh
        for us in sockets:
            datagrams, us.outbox = us.outbox, []
            if len(datagrams) == 1 or self._batch is None:
                sent = self._send_each(us.sock, datagrams)
            else:
                sent = self._batch.send(us.fd, datagrams)
            # Unsent queries time out and move on to the next try.
            self.stats.socket_errors += len(datagrams) - sent

    @property
    def busy(self) -> int:
        return len(self.inflight)

    @staticmethod
    def _send_each(sock: socket.socket, datagrams: list[bytes]) -> int:
        for sent, datagram in enumerate(datagrams):
            try:
                sock.send(datagram)
            except OSError:
                return sent
        return len(datagrams)

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
        sock = upstream.current
        if sock is None:
            sockets = upstream.sockets
            sock = upstream.current = sockets[wire.random_below(len(sockets))]
        sock.send(pending)
        self.stats.sent += 1
        if sock.uses >= SOCKET_USES and not sock.retired:
            self._replace(upstream, sock)
        if remaining < self.try_timeout:  # the query's last try: its own timer
            assert self._loop is not None
            pending.timer = self._loop.call_later(remaining, self._timeout, pending)
            return
        self._try_number = number = self._try_number + 1
        pending.number = number
        self._open_tries[number] = pending
        self._expiry.append((now + self.try_timeout, number))
        if self._sweeper is None:
            assert self._loop is not None
            self._sweeper = self._loop.call_later(self.try_timeout, self._sweep)

    def _sweep(self) -> None:
        """Time out the tries whose deadline has passed without an answer."""
        self._sweeper = None
        now = time.monotonic()
        expiry, open_tries = self._expiry, self._open_tries
        while expiry and expiry[0][0] <= now:
            pending = open_tries.pop(expiry.popleft()[1], None)
            if pending is not None:  # no answer yet
                self._timeout(pending)
        if expiry:
            assert self._loop is not None
            wait = max(expiry[0][0] - now, SWEEP)
            self._sweeper = self._loop.call_later(wait, self._sweep)

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
        self._open_tries.pop(pending.number, None)
        if pending.timer is not None:
            pending.timer.cancel()
            pending.timer = None
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
                sink.deliver(query, render(answer, query, int(now)), addr)
            else:
                out = serve(query, answer, sink, addr, int(now))
                if out is not None:
                    sink.deliver(query, out, addr)
            if self.on_answer is not None:
                self.on_answer(query, sink, addr, answer[RCODE], label, latency)

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
        """Move ``upstream``'s socket ``old`` to a new random port. Replies to queries
        still out on the old one are accepted until the query budget has passed."""
        try:
            new = self._open(upstream)
        except OSError:
            return  # keep using the old port; the next use tries again
        old.retired = True
        if upstream.current is old:
            upstream.current = new
        upstream.sockets[upstream.sockets.index(old)] = new
        assert self._loop is not None
        self._loop.call_later(self.query_timeout, self._close_socket, old)
