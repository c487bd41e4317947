"""RPZ zones: the master-file reading, every trigger and action, precedence, answers, scale."""

from __future__ import annotations

import gzip
import ipaddress
import lzma
import os
import re
import textwrap
import time
from pathlib import Path

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
import dns.zone
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.engine_driver import answer, forward

from resolver.core import outbound, wire
from resolver.core.cache import Cache, CacheSettings
from resolver.core.clients import ClientAcl
from resolver.core.engine import Engine
from resolver.core.errors import PolicyError
from resolver.core.layers import LayeredPolicy, PolicyLayer
from resolver.core.matcher import CompiledPolicy, Scope
from resolver.core.snapshot import Snapshot
from resolver.core.verdict import Action, Answers, ClientScope, PolicyInfo, Verdict
from resolver.sources import zonefile
from resolver.sources.config import parse_config
from resolver.sources.config_sections import ZoneConfig
from resolver.sources.rpz import LoadedZone, ip_trigger, load_zone, parse_zone
from resolver.sources.snapshot import build_snapshot

ORIGIN = "rpz.test"
HEAD = (
    "$TTL 300\n@ SOA ns.rpz.test. hostmaster.rpz.test. ( 7 3600 600 86400 60 )\n  NS ns.rpz.test.\n"
)


def zone(body: str, origin: str = ORIGIN, source: str = "z.rpz", order: int = 0) -> LoadedZone:
    return parse_zone(HEAD + textwrap.dedent(body), origin, source, order)


def w(text: str) -> bytes:
    return wire.text_to_name(text)


def decide(loaded: LoadedZone, name: str) -> Verdict | None:
    return loaded.layer.qname.match(w(name))


def action(loaded: LoadedZone, name: str) -> Action | None:
    verdict = decide(loaded, name)
    return verdict.action if verdict is not None else None


def render(verdict: Verdict, name: str, qtype: str = "A", tcp: bool = False) -> dns.message.Message:
    query = wire.parse_query(dns.message.make_query(name, qtype, use_edns=0).to_wire())
    return dns.message.from_wire(verdict.render(query))


def answer_texts(message: dns.message.Message) -> list[str]:
    return sorted(f"{rrset.rdtype.name} {rd.to_text()}" for rrset in message.answer for rd in rrset)


def error_of(body: str) -> PolicyError:
    with pytest.raises(PolicyError) as info:
        zone(body)
    return info.value


def line_of(body: str, needle: str) -> int:
    """The line number of ``needle`` in the zone text ``zone(body)`` reads."""
    text = HEAD + textwrap.dedent(body)
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


# --- the master file ---------------------------------------------------------------------


def test_a_feed_of_plain_lines_blocks_each_name_and_everything_under_it() -> None:
    loaded = zone(
        """\
        ads.example CNAME .
        *.ads.example CNAME .
        exact.example CNAME .
        *.below.example CNAME .
        """
    )
    assert action(loaded, "ads.example") is Action.NXDOMAIN
    assert action(loaded, "a.b.ads.example") is Action.NXDOMAIN
    assert action(loaded, "exact.example") is Action.NXDOMAIN
    assert action(loaded, "www.exact.example") is None
    assert action(loaded, "below.example") is None
    assert action(loaded, "x.below.example") is Action.NXDOMAIN
    assert action(loaded, "other.example") is None
    assert loaded.report.qname == 4
    assert loaded.report.serial == 7
    assert loaded.report.records == 6  # SOA and NS too


def test_origin_ttl_relative_absolute_and_apex_names() -> None:
    loaded = zone(
        """\
        $ORIGIN sub.rpz.test.
        rel CNAME .
        $ORIGIN rpz.test.
        abs.example.rpz.test. 60 IN CNAME .
        @ TXT "apex data is not a rule"
        outside.example.org. CNAME .
        $TTL 1h
        later.example CNAME .
        """
    )
    assert action(loaded, "rel.sub") is Action.NXDOMAIN
    assert action(loaded, "rel") is None
    verdict = decide(loaded, "abs.example")
    assert verdict is not None and verdict.answers.ttl == 60
    assert action(loaded, "outside.example.org") is None  # out of the zone: ignored
    later = decide(loaded, "later.example")
    assert later is not None and later.answers.ttl == 3600
    assert loaded.layer.qname.match(b"\x00") is None


def test_multi_line_records_comments_and_an_owner_taken_from_the_line_before() -> None:
    loaded = zone(
        """\
        ; a comment line
        local.example A 192.0.2.1 ; a trailing comment
          AAAA 2001:db8::1
        txt.example TXT ( "first"
                          "second" )
        """
    )
    verdict = decide(loaded, "local.example")
    assert verdict is not None and verdict.action is Action.REDIRECT
    assert answer_texts(render(verdict, "local.example", "A")) == ["A 192.0.2.1"]
    assert answer_texts(render(verdict, "local.example", "AAAA")) == ["AAAA 2001:db8::1"]
    txt = decide(loaded, "txt.example")
    assert txt is not None
    assert answer_texts(render(txt, "txt.example", "TXT")) == ['TXT "first" "second"']


