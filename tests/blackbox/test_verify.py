"""`sinkhole verify`: the compliance harness, run against sinkhole itself (compliant), against a
resolver that enforces other policies, and against the fake upstream (no blocking at all).
Every server it is pointed at is a loopback process started here."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from support.procs import REPO, FakeUpstream, Sinkhole, SinkholeFactory

from blackbox.standard import (
    BLOCKED,
    DROP_ACTION,
    EXEMPT,
    FILTERED,
    NXDOMAIN_ACTION,
    OPERATOR_BLOCKED,
    POLICIES,
    REFUSE_ACTION,
)

pytestmark = pytest.mark.blackbox

FAST = ("--qps", "2000", "--timeout", "0.5")
STANDARD_NAMES = 9  # 8 blocked names and 1 exemption in the standard policies


def verify(
    server: str, config: Path | None, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "resolver", "verify", "--server", server, *FAST, *args]
    if config is not None:
        argv += ["--config", str(config)]
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=timeout)


def where(server: Sinkhole) -> str:
    return f"{server.host}:{server.port}"


def junit(path: Path) -> list[dict[str, Any]]:
    """Every testcase: classname, name, and the failure message when it failed."""
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites"
    [suite] = root
    cases = []
    for case in suite.iter("testcase"):
        failure = case.find("failure")
        cases.append(
            {
                "classname": case.get("classname"),
                "name": case.get("name"),
                "failure": failure.get("message") if failure is not None else None,
                "text": failure.text if failure is not None else None,
            }
        )
    assert int(suite.get("tests", "-1")) == len(cases)
    assert int(suite.get("failures", "-1")) == sum(1 for c in cases if c["failure"])
    return cases


def test_sinkhole_is_compliant(standard: Sinkhole, tmp_path: Path) -> None:
    report = tmp_path / "verify.xml"
    result = verify(where(standard), standard.config, "--junit", str(report))
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == (
        f"verify {where(standard)} (as client 127.0.0.1): {STANDARD_NAMES} names "
        "(8 blocked, 1 exempted), A and AAAA over UDP and TCP"
    )
    assert f"compliant: {STANDARD_NAMES * 4}" in lines
    assert "violations: 0" in lines
    assert lines[-1] == "result: compliant"
    cases = junit(report)
    assert len(cases) == STANDARD_NAMES * 4
    assert not any(c["failure"] for c in cases)
    names = {c["name"] for c in cases}
    for name in (BLOCKED, EXEMPT, DROP_ACTION, NXDOMAIN_ACTION, REFUSE_ACTION):
        for qtype in ("A", "AAAA"):
            for transport in ("udp", "tcp"):
                assert f"{name} {qtype} {transport}" in names
    assert {c["classname"] for c in cases if c["name"].startswith(EXEMPT + " ")} == {
        "verify.court-order.exempt"
    }


def test_json_report(standard: Sinkhole) -> None:
    result = verify(where(standard), standard.config, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True
    assert report["checked"] == report["compliant"] == STANDARD_NAMES * 4
    assert report["violations"] == []
    assert (report["blocked_names"], report["exempt_names"]) == (8, 1)
    assert report["qps"] > 0


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
    found = json.loads(result.stdout)
    assert found["ok"] is False
    violations = {(v["name"], v["type"], v["transport"]): v for v in found["violations"]}
    operator = violations[(OPERATOR_BLOCKED, "A", "udp")]
    assert operator["expected"] == "NOERROR A 192.0.2.80"
    assert operator["actual"].startswith("NXDOMAIN")
    assert operator["policy"] == "operator-list"
    exempt = violations[(EXEMPT, "AAAA", "tcp")]
    assert exempt["kind"] == "exempt"
    assert exempt["expected"] == "not the block answer (NOERROR AAAA 2001:db8::80)"
    assert exempt["actual"].startswith("NOERROR AAAA 2001:db8::80")  # blocked, not exempted
    refused = violations[(REFUSE_ACTION, "A", "udp")]
    assert (refused["expected"], refused["actual"]) == ("REFUSED", "NOERROR A 198.51.100.7")
    dropped = violations[(DROP_ACTION, "A", "tcp")]
    assert dropped["expected"] == "no answer (dropped)"
    assert dropped["actual"] == "NOERROR A 198.51.100.7"
    # The court's blocks and the filter policy are enforced as written.
    assert not any(name in (BLOCKED, FILTERED) for name, _, _ in violations)
    # The actions policy's names are forwarded: all wrong but nxd.example, which the fake
    # upstream happens to answer NXDOMAIN (its nx* names), as mandated.
    assert len(found["violations"]) == 4 * (1 + 1 + 3)  # operator, exemption, 3 actions
    cases = junit(report)
    failed = [c for c in cases if c["failure"]]
    assert len(failed) == len(found["violations"])
    [case] = [c for c in failed if c["name"] == f"{OPERATOR_BLOCKED} A udp"]
    assert case["failure"].startswith("expected NOERROR A 192.0.2.80, got NXDOMAIN")
    assert f"entry: {OPERATOR_BLOCKED} (policy operator-list)" in case["text"]


def test_the_upstream_itself_blocks_nothing(
    fake_upstream: FakeUpstream, standard: Sinkhole, tmp_path: Path
) -> None:
    report = tmp_path / "verify.xml"
    result = verify(fake_upstream.endpoint, standard.config, "--junit", str(report))
    assert result.returncode == 1, result.stdout + result.stderr
    # Every blocked name but nxd.example (the fake upstream answers nx* names NXDOMAIN,
    # which is what its policy mandates); the exempted name resolves, as it should.
    assert "violations: 28" in result.stdout.splitlines()
    assert result.stdout.splitlines()[-1] == "result: NOT compliant"
    assert (
        f"  {BLOCKED} A udp: expected NOERROR A 192.0.2.80 (entry {BLOCKED}, policy "
        "court-order), got NOERROR A 198.51.100.7"
    ) in result.stdout.splitlines()
    cases = junit(report)
    assert sum(1 for c in cases if c["failure"]) == 28
    assert all(c["failure"] is None for c in cases if c["name"].startswith(EXEMPT + " "))


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
        assert "a sample of 4 of 9 names" in summary
    assert runs[0] == runs[1]
    assert len(runs[0]) == 16


def test_forms_redirects_and_client_scopes(sinkhole_factory: SinkholeFactory) -> None:
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
    result = verify(where(server), server.config, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["skipped_names"] == 1  # lab-only.example: not for us (127.0.0.1)
    assert report["checked"] == 5 * 4
    # As a lab client the lab-only name is expected blocked; the server (which sees
    # 127.0.0.1) forwards it, so that is a violation.
    as_lab = verify(where(server), server.config, "--json", "--client", "10.1.2.3")
    assert as_lab.returncode == 1
    violations = json.loads(as_lab.stdout)["violations"]
    assert {v["name"] for v in violations} == {"lab-only.example"}


def test_a_below_entry_is_checked_on_a_name_under_it(
    sinkhole_factory: SinkholeFactory, tmp_path: Path
) -> None:
    server = sinkhole_factory({"p.yaml": 'id: p\nblock:\n  - "*.below.example"\n'})
    report = tmp_path / "v.xml"
    result = verify(where(server), server.config, "--junit", str(report))
    assert result.returncode == 0, result.stdout + result.stderr
    assert {c["name"].split()[0] for c in junit(report)} == {"verify-probe.below.example"}


def test_progress_on_request(standard: Sinkhole) -> None:
    result = verify(where(standard), standard.config, "--progress")
    assert result.returncode == 0
    assert f"verify: {STANDARD_NAMES * 4}/{STANDARD_NAMES * 4} checks (100%)" in result.stderr
    quiet = verify(where(standard), standard.config)
    assert quiet.stderr == ""  # not a terminal, no --progress


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--server", "localhost:53"], "not an address"),
        (["--server", "127.0.0.1:53", "--qps", "0"], "must be positive"),
        (["--server", "127.0.0.1:53", "--sample", "0"], "must be positive"),
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
    found = json.loads(result.stdout)
    assert (found["blocked_names"], found["exempt_names"]) == (6, 1)
    names = {c["name"].split()[0] for c in junit(report)}
    assert names == {
        "blocked.example",
        "gone.example",
        "quiet.example",
        "local.example",
        "moved.example",
        "verify-probe.walled.example",
        "verify-probe.open.gone.example",
    }
    bare = verify(fake_upstream.endpoint, server.config, "--json")
    assert bare.returncode == 1
    expected = {
        (v["name"], v["type"]): v["expected"]
        for v in json.loads(bare.stdout)["violations"]
        if v["transport"] == "udp"
    }
    assert expected[("local.example", "A")] == "NOERROR A 192.0.2.55"
    assert expected[("local.example", "AAAA")] == "NODATA (NOERROR, no answer)"
    assert expected[("moved.example", "A")] == "NOERROR CNAME landing.example.org."
    assert expected[("verify-probe.walled.example", "A")] == (
        "NOERROR CNAME verify-probe.walled.example.garden.example.net."
    )
