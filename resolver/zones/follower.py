"""Follow RPZ primaries as a secondary: SOA checks, IXFR and AXFR, the local copy, expiry.

For every zone with ``primaries`` the local copy (the zone's ``file``) is kept up to
date as RFC 1034, 1995 and 1996 describe: a check at start-up (IXFR from the saved
serial, AXFR without a copy), then on the SOA refresh timer, after a failure on the
SOA retry timer, and at once on a NOTIFY from a listed primary. A check (``fetch``)
asks the SOA first and transfers only when the primary's serial is newer; a transfer
is applied atomically (``store``) and then ``on_change`` makes the policy reload;
anything broken, unauthenticated or out of order changes nothing and is logged. Past
the SOA expire time without a successful check the zone is kept (and an error is
logged periodically) or, with ``on_expire: drop``, its copy is moved aside to
``<file>.expired`` so it is no longer enforced.

The copy's modification time records the last successful check (it is touched when
the primary has nothing new), so expiry survives restarts, as with BIND.

Each check is blocking network I/O in a daemon thread, so start-up, shutdown and the
event loop never wait for a primary.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar

from resolver.core.endpoint import Endpoint
from resolver.sources.config_sections import ZoneConfig
from resolver.zones.errors import TransferFailed, describe
from resolver.zones.fetch import Checked, Fetcher
from resolver.zones.notify import NotifyGate
from resolver.zones.records import Records, Soa
from resolver.zones.store import load_copy, peek_soa
from resolver.zones.timers import Timers, ZoneClock

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ZoneState:
    """What /metrics shows of a followed zone (wall-clock times; None: never, or no copy)."""

    serial: int | None
    refreshed: float | None  # the last successful check (a transfer, or nothing new)
    transferred: float | None  # the last transfer applied by this process
    failed: float | None  # the last check no primary answered well
    expires: float | None  # when the copy expires without a successful check
    expired: bool


def in_thread(function: Callable[[], T]) -> asyncio.Future[T]:
    """Run ``function`` in a daemon thread: nothing ever waits for it to end at shutdown."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def run() -> None:
        try:
            result, error = function(), None
        except BaseException as exc:
            result, error = None, exc
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=run, name="zone-transfer", daemon=True).start()
    return future