def test_lines_of_every_rule_are_kept() -> None:
    body = """\
    one.example CNAME .
    *.one.example CNAME .
    two.example TXT ( "multi"
       "line" )
    *.three.example CNAME rpz-drop.
    """
    loaded = zone(body)
    layer = loaded.layer
    assert layer.where(w("one.example"), Scope.EXACT) == ("z.rpz", line_of(body, "one.example C"))
    assert layer.where(w("one.example"), Scope.BELOW) == ("z.rpz", line_of(body, "*.one"))
    assert layer.where(w("two.example"), Scope.EXACT) == ("z.rpz", line_of(body, "two.example"))
    assert layer.where(w("three.example"), Scope.BELOW)[1] == line_of(body, "*.three")


def test_include_reads_a_file_relative_to_the_including_one(tmp_path: Path) -> None:
    (tmp_path / "parts").mkdir()
    (tmp_path / "parts" / "more.rpz").write_text("inc CNAME .\n*.inc CNAME rpz-drop.\n")
    main = tmp_path / "main.rpz"
    main.write_text(
        HEAD + '$INCLUDE parts/more.rpz\n$INCLUDE "parts/more.rpz" sub.rpz.test.\nafter CNAME *.\n'
    )
    loaded = load_zone(ZoneConfig("rpz.test.", main))
    assert action_of(loaded, "inc") is Action.NXDOMAIN
    assert action_of(loaded, "x.inc") is Action.DROP
    assert action_of(loaded, "inc.sub") is Action.NXDOMAIN
    assert action_of(loaded, "after") is Action.NODATA  # the origin is back
    assert loaded.layer.where(w("inc"), Scope.EXACT) == (str(tmp_path / "parts" / "more.rpz"), 1)
    assert loaded.layer.where(w("after"), Scope.EXACT) == (str(main), 6)


def action_of(loaded: LoadedZone, name: str) -> Action | None:
    return action(loaded, name)


def test_include_errors_name_the_line(tmp_path: Path) -> None:
    main = tmp_path / "main.rpz"
    main.write_text(HEAD + "$INCLUDE missing.rpz\n")
    with pytest.raises(PolicyError, match="does not exist") as info:
        load_zone(ZoneConfig("rpz.test.", main))
    assert (info.value.source, info.value.line) == (str(main), 4)

    loop = tmp_path / "loop.rpz"
    loop.write_text(HEAD + "$INCLUDE loop.rpz\n")
    with pytest.raises(PolicyError, match="already being read"):
        load_zone(ZoneConfig("rpz.test.", loop))

    quote = tmp_path / "quote.rpz"
    quote.write_text(HEAD + '$INCLUDE "never closed\n')
    with pytest.raises(PolicyError, match="unbalanced quote") as info:
        load_zone(ZoneConfig("rpz.test.", quote))
    assert info.value.line == 4

    outside = tmp_path / "outside.rpz"
    outside.write_text(HEAD + "$INCLUDE main.rpz example.org.\n")
    with pytest.raises(PolicyError, match="outside the zone"):
        load_zone(ZoneConfig("rpz.test.", outside))


def test_include_stays_in_the_zone_files_directory(tmp_path: Path) -> None:
    zones, feeds = tmp_path / "zones", tmp_path / "feeds"
    zones.mkdir()
    feeds.mkdir()
    (feeds / "more.rpz").write_text("inc CNAME .\n")
    (zones / "escape.rpz").symlink_to(feeds / "more.rpz")
    for written in ("../feeds/more.rpz", str(feeds / "more.rpz"), "escape.rpz"):
        main = zones / "main.rpz"
        main.write_text(HEAD + f"$INCLUDE {written}\n")
        with pytest.raises(PolicyError, match="is outside") as info:
            load_zone(ZoneConfig("rpz.test.", main))
        assert (info.value.source, info.value.line) == (str(main), 4)
        assert "include_dirs" in info.value.message
        # Allowed when the configuration names the directory.
        loaded = load_zone(ZoneConfig("rpz.test.", main, include_dirs=(feeds,)))
        assert action_of(loaded, "inc") is Action.NXDOMAIN


