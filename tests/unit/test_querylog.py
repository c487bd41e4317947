"""The query log's lines: exactly what structlog's JSON renderer would write, built fast."""

from __future__ import annotations

import datetime as dt
import gc
import io
import ipaddress
import json
import re
from typing import Any

import dns.message
import pytest

from resolver.core import wire
from resolver.core.matcher import CompiledPolicy, Scope
from resolver.core.outcome import Outcome
from resolver.core.tally import NO_ANSWER
from resolver.core.verdict import Action, Answers, PolicyInfo, Verdict
from resolver.service import observability
from resolver.service.observability import QueryLog, json_string, write_lines

ANSWERS = Answers((ipaddress.IPv4Address("192.0.2.80"),), (), 60)
VERDICT = Verdict(PolicyInfo(id='order "17"', source="p.yaml"), Action.WARNING_PAGE, ANSWERS, 0)
POLICY = CompiledPolicy.build([(wire.text_to_name("blocked.example"), Scope.SUBTREE, VERDICT)])
STAMP = re.compile(r'"timestamp": "\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z"')


def query(name: str, qtype: str = "A") -> wire.Query:
    return wire.parse_query(dns.message.make_query(name, qtype).to_wire())


def expected(fields: dict[str, Any], worker: int | None = None) -> str:
    """The line structlog writes for log.info("query", **fields) with our processors."""
    event: dict[str, Any] = {**fields, "event": "query"}
    if worker is not None:
        event["worker"] = worker
    event |= {"level": "info", "timestamp": "T"}
    return json.dumps(event) + "\n"


def same(line: str, want: str) -> bool:
    return STAMP.sub('"timestamp": "T"', line) == want


def logged(*calls: tuple[Any, ...]) -> list[str]:
    """The lines for ``calls`` to record(), each (time, then record's arguments)."""
    times = iter([c[0] for c in calls])
    log = QueryLog("all", lambda: POLICY, clock=lambda: next(times))
    for call in calls:
        log.record(*call[1:])
    return log.lines(*log.take())


@pytest.mark.parametrize("worker", [None, 3])
def test_lines_are_what_structlog_writes(
    monkeypatch: pytest.MonkeyPatch, worker: int | None
) -> None:
    monkeypatch.setattr(observability, "_worker", worker)
    lines = logged(
        (1.5, "192.0.2.7", query("www.Blocked.example"), Outcome.BLOCKED, VERDICT, 0),
        (2.25, "2001:db8::1", query("ok.example", "AAAA"), Outcome.FORWARDED, None, 0,
         "127.0.0.1:53", 0.0012345),
        (3.0, "::1", query("gone.example", "MX"), Outcome.SERVFAIL, None, 2),
        (4.0, "::1", query("seen.example"), Outcome.CACHED, None, 3),
        (5.0, "192.0.2.7", query("blocked.example"), Outcome.BLOCKED, VERDICT, 0),
    )  # fmt: skip
    assert same(lines[0], expected(
        {"client": "192.0.2.7", "qname": "www.blocked.example", "qtype": "A",
         "outcome": "blocked", "action": "warning-page", "policy": 'order "17"',
         "rule": "blocked.example", "rcode": "NOERROR", "query_time": 1.5}, worker))  # fmt: skip
    assert same(lines[1], expected(
        {"client": "2001:db8::1", "qname": "ok.example", "qtype": "AAAA",
         "outcome": "forwarded", "rcode": "NOERROR", "upstream": "127.0.0.1:53",
         "latency_ms": 1.234, "query_time": 2.25}, worker))  # fmt: skip
    assert same(lines[2], expected(
        {"client": "::1", "qname": "gone.example", "qtype": "MX", "outcome": "servfail",
         "rcode": "SERVFAIL", "latency_ms": 0.0, "query_time": 3.0}, worker))  # fmt: skip
    assert json.loads(lines[3])["rcode"] == "NXDOMAIN"
    assert json.loads(lines[4])["rule"] == "blocked.example"


def test_records_are_not_tracked_by_the_garbage_collector() -> None:
    """Kept for a quarter of a second under load, records must not fill the old
    generation: they hold numbers, bytes and text only."""
    log = QueryLog("all", lambda: POLICY)
    log.record("192.0.2.7", query("www.blocked.example"), Outcome.BLOCKED, VERDICT, 0)
    log.record("::1", query("ok.example"), Outcome.FORWARDED, None, 0, "127.0.0.1:53", 0.001)
    gc.collect()
    records, verdicts = log.take()
    assert not any(gc.is_tracked(r) for r in records)
    assert verdicts == {id(VERDICT): VERDICT}


