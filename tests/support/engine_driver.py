"""Drive the engine's waiting half by hand: a query asked upstream and its answer."""

from __future__ import annotations

from resolver.core import wire
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
    reply: wire.Reply | None,
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