def test_include_of_what_is_not_a_regular_file(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.rpz")
    (tmp_path / "folder").mkdir()
    (tmp_path / "a.rpz").symlink_to(tmp_path / "b.rpz")
    (tmp_path / "b.rpz").symlink_to(tmp_path / "a.rpz")
    main = tmp_path / "main.rpz"
    for name, words in (
        ("pipe.rpz", "FIFO"),
        ("folder", "directory"),
        ("a.rpz", "symbolic links form a loop"),
    ):
        main.write_text(HEAD + f"$INCLUDE {name}\n")
        started = time.monotonic()
        with pytest.raises(PolicyError, match=words) as info:
            load_zone(ZoneConfig("rpz.test.", main))
        assert time.monotonic() - started < 5
        assert (info.value.source, info.value.line) == (str(main), 4)
        assert info.value.message.startswith(f"$INCLUDE {name!r}: cannot read the zone file")


def test_a_zone_file_over_max_file_size(tmp_path: Path) -> None:
    main = tmp_path / "big.rpz.gz"
    main.write_bytes(gzip.compress((HEAD + "a.example CNAME .\n" * 10_000).encode()))
    with pytest.raises(PolicyError, match="larger than 64 KiB after decompression") as info:
        load_zone(ZoneConfig("rpz.test.", main, max_size=64 * 1024))
    assert info.value.source == str(main)
    part = tmp_path / "part.rpz"
    part.write_text("a.example CNAME .\n" * 10_000)
    inc = tmp_path / "inc.rpz"
    inc.write_text(HEAD + "$INCLUDE part.rpz\n")
    with pytest.raises(PolicyError, match="max_file_size") as info:
        load_zone(ZoneConfig("rpz.test.", inc, max_size=64 * 1024))
    assert (info.value.source, info.value.line) == (str(inc), 4)


def test_a_huge_token_gives_a_short_error_at_its_line() -> None:
    for bad in (
        "x 9" + "9" * 100_000 + " A 192.0.2.1",  # dnspython lets a ValueError through
        "x IN TYPE" + "1" * 100_000 + " \\# 0",
        "x CNAME " + "b" * 100_000,
    ):
        error = error_of(bad + "\n")
        assert error.line == 4
        assert len(str(error)) < 400, str(error)[:200]


def test_compressed_zone_files(tmp_path: Path) -> None:
    text = HEAD + "packed.example CNAME .\n"
    (tmp_path / "z.rpz.xz").write_bytes(lzma.compress(text.encode()))
    (tmp_path / "z.rpz.gz").write_bytes(gzip.compress(text.encode()))
    for name in ("z.rpz.xz", "z.rpz.gz"):
        loaded = load_zone(ZoneConfig("rpz.test.", tmp_path / name))
        assert action(loaded, "packed.example") is Action.NXDOMAIN


# --- the fast path and dnspython agree -----------------------------------------------------

LABEL = st.sampled_from(["a", "b", "c", "ads", "x-1", "_srv"])
ACTIONS = ["CNAME .", "CNAME *.", "CNAME rpz-passthru.", "CNAME rpz-drop.", "A 192.0.2.9"]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.lists(LABEL, min_size=1, max_size=3),
            st.booleans(),
            st.sampled_from(ACTIONS),
            st.sampled_from(["", "60 ", "IN ", "120 IN "]),
        ),
        max_size=25,
    )
)
def test_fast_path_reads_what_dnspython_reads(
    rules: list[tuple[list[str], bool, str, str]],
) -> None:
    lines = []
    seen = set()
    for labels, wildcard, what, middle in rules:
        owner = ("*." if wildcard else "") + ".".join(labels)
        if owner in seen:
            continue  # one rule per owner (two would be a conflict, tested elsewhere)
        seen.add(owner)
        lines.append(f"{owner} {middle}{what}")
    text = HEAD + "\n".join(lines) + "\n"
    fast = parse_zone(text, ORIGIN)
    slow = _without_fast_path(text)
    names = [".".join(labels) for labels, _, _, _ in rules]
    names += ["q." + name for name in names]
    for name in names:
        a, b = decide(fast, name), decide(slow, name)
        assert (a and (a.action, a.answers.ttl, a.redirect)) == (
            b and (b.action, b.answers.ttl, b.redirect)
        )
    assert dict(fast.layer.lines) == dict(slow.layer.lines)
    records = dns.zone.from_text(text, ORIGIN + ".", relativize=True, check_origin=False)
    assert fast.report.records == sum(len(r) for _, r in records.iterate_rdatasets())


def _without_fast_path(text: str) -> LoadedZone:
    saved = zonefile._FAST
    zonefile._FAST = re.compile(r"(?!)")
    try:
        return parse_zone(text, ORIGIN)
    finally:
        zonefile._FAST = saved


# --- triggers ----------------------------------------------------------------------------


def test_a_lone_wildcard_covers_every_name() -> None:
    loaded = zone("* CNAME .\nok.example CNAME rpz-passthru.\n")
    assert action(loaded, "anything.example") is Action.NXDOMAIN
    assert action(loaded, "ok.example") is Action.ALLOW


def test_the_exact_name_beats_the_wildcard_and_the_longest_wildcard_wins() -> None:
    loaded = zone(
        """\
        *.example CNAME .
        *.deep.example CNAME *.
        deep.example CNAME rpz-passthru.
        """
    )
    assert action(loaded, "deep.example") is Action.ALLOW
    assert action(loaded, "a.deep.example") is Action.NODATA
    assert action(loaded, "a.b.deep.example") is Action.NODATA
    assert action(loaded, "shallow.example") is Action.NXDOMAIN


@pytest.mark.parametrize(
    ("labels", "network"),
    [
        ("32.1.2.0.192", "192.0.2.1/32"),
        ("24.0.2.0.192", "192.0.2.0/24"),
        ("0.0.0.0.0", "0.0.0.0/0"),
        ("128.1.zz.db8.2001", "2001:db8::1/128"),
        ("48.zz.99.db8.2001", "2001:db8:99::/48"),
        ("64.zz.1.0.db8.2001", "2001:db8:0:1::/64"),
        ("128.8.7.6.5.4.3.2.1", "1:2:3:4:5:6:7:8/128"),
        ("128.zz", "::/128"),
        ("112.zz.1", "1::/112"),
    ],
)
def test_ip_trigger_names(labels: str, network: str) -> None:
    assert ip_trigger(labels.split(".")) == ipaddress.ip_network(network)


