"""GET /metrics: Prometheus text whose counters follow the queries answered."""

from __future__ import annotations

import re
import urllib.error
import urllib.request

import pytest
from support.procs import WARNING_IPV4, SinkholeFactory, free_port

from blackbox.dnsclient import addresses, ask, unique, v4
from blackbox.standard import BLOCKED, POLICIES

pytestmark = pytest.mark.blackbox


def scrape(port: int, path: str = "/metrics") -> tuple[int, str, str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=3.0) as response:
        return response.status, response.headers.get("Content-Type", ""), response.read().decode()


def sample(text: str, name: str, labels: str = "") -> float:
    pattern = re.escape(name + (f"{{{labels}}}" if labels else "")) + r" ([0-9.e+]+)$"
    found = re.search(pattern, text, re.MULTILINE)
    assert found, f"no sample {name}{{{labels}}} in:\n{text}"
    return float(found.group(1))


def test_metrics_count_blocked_queries(sinkhole_factory: SinkholeFactory) -> None:
    port = free_port()
    server = sinkhole_factory(POLICIES, metrics=f"127.0.0.1:{port}")
    status, ctype, text = scrape(port)
    assert status == 200
    assert ctype.startswith("text/plain")
    assert "# TYPE sinkhole_queries_total counter" in text
    blocked = sample(text, "sinkhole_queries_total", 'outcome="blocked"')
    forwarded = sample(text, "sinkhole_queries_total", 'outcome="forwarded"')

    assert addresses(ask(v4(server), BLOCKED)) == [WARNING_IPV4]
    assert addresses(ask(v4(server), "www." + BLOCKED, tcp=True)) == [WARNING_IPV4]
    ask(v4(server), unique())

    _, _, text = scrape(port)
    assert sample(text, "sinkhole_queries_total", 'outcome="blocked"') == blocked + 2
    assert sample(text, "sinkhole_queries_total", 'outcome="forwarded"') == forwarded + 1
    assert sample(text, "sinkhole_policy_names") >= 1


def test_other_paths_are_not_found(sinkhole_factory: SinkholeFactory) -> None:
    port = free_port()
    sinkhole_factory(POLICIES, metrics=f"127.0.0.1:{port}")
    with pytest.raises(urllib.error.HTTPError) as info:
        scrape(port, "/")
    assert info.value.code == 404
