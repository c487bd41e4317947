"""The warning server: the real server's page for a blocked Host (451 with the policy's
record, RFC 7725's Link), 404 otherwise, within limits, and HTTPS only for its own name."""

from __future__ import annotations

import signal
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from support.procs import WARNING_IPV4, SinkholeFactory, free_port, wait_until

from blackbox.dnsclient import addresses, ask, v4
from blackbox.warningsite import PLAIN, WarningSite, get, raw, start

pytestmark = pytest.mark.blackbox

KR = "uriminzokkiri.com"
OWN_NAME = "warning.test"  # the warning host's own name, on its certificate


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def site(
    session_sinkhole_factory: SinkholeFactory,
    ca: trustme.CA,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[WarningSite]:
    folder = tmp_path_factory.mktemp("tls")
    cert = ca.issue_cert(OWN_NAME)
    cert.cert_chain_pems[0].write_to_path(folder / "warning.pem")
    for blob in cert.cert_chain_pems[1:]:
        blob.write_to_path(folder / "warning.pem", append=True)
    cert.private_key_pem.write_to_path(folder / "warning.key")
    site = start(session_sinkhole_factory, tls=(folder / "warning.pem", folder / "warning.key"))
    yield site
    # Whatever the tests sent (hostile, slow, refused handshakes), nothing went wrong inside.
    assert [e for e in site.server.events() if e.get("level") in ("error", "critical")] == []


def test_a_blocked_host_gets_451_with_the_policy_record(site: WarningSite) -> None:
    status, headers, body = get(site.http_port, KR)
    text = body.decode()
    assert status == 451
    assert headers["link"] == '<https://www.kcsc.or.kr/>; rel="blocked-by"'
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert headers["cache-control"] == "no-store"
    assert headers["content-language"] == "en"
    assert "default-src 'none'" in headers["content-security-policy"]
    for shown in (
        "Korea Communications Standards Commission",
        "National Security Act, Article 7",
        "KCSC decision 2010-08",
        "2010-08-01",
        "Blocking of pro-North-Korean propaganda sites",
        "Access to this site has been blocked by order",
        "https://www.kcsc.or.kr/",
        KR,
    ):
        assert shown in text, shown
    # Nothing from elsewhere: no script, no stylesheet or image from another origin.
    assert "<script" not in text and "src=" not in text and "<link" not in text


def test_korean_for_a_browser_that_prefers_it(site: WarningSite) -> None:
    status, headers, body = get(
        site.http_port, "www.uriminzokkiri.com:80", Accept_Language="ko-KR,ko;q=0.9,en;q=0.8"
    )
    text = body.decode()
    assert status == 451 and headers["content-language"] == "ko"
    assert "방송통신심의위원회" in text and "국가보안법 제7조" in text
    assert "접속이 차단된 사이트입니다" in text
    assert "www.uriminzokkiri.com" in text
    # A language without a page: English.
    status, headers, _ = get(site.http_port, KR, Accept_Language="fr-FR,fr;q=0.9")
    assert status == 451 and headers["content-language"] == "en"


def test_any_path_and_head(site: WarningSite) -> None:
    status, headers, body = get(site.http_port, KR, path="/some/page.php?id=<x>")
    assert status == 451 and b"Korea Communications" in body
    status, head_headers, head_body = get(site.http_port, KR, "HEAD", "/any")
    assert status == 451 and head_body == b""
    assert head_headers["content-length"] == headers["content-length"]
    assert head_headers["link"] == headers["link"]


def test_the_entry_reference_and_no_link_without_authority_url(site: WarningSite) -> None:
    status, headers, body = get(site.http_port, "plain-block.example")
    assert status == 451 and "link" not in headers
    assert b"Test Operator" in body and b"Ticket 7" in body
    status, _, body = get(site.http_port, "dprk-propaganda.example")
    assert status == 451 and b"KCSC decision 2016-12" in body


@pytest.mark.parametrize(
    "host",
    [
        "not-blocked.example",
        "open.plain-block.example",  # an exemption
        "lab-only.example",  # blocked for 10.99.0.0/16, not for this client
        "127.0.0.1",
        "",
    ],
)
def test_a_host_no_policy_blocks_gets_404(site: WarningSite, host: str) -> None:
    status, headers, body = get(site.http_port, host)
    assert status == 404 and "link" not in headers
    assert headers["cache-control"] == "no-store"
    assert b"<html" in body


def test_a_nxdomain_entry_still_shows_its_policy(site: WarningSite) -> None:
    """A name blocked with another action (reached by a cached answer or a hosts file)."""
    assert get(site.http_port, "nxd-block.example")[0] == 451


def test_a_hostile_host_is_escaped(site: WarningSite) -> None:
    hostile = b'"><script>alert(1)</script><img src=x onerror=alert(2)>'
    reply = raw(
        site.http_port,
        b"GET / HTTP/1.1\r\nHost: " + hostile + b"\r\nConnection: close\r\n\r\n",
    )
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 404")
    assert b"<script" not in body and b"<img" not in body
    assert b"&lt;script&gt;alert(1)&lt;/script&gt;" in body
    # and through the path and Accept-Language, which are never shown
    status, _, body = get(site.http_port, KR, path="/<script>x</script>", Accept_Language="<b>")
    assert status == 451 and b"<script" not in body and b"<b>" not in body


def test_only_get_and_head_and_a_bounded_head(site: WarningSite) -> None:
    status, headers, _ = get(site.http_port, KR, "POST")
    assert status == 405 and headers["allow"] == "GET, HEAD"
    status, _, _ = get(site.http_port, KR, X_Filler="a" * 6000)
    assert status == 431


def test_a_slow_client_is_dropped(site: WarningSite) -> None:
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", site.http_port), timeout=15.0) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: uriminzokkiri.com\r\nX-Slow: ")
        while sock.recv(4096):  # nothing, or a 408, then the server closes
            pass
    assert 3.0 < time.monotonic() - started < 12.0