@pytest.mark.parametrize(
    ("labels", "problem"),
    [
        ("33.1.2.0.192", "longer than 32"),
        ("24.1.2.0.192", "host bits"),
        ("1.2.0.192", "IPv4 address needs 4 numbers"),
        ("x.1.2.0.192", "prefix length"),
        ("129.zz.1", "longer than 128"),
        ("64.zz.1.zz", "zz may stand only once"),
        ("64.1.2.3", "IPv4 address needs 4 numbers"),
        ("64.g.2.3.4.5.6.7.8", "1 to 4 hex digits"),
    ],
)
def test_bad_ip_trigger_names(labels: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        ip_trigger(labels.split("."))


def test_client_ip_triggers_longest_prefix_first() -> None:
    loaded = zone(
        """\
        16.0.0.0.192.rpz-client-ip CNAME .
        32.66.2.0.192.rpz-client-ip CNAME rpz-passthru.
        48.zz.99.db8.2001.rpz-client-ip CNAME *.
        """
    )
    triggers = loaded.layer.client_ip
    assert triggers is not None and len(triggers) == 3
    for client, expected in (
        ("192.0.9.9", Action.NXDOMAIN),
        ("192.0.2.66", Action.ALLOW),
        ("2001:db8:99::5", Action.NODATA),
        ("198.51.100.1", None),
    ):
        address = ipaddress.ip_address(client)

        def applies(scope: ClientScope, address: object = address) -> bool:
            return scope.applies(address)  # type: ignore[arg-type]

        verdict, _, depends = triggers.match_client(w("any.example"), applies)
        assert (verdict.action if verdict else None) is expected
        assert depends
        entry = triggers.find(address)
        assert (entry[1].action if entry else None) is expected


def test_response_ip_triggers_longest_prefix_then_smallest_address() -> None:
    loaded = zone(
        """\
        24.0.113.0.203.rpz-ip CNAME .
        32.10.113.0.203.rpz-ip CNAME rpz-passthru.
        24.0.100.51.198.rpz-ip CNAME *.
        120.zz.db8.2001.rpz-ip CNAME rpz-drop.
        """
    )
    triggers = loaded.layer.response_ip
    assert triggers is not None

    def found(*addresses: str) -> Action | None:
        entry = triggers.find(ipaddress.ip_address(a).packed for a in addresses)
        return entry[1].action if entry else None

    assert found("203.0.113.5") is Action.NXDOMAIN
    assert found("203.0.113.10") is Action.ALLOW  # /32 beats /24
    assert found("203.0.113.5", "203.0.113.10") is Action.ALLOW
    assert (
        found("203.0.113.5", "198.51.100.1") is Action.NODATA
    )  # both /24: 198.51.100.0 < 203.0.113.0
    assert found("2001:db8::1") is Action.DROP  # a /120 IPv6 ties a /24 IPv4 (mapped: /120)
    assert found("192.0.2.1") is None
    assert found() is None


def test_nsdname_and_nsip_triggers_are_skipped_with_one_warning() -> None:
    body = """\
    ns1.example.rpz-nsdname CNAME .
    *.example.rpz-nsdname CNAME .
    32.1.2.0.192.rpz-nsip CNAME .
    kept.example CNAME .
    """
    loaded = zone(body)
    assert (loaded.report.nsdname, loaded.report.nsip) == (2, 1)
    assert action(loaded, "kept.example") is Action.NXDOMAIN
    assert action(loaded, "ns1.example.rpz-nsdname") is None
    (warning,) = loaded.report.warnings
    assert "2 NSDNAME and 1 NSIP triggers skipped" in warning
    assert f"line {line_of(body, 'ns1.example')}" in warning
    assert "cannot evaluate" in warning


# --- actions and their answers -------------------------------------------------------------


def test_every_action() -> None:
    loaded = zone(
        """\
        nx.example CNAME .
        nodata.example CNAME *.
        pass.example CNAME rpz-passthru.
        legacy.example CNAME legacy.example.
        drop.example CNAME rpz-drop.
        tcp.example CNAME rpz-tcp-only.
        """
    )
    assert action(loaded, "pass.example") is Action.ALLOW
    assert action(loaded, "legacy.example") is Action.ALLOW
    assert action(loaded, "drop.example") is Action.DROP

    nx = render(_v(loaded, "nx.example"), "nx.example")
    assert nx.rcode() == dns.rcode.NXDOMAIN
    assert [r.rdtype for r in nx.authority] == [dns.rdatatype.SOA]
    assert [(int(o.code), o.text) for o in nx.options if isinstance(o, dns.edns.EDEOption)] == [
        (15, "rpz.test")
    ]
    assert nx.authority[0].ttl == 300  # the rule's TTL

    nodata = render(_v(loaded, "nodata.example"), "nodata.example")
    assert (nodata.rcode(), nodata.answer) == (dns.rcode.NOERROR, [])

    tcp = render(_v(loaded, "tcp.example"), "tcp.example")
    assert tcp.flags & dns.flags.TC and not tcp.answer


def _v(loaded: LoadedZone, name: str) -> Verdict:
    verdict = decide(loaded, name)
    assert verdict is not None
    return verdict


def test_local_data_answers_each_type_and_nodata_for_the_rest() -> None:
    loaded = zone(
        """\
        page.example 60 A 192.0.2.80
        page.example 60 A 192.0.2.81
        page.example 60 AAAA 2001:db8::80
        page.example 60 TXT "Blocked by order 17"
        page.example 60 MX 10 mail.page.example.
        """
    )
    verdict = _v(loaded, "page.example")
    assert answer_texts(render(verdict, "page.example", "A")) == ["A 192.0.2.80", "A 192.0.2.81"]
    assert answer_texts(render(verdict, "page.example", "AAAA")) == ["AAAA 2001:db8::80"]
    assert answer_texts(render(verdict, "page.example", "TXT")) == ['TXT "Blocked by order 17"']
    assert answer_texts(render(verdict, "page.example", "MX")) == ["MX 10 mail.page.example."]
    assert sum(len(rrset) for rrset in render(verdict, "page.example", "ANY").answer) == 5
    srv = render(verdict, "page.example", "SRV")
    assert (srv.rcode(), srv.answer, len(srv.authority)) == (dns.rcode.NOERROR, [], 1)
    assert render(verdict, "page.example", "A").answer[0].ttl == 60


def test_cname_local_data_and_the_wildcard_rewrite() -> None:
    loaded = zone(
        """\
        search.example CNAME safe.search.example.
        *.walled.example CNAME *.garden.example.
        inside.example CNAME page
        """
    )
    for qtype in ("A", "MX"):
        assert answer_texts(render(_v(loaded, "search.example"), "search.example", qtype)) == [
            "CNAME safe.search.example."
        ]
    rewritten = render(_v(loaded, "a.b.walled.example"), "A.b.Walled.example")
    assert answer_texts(rewritten) == ["CNAME a.b.walled.example.garden.example."]
    assert answer_texts(render(_v(loaded, "inside.example"), "inside.example")) == [
        "CNAME page.rpz.test."  # a relative target is a name in the zone, as in any zone file
    ]
    long_name = ".".join(["a" * 60] * 3 + ["b" * 50]) + ".walled.example"  # 248 characters
    overflow = render(_v(loaded, long_name), long_name)
    assert overflow.rcode() == dns.rcode.NXDOMAIN  # the rewritten name would be too long


def test_a_relative_special_target_is_local_data_with_a_warning() -> None:
    loaded = zone("typo.example CNAME rpz-passthru\n")
    verdict = _v(loaded, "typo.example")
    assert verdict.action is Action.REDIRECT
    (warning,) = loaded.report.warnings
    assert "trailing dot" in warning and "z.rpz:4" in warning


def test_rules_with_the_same_action_share_one_verdict() -> None:
    loaded = zone("a.example CNAME .\nb.example CNAME .\nc.example 60 CNAME .\n")
    assert _v(loaded, "a.example") is _v(loaded, "b.example")
    assert _v(loaded, "a.example") is not _v(loaded, "c.example")  # another TTL


# --- bad records -------------------------------------------------------------------------


def test_cname_and_other_data_is_an_error_at_the_later_line() -> None:
    body = "both.example CNAME .\nboth.example A 192.0.2.1\n"
    error = error_of(body)
    assert "CNAME and other records" in error.message
    assert (error.source, error.line) == ("z.rpz", line_of(body, "both.example A"))


def test_two_different_cnames_are_an_error_but_a_repeat_is_not() -> None:
    body = "two.example CNAME .\ntwo.example CNAME *.\n"
    error = error_of(body)
    assert "more than one CNAME" in error.message and error.line == line_of(body, "CNAME *.")
    assert action(zone("rep.example CNAME .\nrep.example CNAME .\n"), "rep.example") is (
        Action.NXDOMAIN
    )


def test_unknown_special_action_is_an_error() -> None:
    error = error_of("skip.example CNAME rpz-skipzone.\n")
    assert "unknown RPZ action rpz-skipzone." in error.message and error.line == 4


def test_bad_ip_trigger_is_an_error_with_its_line() -> None:
    error = error_of("ok.example CNAME .\n24.1.2.0.192.rpz-ip CNAME .\n")
    assert error.line == 5 and "24.1.2.0.192.rpz-ip is not an IP trigger" in error.message


@pytest.mark.parametrize(
    ("body", "needle", "message"),
    [
        ("ok.example CNAME .\nbad.example A 300.1.1.1\n", "bad.example", ""),
        ("ok.example CNAME .\nbad.example FROB x\n", "bad.example", "unknown rdatatype"),
        ("a..example CNAME .\n", "a..example", ""),
        ("x.example CNAME " + "a" * 64 + ".example.\n", "x.example", ""),
        ("ok.example CNAME .\nbad.example CH A 192.0.2.1\n", "bad.example", "class"),
    ],
)
def test_syntax_errors_come_with_file_and_line(body: str, needle: str, message: str) -> None:
    error = error_of(body)
    assert (error.source, error.line) == ("z.rpz", line_of(body, needle))
    assert message in error.message


def test_an_unclosed_parenthesis_is_an_error() -> None:
    error = error_of('open.example TXT ( "never closed"\n')
    assert error.source == "z.rpz" and error.line >= 4


def test_not_utf8_and_missing_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.rpz"
    bad.write_bytes(HEAD.encode() + b"caf\xe9.example CNAME .\n")
    with pytest.raises(PolicyError, match="UTF-8") as info:
        load_zone(ZoneConfig("rpz.test.", bad))
    assert info.value.line == 4
    with pytest.raises(PolicyError, match="cannot read"):
        load_zone(ZoneConfig("rpz.test.", tmp_path / "absent.rpz"))


def test_a_transferred_zone_without_a_copy_yet_is_empty(tmp_path: Path) -> None:
    from resolver.core.endpoint import Endpoint

    loaded = load_zone(
        ZoneConfig("rpz.test.", tmp_path / "absent.rpz", (Endpoint("127.0.0.1", 53),))
    )
    assert loaded.layer.qname.names() == 0
    assert "no copy" in loaded.report.warnings[0]


# --- layers and precedence -----------------------------------------------------------------


def yaml_layer(*entries: tuple[str, Action]) -> PolicyLayer:
    info = PolicyInfo(id="yaml", source="p.yaml")
    answers = Answers((ipaddress.IPv4Address("192.0.2.80"),), (), 60)
    compiled = CompiledPolicy.build(
        (w(n), Scope.SUBTREE, Verdict(info, a, answers, 0)) for n, a in entries
    )
    return PolicyLayer("policies", "", compiled)


def layered(*layers: PolicyLayer) -> LayeredPolicy:
    return LayeredPolicy(layers)


def test_the_first_layer_with_a_verdict_decides() -> None:
    first = zone("both.example CNAME .\npass.example CNAME rpz-passthru.\n", order=1).layer
    second = zone(
        "both.example CNAME *.\nsecond.example CNAME *.\npass.example CNAME .\n",
        origin="two.test",
        order=2,
    ).layer
    policy = layered(yaml_layer(("yaml.example", Action.WARNING_PAGE)), first, second)
    assert not policy.dynamic and not policy.has_response_ip
    assert _act(policy.match(w("both.example"))) is Action.NXDOMAIN  # zone order
    assert _act(policy.match(w("second.example"))) is Action.NODATA
    assert _act(policy.match(w("pass.example"))) is Action.ALLOW  # PASSTHRU stops evaluation
    assert _act(policy.match(w("yaml.example"))) is Action.WARNING_PAGE
    assert policy.match(w("none.example")) is None
    verdict, name = policy.locate(w("x.yaml.example"))
    assert _act(verdict) is Action.WARNING_PAGE and name == w("yaml.example")
    assert policy.names() == 1 + 2 + 3


def test_yaml_policies_come_before_the_zones() -> None:
    zone_layer = zone("yaml.example CNAME rpz-passthru.\n", order=1).layer
    policy = layered(yaml_layer(("yaml.example", Action.NXDOMAIN)), zone_layer)
    assert _act(policy.match(w("yaml.example"))) is Action.NXDOMAIN


def test_client_ip_before_qname_in_a_zone_but_zone_order_first() -> None:
    first = zone("only-first.example CNAME rpz-passthru.\n", order=0).layer
    second = zone(
        "32.2.0.0.127.rpz-client-ip CNAME rpz-drop.\nonly-first.example CNAME .\n"
        "mine.example CNAME *.\n",
        origin="two.test",
        order=1,
    ).layer
    policy = layered(first, second)
    assert policy.dynamic

    def as_client(address: str):  # type: ignore[no-untyped-def]
        ip = ipaddress.ip_address(address)
        return lambda scope: scope.applies(ip)

    def outcome(name: str, client: str) -> Action | None:
        verdict, _, _ = policy.match_client(w(name), as_client(client))
        return _act(verdict)

    assert outcome("mine.example", "127.0.0.2") is Action.DROP  # client IP before QNAME
    assert outcome("mine.example", "127.0.0.1") is Action.NODATA
    assert outcome("only-first.example", "127.0.0.2") is Action.ALLOW  # the first zone first
    decision = policy.decide(
        w("mine.example"), as_client("127.0.0.2"), ipaddress.ip_address("127.0.0.2")
    )
    assert decision is not None
    assert (decision.trigger, decision.layer.name, decision.line) == ("client-ip", "two.test.", 4)
    decision = policy.decide(
        w("mine.example"), as_client("127.0.0.1"), ipaddress.ip_address("127.0.0.1")
    )
    assert decision is not None
    assert (decision.trigger, decision.file, decision.line) == ("qname", "z.rpz", 6)


def test_screen_checks_cname_chains_then_response_ips_zone_by_zone() -> None:
    first = zone("24.0.100.51.198.rpz-ip CNAME .\n", order=1).layer
    second = zone("target.example CNAME *.\n", origin="two.test", order=2).layer
    policy = layered(yaml_layer(("tracker.example", Action.WARNING_PAGE)), first, second)
    address = ipaddress.ip_address("198.51.100.9").packed
    assert policy.has_response_ip
    verdict, _ = policy.screen([w("cdn.example"), w("x.tracker.example")], [address])
    assert _act(verdict) is Action.WARNING_PAGE  # the YAML layer first
    verdict, _ = policy.screen([w("target.example")], [address])
    assert _act(verdict) is Action.NXDOMAIN  # zone one's response IP before zone two's name
    verdict, _ = policy.screen([w("target.example")], [])
    assert _act(verdict) is Action.NODATA
    assert policy.screen([w("fine.example")], [ipaddress.ip_address("192.0.2.1").packed]) == (
        None,
        False,
    )


def _act(verdict: Verdict | None) -> Action | None:
    return verdict.action if verdict is not None else None


def test_build_snapshot_layers_policies_and_zones(tmp_path: Path) -> None:
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "p.yaml").write_text("id: court\nblock: [court.example]\n")
    (tmp_path / "z.rpz").write_text(HEAD + "court.example CNAME rpz-passthru.\nz.example CNAME .\n")
    text = "upstreams: []\npolicies: [policies/*.yaml]\n"
    plain = build_snapshot(parse_config(text, "c.yaml", tmp_path))
    assert type(plain.snapshot.policy) is CompiledPolicy  # no zones: the table itself
    config = parse_config(text + "zones:\n  - {name: rpz.test, file: z.rpz}\n", "c.yaml", tmp_path)
    result = build_snapshot(config)
    policy = result.snapshot.policy
    assert isinstance(policy, LayeredPolicy)
    assert [layer.name for layer in policy.layers] == ["policies", "rpz.test."]
    assert _act(policy.match(w("court.example"))) is Action.WARNING_PAGE
    assert _act(policy.match(w("z.example"))) is Action.NXDOMAIN
    assert [z.name for z in result.zones] == ["rpz.test."]

    clash = parse_config(text + "zones:\n  - {name: court, file: z.rpz}\n", "c.yaml", tmp_path)
    with pytest.raises(PolicyError, match="has the id of the policy"):
        build_snapshot(clash)


