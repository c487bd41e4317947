"""The forwarder's half of the wire format: the queries we send upstream (unpredictable
IDs, 0x20 letter case) and the replies we read back, checked and cut to the query's
chain (sans I/O).

Every read is bounded as in resolver.core.wire; a reply that is malformed or does not
answer the query we sent raises FormError and nothing else.
"""

from __future__ import annotations

import os
import struct
from array import array
from collections.abc import Iterator

from resolver.core import rewrite, wire
from resolver.core.errors import FormError
from resolver.core.rewrite import Span

_UPSTREAM_OPT = (wire.build_opt(False), wire.build_opt(True))


def build_upstream_query(query: wire.Query, qid: int, question: bytes = b"") -> bytes:
    """The query we send upstream: a fresh ID, wire.RD set, wire.CD copied, our own EDNS record;
    ``question`` in place of the client's (the same one in other letter case) if given."""
    flags = wire.RD | (query.flags & wire.CD)
    asked = question or query.question
    return wire.HEADER.pack(qid, flags, 1, 0, 0, 1) + asked + _UPSTREAM_OPT[query.do]


def _random_words() -> Iterator[int]:
    """16-bit values from the operating system's CSPRNG, read 4,096 at a time: IDs an
    off-path attacker cannot predict from earlier ones (unlike a Mersenne Twister)."""
    while True:
        yield from array("H", os.urandom(8192))


_RANDOM_WORDS = _random_words()


def random_id() -> int:
    """A query ID for upstream: 16 unpredictable bits."""
    return next(_RANDOM_WORDS)


def random_below(n: int) -> int:
    """An unpredictable number in [0, n) for small n (a choice among a few sockets)."""
    return next(_RANDOM_WORDS) % n


_random_pool = b""
_random_at = 0


def random_bytes(n: int) -> bytes:
    """``n`` (at most 4,096) unpredictable octets, from the CSPRNG 8,192 at a time."""
    global _random_pool, _random_at
    if _random_at + n > len(_random_pool):
        _random_pool = os.urandom(8192)
        _random_at = 0
    _random_at += n
    return _random_pool[_random_at - n : _random_at]


# 0x20 for every ASCII letter, 0 for any other octet (label lengths, 0..63, are not letters).
_LETTER_BITS = bytes(0x20 if chr(c).isascii() and chr(c).isalpha() else 0 for c in range(256))


def mix_case(question: bytes) -> bytes:
    """``question`` with the letters of its name in random case (DNS 0x20): a forged
    reply must guess the case of every letter, besides the ID and the port."""
    n = len(question) - 4
    name = question[:n]
    bits = int.from_bytes(name.translate(_LETTER_BITS)) & int.from_bytes(random_bytes(n))
    return (int.from_bytes(name) ^ bits).to_bytes(n) + question[n:]


# --- reading upstream replies ------------------------------------------------


class Reply:
    """An upstream reply, normalised into the template an answer is rendered from.

    ``body`` holds the question and the kept sections (answer, and authority when
    it carries SOA or DNSSEC proofs); the OPT record and additional section are
    left out. ``ttls`` holds (offset in ``body``, TTL) for every record kept. What a
    policy may check in the answer section is read on the way: ``targets``, the
    CNAME targets (wire form, lower case, in order), and ``addresses``, the A and
    AAAA data. Answer records outside the CNAME chain from the query name are not
    kept; ``stripped`` counts them.
    """

    __slots__ = (
        "addresses",
        "ancount",
        "body",
        "flags",
        "max_ttl",
        "min_ttl",
        "negative",
        "nscount",
        "rcode",
        "stripped",
        "targets",
        "ttls",
    )

    def __init__(
        self,
        flags: int,
        rcode: int,
        ancount: int,
        nscount: int,
        body: bytes,
        ttls: list[tuple[int, int]],
        min_ttl: int | None,
        negative: bool,
        targets: tuple[bytes, ...] = (),
        addresses: tuple[bytes, ...] = (),
        max_ttl: int | None = None,
        stripped: int = 0,
    ) -> None:
        self.flags = flags
        self.rcode = rcode
        self.ancount = ancount
        self.nscount = nscount
        self.body = body
        self.ttls = ttls
        self.min_ttl = min_ttl  # the TTL to cache it for (RFC 2308 for negative answers)
        # The longest record TTL kept (computed when not given).
        self.max_ttl = max((t for _, t in ttls), default=0) if max_ttl is None else max_ttl
        self.negative = negative
        self.targets = targets
        self.addresses = addresses
        self.stripped = stripped  # answer records left out: not part of the chain


def _record(data: bytes, pos: int, size: int) -> tuple[int, int, int, int]:
    """The record whose fixed part starts at ``pos`` (its owner read already): (type,
    TTL, ``pos``, the offset after its data)."""
    if pos + 10 > size:
        raise FormError("truncated resource record")
    rtype, _rclass, ttl, rdlen = wire.RR_FIXED.unpack_from(data, pos)
    end = pos + 10 + rdlen
    if end > size:
        raise FormError("resource record runs past the end of the packet")
    if ttl & 0x80000000:
        ttl = 0  # RFC 2181 8: a TTL with the top bit set is read as zero
    return rtype, ttl, pos, end


