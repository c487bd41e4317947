"""Forwarding over DNS over TLS and DNS over HTTPS to a real server: Unbound (Debian) on
loopback with a certificate from the test's CA, answering from local-data.

sinkhole asks it over ``tls://`` and ``https://`` upstreams, checks its certificate
against ``upstream_ca`` (or the system trust store), keeps one connection for many
queries, has many queries out on it at once, and fails over from an upstream it cannot
reach or whose certificate does not carry the name it was given.
"""

from __future__ import annotations

import contextlib
import re
import socket
import ssl
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.rcode
import pytest
from blackbox.dnsclient import addresses, ask, ede, v4
from support.certs import SERVER_NAME, TlsFiles, make_tls_files
from support.procs import (
    WARNING_IPV4,
    FakeUpstream,
    Sinkhole,
    SinkholeFactory,
    dead_port,
    free_port,
    wait_until,
)
from support.unbound_tls import LOCAL_A, LOCAL_AAAA, LOCAL_NAME, EncryptedUnbound, Relay

pytestmark = [pytest.mark.blackbox, pytest.mark.system("unbound", "unbound-checkconf")]

BLOCKED = "blocked.upstream.test"
POLICIES = {"p.yaml": f"id: court\nauthority: Test Court\nblock:\n  - {BLOCKED}\n"}
SCHEMES = ("tls", "https")


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    _, files = make_tls_files(tmp_path_factory.mktemp("upstream-tls"))
    return files


@pytest.fixture(scope="module")
def unbound(
    tmp_path_factory: pytest.TempPathFactory, tls_files: TlsFiles, fake_upstream: FakeUpstream
) -> Iterator[EncryptedUnbound]:
    server = EncryptedUnbound(
        tmp_path_factory.mktemp("unbound"), tls_files, (fake_upstream.host, fake_upstream.port)
    )
    yield server
    server.stop()


def spec(unbound: EncryptedUnbound, scheme: str, port: int | None = None, name: str = "") -> str:
    name = name or SERVER_NAME
    return unbound.tls(port, name) if scheme == "tls" else unbound.https(port, name)


def start(
    factory: SinkholeFactory, upstreams: list[str], ca: Path | None, **settings: object
) -> tuple[Sinkhole, int]:
    """A server forwarding to ``upstreams`` with /metrics on the port returned."""
    metrics = free_port()
    server = factory(
        POLICIES,
        upstreams=upstreams,
        upstream_ca=str(ca) if ca else None,
        metrics=f"127.0.0.1:{metrics}",
        **settings,
    )
    return server, metrics


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3.0) as response:
        return str(response.read().decode())


def sample(text: str, name: str, upstream: str = "") -> float:
    labels = f'{{upstream="{upstream}"}}' if upstream else ""
    found = re.search(re.escape(name + labels) + r" ([0-9.e+]+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else -1.0


def counted(port: int, name: str, upstream: str = "", at_least: float = 1) -> float:
    """The sample once it reached ``at_least`` (workers report once a second)."""
    value = wait_until(lambda: sample(scrape(port), name, upstream) >= at_least, 5.0)
    assert value, f"{name}{{{upstream}}} < {at_least}:\n{scrape(port)}"
    return sample(scrape(port), name, upstream)


def ask_at_once(where: tuple[str, int], names: list[str], timeout: float) -> dict[str, str]:
    """Send a query for every name, then read the replies: name -> first A address."""
    got: dict[str, str] = {}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for name in names:
            sock.sendto(dns.message.make_query(name, "A").to_wire(), where)
        deadline = time.monotonic() + timeout
        while len(got) < len(names) and time.monotonic() < deadline:
            sock.settimeout(max(deadline - time.monotonic(), 0.01))
            try:
                reply = dns.message.from_wire(sock.recv(65535))
            except TimeoutError:
                break
            found = addresses(reply)
            got[str(reply.question[0].name).rstrip(".")] = found[0] if found else ""
    return got


@pytest.mark.parametrize("scheme", SCHEMES)
def test_forwards_a_and_aaaa_and_blocks_what_is_blocked(
    sinkhole_factory: SinkholeFactory,
    unbound: EncryptedUnbound,
    tls_files: TlsFiles,
    scheme: str,
) -> None:
    upstream = spec(unbound, scheme)
    server, metrics = start(sinkhole_factory, [upstream], tls_files.ca)
    assert server.started["upstreams"] == [upstream]
    a = ask(v4(server), LOCAL_NAME, "A")
    aaaa = ask(v4(server), LOCAL_NAME, "AAAA")
    assert (a.rcode(), addresses(a)) == (dns.rcode.NOERROR, [LOCAL_A])
    assert (aaaa.rcode(), addresses(aaaa)) == (dns.rcode.NOERROR, [LOCAL_AAAA])
    nx = ask(v4(server), "nothing-here.upstream.test", "A")
    assert nx.rcode() == dns.rcode.NXDOMAIN  # Unbound's answer, its SOA with it
    assert [str(r.name) for r in nx.authority] == ["upstream.test."]
    blocked = ask(v4(server), BLOCKED, "A")
    assert addresses(blocked) == [WARNING_IPV4]
    assert counted(metrics, "sinkhole_upstream_server_queries_total", upstream, 3) == 3
    assert sample(scrape(metrics), "sinkhole_upstream_encrypted_failures_total") == 0


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_certificate_without_the_name_is_refused(
    sinkhole_factory: SinkholeFactory,
    unbound: EncryptedUnbound,
    tls_files: TlsFiles,
    scheme: str,
) -> None:
    upstream = spec(unbound, scheme, name="other.upstream.test")
    server, metrics = start(sinkhole_factory, [upstream], tls_files.ca)
    reply = ask(v4(server), LOCAL_NAME, "A", edns=True, timeout=3.0)
    assert reply.rcode() == dns.rcode.SERVFAIL
    assert 22 in [code for code, _ in ede(reply)]  # No Reachable Authority
    failed = server.wait_event("upstream_connect_failed", 3.0)
    assert failed["upstream"] == upstream
    assert "certificate not accepted" in failed["error"], failed
    assert "other.upstream.test" in failed["error"] or "mismatch" in failed["error"], failed
    assert counted(metrics, "sinkhole_upstream_encrypted_failures_total") >= 1
    assert sample(scrape(metrics), "sinkhole_upstream_server_connections_total", upstream) == 0


@pytest.mark.parametrize("scheme", SCHEMES)
def test_the_system_trust_store_is_the_default(
    sinkhole_factory: SinkholeFactory,
    unbound: EncryptedUnbound,
    tls_files: TlsFiles,
    scheme: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without upstream_ca the test's CA is not trusted, unless the system store (here
    OpenSSL's SSL_CERT_FILE) holds it."""
    upstream = spec(unbound, scheme)
    untrusting, _ = start(sinkhole_factory, [upstream], None)
    assert ask(v4(untrusting), LOCAL_NAME, "A", timeout=3.0).rcode() == dns.rcode.SERVFAIL
    error = untrusting.wait_event("upstream_connect_failed", 3.0)["error"]
    assert "certificate not accepted" in error and "issuer" in error, error
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_files.ca))
    trusting, _ = start(sinkhole_factory, [upstream], None)
    assert addresses(ask(v4(trusting), LOCAL_NAME, "A")) == [LOCAL_A]