# --- scale ---------------------------------------------------------------------------------


FEED_HEAD = """\
$TTL 300
@ SOA localhost. root.localhost. 1694945880 43200 3600 259200 300
  NS  localhost.
;
; Title: A feed of DNS-over-HTTPS resolvers (generated for this test)
; Syntax: RPZ
;
"""
TLDS = ("app", "net", "com", "org", "io", "dev")


def write_feed(path: Path, count: int) -> list[str]:
    """A feed laid out as the public RPZ block lists are: a commented header, then every
    name twice (itself and ``*.name``) rewritten to NXDOMAIN. Returns the names."""
    names = [f"dns{i}.provider{i % 211}.{TLDS[i % len(TLDS)]}" for i in range(count)]
    body = "".join(f"{name} CNAME .\n*.{name} CNAME .\n" for name in names)
    path.write_text(FEED_HEAD + body)
    return names


def test_a_large_feed_loads_fast(tmp_path: Path) -> None:
    path = tmp_path / "doh.rpz"
    names = write_feed(path, 5000)
    started = time.monotonic()
    loaded = load_zone(ZoneConfig("doh.rpz.", path))
    elapsed = time.monotonic() - started
    assert loaded.report.qname == 2 * len(names)
    for name in (names[0], names[-1]):
        assert action(loaded, name) is Action.NXDOMAIN
        assert action(loaded, "deep." + name) is Action.NXDOMAIN
        assert action(loaded, name.split(".", 1)[1]) is None  # the provider itself is not listed
    assert elapsed < 5.0  # a guard against quadratic loading, not a benchmark
    text = path.read_text()
    reference = dns.zone.from_text(text, "doh.rpz.", relativize=True, check_origin=False)
    assert loaded.report.records == sum(len(r) for _, r in reference.iterate_rdatasets())


