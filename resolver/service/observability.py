"""Logs (structlog: JSON lines on stdout, readable lines on a terminal), the query log and the
metrics endpoint."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from dataclasses import fields
from datetime import UTC, date, datetime
from typing import Any

import structlog
import structlog.stdlib
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector, CollectorRegistry
from structlog.typing import Processor

from resolver.core import wire
from resolver.core.codes import rcode_name, type_name
from resolver.core.engine import Outcome
from resolver.core.matcher import CompiledPolicy
from resolver.core.verdict import Verdict
from resolver.edge.http import Reply, Route

FLUSH_INTERVAL = 0.25
MAX_BUFFERED = 100_000  # query-log records held between flushes; more are counted, not kept
FLUSH_SLICE = 1000  # records written per turn of the event loop
WRITE_SIZE = 4096  # at most this much per write(2), whole lines: atomic on a shared pipe
_worker: int | None = None  # this process's worker number, on every line
# A query-log record: time, client, qname (wire and text), qtype, Outcome value, id() of the
# verdict (0: none), rcode, upstream, latency in seconds.
Record = tuple[float, str, bytes, str, int, int, int, int, str, float]


def configure_logging(level: str = "info", worker: int | None = None, form: str = "auto") -> None:
    """Log lines on stdout, each written whole (workers share the stream): JSON objects, or
    with ``form`` "console" (or "auto" on a terminal) readable lines, coloured on a terminal."""
    try:
        # One write(2) per line (write_through would send the newline on its own).
        sys.stdout.reconfigure(line_buffering=True, write_through=False)  # type: ignore[union-attr]
    except AttributeError:
        pass

    global _worker
    _worker = worker

    def add_worker(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        event["worker"] = worker
        return event

    terminal = sys.stdout.isatty()
    console = form == "console" or (form == "auto" and terminal)
    stamp: list[Processor] = [
        *([add_worker] if worker is not None else []),
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="%Y-%m-%d %H:%M:%S", utc=False)
        if console
        else structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    # The console renderer lays out exceptions itself; JSON needs them as text first.
    exceptions: list[Processor] = [] if console else [structlog.processors.format_exc_info]
    render: Processor = (
        structlog.dev.ConsoleRenderer(colors=terminal, sort_keys=False)
        if console
        else structlog.processors.JSONRenderer(sort_keys=False)
    )
    structlog.configure(
        processors=[*stamp, *exceptions, render],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )
    # What libraries log through the standard library (asyncio's unhandled errors, such as
    # a connection the kernel timed out under the HTTP server) comes out the same way.
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[_library_event, *stamp],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                *exceptions,
                render,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(logging.WARNING)


def _library_event(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """A standard-library record as ``library_log``: its logger's name and its message."""
    record = event.get("_record")
    event["detail"] = event.pop("event")
    event["event"] = "library_log"
    event["logger"] = record.name if isinstance(record, logging.LogRecord) else ""
    return event


def get_logger() -> Any:
    return structlog.get_logger("sinkhole").bind()


def json_string(text: str) -> str:
    """``text`` as a JSON string (as json.dumps writes it), quickly for plain text."""
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return f'"{text}"'
    return json.dumps(text)


