"""Forwarding to upstream resolvers: questions out, replies back, bytes only.

The forwarder knows nothing of policy, cache or clients: it is given a Question,
asks it, and hands back ``done(question, reply, upstream)`` with the parsed reply, or
with None when no upstream answered within the query's time budget.

Each upstream has a pool of connected UDP sockets on random source ports; a socket
moves to a new port after about SOCKET_USES queries (a number drawn afresh for each
socket) or SOCKET_LIFETIME seconds, whichever comes first, so a port found by an
off-path attacker is soon gone. Every try gets a random ID on a randomly chosen
socket and the letters of its name in random case (DNS 0x20), and a reply is
accepted only from the upstream's address (the kernel filters connected sockets)
with the same ID and question, letter for letter, to any try of the question still
open (a slow upstream's answer is not thrown away because the next try has gone
out). An upstream whose replies keep coming back in the wrong case (CASE_MISSES of
them) does not keep case: it is asked without 0x20 from then on, logged once. A try
that times out moves to the next upstream; a truncated reply is retried over TCP,
and a failed TCP retry counts as a failed try. A question gets at most MAX_TRIES
tries. Answer records outside the question's CNAME chain are left out
(``outbound.parse_reply``) and counted.

Queries go out in batches: those decided in one turn of the event loop leave
together, on one socket of the pool chosen at random for that turn, in one
sendmmsg(2); replies are read with recvmmsg(2), as many as are waiting (plain
send and recv where those calls do not exist).

A tls:// or https:// upstream has no sockets of its own here: its tries go through a
SecureLink (edge/upstream_link.py) over one persistent connection, and one its
transport cannot carry fails at once (``try_failed``), so the next goes out without
waiting for the try timeout. Health, hold-down, failover and late replies are the same.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from resolver.core import outbound, wire
from resolver.core.endpoint import Endpoint
from resolver.core.errors import FormError
from resolver.core.flight import Question
from resolver.core.tcpframe import Framer, frame
from resolver.core.upstream_spec import SecureUpstream
from resolver.edge.mmsg import BATCH, ConnectedBatch, batching_available
from resolver.edge.upstream_link import SecureLink

POOL_SIZE = 8
SOCKET_USES = 128  # queries per socket on average before it is replaced by one on a new port
SOCKET_LIFETIME = 60.0  # seconds a socket is used at most before it is replaced
CASE_MISSES = 3  # replies in the wrong letter case before 0x20 is given up for an upstream
HOLD_DOWN = 5.0  # seconds an upstream that keeps failing is tried last
FAILURES_TO_HOLD = 3
READ_ROUNDS = 4  # full batches read from one socket per wake-up
REPLY_SLOT = 65536  # bytes per reply buffer: any UDP datagram fits
SWEEP = 0.05  # at most this late, a try that got no answer is given up
EXPIRY_GROUP = 0.001  # tries sent within this many seconds time out together
MAX_TRIES = 6  # upstream queries (UDP and TCP) one question may cost, whatever happens

Done = Callable[[Question, "outbound.Reply | None", str], None]


class Upstream:
    __slots__ = (
        "case_misses",
        "current",
        "endpoint",
        "failures",
        "held_until",
        "label",
        "link",
        "mix_case",
        "sent",
        "sockets",
        "timeouts",
    )

    def __init__(self, endpoint: Endpoint | SecureUpstream) -> None:
        self.endpoint = endpoint
        self.link: SecureLink | None = None  # tls:// and https:// upstreams: no UDP sockets
        self.label = str(endpoint)
        self.sockets: list[UpstreamSocket] = []
        self.current: UpstreamSocket | None = None  # the socket this turn's queries use
        self.failures = 0
        self.held_until = 0.0
        self.mix_case = True  # 0x20: until its replies show it does not keep case
        self.case_misses = 0  # replies with the right ID in the wrong case
        self.sent = 0  # UDP tries sent to it (read by /metrics)
        self.timeouts = 0  # of those, the ones that timed out


class Flight:
    """One question in flight: the forwarder's state for it (tries, timers, budget)."""

    __slots__ = (
        "deadline",
        "number",
        "order",
        "question",
        "sent",
        "started",
        "timer",
        "tries",
    )

    def __init__(
        self, question: Question, order: list[Upstream], started: float, deadline: float
    ) -> None:
        self.question = question
        self.order = order
        self.started = started
        self.deadline = deadline
        self.tries = 0
        self.number = 0  # of the try in flight (the forwarder's count)
        # Every try still open: (socket, or link to an encrypted upstream, ID). A reply to
        # any of them answers.
        self.sent: list[tuple[UpstreamSocket | SecureLink, int]] = []
        self.timer: asyncio.TimerHandle | None = None


