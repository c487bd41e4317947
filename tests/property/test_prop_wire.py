"""Properties of the wire codec: malformed input fails only in the ways it may; dnspython agrees."""

from __future__ import annotations

import ipaddress
import struct

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rrset
import dnslib
from hypothesis import assume, example, given
from hypothesis import strategies as st

from resolver.core import outbound, wire
from resolver.core.cache import Cache, CacheSettings
from resolver.core.clients import ClientAcl
from resolver.core.engine import Engine
from resolver.core.errors import FormError, NotImplementedQuery
from resolver.core.matcher import CompiledPolicy, Scope
from resolver.core.snapshot import Snapshot
from resolver.core.verdict import Action, Answers, PolicyInfo, Verdict

HEADER = struct.Struct("!HHHHHH")

# --- inputs -------------------------------------------------------------------------

labels = st.binary(min_size=1, max_size=63)
names = st.lists(labels, min_size=0, max_size=6).filter(
    lambda ls: sum(len(label) + 1 for label in ls) + 1 <= 255
)
qtypes = st.integers(1, 65535).filter(
    lambda t: t not in (wire.TYPE_OPT, wire.TYPE_MAILA, wire.TYPE_MAILB)
)


@st.composite
def dnspython_queries(draw: st.DrawFn) -> tuple[dns.message.Message, dns.name.Name, int]:
    name = dns.name.Name([*draw(names), b""])
    qtype = draw(qtypes)
    message = dns.message.make_query(name, qtype)
    message.id = draw(st.integers(0, 0xFFFF))
    message.flags = draw(st.sampled_from([0, dns.flags.RD, dns.flags.RD | dns.flags.CD]))
    if draw(st.booleans()):
        options = []
        if draw(st.booleans()):
            options.append(dns.edns.GenericOption(10, draw(st.binary(min_size=8, max_size=40))))
        message.use_edns(
            0,
            dns.flags.DO if draw(st.booleans()) else 0,
            draw(st.integers(0, 65535)),
            options=options,
        )
    return message, name, qtype


def _packet(qid: int, flags: int, counts: tuple[int, int, int, int], tail: bytes) -> bytes:
    return HEADER.pack(qid, flags, *counts) + tail


header_then_junk = st.builds(
    _packet,
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFF),
    st.tuples(st.just(1), st.integers(0, 2), st.integers(0, 2), st.integers(0, 3)),
    st.binary(max_size=300),
)


@st.composite
def mutated_queries(draw: st.DrawFn) -> bytes:
    """A valid query (often with EDNS) with a few bytes changed, cut off or inserted."""
    message, _, _ = draw(dnspython_queries())
    data = bytearray(message.to_wire())
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["set", "cut", "insert"]))
        pos = draw(st.integers(0, len(data)))
        if kind == "set" and pos < len(data):
            data[pos] = draw(st.integers(0, 255))
        elif kind == "cut":
            del data[pos:]
        else:
            data[pos:pos] = draw(st.binary(min_size=1, max_size=4))
    return bytes(data)


any_packet = st.one_of(st.binary(max_size=600), header_then_junk, mutated_queries())


# --- properties -----------------------------------------------------------------------


@given(any_packet)
def test_parse_query_raises_only_its_own_errors(data: bytes) -> None:
    try:
        query = wire.parse_query(data)
    except (FormError, NotImplementedQuery) as exc:
        if isinstance(exc, wire.BadVersion):
            assert isinstance(exc.query, wire.Query)
        elif isinstance(exc, NotImplementedQuery):
            assert exc.query is None or isinstance(exc.query, wire.Query)
        return
    assert query.question == data[12 : 12 + len(query.question)]
    assert len(query.qname) <= wire.MAX_NAME
    assert query.qname == query.question[:-4].lower()


