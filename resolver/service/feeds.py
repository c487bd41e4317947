"""Lists fetched from where they are published (``url:``), kept current like Pi-hole's,
AdGuard Home's and Blocky's block lists.

Each list is fetched every ``refresh`` (a day unless the policy says) over HTTPS, as a
conditional request when its copy's ETag or Last-Modified is known. A body that is new
(its sha256 differs from the copy's) replaces the copy atomically and makes the policy
reload; a 304, or the same body again, only records the time. Anything else changes
nothing: a failed fetch, a body over ``max_file_size``, an empty body, or one whose
sha256 is not the one the policy pins keeps the old copy and is logged
(``list_fetch_failed``), then tried again sooner than the refresh (from a minute,
doubling, up to an hour).

Start-up never waits for the network: the policy is built from the copies on disk
(the time of the last fetch survives restarts, so a fresh copy is not fetched again at
once). A list with no copy yet is empty until its first fetch, and a warning says so
(``list_copy_missing``). Under a supervisor, only the supervisor fetches.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from resolver.edge import httpget
from resolver.edge.httpget import FetchError, Got, TooLarge
from resolver.sources.files import DEFAULT_MAX_SIZE, size_text
from resolver.sources.listcopy import (
    Fetched,
    conditional_headers,
    digest_of,
    meta_bytes,
    meta_path,
    read_meta,
)
from resolver.sources.policy_lists import ListRef
from resolver.sources.policy_yaml import PolicyFile
from resolver.zones.store import write_atomically

FETCH_TIMEOUT = 60.0  # seconds one fetch may take, from connecting to the last byte
RETRY_FIRST = 60.0  # after a failure: then doubling, but never later than the refresh
RETRY_MAX = 3600.0
CHANGE_DELAY = 0.2  # lists changed together make one reload


class Refused(FetchError):
    """The server answered, but the body is not taken."""


def fetched_lists(policies: Iterable[PolicyFile]) -> list[ListRef]:
    """The lists with a ``url:``, once each (the first policy's settings win)."""
    seen: dict[Path, ListRef] = {}
    for policy in policies:
        for ref in policy.lists:
            if ref.url is not None:
                seen.setdefault(ref.path, ref)
    return list(seen.values())


def first_delay(meta: Fetched | None, ref: ListRef, copy_exists: bool, now: float) -> float:
    """Seconds until a list's first fetch: at once without a copy (or a record of it, or
    with a copy that is not the pinned one), else when the copy is ``refresh`` old."""
    if not copy_exists or meta is None or (ref.sha256 is not None and meta.sha256 != ref.sha256):
        return 0.0
    return max(0.0, meta.fetched_at + ref.refresh - now)


def retry_delay(failures: int, refresh: float) -> float:
    """Seconds until the next try after ``failures`` failures in a row."""
    return min(refresh, RETRY_MAX, RETRY_FIRST * 2.0 ** min(max(0, failures - 1), 16))


def judge(
    ref: ListRef, meta: Fetched | None, got: Got, now: float, copy_digest: str | None
) -> tuple[str, Fetched]:
    """What a fetch's answer means for the copy: "not_modified" (304), "unchanged" (the
    same body), or "changed"; with the record to keep. Refused for a body not taken.
    ``copy_digest``: the sha256 of the copy on disk (None when there is none)."""
    assert ref.url is not None
    if got.status == 304:
        if meta is None or copy_digest is None:
            raise Refused("the server answered 304 Not Modified, but there is no copy to keep")
        return "not_modified", Fetched(
            ref.url,
            meta.sha256,
            meta.size,
            now,
            got.etag or meta.etag,
            got.last_modified or meta.last_modified,
        )
    digest = hashlib.sha256(got.body).hexdigest()
    if ref.sha256 is not None and digest != ref.sha256:
        raise Refused(f"the body's sha256 is {digest}, not {ref.sha256} as the policy pins")
    if not got.body:
        raise Refused("the server sent an empty body")
    record = Fetched(ref.url, digest, len(got.body), now, got.etag, got.last_modified)
    return ("unchanged" if digest == copy_digest else "changed"), record


def _last_success(meta: Fetched | None, copy: Path) -> float | None:
    """When the copy was last fetched: its record's time, else the file's own."""
    if meta is not None:
        return meta.fetched_at
    try:
        return copy.stat().st_mtime
    except OSError:
        return None


@dataclass
class Feed:
    """One fetched list: its settings, the record of its copy, how its fetches went."""

    ref: ListRef
    meta: Fetched | None
    last_success: float | None  # seconds since the epoch
    last_failure: float | None = None
    error: str = ""
    failures: int = 0  # in a row
    busy: bool = False
    handle: asyncio.TimerHandle | None = None
    task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        assert self.ref.url is not None
        return self.ref.url


class Feeds:
    """Keeps every fetched list's copy current; ``on_change`` reloads the policy."""

    def __init__(
        self,
        on_change: Callable[[], None],
        log: Any,
        clock: Callable[[], float] = time.time,
        timeout: float = FETCH_TIMEOUT,
    ) -> None:
        self.on_change = on_change
        self.log = log
        self.clock = clock
        self.timeout = timeout
        self.limit = DEFAULT_MAX_SIZE
        self.feeds: dict[Path, Feed] = {}
        self.fetches = 0  # successful, 304s included
        self.failures = 0
        self._contexts: dict[Path | None, ssl.SSLContext] = {}
        self._started = False
        self._closed = False
        self._change: asyncio.TimerHandle | None = None

    # --- configuration ------------------------------------------------------------

    def reconfigure(self, refs: Iterable[ListRef], limit: int = DEFAULT_MAX_SIZE) -> None:
        """Follow these lists from now on: new ones are read from disk (and fetched when
        started), dropped ones are no longer fetched, changed settings apply at once."""
        self.limit = limit
        self._contexts.clear()  # a CA file may have changed: read it again
        wanted = {ref.path: ref for ref in refs}
        for path in list(self.feeds):
            if path not in wanted:
                self._cancel(self.feeds.pop(path))
        for path, ref in wanted.items():
            feed = self.feeds.get(path)
            if feed is None:
                meta = read_meta(path, ref.url or "")
                feed = self.feeds[path] = Feed(ref, meta, _last_success(meta, path))
                if not path.exists():
                    self.log.warning(
                        "list_copy_missing",
                        url=ref.url,
                        copy=str(path),
                        detail="no copy yet: the list is empty until its first fetch",
                    )
                if self._started:
                    self._schedule(feed, first_delay(meta, ref, path.exists(), self.clock()))
            elif feed.ref != ref:
                feed.ref = ref
                if self._started and not feed.busy:
                    self._cancel(feed)
                    delay = first_delay(feed.meta, ref, path.exists(), self.clock())
                    self._schedule(feed, delay)

    def start(self) -> None:
        """Fetch what is due now, and each list again when its refresh comes."""
        if self._started:
            return
        self._started = True
        now = self.clock()
        for path, feed in self.feeds.items():
            self._schedule(feed, first_delay(feed.meta, feed.ref, path.exists(), now))

    def close(self) -> None:
        self._closed = True
        for feed in self.feeds.values():
            self._cancel(feed)
        if self._change is not None:
            self._change.cancel()

    # --- fetching -----------------------------------------------------------------

    def _schedule(self, feed: Feed, delay: float) -> None:
        if self._closed:
            return
        if feed.handle is not None:
            feed.handle.cancel()
        loop = asyncio.get_running_loop()
        feed.handle = loop.call_later(delay, self._begin, feed)

    def _cancel(self, feed: Feed) -> None:
        if feed.handle is not None:
            feed.handle.cancel()
            feed.handle = None
        if feed.task is not None:
            feed.task.cancel()

    def _begin(self, feed: Feed) -> None:
        feed.handle = None
        if self._closed or feed.busy or self.feeds.get(feed.ref.path) is not feed:
            return
        feed.busy = True
        feed.task = asyncio.ensure_future(self._fetch(feed))

    async def _fetch(self, feed: Feed) -> None:
        started = time.monotonic()
        try:
            outcome, record = await self._fetch_once(feed)
        except FetchError as exc:
            self._failed(feed, exc)
            return
        except Exception as exc:  # a fault of ours: still the old copy, and a retry later
            self._failed(feed, FetchError(f"unexpected error: {exc!r}"))
            return
        finally:
            feed.busy = False
            feed.task = None
        feed.meta = record
        feed.last_success = record.fetched_at
        feed.failures = 0
        feed.error = ""
        self.fetches += 1
        (self.log.info if outcome == "changed" else self.log.debug)(
            "list_fetched",
            url=feed.url,
            outcome=outcome,
            size=record.size,
            sha256=record.sha256,
            duration_ms=round((time.monotonic() - started) * 1000, 1),
        )
        self._schedule(feed, feed.ref.refresh)
        if outcome == "changed":
            self._changed()

    async def _fetch_once(self, feed: Feed) -> tuple[str, Fetched]:
        """Fetch, judge and keep one list; FetchError when nothing is kept."""
        ref = feed.ref
        copy = ref.path
        exists = await asyncio.to_thread(copy.exists)
        headers = conditional_headers(feed.meta, ref.sha256) if exists else {}
        context = await self._context(ref.ca_file)
        try:
            got = await httpget.get(feed.url, context, self.limit, self.timeout, headers)
        except TooLarge as exc:
            raise Refused(
                f"the list is larger than max_file_size ({size_text(self.limit)}): "
                f"{size_text(exc.seen)} or more"
            ) from None
        now = self.clock()
        digest: str | None = None  # the copy's sha256: its record's, or read from it
        if exists:
            meta = feed.meta
            digest = meta.sha256 if meta is not None else await asyncio.to_thread(digest_of, copy)
        outcome, record = judge(ref, feed.meta, got, now, digest)
        try:
            body = got.body if outcome == "changed" else None
            await asyncio.to_thread(self._keep, copy, body, record)
        except OSError as exc:
            raise FetchError(f"cannot save the copy at {copy}: {exc.strerror or exc}") from None
        return outcome, record

    @staticmethod
    def _keep(copy: Path, body: bytes | None, record: Fetched) -> None:
        """The copy (when new) and then its record, each replaced all or nothing."""
        if body is not None:
            write_atomically(copy, body)
        write_atomically(meta_path(copy), meta_bytes(record))

    async def _context(self, ca_file: Path | None) -> ssl.SSLContext:
        context = self._contexts.get(ca_file)
        if context is None:
            try:
                context = await asyncio.to_thread(httpget.tls_context, ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise FetchError(f"cannot read the CA file {ca_file}: {exc}") from None
            self._contexts[ca_file] = context
        return context

    def _failed(self, feed: Feed, exc: FetchError) -> None:
        feed.failures += 1
        feed.last_failure = self.clock()
        feed.error = str(exc)
        self.failures += 1
        delay = retry_delay(feed.failures, feed.ref.refresh)
        if feed.last_success is not None and feed.ref.path.exists():
            kept = "the copy fetched " + datetime.fromtimestamp(feed.last_success, UTC).isoformat(
                timespec="seconds"
            )
        elif feed.ref.path.exists():
            kept = "the copy on disk"
        else:
            kept = "none: the list is empty"
        self.log.warning(
            "list_fetch_failed",
            url=feed.url,
            error=feed.error,
            kept=kept,
            failures=feed.failures,
            retry_in=delay,
        )
        self._schedule(feed, delay)

    def _changed(self) -> None:
        """A copy changed: reload once, shortly (lists changed together make one reload)."""
        if self._change is None or self._change.cancelled():
            loop = asyncio.get_running_loop()
            self._change = loop.call_later(CHANGE_DELAY, self._reload)

    def _reload(self) -> None:
        self._change = None
        if not self._closed:
            self.on_change()

    # --- numbers for /metrics ---------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counters and gauges over every fetched list (see service/observability.py)."""
        now = self.clock()
        feeds = list(self.feeds.values())
        successes = [f.last_success for f in feeds if f.last_success is not None]
        failures = [f.last_failure for f in feeds if f.last_failure is not None]
        return {
            "list_fetches": self.fetches,
            "list_fetch_failures": self.failures,
            "lists_fetched": len(feeds),
            "lists_failing": sum(1 for f in feeds if f.failures),
            "lists_without_copy": sum(1 for f in feeds if f.last_success is None),
            "list_last_success": min(successes) if successes else 0,
            "list_last_failure": max(failures) if failures else 0,
            "list_copy_age": round(max(now - s for s in successes), 3) if successes else 0,
        }
