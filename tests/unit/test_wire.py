"""The wire codec: queries in, answers out, upstream replies normalised; read back with dnslib."""

from __future__ import annotations

import struct

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rrset
import dnslib
import pytest

from resolver.core import outbound, wire
from resolver.core.errors import FormError, NotImplementedQuery

from .packets import header, name, opt, parsed, query, question, record, soa_rdata

# --- parse_query: golden packets ------------------------------------------------


def test_parse_dnslib_query_lowercases_qname_and_keeps_question_case() -> None:
    packet = bytes(dnslib.DNSRecord.question("WWW.Example.COM", "AAAA").pack())
    q = wire.parse_query(packet)
    assert q.qname == b"\x03www\x07example\x03com\x00"
    assert q.question == b"\x03WWW\x07Example\x03COM\x00" + struct.pack("!HH", 28, 1)
    assert q.qtype == wire.TYPE_AAAA
    assert q.qclass == wire.CLASS_IN
    assert q.qid == packet[:2]
    assert q.flags & wire.RD
    assert not q.edns
    assert not q.do
    assert q.udp_size == wire.MAX_UDP_NO_EDNS
    assert q.text_name() == "www.example.com"


def test_parse_dnslib_query_with_edns_and_do() -> None:
    record_ = dnslib.DNSRecord.question("Host.Example.net", "MX")
    record_.add_ar(dnslib.EDNS0(udp_len=4096, flags="do"))
    q = wire.parse_query(bytes(record_.pack()))
    assert q.qname == name("host.example.net")
    assert q.qtype == 15  # MX
    assert q.edns
    assert q.do
    assert q.udp_size == 4096


def test_parse_dnspython_query_with_options() -> None:
    message = dns.message.make_query(
        "Mixed.CASE.example.",
        "TXT",
        use_edns=0,
        payload=1400,
        want_dnssec=False,
        options=[dns.edns.GenericOption(10, b"12345678")],  # a client cookie
    )
    message.flags |= dns.flags.CD
    q = wire.parse_query(message.to_wire())
    assert q.qname == name("mixed.case.example")
    assert q.question.startswith(name("Mixed.CASE.example"))
    assert q.qtype == 16
    assert q.edns
    assert not q.do
    assert q.udp_size == 1400
    assert q.flags & wire.CD
    assert struct.unpack("!H", q.qid)[0] == message.id


def test_small_edns_size_is_raised_to_512() -> None:
    message = dns.message.make_query("a.example", "A", use_edns=0, payload=256)
    assert wire.parse_query(message.to_wire()).udp_size == 512


def test_root_name_query() -> None:
    q = wire.parse_query(header() + b"\x00" + struct.pack("!HH", wire.TYPE_NS, 1))
    assert q.qname == b"\x00"
    assert q.text_name() == "."


def test_name_of_exactly_255_octets_is_accepted() -> None:
    labels = ["a" * 63, "b" * 63, "c" * 63, "d" * 61]
    qname = ".".join(labels)
    assert len(name(qname)) == 255
    assert wire.parse_query(query(qname)).qname == name(qname)


def test_cache_key_ignores_case_but_not_type_do_or_cd() -> None:
    base = parsed("Example.com").cache_key
    assert parsed("EXAMPLE.COM").cache_key == base
    assert parsed("example.com", wire.TYPE_AAAA).cache_key != base
    assert parsed("example.com", do=True).cache_key != base
    assert parsed("example.com", flags=wire.RD | wire.CD).cache_key != base
    assert parsed("example.com", edns=True).cache_key == base


# --- parse_query: malformed packets ---------------------------------------------


def _formerr(packet: bytes) -> FormError:
    with pytest.raises(FormError) as info:
        wire.parse_query(packet)
    return info.value


@pytest.mark.parametrize("size", [0, 1, 11])
def test_shorter_than_header(size: int) -> None:
    _formerr(query()[:size])


@pytest.mark.parametrize("qdcount", [0, 2])
def test_question_count_must_be_one(qdcount: int) -> None:
    _formerr(header(qd=qdcount) + question() * qdcount)


def test_compression_pointer_in_question() -> None:
    _formerr(header() + b"\xc0\x0c" + struct.pack("!HH", 1, 1))


def test_pointer_after_a_label_in_question() -> None:
    _formerr(header() + b"\x03www\xc0\x0c" + struct.pack("!HH", 1, 1))


@pytest.mark.parametrize("label_type", [0x40, 0x80])
def test_reserved_label_types(label_type: int) -> None:
    _formerr(header() + bytes((label_type | 3,)) + b"abc\x00" + struct.pack("!HH", 1, 1))


def test_label_running_past_the_end() -> None:
    _formerr(header() + b"\x07exam")


def test_name_without_terminating_root() -> None:
    _formerr(header() + b"\x07example")


