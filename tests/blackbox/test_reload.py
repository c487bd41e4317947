"""SIGHUP reloads the policies: new names are blocked, a broken file keeps the old policy."""

from __future__ import annotations

import signal
import threading
import time

import dns.exception
import dns.rcode
import pytest
from support.procs import WARNING_IPV4, FakeUpstream, SinkholeFactory, wait_until

from blackbox.dnsclient import addresses, ask, unique, v4
from blackbox.standard import UPSTREAM_IPV4

pytestmark = pytest.mark.blackbox

PACE = 0.001  # seconds between queries of the reload client (2000 queries: at least 2 s)

POLICY = """\
id: reloadable
authority: Test Court
reference: Order 1
block:
  - old.example
"""


def policy_with(*names: str) -> str:
    return POLICY + "".join(f"  - {name}\n" for name in names)


def is_blocked(where: tuple[str, int], name: str) -> bool:
    return addresses(ask(where, name)) == [WARNING_IPV4]


def test_sighup_blocks_a_new_name(
    sinkhole_factory: SinkholeFactory, fake_upstream: FakeUpstream
) -> None:
    server = sinkhole_factory({"p.yaml": POLICY})
    new = unique("fresh")
    assert addresses(ask(v4(server), new)) == [UPSTREAM_IPV4]  # cached as allowed now
    assert fake_upstream.count(new) == 1

    mark = server.mark()
    server.write_policy("p.yaml", policy_with(new))
    server.send_signal(signal.SIGHUP)
    reloaded = server.wait_event("policy_reloaded", 5.0, start=mark)
    assert reloaded["names"] == 2
    assert wait_until(lambda: is_blocked(v4(server), new), timeout=3.0), (
        "the new name was not blocked"
    )
    assert is_blocked(v4(server), "www." + new)
    assert is_blocked(v4(server), "old.example")
    assert fake_upstream.count(new) == 1


def test_sighup_unblocks_a_removed_name(
    sinkhole_factory: SinkholeFactory, fake_upstream: FakeUpstream
) -> None:
    gone = unique("gone")
    server = sinkhole_factory({"p.yaml": policy_with(gone)})
    assert is_blocked(v4(server), gone)
    mark = server.mark()
    server.write_policy("p.yaml", POLICY)
    server.send_signal(signal.SIGHUP)
    server.wait_event("policy_reloaded", 5.0, start=mark)
    assert wait_until(lambda: not is_blocked(v4(server), gone), timeout=3.0)
    assert addresses(ask(v4(server), gone)) == [UPSTREAM_IPV4]
    assert fake_upstream.count(gone) == 1


def test_a_broken_policy_keeps_the_old_one(sinkhole_factory: SinkholeFactory) -> None:
    server = sinkhole_factory({"p.yaml": POLICY})
    new = unique("never")
    broken = POLICY + f"  - {new}\n  - twitter.com/uriminzok\n"
    broken_line = broken.splitlines().index("  - twitter.com/uriminzok") + 1
    mark = server.mark()
    path = server.write_policy("p.yaml", broken)
    server.send_signal(signal.SIGHUP)
    failed = server.wait_event("policy_reload_failed", 5.0, start=mark)
    assert failed["file"] == str(path)
    assert failed["line"] == broken_line
    assert "whole names" in failed["error"]
    assert not server.events("policy_reloaded")
    # The old policy stays in force: the old name blocked, the new one not.
    assert is_blocked(v4(server), "old.example")
    assert addresses(ask(v4(server), new)) == [UPSTREAM_IPV4]
    # Fixing the file and reloading again works.
    mark = server.mark()
    server.write_policy("p.yaml", policy_with(new))
    server.send_signal(signal.SIGHUP)
    server.wait_event("policy_reloaded", 5.0, start=mark)
    assert wait_until(lambda: is_blocked(v4(server), new), timeout=3.0)


def test_a_policy_file_with_bad_yaml_keeps_the_old_one(sinkhole_factory: SinkholeFactory) -> None:
    server = sinkhole_factory({"p.yaml": POLICY})
    mark = server.mark()
    path = server.write_policy("p.yaml", POLICY + "  - [unclosed\n")
    server.send_signal(signal.SIGHUP)
    failed = server.wait_event("policy_reload_failed", 5.0, start=mark)
    assert failed["file"] == str(path)
    assert failed["line"] >= 6
    assert is_blocked(v4(server), "old.example")


def test_queries_during_reloads_are_all_answered(
    sinkhole_factory: SinkholeFactory, fake_upstream: FakeUpstream
) -> None:
    server = sinkhole_factory({"p.yaml": POLICY}, query_log="off")
    extra = unique("extra")
    total = 2000
    failures: list[str] = []
    leaks: list[str] = []
    answered = [0]
    blocked_names = ["old.example", "www.old.example", "a.b.old.example"]
    started = threading.Event()

    def client() -> None:
        begin = time.monotonic()
        for i in range(total):
            if i == 50:
                started.set()
            pause = begin + i * PACE - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            blocked = i % 2 == 0
            if blocked:
                name = blocked_names[i % 3]
            else:
                name = unique("during") if i % 10 == 1 else "steady.example"
            try:
                r = ask(v4(server), name, "A", timeout=2.0)
            except dns.exception.Timeout:
                failures.append(f"query {i} for {name} timed out")
                continue
            answered[0] += 1
            if blocked and addresses(r) != [WARNING_IPV4]:
                leaks.append(f"query {i} for {name}: {r.rcode()} {addresses(r)}")
            if not blocked and (r.rcode() != dns.rcode.NOERROR or addresses(r) != [UPSTREAM_IPV4]):
                failures.append(f"query {i} for {name}: {r.rcode()} {addresses(r)}")
        started.set()

    thread = threading.Thread(target=client, name="reload-client")
    thread.start()
    assert started.wait(10.0)
    mark = server.mark()
    for n in range(10):
        # Alternate between two policies that both block old.example.
        server.write_policy("p.yaml", policy_with(extra) if n % 2 == 0 else POLICY)
        server.send_signal(signal.SIGHUP)
        time.sleep(0.1)
    assert thread.is_alive(), "the queries ended before the reloads did: nothing was tested"
    thread.join(60.0)
    assert not thread.is_alive(), "the query client did not finish"
    assert not leaks, f"{len(leaks)} blocked queries got an upstream answer: {leaks[:5]}"
    assert not failures, f"{len(failures)} queries failed: {failures[:5]}"
    assert answered[0] == total
    server.wait_event("policy_reloaded", 5.0, start=mark)
    assert not server.events("policy_reload_failed")
    for name in blocked_names:
        assert fake_upstream.count(name) == 0
