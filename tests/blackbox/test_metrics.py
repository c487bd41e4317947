"""GET /metrics: Prometheus text whose counters follow the queries answered, over HTTP/1.1
within limits (methods, slow clients, request size)."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import signal
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import dns.exception
import dns.rcode
import h2.config
import h2.connection
import h2.events
import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.procs import (
    WARNING_IPV4,
    FakeUpstream,
    Sinkhole,
    SinkholeFactory,
    dead_port,
    free_port,
    wait_until,
)

from blackbox.dnsclient import addresses, ask, unique, v4
from blackbox.standard import BLOCKED, DROP_ACTION, NXDOMAIN_ACTION, POLICIES

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


# --- the HTTP side: HTTP/1.1, methods, limits -------------------------------------------

SERIES = (  # every counter the server keeps, besides sinkhole_queries_total
    "sinkhole_refused_clients_total",
    "sinkhole_responses_ignored_total",
    "sinkhole_upstream_queries_total",
    "sinkhole_upstream_timeouts_total",
    "sinkhole_upstream_unexpected_replies_total",
    "sinkhole_upstream_failed_total",
    "sinkhole_upstream_socket_errors_total",
    "sinkhole_upstream_tcp_retries_total",
    "sinkhole_upstream_coalesced_total",
    "sinkhole_upstream_held_down_total",
    "sinkhole_reloads_total",
    "sinkhole_reload_failures_total",
    "sinkhole_udp_received_total",
    "sinkhole_udp_sent_total",
    "sinkhole_udp_recv_calls_total",
    "sinkhole_udp_send_calls_total",
    "sinkhole_udp_queued_total",
    "sinkhole_udp_dropped_total",
    "sinkhole_udp_oversized_total",
    "sinkhole_udp_errors_total",
    "sinkhole_tcp_rejected_connections_total",
    "sinkhole_worker_restarts_total",
    "sinkhole_upstream_inflight_limited_total",
    "sinkhole_tcp_evicted_connections_total",
    "sinkhole_tcp_client_limited_connections_total",
    "sinkhole_tcp_query_timeouts_total",
    "sinkhole_tcp_paused_total",
    "sinkhole_tcp_overflowed_total",
    "sinkhole_tcp_stalled_total",
    "sinkhole_rate_limited_dropped_total",
    "sinkhole_rate_limited_truncated_total",
    "sinkhole_cache_hits_total",
    "sinkhole_cache_misses_total",
    "sinkhole_cache_evictions_total",
    "sinkhole_policy_names",
    "sinkhole_cache_entries",
    "sinkhole_cache_capacity",
    "sinkhole_upstream_inflight",
    "sinkhole_tcp_connections",
    "sinkhole_reload_last_success_timestamp_seconds",
    "sinkhole_reload_last_successful",
)


def request(port: int, method: str, path: str = "/metrics") -> tuple[int, dict[str, str], bytes]:
    """One request over HTTP/1.1 (http.client); status, headers (lower-case names), body."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=3.0)
    try:
        conn.request(method, path, body=b"x" if method in ("POST", "PUT") else None)
        response = conn.getresponse()
        assert response.version == 11
        headers = {k.lower(): v for k, v in response.getheaders()}
        return response.status, headers, response.read()
    finally:
        conn.close()


