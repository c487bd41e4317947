"""Every counter the server keeps reaches /metrics: the collector's table against the
counter dataclasses, and the Prometheus text it renders."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from prometheus_client.exposition import generate_latest
from prometheus_client.registry import CollectorRegistry

from resolver.core.engine import Counters, Outcome
from resolver.edge.batchudp import BatchStats
from resolver.edge.upstream import ForwarderStats
from resolver.service.metrics import COUNTERS, GAUGES, StatsCollector, counter_fields

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