@pytest.mark.parametrize("scheme", SCHEMES)
def test_failover_from_an_upstream_that_refuses_connections(
    sinkhole_factory: SinkholeFactory,
    unbound: EncryptedUnbound,
    tls_files: TlsFiles,
    scheme: str,
) -> None:
    dead = spec(unbound, scheme, port=dead_port())
    alive = spec(unbound, scheme)
    # A try timeout far above the test's patience: only an immediate failover passes.
    server, metrics = start(
        sinkhole_factory, [dead, alive], tls_files.ca, upstream_timeout=3.0, query_timeout=8.0
    )
    began = time.monotonic()
    for i in range(5):
        assert addresses(ask(v4(server), LOCAL_NAME, "AAAA" if i % 2 else "A", timeout=2.0))
        ask(v4(server), f"miss{i}.upstream.test", "A", timeout=2.0)
    assert time.monotonic() - began < 3.0
    assert server.wait_event("upstream_connect_failed", 1.0)["upstream"] == dead
    assert counted(metrics, "sinkhole_upstream_encrypted_failures_total") >= 1
    assert sample(scrape(metrics), "sinkhole_upstream_server_connections_total", alive) == 1
    assert sample(scrape(metrics), "sinkhole_upstream_server_connections_total", dead) == 0


def test_failover_between_transports(
    sinkhole_factory: SinkholeFactory, unbound: EncryptedUnbound, tls_files: TlsFiles
) -> None:
    """A dead tls:// upstream, then a working https:// one, then plain DNS."""
    upstreams = [
        spec(unbound, "tls", port=dead_port()),
        spec(unbound, "https"),
        f"127.0.0.1:{unbound.port}",
    ]
    server, metrics = start(sinkhole_factory, upstreams, tls_files.ca)
    assert addresses(ask(v4(server), LOCAL_NAME, "A")) == [LOCAL_A]
    assert counted(metrics, "sinkhole_upstream_server_queries_total", upstreams[1]) == 1
    assert sample(scrape(metrics), "sinkhole_upstream_server_queries_total", upstreams[2]) == 0


@pytest.mark.parametrize("scheme", SCHEMES)
def test_one_connection_carries_many_queries(
    sinkhole_factory: SinkholeFactory,
    unbound: EncryptedUnbound,
    tls_files: TlsFiles,
    scheme: str,
) -> None:
    port = unbound.tls_port if scheme == "tls" else unbound.https_port
    relay = Relay(("127.0.0.1", port))
    try:
        upstream = spec(unbound, scheme, port=relay.port)
        server, metrics = start(sinkhole_factory, [upstream], tls_files.ca)
        for i in range(100):
            assert ask(v4(server), f"many{i}.upstream.test", "A").rcode() == dns.rcode.NXDOMAIN
        assert counted(metrics, "sinkhole_upstream_server_queries_total", upstream, 100) == 100
        assert sample(scrape(metrics), "sinkhole_upstream_server_connections_total", upstream) == 1
        assert relay.accepted == 1
    finally:
        relay.close()


