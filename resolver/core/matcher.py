"""The compiled name matcher: every entry of every policy in one table keyed by wire name.

Names are keys in wire form (lower-cased, root-terminated), so a lookup walks the
label suffixes of the query name and probes one dict per suffix: the cost grows
with the number of labels, not the number of rules (pure, no I/O).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar

from resolver.core.nametable import MAX_VALUE, NameTable, TableError
from resolver.core.nametable import pack as pack_names
from resolver.core.verdict import ClientScope, PolicyInfo, Verdict, unscoped


class Scope(enum.IntEnum):
    """Which names a rule covers, relative to its name."""

    SUBTREE = 1  # the name and every name under it
    EXACT = 2  # the name alone ("=name")
    BELOW = 3  # only names under it ("*.name")


class _Choice:
    """Candidates at one name that depend on the client or the clock, best first.

    The first candidate that is enabled (its policy in force) and applies to the
    client decides; when none does, matching goes on to the parent names.
    """

    __slots__ = ("candidates",)

    def __init__(self, candidates: tuple[Verdict, ...]) -> None:
        self.candidates = candidates

    def pick(self, applies: Callable[[ClientScope], bool]) -> Verdict | None:
        for verdict in self.candidates:
            if verdict.enabled and (verdict.scope.everyone or applies(verdict.scope)):
                return verdict
        return None


Side = Verdict | _Choice | None


class _Split:
    """A name where the name itself and the names below it are decided differently."""

    __slots__ = ("below", "here")

    def __init__(self, here: Side, below: Side) -> None:
        self.here = here
        self.below = below


def _finish(candidates: list[Verdict]) -> Side:
    """The best candidate, or a _Choice when the best ones depend on client or clock."""
    if not candidates:
        return None
    ranked = sorted(candidates, key=lambda v: v.rank, reverse=True)  # stable: first entry wins
    for i, verdict in enumerate(ranked):
        if verdict.static:  # always applies: nothing ranked below it can win
            ranked = ranked[: i + 1]
            break
    if len(ranked) == 1 and ranked[0].static:
        return ranked[0]
    return _Choice(tuple(ranked))


def _in_every_scope(scope: ClientScope) -> bool:
    return True


class TableBuilder:
    """Collects entries in order, then compiles them (CompiledPolicy.build)."""

    def __init__(self) -> None:
        self.table: dict[bytes, Verdict | _Split] = {}
        self.building: list[tuple[bytes, _Split]] = []  # names whose candidates are collected
        self.dated: dict[int, Verdict] = {}
        self.count = 0

    def add_all(self, entries: Iterable[tuple[bytes, Scope, Verdict]]) -> None:
        table = self.table
        building = self.building
        get = table.get
        count = 0
        static: dict[int, bool] = {}  # a verdict's static, asked once
        for name, scope, verdict in entries:
            count += 1
            fixed = static.get(id(verdict))
            if fixed is None:
                fixed = static[id(verdict)] = verdict.static
                if verdict.dated:
                    self.dated[id(verdict)] = verdict
            old = get(name)
            if old is None and scope is Scope.SUBTREE and fixed:
                table[name] = verdict
                continue
            if type(old) is _Split:
                node = old
            else:
                node = _Split([], [])  # type: ignore[arg-type]
                if old is not None:
                    node.here.append(old)  # type: ignore[union-attr]
                    node.below.append(old)  # type: ignore[union-attr]
                table[name] = node
                building.append((name, node))
            if scope is not Scope.BELOW:
                node.here.append(verdict)  # type: ignore[union-attr]
            if scope is not Scope.EXACT:
                node.below.append(verdict)  # type: ignore[union-attr]
        self.count += count

    def add_run(self, names: list[bytes], verdict: Verdict) -> None:
        """``names`` each with ``verdict`` for the name and the names under it, in order: as
        add_all of them, and in bulk when the verdict is static and no name is in the table
        yet or comes twice (the table's order is add_all's)."""
        if verdict.static:
            fresh = dict.fromkeys(names, verdict)
            if len(fresh) == len(names) and self.table.keys().isdisjoint(fresh):
                self.table.update(fresh)
                self.count += len(names)
                return
        self.add_all((name, Scope.SUBTREE, verdict) for name in names)

    def add_names(self, names: set[bytes], scope: Scope, verdict: Verdict, count: int) -> None:
        """``names`` (``count`` of them before duplicates went) each with ``verdict`` at
        ``scope``: as add_all of them in any order, in bulk."""
        if scope is not Scope.SUBTREE or not verdict.static:
            self.add_all((name, scope, verdict) for name in names)
            self.count += count - len(names)
            return
        fresh = names.difference(self.table)
        self.table.update(dict.fromkeys(fresh, verdict))
        if len(fresh) < len(names):
            self.add_all((name, scope, verdict) for name in names.difference(fresh))
            self.count -= len(names) - len(fresh)
        self.count += count

    def finish(self, cls: type[CompiledPolicy]) -> CompiledPolicy:
        table = self.table
        dynamic = False
        for name, node in self.building:
            node.here = _finish(node.here)  # type: ignore[arg-type]
            node.below = _finish(node.below)  # type: ignore[arg-type]
            dynamic = dynamic or isinstance(node.here, _Choice) or isinstance(node.below, _Choice)
            if node.here is node.below and isinstance(node.here, Verdict):
                table[name] = node.here
        return cls(table, self.count, dynamic, tuple(self.dated.values()))


@dataclass
class CompiledPolicy:
    """Every entry of every policy, compiled into one table keyed by wire-form name.

    A value is a Verdict when it covers the name and everything under it for every
    client (the common case), or a _Split when the name itself and the names below
    it are decided differently or by client scope and dates (_Choice).

    Precedence: the most specific matching name wins (the query name itself before
    any parent, a longer suffix before a shorter one); at the same name an
    exemption beats a block, and otherwise the policy listed first wins. Client
    scopes and dates are applied before matching: an entry that does not apply to
    the client, or whose policy is not in force, is as if it were not there.
    """

    table: dict[bytes, Verdict | _Split] = field(default_factory=dict)
    entries: int = 0
    dynamic: bool = False  # some answers depend on the client or the clock
    dated: tuple[Verdict, ...] = ()
    has_response_ip: ClassVar[bool] = False  # RPZ response-IP triggers (LayeredPolicy only)
    # Layers whose QNAME triggers wait for the upstream's answer, because an earlier
    # layer has response-IP triggers that come first (LayeredPolicy only).
    deferred: ClassVar[bool] = False

    @classmethod
    def build(cls, entries: Iterable[tuple[bytes, Scope, Verdict]]) -> CompiledPolicy:
        builder = TableBuilder()
        builder.add_all(entries)
        return builder.finish(cls)

    def match(self, qname: bytes) -> Verdict | None:
        """The verdict for a wire-form, lower-cased name, or None when no entry covers it.

        For tables that are not ``dynamic``; otherwise use match_client.
        """
        table = self.table
        hit = table.get(qname)
        if hit is not None:
            if type(hit) is Verdict:
                return hit
            if hit.here is not None:  # type: ignore[union-attr]
                return hit.here  # type: ignore[union-attr,return-value]
        pos = 0
        while True:
            n = qname[pos]
            if n == 0:
                return None
            pos += n + 1
            hit = table.get(qname[pos:])
            if hit is not None:
                if type(hit) is Verdict:
                    return hit
                if hit.below is not None:  # type: ignore[union-attr]
                    return hit.below  # type: ignore[union-attr,return-value]

    def match_client(
        self, qname: bytes, applies: Callable[[ClientScope], bool] = unscoped
    ) -> tuple[Verdict | None, bytes, bool]:
        """The verdict for ``qname`` for a client (``applies`` says which scopes include it).

        Returns the verdict, the name of the entry that decided, and whether the
        outcome depended on the client or the clock (such answers are not replayed).
        """
        table = self.table
        depends = False
        suffix = qname
        pos = 0
        while True:
            hit = table.get(suffix)
            if hit is not None:
                side: Side = (
                    hit if type(hit) is Verdict else hit.here if pos == 0 else hit.below  # type: ignore[union-attr]
                )
                if type(side) is _Choice:
                    depends = True
                    side = side.pick(applies)
                if side is not None:
                    return side, suffix, depends  # type: ignore[return-value]
            n = qname[pos]
            if n == 0:
                return None, b"", depends
            pos += n + 1
            suffix = qname[pos:]

    def locate(self, qname: bytes) -> tuple[Verdict | None, bytes]:
        """The verdict (for a client every scope includes) and the deciding entry's name."""
        verdict, name, _ = self.match_client(qname, _in_every_scope)
        return verdict, name

    def screen(
        self,
        targets: Sequence[bytes],
        addresses: Sequence[bytes] = (),
        applies: Callable[[ClientScope], bool] = unscoped,
        qname: bytes = b"",
    ) -> tuple[Verdict | None, bool]:
        """The verdict for an upstream answer whose CNAME chain runs through ``targets`` (wire
        names, in chain order), and whether it depended on the client or the clock.
        (``qname`` matters only to layered policies whose layers wait for the answer.)

        For a query name that no entry matched; the first target an entry covers decides.
        ``addresses`` (the answer's A and AAAA data) matter only to response-IP triggers.
        """
        depends = False
        for target in targets:
            verdict, _, late = self.match_client(target, applies)
            depends = depends or late
            if verdict is not None:
                return verdict, depends
        return None, depends

    def set_clock(self, now: datetime) -> list[tuple[PolicyInfo, bool]]:
        """Enable the dated verdicts whose policy is in force at ``now``; the policies that
        changed, with their new state."""
        changed: dict[str, tuple[PolicyInfo, bool]] = {}
        for verdict in self.dated:
            active = verdict.policy.active(now)
            if verdict.enabled != active:
                verdict.enabled = active
                changed[verdict.policy.id] = (verdict.policy, active)
        return list(changed.values())

    def next_change(self, now: datetime) -> datetime | None:
        """The next moment a dated policy comes into force or expires."""
        moments = [
            moment
            for verdict in self.dated
            for moment in (verdict.policy.effective_from, verdict.policy.expires)
            if moment is not None and moment > now
        ]
        return min(moments, default=None)

    def names(self) -> int:
        return len(self.table)


