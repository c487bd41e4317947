"""Policy entries as plain rules with their place in the files: the slow, plain reading.

The server decides with the compiled table (resolver.core.matcher). ``check``, ``explain``,
``diff`` and ``verify`` reason over these rules instead, one by one, with the
precedence written out as a sort key, so they can be checked against the table.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from resolver.core import wire
from resolver.core.errors import SourceError
from resolver.core.matcher import Scope
from resolver.core.verdict import EVERYONE, Action, ClientScope, Network, Redirect, Verdict
from resolver.sources.lists import ListReport, open_binary, read_list
from resolver.sources.names import covers
from resolver.sources.policy_entries import Entry
from resolver.sources.policy_lists import ListRef
from resolver.sources.policy_yaml import PolicyFile

FORMS = {Scope.SUBTREE: "subtree", Scope.EXACT: "exact", Scope.BELOW: "below"}
SCOPES = {label: scope for scope, label in FORMS.items()}


def pattern(name: str, scope: Scope) -> str:
    """An entry as it is written in a policy: ``name``, ``=name`` or ``*.name``."""
    if scope is Scope.EXACT:
        return "=" + name
    if scope is Scope.BELOW:
        return "*." + name
    return name


def overlap(a: Scope, b: Scope) -> bool:
    """Whether two entries for the same name cover at least one name in common."""
    return a is Scope.SUBTREE or b is Scope.SUBTREE or a is b


def parents(name: str) -> Iterator[str]:
    """The parent names of ``name``, nearest first, down to (not including) the root."""
    while "." in name:
        name = name.split(".", 1)[1]
        yield name


@dataclass(frozen=True, slots=True)
class Rule:
    """One entry (or one list name) of one policy, with where it is written."""

    name: str  # lower case, no trailing dot
    scope: Scope
    action: Action
    policy: PolicyFile
    order: int  # the policy's position in the configuration
    index: int  # position among every entry, in the order the server reads them
    file: str  # the policy file, or the list file for a list name
    line: int  # 0: not known
    column: int = 0
    reference: str = ""
    clients: ClientScope = EVERYONE
    redirect: Redirect | None = None
    listed: bool = False  # from a third-party list
    layer: int = 0  # 0: the policy files; 1, 2, ...: the RPZ zones, in configuration order
    verdict: Verdict | None = None  # a zone's trigger: its compiled verdict
    network: Network | None = None  # a zone's client-IP trigger: the clients it is for

    @property
    def pattern(self) -> str:
        if self.network is not None:
            return f"client-ip {self.network}"
        return pattern(self.name, self.scope)

    @property
    def zone(self) -> bool:
        return self.layer > 0

    @property
    def form(self) -> str:
        return FORMS[self.scope]

    @property
    def policy_id(self) -> str:
        return self.policy.info.id

    @property
    def allow(self) -> bool:
        return self.action is Action.ALLOW

    @property
    def rank(self) -> tuple[int, int, int]:
        """Higher wins among rules for the same name: an exemption, then the policy listed
        first, then the entry read first."""
        return (1 if self.allow else 0, -self.order, -self.index)

    @property
    def answer_key(self) -> tuple[Action, str, ClientScope, Redirect | None]:
        """Rules of one policy with the same key get the same answer."""
        return (self.action, self.reference, self.clients, self.redirect)

    def covers(self, qname: str) -> bool:
        """Whether the rule covers ``qname``; a client-IP trigger covers every name (whether
        it applies depends on the client)."""
        return self.network is not None or covers(self.name, self.scope, qname)

    def applies(self, client: ipaddress.IPv4Address | ipaddress.IPv6Address | None) -> bool:
        """Whether the rule is for ``client``; None stands for a client in none of the networks
        the rules name (rules for listed clients only do not apply to it)."""
        if self.network is not None:
            return client is not None and ClientScope(include=(self.network,)).applies(client)
        if client is None:
            return not self.clients.include
        return self.clients.applies(client)

    def in_force(self, now: datetime) -> bool:
        return self.policy.info.active(now)

    def where(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file


def entry_rules(policy: PolicyFile, order: int, start: int = 0) -> list[Rule]:
    """The rules of a policy's own entries (block: and allow:), in file order."""
    lines = source_lines(policy.info.source) if any(not e.column for e in policy.entries) else []
    return [entry_rule(policy, order, start + i, e, lines) for i, e in enumerate(policy.entries)]


def entry_rule(
    policy: PolicyFile, order: int, index: int, entry: Entry, lines: Sequence[str] = ()
) -> Rule:
    """The rule of one entry of a policy (``index``: its position among every entry);
    ``lines``: the policy file's lines, for the column of an entry that has none."""
    column = entry.column
    if not column and 0 < entry.line <= len(lines):
        column = _name_column(lines[entry.line - 1])
    return Rule(
        name=entry.name,
        scope=entry.scope,
        action=entry.action,
        policy=policy,
        order=order,
        index=index,
        file=policy.info.source,
        line=entry.line,
        column=column,
        reference=entry.reference,
        clients=entry.clients if entry.clients is not None else policy.clients,
        redirect=entry.redirect if entry.redirect is not None else policy.redirect,
    )


def list_rule(policy: PolicyFile, order: int, index: int, name: str, ref: ListRef) -> Rule:
    """The rule a list name stands for: the policy's action for the name (and its subtree,
    unless the list's names match exactly)."""
    return Rule(
        name=name,
        scope=ref.scope,
        action=policy.action,
        policy=policy,
        order=order,
        index=index,
        file=str(ref.path),
        line=0,
        clients=policy.clients,
        redirect=policy.redirect,
        listed=True,
    )


