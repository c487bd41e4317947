"""DNS over TLS and DNS over HTTPS: the same answers, policy, ACL and query log as over UDP;
padding, limits, a renewed certificate on SIGHUP, and discovery (DDR, RFC 9462)."""

from __future__ import annotations

import base64
import json
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dns.edns
import dns.exception
import dns.message
import dns.rcode
import dns.rdata
import dns.rdatatype
import pytest
from support.certs import SERVER_NAME, issue, make_tls_files
from support.encrypted import H1, H2, Encrypted, pem_to_der, start_encrypted, wait_until
from support.procs import (
    WARNING_IPV4,
    FakeUpstream,
    Sinkhole,
    SinkholeFactory,
    free_port,
    standard_settings,
    write_config,
)

from blackbox.dnsclient import addresses, ask, ede, make, recv_frame, send, unique, v4
from blackbox.dnsclient import frame as dns_frame
from blackbox.standard import (
    BLOCKED,
    DROP_ACTION,
    EXEMPT,
    FILTERED,
    NODATA_ACTION,
    NXDOMAIN_ACTION,
    ORDERED,
    POLICIES,
    REFUSE_ACTION,
    UPSTREAM_IPV4,
)

pytestmark = pytest.mark.blackbox

BLOCK = 468
DOH_WAYS = [(True, H1), (True, H2), (False, H1), (False, H2)]
DOH_IDS = ["post-h1", "post-h2", "get-h1", "get-h2"]


@pytest.fixture(scope="module")
def encrypted(
    session_sinkhole_factory: SinkholeFactory, tmp_path_factory: pytest.TempPathFactory
) -> Encrypted:
    """A server with the standard policies on UDP, TCP, DoT and DoH, logging every query."""
    folder = tmp_path_factory.mktemp("tls")
    return start_encrypted(session_sinkhole_factory, folder, POLICIES, query_log="all")


def same_answer(a: dns.message.Message, b: dns.message.Message) -> None:
    """The same DNS answer, padding aside."""
    assert a.rcode() == b.rcode()
    assert a.flags == b.flags
    assert a.answer == b.answer
    assert a.authority == b.authority
    assert ede(a) == ede(b)


def padding(r: dns.message.Message) -> list[int]:
    return [len(o.to_wire()) for o in r.options if o.otype == dns.edns.OptionType.PADDING]


@pytest.mark.parametrize(
    "name", [BLOCKED, ORDERED, FILTERED, NXDOMAIN_ACTION, NODATA_ACTION, REFUSE_ACTION, EXEMPT]
)
@pytest.mark.parametrize("rdtype", ["A", "AAAA"])
def test_policy_answers_are_the_same_as_over_udp(
    encrypted: Encrypted, name: str, rdtype: str
) -> None:
    q = make(name, rdtype, edns=True)
    over_udp = send(v4(encrypted.server), q)
    same_answer(encrypted.ask_dot(q), over_udp)
    for post, version in DOH_WAYS:
        same_answer(encrypted.ask_doh(q, post, version), over_udp)


def test_blocked_name_gets_the_warning_page_everywhere(encrypted: Encrypted) -> None:
    q = make(BLOCKED)
    assert addresses(encrypted.ask_dot(q)) == [WARNING_IPV4]
    for post, version in DOH_WAYS:
        assert addresses(encrypted.ask_doh(q, post, version)) == [WARNING_IPV4]


@pytest.mark.parametrize("how", ["dot", *DOH_IDS])
def test_forwarded_names_are_answered(
    encrypted: Encrypted, fake_upstream: FakeUpstream, how: str
) -> None:
    name = unique()
    q = make(name, edns=True)
    if how == "dot":
        r = encrypted.ask_dot(q)
    else:
        post, version = DOH_WAYS[DOH_IDS.index(how)]
        r = encrypted.ask_doh(q, post, version)
    assert r.rcode() == dns.rcode.NOERROR
    assert addresses(r) == [UPSTREAM_IPV4]
    assert fake_upstream.count(name) == 1
    # Cached now: the same answer again, with the same name, from any transport.
    assert addresses(ask(v4(encrypted.server), name)) == [UPSTREAM_IPV4]
    assert fake_upstream.count(name) == 1


