"""CompiledPolicy agrees with a slow, obviously correct reading of the precedence rule."""

from __future__ import annotations

import ipaddress
import itertools

from hypothesis import given
from hypothesis import strategies as st

from resolver.core import wire
from resolver.core.matcher import CompiledPolicy, Scope
from resolver.core.verdict import Action, Answers, PolicyInfo, Verdict

ALPHABET = ("a", "b", "c")
ANSWERS = Answers((ipaddress.IPv4Address("192.0.2.80"),), (), 60)

# Every name of 1 to 4 labels over the alphabet: the queries each rule set is checked on.
QUERY_NAMES = [
    ".".join(labels)
    for depth in range(1, 5)
    for labels in itertools.product(ALPHABET, repeat=depth)
]

rule_names = st.lists(st.sampled_from(ALPHABET), min_size=1, max_size=3).map(".".join)
actions = st.sampled_from([Action.WARNING_PAGE, Action.NXDOMAIN, Action.NODATA, Action.ALLOW])


@st.composite
def rule_sets(draw: st.DrawFn) -> list[tuple[str, Scope, Verdict]]:
    """A few rules; verdicts are shared between rules sometimes, as a real policy shares them."""
    pool: list[Verdict] = []
    rules = []
    for _ in range(draw(st.integers(0, 8))):
        if pool and draw(st.booleans()):
            verdict = draw(st.sampled_from(pool))
        else:
            order = draw(st.integers(0, 2))
            info = PolicyInfo(id=f"policy{order}", source="p.yaml")
            verdict = Verdict(info, draw(actions), ANSWERS, order)
            pool.append(verdict)
        rules.append((draw(rule_names), draw(st.sampled_from(list(Scope))), verdict))
    return rules


def covers(rule_name: str, scope: Scope, qname: str) -> bool:
    if qname == rule_name:
        return scope is not Scope.BELOW
    return qname.endswith("." + rule_name) and scope is not Scope.EXACT


def reference(rules: list[tuple[str, Scope, Verdict]], qname: str) -> tuple[Verdict | None, str]:
    """The most specific matching name; at that name allow beats block, then the lower order,
    then the rule written first."""
    best: tuple[tuple[int, int, int, int], Verdict, str] | None = None
    for index, (name, scope, verdict) in enumerate(rules):
        if not covers(name, scope, qname):
            continue
        allow = 1 if verdict.action is Action.ALLOW else 0
        key = (name.count(".") + 1, allow, -verdict.order, -index)
        if best is None or key > best[0]:
            best = (key, verdict, name)
    return (best[1], best[2]) if best else (None, "")


def compile_rules(rules: list[tuple[str, Scope, Verdict]]) -> CompiledPolicy:
    return CompiledPolicy.build((wire.text_to_name(n), s, v) for n, s, v in rules)


@given(rule_sets())
def test_match_agrees_with_the_reference(rules: list[tuple[str, Scope, Verdict]]) -> None:
    policy = compile_rules(rules)
    assert policy.entries == len(rules)
    for qname in QUERY_NAMES:
        expected, _ = reference(rules, qname)
        assert policy.match(wire.text_to_name(qname)) is expected, qname


@given(rule_sets())
def test_locate_names_the_deciding_rule(rules: list[tuple[str, Scope, Verdict]]) -> None:
    policy = compile_rules(rules)
    for qname in QUERY_NAMES:
        expected, name = reference(rules, qname)
        found, found_name = policy.locate(wire.text_to_name(qname))
        assert found is expected, qname
        assert found_name == (wire.text_to_name(name) if name else b""), qname


@given(rule_sets(), st.randoms(use_true_random=False))
def test_order_of_rules_with_different_ranks_does_not_matter(
    rules: list[tuple[str, Scope, Verdict]], rnd: object
) -> None:
    """Only ties (same name, same rank) depend on the order rules are written in."""
    shuffled = list(rules)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    first, second = compile_rules(rules), compile_rules(shuffled)
    for qname in QUERY_NAMES:
        a = first.match(wire.text_to_name(qname))
        b = second.match(wire.text_to_name(qname))
        assert (a is None) == (b is None)
        if a is not None and b is not None:
            assert a.rank == b.rank
