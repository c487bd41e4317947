"""Malformed and unusual packets: FORMERR, NOTIMP, BADVERS, or silence, as the RFCs say."""

from __future__ import annotations

import socket
import struct

import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import pytest
from support.procs import WARNING_IPV4, Sinkhole, SinkholeFactory

from blackbox.dnsclient import (
    Where,
    addresses,
    ask,
    frame,
    raw_udp,
    recv_frame,
    send,
    v4,
)
from blackbox.standard import BLOCKED, POLICIES

pytestmark = pytest.mark.blackbox

QR, OPCODE_MASK, RD = 0x8000, 0x7800, 0x0100


@pytest.fixture(scope="module")
def server(session_sinkhole_factory: SinkholeFactory) -> Sinkhole:
    return session_sinkhole_factory(POLICIES)


def header(qid: int, flags: int, qd: int = 1, an: int = 0, ns: int = 0, ar: int = 0) -> bytes:
    return struct.pack("!HHHHHH", qid, flags, qd, an, ns, ar)


QUESTION = b"\x07blocked\x07example\x00" + struct.pack("!HH", 1, 1)


def answers_before_probe(where: Where, packets: list[bytes]) -> list[bytes]:
    """Send ``packets``, then a valid probe, on one socket; return what came before its answer.

    The server reads a socket's datagrams in order, so an answer to any of ``packets``
    would arrive before the answer to the probe.
    """
    probe_id = 0xBEEF
    probe = header(probe_id, RD) + QUESTION
    got = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2.0)
        for packet in packets:
            sock.sendto(packet, where)
        sock.sendto(probe, where)
        while True:
            data = sock.recv(65535)
            if data[:2] == struct.pack("!H", probe_id) and data[2] & 0x80 and len(data) > 12:
                return got
            got.append(data)


def parse_header(data: bytes) -> tuple[int, int, int, int, int, int]:
    assert len(data) >= 12, f"answer shorter than a header: {data!r}"
    return struct.unpack_from("!HHHHHH", data)


def assert_error(data: bytes | None, qid: int, rcode: int) -> tuple[int, int, int, int, int, int]:
    assert data is not None, "no answer"
    fields = parse_header(data)
    assert fields[0] == qid
    assert fields[1] & QR
    assert fields[1] & 0xF == rcode, f"rcode {fields[1] & 0xF}, expected {rcode}"
    return fields


def test_packets_shorter_than_a_header_get_no_answer(server: Sinkhole) -> None:
    packets = [bytes(range(1, n + 1)) for n in range(12)]
    assert answers_before_probe(v4(server), packets) == []


def test_garbage_after_a_header_gets_formerr(server: Sinkhole) -> None:
    for body in (b"\x3fabc", b"\xff\xff\xff", b"\x07blocked", b"\x07blocked\x07example\x00\x00"):
        data = raw_udp(v4(server), header(0x1111, RD) + body)
        fields = assert_error(data, 0x1111, dns.rcode.FORMERR)
        assert fields[1] & RD


def test_qdcount_zero_is_formerr(server: Sinkhole) -> None:
    assert_error(raw_udp(v4(server), header(0x2222, RD, qd=0)), 0x2222, dns.rcode.FORMERR)
    assert_error(
        raw_udp(v4(server), header(0x2223, RD, qd=0) + QUESTION), 0x2223, dns.rcode.FORMERR
    )


def test_qdcount_two_is_formerr(server: Sinkhole) -> None:
    packet = header(0x3333, RD, qd=2) + QUESTION + QUESTION
    assert_error(raw_udp(v4(server), packet), 0x3333, dns.rcode.FORMERR)


def test_compression_pointer_in_the_question_is_formerr(server: Sinkhole) -> None:
    for name in (b"\xc0\x0c", b"\x03www\xc0\x0c", b"\x03www\xc0\x10"):
        packet = header(0x4444, RD) + name + struct.pack("!HH", 1, 1)
        assert_error(raw_udp(v4(server), packet), 0x4444, dns.rcode.FORMERR)


