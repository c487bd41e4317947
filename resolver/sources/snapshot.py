"""Build the policy snapshot from the configuration: read every policy and list, compile.

Pure apart from reading files, so it runs off the event loop; any error leaves
the caller's current snapshot in force.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from resolver.core import wire
from resolver.core.errors import PolicyError
from resolver.core.layers import LayeredPolicy, PolicyLayer
from resolver.core.matcher import CompiledPolicy, Scope, TableBuilder
from resolver.core.snapshot import Snapshot
from resolver.core.verdict import Action, Answers, ClientScope, Redirect, Verdict
from resolver.sources.config import Config
from resolver.sources.lists import ListReport, read_list
from resolver.sources.policy_entries import Entry
from resolver.sources.policy_plain import PlainEntries, plain_wire
from resolver.sources.policy_yaml import PolicyFile, load_policy
from resolver.sources.rpz import ZoneReport, load_zone


@dataclass
class PolicyReport:
    id: str
    source: str
    sha256: str
    entries: int = 0
    lists: list[ListReport] = field(default_factory=list)
    # Wire names read from the lists (shared with the compiled table's keys): what the
    # control endpoint lists and what a reload compares to count names added and removed.
    listed: set[bytes] = field(default_factory=set, repr=False)
    # Wire names of the policy file's own entries (what a reload counts besides the lists).
    named: set[bytes] = field(default_factory=set, repr=False)

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "file": self.source,
            "sha256": self.sha256,
            "entries": self.entries,
            "list_names": sum(r.names for r in self.lists),
            "list_bad_lines": sum(r.bad for r in self.lists),
        }


@dataclass
class BuildResult:
    snapshot: Snapshot
    reports: list[PolicyReport]
    policies: tuple[PolicyFile, ...] = ()  # as parsed, in configuration order
    zones: list[ZoneReport] = field(default_factory=list)  # RPZ zones, in configuration order

    @property
    def warnings(self) -> list[str]:
        out = []
        for report in self.reports:
            for lst in report.lists:
                if lst.bad:
                    shown = "; ".join(f"line {n}: {msg}" for n, msg in lst.examples)
                    out.append(f"{lst.path}: {lst.bad} lines skipped ({shown})")
        return out

    @property
    def zone_warnings(self) -> list[str]:
        return [warning for zone in self.zones for warning in zone.warnings]


def load_policies(config: Config) -> list[PolicyFile]:
    """Every policy file the configuration names, checked; ids must be unique."""
    files = config.policy_files()
    policies = []
    seen: dict[str, str] = {}
    for path in files:
        policy = load_policy(path, config.state_dir)
        if policy.info.id in seen:
            raise PolicyError(
                f"policy id {policy.info.id!r} is already used by {seen[policy.info.id]}; "
                "every policy needs its own id",
                str(path),
            )
        seen[policy.info.id] = str(path)
        policies.append(policy)
    return policies


@dataclass(frozen=True)
class AlreadyRead:
    """What a caller has already read of the policies it passes to build_snapshot (sinkhole
    check), not to be read again: per (policy order, list position), a list's names as
    read_list gave them and its report; per policy order, the wire names of its entries."""

    lists: dict[tuple[int, int], tuple[list[bytes], ListReport]] = field(default_factory=dict)
    entry_names: dict[int, Sequence[bytes]] = field(default_factory=dict)


def build_snapshot(
    config: Config, read: list[PolicyFile] | None = None, already: AlreadyRead | None = None
) -> BuildResult:
    """Compile ``config``'s policies (``read``: as already read, in order, with ``already``
    what was read of them) and zones."""
    policies = load_policies(config) if read is None else read
    reports = [PolicyReport(p.info.id, p.info.source, p.sha256) for p in policies]

    builder = TableBuilder()
    already = already or AlreadyRead()
    for order, (file, report) in enumerate(zip(policies, reports, strict=True)):
        _add_policy(builder, file, order, report, config.answers, config.max_file_size, already)
    compiled = builder.finish(CompiledPolicy)
    policy = compiled
    zones = []
    if config.zones:
        # Layers: the YAML policies first, then each zone in the configured order.
        ids = {p.info.id: p.info.source for p in policies}
        layers = [PolicyLayer("policies", "", compiled)] if compiled.entries else []
        for order, zone in enumerate(config.zones, start=len(policies)):
            loaded = load_zone(zone, order)
            zone_id = zone.name.rstrip(".")
            if zone_id in ids:
                raise PolicyError(
                    f"zone {zone.name} has the id of the policy in {ids[zone_id]}; "
                    "rename the zone or the policy",
                    config.source,
                    zone.line,
                )
            layers.append(loaded.layer)
            zones.append(loaded.report)
        policy = LayeredPolicy(layers)
    policy.set_clock(datetime.now(UTC))
    snapshot = Snapshot(
        policy, tuple(p.info for p in policies), tuple(p.info.source for p in policies)
    )
    return BuildResult(snapshot, reports, tuple(policies), zones)


def _add_policy(
    builder: TableBuilder,
    policy: PolicyFile,
    order: int,
    report: PolicyReport,
    answers: Answers,
    limit: int,
    already: AlreadyRead,
) -> None:
    """One policy's entries, then its list names (in bulk), each with its (shared)
    verdict; ``limit``: the most bytes read from one list; ``already``: what need not be
    read again."""
    if policy.warning_page is not None:
        answers = policy.warning_page
    if policy.ttl is not None:
        answers = replace(answers, ttl=policy.ttl)
    verdicts: dict[tuple[Action, str, ClientScope, Redirect | None], Verdict] = {}

    def verdict(
        action: Action, reference: str, scope: ClientScope, redirect: Redirect | None
    ) -> Verdict:
        key = (action, reference, scope, redirect)
        found = verdicts.get(key)
        if found is None:
            found = verdicts[key] = Verdict(
                policy.info, action, answers, order, reference, scope, redirect
            )
        return found

    plain: dict[Action, Verdict] = {}  # for entries that override nothing but the action
    named = report.named.add

    def entry_of(entry: Entry) -> tuple[bytes, Scope, Verdict]:
        name = wire.text_to_name(entry.name)
        named(name)
        if entry.clients is None and entry.redirect is None and not entry.reference:
            found = plain.get(entry.action)
            if found is None:
                found = plain[entry.action] = verdict(
                    entry.action, "", policy.clients, policy.redirect
                )
            return name, entry.scope, found
        scope = entry.clients if entry.clients is not None else policy.clients
        redirect = entry.redirect if entry.redirect is not None else policy.redirect
        return name, entry.scope, verdict(entry.action, entry.reference, scope, redirect)

    report.entries += len(policy.entries)
    items = policy.entries
    if not isinstance(items, PlainEntries):
        builder.add_all(map(entry_of, items))
    else:
        # A name alone is an entry of the common form, checked when read: straight to wire,
        # and each run of them added in one go.
        common = verdict(items.action, "", policy.clients, policy.redirect)
        known = already.entry_names.get(order)  # the wire names of the items, when given
        run: list[bytes] = []
        for i, item in enumerate(items.items):
            if type(item) is str:
                run.append(plain_wire(item) if known is None else known[i])
                continue
            report.named.update(run)
            builder.add_run(run, common)
            run = []
            builder.add_all([entry_of(item)])  # type: ignore[arg-type]
        report.named.update(run)
        builder.add_run(run, common)
    shared = verdict(policy.action, "", policy.clients, policy.redirect)
    for position, ref in enumerate(policy.lists):
        found = already.lists.get((order, position))
        if found is None:
            listed = ListReport(str(ref.path))
            names = set(read_list(ref, listed, limit))
        else:
            names, listed = set(found[0]), found[1]
        report.lists.append(listed)
        # subtree, or exact for the names of a hosts file
        builder.add_names(names, ref.scope, shared, listed.names)
        if report.listed:
            report.listed |= names
        else:
            report.listed = names
