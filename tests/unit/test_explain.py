"""`sinkhole explain` as a function: the plain scan over every entry picks the same winner as
the compiled table, says why each other match lost, and shows the answer the server sends."""

from __future__ import annotations

import ipaddress
import itertools
import random
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from resolver.core import wire
from resolver.core.codes import type_code
from resolver.core.errors import SourceError
from resolver.core.verdict import Action
from resolver.sources.config import Config, load_config
from resolver.sources.rules import all_rules, zone_rules
from resolver.tools.explain import (
    Explanation,
    agrees,
    build,
    decide,
    explain,
    render_text,
    scope_test,
)

NOW = datetime(2026, 6, 1, tzinfo=UTC)
LAB = "10.1.0.0/16"
CLIENTS = [ipaddress.ip_address("10.1.2.3"), ipaddress.ip_address("192.0.2.9"), None]


def write(tmp_path: Path, policies: dict[str, str], lists: dict[str, str] | None = None) -> Config:
    (tmp_path / "policies").mkdir(parents=True, exist_ok=True)
    (tmp_path / "lists").mkdir(exist_ok=True)
    for name, text in policies.items():
        (tmp_path / "policies" / name).write_text(textwrap.dedent(text))
    for name, text in (lists or {}).items():
        (tmp_path / "lists" / name).write_text(text)
    settings = {
        "listen": ["127.0.0.1:5300"],
        "upstreams": ["127.0.0.1:5301", "127.0.0.1:5302"],
        "policies": ["policies/*.yaml"],
        "warning_page": {"ipv4": ["192.0.2.80"], "ipv6": ["2001:db8::80"], "ttl": 123},
        "allow_clients": ["127.0.0.0/8", "10.0.0.0/8", "192.0.2.0/24"],
    }
    path = tmp_path / "sinkhole.yaml"
    path.write_text(yaml.safe_dump(settings, sort_keys=False))
    return load_config(path)


def run(
    config: Config,
    name: str,
    qtype: str = "A",
    client: str | None = None,
    now: datetime = NOW,
) -> Explanation:
    policies, compiled = build(config, now)
    address = ipaddress.ip_address(client) if client else None
    return explain(config, policies, compiled, name, type_code(qtype), address, now)


# --- the plain scan agrees with the compiled table ----------------------------------------

LABELS = ("a", "b", "c")
BASE = "t.example"
QUERY_NAMES = [BASE] + [
    ".".join(labels) + "." + BASE
    for depth in range(1, 4)
    for labels in itertools.product(LABELS, repeat=depth)
]
FORMS = ("{}", "={}", "*.{}")
WINDOWS = [
    {},
    {"effective_from": "2026-01-01"},
    {"effective_from": "2027-01-01"},
    {"expires": "2026-02-01"},
]


def random_policy(rng: random.Random, index: int) -> tuple[str, str]:
    """A random valid policy and the list it references."""
    names = [
        ".".join(rng.choice(LABELS) for _ in range(rng.randint(1, 3))) + "." + BASE
        for _ in range(rng.randint(1, 6))
    ]
    policy: dict[str, object] = {
        "id": f"p{index}",
        "action": rng.choice(["warning-page", "nxdomain", "nodata"]),
        **rng.choice(WINDOWS),
    }
    if rng.random() < 0.3:
        policy["clients"] = [LAB]
    used: set[tuple[str, str]] = set()
    block: list[object] = []
    allow: list[object] = []
    for name in names:
        form = rng.choice(FORMS)
        key = (name, form)
        if key in used:
            continue
        used.add(key)
        written = form.format(name)
        if rng.random() < 0.25:
            allow.append(written)
        elif rng.random() < 0.3:
            entry: dict[str, object] = {
                "name": written,
                "action": rng.choice(["nxdomain", "refuse"]),
            }
            if rng.random() < 0.5:
                entry["except_clients"] = [LAB]
            block.append(entry)
        else:
            block.append(written)
    if block:
        policy["block"] = block
    if allow:
        policy["allow"] = allow
    listed = [
        ".".join(rng.choice(LABELS) for _ in range(rng.randint(1, 3))) + "." + BASE
        for _ in range(rng.randint(0, 4))
    ]
    if listed:
        policy["lists"] = [{"file": f"../lists/l{index}.txt"}]
    return yaml.safe_dump(policy, sort_keys=False), "\n".join(listed) + "\n"


