"""The secondary at run time against fakes: the follower's decisions with a fake primary
and a fake clock (an event loop, no network), and transfers from a scripted primary on
loopback that sends what BIND never does (broken IXFRs, stale serials, unsigned
answers to a signed query)."""

from __future__ import annotations

import asyncio
import os
import struct
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import dns.tsigkeyring
import pytest
from support.procs import bound_pair

from resolver.core.endpoint import Endpoint
from resolver.sources.config_sections import TsigKey, ZoneConfig
from resolver.zones.errors import TransferFailed
from resolver.zones.fetch import Checked, Fetcher
from resolver.zones.follower import Secondary, ZoneFollower
from resolver.zones.records import Records
from resolver.zones.store import peek_soa, write_copy
from resolver.zones.timers import EXPIRED_REMINDER

from .test_secondary import (
    OTHER_PRIMARY,
    PRIMARY,
    SECRET,
    ZONE,
    ZONE_TEXT,
    FakeClock,
    Log,
    key_file,
    records_of,
    zone_config,
)


class FakeFetcher:
    """Stands in for Fetcher: answers from a script, one entry per call."""

    script: ClassVar[list[Any]] = []
    calls: ClassVar[list[tuple[Endpoint, int | None]]] = []

    def __init__(self, config: ZoneConfig, primary: Endpoint) -> None:
        self.config = config
        self.primary = primary

    def check(self, copy: Records | None, saved: Any) -> Checked:
        serial = int(saved.serial) if saved is not None else None
        FakeFetcher.calls.append((self.primary, serial))
        step = FakeFetcher.script.pop(0)
        if isinstance(step, Exception):
            raise step
        zone = records_of(self.config.file.parent, ZONE_TEXT.format(serial=step), "next.zone")
        assert zone.soa is not None
        if step == serial:
            return Checked(copy, "none", zone.soa)
        write_copy(self.config, zone, self.primary, "axfr")
        return Checked(zone, "axfr", zone.soa, len(zone), 0.01)


@pytest.fixture
def fake_fetcher(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[FakeFetcher]]:
    FakeFetcher.script = []
    FakeFetcher.calls = []
    monkeypatch.setattr("resolver.zones.follower.Fetcher", FakeFetcher)
    yield FakeFetcher


async def settle(follower: ZoneFollower) -> None:
    for _ in range(200):
        await asyncio.sleep(0.005)
        if not follower.busy:
            return
    raise AssertionError("the check did not finish")


def test_first_primary_failing_second_succeeds(
    tmp_path: Path, fake_fetcher: type[FakeFetcher]
) -> None:
    log, clock, changes = Log(), FakeClock(), []
    config = zone_config(tmp_path)
    fake_fetcher.script = [TransferFailed("timed out"), 5]

    async def run() -> ZoneFollower:
        follower = ZoneFollower(config, lambda: changes.append(1), log, clock)
        follower.prepare()
        follower.start()
        await settle(follower)
        follower.close()
        return follower

    follower = asyncio.run(run())
    assert [p for p, _ in fake_fetcher.calls] == [PRIMARY, OTHER_PRIMARY]
    failed = [f for _, e, f in log.records if e == "zone_transfer_failed"]
    assert failed == [
        {"zone": ZONE, "primary": str(PRIMARY), "error": "timed out", "reason": "start"}
    ]
    transferred = [f for _, e, f in log.records if e == "zone_transferred"]
    assert len(transferred) == 1 and transferred[0]["serial"] == 5
    assert transferred[0]["kind"] == "axfr" and transferred[0]["records"] == 4
    assert changes == [1]
    assert follower.serial == 5
    assert follower.timer.next_check == clock.now + 3600  # the SOA refresh


def test_all_primaries_failing_schedules_a_retry_and_changes_nothing(
    tmp_path: Path, fake_fetcher: type[FakeFetcher]
) -> None:
    log, clock, changes = Log(), FakeClock(), []
    config = zone_config(tmp_path)
    config.file.write_text(ZONE_TEXT.format(serial=3))
    before = config.file.read_bytes()
    fake_fetcher.script = [TransferFailed("TSIG rejected"), TransferFailed("timed out")]

    async def run() -> ZoneFollower:
        follower = ZoneFollower(config, lambda: changes.append(1), log, clock)
        follower.prepare()
        follower.start()
        await settle(follower)
        follower.close()
        return follower

    follower = asyncio.run(run())
    assert [s for _, s in fake_fetcher.calls] == [3, 3]  # IXFR base: the saved serial
    assert log.events().count("zone_transfer_failed") == 2
    assert "zone_copy_loaded" in log.events()
    assert changes == [] and config.file.read_bytes() == before
    assert follower.timer.next_check == clock.now + 600  # the SOA retry
    assert follower.timer.failures == 1


