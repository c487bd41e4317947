"""`sinkhole verify` auditing one CSV register (``registers/blocked-sites.csv``) against
sinkhole and against Unbound (Debian) enforcing the RPZ zone `sinkhole export-rpz` wrote
for the same register: each alone, and the two as one fleet.

Unbound listens on a free loopback port with the zone as an ``rpz:`` zonefile and
forwards every other name to the fake upstream on loopback (``forward-first: no``: never
the root servers), so a name the zone misses resolves as it would elsewhere and no query
leaves the machine. The two enforce the register in their own ways: sinkhole labels its
answers with an EDE and puts an SOA in the authority section of NXDOMAIN and NODATA;
Unbound sets AA and does neither. A correct enforcer passes either way.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dns.edns
import dns.flags
import dns.message
import dns.query
import dns.rcode
import pytest
from interop.test_unbound_rpz import Unbound
from support.procs import (
    REPO,
    WARNING_IPV4,
    WARNING_IPV6,
    WARNING_TTL,
    Sinkhole,
    SinkholeFactory,
    wait_until,
)

from blackbox.test_verify import junit, verify, where
from resolver.tools.verify_plan import under_names

pytestmark = [pytest.mark.blackbox, pytest.mark.system("unbound", "unbound-checkconf")]

REGISTER = Path(__file__).parent / "registers" / "blocked-sites.csv"
CSV = ("--format", "csv", "--delimiter", ";", "--column", "domain")
LISTED = {
    "casino.example",
    "mirror1.pirate.example",
    "mirror2.pirate.example",
    "drugs.example",  # listed as *.drugs.example
    "fake-diploma.example",  # listed as Fake-Diploma.example.
    "xn--80aodfsg.example",  # казино.example
}
CHECKS = len(LISTED) * 3 * 4  # each name, www. and a random name under it; A, AAAA; UDP, TCP
PAGE = f"warning-page={WARNING_IPV4},{WARNING_IPV6}"
EXPECT = {
    "warning-page": ("--expect", PAGE),
    "nxdomain": ("--expect", "nxdomain"),
    "nodata": ("--expect", "nodata"),
}
LATE = "newly-listed.example"  # added to the register after the export


def policy(register: Path, action: str) -> str:
    return (
        f"id: register\naction: {action}\nlists:\n  - file: {register}\n    format: csv\n"
        '    delimiter: ";"\n    column: domain\n'
    )


def export_rpz(config: Path, zonefile: Path) -> Path:
    """`sinkhole export-rpz` of ``config``, written to ``zonefile``."""
    result = subprocess.run(
        [sys.executable, "-m", "resolver", "export-rpz", "--config", str(config)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    zonefile.write_text(result.stdout)
    return zonefile


@dataclass
class Fleet:
    """sinkhole reading the register through a policy, and Unbound loading its export."""

    sinkhole: Sinkhole
    unbound: Unbound
    action: str
    register: Path  # the copy sinkhole reads, and the auditor audits
    zonefile: Path

    @property
    def at_sinkhole(self) -> str:
        return where(self.sinkhole)

    @property
    def at_unbound(self) -> str:
        return f"127.0.0.1:{self.unbound.port}"

    def audit(
        self, *servers: str, expect: tuple[str, ...], junit_file: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        """``sinkhole verify --list`` of the register against ``servers``."""
        extra = ("--junit", str(junit_file)) if junit_file is not None else ()
        return verify(list(servers), None, "--list", str(self.register), *CSV, *expect, *extra)


@pytest.fixture
def fleet(
    sinkhole_factory: SinkholeFactory, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Fleet]:
    """The register enforced with the action ``request.param`` by both resolvers."""
    register = tmp_path / "register.csv"
    shutil.copyfile(REGISTER, register)
    server = sinkhole_factory({"register.yaml": policy(register, request.param)})
    assert server.config is not None
    zonefile = export_rpz(server.config, tmp_path / "register.rpz")
    workdir = tmp_path / "unbound"
    workdir.mkdir()
    unbound = Unbound(workdir, zonefile, sinkhole_factory.upstream)
    try:
        yield Fleet(server, unbound, request.param, register, zonefile)
    finally:
        unbound.stop()


def ask(at: str, name: str, qtype: str = "A") -> dns.message.Message:
    host, port = at.rsplit(":", 1)
    query = dns.message.make_query(name, qtype, use_edns=0)
    return dns.query.udp(query, host, port=int(port), timeout=3.0)


def edes(message: dns.message.Message) -> list[int]:
    return [o.code for o in message.options if isinstance(o, dns.edns.EDEOption)]


def summary(stdout: str) -> list[str]:
    lines = stdout.splitlines()
    return lines[lines.index("servers: 2") :]


def server_line(fleet: Fleet, at: str, result: str, checked: int, violations: int) -> str:
    width = max(len(fleet.at_sinkhole), len(fleet.at_unbound))
    return (
        f"  {at:<{width}}  {result}: {checked} checked, {violations} violations, 0 could not check"
    )


@pytest.mark.parametrize("fleet", ["warning-page", "nxdomain", "nodata"], indirect=True)
def test_both_enforce_the_register(fleet: Fleet, tmp_path: Path) -> None:
    action = fleet.action
    expect = EXPECT[action]
    # The same verdict in two forms: sinkhole labels it, Unbound answers authoritatively.
    ours, theirs = (
        ask(fleet.at_sinkhole, "www.casino.example"),
        ask(fleet.at_unbound, "www.casino.example"),
    )
    assert ours.rcode() == theirs.rcode()
    assert [r.to_text() for r in ours.answer] == [r.to_text() for r in theirs.answer]
    assert edes(ours) == [15] and edes(theirs) == []
    assert not ours.flags & dns.flags.AA and theirs.flags & dns.flags.AA
    if action != "warning-page":
        assert ours.authority and not theirs.authority  # sinkhole's SOA: negative caching

    # Unbound alone: every listed name and the names under it, as the register says.
    report = tmp_path / "unbound.xml"
    alone = fleet.audit(fleet.at_unbound, expect=expect, junit_file=report)
    assert alone.returncode == 0, alone.stdout + alone.stderr
    assert f"compliant: {CHECKS}" in alone.stdout.splitlines()
    cases = junit(report)
    assert len(cases) == CHECKS
    assert not any(c["failure"] or c["error"] or c["skipped"] for c in cases)
    assert {c["name"].split()[0] for c in cases} >= LISTED | {f"www.{n}" for n in LISTED}
    judged = {c["out"].rsplit("judged: ", 1)[1] for c in cases}
    said = {
        "warning-page": "the expected warning page",
        "nxdomain": "NXDOMAIN, as expected",
        "nodata": "NODATA, as expected",
    }
    assert judged == {f"{said[action]}, no block EDE"}

    # The fleet: one summary per server, one JUnit testsuite per server.
    report = tmp_path / "fleet.xml"
    both = fleet.audit(fleet.at_sinkhole, fleet.at_unbound, expect=expect, junit_file=report)
    assert both.returncode == 0, both.stdout + both.stderr
    assert summary(both.stdout) == [
        "servers: 2",
        server_line(fleet, fleet.at_sinkhole, "compliant", CHECKS, 0),
        server_line(fleet, fleet.at_unbound, "compliant", CHECKS, 0),
        "result: compliant",
    ]
    cases = junit(report)
    suites = {f"sinkhole verify {at}" for at in (fleet.at_sinkhole, fleet.at_unbound)}
    assert {c["suite"] for c in cases} == suites
    assert len(cases) == 2 * CHECKS and not any(c["failure"] or c["error"] for c in cases)

    # Audited against the policies instead of the register: the same judgement for both.
    assert fleet.sinkhole.config is not None
    policies = verify([fleet.at_sinkhole, fleet.at_unbound], fleet.sinkhole.config)
    assert policies.returncode == 0, policies.stdout + policies.stderr


@pytest.mark.parametrize("fleet", ["warning-page"], indirect=True)
def test_a_name_listed_after_the_export(fleet: Fleet, tmp_path: Path) -> None:
    """The register grows; sinkhole reloads it, the RPZ zone is not exported again."""
    with fleet.register.open("a", encoding="utf-8") as out:
        out.write(f"2-777/2026;{LATE};court;2026-07-01\n")
    mark = fleet.sinkhole.mark()
    fleet.sinkhole.send_signal(signal.SIGHUP)
    fleet.sinkhole.wait_event("policy_reloaded", 10.0, start=mark)
    late = {LATE, *under_names(LATE, 0)}
    checks = CHECKS + len(late) * 4

    report = tmp_path / "unbound.xml"
    alone = fleet.audit(fleet.at_unbound, expect=EXPECT["warning-page"], junit_file=report)
    assert alone.returncode == 1, alone.stdout + alone.stderr
    cases = junit(report)
    failed = [c for c in cases if c["failure"]]
    assert {c["name"].split()[0] for c in failed} == late
    assert len(failed) == len(late) * 4
    assert {c["classname"] for c in failed} == {"verify.register.csv.listed"}
    [case] = [c for c in failed if c["name"] == f"{LATE} A udp"]
    assert case["failure"] == f"expected NOERROR A {WARNING_IPV4}, got NOERROR A 198.51.100.7"
    assert f"entry: {LATE} (policy register.csv)" in case["failure_text"]
    assert "judged: not the expected warning page" in case["failure_text"]
    assert not any(c["error"] for c in cases)

    # In the fleet the stale server is named; sinkhole, reloaded, is compliant.
    report = tmp_path / "fleet.xml"
    both = fleet.audit(
        fleet.at_sinkhole, fleet.at_unbound, expect=EXPECT["warning-page"], junit_file=report
    )
    assert both.returncode == 1, both.stdout + both.stderr
    assert summary(both.stdout) == [
        "servers: 2",
        server_line(fleet, fleet.at_sinkhole, "compliant", checks, 0),
        server_line(fleet, fleet.at_unbound, "NOT compliant", checks, len(late) * 4),
        "result: NOT compliant (1 of 2 servers)",
    ]
    failing = {c["suite"] for c in junit(report) if c["failure"]}
    assert failing == {f"sinkhole verify {fleet.at_unbound}"}

    # Exported again and reloaded (SIGHUP), Unbound enforces the new name too.
    assert fleet.sinkhole.config is not None
    export_rpz(fleet.sinkhole.config, fleet.zonefile)
    fleet.unbound.send_signal(signal.SIGHUP)
    enforced = wait_until(
        lambda: (
            [r.to_text() for r in ask(fleet.at_unbound, LATE).answer]
            == [f"{LATE}. {WARNING_TTL} IN A {WARNING_IPV4}"]
        ),
        10.0,
        interval=0.1,
    )
    assert enforced, fleet.unbound.diagnostics()
    again = fleet.audit(fleet.at_sinkhole, fleet.at_unbound, expect=EXPECT["warning-page"])
    assert again.returncode == 0, again.stdout + again.stderr


@pytest.mark.parametrize("fleet", ["warning-page"], indirect=True)
def test_any_block_takes_the_given_warning_page_for_a_block(fleet: Fleet) -> None:
    """Without the page's addresses, a bare address is an answer like any other: only
    sinkhole's EDE marks it as a block. Given them, Unbound's bare page is a block too."""
    servers = (fleet.at_sinkhole, fleet.at_unbound)
    unlabelled = fleet.audit(*servers, expect=(), junit_file=None)
    assert unlabelled.returncode == 1, unlabelled.stdout + unlabelled.stderr
    assert summary(unlabelled.stdout)[1:3] == [
        server_line(fleet, fleet.at_sinkhole, "compliant", CHECKS, 0),
        server_line(fleet, fleet.at_unbound, "NOT compliant", CHECKS, CHECKS),
    ]
    assert f"  listed, VIOLATION, {CHECKS} checks: resolved: not blocked" in unlabelled.stdout

    given = fleet.audit(*servers, expect=("--expect", "any-block", "--expect", PAGE))
    assert given.returncode == 0, given.stdout + given.stderr
    assert f"  listed, ok, {CHECKS} checks: blocked: the warning page, no block EDE" in given.stdout
    assert f"  listed, ok, {CHECKS} checks: blocked: a block EDE" in given.stdout
    # Any one of several answers: the page or NXDOMAIN (a register enforced either way).
    either = fleet.audit(*servers, expect=("--expect", PAGE, "--expect", "nxdomain"))
    assert either.returncode == 0, either.stdout + either.stderr
