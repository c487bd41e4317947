"""HTTPS for the warning server: the operator's certificate, for the warning host's own name.

A blocked https:// site cannot be shown the warning page: nobody but the site has a
certificate for its name, and the browser rightly refuses any other. So the server
completes a TLS handshake only for the names its certificate covers (the warning
host's own name, such as warning.example) and for clients that send no name. Any
other name in the client's SNI fails the handshake at once with an
``unrecognized_name`` alert: the browser shows its connection error immediately
instead of waiting for a timeout.
"""

from __future__ import annotations

import ssl
from functools import partial
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID

from resolver.sources.config_sections import WarningTls


class TlsSetupError(Exception):
    """The certificate or key cannot be used: which file and why."""


def certificate_names(pem: bytes) -> tuple[str, ...]:
    """The DNS names of a PEM certificate (its first certificate: the server's own), lower
    case: its subjectAltName entries, or its common name when it has none."""
    cert = x509.load_pem_x509_certificate(pem)
    try:
        extension = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        common = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return tuple(str(a.value).lower().rstrip(".") for a in common)
    return tuple(n.lower().rstrip(".") for n in extension.value.get_values_for_type(x509.DNSName))


def name_covered(server_name: str | None, names: tuple[str, ...]) -> bool:
    """Whether a handshake for ``server_name`` (the client's SNI; None: it sent none) may
    go on with a certificate for ``names`` (``*.x`` covers one label under ``x``)."""
    if server_name is None:
        return True
    asked = server_name.lower().rstrip(".")
    for name in names:
        if name == asked:
            return True
        if name.startswith("*."):
            label, dot, parent = asked.partition(".")
            if dot and label and parent == name[2:]:
                return True
    return False


def _on_sni(
    names: tuple[str, ...], connection: ssl.SSLObject, server_name: str | None, _: ssl.SSLContext
) -> int | None:
    return None if name_covered(server_name, names) else ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME


def tls_context(settings: WarningTls) -> tuple[ssl.SSLContext, tuple[str, ...]]:
    """A server context with the operator's certificate and key that refuses other SNI
    names, and the names the certificate covers. Raises TlsSetupError."""
    try:
        pem = Path(settings.cert).read_bytes()
    except OSError as exc:
        raise TlsSetupError(f"{settings.cert}: cannot read ({exc.strerror or exc})") from None
    try:
        names = certificate_names(pem)
    except ValueError as exc:
        raise TlsSetupError(f"{settings.cert}: not a PEM certificate ({exc})") from None
    if not names:
        raise TlsSetupError(f"{settings.cert}: the certificate names no DNS name")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_COMPRESSION
    context.set_alpn_protocols(["h2", "http/1.1"])
    try:
        context.load_cert_chain(settings.cert, settings.key)
    except OSError as exc:  # ssl.SSLError too: a key that does not match, a bad file
        raise TlsSetupError(
            f"{settings.cert}, {settings.key}: cannot use this certificate and key "
            f"({getattr(exc, 'reason', None) or exc.strerror or exc})"
        ) from None
    context.sni_callback = partial(_on_sni, names)
    return context, names
