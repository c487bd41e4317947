"""EDNS(0) padding of answers on encrypted transports (RFC 7830, RFC 8467).

Over TLS the length of an answer can tell an observer which name was asked. Answers
sent over DoT and DoH are padded to a multiple of 468 octets (RFC 8467 section 4.1,
block-length padding) whenever they carry an OPT record, that is whenever the query
used EDNS, whether or not it carried the Padding option itself (RFC 7830 section 3
lets a responder pad then). An answer without EDNS has nowhere to put the option and
goes as it is. Pure: bytes in, bytes out.
"""

from __future__ import annotations

import struct

from resolver.core import wire
from resolver.core.errors import FormError

BLOCK = 468
PADDING_OPTION = 12
MAX_MESSAGE = 65535

_HEADER = struct.Struct("!HHHH")  # question, answer, authority, additional counts


def pad(reply: bytes, block: int = BLOCK, limit: int = MAX_MESSAGE) -> bytes:
    """``reply`` with a Padding option in its OPT record making it a multiple of ``block``
    octets; as it is when it has no OPT record, has a Padding option already, is not a
    well-formed message, or would grow past ``limit``."""
    if len(reply) < 12:
        return reply
    qdcount, ancount, nscount, arcount = _HEADER.unpack_from(reply, 4)
    if not arcount:
        return reply
    try:
        pos = 12
        for _ in range(qdcount):
            pos = wire.skip_name(reply, pos) + 4
        for _ in range(ancount + nscount):
            pos = wire.skip_rr(reply, pos)[2]
        for _ in range(arcount):
            rtype, fixed, end = wire.skip_rr(reply, pos)
            if rtype == wire.TYPE_OPT:
                return _padded(reply, fixed, end, block, limit)
            pos = end
    except FormError:
        return reply
    return reply


def _padded(reply: bytes, fixed: int, end: int, block: int, limit: int) -> bytes:
    """``reply`` whose OPT record has its fixed part at ``fixed`` and ends at ``end``."""
    options = reply[fixed + 10 : end]
    pos = 0
    while pos + 4 <= len(options):
        code, size = struct.unpack_from("!HH", options, pos)
        if code == PADDING_OPTION:
            return reply  # padded already
        pos += 4 + size
    grown = len(reply) + 4
    fill = -grown % block
    if grown + fill > limit:
        return reply
    rdlength = len(options) + 4 + fill
    option = struct.pack("!HH", PADDING_OPTION, fill) + bytes(fill)
    return (
        reply[: fixed + 8]
        + struct.pack("!H", rdlength)
        + options
        + option
        + reply[end:]  # records after the OPT one (none in our own answers)
    )