def test_name_longer_than_255_octets() -> None:
    qname = ".".join(["a" * 63] * 4)  # 4 * 64 + 1 = 257 octets
    _formerr(query(qname))


@pytest.mark.parametrize("cut", [1, 2, 3, 4])
def test_truncated_question(cut: int) -> None:
    _formerr(query()[:-cut])


def test_two_opt_records() -> None:
    _formerr(header(ar=2) + question() + opt() + opt())


def test_opt_with_truncated_option_header() -> None:
    _formerr(header(ar=1) + question() + opt(options=b"\x00\x0a\x00"))


def test_opt_with_option_longer_than_the_record() -> None:
    _formerr(header(ar=1) + question() + opt(options=b"\x00\x0a\x00\x08abc"))


def test_opt_not_owned_by_root() -> None:
    bad = b"\x01a\x00" + opt()[1:]
    _formerr(header(ar=1) + question() + bad)


def test_opt_rdata_past_the_end() -> None:
    _formerr((header(ar=1) + question() + opt(options=b"\x00\x0a\x00\x02ab"))[:-2])


@pytest.mark.parametrize(("an", "ns", "ar"), [(1, 0, 0), (0, 1, 0), (0, 0, 1), (0, 0, 3)])
def test_counts_claiming_missing_records(an: int, ns: int, ar: int) -> None:
    _formerr(header(an=an, ns=ns, ar=ar) + question())


def test_additional_record_running_past_the_end() -> None:
    rr = record(b"\x00", wire.TYPE_A, 60, b"\x01\x02\x03\x04")
    _formerr(header(ar=1) + question() + rr[:-1])


@pytest.mark.parametrize("qtype", [0, wire.TYPE_OPT])
def test_invalid_question_types(qtype: int) -> None:
    _formerr(query(qtype=qtype))


def test_other_records_before_opt_are_skipped() -> None:
    rr = record(b"\xc0\x0c", wire.TYPE_A, 60, b"\x01\x02\x03\x04")
    q = wire.parse_query(header(an=1, ar=2) + question() + rr + rr + opt(udp=2048, do=True))
    assert q.edns
    assert q.do
    assert q.udp_size == 2048


# --- parse_query: well formed but not served -------------------------------------


@pytest.mark.parametrize("opcode", [1, 2, 4, 5, 15])
def test_opcode_other_than_query_is_not_implemented(opcode: int) -> None:
    """Other opcodes lay out their sections differently: the answer need not echo them,
    but when a query is attached it must be the one that was sent."""
    with pytest.raises(NotImplementedQuery) as info:
        wire.parse_query(query("Example.com", flags=opcode << 11, edns=True))
    assert not isinstance(info.value, FormError)
    q = info.value.query
    if q is not None:
        assert isinstance(q, wire.Query)
        assert q.qname == name("example.com")
        assert q.question == question("Example.com")


@pytest.mark.parametrize("qclass", [3, 4, 254, 255])
def test_class_other_than_in_is_not_implemented(qclass: int) -> None:
    with pytest.raises(NotImplementedQuery) as info:
        wire.parse_query(query(qclass=qclass))
    q = info.value.query
    assert isinstance(q, wire.Query)
    assert q.qclass == qclass


@pytest.mark.parametrize("qtype", [wire.TYPE_MAILA, wire.TYPE_MAILB])
def test_obsolete_meta_types_are_not_implemented(qtype: int) -> None:
    with pytest.raises(NotImplementedQuery) as info:
        wire.parse_query(query(qtype=qtype))
    assert isinstance(info.value.query, wire.Query)


def test_edns_version_1_is_bad_version() -> None:
    packet = header(ar=1) + question("Example.com") + opt(udp=4096, do=True, version=1)
    with pytest.raises(wire.BadVersion) as info:
        wire.parse_query(packet)
    assert isinstance(info.value, FormError)
    q = info.value.query
    assert q.edns
    assert q.do
    assert q.question == question("Example.com")


# --- building answers ---------------------------------------------------------


def _opt_of(reply: dnslib.DNSRecord) -> dnslib.RR:
    opts = [rr for rr in reply.ar if rr.rtype == wire.TYPE_OPT]
    assert len(opts) == 1
    return opts[0]


def test_build_reply_without_edns() -> None:
    q = parsed("WWW.Example.com", flags=wire.RD | wire.CD | wire.AD)
    answer = wire.build_record(wire.TYPE_A, 300, b"\xc0\x00\x02\x01")
    raw = wire.build_reply(q, wire.NOERROR, answer, 1)
    reply = dnslib.DNSRecord.parse(raw)
    h = reply.header
    assert h.id == 0x1234
    assert (h.qr, h.aa, h.tc, h.rd, h.ra, h.cd, h.ad) == (1, 0, 0, 1, 1, 1, 0)
    assert h.rcode == 0
    assert (h.q, h.a, h.auth, h.ar) == (1, 1, 0, 0)
    assert raw[12 : 12 + len(q.question)] == q.question
    assert str(reply.q.qname) == "WWW.Example.com."
    assert str(reply.rr[0].rname) == "WWW.Example.com."
    assert str(reply.rr[0].rdata) == "192.0.2.1"
    assert reply.rr[0].ttl == 300