def test_upstream_failure_is_servfail_over_doh(encrypted: Encrypted) -> None:
    r = encrypted.ask_doh(make(unique("silent")), timeout=5.0)
    assert r.rcode() == dns.rcode.SERVFAIL


def test_pipelined_queries_on_one_dot_connection(encrypted: Encrypted) -> None:
    names = [BLOCKED, unique(), unique("nx"), unique("cname"), NXDOMAIN_ACTION]
    queries = {0x200 + i: make(n, qid=0x200 + i) for i, n in enumerate(names)}
    with encrypted.connect_dot() as tls:
        tls.sendall(b"".join(dns_frame(q.to_wire()) for q in queries.values()))
        answers = {}
        for _ in queries:
            r = dns.message.from_wire(recv_frame(tls))  # type: ignore[arg-type]
            answers[r.id] = r
    assert set(answers) == set(queries)
    assert addresses(answers[0x200]) == [WARNING_IPV4]
    assert addresses(answers[0x201]) == [UPSTREAM_IPV4]
    assert answers[0x202].rcode() == dns.rcode.NXDOMAIN
    assert answers[0x204].rcode() == dns.rcode.NXDOMAIN


def test_answers_to_edns_queries_are_padded_to_468_octets(encrypted: Encrypted) -> None:
    for name in (BLOCKED, unique()):
        q = make(name, edns=True)
        plain = send(v4(encrypted.server), q)
        assert padding(plain) == [] and len(plain.to_wire()) < BLOCK
        dot = encrypted.ask_dot(q)
        doh = encrypted.ask_doh(q)
        for r in (dot, doh):
            assert len(padding(r)) == 1
            assert len(r.to_wire()) % BLOCK == 0
    # Without EDNS there is no OPT record to carry the option.
    assert padding(encrypted.ask_dot(make(BLOCKED))) == []


def test_padded_query_gets_a_padded_answer(encrypted: Encrypted) -> None:
    q = dns.message.make_query(BLOCKED, "A", use_edns=0, pad=128)
    r = encrypted.ask_dot(q)
    assert len(r.to_wire()) % BLOCK == 0 and len(padding(r)) == 1


def test_dropped_name_gets_no_dns_answer(encrypted: Encrypted) -> None:
    with pytest.raises(dns.exception.Timeout):
        encrypted.ask_dot(make(DROP_ACTION), timeout=1.0)
    wire = make(DROP_ACTION).to_wire()
    status, _, _ = encrypted.http(
        "POST", "/dns-query", wire, {"content-type": "application/dns-message"}
    )
    assert status == 403


def test_queries_are_in_the_query_log_with_the_client(encrypted: Encrypted) -> None:
    name = unique()
    encrypted.ask_dot(make(name))
    encrypted.ask_doh(make(name, "AAAA"))

    def logged() -> list[dict[str, object]]:
        return [e for e in encrypted.server.events("query") if e.get("qname") == name]

    records = wait_until(lambda: len(logged()) == 2 and logged(), 5.0)
    assert records, encrypted.server.diagnostics()
    assert {(r["qtype"], r["client"], r["outcome"]) for r in records} == {
        ("A", "127.0.0.1", "forwarded"),
        ("AAAA", "127.0.0.1", "forwarded"),
    }


def test_http2_and_http11_are_offered(encrypted: Encrypted) -> None:
    for offered, chosen in ((["h2", "http/1.1"], "h2"), (["http/1.1"], "http/1.1")):
        with socket.create_connection(encrypted.doh, timeout=3.0) as raw:
            context = encrypted.files.client_context(offered)
            with context.wrap_socket(raw, server_hostname=SERVER_NAME) as tls:
                assert tls.selected_alpn_protocol() == chosen
                assert tls.version() in ("TLSv1.2", "TLSv1.3")


def test_doh_get_and_post_by_hand(encrypted: Encrypted) -> None:
    wire = make(BLOCKED, qid=0).to_wire()
    param = base64.urlsafe_b64encode(wire).rstrip(b"=").decode()
    status, headers, body = encrypted.http("GET", f"/dns-query?dns={param}")
    assert status == 200
    assert headers["content-type"] == "application/dns-message"
    assert headers["cache-control"] == "max-age=123"  # the warning page's TTL
    assert addresses(dns.message.from_wire(body)) == [WARNING_IPV4]
    status, headers, body = encrypted.http(
        "POST", "/dns-query", wire, {"content-type": "application/dns-message"}
    )
    assert status == 200 and addresses(dns.message.from_wire(body)) == [WARNING_IPV4]


