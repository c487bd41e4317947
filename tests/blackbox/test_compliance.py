"""The queries of ISC's DNS compliance tester (genreport), judged as it judges them.

genreport is not packaged for Debian, so this module sends each of its queries itself
and applies its rules to the answer. A recursive server is tested with
``genreport -R -f -c``: the EDNS, FULL and COMM groups, 33 queries plus ``signed``,
which is ``do`` again, reporting whether RRSIGs came back. In recursive mode every
query sets RD, and the zone's SOA (or DNSKEY) is asked for by its apex name.

The rules, for every answer (``judge`` below):

- The opcode is copied. A standard query (opcode 0) is answered NOERROR (BADCOOKIE is
  also fine when the query carried a cookie); opcode 15 is answered NOTIMP, with all
  four sections empty.
- EDNS: a query without OPT gets none back; one with OPT gets one back, version 0,
  no flag but DO set ("mbz"), and option 100 (unknown) not echoed. EDNS version 1 is
  answered BADVERS with version 0 and no SOA. A server cookie must start with the
  client cookie sent.
- Header bits: AA clear (a recursive server's answers are not authoritative), Z clear
  (never echoed), RD copied, RA/AD/CD clear in an answer to opcode 15, AD only when
  the query set AD or DO, CD only when the query set CD.
- An SOA query answered NOERROR carries the zone's SOA in the answer section.
- A truncated UDP answer is asked again over TCP, except for ``edns@512``, whose answer
  must fit in 512 octets ("toobig") as it is.
- The whole message parses, with nothing after the last record ("malformed").

Each check runs twice. Against a forwarded name (``apex.example``, a signed zone served
by tests/blackbox/zone_upstream.py, so the answers are the size and shape of a real
zone's), where the upstream's answers pass through the server's cache and rendering.
And against a policy-blocked name, where the server builds every answer itself; there
the "nosoa" rule is left out: a sinkholed name is not a zone apex, and its answer (the
warning page's NODATA for SOA) is the policy's by design.

Not in the -f -c run (and not here): ``dnswkk`` (a TSIG-signed query with a well-known
key, run only on request; this server ignores TSIG on queries and answers unsigned,
which genreport reports as "notsig"), ``icmp`` and the TYPE group (one query per type).
"""

from __future__ import annotations

import socket
import struct
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dns.exception
import dns.message
import dns.name
import dns.rdatatype
import pytest
from support.procs import START_TIMEOUT, FakeUpstream, Process, Sinkhole, SinkholeFactory, free_port

from blackbox.dnsclient import recv_frame
from blackbox.standard import BLOCKED, POLICIES

pytestmark = pytest.mark.blackbox

ZONE_UPSTREAM = Path(__file__).with_name("zone_upstream.py")
APEX = "apex.example"

# Header bits as genreport sets them in its queries.
AA, TC, RD, RA, Z, AD, CD = 0x0400, 0x0200, 0x0100, 0x0080, 0x0040, 0x0020, 0x0010
DO = 0x8000
SOA, DNSKEY, OPT, RRSIG = 6, 48, 41, 46
NOERROR, NOTIMP, BADVERS, BADCOOKIE = 0, 4, 16, 23
CLIENT_COOKIE = bytes(range(1, 9))


def option(code: int, data: bytes = b"") -> bytes:
    return struct.pack("!HH", code, len(data)) + data


NSID = option(3)
SUBNET = option(8, b"\x00\x01\x00\x00")  # IPv4, source and scope prefix 0
EXPIRE = option(9)
COOKIE = option(10, CLIENT_COOKIE)
UNKNOWN = option(100)


@dataclass(frozen=True)
class Check:
    """One of genreport's queries: what it sets, and why its expected answer is right."""

    name: str
    why: str
    qtype: int = SOA
    payload: int = 0  # EDNS UDP size; 0 sends no OPT record
    eflags: int = 0  # EDNS flags (DO ...)
    version: int = 0
    options: bytes = b""
    tcp: bool = False
    cookie: bool = False
    ignore_tc: bool = False  # judge a truncated UDP answer as it is (no TCP retry)
    flags: int = 0  # header bits other than RD, which recursive mode always sets
    opcode: int = 0