@pytest.mark.parametrize("do", [False, True])
def test_build_reply_with_edns_echoes_do(do: bool) -> None:
    q = parsed(edns=True, do=do, udp=4096)
    reply = dnslib.DNSRecord.parse(wire.build_reply(q, wire.NXDOMAIN))
    assert reply.header.rcode == wire.NXDOMAIN
    assert reply.header.ar == 1
    rr = _opt_of(reply)
    assert rr.rclass == wire.EDNS_UDP_SIZE
    assert bool(rr.ttl & wire.EDNS_DO) is do
    assert rr.ttl >> 16 == 0  # extended rcode and version


def test_build_reply_extended_rcode_badvers() -> None:
    q = parsed(edns=True)
    raw = wire.build_reply(q, wire.BADVERS)
    assert dnslib.DNSRecord.parse(raw).header.rcode == 0
    assert _opt_of(dnslib.DNSRecord.parse(raw)).ttl >> 24 == 1
    assert dns.message.from_wire(raw).rcode() == dns.rcode.BADVERS


def _answer_to(data: bytes) -> tuple[type[Exception], dns.message.Message]:
    """Parse ``data``, expecting an error; answer it with the rcode the error carries."""
    with pytest.raises((FormError, NotImplementedQuery)) as info:
        wire.parse_query(data)
    exc = info.value
    assert isinstance(exc, FormError | NotImplementedQuery)
    answer = wire.build_error_reply(data, exc.rcode, getattr(exc, "query", None))
    assert answer is not None
    return type(exc), dns.message.from_wire(answer)


def test_errors_carry_the_rcode_they_are_answered_with() -> None:
    message = dns.message.make_query("example.com", "A", use_edns=1)
    kind, answer = _answer_to(message.to_wire())
    assert (kind, answer.rcode()) == (wire.BadVersion, dns.rcode.BADVERS)
    assert answer.question == message.question

    message = dns.message.make_query("example.com", "A", rdclass="CH")
    kind, answer = _answer_to(message.to_wire())
    assert (kind, answer.rcode()) == (NotImplementedQuery, dns.rcode.NOTIMP)
    assert answer.question == message.question

    data = bytearray(dns.message.make_query("example.com", "A").to_wire())
    data[5] = 2  # two questions
    kind, answer = _answer_to(bytes(data))
    assert (kind, answer.rcode()) == (FormError, dns.rcode.FORMERR)
    assert not answer.question


def test_build_reply_carries_ede_option() -> None:
    q = parsed(edns=True)
    raw = wire.build_reply(q, wire.SERVFAIL, ede=wire.build_ede(wire.EDE_NETWORK_ERROR, "boom"))
    message = dns.message.from_wire(raw)
    assert message.rcode() == dns.rcode.SERVFAIL
    (option,) = message.options
    assert option.otype == dns.edns.OptionType.EDE
    assert option.code == wire.EDE_NETWORK_ERROR
    assert option.text == "boom"


def test_build_reply_ignores_ede_without_edns() -> None:
    raw = wire.build_reply(parsed(), wire.SERVFAIL, ede=wire.build_ede(23, "x"))
    assert dnslib.DNSRecord.parse(raw).header.ar == 0


def test_build_error_reply_from_header_only() -> None:
    data = header(qid=0xBEEF, flags=wire.RD | (2 << 11)) + b"\xff\xff\xff"
    raw = wire.build_error_reply(data, wire.FORMERR)
    assert raw is not None
    assert len(raw) == 12
    reply = dnslib.DNSRecord.parse(raw)
    h = reply.header
    assert h.id == 0xBEEF
    assert (h.qr, h.rd, h.ra, h.opcode, h.rcode) == (1, 1, 0, 2, wire.FORMERR)  # RA: QUERY only
    assert (h.q, h.a, h.auth, h.ar) == (0, 0, 0, 0)


def test_build_error_reply_without_header_is_none() -> None:
    assert wire.build_error_reply(b"\x12\x34\x01", wire.FORMERR) is None


def test_build_error_reply_with_query_echoes_question() -> None:
    q = parsed("Example.ORG", edns=True)
    raw = wire.build_error_reply(b"", wire.REFUSED, q)
    assert raw is not None
    reply = dnslib.DNSRecord.parse(raw)
    assert reply.header.rcode == wire.REFUSED
    assert str(reply.q.qname) == "Example.ORG."
    assert reply.header.ar == 1


