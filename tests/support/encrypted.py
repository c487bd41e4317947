"""A server with DNS over TLS and DNS over HTTPS on loopback, and clients for them."""

from __future__ import annotations

import http.client
import socket
import ssl
from dataclasses import dataclass
from typing import Any

import dns.message
import dns.query
from support.certs import SERVER_NAME, TlsFiles, make_tls_files
from support.procs import Sinkhole, SinkholeFactory, free_port
from support.procs import wait_until as wait_until

Where = tuple[str, int]
H1, H2 = dns.query.HTTPVersion.H1, dns.query.HTTPVersion.H2


@dataclass
class Encrypted:
    """A running server with its DoT and DoH addresses and its certificate files."""

    server: Sinkhole
    files: TlsFiles
    dot: Where
    doh: Where

    def ask_dot(self, q: dns.message.Message, timeout: float = 3.0) -> dns.message.Message:
        host, port = self.dot
        context = self.files.client_context(["dot"])
        return dns.query.tls(
            q, host, timeout=timeout, port=port, ssl_context=context, server_hostname=SERVER_NAME
        )

    def ask_doh(
        self,
        q: dns.message.Message,
        post: bool = True,
        version: dns.query.HTTPVersion = H2,
        timeout: float = 3.0,
    ) -> dns.message.Message:
        host, port = self.doh
        return dns.query.https(
            q,
            host,
            timeout=timeout,
            port=port,
            verify=self.files.client_context(),
            post=post,
            http_version=version,
        )

    def connect_dot(self, timeout: float = 3.0) -> ssl.SSLSocket:
        """A DoT connection, handshake done."""
        raw = socket.create_connection(self.dot, timeout=timeout)
        context = self.files.client_context(["dot"])
        return context.wrap_socket(raw, server_hostname=SERVER_NAME)

    def served_certificate(self, where: Where, alpn: list[str]) -> bytes:
        """The DER certificate a new connection to ``where`` is given."""
        with socket.create_connection(where, timeout=3.0) as raw:
            context = self.files.client_context(alpn)
            with context.wrap_socket(raw, server_hostname=SERVER_NAME) as tls:
                der = tls.getpeercert(binary_form=True)
        assert der is not None
        return der

    def http(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        """One HTTP/1.1 request to the DoH listener: status, headers, body."""
        host, port = self.doh
        context = self.files.client_context(["http/1.1"])
        conn = http.client.HTTPSConnection(host, port, timeout=3.0, context=context)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            data = response.read()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, data
        finally:
            conn.close()


def start_encrypted(
    factory: SinkholeFactory,
    folder: Any,
    policies: dict[str, str] | None = None,
    tls_extra: dict[str, str] | None = None,
    **overrides: Any,
) -> Encrypted:
    """A server with DoT and DoH on free loopback ports and a certificate from a new CA."""
    _, files = make_tls_files(folder)
    dot_port, doh_port = free_port(), free_port()
    server = factory(
        policies,
        listen_tls=[f"127.0.0.1:{dot_port}"],
        listen_https=[f"127.0.0.1:{doh_port}"],
        tls={"cert": str(files.cert), "key": str(files.key), **(tls_extra or {})},
        **overrides,
    )
    return Encrypted(server, files, ("127.0.0.1", dot_port), ("127.0.0.1", doh_port))


def pem_to_der(pem: bytes) -> bytes:
    """The first certificate of a PEM file, in DER."""
    text = pem.decode()
    end = text.index("-----END CERTIFICATE-----") + len("-----END CERTIFICATE-----")
    return ssl.PEM_cert_to_DER_cert(text[:end])