@pytest.mark.parametrize(
    "text", ["plain.example", 'quo"te', "back\\slash", "tab\there", "caf\u00e9", "\x00", ""]
)
def test_json_string_is_what_json_dumps_writes(text: str) -> None:
    assert json_string(text) == json.dumps(text)


def test_names_that_need_escaping_stay_valid_json() -> None:
    name = b'\x04a"b\\\x03\x00\x01.\x07example\x00'
    header = b"\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
    q = wire.parse_query(header + name + b"\x00\x01\x00\x01")
    [line] = logged((1.0, "127.0.0.1", q, Outcome.CACHED, None, 0))
    assert json.loads(line)["qname"] == wire.name_to_text(q.qname) == r"a\"b\\.\000\001\..example"


def test_lines_are_written_whole_in_writes_of_at_most_4096_bytes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    writes: list[str] = []

    class Recorder(io.StringIO):
        def write(self, s: str) -> int:
            writes.append(s)
            return len(s)

    monkeypatch.setattr("sys.stdout", Recorder())
    lines = [f'{{"n": {i}, "pad": "{"x" * (i % 300)}"}}\n' for i in range(500)]
    write_lines(lines)
    assert "".join(writes) == "".join(lines)
    assert all(len(w) <= observability.WRITE_SIZE and w.endswith("\n") for w in writes)
    assert len(writes) < 50


def test_types_and_rcodes_without_a_mnemonic_in_their_generic_forms() -> None:
    [line] = logged((1.0, "::1", query("x.example", "TYPE65280"), Outcome.FORWARDED, None, 12))
    fields = json.loads(line)
    assert (fields["qtype"], fields["rcode"]) == ("TYPE65280", "RCODE12")
    [line] = logged((1.0, "::1", query("x.example", "HTTPS"), Outcome.FORWARDED, None, 9))
    fields = json.loads(line)
    assert (fields["qtype"], fields["rcode"]) == ("HTTPS", "NOTAUTH")


# --- privacy: how clients are shown, and sampling -----------------------------------------


def test_truncated_clients_keep_their_network_only() -> None:
    shown = observability.ClientPrivacy("truncated").shown
    assert shown("192.0.2.77") == "192.0.2.0/24"
    assert shown("2001:db8:aa:bb::1") == "2001:db8:aa::/48"
    assert shown("fe80::1%eth0") == "fe80::/48"


def test_hashed_clients_are_stable_within_a_day_and_change_with_it() -> None:
    day = [dt.date(2026, 12, 5)]
    privacy = observability.ClientPrivacy("hashed", today=lambda: day[0])
    first = privacy.shown("192.0.2.77")
    assert first is not None and re.fullmatch(r"[0-9a-f]{16}", first)
    assert privacy.shown("192.0.2.77") == first
    assert privacy.shown("192.0.2.78") != first
    day[0] = dt.date(2026, 12, 6)  # a new key for a new day: yesterday's hashes do not link
    assert privacy.shown("192.0.2.77") != first


@pytest.mark.parametrize(
    ("how", "client", "mark"),
    [
        ("truncated", '"client": "192.0.2.0/24", ', '"client_mode": "truncated"'),
        ("none", "", '"client_mode": "none"'),
    ],
)
def test_lines_say_which_mode_wrote_them(how: str, client: str, mark: str) -> None:
    log = QueryLog("blocked", lambda: POLICY, clock=lambda: 1.0, client_mode=how)
    log.record("192.0.2.7", query("blocked.example"), Outcome.BLOCKED, VERDICT, 0)
    [line] = log.lines(*log.take())
    record = json.loads(line)
    assert line.startswith("{" + client + '"qname"')
    assert mark in line and "192.0.2.7" not in line
    assert record["event"] == "query"


def test_sampling_logs_every_nth_query_that_was_not_blocked() -> None:
    log = QueryLog("all", lambda: POLICY, clock=lambda: 1.0, sample=0.25)
    for _ in range(100):
        log.record("192.0.2.7", query("www.example.com"), Outcome.FORWARDED, None, 0)
    for _ in range(3):
        log.record("192.0.2.7", query("blocked.example"), Outcome.BLOCKED, VERDICT, 0)
    lines = log.lines(*log.take())
    outcomes = [json.loads(line)["outcome"] for line in lines]
    assert outcomes.count("forwarded") == 25 and outcomes.count("blocked") == 3
    assert all(json.loads(line)["sample"] == 0.25 for line in lines)


def test_a_query_that_got_no_answer_has_no_rcode() -> None:
    [line] = logged((1.0, "::1", query("blocked.example"), Outcome.BLOCKED, VERDICT, NO_ANSWER))
    fields = json.loads(line)
    assert "rcode" not in fields and fields["action"] == "warning-page"