def _big_reply(edns: bool) -> tuple[wire.Query, bytes]:
    q = parsed("big.example", edns=edns, do=edns)
    answer = b"".join(wire.build_record(wire.TYPE_A, 60, bytes((10, 0, 0, i))) for i in range(50))
    return q, wire.build_reply(q, wire.NOERROR, answer, 50)


@pytest.mark.parametrize("edns", [False, True])
def test_build_truncated(edns: bool) -> None:
    q, full = _big_reply(edns)
    raw = wire.build_truncated(full)
    reply = dnslib.DNSRecord.parse(raw)
    h = reply.header
    assert h.tc == 1
    assert h.id == 0x1234
    assert (h.q, h.a, h.auth, h.ar) == (1, 0, 0, 1 if edns else 0)
    assert raw[12 : 12 + len(q.question)] == q.question
    if edns:
        assert _opt_of(reply).ttl & wire.EDNS_DO


def test_fit_truncates_only_over_the_limit() -> None:
    _, full = _big_reply(False)
    assert wire.fit(full, len(full)) == full
    assert len(wire.fit(full, len(full) - 1)) < 512
    assert dnslib.DNSRecord.parse(wire.fit(full, 512)).header.tc == 1


def test_build_upstream_query() -> None:
    q = parsed("Up.Example", flags=wire.CD, do=True)
    raw = outbound.build_upstream_query(q, 0x4242)
    message = dns.message.from_wire(raw)
    assert message.id == 0x4242
    assert message.flags & dns.flags.RD
    assert message.flags & dns.flags.CD
    assert not message.flags & dns.flags.QR
    assert message.edns == 0
    assert message.ednsflags & dns.flags.DO
    assert raw[12 : 12 + len(q.question)] == q.question


# --- parse_reply ------------------------------------------------------------------


def _upstream_query(qname: str = "www.example.com", qtype: str = "A") -> dns.message.Message:
    return dns.message.make_query(qname, qtype, use_edns=0)


def _question_of(message: dns.message.Message) -> bytes:
    return wire.parse_query(message.to_wire()).question


def _positive() -> tuple[dns.message.Message, bytes]:
    """A typical positive answer: two A records, NS in authority, glue and OPT in additional."""
    q = _upstream_query()
    r = dns.message.make_response(q)
    r.flags |= dns.flags.AA
    r.answer.append(dns.rrset.from_text("www.example.com.", 300, "IN", "A", "192.0.2.1"))
    r.answer[0].add(dns.rdata.from_text("IN", "A", "192.0.2.2"))
    r.answer.append(dns.rrset.from_text("www.example.com.", 200, "IN", "A", "192.0.2.3"))
    r.authority.append(dns.rrset.from_text("example.com.", 3600, "IN", "NS", "ns1.example.com."))
    r.additional.append(dns.rrset.from_text("ns1.example.com.", 3600, "IN", "A", "192.0.2.53"))
    return q, r.to_wire()


def _negative(rcode: int, soa_ttl: int, minimum: int) -> tuple[dns.message.Message, bytes]:
    q = _upstream_query("nx.example.com")
    r = dns.message.make_response(q)
    r.set_rcode(rcode)
    soa = f"ns1.example.com. host.example.com. 1 3600 600 86400 {minimum}"
    r.authority.append(dns.rrset.from_text("example.com.", soa_ttl, "IN", "SOA", soa))
    r.authority.append(dns.rrset.from_text("example.com.", 3600, "IN", "NS", "ns1.example.com."))
    r.additional.append(dns.rrset.from_text("ns1.example.com.", 3600, "IN", "A", "192.0.2.53"))
    return q, r.to_wire()


def _reassemble(reply: outbound.Reply, qid: int = 7) -> bytes:
    return header(qid, reply.flags, 1, reply.ancount, reply.nscount, 0) + reply.body


def test_parse_reply_positive_strips_ns_authority_and_additional() -> None:
    q, data = _positive()
    reply = outbound.parse_reply(data, q.id, _question_of(q))
    assert reply.rcode == wire.NOERROR
    assert reply.flags & wire.AA
    assert reply.ancount == 3
    assert reply.nscount == 0
    assert not reply.negative
    assert reply.min_ttl == 200
    decoded = dnslib.DNSRecord.parse(_reassemble(reply))
    assert sorted(str(rr.rdata) for rr in decoded.rr) == ["192.0.2.1", "192.0.2.2", "192.0.2.3"]
    assert decoded.auth == []
    assert decoded.ar == []
    assert reply.body.startswith(_question_of(q))


def test_parse_reply_ttl_offsets_point_at_ttl_fields() -> None:
    q, data = _positive()
    reply = outbound.parse_reply(data, q.id, _question_of(q))
    assert [ttl for _, ttl in reply.ttls] == [300, 300, 200]
    body = bytearray(reply.body)
    for i, (offset, _) in enumerate(reply.ttls):
        struct.pack_into("!I", body, offset, 1000 + i)
    patched = header(7, reply.flags, 1, reply.ancount, reply.nscount, 0) + bytes(body)
    decoded = dnslib.DNSRecord.parse(patched)
    assert [rr.ttl for rr in decoded.rr] == [1000, 1001, 1002]
    assert sorted(str(rr.rdata) for rr in decoded.rr) == ["192.0.2.1", "192.0.2.2", "192.0.2.3"]