@pytest.mark.parametrize(
    ("method", "path", "body", "kind", "status"),
    [
        ("GET", "/dns-query", None, "", 400),
        ("GET", "/dns-query?dns=%%%", None, "", 400),
        ("POST", "/dns-query", b"\x00" * 12, "text/plain", 415),
        ("POST", "/dns-query", b"\x00" * 70000, "application/dns-message", 413),
        ("PUT", "/dns-query", b"", "application/dns-message", 405),
        ("GET", "/other", None, "", 404),
    ],
)
def test_doh_refuses_what_is_not_a_dns_query(
    encrypted: Encrypted, method: str, path: str, body: bytes | None, kind: str, status: int
) -> None:
    headers = {"content-type": kind} if kind else {}
    got, _, _ = encrypted.http(method, path, body, headers)
    assert got == status
    assert encrypted.server.alive


def test_a_response_posted_is_a_bad_request(encrypted: Encrypted) -> None:
    response = dns.message.make_response(make(BLOCKED)).to_wire()
    status, _, _ = encrypted.http(
        "POST", "/dns-query", response, {"content-type": "application/dns-message"}
    )
    assert status == 400


# --- discovery (RFC 9462) ---------------------------------------------------------


def svcb(r: dns.message.Message) -> list[dns.rdata.Rdata]:
    return [rd for rrset in r.answer if rrset.rdtype == dns.rdatatype.SVCB for rd in rrset]


def test_ddr_names_the_encrypted_endpoints(
    encrypted: Encrypted, fake_upstream: FakeUpstream
) -> None:
    r = ask(v4(encrypted.server), "_dns.resolver.arpa", "SVCB")
    assert r.rcode() == dns.rcode.NOERROR
    records = sorted(svcb(r), key=lambda rd: rd.priority)
    assert len(records) == 2
    doh, dot = records
    text = doh.to_text()
    assert str(doh.target) == SERVER_NAME + "."  # the certificate's DNS name
    assert 'alpn="h2"' in text and f'port="{encrypted.doh[1]}"' in text
    assert 'dohpath="/dns-query{?dns}"' in text and 'ipv4hint="127.0.0.1"' in text
    assert (
        dot.to_text()
        == f'2 {SERVER_NAME}. alpn="dot" port="{encrypted.dot[1]}" ipv4hint="127.0.0.1"'
    )
    # The same over the encrypted transports; never forwarded.
    assert svcb(encrypted.ask_dot(make("_dns.resolver.arpa", "SVCB"))) == svcb(r)
    assert fake_upstream.count("_dns.resolver.arpa") == 0


@pytest.mark.parametrize(
    ("name", "rdtype"),
    [("_dns.resolver.arpa", "A"), ("resolver.arpa", "SVCB"), ("x._dns.resolver.arpa", "SVCB")],
)
def test_other_names_in_resolver_arpa_get_nodata(
    encrypted: Encrypted, fake_upstream: FakeUpstream, name: str, rdtype: str
) -> None:
    r = ask(v4(encrypted.server), name, rdtype)
    assert r.rcode() == dns.rcode.NOERROR and r.answer == []
    assert [rrset.rdtype for rrset in r.authority] == [dns.rdatatype.SOA]
    assert fake_upstream.count(name) == 0


def test_ddr_is_nodata_without_encrypted_listeners(standard: Sinkhole) -> None:
    r = ask(v4(standard), "_dns.resolver.arpa", "SVCB", edns=True)
    assert r.rcode() == dns.rcode.NOERROR and r.answer == []


# --- the ACL, limits, certificate renewal: servers of their own ----------------------


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return tmp_path / "tls"


def test_disallowed_client_is_refused(sinkhole_factory: SinkholeFactory, folder: Path) -> None:
    server = start_encrypted(sinkhole_factory, folder, POLICIES, allow_clients=["10.0.0.0/8"])
    for name in (BLOCKED, unique()):
        q = make(name)
        assert send(v4(server.server), q).rcode() == dns.rcode.REFUSED
        assert server.ask_dot(q).rcode() == dns.rcode.REFUSED
        for post, version in DOH_WAYS:
            assert server.ask_doh(q, post, version).rcode() == dns.rcode.REFUSED
    r = server.ask_dot(make("_dns.resolver.arpa", "SVCB"))
    assert r.rcode() == dns.rcode.REFUSED


