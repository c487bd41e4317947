"""Queries with an opcode other than QUERY: judged on the header alone, answered NOTIMP
with QR, the opcode and RD only (RA, AD and CD are defined for standard queries)."""

from __future__ import annotations

import struct

import pytest

from resolver.core import wire
from resolver.core.errors import FormError, NotImplementedQuery

from .packets import header, question

ALL_BITS = wire.AA | wire.TC | wire.RD | wire.RA | 0x0040 | wire.AD | wire.CD


@pytest.mark.parametrize(
    "body",
    [
        b"",  # header only, QDCOUNT 0 (what ISC's compliance tester sends)
        b"\xff\xff\xff",  # garbage
        question("example.com") * 2,  # two questions
    ],
)
@pytest.mark.parametrize("opcode", [1, 2, 3, 4, 5, 6, 15])
def test_the_opcode_is_judged_before_the_sections(body: bytes, opcode: int) -> None:
    qd = body.count(b"\x07example")
    data = header(qid=0x1234, flags=wire.RD | (opcode << 11), qd=qd) + body
    with pytest.raises(NotImplementedQuery) as info:
        wire.parse_query(data)
    assert not isinstance(info.value, FormError)
    assert info.value.query is None


def test_a_header_only_standard_query_is_still_formerr() -> None:
    with pytest.raises(FormError):
        wire.parse_query(header(qd=0))


@pytest.mark.parametrize("opcode", [1, 2, 4, 5, 15])
def test_notimp_for_another_opcode_sets_only_qr_opcode_and_rd(opcode: int) -> None:
    data = header(qid=0xBEEF, flags=ALL_BITS | (opcode << 11), qd=0)
    answer = wire.build_error_reply(data, wire.NOTIMP)
    assert answer is not None
    qid, flags, qd, an, ns, ar = struct.unpack("!HHHHHH", answer)
    assert (qid, qd, an, ns, ar) == (0xBEEF, 0, 0, 0, 0)
    assert flags == wire.QR | (opcode << 11) | wire.RD | wire.NOTIMP


def test_an_error_to_a_standard_query_keeps_ra_rd_and_cd() -> None:
    data = header(qid=7, flags=ALL_BITS, qd=0)
    answer = wire.build_error_reply(data, wire.FORMERR)
    assert answer is not None
    flags = struct.unpack_from("!H", answer, 2)[0]
    assert flags == wire.QR | wire.RA | wire.RD | wire.CD | wire.FORMERR
