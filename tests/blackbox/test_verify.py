"""`sinkhole verify`: the compliance harness, run against sinkhole itself (compliant), against a
resolver that enforces other policies, and against the fake upstream (no blocking at all).
Every server it is pointed at is a loopback process started here."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from support.procs import REPO, FakeUpstream, Sinkhole, SinkholeFactory, dead_port

from blackbox.standard import (
    BLOCKED,
    DROP_ACTION,
    EXEMPT,
    FILTERED,
    NXDOMAIN_ACTION,
    OPERATOR_BLOCKED,
    ORDERED,
    POLICIES,
    REFUSE_ACTION,
)

pytestmark = pytest.mark.blackbox

FAST = ("--qps", "2000", "--timeout", "0.5")
NAMES = 9  # 8 blocked entries and 1 exemption in the standard policies
UNDER = 16  # www. and a random name under each of the 8 blocked sites
CHECKS = (8 + UNDER + 1) * 4  # A and AAAA over UDP and TCP


def verify(
    server: str | list[str], config: Path | None, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    servers = [server] if isinstance(server, str) else server
    argv = [sys.executable, "-m", "resolver", "verify", *FAST, *args]
    for one in servers:
        argv += ["--server", one]
    if config is not None:
        argv += ["--config", str(config)]
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=timeout)


def where(server: Sinkhole) -> str:
    return f"{server.host}:{server.port}"


def junit(path: Path) -> list[dict[str, Any]]:
    """Every testcase of every suite: suite, classname, name, and what it holds (failure,
    error, skipped: its message; out: the judgement of a passing check)."""
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites"
    cases = []
    for suite in root:
        found = []
        for case in suite.iter("testcase"):
            item: dict[str, Any] = {
                "suite": suite.get("name"),
                "classname": case.get("classname"),
                "name": case.get("name"),
            }
            for kind in ("failure", "error", "skipped"):
                node = case.find(kind)
                item[kind] = node.get("message") if node is not None else None
                item[kind + "_text"] = node.text if node is not None else None
            out = case.find("system-out")
            item["out"] = out.text if out is not None else None
            found.append(item)
        for kind, attribute in (
            ("failure", "failures"),
            ("error", "errors"),
            ("skipped", "skipped"),
        ):
            assert int(suite.get(attribute, "-1")) == sum(1 for c in found if c[kind]), kind
        assert int(suite.get("tests", "-1")) == len(found)
        cases.extend(found)
    assert int(root.get("tests", "-1")) == len(cases)
    return cases


def test_sinkhole_is_compliant(standard: Sinkhole, tmp_path: Path) -> None:
    report = tmp_path / "verify.xml"
    result = verify(where(standard), standard.config, "--junit", str(report))
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == (
        f"verify {where(standard)} (as client 127.0.0.1): {NAMES} names of the policies "
        f"(8 blocked, 1 exempted) and {UNDER} names under blocked sites, "
        "A and AAAA over UDP and TCP"
    )
    assert f"compliant: {CHECKS}" in lines
    assert "violations: 0" in lines
    assert "could not check: 0" in lines
    assert lines[-1] == "result: compliant"
    # How each answer was judged: the tally, and the exempted name on its own.
    assert (
        "  blocked, ok, 12 checks: as mandated: REFUSED, with EDE 16 (Censored) 'Actions order'"
        in lines
    )
    assert any(line.startswith("  blocked, ok, ") and "the warning page" in line for line in lines)
    assert (
        f"  {EXEMPT} (exempt, court-order): not blocked: no sign of the block in the answer "
        "(4 checks)" in lines
    )
    cases = junit(report)
    assert len(cases) == CHECKS
    assert not any(c["failure"] or c["error"] or c["skipped"] for c in cases)
    assert all("judged: " in c["out"] for c in cases)
    names = {c["name"] for c in cases}
    for name in (BLOCKED, EXEMPT, DROP_ACTION, NXDOMAIN_ACTION, REFUSE_ACTION, f"www.{BLOCKED}"):
        for qtype in ("A", "AAAA"):
            for transport in ("udp", "tcp"):
                assert f"{name} {qtype} {transport}" in names
    assert {c["classname"] for c in cases if c["name"].startswith(EXEMPT + " ")} == {
        "verify.court-order.exempt"
    }
    [case] = [c for c in cases if c["name"] == f"{NXDOMAIN_ACTION} A udp"]
    assert "judged: as mandated: NXDOMAIN, with EDE 16 (Censored) 'Actions order'" in case["out"]


def test_json_report(standard: Sinkhole) -> None:
    result = verify(where(standard), standard.config, "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert (document["result"], document["ok"], document["exit_status"]) == ("compliant", True, 0)
    [report] = document["servers"]
    assert report["checked"] == report["compliant"] == CHECKS
    assert report["violations"] == [] and report["errors"] == []
    assert (report["blocked_names"], report["exempt_names"]) == (8, 1)
    assert report["names_under_blocked"] == UNDER
    assert report["qps"] > 0
    [exempt] = report["names_judged"]
    assert exempt["name"] == EXEMPT
    assert exempt["judged"] == {"not blocked: no sign of the block in the answer": 4}
    assert "EDE 16 (Censored) 'Court order 42'" in exempt["expected"]
    assert sum(j["checks"] for j in report["judged"]) == CHECKS


def test_a_resolver_with_other_policies_is_not_compliant(
    sinkhole_factory: SinkholeFactory, standard: Sinkhole, tmp_path: Path
) -> None:
    """The court policy without its exemption, the operator's with nxdomain, the actions
    policy missing."""
    policies = dict(POLICIES)
    del policies["40-actions.yaml"]
    policies["10-court.yaml"] = POLICIES["10-court.yaml"].split("allow:")[0]
    policies["20-operator.yaml"] = POLICIES["20-operator.yaml"] + "action: nxdomain\n"
    other = sinkhole_factory(policies)
    report = tmp_path / "verify.xml"
    result = verify(where(other), standard.config, "--junit", str(report), "--json")
    assert result.returncode == 1, result.stdout + result.stderr
    document = json.loads(result.stdout)
    assert (document["result"], document["exit_status"]) == ("NOT compliant", 1)
    [found] = document["servers"]
    violations = {(v["name"], v["type"], v["transport"]): v for v in found["violations"]}
    operator = violations[(OPERATOR_BLOCKED, "A", "udp")]
    assert operator["expected"] == "NOERROR A 192.0.2.80"
    assert operator["actual"].startswith("NXDOMAIN")
    assert operator["policy"] == "operator-list"
    assert operator["judged"] == "not the warning page"
    under = violations[(f"www.{OPERATOR_BLOCKED}", "AAAA", "tcp")]
    assert (under["under_entry"], under["entry"]) == (True, OPERATOR_BLOCKED)
    exempt = violations[(EXEMPT, "AAAA", "tcp")]
    assert exempt["kind"] == "exempt"
    assert exempt["expected"].startswith("not the block answer (NOERROR AAAA 2001:db8::80")
    assert exempt["actual"].startswith("NOERROR AAAA 2001:db8::80")  # blocked, not exempted
    assert exempt["judged"] == "carries the block's signature: EDE 16 (Censored) 'Court order 42'"
    refused = violations[(REFUSE_ACTION, "A", "udp")]
    assert (refused["expected"], refused["actual"]) == ("REFUSED", "NOERROR A 198.51.100.7")
    dropped = violations[(DROP_ACTION, "A", "tcp")]
    assert dropped["expected"] == "no answer (dropped)"
    assert dropped["actual"] == "NOERROR A 198.51.100.7"
    # The court's blocks and the filter policy are enforced as written.
    assert not {v["entry"] for v in violations.values()} & {BLOCKED, ORDERED, FILTERED}
    # The actions policy's names are forwarded: all wrong but nxd.example itself, which the
    # fake upstream happens to answer NXDOMAIN (its nx* names), as mandated.
    assert found["violation_count"] == 4 * (3 + 1 + 3 * 4 - 1)  # operator, exemption, actions
    cases = junit(report)
    failed = [c for c in cases if c["failure"]]
    assert len(failed) == found["violation_count"]
    [case] = [c for c in failed if c["name"] == f"{OPERATOR_BLOCKED} A udp"]
    assert case["failure"].startswith("expected NOERROR A 192.0.2.80, got NXDOMAIN")
    assert f"entry: {OPERATOR_BLOCKED} (policy operator-list)" in case["failure_text"]


def test_the_upstream_itself_blocks_nothing(
    fake_upstream: FakeUpstream, standard: Sinkhole, tmp_path: Path
) -> None:
    report = tmp_path / "verify.xml"
    result = verify(fake_upstream.endpoint, standard.config, "--junit", str(report))
    assert result.returncode == 1, result.stdout + result.stderr
    # Every blocked name but nxd.example (the fake upstream answers nx* names NXDOMAIN,
    # which is what its policy mandates); the exempted name resolves, as it should.
    violations = (8 + UNDER - 1) * 4
    assert f"violations: {violations}" in result.stdout.splitlines()
    assert result.stdout.splitlines()[-1] == "result: NOT compliant"
    assert (
        f"  {BLOCKED} A udp: expected NOERROR A 192.0.2.80 (entry {BLOCKED}, policy "
        "court-order), got NOERROR A 198.51.100.7"
    ) in result.stdout.splitlines()
    assert (
        f"  www.{BLOCKED} A tcp: expected NOERROR A 192.0.2.80 (a name under entry {BLOCKED}, "
        "policy court-order), got NOERROR A 198.51.100.7"
    ) in result.stdout.splitlines()
    cases = junit(report)
    assert sum(1 for c in cases if c["failure"]) == violations
    assert all(c["failure"] is None for c in cases if c["name"].startswith(EXEMPT + " "))


def test_a_dead_port_could_not_be_checked(standard: Sinkhole, tmp_path: Path) -> None:
    """Nothing listens: every query is refused at once; after the first 20 the server is
    given up on, and the rest are reported as not asked."""
    report = tmp_path / "verify.xml"
    dead = f"127.0.0.1:{dead_port()}"
    started = time.monotonic()
    result = verify(dead, standard.config, "--junit", str(report), "--qps", "200")
    assert result.returncode == 2, result.stdout + result.stderr
    assert time.monotonic() - started < 20
    lines = result.stdout.splitlines()
    assert "violations: 0" in lines
    assert lines[-1].startswith("result: could not check (the first 20 checks all failed (")
    assert "connection refused" in lines[-1]
    cases = junit(report)
    errors = [c for c in cases if c["error"]]
    assert len(errors) >= 20
    assert all("connection refused" in c["error"] for c in errors)
    skipped = [c for c in cases if c["skipped"]]
    assert skipped and all(c["skipped"].startswith("not asked: the first 20") for c in skipped)
    assert len(errors) + len(skipped) + sum(1 for c in cases if c["out"]) == CHECKS


def test_too_many_unanswered_checks(sinkhole_factory: SinkholeFactory, tmp_path: Path) -> None:
    """An exempted name the upstream never answers: 4 of 40 checks unanswered (10%) is
    within the default threshold; with --max-unanswered 5 the run could not check."""
    policy = "id: p\nblock: [a.example, b.example, c.example]\nallow: [silent-x.a.example]\n"
    # The server waits longer for its upstream than verify waits for the server.
    server = sinkhole_factory({"p.yaml": policy}, upstream_timeout=3.0, query_timeout=4.0)
    result = verify(where(server), server.config, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    [report] = json.loads(result.stdout)["servers"]
    assert (report["checks"], report["could_not_check"]) == (40, 4)
    assert {e["name"] for e in report["errors"]} == {"silent-x.a.example"}
    assert report["errors"][0]["judged"] == "could not check: no answer in time"
    strict = verify(where(server), server.config, "--max-unanswered", "5")
    assert strict.returncode == 2, strict.stdout + strict.stderr
    assert strict.stdout.splitlines()[-1] == (
        "result: could not check (4 of 40 checks (10%) could not be made, more than 5%)"
    )


def test_sample_names_are_the_same_each_run(standard: Sinkhole, tmp_path: Path) -> None:
    runs = []
    for i in range(2):
        report = tmp_path / f"v{i}.xml"
        result = verify(
            where(standard),
            standard.config,
            "--sample",
            "4",
            "--seed",
            "11",
            "--junit",
            str(report),
        )
        assert result.returncode == 0, result.stderr
        runs.append(sorted(c["name"] for c in junit(report)))
        summary = result.stdout.splitlines()[0]
        assert "a sample of 4 of 9 names of the policies" in summary
    assert runs[0] == runs[1]
    entries = {name.split()[0] for name in runs[0] if name.split()[0].count(".") == 1}
    assert len(entries) >= 3  # 4 entries, one of them maybe the exemption's parent


def test_forms_redirects_and_client_scopes(
    sinkhole_factory: SinkholeFactory, tmp_path: Path
) -> None:
    policy = """\