CHECKS = [
    Check("dns", "plain DNS, no EDNS: NOERROR with the SOA and no OPT record"),
    Check("aa", "AA set in a query means nothing; answered as usual, AA clear", flags=AA),
    Check("ad", "AD in a query asks for the AD bit back; the answer may carry it", flags=AD),
    Check("cd", "CD is copied into the answer; answered as usual", flags=CD),
    Check("ra", "RA set in a query means nothing; answered as usual", flags=RA),
    Check("rd", "RD (set in every recursive-mode query) is copied", flags=RD),
    Check("tc", "TC set in a query means nothing; answered as usual", flags=TC),
    Check("zflag", "the last reserved bit must be ignored and not echoed (RFC 1035)", flags=Z),
    Check(
        "opcode",
        "opcode 15, header only (QDCOUNT 0): NOTIMP (RFC 1035 4.1.1), the opcode copied, "
        "all sections empty, RA/AD/CD clear; FORMERR for the missing question is wrong: "
        "an unknown opcode says nothing about the layout of the rest",
        qtype=0,
        opcode=15,
    ),
    Check(
        "opcodeflg",
        "the same with TC, RD, RA, CD, AD, AA and Z set: still NOTIMP, and none of the "
        "bits defined only for QUERY (AA, RA, AD, CD) nor Z in the answer",
        qtype=0,
        opcode=15,
        flags=TC | RA | CD | AD | AA | Z,
    ),
    Check("type666", "an unknown type is plain data (RFC 3597): NOERROR", qtype=666),
    Check("tcp", "the same as dns, over TCP", tcp=True),
    Check("edns", "EDNS 0: NOERROR with an OPT record, version 0", payload=4096),
    Check(
        "edns1",
        "EDNS version 1: BADVERS, with an OPT record of version 0 (RFC 6891 6.1.3), no SOA",
        payload=4096,
        version=1,
    ),
    Check(
        "edns@512",
        "DNSKEY with a 512-octet buffer: the answer must fit in 512 octets as it is "
        "(truncated, TC set, the OPT record kept)",
        qtype=DNSKEY,
        payload=512,
        ignore_tc=True,
    ),
    Check(
        "ednsopt", "an unknown EDNS option is ignored, not echoed", payload=4096, options=UNKNOWN
    ),
    Check(
        "edns1opt",
        "EDNS version 1 with an unknown option: BADVERS, the option not echoed",
        payload=4096,
        version=1,
        options=UNKNOWN,
    ),
    Check(
        "do", "DO set: DO copied into the answer's OPT record (RFC 3225)", payload=4096, eflags=DO
    ),
    Check("docd", "DO and CD: both copied", payload=4096, eflags=DO, flags=CD),
    Check("edns1do", "EDNS version 1 with DO: BADVERS", payload=4096, eflags=DO, version=1),
    Check(
        "ednsflags",
        "an undefined EDNS flag is ignored and not echoed (RFC 6891 6.1.4)",
        payload=4096,
        eflags=0x0080,
    ),
    Check(
        "optlist",
        "NSID, client subnet, EXPIRE and a client cookie together: NOERROR; any server "
        "cookie must start with the client cookie",
        payload=4096,
        options=NSID + SUBNET + EXPIRE + COOKIE,
        cookie=True,
    ),
    Check("ednsnsid", "the NSID option alone: NOERROR", payload=4096, options=NSID),
    Check(
        "ednscookie",
        "a client cookie alone: NOERROR (or BADCOOKIE with a cookie)",
        payload=4096,
        options=COOKIE,
        cookie=True,
    ),
    Check("ednsexpire", "the EXPIRE option alone: NOERROR", payload=4096, options=EXPIRE),
    Check("ednssubnet", "client subnet 0.0.0.0/0 alone: NOERROR", payload=4096, options=SUBNET),
    Check("edns1nsid", "EDNS 1 with NSID: BADVERS", payload=4096, version=1, options=NSID),
    Check(
        "edns1cookie",
        "EDNS 1 with a cookie: BADVERS",
        payload=4096,
        version=1,
        options=COOKIE,
        cookie=True,
    ),
    Check("edns1expire", "EDNS 1 with EXPIRE: BADVERS", payload=4096, version=1, options=EXPIRE),
    Check("edns1subnet", "EDNS 1 with subnet: BADVERS", payload=4096, version=1, options=SUBNET),
    Check(
        "ednstcp",
        "DNSKEY with DO and a 512-octet buffer over TCP: the whole answer (the buffer size "
        "is for UDP only)",
        qtype=DNSKEY,
        payload=512,
        eflags=DO,
        tcp=True,
    ),
    Check(
        "bind11",
        "what BIND 9.11 sends: EDNS with DO and a client cookie; NOERROR",
        payload=4096,
        eflags=DO,
        options=COOKIE,
        cookie=True,
    ),
    Check(
        "dig11",
        "what dig 9.11 sends: RD, AD and a client cookie; NOERROR",
        payload=4096,
        options=COOKIE,
        cookie=True,
        flags=AD,
    ),
]
assert len(CHECKS) == 33 and len({c.name for c in CHECKS}) == 33


