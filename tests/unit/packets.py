"""Hand-built DNS packets for the unit tests: exact bytes, including malformed ones."""

from __future__ import annotations

import struct

from resolver.core import wire


def header(
    qid: int = 0x1234, flags: int = wire.RD, qd: int = 1, an: int = 0, ns: int = 0, ar: int = 0
) -> bytes:
    return struct.pack("!HHHHHH", qid, flags, qd, an, ns, ar)


def name(text: str) -> bytes:
    """Wire form of a presentation name, case preserved (no escapes)."""
    text = text.rstrip(".")
    if not text:
        return b"\x00"
    out = b""
    for label in text.split("."):
        raw = label.encode("ascii")
        out += bytes((len(raw),)) + raw
    return out + b"\x00"


def question(
    qname: str = "example.com", qtype: int = wire.TYPE_A, qclass: int = wire.CLASS_IN
) -> bytes:
    return name(qname) + struct.pack("!HH", qtype, qclass)


def opt(
    udp: int = 1232, do: bool = False, version: int = 0, ext_rcode: int = 0, options: bytes = b""
) -> bytes:
    ttl = (ext_rcode << 24) | (version << 16) | (wire.EDNS_DO if do else 0)
    return b"\x00" + struct.pack("!HHIH", wire.TYPE_OPT, udp, ttl, len(options)) + options


def query(
    qname: str = "example.com",
    qtype: int = wire.TYPE_A,
    *,
    qid: int = 0x1234,
    flags: int = wire.RD,
    qclass: int = wire.CLASS_IN,
    edns: bool = False,
    do: bool = False,
    udp: int = 1232,
) -> bytes:
    """A well-formed query, with an OPT record when ``edns`` (or ``do``)."""
    extra = opt(udp, do) if edns or do else b""
    return header(qid, flags, 1, 0, 0, 1 if extra else 0) + question(qname, qtype, qclass) + extra


def parsed(qname: str = "example.com", qtype: int = wire.TYPE_A, **kw: object) -> wire.Query:
    return wire.parse_query(query(qname, qtype, **kw))  # type: ignore[arg-type]


def record(owner: bytes, rtype: int, ttl: int, rdata: bytes, rclass: int = wire.CLASS_IN) -> bytes:
    return owner + struct.pack("!HHIH", rtype, rclass, ttl, len(rdata)) + rdata


def soa_rdata(minimum: int, mname: str = "ns.example", rname: str = "host.example") -> bytes:
    return name(mname) + name(rname) + struct.pack("!IIIII", 2024010101, 3600, 600, 86400, minimum)
