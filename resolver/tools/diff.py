"""`sinkhole diff`: what a reload would change, against what the running server enforces.

The running server's entries come from its control endpoint (GET /entries), read by a
child process while the new files are built (resolver.tools.diff_child; ReadHere reads
them in this process); the new ones are built from the files as a reload would build
them, and written as the same lines. Lines on one side only name the entries that
changed; the names they are for, and the names under them, are decided before and
after with the server's matcher (layer by layer, as the server does): the name itself,
and a name under it that no entry names. So a new exemption shows up as names
unblocked, and a policy moved up the list as actions changed. Decisions are those for a
client every scope includes, with every policy in force (client scopes and dates are
the same on both sides).

A name decided the same way can still be answered otherwise (a new warning page
address, TTL, redirect target, reference): diff_answers compares the running server's
answers, asked over DNS, with the new build's, and counts the names each change of
answer affects; those names count as changed.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import compress
from typing import Any, Protocol

from resolver.core import wire
from resolver.core.endpoint import Endpoint
from resolver.core.matcher import CompiledPolicy, Scope
from resolver.core.verdict import Action, Answers, PolicyInfo, Verdict
from resolver.sources.config import Config
from resolver.sources.rules import pattern
from resolver.sources.snapshot import BuildResult
from resolver.tools.control import (
    entry_lines,
    fetch_entry_lines,
    fetch_policies,
    parse_entry_line,
)
from resolver.tools.diff_answers import AnswerDiff, compare
from resolver.tools.diff_lines import Lines, line_name, parents

PROBE = b"\x01\xff"  # a label no policy name has: stands for "any other name under it"
SHOWN = 50

Decision = tuple[Action, str] | None  # (action, policy id)


@dataclass(frozen=True)
class Change:
    name: str  # as an entry would be written: name, =name (itself only), *.name (under it)
    before: Decision
    after: Decision

    @property
    def kind(self) -> str:
        was, now = _blocking(self.before), _blocking(self.after)
        if now and not was:
            return "blocked"
        if was and not now:
            return "unblocked"
        return "changed"

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "before": _decision_dict(self.before),
            "after": _decision_dict(self.after),
        }


@dataclass
class Diff:
    server: str
    loaded_at: str
    policies_added: list[dict[str, Any]] = field(default_factory=list)
    policies_removed: list[dict[str, Any]] = field(default_factory=list)
    policies_changed: list[dict[str, Any]] = field(default_factory=list)
    policies_moved: list[str] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    names_before: int = 0
    names_after: int = 0
    answers: AnswerDiff = field(default_factory=AnswerDiff)

    def count(self, kind: str) -> int:
        """Names of a kind; names answered otherwise count as changed."""
        found = len(self.of_kind(kind))
        return found + self.answers.names if kind == "changed" else found

    def of_kind(self, kind: str) -> list[Change]:
        return [c for c in self.changes if c.kind == kind]

    @property
    def empty(self) -> bool:
        return not (
            self.changes
            or self.answers.names
            or self.policies_added
            or self.policies_removed
            or self.policies_changed
            or self.policies_moved
        )

    def as_dict(self, limit: int | None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "server": self.server,
            "server_loaded_at": self.loaded_at,
            "same": self.empty,
            "policies": {
                "added": self.policies_added,
                "removed": self.policies_removed,
                "changed": self.policies_changed,
                "moved": self.policies_moved,
            },
            "names_before": self.names_before,
            "names_after": self.names_after,
        }
        for kind in ("blocked", "unblocked", "changed"):
            found = self.of_kind(kind)
            out[kind] = {
                "count": self.count(kind),
                "names": [c.as_dict() for c in (found if limit is None else found[:limit])],
            }
        answered = [
            {"name": name, "kind": "changed", "policy": policy, "answer": causes}
            for name, policy, causes in self.answers.changed
        ]
        room = None if limit is None else max(limit - len(out["changed"]["names"]), 0)
        out["changed"]["names"].extend(answered if room is None else answered[:room])
        out["answers"] = self.answers.as_dict(limit)
        return out


def _blocking(decision: Decision) -> bool:
    return decision is not None and decision[0] is not Action.ALLOW


def _decision_dict(decision: Decision) -> dict[str, str] | None:
    if decision is None:
        return None
    return {"action": decision[0].label, "policy": decision[1]}


Entry = tuple[bytes, Scope, Action, str]  # wire name, scope, action, policy id


def compile_layers(
    entries: Iterable[Entry], order: dict[str, int], layer_of: dict[str, int]
) -> list[CompiledPolicy]:
    """The server's matcher over bare entries, one table per layer (the policy files, then
    each RPZ zone); one verdict per (policy, action)."""
    verdicts: dict[tuple[str, Action], Verdict] = {}
    answers = Answers()
    layers: dict[int, list[tuple[bytes, Scope, Verdict]]] = {}

    def verdict(policy: str, action: Action) -> Verdict:
        found = verdicts.get((policy, action))
        if found is None:
            info = PolicyInfo(id=policy, source="")
            found = verdicts[(policy, action)] = Verdict(
                info, action, answers, order.get(policy, len(order))
            )
        return found

    for name, scope, action, policy in entries:
        layers.setdefault(layer_of.get(policy, 0), []).append(
            (name, scope, verdict(policy, action))
        )
    return [CompiledPolicy.build(layers[n]) for n in sorted(layers)]


def decide(layers: list[CompiledPolicy], qname: bytes) -> Decision:
    """The first layer's verdict, as the server decides (for a client every scope
    includes)."""
    for table in layers:
        verdict = table.match(qname)
        if verdict is not None:
            return (verdict.action, verdict.policy_id)
    return None


def compare_tables(
    before: list[CompiledPolicy], after: list[CompiledPolicy], names: Iterable[bytes]
) -> list[Change]:
    """Every name whose decision differs, for the name itself and for the names under it."""
    out = []
    for name in names:
        here = (decide(before, name), decide(after, name))
        below = (decide(before, PROBE + name), decide(after, PROBE + name))
        text = wire.name_to_text(name)
        if here == below:
            if here[0] != here[1]:
                out.append(Change(text, *here))
            continue
        if here[0] != here[1]:
            out.append(Change(pattern(text, Scope.EXACT), *here))
        if below[0] != below[1]:
            out.append(Change(pattern(text, Scope.BELOW), *below))
    out.sort(key=lambda c: (c.name.lstrip("=*."), c.name))
    return out


def _zone_item(zone: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": zone["id"],
        "kind": "zone",
        "file": zone.get("file"),
        "serial": zone.get("serial"),
        "records": zone.get("records"),
    }


@dataclass(frozen=True)
class Running:
    """What the running server enforces, as its control endpoint gives it."""

    document: dict[str, Any]  # GET /policies
    lines: list[bytes]  # GET /entries


def read_running(server: str) -> Running:
    """The policies and entries of the server at ``server`` (a control endpoint URL)."""
    document = fetch_policies(server)
    return Running(document, fetch_entry_lines(server))


Order = tuple[dict[str, int], dict[str, int]]  # per policy id: its order, its layer


@dataclass(frozen=True)
class Compared:
    """What compare_lines found, and the names in the table on each side."""

    changes: list[Change]
    names_before: int
    names_after: int


class Reading(Protocol):
    """The running server's side of a diff: its policies, and its entries compared with
    the new ones."""

    def policies(self) -> dict[str, Any]: ...

    def compare(self, result: BuildResult, old: Order, new: Order, everything: bool) -> Compared:
        """What differs between the running server's entries and the lines of ``result``
        (entry_lines)."""
        ...


class ReadHere:
    """The running server's side read in this process, at once."""

    def __init__(self, server: str) -> None:
        self.running = read_running(server)

    def policies(self) -> dict[str, Any]:
        return self.running.document

    def compare(self, result: BuildResult, old: Order, new: Order, everything: bool) -> Compared:
        before = Lines(self.running.lines)
        after = Lines()
        after.add_text(entry_lines(result))
        return compare_lines(before, after, old, new, everything)