@pytest.mark.parametrize(
    ("soa_ttl", "minimum", "expected"), [(900, 300, 300), (120, 300, 120), (60, 60, 60)]
)
def test_parse_reply_nxdomain_keeps_soa_and_negative_ttl(
    soa_ttl: int, minimum: int, expected: int
) -> None:
    q, data = _negative(dns.rcode.NXDOMAIN, soa_ttl, minimum)
    reply = outbound.parse_reply(data, q.id, _question_of(q))
    assert reply.rcode == wire.NXDOMAIN
    assert reply.negative
    assert reply.min_ttl == expected
    assert reply.nscount == 2  # SOA and NS both kept: the section carries the SOA
    decoded = dnslib.DNSRecord.parse(_reassemble(reply))
    assert [rr.rtype for rr in decoded.auth] == [wire.TYPE_SOA, wire.TYPE_NS]
    assert decoded.ar == []


def test_parse_reply_authority_ttl_offsets() -> None:
    q, data = _negative(dns.rcode.NXDOMAIN, 900, 300)
    reply = outbound.parse_reply(data, q.id, _question_of(q))
    assert [ttl for _, ttl in reply.ttls] == [900, 3600]
    body = bytearray(reply.body)
    for offset, ttl in reply.ttls:
        struct.pack_into("!I", body, offset, ttl - 1)
    decoded = dnslib.DNSRecord.parse(header(1, reply.flags, 1, 0, 2, 0) + bytes(body))
    assert [rr.ttl for rr in decoded.auth] == [899, 3599]
    assert decoded.auth[0].rdata.times[-1] == 300  # the SOA minimum was not touched


def test_parse_reply_nodata_is_negative() -> None:
    q, data = _negative(dns.rcode.NOERROR, 900, 120)
    reply = outbound.parse_reply(data, q.id, _question_of(q))
    assert reply.negative
    assert reply.ancount == 0
    assert reply.min_ttl == 120


def test_parse_reply_negative_without_soa_has_no_ttl() -> None:
    q = _upstream_query("nx.example.com")
    r = dns.message.make_response(q)
    r.set_rcode(dns.rcode.NXDOMAIN)
    r.authority.append(dns.rrset.from_text("example.com.", 3600, "IN", "NS", "ns1.example.com."))
    reply = outbound.parse_reply(r.to_wire(), q.id, _question_of(q))
    assert reply.negative
    assert reply.min_ttl is None
    assert reply.nscount == 0
    assert reply.body == _question_of(q)


def test_parse_reply_servfail() -> None:
    q = _upstream_query()
    r = dns.message.make_response(q)
    r.set_rcode(dns.rcode.SERVFAIL)
    reply = outbound.parse_reply(r.to_wire(), q.id, _question_of(q))
    assert reply.rcode == wire.SERVFAIL
    assert not reply.negative


def test_parse_reply_accepts_other_letter_case() -> None:
    q = _upstream_query("www.example.com")
    r = dns.message.make_response(dns.message.make_query("WWW.EXAMPLE.COM", "A"))
    r.id = q.id
    reply = outbound.parse_reply(r.to_wire(), q.id, _question_of(q))
    assert reply.rcode == wire.NOERROR


def test_parse_reply_rejects_wrong_id() -> None:
    q, data = _positive()
    with pytest.raises(FormError):
        outbound.parse_reply(data, (q.id + 1) & 0xFFFF, _question_of(q))


def test_parse_reply_rejects_wrong_question() -> None:
    q, data = _positive()
    other = _question_of(_upstream_query("www.example.org"))
    with pytest.raises(FormError):
        outbound.parse_reply(data, q.id, other)


def test_parse_reply_rejects_wrong_type() -> None:
    q, data = _positive()
    aaaa = _question_of(_upstream_query("www.example.com", "AAAA"))
    with pytest.raises(FormError):
        outbound.parse_reply(data, q.id, aaaa)


def test_parse_reply_rejects_type_differing_only_by_ascii_case_bit() -> None:
    """Type 65 (HTTPS, 0x0041) and type 97 (0x0061) differ only in what .lower() folds."""
    q = _upstream_query("www.example.com", "HTTPS")
    r = dns.message.make_response(q)
    data = bytearray(r.to_wire())
    qend = 12 + len(_question_of(q))
    struct.pack_into("!H", data, qend - 4, 97)
    with pytest.raises(FormError):
        outbound.parse_reply(bytes(data), q.id, _question_of(q))


