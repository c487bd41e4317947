"""When to check a followed zone's primary, and when its copy expires (RFC 1034 4.3.5):
the SOA's refresh, retry and expire timers. Pure, with the clock passed in."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

NO_COPY_RETRY = 10.0  # the retry interval while there is no copy (no SOA to read it from)
MIN_INTERVAL = 5.0  # SOA refresh and retry are clamped to [MIN_INTERVAL, MAX_INTERVAL]
MAX_INTERVAL = 28 * 86400.0
EXPIRED_REMINDER = 600.0  # how often an expired zone is logged again


class SoaLike(Protocol):
    """What the timers read from an SOA: ``records.Soa``, or dnspython's rdata."""

    @property
    def refresh(self) -> int: ...
    @property
    def retry(self) -> int: ...
    @property
    def expire(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Timers:
    """The SOA's refresh, retry and expire, in seconds."""

    refresh: float
    retry: float
    expire: float

    @classmethod
    def of(cls, soa: SoaLike) -> Timers:
        def clamp(value: int) -> float:
            return min(max(float(value), MIN_INTERVAL), MAX_INTERVAL)

        return cls(clamp(soa.refresh), clamp(soa.retry), max(float(soa.expire), MIN_INTERVAL))


class ZoneClock:
    """When to check the primary next, and whether the copy has expired.

    ``confirmed`` is when the copy was last known to be current (a transfer, or the
    primary answering with the same serial); None without a copy.
    """

    def __init__(
        self,
        timers: Timers | None,
        confirmed: float | None,
        now: float,
        reminder: float = EXPIRED_REMINDER,
    ) -> None:
        self.timers = timers
        self.confirmed = confirmed
        self.next_check = now  # the first check is at once
        self.failures = 0
        self.expired = False
        self.reminded: float | None = None
        self.reminder = reminder

    def expires_at(self) -> float | None:
        if self.timers is None or self.confirmed is None:
            return None
        return self.confirmed + self.timers.expire

    def check_due(self, now: float) -> bool:
        return now >= self.next_check

    def succeeded(self, now: float, timers: Timers) -> bool:
        """A check found the copy current (or made it so). Returns whether it had expired."""
        was_expired = self.expired
        self.timers = timers
        self.confirmed = now
        self.next_check = now + timers.refresh
        self.failures = 0
        self.expired = False
        self.reminded = None
        return was_expired

    def failed(self, now: float) -> None:
        """No primary gave a good answer: try again after the SOA retry interval."""
        self.failures += 1
        self.next_check = now + (self.timers.retry if self.timers else NO_COPY_RETRY)

    def poll_expiry(self, now: float) -> str | None:
        """``"expired"`` the first time the copy is past its expire time, ``"reminder"`` every
        ``reminder`` seconds after that, else None."""
        deadline = self.expires_at()
        if deadline is None or now < deadline:
            return None
        if not self.expired:
            self.expired = True
            self.reminded = now
            return "expired"
        if self.reminded is not None and now - self.reminded >= self.reminder:
            self.reminded = now
            return "reminder"
        return None

    def forget(self) -> None:
        """The copy is gone (dropped): nothing left to expire; keep checking on retry."""
        self.confirmed = None
        self.expired = False
        self.reminded = None

    def wake_at(self) -> float:
        """The next moment something is due: a check, the expiry, or an expiry reminder."""
        moments = [self.next_check]
        deadline = self.expires_at()
        if deadline is not None:
            if not self.expired:
                moments.append(deadline)
            elif self.reminded is not None:
                moments.append(self.reminded + self.reminder)
        return min(moments)
