"""`sinkhole check`: every error and warning in the configuration, the policies and the lists.

Errors are what the server refuses to load; a broken policy file is one error, and
checking goes on with the next file, so one run shows everything to fix. Warnings
are entries that load but probably do not do what their author meant: duplicates,
entries a broader one already covers, names both blocked and exempted, conflicts
between policies, exemptions that exempt nothing, policies out of force, and list
lines that were skipped. Each comes with the file and line of the entry.
"""

from __future__ import annotations

import importlib
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from resolver.core.errors import SourceError
from resolver.core.policy import Scope
from resolver.sources.config import Config, default_config, load_config
from resolver.sources.lists import ListReport, read_list
from resolver.sources.policy_yaml import ListRef, PolicyFile, load_policy
from resolver.sources.rules import (
    Rule,
    entry_rules,
    key_position,
    list_lines,
    overlap,
    wire_text,
)

EXAMPLES = 5  # names shown per aggregated warning about a list


@dataclass(frozen=True, slots=True)
class Diagnostic:
    file: str
    line: int
    column: int
    severity: str  # error | warning
    message: str

    def text(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.severity}: {self.message}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "severity": self.severity,
            "message": self.message,
        }


def error_of(exc: SourceError) -> Diagnostic:
    return Diagnostic(exc.source, exc.line, exc.column, "error", exc.message)


@dataclass
class CheckResult:
    config: Config | None = None
    policies: list[PolicyFile] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    names: int = 0  # distinct names the compiled policy would hold
    list_names: dict[str, int] = field(default_factory=dict)  # per policy id

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "warning"]

    def error(self, file: str, line: int, column: int, message: str) -> None:
        self.diagnostics.append(Diagnostic(file, line, column, "error", message))

    def warn(self, file: str, line: int, column: int, message: str) -> None:
        self.diagnostics.append(Diagnostic(file, line, column, "warning", message))

    def warn_at(self, rule: Rule, message: str) -> None:
        self.warn(rule.file, rule.line, rule.column, message)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": not self.errors,
            "config": self.config.source if self.config else None,
            "errors": [d.as_dict() for d in self.errors],
            "warnings": [d.as_dict() for d in self.warnings],
            "policies": [
                {
                    "id": p.info.id,
                    "file": p.info.source,
                    "sha256": p.sha256,
                    "entries": len(p.entries),
                    "list_names": self.list_names.get(p.info.id, 0),
                }
                for p in self.policies
            ],
            "names": self.names,
        }


def run_check(config_path: Path | None, now: datetime | None = None) -> CheckResult:
    """Check the configuration at ``config_path`` (the built-in one when None)."""
    result = CheckResult()
    try:
        config = load_config(config_path) if config_path is not None else default_config()
    except SourceError as exc:
        result.diagnostics.append(error_of(exc))
        return result
    result.config = config
    check_config(config, result, now or datetime.now(UTC))
    return result


def reload_errors(
    config_path: Path | None, config: Config, first: SourceError
) -> list[SourceError]:
    """Every error that stops these files from loading, for the log of a failed reload
    (``first`` is the one the build stopped at). Reads the files again: run it off the loop."""
    try:
        if config_path is not None:
            config = load_config(config_path)
    except SourceError as exc:
        return [exc]
    result = CheckResult(config=config)
    check_config(config, result, datetime.now(UTC), warnings=False)
    errors = [
        SourceError(d.message, d.file, d.line, d.column)
        for d in result.diagnostics
        if d.severity == "error"
    ]
    return errors or [first]


def check_config(config: Config, result: CheckResult, now: datetime, warnings: bool = True) -> None:
    """Errors and (with ``warnings``) warnings of a loaded configuration's files."""
    policies = _load_policies(config, result)
    result.policies = policies
    listed = _read_lists(policies, result, config.max_file_size)
    if warnings:
        _check_dates(policies, result, now)
        Analysis(policies, listed, result).run()
    _check_zones(config, result)
    if not result.errors:
        _build(config, result)
    if not warnings:
        result.diagnostics = result.errors


def _load_policies(config: Config, result: CheckResult) -> list[PolicyFile]:
    policies: list[PolicyFile] = []
    seen: dict[str, str] = {}
    for pattern in config.policies:
        if any(ch in pattern for ch in "*?[") and not _glob_matches(config, pattern):
            line, column = _config_position(config, pattern)
            result.warn(config.source, line, column, f"policies: {pattern!r} matches no file")
    for path in config.policy_files():
        try:
            policy = load_policy(path)
        except SourceError as exc:
            result.diagnostics.append(error_of(exc))
            continue
        if policy.info.id in seen:
            line, column = key_position(policy.info.source, ["id"])
            result.error(
                policy.info.source,
                line,
                column,
                f"policy id {policy.info.id!r} is already used by {seen[policy.info.id]}; "
                "every policy needs its own id",
            )
            continue
        seen[policy.info.id] = policy.info.source
        policies.append(policy)
    return policies


def _glob_matches(config: Config, pattern: str) -> bool:
    path = Path(pattern)
    if not path.is_absolute():
        path = config.base_dir / path
    return any(path.parent.glob(path.name))


def _config_position(config: Config, text: str) -> tuple[int, int]:
    try:
        lines = Path(config.source).read_text(encoding="utf-8").splitlines()
    except OSError:
        return 0, 0
    for number, line in enumerate(lines, 1):
        column = line.find(text)
        if column >= 0:
            return number, column + 1
    return 0, 0