def test_parse_reply_rejects_a_query() -> None:
    q = _upstream_query()
    with pytest.raises(FormError):
        outbound.parse_reply(q.to_wire(), q.id, _question_of(q))


def test_parse_reply_rejects_short_and_questionless_packets() -> None:
    q, data = _positive()
    question_ = _question_of(q)
    with pytest.raises(FormError):
        outbound.parse_reply(data[:11], q.id, question_)
    no_question = header(q.id, wire.QR, 0, 0, 0, 0)
    with pytest.raises(FormError):
        outbound.parse_reply(no_question, q.id, question_)


def test_parse_reply_rejects_missing_records() -> None:
    q, data = _positive()
    with pytest.raises(FormError):
        outbound.parse_reply(data[:-20], q.id, _question_of(q))


def test_parse_reply_rejects_soa_with_short_rdata() -> None:
    """An SOA whose rdata cannot hold MNAME, RNAME and five 32-bit fields is malformed."""
    q = wire.parse_query(query("nx.example"))
    for rdata in (b"", b"\x00\x00\x00\x05", soa_rdata(300)[:-4]):
        soa = record(b"\xc0\x0c", wire.TYPE_SOA, 300, rdata)
        data = header(0x1234, wire.QR | wire.NXDOMAIN, 1, 0, 1, 0) + q.question + soa
        with pytest.raises(FormError):
            outbound.parse_reply(data, 0x1234, q.question)


# --- parse_reply: records outside the CNAME chain ---------------------------------


def _reply_with(
    qname: str, *rrsets: tuple[str, int, str, str], rcode: int = 0
) -> tuple[dns.message.Message, bytes]:
    """A dnspython-built reply to ``qname`` A with ``rrsets`` (owner, TTL, type, data) in
    its answer section, in that order (names compressed the way dnspython does)."""
    q = _upstream_query(qname)
    r = dns.message.make_response(q)
    r.set_rcode(rcode)
    for owner, ttl, rdtype, text in rrsets:
        r.answer.append(dns.rrset.from_text(owner, ttl, "IN", rdtype, text))
    return q, r.to_wire()


def _answer_of(reply: outbound.Reply, qid: int = 7) -> list[str]:
    """The answer section of ``reply`` as dnspython reads it back, one text line per
    record, TTLs included (checks every compression pointer of the body)."""
    message = dns.message.from_wire(_reassemble(reply, qid))
    return [line for rrset in message.answer for line in rrset.to_text().splitlines()]


def _check_ttl_offsets(reply: outbound.Reply) -> None:
    for offset, ttl in reply.ttls:
        assert struct.unpack_from("!I", reply.body, offset)[0] == ttl


def test_parse_reply_strips_records_of_other_names() -> None:
    q, data = _reply_with(
        "victim.test",
        ("bank.test.", 300, "A", "203.0.113.66"),
        ("victim.test.", 60, "A", "192.0.2.1"),
        ("www.bank.test.", 300, "A", "203.0.113.67"),
    )
    reply = outbound.parse_reply(data, q.id, _question_of(q))
    assert reply.stripped == 2
    assert reply.ancount == 1
    assert _answer_of(reply) == ["victim.test. 60 IN A 192.0.2.1"]
    assert reply.addresses == (bytes([192, 0, 2, 1]),)
    assert reply.min_ttl == reply.max_ttl == 60
    _check_ttl_offsets(reply)


def test_parse_reply_keeps_the_whole_chain_untouched() -> None:
    q, data = _reply_with(
        "www.example.com",
        ("www.example.com.", 300, "CNAME", "a.example.net."),
        ("a.example.net.", 200, "CNAME", "b.example.org."),
        ("b.example.org.", 100, "A", "192.0.2.7"),
    )
    reply = outbound.parse_reply(data, q.id, _question_of(q))
    assert reply.stripped == 0
    assert reply.body == data[12 : 12 + len(reply.body)]  # not written again
    assert reply.targets == (wire.text_to_name("a.example.net"), wire.text_to_name("b.example.org"))
    assert len(_answer_of(reply)) == 3


def test_parse_reply_keeps_a_chain_given_out_of_order() -> None:
    q, data = _reply_with(
        "www.example.com",
        ("b.example.org.", 100, "A", "192.0.2.7"),
        ("a.example.net.", 200, "CNAME", "b.example.org."),
        ("www.example.com.", 300, "CNAME", "a.example.net."),
    )
    reply = outbound.parse_reply(data, q.id, _question_of(q))
    assert reply.stripped == 0
    assert reply.ancount == 3


