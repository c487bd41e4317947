"""Which names `sinkhole verify` asks, and what each must get.

From the configured policies: every entry and list name (or a seeded sample of them)
and every name trigger of the RPZ zones, decided for the client the server sees (its
scopes and the policies in force now), plus, for each entry that blocks a whole site,
two names under it (``www.`` and a random label: regulators order sites blocked, not
single names). Exempted names are checked against the block they are exempted from.
Names no entry decides for this client now are listed as skipped, with the reason.

From a register (``--list``): every name of the list as published, read by the same
reader as the policies' lists, with what the auditor expects.

From an allowed list (``--allowed``): names that must not be blocked at all.
"""

from __future__ import annotations

import hashlib
import ipaddress
import itertools
import random
import socket
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from resolver.core import wire
from resolver.core.endpoint import Endpoint
from resolver.core.matcher import CompiledPolicy, Scope
from resolver.core.verdict import Action, ClientScope
from resolver.sources.config import Config
from resolver.sources.lists import ListReport, read_domains, read_list
from resolver.sources.policy_lists import ListRef
from resolver.sources.policy_yaml import PolicyFile
from resolver.sources.rules import Rule, all_rules, parents, pattern, zone_rules
from resolver.tools.explain import ranked, scope_text, when
from resolver.tools.verify_judge import (
    Blocked,
    Exempt,
    Expectation,
    Listed,
    Mandate,
    NotBlocked,
    Signature,
    mandate_of,
    mandate_of_rule,
)

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
UNDER = "www"  # the first of the names probed under a blocked subtree
MAX_QNAME = 253


@dataclass(frozen=True)
class Probe:
    """One name to ask, the entry it checks, and what must come back."""

    qname: str
    entry: str  # the entry as written (or the list's name)
    policy: str  # policy id, zone, register or allowed list
    expect: Expectation
    under: bool = False  # a name under the entry, asked because the entry blocks a subtree

    @property
    def kind(self) -> str:
        return self.expect.kind


@dataclass(frozen=True)
class Skip:
    """A name that is not checked, and why."""

    qname: str
    entry: str
    policy: str
    kind: str
    reason: str


@dataclass
class Plan:
    client: str
    probes: list[Probe] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)
    total_names: int = 0  # entries and list names before sampling
    sample: int | None = None
    source: str = "the policies"
    notes: list[str] = field(default_factory=list)

    def count(self, kind: str, under: bool | None = None) -> int:
        return sum(1 for p in self.probes if p.kind == kind and (under is None or p.under is under))


def under_names(name: str, seed: int) -> list[str]:
    """``www.name`` and a label drawn from ``seed`` and the name (the same every run)."""
    label = "vp" + hashlib.blake2b(f"{seed}/{name}".encode(), digest_size=5).hexdigest()
    return [n for n in (f"{UNDER}.{name}", f"{label}.{name}") if len(n) <= MAX_QNAME]


@dataclass(frozen=True)
class Candidate:
    name: str  # the entry's name
    written: str  # the entry as written
    scope: Scope
    policy: PolicyFile | None = None  # None: a zone trigger (no dates, no client scopes)
    clients: ClientScope | None = None  # the entry's own client scope


def candidates(
    policies: list[PolicyFile], listed: Iterable[Iterable[bytes]], compiled: object = None
) -> Iterator[Candidate]:
    """Every entry and list name of the policies, and every name trigger of the RPZ zones
    of ``compiled``; each (name, form) once."""
    seen: set[tuple[str, Scope]] = set()
    for policy in policies:
        for entry in policy.entries:
            if (entry.name, entry.scope) not in seen:
                seen.add((entry.name, entry.scope))
                yield Candidate(
                    entry.name,
                    pattern(entry.name, entry.scope),
                    entry.scope,
                    policy,
                    entry.clients,
                )
    for policy, names in zip(policies, listed, strict=False):
        for raw in sorted(names):  # a set: sorted, so a seeded sample is reproducible
            name = wire.name_to_text(raw)
            if (name, Scope.SUBTREE) not in seen:
                seen.add((name, Scope.SUBTREE))
                yield Candidate(name, name, Scope.SUBTREE, policy)
    zone_names = sorted(
        (rule.name, rule.scope, rule.pattern)
        for rule in zone_rules(compiled)
        if rule.network is None
    )
    for name, scope, written in zone_names:
        if (name, scope) not in seen:
            seen.add((name, scope))
            yield Candidate(name, written, scope)


