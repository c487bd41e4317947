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
from collections.abc import Callable, MutableMapping
from datetime import UTC, date, datetime
from typing import Any

import structlog
import structlog.stdlib
from structlog.typing import Processor

from resolver.core import wire
from resolver.core.codes import rcode_name, type_name
from resolver.core.matcher import CompiledPolicy
from resolver.core.outcome import Outcome
from resolver.core.tally import NO_ANSWER
from resolver.core.verdict import Verdict

FLUSH_INTERVAL = 0.25
MAX_BUFFERED = 100_000  # query-log records held between flushes; more are counted, not kept
FLUSH_SLICE = 1000  # records written per turn of the event loop
WRITE_SIZE = 4096  # at most this much per write(2), whole lines: atomic on a shared pipe
_worker: int | None = None  # this process's worker number, on every line
# A query-log record: time, client, qname (wire and text), qtype, Outcome value, id() of the
# verdict (0: none), rcode (NO_ANSWER: none sent, the line has no rcode), upstream, latency
# in seconds.
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
                code = rcodes[rcode] = (
                    "" if rcode == NO_ANSWER else f', "rcode": "{rcode_name(rcode)}"'
                )
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