def partial_request(port: int) -> socket.socket:
    """A connection that sends part of a request head and never the rest."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=3.0)
    sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    return sock


@pytest.fixture
def metrics_port(sinkhole_factory: SinkholeFactory) -> Iterator[tuple[Sinkhole, int]]:
    port = free_port()
    server = sinkhole_factory(POLICIES, metrics=f"127.0.0.1:{port}")
    yield server, port
    # Whatever the tests sent, the server wrote JSON lines only.
    for line in server.lines:
        assert isinstance(json.loads(line), dict), line


def test_every_counter_is_a_series(metrics_port: tuple[Sinkhole, int]) -> None:
    server, port = metrics_port
    _, _, before = scrape(port)
    for name in SERIES:
        assert f"# TYPE {name} " in before, name
        sample(before, name)
    assert addresses(ask(v4(server), BLOCKED)) == [WARNING_IPV4]
    _, _, after = scrape(port)
    # The listener is the batched one on Linux (udp_batch: true by default).
    assert (
        sample(after, "sinkhole_udp_received_total")
        == sample(before, "sinkhole_udp_received_total") + 1
    )
    assert sample(after, "sinkhole_udp_sent_total") == sample(before, "sinkhole_udp_sent_total") + 1


def test_get_and_head_over_http11(metrics_port: tuple[Sinkhole, int]) -> None:
    _, port = metrics_port
    status, headers, body = request(port, "GET")
    assert status == 200 and headers["content-type"].startswith("text/plain; version=0.0.4")
    assert int(headers["content-length"]) == len(body) and b"sinkhole_queries_total" in body
    status, headers, body = request(port, "HEAD")
    assert status == 200 and body == b""
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    assert int(headers["content-length"]) > 0


def test_keep_alive_serves_several_requests(metrics_port: tuple[Sinkhole, int]) -> None:
    _, port = metrics_port
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=3.0)
    try:
        for _ in range(3):
            conn.request("GET", "/metrics")
            response = conn.getresponse()
            assert response.status == 200 and response.read()
    finally:
        conn.close()


@pytest.mark.parametrize("method", ["DELETE", "POST", "PUT", "OPTIONS"])
def test_other_methods_get_405(metrics_port: tuple[Sinkhole, int], method: str) -> None:
    _, port = metrics_port
    status, headers, body = request(port, method)
    assert status == 405
    assert headers["allow"] == "GET, HEAD"
    assert headers["content-type"].startswith("text/plain")
    assert b"sinkhole_queries" not in body


def test_unknown_paths_do_not_echo_the_request(metrics_port: tuple[Sinkhole, int]) -> None:
    _, port = metrics_port
    status, headers, body = request(port, "GET", "/%3Cscript%3Eprobe")
    assert status == 404 and headers["content-type"].startswith("text/plain")
    assert b"script" not in body.lower() and b"probe" not in body


def test_slow_clients_do_not_hold_up_a_scrape(metrics_port: tuple[Sinkhole, int]) -> None:
    """50 clients that never finish their request head: a scrape is still answered at once,
    and the server drops them once the head is overdue (5 s)."""
    _, port = metrics_port
    slow = [partial_request(port) for _ in range(50)]
    try:
        started = time.monotonic()
        status, _, text = scrape(port)
        assert status == 200 and "sinkhole_queries_total" in text
        assert time.monotonic() - started < 1.0
        deadline = time.monotonic() + 10.0
        for sock in slow:
            sock.settimeout(max(deadline - time.monotonic(), 0.1))
            assert sock.recv(1024) == b""  # closed by the server, not answered
    finally:
        for sock in slow:
            sock.close()


def head_reply(port: int, *parts: bytes) -> bytes:
    """What the server answers to a request sent in ``parts``, up to the end of its head."""
    with socket.create_connection(("127.0.0.1", port), timeout=3.0) as sock:
        for part in parts:
            sock.sendall(part)
            time.sleep(0.05)  # separate reads on the server
        reply = b""
        while b"\r\n\r\n" not in reply and (chunk := sock.recv(4096)):
            reply += chunk
    return reply


@pytest.mark.parametrize("whole", [True, False])
def test_an_oversized_request_head_is_refused(
    metrics_port: tuple[Sinkhole, int], whole: bool
) -> None:
    """Over 8 KiB of request head: 431, whether it arrives at once or in parts."""
    _, port = metrics_port
    head = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000
    parts = [head + b"\r\n\r\n"] if whole else [head, b"\r\n\r\n"]
    assert head_reply(port, *parts).startswith(b"HTTP/1.1 431 ")
    assert head_reply(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").startswith(
        b"HTTP/1.1 200 "
    )


def h2_request(port: int, method: str, path: str = "/metrics") -> tuple[int, bytes]:
    """One request over cleartext HTTP/2 (prior knowledge), with the h2 library."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    conn.send_headers(
        1,
        [(":method", method), (":path", path), (":scheme", "http"), (":authority", "x")],
        end_stream=True,
    )
    status, body = 0, b""
    with socket.create_connection(("127.0.0.1", port), timeout=3.0) as sock:
        sock.sendall(conn.data_to_send())
        while True:
            data = sock.recv(65536)
            assert data, "closed before the response ended"
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    status = int(dict(event.headers)[b":status"])
                elif isinstance(event, h2.events.DataReceived):
                    body += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, 1)
                elif isinstance(event, h2.events.StreamEnded):
                    return status, body
            sock.sendall(conn.data_to_send())


def test_http2_cleartext(metrics_port: tuple[Sinkhole, int]) -> None:
    _, port = metrics_port
    status, body = h2_request(port, "GET")
    assert status == 200 and b"sinkhole_queries_total" in body
    assert h2_request(port, "DELETE")[0] == 405


# --- the series an operator runs a network on ------------------------------------------

Labels = frozenset[tuple[str, str]]