# --- the engine: policy on upstream answers (CNAME chains, response IPs) ------------------

CLIENT = "127.0.0.1"
NOW = 5_000


def engine_with(policy: CompiledPolicy) -> Engine:
    acl = ClientAcl([ipaddress.ip_network("127.0.0.0/8")])
    return Engine(Snapshot(policy), Cache(CacheSettings()), acl)


def ask(name: str, qtype: str = "A") -> bytes:
    message = dns.message.make_query(name, qtype, use_edns=0)
    message.id = 4321
    return message.to_wire()


def upstream(engine: Engine, name: str, *records: str, tcp: bool = False) -> bytes | None:
    """``name`` A asked upstream and answered with ``records`` ("owner type data"): the
    reply the client gets (None: none)."""
    message = dns.message.make_query(name, "A")
    query = wire.parse_query(message.to_wire())
    response = dns.message.make_response(message)
    for record in records:
        owner, rdtype, data = record.split(" ", 2)
        response.answer.append(dns.rrset.from_text(owner, 300, "IN", rdtype, data))
    reply = outbound.parse_reply(response.to_wire(), message.id, query.question)
    return forward(engine, query, reply, NOW, CLIENT, tcp)


def parsed(reply: object) -> dns.message.Message:
    assert isinstance(reply, bytes), reply
    return dns.message.from_wire(reply)