class QueryLog:
    """The query log, kept off the hot path: records are tuples, written in batches.

    ``mode`` is "blocked" (policy answers only) or "all".
    """

    def __init__(
        self,
        mode: str,
        policy: Callable[[], CompiledPolicy],
        clock: Callable[[], float] = time.time,
        client_mode: str = "full",
        sample: float = 1.0,
    ) -> None:
        self.mode = mode
        self.log_all = mode == "all"
        self._policy = policy
        self._clock = clock
        # Records are tuples of numbers, bytes and text only, so the cyclic garbage
        # collector stops tracking them at once: kept for a quarter of a second, tuples
        # holding objects would fill the old generation and bring on full collections.
        # Verdicts are kept apart, by id(), until the lines are written.
        self._records: list[Record] = []
        self._verdicts: dict[int, Verdict] = {}
        self.dropped = 0
        self._log = get_logger()
        self._task: asyncio.Task[None] | None = None
        self.clients = ClientPrivacy(client_mode)
        # In mode "all", one query in ``every`` that was not blocked is logged (blocked
        # queries always are): a counter, not a random draw, on the query path.
        self.sample = sample
        self._every = max(1, round(1 / sample))
        self._skipped = 0
        self._mark = "" if client_mode == "full" else f', "client_mode": "{client_mode}"'
        if sample < 1.0:
            self._mark += f', "sample": {sample!r}'

    def record(
        self,
        client: str,
        query: wire.Query,
        outcome: Outcome,
        verdict: Verdict | None,
        rcode: int,
        upstream: str = "",
        latency: float = 0.0,
    ) -> None:
        if self._every > 1 and outcome is not Outcome.BLOCKED:
            self._skipped += 1
            if self._skipped < self._every:
                return
            self._skipped = 0
        if len(self._records) >= MAX_BUFFERED:
            self.dropped += 1
            return
        verdict_id = 0
        if verdict is not None:
            verdict_id = id(verdict)
            self._verdicts[verdict_id] = verdict
        self._records.append(
            (
                self._clock(),
                client,
                query.qname,
                query.text_name(),  # worked out once per query object (replays share it)
                query.qtype,
                outcome.value,
                verdict_id,
                rcode,
                upstream,
                latency,
            )
        )

    def take(self) -> tuple[list[Record], dict[int, Verdict]]:
        """The records kept so far (and their verdicts); the log starts afresh."""
        records, self._records = self._records, []
        verdicts, self._verdicts = self._verdicts, {}
        return records, verdicts

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL)
            records, verdicts = self.take()
            # In slices, so queries are served between them.
            for start in range(0, len(records), FLUSH_SLICE):
                write_lines(self.lines(records[start : start + FLUSH_SLICE], verdicts))
                await asyncio.sleep(0)
            self._report_overflow()

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self.flush()

    def flush(self) -> None:
        records, verdicts = self.take()
        if records:
            write_lines(self.lines(records, verdicts))
        self._report_overflow()

    def _report_overflow(self) -> None:
        if self.dropped:
            self._log.warning("query_log_overflow", dropped=self.dropped)
            self.dropped = 0

    def lines(self, records: list[Record], verdicts: dict[int, Verdict]) -> list[str]:
        """The JSON lines of ``records``: what structlog would write for
        ``log.info("query", ...)``, built directly (through structlog a line costs ~30 us,
        which at 100,000 blocked queries a second would stall serving)."""
        policy = self._policy()
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        worker = "" if _worker is None else f', "worker": {_worker}'
        tail = (
            f'{self._mark}, "event": "query"{worker}, "level": "info", "timestamp": "{stamp}"}}\n'
        )
        shown = self.clients.shown
        # Fragments shared by many lines, each built once per call.
        clients: dict[str, str] = {}
        kinds: dict[tuple[int, int], str] = {}
        given_by: dict[int, str] = {}
        rcodes: dict[int, str] = {}
        upstreams: dict[str, str] = {}
        out = []
        for (
            ts,
            client,
            qname,
            name,
            qtype,
            outcome,
            verdict_id,
            rcode,
            upstream,
            latency,
        ) in records:
            who = clients.get(client)
            if who is None:
                text_client = shown(client)
                who = clients[client] = (
                    f'{{"client": {json_string(text_client)}, "qname": '
                    if text_client is not None
                    else '{"qname": '
                )
            kind = kinds.get((qtype, outcome))
            if kind is None:
                kind = kinds[qtype, outcome] = (
                    f', "qtype": "{type_name(qtype)}", "outcome": "{Outcome(outcome).name.lower()}"'
                )
            text = json_string(name)
            code = rcodes.get(rcode)
            if code is None:
                code = rcodes[rcode] = f', "rcode": "{rcode_name(rcode)}"'
            if verdict_id:
                given = given_by.get(verdict_id)
                if given is None:
                    verdict = verdicts[verdict_id]
                    given = given_by[verdict_id] = (
                        f', "action": {json_string(verdict.action.label)}'
                        f', "policy": {json_string(verdict.policy_id)}, "rule": '
                    )
                _, rule = policy.locate(qname)
                rule_text = text if rule == qname else json_string(_text(rule))
                code = f"{given}{rule_text}{code}"
            if upstream:
                quoted = upstreams.get(upstream)
                if quoted is None:
                    quoted = upstreams[upstream] = f', "upstream": {json_string(upstream)}'
                code += quoted
            if outcome != Outcome.BLOCKED:
                code += f', "latency_ms": {round(latency * 1000, 3)!r}'
            out.append(f'{who}{text}{kind}{code}, "query_time": {ts!r}{tail}')
        return out


