"""The composition root of a serving process: it wires the engine, the forwarder, the
listeners (resolver.service.listeners) and the HTTP endpoints, applies each reload
(resolver.service.reloads) to them, and handles signals, systemd and shutdown."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import shutil
import signal
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from resolver import compiled_modules
from resolver.core.cache import Cache
from resolver.core.clients import ClientAcl
from resolver.core.engine import Engine
from resolver.core.errors import SourceError
from resolver.core.nametable import TableError
from resolver.core.outcome import Counters
from resolver.core.ratelimit import RateLimiter
from resolver.edge.dispatch import Dispatcher
from resolver.edge.faults import Faults
from resolver.edge.http import HttpServer
from resolver.edge.mmsg import batching_available
from resolver.edge.server import TcpServerState
from resolver.edge.sockets import ListenError
from resolver.edge.tlscert import TlsError
from resolver.edge.upstream import Forwarder
from resolver.service import sdnotify
from resolver.service.builder import IMAGE_ENV, image_dir
from resolver.service.childbuild import build_in_child, fork_available
from resolver.service.endpoints import control_server, metrics_server
from resolver.service.listeners import Listeners
from resolver.service.metrics import (
    counter_fields,
    engine_stats,
    policy_files,
    upstream_stats,
    zone_stats,
)
from resolver.service.observability import QueryLog, configure_logging, get_logger
from resolver.service.reloads import Changes, Reloads, build_packed, mapped, source_error_fields
from resolver.service.warning import WarningService, WarningSetupError
from resolver.sources.config import Config
from resolver.sources.snapshot import BuildResult
from resolver.tools.control import Loaded

if TYPE_CHECKING:
    from resolver.service.feeds import Feeds
    from resolver.zones.follower import Secondary

GRACE_SECONDS = 2.0
RESTART_ONLY = (
    "listen",
    "upstreams",
    "cache",
    "upstream_timeout",
    "query_timeout",
    "metrics",
    "control",
    "workers",
    "udp_batch",
    "listen_tls",
    "listen_https",
    "warning_server",
    "tcp_query_timeout",
    "tcp_max_per_client",
    "max_inflight",
    "rate_limit",
)
STATS_INTERVAL = 1.0
# Objects allocated (net) before a young collection, and the collections between older
# ones. Every query that waits for an upstream leaves objects alive across turns of the
# loop, and every cached answer is examined once; with Python's default (700) a busy
# server collects every few hundred queries and walks the whole cache in a full
# collection about once a second.
GC_THRESHOLDS = (10_000, 10, 10)


class App:
    """One serving process: the whole server, or one worker of a Supervisor.

    As a worker (``link`` is the write end of a pipe to the supervisor) it serves the
    listening sockets the supervisor bound for it and reports "ready", reload outcomes
    and its counters over the pipe instead of talking to systemd.
    """

    def __init__(
        self,
        config: Config,
        config_path: Path | None = None,
        link: int | None = None,
        slot: int | None = None,
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.link = link
        self.slot = slot  # the worker's number under a supervisor
        self.log = get_logger()
        self.counters = Counters()
        self.reloads = Reloads(self.log)
        self._stop = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.listeners: Listeners | None = None  # UDP, TCP, DoT and DoH
        self.engine: Engine | None = None
        self.dispatcher: Dispatcher | None = None
        self.faults = Faults(self.log)
        self.tcp_state: TcpServerState | None = None
        self.limiter: RateLimiter | None = None  # response rate limiting of UDP answers
        self.query_log: QueryLog | None = None
        self.metrics: HttpServer | None = None
        self.control: HttpServer | None = None
        self.loaded: Loaded | None = None  # what the control endpoint shows
        self.warning: WarningService | None = None  # the warning page's web server
        self._clock: asyncio.TimerHandle | None = None
        self._releasing = False  # retired replies are being freed (_release_replays)
        self.secondary: Secondary | None = None  # zone transfers, when not a worker
        self.feeds: Feeds | None = None  # lists fetched from a url, when not a worker
        # A worker maps the image the supervisor built; a lone server builds its own.
        image = os.environ.get(IMAGE_ENV) if link is not None else None
        self.image = Path(image) if image else None
        self._build_dir: Path | None = None  # a lone server's reloads write their image here

    def _build(self, config: Config, previous: BuildResult | None) -> tuple[BuildResult, Changes]:
        if self.image is not None:
            return mapped(self.image)
        return build_packed(config, previous)

    async def _rebuild(
        self, config: Config, previous: BuildResult | None
    ) -> tuple[BuildResult, Changes]:
        """A reload's build, off the event loop: a worker maps the image its supervisor
        built; a lone server builds in a child process of its own (resolver.service.
        childbuild), or in a thread where processes cannot fork."""
        if self.image is None and fork_available():
            if self._build_dir is None:
                self._build_dir = image_dir()
            return await build_in_child(config, previous, self._build_dir)
        return await asyncio.to_thread(self._build, config, previous)

    # --- start-up ------------------------------------------------------------

    async def run(self) -> int:
        config = self.config
        loop = asyncio.get_running_loop()
        # Signals first: a stop asked for during start-up is a clean stop, not a kill.
        loop.add_signal_handler(signal.SIGHUP, self.request_reload)
        loop.add_signal_handler(signal.SIGTERM, self._stop.set)
        loop.add_signal_handler(signal.SIGINT, self._stop.set)
        self._follow_zones(config)
        try:
            result, _ = self._build(config, None)
        except SourceError as exc:
            self.log.error("policy_load_failed", **source_error_fields(exc))
            return 1
        except (OSError, TableError) as exc:
            self.log.error("policy_load_failed", file=str(self.image), error=str(exc))
            return 1
        if self.image is None:  # a supervisor's builder reported them once for every worker
            for warning in result.warnings:
                self.log.warning("list_lines_skipped", detail=warning)
            for warning in result.zone_warnings:
                self.log.warning("zone_warning", detail=warning)
        self._follow_lists(result, config)
        if not config.upstreams:
            self.log.warning(
                "no_upstreams", detail="nothing can be forwarded: every allowed name gets SERVFAIL"
            )

        engine = self.engine = Engine(
            result.snapshot, Cache(config.cache), ClientAcl(config.allow_clients), self.counters
        )
        self._set_query_log(config)
        self._set_notify(config)
        forwarder = Forwarder(
            config.upstreams, config.upstream_timeout, config.query_timeout, log=self.log
        )
        dispatcher = self.dispatcher = Dispatcher(
            engine, forwarder, self.faults, config.max_inflight
        )
        await dispatcher.start()
        self.tcp_state = TcpServerState(
            engine,
            dispatcher,
            config.tcp_idle_timeout,
            config.tcp_max_connections,
            config.tcp_query_timeout,
            config.tcp_max_per_client,
        )
        limiter = self.limiter = RateLimiter(config.rate_limit) if config.rate_limit else None
        listeners = self.listeners = Listeners(
            engine, dispatcher, self.tcp_state, self.faults, limiter, self.log
        )
        try:
            await listeners.open(config.listen, config.udp_batch, self.link is not None)
            listeners.designate(config)
            if config.tls and (self.link is None or self.slot == 0):
                await listeners.start_encrypted(config)
            if config.metrics is not None and self.link is None:
                self.metrics = metrics_server(self.stats)
                await self.metrics.start([config.metrics])
            self.loaded = Loaded(result, datetime.now(UTC))
            self.reloads.last_success = time.time()
            if config.control is not None and (self.link is None or self.slot == 0):
                self.control = control_server(lambda: self.loaded)  # one worker serves it
                await self.control.start([config.control])
            if config.warning_server is not None and (self.link is None or self.slot == 0):
                self.warning = WarningService(config.warning_server, engine, self.log)
                await self.warning.start()  # one worker serves it, as it does control
        except WarningSetupError as exc:
            self.log.error("warning_server_failed", error=str(exc))
            self._close()
            return 1
        except ListenError as exc:
            self.log.error("listen_failed", **exc.fields())
            self._close()
            return 1
        except TlsError as exc:
            self.log.error("tls_failed", error=str(exc))
            self._close()
            return 1
        except OSError as exc:
            # /metrics or the control endpoint: the one whose start failed has bound nothing.
            failed = [
                (what, endpoint)
                for what, http, endpoint in (
                    ("metrics", self.metrics, config.metrics),
                    ("control", self.control, config.control),
                )
                if http is not None and endpoint is not None and not http.addresses
            ]
            if failed:
                what, endpoint = failed[0]
                failure = ListenError(endpoint, "tcp", exc)
                self.log.error("listen_failed", **failure.fields(), what=what)
            else:
                self.log.error("listen_failed", error=str(exc))
            self._close()
            return 1

        compiled = compiled_modules()  # the optional compiled build (setup.py)
        self.log.info(
            "started",
            pid=os.getpid(),
            config=config.source,
            listen=[str(e) for e in config.listen],
            listen_tls=[str(e) for e in config.listen_tls],
            listen_https=[str(e) for e in config.listen_https],
            upstreams=[str(e) for e in config.upstreams],
            policies=len(result.reports),
            zones=len(result.zones),
            names=result.snapshot.policy.names(),
            udp_batch=config.udp_batch and batching_available(),
            compiled=bool(compiled),
        )
        self.log.debug(
            "started_details",
            policies=[r.as_dict() for r in result.reports],
            zones=[z.as_dict() for z in result.zones],
            query_log=config.query_log,
            compiled=compiled,
            metrics=str(config.metrics) if config.metrics else None,
            control=str(config.control) if config.control else None,
        )
        self._arm_clock()
        if self.secondary is not None:
            self.secondary.start()  # in the background: the saved copies are enforced already
        if self.feeds is not None:
            self.feeds.start()  # the same for lists fetched from a url
        if self.link is None:
            sdnotify.ready(f"serving {result.snapshot.policy.names()} blocked names")
        else:
            self._report(f"ready {result.snapshot.policy.names()}")
            self._spawn(self._report_stats)
        # The policy in force lives in the engine and in self.loaded from here on: held by
        # this frame too, the first build (and its mapped image) would outlive every reload.
        del result
        await self._stop.wait()
        return await self._shutdown()

    def _set_query_log(self, config: Config) -> None:
        assert self.engine is not None
        engine = self.engine
        mode = config.query_log
        if self.query_log is not None:
            self.query_log.stop()
            self.query_log = None
        if mode != "off":
            self.query_log = QueryLog(
                mode,
                lambda: engine.snapshot.policy,
                client_mode=config.query_log_client,
                sample=config.query_log_sample,
            )
            self.query_log.start()
        engine.query_log = self.query_log
        engine.log_all = mode == "all"

    # --- reload ----------------------------------------------------------------

    def request_reload(self) -> None:
        """SIGHUP: rebuild the snapshot off the hot path; repeated signals coalesce."""
        if self.engine is None:
            return  # still starting: the policy being loaded is read after the signal anyway
        if self.reloads.request():
            self._spawn(self._reload)

    async def _reload(self) -> None:
        if self.link is None:
            sdnotify.reloading()
        reloads = self.reloads
        try:
            await reloads.run(self._reload_once)
        finally:
            if self.link is None:
                sdnotify.ready()
            else:
                self._report(f"reloaded {'ok' if reloads.ok else 'failed'} {reloads.began!r}")

    # --- the pipe to a supervisor --------------------------------------------------

    def _report(self, message: str) -> None:
        if self.link is None:
            return
        try:
            os.write(self.link, message.encode() + b"\n")
        except OSError:
            self._stop.set()  # the supervisor is gone: stop rather than serve unsupervised

    async def _report_stats(self) -> None:
        while True:
            await asyncio.sleep(STATS_INTERVAL)
            self._report("stats " + json.dumps(self.stats(), separators=(",", ":")))

    async def _reload_once(self) -> bool:
        """One pass: load and build (resolver.service.reloads), then swap and rewire."""
        assert self.engine is not None
        started = time.monotonic()
        previous = self.loaded.result if self.loaded is not None else None
        loaded = await self.reloads.load(
            self.config_path, self.config, previous, self._rebuild, self.image
        )
        if loaded is None:
            return False
        config, result, changes = loaded
        before = self.engine.snapshot.policy.names()
        self.engine.snapshot = result.snapshot  # the atomic swap
        self._release_replays()
        self.engine.acl = ClientAcl(config.allow_clients)
        changed = [k for k in RESTART_ONLY if getattr(config, k) != getattr(self.config, k)]
        logging_of = ("query_log", "query_log_client", "query_log_sample")
        if any(getattr(config, k) != getattr(self.config, k) for k in logging_of):
            self._set_query_log(config)
        self.config = config
        if self.listeners is not None:
            await self.listeners.reload_tls(config)  # a renewed certificate
        if self.warning is not None:
            await self.warning.refresh()  # the templates, read again
        self.reloads.succeeded()
        self._arm_clock()
        self._follow_zones(config)
        self._follow_lists(result, config)
        self._set_notify(config)
        if self.image is None:
            for warning in result.warnings:
                self.log.warning("list_lines_skipped", detail=warning)
            for warning in result.zone_warnings:
                self.log.warning("zone_warning", detail=warning)
        swapped = time.monotonic()
        self.loaded = Loaded(result, datetime.now(UTC), changes)
        self.reloads.log_applied(swapped - started, before, previous, result, changes, changed)
        return True

    # --- zones followed by zone transfer (resolver/secondary.py) ------------------------

    def _follow_zones(self, config: Config) -> None:
        """Without a supervisor this process keeps the zone copies current itself. Before the
        first snapshot, ``prepare`` drops a copy that expired while stopped (on_expire: drop)."""
        if self.link is not None:
            return  # the supervisor transfers, once for all workers
        if self.secondary is not None:
            self.secondary.reconfigure(config.zones)
        elif any(z.primaries for z in config.zones):
            from resolver.zones.follower import Secondary

            self.secondary = Secondary(config.zones, self.request_reload, self.log)
            self.secondary.prepare()
            if self.engine is not None:
                self.secondary.start()

    def _follow_lists(self, result: BuildResult, config: Config) -> None:
        """Without a supervisor this process fetches the lists named by a url itself; a
        changed copy makes the policy reload."""
        if self.link is not None:
            return  # the supervisor fetches, once for all workers
        from resolver.service.feeds import Feeds, fetched_lists

        refs = fetched_lists(result.policies)
        if self.feeds is None and refs:
            self.feeds = Feeds(self.request_reload, self.log)
            if self.engine is not None:
                self.feeds.start()
        if self.feeds is not None:
            self.feeds.reconfigure(refs, config.max_file_size)

    def _set_notify(self, config: Config) -> None:
        """Route NOTIFY to the zones' gate; without zones it stays NOTIMP at no cost."""
        assert self.engine is not None
        if any(z.primaries for z in config.zones):
            from resolver.zones.notify import NotifyListener

            self.engine.on_notify = NotifyListener(config.zones, self._forward_notify, self.log)
        else:
            self.engine.on_notify = None

    def _forward_notify(self, zone: str, client: str) -> None:
        if self.secondary is not None:
            self.secondary.notify(zone, client)
        else:
            self._report(f"notify {zone} {client}")  # the supervisor checks and transfers

    # --- dated policies ---------------------------------------------------------

    def _arm_clock(self) -> None:
        """Wake up when the next dated policy comes into force or expires (no reload needed)."""
        if self._clock is not None:
            self._clock.cancel()
            self._clock = None
        assert self.engine is not None
        now = datetime.now(UTC)
        moment = self.engine.snapshot.policy.next_change(now)
        if moment is None:
            return
        # Wake at least hourly, so a wall-clock step cannot delay the switch for long.
        delay = min((moment - now).total_seconds(), 3600.0) + 0.001
        self._clock = asyncio.get_running_loop().call_later(max(delay, 0.0), self._on_clock)

    def _on_clock(self) -> None:
        assert self.engine is not None
        changed = self.engine.policy_clock(datetime.now(UTC))
        self._release_replays()
        for info, active in changed:
            self.log.info(
                "policy_in_force" if active else "policy_expired",
                policy=info.id,
                file=info.source,
                effective_from=info.effective_from.isoformat() if info.effective_from else None,
                expires=info.expires.isoformat() if info.expires else None,
            )
        self._arm_clock()

    def _release_replays(self) -> None:
        """Free the replies the engine retired at a swap, a slice per turn of the loop."""
        if self._releasing or self.engine is None or not self.engine.retired:
            return
        self._releasing = True
        engine = self.engine

        async def release() -> None:
            try:
                while engine.release():
                    await asyncio.sleep(0)
            finally:
                self._releasing = False

        self._spawn(release)

    # --- shutdown --------------------------------------------------------------

    def _spawn(self, factory: Callable[[], Coroutine[Any, Any, None]]) -> None:
        task = asyncio.ensure_future(factory())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def stop(self) -> None:
        self._stop.set()

    def _close(self) -> None:
        if self.listeners is not None:
            self.listeners.close()
        if self.metrics is not None:
            self.metrics.close()
        if self.control is not None:
            self.control.close()
        if self.warning is not None:
            self.warning.close()

    async def _shutdown(self) -> int:
        if self.link is None:
            sdnotify.stopping()
        self.log.info("stopping")
        self._close()
        for http in (self.metrics, self.control):
            if http is not None:
                await http.wait_closed()  # its connections end before the loop does
        if self.listeners is not None:
            await self.listeners.wait_closed()
        if self.warning is not None:
            await self.warning.wait_closed()
        deadline = time.monotonic() + GRACE_SECONDS
        while self.dispatcher is not None and self.dispatcher.busy and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        if self.listeners is not None:
            self.listeners.end_connections()
        if self.dispatcher is not None:
            self.dispatcher.close()
        if self.query_log is not None:
            self.query_log.stop()
        for task in self._tasks:
            task.cancel()
        if self._clock is not None:
            self._clock.cancel()
        if self.secondary is not None:
            self.secondary.close()
        if self.feeds is not None:
            self.feeds.close()
        if self._build_dir is not None:
            shutil.rmtree(self._build_dir, ignore_errors=True)
        self.log.info("stopped")
        return 0

    # --- numbers for /metrics ---------------------------------------------------

    def stats(self) -> dict[str, Any]:
        assert self.engine is not None and self.dispatcher is not None
        c = self.counters
        f = self.dispatcher.forwarder.stats
        return {
            **engine_stats(self.engine),  # outcomes, answers, blocks, latency, cache numbers
            "upstreams": upstream_stats(self.dispatcher.forwarder, time.monotonic()),
            "policy_files": policy_files(self.loaded.result if self.loaded else None),
            "reload_last_success": self.reloads.last_success,
            "reload_last_ok": int(self.reloads.last_ok),
            "zones": zone_stats(self.secondary),
            "refused_clients": c.refused_clients,
            "responses_ignored": c.responses_ignored,
            **counter_fields("upstream_", [f]),  # upstream_sent, upstream_timeouts, ...
            "coalesced": c.coalesced,
            "chased": c.chased,
            "reloads": self.reloads.count,
            "reload_failures": self.reloads.failures,
            "policy_names": self.engine.snapshot.policy.names(),
            "inflight": self.dispatcher.busy,
            "tcp_connections": len(self.tcp_state.connections) if self.tcp_state else 0,
            "tcp_rejected": self.tcp_state.rejected if self.tcp_state else 0,
            **counter_fields("udp_", self.listeners.batch_stats() if self.listeners else []),
            "unexpected_errors": self.faults.total,
            "inflight_limited": self.dispatcher.overloaded,
            **counter_fields("tcp_", [self.tcp_state.stats] if self.tcp_state else []),
            **counter_fields("rate_limited_", [self.limiter.stats] if self.limiter else []),
            **(self.feeds.stats() if self.feeds is not None else {}),
        }


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on every supported platform
        return None
    return uvloop.new_event_loop


def run_server(
    config: Config, config_path: Path | None, worker: tuple[int, int] | None = None
) -> int:
    """Serve: in this process, or as ``worker`` (id, pipe fd) of a supervisor, or as the
    supervisor of one worker per core."""
    if worker is None and config.worker_count() > 1:
        from resolver.service.workers import Supervisor

        configure_logging(config.log_level, form=config.log_format)
        with asyncio.Runner() as runner:
            return runner.run(Supervisor(config, config_path).run())
    configure_logging(config.log_level, worker[0] if worker else None, config.log_format)
    gc.set_threshold(*GC_THRESHOLDS)
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        link, slot = (worker[1], worker[0]) if worker else (None, None)
        return runner.run(App(config, config_path, link, slot).run())