@pytest.mark.parametrize("scheme", SCHEMES)
def test_queries_are_pipelined(
    sinkhole_factory: SinkholeFactory,
    unbound: EncryptedUnbound,
    tls_files: TlsFiles,
    fake_upstream: FakeUpstream,
    scheme: str,
) -> None:
    """Twenty names whose answers each come 0.4 s late (Unbound asks the fake upstream
    for them), asked at once: all answered in far less than 20 x 0.4 s, over one
    connection, so they were out on it together."""
    relay = Relay(("127.0.0.1", unbound.tls_port if scheme == "tls" else unbound.https_port))
    try:
        upstream = spec(unbound, scheme, port=relay.port)
        server, metrics = start(
            sinkhole_factory, [upstream], tls_files.ca, upstream_timeout=3.0, query_timeout=6.0
        )
        assert ask(v4(server), LOCAL_NAME, "A").rcode() == dns.rcode.NOERROR  # connected
        names = [f"slow4-{scheme}{i}-{time.monotonic_ns()}.slow.test" for i in range(20)]
        began = time.monotonic()
        got = ask_at_once(v4(server), names, 5.0)
        took = time.monotonic() - began
        assert got == dict.fromkeys(names, "198.51.100.7"), got
        assert took < 2.0, took
        assert all(fake_upstream.count(name) for name in names)
        assert sample(scrape(metrics), "sinkhole_upstream_server_connections_total", upstream) == 1
        assert relay.accepted == 1
    finally:
        relay.close()


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_connection_the_upstream_closed_is_opened_again(
    sinkhole_factory: SinkholeFactory,
    tmp_path: Path,
    tls_files: TlsFiles,
    scheme: str,
) -> None:
    """Unbound closes connections idle for 300 ms; the next query opens a new one and is
    answered, without a failure."""
    quick = EncryptedUnbound(tmp_path / "quick-unbound", tls_files, idle_ms=300)
    relay = Relay(("127.0.0.1", quick.tls_port if scheme == "tls" else quick.https_port))
    try:
        upstream = spec(quick, scheme, port=relay.port)
        server, metrics = start(sinkhole_factory, [upstream], tls_files.ca)
        for round in range(1, 4):
            assert addresses(ask(v4(server), f"r{round}.{LOCAL_NAME}", "A")) == []
            assert addresses(ask(v4(server), LOCAL_NAME, "AAAA" if round % 2 else "A"))
            assert wait_until(lambda round=round: relay.closed == round, 5.0), relay.closed
        assert relay.accepted == 3
        assert counted(metrics, "sinkhole_upstream_server_connections_total", upstream, 3) == 3
        assert sample(scrape(metrics), "sinkhole_upstream_encrypted_failures_total") == 0
    finally:
        relay.close()
        quick.stop()


def test_a_doh_path_the_server_does_not_serve_fails_over(
    sinkhole_factory: SinkholeFactory, unbound: EncryptedUnbound, tls_files: TlsFiles
) -> None:
    wrong = f"https://127.0.0.1:{unbound.https_port}/no-such-path#{SERVER_NAME}"
    right = spec(unbound, "https")
    server, metrics = start(sinkhole_factory, [wrong, right], tls_files.ca, upstream_timeout=3.0)
    began = time.monotonic()
    for i in range(3):
        assert addresses(ask(v4(server), f"{i}.{LOCAL_NAME}", "A")) == []  # NXDOMAIN, answered
    assert time.monotonic() - began < 2.0  # no try waited for its timeout
    failed = server.wait_event("upstream_failed", 3.0)
    assert failed["upstream"] == wrong and failed["reason"].startswith("HTTP status 404"), failed
    assert counted(metrics, "sinkhole_upstream_encrypted_failures_total", at_least=3) == 3
    assert counted(metrics, "sinkhole_upstream_server_queries_total", right, 3) == 3


def test_a_doh_server_without_http2_is_a_failed_connection(
    sinkhole_factory: SinkholeFactory, tls_files: TlsFiles
) -> None:
    """A TLS server that does not choose h2 by ALPN (an HTTP/1.1 one)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls_files.cert, tls_files.key)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    accepted: list[ssl.SSLSocket] = []

    def serve() -> None:
        with contextlib.suppress(OSError):
            raw, _ = listener.accept()
            accepted.append(context.wrap_socket(raw, server_side=True))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        upstream = f"https://127.0.0.1:{port}/dns-query#{SERVER_NAME}"
        server, _ = start(sinkhole_factory, [upstream], tls_files.ca)
        assert ask(v4(server), LOCAL_NAME, "A", timeout=3.0).rcode() == dns.rcode.SERVFAIL
        failed = server.wait_event("upstream_connect_failed", 3.0)
        assert failed["error"] == "the server does not offer HTTP/2 (ALPN h2)", failed
    finally:
        listener.close()
        thread.join(5)
        for sock in accepted:
            sock.close()