class ClientPrivacy:
    """How the query log shows a client's address: ``full``; ``truncated`` to its network
    (IPv4 /24, IPv6 /48); ``hashed`` with a keyed hash whose key is made at random each
    day and never written anywhere (the same client reads the same within a day, and
    cannot be recovered); or ``none`` (left out)."""

    def __init__(self, mode: str, today: Callable[[], date] | None = None) -> None:
        self.mode = mode
        self._today = today or (lambda: datetime.now(UTC).date())
        self._day: date | None = None
        self._key = b""

    def shown(self, client: str) -> str | None:
        mode = self.mode
        if mode == "full":
            return client
        if mode == "none":
            return None
        try:
            address = ipaddress.ip_address(client.split("%", 1)[0])
        except ValueError:
            return ""
        if mode == "truncated":
            prefix = 24 if address.version == 4 else 48
            return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))
        day = self._today()
        if day != self._day:
            self._day, self._key = day, os.urandom(32)
        return hmac.new(self._key, address.packed, hashlib.sha256).hexdigest()[:16]


def _text(rule: bytes) -> str:
    return wire.name_to_text(rule) if rule else ""


def write_lines(lines: list[str]) -> None:
    """Write whole lines to stdout in writes of at most WRITE_SIZE bytes (lines are ASCII)."""
    chunk: list[str] = []
    size = 0
    for line in lines:
        if size + len(line) > WRITE_SIZE and chunk:
            sys.stdout.write("".join(chunk))
            chunk, size = [], 0
        chunk.append(line)
        size += len(line)
    if chunk:
        sys.stdout.write("".join(chunk))
    sys.stdout.flush()


# Counters in the stats dict (App.stats, summed over workers): key, metric name, help.
COUNTERS = (
    (
        "refused_clients",
        "sinkhole_refused_clients",
        "Queries refused because the client is not allowed",
    ),
    ("responses_ignored", "sinkhole_responses_ignored", "Packets with QR=1 received on a listener"),
    ("upstream_sent", "sinkhole_upstream_queries", "Queries sent to upstreams"),
    ("upstream_timeouts", "sinkhole_upstream_timeouts", "Upstream tries that timed out"),
    (
        "upstream_unexpected",
        "sinkhole_upstream_unexpected_replies",
        "Upstream packets that matched no query",
    ),
    ("reloads", "sinkhole_reloads", "Successful policy reloads"),
    ("reload_failures", "sinkhole_reload_failures", "Failed policy reloads (old policy kept)"),
    ("upstream_failed", "sinkhole_upstream_failed", "Questions no upstream answered (SERVFAIL)"),
    (
        "upstream_socket_errors",
        "sinkhole_upstream_socket_errors",
        "Upstream sends refused by the kernel and ICMP errors reported",
    ),
    (
        "upstream_tcp_retries",
        "sinkhole_upstream_tcp_retries",
        "Truncated upstream answers asked again over TCP",
    ),
    (
        "coalesced",
        "sinkhole_upstream_coalesced",
        "Queries that joined the same question already waiting for an upstream",
    ),
    (
        "upstream_held_down",
        "sinkhole_upstream_held_down",
        "Times an upstream was held down after repeated failures",
    ),
    (
        "upstream_tcp_failures",
        "sinkhole_upstream_tcp_failures",
        "TCP retries that failed (each counts as a failed try)",
    ),
    (
        "upstream_late_replies",
        "sinkhole_upstream_late_replies",
        "Answers to an earlier try, taken after the next try went out",
    ),
    (
        "upstream_exhausted",
        "sinkhole_upstream_exhausted",
        "Questions given up after the most tries one question may cost",
    ),
    (
        "upstream_case_mismatches",
        "sinkhole_upstream_case_mismatches",
        "Upstream replies dropped: the name not in the letter case sent (0x20)",
    ),
    (
        "upstream_stripped",
        "sinkhole_upstream_stripped_records",
        "Answer records left out of upstream replies: not in the query's CNAME chain",
    ),
    ("upstream_ports", "sinkhole_upstream_ports", "Upstream UDP sockets opened (source ports)"),
    ("chased", "sinkhole_policy_cnames_followed", "Policy CNAMEs followed to their target"),
    (
        "unexpected_errors",
        "sinkhole_unexpected_errors",
        "Exceptions nobody expected, caught so one query cannot stop the rest (logged)",
    ),
    ("udp_received", "sinkhole_udp_received", "Datagrams received by the batched UDP listeners"),
    ("udp_sent", "sinkhole_udp_sent", "Replies sent by the batched UDP listeners"),
    ("udp_recv_calls", "sinkhole_udp_recv_calls", "recvfrom and recvmmsg calls that got datagrams"),
    ("udp_send_calls", "sinkhole_udp_send_calls", "sendmmsg calls of the batched UDP listeners"),
    (
        "udp_queued",
        "sinkhole_udp_queued",
        "UDP replies that waited for the socket to become writable",
    ),
    ("udp_dropped", "sinkhole_udp_dropped", "UDP replies that could not be sent"),
    ("udp_oversized", "sinkhole_udp_oversized", "UDP datagrams too large to answer"),
    ("udp_errors", "sinkhole_udp_errors", "Unexpected errors in the batched UDP listeners"),
    ("tcp_rejected", "sinkhole_tcp_rejected_connections", "TCP connections refused at the cap"),
    ("worker_restarts", "sinkhole_worker_restarts", "Workers restarted after they exited"),
    (
        "inflight_limited",
        "sinkhole_upstream_inflight_limited",
        "Cache misses answered SERVFAIL at once: max_inflight questions were waiting",
    ),
    (
        "tcp_evicted",
        "sinkhole_tcp_evicted_connections",
        "Idle TCP connections closed to make room at the cap",
    ),
    (
        "tcp_client_limited",
        "sinkhole_tcp_client_limited_connections",
        "TCP connections refused: tcp_max_per_client were open from that address",
    ),
    (
        "tcp_query_timeouts",
        "sinkhole_tcp_query_timeouts",
        "TCP connections closed: a query did not arrive whole within tcp_query_timeout",
    ),
    ("tcp_paused", "sinkhole_tcp_paused", "Times a TCP connection was not read: answers not taken"),
    (
        "tcp_overflowed",
        "sinkhole_tcp_overflowed",
        "TCP connections closed: they owed too many answers not taken",
    ),
    (
        "tcp_stalled",
        "sinkhole_tcp_stalled",
        "TCP connections closed: answers not taken for tcp_idle_timeout",
    ),
    (
        "rate_limited_dropped",
        "sinkhole_rate_limited_dropped",
        "UDP answers over the client network's rate, not sent",
    ),
    (
        "rate_limited_truncated",
        "sinkhole_rate_limited_truncated",
        "UDP answers over the client network's rate, sent empty with TC=1 (slip)",
    ),
    ("list_fetches", "sinkhole_list_fetches", "Fetches of url lists that succeeded (304 included)"),
    (
        "list_fetch_failures",
        "sinkhole_list_fetch_failures",
        "Fetches of url lists that failed or were refused (the old copy kept)",
    ),
)
GAUGES = (
    ("policy_names", "sinkhole_policy_names", "Names in the compiled policy"),
    ("cache_entries", "sinkhole_cache_entries", "Answers in the cache"),
    ("inflight", "sinkhole_upstream_inflight", "Questions waiting for an upstream"),
    ("tcp_connections", "sinkhole_tcp_connections", "Open client TCP connections"),
    ("lists_fetched", "sinkhole_lists_fetched", "Lists fetched from a url"),
    ("lists_failing", "sinkhole_lists_failing", "Url lists whose last fetch failed"),
    ("lists_without_copy", "sinkhole_lists_without_copy", "Url lists never fetched (empty)"),
    (
        "list_last_success",
        "sinkhole_list_last_success_seconds",
        "Unix time of the stalest url list's last successful fetch (0: none)",
    ),
    (
        "list_last_failure",
        "sinkhole_list_last_failure_seconds",
        "Unix time of the latest failed url list fetch (0: none)",
    ),
    (
        "list_copy_age",
        "sinkhole_list_copy_age_seconds",
        "Age of the stalest url list's copy, from its last successful fetch",
    ),
)