def closed(tls: ssl.SSLSocket) -> bool:
    """Whether the server ended the connection (EOF, reset or TLS close)."""
    try:
        return tls.recv(1) == b""
    except (ConnectionError, ssl.SSLError):
        return True


def test_connection_cap_and_idle_timeout(sinkhole_factory: SinkholeFactory, folder: Path) -> None:
    server = start_encrypted(
        sinkhole_factory,
        folder,
        POLICIES,
        tcp_max_connections=1,
        tcp_idle_timeout=1.0,
        query_timeout=2.0,
    )
    # A DoH query that waits longer than the idle timeout still gets its answer.
    for version in (H1, H2):
        started = time.monotonic()
        r = server.ask_doh(make(unique("silent")), version=version, timeout=5.0)
        assert r.rcode() == dns.rcode.SERVFAIL and time.monotonic() - started > 1.5
    first = server.connect_dot()
    first.sendall(dns_frame(make(BLOCKED).to_wire()))
    assert addresses(dns.message.from_wire(recv_frame(first))) == [WARNING_IPV4]  # type: ignore[arg-type]
    with server.connect_dot() as second:  # the handshake completes, then the cap ends it
        second.settimeout(3.0)
        assert closed(second)
    # Idle for longer than tcp_idle_timeout: the server closes the first one.
    started = time.monotonic()
    first.settimeout(5.0)
    assert closed(first)
    assert time.monotonic() - started < 4.0
    first.close()
    # A place is free again.
    assert wait_until(lambda: _answers(server), 5.0)


def _answers(server: Encrypted) -> bool:
    try:
        return addresses(server.ask_dot(make(BLOCKED), timeout=1.0)) == [WARNING_IPV4]
    except (OSError, EOFError, dns.exception.DNSException):
        return False


def test_renewed_certificate_is_served_after_sighup(
    sinkhole_factory: SinkholeFactory, folder: Path
) -> None:
    server = start_encrypted(
        sinkhole_factory, folder, POLICIES, tls_extra={"name": "resolver.sinkhole.test"}
    )
    files = server.files
    old = pem_to_der(files.cert.read_bytes())
    assert server.served_certificate(server.dot, ["dot"]) == old
    assert server.served_certificate(server.doh, ["h2"]) == old
    before = server.connect_dot()  # opened under the old certificate, used after the reload

    ca, _ = make_tls_files(folder / "next")
    files.ca.write_bytes(files.ca.read_bytes() + (folder / "next" / "ca.pem").read_bytes())
    issue(ca, folder)  # over cert.pem and key.pem
    new = pem_to_der(files.cert.read_bytes())
    assert new != old
    mark = server.server.mark()
    server.server.send_signal(signal.SIGHUP)
    reloaded = server.server.wait_event("tls_reloaded", 10.0, mark)
    assert reloaded["names"] == [SERVER_NAME]
    assert server.served_certificate(server.dot, ["dot"]) == new
    assert server.served_certificate(server.doh, ["h2"]) == new
    assert server.served_certificate(server.doh, ["http/1.1"]) == new
    assert addresses(server.ask_dot(make(BLOCKED))) == [WARNING_IPV4]
    assert addresses(server.ask_doh(make(BLOCKED))) == [WARNING_IPV4]
    # The connection from before keeps working.
    before.sendall(dns_frame(make(BLOCKED).to_wire()))
    assert addresses(dns.message.from_wire(recv_frame(before))) == [WARNING_IPV4]  # type: ignore[arg-type]
    before.close()
    # tls.name is the DDR target whatever the certificate says.
    r = ask(v4(server.server), "_dns.resolver.arpa", "SVCB")
    assert {str(rd.target) for rd in svcb(r)} == {"resolver.sinkhole.test."}

    # A renewal that does not load keeps the certificate in use.
    files.cert.write_text("not a certificate\n")
    mark = server.server.mark()
    server.server.send_signal(signal.SIGHUP)
    failed = server.server.wait_event("tls_reload_failed", 10.0, mark)
    assert failed["kept"] == "previous certificate"
    assert server.served_certificate(server.dot, ["dot"]) == new
    assert addresses(server.ask_doh(make(BLOCKED), post=False)) == [WARNING_IPV4]