@given(any_packet)
def test_parse_reply_raises_only_form_error(data: bytes) -> None:
    question = data[12:40] if len(data) > 40 else b"\x00\x00\x01\x00\x01"
    qid = (data[0] << 8) | data[1] if len(data) >= 2 else 0
    try:
        reply = outbound.parse_reply(data, qid, question)
    except FormError:
        return
    for offset, ttl in reply.ttls:
        assert struct.unpack_from("!I", reply.body, offset)[0] == ttl


@given(dnspython_queries())
def test_dnspython_queries_parse_to_the_same_question(
    case: tuple[dns.message.Message, dns.name.Name, int],
) -> None:
    message, name, qtype = case
    data = message.to_wire()
    query = wire.parse_query(data)
    assert query.qname == name.canonicalize().to_wire()
    assert query.question == name.to_wire() + struct.pack("!HH", qtype, 1)
    assert query.qtype == qtype
    assert query.qclass == wire.CLASS_IN
    assert query.qid == struct.pack("!H", message.id)
    assert query.edns == (message.edns >= 0)
    if message.edns >= 0:
        assert query.do == bool(message.ednsflags & dns.flags.DO)
        assert query.udp_size == max(message.payload, 512)
    else:
        assert not query.do
        assert query.udp_size == 512


@given(dnspython_queries(), st.sampled_from([0, 1, 2, 3, 4, 5, 16]))
def test_dnspython_reads_our_replies(
    case: tuple[dns.message.Message, dns.name.Name, int], rcode: int
) -> None:
    message, _, _ = case
    query = wire.parse_query(message.to_wire())
    assume(query.edns or rcode < 16)
    reply = dns.message.from_wire(wire.build_reply(query, rcode))
    assert message.is_response(reply)
    assert reply.id == message.id
    assert reply.question == message.question
    assert reply.rcode() == rcode
    assert (reply.edns >= 0) == query.edns


@given(any_packet)
def test_an_error_carries_the_rcode_of_its_answer(data: bytes) -> None:
    try:
        wire.parse_query(data)
    except (FormError, NotImplementedQuery) as exc:
        query = getattr(exc, "query", None)
        answer = wire.build_error_reply(data, exc.rcode, query)
        if answer is None:
            assert len(data) < 12
            return
        reply = dns.message.from_wire(answer)
        assert reply.rcode() == exc.rcode
        expected = {FormError: 1, NotImplementedQuery: 4, wire.BadVersion: 16}[type(exc)]
        assert exc.rcode == expected


# --- names -------------------------------------------------------------------------


@given(names)
def test_name_to_text_is_dnspythons_presentation_form(labels: list[bytes]) -> None:
    name = dns.name.Name([*labels, b""])
    text = wire.name_to_text(name.to_wire())
    assert text == name.to_text(omit_final_dot=True)
    # text -> wire -> text: back to the same (lower-cased) name and the same text.
    lowered = name.canonicalize().to_wire()
    assert wire.text_to_name(text) == lowered
    if labels:
        assert wire.text_to_name(text + ".") == lowered
    assert wire.name_to_text(wire.text_to_name(text)) == wire.name_to_text(lowered)
    assert dns.name.from_text(text) == name


def _spellings(byte: int) -> st.SearchStrategy[str]:
    """The ways a zone file may write one byte of a label."""
    ways = [st.just(f"\\{byte:03d}")]
    if 0x30 <= byte <= 0x39:  # a digit: after a backslash it would start \\DDD
        ways.append(st.just(chr(byte)))
    elif 0x21 <= byte <= 0x7E:
        ways.append(st.just("\\" + chr(byte)))
        if chr(byte) not in '.\\"();@$':
            ways.append(st.just(chr(byte)))
    return st.one_of(ways)


@st.composite
def presentation_names(draw: st.DrawFn) -> str:
    labels = draw(names.filter(bool))
    written = ["".join(draw(_spellings(byte)) for byte in label) for label in labels]
    return ".".join(written) + draw(st.sampled_from(["", "."]))


@given(presentation_names())
def test_text_to_name_reads_what_dnspython_reads(text: str) -> None:
    expected = dns.name.from_text(text).canonicalize()
    assert wire.text_to_name(text) == expected.to_wire()
    assert wire.name_to_text(wire.text_to_name(text)) == expected.to_text(omit_final_dot=True)