def counter_fields(prefix: str, stats: Iterable[Any]) -> dict[str, int]:
    """The integer fields of dataclass instances ``stats``, summed, as ``prefix + name``."""
    total: dict[str, int] = {}
    for item in stats:
        for f in fields(item):
            value = getattr(item, f.name)
            if isinstance(value, int):
                total[prefix + f.name] = total.get(prefix + f.name, 0) + value
    return total


class StatsCollector(Collector):
    """Reads the plain counters at scrape time, so counting costs nothing per query.
    A key missing from the stats dict (a worker not yet reported) reads as 0."""

    def __init__(self, read: Callable[[], dict[str, Any]]) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        s = self._read()
        queries = CounterMetricFamily(
            "sinkhole_queries", "Queries answered, by outcome", labels=["outcome"]
        )
        for outcome, value in s.get("outcomes", {}).items():
            queries.add_metric([outcome], value)
        yield queries
        for key, name, doc in COUNTERS:
            counter = CounterMetricFamily(name, doc)
            counter.add_metric([], s.get(key, 0))
            yield counter
        for key, name, doc in GAUGES:
            gauge = GaugeMetricFamily(name, doc)
            gauge.add_metric([], s.get(key, 0))
            yield gauge


METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def metrics_routes(read: Callable[[], dict[str, Any]]) -> dict[str, Route]:
    """GET /metrics: the counters of ``read`` in the Prometheus text format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatsCollector(read))

    def metrics() -> Reply:
        return 200, METRICS_TYPE, generate_latest(registry)

    return {"/metrics": metrics}