def test_a_missing_certificate_stops_the_start(fake_upstream: FakeUpstream, tmp_path: Path) -> None:
    settings = standard_settings([fake_upstream.endpoint])
    settings.update(
        listen=[f"127.0.0.1:{free_port()}"],
        listen_tls=[f"127.0.0.1:{free_port()}"],
        tls={"cert": str(tmp_path / "absent.pem"), "key": str(tmp_path / "absent.key")},
    )
    (tmp_path / "policies").mkdir()
    config = write_config(tmp_path, settings)
    result = subprocess.run(
        [sys.executable, "-m", "resolver", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    failed = [json.loads(line) for line in result.stdout.splitlines() if "tls_failed" in line]
    assert failed and "absent.pem" in failed[0]["error"]


@pytest.fixture
def dot_only(sinkhole_factory: SinkholeFactory, folder: Path) -> Iterator[Encrypted]:
    _, files = make_tls_files(folder)
    port = free_port()
    server = sinkhole_factory(
        POLICIES,
        listen_tls=[f"127.0.0.1:{port}"],
        tls={"cert": str(files.cert), "key": str(files.key)},
    )
    yield Encrypted(server, files, ("127.0.0.1", port), ("127.0.0.1", 0))


def test_dot_alone_is_designated_alone(dot_only: Encrypted) -> None:
    r = ask(v4(dot_only.server), "_dns.resolver.arpa", "SVCB")
    [record] = svcb(r)
    assert (
        record.to_text()
        == f'1 {SERVER_NAME}. alpn="dot" port="{dot_only.dot[1]}" ipv4hint="127.0.0.1"'
    )
    assert addresses(dot_only.ask_dot(make(BLOCKED))) == [WARNING_IPV4]


def test_one_http2_connection_carries_thousands_of_queries(encrypted: Encrypted) -> None:
    """A DoH client keeps one connection for all its queries (browsers, dnsperf): it is
    not closed after a number of requests, and nothing in flight is lost."""
    import h2.config
    import h2.connection
    import h2.events

    total, window = 1500, 50
    param = base64.urlsafe_b64encode(make(BLOCKED, qid=0).to_wire()).rstrip(b"=").decode()
    headers = [
        (":method", "GET"),
        (":scheme", "https"),
        (":authority", SERVER_NAME),
        (":path", f"/dns-query?dns={param}"),
        ("accept", "application/dns-message"),
    ]
    answered: list[bytes] = []
    statuses: list[bytes] = []
    bodies: dict[int, bytes] = {}
    closed: list[h2.events.ConnectionTerminated] = []
    with socket.create_connection(encrypted.doh, timeout=5.0) as raw:
        context = encrypted.files.client_context(["h2"])
        with context.wrap_socket(raw, server_hostname=SERVER_NAME) as tls:
            conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
            conn.initiate_connection()
            sent = 0
            while len(answered) < total and not closed:
                while sent < total and sent - len(answered) < window:
                    conn.send_headers(conn.get_next_available_stream_id(), headers, end_stream=True)
                    sent += 1
                tls.sendall(conn.data_to_send())
                data = tls.recv(65536)
                assert data, "the server closed the connection"
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.ResponseReceived):
                        statuses.append(dict(event.headers)[b":status"])
                    elif isinstance(event, h2.events.DataReceived):
                        sid = event.stream_id
                        bodies[sid] = bodies.get(sid, b"") + event.data
                        conn.acknowledge_received_data(event.flow_controlled_length, sid)
                    elif isinstance(event, h2.events.StreamEnded):
                        answered.append(bodies.pop(event.stream_id, b""))
                    elif isinstance(event, h2.events.ConnectionTerminated):
                        closed.append(event)
    assert not closed, f"the server ended the connection after {len(answered)} answers"
    assert len(answered) == total and set(statuses) == {b"200"}
    assert {tuple(addresses(dns.message.from_wire(b))) for b in answered} == {(WARNING_IPV4,)}
