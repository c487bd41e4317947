"""An authoritative server for one signed zone, run as its own process on loopback.

The compliance checks query a zone's apex the way ISC's DNS compliance tester does, so
the forwarder needs an upstream that answers like a real zone: the SOA in the answer
section, DNSKEY records, and RRSIGs when the query sets DO. The signatures are not
real (nothing here validates); they give the answers the size and shape of a signed
zone's. Every other name is NXDOMAIN.

Usage: python zone_upstream.py --port PORT [--host 127.0.0.1] [--zone apex.example]
Prints "ready" on stdout once both sockets are bound.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import struct
import sys

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

TTL = 3600
KEY = base64.b64encode(bytes(range(256)) + b"\x01\x00\x01\x00").decode()  # 260 octets
SIGNATURE = base64.b64encode(bytes(255 - i for i in range(256))).decode()  # RSA-2048 sized


class Zone:
    def __init__(self, apex: str) -> None:
        self.apex = dns.name.from_text(apex)
        name = self.apex.to_text()
        self.soa = self._rrset(
            dns.rdatatype.SOA, f"ns.{name} hostmaster.{name} 1 3600 600 86400 30"
        )
        self.dnskey = self._rrset(dns.rdatatype.DNSKEY, f"256 3 8 {KEY}", f"257 3 8 {KEY}")

    def _rrset(self, rdtype: dns.rdatatype.RdataType, *texts: str) -> dns.rrset.RRset:
        return dns.rrset.from_text(self.apex, TTL, dns.rdataclass.IN, rdtype, *texts)

    def rrsig(self, covered: dns.rdatatype.RdataType) -> dns.rrset.RRset:
        text = (
            f"{dns.rdatatype.to_text(covered)} 8 {len(self.apex) - 1} {TTL} "
            f"20300101000000 20200101000000 4711 {self.apex.to_text()} {SIGNATURE}"
        )
        return self._rrset(dns.rdatatype.RRSIG, text)

    def answer(self, data: bytes, tcp: bool) -> bytes | None:
        query = dns.message.from_wire(data)
        response = dns.message.make_response(query, our_payload=1232)
        if query.opcode() != dns.opcode.QUERY or len(query.question) != 1:
            response.set_rcode(dns.rcode.NOTIMP)
            return response.to_wire()
        response.flags |= dns.flags.AA
        signed = query.edns >= 0 and bool(query.ednsflags & dns.flags.DO)
        if signed:
            response.ednsflags |= dns.flags.DO
        question = query.question[0]
        if question.name != self.apex:
            response.set_rcode(dns.rcode.NXDOMAIN)
            self._add(response.authority, self.soa, signed)
        elif question.rdtype == dns.rdatatype.SOA:
            self._add(response.answer, self.soa, signed)
        elif question.rdtype == dns.rdatatype.DNSKEY:
            self._add(response.answer, self.dnskey, signed)
        else:
            self._add(response.authority, self.soa, signed)
        wire = response.to_wire()
        limit = max(query.payload, 512) if query.edns >= 0 else 512
        if not tcp and len(wire) > limit:
            cut = dns.message.make_response(query, our_payload=1232)
            cut.flags |= dns.flags.AA | dns.flags.TC
            return cut.to_wire()
        return wire

    def _add(self, section: list[dns.rrset.RRset], rrset: dns.rrset.RRset, signed: bool) -> None:
        section.append(rrset)
        if signed:
            section.append(self.rrsig(rrset.rdtype))


class Udp(asyncio.DatagramProtocol):
    def __init__(self, zone: Zone) -> None:
        self.zone = zone

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            out = self.zone.answer(data, tcp=False)
        except Exception:
            return
        if out is not None:
            self.transport.sendto(out, addr)  # type: ignore[attr-defined]


async def serve_tcp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, zone: Zone) -> None:
    try:
        while True:
            size = struct.unpack("!H", await reader.readexactly(2))[0]
            out = zone.answer(await reader.readexactly(size), tcp=True)
            if out is not None:
                writer.write(struct.pack("!H", len(out)) + out)
                await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, dns.exception.DNSException):
        pass
    finally:
        writer.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--zone", default="apex.example")
    args = parser.parse_args()
    zone = Zone(args.zone)
    loop = asyncio.get_running_loop()
    await loop.create_datagram_endpoint(lambda: Udp(zone), local_addr=(args.host, args.port))
    server = await asyncio.start_server(lambda r, w: serve_tcp(r, w, zone), args.host, args.port)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