def probe_names(candidate: Candidate, subtree: bool, seed: int) -> list[tuple[str, bool]]:
    """(query name, under the entry) for one entry: its name (a name under it for
    ``*.name``) and, with ``subtree``, names under a subtree."""
    name, scope = candidate.name, candidate.scope
    if scope is Scope.EXACT:
        return [(name, False)]
    under = under_names(name, seed)
    if scope is Scope.BELOW:
        return [(under[0], False), *((n, True) for n in under[1:] if subtree)]
    return [(name, False), *((n, True) for n in under if subtree)]


def skip_reason(candidate: Candidate, client: Address, now: datetime) -> str:
    policy = candidate.policy
    if policy is not None and not policy.info.active(now):
        info = policy.info
        span = []
        if info.effective_from is not None:
            span.append(f"from {when(info.effective_from)}")
        if info.expires is not None:
            span.append(f"until {when(info.expires)}")
        return f"policy {info.id} is not in force at {when(now)} ({', '.join(span)})"
    scopes = [candidate.clients, policy.clients if policy is not None else None]
    for scope in scopes:
        if scope is not None and not scope.applies(client):
            return f"the entry is for other clients ({scope_text(scope)}), not {client}"
    return f"no entry decides it for client {client} now"


def plan_policies(
    config: Config,
    policies: list[PolicyFile],
    listed: Iterable[Iterable[bytes]],
    compiled: CompiledPolicy,
    client: Address,
    now: datetime,
    sample: int | None = None,
    seed: int = 0,
    subtree: bool = True,
) -> Plan:
    """The probes for ``client`` at ``now`` (``compiled`` set to that clock)."""
    plan = Plan(str(client))
    base = list(candidates(policies, listed, compiled))
    plan.total_names = len(base)
    if sample is not None and sample < len(base):
        base = random.Random(seed).sample(base, sample)
        plan.sample = sample

    def applies(scope: ClientScope) -> bool:
        return scope.applies(client)

    exempt: list[tuple[str, Candidate]] = []
    seen: set[str] = set()
    for candidate in base:
        for qname, under in probe_names(candidate, subtree, seed):
            if qname in seen:
                continue
            seen.add(qname)
            verdict, _, _ = compiled.match_client(wire.text_to_name(qname), applies)
            if verdict is None:
                reason = skip_reason(candidate, client, now)
                policy_id = candidate.policy.info.id if candidate.policy else ""
                plan.skipped.append(Skip(qname, candidate.written, policy_id, "blocked", reason))
            elif verdict.action is Action.ALLOW:
                if not under:  # an exemption under a blocked site: the site's owner asked
                    exempt.append((qname, candidate))
            else:
                expect = Blocked(mandate_of(verdict, qname))
                plan.probes.append(
                    Probe(qname, candidate.written, verdict.policy_id, expect, under)
                )
    warning = Signature(frozenset(str(a) for a in (*config.answers.ipv4, *config.answers.ipv6)))
    for qname, written, policy_id, found in shadowed(
        config, policies, compiled, exempt, client, now
    ):
        if found is None:
            reason = "an exemption from nothing: no block covers the name for this client now"
            plan.skipped.append(Skip(qname, written, policy_id, "exempt", reason))
        else:
            plan.probes.append(
                Probe(qname, written, found.mandate.policy, Exempt(found.mandate, warning))
            )
    return plan


def shadowed(
    config: Config,
    policies: list[PolicyFile],
    compiled: object,
    exempt: list[tuple[str, Candidate]],
    client: Address,
    now: datetime,
) -> Iterator[tuple[str, str, str, Blocked | None]]:
    """For each exempted name: the block it is exempted from (the block that would decide
    were the exemptions gone), or None when no block covers it."""
    if not exempt:
        return
    wanted = {qname for qname, _ in exempt}
    for qname, _ in exempt:
        wanted.update(parents(qname))
    found: dict[str, list[Rule]] = {}
    everywhere: list[Rule] = []  # client-IP triggers: they cover every name
    for rule in itertools.chain(all_rules(policies), zone_rules(compiled)):
        if rule.allow:
            continue
        if rule.network is not None:
            everywhere.append(rule)
        elif rule.name in wanted:
            found.setdefault(rule.name, []).append(rule)
    for qname, candidate in exempt:
        covering = [
            rule
            for rule in itertools.chain(
                everywhere, *(found.get(name, ()) for name in (qname, *parents(qname)))
            )
            if rule.covers(qname) and rule.in_force(now) and rule.applies(client)
        ]
        best = ranked(covering)
        policy_id = candidate.policy.info.id if candidate.policy else ""
        yield (
            qname,
            candidate.written,
            policy_id,
            Blocked(_rule_mandate(best[0], config, qname)) if best else None,
        )