def build(check: Check, zone: str, qid: int) -> bytes:
    """The query genreport sends for ``check`` in recursive mode."""
    flags = (check.opcode << 11) | check.flags | RD
    if check.opcode:  # header only
        return struct.pack("!HHHHHH", qid, flags, 0, 0, 0, 0)
    question = dns.name.from_text(zone).to_wire() + struct.pack("!HH", check.qtype, 1)
    if not check.payload:
        return struct.pack("!HHHHHH", qid, flags, 1, 0, 0, 0) + question
    ttl = (check.version << 16) | check.eflags
    opt = b"\x00" + struct.pack("!HHIH", OPT, check.payload, ttl, len(check.options))
    return struct.pack("!HHHHHH", qid, flags, 1, 0, 0, 1) + question + opt + check.options


def judge(check: Check, data: bytes, zone: str) -> tuple[list[str], bool]:
    """genreport's verdict on an answer: (the failure tags, whether an RRSIG was seen).

    No tags means "ok".
    """
    if len(data) < 12:
        return ["malformed"], False
    _qid, flags, qdcount, ancount, nscount, arcount = struct.unpack_from("!HHHHHH", data)
    try:
        message = dns.message.from_wire(data)
    except dns.exception.DNSException:
        return ["malformed"], False
    tags: list[str] = []
    opcode = (flags >> 11) & 0xF
    if check.opcode:
        for count, section in ((qdcount, "question"), (ancount, "answer"), (nscount, "authority")):
            if count:
                tags.append(f"non-empty-{section}-section")
        if arcount:
            tags.append("non-empty-additional-section")
    else:
        question = message.question[0] if len(message.question) == 1 else None
        if (
            question is None
            or question.name != dns.name.from_text(zone)
            or question.rdtype != check.qtype
        ):
            tags.append("mismatch")
    apex = dns.name.from_text(zone)
    seen_soa = any(r.rdtype == SOA and r.name == apex for r in message.answer)
    seen_rrsig = any(r.rdtype == RRSIG for r in message.answer)
    opt = message.opt
    ednsttl = opt.ttl if opt is not None else 0
    options = list(opt[0].options) if opt is not None else []
    rcode = (flags & 0xF) | ((ednsttl >> 24) << 4)
    seen_cookie = False
    for o in options:
        value = o.to_wire()
        assert value is not None
        if int(o.otype) == 10 and 16 <= len(value) <= 40:
            seen_cookie = True
            if value[:8] != CLIENT_COOKIE and check.cookie:
                tags.append("cookie-mismatch")
        if int(o.otype) == 100:
            tags.append("echoed")

    if opcode != check.opcode:
        tags.append(f"opcode{opcode}")
    if check.version == 0:
        cookie_ok = check.cookie and rcode == BADCOOKIE and seen_cookie
        if check.opcode == 0 and rcode != NOERROR and not cookie_ok:
            tags.append(f"rcode{rcode}")
        if check.opcode != 0 and rcode != NOTIMP:
            tags.append(f"rcode{rcode}")
    elif rcode != BADVERS:
        tags.append(f"rcode{rcode}")
    version = (ednsttl >> 16) & 0xFF
    if opt is not None and version != 0:
        tags.append("version-not-zero")
    if opt is not None and (
        (version < check.version and rcode != BADVERS)
        or (version >= check.version and rcode == BADVERS)
    ):
        tags.append("badversion")
    if opt is None and check.payload:
        tags.append("noopt")
    if opt is not None and not check.payload:
        tags.append("opt")
    if check.qtype == SOA:
        if check.version == 0 and not check.ignore_tc and not seen_soa and rcode == NOERROR:
            tags.append("nosoa")
        if seen_soa and (check.version != 0 or rcode != NOERROR):
            tags.append("soa")
    if opt is not None and check.eflags & DO and not ednsttl & DO and seen_rrsig:
        tags.append("nodo")
    if (
        opt is not None
        and check.eflags & DO
        and check.flags & CD
        and ednsttl & DO
        and not flags & CD
        and seen_rrsig
    ):
        tags.append("nocd")
    if flags & AA:  # recursive mode: never authoritative
        tags.append("aa")
    if flags & RA and check.opcode:
        tags.append("ra")
    if not flags & RD and check.opcode == 0:
        tags.append("nord")
    if flags & AD and (check.opcode or not (check.flags & AD or check.eflags & DO)):
        tags.append("ad")
    if flags & CD and (check.opcode or not check.flags & CD):
        tags.append("cd")
    if flags & Z:
        tags.append("z")
    if ednsttl & 0x7FFF:
        tags.append("mbz")
    if check.ignore_tc and len(data) > (check.payload or 512):
        tags.append("toobig")
    return tags, seen_rrsig