def test_the_plain_scan_picks_the_compiled_tables_winner(tmp_path: Path) -> None:
    rng = random.Random(20260601)
    checked = configs = 0
    for case in range(120):
        workdir = tmp_path / f"case{case}"
        workdir.mkdir()
        policies, lists = {}, {}
        for index in range(rng.randint(1, 3)):
            text, listed = random_policy(rng, index)
            policies[f"{index}0-p.yaml"] = text
            lists[f"l{index}.txt"] = listed
        config = write(workdir, policies, lists)
        try:
            loaded, compiled = build(config, NOW)
        except SourceError as exc:  # a generated policy the parser refuses: say which
            pytest.fail(f"case {case}: {exc}\n{policies}")
        configs += 1
        rules = list(all_rules(loaded))
        for qname, client in itertools.product(QUERY_NAMES, CLIENTS):
            winner, _ = decide([r for r in rules if r.covers(qname)], client, NOW)

            applies = scope_test(client)
            verdict, name, _ = compiled.match_client(wire.text_to_name(qname), applies)
            found = wire.name_to_text(name) if name else ""
            assert agrees(winner, verdict, found), (
                f"case {case}, {qname} from {client}: scan says {winner}, "
                f"table says {verdict and (verdict.policy_id, verdict.action)} at {found}\n"
                f"{policies}"
            )
            checked += 1
        # And the whole of explain, for a few names.
        for qname in rng.sample(QUERY_NAMES, 3):
            assert explain(config, loaded, compiled, qname, 1, None, NOW).consistent
    assert configs == 120
    assert checked == 120 * len(QUERY_NAMES) * len(CLIENTS)


ZONE_ACTIONS = ("CNAME .", "CNAME *.", "CNAME rpz-passthru.", "CNAME rpz-drop.", "A 192.0.2.55")


def random_zone(rng: random.Random) -> str:
    """An RPZ zone with name and wildcard triggers over the test names, sometimes a
    client-IP trigger."""
    lines = ["$TTL 300", "@ SOA ns. host. 1 3600 600 86400 60", "@ NS ns."]
    owners: set[str] = set()
    for _ in range(rng.randint(1, 6)):
        name = ".".join(rng.choice(LABELS) for _ in range(rng.randint(1, 3))) + "." + BASE
        owner = rng.choice(["{}", "*.{}"]).format(name)
        if owner not in owners:
            owners.add(owner)
            lines.append(f"{owner} {rng.choice(ZONE_ACTIONS)}")
    if rng.random() < 0.3:
        lines.append(f"16.0.0.1.10.rpz-client-ip {rng.choice(ZONE_ACTIONS[:2])}")
    return "\n".join(lines) + "\n"


def test_with_zones_the_plain_scan_still_agrees(tmp_path: Path) -> None:
    """RPZ zones are layers after the policy files: the first layer that decides wins."""
    rng = random.Random(20260602)
    for case in range(60):
        workdir = tmp_path / f"case{case}"
        workdir.mkdir()
        text, listed = random_policy(rng, 0)
        config = write(workdir, {"00-p.yaml": text}, {"l0.txt": listed})
        zones = []
        for number in range(rng.randint(1, 2)):
            (workdir / f"z{number}.zone").write_text(random_zone(rng))
            zones.append({"name": f"rpz{number}.test", "file": f"z{number}.zone"})
        settings = yaml.safe_load((workdir / "sinkhole.yaml").read_text())
        settings["zones"] = zones
        (workdir / "sinkhole.yaml").write_text(yaml.safe_dump(settings))
        config = load_config(workdir / "sinkhole.yaml")
        loaded, compiled = build(config, NOW)
        assert hasattr(compiled, "layers")
        rules = list(all_rules(loaded)) + list(zone_rules(compiled))
        for qname, client in itertools.product(QUERY_NAMES, CLIENTS):
            winner, _ = decide([r for r in rules if r.covers(qname)], client, NOW)
            verdict, name, _ = compiled.match_client(wire.text_to_name(qname), scope_test(client))
            found = wire.name_to_text(name) if name else ""
            assert agrees(winner, verdict, found), (
                f"case {case}, {qname} from {client}: scan says {winner}, "
                f"table says {verdict and (verdict.policy_id, verdict.action)} at {found}"
            )
        for qname in rng.sample(QUERY_NAMES, 3):
            assert explain(config, loaded, compiled, qname, 1, None, NOW).consistent


def test_the_winner_is_the_most_specific_then_exemption_then_order(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        {
            "10-court.yaml": """\
                id: court
                reference: Order 1
                block:
                  - a.example
                  - www.a.example
                """,
            "20-isp.yaml": """\
                id: isp
                action: nxdomain
                block:
                  - www.a.example
                allow:
                  - open.a.example
                """,
            "30-late.yaml": """\
                id: late
                block:
                  - open.a.example
                """,
        },
    )
    result = run(config, "www.a.example")
    assert result.winner is not None
    assert (result.winner.policy_id, result.winner.name) == ("court", "www.a.example")
    reasons = {(m.rule.policy_id, m.rule.name): m.reason for m in result.matches if not m.decides}
    assert reasons == {
        ("isp", "www.a.example"): "same name, but policy 'court' is listed before 'isp' in "
        "the configuration",
        ("court", "a.example"): "less specific than www.a.example",
    }
    result = run(config, "x.open.a.example")
    assert result.outcome == "exempted"
    reasons = {(m.rule.policy_id, m.rule.name): m.reason for m in result.matches if not m.decides}
    assert reasons[("late", "open.a.example")] == "same name, but the exemption wins"
    assert reasons[("court", "a.example")] == "less specific than open.a.example"
    assert result.forwarded == ["127.0.0.1:5301", "127.0.0.1:5302"]
    assert result.answer is None


