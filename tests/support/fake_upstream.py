"""A small authoritative server for tests, run as its own process on loopback (UDP and TCP).

Answers depend on the first label of the question name, so a test picks the
behaviour by the name it asks for:

    nx-*        NXDOMAIN with an SOA (negative TTL 30)
    nodata-*    NOERROR, no answer, an SOA
    fail-*      SERVFAIL
    silent-*    no answer at all (the resolver must time out)
    big-*       40 A records: truncated over UDP, complete over TCP
    cname-*     a CNAME to target.example. and its A record
    slow<N>-*   an A record, sent N tenths of a second late (UDP)
    tcreset-*   over UDP an empty answer with TC set; over TCP the connection is reset
    ttl<N>-*    an A record with TTL N
    inject-*    the A record, between two records the name never led to: bank.example A
                203.0.113.66 before it and www.bank.example A 203.0.113.67 after it
    lowcase-*   the A record, the question (and the record's owner) in lower case:
                an upstream that does not keep the letter case of the question
    once-*      an A record with TTL 1 the first time the name is asked (any case,
                either transport); no answer at all after that
    anything    A 198.51.100.7 / AAAA 2001:db8::7 with TTL 300, AA set, plus NS and glue

Every query it receives is appended to the file given by --log (one line per
query: transport, qname in lower case, qtype, source port, ID, qname as received),
so tests can count what was forwarded, from where, and in which letter case.

Usage: python fake_upstream.py --port PORT [--host 127.0.0.1] [--log FILE]
Prints "ready" on stdout once both sockets are bound.
"""

from __future__ import annotations

import argparse
import asyncio
import struct
import sys

from dnslib import AAAA, CNAME, NS, QTYPE, RCODE, RR, SOA, A, DNSLabel, DNSRecord

ANSWERED_ONCE: set[str] = set()  # once-* names already answered


def answer(data: bytes, tcp: bool) -> bytes | None:
    request = DNSRecord.parse(data)
    qname = str(request.q.qname)
    first = qname.split(".", 1)[0].lower()
    qtype = request.q.qtype
    reply = request.reply()
    reply.header.aa = 1
    soa = RR(
        "example.",
        QTYPE.SOA,
        ttl=60,
        rdata=SOA("ns.example.", "hostmaster.example.", (1, 3600, 600, 86400, 30)),
    )
    if first.startswith("silent"):
        return None
    if first.startswith("once"):
        if qname.lower() in ANSWERED_ONCE:
            return None
        ANSWERED_ONCE.add(qname.lower())
        reply.add_answer(RR(qname, QTYPE.A, ttl=1, rdata=A("198.51.100.7")))
        return reply.pack()
    if first.startswith("inject"):
        reply.add_answer(RR("bank.example.", QTYPE.A, ttl=300, rdata=A("203.0.113.66")))
        reply.add_answer(RR(qname, QTYPE.A, ttl=300, rdata=A("198.51.100.7")))
        reply.add_answer(RR("www.bank.example.", QTYPE.A, ttl=300, rdata=A("203.0.113.67")))
        return reply.pack()
    if first.startswith("lowcase"):
        reply.q.qname = DNSLabel(qname.lower())
        reply.add_answer(RR(qname.lower(), QTYPE.A, ttl=300, rdata=A("198.51.100.7")))
        return reply.pack()
    if first.startswith("tcreset"):
        if tcp:
            raise ConnectionResetError("tcreset")
        reply.header.tc = 1
        return reply.pack()
    if first.startswith("fail"):
        reply.header.rcode = RCODE.SERVFAIL
        return reply.pack()
    if first.startswith("nx"):
        reply.header.rcode = RCODE.NXDOMAIN
        reply.add_auth(soa)
        return reply.pack()
    if first.startswith("nodata"):
        reply.add_auth(soa)
        return reply.pack()
    if first.startswith("big"):
        for i in range(40):
            reply.add_answer(RR(qname, QTYPE.A, ttl=300, rdata=A(f"198.51.100.{i + 1}")))
        packed = reply.pack()
        if not tcp and len(packed) > 512:
            cut = request.reply()
            cut.header.tc = 1
            return cut.pack()
        return packed
    if first.startswith("cname"):
        reply.add_answer(RR(qname, QTYPE.CNAME, ttl=300, rdata=CNAME("target.example.")))
        reply.add_answer(RR("target.example.", QTYPE.A, ttl=300, rdata=A("198.51.100.9")))
        return reply.pack()
    ttl = 300
    if first.startswith("ttl"):
        digits = first[3:].split("-", 1)[0]
        ttl = int(digits) if digits.isdigit() else 300
    if qtype == QTYPE.A:
        reply.add_answer(RR(qname, QTYPE.A, ttl=ttl, rdata=A("198.51.100.7")))
    elif qtype == QTYPE.AAAA:
        reply.add_answer(RR(qname, QTYPE.AAAA, ttl=ttl, rdata=AAAA("2001:db8::7")))
    else:
        reply.add_auth(soa)
        return reply.pack()
    reply.add_auth(RR("example.", QTYPE.NS, ttl=300, rdata=NS("ns.example.")))
    reply.add_ar(RR("ns.example.", QTYPE.A, ttl=300, rdata=A("198.51.100.53")))
    return reply.pack()


class Log:
    def __init__(self, path: str | None) -> None:
        self.file = open(path, "a", buffering=1) if path else None  # noqa: SIM115

    def write(self, transport: str, data: bytes, port: int) -> None:
        if self.file is None:
            return
        try:
            record = DNSRecord.parse(data)
            q, qid = record.q, record.header.id
            received = str(q.qname)
            name, qtype = received.lower(), QTYPE.get(q.qtype)
            self.file.write(f"{transport} {name} {qtype} {port} {qid} {received}\n")
        except Exception:
            self.file.write(f"{transport} unparsable\n")


class Udp(asyncio.DatagramProtocol):
    def __init__(self, log: Log) -> None:
        self.log = log

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.log.write("udp", data, addr[1])
        try:
            out = answer(data, tcp=False)
            delay = late_by(data)
        except Exception:
            return
        if out is None:
            return
        if delay:
            send = self.transport.sendto  # type: ignore[attr-defined]
            asyncio.get_running_loop().call_later(delay, send, out, addr)
        else:
            self.transport.sendto(out, addr)  # type: ignore[attr-defined]


def late_by(data: bytes) -> float:
    """Seconds to hold the answer back: N/10 for names whose first label is slow<N>-..."""
    first = str(DNSRecord.parse(data).q.qname).split(".", 1)[0].lower()
    if not first.startswith("slow"):
        return 0.0
    digits = first[4:].split("-", 1)[0]
    return int(digits) / 10 if digits.isdigit() else 0.0


async def serve_tcp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, log: Log) -> None:
    try:
        while True:
            size = struct.unpack("!H", await reader.readexactly(2))[0]
            data = await reader.readexactly(size)
            log.write("tcp", data, writer.get_extra_info("peername")[1])
            try:
                out = answer(data, tcp=True)
            except ConnectionResetError:
                writer.transport.abort()  # a reset, not an answer
                return
            if out is not None:
                writer.write(struct.pack("!H", len(out)) + out)
                await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log")
    args = parser.parse_args()
    log = Log(args.log)
    loop = asyncio.get_running_loop()
    await loop.create_datagram_endpoint(lambda: Udp(log), local_addr=(args.host, args.port))
    server = await asyncio.start_server(lambda r, w: serve_tcp(r, w, log), args.host, args.port)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
