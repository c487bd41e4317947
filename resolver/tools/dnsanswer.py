"""Queries as bytes, and answers read into what a compliance check looks at (pure).

``verify`` sends many thousands of queries a second and ``diff`` compares answers field
by field, so both build queries by hand (a question in wire form, a fresh ID) and read
answers with this small reader instead of a general DNS library: rcode, flags, the
answer records as text, the TTLs, and the Extended DNS Errors (RFC 8914).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from resolver.core import wire
from resolver.core.errors import FormError

TYPES = {"A": wire.TYPE_A, "AAAA": wire.TYPE_AAAA}
TYPE_NAMES = {
    wire.TYPE_A: "A",
    wire.TYPE_AAAA: "AAAA",
    wire.TYPE_CNAME: "CNAME",
    wire.TYPE_SOA: "SOA",
    wire.TYPE_NS: "NS",
    12: "PTR",
    15: "MX",
    16: "TXT",
    39: "DNAME",
}
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}
BLOCK_EDE = {15: "Blocked", 16: "Censored", 17: "Filtered"}  # what a block is labelled with
_FIXED_OPT = wire.build_opt(False)


def question(qname: str, qtype: int) -> bytes:
    """The question section for ``qname`` (presentation form) and ``qtype``, class IN."""
    return wire.text_to_name(qname) + wire.U16.pack(qtype) + wire.U16.pack(wire.CLASS_IN)


def build_query(asked: bytes, qid: int, edns: bool = True) -> bytes:
    """A recursive query with ``asked`` (from ``question``) and EDNS (1232 octets, no DO)."""
    header = wire.HEADER.pack(qid, wire.RD, 1, 0, 0, 1 if edns else 0)
    return header + asked + (_FIXED_OPT if edns else b"")


def answer_id(data: bytes) -> int:
    """The ID of a message, or -1 when it is too short to have one."""
    return (data[0] << 8) | data[1] if len(data) >= 12 else -1


def answers_question(data: bytes, asked: bytes) -> bool:
    """Whether ``data`` is a response whose question is ``asked`` (name in any case)."""
    end = 12 + len(asked)
    return (
        len(data) >= end
        and bool(data[2] & 0x80)
        and data[4:6] == b"\x00\x01"
        and data[end - 4 : end] == asked[-4:]
        and data[12 : end - 4].lower() == asked[:-4]
    )


@dataclass(frozen=True)
class Record:
    rtype: int
    ttl: int
    data: str  # an address, a target name with its trailing dot, or the rdata in hex

    @property
    def type_name(self) -> str:
        return TYPE_NAMES.get(self.rtype, f"TYPE{self.rtype}")

    def __str__(self) -> str:
        return f"{self.type_name} {self.data}"


@dataclass(frozen=True)
class Answer:
    """The parts of a DNS response a check looks at."""

    rcode: int
    flags: int
    records: tuple[Record, ...] = ()  # the answer section
    authority_ttl: int | None = None  # the SOA's TTL in the authority section, if any
    ede: tuple[tuple[int, str], ...] = ()  # (info code, extra text) of each EDE option
    edns: bool = False

    @property
    def rcode_name(self) -> str:
        return RCODES.get(self.rcode, f"RCODE{self.rcode}")

    @property
    def truncated(self) -> bool:
        return bool(self.flags & wire.TC)

    def addresses(self, qtype: int) -> frozenset[str]:
        """The addresses of type ``qtype`` (A or AAAA) in the answer section."""
        return frozenset(r.data for r in self.records if r.rtype == qtype)

    def targets(self) -> tuple[str, ...]:
        """CNAME targets in the answer section, lower case, without the trailing dot."""
        return tuple(r.data.rstrip(".").lower() for r in self.records if r.rtype == wire.TYPE_CNAME)

    def has(self, rtype: int) -> bool:
        return any(r.rtype == rtype for r in self.records)

    def block_ede(self) -> tuple[int, str] | None:
        """The first EDE that labels a block (15 Blocked, 16 Censored, 17 Filtered)."""
        for code, text in self.ede:
            if code in BLOCK_EDE:
                return code, text
        return None

    @property
    def ttl(self) -> int | None:
        """The smallest answer TTL, or the SOA's for an answer with no records."""
        if self.records:
            return min(r.ttl for r in self.records)
        return self.authority_ttl

    def describe(self) -> str:
        """One line: rcode, TC, the answer records, the EDEs."""
        parts = [self.rcode_name]
        if self.truncated:
            parts.append("TC=1")
        parts.append(", ".join(str(r) for r in self.records) if self.records else "no answer")
        parts.extend(f"(EDE {code}: {text})" for code, text in self.ede)
        return " ".join(parts)


def ede_text(code: int, text: str) -> str:
    label = BLOCK_EDE.get(code)
    return f"EDE {code}" + (f" ({label})" if label else "") + (f" {text!r}" if text else "")


def _rdata_text(data: bytes, rtype: int, start: int, end: int) -> str:
    rdata = data[start:end]
    if rtype == wire.TYPE_A and len(rdata) == 4:
        return str(ipaddress.IPv4Address(rdata))
    if rtype == wire.TYPE_AAAA and len(rdata) == 16:
        return str(ipaddress.IPv6Address(rdata))
    if rtype in (wire.TYPE_CNAME, 39, wire.TYPE_NS, 12):
        name, _ = wire.read_name(data, start)
        text = wire.name_to_text(name)
        return text if text == "." else text + "."
    return rdata.hex()


def _edes(data: bytes, start: int, end: int) -> list[tuple[int, str]]:
    out = []
    pos = start
    while pos + 4 <= end:
        code, size = wire.U16.unpack_from(data, pos)[0], wire.U16.unpack_from(data, pos + 2)[0]
        body = data[pos + 4 : pos + 4 + size]
        pos += 4 + size
        if code == wire.EDE_OPTION and len(body) >= 2:
            out.append((wire.U16.unpack_from(body)[0], body[2:].decode("utf-8", "replace")))
    return out


def parse_answer(data: bytes) -> Answer:
    """Read a response. Raises FormError when it is malformed."""
    if len(data) < 12:
        raise FormError("shorter than a DNS header")
    _, flags, qdcount, ancount, nscount, arcount = wire.HEADER.unpack_from(data)
    pos = 12
    for _ in range(qdcount):
        pos = wire.skip_name(data, pos) + 4
    records: list[Record] = []
    authority_ttl: int | None = None
    ede: list[tuple[int, str]] = []
    edns = False
    rcode = flags & 0xF
    for section, count in ((0, ancount), (1, nscount), (2, arcount)):
        for _ in range(count):
            rtype, fixed, end = wire.skip_rr(data, pos)
            ttl = wire.U32.unpack_from(data, fixed + 4)[0]
            if section == 0:
                records.append(Record(rtype, ttl, _rdata_text(data, rtype, fixed + 10, end)))
            elif section == 1 and rtype == wire.TYPE_SOA:
                authority_ttl = ttl
            elif section == 2 and rtype == wire.TYPE_OPT:
                edns = True
                rcode |= (ttl >> 24) << 4
                ede.extend(_edes(data, fixed + 10, end))
            pos = end
    return Answer(rcode, flags, tuple(records), authority_ttl, tuple(ede), edns)


@dataclass
class Outcome:
    """What came back for one query: an answer, or no answer in time, or an error."""

    answer: Answer | None = None
    timeout: bool = False
    error: str = ""
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def describe(self) -> str:
        if self.answer is not None:
            return self.answer.describe()
        if self.timeout:
            return "no answer (timeout)"
        return f"error: {self.error}"
