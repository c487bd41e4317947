"""What a serving process has loaded, and the control endpoint that shows it.

The control endpoint is plain HTTP on a loopback address (``control:`` in the
configuration; it has no authentication, so the configuration refuses any other
address), served on the event loop like /metrics (``control_routes`` is its content;
resolver.edge.http serves it):

- ``GET /policies``: JSON, the policies in force in configuration order (id, file,
  sha256, entry and list-name counts, dates), when they were loaded, and how many
  names each gained and lost at that load.
- ``GET /entries``: text, one line per entry of a policy file and per list name,
  ``name<TAB>form<TAB>action<TAB>policy`` (form: subtree, exact or below; action:
  a block action or allow), streamed in chunks, so a million names never become
  one large document.

``sinkhole diff`` reads both to show what a reload would change. The same per-policy
name sets count the names added and removed at each reload: a policy's list names
are kept as a set of the wire names the compiled table already holds, so the cost
is the set's hash table (about 32 MiB per million names), not the names again.
"""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from typing import Any

from resolver.core.matcher import Scope
from resolver.core.verdict import Action
from resolver.core.wire import names_text, text_to_name
from resolver.sources.policy_entries import Entry
from resolver.sources.policy_plain import PlainEntries
from resolver.sources.policy_yaml import PolicyFile
from resolver.sources.rules import FORMS, zone_rules
from resolver.sources.shared import EntryView
from resolver.sources.snapshot import BuildResult, PolicyReport

CHUNK_LINES = 2000
SLICE = 10_000  # names compared per step when a reload counts names added and removed


@dataclass(frozen=True)
class Loaded:
    """The build a serving process enforces, when it was loaded, and what that load changed."""

    result: BuildResult
    at: datetime
    changes: dict[str, tuple[int, int]] = field(default_factory=dict)  # id -> (added, removed)

    def document(self) -> dict[str, Any]:
        """The body of GET /policies."""
        policies = []
        for order, (policy, report) in enumerate(
            zip(self.result.policies, self.result.reports, strict=True)
        ):
            info = policy.info
            added, removed = self.changes.get(info.id, (0, 0))
            policies.append(
                {
                    "order": order,
                    **report.as_dict(),
                    "action": policy.action.label,
                    "distinct_list_names": len(report.listed),
                    "lists": [str(ref.path) for ref in policy.lists],
                    "effective_from": info.effective_from.isoformat()
                    if info.effective_from
                    else None,
                    "expires": info.expires.isoformat() if info.expires else None,
                    "added": added,
                    "removed": removed,
                }
            )
        first = len(policies)
        zones = [
            {"order": first + i, "id": zone.name.rstrip("."), **zone.as_dict()}
            for i, zone in enumerate(getattr(self.result, "zones", ()))
        ]
        return {
            "loaded_at": self.at.isoformat(),
            "names": self.result.snapshot.policy.names(),
            "policies": policies,
            "zones": zones,
        }


def entry_lines(result: BuildResult) -> Iterator[bytes]:
    """``name<TAB>form<TAB>action<TAB>policy`` lines, every entry then every list name,
    policy by policy, then the name triggers of the RPZ zones (``policy`` is the zone),
    in chunks of at most CHUNK_LINES lines."""
    return _chunks(_pieces(result))


def file_entry_lines(policy: PolicyFile) -> Iterator[bytes]:
    """The lines of entry_lines for the entries of one policy file (known once the file
    is read), in chunks."""
    return _chunks(_entry_pieces(policy))


def list_name_lines(policy: PolicyFile, report: PolicyReport) -> Iterator[bytes]:
    """The lines of entry_lines for the list names of one policy (known once built)."""
    return _chunks(_listed_pieces(policy, report))


def zone_lines(result: BuildResult) -> Iterator[bytes]:
    """The lines of entry_lines for the RPZ zones' name triggers."""
    return _chunks(_zone_pieces(result))


