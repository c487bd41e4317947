"""Asking one DNS server many questions at a paced rate: UDP over several sockets, TCP
pipelined over a few connections (RFC 7766), every query bounded by a timeout.

Queries are built by hand and matched to answers by ID and question, so thousands a
second cost little: a few UDP sockets, each with its own ID space; a few TCP
connections, each carrying many queries in flight, written out once per turn of the
event loop. A connected UDP socket learns of a closed port (ICMP) at once: every query
waiting on it fails with the error instead of waiting for its timeout.
"""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from resolver.core.endpoint import Endpoint
from resolver.core.errors import FormError
from resolver.tools.dnsanswer import Outcome, answer_id, answers_question, build_query, parse_answer

MAX_IN_FLIGHT = 4096
UDP_BUFFER = 1 << 20
T = TypeVar("T")
TCP_MAX_FRAME = 65535


class _Waiting:
    """Queries in flight on one socket or connection, by ID."""

    def __init__(self) -> None:
        self.pending: dict[int, tuple[bytes, asyncio.Future[bytes]]] = {}
        self._next = random.randrange(65536)

    def add(
        self, asked: bytes, loop: asyncio.AbstractEventLoop
    ) -> tuple[int, asyncio.Future[bytes]]:
        if len(self.pending) >= 65536:
            raise OSError("no query ID free")
        qid = self._next
        while qid in self.pending:
            qid = (qid + 1) & 0xFFFF
        self._next = (qid + 1) & 0xFFFF
        future: asyncio.Future[bytes] = loop.create_future()
        self.pending[qid] = (asked, future)
        return qid, future

    def deliver(self, data: bytes) -> None:
        item = self.pending.get(answer_id(data))
        if item is None or not answers_question(data, item[0]):
            return  # late, or not ours
        del self.pending[answer_id(data)]
        if not item[1].done():
            item[1].set_result(data)

    def forget(self, qid: int, future: asyncio.Future[bytes]) -> None:
        item = self.pending.get(qid)
        if item is not None and item[1] is future:
            del self.pending[qid]

    def fail(self, exc: BaseException) -> None:
        pending, self.pending = self.pending, {}
        for _, future in pending.values():
            if not future.done():
                future.set_exception(exc)


class _Udp(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.waiting = _Waiting()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)  # uvloop's: not a subclass

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.waiting.deliver(data)

    def error_received(self, exc: Exception) -> None:
        self.waiting.fail(exc)  # a closed port (ICMP): every query here would meet it

    def connection_lost(self, exc: Exception | None) -> None:
        self.waiting.fail(exc or ConnectionError("socket closed"))