Outcome = Verdict | _Split


def _side_key(side: Side) -> object:
    if isinstance(side, _Choice):
        return tuple(id(v) for v in side.candidates)
    return id(side)


class Outcomes:
    """The distinct values of a table, each given a number once (for a packed table)."""

    def __init__(self) -> None:
        self.values: list[Outcome] = []
        self._index: dict[object, int] = {}

    def number(self, value: Outcome) -> int:
        """The number of ``value``; equal splits share one number."""
        if type(value) is _Split:
            key: object = ("split", _side_key(value.here), _side_key(value.below))
        else:
            key = id(value)
        found = self._index.get(key)
        if found is None:
            found = self._index[key] = len(self.values)
            if found > MAX_VALUE:
                raise TableError("too many distinct verdicts for one table")
            self.values.append(value)
        return found

    def pack(self, table: dict[bytes, Outcome], extra: bytes = b"") -> bytearray:
        """The table packed (resolver.core.nametable), its values numbered here."""
        # Verdicts and splits hash by identity: the distinct ones, then a lookup per name.
        numbers = {value: self.number(value) for value in set(table.values())}
        return pack_names(table, map(numbers.__getitem__, table.values()), len(table), extra)


PARENTS_KEPT = 8192  # parents whose verdict a packed policy keeps at most (PackedPolicy)
_UNSEEN = object()


