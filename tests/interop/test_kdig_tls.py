"""Knot's kdig (Debian knot-dnsutils) as the client of the encrypted listeners: DNS over
TLS and DNS over HTTPS (HTTP/2, POST and GET), the certificate checked against the
test's CA, the answers padded to 468 octets as kdig asks."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from support.certs import SERVER_NAME
from support.encrypted import Encrypted, start_encrypted
from support.procs import WARNING_IPV4, SinkholeFactory
from support.system import program

pytestmark = [pytest.mark.blackbox, pytest.mark.system("kdig")]

BLOCKED = "blocked.example"
NXDOMAIN_ACTION = "nxd.example"
POLICIES = {
    "p.yaml": """\
id: court
authority: Test Court
block:
  - blocked.example
  - name: nxd.example
    action: nxdomain
"""
}
UPSTREAM_IPV4 = "198.51.100.7"  # what the fake upstream answers

WAYS = {
    "tls": ["+tls"],
    "https-post": ["+https"],
    "https-get": ["+https", "+https-get"],
}


@pytest.fixture
def server(sinkhole_factory: SinkholeFactory, tmp_path: Path) -> Encrypted:
    return start_encrypted(sinkhole_factory, tmp_path / "tls", POLICIES)


def kdig(server: Encrypted, way: str, name: str, rdtype: str = "A") -> str:
    host, port = server.dot if way == "tls" else server.doh
    argv = [program("kdig"), f"@{host}", "-p", str(port), *WAYS[way]]
    argv += [f"+tls-ca={server.files.ca}", f"+tls-hostname={SERVER_NAME}", name, rdtype]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.mark.parametrize("way", list(WAYS))
def test_kdig_gets_the_same_answers(server: Encrypted, way: str) -> None:
    out = kdig(server, way, BLOCKED)
    assert re.search(rf"^{re.escape(BLOCKED)}\.\s+\d+\s+IN\s+A\s+{WARNING_IPV4}$", out, re.M), out
    assert "status: NOERROR" in out
    assert ";; Received 468 B" in out  # padded (kdig sends the padding option over TLS)
    if way != "tls":
        assert "HTTP/2" in out, out
    assert "status: NXDOMAIN" in kdig(server, way, NXDOMAIN_ACTION)
    assert re.search(rf"\sA\s+{UPSTREAM_IPV4}$", kdig(server, way, "kdig.example"), re.M)