def test_parse_reply_strips_records_past_the_end_of_a_broken_chain() -> None:
    """A CNAME owned by a name the chain never reached does not extend it."""
    q, data = _reply_with(
        "www.example.com",
        ("www.example.com.", 300, "CNAME", "a.example.net."),
        ("a.example.net.", 300, "A", "192.0.2.7"),
        ("bank.test.", 300, "CNAME", "evil.test."),
        ("evil.test.", 300, "A", "203.0.113.66"),
    )
    reply = outbound.parse_reply(data, q.id, _question_of(q))
    assert reply.stripped == 2
    assert _answer_of(reply) == [
        "www.example.com. 300 IN CNAME a.example.net.",
        "a.example.net. 300 IN A 192.0.2.7",
    ]
    assert reply.targets == (wire.text_to_name("a.example.net"),)
    assert reply.addresses == (bytes([192, 0, 2, 7]),)


def test_a_kept_record_pointing_into_a_stripped_one_is_written_whole() -> None:
    """dnspython compresses mail.bank.test. against the stripped bank.test record and the
    SOA names against both: the kept records are written again with their names whole."""
    q = _upstream_query("victim.test", "MX")
    r = dns.message.make_response(q)
    r.answer.append(dns.rrset.from_text("bank.test.", 300, "IN", "A", "203.0.113.66"))
    r.answer.append(dns.rrset.from_text("victim.test.", 300, "IN", "MX", "10 mail.bank.test."))
    r.authority.append(
        dns.rrset.from_text(
            "victim.test.", 60, "IN", "SOA", "ns.bank.test. host.victim.test. 1 2 3 4 5"
        )
    )
    r.authority.append(dns.rrset.from_text("victim.test.", 60, "IN", "NSEC", "bank.test. A MX"))
    data = r.to_wire()
    assert data.count(b"\x04bank\x04test\x00") == 1  # every later bank.test is a pointer
    reply = outbound.parse_reply(data, q.id, _question_of(q))
    assert reply.stripped == 1
    message = dns.message.from_wire(_reassemble(reply))
    assert [rrset.to_text() for rrset in message.answer] == [
        "victim.test. 300 IN MX 10 mail.bank.test."
    ]
    assert [rrset.to_text() for rrset in message.authority] == [
        "victim.test. 60 IN SOA ns.bank.test. host.victim.test. 1 2 3 4 5",
        "victim.test. 60 IN NSEC bank.test. A MX",
    ]
    assert reply.nscount == 2
    _check_ttl_offsets(reply)
    body = bytearray(reply.body)
    for offset, _ in reply.ttls:
        struct.pack_into("!I", body, offset, 7)
    patched = header(7, reply.flags, 1, reply.ancount, reply.nscount, 0) + bytes(body)
    assert {rrset.ttl for rrset in dns.message.from_wire(patched).sections[1]} == {7}


def test_parse_reply_strips_everything_when_nothing_answers_the_name() -> None:
    q, data = _reply_with("victim.test", ("bank.test.", 300, "A", "203.0.113.66"))
    reply = outbound.parse_reply(data, q.id, _question_of(q))
    assert reply.stripped == 1
    assert reply.ancount == 0
    assert reply.negative and reply.min_ttl is None  # no SOA: not cached
    assert reply.body == _question_of(q)


def test_parse_reply_keeps_a_dname_above_the_chain_and_its_signature() -> None:
    rrsig = "DNAME 8 2 300 20300101000000 20200101000000 1 example.com. AAAA"
    q, data = _reply_with(
        "www.example.com",
        ("example.com.", 300, "DNAME", "example.net."),
        ("example.com.", 300, "RRSIG", rrsig),
        ("www.example.com.", 300, "CNAME", "www.example.net."),
        ("www.example.net.", 300, "A", "192.0.2.8"),
        ("example.org.", 300, "DNAME", "evil.test."),
        ("bank.test.", 300, "RRSIG", "A 8 2 300 20300101000000 20200101000000 1 test. AAAA"),
    )
    reply = outbound.parse_reply(data, q.id, _question_of(q))
    assert reply.stripped == 2
    assert [line.split()[3] for line in _answer_of(reply)] == ["DNAME", "RRSIG", "CNAME", "A"]


def test_parse_reply_compares_owner_names_ignoring_case() -> None:
    q, data = _reply_with(
        "www.example.com",
        ("WWW.Example.COM.", 300, "CNAME", "A.Example.NET."),
        ("a.example.net.", 300, "A", "192.0.2.7"),
    )
    reply = outbound.parse_reply(data, q.id, _question_of(q))
    assert reply.stripped == 0 and reply.ancount == 2


# --- 0x20 -------------------------------------------------------------------------


def test_mix_case_changes_only_the_case_of_letters() -> None:
    q = parsed("www-1.Example.com", wire.TYPE_AAAA)
    seen = set()
    for _ in range(20):
        mixed = outbound.mix_case(q.question)
        assert len(mixed) == len(q.question)
        assert mixed.lower() == q.question.lower()
        assert mixed[-4:] == q.question[-4:]  # type and class untouched
        assert b"-1" in mixed
        seen.add(mixed)
    assert len(seen) > 10
    assert outbound.mix_case(b"\x00\x00\x01\x00\x01") == b"\x00\x00\x01\x00\x01"