def series(text: str) -> dict[tuple[str, Labels], float]:
    """Every sample of a scrape, by sample name and labels (parsed by prometheus_client)."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[s.name, frozenset(s.labels.items())] = s.value
    return out


def moved(before: str, after: str, name: str, **labels: str) -> float:
    """How much the sample ``name{labels}`` grew between two scrapes (absent: 0)."""
    key = (name, frozenset(labels.items()))
    return series(after).get(key, 0.0) - series(before).get(key, 0.0)


def test_answers_by_transport_type_and_rcode_and_blocks_by_policy(
    metrics_port: tuple[Sinkhole, int],
) -> None:
    server, port = metrics_port
    _, _, before = scrape(port)
    assert addresses(ask(v4(server), BLOCKED)) == [WARNING_IPV4]
    assert addresses(ask(v4(server), BLOCKED)) == [WARNING_IPV4]  # replayed
    ask(v4(server), "www." + BLOCKED, "HTTPS", tcp=True)
    assert ask(v4(server), NXDOMAIN_ACTION).rcode() == dns.rcode.NXDOMAIN
    ask(v4(server), unique())  # forwarded
    ask(v4(server), unique(), "HINFO")  # a type counted as other
    with pytest.raises(dns.exception.Timeout):
        ask(v4(server), DROP_ACTION, timeout=0.3)
    _, _, after = scrape(port)
    answers = "sinkhole_answers_total"
    assert moved(before, after, answers, transport="udp", qtype="A", rcode="NOERROR") == 3
    assert moved(before, after, answers, transport="udp", qtype="A", rcode="NXDOMAIN") == 1
    assert moved(before, after, answers, transport="tcp", qtype="HTTPS", rcode="NOERROR") == 1
    assert moved(before, after, answers, transport="udp", qtype="other", rcode="NOERROR") == 1
    blocks = "sinkhole_blocks_total"
    assert moved(before, after, blocks, policy="court-order", action="warning-page") == 3
    assert moved(before, after, blocks, policy="actions", action="nxdomain") == 1
    assert moved(before, after, blocks, policy="actions", action="drop") == 1
    total = sum(v for (n, _), v in series(after).items() if n == answers)
    assert total - sum(v for (n, _), v in series(before).items() if n == answers) == 6


def test_cache_hits_misses_and_evictions(sinkhole_factory: SinkholeFactory) -> None:
    port = free_port()
    server = sinkhole_factory(
        POLICIES, metrics=f"127.0.0.1:{port}", cache={"max_entries": 2, "min_ttl": 0}
    )
    names = [unique() for _ in range(3)]
    for name in names:
        ask(v4(server), name)
    for _ in range(2):
        ask(v4(server), names[-1])  # a hit, then a replayed hit
    _, _, text = scrape(port)
    assert sample(text, "sinkhole_cache_misses_total") == 3
    assert sample(text, "sinkhole_cache_hits_total") == 2
    assert sample(text, "sinkhole_cache_evictions_total") == 1
    assert sample(text, "sinkhole_cache_entries") == 2
    assert sample(text, "sinkhole_cache_capacity") == 2


def test_each_upstream_has_its_tries_timeouts_and_health(
    sinkhole_factory: SinkholeFactory, fake_upstream: FakeUpstream
) -> None:
    """The first upstream is unreachable: its tries time out until it is held down; the
    second answers every question."""
    port = free_port()
    dead = f"127.0.0.1:{dead_port()}"
    server = sinkhole_factory(
        POLICIES, metrics=f"127.0.0.1:{port}", upstreams=[dead, fake_upstream.endpoint]
    )
    for _ in range(4):
        assert addresses(ask(v4(server), unique())) == ["198.51.100.7"]
    _, _, text = scrape(port)
    got = series(text)

    def per(name: str, upstream: str) -> float:
        return got[name, frozenset({("upstream", upstream)})]

    assert per("sinkhole_upstream_server_timeouts_total", dead) == 3  # then held down
    assert per("sinkhole_upstream_server_queries_total", dead) == 3
    assert per("sinkhole_upstream_server_down", dead) == 1
    assert per("sinkhole_upstream_server_failures", dead) == 3
    assert per("sinkhole_upstream_server_queries_total", fake_upstream.endpoint) == 4
    assert per("sinkhole_upstream_server_timeouts_total", fake_upstream.endpoint) == 0
    assert per("sinkhole_upstream_server_down", fake_upstream.endpoint) == 0
    assert sample(text, "sinkhole_upstream_queries_total") == 7


def test_answer_times_of_forwarded_and_failed_queries(sinkhole_factory: SinkholeFactory) -> None:
    port = free_port()
    server = sinkhole_factory(POLICIES, metrics=f"127.0.0.1:{port}")
    ask(v4(server), unique("slow3"))  # answered 0.3 s late by the fake upstream
    assert ask(v4(server), unique("silent"), timeout=3.0).rcode() == dns.rcode.SERVFAIL
    _, _, text = scrape(port)
    got = series(text)
    name = "sinkhole_answer_duration_seconds"

    def bucket(outcome: str, le: str) -> float:
        return got[f"{name}_bucket", frozenset({("outcome", outcome), ("le", le)})]

    assert bucket("forwarded", "0.25") == 0 and bucket("forwarded", "0.5") == 1
    assert got[f"{name}_count", frozenset({("outcome", "forwarded")})] == 1
    assert 0.3 <= got[f"{name}_sum", frozenset({("outcome", "forwarded")})] < 0.5
    assert bucket("servfail", "0.5") == 0 and bucket("servfail", "+Inf") == 1
    assert 0.9 <= got[f"{name}_sum", frozenset({("outcome", "servfail")})] < 2.0


def test_reloads_and_the_policy_files_loaded(sinkhole_factory: SinkholeFactory) -> None:
    port = free_port()
    server = sinkhole_factory(POLICIES, metrics=f"127.0.0.1:{port}")
    path = server.policies_dir / "20-operator.yaml"

    def info(text: str) -> dict[str, str]:
        return {
            dict(labels)["file"]: dict(labels)["sha256"]
            for (n, labels), v in series(text).items()
            if n == "sinkhole_policy_file_info" and v == 1
        }

    _, _, before = scrape(port)
    assert info(before)[str(path)] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert len(info(before)) == len(POLICIES)
    loaded = sample(before, "sinkhole_reload_last_success_timestamp_seconds")
    assert abs(loaded - time.time()) < 60

    path.write_text(POLICIES["20-operator.yaml"] + "  - more.example\n")
    mark = server.mark()
    server.send_signal(signal.SIGHUP)
    server.wait_event("policy_reloaded", 5.0, mark)
    _, _, after = scrape(port)
    assert info(after)[str(path)] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert sample(after, "sinkhole_reloads_total") == 1
    assert sample(after, "sinkhole_reload_last_success_timestamp_seconds") > loaded

    path.write_text("id: [broken")
    mark = server.mark()
    server.send_signal(signal.SIGHUP)
    server.wait_event("policy_reload_failed", 5.0, mark)
    _, _, failed = scrape(port)
    assert sample(failed, "sinkhole_reload_failures_total") == 1
    assert sample(failed, "sinkhole_reload_last_successful") == 0
    assert info(failed) == info(after)  # the files still enforced


ZONE = "rpz.example."
ZONE_COPY = """\
$TTL 300
@ IN SOA ns.rpz.example. hostmaster.rpz.example. 7 3600 5 86400 300
@ IN NS localhost.
bad.test IN CNAME .
"""


def test_a_zone_whose_primary_is_unreachable(sinkhole_factory: SinkholeFactory) -> None:
    """The saved copy (serial 7) is enforced; the check at start-up fails: the failure's
    time is shown, the copy's serial, last refresh (its date) and expiry."""
    port = free_port()
    copy = sinkhole_factory.workdir / "rpz.zone"
    copy.write_text(ZONE_COPY)
    dated = time.time() - 3600
    os.utime(copy, (dated, dated))
    zone = {"name": ZONE, "file": str(copy), "primaries": [f"127.0.0.1:{dead_port()}"]}
    server = sinkhole_factory(POLICIES, metrics=f"127.0.0.1:{port}", zones=[zone])
    labels = frozenset({("zone", ZONE)})

    def failed() -> dict[tuple[str, Labels], float] | None:
        got = series(scrape(port)[2])
        return got if got.get(("sinkhole_zone_last_failure_timestamp_seconds", labels)) else None

    got = wait_until(failed, 10.0)
    assert got, scrape(port)[2]
    assert abs(got["sinkhole_zone_last_failure_timestamp_seconds", labels] - time.time()) < 60
    assert got["sinkhole_zone_serial", labels] == 7
    assert got["sinkhole_zone_last_refresh_timestamp_seconds", labels] == pytest.approx(dated)
    assert got["sinkhole_zone_expiry_timestamp_seconds", labels] == pytest.approx(dated + 86400)
    assert got["sinkhole_zone_last_transfer_timestamp_seconds", labels] == 0
    assert got["sinkhole_zone_expired", labels] == 0
    assert ask(v4(server), "bad.test").rcode() == dns.rcode.NXDOMAIN  # the copy is enforced
