"""Policy CNAMEs followed: the chain's state, and the answer it ends in (pure).

A policy that redirects a name to another name (``redirect: {cname: ...}`` or an RPZ
CNAME) is answered as a resolver answers a CNAME: the CNAME record, then the target's
own records of the asked type, with the target's rcode. The target is resolved as an
ordinary query (policy, cache, upstream), and may be redirected again: at most
MAX_CHAIN policy CNAMEs, and a name seen twice is a loop; either ends in SERVFAIL.
"""

from __future__ import annotations

import struct

from resolver.core import wire
from resolver.core.errors import FormError
from resolver.core.verdict import Verdict

MAX_CHAIN = 8
EDE_OTHER = 0
EDE_CHAIN = "policy CNAME chain too long or looping"

_COUNTS = struct.Struct("!HHHH")
# Types whose rdata holds names that may be compressed (RFC 3597 section 4): the fixed
# octets before the first name, and how many names follow (then any fixed tail).
_NAMES_IN_RDATA = {
    wire.TYPE_CNAME: (0, 1),
    2: (0, 1),  # NS
    12: (0, 1),  # PTR
    39: (0, 1),  # DNAME
    wire.TYPE_SOA: (0, 2),
    15: (2, 1),  # MX
    18: (2, 1),  # AFSDB
    21: (2, 1),  # RT
    36: (2, 1),  # KX
    33: (6, 1),  # SRV
    14: (0, 2),  # MINFO
    17: (0, 2),  # RP
}


class Chase:
    """A client query answered by following policy CNAMEs: the chain built so far."""

    __slots__ = ("count", "names", "query", "records", "ttl", "verdict_ede")

    def __init__(self, query: wire.Query, verdict_ede: bytes, ttl: int) -> None:
        self.query = query  # the client's query
        self.verdict_ede = verdict_ede  # the EDE option of the policy that rewrote first
        self.ttl = ttl
        self.records = b""  # the CNAME records so far, names written out in full
        self.count = 0
        self.names: list[bytes] = [query.qname]

    def add(self, owner: bytes, target: bytes) -> bool:
        """Add ``owner CNAME target``; False when the chain loops or grows too long."""
        if target in self.names or self.count >= MAX_CHAIN:
            return False
        # The first owner is the client's own question name (its letter case kept).
        owner_wire = b"\xc0\x0c" if self.count == 0 else owner
        self.records += wire.build_record(wire.TYPE_CNAME, self.ttl, target, owner_wire)
        self.count += 1
        self.names.append(target)
        return True

    def take(self, records: bytes, targets: list[bytes]) -> None:
        """Start the chain with CNAME records an upstream gave (see ``cname_chain``)."""
        self.records += records
        self.count += len(targets)
        self.names.extend(targets)

    def step(self, target: bytes) -> wire.Query:
        """The question about ``target`` that the client's query continues with."""
        q = self.query
        question = target + q.question[-4:]
        step = wire.Query(
            q.qid, q.flags, target, q.qtype, q.qclass, question, q.edns, q.udp_size, q.do
        )
        return step

    def answer(self, message: bytes) -> bytes:
        """The client's answer: the chain, then the answer and authority records of
        ``message`` (the target's own answer, a whole DNS message), with its rcode."""
        q = self.query
        rcode = message[3] & 0xF if len(message) >= 12 else wire.SERVFAIL
        try:
            answer, ancount, authority, nscount = copy_sections(message)
        except FormError:
            return self.failed(wire.SERVFAIL)
        flags = wire.QR | wire.RA | (q.flags & (wire.RD | wire.CD)) | rcode
        opt = wire.build_opt(q.do, 0, self.verdict_ede) if q.edns else b""
        counts = _COUNTS.pack(1, self.count + ancount, nscount, 1 if opt else 0)
        return (
            q.qid
            + wire.U16.pack(flags)
            + counts
            + q.question
            + self.records
            + answer
            + authority
            + opt
        )

    def failed(self, rcode: int = wire.SERVFAIL, text: str = EDE_CHAIN) -> bytes:
        """The client's answer when the chain cannot be followed."""
        ede = wire.build_ede(EDE_OTHER, text)
        return wire.build_reply(self.query, rcode, ede=ede)


def cname_chain(message: bytes, upto: bytes) -> tuple[bytes, list[bytes]] | None:
    """The CNAME records that open the answer section of ``message``, up to and including
    the one whose target is ``upto`` (wire form, lower case), names written out in full,
    and the targets in order; None when the chain does not reach ``upto``."""
    if len(message) < 12:
        return None
    qdcount, ancount, _, _ = _COUNTS.unpack_from(message, 4)
    try:
        pos = 12
        for _ in range(qdcount):
            pos = wire.skip_name(message, pos) + 4
        records: list[bytes] = []
        targets: list[bytes] = []
        for _ in range(ancount):
            rtype, fixed, end = wire.skip_rr(message, pos)
            if rtype != wire.TYPE_CNAME:
                return None
            record, _ = _copy_record(message, pos)
            target = wire.read_name(message, fixed + 10)[0].lower()
            records.append(record)
            targets.append(target)
            if target == upto:
                return b"".join(records), targets
            pos = end
    except FormError:
        return None
    return None


def copy_sections(message: bytes) -> tuple[bytes, int, bytes, int]:
    """The answer and authority records of ``message`` with every name written out in
    full (so they can follow another question), and their counts. The OPT record and
    the additional section are left out."""
    if len(message) < 12:
        raise FormError("message shorter than its header")
    qdcount, ancount, nscount, _ = _COUNTS.unpack_from(message, 4)
    pos = 12
    for _ in range(qdcount):
        pos = wire.skip_name(message, pos) + 4
    sections: list[bytes] = []
    for count in (ancount, nscount):
        out: list[bytes] = []
        for _ in range(count):
            record, pos = _copy_record(message, pos)
            out.append(record)
        sections.append(b"".join(out))
    return sections[0], ancount, sections[1], nscount


def _copy_record(message: bytes, pos: int) -> tuple[bytes, int]:
    owner, pos = wire.read_name(message, pos)
    if pos + 10 > len(message):
        raise FormError("truncated resource record")
    rtype, rclass, ttl, rdlen = wire.RR_FIXED.unpack_from(message, pos)
    start = pos + 10
    end = start + rdlen
    if end > len(message):
        raise FormError("resource record runs past the end of the packet")
    rdata = message[start:end]
    layout = _NAMES_IN_RDATA.get(rtype)
    if layout is not None:
        fixed, names = layout
        at = start + fixed
        parts = [message[start:at]]
        for _ in range(names):
            name, at = wire.read_name(message, at)
            parts.append(name)
        if at > end:
            raise FormError("rdata names run past the record")
        parts.append(message[at:end])
        rdata = b"".join(parts)
    return owner + wire.RR_FIXED.pack(rtype, rclass, ttl, len(rdata)) + rdata, end


# Types asked for the CNAME itself (or for everything): answered with the bare CNAME.
NOT_FOLLOWED = frozenset({wire.TYPE_CNAME, wire.TYPE_ANY})


def cname_target(verdict: Verdict, name: bytes) -> bytes:
    """The CNAME target a redirect sends ``name`` to (wire form), or b"" when it sends
    it to addresses or local data, or when the rewritten name cannot exist."""
    redirect = verdict.redirect
    if redirect is None:
        return b""
    target = redirect.target()
    if target.startswith(b"\x01*"):  # RPZ wildcard rewrite: the name, then the target's parent
        target = name[:-1] + target[2:]
        if len(target) > wire.MAX_NAME:
            return b""
    return target
