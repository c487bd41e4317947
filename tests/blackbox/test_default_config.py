"""With no --config the server serves the bundled policies on loopback port 5353, IPv4 and IPv6.

The built-in configuration forwards to the system resolver, so only blocked names are asked.
"""

from __future__ import annotations

import signal
from pathlib import Path

import dns.rcode
import pytest
from support.procs import Sinkhole, port_in_use

from blackbox.dnsclient import addresses, ask

pytestmark = pytest.mark.blackbox

BUNDLED_BLOCKED = "uriminzokkiri.com"
BUILTIN_WARNING_IPV4 = "192.0.2.80"
BUILTIN_WARNING_IPV6 = "2001:db8::80"


def test_default_config_serves_the_bundled_policies_on_port_5353(tmp_path: Path) -> None:
    for host in ("127.0.0.1", "::1"):
        busy = port_in_use(host, 5353)
        if busy:
            pytest.fail(
                f"cannot test the built-in configuration: {busy}; another program "
                "holds the default port 5353 on this machine. Stop it and run again.",
                pytrace=False,
            )
    server = Sinkhole(tmp_path, None, 5353, 5353, name="sinkhole-default")
    try:
        assert server.started["config"] == "<built-in default>"
        assert sorted(server.started["listen"]) == ["127.0.0.1:5353", "[::1]:5353"]
        for where in (("127.0.0.1", 5353), ("::1", 5353)):
            for tcp in (False, True):
                r = ask(where, BUNDLED_BLOCKED, "A", tcp=tcp, edns=True)
                assert r.rcode() == dns.rcode.NOERROR
                assert addresses(r) == [BUILTIN_WARNING_IPV4]
                assert r.answer[0].ttl == 60
            r = ask(where, "www." + BUNDLED_BLOCKED, "AAAA")
            assert addresses(r) == [BUILTIN_WARNING_IPV6]
    finally:
        code = server.stop(signal.SIGTERM)
    assert code == 0, server.diagnostics()
