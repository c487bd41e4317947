"""What `sinkhole verify` found, per server: counts, violations, checks it could not make,
how each answer was judged; as text, JSON and JUnit XML; and the exit status.

Exit status: 0 every server is compliant; 1 a violation was found; 2 a server could not
be checked (no names to check, the first 20 checks all unanswered, or more than
``max_unanswered`` percent of the checks unanswered) and no violation was found.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO
from xml.sax.saxutils import escape, quoteattr

from resolver.tools.dnsanswer import Outcome
from resolver.tools.verify_judge import ERROR, OK, VIOLATION, Judgement
from resolver.tools.verify_plan import Plan, Probe, Skip

FIRST = 20  # a server whose first FIRST checks all fail is given up on
KEEP = 100_000  # violations and errors kept for the JSON report
COMPLIANT, NOT_COMPLIANT, UNCHECKED = "compliant", "NOT compliant", "could not check"
EXIT = {COMPLIANT: 0, NOT_COMPLIANT: 1, UNCHECKED: 2}


@dataclass
class Check:
    probe: Probe
    qtype: str
    transport: str
    actual: str
    how: str

    def as_dict(self) -> dict[str, Any]:
        probe = self.probe
        return {
            "name": probe.qname,
            "type": self.qtype,
            "transport": self.transport,
            "entry": probe.entry,
            "under_entry": probe.under,
            "policy": probe.policy,
            "kind": probe.kind,
            "expected": probe.expect.expected(self.qtype, self.transport),
            "actual": self.actual,
            "judged": self.how,
        }


@dataclass
class ServerReport:
    server: str
    plan: Plan
    checks_planned: int = 0
    max_unanswered: float = 10.0  # percent
    checked: int = 0
    compliant: int = 0
    violation_count: int = 0
    error_count: int = 0
    violations: list[Check] = field(default_factory=list)
    errors: list[Check] = field(default_factory=list)
    judged: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    by_name: dict[str, tuple[Probe, Counter[str]]] = field(default_factory=dict)  # exempt, allowed
    not_asked: int = 0
    given_up: str = ""
    seconds: float = 0.0

    def record(
        self, probe: Probe, qtype: str, transport: str, outcome: Outcome, j: Judgement
    ) -> None:
        self.checked += 1
        self.judged[(probe.kind, j.status, j.how)] += 1
        if probe.kind in ("exempt", "allowed"):
            self.by_name.setdefault(probe.qname, (probe, Counter()))[1][j.how] += 1
        if j.status == OK:
            self.compliant += 1
            return
        check = Check(probe, qtype, transport, outcome.describe(), j.how)
        if j.status == VIOLATION:
            self.violation_count += 1
            if len(self.violations) < KEEP:
                self.violations.append(check)
            return
        self.error_count += 1
        if len(self.errors) < KEEP:
            self.errors.append(check)
        if self.checked == FIRST and self.error_count == FIRST:
            self.given_up = (
                f"the first {FIRST} checks all failed ({self.errors[0].actual}): "
                "the server is not answering us"
            )

    @property
    def unanswered_share(self) -> float:
        return 100.0 * self.error_count / self.checked if self.checked else 0.0

    @property
    def result(self) -> str:
        if self.violation_count:
            return NOT_COMPLIANT
        if self.given_up or not self.checked or self.unanswered_share > self.max_unanswered:
            return UNCHECKED
        return COMPLIANT

    def why_unchecked(self) -> str:
        if self.given_up:
            return self.given_up
        if not self.checks_planned:
            return "no names to check"
        if self.unanswered_share > self.max_unanswered:
            return (
                f"{self.error_count} of {self.checked} checks ({self.unanswered_share:.0f}%) "
                f"could not be made, more than {self.max_unanswered:g}%"
            )
        return ""

    def as_dict(self) -> dict[str, Any]:
        plan = self.plan
        return {
            "server": self.server,
            "client": plan.client,
            "source": plan.source,
            "result": self.result,
            "ok": self.result == COMPLIANT,
            "why_not_checked": self.why_unchecked() if self.result == UNCHECKED else "",
            "names": len(plan.probes),
            "names_in_source": plan.total_names,
            "sample": plan.sample,
            "blocked_names": plan.count("blocked", under=False),
            "names_under_blocked": plan.count("blocked", under=True)
            + plan.count("listed", under=True),
            "exempt_names": plan.count("exempt"),
            "allowed_names": plan.count("allowed"),
            "listed_names": plan.count("listed", under=False),
            "skipped_names": len(plan.skipped),
            "skipped": [_skip_dict(s) for s in plan.skipped],
            "notes": plan.notes,
            "checks": self.checks_planned,
            "checked": self.checked,
            "compliant": self.compliant,
            "violation_count": self.violation_count,
            "violations": [v.as_dict() for v in self.violations],
            "could_not_check": self.error_count,
            "errors": [e.as_dict() for e in self.errors],
            "not_asked": self.not_asked,
            "judged": [
                {"kind": kind, "status": status, "how": how, "checks": count}
                for (kind, status, how), count in sorted(self.judged.items())
            ],
            "names_judged": [
                {
                    "name": name,
                    "kind": probe.kind,
                    "policy": probe.policy,
                    "expected": probe.expect.expected("A", "udp"),
                    "judged": dict(found),
                }
                for name, (probe, found) in self.by_name.items()
            ],
            "seconds": round(self.seconds, 3),
            "qps": round(self.checked / self.seconds, 1) if self.seconds else 0.0,
        }


def _skip_dict(skip: Skip) -> dict[str, str]:
    return {
        "name": skip.qname,
        "entry": skip.entry,
        "policy": skip.policy,
        "kind": skip.kind,
        "reason": skip.reason,
    }


def overall(reports: list[ServerReport]) -> str:
    results = {r.result for r in reports}
    if NOT_COMPLIANT in results:
        return NOT_COMPLIANT
    if UNCHECKED in results or not reports:
        return UNCHECKED
    return COMPLIANT


def as_json(reports: list[ServerReport]) -> dict[str, Any]:
    result = overall(reports)
    return {
        "result": result,
        "ok": result == COMPLIANT,
        "exit_status": EXIT[result],
        "servers": [r.as_dict() for r in reports],
    }


# --- JUnit XML ------------------------------------------------------------------------------


class Suite:
    """One server's testcases, written to a temporary file as results come in."""

    def __init__(self, directory: Path, name: str) -> None:
        self.name = name
        fd, path = tempfile.mkstemp(prefix=".verify-", suffix=".xml", dir=directory)
        self.path = Path(path)
        self.out: TextIO = os.fdopen(fd, "w", encoding="utf-8")
        self.counts = Counter[str]()
        self.seconds = 0.0

    def _case(self, classname: str, name: str, seconds: float, body: str) -> None:
        self.counts["tests"] += 1
        self.out.write(
            f"    <testcase classname={quoteattr(classname)} name={quoteattr(name)} "
            f'time="{seconds:.4f}">\n{body}    </testcase>\n'
        )

    def check(
        self, probe: Probe, qtype: str, transport: str, outcome: Outcome, judgement: Judgement
    ) -> None:
        expected = probe.expect.expected(qtype, transport)
        actual = outcome.describe()
        under = f" (a name under entry {probe.entry})" if probe.under else ""
        details = escape(
            f"entry: {probe.entry}{under} (policy {probe.policy})\n"
            f"expected: {expected}\nactual: {actual}\njudged: {judgement.how}"
        )
        if judgement.status == OK:
            body = f"      <system-out>{details}</system-out>\n"
        elif judgement.status == VIOLATION:
            self.counts["failures"] += 1
            message = quoteattr(f"expected {expected}, got {actual}")
            body = f'      <failure type="violation" message={message}>{details}</failure>\n'
        else:
            self.counts["errors"] += 1
            message = quoteattr(f"{judgement.how}: {actual}")
            body = f'      <error type="could-not-check" message={message}>{details}</error>\n'
        self._case(
            f"verify.{probe.policy}.{probe.kind}",
            f"{probe.qname} {qtype} {transport}",
            outcome.seconds,
            body,
        )

    def skip(self, classname: str, name: str, reason: str) -> None:
        self.counts["skipped"] += 1
        self._case(classname, name, 0.0, f"      <skipped message={quoteattr(reason)}/>\n")

    def skip_name(self, skip: Skip) -> None:
        self.skip(f"verify.{skip.policy or 'zone'}.{skip.kind}", skip.qname, skip.reason)

    def not_asked(self, probe: Probe, qtype: str, transport: str, reason: str) -> None:
        self.skip(
            f"verify.{probe.policy}.{probe.kind}", f"{probe.qname} {qtype} {transport}", reason
        )