def test_entries_for_other_clients_and_policies_out_of_force_lose(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        {
            "10-lab.yaml": f"id: lab\nclients: ['{LAB}']\nblock: [www.s.example]\n",
            "20-old.yaml": "id: old\nexpires: 2026-01-01\nblock: [www.s.example]\n",
            "30-base.yaml": "id: base\naction: nxdomain\nblock: [s.example]\n",
        },
    )
    outside = run(config, "www.s.example", client="192.0.2.9")
    assert outside.winner is not None and outside.winner.policy_id == "base"
    reasons = {m.rule.policy_id: m.reason for m in outside.matches}
    assert reasons["lab"] == f"not applicable to this client (applies to only {LAB})"
    assert reasons["old"] == "policy not in force: it expired on 2026-01-01 00:00 UTC"
    assert outside.answer is not None and outside.answer["udp"]["rcode"] == "NXDOMAIN"
    inside = run(config, "www.s.example", client="10.1.0.7")
    assert inside.winner is not None and inside.winner.policy_id == "lab"
    before = run(config, "www.s.example", client="192.0.2.9", now=datetime(2025, 6, 1, tzinfo=UTC))
    assert before.winner is not None and before.winner.policy_id == "old"
    assert all(r.consistent for r in (outside, inside, before))


def test_the_answer_is_the_servers_own(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        {
            "p.yaml": """\
                id: court
                authority: Test Court
                reference: Order 42
                block:
                  - blocked.example
                  - name: gone.example
                    action: nxdomain
                  - name: quiet.example
                    action: drop
                  - name: moved.example
                    action: redirect
                    redirect: {cname: landing.example.org}
                """
        },
    )
    a = run(config, "WWW.Blocked.Example.")
    assert a.qname == "www.blocked.example"
    assert a.answer is not None
    udp = a.answer["udp"]
    assert a.answer["tcp"] == udp
    assert udp["rcode"] == "NOERROR"
    assert udp["flags"] == ["qr", "rd", "ra"]
    assert udp["answer"] == ["www.blocked.example. 123 IN A 192.0.2.80"]
    assert udp["ede"] == [{"code": 16, "purpose": "Censored", "text": "Order 42"}]

    txt = run(config, "blocked.example", "TXT")
    assert txt.answer is not None
    assert txt.answer["udp"]["answer"] == []
    [soa] = txt.answer["udp"]["authority"]
    assert soa.startswith("blocked.example. 123 IN SOA sinkhole.invalid.")

    nx = run(config, "gone.example", "AAAA")
    assert nx.answer is not None and nx.answer["udp"]["rcode"] == "NXDOMAIN"

    dropped = run(config, "quiet.example")
    assert dropped.answer is not None and dropped.answer["udp"]["sent"] is False
    assert "no answer is sent" in "\n".join(render_text(dropped))

    moved = run(config, "moved.example")
    assert moved.answer is not None
    assert moved.answer["udp"]["answer"] == ["moved.example. 123 IN CNAME landing.example.org."]

    refused = run(config, "blocked.example", client="203.0.113.5")
    assert refused.outcome == "refused"
    assert refused.answer is not None and refused.answer["udp"]["rcode"] == "REFUSED"

    free = run(config, "free.example")
    assert free.outcome == "forwarded" and free.winner is None and free.matches == []
    assert "forwarded to upstreams 127.0.0.1:5301, 127.0.0.1:5302" in "\n".join(render_text(free))


def test_list_names_are_shown_with_their_line(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        {"p.yaml": "id: feed\naction: nxdomain\nlists:\n  - file: ../lists/feed.txt\n"},
        {"feed.txt": "# a feed\nads.example\nwww.ads.example\nads.example\n"},
    )
    result = run(config, "x.www.ads.example")
    winner = result.winner
    assert winner is not None and winner.listed
    assert (winner.name, winner.line) == ("www.ads.example", 3)
    lines = sorted(m.rule.line for m in result.matches if m.rule.name == "ads.example")
    assert lines == [2, 4]
    text = "\n".join(render_text(result))
    assert f"list name www.ads.example (nxdomain, policy 'feed') at {tmp_path}" in text
    assert "feed.txt:3" in text


def test_decide_with_nothing_applicable() -> None:
    winner, matches = decide([], None, NOW)
    assert winner is None and matches == []


def test_an_inconsistency_is_reported(tmp_path: Path) -> None:
    """The check against the compiled table can fail: feed it another table."""
    config = write(tmp_path, {"p.yaml": "id: p\nblock: [a.example]\n"})
    other = write(tmp_path / "other", {"q.yaml": "id: q\naction: nxdomain\nblock: [a.example]\n"})
    policies, _ = build(config, NOW)
    _, wrong = build(other, NOW)
    result = explain(config, policies, wrong, "a.example", 1, None, NOW)
    assert not result.consistent
    assert any(
        line.startswith("error: the server's compiled table") for line in render_text(result)
    )
    assert result.compiled is not None and result.compiled.action is Action.NXDOMAIN
    assert wire.text_to_name(result.compiled_name) == wire.text_to_name("a.example")
