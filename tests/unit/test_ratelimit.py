"""Response rate limiting: token buckets per client network, the slip, exemptions."""

from __future__ import annotations

import ipaddress

import pytest

from resolver.core import ratelimit, wire
from resolver.core.ratelimit import RateLimit, RateLimiter, truncated

from .packets import header, opt, question, record

REPLY = header(flags=wire.QR | wire.RD | wire.RA, an=0) + question("blocked.example")


def limiter(rate: int = 5, slip: int = 2, exempt: tuple[str, ...] = ()) -> RateLimiter:
    nets = tuple(ipaddress.ip_network(n) for n in exempt)
    return RateLimiter(RateLimit(responses_per_second=rate, slip=slip, exempt=nets))


def outcomes(rl: RateLimiter, client: str, count: int, now: float = 100.0) -> list[str]:
    out = []
    for _ in range(count):
        reply = rl.admit(REPLY, client, now)
        out.append("sent" if reply == REPLY else "tc" if reply is not None else "dropped")
    return out


def test_a_burst_gets_the_rate_then_every_second_answer_truncated() -> None:
    rl = limiter(rate=5, slip=2)
    assert outcomes(rl, "192.0.2.1", 11) == ["sent"] * 5 + ["dropped", "tc"] * 3
    assert (rl.stats.dropped, rl.stats.truncated) == (3, 3)


@pytest.mark.parametrize(("slip", "pattern"), [(0, ["dropped"] * 3), (1, ["tc"] * 3)])
def test_slip_zero_drops_all_and_one_truncates_all(slip: int, pattern: list[str]) -> None:
    assert outcomes(limiter(rate=1, slip=slip), "192.0.2.1", 4)[1:] == pattern


def test_tokens_come_back_with_time() -> None:
    rl = limiter(rate=10)
    assert outcomes(rl, "192.0.2.1", 10, now=1.0) == ["sent"] * 10
    assert outcomes(rl, "192.0.2.1", 1, now=1.0) == ["dropped"]
    assert outcomes(rl, "192.0.2.1", 3, now=1.25) == ["sent", "sent", "tc"]  # 2.5 tokens
    assert outcomes(rl, "192.0.2.1", 11, now=60.0) == ["sent"] * 10 + ["dropped"]  # burst cap


def test_clients_share_a_bucket_by_prefix() -> None:
    rl = limiter(rate=2)
    assert outcomes(rl, "192.0.2.1", 2) == ["sent", "sent"]
    assert outcomes(rl, "192.0.2.200", 1) == ["dropped"]  # same /24
    assert outcomes(rl, "192.0.3.1", 1) == ["sent"]  # another /24
    assert outcomes(rl, "2001:db8:0:ff::1", 2) == ["sent", "sent"]
    assert outcomes(rl, "2001:db8:0:1::2", 1) == ["dropped"]  # same /56
    assert outcomes(rl, "2001:db8:0:100::1", 1) == ["sent"]  # another /56
    assert outcomes(rl, "::ffff:192.0.2.7", 1) == ["tc"]  # v4-mapped: the IPv4 /24


def test_exempt_networks_and_non_addresses_are_never_limited() -> None:
    rl = limiter(rate=1, exempt=("10.0.0.0/8",))
    assert outcomes(rl, "10.1.2.3", 50) == ["sent"] * 50
    assert outcomes(rl, "not-an-address", 5) == ["sent"] * 5
    assert len(rl) == 0


def test_default_exempts_loopback_only() -> None:
    rl = RateLimiter(RateLimit(responses_per_second=1))
    assert outcomes(rl, "127.0.0.1", 5) == ["sent"] * 5
    assert outcomes(rl, "::1", 5) == ["sent"] * 5
    assert outcomes(rl, "192.168.1.1", 2) == ["sent", "dropped"]


def test_the_table_stays_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ratelimit, "TABLE_LIMIT", 100)
    rl = limiter(rate=1)
    for i in range(1000):
        rl.admit(REPLY, f"10.{i // 256}.{i % 256}.1", 5.0)  # each its own /24, all active
        assert len(rl) <= 100
    # Idle networks (full buckets again) go first: a limited one keeps its state.
    rl = limiter(rate=1)
    outcomes(rl, "192.0.2.1", 2, now=5.0)
    for i in range(150):
        rl.admit(REPLY, f"10.0.{i}.1", 0.0 if i < 99 else 5.0)
    assert outcomes(rl, "192.0.2.1", 1, now=5.0) == ["tc"]


def test_truncated_keeps_the_question_and_sets_tc() -> None:
    answer = record(b"\xc0\x0c", wire.TYPE_A, 60, bytes(4))
    full = header(flags=wire.QR | wire.RD, an=1, ar=1) + question("blocked.example")
    tc = truncated(full + answer + opt())
    assert tc[:2] == full[:2]
    assert int.from_bytes(tc[2:4]) & wire.TC
    assert tc[4:12] == b"\x00\x01\x00\x00\x00\x00\x00\x01"  # the question and the OPT
    assert tc[12:] == question("blocked.example") + opt()
    bare = header(flags=wire.QR | 5, qd=0)  # a REFUSED header without a question
    assert truncated(bare) == header(flags=wire.QR | wire.TC | 5, qd=0)