def _chunks(pieces: Iterable[tuple[bytes, int]]) -> Iterator[bytes]:
    chunk: list[bytes] = []
    lines = 0
    for piece, count in pieces:
        chunk.append(piece)
        lines += count
        if lines >= CHUNK_LINES:
            yield b"".join(chunk)
            chunk, lines = [], 0
    if chunk:
        yield b"".join(chunk)


def _pieces(result: BuildResult) -> Iterator[tuple[bytes, int]]:
    """The lines of entry_lines a few at a time (at most CHUNK_LINES), with their count."""
    for policy, report in zip(result.policies, result.reports, strict=True):
        yield from _entry_pieces(policy)
        yield from _listed_pieces(policy, report)
    yield from _zone_pieces(result)


def _entry_pieces(policy: PolicyFile) -> Iterator[tuple[bytes, int]]:
    """The lines of one policy file's entries, with their count. The names of a plain
    block: list (PlainEntries) are written a slice at a time with one join, without an
    Entry object or a line of their own."""
    tail = f"\t{policy.info.id}\n"
    entries = policy.entries
    if isinstance(entries, PlainEntries):
        common = f"\tsubtree\t{entries.action.label}{tail}"
        items = entries.items
        for start in range(0, len(items), CHUNK_LINES):
            part = items[start : start + CHUNK_LINES]
            if set(map(type, part)) == {str}:
                text = common.join(part) + common  # type: ignore[arg-type]
            else:
                text = "".join(
                    item + common if type(item) is str else _entry_line(item, tail)  # type: ignore[arg-type]
                    for item in part
                )
            yield text.encode(), len(part)
    elif isinstance(entries, EntryView):
        # The image's lines end in the form and action as numbers: each ending replaced
        # in a whole block (a name has no tab, a policy id no space).
        endings = {
            f"\t{int(scope)}\t{int(action)}\n": f"\t{FORMS[scope]}\t{action.label}{tail}"
            for scope in Scope
            for action in Action
        }
        for text, count in entries.blocks():
            yield _spelled(text, endings).encode(), count
    else:
        for entry in entries:
            yield _entry_line(entry, tail).encode(), 1


def _listed_pieces(policy: PolicyFile, report: PolicyReport) -> Iterator[tuple[bytes, int]]:
    middle = f"\tsubtree\t{policy.action.label}\t{policy.info.id}\n"
    listed = iter(report.listed)
    while names := list(islice(listed, CHUNK_LINES)):
        yield names_text(names, middle).encode(), len(names)


def _zone_pieces(result: BuildResult) -> Iterator[tuple[bytes, int]]:
    for rule in zone_rules(result.snapshot.policy):
        if rule.network is not None:
            continue  # client-IP triggers name clients, not names
        line = f"{rule.name}\t{rule.form}\t{rule.action.label}\t{rule.policy_id}\n"
        yield line.encode(), 1


_NUMBERED = re.compile(r"\t[0-9]+\t[0-9]+\n")  # a line's form and action as numbers


def _spelled(text: str, endings: dict[str, str]) -> str:
    """``text`` with each of ``endings`` replaced by its value: only the endings the text
    has are replaced, each found by looking for the next one (a block most often has
    one), so the text is not searched for every ending it does not have."""
    position = 0
    while (found := _NUMBERED.search(text, position)) is not None:
        ending = found.group()
        if ending in endings:
            text = text.replace(ending, endings[ending])
            position = found.start()
        else:
            position = found.end()
    return text


def _entry_line(entry: Entry, tail: str) -> str:
    return f"{entry.name}\t{FORMS[entry.scope]}\t{entry.action.label}{tail}"


def _names(result: BuildResult) -> dict[str, tuple[set[bytes], set[bytes]]]:
    """Per policy id: (list names, names of the policy file's entries), in wire form."""
    return {
        policy.info.id: (report.listed, {text_to_name(e.name) for e in policy.entries})
        for policy, report in zip(result.policies, result.reports, strict=True)
    }