def all_rules(policies: Iterable[PolicyFile]) -> Iterator[Rule]:
    """Every rule of every policy, list names included, in the order the server reads them."""
    index = 0
    for order, policy in enumerate(policies):
        yield from entry_rules(policy, order, index)
        index += len(policy.entries)
        for ref in policy.lists:
            for name in read_list(ref, ListReport(str(ref.path))):
                yield list_rule(policy, order, index, wire.name_to_text(name), ref)
                index += 1


def zone_rules(compiled: Any, start: int = 0) -> Iterator[Rule]:
    """The triggers of the RPZ zones of a layered policy (none for a plain one), as rules:
    QNAME triggers (``name``: exact, ``*.name``: below, both the same: subtree) and
    client-IP triggers, each with the zone file's line."""
    number = 0
    index = start
    policies: dict[int, PolicyFile] = {}

    def policy_of(verdict: Verdict) -> PolicyFile:
        found = policies.get(id(verdict.policy))
        if found is None:
            found = policies[id(verdict.policy)] = PolicyFile(verdict.policy, verdict.action)
        return found

    for layer in getattr(compiled, "layers", ()):
        if not layer.source:
            continue  # the policy files' own layer
        number += 1
        for name, value in layer.qname.table.items():
            if isinstance(value, Verdict):
                sides: list[tuple[Scope, Any]] = [(Scope.SUBTREE, value)]
            elif value.here is value.below:
                sides = [(Scope.SUBTREE, value.here)]
            else:
                sides = [(Scope.EXACT, value.here), (Scope.BELOW, value.below)]
            for scope, side in sides:
                verdict = side if isinstance(side, Verdict) else None
                if verdict is None:
                    continue  # nothing on this side (zones have no client scopes or dates)
                file, line = layer.where(name, Scope.BELOW if scope is Scope.BELOW else Scope.EXACT)
                yield Rule(
                    name=wire.name_to_text(name),
                    scope=scope,
                    action=verdict.action,
                    policy=policy_of(verdict),
                    order=verdict.order,
                    index=index,
                    file=file,
                    line=line,
                    redirect=verdict.redirect,
                    layer=number,
                    verdict=verdict,
                )
                index += 1
        for network, verdict, line in layer.client_ip.entries if layer.client_ip else ():
            yield Rule(
                name="",
                scope=Scope.SUBTREE,
                action=verdict.action,
                policy=policy_of(verdict),
                order=verdict.order,
                index=index,
                file=layer.source,
                line=line,
                redirect=verdict.redirect,
                layer=number,
                verdict=verdict,
                network=network,
            )
            index += 1


def _name_column(text: str) -> int:
    """The column of an entry's name on its line (after ``- `` and ``name:``), 1-based."""
    found = re.match(r"^(\s*-\s*(?:name\s*:\s*)?)", text)
    return (len(found.group(1)) + 1) if found else 1


def source_lines(source: str) -> list[str]:
    """The lines of a policy file, or none when it cannot be read now."""
    try:
        return Path(source).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []


def key_position(source: str, keys: Iterable[str]) -> tuple[int, int]:
    """Line and column of the first top-level key among ``keys`` in a YAML file; (0, 0)."""
    wanted = tuple(keys)
    for number, text in enumerate(source_lines(source), 1):
        for key in wanted:
            if re.match(rf"^{re.escape(key)}\s*:", text):
                return number, 1
    return 0, 0


LINES_BLOCK = 1 << 20  # bytes of a list searched at once by list_lines
NAME_BYTES = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789_.-")  # what a name is made of


def list_lines(path: Path, name: str, count: int, limit: int = 5_000_000) -> list[int]:
    """The first ``count`` lines of a list file on which ``name`` appears as a whole name
    (not next to a letter, digit, ``_``, ``-`` or dot; a dot may end it), in lower case.

    Lists keep no line numbers for the names they yield; this finds them for display,
    searching blocks of whole lines at once (a name never spans a line end).
    """
    needle = name.encode()
    found: list[int] = []
    before = 0  # lines before the block
    try:
        with open_binary(path) as f:
            rest = b""
            while before < limit and len(found) < count:
                data = f.read(LINES_BLOCK)
                cut = data.rfind(b"\n") + 1 if data else 0
                if data and not cut:
                    rest += data  # a line longer than a block
                    continue
                block, rest = rest + data[:cut], data[cut:]
                if not block:
                    break
                _lines_in(needle, block.lower(), before, limit, count, found)
                before += block.count(b"\n")
    except (OSError, ValueError, SourceError):
        pass  # unreadable now: no line to show
    return found


def _lines_in(
    needle: bytes, block: bytes, before: int, limit: int, count: int, found: list[int]
) -> None:
    """The numbers of the lines of ``block`` (after line ``before``) with ``needle`` as a
    whole name, added to ``found`` up to ``count`` of them and line ``limit``."""
    size = len(block)
    position, number = 0, before + 1
    start = block.find(needle)
    while start >= 0:
        end = start + len(needle)
        if (start == 0 or block[start - 1] not in NAME_BYTES) and (
            end == size
            or block[end] not in NAME_BYTES
            or (block[end] == 0x2E and (end + 1 == size or block[end + 1] not in NAME_BYTES))
        ):
            number += block.count(b"\n", position, start)
            position = start
            if number > limit:
                return
            if not found or found[-1] != number:
                found.append(number)
                if len(found) >= count:
                    return
        start = block.find(needle, start + 1)