def test_a_record_running_past_the_end_is_formerr(server: Sinkhole) -> None:
    packet = header(0x4545, RD, ar=1) + QUESTION + b"\x00\x00\x29\x04"
    assert_error(raw_udp(v4(server), packet), 0x4545, dns.rcode.FORMERR)


@pytest.mark.parametrize("opcode", [dns.opcode.IQUERY, dns.opcode.STATUS, 3, dns.opcode.UPDATE, 15])
def test_unknown_opcode_is_notimp(server: Sinkhole, opcode: int) -> None:
    packet = header(0x5555, RD | (opcode << 11)) + QUESTION
    assert_error(raw_udp(v4(server), packet), 0x5555, dns.rcode.NOTIMP)


@pytest.mark.parametrize("opcode", [dns.opcode.STATUS, dns.opcode.NOTIFY])
def test_notimp_copies_the_opcode(server: Sinkhole, opcode: int) -> None:
    """RFC 1035 4.1.1: the opcode is set by the originator and copied into the response."""
    packet = header(0x5656, RD | (opcode << 11)) + QUESTION
    fields = assert_error(raw_udp(v4(server), packet), 0x5656, dns.rcode.NOTIMP)
    assert (fields[1] & OPCODE_MASK) >> 11 == opcode


def test_class_chaos_is_notimp(server: Sinkhole) -> None:
    q = dns.message.make_query("version.bind", "TXT", "CH")
    r = send(v4(server), q)
    assert r.rcode() == dns.rcode.NOTIMP
    assert r.answer == []


def test_class_chaos_for_a_blocked_name_is_notimp(server: Sinkhole) -> None:
    packet = header(0x5757, RD) + QUESTION[:-2] + struct.pack("!H", 3)
    assert_error(raw_udp(v4(server), packet), 0x5757, dns.rcode.NOTIMP)


def test_responses_are_ignored(server: Sinkhole) -> None:
    packets = [
        header(0x6666, QR | RD) + QUESTION,
        header(0x6667, QR | RD | 0x0080) + QUESTION,
        header(0x6668, QR, qd=0),
        header(0x6669, QR | 0x0003) + QUESTION,
    ]
    assert answers_before_probe(v4(server), packets) == []


def test_responses_over_tcp_are_ignored(server: Sinkhole) -> None:
    with socket.create_connection((server.host, server.port), timeout=2.0) as sock:
        sock.sendall(
            frame(header(0x6670, QR | RD) + QUESTION) + frame(header(0x6671, RD) + QUESTION)
        )
        data = recv_frame(sock)
    assert parse_header(data)[0] == 0x6671


def test_bad_edns_version_is_badvers(server: Sinkhole) -> None:
    q = dns.message.make_query(BLOCKED, "A", use_edns=1)
    r = send(v4(server), q)
    assert r.rcode() == dns.rcode.BADVERS
    assert r.edns == 0
    assert r.answer == []


@pytest.mark.parametrize("qtype", [0, 41])
def test_invalid_question_type_is_formerr(server: Sinkhole, qtype: int) -> None:
    packet = header(0x7777, RD) + QUESTION[:-4] + struct.pack("!HH", qtype, 1)
    assert_error(raw_udp(v4(server), packet), 0x7777, dns.rcode.FORMERR)


def test_zone_transfer_is_refused(server: Sinkhole) -> None:
    r = ask(v4(server), "example", "AXFR", tcp=True)
    assert r.rcode() == dns.rcode.REFUSED


def test_the_server_still_answers(server: Sinkhole) -> None:
    assert server.alive
    assert addresses(ask(v4(server), BLOCKED)) == [WARNING_IPV4]
    assert addresses(ask(v4(server), BLOCKED, tcp=True)) == [WARNING_IPV4]
    assert not ask(v4(server), BLOCKED).flags & dns.flags.TC
