"""The answer cache: rendering stored replies for new queries, and what is kept for how long."""

from __future__ import annotations

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import dns.rrset
import dnslib
import pytest

from resolver.core import outbound, wire
from resolver.core.cache import (
    EXPIRES,
    STALE_TTL,
    Cache,
    CacheSettings,
    make_answer,
    render,
    render_stale,
)

from .packets import parsed

T0 = 1_000_000


def upstream_reply(
    qname: str = "www.example.com",
    ttls: tuple[int, ...] = (300,),
    *,
    rcode: int = dns.rcode.NOERROR,
    soa: tuple[int, int] | None = None,
    ad: bool = False,
) -> outbound.Reply:
    """An upstream answer parsed the way the forwarder parses it: one A record per TTL."""
    q = dns.message.make_query(qname, "A", use_edns=0)
    r = dns.message.make_response(q)
    r.flags |= dns.flags.AA | (dns.flags.AD if ad else 0)
    r.set_rcode(rcode)
    for i, ttl in enumerate(ttls):
        r.answer.append(dns.rrset.from_text(qname + ".", ttl, "IN", "A", f"192.0.2.{i + 1}"))
    if soa is not None:
        soa_ttl, minimum = soa
        text = f"ns.example.com. host.example.com. 1 3600 600 86400 {minimum}"
        r.authority.append(dns.rrset.from_text("example.com.", soa_ttl, "IN", "SOA", text))
    question = wire.parse_query(q.to_wire()).question
    return outbound.parse_reply(r.to_wire(), q.id, question)


def decode(raw: bytes) -> dnslib.DNSRecord:
    return dnslib.DNSRecord.parse(raw)


# --- render ---------------------------------------------------------------------


def test_render_patches_id_flags_and_question_case() -> None:
    answer = make_answer(upstream_reply(ad=True), T0, 300, 0, 86400)
    q = parsed("WWW.Example.Com", qid=0xABCD, flags=wire.CD)
    raw = render(answer, q, T0)
    reply = decode(raw)
    h = reply.header
    assert h.id == 0xABCD
    assert (h.qr, h.aa, h.tc, h.rd, h.ra, h.ad, h.cd) == (1, 0, 0, 0, 1, 1, 1)
    assert raw[12 : 12 + len(q.question)] == q.question
    assert str(reply.q.qname) == "WWW.Example.Com."
    assert [str(rr.rdata) for rr in reply.rr] == ["192.0.2.1"]

    other = decode(render(answer, parsed("www.example.com", qid=7, flags=wire.RD), T0))
    assert (other.header.id, other.header.rd, other.header.cd) == (7, 1, 0)
    assert str(other.q.qname) == "www.example.com."


def test_render_keeps_rcode() -> None:
    answer = make_answer(
        upstream_reply(ttls=(), rcode=dns.rcode.NXDOMAIN, soa=(60, 60)), T0, 60, 0, 99
    )
    reply = decode(render(answer, parsed("www.example.com"), T0))
    assert reply.header.rcode == wire.NXDOMAIN
    assert len(reply.auth) == 1


@pytest.mark.parametrize("elapsed", [0, 1, 7, 199, 200, 250])
def test_render_decrements_ttls_by_elapsed_seconds(elapsed: int) -> None:
    answer = make_answer(upstream_reply(ttls=(300, 200)), T0, 200, 0, 86400)
    reply = decode(render(answer, parsed("www.example.com"), T0 + elapsed))
    assert sorted(rr.ttl for rr in reply.rr) == sorted(
        [max(300 - elapsed, 0), max(200 - elapsed, 0)]
    )


def test_render_is_consistent_when_time_moves_back_and_forth() -> None:
    answer = make_answer(upstream_reply(ttls=(100,)), T0, 100, 0, 86400)
    q = parsed("www.example.com")
    assert decode(render(answer, q, T0 + 10)).rr[0].ttl == 90
    assert decode(render(answer, q, T0 + 10)).rr[0].ttl == 90
    assert decode(render(answer, q, T0 + 30)).rr[0].ttl == 70
    assert decode(render(answer, q, T0)).rr[0].ttl == 100


def test_render_clamps_record_ttls() -> None:
    answer = make_answer(upstream_reply(ttls=(5, 100000)), T0, 60, 60, 3600)
    reply = decode(render(answer, parsed("www.example.com"), T0))
    assert sorted(rr.ttl for rr in reply.rr) == [60, 3600]


def test_render_without_edns_has_no_opt() -> None:
    answer = make_answer(upstream_reply(), T0, 300, 0, 86400)
    reply = decode(render(answer, parsed("www.example.com"), T0))
    assert reply.header.ar == 0
    assert reply.ar == []


@pytest.mark.parametrize("do", [False, True])
def test_render_with_edns_appends_opt_echoing_do(do: bool) -> None:
    answer = make_answer(upstream_reply(), T0, 300, 0, 86400)
    reply = decode(render(answer, parsed("www.example.com", edns=True, do=do), T0))
    assert reply.header.ar == 1
    (opt,) = reply.ar
    assert opt.rtype == wire.TYPE_OPT
    assert opt.rclass == wire.EDNS_UDP_SIZE
    assert bool(opt.ttl & wire.EDNS_DO) is do
    assert len(reply.rr) == 1


