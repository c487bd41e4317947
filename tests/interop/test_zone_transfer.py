"""The resolver as a secondary of a real RPZ primary (BIND 9): AXFR, NOTIFY and IXFR, TSIG,
a primary that is down, expiry, and transfers done once for several workers."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.opcode
import dns.query
import dns.rcode
import dns.rdatatype
import pytest
from support.procs import Sinkhole, SinkholeFactory, bound_pair

from interop.primary import ZONE, BindPrimary, new_secret, zone_text
from interop.secondaries import Fleet, zone_entry

pytestmark = [pytest.mark.blackbox, pytest.mark.system("named", "nsupdate")]

NAMES = ["bad.test", "*.wild.test", "gone.test"]
TRANSFER_WAIT = 10.0  # generous: on loopback a transfer takes milliseconds


class Lab:
    """A primary, sinkhole servers and their files, all under one temp directory."""

    def __init__(self, root: Path, factory: SinkholeFactory) -> None:
        self.root = root
        self.fleet = Fleet(factory)
        self.primaries: list[BindPrimary] = []
        self.secret = new_secret()
        self.secret_file = root / "xfr.secret"
        self.secret_file.write_text(self.secret + "\n")

    def primary(self, notify: list[tuple[str, int]], names: list[str] = NAMES) -> BindPrimary:
        primary = BindPrimary(
            self.root / f"named-{len(self.primaries)}", names, notify, self.secret
        )
        self.primaries.append(primary)
        return primary

    def close(self) -> list[str]:
        problems = self.fleet.close()
        for primary in self.primaries:
            primary.stop_named()
        return problems


@pytest.fixture
def lab(tmp_path: Path, sinkhole_factory: SinkholeFactory) -> Iterator[Lab]:
    lab = Lab(tmp_path, sinkhole_factory)
    yield lab
    problems = lab.close()
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


def events_after(server: Sinkhole, event: str, start: int) -> list[dict[str, Any]]:
    return [e for e in server.events()[start:] if e.get("event") == event]


def answer(server: Sinkhole, name: str) -> str:
    """How the server answers ``name`` A: "NXDOMAIN", or the rcode and addresses."""
    reply = dns.query.udp(dns.message.make_query(name, "A"), server.host, 2.0, server.port)
    rcode = dns.rcode.to_text(reply.rcode())
    addresses = sorted(r.to_text() for rrset in reply.answer for r in rrset)
    return rcode if rcode != "NOERROR" else f"NOERROR {' '.join(addresses)}"


BLOCKED = "NXDOMAIN"  # the zone rewrites its names with CNAME . (RPZ NXDOMAIN)
FORWARDED = "NOERROR 198.51.100.7"  # the fake upstream's answer: not blocked


def enforced_within(server: Sinkhole, name: str, expected: str, timeout: float) -> float:
    """Seconds until ``server`` answers ``name`` as ``expected`` (fails after ``timeout``)."""
    t0 = time.monotonic()
    while True:
        got = answer(server, name)
        if got == expected:
            return time.monotonic() - t0
        assert time.monotonic() - t0 < timeout, f"{name}: {got}, expected {expected}"
        time.sleep(0.005)


def names_in(copy: Path) -> set[str]:
    """Owner names of the CNAME records in a zone copy, relative to ZONE."""
    found = set()
    for line in copy.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[3] == "CNAME":
            found.add(parts[0].removesuffix("." + ZONE))
    return found


def test_initial_axfr_writes_the_copy_and_reloads(lab: Lab) -> None:
    port = lab.fleet.port()
    primary = lab.primary([("127.0.0.1", port)])
    copy = lab.root / "copies" / "rpz.example.zone"
    server = lab.fleet.start("s", [zone_entry(copy, primary, lab.secret_file)], port)
    transferred = server.wait_event("zone_transferred", TRANSFER_WAIT)
    assert transferred["zone"] == ZONE
    assert transferred["kind"] == "axfr"
    assert transferred["serial"] == 1
    assert transferred["records"] == 2 + len(NAMES)  # SOA, NS and the names
    assert transferred["primary"] == primary.endpoint
    assert isinstance(transferred["duration_ms"], float)
    assert names_in(copy) == set(NAMES)
    assert copy.read_text().startswith(f"; sinkhole: {ZONE} serial 1, axfr from {primary.endpoint}")
    # The change is applied: a policy reload follows the transfer.
    reloaded = server.wait_event("policy_reloaded", TRANSFER_WAIT)
    assert reloaded["timestamp"] >= transferred["timestamp"]
    assert [p.name for p in copy.parent.iterdir()] == [copy.name]  # no temp file left
    # The zone's names are blocked, everything else is forwarded as before.
    assert answer(server, "bad.test") == BLOCKED
    assert answer(server, "any.wild.test") == BLOCKED
    assert answer(server, "gone.test") == BLOCKED
    assert answer(server, "fine.test") == FORWARDED


def test_notify_brings_additions_and_removals_by_ixfr(lab: Lab) -> None:
    port = lab.fleet.port()
    primary = lab.primary([("127.0.0.1", port)])
    copy = lab.root / "copies" / "rpz.example.zone"
    server = lab.fleet.start("s", [zone_entry(copy, primary, lab.secret_file)], port)
    server.wait_event("zone_transferred", TRANSFER_WAIT)
    server.wait_event("policy_reloaded", TRANSFER_WAIT)
    assert answer(server, "gone.test") == BLOCKED
    assert answer(server, "added.test") == FORWARDED

    start = server.mark()
    t0 = time.monotonic()
    serial = primary.update(add=["added.test"], delete=["gone.test"])
    updated = time.monotonic()
    blocking = enforced_within(server, "added.test", BLOCKED, 5.0)  # within seconds
    assert answer(server, "gone.test") == FORWARDED  # the removal too, in the same IXFR
    notify = server.wait_event("notify_received", TRANSFER_WAIT, start)
    assert notify["zone"] == ZONE and notify["client"] == "127.0.0.1"
    assert notify["serial"] == serial
    transferred = server.wait_event("zone_transferred", TRANSFER_WAIT, start)
    seen_transfer = time.monotonic()
    assert transferred["kind"] == "ixfr" and transferred["serial"] == serial
    assert transferred["reason"] == "notify"
    server.wait_event("policy_reloaded", TRANSFER_WAIT, start)
    seen_reload = time.monotonic()
    assert names_in(copy) == {"bad.test", "*.wild.test", "added.test"}
    assert answer(server, "bad.test") == BLOCKED  # the rest of the zone is still there
    print(
        f"\nNOTIFY to IXFR applied: nsupdate took {1000 * (updated - t0):.0f} ms; "
        f"the added name was blocked {1000 * blocking:.0f} ms after it returned "
        f"(transfer logged at +{1000 * (seen_transfer - updated):.0f} ms, reload at "
        f"+{1000 * (seen_reload - updated):.0f} ms; transfer {transferred['duration_ms']} ms)"
    )

    # A second change, right away: again incremental.
    start = server.mark()
    serial = primary.update(add=["later.test"])
    transferred = server.wait_event("zone_transferred", TRANSFER_WAIT, start)
    assert transferred["kind"] == "ixfr" and transferred["serial"] == serial
    assert "later.test" in names_in(copy)
    enforced_within(server, "later.test", BLOCKED, 5.0)


def test_primary_without_ixfr_falls_back_to_a_full_transfer(lab: Lab) -> None:
    port = lab.fleet.port()
    primary = lab.primary([("127.0.0.1", port)])
    copy = lab.root / "copies" / "rpz.example.zone"
    server = lab.fleet.start("s", [zone_entry(copy, primary, lab.secret_file)], port)
    server.wait_event("zone_transferred", TRANSFER_WAIT)
    server.stop()
    primary.stop_named()
    # The same zone from a primary that answers IXFR with the whole zone.
    port = lab.fleet.port()
    primary = BindPrimary(
        lab.root / "named-noixfr",
        [*NAMES, "more.test"],
        [("127.0.0.1", port)],
        lab.secret,
        serial=5,
        provide_ixfr=False,
    )
    lab.primaries.append(primary)
    server = lab.fleet.start("s2", [zone_entry(copy, primary, lab.secret_file)], port)
    transferred = server.wait_event("zone_transferred", TRANSFER_WAIT)
    assert transferred["kind"] == "axfr" and transferred["serial"] == 5
    assert "more.test" in names_in(copy)
    enforced_within(server, "more.test", BLOCKED, 5.0)


def test_wrong_tsig_key_changes_nothing(lab: Lab) -> None:
    port = lab.fleet.port()
    primary = lab.primary([("127.0.0.1", port)])
    copy = lab.root / "copies" / "rpz.example.zone"
    copy.parent.mkdir()
    copy.write_text(zone_text(0, ["old.test"]))  # an older copy than the primary's
    before = copy.read_bytes()
    wrong = lab.root / "wrong.secret"
    wrong.write_text(new_secret())
    server = lab.fleet.start("s", [zone_entry(copy, primary, wrong)], port)
    failed = server.wait_event("zone_transfer_failed", TRANSFER_WAIT)
    assert failed["zone"] == ZONE and failed["primary"] == primary.endpoint
    assert "TSIG" in failed["error"]
    # A NOTIFY makes it try again: rejected again, nothing changes.
    start = server.mark()
    primary.update(add=["new.test"])
    server.wait_event("notify_received", TRANSFER_WAIT, start)
    failed = server.wait_event("zone_transfer_failed", TRANSFER_WAIT, start)
    assert "TSIG" in failed["error"]
    assert copy.read_bytes() == before
    assert not server.events("zone_transferred")
    assert not server.events("policy_reloaded")
    assert answer(server, "old.test") == BLOCKED  # the saved copy is still enforced
    assert answer(server, "new.test") == FORWARDED
    # Without a copy, nothing is written either.
    missing = lab.root / "copies" / "none.zone"
    other = lab.fleet.start("s2", [zone_entry(missing, primary, wrong)], lab.fleet.port())
    assert "TSIG" in other.wait_event("zone_transfer_failed", TRANSFER_WAIT)["error"]
    assert not missing.exists()
    assert sorted(p.name for p in copy.parent.iterdir()) == [copy.name]


@pytest.fixture
def silent_primary() -> Iterator[str]:
    """A UDP and TCP port on loopback that accepts but never answers: a primary that hangs."""
    udp, tcp, port = bound_pair()
    yield f"127.0.0.1:{port}"
    udp.close()
    tcp.close()


def test_primary_down_at_start_the_saved_copy_is_enforced_at_once(
    lab: Lab, silent_primary: str
) -> None:
    copy = lab.root / "copies" / "rpz.example.zone"
    copy.parent.mkdir()
    copy.write_text(zone_text(7, ["saved.test"]))
    before = copy.read_bytes()
    t0 = time.monotonic()
    server = lab.fleet.start(
        "s", [zone_entry(copy, silent_primary, lab.secret_file)], lab.fleet.port()
    )
    started_after = time.monotonic() - t0
    # Serving began while the primary had not answered (its SOA query takes seconds to fail),
    # with the saved copy enforced.
    assert answer(server, "saved.test") == BLOCKED
    assert not server.events("zone_transfer_failed")
    loaded = server.wait_event("zone_copy_loaded", TRANSFER_WAIT)
    assert loaded["serial"] == 7
    failed = server.wait_event("zone_transfer_failed", TRANSFER_WAIT)
    assert failed["error"] == "timed out" and failed["primary"] == silent_primary
    assert copy.read_bytes() == before
    assert answer(server, "saved.test") == BLOCKED
    assert not server.events("zone_expired")  # the copy was written just now
    print(f"\nstarted with the primary down in {1000 * started_after:.0f} ms")


def test_expired_copy_kept_or_dropped(lab: Lab, silent_primary: str) -> None:
    old = time.time() - 2 * 86400  # the SOA expire is one day
    keep = lab.root / "copies" / "keep.zone"
    drop = lab.root / "copies" / "drop.zone"
    keep.parent.mkdir()
    for path in (keep, drop):
        path.write_text(zone_text(3, ["stale.test"]))
        os.utime(path, (old, old))
    server = lab.fleet.start("keep", [zone_entry(keep, silent_primary, None)], lab.fleet.port())
    expired = server.wait_event("zone_expired", TRANSFER_WAIT)
    assert expired["level"] == "error" and expired["on_expire"] == "keep"
    assert keep.exists()
    assert answer(server, "stale.test") == BLOCKED
    server = lab.fleet.start(
        "drop", [zone_entry(drop, silent_primary, None, on_expire="drop")], lab.fleet.port()
    )
    # Dropped before the policy was first built: never enforced.
    events = [e["event"] for e in server.events()]
    assert events.index("zone_dropped") < events.index("started")
    assert not drop.exists()
    assert drop.with_name("drop.zone.expired").exists()
    assert answer(server, "stale.test") == FORWARDED


def send_notify(server: Sinkhole, zone: str, source: str) -> dns.message.Message:
    request = dns.message.make_query(zone, dns.rdatatype.SOA)
    request.flags = dns.flags.AA
    request.set_opcode(dns.opcode.NOTIFY)
    return dns.query.udp(request, server.host, timeout=2.0, port=server.port, source=source)


def test_notify_answers(lab: Lab) -> None:
    port = lab.fleet.port()
    primary = lab.primary([("127.0.0.1", port)])
    copy = lab.root / "copies" / "rpz.example.zone"
    server = lab.fleet.start("s", [zone_entry(copy, primary, lab.secret_file)], port)
    server.wait_event("zone_transferred", TRANSFER_WAIT)

    answer = send_notify(server, ZONE, "127.0.0.1")  # the primary's address
    assert answer.rcode() == dns.rcode.NOERROR and answer.flags & dns.flags.AA
    assert answer.opcode() == dns.opcode.NOTIFY
    assert answer.question[0].name.to_text() == ZONE
    answer = send_notify(server, ZONE, "127.0.0.2")  # not a primary
    assert answer.rcode() == dns.rcode.REFUSED and not answer.flags & dns.flags.AA
    refused = server.wait_event("notify_refused", TRANSFER_WAIT)
    assert refused["client"] == "127.0.0.2" and refused["zone"] == ZONE
    answer = send_notify(server, "unknown.example.", "127.0.0.1")
    assert answer.rcode() == dns.rcode.NOTAUTH
    # Ordinary queries are unaffected.
    reply = dns.query.udp(
        dns.message.make_query("yaml-blocked.test", "A"), server.host, 2.0, server.port
    )
    assert reply.rcode() == dns.rcode.NOERROR and reply.answer


def test_workers_transfer_once_and_all_reload(lab: Lab) -> None:
    port = lab.fleet.port()
    primary = lab.primary([("127.0.0.1", port)])
    copy = lab.root / "copies" / "rpz.example.zone"
    server = lab.fleet.start("s", [zone_entry(copy, primary, lab.secret_file)], port, workers=2)
    server.wait_event("workers_ready", TRANSFER_WAIT)
    first = server.wait_event("zone_transferred", TRANSFER_WAIT)
    assert "worker" not in first  # the supervisor transferred
    server.wait_event("workers_reloaded", TRANSFER_WAIT)

    start = server.mark()
    serial = primary.update(add=["added.test"])
    notify = server.wait_event("notify_received", TRANSFER_WAIT, start)
    assert notify["worker"] in (0, 1)  # a worker got it and handed it on
    transferred = server.wait_event("zone_transferred", TRANSFER_WAIT, start)
    assert transferred["kind"] == "ixfr" and transferred["serial"] == serial
    server.wait_event("workers_reloaded", TRANSFER_WAIT, start)
    reloads = events_after(server, "policy_reloaded", start)
    assert sorted(e["worker"] for e in reloads) == [0, 1]
    # Every worker enforces it: many queries, each from a new source port, both workers.
    answers = {answer(server, "added.test") for _ in range(40)}
    assert answers == {BLOCKED}
    assert len(server.events("zone_transferred")) == 2  # once per change, not per worker


def test_refresh_timer_picks_up_a_change_without_notify(lab: Lab) -> None:
    # No NOTIFY at all: the SOA refresh (5 s, the shortest the resolver accepts) finds it.
    primary = BindPrimary(lab.root / "named-quiet", NAMES, [], lab.secret, refresh=5, retry=5)
    lab.primaries.append(primary)
    copy = lab.root / "copies" / "rpz.example.zone"
    server = lab.fleet.start("s", [zone_entry(copy, primary, lab.secret_file)], lab.fleet.port())
    server.wait_event("zone_transferred", TRANSFER_WAIT)
    start = server.mark()
    serial = primary.update(add=["polled.test"])
    transferred = server.wait_event("zone_transferred", 5 + TRANSFER_WAIT, start)
    assert transferred["reason"] == "refresh" and transferred["serial"] == serial
    assert not events_after(server, "notify_received", start)
    enforced_within(server, "polled.test", BLOCKED, 5.0)


def test_retry_timer_after_the_primary_comes_back(lab: Lab) -> None:
    # A saved copy (SOA retry 5 s), the primary not running yet: the first check fails,
    # the retry after 5 s finds the primary and transfers.
    port = lab.fleet.port()
    copy = lab.root / "copies" / "rpz.example.zone"
    copy.parent.mkdir()
    copy.write_text(zone_text(0, ["old.test"], refresh=3600, retry=5))
    server = lab.fleet.start(
        "s", [zone_entry(copy, f"127.0.0.1:{port}", lab.secret_file)], lab.fleet.port()
    )
    failed = server.wait_event("zone_transfer_failed", TRANSFER_WAIT)
    assert failed["reason"] == "start"
    primary = BindPrimary(lab.root / "named-late", NAMES, [], lab.secret, port=port)
    lab.primaries.append(primary)
    transferred = server.wait_event("zone_transferred", 5 + TRANSFER_WAIT)
    assert transferred["reason"] == "retry" and transferred["serial"] == 1
    assert transferred["kind"] == "axfr"  # BIND has no journal from serial 0: whole zone
    enforced_within(server, "bad.test", BLOCKED, 5.0)
    assert answer(server, "old.test") == FORWARDED
