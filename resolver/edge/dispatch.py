"""Where client queries that must wait meet the forwarder.

A listener answers what ``Engine.handle`` answers at once; a query that must wait (a
cache miss, or a policy CNAME to follow) goes to ``Dispatcher.wait``. The dispatcher
makes it a Waiter, lets the engine decide what to ask upstream, and asks it. When the
forwarder ends a question (``answered``: a reply, or None when no upstream answered),
the engine decides every waiter's reply, and the dispatcher sends them through their
sinks and asks whatever the engine needs next.

    listener -> Engine.handle -> Dispatcher.wait -> Engine.ask / Engine.follow
             -> Forwarder.ask ... Forwarder.done = Dispatcher.answered
             -> Engine.complete -> Waiter.sink.send
"""

from __future__ import annotations

from time import monotonic

from resolver.core import outbound, wire
from resolver.core.chain import Chase
from resolver.core.engine import Engine
from resolver.core.flight import Question, ReplySink, Waiter, Work
from resolver.edge.faults import Faults
from resolver.edge.upstream import Forwarder

OVERLOADED_TEXT = "too many questions waiting for an upstream"


class Dispatcher:
    def __init__(
        self, engine: Engine, forwarder: Forwarder, faults: Faults, max_inflight: int = 0
    ) -> None:
        self.engine = engine
        self.forwarder = forwarder
        self.faults = faults
        self.max_inflight = max_inflight  # questions waiting for an upstream at most; 0: no cap
        self.overloaded = 0  # queries answered SERVFAIL at once: max_inflight were waiting
        forwarder.done = self.answered

    async def start(self) -> None:
        await self.forwarder.start()

    def close(self) -> None:
        self.forwarder.close()

    @property
    def busy(self) -> int:
        """Questions waiting for an upstream."""
        return len(self.engine.inflight)

    def wait(
        self, pending: wire.Query | Chase, sink: ReplySink, addr: object, client: str, tcp: bool
    ) -> None:
        """A query the engine could not answer at once: ask upstream, or follow the CNAME.
        With max_inflight questions out already, a new miss gets SERVFAIL at once (one
        joining a question in flight costs nothing and waits)."""
        if isinstance(pending, Chase):
            waiter = Waiter(pending.query, sink, addr, client, tcp, monotonic())
            self._run(self.engine.follow(pending, waiter, monotonic()))
            return
        inflight = self.engine.inflight
        cap = self.max_inflight
        if cap and len(inflight) >= cap and pending.cache_key not in inflight:
            self._overloaded(pending, sink, addr, client, tcp)
            return
        waiter = Waiter(pending, sink, addr, client, tcp, monotonic())
        question = self.engine.ask(waiter)
        if question is not None:
            self.forwarder.ask(question)

    def _overloaded(
        self, query: wire.Query, sink: ReplySink, addr: object, client: str, tcp: bool
    ) -> None:
        self.overloaded += 1
        self.engine.counters.servfail += 1
        reply = wire.build_reply(query, wire.SERVFAIL, ede=wire.build_ede(0, OVERLOADED_TEXT))
        try:
            sink.send(Waiter(query, sink, addr, client, tcp, monotonic()), reply)
        except Exception as exc:
            self.faults.report("send", exc)

    def answered(self, question: Question, reply: outbound.Reply | None, upstream: str) -> None:
        """The forwarder ended ``question``: every waiter's reply goes out."""
        try:
            work = self.engine.complete(question, reply, upstream, monotonic())
        except Exception as exc:
            self.faults.report("complete", exc)
            return
        self._run(work)

    def _run(self, work: Work) -> None:
        for waiter, data in work.sends:
            try:
                waiter.sink.send(waiter, data)
            except Exception as exc:
                self.faults.report("send", exc)
        for question in work.asks:
            self.forwarder.ask(question)
