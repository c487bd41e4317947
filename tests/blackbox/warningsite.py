"""A server with its warning page on loopback ports, and plain HTTP requests to it."""

from __future__ import annotations

import http.client
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from support.procs import REPO, Sinkhole, SinkholeFactory, free_port

KR_POLICY = (REPO / "policies" / "kr-national-security.yaml").read_text(encoding="utf-8")

SCOPED = """\
id: lab-only
title: Blocked in the lab network only
clients: [10.99.0.0/16]
block:
  - lab-only.example
"""

PLAIN = """\
id: plain-block
title: Operator block
authority: Test Operator
reference: Ticket 7
block:
  - plain-block.example
  - name: nxd-block.example
    action: nxdomain
allow:
  - open.plain-block.example
"""

POLICIES = {"10-kr.yaml": KR_POLICY, "20-scoped.yaml": SCOPED, "30-plain.yaml": PLAIN}


@dataclass
class WarningSite:
    server: Sinkhole
    http_port: int
    https_port: int | None = None


def start(
    factory: SinkholeFactory,
    policies: dict[str, str] | None = None,
    tls: tuple[Path, Path] | None = None,
    **overrides: Any,
) -> WarningSite:
    """A server whose warning page listens on a free loopback port (and HTTPS with ``tls``,
    a (certificate, key) pair)."""
    http_port = free_port()
    settings: dict[str, Any] = {"listen": [f"127.0.0.1:{http_port}"]}
    https_port = None
    if tls is not None:
        https_port = free_port()
        settings["tls"] = {
            "listen": [f"127.0.0.1:{https_port}"],
            "cert": str(tls[0]),
            "key": str(tls[1]),
        }
    server = factory(
        POLICIES if policies is None else policies, warning_server=settings, **overrides
    )
    server.wait_event("warning_server_started", 10.0)  # with workers, after "started"
    return WarningSite(server, http_port, https_port)


def get(
    port: int, host: str, method: str = "GET", path: str = "/", **headers: str
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 request with this Host; status, headers (lower-case names), body."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5.0)
    try:
        sent = {"Host": host, **{k.replace("_", "-"): v for k, v in headers.items()}}
        conn.request(method, path, headers=sent)
        response = conn.getresponse()
        return (
            response.status,
            {k.lower(): v for k, v in response.getheaders()},
            response.read(),
        )
    finally:
        conn.close()


def raw(port: int, request: bytes) -> bytes:
    """Bytes sent as they are; everything the server answers until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=5.0) as sock:
        sock.sendall(request)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
