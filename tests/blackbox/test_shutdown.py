"""Shutdown: SIGTERM and SIGINT stop the server cleanly with exit status 0."""

from __future__ import annotations

import signal
import socket

import pytest
from support.procs import WARNING_IPV4, SinkholeFactory

from blackbox.dnsclient import addresses, ask, make, unique, v4
from blackbox.standard import BLOCKED, POLICIES

pytestmark = pytest.mark.blackbox


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_stops_cleanly(sinkhole_factory: SinkholeFactory, sig: signal.Signals) -> None:
    server = sinkhole_factory(POLICIES, ipv6=True)
    assert addresses(ask(v4(server), BLOCKED)) == [WARNING_IPV4]
    code = server.stop(sig)
    assert code == 0, server.diagnostics()
    events = [e["event"] for e in server.events()]
    assert "stopping" in events
    assert events[-1] == "stopped", events
    assert "Traceback" not in server.stderr_path.read_text()


def test_signal_stops_with_queries_in_flight(sinkhole_factory: SinkholeFactory) -> None:
    server = sinkhole_factory(POLICIES, query_timeout=1.0)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _ in range(20):
            sock.sendto(make(unique("silent")).to_wire(), v4(server))
        assert server.stop(signal.SIGTERM) == 0, server.diagnostics()
    assert server.events()[-1]["event"] == "stopped"