class JUnit:
    """JUnit XML: one testsuite per server, one testcase per name, type and transport (and
    one per name not checked, skipped with the reason); written when every server is done."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.directory = path.parent if str(path.parent) else Path(".")
        self.suites: list[Suite] = []

    def suite(self, name: str) -> Suite:
        suite = Suite(self.directory, name)
        self.suites.append(suite)
        return suite

    def close(self) -> None:
        total = Counter[str]()
        for suite in self.suites:
            suite.out.close()
            total.update(suite.counts)
        seconds = sum(s.seconds for s in self.suites)
        with open(self.path, "w", encoding="utf-8") as out:
            out.write('<?xml version="1.0" encoding="UTF-8"?>\n')
            out.write(f'<testsuites {_counts(total)} time="{seconds:.3f}">\n')
            for suite in self.suites:
                out.write(
                    f"  <testsuite name={quoteattr(suite.name)} {_counts(suite.counts)} "
                    f'skipped="{suite.counts["skipped"]}" time="{suite.seconds:.3f}">\n'
                )
                with open(suite.path, encoding="utf-8") as cases:
                    while chunk := cases.read(1 << 20):
                        out.write(chunk)
                out.write("  </testsuite>\n")
            out.write("</testsuites>\n")
        self.abandon()

    def abandon(self) -> None:
        for suite in self.suites:
            suite.out.close()
            suite.path.unlink(missing_ok=True)


def _counts(counts: Counter[str]) -> str:
    return f'tests="{counts["tests"]}" failures="{counts["failures"]}" errors="{counts["errors"]}"'


# --- progress -------------------------------------------------------------------------------


class Progress:
    """A progress bar on stderr, redrawn at most five times a second (on a terminal)."""

    WIDTH = 24

    def __init__(self, total: int, enabled: bool, stream: TextIO = sys.stderr) -> None:
        self.total = total
        self.enabled = enabled
        self.stream = stream
        self.started = time.monotonic()
        self._shown = 0.0
        self.done = self.violations = self.errors = 0

    def add(self, judgement: Judgement) -> None:
        self.done += 1
        if judgement.status == VIOLATION:
            self.violations += 1
        elif judgement.status == ERROR:
            self.errors += 1
        if self.enabled:
            self.show()

    def show(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._shown < 0.2:
            return
        self._shown = now
        elapsed = now - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        share = self.done / self.total if self.total else 1.0
        filled = int(self.WIDTH * share)
        left = (self.total - self.done) / rate if rate > 0 else 0.0
        self.stream.write(
            f"\r[{'#' * filled}{'.' * (self.WIDTH - filled)}] {100 * share:3.0f}% "
            f"{self.done}/{self.total} checks, {self.violations} violations, "
            f"{self.errors} unanswered, {rate:.0f} q/s, {left:.0f} s left "
        )
        self.stream.flush()

    def finish(self) -> None:
        if self.enabled:
            self.show(force=True)
            self.stream.write("\n")
            self.stream.flush()


# --- text -----------------------------------------------------------------------------------


def _names(plan: Plan) -> str:
    scope = (
        f"a sample of {plan.sample} of {plan.total_names} names"
        if plan.sample is not None
        else f"{plan.total_names} names"
    )
    parts = []
    for kind, label in (
        ("blocked", "blocked"),
        ("exempt", "exempted"),
        ("listed", "listed"),
        ("allowed", "allowed"),
    ):
        count = plan.count(kind, under=False)
        if count:
            parts.append(f"{count} {label}")
    under = plan.count("blocked", under=True) + plan.count("listed", under=True)
    text = f"{scope} of {plan.source} ({', '.join(parts) or 'none to check'})"
    if under:
        text += f" and {under} names under blocked sites"
    return text


def render_server(report: ServerReport, types: str, shown: int = 100) -> Iterator[str]:
    plan = report.plan
    rate = report.checked / report.seconds if report.seconds else 0.0
    yield f"verify {report.server} (as client {plan.client}): {_names(plan)}, {types}"
    yield f"checked: {report.checked} in {report.seconds:.1f} s ({rate:.0f} queries/s)"
    yield f"compliant: {report.compliant}"
    yield f"violations: {report.violation_count}"
    for v in report.violations[:shown]:
        yield f"  {_check_line(v)}"
    if report.violation_count > shown:
        yield f"  ... and {report.violation_count - shown} more (--json or --junit list them all)"
    yield f"could not check: {report.error_count}"
    few = min(shown, 20)
    for e in report.errors[:few]:
        yield f"  {e.probe.qname} {e.qtype} {e.transport}: {e.how}: {e.actual}"
    if report.error_count > few:
        yield f"  ... and {report.error_count - few} more"
    if report.not_asked:
        yield f"not asked: {report.not_asked} checks ({report.given_up})"
    yield "judged:"
    for (kind, status, how), count in sorted(report.judged.items()):
        mark = {OK: "ok", VIOLATION: "VIOLATION", ERROR: "unchecked"}[status]
        yield f"  {kind}, {mark}, {count} checks: {how}"
    if report.by_name:
        yield "exempted and allowed names:"
    for name, (probe, found) in list(report.by_name.items())[:shown]:
        hows = "; ".join(f"{how} ({n} checks)" for how, n in found.items())
        yield f"  {name} ({probe.kind}, {probe.policy}): {hows}"
        if probe.kind == "exempt":
            yield f"    looked for: {probe.expect.expected('A', 'udp')}"
    for note in plan.notes:
        yield f"list: {note}"
    if plan.skipped:
        yield f"not checked: {len(plan.skipped)} names"
        for skip in plan.skipped[:shown]:
            yield f"  {skip.qname}: {skip.reason}"
        if len(plan.skipped) > shown:
            yield f"  ... and {len(plan.skipped) - shown} more (--json or --junit)"
    result = report.result
    why = f" ({report.why_unchecked()})" if result == UNCHECKED else ""
    yield f"result: {result}{why}"


def _check_line(v: Check) -> str:
    probe = v.probe
    what = {"exempt": "exemption", "allowed": "allowed name", "listed": "listed"}.get(
        probe.kind, "entry"
    )
    under = "a name under " if probe.under else ""
    return (
        f"{probe.qname} {v.qtype} {v.transport}: expected "
        f"{probe.expect.expected(v.qtype, v.transport)} ({under}{what} {probe.entry}, policy "
        f"{probe.policy}), got {v.actual}"
    )


def render_summary(reports: list[ServerReport]) -> Iterator[str]:
    yield f"servers: {len(reports)}"
    width = max(len(r.server) for r in reports)
    for r in reports:
        yield (
            f"  {r.server:<{width}}  {r.result}: {r.checked} checked, "
            f"{r.violation_count} violations, {r.error_count} could not check"
        )
    result = overall(reports)
    failing = sum(1 for r in reports if r.result != COMPLIANT)
    yield f"result: {result}" + (f" ({failing} of {len(reports)} servers)" if failing else "")
