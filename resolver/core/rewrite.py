"""Upstream answer sections cut down to the query's CNAME chain, and written again (pure).

An upstream reply may carry answer records that do not answer the question (``bank.test
A`` in the answer for ``victim.test``), from a broken upstream or a forged packet. Only
records owned by the query name, or by a name that a CNAME reached from it points to,
are kept; so are DNAMEs owned by an ancestor of one of those names, and the signatures
at a kept DNAME's owner. When records are left out, the kept ones are written again:
a compression pointer may point into a removed record, so every name is read whole
(by the caller) and compressed afresh against what was written before it.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Final

from resolver.core.errors import FormError

TYPE_CNAME: Final = 5
TYPE_RRSIG: Final = 46
TYPE_DNAME: Final = 39
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
MAX_POINTER = 0x3FFF  # the largest offset a compression pointer can hold

# Types whose data hold domain names: (octets before the first name, how many names,
# whether they may be compressed when written: RFC 3597 4 allows it for RFC 1035's
# types only). Whatever follows the names is copied as it is.
RDATA_NAMES: dict[int, tuple[int, int, bool]] = {
    2: (0, 1, True),  # NS
    3: (0, 1, True),  # MD
    4: (0, 1, True),  # MF
    5: (0, 1, True),  # CNAME
    6: (0, 2, True),  # SOA: MNAME, RNAME, then five 32-bit fields
    7: (0, 1, True),  # MB
    8: (0, 1, True),  # MG
    9: (0, 1, True),  # MR
    12: (0, 1, True),  # PTR
    14: (0, 2, True),  # MINFO
    15: (2, 1, True),  # MX
    17: (0, 2, False),  # RP
    18: (2, 1, False),  # AFSDB
    21: (2, 1, False),  # RT
    26: (2, 2, False),  # PX
    33: (6, 1, False),  # SRV
    36: (2, 1, False),  # KX
    39: (0, 1, False),  # DNAME
}

# Reads the (possibly compressed) name at an offset: its uncompressed wire form and the
# offset after it (wire.read_name, which checks the pointers).
NameReader = Callable[[bytes, int], tuple[bytes, int]]
# A record of a message: (start, start of its fixed part, end, TTL).
Span = tuple[int, int, int, int]


def chain_members(qname: bytes, records: list[tuple[bytes, int, bytes]]) -> list[bool] | None:
    """Which answer records belong to the answer for ``qname``: ``records`` holds each
    one's owner (lower case), type and, for a CNAME, its target (lower case). None when
    every record does (the usual case, decided without building anything)."""
    reached = {qname}
    for owner, rtype, target in records:  # the usual order: each name after its CNAME
        if owner not in reached:
            break
        if rtype == TYPE_CNAME:
            reached.add(target)
    else:
        return None
    cnames: dict[bytes, list[bytes]] = {}
    for owner, rtype, target in records:
        if rtype == TYPE_CNAME:
            cnames.setdefault(owner, []).append(target)
    names = {qname}
    todo = [qname]
    while todo:  # every name reached from the query name through CNAMEs, in any order
        for target in cnames.get(todo.pop(), ()):
            if target not in names:
                names.add(target)
                todo.append(target)
    dnames: set[bytes] = set()
    if any(rtype == TYPE_DNAME for _, rtype, _ in records):
        above = {ancestor for name in names for ancestor in _ancestors(name)}
        dnames = {o for o, rtype, _ in records if rtype == TYPE_DNAME and o in above}
    return [
        owner in names or (owner in dnames and rtype in (TYPE_DNAME, TYPE_RRSIG))
        for owner, rtype, _ in records
    ]


def _ancestors(name: bytes) -> list[bytes]:
    """``name`` and every name above it, up to the root (wire form)."""
    out = []
    pos = 0
    while pos < len(name):
        out.append(name[pos:])
        if name[pos] == 0:
            break
        pos += name[pos] + 1
    return out


def write(
    data: bytes, question: bytes, spans: list[Span], read_name: NameReader
) -> tuple[bytes, list[tuple[int, int]]]:
    """``question`` followed by the records of ``data`` at ``spans``, every name read
    whole and compressed afresh: the body of a message (offsets count from the end of a
    12-octet header), and (offset of its TTL field, TTL) for each record."""
    out = bytearray(question)
    table: dict[bytes, int] = {}
    _remember(table, question[:-4], 12)
    ttls: list[tuple[int, int]] = []
    for start, fixed, end, ttl in spans:
        _name(out, read_name(data, start)[0], table)
        out += data[fixed : fixed + 4]  # type and class
        ttls.append((len(out), ttl))
        out += _U32.pack(ttl)
        length_at = len(out)
        out += b"\x00\x00"
        at = fixed + 10
        shape = RDATA_NAMES.get(_U16.unpack_from(data, fixed)[0])
        if shape is not None:
            before, count, compress = shape
            out += data[at : at + before]
            at += before
            for _ in range(count):
                name, at = read_name(data, at)
                _name(out, name, table if compress else None)
            if at > end:
                raise FormError("record data runs past its length")
        out += data[at:end]
        _U16.pack_into(out, length_at, len(out) - length_at - 2)
    return bytes(out), ttls


def own_case(data: bytes, question: bytes, echoed: bytes, answers: list[Span], end: int) -> bytes:
    """The body of ``data`` up to ``end`` with ``question`` in place of ``echoed`` (the
    same in other letter case), and in place of the name where an answer record spells
    its owner out (not as a pointer) in the echoed case."""
    body = question + data[12 + len(question) : end]
    n = len(question) - 4
    name = echoed[:n]
    for start, _, _, _ in answers:
        if data[start : start + n] == name:
            break
    else:
        return body  # the usual case: every owner a pointer to the question
    out = bytearray(body)
    for start, _, _, _ in answers:
        if data[start : start + n] == name:
            out[start - 12 : start - 12 + n] = question[:n]
    return bytes(out)


def _remember(table: dict[bytes, int], name: bytes, offset: int, stop: int = 256) -> None:
    """Every suffix of ``name`` (written at ``offset``) that starts before ``stop``, as a
    target for later pointers."""
    pos = 0
    stop = min(stop, len(name))
    while pos < stop and name[pos] != 0 and offset + pos <= MAX_POINTER:
        table.setdefault(name[pos:].lower(), offset + pos)
        pos += name[pos] + 1


def _name(out: bytearray, name: bytes, table: dict[bytes, int] | None) -> None:
    """Append ``name``, its longest suffix already written replaced by a pointer."""
    if table is None:
        out += name
        return
    start = 12 + len(out)
    pos = 0
    while name[pos] != 0:
        at = table.get(name[pos:].lower())
        if at is not None:
            out += name[:pos]
            out += _U16.pack(0xC000 | at)
            _remember(table, name, start, pos)
            return
        pos += name[pos] + 1
    out += name
    _remember(table, name, start)
