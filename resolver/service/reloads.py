"""A serving process's policy, built at start and rebuilt in place on SIGHUP.

The build runs with the cyclic garbage collector paused, then freezes what exists (a
worker maps the image its supervisor built instead). A reload loads the configuration
and builds off the event loop; requests made while one runs coalesce into one more pass.
One that fails is counted and logged with every error found, and the previous policy
stays; one that loads is logged with the names each policy gained and lost. The counters
here are what /metrics shows of reloads.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from resolver.core.errors import SourceError
from resolver.core.nametable import TableError
from resolver.sources.config import Config, load_config
from resolver.sources.shared import name_changes, pack, read_image
from resolver.sources.snapshot import BuildResult, build_snapshot
from resolver.tools.check import reload_errors, reload_summary
from resolver.tools.control import removed_policies

Changes = dict[str, tuple[int, int]]  # policy id -> (names added, names removed)
Build = Callable[[Config, BuildResult | None], Awaitable[tuple[BuildResult, Changes]]]


def build_frozen(config: Config) -> BuildResult:
    """Build the snapshot with the cyclic garbage collector paused, then freeze what exists.

    A million-name policy is millions of objects; without this, each full collection
    walks them all and stalls query serving for a fraction of a second. Frozen
    objects are still freed by reference counting when a reload replaces them.
    """
    gc.disable()
    try:
        return build_snapshot(config)
    finally:
        gc.enable()
        refreeze()


def refreeze() -> None:
    """Collect, then freeze what is left. Objects frozen at an earlier reload are thawed
    first, so the cycles of a snapshot that was replaced since are collected rather than
    kept for ever (and garbage made while collection was paused is never frozen)."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def build_packed(config: Config, previous: BuildResult | None) -> tuple[BuildResult, Changes]:
    """Build here, then keep the names packed in one buffer (resolver.sources.shared): a
    fraction of the memory of the table they were compiled into. With ``previous`` (a
    reload), the names each policy gained and lost are counted first."""
    full = build_frozen(config)
    changes: Changes = {}
    if previous is not None:
        changes = name_changes(previous, full)
    _, light = pack(full)
    return light, changes


def mapped(path: Path) -> tuple[BuildResult, Changes]:
    """The build a supervisor wrote for its workers (resolver.service.builder), mapped."""
    light, extra = read_image(path)
    return light, dict(extra.get("changes", {}))


def source_error_fields(exc: SourceError) -> dict[str, Any]:
    return {"file": exc.source, "line": exc.line, "column": exc.column, "error": exc.message}


class Reloads:
    """One process's reloads: requests coalesced into passes, each pass's loading and
    building, its outcome in the log, and the counters."""

    def __init__(self, log: Any) -> None:
        self.log = log
        self.count = 0  # reloads applied
        self.failures = 0
        self.last_success = 0.0  # Unix time of the last successful load
        self.last_ok = True
        self.ok = False  # how the last pass of the current (or last) run went
        self.began = 0.0  # when that pass began (monotonic): it covers every request before
        self._running = False
        self._again = False

    def request(self) -> bool:
        """A reload asked for: True when a run of passes is to start now; False when one
        runs already (it makes one more pass)."""
        if self._running:
            self._again = True
            return False
        self._running = True
        return True

    async def run(self, once: Callable[[], Awaitable[bool]]) -> None:
        """Pass after pass of ``once`` until no request came in during one."""
        self.ok = False
        self.began = 0.0
        try:
            while True:
                self._again = False
                self.began = time.monotonic()
                self.ok = await once()
                self.last_ok = self.ok
                if not self._again:
                    break
        finally:
            self._running = False

    async def load(
        self,
        config_path: Path | None,
        current: Config,
        previous: BuildResult | None,
        build: Build,
        image: Path | None,
    ) -> tuple[Config, BuildResult, Changes] | None:
        """The configuration at ``config_path`` (``current`` without one) and its build,
        made off the event loop by ``build``; None when they do not load (counted, and
        logged with every error found: the previous policy stays)."""
        try:
            config = load_config(config_path) if config_path else current
            result, changes = await build(config, previous)
        except (OSError, TableError) as exc:
            self.failures += 1
            self.log.error(
                "policy_reload_failed", kept="previous policy", file=str(image), error=str(exc)
            )
            return None
        except SourceError as exc:
            self.failures += 1
            errors = await asyncio.to_thread(reload_errors, config_path, current, exc)
            self.log.error(
                "policy_reload_failed",
                summary=reload_summary(errors),
                kept="previous policy",
                **source_error_fields(exc),
                errors=[source_error_fields(e) for e in errors],
            )
            return None
        return config, result, changes

    def succeeded(self) -> None:
        """A reload in force: counted."""
        self.count += 1
        self.last_success = time.time()

    def log_applied(
        self,
        duration: float,
        before: int,
        previous: BuildResult | None,
        result: BuildResult,
        changes: Changes,
        restart_keys: list[str],
    ) -> None:
        """What a reload in force after ``duration`` seconds changed (``before``: the
        names of the policy it replaced), and the settings it could not apply."""
        self.log.info(
            "policy_reloaded",
            duration_ms=round(duration * 1000, 1),
            names=result.snapshot.policy.names(),
            names_before=before,
            policies=[
                {
                    **r.as_dict(),
                    "added": changes[r.id][0],
                    "removed": changes[r.id][1],
                }
                for r in result.reports
            ],
            policies_removed=removed_policies(previous, result),
            zones=[z.as_dict() for z in result.zones],
        )
        if restart_keys:
            self.log.warning(
                "restart_required",
                keys=restart_keys,
                detail="these settings apply at the next start",
            )
