"""How each query was answered: the outcomes, their counters, and what the query log is
told (pure)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

from resolver.core import wire
from resolver.core.verdict import Verdict


class Outcome(enum.IntEnum):
    """How a query was answered: drives metrics labels and query-log fields."""

    BLOCKED = 1
    CACHED = 2
    FORWARDED = 3
    REFUSED = 4
    FORMERR = 5
    NOTIMP = 6
    SERVFAIL = 7
    DROPPED = 8
    LOCAL = 9  # answered here for resolver.arpa (RFC 9462), never forwarded
    STALE = 10  # no upstream answered: an expired cache answer served (RFC 8767)


@dataclass(slots=True)
class Counters:
    """Plain integer counters (one per Outcome, by its lower-case name), read by /metrics.

    ``blocked`` and ``cached`` count the answers decided on the full path: a replayed
    answer is counted in its replay entry's tally only, and ``Engine.outcomes`` adds them.
    """

    blocked: int = 0
    cached: int = 0
    forwarded: int = 0
    refused: int = 0
    formerr: int = 0
    notimp: int = 0
    servfail: int = 0
    dropped: int = 0
    local: int = 0
    stale: int = 0
    refused_clients: int = 0
    responses_ignored: int = 0
    coalesced: int = 0  # queries that joined a question already asked upstream
    chased: int = 0  # policy CNAMEs followed to their target
    cache_misses: int = 0  # queries not in the cache, asked upstream

    def by_outcome(self) -> dict[Outcome, int]:
        return {o: getattr(self, o.name.lower()) for o in Outcome}


class QueryLog(Protocol):
    def record(
        self,
        client: str,
        query: wire.Query,
        outcome: Outcome,
        verdict: Verdict | None,
        rcode: int,
        upstream: str = "",
        latency: float = 0.0,
    ) -> None: ...