def _missing(a: tuple[set[bytes], set[bytes]], b: tuple[set[bytes], set[bytes]]) -> int:
    """How many names of ``a`` (list names and entry names) ``b`` does not have.

    The list names go in slices of SLICE: one set operation on a million names would hold
    the interpreter lock for most of a second, and the event loop serving queries with it.
    """
    a_list, a_entries = a
    b_list, b_entries = b
    count = 0
    names = iter(a_list)
    while chunk := set(islice(names, SLICE)):
        missing = chunk.difference(b_list)
        if missing and b_entries:
            missing.difference_update(b_entries)
        count += len(missing)
    return count + len(a_entries.difference(a_list, b_list, b_entries))


def name_changes(old: BuildResult | None, new: BuildResult) -> dict[str, tuple[int, int]]:
    """Per policy id of ``new``: (names added, names removed) since ``old``. A policy that is
    new counts every name as added. Run off the event loop: it is linear in the names."""
    before = _names(old) if old is not None else {}
    empty: tuple[set[bytes], set[bytes]] = (set(), set())
    out = {}
    for policy_id, names in _names(new).items():
        previous = before.get(policy_id, empty)
        out[policy_id] = (_missing(names, previous), _missing(previous, names))
    return out


def removed_policies(old: BuildResult | None, new: BuildResult) -> list[str]:
    if old is None:
        return []
    kept = {p.info.id for p in new.policies}
    return [p.info.id for p in old.policies if p.info.id not in kept]


JSON = "application/json"
TEXT = "text/plain; charset=utf-8"
# What a route gives the HTTP layer: status, content type, body whole or in chunks.
Reply = tuple[int, str, bytes | Iterable[bytes]]
NOT_LOADED: Reply = (503, TEXT, b"nothing loaded yet\n")


def control_routes(read: Callable[[], Loaded | None]) -> dict[str, Callable[[], Reply]]:
    """GET /policies (JSON) and GET /entries (text, streamed) of what ``read`` gives."""

    def policies() -> Reply:
        loaded = read()
        if loaded is None:
            return NOT_LOADED
        return 200, JSON, json.dumps(loaded.document(), indent=2).encode() + b"\n"

    def entries() -> Reply:
        loaded = read()
        if loaded is None:
            return NOT_LOADED
        return 200, TEXT, entry_lines(loaded.result)

    return {"/policies": policies, "/entries": entries}


# --- the client side (sinkhole diff) ---------------------------------------------------------


class ControlError(Exception):
    """The control endpoint could not be read."""


def fetch_policies(base: str, timeout: float = 10.0) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(base.rstrip("/") + "/policies", timeout=timeout) as response:
            document: dict[str, Any] = json.loads(response.read())
            return document
    except (OSError, ValueError) as exc:
        raise ControlError(f"cannot read {base.rstrip('/')}/policies: {exc}") from None


SCOPES = {label.encode(): scope for scope, label in FORMS.items()}


def fetch_entry_lines(base: str, timeout: float = 120.0) -> list[bytes]:
    """Every line of GET /entries, without its newline."""
    url = base.rstrip("/") + "/entries"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body: bytes = response.read()
    except OSError as exc:
        raise ControlError(f"cannot read {url}: {exc}") from None
    lines = body.split(b"\n")
    if lines and not lines[-1]:
        lines.pop()
    return lines


def parse_entry_line(line: bytes) -> tuple[bytes, Scope, Action, str]:
    """(wire name, scope, action, policy id) of one line of GET /entries."""
    fields = line.split(b"\t")
    if len(fields) != 4 or not fields[0]:
        raise ControlError(f"an /entries line is not name, form, action, policy: {line!r}")
    name, form, action, policy = fields
    try:
        scope = SCOPES[form]
        verb = Action.from_label(action.decode())
    except (KeyError, UnicodeDecodeError):
        raise ControlError(f"an /entries line has an unknown form or action: {line!r}") from None
    wire_name = b"".join(bytes((len(label),)) + label for label in name.split(b"."))
    return wire_name + b"\x00", scope, verb, policy.decode("utf-8", "replace")
