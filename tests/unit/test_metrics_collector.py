"""Every counter the server keeps reaches /metrics: the collector's table against the
counter dataclasses, and the Prometheus text it renders."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from resolver.core.outcome import Counters, Outcome
from resolver.core.tally import LATENCY_BOUNDS
from resolver.edge.batchudp import BatchStats
from resolver.edge.upstream import ForwarderStats
from resolver.service.metrics import (
    COUNTERS,
    GAUGES,
    StatsCollector,
    counter_fields,
    label_key,
    merge_stats,
)

EXPORTED = {key for key, _, _ in COUNTERS + GAUGES}


def render(stats: dict[str, Any]) -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatsCollector(lambda: stats))
    return generate_latest(registry).decode()


def numbered(cls: type[Any]) -> Any:
    """An instance of the dataclass ``cls`` whose fields hold 1, 2, 3, ..."""
    return cls(**{f.name: i for i, f in enumerate(dataclasses.fields(cls), 1)})


def test_every_listener_and_forwarder_counter_is_exported() -> None:
    for prefix, cls in (("udp_", BatchStats), ("upstream_", ForwarderStats)):
        for field in dataclasses.fields(cls):
            assert prefix + field.name in EXPORTED, f"{cls.__name__}.{field.name}"


def test_every_engine_counter_is_exported() -> None:
    outcomes = {o.name.lower() for o in Outcome}
    for field in dataclasses.fields(Counters):
        assert field.name in outcomes or field.name in EXPORTED, f"Counters.{field.name}"


def test_counter_fields_sum_instances_under_a_prefix() -> None:
    total = counter_fields("udp_", [numbered(BatchStats), numbered(BatchStats)])
    assert total["udp_received"] == 2 and total["udp_errors"] == 2 * 8
    assert set(total) == {"udp_" + f.name for f in dataclasses.fields(BatchStats)}
    assert counter_fields("udp_", []) == {}


def test_the_values_reach_the_text() -> None:
    stats = {
        "outcomes": {"blocked": 5},
        **counter_fields("udp_", [numbered(BatchStats)]),
        **counter_fields("upstream_", [numbered(ForwarderStats)]),
    }
    text = render(stats)
    for key, name, _ in COUNTERS:
        if key in stats:
            assert re.search(rf"^{name}_total {float(stats[key])!r}$", text, re.MULTILINE), name
    assert 'sinkhole_queries_total{outcome="blocked"} 5.0' in text


def test_missing_keys_read_as_zero() -> None:
    """Before a worker has reported, the supervisor's sums lack keys: every series is 0."""
    text = render({})
    for _, name, _ in COUNTERS:
        assert f"\n{name}_total 0.0\n" in text
    for _, name, _ in GAUGES:
        assert f"\n{name} 0.0\n" in text


def families(text: str) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def test_labelled_series_and_the_histogram() -> None:
    stats = {
        "answers": {label_key("udp", "A", "NOERROR"): 7, label_key("tcp", "other", "NXDOMAIN"): 1},
        "blocks": {label_key("court-order", "nxdomain"): 3},
        "latency": {
            "forwarded": {"counts": [1, 0, 2] + [0] * (len(LATENCY_BOUNDS) - 2), "sum": 0.5}
        },
        "upstreams": {
            "127.0.0.1:53": {"sent": 4, "timeouts": 1, "down": 1, "consecutive_failures": 3}
        },
        "policy_files": {label_key("p", "/etc/p.yaml", "ab" * 32): 1},
        "worker_reloads": {"1": 2, "0": 3},
    }
    got = families(render(stats))
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value for f in got.values() for s in f.samples
    }
    assert (
        samples[
            "sinkhole_answers_total", (("qtype", "A"), ("rcode", "NOERROR"), ("transport", "udp"))
        ]
        == 7
    )
    assert (
        samples["sinkhole_blocks_total", (("action", "nxdomain"), ("policy", "court-order"))] == 3
    )
    assert samples["sinkhole_upstream_server_down", (("upstream", "127.0.0.1:53"),)] == 1
    assert samples["sinkhole_upstream_server_failures", (("upstream", "127.0.0.1:53"),)] == 3
    assert (
        samples[
            "sinkhole_policy_file_info",
            (("file", "/etc/p.yaml"), ("policy", "p"), ("sha256", "ab" * 32)),
        ]
        == 1
    )
    assert samples["sinkhole_worker_reloads_total", (("worker", "0"),)] == 3
    buckets = [
        (s.labels["le"], s.value)
        for s in got["sinkhole_answer_duration_seconds"].samples
        if s.name.endswith("_bucket")
    ]
    assert buckets[:3] == [("0.001", 1), ("0.0025", 1), ("0.005", 3)]  # cumulative
    assert buckets[-1] == ("+Inf", 3)
    assert samples["sinkhole_answer_duration_seconds_sum", (("outcome", "forwarded"),)] == 0.5


def test_zone_series_leave_out_what_a_zone_without_a_copy_lacks() -> None:
    stats = {
        "zones": {
            "a.example.": {
                "serial": 7,
                "refreshed": 10.0,
                "transferred": None,
                "failed": 20.0,
                "expires": 99.0,
                "expired": 0,
            },
            "b.example.": {
                "serial": None,
                "refreshed": None,
                "transferred": None,
                "failed": 5.0,
                "expires": None,
                "expired": 0,
            },
        }
    }
    got = families(render(stats))
    assert [s.labels["zone"] for s in got["sinkhole_zone_serial"].samples] == ["a.example."]
    assert [s.value for s in got["sinkhole_zone_last_failure_timestamp_seconds"].samples] == [20, 5]
    assert [s.value for s in got["sinkhole_zone_last_transfer_timestamp_seconds"].samples] == [0, 0]


def test_merge_sums_workers_and_keeps_the_largest_where_each_sees_the_same() -> None:
    one = {
        "outcomes": {"blocked": 2},
        "answers": {label_key("udp", "A", "NOERROR"): 2},
        "latency": {"forwarded": {"counts": [1, 2], "sum": 0.25}},
        "upstreams": {"u": {"sent": 3, "down": 1, "consecutive_failures": 4}},
        "policy_names": 10,
        "policy_files": {label_key("p", "f", "x"): 1},
        "cache_entries": 5,
    }
    two = {
        "outcomes": {"blocked": 1, "cached": 4},
        "answers": {label_key("udp", "A", "NOERROR"): 1, label_key("tcp", "A", "NOERROR"): 1},
        "latency": {"forwarded": {"counts": [0, 1], "sum": 0.5}},
        "upstreams": {"u": {"sent": 1, "down": 0, "consecutive_failures": 1}},
        "policy_names": 12,
        "policy_files": {label_key("p", "f", "x"): 1, label_key("p", "f", "y"): 1},
        "cache_entries": 6,
    }
    total = merge_stats([one, two, {}])
    assert total["outcomes"] == {"blocked": 3, "cached": 4}
    assert total["answers"] == {
        label_key("udp", "A", "NOERROR"): 3,
        label_key("tcp", "A", "NOERROR"): 1,
    }
    assert total["latency"]["forwarded"] == {"counts": [1, 3], "sum": 0.75}
    assert total["upstreams"]["u"] == {"sent": 4, "down": 1, "consecutive_failures": 4}
    assert total["policy_names"] == 12 and total["cache_entries"] == 11
    assert total["policy_files"] == {label_key("p", "f", "x"): 1, label_key("p", "f", "y"): 1}
    assert one["outcomes"] == {"blocked": 2}  # the workers' reports are left as they were
