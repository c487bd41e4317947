"""RPZ zones in the running server: triggers, actions, precedence, CNAME chains, reloads."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest
from support.procs import REPO, WARNING_IPV4, FakeUpstream, Sinkhole, SinkholeFactory

from blackbox.dnsclient import addresses, ask, ede, unique, v4
from blackbox.standard import UPSTREAM_IPV4, UPSTREAM_IPV6

pytestmark = pytest.mark.blackbox

HEAD = """\
$TTL 300
@ SOA ns.rpz.test. hostmaster.rpz.test. (
      1      ; serial
      3600 600 86400 60 )
  NS ns.rpz.test.
"""

ACTIONS = """\
nx.example                  CNAME .
*.nx.example                CNAME .
exact.example               CNAME .
*.below.example             CNAME .
nodata.example              CNAME *.
*.blocked-tree.example      CNAME .
ok.blocked-tree.example     CNAME rpz-passthru.
dropped.example             CNAME rpz-drop.
tcp.example                 CNAME rpz-tcp-only.
page.example                60 A     192.0.2.80
                            60 AAAA  2001:db8::80
                            60 TXT   "Blocked by order 17"
search.example              CNAME safe.search.example.
*.walled.example            CNAME *.garden.example.
"""


def records(message: dns.message.Message) -> list[tuple[str, str, str]]:
    """The answer section as (owner, type, data), in order."""
    return [
        (rrset.name.to_text(), dns.rdatatype.to_text(rrset.rdtype), rd.to_text())
        for rrset in message.answer
        for rd in rrset
    ]


def write_zone(directory: Path, name: str, body: str) -> Path:
    path = directory / name
    path.write_text(HEAD + body)
    return path


def start(
    factory: SinkholeFactory,
    tmp_path: Path,
    zones: dict[str, str],
    policies: dict[str, str] | None = None,
    **settings: Any,
) -> Sinkhole:
    """A server with ``zones`` (origin -> body) in this order, after ``policies``."""
    (tmp_path / "zones").mkdir(exist_ok=True)
    listed = []
    for origin, body in zones.items():
        path = write_zone(tmp_path / "zones", origin + ".rpz", body)
        listed.append({"name": origin, "file": str(path)})
    return factory(policies or {}, zones=listed, **settings)


def zone_path(tmp_path: Path, origin: str) -> Path:
    return tmp_path / "zones" / (origin + ".rpz")


def reload(server: Sinkhole, event: str = "policy_reloaded") -> dict[str, object]:
    mark = server.mark()
    server.send_signal(signal.SIGHUP)
    return server.wait_event(event, 10.0, start=mark)


def test_qname_triggers_and_every_action(
    sinkhole_factory: SinkholeFactory, tmp_path: Path, fake_upstream: FakeUpstream
) -> None:
    server = start(sinkhole_factory, tmp_path, {"rpz.test": ACTIONS}, log_level="debug")
    where = v4(server)
    assert server.started["zones"] == 1
    (zone,) = server.wait_event("started_details", 5.0)["zones"]
    assert zone["qname_triggers"] == 12 and zone["zone"] == "rpz.test."

    r = ask(where, "nx.example", edns=True)
    assert r.rcode() == dns.rcode.NXDOMAIN and ede(r) == [(15, "rpz.test")]
    assert ask(where, "a.b.nx.example").rcode() == dns.rcode.NXDOMAIN
    assert ask(where, "exact.example").rcode() == dns.rcode.NXDOMAIN
    below = unique("fwd", "exact.example")
    assert addresses(ask(where, below)) == [UPSTREAM_IPV4]  # "name" is the name alone
    assert addresses(ask(where, "below.example")) == [UPSTREAM_IPV4]  # "*.name" only under it
    assert ask(where, unique("x", "below.example")).rcode() == dns.rcode.NXDOMAIN

    nodata = ask(where, "nodata.example")
    assert (nodata.rcode(), nodata.answer) == (dns.rcode.NOERROR, [])

    passed = unique("fwd", "ok.blocked-tree.example")
    assert ask(where, unique("x", "blocked-tree.example")).rcode() == dns.rcode.NXDOMAIN
    assert addresses(ask(where, "ok.blocked-tree.example")) == [UPSTREAM_IPV4]
    assert ask(where, passed).rcode() == dns.rcode.NXDOMAIN  # passthru is the name alone
    assert fake_upstream.count(passed) == 0

    with pytest.raises(dns.exception.Timeout):
        ask(where, "dropped.example", timeout=0.5)

    over_udp = ask(where, "tcp.example")
    assert over_udp.flags & dns.flags.TC and not over_udp.answer
    assert addresses(ask(where, "tcp.example", tcp=True)) == [UPSTREAM_IPV4]
    assert ask(where, "tcp.example").flags & dns.flags.TC  # the TCP answer is not replayed

    assert addresses(ask(where, "page.example")) == [WARNING_IPV4]
    assert addresses(ask(where, "page.example", "AAAA")) == ["2001:db8::80"]
    txt = ask(where, "page.example", "TXT")
    assert [rd.to_text() for rrset in txt.answer for rd in rrset] == ['"Blocked by order 17"']
    mx = ask(where, "page.example", "MX")
    assert (mx.rcode(), mx.answer) == (dns.rcode.NOERROR, [])
    assert ask(where, "page.example").answer[0].ttl == 60

    # A policy CNAME is followed: the CNAME, then the target's own records (upstream's).
    cname = ask(where, "search.example")
    assert records(cname) == [
        ("search.example.", "CNAME", "safe.search.example."),
        ("safe.search.example.", "A", UPSTREAM_IPV4),
    ]
    walled = ask(where, "Some.Walled.example")
    assert records(walled) == [
        ("Some.Walled.example.", "CNAME", "some.walled.example.garden.example."),
        ("some.walled.example.garden.example.", "A", UPSTREAM_IPV4),
    ]
    assert fake_upstream.count("nx.example") == fake_upstream.count("page.example") == 0


def test_client_ip_trigger(sinkhole_factory: SinkholeFactory, tmp_path: Path) -> None:
    server = start(sinkhole_factory, tmp_path, {"rpz.test": "32.2.0.0.127.rpz-client-ip CNAME .\n"})
    name = unique("fwd")

    def from_source(source: str) -> dns.message.Message:
        query = dns.message.make_query(name, "A")
        return dns.query.udp(query, server.host, timeout=2.0, port=server.port, source=source)

    assert from_source("127.0.0.2").rcode() == dns.rcode.NXDOMAIN
    assert addresses(from_source("127.0.0.1")) == [UPSTREAM_IPV4]
    assert from_source("127.0.0.2").rcode() == dns.rcode.NXDOMAIN  # not the cached answer


def test_response_ip_trigger_also_for_cached_answers_after_a_reload(
    sinkhole_factory: SinkholeFactory, tmp_path: Path, fake_upstream: FakeUpstream
) -> None:
    server = start(sinkhole_factory, tmp_path, {"rpz.test": "unrelated.example CNAME .\n"})
    cached = unique("fwd")
    assert addresses(ask(v4(server), cached)) == [UPSTREAM_IPV4]
    write_zone(tmp_path / "zones", "rpz.test.rpz", "32.7.100.51.198.rpz-ip CNAME .\n")
    reloaded = reload(server)
    assert reloaded["zones"][0]["response_ip_triggers"] == 1  # type: ignore[index]
    assert ask(v4(server), cached).rcode() == dns.rcode.NXDOMAIN
    assert fake_upstream.count(cached) == 1  # served from the cache, checked on the way out
    fresh = unique("fwd")
    assert ask(v4(server), fresh).rcode() == dns.rcode.NXDOMAIN  # a forwarded answer too
    assert ask(v4(server), fresh, tcp=True).rcode() == dns.rcode.NXDOMAIN
    aaaa = ask(v4(server), unique("fwd"), "AAAA")  # 2001:db8::7: no trigger covers it
    assert addresses(aaaa) == [UPSTREAM_IPV6]


@pytest.mark.parametrize("where", ["zone", "yaml"])
def test_a_policy_on_a_name_in_the_cname_chain_applies(
    sinkhole_factory: SinkholeFactory, tmp_path: Path, where: str
) -> None:
    if where == "zone":
        server = start(sinkhole_factory, tmp_path, {"rpz.test": "target.example CNAME .\n"})
    else:
        policy = "id: trackers\nreference: Tracker list\nblock: [target.example]\n"
        server = sinkhole_factory({"trackers.yaml": policy})
    name = unique("cname")
    r = ask(v4(server), name)
    # As BIND answers: the chain up to the name the policy covers, then the policy's
    # answer for that name.
    assert records(r)[0] == (name + ".", "CNAME", "target.example.")
    if where == "zone":
        assert r.rcode() == dns.rcode.NXDOMAIN
        assert len(records(r)) == 1
    else:
        assert records(r)[1:] == [("target.example.", "A", WARNING_IPV4)]
    again = ask(v4(server), name, tcp=True)  # from the cache now
    assert again.rcode() == r.rcode() and addresses(again) == addresses(r)
    plain = unique("fwd")
    assert addresses(ask(v4(server), plain)) == [UPSTREAM_IPV4]


def test_precedence_between_yaml_and_zones_and_between_zones(
    sinkhole_factory: SinkholeFactory, tmp_path: Path
) -> None:
    policy = "id: court\nreference: Order 1\nblock: [yaml-first.example]\n"
    first = "both.example CNAME .\nexempt.example CNAME rpz-passthru.\nyaml-first.example CNAME .\n"
    second = "both.example CNAME *.\nexempt.example CNAME .\nsecond.example CNAME *.\n"
    server = start(
        sinkhole_factory,
        tmp_path,
        {"first.test": first, "second.test": second},
        {"court.yaml": policy},
    )
    where = v4(server)
    assert addresses(ask(where, "yaml-first.example")) == [WARNING_IPV4]
    both = ask(where, "both.example", edns=True)
    assert both.rcode() == dns.rcode.NXDOMAIN and ede(both) == [(15, "first.test")]
    assert addresses(ask(where, "exempt.example")) == [UPSTREAM_IPV4]
    second_only = ask(where, "second.example", edns=True)
    assert second_only.answer == [] and ede(second_only) == [(15, "second.test")]


def test_sighup_reloads_a_changed_zone(
    sinkhole_factory: SinkholeFactory, tmp_path: Path, fake_upstream: FakeUpstream
) -> None:
    added = unique("added")
    server = start(sinkhole_factory, tmp_path, {"rpz.test": "old.example CNAME .\n"})
    assert addresses(ask(v4(server), added)) == [UPSTREAM_IPV4]
    write_zone(tmp_path / "zones", "rpz.test.rpz", f"{added} CNAME .\n")
    reload(server)
    assert ask(v4(server), added).rcode() == dns.rcode.NXDOMAIN
    assert addresses(ask(v4(server), "old.example")) == [UPSTREAM_IPV4]


def test_a_broken_zone_keeps_the_old_one(sinkhole_factory: SinkholeFactory, tmp_path: Path) -> None:
    server = start(sinkhole_factory, tmp_path, {"rpz.test": "old.example CNAME .\n"})
    path = write_zone(
        tmp_path / "zones", "rpz.test.rpz", "new.example CNAME .\nnew.example A 192.0.2.1\n"
    )
    failed = reload(server, "policy_reload_failed")
    assert failed["file"] == str(path)
    assert failed["line"] == HEAD.count("\n") + 2
    assert "CNAME and other records" in str(failed["error"])
    assert ask(v4(server), "old.example").rcode() == dns.rcode.NXDOMAIN
    assert addresses(ask(v4(server), "new.example")) == [UPSTREAM_IPV4]


def test_check_reports_zone_errors_and_skipped_triggers(tmp_path: Path) -> None:
    zone = write_zone(tmp_path, "z.rpz", "ns.example.rpz-nsdname CNAME .\nok.example CNAME .\n")
    config = tmp_path / "c.yaml"
    config.write_text(
        f"upstreams: []\npolicies: []\nzones:\n  - {{name: rpz.test, file: {zone}}}\n"
    )
    check = [sys.executable, "-m", "resolver", "check", "--config", str(config)]
    done = subprocess.run(check, capture_output=True, text=True, cwd=REPO, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 NSDNAME and 0 NSIP triggers skipped" in done.stdout
    zone.write_text(HEAD + "ok.example CNAME .\nbad.example A 192.0.2.300\n")
    done = subprocess.run(check, capture_output=True, text=True, cwd=REPO, timeout=60)
    assert done.returncode == 1
    assert f"{zone}:{HEAD.count(chr(10)) + 2}:" in done.stdout
