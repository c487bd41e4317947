"""Encrypted upstreams as the configuration writes them (pure):

- ``tls://HOST[:PORT][#NAME]``: DNS over TLS (RFC 7858), port 853 unless given;
- ``https://HOST[:PORT]/PATH[#NAME]``: DNS over HTTPS (RFC 8484), port 443 unless
  given, path ``/dns-query`` when none is.

HOST is an IPv4 address, an IPv6 address in brackets or a host name. The server's
certificate must carry NAME when it is given, else HOST (a host name, or the address
itself for an address). An address with ``#NAME`` connects to the address and checks
the name: no name has to be looked up before the first query can be forwarded.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

DEFAULT_PORTS = {"tls": 853, "https": 443}
DEFAULT_PATH = "/dns-query"
FORMS = "tls://HOST[:PORT][#NAME] or https://HOST[:PORT]/PATH[#NAME]"
_LABEL = re.compile(r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?\Z")


@dataclass(frozen=True, slots=True)
class SecureUpstream:
    """One encrypted upstream: where to connect, and the name its certificate must carry."""

    scheme: str  # "tls" (DNS over TLS) or "https" (DNS over HTTPS)
    host: str  # an IP address (IPv6 without brackets) or a host name
    port: int
    name: str = ""  # from #NAME: the name checked instead of the host
    path: str = ""  # https: the path (and query) of the URL
    ca_file: str = ""  # PEM certificates trusted instead of the system's ("": the system's)

    @property
    def check_name(self) -> str:
        """The name (or address) the certificate must carry."""
        return self.name or self.host

    @property
    def url(self) -> str:
        """The DoH URL (the host as written, the name checked apart)."""
        return f"https://{_host_port(self.host, self.port)}{self.path}"

    def __str__(self) -> str:
        name = f"#{self.name}" if self.name else ""
        return f"{self.scheme}://{_host_port(self.host, self.port)}{self.path}{name}"


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def is_secure(text: str) -> bool:
    """Whether an ``upstreams`` entry is written as a URL (not ``host:port``)."""
    return "://" in text


def host_name_problem(name: str) -> str | None:
    """Why ``name`` is not a host name (letters, digits, hyphens; labels of 1 to 63), or None."""
    if not name or len(name) > 253:
        return "a host name has 1 to 253 characters"
    for label in name.split("."):
        if not _LABEL.match(label):
            return f"{label!r} is not a label of a host name"
    return None


def parse_secure(text: str, ca_file: str = "") -> SecureUpstream:
    """``text`` as an encrypted upstream; ValueError saying what is wrong otherwise."""
    text = text.strip()
    scheme = text.partition("://")[0].lower()
    if scheme not in DEFAULT_PORTS:
        raise ValueError(
            f"{scheme}:// is not a transport sinkhole forwards over (host:port for plain DNS)"
        )
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise ValueError(str(exc).lower()) from None
    if parts.username is not None or parts.password is not None:
        raise ValueError("a user name or password has no place here")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise ValueError("the host is missing")
    if ":" in host and not parts.netloc.startswith("["):
        raise ValueError("an IPv6 address goes in brackets, like [2001:db8::53]")
    if port is None:
        port = DEFAULT_PORTS[scheme]
    if not 0 < port < 65536:
        raise ValueError(f"port {port} out of range")
    address = _address(host)
    if address is None and (problem := host_name_problem(host)) is not None:
        raise ValueError(f"the host is neither an IP address nor a host name ({problem})")
    name = parts.fragment.strip().rstrip(".").lower()
    if parts.fragment and (problem := _name_problem(name)) is not None:
        raise ValueError(f"#{parts.fragment} is not the name to check ({problem})")
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    if scheme == "tls":
        if path not in ("", "/"):
            raise ValueError("DNS over TLS has no path")
        path = ""
    else:
        if "{" in path:
            raise ValueError("write the path without its template, like /dns-query")
        path = path or DEFAULT_PATH
    return SecureUpstream(scheme, address or host, port, name, path, ca_file)


def _address(host: str) -> str | None:
    """``host`` as an IP address written canonically, or None for a host name."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


def _name_problem(name: str) -> str | None:
    if _address(name) is not None:
        return "give a host name; without #NAME the address itself is checked"
    return host_name_problem(name)
