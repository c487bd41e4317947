"""Drive the engine's waiting half by hand: a query asked upstream and its answer."""

from __future__ import annotations

from resolver.core import outbound, wire
from resolver.core.chain import Chase
from resolver.core.engine import Engine
from resolver.core.flight import Waiter


class Replies:
    """A reply sink that keeps what it is sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[Waiter, bytes]] = []

    def send(self, waiter: Waiter, reply: bytes) -> None:
        self.sent.append((waiter, reply))


def forward(
    engine: Engine,
    query: wire.Query,
    reply: outbound.Reply | None,
    now: int,
    client: str = "127.0.0.1",
    tcp: bool = False,
) -> bytes | None:
    """Ask ``query`` upstream for ``client`` and complete it with ``reply`` (None: no
    upstream answered); the client's reply, or None when it gets none."""
    sink = Replies()
    waiter = Waiter(query, sink, None if tcp else (client, 53), client, tcp, float(now))
    question = engine.ask(waiter)
    assert question is not None, "an identical question is already in flight"
    work = engine.complete(question, reply, "upstream", float(now))
    assert not work.asks
    replies = [data for w, data in work.sends if w is waiter]
    return replies[0] if replies else None


def answer(engine: Engine, data: bytes, now: int, client: str = "127.0.0.1") -> object:
    """``Engine.handle`` for a UDP query; a followed CNAME that needs no upstream is
    followed to its reply (bytes). Anything else (a Query to ask, None) as it is."""
    result = engine.handle(data, client, now, False)
    if not isinstance(result, Chase):
        return result
    sink = Replies()
    waiter = Waiter(result.query, sink, (client, 53), client, False, float(now))
    work = engine.follow(result, waiter, float(now))
    assert not work.asks, "the CNAME's target is not in the cache"
    return work.sends[0][1] if work.sends else None
