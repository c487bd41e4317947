"""The answer cache: upstream replies kept as wire bytes, bounded, LRU, TTL-aware (pure).

A hit costs a dict lookup and a few concatenations: the reply body is kept with the
offsets of its TTL fields, re-patched at most once a second, and the client's ID,
flags and question (its own letter case) are put in front of it.
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from dataclasses import dataclass

from resolver import wire

COUNTS = struct.Struct("!HHHH")


class Answer:
    """An upstream reply made ready to serve: ID-less, OPT-less, with decrementing TTLs."""

    __slots__ = (
        "_body",
        "_patched_at",
        "body",
        "counts",
        "expires",
        "flags",
        "key",
        "rcode",
        "stored",
        "ttls",
    )

    def __init__(
        self, reply: wire.Reply, now: int, ttl: int, floor: int, ceiling: int, key: bytes = b""
    ) -> None:
        self.key = key
        self.rcode = reply.rcode
        # QR and RA set, AA cleared (a forwarder is not authoritative), AD and rcode kept.
        self.flags = wire.QR | wire.RA | (reply.flags & (wire.AD | 0xF))
        counts = COUNTS.pack(1, reply.ancount, reply.nscount, 0)
        self.counts = (counts, counts[:6] + b"\x00\x01")
        self.stored = now
        self.expires = now + ttl
        # Each record keeps its own TTL, clamped into [floor, ceiling].
        ttls = reply.ttls
        if any(t < floor or t > ceiling for _, t in ttls):
            ttls = [(offset, min(max(t, floor), ceiling)) for offset, t in ttls]
            self.body = self._body = self._patch(reply.body, 0, ttls)
        else:
            self.body = self._body = reply.body
        self.ttls = ttls
        self._patched_at = now

    @staticmethod
    def _patch(body: bytes, age: int, ttls: list[tuple[int, int]]) -> bytes:
        buf = bytearray(body)
        for offset, ttl in ttls:
            struct.pack_into("!I", buf, offset, max(ttl - age, 0))
        return bytes(buf)

    def render(self, query: wire.Query, now: int) -> bytes:
        """The answer to ``query`` at time ``now`` (whole seconds)."""
        if now != self._patched_at:
            self._body = (
                self._patch(self.body, now - self.stored, self.ttls) if self.ttls else self.body
            )
            self._patched_at = now
        body = self._body
        question = query.question
        if not body.startswith(question):  # the client's letter case differs
            body = question + body[len(question) :]
        flags = wire.U16.pack(self.flags | (query.flags & (wire.RD | wire.CD)))
        if query.edns:
            return query.qid + flags + self.counts[1] + body + (OPT_DO if query.do else OPT)
        return query.qid + flags + self.counts[0] + body


OPT = wire.build_opt(False)
OPT_DO = wire.build_opt(True)


@dataclass(frozen=True, slots=True)
class CacheSettings:
    max_entries: int = 100_000
    min_ttl: int = 0
    max_ttl: int = 86_400


class Cache:
    """A bounded LRU map from Query.cache_key to Answer."""

    def __init__(self, settings: CacheSettings) -> None:
        self.settings = settings
        self._entries: OrderedDict[bytes, Answer] = OrderedDict()
        # Marks a live entry (one not expired) as recently used: for answers served
        # without a lookup. A live entry is always in the map under its key.
        self.touch = self._entries.move_to_end

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: bytes, now: int) -> Answer | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.expires <= now:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry

    def answer(self, key: bytes, reply: wire.Reply, now: int) -> Answer:
        """Make ``reply`` servable and keep it if it may be cached (RFC 2308 for negatives)."""
        s = self.settings
        cacheable = reply.rcode in (wire.NOERROR, wire.NXDOMAIN) and reply.min_ttl is not None
        ttl = min(max(reply.min_ttl or 0, s.min_ttl), s.max_ttl) if cacheable else 0
        entry = Answer(reply, now, ttl, s.min_ttl, s.max_ttl, key)
        if ttl > 0 and s.max_entries > 0:
            entries = self._entries
            old = entries.pop(key, None)
            if old is not None:
                old.expires = 0
            entries[key] = entry
            while len(entries) > s.max_entries:
                entries.popitem(last=False)[1].expires = 0  # evicted: no longer servable
        return entry

    def clear(self) -> None:
        for entry in self._entries.values():
            entry.expires = 0
        self._entries.clear()