class UpstreamSocket:
    """One connected UDP socket to one upstream; replies are matched by ID and question."""

    __slots__ = (
        "closed",
        "expires",
        "fd",
        "forwarder",
        "limit",
        "outbox",
        "pending",
        "retired",
        "sock",
        "upstream",
        "uses",
    )

    def __init__(
        self, forwarder: Forwarder, upstream: Upstream, sock: socket.socket, expires: float
    ) -> None:
        self.forwarder = forwarder
        self.upstream = upstream
        self.sock = sock
        self.fd = sock.fileno()
        # Open queries by ID: the flight, and the question as sent in mixed case (b"" for
        # a query without 0x20).
        self.pending: dict[int, tuple[Flight, bytes]] = {}
        self.outbox: list[bytes] = []  # queries of this turn, sent together
        self.uses = 0
        # Replaced after ``limit`` queries (drawn in [USES/2, 3*USES/2): not predictable
        # from the count) or at ``expires`` (monotonic seconds), whichever comes first.
        self.limit = SOCKET_USES // 2 + outbound.random_below(SOCKET_USES)
        self.expires = expires
        self.retired = False  # replaced: takes the replies still due, sends nothing more
        self.closed = False

    def received(self, data: bytes) -> None:
        qid = outbound.reply_qid(data)
        entry = self.pending.get(qid)
        if entry is None:
            self.forwarder.stats.unexpected += 1
            return
        flight, sent = entry
        try:
            reply = outbound.parse_reply(data, qid, flight.question.query.question, sent)
        except outbound.CaseMismatch:
            self.forwarder.case_mismatch(flight, self.upstream)
            return
        except FormError:
            self.forwarder.stats.unexpected += 1  # spoofed or broken: keep waiting for the real one
            return
        self.forwarder.on_reply(flight, reply, self, qid)

    def send(self, flight: Flight) -> None:
        qid = outbound.random_id()
        while qid in self.pending:
            qid = outbound.random_id()
        query = flight.question.query
        sent = outbound.mix_case(query.question) if self.upstream.mix_case else b""
        flight.sent.append((self, qid))
        self.pending[qid] = (flight, sent)
        self.uses += 1
        self.outbox.append(outbound.build_upstream_query(query, qid, sent))
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
    tcp_failures: int = 0  # TCP retries that failed (each counts as a failed try)
    late_replies: int = 0  # answers to an earlier try, accepted after the next went out
    exhausted: int = 0  # questions given up after MAX_TRIES tries
    held_down: int = 0  # times an upstream was held down for failing
    case_mismatches: int = 0  # replies dropped for the letter case of the name (0x20)
    stripped: int = 0  # answer records left out of replies: not in the CNAME chain
    ports: int = 0  # UDP sockets opened (source ports used), the pools' first included
    encrypted_failures: int = 0  # tries a DoT or DoH transport could not carry (SecureLink)


