"""Scale-out: two sinkhole instances following one BIND primary, behind dnsdist.

The primary notifies both; a change is enforced by both within seconds. Queries sent
through dnsdist without pause keep being answered while one instance restarts: the
unplanned way (SIGTERM; dnsdist's health check notices) and the planned way (drained
in dnsdist first). Every query is sent like a stub resolver would: up to three tries,
400 ms apart; the numbers of queries that needed a retry are measured and printed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode
import pytest
from support.procs import Sinkhole, SinkholeFactory, free_port, port_in_use, wait_until

from interop.balancer import Dnsdist
from interop.primary import ZONE, BindPrimary, new_secret
from interop.secondaries import Fleet, zone_entry

pytestmark = [pytest.mark.blackbox, pytest.mark.system("named", "nsupdate", "dnsdist")]

HOSTS = ("127.0.0.2", "127.0.0.3")
WAIT = 10.0
TRIES = 3
TRY_TIMEOUT = 0.4
SENDERS = 4  # concurrent clients, each one query at a time
PACE = 0.01  # seconds between a client's queries (about 300-400 queries a second in all)
WARNING = "192.0.2.80"


def common_port() -> int:
    """A port free on every address in HOSTS."""
    for _ in range(50):
        port = free_port(HOSTS[0])
        if all(port_in_use(host, port) is None for host in HOSTS):
            return port
    raise AssertionError("no port free on both addresses")


class Scaled:
    """A BIND primary, two sinkhole instances on HOSTS (same port) and dnsdist in front."""

    def __init__(self, root: Path, factory: SinkholeFactory) -> None:
        self.root = root
        self.fleet = Fleet(factory)
        self.port = common_port()
        secret = new_secret()
        self.secret_file = root / "xfr.secret"
        self.secret_file.write_text(secret)
        self.primary: BindPrimary | None = None
        self.balancer: Dnsdist | None = None
        self.primary = BindPrimary(
            root / "named", ["bad.test"], [(host, self.port) for host in HOSTS], secret
        )
        self.instances: list[Sinkhole] = [self.start(i) for i in range(len(HOSTS))]
        for server in self.instances:
            server.wait_event("zone_transferred", WAIT)
        self.balancer = Dnsdist(root / "dnsdist", [(host, self.port) for host in HOSTS])

    def start(self, index: int) -> Sinkhole:
        assert self.primary is not None
        copy = self.root / f"copy-{index}" / "rpz.example.zone"
        zones = [zone_entry(copy, self.primary, self.secret_file)]
        return self.fleet.start(f"instance-{index}", zones, self.port, host=HOSTS[index])

    def close(self) -> list[str]:
        problems = self.fleet.close()
        if self.balancer is not None:
            self.balancer.kill()
        if self.primary is not None:
            self.primary.stop_named()
        return problems


@pytest.fixture
def scaled(tmp_path: Path, sinkhole_factory: SinkholeFactory) -> Iterator[Scaled]:
    setup = None
    try:
        setup = Scaled(tmp_path, sinkhole_factory)
        yield setup
    finally:
        problems = setup.close() if setup is not None else []
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


def test_a_change_on_the_primary_reaches_both_instances(scaled: Scaled) -> None:
    assert scaled.primary is not None
    marks = [server.mark() for server in scaled.instances]
    t0 = time.monotonic()
    serial = scaled.primary.update(add=["scaled.test"])
    done = []
    for server, start in zip(scaled.instances, marks, strict=True):
        transferred = server.wait_event("zone_transferred", WAIT, start)
        assert transferred["serial"] == serial and transferred["kind"] == "ixfr"
        assert transferred["reason"] == "notify"
        server.wait_event("policy_reloaded", WAIT, start)
        done.append(time.monotonic() - t0)
        copy = Path(transferred["file"])
        assert f"scaled.test.{ZONE}" in copy.read_text()
        reply = dns.query.udp(
            dns.message.make_query("scaled.test", "A"), server.host, 2.0, server.port
        )
        assert reply.rcode() == dns.rcode.NXDOMAIN  # enforced by this instance
    assert max(done) < 5.0
    assert scaled.balancer is not None
    for _ in range(10):  # and through dnsdist, whichever instance it picks
        assert scaled.balancer.ask("scaled.test").rcode() == dns.rcode.NXDOMAIN
    print(f"\nchange applied by both instances {1000 * max(done):.0f} ms after the update")


@dataclass
class Load:
    """Queries sent without pause through dnsdist by SENDERS clients."""

    balancer: Dnsdist
    stop: threading.Event = field(default_factory=threading.Event)
    sent: int = 0
    retried: int = 0  # answered, but not on the first try
    unanswered: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for index in range(SENDERS):
            thread = threading.Thread(target=self._send, args=(index,), daemon=True)
            thread.start()
            self.threads.append(thread)

    def _send(self, index: int) -> None:
        n = 0
        while not self.stop.is_set():
            name = f"q{index}-{n}.yaml-blocked.test"  # blocked by the YAML policy
            n += 1
            query = dns.message.make_query(name, "A")
            answer = None
            tries = 0
            while answer is None and tries < TRIES:
                tries += 1
                try:
                    answer = dns.query.udp(
                        query, self.balancer.host, TRY_TIMEOUT, self.balancer.port
                    )
                except (dns.exception.Timeout, OSError):
                    answer = None
            with self.lock:
                self.sent += 1
                if answer is None:
                    self.unanswered.append(name)
                else:
                    self.retried += tries > 1
                    addresses = [r.address for rrset in answer.answer for r in rrset]
                    if answer.rcode() != dns.rcode.NOERROR or addresses != [WARNING]:
                        self.wrong.append(f"{name}: {answer}")
            time.sleep(PACE)

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(TRIES * TRY_TIMEOUT + 2)


def restart_under_load(scaled: Scaled, drain: bool) -> Load:
    balancer = scaled.balancer
    assert balancer is not None
    load = Load(balancer)
    load.start()
    try:
        time.sleep(1.0)
        mark = balancer.mark()
        if drain:
            balancer.console("getServer(0):setDown()")
            time.sleep(0.2)  # queries already sent to it are answered before it stops
        old = scaled.instances[0]
        assert old.stop() == 0
        if not drain:
            # A crash: the instance stays away until dnsdist's health check notices (a
            # restart quicker than one check interval would go unnoticed altogether).
            assert wait_until(lambda: balancer.marked(0, "down", mark), WAIT), (
                balancer.diagnostics()
            )
        new = scaled.start(0)
        scaled.instances[0] = new
        loaded = new.wait_event("zone_copy_loaded", WAIT)  # the saved copy, enforced at once
        assert loaded["serial"] >= 1
        if drain:
            balancer.console("getServer(0):setAuto()")
        else:
            assert wait_until(lambda: balancer.marked(0, "up", mark), WAIT), balancer.diagnostics()
        time.sleep(1.5)  # traffic to the restarted instance again
    finally:
        load.finish()
    return load


def test_unplanned_restart_behind_dnsdist(scaled: Scaled) -> None:
    load = restart_under_load(scaled, drain=False)
    print(
        f"\nunplanned restart: {load.sent} queries, {load.retried} answered only on a retry "
        f"(the instance stopped before dnsdist's health check noticed), "
        f"{len(load.unanswered)} unanswered"
    )
    assert load.sent > 300
    assert not load.wrong, load.wrong[:3]
    assert not load.unanswered, load.unanswered[:10]
    # Only the queries sent to the stopped instance before the next health check (at most
    # about one check interval, half the traffic) need a retry.
    assert load.retried < load.sent / 4


def test_drained_restart_behind_dnsdist_loses_nothing(scaled: Scaled) -> None:
    load = restart_under_load(scaled, drain=True)
    print(
        f"\ndrained restart: {load.sent} queries, {load.retried} answered only on a retry, "
        f"{len(load.unanswered)} unanswered"
    )
    assert load.sent > 300
    assert not load.wrong, load.wrong[:3]
    assert not load.unanswered, load.unanswered[:10]
    assert load.retried == 0
