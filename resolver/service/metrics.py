"""/metrics: the stats dict a serving process reports, the supervisor's sum of them, and the
Prometheus families read from it at scrape time (counting itself is plain integers).

The stats dict is JSON (workers send it to the supervisor once a second): numbers, lists
of numbers (histogram buckets) and dicts of them. Labelled series are dicts keyed by the
JSON list of their label values, so summing workers needs no knowledge of the series.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import fields
from typing import TYPE_CHECKING, Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

from resolver.core.codes import rcode_name, type_name
from resolver.core.engine import Engine
from resolver.core.outcome import Outcome
from resolver.core.tally import LATENCY_BOUNDS, NO_ANSWER
from resolver.edge.http import Reply, Route
from resolver.edge.upstream import Forwarder

if TYPE_CHECKING:
    from resolver.sources.snapshot import BuildResult
    from resolver.zones.follower import Secondary

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
    (
        "reloads",
        "sinkhole_reloads",
        "Successful policy reloads (with workers: reloads every worker completed, counted once)",
    ),
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
    ("cache_hits", "sinkhole_cache_hits", "Queries answered from the cache"),
    ("cache_misses", "sinkhole_cache_misses", "Queries not in the cache, asked upstream"),
    ("cache_evictions", "sinkhole_cache_evictions", "Answers evicted from a full cache"),
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
    (
        "upstream_encrypted_failures",
        "sinkhole_upstream_encrypted_failures",
        "Tries over TLS or HTTPS that failed at once: no connection, certificate not accepted, "
        "HTTP error",
    ),
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
    ("cache_capacity", "sinkhole_cache_capacity", "Answers the cache may hold (all workers)"),
    ("inflight", "sinkhole_upstream_inflight", "Questions waiting for an upstream"),
    ("tcp_connections", "sinkhole_tcp_connections", "Open client TCP connections"),
    (
        "reload_last_success",
        "sinkhole_reload_last_success_timestamp_seconds",
        "When the policy was last loaded successfully (start-up or reload), Unix time",
    ),
    (
        "reload_last_ok",
        "sinkhole_reload_last_successful",
        "Whether the last reload succeeded (1) or kept the previous policy (0)",
    ),
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
# Keys whose sum over workers is their largest value (the same thing seen by each).
LARGEST = frozenset({"policy_names", "policy_files", "consecutive_failures"})
# Followed zones: field of the state, metric name, help.
ZONE_GAUGES = (
    ("serial", "sinkhole_zone_serial", "Serial of the zone's copy (absent without a copy)"),
    (
        "refreshed",
        "sinkhole_zone_last_refresh_timestamp_seconds",
        "When a primary last confirmed the copy current or transferred it, Unix time",
    ),
    (
        "transferred",
        "sinkhole_zone_last_transfer_timestamp_seconds",
        "When a transfer of the zone was last applied since start, Unix time (0: none)",
    ),
    (
        "failed",
        "sinkhole_zone_last_failure_timestamp_seconds",
        "When a check of the zone last failed since start, Unix time (0: none)",
    ),
    (
        "expires",
        "sinkhole_zone_expiry_timestamp_seconds",
        "When the copy expires without a successful check, Unix time (absent without a copy)",
    ),
    ("expired", "sinkhole_zone_expired", "Whether the copy is past its SOA expire time"),
)


def label_key(*values: object) -> str:
    return json.dumps([str(v) for v in values], separators=(",", ":"))


def counter_fields(prefix: str, stats: Iterable[Any]) -> dict[str, int]:
    """The integer fields of dataclass instances ``stats``, summed, as ``prefix + name``."""
    total: dict[str, int] = {}
    for item in stats:
        for f in fields(item):
            value = getattr(item, f.name)
            if isinstance(value, int):
                total[prefix + f.name] = total.get(prefix + f.name, 0) + value
    return total


# --- what one serving process reports -------------------------------------------------


def engine_stats(engine: Engine) -> dict[str, Any]:
    """Answers by transport, type and rcode; blocks by policy and action; answer times;
    the cache's numbers. Built at scrape time from the engine's plain counters."""
    answers: dict[str, int] = {}
    blocks: dict[str, int] = {}
    for (qtype, rcode, policy, action), udp, tcp in engine.tallies.rows():
        if rcode != NO_ANSWER:
            kind = type_name(qtype) if qtype else "other"
            for transport, count in (("udp", udp), ("tcp", tcp)):
                if count:
                    key = label_key(transport, kind, rcode_name(rcode))
                    answers[key] = answers.get(key, 0) + count
        if policy and udp + tcp:
            key = label_key(policy, action)
            blocks[key] = blocks.get(key, 0) + udp + tcp
    outcomes = engine.outcomes()
    return {
        "outcomes": {o.name.lower(): v for o, v in outcomes.items()},
        "answers": answers,
        "blocks": blocks,
        "latency": {
            o.name.lower(): {"counts": list(h.counts), "sum": h.total}
            for o, h in engine.latency.items()
        },
        "cache_hits": outcomes[Outcome.CACHED],
        "cache_misses": engine.counters.cache_misses,
        "cache_evictions": engine.cache.evictions,
        "cache_entries": len(engine.cache),
        "cache_capacity": engine.cache.settings.max_entries,
    }


def upstream_stats(forwarder: Forwarder, now: float) -> dict[str, Any]:
    """Per configured upstream: tries sent, timeouts, and its health."""
    return {
        u.label: {
            "sent": u.sent,
            "timeouts": u.timeouts,
            "down": int(u.held_until > now),
            "consecutive_failures": u.failures,
            "connections": u.link.transport.connections if u.link is not None else 0,
        }
        for u in forwarder.upstreams
    }


def policy_files(result: BuildResult | None) -> dict[str, int]:
    """The policy files loaded, as info series keyed by id, file and sha256."""
    if result is None:
        return {}
    return {label_key(r.id, r.source, r.sha256): 1 for r in result.reports}


def zone_stats(secondary: Secondary | None) -> dict[str, Any]:
    if secondary is None:
        return {}
    return {
        name: {
            "serial": state.serial,
            "refreshed": state.refreshed,
            "transferred": state.transferred,
            "failed": state.failed,
            "expires": state.expires,
            "expired": int(state.expired),
        }
        for name, state in secondary.states().items()
    }


# --- the supervisor's sum --------------------------------------------------------------


def merge_stats(reports: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The workers' stats dicts as one: numbers summed (LARGEST keys: the largest), lists
    summed element by element, dicts merged key by key."""
    total: dict[str, Any] = {}
    for report in reports:
        _merge_into(total, report)
    return total