class Forwarder:
    """Asks Questions of the upstreams; every question ends in one call of ``done``."""

    def __init__(
        self,
        endpoints: tuple[Endpoint | SecureUpstream, ...],
        try_timeout: float,
        query_timeout: float,
        log: Any = None,  # a structlog logger, for upstream_failed
        pool_size: int = POOL_SIZE,
    ) -> None:
        self.upstreams = [Upstream(e) for e in endpoints]
        self.try_timeout = try_timeout
        self.query_timeout = query_timeout
        self.log = log
        self.pool_size = pool_size
        # Where every question ends: its reply (or None) and the upstream that gave it.
        # The Dispatcher that owns this forwarder sets it.
        self.done: Done = _nowhere
        self.stats = ForwarderStats()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._outgoing: list[UpstreamSocket] = []  # sockets with queries to send this turn
        # Tries in the order they were sent, grouped by deadline (those sent within
        # EXPIRY_GROUP seconds share the first one's): (deadline, try numbers); and the
        # tries not yet answered by number. One timer sweeps them instead of a timer per
        # query. The queue holds only numbers, so an answered query is freed at once
        # (kept alive for the whole timeout, queries would pile up for the collector).
        self._expiry: deque[tuple[float, list[int]]] = deque()
        self._open_tries: dict[int, Flight] = {}
        self._try_number = 0
        self._sweeper: asyncio.TimerHandle | None = None
        self._batch = ConnectedBatch(slot=REPLY_SLOT) if batching_available() else None
        self._retired: set[UpstreamSocket] = set()  # replaced, open for replies still due

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        for upstream in self.upstreams:
            if isinstance(upstream.endpoint, SecureUpstream):
                upstream.link = SecureLink(self, upstream, upstream.endpoint)
                continue
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
        us = UpstreamSocket(self, upstream, sock, time.monotonic() + SOCKET_LIFETIME)
        self._loop.add_reader(us.fd, self._readable, us)
        self.stats.ports += 1
        return us

    def _close_socket(self, us: UpstreamSocket) -> None:
        if us.closed:
            return
        us.closed = True
        self._retired.discard(us)
        if self._loop is not None and us.sock.fileno() >= 0:
            self._loop.remove_reader(us.fd)
        us.sock.close()

    def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        for upstream in self.upstreams:
            if upstream.link is not None:
                upstream.link.transport.close()
            for sock in upstream.sockets:
                self._close_socket(sock)
        for sock in list(self._retired):
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
                if len(datagrams) < BATCH or us.closed:  # closed: its fd may be another's now
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
            if us.uses >= us.limit and not us.retired:
                self._replace(us.upstream, us)  # between turns: a turn's queries leave together

    @staticmethod
    def _send_each(sock: socket.socket, datagrams: list[bytes]) -> int:
        for sent, datagram in enumerate(datagrams):
            try:
                sock.send(datagram)
            except OSError:
                return sent
        return len(datagrams)

    # --- the question life cycle ---------------------------------------------

    def ask(self, question: Question) -> None:
        """Ask ``question`` upstream; its end comes through ``done``."""
        now = time.monotonic()
        if not self.upstreams:
            self.stats.failed += 1
            self.done(question, None, "")
            return
        ups = self.upstreams
        order = ups if len(ups) == 1 else self._order(now)
        flight = Flight(question, order, now, now + self.query_timeout)
        self._try(flight, now)

    def _order(self, now: float) -> list[Upstream]:
        """Upstreams in configured order, the ones held down for failing moved last."""
        ups = self.upstreams
        if len(ups) == 1 or all(u.held_until <= now for u in ups):
            return ups
        return [u for u in ups if u.held_until <= now] + [u for u in ups if u.held_until > now]

    def _try(self, flight: Flight, now: float) -> None:
        remaining = flight.deadline - now
        if remaining <= 0.001 or flight.tries >= MAX_TRIES:
            if flight.tries >= MAX_TRIES:
                self.stats.exhausted += 1
            self._fail(flight)
            return
        upstream = flight.order[flight.tries % len(flight.order)]
        flight.tries += 1
        sock = upstream.link or upstream.current
        if sock is None:
            sockets = upstream.sockets
            sock = sockets[outbound.random_below(len(sockets))]
            if sock.expires <= now:  # used too long: a new port before it is used again
                sock = self._replace(upstream, sock)
            upstream.current = sock
        sock.send(flight)
        self.stats.sent += 1
        upstream.sent += 1
        if remaining < self.try_timeout:  # the question's last try: its own timer
            assert self._loop is not None
            flight.timer = self._loop.call_later(remaining, self._timeout, flight)
            return
        self._try_number = number = self._try_number + 1
        flight.number = number
        self._open_tries[number] = flight
        expiry = self._expiry
        deadline = now + self.try_timeout
        if expiry and deadline - expiry[-1][0] < EXPIRY_GROUP:
            expiry[-1][1].append(number)
        else:
            expiry.append((deadline, [number]))
        if self._sweeper is None:
            assert self._loop is not None
            self._sweeper = self._loop.call_later(self.try_timeout, self._sweep)

    def _sweep(self) -> None:
        """Time out the tries whose deadline has passed without an answer."""
        self._sweeper = None
        now = time.monotonic()
        expiry, open_tries = self._expiry, self._open_tries
        while expiry and expiry[0][0] <= now:
            # Most tries are answered: the open ones are found with a set operation.
            for number in sorted(open_tries.keys() & expiry.popleft()[1]):
                flight = open_tries.pop(number, None)
                if flight is not None:  # no answer yet (a timeout may answer another)
                    self._timeout(flight)
        if expiry:
            assert self._loop is not None
            wait = max(expiry[0][0] - now, SWEEP)
            self._sweeper = self._loop.call_later(wait, self._sweep)

    def _timeout(self, flight: Flight) -> None:
        """The try in flight got no answer in time: the next one goes out. The timed-out
        try stays open: its answer is still taken if it comes before the question ends."""
        flight.timer = None
        self.stats.timeouts += 1
        if flight.sent:
            upstream = flight.sent[-1][0].upstream
            upstream.timeouts += 1
            self._note_failure(upstream, "timeout")
        self._try(flight, time.monotonic())

    def _note_failure(self, upstream: Upstream, reason: str) -> None:
        upstream.failures += 1
        now = time.monotonic()
        if upstream.failures >= FAILURES_TO_HOLD and upstream.held_until <= now:
            upstream.held_until = now + HOLD_DOWN
            self.stats.held_down += 1
            if self.log is not None:
                self.log.warning("upstream_failed", upstream=upstream.label, reason=reason)

    def case_mismatch(self, flight: Flight, upstream: Upstream) -> None:
        """A reply with the right ID whose name is not in the case sent: dropped (forged,
        or the upstream does not keep case). After CASE_MISSES of them the upstream is
        asked without 0x20, and this question goes on at once."""
        self.stats.case_mismatches += 1
        if not upstream.mix_case:
            return  # an answer to a try sent before 0x20 was given up
        upstream.case_misses += 1
        if upstream.case_misses < CASE_MISSES:
            return
        upstream.mix_case = False
        if self.log is not None:
            self.log.warning(
                "upstream_case_not_kept",
                upstream=upstream.label,
                replies=upstream.case_misses,
                detail="its replies change the letter case of the question: asked without 0x20",
            )
        self._open_tries.pop(flight.number, None)  # the try in flight ends here
        if flight.timer is not None:
            flight.timer.cancel()
            flight.timer = None
        self._try(flight, time.monotonic())

    def on_reply(
        self, flight: Flight, reply: outbound.Reply, sock: UpstreamSocket | SecureLink, qid: int
    ) -> None:
        if flight.sent[-1] != (sock, qid):
            self.stats.late_replies += 1  # an earlier try's answer: taken all the same
        self.stats.stripped += reply.stripped
        upstream = sock.upstream
        self._close_tries(flight)
        if reply.flags & wire.TC:
            self._spawn(self._retry_tcp(flight, upstream))
            return
        if reply.rcode in (wire.SERVFAIL, wire.REFUSED):
            # A failure even with no other upstream to ask (the client then gets this
            # answer): an upstream that refuses everything is reported as failing.
            self._note_failure(upstream, "servfail" if reply.rcode == wire.SERVFAIL else "refused")
            if flight.tries < len(flight.order):
                self._try(flight, time.monotonic())
                return
        else:
            upstream.failures = 0
        self.done(flight.question, reply, upstream.label)

    def _close_tries(self, flight: Flight) -> None:
        """Forget every open try of ``flight``: no more replies are taken for it."""
        self._open_tries.pop(flight.number, None)
        if flight.timer is not None:
            flight.timer.cancel()
            flight.timer = None
        for sock, qid in flight.sent:
            entry = sock.pending.get(qid)
            if entry is not None and entry[0] is flight:
                del sock.pending[qid]
                if sock.retired and not sock.pending and not sock.outbox:
                    self._close_socket(sock)  # nothing more is due on the old port
        flight.sent.clear()

    def try_failed(self, flight: Flight, link: SecureLink, qid: int, reason: str) -> None:
        """A try over TLS or HTTPS that cannot be answered: failed like a timeout, and if
        it is the question's current try, the next goes out now (after the try timeout
        when there is no other upstream)."""
        current = flight.sent[-1] == (link, qid)
        del link.pending[qid]
        flight.sent.remove((link, qid))
        self.stats.encrypted_failures += 1
        self._note_failure(link.upstream, reason)
        if current:
            self._open_tries.pop(flight.number, None)
            if flight.timer is not None:
                flight.timer.cancel()
                flight.timer = None
            self._after_tcp_failure(flight)

    def _fail(self, flight: Flight) -> None:
        self._close_tries(flight)
        self.stats.failed += 1
        self.done(flight.question, None, "")

    # --- rare paths: TCP retry, socket rotation ----------------------------

    def _spawn(self, coro: object) -> None:
        task = asyncio.ensure_future(coro)  # type: ignore[call-overload]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _retry_tcp(self, flight: Flight, upstream: Upstream) -> None:
        """A truncated reply: the same question over TCP to the same upstream. A failure
        is a failed try like a timeout (it never loops back to UDP at once)."""
        self.stats.tcp_retries += 1
        flight.tries += 1  # the TCP query counts against the question's tries
        remaining = flight.deadline - time.monotonic()
        try:
            reply = await asyncio.wait_for(
                self._query_tcp(flight.question.query, upstream), max(remaining, 0.001)
            )
        except (OSError, TimeoutError, FormError, asyncio.IncompleteReadError):
            self.stats.tcp_failures += 1
            self._note_failure(upstream, "tcp")
            self._after_tcp_failure(flight)
            return
        upstream.failures = 0
        self.stats.stripped += reply.stripped
        self.done(flight.question, reply, upstream.label)

    def _after_tcp_failure(self, flight: Flight) -> None:
        """The next try goes to the next upstream at once; with no other upstream, it
        waits for the try timeout (back-off) instead of asking the same one again."""
        if len(flight.order) > 1:
            self._try(flight, time.monotonic())
            return
        now = time.monotonic()
        wait = min(self.try_timeout, max(flight.deadline - now, 0.0))
        assert self._loop is not None
        flight.timer = self._loop.call_later(wait, self._try_again, flight)

    def _try_again(self, flight: Flight) -> None:
        flight.timer = None
        self._try(flight, time.monotonic())

    async def _query_tcp(self, query: wire.Query, upstream: Upstream) -> outbound.Reply:
        e = upstream.endpoint
        reader, writer = await asyncio.open_connection(e.host, e.port)
        try:
            qid = outbound.random_id()
            writer.write(frame(outbound.build_upstream_query(query, qid)))
            framer = Framer()
            while True:
                chunk = await reader.read(65537)
                if not chunk:
                    raise FormError("upstream closed the connection")
                for message in framer.feed(chunk):
                    return outbound.parse_reply(message, qid, query.question)
        finally:
            writer.close()

    def _replace(self, upstream: Upstream, old: UpstreamSocket) -> UpstreamSocket:
        """Move ``upstream``'s socket ``old`` to a new random port; the socket to use.
        The old one takes the replies still due to it, and is closed once none are (at
        the latest when the query budget has passed)."""
        try:
            new = self._open(upstream)
        except OSError:
            return old  # keep using the old port; the next use tries again
        old.retired = True
        if upstream.current is old:
            upstream.current = new
        upstream.sockets[upstream.sockets.index(old)] = new
        if not old.pending and not old.outbox:
            self._close_socket(old)
        else:
            self._retired.add(old)
            assert self._loop is not None
            self._loop.call_later(self.query_timeout + SWEEP, self._close_socket, old)
        return new


def _nowhere(question: Question, reply: outbound.Reply | None, upstream: str) -> None:
    raise RuntimeError("the forwarder's done callback was never set")
