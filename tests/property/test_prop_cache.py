"""Cached answers count down and disappear on time, whatever the TTLs and settings."""

from __future__ import annotations

import ipaddress
import struct
from collections import OrderedDict

from hypothesis import given
from hypothesis import strategies as st
from support.engine_driver import forward

from resolver.core import outbound, wire
from resolver.core.cache import EXPIRES, Cache, CacheSettings, render
from resolver.core.clients import ClientAcl
from resolver.core.engine import Engine
from resolver.core.matcher import CompiledPolicy
from resolver.core.snapshot import Snapshot

QNAME = b"\x03www\x07example\x00"
QUESTION = QNAME + struct.pack("!HH", wire.TYPE_A, wire.CLASS_IN)
T0 = 10_000


def upstream(ttls: list[int], negative_soa: tuple[int, int] | None) -> bytes:
    """An upstream reply: one A record per TTL, or an NXDOMAIN with an SOA."""
    if negative_soa is not None:
        soa_ttl, minimum = negative_soa
        rdata = b"\x00\x00" + struct.pack("!IIIII", 1, 2, 3, 4, minimum)
        soa = b"\xc0\x0c" + struct.pack("!HHIH", wire.TYPE_SOA, 1, soa_ttl, len(rdata)) + rdata
        return struct.pack("!HHHHHH", 1, 0x8183, 1, 0, 1, 0) + QUESTION + soa
    records = b"".join(
        b"\xc0\x0c" + struct.pack("!HHIH", wire.TYPE_A, 1, ttl, 4) + bytes((192, 0, 2, i % 256))
        for i, ttl in enumerate(ttls)
    )
    return struct.pack("!HHHHHH", 1, 0x8180, 1, len(ttls), 0, 0) + QUESTION + records


def rendered_ttls(raw: bytes) -> list[int]:
    """The TTL of every record in a rendered answer (answer and authority sections)."""
    _, _, _, ancount, nscount, _ = struct.unpack_from("!HHHHHH", raw)
    pos = 12 + len(QUESTION)
    ttls = []
    for _ in range(ancount + nscount):
        _, fixed, end = wire.skip_rr(raw, pos)
        ttls.append(struct.unpack_from("!I", raw, fixed + 4)[0])
        pos = end
    return ttls


ttl_values = st.integers(0, 2**31 - 1) | st.integers(0, 400)


@given(
    ttls=st.lists(ttl_values, min_size=1, max_size=5),
    soa=st.none() | st.tuples(ttl_values, ttl_values),
    min_ttl=st.integers(0, 120),
    max_ttl=st.integers(0, 1000),
    steps=st.lists(st.integers(0, 300), max_size=12),
)
def test_ttls_count_down_and_entries_expire(
    ttls: list[int], soa: tuple[int, int] | None, min_ttl: int, max_ttl: int, steps: list[int]
) -> None:
    min_ttl = min(min_ttl, max_ttl)
    cache = Cache(CacheSettings(100, min_ttl, max_ttl))
    query = wire.parse_query(struct.pack("!HHHHHH", 7, 0x0100, 1, 0, 0, 0) + QUESTION)
    reply = outbound.parse_reply(upstream(ttls, soa), 1, QUESTION)
    cache.answer(query.cache_key, reply, T0)

    source = [min(soa)] if soa is not None else ttls
    lifetime = min(max(min(source), min_ttl), max_ttl)
    previous: list[int] | None = None
    now = T0
    expired = False
    for step in [0, *steps]:
        now += step
        entry = cache.get(query.cache_key, now)
        if entry is None:
            assert now >= T0 + lifetime  # never dropped early
            expired = True
            continue
        assert not expired  # once gone, gone
        assert now < entry[EXPIRES] == T0 + lifetime  # never served past expiry
        current = rendered_ttls(render(entry, query, now))
        assert all(0 < ttl <= max_ttl for ttl in current)
        if previous is not None:
            assert all(c == p - step for c, p in zip(current, previous, strict=True))
        previous = current


# --- through the engine: repeated queries, replacements and evictions -------------------

NAMES = ("a.example", "b.example", "c.example")
MAX_ENTRIES = 2


def _query_bytes(qid: int, name: str) -> bytes:
    labels = b"".join(bytes((len(p),)) + p.encode() for p in name.split("."))
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + labels + b"\x00\x00\x01\x00\x01"


def _reply_for(query: wire.Query, ttl: int, tag: int) -> outbound.Reply:
    record = b"\xc0\x0c" + struct.pack("!HHIH", wire.TYPE_A, 1, ttl, 4) + bytes((198, 51, 100, tag))
    data = struct.pack("!HHHHHH", 9, 0x8180, 1, 1, 0, 0) + query.question + record
    return outbound.parse_reply(data, 9, query.question)


operations = st.lists(
    st.tuples(
        st.sampled_from(["query", "query", "store"]),
        st.sampled_from(NAMES),
        st.integers(0, 4),  # seconds that pass first
        st.integers(1, 12),  # TTL of a stored answer
        st.integers(0, 0xFFFF),  # query ID
    ),
    max_size=40,
)


@given(operations)
def test_engine_serves_the_latest_live_answer_with_exact_ttl(
    ops: list[tuple[str, str, int, int, int]],
) -> None:
    """A model of the cache (an LRU of (stored, ttl, tag)) predicts every engine answer,
    including answers replayed for repeated query bytes."""
    cache = Cache(CacheSettings(MAX_ENTRIES, 0, 86400))
    acl = ClientAcl([ipaddress.ip_network("127.0.0.0/8")])
    engine = Engine(Snapshot(CompiledPolicy()), cache, acl)
    model: OrderedDict[str, tuple[int, int, int]] = OrderedDict()
    now = T0
    for step, (kind, name, dt, ttl, qid) in enumerate(ops):
        now += dt
        data = _query_bytes(qid, name)
        if kind == "store":
            query = wire.parse_query(data)
            tag = step % 256
            forward(engine, query, _reply_for(query, ttl, tag), now)
            model.pop(name, None)
            model[name] = (now, ttl, tag)
            while len(model) > MAX_ENTRIES:
                model.popitem(last=False)
            continue
        result = engine.handle(data, "127.0.0.1", now, False)
        expected = model.get(name)
        if expected is not None and expected[0] + expected[1] <= now:
            del model[name]
            expected = None
        if expected is None:
            assert isinstance(result, wire.Query), (step, name)
            continue
        model.move_to_end(name)
        assert isinstance(result, bytes), (step, name)
        assert result[:2] == data[:2]
        stored, life, tag = expected
        _, fixed, end = wire.skip_rr(result, len(data))  # the answer follows the question
        assert struct.unpack_from("!I", result, fixed + 4)[0] == life - (now - stored)
        assert result[end - 1] == tag