def _read_lists(
    policies: list[PolicyFile], result: CheckResult, limit: int
) -> dict[tuple[int, int], list[bytes]]:
    """The names of every list, keyed by (policy order, list position); bad lines warned."""
    out: dict[tuple[int, int], list[bytes]] = {}
    for order, policy in enumerate(policies):
        total = 0
        for position, ref in enumerate(policy.lists):
            report = ListReport(str(ref.path))
            try:
                names = list(read_list(ref, report, limit))
            except SourceError as exc:
                result.diagnostics.append(error_of(exc))
                continue
            except OSError as exc:
                result.error(
                    policy.info.source,
                    ref.line,
                    ref.column or 1,
                    f"cannot read the list {str(ref.path)!r}: {exc.strerror or exc}",
                )
                continue
            out[(order, position)] = names
            total += len(names)
            if report.bad:
                first = report.examples[0][0] if report.examples else 0
                shown = "; ".join(f"line {n}: {message}" for n, message in report.examples)
                result.warn(
                    str(ref.path),
                    first,
                    1,
                    f"{report.bad} {_plural(report.bad, 'line')} skipped in this list of "
                    f"policy {policy.info.id!r} (the first {len(report.examples)}: {shown})",
                )
        result.list_names[policy.info.id] = total
    return out


def _check_dates(policies: list[PolicyFile], result: CheckResult, now: datetime) -> None:
    for policy in policies:
        info = policy.info
        if info.expires is not None and info.expires <= now:
            line, column = key_position(info.source, ["expires"])
            result.warn(
                info.source,
                line,
                column,
                f"policy {info.id!r} expired on {_when(info.expires)}: none of its entries is "
                "enforced; remove the file or set a later expiry date",
            )
        elif info.effective_from is not None and info.effective_from > now:
            line, column = key_position(
                info.source, ["effective_from", "effective", "valid_from", "from", "starts"]
            )
            result.warn(
                info.source,
                line,
                column,
                f"policy {info.id!r} is not in force yet: it comes into force on "
                f"{_when(info.effective_from)}; until then none of its entries is enforced",
            )


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _check_zones(config: Config, result: CheckResult) -> None:
    """RPZ zones: each broken zone is one error; what loading a zone warns about, a warning."""
    zones = getattr(config, "zones", ())
    if not zones:
        return
    try:
        rpz = importlib.import_module("resolver.sources.rpz")
    except ImportError:  # pragma: no cover - a build without zone support
        return
    first = len(result.policies)
    for order, zone in enumerate(zones, start=first):
        try:
            loaded = rpz.load_zone(zone, order)
        except SourceError as exc:
            result.diagnostics.append(error_of(exc))
            continue
        except OSError as exc:
            result.error(str(zone.file), 0, 0, f"cannot read the zone file: {exc.strerror or exc}")
            continue
        for warning in loaded.report.warnings:
            found = re.search(r"at line (\d+)", warning)
            result.warn(str(zone.file), int(found.group(1)) if found else 0, 0, warning)


def _build(config: Config, result: CheckResult) -> None:
    """Build the compiled policy as the server would: the last word on loading."""
    from resolver.sources.snapshot import build_snapshot

    try:
        built = build_snapshot(config)
    except SourceError as exc:
        if not any(d.severity == "error" and d.message == exc.message for d in result.diagnostics):
            result.diagnostics.append(error_of(exc))
        return
    result.names = built.snapshot.policy.names()


def _plural(count: int, word: str) -> str:
    return word if count == 1 else word + "s"


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
        self.wire = {id(rule): _wire(rule.name) for rule in self.rules}
        self.at: dict[bytes, list[Rule]] = defaultdict(list)
        for rule in self.rules:
            self.at[self.wire[id(rule)]].append(rule)
        self.seen: list[set[bytes]] = [set() for _ in policies]  # names of each policy's lists
        # The first policy that lists each name (it wins among the lists at that name).
        self.list_first: dict[bytes, int] = {}
        for (order, _), names in sorted(listed.items()):
            setdefault = self.list_first.setdefault
            for name in names:
                setdefault(name, order)

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
            name = self.wire[id(rule)]
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
        list_first = self.list_first
        for parent in _parents(name):
            rules = at.get(parent)
            order = list_first.get(parent)
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
                candidates.append((rank, wire_text(parent), order, self._list_key(order), 0))
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
            if parent in self.list_first:
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
                    exempted.append(f"{wire_text(name)} ({allow.where()})")
                elif mine is not None:
                    entry.append(f"{wire_text(name)} (entry at line {mine.line})")
                else:
                    other = rules[0]
                    others[other.order].append(f"{wire_text(name)} ({other.where()})")
                continue
            first = list_first[name]
            if first < order:
                others[first].append(f"{wire_text(name)} (a list)")
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
            plain = wire_text(name)
            lines = list_lines(ref.path, plain, occurrences)
            if lines:
                numbers = ", ".join(str(n) for n in lines)
                shown.append(f"{plain} ({_plural(len(lines), 'line')} {numbers})")
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
    return f"{len(items)} {_plural(len(items), word)}"


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


def _wire(name: str) -> bytes:
    return (
        b"".join(bytes((len(label),)) + label.encode("ascii") for label in name.split("."))
        + b"\x00"
    )


def render_text(result: CheckResult) -> Iterable[str]:
    """Errors, then warnings, each group in file and line order, then a summary line."""
    for group in (result.errors, result.warnings):
        for diagnostic in sorted(group, key=lambda d: (d.file, d.line, d.column)):
            yield diagnostic.text()
    errors, warnings = len(result.errors), len(result.warnings)
    if errors:
        yield (
            f"failed: {errors} {_plural(errors, 'error')}, {warnings} "
            f"{_plural(warnings, 'warning')}"
        )
        return
    source = result.config.source if result.config else "?"
    summary = f"ok: {source}: {len(result.policies)} policies, {result.names} names"
    if warnings:
        summary += f", {warnings} {_plural(warnings, 'warning')}"
    yield summary