def diff(
    config: Config,
    result: BuildResult,
    server: str,
    dns: Endpoint | None = None,
    reading: Reading | None = None,
) -> Diff:
    """Compare the server at ``server`` (a control endpoint URL; ``dns``: its DNS address,
    for its answers; ``reading``: its policies and entries, when already asked for) with
    ``result``."""
    if reading is None:
        reading = ReadHere(server)
    document = reading.policies()
    running = document.get("policies", [])
    running_zones = document.get("zones", [])
    out = Diff(server, str(document.get("loaded_at", "")))
    old = {p["id"]: p for p in running}
    new = {p.info.id: p for p in result.policies}
    for policy_id, policy in new.items():
        item = {"id": policy_id, "file": policy.info.source, "sha256": policy.sha256}
        if policy_id not in old:
            out.policies_added.append(item)
        elif old[policy_id].get("sha256") != policy.sha256:
            out.policies_changed.append({**item, "sha256_before": old[policy_id].get("sha256")})
    for policy_id, item in old.items():
        if policy_id not in new:
            out.policies_removed.append(
                {"id": policy_id, "file": item.get("file"), "sha256": item.get("sha256")}
            )
    kept_old = [p["id"] for p in running if p["id"] in new]
    kept_new = [p.info.id for p in result.policies if p.info.id in old]
    if kept_old != kept_new:
        out.policies_moved = kept_new

    new_zones = [
        _zone_item({"id": z.name.rstrip("."), **z.as_dict()}) for z in getattr(result, "zones", ())
    ]
    old_zones = {z["id"]: _zone_item(z) for z in running_zones}
    for zone in new_zones:
        before = old_zones.pop(zone["id"], None)
        if before is None:
            out.policies_added.append(zone)
        elif (before["serial"], before["records"]) != (zone["serial"], zone["records"]):
            out.policies_changed.append({**zone, "serial_before": before["serial"]})
    out.policies_removed.extend(old_zones.values())

    old_order = {p["id"]: i for i, p in enumerate([*running, *running_zones])}
    old_layer = {z["id"]: i + 1 for i, z in enumerate(running_zones)}
    new_ids = [p.info.id for p in result.policies] + [z["id"] for z in new_zones]
    new_order = {policy_id: i for i, policy_id in enumerate(new_ids)}
    new_layer = {z["id"]: i + 1 for i, z in enumerate(new_zones)}
    reordered = kept_old != kept_new or [
        z["id"] for z in running_zones if z["id"] in new_layer
    ] != [z["id"] for z in new_zones if z["id"] in old_layer]
    compared = reading.compare(result, (old_order, old_layer), (new_order, new_layer), reordered)
    out.names_before, out.names_after = compared.names_before, compared.names_after
    out.changes = compared.changes
    if dns is not None:
        changed_ids = [str(p["id"]) for p in (*out.policies_changed, *out.policies_added)]
        out.answers = compare(result, dns, (c.name for c in out.changes), changed_ids)
    return out