# --- Cache ------------------------------------------------------------------------


def key(name: str) -> bytes:
    return parsed(name).cache_key


def test_hit_and_miss() -> None:
    cache = Cache(CacheSettings())
    assert cache.get(key("www.example.com"), T0) is None
    stored = cache.answer(key("www.example.com"), upstream_reply(), T0)
    assert cache.get(key("WWW.EXAMPLE.COM"), T0 + 1) is stored
    assert cache.get(key("other.example.com"), T0 + 1) is None
    assert len(cache) == 1


def test_lru_eviction_at_max_entries() -> None:
    cache = Cache(CacheSettings(max_entries=2))
    cache.answer(key("a.example"), upstream_reply("a.example"), T0)
    cache.answer(key("b.example"), upstream_reply("b.example"), T0)
    assert cache.get(key("a.example"), T0) is not None  # a is now the most recently used
    cache.answer(key("c.example"), upstream_reply("c.example"), T0)
    assert len(cache) == 2
    assert cache.get(key("b.example"), T0) is None
    assert cache.get(key("a.example"), T0) is not None
    assert cache.get(key("c.example"), T0) is not None


def test_replacing_an_entry_does_not_grow_the_cache() -> None:
    cache = Cache(CacheSettings(max_entries=2))
    for _ in range(3):
        cache.answer(key("a.example"), upstream_reply("a.example"), T0)
    assert len(cache) == 1


def test_expiry_at_the_smallest_ttl() -> None:
    cache = Cache(CacheSettings(stale_max=0))
    cache.answer(key("www.example.com"), upstream_reply(ttls=(300, 30)), T0)
    assert cache.get(key("www.example.com"), T0 + 29) is not None
    assert cache.get(key("www.example.com"), T0 + 30) is None
    assert len(cache) == 0


def test_min_ttl_raises_short_ttls() -> None:
    cache = Cache(CacheSettings(min_ttl=60))
    entry = cache.answer(key("www.example.com"), upstream_reply(ttls=(5,)), T0)
    assert entry[EXPIRES] == T0 + 60
    assert cache.get(key("www.example.com"), T0 + 59) is entry
    assert decode(render(entry, parsed("www.example.com"), T0)).rr[0].ttl == 60


def test_max_ttl_caps_long_ttls() -> None:
    cache = Cache(CacheSettings(max_ttl=3600))
    entry = cache.answer(key("www.example.com"), upstream_reply(ttls=(604800,)), T0)
    assert entry[EXPIRES] == T0 + 3600
    assert cache.get(key("www.example.com"), T0 + 3600) is None
    assert decode(render(entry, parsed("www.example.com"), T0)).rr[0].ttl == 3600


def test_zero_ttl_is_not_cached() -> None:
    cache = Cache(CacheSettings())
    entry = cache.answer(key("www.example.com"), upstream_reply(ttls=(0,)), T0)
    assert len(cache) == 0
    assert decode(render(entry, parsed("www.example.com"), T0)).rr[0].ttl == 0


@pytest.mark.parametrize("rcode", [dns.rcode.SERVFAIL, dns.rcode.REFUSED, dns.rcode.FORMERR])
def test_errors_are_not_cached_but_still_servable(rcode: int) -> None:
    cache = Cache(CacheSettings(min_ttl=30))
    entry = cache.answer(key("www.example.com"), upstream_reply(ttls=(), rcode=rcode), T0)
    assert len(cache) == 0
    assert cache.get(key("www.example.com"), T0) is None
    assert decode(render(entry, parsed("www.example.com"), T0)).header.rcode == rcode


def test_negative_answer_with_soa_is_cached_for_the_negative_ttl() -> None:
    cache = Cache(CacheSettings())
    reply = upstream_reply("nx.example.com", (), rcode=dns.rcode.NXDOMAIN, soa=(900, 120))
    entry = cache.answer(key("nx.example.com"), reply, T0)
    assert entry[EXPIRES] == T0 + 120
    assert cache.get(key("nx.example.com"), T0 + 119) is entry
    assert cache.get(key("nx.example.com"), T0 + 120) is None


def test_nodata_with_soa_is_cached() -> None:
    cache = Cache(CacheSettings())
    reply = upstream_reply("nodata.example.com", (), soa=(60, 300))
    cache.answer(key("nodata.example.com"), reply, T0)
    assert cache.get(key("nodata.example.com"), T0 + 59) is not None


@pytest.mark.parametrize("rcode", [dns.rcode.NXDOMAIN, dns.rcode.NOERROR])
def test_negative_answer_without_soa_is_not_cached(rcode: int) -> None:
    cache = Cache(CacheSettings(min_ttl=300))
    cache.answer(key("nx.example.com"), upstream_reply("nx.example.com", (), rcode=rcode), T0)
    assert len(cache) == 0


