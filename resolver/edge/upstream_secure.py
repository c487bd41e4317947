"""What the encrypted upstream transports share (upstream_stream.py, with upstream_tls.py
for DoT and upstream_https.py for DoH).

A transport carries queries to one upstream and hands back what comes of them: each
reply through ``received(bytes)``, each query it cannot carry through ``failed(ID,
reason)``. Those calls come from the event loop, never from inside ``send``, so the
forwarder's bookkeeping of a try is done before its failure arrives.

Certificates are checked against the system trust store (OpenSSL's default places,
which honour SSL_CERT_FILE and SSL_CERT_DIR) or against the upstream's CA file alone,
host names too: verification is never turned off. A connection that cannot be made
(refused, TLS handshake failed, certificate not accepted, timed out) is logged as
``upstream_connect_failed``, and for a while after it (half a second, doubling up to
BACKOFF_MAX) the transport fails queries at once instead of trying again: a dead
upstream costs its questions nothing but the move to the next one.

Queries are padded to a multiple of 128 octets (RFC 8467 section 4.1), so their length
tells an observer little about the name.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable
from typing import Any

from resolver.core.padding import pad
from resolver.core.upstream_spec import SecureUpstream
from resolver.edge.faults import causes

QUERY_BLOCK = 128
BACKOFF_FIRST = 0.5  # seconds without a new connection after the first failed one
BACKOFF_MAX = 10.0
IDLE_TIMEOUT = 20.0  # seconds a connection with nothing in flight stays open

Received = Callable[[bytes], None]
Failed = Callable[[int, str], None]
Wanted = Callable[[int], bool]


def client_context(spec: SecureUpstream, alpn: list[str] | None = None) -> ssl.SSLContext:
    """A client context that checks the certificate and the name: against the upstream's
    CA file when it has one, else the system trust store. Reads files."""
    context = ssl.create_default_context(cafile=spec.ca_file or None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if alpn:
        context.set_alpn_protocols(alpn)
    return context


def describe(exc: BaseException) -> str:
    """Why a connection or an exchange failed, in words, from the deepest cause that says
    more (a certificate not accepted, a TLS alert, an errno)."""
    for cause in causes(exc):
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"certificate not accepted: {cause.verify_message}"
        if isinstance(cause, ssl.SSLError):
            return f"TLS failed: {cause.reason or cause}"
        if isinstance(cause, TimeoutError):
            return "timed out"
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror
    return str(exc).strip() or type(exc).__name__


class Channel:
    """The part of a transport that is the same for DoT and DoH: callbacks, counters,
    back-off after a failed connection."""

    def __init__(
        self,
        spec: SecureUpstream,
        received: Received,
        failed: Failed,
        wanted: Wanted,
        timeout: float,
        log: Any = None,
    ) -> None:
        self.spec = spec
        self.label = str(spec)
        self.received = received
        self.failed = failed
        self.wanted = wanted  # whether a query not yet sent is still waited for
        self.timeout = timeout  # seconds to connect, and to wait for a reply at most
        self.log = log
        self.connections = 0  # connections opened: TLS handshakes completed
        self.connect_failures = 0
        self.retry_at = 0.0  # no new connection before (monotonic seconds)
        self.backoff = 0.0
        self.last_error = ""

    def held_off(self) -> bool:
        return time.monotonic() < self.retry_at

    def refuse(self, qid: int, reason: str) -> None:
        """Fail query ``qid`` on the next turn of the loop (never inside ``send``)."""
        asyncio.get_running_loop().call_soon(self.failed, qid, reason)

    def connect_failed(self, exc: BaseException) -> str:
        """Count and log a connection that could not be made; hold off new ones."""
        reason = describe(exc)
        self.connect_failures += 1
        if self.held_off():
            return reason  # one more query that was waiting for the same connection
        self.last_error = reason
        self.backoff = min(BACKOFF_MAX, self.backoff * 2 or BACKOFF_FIRST)
        self.retry_at = time.monotonic() + self.backoff
        if self.log is not None:
            self.log.warning(
                "upstream_connect_failed",
                upstream=self.label,
                error=reason,
                retry_after=self.backoff,
            )
        return reason

    def connected(self) -> None:
        self.backoff = 0.0
        self.retry_at = 0.0

    @staticmethod
    def padded(message: bytes) -> bytes:
        return pad(message, QUERY_BLOCK)
