"""Response rate limiting (RRL) for answers over UDP: a token bucket per client network.

Clients are grouped as BIND groups them, by prefix (IPv4 /24, IPv6 /56 unless set).
Each group may get ``responses_per_second`` answers a second, in bursts of as many.
Past that, every ``slip``-th answer is sent truncated (TC=1, no records), so a real
client retries over TCP, where its address cannot be spoofed; the rest are dropped.
A flood with a forged source address then reflects little and amplifies nothing.
Pure: the caller passes the clock (monotonic seconds).
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field
from itertools import islice

from resolver.core import wire
from resolver.core.clients import client_address

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_EXEMPT = ("127.0.0.0/8", "::1/128")
TABLE_LIMIT = 65536  # client networks tracked; idle ones, then the oldest, make room
MEMO_LIMIT = 65536  # client addresses whose network is remembered


@dataclass(frozen=True, slots=True)
class RateLimit:
    """The settings: ``slip`` 0 drops every answer over the rate, 1 truncates every one."""

    responses_per_second: int = 1000
    slip: int = 2
    ipv4_prefix: int = 24
    ipv6_prefix: int = 56
    exempt: tuple[Network, ...] = field(
        default_factory=lambda: tuple(ipaddress.ip_network(n) for n in DEFAULT_EXEMPT)
    )


@dataclass(slots=True)
class RateLimitStats:
    dropped: int = 0  # answers over the rate, not sent
    truncated: int = 0  # answers over the rate, sent empty with TC=1 (the slip)


class _Bucket:
    __slots__ = ("last", "limited", "tokens")

    def __init__(self, tokens: float, last: float) -> None:
        self.tokens = tokens
        self.last = last
        self.limited = 0  # answers over the rate so far: every slip-th one is truncated


_EXEMPT = _Bucket(0.0, 0.0)  # the bucket of every exempt client: never consulted


class RateLimiter:
    """Decides, answer by answer, whether a UDP answer goes out, truncated, or not at all."""

    def __init__(self, settings: RateLimit) -> None:
        self.settings = settings
        self.stats = RateLimitStats()
        self._rate = float(settings.responses_per_second)
        self._burst = float(settings.responses_per_second)
        self._slip = settings.slip
        self._buckets: dict[tuple[int, int], _Bucket] = {}
        self._memo: dict[str, _Bucket] = {}  # client address text -> its network's bucket

    def admit(self, reply: bytes, client: str, now: float) -> bytes | None:
        """``reply`` if ``client``'s network is within its rate; past it, the reply
        truncated (every slip-th time) or None (drop)."""
        bucket = self._memo.get(client)
        if bucket is None:
            bucket = self._bucket_of(client, now)
        if bucket is _EXEMPT:
            return reply
        tokens = bucket.tokens + (now - bucket.last) * self._rate
        bucket.last = now
        if tokens >= 1.0:
            bucket.tokens = (tokens if tokens < self._burst else self._burst) - 1.0
            return reply
        bucket.tokens = tokens
        return self._over(bucket, reply)

    def _over(self, bucket: _Bucket, reply: bytes) -> bytes | None:
        """An answer over the rate: every slip-th truncated, the others dropped."""
        bucket.limited += 1
        if self._slip and bucket.limited % self._slip == 0:
            self.stats.truncated += 1
            return truncated(reply)
        self.stats.dropped += 1
        return None

    def _bucket_of(self, client: str, now: float) -> _Bucket:
        address = client_address(client)
        bucket = _EXEMPT
        if address is not None and not any(
            address in net for net in self.settings.exempt if net.version == address.version
        ):
            if address.version == 4:
                key = (4, int(address) >> (32 - self.settings.ipv4_prefix))
            else:
                key = (6, int(address) >> (128 - self.settings.ipv6_prefix))
            found = self._buckets.get(key)
            if found is None:
                if len(self._buckets) >= TABLE_LIMIT:
                    self._make_room(now)
                found = self._buckets[key] = _Bucket(self._burst, now)
            bucket = found
        if len(self._memo) >= MEMO_LIMIT:
            self._memo.clear()
        self._memo[client] = bucket
        return bucket

    def _make_room(self, now: float) -> None:
        """Forget the networks whose bucket has filled up again (a new bucket is full too);
        when that frees too little, the oldest. Amortised O(1) per new network."""
        rate, burst = self._rate, self._burst
        full = [k for k, b in self._buckets.items() if b.tokens + (now - b.last) * rate >= burst]
        for key in full:
            del self._buckets[key]
        keep = TABLE_LIMIT * 3 // 4
        if len(self._buckets) > keep:
            for key in list(islice(self._buckets, len(self._buckets) - keep)):
                del self._buckets[key]
        self._memo.clear()  # it may name buckets just forgotten

    def __len__(self) -> int:
        return len(self._buckets)


def truncated(reply: bytes) -> bytes:
    """``reply`` as an empty answer with TC set: header and question (and OPT) only."""
    if len(reply) < 12:
        return reply
    if struct.unpack_from("!H", reply, 4)[0] == 1:
        return wire.build_truncated(reply)
    flags = reply[2] | 0x02  # TC, in the high octet of the flags
    return reply[:2] + bytes((flags,)) + reply[3:4] + bytes(8)
