"""GET /metrics: Prometheus text whose counters follow the queries answered, over HTTP/1.1
within limits (methods, slow clients, request size)."""

from __future__ import annotations

import http.client
import json
import re
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import h2.config
import h2.connection
import h2.events
import pytest
from support.procs import WARNING_IPV4, Sinkhole, SinkholeFactory, free_port

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
    "sinkhole_policy_names",
    "sinkhole_cache_entries",
    "sinkhole_upstream_inflight",
    "sinkhole_tcp_connections",
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
