"""A thin DNS client over dnspython for the black-box tests."""

from __future__ import annotations

import itertools
import os
import socket
import struct

import dns.edns
import dns.flags
import dns.message
import dns.query
import dns.rdatatype
from support.procs import Sinkhole

Where = tuple[str, int]

_counter = itertools.count(1)
_run = os.urandom(3).hex()


def unique(prefix: str = "fwd", zone: str = "example") -> str:
    """A name never asked before in this run; ``prefix`` picks the fake upstream's behaviour."""
    return f"{prefix}-{_run}{next(_counter)}.{zone}"


def v4(server: Sinkhole) -> Where:
    return (server.host, server.port)


def v6(server: Sinkhole) -> Where:
    assert server.port6 is not None, "this server has no IPv6 listener"
    return (server.host6, server.port6)


def make(
    name: str,
    rdtype: str | int = "A",
    *,
    edns: bool = False,
    dnssec: bool = False,
    payload: int = 1232,
    rd: bool = True,
    qid: int | None = None,
) -> dns.message.QueryMessage:
    if edns or dnssec:
        q = dns.message.make_query(
            name, rdtype, use_edns=0, want_dnssec=dnssec, payload=payload, id=qid
        )
    else:
        q = dns.message.make_query(name, rdtype, id=qid)
    if not rd:
        q.flags &= ~dns.flags.RD
    return q


def ask(
    where: Where,
    name: str,
    rdtype: str | int = "A",
    *,
    tcp: bool = False,
    timeout: float = 2.0,
    **kwargs: object,
) -> dns.message.Message:
    """Send one query and return the answer (dnspython checks the ID and question)."""
    return send(where, make(name, rdtype, **kwargs), tcp=tcp, timeout=timeout)  # type: ignore[arg-type]


def send(
    where: Where, q: dns.message.Message, *, tcp: bool = False, timeout: float = 2.0
) -> dns.message.Message:
    host, port = where
    if tcp:
        return dns.query.tcp(q, host, timeout=timeout, port=port)
    return dns.query.udp(q, host, timeout=timeout, port=port)


def raw_udp(where: Where, data: bytes, timeout: float = 1.0) -> bytes | None:
    """Send one datagram; return the first datagram back, or None if none came in ``timeout``."""
    family = socket.AF_INET6 if ":" in where[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(data, where)
        try:
            return sock.recv(65535)
        except TimeoutError:
            return None


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    """Read ``size`` octets; raise EOFError if the peer closes first."""
    buf = b""
    while len(buf) < size:
        chunk = sock.recv(size - len(buf))
        if not chunk:
            raise EOFError(f"connection closed after {len(buf)} of {size} octets")
        buf += chunk
    return buf


def recv_frame(sock: socket.socket) -> bytes:
    (size,) = struct.unpack("!H", recv_exactly(sock, 2))
    return recv_exactly(sock, size)


def frame(message: bytes) -> bytes:
    return struct.pack("!H", len(message)) + message


def ede(r: dns.message.Message) -> list[tuple[int, str]]:
    """The Extended DNS Errors of an answer, as (code, text)."""
    return [(int(o.code), o.text or "") for o in r.options if isinstance(o, dns.edns.EDEOption)]


def addresses(r: dns.message.Message) -> list[str]:
    """The A and AAAA addresses in the answer section, sorted."""
    return sorted(
        rd.address
        for rrset in r.answer
        if rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA)
        for rd in rrset
    )
