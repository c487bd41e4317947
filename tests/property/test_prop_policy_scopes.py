"""With client scopes and dated policies, CompiledPolicy.match_client agrees with the rule:
first drop the entries that do not apply to the client or whose policy is not in force,
then the most specific name wins, then an exemption, then the policy listed first."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from resolver.core import wire
from resolver.core.matcher import CompiledPolicy, Scope
from resolver.core.verdict import EVERYONE, Action, Answers, ClientScope, PolicyInfo, Verdict

from .test_prop_policy import ALPHABET, QUERY_NAMES, covers

ANSWERS = Answers((ipaddress.IPv4Address("192.0.2.80"),), (), 60)
NOW = datetime(2026, 6, 1, tzinfo=UTC)
LAB = ipaddress.ip_network("10.1.0.0/16")
SCOPES = [EVERYONE, ClientScope(include=(LAB,)), ClientScope(exclude=(LAB,))]
CLIENTS = [ipaddress.ip_address("10.1.2.3"), ipaddress.ip_address("192.0.2.9")]
WINDOWS = [
    (None, None),
    (NOW - timedelta(days=1), None),  # in force
    (NOW + timedelta(days=1), None),  # not yet
    (None, NOW - timedelta(days=1)),  # expired
]

rule_names = st.lists(st.sampled_from(ALPHABET), min_size=1, max_size=3).map(".".join)
actions = st.sampled_from([Action.WARNING_PAGE, Action.NXDOMAIN, Action.ALLOW])


@st.composite
def rule_sets(draw: st.DrawFn) -> list[tuple[str, Scope, Verdict]]:
    rules = []
    for _ in range(draw(st.integers(0, 8))):
        order = draw(st.integers(0, 2))
        start, end = draw(st.sampled_from(WINDOWS))
        info = PolicyInfo(id=f"p{order}", source="p.yaml", effective_from=start, expires=end)
        verdict = Verdict(info, draw(actions), ANSWERS, order, scope=draw(st.sampled_from(SCOPES)))
        rules.append((draw(rule_names), draw(st.sampled_from(list(Scope))), verdict))
    return rules


def reference(
    rules: list[tuple[str, Scope, Verdict]], qname: str, client: object
) -> Verdict | None:
    best = None
    for index, (name, scope, verdict) in enumerate(rules):
        if not verdict.policy.active(NOW) or not verdict.scope.applies(client):  # type: ignore[arg-type]
            continue
        if not covers(name, scope, qname):
            continue
        allow = 1 if verdict.action is Action.ALLOW else 0
        key = (name.count(".") + 1, allow, -verdict.order, -index)
        if best is None or key > best[0]:
            best = (key, verdict)
    return best[1] if best else None


@given(rule_sets())
def test_match_client_agrees_with_the_reference(rules: list[tuple[str, Scope, Verdict]]) -> None:
    policy = CompiledPolicy.build((wire.text_to_name(n), s, v) for n, s, v in rules)
    policy.set_clock(NOW)
    for client in CLIENTS:
        for qname in QUERY_NAMES:
            got, _, _ = policy.match_client(
                wire.text_to_name(qname), lambda s, c=client: s.applies(c)
            )
            assert got is reference(rules, qname, client), (qname, client)


@given(rule_sets())
def test_static_tables_answer_the_same_either_way(rules: list[tuple[str, Scope, Verdict]]) -> None:
    static = [(n, s, v) for n, s, v in rules if v.static]
    policy = CompiledPolicy.build((wire.text_to_name(n), s, v) for n, s, v in static)
    assert not policy.dynamic
    for qname in QUERY_NAMES:
        wire_name = wire.text_to_name(qname)
        assert policy.match(wire_name) is policy.match_client(wire_name)[0]


def test_clock_switches_a_dated_policy_on_and_off() -> None:
    start, end = NOW + timedelta(hours=1), NOW + timedelta(hours=2)
    info = PolicyInfo(id="dated", source="d.yaml", effective_from=start, expires=end)
    verdict = Verdict(info, Action.NXDOMAIN, ANSWERS, 0)
    policy = CompiledPolicy.build([(wire.text_to_name("a.b"), Scope.SUBTREE, verdict)])
    name = wire.text_to_name("x.a.b")
    assert policy.set_clock(NOW) == [(info, False)]
    assert policy.match_client(name)[0] is None
    assert policy.next_change(NOW) == start
    assert policy.set_clock(start) == [(info, True)]
    assert policy.match_client(name)[0] is verdict
    assert policy.set_clock(start) == []
    assert policy.next_change(start) == end
    assert policy.set_clock(end) == [(info, False)]
    assert policy.next_change(end) is None