def test_notify_during_a_check_runs_one_more_check(
    tmp_path: Path, fake_fetcher: type[FakeFetcher]
) -> None:
    log, clock, changes = Log(), FakeClock(), []
    config = zone_config(tmp_path, primaries=(PRIMARY,))
    fake_fetcher.script = [1, 2]

    async def run() -> None:
        follower = ZoneFollower(config, lambda: changes.append(1), log, clock)
        follower.start()
        assert follower.busy
        follower.notify()
        follower.notify()  # coalesced with the one before
        await settle(follower)
        follower.close()

    asyncio.run(run())
    assert len(fake_fetcher.calls) == 2
    reasons = [f["reason"] for _, e, f in log.records if e == "zone_transferred"]
    assert reasons == ["start", "notify"]
    assert changes == [1, 1]


def test_up_to_date_touches_the_copy_and_reloads_nothing(
    tmp_path: Path, fake_fetcher: type[FakeFetcher]
) -> None:
    log, clock, changes = Log(), FakeClock(), []
    config = zone_config(tmp_path, primaries=(PRIMARY,))
    config.file.write_text(ZONE_TEXT.format(serial=9))
    os.utime(config.file, (1000.0, 1000.0))
    fake_fetcher.script = [9]

    async def run() -> None:
        follower = ZoneFollower(config, lambda: changes.append(1), log, clock)
        follower.prepare()
        assert follower.timer.confirmed == 1000.0  # dated by the file
        follower.start()
        await settle(follower)
        follower.close()

    asyncio.run(run())
    assert changes == [] and "zone_transferred" not in log.events()
    assert config.file.stat().st_mtime > 1000.0  # confirmed now, across restarts too


def test_expired_copy_with_keep_stays_and_is_logged_as_error(
    tmp_path: Path, fake_fetcher: type[FakeFetcher]
) -> None:
    log, changes = Log(), []
    config = zone_config(tmp_path, primaries=(PRIMARY,))
    config.file.write_text(ZONE_TEXT.format(serial=4))
    os.utime(config.file, (1000.0, 1000.0))
    clock = FakeClock(1000.0 + 86401)
    fake_fetcher.script = [TransferFailed("connection refused")]

    async def run() -> ZoneFollower:
        follower = ZoneFollower(config, lambda: changes.append(1), log, clock)
        follower.prepare()
        follower.start()
        await settle(follower)
        clock.now += 100
        follower._poll_expiry(clock.now)  # no reminder yet
        clock.now += EXPIRED_REMINDER
        follower._poll_expiry(clock.now)
        follower.close()
        return follower

    asyncio.run(run())
    expired = [(lv, f) for lv, e, f in log.records if e == "zone_expired"]
    assert [lv for lv, _ in expired] == ["error", "error"]
    assert expired[0][1]["on_expire"] == "keep" and expired[0][1]["serial"] == 4
    assert config.file.exists() and changes == []


def test_secondary_checks_notify_sources_and_follows_config_changes(
    tmp_path: Path, fake_fetcher: type[FakeFetcher]
) -> None:
    log = Log()
    config = zone_config(tmp_path, primaries=(PRIMARY,))
    plain = ZoneConfig("local.example.", tmp_path / "local.zone")
    fake_fetcher.script = [1, 2]

    async def run() -> Secondary:
        follower_set = Secondary([config, plain], lambda: None, log, FakeClock())
        assert list(follower_set.followers) == [ZONE]  # only zones with primaries
        follower_set.prepare()
        follower_set.start()
        await settle(follower_set.followers[ZONE])
        assert not follower_set.notify(ZONE, "198.51.100.9")
        assert not follower_set.notify("other.example.", "192.0.2.53")
        assert follower_set.notify(ZONE, "192.0.2.53")
        await settle(follower_set.followers[ZONE])
        follower_set.reconfigure([plain])
        assert follower_set.followers == {}
        follower_set.close()
        return follower_set

    asyncio.run(run())
    assert log.events().count("notify_refused") == 2
    assert len(fake_fetcher.calls) == 2


# --- Fetcher against a scripted primary on loopback ----------------------------------------


