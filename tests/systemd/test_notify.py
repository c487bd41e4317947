"""sd_notify as systemd sees it: READY=1 when serving, RELOADING=1/READY=1 on SIGHUP, STOPPING=1.

Every test runs twice: NOTIFY_SOCKET as a file system path and as "@name" (abstract namespace).
"""

from __future__ import annotations

import signal
import time

import dns.message
import dns.query
import dns.rcode
import pytest
from support.procs import WARNING_IPV4, WARNING_IPV6

from .conftest import READY_TIMEOUT, STOP_TIMEOUT, NotifySocket, Server, StartServer, policy_text

pytestmark = pytest.mark.blackbox


def ask(port: int, name: str, qtype: str, tcp: bool = False) -> dns.message.Message:
    """One query, no retry."""
    query = dns.message.make_query(name, qtype)
    if tcp:
        return dns.query.tcp(query, "127.0.0.1", port=port, timeout=2.0)
    return dns.query.udp(query, "127.0.0.1", port=port, timeout=2.0)


def answers(reply: dns.message.Message) -> set[str]:
    return {rr.to_text() for rrset in reply.answer for rr in rrset}


def assert_blocked(port: int, name: str) -> None:
    udp = ask(port, name, "A")
    assert udp.rcode() == dns.rcode.NOERROR
    assert answers(udp) == {WARNING_IPV4}
    tcp = ask(port, name, "AAAA", tcp=True)
    assert tcp.rcode() == dns.rcode.NOERROR
    assert answers(tcp) == {WARNING_IPV6}


def monotonic_usec() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def stop(server: Server, notify: NotifySocket) -> None:
    """SIGTERM: STOPPING=1 from the main process, then exit code 0."""
    server.signal(signal.SIGTERM)
    stopping = notify.wait_for("STOPPING", "1", STOP_TIMEOUT, server.proc)
    assert stopping.pid == server.proc.pid
    assert server.proc.wait(timeout=STOP_TIMEOUT) == 0, server.log()


def test_ready_then_serving(notify_socket: NotifySocket, start_server: StartServer) -> None:
    server = start_server(notify_socket, policy_text(["blocked.example"]))
    ready = notify_socket.wait_for("READY", "1", READY_TIMEOUT, server.proc)
    # Right after READY=1, without retrying: the listeners are bound and the policy is loaded.
    assert_blocked(server.port, "blocked.example")
    assert notify_socket.received == [ready], "READY=1 must be the first message"
    assert ready.pid == server.proc.pid, "NotifyAccess=main only accepts the main process"
    assert "blocked names" in ready.fields.get("STATUS", "")
    stop(server, notify_socket)


def test_reload_reports_reloading_then_ready(
    notify_socket: NotifySocket, start_server: StartServer
) -> None:
    server = start_server(notify_socket, policy_text(["blocked.example"]))
    notify_socket.wait_for("READY", "1", READY_TIMEOUT, server.proc)
    assert ask(server.port, "added.example", "A").rcode() == dns.rcode.SERVFAIL  # nothing upstream

    server.policy.write_text(policy_text(["blocked.example", "added.example"]))
    before = monotonic_usec()
    server.signal(signal.SIGHUP)
    reloading = notify_socket.wait_for("RELOADING", "1", READY_TIMEOUT, server.proc)
    after = monotonic_usec()
    ready = notify_socket.wait_for("READY", "1", READY_TIMEOUT, server.proc)

    assert notify_socket.received[-2:] == [reloading, ready]
    assert len(notify_socket.received) == 3, notify_socket.received
    assert reloading.pid == ready.pid == server.proc.pid
    # systemd compares MONOTONIC_USEC with its own clock to tie RELOADING=1 to the request.
    assert before <= int(reloading.fields["MONOTONIC_USEC"]) <= after
    # READY=1 after a reload means the new policy is in force.
    assert_blocked(server.port, "added.example")
    assert_blocked(server.port, "blocked.example")
    server.wait_log("policy_reloaded")
    stop(server, notify_socket)


def test_failed_reload_still_ends_with_ready(
    notify_socket: NotifySocket, start_server: StartServer
) -> None:
    server = start_server(notify_socket, policy_text(["blocked.example"]))
    notify_socket.wait_for("READY", "1", READY_TIMEOUT, server.proc)

    server.policy.write_text(policy_text(["blocked.example"]) + "no_such_key: 1\n")
    server.signal(signal.SIGHUP)
    notify_socket.wait_for("RELOADING", "1", READY_TIMEOUT, server.proc)
    notify_socket.wait_for("READY", "1", READY_TIMEOUT, server.proc)

    assert server.proc.poll() is None
    assert_blocked(server.port, "blocked.example")  # the previous policy is kept
    server.wait_log("policy_reload_failed")
    stop(server, notify_socket)


def test_broken_policy_never_reports_ready(
    notify_socket: NotifySocket, start_server: StartServer
) -> None:
    server = start_server(notify_socket, "id: broken\naction: warning-page\nblock: [a..b]\n")
    assert server.proc.wait(timeout=READY_TIMEOUT) == 1, server.log()
    while notify_socket.receive(0.05) is not None:
        pass
    assert not [m for m in notify_socket.received if "READY" in m], notify_socket.received
    assert "policy_load_failed" in server.log()
