"""Several serving processes on SO_REUSEPORT sockets, one per core, under one supervisor.

The supervisor serves no queries. It builds the policy once per start and reload
(resolver.service.builder, in a process of its own) into an image file that every
worker maps: the names exist once on the machine, a reload costs one build whatever the
number of workers, and a build that fails leaves every worker with the policy it has.
It binds every listening socket itself, once it has made sure no other program holds
the address (a port held by anyone else fails the start), and passes each worker its
own set (resolver/edge/sockets.py). It starts the workers (each a full server in its
own process: own cache, the shared policy image), tells systemd when all are ready, on
SIGHUP (or a changed zone copy or fetched list) builds and then hands SIGHUP to every
worker (each maps the new image and swaps) and reports READY again once all have
reloaded, restarts a worker that dies (on sockets bound anew), serves /metrics with the
workers' counters summed, and stops them all on SIGTERM or SIGINT. Workers talk back
over a pipe, one line a message: ``ready``, ``reloaded ok|failed T`` (T: when, on the
system's monotonic clock, the reload began to read the image), ``stats {json}``. A
reload is counted here, once: as failed when its build fails, else when every worker
has applied it (reported a reload that began after it was sent the signal).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from resolver.core.errors import SourceError
from resolver.edge.http import HttpServer
from resolver.edge.sockets import LISTEN_FDS, Listener, ListenError, bind_for_workers, environment
from resolver.service import sdnotify
from resolver.service.builder import IMAGE_ENV, image_dir
from resolver.service.endpoints import metrics_server
from resolver.service.metrics import merge_stats, zone_stats
from resolver.service.observability import get_logger
from resolver.sources.config import Config, load_config
from resolver.sources.config_sections import ZoneConfig

if TYPE_CHECKING:
    from resolver.service.feeds import Feeds
    from resolver.zones.follower import Secondary

STOP_GRACE = 10.0
RESTART_DELAY = 1.0
PIPE_LINE_LIMIT = 1 << 24  # a stats line lists every policy file: room for many thousands


class Worker:
    def __init__(self, slot: int) -> None:
        self.slot = slot
        self.process: asyncio.subprocess.Process | None = None
        self.ready = False
        self.stats: dict[str, Any] = {}
        self.restarts = 0
        self.names = 0
        self.asked = 0.0  # when its current process was last sent SIGHUP (monotonic)


class Supervisor:
    def __init__(self, config: Config, config_path: Path | None) -> None:
        self.config = config
        self.config_path = config_path
        self.log = get_logger()
        self.workers = [Worker(i) for i in range(config.worker_count())]
        self._stop = asyncio.Event()
        self._stopping = False
        self._failed_start = False
        self._all_ready = asyncio.Event()
        self._reload_waiting: set[int] = set()
        self._reload_failed = False
        self._reload_pending = False  # a reload not yet applied by every worker
        self.reloads = 0
        self.reload_failures = 0
        self.reload_last_success = 0.0
        self.reload_last_ok = True
        self._tasks: set[asyncio.Task[Any]] = set()
        self.metrics: HttpServer | None = None
        self.secondary: Secondary | None = None  # zone transfers: here, once for all workers
        self.feeds: Feeds | None = None  # lists fetched from a url: here too
        self._missed_reload: set[int] = set()  # workers that were starting during a reload
        self._unpassed: dict[int, list[Listener]] = {}  # bound, not yet handed to the worker
        self._starting = asyncio.Lock()  # one start at a time: binds then spawns, as one step
        # The policy image: built by a builder process, mapped by every worker. They hash
        # names with one seed, so that they all find the builder's slots.
        self._seed = str(secrets.randbelow(2**32 - 1) + 1)
        self._dir = image_dir()
        self.image = self._dir / "policy.image"
        self._builder: asyncio.subprocess.Process | None = None
        self._building = False
        self._build_again = False

    def _environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
        env["PYTHONHASHSEED"] = self._seed
        env[IMAGE_ENV] = str(self.image)
        return env

    async def _build(self, start: bool = False) -> bool:
        """Build the policy image once (a process of its own, which logs what is wrong)."""
        argv = [sys.executable, "-m", "resolver.service.builder", str(self.image)]
        if self.config_path is not None:
            argv += ["--config", str(self.config_path)]
        if start:
            argv.append("--start")
        self._builder = await asyncio.create_subprocess_exec(*argv, env=self._environment())
        try:
            return await self._builder.wait() == 0
        finally:
            self._builder = None

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
        loop.add_signal_handler(signal.SIGTERM, self._stop.set)
        loop.add_signal_handler(signal.SIGINT, self._stop.set)
        try:
            sets = bind_for_workers(self.config.listen, len(self.workers))
        except ListenError as exc:
            self.log.error("listen_failed", **exc.fields())
            shutil.rmtree(self._dir, ignore_errors=True)
            return 1
        self._unpassed = dict(enumerate(sets))
        self._follow_zones(self.config.zones)
        self._follow_lists(self.config)
        stop = asyncio.ensure_future(self._stop.wait())
        built = asyncio.ensure_future(self._build(start=True))
        await asyncio.wait({built, stop}, return_when=asyncio.FIRST_COMPLETED)
        if not built.done() or not built.result():
            self._failed_start = built.done()  # a stop asked for while building is clean
            stop.cancel()
            return await self._shutdown()
        for worker in self.workers:
            await self._start(worker)
        ready = asyncio.ensure_future(self._all_ready.wait())
        await asyncio.wait({ready, stop}, return_when=asyncio.FIRST_COMPLETED)
        if self._all_ready.is_set() and not self._stop.is_set():
            if self.config.metrics is not None:
                self.metrics = metrics_server(self.stats)
                try:
                    await self.metrics.start([self.config.metrics])
                except OSError as exc:
                    failure = ListenError(self.config.metrics, "tcp", exc)
                    self.log.error("listen_failed", **failure.fields(), what="metrics")
                    self._failed_start = True
                    self._stop.set()
            if not self._failed_start:
                self.reload_last_success = time.time()
                self.log.info("workers_ready", workers=len(self.workers))
                names = max(w.names for w in self.workers)
                sdnotify.ready(f"serving {names} blocked names ({len(self.workers)} workers)")
                if self.secondary is not None:
                    self.secondary.start()
                if self.feeds is not None:
                    self.feeds.start()
        await stop
        ready.cancel()
        return await self._shutdown()

    # --- workers ---------------------------------------------------------------------

    def _argv(self, worker: Worker, fd: int) -> list[str]:
        argv = [sys.executable, "-m", "resolver", "serve", "--worker", f"{worker.slot}:{fd}"]
        if self.config_path is not None:
            argv += ["--config", str(self.config_path)]
        return argv

    def _listeners(self, worker: Worker) -> list[Listener]:
        """The worker's sockets: bound at start-up, or bound anew for a restart (the old
        ones closed with the dead worker, so meanwhile the others took all the queries)."""
        listeners = self._unpassed.pop(worker.slot, None)
        if listeners is not None:
            return listeners
        others = any(
            w.process is not None and w.process.returncode is None
            for w in self.workers
            if w is not worker
        )
        # With no worker running, nothing of ours holds the addresses: check them again.
        return bind_for_workers(self.config.listen, 1, check_free=not others)[0]

    async def _start(self, worker: Worker) -> None:
        async with self._starting:
            await self._start_alone(worker)

    async def _start_alone(self, worker: Worker) -> None:
        listeners = self._listeners(worker)
        read_fd, write_fd = os.pipe()
        env = self._environment()
        env[LISTEN_FDS] = environment(listeners)
        fds = [s.fileno() for listener in listeners for s in (listener.udp, listener.tcp)]
        worker.ready = False
        worker.asked = 0.0
        try:
            worker.process = await asyncio.create_subprocess_exec(
                *self._argv(worker, write_fd), pass_fds=(write_fd, *fds), env=env
            )
        finally:
            os.close(write_fd)
            for listener in listeners:
                listener.close()  # the worker has its own copies: its exit closes the socket
        process = worker.process
        self._spawn(lambda: self._listen(worker, process, read_fd))

    async def _listen(
        self, worker: Worker, process: asyncio.subprocess.Process, read_fd: int
    ) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=PIPE_LINE_LIMIT)
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(read_fd, "rb", buffering=0)
        )
        try:
            while line := await reader.readline():
                self._on_message(worker, line.decode(errors="replace").strip())
        finally:
            transport.close()
        code = await process.wait()
        self._on_exit(worker, process, code)

    def _on_message(self, worker: Worker, message: str) -> None:
        kind, _, rest = message.partition(" ")
        if kind == "ready":
            worker.ready = True
            worker.names = int(rest) if rest.isdigit() else 0
            if worker.slot in self._missed_reload and worker.process is not None:
                self._missed_reload.discard(worker.slot)
                worker.asked = time.monotonic()
                worker.process.send_signal(signal.SIGHUP)  # it may have read the files before
            if all(w.ready for w in self.workers):
                self._all_ready.set()
        elif kind == "reloaded":
            outcome, _, began = rest.partition(" ")
            if _seconds(began) >= worker.asked:  # not the report of an earlier reload
                self._reload_failed |= outcome != "ok"
                self._reload_waiting.discard(worker.slot)
                self._reload_done()
        elif kind == "notify" and self.secondary is not None:
            zone, _, client = rest.partition(" ")
            self.secondary.notify(zone, client)  # checks the client against the primaries
        elif kind == "stats":
            try:
                worker.stats = json.loads(rest)
            except ValueError:
                pass

    def _on_exit(self, worker: Worker, process: asyncio.subprocess.Process, code: int) -> None:
        if worker.process is not process:
            return
        self._reload_waiting.discard(worker.slot)
        if self._stopping:
            return
        self._reload_done()
        if not worker.ready and not self._all_ready.is_set():
            # A worker that cannot start (bad policy, address in use) fails the start.
            self.log.error("worker_start_failed", worker=worker.slot, exit_code=code)
            self._failed_start = True
            self._stop.set()
            return
        worker.restarts += 1
        self.log.error(
            "worker_exited", worker=worker.slot, exit_code=code, restarting_in=RESTART_DELAY
        )
        worker.ready = False

        async def restart() -> None:
            while True:
                await asyncio.sleep(RESTART_DELAY)
                if self._stopping:
                    return
                try:
                    await self._start(worker)
                    return
                except ListenError as exc:
                    self.log.error(
                        "listen_failed", **exc.fields(), worker=worker.slot, retry_in=RESTART_DELAY
                    )

        self._spawn(restart)

    def _reload(self) -> None:
        """Build the new image, then have every worker map it; repeated requests coalesce."""
        if self._building:
            self._build_again = True
            return
        self._building = True
        sdnotify.reloading()
        self._spawn(self._rebuild)

    async def _rebuild(self) -> None:
        ok = False
        try:
            while True:
                self._build_again = False
                ok = await self._build()
                if not self._build_again or self._stopping:
                    break
        finally:
            self._building = False
        if self._stopping:
            return
        if not ok:  # the builder logged why; every worker keeps the policy it has
            self.reload_failures += 1
            self.reload_last_ok = False
            self.log.info("workers_reloaded", ok=False)
            sdnotify.ready()
            return
        self._hand_over()

    def _hand_over(self) -> None:
        """SIGHUP to every worker: each maps the image just built and swaps."""
        self._reload_failed = False
        self._reload_pending = True  # a reload still under way is taken into this one
        # A worker still starting maps the image as it is now; signalling it
        # before it has installed its handlers would kill it.
        self._reload_waiting = {
            w.slot for w in self.workers if w.ready and w.process and w.process.returncode is None
        }
        for worker in self.workers:
            if worker.slot in self._reload_waiting and worker.process is not None:
                worker.asked = time.monotonic()
                worker.process.send_signal(signal.SIGHUP)
            elif not worker.ready:
                self._missed_reload.add(worker.slot)
        if not self._reload_waiting:
            self._reload_pending = False
            sdnotify.ready()

    def _reload_done(self) -> None:
        """Count the reload under way once every worker it waits for has applied it."""
        if self._reload_waiting or not self._reload_pending:
            return
        self._reload_pending = False
        ok = not self._reload_failed
        if ok:
            self.reloads += 1
            self.reload_last_success = time.time()
        else:
            self.reload_failures += 1
        self.reload_last_ok = ok
        self.log.info("workers_reloaded", ok=ok)
        sdnotify.ready()

    # --- zones followed by zone transfer (resolver/secondary.py) --------------------------

    def _on_sighup(self) -> None:
        """SIGHUP: every worker reloads; zone transfers follow a changed ``zones:`` list."""
        if self.config_path is not None:
            try:
                config = load_config(self.config_path)
                self._follow_zones(config.zones)
                self._follow_lists(config)
            except SourceError:
                pass  # the builder reports the broken configuration; the old policy stays
        self._reload()

    def _follow_zones(self, zones: tuple[ZoneConfig, ...]) -> None:
        """Transfers happen here, once; a changed copy makes every worker reload."""
        if self.secondary is not None:
            self.secondary.reconfigure(zones)
        elif any(z.primaries for z in zones):
            from resolver.zones.follower import Secondary

            self.secondary = Secondary(zones, self._reload, self.log)
            self.secondary.prepare()  # before the workers read the copies
            if self._all_ready.is_set():
                self.secondary.start()

    def _follow_lists(self, config: Config) -> None:
        """Lists named by a url are fetched here, once; a changed copy makes every worker
        reload. The policies are read for their lists alone (the builder builds them)."""
        from resolver.service.feeds import Feeds, fetched_lists
        from resolver.sources.snapshot import load_policies

        try:
            refs = fetched_lists(load_policies(config))
        except SourceError:
            return  # the builder reports the broken policy; the old one stays
        if self.feeds is None and refs:
            self.feeds = Feeds(self._reload, self.log)
            if self._all_ready.is_set():
                self.feeds.start()
        if self.feeds is not None:
            self.feeds.reconfigure(refs, config.max_file_size)

    # --- shutdown and numbers -----------------------------------------------------------

    async def _shutdown(self) -> int:
        self._stopping = True
        sdnotify.stopping()
        if self._builder is not None and self._builder.returncode is None:
            self._builder.kill()
        for listeners in self._unpassed.values():
            for listener in listeners:
                listener.close()
        self._unpassed.clear()
        if self.metrics is not None:
            self.metrics.close()
            await self.metrics.wait_closed()
        if self.secondary is not None:
            self.secondary.close()
        if self.feeds is not None:
            self.feeds.close()
        running = [w.process for w in self.workers if w.process and w.process.returncode is None]
        for process in running:
            process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        codes = []
        for process in running:
            try:
                codes.append(
                    await asyncio.wait_for(process.wait(), max(deadline - time.monotonic(), 0.1))
                )
            except TimeoutError:
                process.kill()
                codes.append(await process.wait())
        for task in self._tasks:
            task.cancel()
        shutil.rmtree(self._dir, ignore_errors=True)
        self.log.info("stopped", workers=len(self.workers))
        if self._failed_start:
            return 1
        # A worker stopped before it could install its handlers dies of our SIGTERM: clean too.
        return 0 if all(c in (0, -signal.SIGTERM) for c in codes) else 1

    def _spawn(self, factory: Any) -> None:
        task = asyncio.ensure_future(factory())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def stats(self) -> dict[str, Any]:
        """The workers' latest counters, summed; reloads and zones as counted here."""
        total = merge_stats(w.stats for w in self.workers)
        total["reloads"] = self.reloads
        total["reload_failures"] = self.reload_failures
        total["reload_last_success"] = self.reload_last_success
        total["reload_last_ok"] = int(self.reload_last_ok)
        total["worker_reloads"] = {str(w.slot): w.stats.get("reloads", 0) for w in self.workers}
        total["worker_reload_failures"] = {
            str(w.slot): w.stats.get("reload_failures", 0) for w in self.workers
        }
        total["zones"] = zone_stats(self.secondary)
        total["worker_restarts"] = sum(w.restarts for w in self.workers)
        if self.feeds is not None:
            total.update(self.feeds.stats())
        return total


def _seconds(text: str) -> float:
    """A time a worker reported (infinite when it gave none: the report counts)."""
    try:
        return float(text)
    except ValueError:
        return float("inf")
