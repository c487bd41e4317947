"""The operator's certificate for the encrypted listeners, replaced without a restart.

Each listener is given one SSL context (per ALPN list) when it starts, and asyncio and
hypercorn keep using that object. It stays the front: its SNI callback, run in every
handshake (with or without a server name), moves the new connection onto the context
built from the latest certificate. A reload builds fresh contexts first and swaps them
in only when the certificate and key load, so a bad renewal keeps the old certificate
serving; connections already open keep the one they started with.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# TLS 1.2 suites with forward secrecy and AEAD only (HTTP/2 forbids the rest: RFC 9113
# section 9.2.2); TLS 1.3 suites are not affected by this list.
CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"

Alpn = tuple[str, ...]


class TlsError(Exception):
    """A certificate or key that cannot be used, with the file and the reason."""


def server_context(cert: Path, key: Path, alpn: Sequence[str]) -> ssl.SSLContext:
    """A server context for ``cert`` (the chain, leaf first) and ``key``; TLS 1.2 at least."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_COMPRESSION
    context.set_ciphers(CIPHERS)
    context.set_alpn_protocols(list(alpn))
    for path in (cert, key):
        if not path.is_file():
            raise TlsError(f"{path}: no such file")
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        raise TlsError(f"{cert}, {key}: {exc.reason or exc}") from None
    except OSError as exc:
        raise TlsError(f"{exc.filename or cert}: {exc.strerror or exc}") from None
    return context


def certificate_facts(cert: Path) -> dict[str, Any]:
    """What the log says of a certificate: its DNS names, addresses and expiry (the
    first certificate of the file, the leaf). Empty when the file cannot be decoded."""
    import _ssl

    decode = getattr(_ssl, "_test_decode_cert", None)  # the standard library's decoder
    if decode is None:  # pragma: no cover - present in every CPython since 3.2
        return {}
    try:
        info = decode(str(cert))
    except (OSError, ssl.SSLError, ValueError):
        return {}
    alt = info.get("subjectAltName", ())
    return {
        "names": [value for kind, value in alt if kind == "DNS"],
        "addresses": [value for kind, value in alt if kind == "IP Address"],
        "not_after": info.get("notAfter", ""),
    }


class Certificates:
    """The live SSL contexts of the encrypted listeners, one per ALPN list."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.cert = cert
        self.key = key
        self._fronts: dict[Alpn, ssl.SSLContext] = {}
        self._current: dict[Alpn, ssl.SSLContext] = {}
        server_context(cert, key, ())  # fails now, not at the first listener

    def context(self, alpn: Sequence[str]) -> ssl.SSLContext:
        """The context to give a listener offering ``alpn``: it serves the latest
        certificate to every new connection."""
        protocols = tuple(alpn)
        front = self._fronts.get(protocols)
        if front is None:
            front = server_context(self.cert, self.key, protocols)
            front.sni_callback = self._switch(protocols, front)
            self._fronts[protocols] = self._current[protocols] = front
        return front

    def _switch(self, protocols: Alpn, front: ssl.SSLContext) -> Any:
        def on_hello(
            conn: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, context: ssl.SSLContext
        ) -> None:
            current = self._current[protocols]
            if current is not front:
                conn.context = current

        return on_hello

    def prepare(self, cert: Path, key: Path) -> dict[Alpn, ssl.SSLContext]:
        """Fresh contexts for every listener from ``cert`` and ``key`` (TlsError when they
        do not load). Touches nothing live: may run in a thread."""
        return {protocols: server_context(cert, key, protocols) for protocols in self._fronts}

    def install(self, cert: Path, key: Path, contexts: dict[Alpn, ssl.SSLContext]) -> None:
        """New connections from now on get ``contexts`` (from ``prepare``)."""
        self.cert, self.key = cert, key
        self._current.update(contexts)