CHAIN = (
    "www.shop.example. CNAME shop.cdn.example.",
    "shop.cdn.example. CNAME x.tracker.example.",
    "x.tracker.example. A 198.51.100.1",
)


def owned_texts(message: dns.message.Message) -> list[tuple[str, str]]:
    """(owner, "TYPE data") of every answer record, in order."""
    return [
        (rrset.name.to_text(), f"{dns.rdatatype.to_text(rrset.rdtype)} {rd.to_text()}")
        for rrset in message.answer
        for rd in rrset
    ]


def test_a_cname_chain_through_a_blocked_name_is_blocked_also_from_the_cache() -> None:
    policy = yaml_layer(("tracker.example", Action.WARNING_PAGE)).qname
    engine = engine_with(policy)
    forwarded = parsed(upstream(engine, "www.shop.example", *CHAIN))
    # As BIND answers: the chain up to the name the policy covers, then the policy's records
    # on that name.
    expected = [
        ("www.shop.example.", "CNAME shop.cdn.example."),
        ("shop.cdn.example.", "CNAME x.tracker.example."),
        ("x.tracker.example.", "A 192.0.2.80"),
    ]
    assert owned_texts(forwarded) == expected
    cached = parsed(answer(engine, ask("www.shop.example"), NOW, CLIENT))
    assert owned_texts(cached) == expected
    assert engine.counters.blocked == 2
    engine.snapshot = Snapshot(CompiledPolicy())  # a reload without the entry: served at once
    served = parsed(answer(engine, ask("www.shop.example"), NOW, CLIENT))
    assert "A 198.51.100.1" in answer_texts(served)


