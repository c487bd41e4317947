"""``workers: N``: N serving processes on SO_REUSEPORT sockets under one supervisor."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import threading
import time
import urllib.request

import dns.exception
import dns.message
import pytest
from support.procs import Sinkhole, SinkholeFactory, free_port, wait_until

from blackbox.dnsclient import addresses, ask, v4

pytestmark = pytest.mark.blackbox

POLICY = "id: p\nblock:\n  - first.example\n"
WARNING = "192.0.2.80"
ASKS = 40  # fresh source port each: the chance all land on one of two workers is 2**-39


def workers_that_answered(server: Sinkhole, name: str, start: int) -> set[int]:
    """Workers whose query log shows ``name`` blocked at or after log line ``start``."""
    seen = set()
    with server._cond:
        lines = list(server.lines[start:])
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("event") == "query" and record.get("qname") == name:
            seen.add(record["worker"])
    return seen


def blocked_everywhere(server: Sinkhole, name: str) -> set[int]:
    """Ask for ``name`` from many source ports; the workers that answered (query log is
    written in batches, so wait for it)."""
    start = server.mark()
    for _ in range(ASKS):
        assert addresses(ask(v4(server), name)) == [WARNING]
    wait_until(lambda: workers_that_answered(server, name, start) == {0, 1} or None, 5.0)
    return workers_that_answered(server, name, start)


@pytest.fixture
def two_workers(sinkhole_factory: SinkholeFactory) -> Sinkhole:
    server = sinkhole_factory({"p.yaml": POLICY}, workers=2)
    server.wait_event("workers_ready", 10.0)
    return server


def test_every_worker_serves(two_workers: Sinkhole) -> None:
    assert blocked_everywhere(two_workers, "first.example") == {0, 1}
    started = two_workers.events("started")
    assert sorted(e["worker"] for e in started) == [0, 1]
    assert len({e["pid"] for e in started}) == 2


def test_one_sighup_reloads_every_worker(two_workers: Sinkhole) -> None:
    two_workers.write_policy("p.yaml", POLICY + "  - second.example\n")
    mark = two_workers.mark()
    two_workers.send_signal(signal.SIGHUP)
    done = two_workers.wait_event("workers_reloaded", 10.0, mark)
    assert done["ok"] is True
    assert len([e for e in two_workers.events("policy_reloaded")]) == 2
    assert blocked_everywhere(two_workers, "second.example") == {0, 1}


def test_a_worker_that_dies_is_restarted(two_workers: Sinkhole) -> None:
    victim = next(e for e in two_workers.events("started") if e["worker"] == 0)
    mark = two_workers.mark()
    os.kill(victim["pid"], signal.SIGKILL)
    exited = two_workers.wait_event("worker_exited", 5.0, mark)
    assert exited["worker"] == 0 and exited["exit_code"] == -signal.SIGKILL
    restarted = two_workers.wait_event("started", 10.0, mark)
    assert restarted["worker"] == 0 and restarted["pid"] != victim["pid"]
    assert blocked_everywhere(two_workers, "first.example") == {0, 1}


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3.0) as response:
        return str(response.read().decode())


def value(text: str, name: str) -> float | None:
    """The sample ``name``; None before the workers have reported."""
    found = re.search(re.escape(name) + r" ([0-9.e+]+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else None


def test_metrics_sum_every_workers_counters(sinkhole_factory: SinkholeFactory) -> None:
    """The supervisor's /metrics adds up the workers' counters (their batched UDP listeners'
    too) and counts worker restarts."""
    port = free_port()
    server = sinkhole_factory({"p.yaml": POLICY}, workers=2, metrics=f"127.0.0.1:{port}")
    server.wait_event("workers_ready", 10.0)
    assert blocked_everywhere(server, "first.example") == {0, 1}

    def counted() -> str | None:
        text = scrape(port)
        done = value(text, 'sinkhole_queries_total{outcome="blocked"}') == ASKS
        return text if done and value(text, "sinkhole_udp_received_total") == ASKS else None

    text = wait_until(counted, 5.0)  # workers report every second
    assert value(text, "sinkhole_udp_sent_total") == ASKS
    assert value(text, "sinkhole_worker_restarts_total") == 0

    victim = next(e for e in server.events("started") if e["worker"] == 1)
    os.kill(victim["pid"], signal.SIGKILL)
    wait_until(lambda: value(scrape(port), "sinkhole_worker_restarts_total") == 1 or None, 5.0)


def test_a_reload_is_counted_once_for_all_workers(sinkhole_factory: SinkholeFactory) -> None:
    """Three SIGHUPs to two workers (a good reload, a broken file, a good reload): two
    reloads and one failure, each counted once; each worker's own figures by label (the
    broken file fails the one build, so no worker is asked to apply it)."""
    port = free_port()
    server = sinkhole_factory({"p.yaml": POLICY}, workers=2, metrics=f"127.0.0.1:{port}")
    server.wait_event("workers_ready", 10.0)
    started = value(scrape(port), "sinkhole_reload_last_success_timestamp_seconds")
    assert started is not None and started > 0
    for text, ok in ((POLICY + "  - second.example\n", True), ("id: [broken", False)):
        server.write_policy("p.yaml", text)
        mark = server.mark()
        server.send_signal(signal.SIGHUP)
        assert server.wait_event("workers_reloaded", 10.0, mark)["ok"] is ok
    text = scrape(port)
    assert value(text, "sinkhole_reloads_total") == 1
    assert value(text, "sinkhole_reload_failures_total") == 1
    assert value(text, "sinkhole_reload_last_successful") == 0
    succeeded = value(text, "sinkhole_reload_last_success_timestamp_seconds")
    assert succeeded is not None and succeeded > started

    server.write_policy("p.yaml", POLICY)
    mark = server.mark()
    server.send_signal(signal.SIGHUP)
    assert server.wait_event("workers_reloaded", 10.0, mark)["ok"] is True
    text = scrape(port)
    assert value(text, "sinkhole_reloads_total") == 2
    assert value(text, "sinkhole_reload_failures_total") == 1
    assert value(text, "sinkhole_reload_last_successful") == 1
    assert len(server.events("workers_reloaded")) == 3

    def per_worker() -> str | None:  # the workers report their own figures every second
        text = scrape(port)
        done = all(
            value(text, f'sinkhole_worker_reloads_total{{worker="{w}"}}') == 2
            and value(text, f'sinkhole_worker_reload_failures_total{{worker="{w}"}}') == 0
            for w in (0, 1)
        )
        return text if done else None

    assert wait_until(per_worker, 5.0), scrape(port)


def test_signals_in_quick_succession_end_in_one_counted_reload(
    sinkhole_factory: SinkholeFactory,
) -> None:
    """SIGHUPs faster than the workers reload join the reload under way: every signal is
    followed by a reload that read the files after it, and the count never runs ahead."""
    port = free_port()
    server = sinkhole_factory({"p.yaml": POLICY}, workers=2, metrics=f"127.0.0.1:{port}")
    server.wait_event("workers_ready", 10.0)
    server.write_policy("p.yaml", POLICY + "  - third.example\n")
    for _ in range(5):
        server.send_signal(signal.SIGHUP)
    wait_until(lambda: server.events("workers_reloaded") or None, 10.0)
    assert blocked_everywhere(server, "third.example") == {0, 1}

    def settled() -> float | None:  # the count matches the reloads logged (polled: one may end)
        reloads = value(scrape(port), "sinkhole_reloads_total")
        logged = len([e for e in server.events("workers_reloaded") if e["ok"]])
        return reloads if reloads == logged else None

    reloads = wait_until(settled, 5.0)
    assert reloads is not None and 1 <= reloads <= 5


# --- one build of a large list, shared by every worker ---------------------------------

LIST_N = 100_000
LIST_POLICY = "id: p\nlists:\n  - file: names.txt\n    format: domains\n"


def listed(i: int) -> str:
    return f"n{i}.listed.example"


class Stream:
    """Blocked queries at a steady rate from one socket, for at most ``limit`` seconds;
    counts the queries sent and those answered with the warning page."""

    def __init__(self, server: Sinkhole, rate: int = 200, limit: float = 60.0) -> None:
        self.where = v4(server)
        self.rate, self.limit = rate, limit
        self.sent = self.answered = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Stream:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10.0)

    def _run(self) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(0.002)
            pending: set[int] = set()
            started = next_at = time.monotonic()
            drain_until = None
            while True:
                now = time.monotonic()
                if drain_until is None and (self.stop.is_set() or now - started > self.limit):
                    drain_until = now + 2.0  # the answers still on their way
                if drain_until is not None and (now > drain_until or not pending):
                    return
                if drain_until is None and now >= next_at:
                    query = dns.message.make_query(listed(self.sent % LIST_N), "A")
                    query.id = self.sent & 0xFFFF
                    sock.sendto(query.to_wire(), self.where)
                    pending.add(query.id)
                    self.sent += 1
                    next_at += 1.0 / self.rate
                try:
                    reply = dns.message.from_wire(sock.recv(4096))
                except (TimeoutError, dns.exception.DNSException):
                    continue
                if reply.id in pending and addresses(reply) == [WARNING]:
                    pending.discard(reply.id)
                    self.answered += 1


def mapped_by(pid: int) -> bool:
    """Whether process ``pid`` maps the policy image."""
    with open(f"/proc/{pid}/maps") as maps:
        return any(line.rstrip().endswith("/policy.image") for line in maps)


@pytest.fixture
def large_list(sinkhole_factory: SinkholeFactory) -> Sinkhole:
    names = "".join(f"{listed(i)}\n" for i in range(LIST_N))
    server = sinkhole_factory({"names.txt": names, "p.yaml": LIST_POLICY}, workers=2)
    server.wait_event("workers_ready", 60.0)
    return server


def test_workers_map_one_build_and_answer_alike(large_list: Sinkhole) -> None:
    built = large_list.events("policy_built")
    assert len(built) == 1 and built[0]["names"] == LIST_N
    pids = [e["pid"] for e in large_list.events("started")]
    assert len(pids) == 2 and all(mapped_by(pid) for pid in pids)
    for i in (0, 1, LIST_N // 2, LIST_N - 1):
        assert blocked_everywhere(large_list, "www." + listed(i)) == {0, 1}
    for name in ("n100000.listed.example", "listed.example", "other.example"):
        for _ in range(8):
            assert WARNING not in addresses(ask(v4(large_list), name))


def test_reloads_swap_every_worker_without_losing_queries(large_list: Sinkhole) -> None:
    names = large_list.policies_dir / "names.txt"
    with Stream(large_list) as stream:
        for round_ in range(3):
            with names.open("a") as f:
                f.write(f"new{round_}.example\n")
            mark = large_list.mark()
            large_list.send_signal(signal.SIGHUP)
            done = large_list.wait_event("workers_reloaded", 60.0, mark)
            assert done["ok"] is True
            assert len(large_list.events("policy_built")) == 2 + round_  # once, not per worker
            assert blocked_everywhere(large_list, f"new{round_}.example") == {0, 1}
    assert stream.sent > 200
    assert stream.answered == stream.sent, f"{stream.sent - stream.answered} queries lost"
    reloaded = large_list.events("policy_reloaded")
    assert sorted(e["worker"] for e in reloaded) == [0, 0, 0, 1, 1, 1]
    assert all(
        e["names"] == LIST_N + 1 + i // 2
        for i, e in enumerate(sorted(reloaded, key=lambda e: e["names"]))
    )


def replaced_images(pid: int) -> int:
    """Mappings of process ``pid`` of a policy image that has been replaced since."""
    with open(f"/proc/{pid}/maps") as maps:
        return sum(line.rstrip().endswith("/policy.image (deleted)") for line in maps)


def test_a_reload_lets_go_of_the_image_it_replaced(large_list: Sinkhole) -> None:
    """Each worker maps the new image and unmaps the old one: the memory of a reload is
    given back (the first build was once held for the life of the process)."""
    pids = [e["pid"] for e in large_list.events("started")]
    for round_ in range(2):
        with (large_list.policies_dir / "names.txt").open("a") as f:
            f.write(f"again{round_}.example\n")
        mark = large_list.mark()
        large_list.send_signal(signal.SIGHUP)
        assert large_list.wait_event("workers_reloaded", 60.0, mark)["ok"] is True
        assert blocked_everywhere(large_list, f"again{round_}.example") == {0, 1}
        assert all(mapped_by(pid) for pid in pids)
        assert [replaced_images(pid) for pid in pids] == [0, 0]


def test_a_broken_reload_keeps_the_old_policy_in_every_worker(large_list: Sinkhole) -> None:
    with (large_list.policies_dir / "names.txt").open("a") as f:
        f.write("kept.example\n")
    mark = large_list.mark()
    large_list.send_signal(signal.SIGHUP)
    assert large_list.wait_event("workers_reloaded", 60.0, mark)["ok"] is True
    large_list.write_policy("p.yaml", LIST_POLICY + "block: [unclosed\n")
    mark = large_list.mark()
    with Stream(large_list) as stream:
        large_list.send_signal(signal.SIGHUP)
        done = large_list.wait_event("workers_reloaded", 60.0, mark)
    assert done["ok"] is False
    failed = large_list.wait_event("policy_reload_failed", 5.0, mark)
    assert failed["file"].endswith("p.yaml") and failed["kept"] == "previous policy"
    assert "previous policy stays in force" in failed["summary"]
    assert not [e for e in large_list.events("policy_reloaded")[2:]]  # no worker swapped
    assert blocked_everywhere(large_list, "kept.example") == {0, 1}
    assert blocked_everywhere(large_list, listed(LIST_N - 1)) == {0, 1}
    assert stream.answered == stream.sent
