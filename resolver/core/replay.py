"""Replies already built, replayed for the same query bytes.

Most traffic repeats the same questions, byte for byte. Keyed by the query bytes after
the ID, a repeat needs no parsing at all: a blocked answer is replayed as is, a cached
one is re-rendered at most once a second (its TTLs count down). A policy change retires
the whole table; retired tables are freed a slice at a time, never in one step.
"""

from __future__ import annotations

from itertools import islice

from resolver.core import cache as answers
from resolver.core import wire
from resolver.core.cache import Answer, Cache
from resolver.core.tally import Tally
from resolver.core.verdict import Verdict

REPLAY_LIMIT = 200_000  # repeated questions remembered; the oldest tenth goes when full
RELEASE_SLICE = 2_000  # retired replies freed per call of Replays.release (about 1 ms)


def udp_limit(query: wire.Query) -> int:
    """How large an answer over UDP may be: the client's EDNS size, at most ours."""
    return min(query.udp_size, wire.EDNS_UDP_SIZE) if query.edns else wire.MAX_UDP_NO_EDNS


class Replay:
    """A reply already built for exactly these query bytes (everything after the ID)."""

    __slots__ = ("answer", "body", "query", "second", "tally", "verdict")

    def __init__(
        self,
        body: bytes,
        query: wire.Query,
        verdict: Verdict | None,
        answer: Answer | None,
        second: int,
        tally: Tally,
    ) -> None:
        self.body = body
        self.query = query
        self.verdict = verdict  # a blocked answer's; None for a cached one
        self.answer = answer  # a cached answer's; None for a blocked one
        self.second = second  # when ``body`` was rendered
        self.tally = tally  # where a replay of it is counted

    def refresh(self, cache: Cache, now: int) -> bool:
        """Re-render a cached answer for a new second; False when the cache no longer
        serves it."""
        answer = self.answer
        if answer is None or not cache.holds(answer, now):
            return False
        self.body = answers.render(answer, self.query, now)[2:]
        self.second = now
        return True


class Replays:
    """The replay table (``table``, read on the hot path) and the retired ones."""

    __slots__ = ("retired", "table")

    def __init__(self) -> None:
        self.table: dict[bytes, Replay] = {}
        self.retired: list[dict[bytes, Replay]] = []  # tables being freed (``release``)

    def remember(
        self,
        data: bytes,
        reply: bytes,
        query: wire.Query,
        verdict: Verdict | None,
        answer: Answer | None,
        now: int,
        tally: Tally,
    ) -> None:
        """Keep ``reply`` to ``data`` for its repeats, when it suits both transports."""
        if len(reply) > udp_limit(query):
            return
        table = self.table
        if len(table) >= REPLAY_LIMIT:
            for key in list(islice(table, REPLAY_LIMIT // 10)):
                del table[key]
        table[data[2:]] = Replay(reply[2:], query, verdict, answer, now, tally)

    def retire(self) -> None:
        """Start a new table; the old one waits in ``retired`` to be freed a slice at a
        time: freed at once, 200,000 replies held up every query for a tenth of a second."""
        if self.table:
            self.retired.append(self.table)
        self.table = {}

    def release(self, budget: int = RELEASE_SLICE) -> bool:
        """Free up to ``budget`` retired replies; whether any are left."""
        retired = self.retired
        while retired and budget > 0:
            old = retired[-1]
            for _ in range(min(budget, len(old))):
                old.popitem()
                budget -= 1
            if not old:
                retired.pop()
        return bool(retired)