_TTL_LENGTH = struct.Struct("!IH")


# What reading an answer section gives: the offset after it, the records kept, their
# TTL fields (offset from the end of the header, TTL), the A and AAAA data and CNAME
# targets among them, their least and greatest TTL, and how many were left out.
Answers = tuple[
    int, list[Span], list[tuple[int, int]], list[bytes], list[bytes], int | None, int, int
]


def _usual_answers(data: bytes, pos: int, size: int, count: int, question: bytes) -> Answers | None:
    """The answer section read at once when it has the usual shape: every record owned
    by the question's name (a pointer to it) and of the asked type and class, so all
    of them are kept. None for any other shape, which ``_answers`` then reads."""
    qtype = question[-4:-2]
    if not count or qtype == b"\x00\x05":  # a CNAME's target is read in full
        return None
    head = b"\xc0\x0c" + question[-4:]
    address = _ADDRESS_LENGTH.get(qtype, -1)
    spans: list[Span] = []
    ttls: list[tuple[int, int]] = []
    addresses: list[bytes] = []
    low = 1 << 32
    high = 0
    for _ in range(count):
        if data[pos : pos + 6] != head or pos + 12 > size:
            return None
        ttl, length = _TTL_LENGTH.unpack_from(data, pos + 6)
        end = pos + 12 + length
        if end > size:
            raise FormError("resource record runs past the end of the packet")
        if ttl & 0x80000000:
            ttl = 0  # RFC 2181 8: a TTL with the top bit set is read as zero
        spans.append((pos, pos + 2, end, ttl))
        ttls.append((pos - 6, ttl))  # the TTL field, counted from the end of the header
        if length == address:
            addresses.append(data[pos + 12 : end])
        if ttl < low:
            low = ttl
        if ttl > high:
            high = ttl
        pos = end
    return pos, spans, ttls, addresses, [], low, high, 0


def _answers(data: bytes, pos: int, size: int, count: int, qname: bytes) -> Answers:
    """The answer section in any shape: the records in the CNAME chain from ``qname``
    kept (``rewrite.chain_members``), the others left out and counted."""
    # Every answer record: (owner, type, CNAME target) and (start, fixed part, end, TTL).
    owners: list[tuple[bytes, int, bytes]] = []
    spans: list[Span] = []
    # Names by the pointer that usually stands for them: the question's, and each CNAME
    # target's (the next owner points at it).
    pointers = {b"\xc0\x0c": qname}
    for _ in range(count):
        start = pos
        owner = pointers.get(data[pos : pos + 2])
        if owner is None:
            owner, pos = wire.read_name(data, pos)
            owner = owner.lower()
        else:
            pos += 2  # a pointer seen before
        rtype, ttl, fixed, pos = _record(data, pos, size)
        target = b""
        if rtype == wire.TYPE_CNAME:
            target = wire.read_name(data, fixed + 10)[0].lower()
            if fixed + 10 <= rewrite.MAX_POINTER:
                pointers[wire.U16.pack(0xC000 | (fixed + 10))] = target
        owners.append((owner, rtype, target))
        spans.append((start, fixed, pos, ttl))
    keep = rewrite.chain_members(qname, owners) if owners else None
    ttls: list[tuple[int, int]] = []
    min_ttl: int | None = None
    max_ttl = 0
    targets: list[bytes] = []
    addresses: list[bytes] = []
    kept: list[Span] = []
    for i, (_, fixed, end, ttl) in enumerate(spans):
        if keep is not None and not keep[i]:
            continue
        kept.append(spans[i])
        ttls.append((fixed - 8, ttl))  # the TTL field, counted from the end of the header
        if min_ttl is None or ttl < min_ttl:
            min_ttl = ttl
        if ttl > max_ttl:
            max_ttl = ttl
        rtype = owners[i][1]
        if _ADDRESS_RR.get(rtype) == end - fixed:
            addresses.append(data[fixed + 10 : end])
        elif rtype == wire.TYPE_CNAME:
            targets.append(owners[i][2])
    return pos, kept, ttls, addresses, targets, min_ttl, max_ttl, len(spans) - len(kept)


def _after_owner(data: bytes, pos: int, size: int) -> int:
    """The offset after the owner name at ``pos``: a pointer or the root at once."""
    c = data[pos] if pos < size else 0x40  # past the end: skip_name says so
    if c == 0:
        return pos + 1
    if c >= 0xC0:
        return pos + 2  # the caller checks that the fixed part fits
    return wire.skip_name(data, pos)


_ADDRESS_RR = {
    wire.TYPE_A: 14,
    wire.TYPE_AAAA: 26,
}  # fixed part and data of a well-formed address record
_ADDRESS_LENGTH = {wire.U16.pack(t): n - 10 for t, n in _ADDRESS_RR.items()}  # by type, as sent