def test_build_upstream_query_sends_the_question_given() -> None:
    q = parsed("www.example.com")
    mixed = b"\x03wWw\x07EXAMPLE\x03cOm\x00\x00\x01\x00\x01"
    raw = outbound.build_upstream_query(q, 0x4242, mixed)
    assert raw[12 : 12 + len(mixed)] == mixed


def _echo(q: wire.Query, asked: bytes, owner: str = "", qid: int = 0x1234) -> bytes:
    """A reply echoing ``asked`` as its question, with one A record whose owner is a
    pointer to the question, or ``owner`` spelled out."""
    rr_owner = name(owner) if owner else b"\xc0\x0c"
    rr = record(rr_owner, wire.TYPE_A, 300, bytes([192, 0, 2, 1]))
    return header(qid, wire.QR | wire.RD | wire.RA, 1, 1, 0, 0) + asked + rr


def test_parse_reply_wants_the_case_it_sent() -> None:
    q = parsed("www.example.com")
    sent = b"\x03wWw\x07EXAMPLE\x03cOm\x00\x00\x01\x00\x01"
    reply = outbound.parse_reply(_echo(q, sent), 0x1234, q.question, sent)
    assert reply.body.startswith(q.question)  # the client's own case
    assert reply.ancount == 1
    for other in (q.question, b"\x03WWW\x07EXAMPLE\x03COM\x00\x00\x01\x00\x01"):
        with pytest.raises(outbound.CaseMismatch):
            outbound.parse_reply(_echo(q, other), 0x1234, q.question, sent)
    other_name = question("www.example.org")
    with pytest.raises(FormError) as caught:
        outbound.parse_reply(_echo(q, other_name), 0x1234, q.question, sent)
    assert not isinstance(caught.value, outbound.CaseMismatch)


def test_parse_reply_without_0x20_takes_any_case_and_keeps_the_clients() -> None:
    q = parsed("Www.Example.com")
    echoed = question("www.example.com")
    reply = outbound.parse_reply(_echo(q, echoed), 0x1234, q.question)
    assert reply.body.startswith(q.question)


def test_an_owner_spelled_out_in_the_case_sent_gets_the_clients_case() -> None:
    q = parsed("www.example.com")
    sent = question("wWw.EXAMPLE.cOm")
    reply = outbound.parse_reply(_echo(q, sent, owner="wWw.EXAMPLE.cOm"), 0x1234, q.question, sent)
    assert b"EXAMPLE" not in reply.body
    assert _answer_of(reply) == ["www.example.com. 300 IN A 192.0.2.1"]


# --- names ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "wire_name"),
    [
        ("example.com", b"\x07example\x03com\x00"),
        ("WWW.Example.COM.", b"\x03www\x07example\x03com\x00"),
        ("  a.b  ", b"\x01a\x01b\x00"),
        ("", b"\x00"),
        (".", b"\x00"),
        ("a\\.b.C", b"\x03a.b\x01c\x00"),
        ("\\065\\066.x.", b"\x02ab\x01x\x00"),
        ("a\\\\b\\ c", b"\x05a\\b c\x00"),
    ],
)
def test_text_to_name(text: str, wire_name: bytes) -> None:
    assert wire.text_to_name(text) == wire_name


@pytest.mark.parametrize(
    "text",
    [
        "a..b",
        "..",
        ".a",
        "x" * 64 + ".com",
        ".".join(["a" * 63] * 4),
        "a\\256.b",
        "a\\12",
        "a\\",
        "a\\.\\.\\",
        "bücher.example",
        "a\\.ü",
    ],
)
def test_text_to_name_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        wire.text_to_name(text)


@pytest.mark.parametrize(
    "text", ["example.com", "a.b.c.d.e", "xn--bcher-kva.example", "_dmarc.x-y.z"]
)
def test_name_round_trip(text: str) -> None:
    assert wire.name_to_text(wire.text_to_name(text)) == text


def test_name_to_text_root() -> None:
    assert wire.name_to_text(b"\x00") == "."


@pytest.mark.parametrize(
    ("wire_name", "text"),
    [
        (b"\x03a.b\x03com\x00", "a\\.b.com"),
        (b"\x03a\\b\x00", "a\\\\b"),
        (b"\x03a b\x00", "a\\032b"),
        (b"\x02\x00\xff\x00", "\\000\\255"),
        (b"\x01\x7f\x00", "\\127"),
        (b'\x07"();@$x\x00', '\\"\\(\\)\\;\\@\\$x'),
    ],
)
def test_name_to_text_escapes(wire_name: bytes, text: str) -> None:
    assert wire.name_to_text(wire_name) == text
    assert wire.text_to_name(text) == wire_name.lower()
    # dnspython reads the escaped form back to the same labels.
    assert dns.name.from_text(text).to_wire() == wire_name