def exchange(where: tuple[str, int], check: Check, zone: str, qid: int) -> bytes:
    """Send ``check``'s query as genreport does: UDP, then TCP after a truncated answer."""
    query = build(check, zone, qid)
    if not check.tcp:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(2.0)
            sock.sendto(query, where)
            while True:
                data = sock.recv(65535)
                if data[:2] == query[:2]:
                    break
        if not data[2] & (TC >> 8) or check.ignore_tc:
            return data
    with socket.create_connection(where, timeout=2.0) as conn:
        conn.sendall(struct.pack("!H", len(query)) + query)
        return recv_frame(conn)


@pytest.fixture(scope="module")
def zone_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    workdir = tmp_path_factory.mktemp("zone-upstream")
    port = free_port()
    argv = [sys.executable, str(ZONE_UPSTREAM), "--port", str(port), "--zone", APEX]
    process = Process(argv, workdir, f"zone-upstream-{port}")
    try:
        process.wait_line(lambda line: line.strip() == "ready", START_TIMEOUT)
        yield f"127.0.0.1:{port}"
    finally:
        process.kill()


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, fake_upstream: FakeUpstream, zone_upstream: str
) -> Iterator[Sinkhole]:
    factory = SinkholeFactory(tmp_path_factory.mktemp("compliance"), fake_upstream)
    try:
        yield factory(POLICIES, upstreams=[zone_upstream], query_log="off")
    finally:
        problems = factory.close()
        assert not problems, "\n\n".join(problems)


TARGETS = {"forwarded": APEX, "blocked": BLOCKED}


def run(server: Sinkhole, check: Check, target: str, qid: int) -> tuple[list[str], bool]:
    zone = TARGETS[target]
    data = exchange((server.host, server.port), check, zone, qid)
    tags, rrsig = judge(check, data, zone)
    if target == "blocked":
        tags = [t for t in tags if t != "nosoa"]
    return tags, rrsig


@pytest.mark.parametrize("target", list(TARGETS))
@pytest.mark.parametrize("check", CHECKS, ids=[c.name for c in CHECKS])
def test_genreport_check(server: Sinkhole, check: Check, target: str) -> None:
    qid = 0x4000 + CHECKS.index(check) * 2 + (target == "blocked")
    tags, _ = run(server, check, target, qid)
    assert tags == [], f"{check.name}={','.join(tags)} for {TARGETS[target]}: {check.why}"


def test_signed_reports_rrsigs_with_do(server: Sinkhole) -> None:
    """genreport's 34th result, "signed": the ``do`` check again, plus whether RRSIGs came
    back. A forwarder passes the upstream's signatures on when the client sets DO."""
    do = next(c for c in CHECKS if c.name == "do")
    tags, rrsig = run(server, do, "forwarded", 0x5000)
    assert tags == [] and rrsig, f"signed={','.join(tags) or 'ok'}{',yes' if rrsig else ''}"
    tags, rrsig = run(server, do, "blocked", 0x5001)
    assert tags == [] and not rrsig  # the policy's own answer: unsigned


def test_judge_fails_what_genreport_fails() -> None:
    """The judge itself: answers genreport rejects are rejected here too."""
    opcode = next(c for c in CHECKS if c.name == "opcode")
    flg = next(c for c in CHECKS if c.name == "opcodeflg")
    formerr = struct.pack("!HHHHHH", 1, 0x8000 | (15 << 11) | RD | 1, 0, 0, 0, 0)
    assert judge(opcode, formerr, APEX)[0] == ["rcode1"]
    notimp_ra_cd = struct.pack("!HHHHHH", 1, 0x8000 | (15 << 11) | RD | RA | CD | 4, 0, 0, 0, 0)
    assert judge(flg, notimp_ra_cd, APEX)[0] == ["ra", "cd"]
    dns_check = CHECKS[0]
    reply = dns.message.make_response(dns.message.from_wire(build(dns_check, APEX, 7)))
    reply.flags |= AA | Z
    assert judge(dns_check, reply.to_wire(), APEX)[0] == ["nosoa", "aa", "z"]
    assert judge(dns_check, reply.to_wire() + b"\x00", APEX)[0] == ["malformed"]
