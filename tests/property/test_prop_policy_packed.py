"""A packed table (resolver.core.nametable) decides every name as the dict-based table does,
and names added in bulk compile as the same names added one by one."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from resolver.core import matcher, wire
from resolver.core.matcher import CompiledPolicy, Outcomes, PackedPolicy, Scope, TableBuilder
from resolver.core.nametable import NameTable
from resolver.core.verdict import Action, PolicyInfo, Verdict

from . import test_prop_policy as plain
from . import test_prop_policy_scopes as scoped

QUERIES = [wire.text_to_name(q) for q in plain.QUERY_NAMES] + [
    wire.text_to_name("x." + q) for q in plain.QUERY_NAMES
]


def packed(policy: CompiledPolicy) -> PackedPolicy:
    numbered = Outcomes()
    return PackedPolicy.of(policy, NameTable(numbered.pack(policy.table)), numbered)


def sides(value: object) -> tuple[object, object]:
    if isinstance(value, Verdict):
        return value, value
    return value.here, value.below  # type: ignore[attr-defined]


def compile_rules(rules: list[tuple[str, Scope, Verdict]]) -> CompiledPolicy:
    return CompiledPolicy.build((wire.text_to_name(n), s, v) for n, s, v in rules)


@given(plain.rule_sets())
def test_packed_match_and_locate_agree(rules: list[tuple[str, Scope, Verdict]]) -> None:
    policy = compile_rules(rules)
    table = packed(policy)
    assert table.names() == policy.names() and table.entries == policy.entries
    # Equal splits are kept once: compare what each name holds, not the objects.
    assert {name: sides(value) for name, value in table.items()} == {
        name: sides(value) for name, value in policy.table.items()
    }
    for qname in QUERIES:
        assert table.match(qname) is policy.match(qname), qname
        assert table.locate(qname) == policy.locate(qname), qname
    # Again, in the other order: the parents' verdicts now come from what it kept.
    for qname in reversed(QUERIES):
        assert table.match(qname) is policy.match(qname), qname


@given(plain.rule_sets())
def test_packed_match_agrees_with_few_parents_kept(
    rules: list[tuple[str, Scope, Verdict]],
) -> None:
    """However small the bound on the parents kept, the verdicts stay the same and the
    parents kept stay within it."""
    policy = compile_rules(rules)
    table = packed(policy)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(matcher, "PARENTS_KEPT", 2)
        for qname in QUERIES + QUERIES[::-1]:
            assert table.match(qname) is policy.match(qname), qname
            assert len(table._below) <= 2


@given(scoped.rule_sets())
def test_packed_match_client_agrees(rules: list[tuple[str, Scope, Verdict]]) -> None:
    policy = compile_rules(rules)
    policy.set_clock(scoped.NOW)
    table = packed(policy)
    assert table.dynamic == policy.dynamic
    for client in scoped.CLIENTS:

        def applies(scope: object, c: object = client) -> bool:
            return scope.applies(c)  # type: ignore[attr-defined,no-any-return]

        for qname in QUERIES:
            assert table.match_client(qname, applies) == policy.match_client(qname, applies)


@given(
    plain.rule_sets(),
    st.lists(plain.rule_names, max_size=6),
    st.integers(0, 1),
    st.sampled_from([Scope.SUBTREE, Scope.EXACT]),
)
def test_names_in_bulk_compile_as_one_by_one(
    rules: list[tuple[str, Scope, Verdict]], listed: list[str], which: int, scope: Scope
) -> None:
    """A list's names (with duplicates) after the entries: add_names as add_all, for a
    list of subtrees and for a hosts list (exact names alike)."""
    fallback = Verdict(PolicyInfo(id="list", source="p.yaml"), Action.NXDOMAIN, plain.ANSWERS, 3)
    verdicts = [v for _, _, v in rules] or [fallback]
    shared = verdicts[which % len(verdicts)]
    names = [wire.text_to_name(n) for n in listed]
    one_by_one = CompiledPolicy.build(
        [*((wire.text_to_name(n), s, v) for n, s, v in rules)] + [(n, scope, shared) for n in names]
    )
    builder = TableBuilder()
    builder.add_all((wire.text_to_name(n), s, v) for n, s, v in rules)
    builder.add_names(set(names), scope, shared, len(names))
    bulk = builder.finish(CompiledPolicy)
    assert bulk.entries == one_by_one.entries
    for qname in QUERIES:
        assert bulk.match(qname) is one_by_one.match(qname), qname