def test_an_answer_decided_by_its_content_is_not_replayed() -> None:
    engine = engine_with(yaml_layer(("tracker.example", Action.NXDOMAIN)).qname)
    upstream(engine, "www.shop.example", *CHAIN)
    assert parsed(answer(engine, ask("www.shop.example"), NOW, CLIENT)).rcode() == 3
    # The name moved away from the tracker: the next answer for the same question is served.
    upstream(engine, "www.shop.example", "www.shop.example. A 198.51.100.2")
    served = parsed(answer(engine, ask("www.shop.example"), NOW + 1, CLIENT))
    assert answer_texts(served) == ["A 198.51.100.2"]


def test_passthru_on_the_query_name_stops_the_checks_on_the_answer() -> None:
    policy = layered(
        yaml_layer(("tracker.example", Action.NXDOMAIN)),
        zone("www.shop.example CNAME rpz-passthru.\n", order=1).layer,
    )
    engine = engine_with(policy)
    upstream(engine, "www.shop.example", *CHAIN)
    served = parsed(answer(engine, ask("www.shop.example"), NOW, CLIENT))
    assert "A 198.51.100.1" in answer_texts(served)


def test_a_response_ip_trigger_added_by_a_reload_applies_to_cached_answers() -> None:
    engine = engine_with(CompiledPolicy())
    upstream(engine, "plain.example", "plain.example. A 198.51.100.7")
    assert engine.facts.kept == {}  # no CNAME, no response-IP trigger: nothing kept
    assert answer_texts(parsed(answer(engine, ask("plain.example"), NOW, CLIENT))) == [
        "A 198.51.100.7"
    ]
    engine.snapshot = Snapshot(layered(zone("32.7.100.51.198.rpz-ip CNAME .\n").layer))
    reply = parsed(answer(engine, ask("plain.example"), NOW, CLIENT))
    assert reply.rcode() == dns.rcode.NXDOMAIN
    assert engine.counters.blocked == 1


def test_a_drop_decided_on_the_answer() -> None:
    engine = engine_with(layered(zone("24.0.100.51.198.rpz-ip CNAME rpz-drop.\n").layer))
    assert upstream(engine, "plain.example", "plain.example. A 198.51.100.7") is None
    assert engine.handle(ask("plain.example"), CLIENT, NOW, False) is None
    refused = parsed(upstream(engine, "plain.example", "plain.example. A 198.51.100.7", tcp=True))
    assert refused.rcode() == dns.rcode.REFUSED  # a TCP client is owed an answer
    assert engine.counters.dropped == 3


def test_tcp_only_answers_are_not_replayed_to_udp() -> None:
    engine = engine_with(yaml_layer(("tcp.example", Action.TCP_ONLY)).qname)
    upstream(engine, "tcp.example", "tcp.example. A 198.51.100.3")
    over_tcp = parsed(engine.handle(ask("tcp.example"), CLIENT, NOW, True))
    assert answer_texts(over_tcp) == ["A 198.51.100.3"]
    over_udp = parsed(answer(engine, ask("tcp.example"), NOW, CLIENT))
    assert over_udp.flags & dns.flags.TC and not over_udp.answer


# --- zone order comes before trigger type ----------------------------------------------------


def test_an_earlier_zones_response_ip_trigger_beats_a_later_zones_qname_trigger() -> None:
    first = zone("32.7.100.51.198.rpz-ip CNAME .\n", order=1).layer  # the answer's address
    second = zone("both.example CNAME *.\nonly.example CNAME *.\n", origin="two.test", order=2)
    engine = engine_with(layered(first, second.layer))
    # Before the answer nothing decides: the later zone must wait for the earlier one's check.
    assert isinstance(engine.handle(ask("both.example"), CLIENT, NOW, False), wire.Query)
    decided = parsed(upstream(engine, "both.example", "both.example. A 198.51.100.7"))
    assert decided.rcode() == dns.rcode.NXDOMAIN  # the first zone's response-IP trigger
    other = parsed(upstream(engine, "only.example", "only.example. A 198.51.100.8"))
    assert (other.rcode(), other.answer) == (dns.rcode.NOERROR, [])  # then the second's QNAME


def test_without_earlier_ip_triggers_a_later_zone_decides_before_forwarding() -> None:
    first = zone("other.example CNAME .\n", order=1).layer
    second = zone("only.example CNAME *.\n", origin="two.test", order=2).layer
    engine = engine_with(layered(first, second))
    reply = parsed(answer(engine, ask("only.example"), NOW, CLIENT))
    assert (reply.rcode(), reply.answer) == (dns.rcode.NOERROR, [])
