"""Reloads do not leak: a replaced policy is freed, however many times the policy reloads."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from support.procs import WARNING_IPV4, SinkholeFactory

from blackbox.dnsclient import addresses, ask, v4

pytestmark = pytest.mark.blackbox

NAMES = 100_000
RELOADS = 20


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_rss_stays_flat_over_twenty_reloads_of_a_large_policy(
    sinkhole_factory: SinkholeFactory, tmp_path: Path
) -> None:
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "names.txt").write_text("".join(f"n{i}.reload-memory.example\n" for i in range(NAMES)))
    policy = f"id: big\nlists:\n  - {{file: {lists / 'names.txt'}, format: domains}}\n"
    server = sinkhole_factory({"big.yaml": policy}, workers=1)
    assert addresses(ask(v4(server), "n99999.reload-memory.example")) == [WARNING_IPV4]
    sizes = []
    for _ in range(RELOADS):
        mark = server.mark()
        server.send_signal(signal.SIGHUP)
        reloaded = server.wait_event("policy_reloaded", 30.0, start=mark)
        assert reloaded["names"] == NAMES
        sizes.append(rss_kib(server.pid))
    assert addresses(ask(v4(server), "n12345.reload-memory.example")) == [WARNING_IPV4]
    # While a reload builds, the old and the new policy both exist, and the allocator keeps
    # freed memory for reuse: the first reloads reach that high-water mark. From there on,
    # RSS must stay flat (a leaked snapshot of this policy is several MiB per reload).
    baseline, last = max(sizes[:10]), max(sizes[-5:])
    assert last <= baseline * 1.10, f"RSS grew from {baseline} KiB to {last} KiB: {sizes}"
