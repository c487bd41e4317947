"""`sinkhole explain NAME`: the deciding entry, the entries that lost, and the answer, as text
for people and JSON for machines. No server is started and nothing is sent."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from support.procs import REPO, WARNING_IPV4, standard_settings, write_config

from blackbox.standard import (
    BLOCKED,
    DROP_ACTION,
    EXEMPT,
    NXDOMAIN_ACTION,
    ORDERED,
    POLICIES,
)

pytestmark = pytest.mark.blackbox


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("explain")
    (workdir / "policies").mkdir()
    for name, text in POLICIES.items():
        (workdir / "policies" / name).write_text(text)
    settings = standard_settings(["127.0.0.1:5301"])
    settings["listen"] = ["127.0.0.1:5300"]
    return write_config(workdir, settings)


def explain(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "resolver", "explain", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )


def explained(config: Path, *args: str) -> dict[str, Any]:
    result = explain("--config", str(config), "--json", *args)
    assert result.returncode == 0, result.stdout + result.stderr
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def test_a_blocked_name_as_text(config: Path) -> None:
    result = explain("--config", str(config), "www." + BLOCKED)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"www.{BLOCKED} A from any client at ")
    assert lines[1] == (
        "blocked: warning-page by policy 'court-order' (Court-ordered block; Test District Court)"
    )
    court = config.parent / "policies" / "10-court.yaml"
    assert lines[2] == (
        f"  decided by entry {BLOCKED} (warning-page, policy 'court-order') at {court}:7:5"
    )
    assert "answer over UDP and TCP (query with EDNS):" in lines
    assert f"  answer     www.{BLOCKED}. 123 IN A {WARNING_IPV4}" in lines
    assert "  EDE 16 (Censored): Court order 42" in lines


def test_json_for_an_exempted_name(config: Path) -> None:
    document = explained(config, EXEMPT, "--type", "AAAA", "--client", "127.0.0.1")
    assert document["outcome"] == "exempted"
    assert document["query"] == {
        "name": EXEMPT,
        "type": "AAAA",
        "client": "127.0.0.1",
        "at": document["query"]["at"],
    }
    assert document["decided_by"]["entry"] == EXEMPT
    assert document["decided_by"]["line"] == 11
    [lost] = [m for m in document["matched"] if not m["decides"]]
    assert lost["entry"] == BLOCKED
    assert lost["reason"] == f"less specific than {EXEMPT}"
    assert document["answer"] is None
    assert document["forwarded_to"] == ["127.0.0.1:5301"]
    assert document["consistent"] is True


@pytest.mark.parametrize(
    ("name", "qtype", "rcode", "answers"),
    [
        (ORDERED, "A", "NOERROR", [f"{ORDERED}. 123 IN A {WARNING_IPV4}"]),
        (BLOCKED, "MX", "NOERROR", []),
        (NXDOMAIN_ACTION, "A", "NXDOMAIN", []),
    ],
)
def test_answers(config: Path, name: str, qtype: str, rcode: str, answers: list[str]) -> None:
    document = explained(config, name, "-t", qtype)
    udp = document["answer"]["udp"]
    assert udp["rcode"] == rcode
    assert udp["answer"] == answers
    assert udp["ede"][0]["code"] in (15, 16, 17)


def test_a_dropped_name_gets_no_answer(config: Path) -> None:
    document = explained(config, DROP_ACTION)
    assert document["action"] == "drop"
    assert document["answer"]["udp"] == {
        "sent": False,
        "text": "no answer is sent (the query is dropped)",
    }


def test_a_client_outside_allow_clients_is_refused(config: Path) -> None:
    document = explained(config, BLOCKED, "--client", "203.0.113.9")
    assert document["outcome"] == "refused"
    assert document["client_allowed"] is False
    assert document["answer"]["udp"]["rcode"] == "REFUSED"


def test_the_bundled_policies(tmp_path: Path) -> None:
    result = explain("uriminzokkiri.com", "--json")  # the built-in configuration
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["policy"]["id"] == "kr-national-security"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["twitter.com/uriminzok"], "whole names"),
        (["a.example", "--type", "NOPE"], "unknown query type"),
        (["a.example", "--client", "nobody"], "not an IP address"),
        (["a.example", "--at", "tomorrow"], "not a date"),
    ],
)
def test_bad_arguments_exit_2(config: Path, args: list[str], message: str) -> None:
    result = explain("--config", str(config), *args)
    assert result.returncode == 2
    assert message in result.stderr


def test_policies_that_do_not_load_exit_2(tmp_path: Path) -> None:
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "p.yaml").write_text("id: p\nblock:\n  - http://x.example/\n")
    config = write_config(tmp_path, {"upstreams": [], "policies": ["policies/*.yaml"]})
    result = explain("--config", str(config), "x.example")
    assert result.returncode == 2
    assert f"{tmp_path / 'policies' / 'p.yaml'}:3:5: error:" in result.stderr
    assert "sinkhole check" in result.stderr


def test_a_followed_policy_cname_is_shown_as_the_client_gets_it(tmp_path: Path) -> None:
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "r.yaml").write_text(
        "id: r\nreference: R1\nblock:\n"
        "  - {name: two.example, redirect: {cname: safe.example}}\n"
        "  - {name: safe.example, redirect: {cname: forcesafe.example}}\n"
        "  - {name: to-blocked.example, redirect: {cname: blocked.example}}\n"
        "  - blocked.example\n"
    )
    settings = standard_settings(["127.0.0.1:5301"])
    settings["listen"] = ["127.0.0.1:5300"]
    config = write_config(tmp_path, settings)
    chain = explained(config, "two.example")["answer"]["udp"]
    assert [rr.split()[-1] for rr in chain["answer"]] == ["safe.example.", "forcesafe.example."]
    assert chain["then"].startswith("then forcesafe.example A is resolved")
    blocked = explained(config, "to-blocked.example")["answer"]["udp"]
    assert [rr.split()[-1] for rr in blocked["answer"]] == ["blocked.example.", WARNING_IPV4]
    assert "then" not in blocked