class ZoneFollower:
    """Keeps one zone's copy current: timers, NOTIFY, one check at a time."""

    def __init__(
        self,
        config: ZoneConfig,
        on_change: Callable[[], None],
        log: Any,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.on_change = on_change
        self.log = log.bind(zone=config.name)
        self.clock = clock
        self.copy: Records | None = None  # the copy in memory (read when an IXFR needs it)
        self.saved: Soa | None = None  # the SOA of the copy on disk
        self.timer = ZoneClock(None, None, clock())
        self.busy = False
        self.again = False
        self.transferred: float | None = None  # when this process last applied a transfer
        self.failed: float | None = None  # when a check last failed
        self._handle: asyncio.TimerHandle | None = None
        self._check_timer = False  # the handle wakes for a check (else for the expiry)
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def serial(self) -> int | None:
        return int(self.saved.serial) if self.saved is not None else None

    def state(self) -> ZoneState:
        timer = self.timer
        return ZoneState(
            self.serial,
            timer.confirmed,
            self.transferred,
            self.failed,
            timer.expires_at(),
            timer.expired,
        )

    def prepare(self) -> None:
        """Before the first policy is built: date the saved copy (its modification time is
        its last successful check) and read its SOA from the top of the file; with
        ``on_expire: drop`` move it aside if it expired while the resolver was stopped."""
        copy = self.config.file
        for stale in copy.parent.glob(f".{copy.name}.*.tmp"):  # a write cut short by a stop
            with contextlib.suppress(OSError):
                stale.unlink()
        try:
            mtime = copy.stat().st_mtime
        except OSError:
            return
        self.timer.confirmed = mtime
        soa = peek_soa(self.config)
        if soa is None and self.config.on_expire == "drop":
            try:  # a copy written elsewhere, SOA not at the top: read it whole
                self.copy = load_copy(self.config)
            except Exception as exc:
                self.log.warning(
                    "zone_copy_unreadable", file=str(self.config.file), error=describe(exc)
                )
            soa = self.copy.soa if self.copy is not None else None
        if soa is not None:
            self._adopt(soa)
            self._found(mtime)
            self._poll_expiry(self.clock())

    def _adopt(self, soa: Soa) -> None:
        self.saved = soa
        self.timer.timers = Timers.of(soa)

    def start(self) -> None:
        self._check_soon("start")

    def notify(self) -> None:
        """A listed primary says the zone changed: check now, or again right after the
        check under way (RFC 1996 4.4)."""
        if self.busy:
            self.again = True
        else:
            self._check_soon("notify")

    def close(self) -> None:
        self._closed = True
        if self._handle is not None:
            self._handle.cancel()
        if self._task is not None:
            self._task.cancel()

    def _check_soon(self, reason: str) -> None:
        if self._closed or self.busy:
            return
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self.busy = True
        self.again = False
        self._task = asyncio.ensure_future(self._run(reason))

    async def _run(self, reason: str) -> None:
        try:
            while True:
                await self._check(reason)
                if not self.again or self._closed:
                    break
                self.again = False  # NOTIFYs during the check: one more check covers them all
                reason = "notify"
        finally:
            self.busy = False
            self._schedule()

    async def _load(self) -> None:
        """Know the saved copy's SOA: from the top of the file, else by reading it whole."""
        if self.saved is not None or not self.config.file.exists():
            return
        soa = peek_soa(self.config)
        if soa is None:
            try:
                copy = await in_thread(partial(load_copy, self.config))
            except Exception as exc:
                self.log.warning(
                    "zone_copy_unreadable",
                    file=str(self.config.file),
                    error=describe(exc),
                    detail="a full transfer (AXFR) will replace it",
                )
                return
            if copy is None or self._closed:
                return
            self.copy = copy
            soa = copy.soa
            assert soa is not None
        self._adopt(soa)
        if self.timer.confirmed is not None:
            self._found(self.timer.confirmed)

    def _found(self, mtime: float) -> None:
        self.log.info(
            "zone_copy_loaded",
            file=str(self.config.file),
            serial=self.serial,
            last_refresh=datetime.fromtimestamp(mtime, UTC).isoformat(),
        )

    async def _check(self, reason: str) -> None:
        await self._load()
        self._poll_expiry(self.clock())  # a copy that expired while stopped: said at once
        for primary in self.config.primaries:
            fetcher = Fetcher(self.config, primary)
            try:
                checked = await in_thread(partial(fetcher.check, self.copy, self.saved))
            except TransferFailed as exc:
                if exc.dirty:
                    self.copy = None  # read the file again next time
                self.log.error(
                    "zone_transfer_failed", primary=str(primary), error=str(exc), reason=reason
                )
                continue
            if self._closed:
                return
            self._succeeded(checked, primary, reason)
            return
        self.failed = self.clock()
        self.timer.failed(self.clock())
        self._poll_expiry(self.clock())

    def _succeeded(self, checked: Checked, primary: Endpoint, reason: str) -> None:
        now = self.clock()
        if checked.zone is not None:
            self.copy = checked.zone
        self._adopt(checked.soa)
        was_expired = self.timer.succeeded(now, Timers.of(checked.soa))
        if checked.kind == "none":
            with contextlib.suppress(OSError):
                os.utime(self.config.file)  # the copy is current as of now (survives restarts)
            self.log.debug("zone_current", primary=str(primary), serial=checked.serial)
        else:
            self.transferred = now
            fields: dict[str, Any] = {}
            if checked.ixfr_error:
                fields["ixfr_failed"] = checked.ixfr_error
            self.log.info(
                "zone_transferred",
                serial=checked.serial,
                kind=checked.kind,
                records=checked.records,
                duration_ms=round(checked.seconds * 1000, 1),
                primary=str(primary),
                reason=reason,
                file=str(self.config.file),
                **fields,
            )
        if was_expired:
            self.log.warning("zone_refreshed_after_expiry", serial=checked.serial)
        if checked.kind != "none":
            self.on_change()

    def _poll_expiry(self, now: float) -> None:
        state = self.timer.poll_expiry(now)
        if state is None:
            return
        confirmed = self.timer.confirmed or 0.0
        self.log.error(
            "zone_expired",
            serial=self.serial,
            last_refresh=datetime.fromtimestamp(confirmed, UTC).isoformat(),
            expired_for_s=round(now - (self.timer.expires_at() or now)),
            on_expire=self.config.on_expire,
            primaries=[str(p) for p in self.config.primaries],
            detail=(
                "no primary answered within the SOA expire time; "
                + (
                    "the last copy is no longer enforced"
                    if self.config.on_expire == "drop"
                    else "still enforcing the last copy"
                )
            ),
        )
        if state == "expired" and self.config.on_expire == "drop":
            self._drop()

    def _drop(self) -> None:
        """Stop enforcing the zone: its copy goes to ``<file>.expired`` and the policy reloads."""
        aside = self.config.file.with_name(self.config.file.name + ".expired")
        try:
            os.replace(self.config.file, aside)
        except FileNotFoundError:
            pass
        except OSError as exc:
            self.log.error("zone_drop_failed", file=str(self.config.file), error=exc.strerror)
            return
        self.copy = None
        self.saved = None
        self.timer.forget()
        self.log.error("zone_dropped", file=str(self.config.file), moved_to=str(aside))
        self.on_change()

    def _schedule(self) -> None:
        if self._closed:
            return
        if self._handle is not None:
            self._handle.cancel()
        wake = self.timer.wake_at()
        # Checks are timed by the loop's monotonic clock: a wall-clock step cannot delay
        # them (expiry stays on the wall clock, which the copy's date is in).
        self._check_timer = wake >= self.timer.next_check
        delay = max(wake - self.clock(), 0.0)
        self._handle = asyncio.get_running_loop().call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._handle = None
        now = self.clock()
        if self._check_timer or self.timer.check_due(now):
            self._check_soon("retry" if self.timer.failures else "refresh")
        else:
            self._poll_expiry(now)
            self._schedule()


class Secondary:
    """Every zone with primaries, followed; ``on_change`` runs after a copy changed."""

    def __init__(
        self,
        zones: Iterable[ZoneConfig],
        on_change: Callable[[], None],
        log: Any,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.on_change = on_change
        self.log = log
        self.clock = clock
        self.followers: dict[str, ZoneFollower] = {}
        self.gate = NotifyGate(())
        self._started = False
        self._set(zones)

    def _set(self, zones: Iterable[ZoneConfig]) -> list[ZoneFollower]:
        zones = [z for z in zones if z.primaries]
        self.gate = NotifyGate(zones)
        added = []
        wanted = {z.name: z for z in zones}
        for name, follower in list(self.followers.items()):
            if wanted.get(name) != follower.config:
                follower.close()
                del self.followers[name]
        for name, zone in wanted.items():
            if name not in self.followers:
                follower = ZoneFollower(zone, self.on_change, self.log, self.clock)
                self.followers[name] = follower
                added.append(follower)
        return added

    def prepare(self) -> None:
        for follower in self.followers.values():
            follower.prepare()

    def start(self) -> None:
        self._started = True
        for follower in self.followers.values():
            follower.start()

    def reconfigure(self, zones: Iterable[ZoneConfig]) -> None:
        """After a configuration reload: follow new zones, stop following removed ones."""
        for follower in self._set(zones):
            follower.prepare()
            if self._started:
                follower.start()

    def notify(self, zone: str, client: str) -> bool:
        """A NOTIFY for ``zone`` from ``client``: checked against the zone's primaries."""
        follower = self.followers.get(zone)
        if follower is None or not self.gate.is_primary(zone, client):
            self.log.warning(
                "notify_refused", zone=zone, client=client, reason="not a primary of the zone"
            )
            return False
        follower.notify()
        return True

    def states(self) -> dict[str, ZoneState]:
        """Every followed zone's state, by zone name."""
        return {name: follower.state() for name, follower in self.followers.items()}

    def close(self) -> None:
        for follower in self.followers.values():
            follower.close()
