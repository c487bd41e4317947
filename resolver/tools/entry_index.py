"""Every entry of every policy file, by wire name, for ``sinkhole check``'s warnings.

A register exported to YAML is a million entries of the common form (a name, its
subtree, the policy's action); policy_plain keeps them as plain strings. Here each
entry is its wire name in one list, and the names are indexed in two dicts (the last
entry at each name, and every entry at the names written more than once): a million
entries cost a list and a dict, not a million Rule objects. The Rule of an entry (its
file, line, column and answer) is made when a warning or a comparison needs it.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable

from resolver.core import wire
from resolver.core.matcher import Scope
from resolver.core.verdict import Action
from resolver.sources.policy_entries import Entry
from resolver.sources.policy_plain import PlainEntries, plain_wire
from resolver.sources.policy_yaml import PolicyFile
from resolver.sources.rules import Rule, entry_rule, source_lines

ROOT = b"\x00"


def wire_names(policy: PolicyFile) -> list[bytes]:
    """The wire names of a policy's entries, in order."""
    entries = policy.entries
    if not isinstance(entries, PlainEntries):
        return [wire.text_to_name(entry.name) for entry in entries]
    return [
        plain_wire(item) if type(item) is str else wire.text_to_name(item.name)  # type: ignore[union-attr]
        for item in entries.items
    ]


def parent(name: bytes) -> bytes:
    """The parent of a wire name (the root for a name of one label)."""
    return name[name[0] + 1 :]


class EntryIndex:
    """The entries of ``policies`` in the order the server reads them.

    An entry is known by its position among every policy's entries; ``index`` is the
    position of the last entry at each wire name, ``repeated`` every position at the
    names with more than one entry (in the order of their first entry).
    """

    def __init__(
        self, policies: list[PolicyFile], listed: dict[tuple[int, int], list[bytes]]
    ) -> None:
        self.policies = policies
        self.names: list[bytes] = []
        self.offsets: list[int] = []  # each policy's first position
        self.firsts: list[int] = []  # each policy's first Rule.index (list names count too)
        self.special: list[int] = []  # positions of entries that are not of the common form
        first = 0
        for order, policy in enumerate(policies):
            self.offsets.append(len(self.names))
            self.firsts.append(first)
            entries = policy.entries
            if isinstance(entries, PlainEntries):
                self.special.extend(
                    len(self.names) + i
                    for i, item in enumerate(entries.items)
                    if type(item) is not str
                )
            else:
                self.special.extend(range(len(self.names), len(self.names) + len(entries)))
            self.names.extend(wire_names(policy))
            first += len(entries)
            for position in range(len(policy.lists)):
                first += len(listed.get((order, position), ()))
        names = self.names
        self.index: dict[bytes, int] = dict(zip(names, range(len(names)), strict=True))
        self.repeated: dict[bytes, list[int]] = {}
        if len(self.index) < len(names):
            index = self.index
            for position, name in enumerate(names):
                if index[name] != position:  # not the last entry at its name
                    self.repeated.setdefault(name, []).append(position)
            for name, positions in self.repeated.items():
                positions.append(index[name])
        self._lines: dict[int, list[str]] = {}

    def names_of(self, order: int) -> list[bytes]:
        """The wire names of the entries of the policy at ``order``."""
        start = self.offsets[order]
        return self.names[start : start + len(self.policies[order].entries)]

    def at(self, name: bytes) -> list[int]:
        """The positions of the entries at ``name``, in order."""
        found = self.repeated.get(name)
        if found is not None:
            return found
        position = self.index.get(name)
        return [] if position is None else [position]

    def order(self, position: int) -> int:
        """The configuration order of the policy of the entry at ``position``."""
        return bisect_right(self.offsets, position) - 1

    def entry(self, position: int) -> Entry:
        order = self.order(position)
        return self.policies[order].entries[position - self.offsets[order]]

    def rule(self, position: int) -> Rule:
        order = self.order(position)
        policy = self.policies[order]
        local = position - self.offsets[order]
        entry = policy.entries[local]
        lines: list[str] = []
        if not entry.column:
            if order not in self._lines:
                self._lines[order] = source_lines(policy.info.source)
            lines = self._lines[order]
        return entry_rule(policy, order, self.firsts[order] + local, entry, lines)

    def rules(self, positions: Iterable[int]) -> list[Rule]:
        return [self.rule(position) for position in positions]

    def allows(self) -> list[int]:
        """The positions of the exemptions (entries under allow:), in order."""
        return [p for p in self.special if self.entry(p).action is Action.ALLOW]

    def covering(self) -> set[bytes]:
        """The names with an entry for the names under them (any but ``=name``)."""
        exact = {p for p in self.special if self.entry(p).scope is Scope.EXACT}
        if not exact:
            return set(self.index)
        return {name for position, name in enumerate(self.names) if position not in exact}