@dataclass
class PackedPolicy(CompiledPolicy):
    """A CompiledPolicy whose names live in a NameTable (a flat buffer several processes can
    map) and whose values are numbers into ``outcomes``. Matches exactly as the dict-based
    table does; ``table`` is empty."""

    packed: NameTable | None = None
    outcomes: tuple[Outcome, ...] = ()
    # The verdict for what lies below a name, by name, for the parents of the names
    # asked lately (most queries share their parent with others): one dict lookup instead
    # of a probe of the packed table for each of the parent's suffixes. Bounded: cleared
    # when full. Holds only what the table gives, which never changes for this object.
    _below: dict[bytes, Verdict | None] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @classmethod
    def of(cls, compiled: CompiledPolicy, names: NameTable, numbered: Outcomes) -> PackedPolicy:
        return cls(
            {},
            compiled.entries,
            compiled.dynamic,
            compiled.dated,
            names,
            tuple(numbered.values),
        )

    def match(self, qname: bytes) -> Verdict | None:
        assert self.packed is not None
        names = self.packed
        slots = names.slots
        mask = names.mask
        i = hash(qname) & mask
        entry = slots[i]
        if entry:
            keys = names.keys
            length = len(qname)
            while entry:
                if entry & 0xFF == length:
                    offset = entry >> 32
                    if keys[offset : offset + length] == qname:
                        hit = self.outcomes[(entry >> 8) & MAX_VALUE]
                        if type(hit) is Verdict:
                            return hit
                        if hit.here is not None:
                            return hit.here  # type: ignore[no-any-return]
                        break
                i = (i + 1) & mask
                entry = slots[i]
        if not qname[0]:
            return None  # the root: nothing above it
        parent = qname[qname[0] + 1 :]
        below = self._below
        verdict = below.get(parent, _UNSEEN)
        if verdict is _UNSEEN:
            verdict = self._covering(parent)
            if len(below) >= PARENTS_KEPT:
                below.clear()
            below[parent] = verdict
        return verdict  # type: ignore[return-value]

    def _covering(self, name: bytes) -> Verdict | None:
        """The verdict for the names below ``name``: its own entry's or its nearest
        parent's (the first of them with an entry for what lies below it)."""
        assert self.packed is not None
        find = self.packed.get
        outcomes = self.outcomes
        pos = 0
        suffix = name
        while True:
            number = find(suffix)
            if number is not None:
                hit = outcomes[number]
                if type(hit) is Verdict:
                    return hit
                side = hit.below  # type: ignore[union-attr]
                if side is not None:
                    return side  # type: ignore[return-value]
            n = name[pos]
            if n == 0:
                return None
            pos += n + 1
            suffix = name[pos:]

    def match_client(
        self, qname: bytes, applies: Callable[[ClientScope], bool] = unscoped
    ) -> tuple[Verdict | None, bytes, bool]:
        assert self.packed is not None
        find = self.packed.get
        outcomes = self.outcomes
        depends = False
        suffix = qname
        pos = 0
        while True:
            number = find(suffix)
            if number is not None:
                hit = outcomes[number]
                side: Side = (
                    hit if type(hit) is Verdict else hit.here if pos == 0 else hit.below  # type: ignore[union-attr]
                )
                if type(side) is _Choice:
                    depends = True
                    side = side.pick(applies)
                if side is not None:
                    return side, suffix, depends  # type: ignore[return-value]
            n = qname[pos]
            if n == 0:
                return None, b"", depends
            pos += n + 1
            suffix = qname[pos:]

    def names(self) -> int:
        return len(self.packed) if self.packed is not None else 0

    def items(self) -> Iterator[tuple[bytes, Outcome]]:
        """Every name with its value, as the dict-based table would hold it."""
        assert self.packed is not None
        outcomes = self.outcomes
        for name, number in self.packed.items():
            yield name, outcomes[number]