class _Tcp(asyncio.Protocol):
    """One TCP connection with many queries in flight; writes go out once per loop turn."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.waiting = _Waiting()
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._buffer = bytearray()
        self._out: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def send(self, query: bytes) -> None:
        if not self._out:
            self.loop.call_soon(self._flush)
        self._out.append(len(query).to_bytes(2, "big") + query)

    def _flush(self) -> None:
        out, self._out = self._out, []
        if self.transport is not None and not self.closed and out:
            self.transport.write(b"".join(out))

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        while len(buffer) >= 2:
            size = (buffer[0] << 8) | buffer[1]
            if len(buffer) < 2 + size:
                break
            message = bytes(buffer[2 : 2 + size])
            del buffer[: 2 + size]
            self.waiting.deliver(message)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.waiting.fail(ConnectionResetError("the server closed the TCP connection"))


class Client:
    """Questions to one server; ``ask`` returns an Outcome, never raises for the network."""

    def __init__(self, server: Endpoint, udp_sockets: int = 4, tcp_connections: int = 4) -> None:
        self.server = server
        self.family = socket.AF_INET6 if ":" in server.host else socket.AF_INET
        self._udp: list[_Udp] = []
        self._udp_count = udp_sockets
        self._tcp: list[_Tcp | None] = [None] * tcp_connections
        self._connecting: list[asyncio.Future[_Tcp] | None] = [None] * tcp_connections
        self._turn = 0

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(self._udp_count):
            _, protocol = await loop.create_datagram_endpoint(
                _Udp, remote_addr=(self.server.host, self.server.port), family=self.family
            )
            self._udp.append(protocol)
            sock = protocol.transport.get_extra_info("socket") if protocol.transport else None
            if sock is not None:
                try:  # room for a burst of answers while the loop is busy
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_BUFFER)
                except OSError:
                    pass

    def close(self) -> None:
        for udp in self._udp:
            if udp.transport is not None:
                udp.transport.close()
        for tcp in self._tcp:
            if tcp is not None and tcp.transport is not None:
                tcp.transport.close()

    async def _connection(self, slot: int, timeout: float) -> _Tcp:
        tcp = self._tcp[slot]
        if tcp is not None and not tcp.closed:
            return tcp
        pending = self._connecting[slot]
        if pending is None:
            loop = asyncio.get_running_loop()
            pending = self._connecting[slot] = loop.create_future()
            try:
                _, made = await asyncio.wait_for(
                    loop.create_connection(
                        lambda: _Tcp(loop), self.server.host, self.server.port, family=self.family
                    ),
                    timeout,
                )
            except asyncio.CancelledError:
                pending.cancel()
                raise
            except Exception as exc:
                pending.set_exception(exc)
                pending.exception()  # retrieved: those waiting on it see it all the same
                raise
            finally:
                self._connecting[slot] = None
            self._tcp[slot] = made
            pending.set_result(made)
            return made
        return await asyncio.shield(pending)

    async def ask(self, asked: bytes, transport: str, timeout: float, tries: int) -> Outcome:
        """One question (from dnsanswer.question), up to ``tries`` attempts when no answer
        comes; once more over TCP when the connection closes under it."""
        loop = asyncio.get_running_loop()
        outcome = Outcome(timeout=True)
        attempts = 0
        reset = False
        while attempts < tries:
            attempts += 1
            self._turn += 1
            started = loop.time()
            try:
                data = await self._exchange(asked, transport, timeout)
            except TimeoutError:
                outcome = Outcome(timeout=True, seconds=loop.time() - started)
                continue
            except ConnectionResetError as exc:
                outcome = Outcome(error=_reason(exc), seconds=loop.time() - started)
                if not reset:  # the server closed an idle connection: once more, anew
                    reset = True
                    attempts -= 1
                continue
            except OSError as exc:
                return Outcome(error=_reason(exc), seconds=loop.time() - started)
            try:
                return Outcome(parse_answer(data), seconds=loop.time() - started)
            except FormError as exc:
                return Outcome(error=f"malformed answer: {exc}", seconds=loop.time() - started)
        return outcome

    async def _exchange(self, asked: bytes, transport: str, timeout: float) -> bytes:
        loop = asyncio.get_running_loop()
        if transport == "udp":
            channel = self._udp[self._turn % len(self._udp)]
            waiting = channel.waiting
            qid, future = waiting.add(asked, loop)
            assert channel.transport is not None
            channel.transport.sendto(build_query(asked, qid))
        else:
            tcp = await self._connection(self._turn % len(self._tcp), timeout)
            waiting = tcp.waiting
            qid, future = waiting.add(asked, loop)
            tcp.send(build_query(asked, qid))
        timer = loop.call_later(timeout, _expire, future)
        try:
            return await future
        finally:
            timer.cancel()
            waiting.forget(qid, future)


def _expire(future: asyncio.Future[bytes]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (nothing listens there)"
    text = getattr(exc, "strerror", None) or str(exc)
    return text or type(exc).__name__


@dataclass
class Pace:
    qps: float
    in_flight: int


def pace_for(qps: float, timeout: float) -> Pace:
    """Queries a second, and how many may wait for an answer at once: enough for the rate
    at the timeout, within bounds."""
    return Pace(qps, max(64, min(MAX_IN_FLIGHT, int(qps * timeout * 2))))


async def paced(
    items: Iterator[T],
    run: Callable[[T], Coroutine[Any, Any, None]],
    pace: Pace,
    stop: Callable[[], bool],
) -> None:
    """Start ``run(item)`` for each item at its time (``qps``), at most ``in_flight`` at
    once, until ``stop()``; then wait for those started. Items not started stay in
    ``items``."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    tasks: set[asyncio.Task[None]] = set()
    count = 0
    free: list[asyncio.Future[None]] = []  # set when a job ends while the limit is reached

    def done(task: asyncio.Task[None]) -> None:
        tasks.discard(task)
        if free and not free[0].done():
            free[0].set_result(None)

    while not stop():
        item = next(items, None)
        if item is None:
            break
        delay = started + count / pace.qps - loop.time()
        if delay > 0.001:
            await asyncio.sleep(delay)
        while len(tasks) >= pace.in_flight:
            free[:] = [loop.create_future()]
            await free[0]
        task = loop.create_task(run(item))
        tasks.add(task)
        task.add_done_callback(done)
        count += 1
    if tasks:
        await asyncio.gather(*tasks)