def compare_lines(
    before: Lines,
    after: Lines,
    old: Order,
    new: Order,
    everything: bool = False,
) -> Compared:
    """The decisions that differ between two sets of entries, as /entries lines (each in
    the order the server reads them, with its policies' order and layers), and the names
    on each side.

    Only names an entry was added to or removed from, and the names under them, can be
    decided otherwise (a decision comes from entries at the name and its parents), so only
    those are compared, on tables built from the entries at them and their parents: past
    one set difference of the lines, the cost follows the change, not the size of the
    lists. The new side's names are not worked out line by line: the lines added and
    removed tell which names it has. ``everything``: the policies were reordered, so every
    name is compared.
    """
    added, removed = after.changes_from(before)
    added_names = {line_name(line) for line in added}
    removed_names = {line_name(line) for line in removed}
    if everything:
        affected = before.distinct | after.distinct
        names_after = len(after.distinct)
    else:
        names_after = _count_after(before, removed, added_names, removed_names)
        changed = added_names | removed_names
        if not changed:
            return Compared([], len(before.distinct), names_after)
        # The names of both sides, each looked at once: most are on both.
        affected = before.under(changed) | added_names.difference(before.distinct)
    relevant = set(affected)
    for name in affected:
        relevant.update(parents(name))
    old_lines = before.lines_at(relevant)
    if everything:
        new_lines = after.lines_at(relevant)
    else:
        # A line of the new side is one of the old side's (not removed) or one added.
        keep = {line for line in old_lines if line not in removed}
        keep.update(line for line in added if line_name(line) in relevant)
        new_lines = list(compress(after.lines, map(keep.__contains__, after.lines)))
    old_tables = compile_layers(map(parse_entry_line, old_lines), *old)
    new_tables = compile_layers(map(parse_entry_line, new_lines), *new)
    changes = compare_tables(
        old_tables, new_tables, (wire.text_to_name(n.decode()) for n in affected)
    )
    return Compared(changes, len(before.distinct), names_after)