# Recent tails (the octets after the answer section) that were read and held nothing
# to keep, each with the header's NSCOUNT and ARCOUNT: the same octets read the same
# way, so a tail seen again needs no reading. An upstream sends few distinct ones (its
# OPT record; a zone's NS records and glue). Bounded in number and size.
_PLAIN_TAILS: dict[bytes, bytes] = {}
TAILS_KEPT = 256
TAIL_MAX = 256


class CaseMismatch(FormError):
    """A reply to our query in every respect but the letter case of the name we sent
    mixed: forged, or from an upstream that does not keep the case of the question."""


def parse_reply(data: bytes, qid: int, question: bytes, sent: bytes = b"") -> Reply:
    """Read an upstream reply to the query we sent with ``qid`` and ``question``.

    ``sent``, when given, is the question as sent in mixed case (``mix_case``): the
    reply must echo it exactly (CaseMismatch when only the case differs). Without it
    the name may come back in any case. Either way the body starts with ``question``.
    Answer records outside the CNAME chain from the query name are left out (counted
    in ``stripped``). Raises FormError if it is malformed or does not answer that
    query (wrong ID or question: a late or spoofed packet).
    """
    size = len(data)
    if size < 12:
        raise FormError("shorter than a DNS header")
    rid, flags, qdcount, ancount, nscount, arcount = wire.HEADER.unpack_from(data)
    if rid != qid or not flags & wire.QR:
        raise FormError("not an answer to our query")
    if qdcount != 1:
        raise FormError("reply without exactly one question")
    qend = 12 + len(question)
    echoed = data[12:qend]
    if echoed != (sent or question):
        # The name may differ in letter case only; type and class must be the same.
        if echoed[-4:] != question[-4:] or echoed[:-4].lower() != question[:-4].lower():
            raise FormError("reply to another question")
        if sent:
            raise CaseMismatch("the reply does not keep the letter case of the question")
    rcode = flags & 0xF
    usual = _usual_answers(data, qend, size, ancount, question)
    answers = usual or _answers(data, qend, size, ancount, question[:-4].lower())
    pos, kept, ttls, addresses, targets, min_ttl, max_ttl, stripped = answers
    answer_end = pos
    keep_authority = False
    negative_ttl: int | None = None
    authority: list[tuple[int, int, int, int]] = []
    tail = data[pos:] if size - pos <= TAIL_MAX else b""
    counts = data[8:12]
    if tail and _PLAIN_TAILS.get(tail) == counts:
        nscount = arcount = 0  # read before: well formed, nothing to keep
    for _ in range(nscount):
        start = pos
        rtype, ttl, fixed, pos = _record(data, _after_owner(data, pos, size), size)
        authority.append((start, fixed, pos, ttl))
        if rtype in wire._AUTHORITY_KEEP:
            keep_authority = True
        if rtype == wire.TYPE_SOA:
            # Two names, then exactly five 32-bit fields.
            if wire.skip_name(data, wire.skip_name(data, fixed + 10)) + 20 != pos:
                raise FormError("malformed SOA")
            # RFC 2308: the negative TTL is the lesser of the SOA's TTL and MINIMUM.
            minimum = wire.U32.unpack_from(data, pos - 4)[0]
            negative_ttl = min(ttl, minimum)
    authority_end = pos
    for _ in range(arcount):  # read only to check that it is well formed
        pos = _after_owner(data, pos, size) + 10
        if pos > size:
            raise FormError("truncated resource record")
        pos += (data[pos - 2] << 8) | data[pos - 1]
        if pos > size:
            raise FormError("resource record runs past the end of the packet")

    if tail and not keep_authority and (nscount or arcount):
        if len(_PLAIN_TAILS) >= TAILS_KEPT:
            _PLAIN_TAILS.clear()
        _PLAIN_TAILS[tail] = counts
    ancount = len(kept)
    negative = rcode == wire.NXDOMAIN or (rcode == wire.NOERROR and ancount == 0)
    if keep_authority:
        end = authority_end
        ttls.extend((fixed - 8, ttl) for _, fixed, _, ttl in authority)
        max_ttl = max(max_ttl, *(t for _, _, _, t in authority))
    else:
        end = answer_end
        nscount = 0
        authority = []
    if negative:
        min_ttl = negative_ttl
    if stripped:
        body, ttls = rewrite.write(data, question, kept + authority, wire.read_name)
    elif echoed == question:
        body = data[12:end]
    elif usual is not None:  # every answer's owner a pointer to the question
        body = question + data[qend:end]
    else:  # the client's question in place of the one in mixed case
        body = rewrite.own_case(data, question, echoed, kept, end)
    return Reply(
        flags,
        rcode,
        ancount,
        nscount,
        body,
        ttls,
        min_ttl,
        negative,
        tuple(targets),
        tuple(addresses),
        max_ttl,
        stripped,
    )


def reply_qid(data: bytes) -> int:
    return (data[0] << 8) | data[1] if len(data) >= 2 else -1
