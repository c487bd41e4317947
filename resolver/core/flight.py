"""Queries that wait: who waits for an answer, and the questions asked upstream for them.

The engine answers most queries at once. The rest wait: a cache miss waits for its
question to be answered upstream (identical questions in flight share one), and a
query whose policy answer is a CNAME waits while the target is resolved. These records
carry that state and nothing else: no sockets, no timers. A waiter's ``sink`` is
whatever the network edge gave to send its reply with.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from resolver.core.chain import Chase
    from resolver.core.wire import Query


class ReplySink(Protocol):
    """Where a waiter's reply goes: a UDP listener or a TCP connection."""

    def send(self, waiter: Waiter, reply: bytes) -> None: ...


class Waiter:
    """One query waiting for its answer: the question, where the reply goes, and, for a
    step of a followed CNAME, the chase it belongs to."""

    __slots__ = ("addr", "chase", "client", "query", "sink", "started", "tcp")

    def __init__(
        self,
        query: Query,
        sink: ReplySink,
        addr: object,
        client: str,
        tcp: bool,
        started: float,
        chase: Chase | None = None,
    ) -> None:
        self.query = query  # for a chase step, the question about the CNAME target
        self.sink = sink
        self.addr = addr  # the client's address as the transport needs it (UDP), or None
        self.client = client  # the client's address as text
        self.tcp = tcp
        self.started = started  # monotonic seconds when the client's query arrived
        self.chase = chase


class Question:
    """One question asked upstream, and every waiter its answer completes."""

    __slots__ = ("generation", "key", "query", "waiters")

    def __init__(self, query: Query, waiter: Waiter, generation: int, key: bytes) -> None:
        self.key = key  # query.cache_key
        self.query = query
        self.waiters = [waiter]
        # The engine's policy generation when it was asked: while it is unchanged, the
        # verdicts its waiters were decided with still hold.
        self.generation = generation


class Work:
    """What the engine decided when a question completed: replies to send and further
    questions to ask (the next step of a followed CNAME)."""

    __slots__ = ("asks", "sends")

    def __init__(self) -> None:
        self.sends: list[tuple[Waiter, bytes]] = []
        self.asks: list[Question] = []
