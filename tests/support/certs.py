"""Certificates for the encrypted listeners, made by the tests (trustme): a CA of the
test's own and server certificates it issues, written as PEM files."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme

SERVER_NAME = "dns.sinkhole.test"


@dataclass(frozen=True)
class TlsFiles:
    """A CA (``ca``: its certificate, for clients) and a server's ``cert`` and ``key``."""

    ca: Path
    cert: Path
    key: Path

    def client_context(self, alpn: list[str] | None = None) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca))
        if alpn:
            context.set_alpn_protocols(alpn)
        return context


def issue(ca: trustme.CA, folder: Path, *names: str) -> tuple[Path, Path]:
    """A certificate for ``names`` (SERVER_NAME and 127.0.0.1 when none), written over
    ``folder/cert.pem`` and ``folder/key.pem``."""
    cert = ca.issue_cert(*(names or (SERVER_NAME, "127.0.0.1", "::1")))
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    # The key first: a reload that finds the new certificate finds its key too.
    cert.private_key_pem.write_to_path(str(key_path))
    cert_path.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    return cert_path, key_path


def make_tls_files(folder: Path, *names: str) -> tuple[trustme.CA, TlsFiles]:
    folder.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    ca_path = folder / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    cert, key = issue(ca, folder, *names)
    return ca, TlsFiles(ca_path, cert, key)
