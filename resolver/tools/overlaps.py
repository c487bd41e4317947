"""The warnings ``sinkhole check`` gives about entries that load but probably do not do what
their author meant: duplicates, entries a broader one already covers, names both blocked
and exempted, conflicts between policies, exemptions that exempt nothing, and list names
that repeat or are decided elsewhere. Each comes with the file and line of the entry.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from resolver.core import wire
from resolver.core.matcher import Scope
from resolver.core.verdict import Action
from resolver.sources.policy_lists import ListRef
from resolver.sources.policy_yaml import PolicyFile
from resolver.sources.rules import Rule, list_lines, overlap
from resolver.tools.diagnostics import CheckResult, plural
from resolver.tools.entry_index import ROOT, EntryIndex, parent

EXAMPLES = 5  # names shown per aggregated warning about a list


def _action(rule: Rule) -> str:
    return "exempted" if rule.allow else rule.action.label


Decider = tuple[str, int, tuple[Any, ...], int]  # pattern, policy order, answer key, line


class Analysis:
    """The warnings about entries, over every entry of every loaded policy.

    Names are kept in wire form: the entries' in one list (resolver.tools.entry_index),
    the lists' as they are read. A million entries or list names cost a list, a dict and
    a set, not a million objects: a Rule is made for an entry only when there is
    something to say about it or to compare it with. What decides the names under a name
    is looked up once per parent name, and shared by every name under it.
    """

    def __init__(
        self,
        policies: list[PolicyFile],
        listed: dict[tuple[int, int], list[bytes]],
        result: CheckResult,
    ) -> None:
        self.policies = policies
        self.listed = listed
        self.result = result
        self.entries = EntryIndex(policies, listed)
        self.seen: list[set[bytes]] = [set() for _ in policies]  # names of each policy's lists
        # The first policy that lists each name (it wins among the lists at that name).
        self.list_first: dict[bytes, int] = {}
        # The same, for the lists whose names cover the names under them too.
        self.list_cover: dict[bytes, int] = {}
        for (order, position), names in sorted(listed.items(), reverse=True):
            self.list_first.update(dict.fromkeys(names, order))  # the first policy last
            if policies[order].lists[position].scope is not Scope.EXACT:
                self.list_cover.update(dict.fromkeys(names, order))
        # The names with an entry or a list name for the names under them.
        self.covering = self.entries.covering()
        self.covering.update(self.list_cover)
        # Per name: what decides the names under it (_decider); the root decides nothing.
        self.deciders: dict[bytes, Decider | None] = {ROOT: None}

    def run(self) -> None:
        self._same_name()
        self._covered_entries()
        for (order, position), names in sorted(self.listed.items()):
            self._one_list(order, self.policies[order].lists[position], names)

    def _list_key(self, order: int) -> tuple[Any, ...]:
        policy = self.policies[order]
        return (policy.action, "", policy.clients, policy.redirect)

    # --- entries of the policy files ----------------------------------------------

    def _same_name(self) -> None:
        """Entries for the same name: duplicates, conflicts, names blocked and exempted."""
        for positions in self.entries.repeated.values():
            rules = self.entries.rules(positions)
            for i, later in enumerate(rules):
                for earlier in rules[:i]:
                    if overlap(earlier.scope, later.scope):
                        self._pair(earlier, later)
                        break  # one warning per entry: against the first it meets

    def _pair(self, a: Rule, b: Rule) -> None:
        """``a`` is read before ``b``; both are for the same name and cover a name in common."""
        warn = self.result.warn_at
        same_policy = a.order == b.order
        where = f"line {a.line}" if same_policy else f"{a.where()} (policy {a.policy_id!r})"
        part = _part(a.scope, b.scope)
        if a.allow != b.allow:
            if b.allow:
                warn(
                    b,
                    f"{b.pattern} is exempted here and blocked ({a.action.label}) at {where}: "
                    f"the exemption wins{part}, so it is not blocked (at the same name an "
                    "exemption beats a block)" + _scoped(a, b),
                )
            else:
                warn(
                    b,
                    f"{b.pattern} is blocked ({b.action.label}) here but exempted at {where}: "
                    f"the exemption wins{part}, so this entry has no effect there (at the same "
                    "name an exemption beats a block)" + _scoped(a, b),
                )
            return
        if a.scope is not b.scope and same_policy and a.answer_key == b.answer_key:
            broad, narrow = (a, b) if a.scope is Scope.SUBTREE else (b, a)
            self.result.warn_at(
                narrow,
                f"{narrow.pattern} is already covered by {broad.pattern} at line {broad.line} "
                "with the same action; remove one of them",
            )
            return
        if same_policy:
            if a.answer_key == b.answer_key:
                warn(b, f"duplicate entry: {b.pattern} is already at line {a.line}")
            elif a.action is not b.action:
                warn(
                    b,
                    f"{b.pattern} is {_action(b)} here but {_action(a)} at line {a.line} of the "
                    f"same policy: the entry at line {a.line} is read first and wins{part}",
                )
            else:
                warn(
                    b,
                    f"duplicate entry: {b.pattern} is already at line {a.line} with another "
                    f"reference or client scope; the entry at line {a.line} is read first and "
                    f"wins{part}",
                )
            return
        if a.action is b.action:
            warn(
                b,
                f"duplicate entry: {b.pattern} is also {_action(a)} by policy {a.policy_id!r} "
                f"({a.where()}), which is listed first in the configuration and decides{part}"
                + _scoped(a, b),
            )
        else:
            warn(
                b,
                f"conflict: {b.pattern} is {_action(b)} here but {_action(a)} by policy "
                f"{a.policy_id!r} ({a.where()}); that policy is listed first in the "
                f"configuration, so {_action(a)} wins{part}" + _scoped(a, b),
            )

    def _covered_entries(self) -> None:
        """Entries a broader entry already decides the same way, and exemptions of nothing."""
        zones = bool(getattr(self.result.config, "zones", ()))
        entries = self.entries
        names = entries.names
        # Only an exemption, or an entry under a name that decides the names under it,
        # can be warned about here.
        parents = [name[name[0] + 1 :] for name in names]
        decided = {q for q in set(parents) if self._decider(q) is not None}
        under = [p for p, q in enumerate(parents) if q in decided] if decided else []
        del parents
        for position in sorted({*under, *entries.allows()}):
            name = names[position]
            if name in entries.repeated or name in self.list_first:
                continue  # the same-name warnings say what there is to say
            rule = entries.rule(position)
            if rule.allow:
                if not zones and not self._blocked_somewhere(rule, name):
                    self.result.warn_at(
                        rule,
                        f"the exemption {rule.pattern} exempts nothing: no block entry or list "
                        "name covers it",
                    )
                continue
            decider = self._decider(parent(name))
            if decider is None:
                continue
            pattern_, order, key, line = decider
            if order == rule.order and key == rule.answer_key:
                at = f"line {line}" if line else "in a list of this policy"
                self.result.warn_at(
                    rule,
                    f"{rule.pattern} is already covered by {pattern_} ({at}) with the same "
                    "action; the entry changes nothing",
                )

    def _decider(self, name: bytes) -> Decider | None:
        """What decides the names under ``name``'s children were their own entries gone:
        the winner at the nearest of ``name`` and its parents with an entry or list name
        covering the names under it (pattern, order, key, line). Kept for every name
        passed on the way, so each parent name is looked at once."""
        deciders = self.deciders
        passed = []
        while name not in deciders:
            if name in self.covering:
                deciders[name] = self._winner(name)
                break
            passed.append(name)
            name = parent(name)
        found = deciders[name]
        for name in passed:
            deciders[name] = found
        return found

    def _winner(self, name: bytes) -> Decider:
        """The entry or list name that wins at ``name`` for the names under it."""
        candidates: list[tuple[tuple[int, int, int], str, int, tuple[Any, ...], int]] = [
            (rule.rank, rule.pattern, rule.order, rule.answer_key, rule.line)
            for rule in self.entries.rules(self.entries.at(name))
            if rule.scope is not Scope.EXACT
        ]
        order = self.list_cover.get(name)
        if order is not None:
            # List names come after the policy files' entries: they lose ties.
            rank = (0, -order, -(1 << 60))
            text = wire.name_to_text(name)
            candidates.append((rank, text, order, self._list_key(order), 0))
        _, pattern_, order_, key, line = max(candidates, key=lambda c: c[0])
        return pattern_, order_, key, line

    def _blocked_somewhere(self, rule: Rule, name: bytes) -> bool:
        """Whether some block entry or list name covers a name the exemption covers."""
        entries = self.entries
        for position in entries.at(name):
            other = entries.entry(position)
            if other.action is not Action.ALLOW and overlap(other.scope, rule.scope):
                return True
        for name_above in _parents(name):
            if name_above in self.list_cover:
                return True
            for position in entries.at(name_above):
                other = entries.entry(position)
                if other.action is not Action.ALLOW and other.scope is not Scope.EXACT:
                    return True
        return False

    # --- names from lists -----------------------------------------------------------

    def _one_list(self, order: int, ref: ListRef, names: list[bytes]) -> None:
        policy = self.policies[order]
        key = self._list_key(order)
        seen = self.seen[order]
        again: list[bytes] = []
        fresh = names
        if len(set(names)) < len(names) or not seen.isdisjoint(names):
            fresh = []
            for name in names:
                if name in seen:
                    again.append(name)
                    continue
                seen.add(name)
                fresh.append(name)
        else:
            seen.update(names)
        entry: list[str] = []
        exempted: list[str] = []
        others: dict[int, list[str]] = defaultdict(list)  # policy order -> names shown
        rest = fresh  # names with no entry and no earlier list: perhaps covered
        entries = self.entries
        index = entries.index
        if order or not index.keys().isdisjoint(fresh):
            rest = []
            list_first = self.list_first
            for name in fresh:
                if name in index:
                    rules = entries.rules(entries.at(name))
                    allow = next((r for r in rules if r.allow), None)
                    mine = next((r for r in rules if r.order == order), None)
                    if allow is not None:
                        exempted.append(f"{wire.name_to_text(name)} ({allow.where()})")
                    elif mine is not None:
                        entry.append(f"{wire.name_to_text(name)} (entry at line {mine.line})")
                    else:
                        other = rules[0]
                        others[other.order].append(f"{wire.name_to_text(name)} ({other.where()})")
                    continue
                first = list_first[name]
                if first < order:
                    others[first].append(f"{wire.name_to_text(name)} (a list)")
                    continue
                rest.append(name)
        parents = [name[name[0] + 1 :] for name in rest]
        mine_above = set()
        for above in set(parents):
            decider = self._decider(above)
            if decider is not None and decider[1] == order and decider[2] == key:
                mine_above.add(above)
        covered = [n for n, above in zip(rest, parents, strict=True) if above in mine_above]
        where = (policy.info.source, ref.line, ref.column or 1)
        label = f"list {ref.path.name}"
        if again:
            self._names(
                where,
                f"{label}: {_count(again, 'name')} listed more than once in this policy's lists",
                again,
                ref,
                2,
            )
        if entry:
            self._texts(
                where, f"{label}: {_count(entry, 'name')} also an entry of this policy", entry
            )
        if exempted:
            self._texts(
                where,
                f"{label}: {_count(exempted, 'name')} blocked by this list and exempted by an "
                "allow entry, which wins",
                exempted,
            )
        for other_order, shown in sorted(others.items()):
            other_policy = self.policies[other_order]
            winner = self.policies[min(other_order, order)]
            what = (
                f"{label}: {_count(shown, 'name')} also blocked by policy {other_policy.info.id!r}"
            )
            if other_policy.action is policy.action:
                text = (
                    f"{what} with the same action; policy {winner.info.id!r} is listed first "
                    "in the configuration and decides"
                )
            else:
                text = (
                    f"{what} with action {other_policy.action.label}; policy "
                    f"{winner.info.id!r} is listed first in the configuration, so "
                    f"{winner.action.label} wins"
                )
            self._texts(where, text, shown)
        if covered:
            self._names(
                where,
                f"{label}: {_count(covered, 'name')} already covered by a broader name of this "
                "policy with the same action",
                covered,
                ref,
            )

    def _names(
        self,
        where: tuple[str, int, int],
        text: str,
        names: list[bytes],
        ref: ListRef,
        occurrences: int = 1,
    ) -> None:
        """A warning listing a few names with the lines of the list they are on."""
        shown = []
        for name in names[:EXAMPLES]:
            plain = wire.name_to_text(name)
            lines = list_lines(ref.path, plain, occurrences)
            if lines:
                numbers = ", ".join(str(n) for n in lines)
                shown.append(f"{plain} ({plural(len(lines), 'line')} {numbers})")
            else:
                shown.append(plain)
        self._texts(where, text, shown, len(names))

    def _texts(
        self, where: tuple[str, int, int], text: str, shown: list[str], total: int = 0
    ) -> None:
        total = total or len(shown)
        more = f", and {total - EXAMPLES} more" if total > EXAMPLES else ""
        self.result.warn(*where, f"{text}: {', '.join(shown[:EXAMPLES])}{more}")


def _parents(name: bytes) -> Iterable[bytes]:
    """The parent names of a wire name, nearest first, without the root."""
    pos = name[0] + 1
    while name[pos]:
        yield name[pos:]
        pos += name[pos] + 1


def _count(items: list[Any], word: str) -> str:
    return f"{len(items)} {plural(len(items), word)}"


def _part(a: Scope, b: Scope) -> str:
    """Which names two overlapping entries for the same name share, when not all."""
    if a is b:
        return ""
    if Scope.EXACT in (a, b):
        return " for the name itself"
    return " for the names under it"


def _scoped(a: Rule, b: Rule) -> str:
    """A note when the two entries do not apply to the same clients or times."""
    notes = []
    if a.clients != b.clients:
        notes.append("for the clients both apply to")
    if a.policy.info.effective_from != b.policy.info.effective_from or (
        a.policy.info.expires != b.policy.info.expires
    ):
        notes.append("while both policies are in force")
    return f" ({', '.join(notes)})" if notes else ""
