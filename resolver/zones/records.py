"""A zone's records as transfers need them, and their master-file text from wire form.

Records are kept as text: owner (lower-case absolute name), type and rdata (master-file
text, names in lower case), keyed for IXFR's exact deletes. The same functions write
every copy and read every transfer, so a record an IXFR deletes is found by its text.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass
from typing import cast

import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.SOA

from resolver.core import wire
from resolver.core.errors import FormError


@dataclass(frozen=True, slots=True)
class Soa:
    """An SOA record's fields, and its rdata as master-file text."""

    serial: int
    refresh: int
    retry: int
    expire: int
    minimum: int
    text: str

    @classmethod
    def parse(cls, text: str) -> Soa:
        """From rdata text ``mname rname serial refresh retry expire minimum`` (numbers
        only, as written here); dnspython reads anything else."""
        fields = text.split()
        if len(fields) == 7 and all(f.isdigit() for f in fields[2:]):
            serial, refresh, retry, expire, minimum = (int(f) for f in fields[2:])
            return cls(serial, refresh, retry, expire, minimum, " ".join(fields))
        rdata = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.SOA, text)
        return cls.of(cast(dns.rdtypes.ANY.SOA.SOA, rdata))

    @classmethod
    def of(cls, rdata: dns.rdtypes.ANY.SOA.SOA) -> Soa:
        raw = rdata.to_wire() or b""
        return soa_from_wire(raw, 0, len(raw))


Record = tuple[str, int, str]  # owner, type, rdata as text: one record of a zone


class Records:
    """A zone held for transfers: each record once, keyed by owner (lower-case absolute
    text), type and rdata (master-file text, names in lower case), with its TTL. Far
    lighter than a dnspython zone, and what an IXFR needs: exact deletes and adds."""

    __slots__ = ("origin", "records", "soa", "soa_ttl")

    def __init__(self, origin: str) -> None:
        self.origin = origin
        self.soa: Soa | None = None
        self.soa_ttl = 0
        self.records: dict[Record, int] = {}

    def __len__(self) -> int:
        return len(self.records) + (self.soa is not None)

    def text(self, header: str) -> str:
        """A master file: absolute names, one record a line, the SOA first."""
        assert self.soa is not None
        origin = self.origin
        lines = [header, f"$ORIGIN {origin}\n", f"{origin} {self.soa_ttl} IN SOA {self.soa.text}\n"]
        names = _TYPE_NAMES
        lines.extend(
            f"{owner} {ttl} IN {names.get(rtype) or _type_name(rtype)} {rdata}\n"
            for (owner, rtype, rdata), ttl in self.records.items()
        )
        return "".join(lines)


_TYPE_NAMES: dict[int, str] = {}
_TYPE_CODES: dict[str, int] = {}


def _type_name(rtype: int) -> str:
    name = _TYPE_NAMES[rtype] = dns.rdatatype.to_text(dns.rdatatype.RdataType.make(rtype))
    return name


def type_code(name: str) -> int:
    """The number of a type named in master-file text (``CNAME``, ``TYPE65534``)."""
    code = _TYPE_CODES.get(name)
    if code is None:
        code = _TYPE_CODES[name] = int(dns.rdatatype.from_text(name))
    return code


# --- master-file text from wire form ---------------------------------------------------------


def name_text(name: bytes) -> str:
    """An uncompressed wire name as lower-case absolute master-file text (``.`` for the
    root)."""
    text = wire.name_to_text(name.lower())
    return text if text == "." else text + "."


def name_at(data: bytes, pos: int) -> tuple[str, int]:
    """The name at ``data[pos]`` (compressed or not) as ``name_text``, and where it ends."""
    name, end = wire.read_name(data, pos)
    return name_text(name), end


def soa_from_wire(data: bytes, start: int, end: int) -> Soa:
    """The SOA rdata at ``data[start:end]`` (names may point into ``data``)."""
    mname, pos = name_at(data, start)
    rname, pos = name_at(data, pos)
    if pos + 20 != end:
        raise FormError("malformed SOA")
    serial, refresh, retry, expire, minimum = struct.unpack_from("!IIIII", data, pos)
    text = f"{mname} {rname} {serial} {refresh} {retry} {expire} {minimum}"
    return Soa(serial, refresh, retry, expire, minimum, text)


# Types whose rdata is one name, read here rather than through dnspython.
_NAME_TYPES = frozenset(
    int(t) for t in (dns.rdatatype.NS, dns.rdatatype.CNAME, dns.rdatatype.PTR, dns.rdatatype.DNAME)
)
_MX = int(dns.rdatatype.MX)


def rdata_text(rtype: int, data: bytes, start: int, end: int) -> str:
    """Rdata at ``data[start:end]`` (names may point into ``data``) as master-file text."""
    if rtype in _NAME_TYPES:
        text, pos = name_at(data, start)
        if pos != end:
            raise FormError("malformed name rdata")
        return text
    if rtype == wire.TYPE_A and end - start == 4:
        return socket.inet_ntop(socket.AF_INET, data[start:end])
    if rtype == wire.TYPE_AAAA and end - start == 16:
        return socket.inet_ntop(socket.AF_INET6, data[start:end])
    if rtype == wire.TYPE_SOA:
        return soa_from_wire(data, start, end).text
    if rtype == _MX and end - start >= 3:
        exchange, pos = name_at(data, start + 2)
        if pos != end:
            raise FormError("malformed MX")
        return f"{(data[start] << 8) | data[start + 1]} {exchange}"
    kind = dns.rdatatype.RdataType.make(rtype)
    rdata = dns.rdata.from_wire(dns.rdataclass.IN, kind, data, start, end - start)
    return rdata.to_text()
