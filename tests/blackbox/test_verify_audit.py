"""`sinkhole verify` as an auditor runs it: sinkhole with the shipped example policies and
zone behind an upstream that knows none of the exempted names, a register audited as
published, several servers in one run, and names that must not be blocked. Every server
is a loopback process started here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import dns.rcode
import idna
import pytest
from support.procs import (
    REPO,
    WARNING_IPV4,
    WARNING_IPV6,
    FakeUpstream,
    Sinkhole,
    SinkholeFactory,
    free_port,
    standard_settings,
    write_config,
)

from blackbox.standard import BLOCKED, EXEMPT, POLICIES
from blackbox.test_verify import junit, verify, where

pytestmark = pytest.mark.blackbox

SAFE = "safe.malware.example"  # exempted by policies/malware-feed.yaml from an NXDOMAIN block
REGISTER = REPO / "policies" / "lists" / "register-sample.csv"
REGISTER_NAMES = {
    "casino-royal.example",
    idna.encode("казино-онлайн.example").decode(),
    "mirror1.pirate.example",
    "mirror2.pirate.example",
    "drugs-shop.example",
    "fake-diploma.example",
}
CSV = (
    "--list",
    str(REGISTER),
    "--format",
    "csv",
    "--encoding",
    "cp1251",
    "--delimiter",
    ";",
    "--skip-rows",
    "1",
    "--column",
    "domain",
)


def ask(server: Sinkhole, name: str) -> dns.message.Message:
    query = dns.message.make_query(name, "A", use_edns=0)
    return dns.query.udp(query, server.host, port=server.port, timeout=3.0)


def servers(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["server"]: s for s in document["servers"]}


def start(factory: SinkholeFactory, **settings: Any) -> Sinkhole:
    """A server whose configuration names policy files of the repository (stopped with the
    factory's others)."""
    index = len(factory.started)
    workdir = factory.workdir / f"sinkhole-{index}"
    workdir.mkdir(parents=True)
    port = free_port()
    config = {**standard_settings([factory.upstream.endpoint]), "listen": [f"127.0.0.1:{port}"]}
    config.update(settings)
    server = Sinkhole(workdir, write_config(workdir, config), port, name=f"sinkhole-{index}")
    factory.started.append(server)
    return server


@pytest.fixture
def examples(sinkhole_factory: SinkholeFactory) -> Sinkhole:
    """sinkhole with policies/*.yaml and zones/regulator.rpz as shipped, forwarding to an
    upstream where the exempted malware name does not exist (NXDOMAIN; a forwarded answer
    carries no EDE of the upstream's)."""
    world = sinkhole_factory({"world.yaml": f"id: world\naction: nxdomain\nblock: [{SAFE}]\n"})
    return start(
        sinkhole_factory,
        upstreams=[where(world)],
        policies=[str(REPO / "policies" / "*.yaml")],
        zones=[{"name": "regulator.rpz", "file": str(REPO / "zones" / "regulator.rpz")}],
    )


def test_the_shipped_examples_are_compliant(examples: Sinkhole, tmp_path: Path) -> None:
    answer = ask(examples, SAFE)
    assert answer.rcode() == dns.rcode.NXDOMAIN and not answer.options  # as upstream says
    report = tmp_path / "verify.xml"
    result = verify(where(examples), examples.config, "--junit", str(report), "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    [found] = json.loads(result.stdout)["servers"]
    assert found["result"] == "compliant"
    assert found["violations"] == [] and found["errors"] == []
    judged = {n["name"]: n for n in found["names_judged"]}
    assert judged[SAFE]["judged"] == {
        "not blocked: NXDOMAIN with no sign of the block "
        "(as a name that does not exist upstream gets)": 4
    }
    assert "EDE 17 (Filtered) 'operator security list'" in judged[SAFE]["expected"]
    assert "learn.casino.example" in judged  # the zone's PASSTHRU
    cases = junit(report)
    [case] = [c for c in cases if c["name"] == f"{SAFE} A udp"]
    assert "judged: not blocked: NXDOMAIN with no sign of the block" in case["out"]
    assert not any(c["failure"] or c["error"] for c in cases)
    # Names under every blocked site were asked too.
    names = {c["name"].split()[0] for c in cases}
    assert {"www.uriminzokkiri.com", "www.malware.example", "www.casino.example"} <= names

    text = verify(where(examples), examples.config)
    assert text.returncode == 0
    assert f"  {SAFE} (exempt, operator-malware): not blocked: NXDOMAIN" in text.stdout


def test_a_csv_register_audited_as_published(
    sinkhole_factory: SinkholeFactory, fake_upstream: FakeUpstream, tmp_path: Path
) -> None:
    """sinkhole enforcing the register through policies/examples/register-csv.yaml; the
    audit reads the register itself, as the regulator publishes it."""
    server = start(sinkhole_factory, policies=[str(REPO / "policies" / "examples" / "*.yaml")])
    page = f"warning-page={WARNING_IPV4},{WARNING_IPV6}"
    report = tmp_path / "verify.xml"
    result = verify(where(server), None, *CSV, "--expect", page, "--junit", str(report), "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    [found] = json.loads(result.stdout)["servers"]
    assert (found["listed_names"], found["names_under_blocked"]) == (6, 12)
    assert found["checked"] == found["compliant"] == 18 * 4
    assert found["source"] == f"the register {REGISTER}"
    cases = junit(report)
    names = {c["name"].split()[0] for c in cases}
    assert names >= REGISTER_NAMES
    assert names >= {f"www.{n}" for n in REGISTER_NAMES}
    assert {c["classname"] for c in cases} == {"verify.register-sample.csv.listed"}
    [case] = [c for c in cases if c["name"] == "casino-royal.example A tcp"]
    assert "judged: the expected warning page, with EDE 16 (Censored)" in case["out"]

    # Any block will do by default; the wrong kind of block is a violation.
    assert verify(where(server), None, *CSV).returncode == 0
    wrong = verify(where(server), None, *CSV, "--expect", "nxdomain", "--json")
    assert wrong.returncode == 1
    [found] = json.loads(wrong.stdout)["servers"]
    assert found["violation_count"] == 18 * 4
    assert {v["judged"] for v in found["violations"]} == {"not NXDOMAIN"}
    # A resolver that does not enforce it.
    bare = verify(fake_upstream.endpoint, None, *CSV, "--json")
    assert bare.returncode == 1
    [found] = json.loads(bare.stdout)["servers"]
    assert found["violation_count"] == 18 * 4
    assert {v["judged"] for v in found["violations"]} == {"resolved: not blocked"}


def test_two_servers_in_one_run(
    standard: Sinkhole, fake_upstream: FakeUpstream, tmp_path: Path
) -> None:
    report = tmp_path / "verify.xml"
    both = [where(standard), fake_upstream.endpoint]
    result = verify(both, standard.config, "--junit", str(report))
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"verify {where(standard)} (as client 127.0.0.1)")
    assert f"verify {fake_upstream.endpoint} (as client 127.0.0.1): 9 names" in result.stdout
    summary = lines[lines.index("servers: 2") :]
    assert summary[1] == (
        f"  {where(standard):<{len(fake_upstream.endpoint)}}  compliant: 100 checked, "
        "0 violations, 0 could not check"
    )
    assert summary[2].startswith(f"  {fake_upstream.endpoint}  NOT compliant: 100 checked, 92 ")
    assert summary[3] == "result: NOT compliant (1 of 2 servers)"
    cases = junit(report)
    suites = {c["suite"] for c in cases}
    assert suites == {f"sinkhole verify {s}" for s in both}
    per_suite = {s: [c for c in cases if c["suite"] == s] for s in suites}
    assert [len(found) for found in per_suite.values()] == [100, 100]
    assert not any(c["failure"] for c in per_suite[f"sinkhole verify {where(standard)}"])

    document = json.loads(verify(both, standard.config, "--json").stdout)
    assert (document["result"], document["exit_status"]) == ("NOT compliant", 1)
    found = servers(document)
    assert found[where(standard)]["result"] == "compliant"
    assert found[fake_upstream.endpoint]["violation_count"] == 92


def test_a_server_that_cannot_be_checked_next_to_a_compliant_one(
    standard: Sinkhole, tmp_path: Path
) -> None:
    from support.procs import dead_port

    dead = f"127.0.0.1:{dead_port()}"
    result = verify([where(standard), dead], standard.config, "--json")
    assert result.returncode == 2, result.stdout + result.stderr
    found = servers(json.loads(result.stdout))
    assert found[where(standard)]["result"] == "compliant"
    assert found[dead]["result"] == "could not check"
    assert found[dead]["why_not_checked"].startswith("the first 20 checks all failed")


def test_over_blocking_is_a_violation(
    sinkhole_factory: SinkholeFactory, standard: Sinkhole, tmp_path: Path
) -> None:
    """Names that must resolve: one the server blocks too (a policy of its own), one it
    leaves alone, and one the policies block themselves (not checked: they disagree)."""
    allowed = tmp_path / "allowed.txt"
    allowed.write_text(f"# names that must resolve\nnews.example\nfine.example\n{BLOCKED}\n")
    over = dict(POLICIES)
    over["50-extra.yaml"] = "id: extra\nede: filtered\nblock: [news.example]\n"
    server = sinkhole_factory(over)
    result = verify(where(server), standard.config, "--allowed", str(allowed), "--json")
    assert result.returncode == 1, result.stdout + result.stderr
    [found] = json.loads(result.stdout)["servers"]
    assert found["allowed_names"] == 2
    violations = found["violations"]
    assert {(v["name"], v["kind"]) for v in violations} == {("news.example", "allowed")}
    assert violations[0]["judged"] == "carries the block's signature: EDE 17 (Filtered) 'extra'"
    skipped = {s["name"]: s for s in found["skipped"]}
    assert skipped[BLOCKED]["reason"] == ("the policies block it too (warning-page by court-order)")
    judged = {n["name"]: n["judged"] for n in found["names_judged"]}
    assert judged["fine.example"] == {"not blocked: no sign of the block in the answer": 4}
    # The standard server does not over-block.
    fine = verify(where(standard), standard.config, "--allowed", str(allowed))
    assert fine.returncode == 0, fine.stdout + fine.stderr
    assert f"  {EXEMPT} (exempt, court-order)" in fine.stdout


def test_allowed_names_next_to_a_register(standard: Sinkhole, tmp_path: Path) -> None:
    """Over-blocking audited against a register: a name the register does not list must
    resolve; a name under a listed one is not checked."""
    register = tmp_path / "register.txt"
    register.write_text(f"{BLOCKED}\n")
    allowed = tmp_path / "allowed.txt"
    allowed.write_text(f"fine.example\nwww.{BLOCKED}\n")
    argv = ["--list", str(register), "--allowed", str(allowed), "--json"]
    result = verify(where(standard), None, *argv)
    assert result.returncode == 0, result.stdout + result.stderr
    [found] = json.loads(result.stdout)["servers"]
    assert (found["listed_names"], found["allowed_names"]) == (1, 1)
    [skip] = [s for s in found["skipped"] if s["kind"] == "allowed"]
    assert (skip["name"], skip["reason"]) == (
        f"www.{BLOCKED}",
        f"the register lists it ({BLOCKED})",
    )


def test_help_describes_every_command() -> None:
    for command in ("serve", "check", "explain", "diff", "verify", "export-rpz"):
        result = subprocess.run(
            [sys.executable, "-m", "resolver", command, "--help"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 0, result.stderr
        usage, description, *_ = result.stdout.split("\n\n")
        assert usage.startswith(f"usage: sinkhole {command}")
        assert len(description.split()) >= 30, (command, description)
        assert f"example:\n  sinkhole {command}" in result.stdout, command
    explain = subprocess.run(
        [sys.executable, "-m", "resolver", "explain", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert "2026-01-31T12:00+09:00" in " ".join(explain.stdout.split())