def _merge_into(total: dict[str, Any], report: dict[str, Any]) -> None:
    for key, value in report.items():
        have = total.get(key)
        if have is None:
            total[key] = _copy(value)
        elif isinstance(value, dict) and isinstance(have, dict):
            if key in LARGEST:
                for k, v in value.items():
                    have[k] = max(have.get(k, v), v)
            else:
                _merge_into(have, value)
        elif isinstance(value, list) and isinstance(have, list) and len(value) == len(have):
            total[key] = [a + b for a, b in zip(have, value, strict=True)]
        elif isinstance(value, int | float) and isinstance(have, int | float):
            total[key] = max(have, value) if key in LARGEST else have + value


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return list(value)
    return value


# --- the Prometheus families ------------------------------------------------------------


def _labelled(stats: dict[str, Any], key: str) -> Iterator[tuple[list[str], float]]:
    for labels, value in stats.get(key, {}).items():
        yield json.loads(labels), value


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
        yield from self._answers(s)
        yield from self._upstreams(s)
        yield from self._reloads(s)
        yield from self._zones(s)

    @staticmethod
    def _answers(s: dict[str, Any]) -> Iterator[Metric]:
        answers = CounterMetricFamily(
            "sinkhole_answers",
            "Answers sent, by transport, query type (uncommon ones as other) and rcode",
            labels=["transport", "qtype", "rcode"],
        )
        for labels, value in _labelled(s, "answers"):
            answers.add_metric(labels, value)
        yield answers
        blocks = CounterMetricFamily(
            "sinkhole_blocks",
            "Queries a policy answered (or dropped), by policy id and action",
            labels=["policy", "action"],
        )
        for labels, value in _labelled(s, "blocks"):
            blocks.add_metric(labels, value)
        yield blocks
        latency = HistogramMetricFamily(
            "sinkhole_answer_duration_seconds",
            "From a query's arrival to its answer, for queries that waited for an upstream",
            labels=["outcome"],
        )
        for outcome, histogram in sorted(s.get("latency", {}).items()):
            counts = histogram["counts"]
            buckets, running = [], 0
            for bound, count in zip((*LATENCY_BOUNDS, float("inf")), counts, strict=True):
                running += count
                buckets.append(("+Inf" if bound == float("inf") else repr(bound), running))
            latency.add_metric([outcome], buckets, histogram["sum"])
        yield latency

    @staticmethod
    def _upstreams(s: dict[str, Any]) -> Iterator[Metric]:
        families = (
            ("sent", CounterMetricFamily, "sinkhole_upstream_server_queries", "Tries sent"),
            ("timeouts", CounterMetricFamily, "sinkhole_upstream_server_timeouts", "Timed out"),
            (
                "down",
                GaugeMetricFamily,
                "sinkhole_upstream_server_down",
                "Serving processes holding it down after repeated failures (0: healthy)",
            ),
            (
                "consecutive_failures",
                GaugeMetricFamily,
                "sinkhole_upstream_server_failures",
                "Failures (timeouts, SERVFAIL, REFUSED) since its last good answer",
            ),
            (
                "connections",
                CounterMetricFamily,
                "sinkhole_upstream_server_connections",
                "TLS connections opened (tls:// and https://; 0 for plain DNS)",
            ),
        )
        upstreams = s.get("upstreams", {})
        for key, kind, name, doc in families:
            family = kind(name, f"{doc}, per configured upstream", labels=["upstream"])
            for label, numbers in sorted(upstreams.items()):
                family.add_metric([label], numbers.get(key, 0))
            yield family

    @staticmethod
    def _reloads(s: dict[str, Any]) -> Iterator[Metric]:
        info = GaugeMetricFamily(
            "sinkhole_policy_file_info",
            "The policy files loaded: id, file and sha256 (1 per file and content loaded)",
            labels=["policy", "file", "sha256"],
        )
        for labels, _ in _labelled(s, "policy_files"):
            info.add_metric(labels, 1)
        yield info
        for key, name, doc in (
            ("worker_reloads", "sinkhole_worker_reloads", "Reloads a worker completed"),
            ("worker_reload_failures", "sinkhole_worker_reload_failures", "Reloads that failed"),
        ):
            family = CounterMetricFamily(
                name, f"{doc}, per worker (since it started)", labels=["worker"]
            )
            for worker, value in sorted(s.get(key, {}).items(), key=lambda i: int(i[0])):
                family.add_metric([worker], value)
            yield family

    @staticmethod
    def _zones(s: dict[str, Any]) -> Iterator[Metric]:
        zones = s.get("zones", {})
        for key, name, doc in ZONE_GAUGES:
            family = GaugeMetricFamily(name, doc, labels=["zone"])
            for zone, state in sorted(zones.items()):
                value = state.get(key)
                if value is None and key in ("serial", "expires"):
                    continue
                family.add_metric([zone], value or 0)
            yield family


METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def metrics_routes(read: Callable[[], dict[str, Any]]) -> dict[str, Route]:
    """GET /metrics: the counters of ``read`` in the Prometheus text format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatsCollector(read))

    def metrics() -> Reply:
        return 200, METRICS_TYPE, generate_latest(registry)

    return {"/metrics": metrics}