ENGINE_ANSWERS = Answers((ipaddress.IPv4Address("192.0.2.80"),), (), 60)


def _engine() -> Engine:
    info = PolicyInfo(id="p", source="p.yaml")
    entries = [
        (b"\x00", Scope.BELOW, Verdict(info, Action.NXDOMAIN, ENGINE_ANSWERS, 0)),  # every name
    ]
    acl = ClientAcl([ipaddress.ip_network("127.0.0.0/8")])
    return Engine(Snapshot(CompiledPolicy.build(entries)), Cache(CacheSettings()), acl)


@given(any_packet, st.sampled_from(["127.0.0.1", "192.0.2.1"]), st.booleans())
def test_engine_never_raises_and_answers_are_readable(data: bytes, client: str, tcp: bool) -> None:
    result = _engine().handle(data, client, 1000, tcp)
    if isinstance(result, bytes):
        assert len(result) >= 12
        assert result[:2] == data[:2]
        assert result[2] & 0x80  # QR
        dns.message.from_wire(result)
    else:
        assert result is None or isinstance(result, wire.Query)


# --- upstream answers cut down to the CNAME chain -----------------------------------------

CHAIN_NAMES = ("q.example.", "a.example.", "B.example.net.", "c.test.", "mail.a.example.")
chain_records = st.lists(
    st.tuples(
        st.sampled_from(CHAIN_NAMES),
        st.sampled_from(["A", "CNAME", "MX", "TXT"]),
        st.sampled_from(CHAIN_NAMES),
        st.integers(0, 3600),
    ),
    max_size=8,
)


@given(chain_records, st.booleans())
def test_the_answer_keeps_exactly_the_chain_from_the_query_name(
    records: list[tuple[str, str, str, int]], negative_soa: bool
) -> None:
    """Whatever the upstream puts in the answer section, in whatever order and however
    dnspython compresses it: the kept records are those a reference walk of the chain
    keeps, in order, with their data intact (read back by dnslib, record by record), and
    the TTL offsets point at TTL fields."""
    query = dns.message.make_query("Q.example.", "A")
    response = dns.message.make_response(query)
    texts = {"A": "192.0.2.1", "TXT": '"x"'}
    for i, (owner, rdtype, target, ttl) in enumerate(records):
        data = {"CNAME": target, "MX": f"{i} {target}"}.get(rdtype, texts.get(rdtype, ""))
        response.answer.append(dns.rrset.from_text(owner, ttl, "IN", rdtype, data))
    if negative_soa:
        soa = "ns.c.test. host.a.example. 1 2 3 4 5"
        response.authority.append(dns.rrset.from_text("a.example.", 60, "IN", "SOA", soa))
    wire_data = response.to_wire()
    reached = {"q.example."}
    grew = True
    while grew:  # the reference: names reached through CNAMEs, until nothing new
        grew = False
        for owner, rdtype, target, _ in records:
            if rdtype == "CNAME" and owner.lower() in reached and target.lower() not in reached:
                reached.add(target.lower())
                grew = True
    original = dnslib.DNSRecord.parse(wire_data)
    expected = [str(rr).lower() for rr in original.rr if str(rr.rname).lower() in reached]
    reply = outbound.parse_reply(wire_data, query.id, wire.parse_query(query.to_wire()).question)
    assert reply.stripped == len(original.rr) - len(expected)
    decoded = dnslib.DNSRecord.parse(
        HEADER.pack(1, reply.flags, 1, reply.ancount, reply.nscount, 0) + reply.body
    )
    assert [str(rr).lower() for rr in decoded.rr] == expected
    assert [str(rr) for rr in decoded.auth] == [str(rr) for rr in original.auth]
    for offset, ttl in reply.ttls:
        assert struct.unpack_from("!I", reply.body, offset)[0] == ttl


# --- the tails parse_reply remembers ------------------------------------------------------

