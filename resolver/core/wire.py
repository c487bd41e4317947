"""DNS wire format for the per-query path: read queries, build answers (sans I/O).

Everything here works on bytes and is bounded: every read is checked against the
packet length, names are limited to 255 octets, compression pointers must point
backwards. A malformed packet raises FormError and nothing else.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Sequence
from typing import Final

from resolver.core.errors import FormError, NotImplementedQuery

HEADER = struct.Struct("!HHHHHH")
U16 = struct.Struct("!H")
U32 = struct.Struct("!I")
RR_FIXED = struct.Struct("!HHIH")  # type, class, ttl, rdlength

# Header flag bits.
QR: Final = 0x8000
AA: Final = 0x0400
TC: Final = 0x0200
RD: Final = 0x0100
RA: Final = 0x0080
AD: Final = 0x0020
CD: Final = 0x0010
OPCODE_MASK: Final = 0x7800

# Rcodes.
NOERROR: Final = 0
FORMERR: Final = 1
SERVFAIL: Final = 2
NXDOMAIN: Final = 3
NOTIMP: Final = 4
REFUSED: Final = 5
BADVERS: Final = 16

# Types and classes.
TYPE_A: Final = 1
TYPE_NS: Final = 2
TYPE_CNAME: Final = 5
TYPE_SOA: Final = 6
TYPE_AAAA: Final = 28
TYPE_OPT: Final = 41
TYPE_DS: Final = 43
TYPE_RRSIG: Final = 46
TYPE_NSEC: Final = 47
TYPE_NSEC3: Final = 50
TYPE_IXFR: Final = 251
TYPE_AXFR: Final = 252
TYPE_MAILB: Final = 253
TYPE_MAILA: Final = 254
TYPE_ANY: Final = 255
CLASS_IN: Final = 1

# EDNS.
EDNS_DO: Final = 0x8000
EDNS_UDP_SIZE: Final = 1232  # the payload size we advertise (DNS flag day 2020)
EDE_OPTION: Final = 15
EDE_BLOCKED: Final = 15
EDE_CENSORED: Final = 16
EDE_FILTERED: Final = 17
EDE_NETWORK_ERROR: Final = 23
EDE_NO_REACHABLE_AUTHORITY: Final = 22
EDE_STALE: Final = 3
EDE_STALE_NXDOMAIN: Final = 19

MAX_NAME: Final = 255
MAX_UDP_NO_EDNS: Final = 512

# Types whose presence in an authority section carries information a client needs
# (negative caching, DNSSEC proofs); an authority section without them is only
# NS records and glue, which minimal answers leave out.
_AUTHORITY_KEEP = frozenset({TYPE_SOA, TYPE_NSEC, TYPE_NSEC3})


class Query:
    """A parsed query: the header, the one question and the EDNS state.

    ``qname`` is the question name in wire form, lower-cased, ending with the root
    label: the key for policy matching and caching. ``question`` is the question as
    the client sent it (case preserved), to be echoed in the answer.
    """

    __slots__ = (
        "_key",
        "_text",
        "do",
        "edns",
        "flags",
        "qclass",
        "qid",
        "qname",
        "qtype",
        "question",
        "udp_size",
        "verdict",
    )

    def __init__(
        self,
        qid: bytes,
        flags: int,
        qname: bytes,
        qtype: int,
        qclass: int,
        question: bytes,
        edns: bool,
        udp_size: int,
        do: bool,
    ) -> None:
        self.qid = qid
        self.flags = flags
        self.qname = qname
        self.qtype = qtype
        self.qclass = qclass
        self.question = question
        self.edns = edns
        self.udp_size = udp_size
        self.do = do
        self._key = b""
        self._text = ""
        # The engine's verdict on the name when it decided to ask upstream (None: no
        # entry; an allow or a tcp-only entry otherwise), for when the answer comes back.
        self.verdict: object = None

    @property
    def cache_key(self) -> bytes:
        """Name (case-folded), type, class, DO and CD: what must differ between cached answers."""
        if not self._key:
            bits = _KEY_BITS[(1 if self.do else 0) | (2 if self.flags & CD else 0)]
            self._key = self.qname + self.question[-4:] + bits
        return self._key

    def text_name(self) -> str:
        """The name in presentation form (lower case), worked out once."""
        if not self._text:
            self._text = name_to_text(self.qname)
        return self._text


_KEY_BITS = tuple(bytes((bits,)) for bits in range(4))  # DO and CD, the cache key's last octet


def skip_name(data: bytes, pos: int) -> int:
    """Return the offset just past the (possibly compressed) name at ``pos``."""
    end = len(data)
    while True:
        if pos >= end:
            raise FormError("name runs past the end of the packet")
        n = data[pos]
        if n == 0:
            return pos + 1
        if n & 0xC0 == 0xC0:
            if pos + 2 > end:
                raise FormError("truncated compression pointer")
            return pos + 2
        if n & 0xC0:
            raise FormError("unknown label type")
        pos += n + 1


def read_name(data: bytes, pos: int) -> tuple[bytes, int]:
    """Read a possibly compressed name; return its uncompressed wire form and the next offset.

    Pointers must point strictly backwards, which rules out loops; the total length
    is bounded by MAX_NAME.
    """
    end = len(data)
    labels: list[bytes] = []
    total = 1
    after = -1
    limit = pos
    while True:
        if pos >= end:
            raise FormError("name runs past the end of the packet")
        n = data[pos]
        if n == 0:
            pos += 1
            break
        if n & 0xC0 == 0xC0:
            if pos + 2 > end:
                raise FormError("truncated compression pointer")
            target = ((n & 0x3F) << 8) | data[pos + 1]
            if after < 0:
                after = pos + 2
            if target >= limit:
                raise FormError("compression pointer does not point backwards")
            limit = target
            pos = target
            continue
        if n & 0xC0:
            raise FormError("unknown label type")
        if pos + 1 + n > end:
            raise FormError("label runs past the end of the packet")
        total += n + 1
        if total > MAX_NAME:
            raise FormError("name longer than 255 octets")
        labels.append(data[pos : pos + 1 + n])
        pos += n + 1
    return b"".join(labels) + b"\x00", (after if after >= 0 else pos)


def _parse_opt(data: bytes, pos: int) -> tuple[int, int, int]:
    """Parse an OPT RR at ``pos``; return (udp size, ttl field, end offset)."""
    if pos + 11 > len(data) or data[pos] != 0:
        raise FormError("OPT record must be owned by the root name")
    _type, udp_size, ttl, rdlen = RR_FIXED.unpack_from(data, pos + 1)
    end = pos + 11 + rdlen
    if end > len(data):
        raise FormError("OPT record runs past the end of the packet")
    # Options must be well formed: code, length, data.
    opt = pos + 11
    while opt < end:
        if opt + 4 > end:
            raise FormError("truncated EDNS option")
        opt += 4 + U16.unpack_from(data, opt + 2)[0]
        if opt > end:
            raise FormError("EDNS option runs past the OPT record")
    return udp_size, ttl, end


def skip_rr(data: bytes, pos: int) -> tuple[int, int, int]:
    """Skip one resource record; return (type, offset of its fixed part, next offset)."""
    pos = skip_name(data, pos)
    if pos + 10 > len(data):
        raise FormError("truncated resource record")
    rtype, _rclass, _ttl, rdlen = RR_FIXED.unpack_from(data, pos)
    end = pos + 10 + rdlen
    if end > len(data):
        raise FormError("resource record runs past the end of the packet")
    return rtype, pos, end


def parse_query(data: bytes) -> Query:
    """Parse a query: header, exactly one question, and the OPT record if any.

    Raises FormError for malformed input and NotImplementedQuery for a query we do not
    serve: another opcode (judged on the header alone), another class, MAILA/MAILB.
    Responses (QR=1) must be filtered out by the caller.
    """
    size = len(data)
    if size < 12:
        raise FormError("shorter than a DNS header")
    if data[2] & 0x78:
        # The opcode first: other opcodes (NOTIFY, UPDATE, unassigned ...) lay out their
        # sections differently, so their counts say nothing we could judge. Answered
        # NOTIMP with the header alone, whatever follows (RFC 1035 4.1.1).
        raise NotImplementedQuery("only standard queries are served")
    if data[4:6] != b"\x00\x01":
        raise FormError("a query must carry exactly one question")
    # The question name: uncompressed (nothing precedes it that a pointer could use).
    pos = 12
    while True:
        if pos >= size:
            raise FormError("question name runs past the end of the packet")
        n = data[pos]
        if n == 0:
            break
        if n > 63:
            raise FormError("bad label in the question name")
        pos += n + 1
    name_end = pos + 1
    if name_end - 12 > MAX_NAME:
        raise FormError("question name longer than 255 octets")
    qend = name_end + 4
    if qend > size:
        raise FormError("truncated question")
    qtype = (data[name_end] << 8) | data[name_end + 1]

    edns = False
    do = False
    udp_size = MAX_UDP_NO_EDNS
    version = 0
    counts = data[6:12]
    if counts == b"\x00\x00\x00\x00\x00\x01" and data[qend : qend + 3] == b"\x00\x00\x29":
        # The usual shape: one question and our own kind of OPT record.
        if qend + 11 > size:
            raise FormError("truncated OPT record")
        rdlen = (data[qend + 9] << 8) | data[qend + 10]
        if rdlen:
            _parse_opt(data, qend)  # checks the options are well formed
        edns = True
        udp_size = max((data[qend + 3] << 8) | data[qend + 4], MAX_UDP_NO_EDNS)
        version = data[qend + 6]
        do = bool(data[qend + 7] & 0x80)
    elif counts != b"\x00\x00\x00\x00\x00\x00":
        _ancount, _nscount, arcount = struct.unpack_from("!HHH", data, 6)
        pos = qend
        for _ in range(_ancount + _nscount):
            pos = skip_rr(data, pos)[2]
        for _ in range(arcount):
            pos_name_end = skip_name(data, pos)
            if pos_name_end + 2 <= size and U16.unpack_from(data, pos_name_end)[0] == TYPE_OPT:
                if edns:
                    raise FormError("more than one OPT record")
                size_field, ttl, pos = _parse_opt(data, pos)
                edns = True
                udp_size = max(size_field, MAX_UDP_NO_EDNS)
                do = bool(ttl & EDNS_DO)
                version = (ttl >> 16) & 0xFF
            else:
                pos = skip_rr(data, pos)[2]

    flags = (data[2] << 8) | data[3]
    qclass = (data[name_end + 2] << 8) | data[name_end + 3]
    query = Query(
        data[:2], flags, data[12:name_end].lower(), qtype, qclass, data[12:qend], edns, udp_size, do
    )
    if version:
        raise BadVersion(query)
    if qclass != CLASS_IN:
        if qtype == TYPE_OPT or qtype == 0:
            raise FormError("invalid question type")
        raise NotImplementedQuery("only class IN is served", query)
    if qtype == TYPE_OPT or qtype == 0:
        raise FormError("invalid question type")
    if qtype in (TYPE_MAILA, TYPE_MAILB):
        raise NotImplementedQuery("obsolete meta type", query)
    return query


class BadVersion(FormError):
    """An EDNS version we do not speak: answered with BADVERS (RFC 6891 6.1.3), the
    question and an OPT record echoed (``query``)."""

    def __init__(self, query: Query) -> None:
        super().__init__("unsupported EDNS version")
        self.rcode = BADVERS  # set here: compiled, a class attribute would not override
        self.query = query


# --- building answers -------------------------------------------------------


def build_opt(do: bool, ext_rcode: int = 0, options: bytes = b"") -> bytes:
    """An OPT pseudo-record advertising our UDP payload size."""
    ttl = (ext_rcode << 24) | (EDNS_DO if do else 0)
    return b"\x00" + RR_FIXED.pack(TYPE_OPT, EDNS_UDP_SIZE, ttl, len(options)) + options


def build_ede(code: int, text: str = "") -> bytes:
    """An Extended DNS Error option (RFC 8914)."""
    payload = U16.pack(code) + text.encode("utf-8")
    return U16.pack(EDE_OPTION) + U16.pack(len(payload)) + payload


def reply_flags(query_flags: int, rcode: int) -> int:
    """Flags of an answer we originate: QR, RA, and the opcode, RD and CD copied from the query."""
    return QR | RA | (query_flags & (OPCODE_MASK | RD | CD)) | (rcode & 0xF)


def build_reply(
    query: Query,
    rcode: int,
    answer: bytes = b"",
    ancount: int = 0,
    authority: bytes = b"",
    nscount: int = 0,
    ede: bytes = b"",
) -> bytes:
    """A complete answer to ``query`` built from record bytes that follow the question."""
    if query.edns:
        extra = build_opt(query.do, rcode >> 4, ede)
        arcount = 1
    else:
        extra = b""
        arcount = 0
    header = HEADER.pack(
        U16.unpack(query.qid)[0], reply_flags(query.flags, rcode), 1, ancount, nscount, arcount
    )
    return header + query.question + answer + authority + extra


def build_error_reply(data: bytes, rcode: int, query: Query | None = None) -> bytes | None:
    """An error answer (FORMERR, NOTIMP, REFUSED, SERVFAIL ...) to a packet.

    With a parsed query the question (and an OPT record) is echoed; otherwise only
    the header is, and a packet without a readable header gets no answer at all.
    """
    if query is not None:
        return build_reply(query, rcode)
    if len(data) < 12:
        return None
    qid, flags = struct.unpack_from("!HH", data)
    if flags & OPCODE_MASK:
        # RA, AD and CD are defined for standard queries only: not set for other opcodes.
        flags = QR | (flags & (OPCODE_MASK | RD)) | (rcode & 0xF)
    else:
        flags = QR | RA | (flags & (RD | CD)) | (rcode & 0xF)
    return HEADER.pack(qid, flags, 0, 0, 0, 0)


def build_truncated(reply: bytes) -> bytes:
    """The header and question of ``reply`` with TC set: the client retries over TCP.

    Keeps the OPT record (so the client still sees EDNS) when it is the last record.
    """
    qid, flags, _qd, _an, _ns, arcount = HEADER.unpack_from(reply)
    pos = skip_name(reply, 12) + 4
    opt = b""
    if arcount:
        # Our own answers put the OPT record last; find it by walking the records.
        start = pos
        _, _, _, ancount, nscount, _ = HEADER.unpack_from(reply)
        for _ in range(ancount + nscount + arcount):
            rtype, _fixed, end = skip_rr(reply, start)
            if rtype == TYPE_OPT:
                opt = reply[start:end]
            start = end
    return HEADER.pack(qid, flags | TC, 1, 0, 0, 1 if opt else 0) + reply[12:pos] + opt


def fit(reply: bytes, limit: int) -> bytes:
    """``reply`` if it fits in ``limit`` octets, else its truncated form."""
    return reply if len(reply) <= limit else build_truncated(reply)


def build_record(rtype: int, ttl: int, rdata: bytes, owner: bytes = b"\xc0\x0c") -> bytes:
    """A resource record of class IN; the owner defaults to a pointer to the question name."""
    return owner + RR_FIXED.pack(rtype, CLASS_IN, ttl, len(rdata)) + rdata


def build_soa_rdata(mname: bytes, rname: bytes, serial: int, minimum: int) -> bytes:
    """SOA rdata (names in wire form); refresh, retry and expire are fixed, sane values."""
    return mname + rname + struct.pack("!IIIII", serial, 1800, 900, 604800, minimum)


# --- names ------------------------------------------------------------------
#
# The one codec between wire names and their presentation form (RFC 1035 5.1): a
# byte that is not printable ASCII (space included) is written \DDD, three decimal
# digits; the dot, the backslash and the other characters zone files treat specially
# (" ( ) ; @ $) are written with a backslash before them; every other byte stands for
# itself. This is the form dnspython and BIND write and read.

_SPECIAL = b'"().;\\@$'  # written with a backslash before them
_PLAIN = bytes(c for c in range(0x21, 0x7F) if c not in _SPECIAL)  # written as they are
_BYTE_TEXT = tuple(
    chr(c) if c in _PLAIN else f"\\{chr(c)}" if c in _SPECIAL else f"\\{c:03d}" for c in range(256)
)


def label_text(label: bytes) -> str:
    """Presentation form of one label."""
    if label.translate(None, _PLAIN):  # something to escape
        return "".join([_BYTE_TEXT[c] for c in label])
    return label.decode("ascii")


def name_to_text(wire_name: bytes) -> str:
    """Presentation form of an uncompressed wire name, without the trailing dot ("." for the
    root)."""
    labels = []
    pos = 0
    while pos < len(wire_name):
        n = wire_name[pos]
        if n == 0:
            break
        labels.append(label_text(wire_name[pos + 1 : pos + 1 + n]))
        pos += n + 1
    return ".".join(labels) or "."


# Names written in bulk: the octets written otherwise than as they are. In the usual
# name they are its label lengths and its end alone, so they split it into its labels.
_NOT_PLAIN = bytes(c for c in range(256) if c not in _PLAIN)
_SPLIT_NOT_PLAIN = re.compile(b"[" + b"".join(b"\\x%02x" % c for c in _NOT_PLAIN) + b"]")
_LENGTHS = bytes(c for c in _NOT_PLAIN if 0 < c < 64)
_LENGTH_TO_DOT = bytes.maketrans(_LENGTHS, b"." * len(_LENGTHS))


def names_text(names: Sequence[bytes], end: str) -> str:
    """The text of every name (name_to_text), each followed by ``end``; ``names`` are
    well-formed wire names. When no label needs an escape and none is the root (the
    usual list), all of them in a few passes without a step per name or label."""
    joined = b"".join(names)
    if names and joined[:1] != b"\x00" and b"\x00\x00" not in joined:
        marks = joined.translate(None, _PLAIN)  # lengths and ends, if the names are usual
        labels = list(map(len, _SPLIT_NOT_PLAIN.split(joined)))
        # Usual: a mark first, and every mark where the one before it says (each label
        # as long as its length octet; a name's end right before the next name's first
        # length), so no length octet was taken for part of a label.
        if labels[0] == 0 and labels[1:] == list(marks):
            text = joined.translate(_LENGTH_TO_DOT).decode("ascii")
            return text[1:-1].replace("\x00.", end) + end
    return "".join([name_to_text(name) + end for name in names])


def text_to_name(text: str) -> bytes:
    """Wire form of a presentation name, lower-cased (ASCII letters only), root-terminated.

    The trailing dot is optional; escapes (``\\.``, ``\\\\``, ``\\DDD``) are read as in
    zone files. Raises ValueError for an empty label, a label over 63 octets, a name over
    255 octets, a bad escape or a character outside ASCII.
    """
    text = text.strip()
    if "\\" in text:
        labels = _escaped_labels(text)
    else:
        if text.endswith("."):
            text = text[:-1]
        if not text:
            return b"\x00"
        labels = [label.encode("ascii") for label in text.split(".")]
    out = bytearray()
    for raw in labels:
        if not 0 < len(raw) <= 63:
            raise ValueError(f"bad label length in {text!r}")
        out.append(len(raw))
        out += raw
    out.append(0)
    if len(out) > MAX_NAME:
        raise ValueError(f"name longer than 255 octets: {text!r}")
    return bytes(out).lower()


def _escaped_labels(text: str) -> list[bytes]:
    """The labels of a presentation name with escapes (an absolute name: trailing dot)."""
    labels: list[bytes] = []
    label = bytearray()
    i, end = 0, len(text)
    while i < end:
        c = text[i]
        i += 1
        if c == ".":
            if not label:
                raise ValueError(f"empty label in {text!r}")
            labels.append(bytes(label))
            label = bytearray()
            continue
        if c == "\\":
            digits = text[i : i + 3]
            if len(digits) == 3 and digits.isascii() and digits.isdigit():
                value = int(digits)
                if value > 255:
                    raise ValueError(f"escape \\{digits} above 255 in {text!r}")
                label.append(value)
                i += 3
                continue
            if i >= end or text[i] in "0123456789":
                raise ValueError(f"incomplete escape in {text!r}")
            c = text[i]
            i += 1
        if not c.isascii():
            raise ValueError(f"{c!r} in {text!r} is not ASCII: write the name's xn-- form")
        label.append(ord(c))
    if label:
        labels.append(bytes(label))
    return labels