id: forms
block:
  - "*.below.example"
  - "=exact.example"
  - name: moved.example
    action: redirect
    redirect: {cname: landing.example.org}
  - name: elsewhere.example
    action: redirect
    redirect: {ipv4: [192.0.2.99]}
  - name: quiet.example
    action: nodata
  - name: lab-only.example
    clients: [10.0.0.0/8]
"""
    server = sinkhole_factory({"p.yaml": policy})
    xml = tmp_path / "v.xml"
    result = verify(where(server), server.config, "--json", "--junit", str(xml))
    assert result.returncode == 0, result.stdout + result.stderr
    skipped = {c["name"]: c for c in junit(xml) if c["skipped"]}
    assert skipped["lab-only.example"]["skipped"] == (
        "the entry is for other clients (only 10.0.0.0/8), not 127.0.0.1"
    )
    assert skipped["lab-only.example"]["classname"] == "verify.forms.blocked"
    assert len(skipped) == 3
    [report] = json.loads(result.stdout)["servers"]
    # lab-only.example and the two names under it: not for us (127.0.0.1)
    assert report["skipped_names"] == 3
    assert {s["reason"] for s in report["skipped"]} == {
        "the entry is for other clients (only 10.0.0.0/8), not 127.0.0.1"
    }
    # *.below.example: two names under it; =exact.example: itself; the others: 3 each.
    assert report["checked"] == (2 + 1 + 3 * 3) * 4
    names_only = verify(where(server), server.config, "--json", "--no-subtree")
    [report] = json.loads(names_only.stdout)["servers"]
    assert (report["checked"], report["skipped_names"]) == (5 * 4, 1)
    # As a lab client the lab-only name is expected blocked; the server (which sees
    # 127.0.0.1) forwards it, so that is a violation.
    as_lab = verify(where(server), server.config, "--json", "--client", "10.1.2.3")
    assert as_lab.returncode == 1
    [report] = json.loads(as_lab.stdout)["servers"]
    assert {v["entry"] for v in report["violations"]} == {"lab-only.example"}


def test_a_below_entry_is_checked_on_names_under_it(
    sinkhole_factory: SinkholeFactory, tmp_path: Path
) -> None:
    server = sinkhole_factory({"p.yaml": 'id: p\nblock:\n  - "*.below.example"\n'})
    report = tmp_path / "v.xml"
    result = verify(where(server), server.config, "--junit", str(report))
    assert result.returncode == 0, result.stdout + result.stderr
    names = {c["name"].split()[0] for c in junit(report)}
    assert "below.example" not in names
    assert "www.below.example" in names
    [random_name] = names - {"www.below.example"}
    assert random_name.endswith(".below.example")
    assert random_name.startswith("vp")
    result = verify(where(server), server.config, "--junit", str(report), "--no-subtree")
    assert {c["name"].split()[0] for c in junit(report)} == {"www.below.example"}


def test_progress_on_request(standard: Sinkhole) -> None:
    result = verify(where(standard), standard.config, "--progress")
    assert result.returncode == 0
    assert f"] 100% {CHECKS}/{CHECKS} checks, 0 violations, 0 unanswered" in result.stderr
    quiet = verify(where(standard), standard.config)
    assert quiet.stderr == ""  # not a terminal, no --progress


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--server", "localhost:53"], "not an address"),
        (["--server", "127.0.0.1:53", "--qps", "0"], "must be positive"),
        (["--server", "127.0.0.1:53", "--sample", "0"], "must be positive"),
        (["--server", "127.0.0.1:53", "--max-unanswered", "101"], "a percentage"),
        (["--server", "127.0.0.1:53", "--expect", "nxdomain"], "only with --list"),
        (["--server", "127.0.0.1:53", "--list", "/nonexistent/register"], "no such file"),
        (
            [
                "--server",
                "127.0.0.1:53",
                "--list",
                "policies/lists/sample.domains",
                "--expect",
                "x",
            ],
            "expected warning-page=ADDRESS, nxdomain, nodata or any-block",
        ),
    ],
)
def test_bad_arguments_exit_2(args: list[str], message: str) -> None:
    argv = [sys.executable, "-m", "resolver", "verify", *args]
    result = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert message in result.stderr


ZONE = """\
$TTL 300
@ SOA ns. host. 1 3600 600 86400 60
@ NS ns.
gone.example CNAME .
*.gone.example CNAME .
quiet.example CNAME *.
local.example A 192.0.2.55
moved.example CNAME landing.example.org.
*.walled.example CNAME *.garden.example.net.
*.open.gone.example CNAME rpz-passthru.
"""


def test_rpz_zone_names_are_checked(
    sinkhole_factory: SinkholeFactory, fake_upstream: FakeUpstream, tmp_path: Path
) -> None:
    """The zone is written where the next server's workdir will be, before it starts."""
    workdir = sinkhole_factory.workdir / f"sinkhole-{len(sinkhole_factory.started)}"
    workdir.mkdir(parents=True)
    (workdir / "rpz.zone").write_text(ZONE)
    server = sinkhole_factory(
        {"p.yaml": "id: p\nblock: [blocked.example]\n"},
        zones=[{"name": "rpz.test", "file": "rpz.zone"}],
    )
    assert server.workdir == workdir
    report = tmp_path / "v.xml"
    result = verify(where(server), server.config, "--junit", str(report), "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    [found] = json.loads(result.stdout)["servers"]
    assert (found["blocked_names"], found["exempt_names"]) == (6, 1)
    names = {c["name"].split()[0] for c in junit(report)}
    entries = {n for n in names if not n.startswith("vp")}
    assert entries == {
        "blocked.example",
        "www.blocked.example",
        "gone.example",
        "www.gone.example",
        "quiet.example",
        "local.example",
        "moved.example",
        "www.walled.example",
        "www.open.gone.example",
    }
    bare = verify(fake_upstream.endpoint, server.config, "--json", "--no-subtree")
    assert bare.returncode == 1
    [bare_report] = json.loads(bare.stdout)["servers"]
    expected = {
        (v["name"], v["type"]): v["expected"]
        for v in bare_report["violations"]
        if v["transport"] == "udp"
    }
    assert expected[("local.example", "A")] == "NOERROR A 192.0.2.55"
    assert expected[("local.example", "AAAA")] == "NODATA (NOERROR, no answer)"
    assert expected[("moved.example", "A")] == "NOERROR CNAME landing.example.org."
    assert expected[("www.walled.example", "A")] == (
        "NOERROR CNAME www.walled.example.garden.example.net."
    )


def test_a_server_over_ipv6(standard: Sinkhole) -> None:
    assert standard.port6 is not None
    result = verify(f"[::1]:{standard.port6}", standard.config, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    [report] = json.loads(result.stdout)["servers"]
    assert (report["server"], report["client"]) == (f"[::1]:{standard.port6}", "::1")
    assert report["checked"] == report["compliant"] == CHECKS
