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
from resolver.sources.policy_lists import ListRef
from resolver.sources.policy_yaml import PolicyFile
from resolver.sources.rules import Rule, entry_rules, list_lines, overlap
from resolver.tools.diagnostics import CheckResult, plural

EXAMPLES = 5  # names shown per aggregated warning about a list


def _action(rule: Rule) -> str:
    return "exempted" if rule.allow else rule.action.label


class Analysis:
    """The warnings about entries, over every entry of every loaded policy.

    Names are kept in wire form (as the lists yield them), so a list of a million
    names costs a dict and a set, not a million objects.
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
        self.rules: list[Rule] = []
        index = 0
        for order, policy in enumerate(policies):
            self.rules.extend(entry_rules(policy, order, index))
            index += len(policy.entries)
            for position in range(len(policy.lists)):
                index += len(listed.get((order, position), ()))
        self.wire_names = {id(rule): wire.text_to_name(rule.name) for rule in self.rules}
        self.at: dict[bytes, list[Rule]] = defaultdict(list)
        for rule in self.rules:
            self.at[self.wire_names[id(rule)]].append(rule)
        self.seen: list[set[bytes]] = [set() for _ in policies]  # names of each policy's lists
        # The first policy that lists each name (it wins among the lists at that name).
        self.list_first: dict[bytes, int] = {}
        # The same, for the lists whose names cover the names under them too.
        self.list_cover: dict[bytes, int] = {}
        for (order, position), names in sorted(listed.items()):
            setdefault = self.list_first.setdefault
            for name in names:
                setdefault(name, order)
            if policies[order].lists[position].scope is not Scope.EXACT:
                cover = self.list_cover.setdefault
                for name in names:
                    cover(name, order)

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
        for rules in self.at.values():
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
        for rule in self.rules:
            name = self.wire_names[id(rule)]
            if len(self.at[name]) > 1 or name in self.list_first:
                continue  # the same-name warnings say what there is to say
            if rule.allow:
                if not zones and not self._blocked_somewhere(rule, name):
                    self.result.warn_at(
                        rule,
                        f"the exemption {rule.pattern} exempts nothing: no block entry or list "
                        "name covers it",
                    )
                continue
            decider = self._nearest_above(name)
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

    def _nearest_above(self, name: bytes) -> tuple[str, int, tuple[Any, ...], int] | None:
        """What decides the names of ``name`` were its own entries gone: the winner at the
        nearest parent with an entry covering names under it (pattern, order, key, line)."""
        at = self.at
        list_cover = self.list_cover
        for parent in _parents(name):
            rules = at.get(parent)
            order = list_cover.get(parent)
            if rules is None and order is None:
                continue
            candidates: list[tuple[tuple[int, int, int], str, int, tuple[Any, ...], int]] = [
                (rule.rank, rule.pattern, rule.order, rule.answer_key, rule.line)
                for rule in rules or ()
                if rule.scope is not Scope.EXACT
            ]
            if order is not None:
                # List names come after the policy files' entries: they lose ties.
                rank = (0, -order, -(1 << 60))
                text = wire.name_to_text(parent)
                candidates.append((rank, text, order, self._list_key(order), 0))
            if candidates:
                _, pattern_, order_, key, line = max(candidates, key=lambda c: c[0])
                return pattern_, order_, key, line
        return None

    def _blocked_somewhere(self, rule: Rule, name: bytes) -> bool:
        """Whether some block entry or list name covers a name the exemption covers."""
        for other in self.at.get(name, ()):
            if not other.allow and overlap(other.scope, rule.scope):
                return True
        for parent in _parents(name):
            if parent in self.list_cover:
                return True
            for other in self.at.get(parent, ()):
                if not other.allow and other.scope is not Scope.EXACT:
                    return True
        return False

    # --- names from lists -----------------------------------------------------------

    def _one_list(self, order: int, ref: ListRef, names: list[bytes]) -> None:
        policy = self.policies[order]
        key = self._list_key(order)
        at = self.at
        list_first = self.list_first
        seen = self.seen[order]
        again: list[bytes] = []
        entry: list[str] = []
        exempted: list[str] = []
        others: dict[int, list[str]] = defaultdict(list)  # policy order -> names shown
        covered: list[bytes] = []
        for name in names:
            if name in seen:
                again.append(name)
                continue
            seen.add(name)
            rules = at.get(name)
            if rules is not None:
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
            decider = self._nearest_above(name)
            if decider is not None and decider[1] == order and decider[2] == key:
                covered.append(name)
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