class ScriptedPrimary:
    """A primary on loopback that answers SOA over UDP and one transfer script over TCP:
    ``answers[rdtype]`` is a list of messages (lists of RR lines) or an rcode."""

    def __init__(self, serial: int, answers: dict[str, Any], sign: bool = True) -> None:
        self.serial = serial
        self.answers = answers
        self.sign = sign
        self.keyring = dns.tsigkeyring.from_text({"xfr-key": ("hmac-sha256", SECRET)})
        self.asked: list[str] = []
        self.udp, self.tcp, self.port = bound_pair()
        self.tcp.settimeout(0.2)
        self.udp.settimeout(0.2)
        self.stop = threading.Event()
        self.threads = [
            threading.Thread(target=self._serve_udp, daemon=True),
            threading.Thread(target=self._serve_tcp, daemon=True),
        ]
        for thread in self.threads:
            thread.start()

    def _parse(self, data: bytes) -> dns.message.Message:
        return dns.message.from_wire(data, keyring=self.keyring)

    def _soa(self, serial: int) -> dns.rrset.RRset:
        return dns.rrset.from_text(
            ZONE, 300, "IN", "SOA", f"ns.{ZONE} h.{ZONE} {serial} 3600 600 86400 300"
        )

    def _serve_udp(self) -> None:
        while not self.stop.is_set():
            try:
                data, peer = self.udp.recvfrom(4096)
            except OSError:
                continue
            query = self._parse(data)
            reply = dns.message.make_response(query)
            reply.flags |= dns.flags.AA
            reply.answer.append(self._soa(self.serial))
            self.udp.sendto(reply.to_wire(), peer)

    def _serve_tcp(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.tcp.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(2.0)
                size = struct.unpack("!H", conn.recv(2))[0]
                data = b""
                while len(data) < size:
                    data += conn.recv(size - len(data))
                query = self._parse(data)
                kind = dns.rdatatype.to_text(query.question[0].rdtype)
                self.asked.append(kind)
                script = self.answers.get(kind, dns.rcode.REFUSED)
                if isinstance(script, int):
                    reply = dns.message.make_response(query)
                    reply.set_rcode(dns.rcode.Rcode(script))
                    wires = [reply.to_wire()]
                else:
                    wires = []
                    ctx = None
                    for index, lines in enumerate(script):
                        reply = dns.message.make_response(query)
                        if not self.sign:
                            reply.keyring = None
                            reply.tsig = None
                        for line in lines:
                            reply.answer.append(dns.rrset.from_text(*line.split(None, 4)))
                        if index and self.sign:
                            reply.request_mac = b""
                        wire = (
                            reply.to_wire(multi=True, tsig_ctx=ctx)
                            if self.sign
                            else reply.to_wire()
                        )
                        ctx = reply.tsig_ctx if self.sign else None
                        wires.append(wire)
                for wire in wires:
                    conn.sendall(struct.pack("!H", len(wire)) + wire)

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(2)
        self.udp.close()
        self.tcp.close()


def soa_line(serial: int) -> str:
    return f"{ZONE} 300 IN SOA ns.{ZONE} h.{ZONE} {serial} 3600 600 86400 300"


def rr(owner: str, target: str = ".") -> str:
    return f"{owner}.{ZONE} 300 IN CNAME {target}"


@pytest.fixture
def scripted() -> Iterator[list[ScriptedPrimary]]:
    started: list[ScriptedPrimary] = []
    yield started
    for primary in started:
        primary.close()


def fetch(
    tmp_path: Path, primary: ScriptedPrimary, serial: int | None
) -> tuple[ZoneConfig, Fetcher, Any]:
    tsig = TsigKey("xfr-key", "hmac-sha256", key_file(tmp_path))
    config = ZoneConfig(ZONE, tmp_path / "copy.zone", (Endpoint("127.0.0.1", primary.port),), tsig)
    saved = None
    if serial is not None:
        config.file.write_text(ZONE_TEXT.format(serial=serial))
        saved = peek_soa(config)
    return config, Fetcher(config, config.primaries[0]), saved


def test_broken_ixfr_falls_back_to_axfr(tmp_path: Path, scripted: list[ScriptedPrimary]) -> None:
    broken = [[soa_line(2), soa_line(1), rr("not-in-our-copy.test"), soa_line(2), soa_line(2)]]
    axfr = [[soa_line(2), f"{ZONE} 300 IN NS localhost.", rr("new.test")], [soa_line(2)]]
    primary = ScriptedPrimary(2, {"IXFR": broken, "AXFR": axfr})
    scripted.append(primary)
    config, fetcher, saved = fetch(tmp_path, primary, 1)
    checked = fetcher.check(None, saved)
    assert primary.asked == ["IXFR", "AXFR"]
    assert checked.kind == "axfr" and checked.serial == 2
    assert "deletes a record we do not have" in checked.ixfr_error
    assert "new.test.rpz.example. 300 IN CNAME ." in config.file.read_text()


def test_good_ixfr_is_applied_to_the_saved_copy(
    tmp_path: Path, scripted: list[ScriptedPrimary]
) -> None:
    diff = [[soa_line(2), soa_line(1), rr("bad.test"), soa_line(2), rr("added.test"), soa_line(2)]]
    primary = ScriptedPrimary(2, {"IXFR": diff})
    scripted.append(primary)
    config, fetcher, saved = fetch(tmp_path, primary, 1)
    checked = fetcher.check(None, saved)
    assert checked.kind == "ixfr" and checked.serial == 2 and checked.zone is not None
    text = config.file.read_text()
    assert "added.test.rpz.example." in text and "bad.test.rpz.example." not in text
    assert "*.wild.test.rpz.example. 300 IN CNAME ." in text  # untouched records stay


def test_ixfr_refused_falls_back_and_a_primary_without_anything_fails(
    tmp_path: Path, scripted: list[ScriptedPrimary]
) -> None:
    axfr = [[soa_line(3), f"{ZONE} 300 IN NS localhost.", soa_line(3)]]
    primary = ScriptedPrimary(3, {"IXFR": dns.rcode.NOTIMP, "AXFR": axfr})
    scripted.append(primary)
    config, fetcher, saved = fetch(tmp_path, primary, 1)
    checked = fetcher.check(None, saved)
    assert checked.kind == "axfr" and "NOTIMP" in checked.ixfr_error
    nothing = ScriptedPrimary(3, {"IXFR": dns.rcode.REFUSED, "AXFR": dns.rcode.REFUSED})
    scripted.append(nothing)
    (tmp_path / "b").mkdir()
    config, fetcher, saved = fetch(tmp_path / "b", nothing, 1)
    before = config.file.read_bytes()
    with pytest.raises(TransferFailed, match="REFUSED"):
        fetcher.check(None, saved)
    assert config.file.read_bytes() == before


def test_transfers_that_change_nothing(tmp_path: Path, scripted: list[ScriptedPrimary]) -> None:
    # The same serial: nothing transferred, nothing written.
    same = ScriptedPrimary(5, {})
    scripted.append(same)
    config, fetcher, saved = fetch(tmp_path, same, 5)
    before = config.file.read_bytes()
    checked = fetcher.check(None, saved)
    assert checked.kind == "none" and same.asked == []
    assert config.file.read_bytes() == before
    # An older serial on the primary (RFC 1982): refused, nothing written.
    older = ScriptedPrimary(4, {})
    scripted.append(older)
    config, fetcher, saved = fetch(tmp_path, older, 5)
    with pytest.raises(TransferFailed, match="not newer"):
        fetcher.check(None, saved)
    assert config.file.read_bytes() == before and older.asked == []
    # An AXFR that brings an older serial than the copy: refused.
    stale = ScriptedPrimary(6, {"IXFR": dns.rcode.NOTIMP, "AXFR": [[soa_line(4), soa_line(4)]]})
    scripted.append(stale)
    config, fetcher, saved = fetch(tmp_path, stale, 5)
    with pytest.raises(TransferFailed, match="not newer"):
        fetcher.check(None, saved)
    assert config.file.read_bytes() == before


def test_unsigned_transfer_is_rejected_when_tsig_is_configured(
    tmp_path: Path, scripted: list[ScriptedPrimary]
) -> None:
    axfr = [[soa_line(1), f"{ZONE} 300 IN NS localhost.", rr("evil.test"), soa_line(1)]]
    primary = ScriptedPrimary(1, {"AXFR": axfr}, sign=False)
    scripted.append(primary)
    config, fetcher, saved = fetch(tmp_path, primary, None)
    with pytest.raises(TransferFailed, match="TSIG"):
        fetcher.check(None, saved)
    assert not config.file.exists()
    assert list(tmp_path.glob(".copy.zone.*")) == []


def test_a_wall_clock_step_back_does_not_delay_the_refresh(
    tmp_path: Path, fake_fetcher: type[FakeFetcher]
) -> None:
    log, clock = Log(), FakeClock()
    config = zone_config(tmp_path, primaries=(PRIMARY,))
    fake_fetcher.script = [1, 1]

    async def run() -> None:
        follower = ZoneFollower(config, lambda: None, log, clock)
        follower.start()
        await settle(follower)
        follower.timer.next_check = clock.now + 0.05  # due in 50 ms of loop time
        follower._schedule()
        clock.now -= 86400  # the wall clock steps back a day
        for _ in range(100):
            await asyncio.sleep(0.01)
            if len(fake_fetcher.calls) == 2 and not follower.busy:
                break
        follower.close()

    asyncio.run(run())
    assert len(fake_fetcher.calls) == 2  # the refresh ran on time all the same
