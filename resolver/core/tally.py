"""Counting answers cheaply: tallies by query type, rcode, policy and action, and an
answer-time histogram (pure: the engine counts, /metrics reads the plain integers)."""

from __future__ import annotations

from bisect import bisect_left
from typing import TYPE_CHECKING

from resolver.core import wire
from resolver.core.errors import FormError
from resolver.core.verdict import Verdict

if TYPE_CHECKING:
    from resolver.core.flight import Waiter

# Query types counted under their own name in the answer counts; any other counts as 0
# ("other"), so the label set stays small whatever clients ask.
COUNTED_TYPES = frozenset(
    {
        wire.TYPE_A,
        wire.TYPE_NS,
        wire.TYPE_CNAME,
        wire.TYPE_SOA,
        12,  # PTR
        15,  # MX
        16,  # TXT
        wire.TYPE_AAAA,
        33,  # SRV
        35,  # NAPTR
        wire.TYPE_DS,
        48,  # DNSKEY
        64,  # SVCB
        65,  # HTTPS
        wire.TYPE_ANY,
        257,  # CAA
    }
)
NO_ANSWER = -1  # the rcode of a tally whose queries got no answer, or one counted later
TallyKey = tuple[int, int, str, str]  # query type (0: other), rcode, policy id, action label


class Tally:
    """Queries counted together: one query type, rcode, policy and action, by transport.

    A replayed answer increments the tally it was built with, so the fast path counts
    by type, rcode and policy at the cost of one attribute increment; /metrics groups
    the tallies at scrape time.
    """

    __slots__ = ("tcp", "udp")

    def __init__(self) -> None:
        self.udp = 0
        self.tcp = 0


# Upper bounds (seconds) of the answer-time histogram's buckets, then +Inf.
LATENCY_BOUNDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Latency:
    """Answer times of queries that waited: a count per bucket (not cumulative) and the sum."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BOUNDS) + 1)
        self.total = 0.0

    def add(self, seconds: float) -> None:
        self.counts[bisect_left(LATENCY_BOUNDS, seconds)] += 1
        self.total += seconds


LiveKey = tuple[int, int, Verdict | None]  # query type (0: other), rcode, verdict (identity)


class Tallies:
    """Every tally, by query type, rcode and verdict (hashed by identity: cheap), created
    as answers of a new kind are counted. Replayed answers have tallies of their own, so
    the engine can tell how many it replayed. ``settle`` (at a reload) folds them all into
    totals by policy id and action, so the verdicts of old policies are not kept."""

    def __init__(self) -> None:
        self.live: dict[LiveKey, Tally] = {}
        self.replayed: dict[LiveKey, Tally] = {}
        self.settled: dict[TallyKey, list[int]] = {}  # [UDP, TCP] by key
        self.settled_replays = (0, 0)  # blocked, cached

    def answer(self, qtype: int, rcode: int, verdict: Verdict | None, tcp: bool) -> Tally:
        """Count an answer decided on the full path; the tally its replays count in."""
        key = (qtype if qtype in COUNTED_TYPES else 0, rcode, verdict)
        self._add(key, tcp)
        replays = self.replayed.get(key)
        if replays is None:
            replays = self.replayed[key] = Tally()
        return replays

    def count(self, qtype: int, rcode: int, verdict: Verdict | None, tcp: bool) -> None:
        """Count one answer (rcode NO_ANSWER: a block without one, or one answered later)."""
        self._add((qtype if qtype in COUNTED_TYPES else 0, rcode, verdict), tcp)

    def _add(self, key: LiveKey, tcp: bool) -> None:
        tally = self.live.get(key)
        if tally is None:
            tally = self.live[key] = Tally()
        if tcp:
            tally.tcp += 1
        else:
            tally.udp += 1

    def count_sends(self, sends: list[tuple[Waiter, bytes]]) -> None:
        """Count the answers of queries that waited (the blocks among them are counted
        where the policy was applied)."""
        live = self.live
        for waiter, reply in sends:
            qtype = waiter.query.qtype
            key = (qtype if qtype in COUNTED_TYPES else 0, reply[3] & 0xF, None)
            tally = live.get(key)
            if tally is None:
                tally = live[key] = Tally()
            if waiter.tcp:
                tally.tcp += 1
            else:
                tally.udp += 1

    def count_reply(self, reply: bytes | None, tcp: bool) -> None:
        """Count an error answer built from a packet (its question, if any, gives the type)."""
        if reply is None or len(reply) < 12:
            return
        qtype = 0
        if reply[4:6] == b"\x00\x01":
            try:
                pos = wire.skip_name(reply, 12)
                qtype = reply[pos] << 8 | reply[pos + 1]
            except (FormError, IndexError):
                pass
        self.count(qtype, reply[3] & 0xF, None, tcp)

    def replays(self) -> tuple[int, int]:
        """Answers replayed so far: blocked, cached."""
        blocked, cached = self.settled_replays
        for (_, _, verdict), tally in list(self.replayed.items()):
            if verdict is None:
                cached += tally.udp + tally.tcp
            else:
                blocked += tally.udp + tally.tcp
        return blocked, cached

    def settle(self) -> None:
        """Fold every tally into the totals by name. At a reload: the replay entries that
        count in the replay tallies are dropped with the old policy."""
        self.settled_replays = self.replays()
        for key, udp, tcp in self._named():
            total = self.settled.setdefault(key, [0, 0])
            total[0] += udp
            total[1] += tcp
        self.live = {}
        self.replayed = {}

    def rows(self) -> list[tuple[TallyKey, int, int]]:
        """(key, UDP count, TCP count) of every tally (a key may come more than once)."""
        return [(key, udp, tcp) for key, (udp, tcp) in self.settled.items()] + self._named()

    def _named(self) -> list[tuple[TallyKey, int, int]]:
        rows = []
        for (qtype, rcode, verdict), tally in [*self.live.items(), *self.replayed.items()]:
            policy = verdict.policy_id if verdict is not None else ""
            action = verdict.action.label if verdict is not None else ""
            rows.append(((qtype, rcode, policy, action), tally.udp, tally.tcp))
        return rows
