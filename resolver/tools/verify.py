"""`sinkhole verify`: check that a resolver, any resolver, enforces the loaded policies.

Every blocked name of the policies (or a seeded random sample) is asked of the
server under test over UDP and TCP, for A and AAAA, and each answer is compared
with what the policy mandates: the warning page's address, NXDOMAIN, NODATA
(NOERROR with no answer), REFUSED, no answer at all for drop, the redirect's
addresses or CNAME. Exempted names must not get the answer of the block they are
exempted from (they may resolve however the upstream says). A ``*.name`` entry is
checked on a name under it (``verify-probe.name``), any other entry on its name.

Queries go to the given server only, paced (``qps``), each bounded by a timeout,
so the run is bounded in count and time. Results: a summary, JUnit XML (one
testcase per name, type and transport) for CI systems, and the exit status.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import os
import random
import socket
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO
from xml.sax.saxutils import escape, quoteattr

import dns.asyncquery
import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype

from resolver.core import wire
from resolver.core.endpoint import Endpoint
from resolver.core.matcher import CompiledPolicy, Scope
from resolver.core.verdict import Action, Answers, ClientScope, Redirect, Verdict
from resolver.sources.config import Config
from resolver.sources.policy_yaml import PolicyFile
from resolver.sources.rules import Rule, all_rules, parents, pattern, zone_rules
from resolver.tools.explain import ranked

PROBE_LABEL = "verify-probe"
TYPES = ("A", "AAAA")
TRANSPORTS = ("udp", "tcp")
BLOCK_EDE = (15, 16, 17)
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Mandate:
    """The answer a policy mandates for a name: what a compliant resolver sends."""

    action: Action
    policy: str
    ipv4: tuple[str, ...] = ()
    ipv6: tuple[str, ...] = ()
    cname: str = ""  # redirect to a name: lower case, no trailing dot

    def addresses(self, qtype: str) -> tuple[str, ...]:
        return self.ipv4 if qtype == "A" else self.ipv6

    def describe(self, qtype: str, transport: str) -> str:
        action = self.action
        if action is Action.DROP:
            return "no answer (dropped)"
        if action is Action.TCP_ONLY:
            return "TC=1 (retry over TCP)" if transport == "udp" else "any answer (forwarded)"
        if action is Action.NXDOMAIN:
            return "NXDOMAIN"
        if action is Action.REFUSE:
            return "REFUSED"
        if action is Action.REDIRECT and self.cname:
            return f"NOERROR CNAME {self.cname}."
        if action in (Action.WARNING_PAGE, Action.REDIRECT):
            found = self.addresses(qtype)
            if found:
                return f"NOERROR {qtype} {' '.join(sorted(found))}"
        return "NODATA (NOERROR, no answer)"

    def met_by(self, qtype: str, transport: str, answer: Answer) -> bool:
        """Whether ``answer`` is the mandated one."""
        action = self.action
        if action is Action.DROP:
            return answer.timeout
        if action is Action.TCP_ONLY:
            if transport == "udp":
                return answer.message is not None and bool(answer.message.flags & dns.flags.TC)
            return answer.message is not None
        message = answer.message
        if message is None:
            return False
        rcode = message.rcode()
        if action is Action.NXDOMAIN:
            return rcode == dns.rcode.NXDOMAIN
        if action is Action.REFUSE:
            return rcode == dns.rcode.REFUSED
        if rcode != dns.rcode.NOERROR:
            return False
        if action is Action.REDIRECT and self.cname:
            return any(
                rrset.rdtype == dns.rdatatype.CNAME
                and any(str(rd.target).rstrip(".").lower() == self.cname for rd in rrset)
                for rrset in message.answer
            )
        if action in (Action.WARNING_PAGE, Action.REDIRECT) and self.addresses(qtype):
            return answer.addresses(qtype) == set(self.addresses(qtype))
        return not any(rrset.rdtype == dns.rdatatype.from_text(qtype) for rrset in message.answer)

    @property
    def negative(self) -> bool:
        """A negative answer: an upstream may give the same for a name that does not exist."""
        return self.action in (Action.NXDOMAIN, Action.NODATA) or (
            self.action is Action.WARNING_PAGE and not (self.ipv4 and self.ipv6)
        )


def mandate_of(verdict: Verdict, qname: str) -> Mandate:
    """What ``verdict`` mandates for ``qname``."""
    return _mandate(verdict.action, verdict.policy_id, verdict.answers, verdict.redirect, qname)


def mandate_of_rule(rule: Rule, answers: Answers, qname: str) -> Mandate:
    if rule.verdict is not None:
        return mandate_of(rule.verdict, qname)
    own = rule.policy.warning_page
    return _mandate(rule.action, rule.policy_id, own or answers, rule.redirect, qname)


def _mandate(
    action: Action, policy: str, answers: Answers, redirect: Redirect | None, qname: str
) -> Mandate:
    if action is Action.REDIRECT and redirect is not None:
        ipv4 = [str(a) for a in redirect.ipv4]
        ipv6 = [str(a) for a in redirect.ipv6]
        for rtype, rdata in redirect.records:  # an RPZ zone's local data
            if rtype == wire.TYPE_A and len(rdata) == 4:
                ipv4.append(str(ipaddress.IPv4Address(rdata)))
            elif rtype == wire.TYPE_AAAA and len(rdata) == 16:
                ipv6.append(str(ipaddress.IPv6Address(rdata)))
        target = redirect.target()
        cname = ""
        if target.startswith(b"\x01*"):  # a per-query rewrite: the query name, then the target
            cname = qname + "." + wire.name_to_text(target[2:])
        elif target:
            cname = wire.name_to_text(target)
        return Mandate(action, policy, tuple(ipv4), tuple(ipv6), cname.lower())
    return Mandate(
        action, policy, tuple(str(a) for a in answers.ipv4), tuple(str(a) for a in answers.ipv6)
    )


@dataclass(frozen=True)
class Probe:
    """One name to ask, the entry it checks, and what must (blocked) or must not (exempt)
    come back."""

    qname: str
    entry: str  # the entry as written
    mandate: Mandate
    exempt: bool = False

    @property
    def policy(self) -> str:
        return self.mandate.policy

    def expected(self, qtype: str, transport: str) -> str:
        said = self.mandate.describe(qtype, transport)
        if not self.exempt:
            return said
        if self.mandate.negative:
            said += "; a name that does not exist upstream gets the same"
        return f"not the block answer ({said})"

    def compliant(self, qtype: str, transport: str, answer: Answer) -> bool:
        met = self.mandate.met_by(qtype, transport, answer)
        return not met if self.exempt else met


@dataclass
class Answer:
    """What came back: a message, or a timeout, or an error."""

    message: dns.message.Message | None = None
    timeout: bool = False
    error: str = ""
    seconds: float = 0.0

    def addresses(self, qtype: str) -> set[str]:
        if self.message is None:
            return set()
        rdtype = dns.rdatatype.from_text(qtype)
        return {
            rd.address for rrset in self.message.answer if rrset.rdtype == rdtype for rd in rrset
        }

    def describe(self) -> str:
        if self.timeout:
            return "no answer (timeout)"
        if self.message is None:
            return f"error: {self.error}"
        message = self.message
        parts = [dns.rcode.to_text(message.rcode())]
        if message.flags & dns.flags.TC:
            parts.append("TC=1")
        records = [
            f"{dns.rdatatype.to_text(rrset.rdtype)} {rd.to_text()}"
            for rrset in message.answer
            for rd in rrset
        ]
        parts.append(", ".join(records) if records else "no answer")
        parts.extend(
            f"(EDE {int(option.code)}: {option.text or ''})"
            for option in message.options
            if isinstance(option, dns.edns.EDEOption)
        )
        return " ".join(parts)


@dataclass
class Violation:
    probe: Probe
    qtype: str
    transport: str
    actual: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.probe.qname,
            "type": self.qtype,
            "transport": self.transport,
            "entry": self.probe.entry,
            "policy": self.probe.policy,
            "kind": "exempt" if self.probe.exempt else "blocked",
            "expected": self.probe.expected(self.qtype, self.transport),
            "actual": self.actual,
        }


@dataclass
class Report:
    server: str
    client: str
    probes: int = 0
    blocked: int = 0
    exempt: int = 0
    skipped: int = 0  # names no entry decides for this client now (dates, client scopes)
    unchecked_exempt: int = 0  # exemptions from nothing: no block covers them
    checked: int = 0
    compliant: int = 0
    violations: list[Violation] = field(default_factory=list)
    seconds: float = 0.0
    sample: int | None = None
    total_names: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "server": self.server,
            "client": self.client,
            "names": self.probes,
            "names_in_policies": self.total_names,
            "sample": self.sample,
            "blocked_names": self.blocked,
            "exempt_names": self.exempt,
            "skipped_names": self.skipped,
            "unchecked_exemptions": self.unchecked_exempt,
            "checked": self.checked,
            "compliant": self.compliant,
            "violations": [v.as_dict() for v in self.violations],
            "seconds": round(self.seconds, 3),
            "qps": round(self.checked / self.seconds, 1) if self.seconds else 0.0,
            "ok": not self.violations,
        }


# --- what to ask ----------------------------------------------------------------------------


def probe_name(name: str, scope: Scope) -> str:
    return f"{PROBE_LABEL}.{name}" if scope is Scope.BELOW else name


def candidates(
    policies: list[PolicyFile], listed: Iterable[Iterable[bytes]], compiled: Any = None
) -> Iterator[tuple[str, str]]:
    """(query name, entry as written) for every entry and list name, and every name trigger
    of the RPZ zones of ``compiled``, each name once."""
    seen: set[str] = set()
    for policy in policies:
        for entry in policy.entries:
            qname = probe_name(entry.name, entry.scope)
            if qname not in seen:
                seen.add(qname)
                yield qname, pattern(entry.name, entry.scope)
    for names in listed:
        for name in sorted(names):  # a set: sorted, so a seeded sample is reproducible
            qname = wire.name_to_text(name)
            if qname not in seen:
                seen.add(qname)
                yield qname, qname
    zone_names = [
        (probe_name(rule.name, rule.scope), rule.pattern)
        for rule in zone_rules(compiled)
        if rule.network is None
    ]
    for qname, written in sorted(zone_names):
        if qname not in seen:
            seen.add(qname)
            yield qname, written


def plan(
    config: Config,
    policies: list[PolicyFile],
    listed: Iterable[Iterable[bytes]],
    compiled: CompiledPolicy,
    client: Address,
    now: datetime,
    sample: int | None = None,
    seed: int = 0,
) -> tuple[list[Probe], Report]:
    """The probes for ``client`` at ``now`` (``compiled`` set to that clock)."""
    report = Report("", str(client))
    names = list(candidates(policies, listed, compiled))
    report.total_names = len(names)
    if sample is not None and sample < len(names):
        names = random.Random(seed).sample(names, sample)
        report.sample = sample

    def applies(scope: ClientScope) -> bool:
        return scope.applies(client)

    probes: list[Probe] = []
    exempt: list[tuple[str, str]] = []
    for qname, entry in names:
        verdict, _, _ = compiled.match_client(wire.text_to_name(qname), applies)
        if verdict is None:
            report.skipped += 1
        elif verdict.action is Action.ALLOW:
            exempt.append((qname, entry))
        else:
            probes.append(Probe(qname, entry, mandate_of(verdict, qname)))
    report.blocked = len(probes)
    for qname, entry, mandate in shadowed(config, policies, compiled, exempt, client, now):
        if mandate is None:
            report.unchecked_exempt += 1
        else:
            probes.append(Probe(qname, entry, mandate, exempt=True))
            report.exempt += 1
    report.probes = len(probes)
    return probes, report


def shadowed(
    config: Config,
    policies: list[PolicyFile],
    compiled: Any,
    exempt: list[tuple[str, str]],
    client: Address,
    now: datetime,
) -> Iterator[tuple[str, str, Mandate | None]]:
    """For each exempted name, the answer of the block it is exempted from (the block that
    would decide were the exemptions gone), or None when no block covers it."""
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
    for qname, entry in exempt:
        covering = [
            rule
            for rule in itertools.chain(
                everywhere, *(found.get(name, ()) for name in (qname, *parents(qname)))
            )
            if rule.covers(qname) and rule.in_force(now) and rule.applies(client)
        ]
        best = ranked(covering)
        mandate = mandate_of_rule(best[0], config.answers, qname) if best else None
        yield qname, entry, mandate


# --- asking ---------------------------------------------------------------------------------


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


async def ask(
    server: Endpoint, qname: str, qtype: str, transport: str, timeout: float, tries: int
) -> Answer:
    """One question, with up to ``tries`` attempts when no answer comes (UDP loss)."""
    query = dns.message.make_query(qname, qtype, use_edns=0, payload=1232)
    answer = Answer()
    for _ in range(tries):
        started = time.monotonic()
        try:
            if transport == "udp":
                message = await dns.asyncquery.udp(
                    query, server.host, timeout=timeout, port=server.port, ignore_unexpected=True
                )
            else:
                message = await dns.asyncquery.tcp(
                    query, server.host, timeout=timeout, port=server.port
                )
            return Answer(message, seconds=time.monotonic() - started)
        except dns.exception.Timeout:
            answer = Answer(timeout=True, seconds=time.monotonic() - started)
        except (OSError, EOFError, dns.exception.DNSException) as exc:
            return Answer(error=str(exc) or type(exc).__name__, seconds=time.monotonic() - started)
    return answer


class JUnit:
    """JUnit XML written as results come in (a temporary file), then wrapped in its suite."""

    def __init__(self, path: Path) -> None:
        self.path = path
        fd, name = tempfile.mkstemp(prefix=".verify-", dir=path.parent or Path("."))
        self._temp = Path(name)
        self._out: TextIO = os.fdopen(fd, "w", encoding="utf-8")
        self.tests = 0
        self.failures = 0

    def add(
        self, probe: Probe, qtype: str, transport: str, seconds: float, failure: str | None
    ) -> None:
        self.tests += 1
        kind = "exempt" if probe.exempt else "blocked"
        self._out.write(
            f"    <testcase classname={quoteattr(f'verify.{probe.policy}.{kind}')} "
            f"name={quoteattr(f'{probe.qname} {qtype} {transport}')} "
            f'time="{seconds:.4f}"'
        )
        if failure is None:
            self._out.write("/>\n")
            return
        self.failures += 1
        expected = probe.expected(qtype, transport)
        message = quoteattr(f"expected {expected}, got {failure}")
        self._out.write(
            f'>\n      <failure type="violation" message={message}>'
            f"{escape(f'entry: {probe.entry} (policy {probe.policy})')}\n"
            f"{escape(f'expected: {expected}')}\n{escape(f'actual: {failure}')}</failure>\n"
            "    </testcase>\n"
        )

    def close(self, suite: str, seconds: float) -> None:
        self._out.close()
        with open(self.path, "w", encoding="utf-8") as out:
            out.write('<?xml version="1.0" encoding="UTF-8"?>\n')
            out.write(
                f'<testsuites tests="{self.tests}" failures="{self.failures}" '
                f'errors="0" time="{seconds:.3f}">\n'
                f'  <testsuite name={quoteattr(suite)} tests="{self.tests}" '
                f'failures="{self.failures}" errors="0" skipped="0" time="{seconds:.3f}">\n'
            )
            with open(self._temp, encoding="utf-8") as cases:
                while chunk := cases.read(1 << 20):
                    out.write(chunk)
            out.write("  </testsuite>\n</testsuites>\n")
        self._temp.unlink()

    def abandon(self) -> None:
        self._out.close()
        self._temp.unlink(missing_ok=True)


class Progress:
    """A one-line counter on stderr, redrawn at most twice a second."""

    def __init__(self, total: int, enabled: bool, stream: TextIO = sys.stderr) -> None:
        self.total = total
        self.enabled = enabled
        self.stream = stream
        self.started = time.monotonic()
        self._shown = 0.0

    def update(self, done: int, violations: int, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._shown < 0.5:
            return
        self._shown = now
        rate = done / (now - self.started) if now > self.started else 0.0
        percent = 100 * done / self.total if self.total else 100.0
        self.stream.write(
            f"\rverify: {done}/{self.total} checks ({percent:.0f}%), "
            f"{violations} violations, {rate:.0f} q/s "
        )
        self.stream.flush()

    def finish(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()


async def run(
    server: Endpoint,
    probes: list[Probe],
    report: Report,
    qps: float,
    timeout: float,
    tries: int = 2,
    concurrency: int = 256,
    junit: JUnit | None = None,
    progress: Progress | None = None,
    types: tuple[str, ...] = TYPES,
    transports: tuple[str, ...] = TRANSPORTS,
) -> Report:
    """Ask every probe of every type over every transport, paced at ``qps``."""
    jobs = [(p, t, x) for p in probes for t in types for x in transports]
    limit = asyncio.Semaphore(concurrency)
    loop = asyncio.get_running_loop()
    started = loop.time()
    done = 0

    async def one(probe: Probe, qtype: str, transport: str) -> None:
        nonlocal done
        try:
            tries_here = 1 if probe.mandate.action is Action.DROP and not probe.exempt else tries
            answer = await ask(server, probe.qname, qtype, transport, timeout, tries_here)
            report.checked += 1
            failure = None
            if probe.compliant(qtype, transport, answer):
                report.compliant += 1
            else:
                failure = answer.describe()
                report.violations.append(Violation(probe, qtype, transport, failure))
            if junit is not None:
                junit.add(probe, qtype, transport, answer.seconds, failure)
            done += 1
            if progress is not None:
                progress.update(done, len(report.violations))
        finally:
            limit.release()

    tasks: set[asyncio.Task[None]] = set()
    for index, (probe, qtype, transport) in enumerate(jobs):
        delay = started + index / qps - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        await limit.acquire()
        task = asyncio.ensure_future(one(probe, qtype, transport))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.gather(*tasks)
    report.seconds = loop.time() - started
    if progress is not None:
        progress.update(done, len(report.violations), force=True)
        progress.finish()
    return report


# --- text output ---------------------------------------------------------------------------


def render_text(report: Report, shown: int | None = 100) -> Iterator[str]:
    rate = report.checked / report.seconds if report.seconds else 0.0
    scope = (
        f"a sample of {report.probes} of {report.total_names} names"
        if report.sample is not None
        else f"{report.probes} names"
    )
    yield (
        f"verify {report.server} (as client {report.client}): {scope} "
        f"({report.blocked} blocked, {report.exempt} exempted), A and AAAA over UDP and TCP"
    )
    yield f"checked: {report.checked} in {report.seconds:.1f} s ({rate:.0f} queries/s)"
    yield f"compliant: {report.compliant}"
    yield f"violations: {len(report.violations)}"
    violations = report.violations if shown is None else report.violations[:shown]
    for v in violations:
        yield (
            f"  {v.probe.qname} {v.qtype} {v.transport}: expected "
            f"{v.probe.expected(v.qtype, v.transport)} "
            f"({'exemption of' if v.probe.exempt else 'entry'} {v.probe.entry}, policy "
            f"{v.probe.policy}), got {v.actual}"
        )
    if shown is not None and len(report.violations) > shown:
        yield f"  ... and {len(report.violations) - shown} more (--json or --junit list them all)"
    if report.skipped:
        yield (
            f"not checked: {report.skipped} names no entry decides for this client now "
            "(policies not in force, entries for other clients)"
        )
    if report.unchecked_exempt:
        yield f"not checked: {report.unchecked_exempt} exemptions that no block covers"
    yield "result: " + ("compliant" if not report.violations else "NOT compliant")
