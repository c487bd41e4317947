"""The Grafana dashboard and the Prometheus example in docs/grafana: every expression
names only series and labels a running server exports (with workers and a followed zone,
so every family has samples), and promtool accepts the PromQL and the scrape config."""

from __future__ import annotations

import json
import re
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from support.procs import REPO, SinkholeFactory, dead_port, free_port, wait_until
from support.system import program

from blackbox.dnsclient import ask, unique, v4
from blackbox.standard import BLOCKED, POLICIES

pytestmark = pytest.mark.blackbox

GRAFANA = REPO / "docs" / "grafana"
DASHBOARD = GRAFANA / "sinkhole.json"
SCRAPE_CONFIG = GRAFANA / "prometheus.yml"
# Labels Prometheus adds to every scraped series, and the histogram's bucket label.
TARGET_LABELS = {"instance", "job", "le"}
VARIABLES = {"datasource", "instance"}  # the dashboard's own
BUILTINS = {"__rate_interval", "__range", "__interval"}  # Grafana's
ZONE_COPY = """\
$TTL 300
@ IN SOA ns.rpz.example. hostmaster.rpz.example. 7 3600 5 86400 300
@ IN NS localhost.
bad.test IN CNAME .
"""


def dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text()))


def expressions(node: Any) -> Iterator[str]:
    """Every PromQL expression of the dashboard: panel targets and variable queries."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("expr", "definition") and isinstance(value, str):
                yield value
            elif key == "query" and isinstance(value, dict) and "query" in value:
                yield str(value["query"])
            else:
                yield from expressions(value)
    elif isinstance(node, list):
        for item in node:
            yield from expressions(item)


def without_strings(expr: str) -> str:
    return re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)


def metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\bsinkhole_\w+", without_strings(expr)))


def label_names(expr: str) -> set[str]:
    """Labels in matchers ({a="x"}), groupings (by (a, b)) and label_values(m, a)."""
    text = without_strings(expr)
    found = set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)\s*\"", text))
    for group in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", text):
        found.update(label.strip() for label in group.split(",") if label.strip())
    for label in re.findall(r"label_values\(\s*\w+\s*,\s*(\w+)\s*\)", text):
        found.add(label)
    return found


def exported(text: str) -> tuple[set[str], set[str], set[str]]:
    """Series names a scrape offers (counters with _total, histograms' _bucket, _sum and
    _count), the labels of its samples, and the families without any sample."""
    names: set[str] = set()
    labels: set[str] = set()
    empty: set[str] = set()
    for family in text_string_to_metric_families(text):
        if family.type == "counter":
            names.add(family.name + "_total")
        elif family.type == "histogram":
            names.update(family.name + s for s in ("_bucket", "_sum", "_count"))
        else:
            names.add(family.name)
        if not family.samples:
            empty.add(family.name)
        for sample in family.samples:
            names.add(sample.name)
            labels.update(sample.labels)
    return names, labels, empty


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3.0) as response:
        return str(response.read().decode())


def test_every_expression_names_series_the_server_exports(
    sinkhole_factory: SinkholeFactory,
) -> None:
    port = free_port()
    copy = sinkhole_factory.workdir / "rpz.zone"
    copy.write_text(ZONE_COPY)
    zone = {"name": "rpz.example.", "file": str(copy), "primaries": [f"127.0.0.1:{dead_port()}"]}
    server = sinkhole_factory(POLICIES, metrics=f"127.0.0.1:{port}", workers=2, zones=[zone])
    server.wait_event("workers_ready", 10.0)
    ask(v4(server), BLOCKED)
    ask(v4(server), unique("slow1"))

    def complete() -> str | None:  # the workers report every second; the zone check fails
        text = scrape(port)
        return None if exported(text)[2] else text

    text = wait_until(complete, 10.0)
    assert text, f"families without samples: {exported(scrape(port))[2]}"
    names, labels, _ = exported(text)
    exprs = list(expressions(dashboard()))
    assert len(exprs) >= 20
    for expr in exprs:
        used = metric_names(expr)
        assert used, f"no sinkhole series in {expr!r}"
        assert used <= names, f"{sorted(used - names)} not exported; used in {expr!r}"
        unknown = label_names(expr) - labels - TARGET_LABELS
        assert not unknown, f"labels {sorted(unknown)} not exported; used in {expr!r}"
        variables = set(re.findall(r"\$\{?(\w+)", expr))
        assert variables <= VARIABLES | BUILTINS, expr


def test_the_dashboard_is_well_formed() -> None:
    board = dashboard()
    panels = board["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    defined = {v["name"] for v in board["templating"]["list"]}
    assert defined == VARIABLES
    for panel in panels:
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"])
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            assert panel["targets"], panel["title"]


def promql(expr: str) -> str:
    """An expression as Prometheus evaluates it: Grafana's variables given values."""
    for name, value in (
        ("${datasource}", ""),
        ("$__rate_interval", "1m"),
        ("$__range", "1h"),
        ("$__interval", "15s"),
        ("$instance", ".*"),
    ):
        expr = expr.replace(name, value)
    return expr


@pytest.mark.system("promtool")
def test_promtool_accepts_every_expression_and_the_scrape_config(tmp_path: Path) -> None:
    promtool = program("promtool")
    exprs = [promql(e) for e in expressions(dashboard()) if not e.startswith("label_values")]
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [{"record": f"dashboard:expr{i}", "expr": e} for i, e in enumerate(exprs)],
            }
        ]
    }
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump(rules))
    checked = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    config = tmp_path / "prometheus.yml"
    config.write_text(SCRAPE_CONFIG.read_text())
    checked = subprocess.run(
        [promtool, "check", "config", "--syntax-only", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_scrape_config_scrapes_metrics_paths() -> None:
    config = yaml.safe_load(SCRAPE_CONFIG.read_text())
    [job] = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    assert all(":" in t for c in job["static_configs"] for t in c["targets"])