def test_dns_sends_the_name_here_and_a_reload_changes_the_page(site: WarningSite) -> None:
    server = site.server
    assert addresses(ask(v4(server), KR)) == [WARNING_IPV4]
    assert get(site.http_port, "new-order.example")[0] == 404
    mark = server.mark()
    server.write_policy(
        "40-new.yaml", "id: new-order\nauthority: New Court\nblock: [new-order.example]\n"
    )
    try:
        server.send_signal(signal.SIGHUP)
        server.wait_event("policy_reloaded", 10.0, start=mark)
        status, _, body = get(site.http_port, "new-order.example")
        assert status == 451 and b"New Court" in body
    finally:
        (server.policies_dir / "40-new.yaml").unlink()
        mark = server.mark()
        server.send_signal(signal.SIGHUP)
        server.wait_event("policy_reloaded", 10.0, start=mark)
    assert get(site.http_port, "new-order.example")[0] == 404


# --- HTTPS --------------------------------------------------------------------------


def tls_client(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


def https_get(port: int, server_name: str, host: str, ca: trustme.CA) -> tuple[str, bytes]:
    context = tls_client(ca)
    request = f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5.0) as plain,
        context.wrap_socket(plain, server_hostname=server_name) as sock,
    ):
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return sock.version() or "", b"".join(chunks)


def test_https_for_the_warning_host_own_name(site: WarningSite, ca: trustme.CA) -> None:
    assert site.https_port is not None
    version, reply = https_get(site.https_port, OWN_NAME, OWN_NAME, ca)
    assert version in ("TLSv1.2", "TLSv1.3")
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 404") and b"<html" in body  # its own name is not blocked
    _, reply = https_get(site.https_port, OWN_NAME, KR, ca)
    assert reply.startswith(b"HTTP/1.1 451")