def test_max_entries_zero_disables_the_cache() -> None:
    cache = Cache(CacheSettings(max_entries=0))
    entry = cache.answer(key("www.example.com"), upstream_reply(), T0)
    assert len(cache) == 0
    assert cache.get(key("www.example.com"), T0) is None
    assert decode(render(entry, parsed("www.example.com"), T0)).rr[0].ttl == 300


def test_max_ttl_zero_disables_caching() -> None:
    cache = Cache(CacheSettings(max_ttl=0))
    cache.answer(key("www.example.com"), upstream_reply(), T0)
    assert len(cache) == 0


def test_do_and_cd_queries_are_cached_apart() -> None:
    cache = Cache(CacheSettings())
    cache.answer(parsed("www.example.com", do=True).cache_key, upstream_reply(), T0)
    assert cache.get(parsed("www.example.com").cache_key, T0) is None
    assert cache.get(parsed("www.example.com", flags=wire.CD).cache_key, T0) is None
    assert cache.get(parsed("www.example.com", do=True).cache_key, T0) is not None


def test_clear() -> None:
    cache = Cache(CacheSettings())
    cache.answer(key("www.example.com"), upstream_reply(), T0)
    cache.clear()
    assert len(cache) == 0


# --- stale answers (RFC 8767) -----------------------------------------------------


def test_an_expired_answer_is_kept_for_stale_max_but_not_served() -> None:
    cache = Cache(CacheSettings(stale_max=600))
    stored = cache.answer(key("www.example.com"), upstream_reply(ttls=(30,)), T0)
    assert cache.stale(key("www.example.com"), T0 + 29) is None  # still live: not stale
    assert cache.get(key("www.example.com"), T0 + 30) is None
    assert len(cache) == 1
    assert cache.stale(key("WWW.example.com"), T0 + 30) is stored
    assert cache.stale(key("www.example.com"), T0 + 30 + 599) is stored
    assert cache.stale(key("www.example.com"), T0 + 30 + 600) is None
    assert len(cache) == 0


def test_get_drops_an_answer_past_its_stale_window() -> None:
    cache = Cache(CacheSettings(stale_max=60))
    cache.answer(key("www.example.com"), upstream_reply(ttls=(30,)), T0)
    assert cache.get(key("www.example.com"), T0 + 89) is None
    assert len(cache) == 1
    assert cache.get(key("www.example.com"), T0 + 90) is None
    assert len(cache) == 0


def test_stale_max_zero_serves_nothing_stale() -> None:
    cache = Cache(CacheSettings(stale_max=0))
    cache.answer(key("www.example.com"), upstream_reply(ttls=(30,)), T0)
    assert cache.stale(key("www.example.com"), T0 + 30) is None
    assert len(cache) == 0


def test_expired_answers_still_leave_by_lru() -> None:
    """Kept for serving stale, expired answers still count against max_entries."""
    cache = Cache(CacheSettings(max_entries=2, stale_max=86_400))
    cache.answer(key("a.example"), upstream_reply("a.example", (10,)), T0)
    cache.answer(key("b.example"), upstream_reply("b.example", (10,)), T0)
    assert cache.stale(key("a.example"), T0 + 20) is not None  # a is now the most recent
    cache.answer(key("c.example"), upstream_reply("c.example", (10,)), T0 + 20)
    assert len(cache) == 2
    assert cache.stale(key("b.example"), T0 + 20) is None
    assert cache.stale(key("a.example"), T0 + 20) is not None


def test_a_newer_answer_replaces_the_stale_one() -> None:
    cache = Cache(CacheSettings())
    cache.answer(key("www.example.com"), upstream_reply(ttls=(30,)), T0)
    fresh = cache.answer(key("www.example.com"), upstream_reply(ttls=(300,)), T0 + 40)
    assert cache.get(key("www.example.com"), T0 + 41) is fresh
    assert cache.stale(key("www.example.com"), T0 + 41) is None
    assert len(cache) == 1


@pytest.mark.parametrize("edns", [False, True])
def test_render_stale_sets_every_ttl_to_30_and_carries_the_ede(edns: bool) -> None:
    reply = upstream_reply("nx.example.com", (), rcode=dns.rcode.NXDOMAIN, soa=(900, 120))
    cache = Cache(CacheSettings())
    entry = cache.answer(key("nx.example.com"), reply, T0)
    q = parsed("NX.example.com", qid=0x4321, edns=edns)
    raw = render_stale(entry, q, wire.build_ede(19, "stale"))
    message = dns.message.from_wire(raw)
    assert message.id == 0x4321
    assert message.rcode() == dns.rcode.NXDOMAIN
    assert message.question[0].name.to_text() == "NX.example.com."
    assert [rrset.ttl for rrset in message.authority] == [STALE_TTL]
    assert message.authority[0][0].minimum == 120  # the SOA's own fields untouched
    codes = [o.code for o in message.options if isinstance(o, dns.edns.EDEOption)]
    assert codes == ([19] if edns else [])
    assert message.edns == (0 if edns else -1)