def _count_after(
    before: Lines, removed: set[bytes], added_names: set[bytes], removed_names: set[bytes]
) -> int:
    """How many names the new side has: the old side's, less those whose every line was
    removed, with those added."""
    gone = removed_names - added_names
    repeated = gone & before.repeated if gone else set()
    if repeated:  # a name of more than one line is gone only when none of them is kept
        gone -= {line_name(line) for line in before.lines_at(repeated) if line not in removed}
    return len(before.distinct) - len(gone) + len(added_names - before.distinct)


# --- text output ---------------------------------------------------------------------------


def _said(decision: Decision) -> str:
    if decision is None:
        return "not blocked"
    action, policy = decision
    if action is Action.ALLOW:
        return f"exempted by {policy}"
    return f"{action.label} by {policy}"


def _version(item: dict[str, Any]) -> str:
    if item.get("kind") == "zone":
        return f"zone, serial {item.get('serial')}"
    return f"sha256 {str(item.get('sha256'))[:16]}"


def _shown_name(change: Change) -> str:
    if change.name.startswith(("=", "*.")):
        return change.name
    return f"{change.name} (and names under it)"


def render_text(result: Diff, config_source: str, limit: int | None) -> Iterator[str]:
    yield (
        f"running server {result.server} (loaded {result.loaded_at or '?'}) against {config_source}"
    )
    if result.empty:
        yield "no change: a reload would enforce the same decisions"
        return
    counts = (
        len(result.policies_added),
        len(result.policies_removed),
        len(result.policies_changed),
    )
    yield f"policies: {counts[0]} added, {counts[1]} removed, {counts[2]} changed"
    for item in result.policies_added:
        yield f"  + {item['id']}  {item['file']}  {_version(item)}"
    for item in result.policies_removed:
        yield f"  - {item['id']}  {item['file']}"
    for item in result.policies_changed:
        if item.get("kind") == "zone":
            yield (
                f"  ~ zone {item['id']}  {item['file']}  serial {item.get('serial_before')} -> "
                f"{item.get('serial')}"
            )
            continue
        before = str(item.get("sha256_before") or "?")[:16]
        yield f"  ~ {item['id']}  {item['file']}  sha256 {before} -> {item['sha256'][:16]}"
    if result.policies_moved:
        yield "  order changed: " + ", ".join(result.policies_moved)
    blocked, unblocked, changed = (result.of_kind(k) for k in ("blocked", "unblocked", "changed"))
    yield (
        f"names: {len(blocked)} newly blocked, {len(unblocked)} unblocked, "
        f"{result.count('changed')} changed (names in the table: {result.names_before} -> "
        f"{result.names_after})"
    )
    answers = result.answers
    if answers.names:
        yield f"answers: {answers.names} names would be answered otherwise"
        for cause in answers.causes:
            policies = ", ".join(sorted(cause.policies))
            plural = "" if cause.names == 1 else "s"
            yield f"  {cause.text()}: {cause.names} name{plural} (policy {policies})"
    if answers.not_compared:
        yield (
            f"answers not compared: {answers.not_compared} names whose entries are scoped to "
            "clients or dated"
        )
    for title, mark, found in (
        ("newly blocked", "+", blocked),
        ("unblocked", "-", unblocked),
        ("changed", "~", changed),
    ):
        if not found:
            continue
        yield f"{title} ({len(found)}):"
        for change in found if limit is None else found[:limit]:
            yield f"  {mark} {_shown_name(change)}: {_said(change.before)} -> {_said(change.after)}"
        if limit is not None and len(found) > limit:
            yield f"  ... and {len(found) - limit} more (--all shows every name)"
    if answers.changed:
        yield f"answered otherwise ({answers.names}):"
        shown = answers.changed if limit is None else answers.changed[:limit]
        for name, policy, causes in shown:
            yield f"  ~ {name}: by {policy}, {'; '.join(causes)}"
        if len(shown) < answers.names:
            yield f"  ... and {answers.names - len(shown)} more"