def test_https_for_a_blocked_site_is_closed_at_once(site: WarningSite, ca: trustme.CA) -> None:
    assert site.https_port is not None
    started = time.monotonic()
    # The handshake fails on the server's side (an unrecognized_name alert, which the event
    # loop's TLS layer may not flush before it closes): the client sees it end at once.
    with pytest.raises(ssl.SSLError):
        https_get(site.https_port, KR, KR, ca)
    assert time.monotonic() - started < 1.0
    # and the server is none the worse for it
    assert https_get(site.https_port, OWN_NAME, KR, ca)[1].startswith(b"HTTP/1.1 451")


# --- configuration and processes ------------------------------------------------------


def test_the_first_worker_serves_it(sinkhole_factory: SinkholeFactory) -> None:
    site = start(sinkhole_factory, {"10-plain.yaml": PLAIN}, workers=2)
    [started] = site.server.events("warning_server_started")
    assert started["worker"] == 0
    assert get(site.http_port, "plain-block.example")[0] == 451
    assert get(site.http_port, "elsewhere.example")[0] == 404


def test_a_port_in_use_fails_the_start(sinkhole_factory: SinkholeFactory) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(AssertionError):
            sinkhole_factory(
                {"10-plain.yaml": PLAIN}, warning_server={"listen": [f"127.0.0.1:{port}"]}
            )


def test_a_broken_template_fails_the_start(
    sinkhole_factory: SinkholeFactory, tmp_path: Path
) -> None:
    (tmp_path / "blocked.en.html").write_text("{% if %}\n")
    settings = {"listen": [f"127.0.0.1:{free_port()}"], "templates": str(tmp_path)}
    with pytest.raises(AssertionError) as info:
        sinkhole_factory({"10-plain.yaml": PLAIN}, warning_server=settings)
    assert "blocked.en.html:1" in str(info.value)


def test_the_operator_templates_and_static_files(
    sinkhole_factory: SinkholeFactory, tmp_path: Path
) -> None:
    (tmp_path / "static").mkdir()
    (tmp_path / "static" / "logo.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
    (tmp_path / "blocked.en.html").write_text(
        "<img src='{{ static }}/logo.svg'>Ours: {{ name }} by {{ policy.authority }}\n"
    )
    port = free_port()
    settings = {"listen": [f"127.0.0.1:{port}"], "templates": str(tmp_path)}
    server = sinkhole_factory({"10-plain.yaml": PLAIN}, warning_server=settings)
    status, _, body = get(port, "plain-block.example")
    assert (
        status == 451
        and body
        == b"<img src='/.sinkhole/static/logo.svg'>Ours: plain-block.example by Test Operator\n"
    )
    assert get(port, "x.example")[0] == 404  # the shipped 404 page still
    status, headers, body = get(port, "plain-block.example", path="/.sinkhole/static/logo.svg")
    assert status == 200 and headers["content-type"].startswith("image/svg+xml")
    # A template changed on disk applies at the next reload.
    (tmp_path / "blocked.en.html").write_text("Changed {{ name }}\n")
    mark = server.mark()
    server.send_signal(signal.SIGHUP)
    server.wait_event("policy_reloaded", 10.0, start=mark)
    assert get(port, "plain-block.example")[2] == b"Changed plain-block.example\n"


@pytest.fixture
def busy_http(site: WarningSite) -> Iterator[list[int]]:
    """Requests to the warning page, as fast as one client sends them, in a thread."""
    import threading

    done: list[int] = []
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            done.append(get(site.http_port, KR)[0])

    thread = threading.Thread(target=hammer, daemon=True)
    thread.start()
    yield done
    stop.set()
    thread.join(10.0)


def test_dns_is_answered_while_the_page_is_busy(site: WarningSite, busy_http: list[int]) -> None:
    wait_until(lambda: len(busy_http) > 20, 10.0)
    worst = 0.0
    for _ in range(100):
        started = time.monotonic()
        assert addresses(ask(v4(site.server), KR)) == [WARNING_IPV4]
        worst = max(worst, time.monotonic() - started)
    assert worst < 0.5
    assert set(busy_http) == {451}
