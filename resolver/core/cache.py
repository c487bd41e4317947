"""The answer cache: upstream replies kept as wire bytes, bounded, LRU, TTL-aware (pure).

A hit costs a dict lookup and a few concatenations: the reply body is kept with the
offsets of its TTL fields, patched for the answer's age, and the client's ID, flags
and question (its own letter case) are put in front of it. (Repeated questions are
served from the engine's replay table, which renders each at most once a second.)
Expired answers are kept a while longer, to be served stale when no upstream answers.
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Final

from resolver.core import outbound, wire

COUNTS = struct.Struct("!HHHH")

# An answer made ready to serve (ID-less, OPT-less, with decrementing TTLs) is a plain
# tuple of ints and bytes. The cyclic garbage collector stops tracking such tuples, so
# however many answers the cache holds, its full collections never walk them (an object
# per answer made each of them cost about 0.5 us per cached answer). Its type is a tuple
# of any length, not one field by field: compiled (mypyc), a typed tuple is unpacked on
# the way in and built anew on the way out, and an answer must stay the very object the
# cache holds (``live``, the replay table). Readers name the field's type. Fields by index:
Answer = tuple[Any, ...]
EXPIRES: Final = 0  # monotonic second from which it is no longer served
STORED: Final = 1  # monotonic second it was received: TTLs count down from here
RCODE: Final = 2
FLAGS: Final = 3  # QR and RA set, AA cleared (a forwarder is not authoritative), AD and rcode kept
COUNTS_PLAIN: Final = 4  # QDCOUNT..ARCOUNT for a client without EDNS
COUNTS_EDNS: Final = 5  # the same with ARCOUNT 1 for our OPT record
TTLS: Final = 6  # (offset in BODY, TTL) of every record, clamped into [floor, ceiling]
BODY: Final = 7  # question and kept sections, TTLs as received (clamped)
KEY: Final = 8  # the cache key it is kept under


def make_answer(
    reply: outbound.Reply, now: int, ttl: int, floor: int, ceiling: int, key: bytes = b""
) -> Answer:
    """``reply`` made ready to serve for ``ttl`` seconds from ``now``."""
    counts = COUNTS.pack(1, reply.ancount, reply.nscount, 0)
    ttls = tuple(reply.ttls)
    body = reply.body
    if ttls and (reply.max_ttl > ceiling or (floor > 0 and any(t < floor for _, t in ttls))):
        ttls = tuple((offset, min(max(t, floor), ceiling)) for offset, t in ttls)
        body = _patch(body, 0, ttls)
    flags = wire.QR | wire.RA | (reply.flags & (wire.AD | 0xF))
    return (now + ttl, now, reply.rcode, flags, counts, counts[:6] + b"\x00\x01", ttls, body, key)


def _patch(body: bytes, age: int, ttls: tuple[tuple[int, int], ...]) -> bytes:
    buf = bytearray(body)
    for offset, ttl in ttls:
        struct.pack_into("!I", buf, offset, max(ttl - age, 0))
    return bytes(buf)


def render(answer: Answer, query: wire.Query, now: int) -> bytes:
    """The answer to ``query`` at time ``now`` (whole seconds)."""
    body: bytes = answer[BODY]
    stored: int = answer[STORED]
    ttls: tuple[tuple[int, int], ...] = answer[TTLS]
    if now != stored and ttls:
        body = _patch(body, now - stored, ttls)
    question = query.question
    if not body.startswith(question):  # the client's letter case differs
        body = question + body[len(question) :]
    flags = wire.U16.pack(answer[FLAGS] | (query.flags & (wire.RD | wire.CD)))
    if query.edns:
        counts: bytes = answer[COUNTS_EDNS]
        return query.qid + flags + counts + body + (OPT_DO if query.do else OPT)
    counts = answer[COUNTS_PLAIN]
    return query.qid + flags + counts + body


OPT = wire.build_opt(False)
OPT_DO = wire.build_opt(True)
STALE_TTL = 30  # RFC 8767 4: the TTL of a stale answer


def render_stale(answer: Answer, query: wire.Query, ede: bytes) -> bytes:
    """``answer`` served past its expiry (RFC 8767): every TTL STALE_TTL, and ``ede`` (an
    Extended DNS Error option) in the OPT record of a client with EDNS."""
    ttls: tuple[tuple[int, int], ...] = answer[TTLS]
    body = _patch(answer[BODY], 0, tuple((offset, STALE_TTL) for offset, _ in ttls))
    question = query.question
    if not body.startswith(question):
        body = question + body[len(question) :]
    flags = wire.U16.pack(answer[FLAGS] | (query.flags & (wire.RD | wire.CD)))
    if query.edns:
        counts: bytes = answer[COUNTS_EDNS]
        return query.qid + flags + counts + body + wire.build_opt(query.do, 0, ede)
    counts = answer[COUNTS_PLAIN]
    return query.qid + flags + counts + body


@dataclass(frozen=True, slots=True)
class CacheSettings:
    max_entries: int = 100_000
    min_ttl: int = 0
    max_ttl: int = 86_400
    # Seconds past its expiry an answer is kept, to be served stale when no upstream
    # answers (RFC 8767; 0: never). A day: the low end of the RFC's suggested one to
    # three, long enough to ride out an upstream outage overnight; the answer then goes
    # with TTL 30, so clients ask again soon. Expired answers still count against
    # max_entries and leave by LRU like any other.
    stale_max: int = 86_400


class Cache:
    """A bounded LRU map from Query.cache_key to Answer. An expired answer is not served
    but stays, for ``stale``, until ``stale_max`` seconds past its expiry (or evicted)."""

    def __init__(self, settings: CacheSettings) -> None:
        self.settings = settings
        self._entries: OrderedDict[bytes, Answer] = OrderedDict()
        self.evictions = 0  # answers dropped to make room (read by /metrics)
        # Marks the entry under a key recently used; KeyError when there is none.
        self.touch = self._entries.move_to_end
        # The entry under a key, expired or not, without marking it (None: none).
        self.entry = self._entries.get

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: bytes, now: int) -> Answer | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[EXPIRES] <= now:
            if entry[EXPIRES] + self.settings.stale_max <= now:
                del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry

    def stale(self, key: bytes, now: int) -> Answer | None:
        """The answer under ``key`` if it has expired, but less than ``stale_max`` seconds
        ago: to serve when no upstream answers. Marks it recently used."""
        entry = self._entries.get(key)
        if entry is None or entry[EXPIRES] > now:
            return None
        if entry[EXPIRES] + self.settings.stale_max <= now:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry

    def live(self, answer: Answer, now: int) -> bool:
        """Whether ``answer`` is still served: not expired, not replaced, not evicted."""
        return answer[EXPIRES] > now and self._entries.get(answer[KEY]) is answer

    def holds(self, answer: Answer, now: int) -> bool:
        """``live``, and a hit: marks it recently used."""
        if not self.live(answer, now):
            return False
        self._entries.move_to_end(answer[KEY])
        return True

    def answer(self, key: bytes, reply: outbound.Reply, now: int) -> Answer:
        """Make ``reply`` servable and keep it if it may be cached (RFC 2308 for negatives)."""
        s = self.settings
        floor, ceiling = s.min_ttl, s.max_ttl
        ttl = reply.min_ttl
        if ttl is None or (reply.rcode != wire.NOERROR and reply.rcode != wire.NXDOMAIN):
            ttl = 0  # not cacheable
        elif ttl < floor:
            ttl = floor
        elif ttl > ceiling:
            ttl = ceiling
        entry = make_answer(reply, now, ttl, floor, ceiling, key)
        if ttl > 0 and s.max_entries > 0:
            entries = self._entries
            entries.pop(key, None)
            entries[key] = entry
            while len(entries) > s.max_entries:
                entries.popitem(last=False)
                self.evictions += 1
        return entry

    def clear(self) -> None:
        self._entries.clear()