def _rule_mandate(rule: Rule, config: Config, qname: str) -> Mandate:
    if rule.verdict is not None:
        return mandate_of(rule.verdict, qname)
    info = rule.policy.info
    return mandate_of_rule(
        rule.action,
        rule.policy_id,
        rule.policy.warning_page or config.answers,
        rule.redirect,
        qname,
        info.ede,
        rule.reference or info.reference or info.id,
    )


# --- registers and allowed lists -----------------------------------------------------------


def register_names(refs: list[ListRef], plan: Plan) -> list[tuple[str, str]]:
    """(name, list file) of every name of the registers, each once, in list order; bad
    lines become notes and skipped entries."""
    out: list[tuple[str, str]] = []
    seen: set[bytes] = set()
    for ref in refs:
        report = ListReport(str(ref.path))
        for raw in read_list(ref, report):
            if raw not in seen:
                seen.add(raw)
                out.append((wire.name_to_text(raw), ref.path.name))
        _note_bad(plan, report, ref.path.name, "listed")
    return out


def _note_bad(plan: Plan, report: ListReport, source: str, kind: str) -> None:
    plan.notes.append(f"{report.path}: {report.names} names, {report.bad} lines skipped")
    for line, message in report.examples:
        plan.skipped.append(Skip(f"line {line}", "", source, kind, f"not read: {message}"))
    if report.bad > len(report.examples):
        more = report.bad - len(report.examples)
        plan.skipped.append(
            Skip("more lines", "", source, kind, f"{more} more lines not read (bad lines)")
        )


def plan_register(
    refs: list[ListRef],
    expect: Listed,
    client: Address,
    sample: int | None = None,
    seed: int = 0,
    subtree: bool = True,
) -> Plan:
    """The probes for a register audited as published."""
    plan = Plan(str(client), source="the register " + ", ".join(str(r.path) for r in refs))
    names = register_names(refs, plan)
    plan.total_names = len(names)
    if sample is not None and sample < len(names):
        names = random.Random(seed).sample(names, sample)
        plan.sample = sample
    seen: set[str] = set()
    for name, source in names:
        for qname, under in probe_names(Candidate(name, name, Scope.SUBTREE), subtree, seed):
            if qname not in seen:
                seen.add(qname)
                plan.probes.append(Probe(qname, name, source, expect, under))
    return plan


def add_allowed(
    plan: Plan,
    paths: list[Path],
    signature: Signature,
    blocked_by: Callable[[str], str],
) -> None:
    """Names that must not be blocked. ``blocked_by(qname)`` says why the policies or the
    register block a name themselves ("" when they do not): such a name is skipped."""
    probed = {p.qname for p in plan.probes}  # an exempted name is checked as such
    seen: set[str] = set()
    for path in paths:
        report = ListReport(str(path))
        for raw in read_domains(path, report):
            qname = wire.name_to_text(raw)
            if qname in seen:
                continue
            seen.add(qname)
            why = blocked_by(qname)
            if why:
                plan.skipped.append(Skip(qname, qname, path.name, "allowed", why))
            elif qname not in probed:
                plan.probes.append(Probe(qname, qname, path.name, NotBlocked(signature)))
        _note_bad(plan, report, path.name, "allowed")


def policy_signature(config: Config, plan: Plan) -> Signature:
    """Every mark of a block the policies give: warning pages, redirects, EDEs (and any
    EDE 15-17: an allowed name labelled blocked is over-blocked, whoever blocked it)."""
    found = Signature(
        frozenset(str(a) for a in (*config.answers.ipv4, *config.answers.ipv6)),
        any_block_ede=True,
    )
    for probe in plan.probes:
        if isinstance(probe.expect, Blocked):
            found = found | probe.expect.mandate.signature
    return found


def policies_block(compiled: CompiledPolicy, client: Address) -> Callable[[str], str]:
    def blocked_by(qname: str) -> str:
        verdict, _, _ = compiled.match_client(
            wire.text_to_name(qname), lambda scope: scope.applies(client)
        )
        if verdict is None or verdict.action is Action.ALLOW:
            return ""
        return f"the policies block it too ({verdict.action.label} by {verdict.policy_id})"

    return blocked_by


def register_blocks(plan: Plan) -> Callable[[str], str]:
    listed = {p.entry for p in plan.probes if p.kind == "listed"}

    def blocked_by(qname: str) -> str:
        for name in (qname, *parents(qname)):
            if name in listed:
                return f"the register lists it ({name})"
        return ""

    return blocked_by


def local_address(server: Endpoint) -> Address:
    """The address this host sends from to reach ``server`` (no packet is sent)."""
    family = socket.AF_INET6 if ":" in server.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.connect((server.host, server.port))
        host = sock.getsockname()[0]
    address = ipaddress.ip_address(host.split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address