tail_records = st.lists(
    st.tuples(
        st.sampled_from(["authority", "additional"]),
        st.sampled_from(["q.example.", "example.", "ns.example.", "other.test."]),
        st.sampled_from(["NS", "A", "SOA", "NSEC", "TXT"]),
    ),
    max_size=4,
)
_TAIL_DATA = {
    "NS": "ns.example.",
    "A": "192.0.2.53",
    "SOA": "ns.example. host.example. 1 2 3 4 5",
    "NSEC": "z.example. A",
    "TXT": '"t"',
}


def _outcome(data: bytes, qid: int, question: bytes) -> object:
    try:
        reply = outbound.parse_reply(data, qid, question)
    except FormError as exc:
        return ("FormError", str(exc))
    fields = (getattr(reply, name) for name in dir(reply) if not name.startswith("_"))
    return tuple(field for field in fields if not callable(field))


@given(tail_records, st.booleans(), st.integers(0, 3), st.integers(0, 3), st.integers(0, 40))
def test_a_tail_read_before_reads_as_if_afresh(
    records: list[tuple[str, str, str]], edns: bool, ns: int, ar: int, cut: int
) -> None:
    """parse_reply keeps recent tails (the octets after the answers) that held nothing to
    keep. Another reply with the same tail, but other counts in its header or cut short,
    parses exactly as it would with nothing kept: the same Reply or the same error."""
    query = dns.message.make_query("q.example.", "A", use_edns=0 if edns else None)
    response = dns.message.make_response(query)
    response.answer.append(dns.rrset.from_text("q.example.", 60, "IN", "A", "192.0.2.1"))
    for section, owner, rdtype in records:
        rrset = dns.rrset.from_text(owner, 30, "IN", rdtype, _TAIL_DATA[rdtype])
        getattr(response, section).append(rrset)
    data = response.to_wire()
    question = wire.parse_query(query.to_wire()).question
    qid = query.id
    variants = [
        data[:8] + struct.pack("!HH", ns, ar) + data[12:],
        data[: max(12, len(data) - cut)],
    ]
    for other in variants:
        outbound._PLAIN_TAILS.clear()
        afresh = _outcome(other, qid, question)
        outbound._PLAIN_TAILS.clear()
        _outcome(data, qid, question)  # may keep its tail
        assert _outcome(other, qid, question) == afresh
    outbound._PLAIN_TAILS.clear()


# --- names written in bulk ----------------------------------------------------------------

usual_labels = st.one_of(
    st.text("abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=20),
    st.integers(1, 63).map(lambda n: "x" * n),  # lengths 33-63 are octets written as they are
)
bulk_names = st.lists(
    st.one_of(
        st.lists(usual_labels, min_size=1, max_size=5).map(lambda ls: ".".join(ls)),
        names.map(lambda ls: b"".join(bytes((len(label),)) + label for label in ls) + b"\x00"),
    ),
    max_size=30,
)


@given(bulk_names, st.sampled_from(["\n", "\tsubtree\tblock\tp\n", ";"]))
@example(["a." + "x" * 45, "b.c"], ";")  # a length octet written as it is ("-")
@example(["x" * 50 + ".a"], ";")  # the same, first
@example(["x" * 42 + "." + "x" * 42], ";")  # two of them ("*"), the first name's
@example(["a", b"\x00", "b"], "\n")  # the root
@example(["a", b"\x03a.b\x00", b"\x02\x05a\x00"], "\n")  # escapes
def test_names_text_is_name_to_text_of_each(items: list[str | bytes], end: str) -> None:
    """Usual names (written in bulk) and any others (escapes, long labels, the root,
    written one by one) give the same text as name_to_text, name by name."""
    wire_names = []
    for item in items:
        if isinstance(item, str):
            try:
                wire_names.append(wire.text_to_name(item))
            except ValueError:
                assume(False)
        else:
            assume(len(item) <= 255)
            wire_names.append(item)
    assert wire.names_text(wire_names, end) == "".join(
        wire.name_to_text(name) + end for name in wire_names
    )
